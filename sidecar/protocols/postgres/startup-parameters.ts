// Startup parameters are an attack surface (reference/postgres-protocol.md §1.3): `replication`
// switches the backend to walsender mode, `options=-c ...` and arbitrary GUCs set session state
// (role, search_path) before the first statement the proxy sees. Only an allow-list passes.

export const ALLOWED_STARTUP_PARAMETERS: ReadonlySet<string> = new Set([
  'user',
  'database',
  'application_name',
  'client_encoding',
  'DateStyle',
  'TimeZone',
  'IntervalStyle',
  'extra_float_digits',
  'search_path',
]);

/** Parameters the proxy consumes itself and never forwards as-is. */
const CONSUMED = new Set(['user', 'database']);

export type StartupCheck =
  | { readonly ok: true; readonly forward: Record<string, string>; readonly protocolExtensions: readonly string[] }
  | { readonly ok: false; readonly sqlstate: string; readonly message: string };

/**
 * Checks a client's startup parameters. `_pq_.*` protocol extensions are not errors: they are
 * reported back as unrecognised in NegotiateProtocolVersion.
 */
export function checkStartupParameters(parameters: ReadonlyMap<string, string>): StartupCheck {
  const forward: Record<string, string> = {};
  const protocolExtensions: string[] = [];
  for (const [name, value] of parameters) {
    if (name === 'replication') {
      return { ok: false, sqlstate: '08P01', message: 'replication connections are not allowed through Custos' };
    }
    if (name.startsWith('_pq_.')) {
      protocolExtensions.push(name);
      continue;
    }
    if (name === 'options') {
      if (value.trim() === '') continue;
      return { ok: false, sqlstate: '08P01', message: 'startup parameter "options" is not allowed through Custos' };
    }
    if (!ALLOWED_STARTUP_PARAMETERS.has(name)) {
      return { ok: false, sqlstate: '08P01', message: `startup parameter "${printable(name)}" is not allowed through Custos` };
    }
    if (name === 'client_encoding' && !isUtf8Encoding(value)) {
      return { ok: false, sqlstate: '0A000', message: `client_encoding "${printable(value)}" is not supported through Custos: use UTF8` };
    }
    if (!CONSUMED.has(name)) forward[name] = value;
  }
  return { ok: true, forward, protocolExtensions };
}

/**
 * Custos decodes statements as UTF-8; a server decoding them in another client encoding could see
 * a different statement than the policy did (multi-byte encodings such as SJIS hide quote bytes).
 */
export function isUtf8Encoding(value: string): boolean {
  return /^(utf-?8|unicode)$/i.test(value.trim().replace(/^'|'$/g, ''));
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
}

/** The session's schema search path for unqualified names, from the startup parameter. */
export function searchPathOf(value: string | undefined): string[] {
  if (value === undefined) return ['public'];
  const schemas = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '' && s !== '"$user"' && s !== '$user')
    .map((s) => (s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s.toLowerCase()));
  return schemas.length === 0 ? ['public'] : schemas;
}
