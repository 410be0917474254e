// Masking strategies (pure): what a masked value becomes, as text (`maskText`), as a wire value
// that stays valid for its column's type OID and format code (`maskValue`, reference §10.3: a
// driver decodes by type, so an int4 column cannot carry a string tag; NULL is valid for every
// type), and detector scrubbing of free text (`scrubText`: notices, errors, notifications,
// parameter status, and the DataRow backstop).
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { CustosError } from '../../lib/errors.ts';
import type { CompiledDetector, MaskStrategy, MaskStrategyKind } from '../../policy/masking/compile-masking.ts';

/** What `redact` puts in place of a value (and of a `null`-strategy span inside text). */
export const REDACTED = '[REDACTED]';
/** The character `partial` replaces each hidden code point with. */
export const MASK_CHAR = '*';
export const HMAC_PREFIX = 'hmac:';
/** Hex characters of the HMAC kept in text (64 bits: collisions are negligible at table scale). */
const HMAC_HEX_CHARS = 16;

/** Type OIDs (pg_type.dat). */
export const TYPE_OID = {
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  xml: 142,
  unknown: 705,
  bpchar: 1042,
  varchar: 1043,
  uuid: 2950,
  jsonb: 3802,
} as const;

/** Types whose binary send format is the text itself (textsend, varcharsend, bpcharsend, namesend). */
const PLAIN_TEXT_TYPES: ReadonlySet<number> = new Set([TYPE_OID.text, TYPE_OID.varchar, TYPE_OID.bpchar, TYPE_OID.name, TYPE_OID.unknown]);
/** jsonb binary format: a version byte (1) then the JSON text (jsonb_send). */
const JSONB_VERSION = 1;

/** Masking needed a key that was not loaded (a policy with hmac but no key file read). */
export class MaskingKeyError extends CustosError {
  constructor() {
    super('ERR_MASKING_NO_KEY', 'the hmac masking strategy needs the key from spec.masking.hmacKeyFile');
    this.name = 'MaskingKeyError';
  }
}

/**
 * The masked text of a value. `null` has no text form: inside text it is the redaction token
 * (maskValue returns SQL NULL for whole values instead).
 */
/** createHmac with a raw Buffer builds a key object on every call (~4x slower): build it once per key. */
const keyObjects = new WeakMap<Buffer, KeyObject>();

function keyObject(key: Buffer): KeyObject {
  let object = keyObjects.get(key);
  if (object === undefined) {
    object = createSecretKey(key);
    keyObjects.set(key, object);
  }
  return object;
}

export function maskText(strategy: MaskStrategy, value: string, hmacKey: Buffer | undefined): string {
  switch (strategy.kind) {
    case 'redact':
    case 'null':
      return REDACTED;
    case 'partial':
      return maskPartial(value, strategy.keepFirst, strategy.keepLast);
    case 'hmac':
      return HMAC_PREFIX + hmacDigest(value, hmacKey).toString('hex').slice(0, HMAC_HEX_CHARS);
    default:
      return assertNever(strategy.kind);
  }
}

/**
 * Keeps the first and last code points and stars the middle with as many `*` as it hides, so the
 * value's shape stays recognisable; a value too short to hide anything is starred entirely.
 */
function maskPartial(value: string, keepFirst: number, keepLast: number): string {
  const points = Array.from(value);
  if (points.length <= keepFirst + keepLast) return MASK_CHAR.repeat(points.length);
  const hidden = points.length - keepFirst - keepLast;
  return points.slice(0, keepFirst).join('') + MASK_CHAR.repeat(hidden) + points.slice(points.length - keepLast).join('');
}

function hmacDigest(value: string | Buffer, key: Buffer | undefined): Buffer {
  if (key === undefined || key.length === 0) throw new MaskingKeyError();
  return createHmac('sha256', keyObject(key)).update(value).digest();
}

/**
 * The masked wire value of one DataRow column: valid for `typeOid` in `format` (0 text, 1
 * binary), or NULL (length −1) when the type cannot carry the masked form. NULL stays NULL.
 */
export function maskValue(strategy: MaskStrategy, value: Buffer | null, typeOid: number, format: 0 | 1, hmacKey?: Buffer): Buffer | null {
  if (value === null || strategy.kind === 'null') return null;
  if (PLAIN_TEXT_TYPES.has(typeOid)) return Buffer.from(maskText(strategy, value.toString('utf8'), hmacKey), 'utf8');
  switch (typeOid) {
    case TYPE_OID.json:
      // json_send is the text itself; the masked text becomes a JSON string literal.
      return Buffer.from(JSON.stringify(maskText(strategy, value.toString('utf8'), hmacKey)), 'utf8');
    case TYPE_OID.jsonb: {
      const text = format === 1 ? value.subarray(1).toString('utf8') : value.toString('utf8');
      const literal = Buffer.from(JSON.stringify(maskText(strategy, text, hmacKey)), 'utf8');
      return format === 1 ? Buffer.concat([Buffer.from([JSONB_VERSION]), literal]) : literal;
    }
    case TYPE_OID.xml:
      // xml_send is the text; the masked text becomes XML character content.
      return Buffer.from(escapeXml(maskText(strategy, value.toString('utf8'), hmacKey)), 'utf8');
    case TYPE_OID.uuid:
      return strategy.kind === 'hmac' ? maskUuid(value, format, hmacKey) : null;
    default:
      // Integers, numerics, dates, arrays, unknown extension types (citext, …): no masked form
      // that is both valid for the type and free of the value.
      return null;
  }
}

/**
 * A UUID derived from the HMAC of the value's canonical text (so text and binary results of the
 * same value agree, and equal values stay joinable), marked as an RFC 9562 version 8 UUID.
 */
function maskUuid(value: Buffer, format: 0 | 1, hmacKey: Buffer | undefined): Buffer | null {
  let canonical: string;
  if (format === 1) {
    if (value.length !== 16) return null;
    canonical = formatUuid(value);
  } else {
    const hex = value.toString('utf8').replace(/[{}-]/g, '').toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(hex)) return null;
    canonical = formatUuid(Buffer.from(hex, 'hex'));
  }
  const bytes = Buffer.from(hmacDigest(canonical, hmacKey).subarray(0, 16));
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x80; // version 8 (custom)
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80; // variant 10
  return format === 1 ? bytes : Buffer.from(formatUuid(bytes), 'latin1');
}

function formatUuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export interface ScrubFinding {
  /** The detector's name (audit label); never the value. */
  readonly detector: string;
  readonly count: number;
}

export interface ScrubResult {
  readonly text: string;
  /** Detectors that matched and how many spans each found, in the detectors' order. */
  readonly findings: readonly ScrubFinding[];
}

/** Strategies from the most to the least revealing: a merged span takes the least revealing. */
const RESTRICTIVENESS: Readonly<Record<MaskStrategyKind, number>> = { partial: 0, hmac: 1, redact: 2, null: 3 };

/**
 * Replaces every span any detector finds. Overlapping spans of different detectors are merged
 * into one and masked with the least revealing of their strategies, so no part of either value
 * survives between two replacements.
 */
export function scrubText(text: string, detectors: readonly CompiledDetector[], hmacKey?: Buffer): ScrubResult {
  const hits: Array<{ start: number; end: number; strategy: MaskStrategy }> = [];
  const findings: ScrubFinding[] = [];
  for (const detector of detectors) {
    const spans = detector.find(text);
    if (spans.length === 0) continue;
    findings.push({ detector: detector.name, count: spans.length });
    for (const s of spans) hits.push({ start: s.start, end: s.end, strategy: detector.strategy });
  }
  if (hits.length === 0) return { text, findings };
  hits.sort((a, b) => a.start - b.start || b.end - a.end);
  const merged: Array<{ start: number; end: number; strategy: MaskStrategy }> = [];
  for (const h of hits) {
    const last = merged[merged.length - 1];
    if (last !== undefined && h.start < last.end) {
      last.end = Math.max(last.end, h.end);
      if (RESTRICTIVENESS[h.strategy.kind] > RESTRICTIVENESS[last.strategy.kind]) last.strategy = h.strategy;
    } else {
      merged.push({ ...h });
    }
  }
  let out = '';
  let at = 0;
  for (const m of merged) {
    out += text.slice(at, m.start) + maskText(m.strategy, text.slice(m.start, m.end), hmacKey);
    at = m.end;
  }
  return { text: out + text.slice(at), findings };
}

function assertNever(value: never): never {
  throw new Error(`unexpected strategy ${String(value)}`);
}
