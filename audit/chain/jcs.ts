// RFC 8785 JSON Canonicalization Scheme (https://www.rfc-editor.org/rfc/rfc8785).
// §3.2.2: literals, strings and numbers are serialised exactly as ECMAScript JSON.stringify does
// (numbers via Number.prototype.toString, which is the ES "shortest round-trip" algorithm the RFC
// requires); §3.2.3: object members sorted by their names as arrays of UTF-16 code units, which is
// what the default Array.prototype.sort comparison does on JS strings.
// I-JSON (RFC 7493, required by §3.1) forbids lone surrogates and non-finite numbers: rejected.
import { CustosError } from '../../lib/errors.ts';

export const ERR_AUDIT_JCS = 'ERR_AUDIT_JCS';

/** Canonical JSON text of `value`; throws CustosError ERR_AUDIT_JCS on values I-JSON cannot hold. */
export function canonicalize(value: unknown): string {
  const out: string[] = [];
  write(value, out, '$');
  return out.join('');
}

// `path` names the member being written, for error messages only: it is the parent's member name,
// not a full path, so that no string is built per member on the hot path (every audit event).
function write(value: unknown, out: string[], path: string): void {
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) throw new CustosError(ERR_AUDIT_JCS, `lone surrogate in string at ${path}`);
      out.push(JSON.stringify(value));
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new CustosError(ERR_AUDIT_JCS, `non-finite number at ${path}`);
      // JSON.stringify(-0) is "0", as §3.2.2.3 requires.
      out.push(JSON.stringify(value));
      return;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'object': {
      if (value === null) {
        out.push('null');
        return;
      }
      if (Array.isArray(value)) {
        out.push('[');
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out.push(',');
          const item: unknown = value[i];
          // JSON.stringify writes holes and undefined array items as null.
          if (item === undefined) out.push('null');
          else write(item, out, path);
        }
        out.push(']');
        return;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new CustosError(ERR_AUDIT_JCS, `unsupported object at ${path} (only plain objects and arrays)`);
      }
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record).sort();
      out.push('{');
      let first = true;
      for (const key of keys) {
        const member = record[key];
        // Members whose value is undefined are absent, as with JSON.stringify.
        if (member === undefined) continue;
        if (!key.isWellFormed()) throw new CustosError(ERR_AUDIT_JCS, `lone surrogate in member name at ${path}`);
        if (!first) out.push(',');
        first = false;
        out.push(JSON.stringify(key), ':');
        write(member, out, key);
      }
      out.push('}');
      return;
    }
    default:
      throw new CustosError(ERR_AUDIT_JCS, `unsupported ${typeof value} at ${path}`);
  }
}
