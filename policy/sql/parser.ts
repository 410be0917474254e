// The SQL front door: PostgreSQL's own parser (libpg-query, WASM) turns a client message into one
// StatementFacts per statement, plus audit-safe normalized text and a fingerprint. Fail closed: a
// message the parser rejects is `{ok: false}` and the caller denies it (42601).
import { fingerprintSync, loadModule, normalizeSync, parseSync } from 'libpg-query';
import { CustosError } from '../../lib/errors.ts';
import type { SqlAnalysis, StatementFacts } from '../types.ts';
import { classifyStatement } from './classify.ts';
import { scrubLiterals } from './scrub-literals.ts';

let loaded: Promise<void> | undefined;
let ready = false;

/** Loads the parser's WASM module once; later calls return the same promise. */
export function loadSqlParser(): Promise<void> {
  loaded ??= loadModule().then(
    () => {
      ready = true;
    },
    (e: unknown) => {
      loaded = undefined;
      throw new CustosError('ERR_SQL_PARSER_LOAD', `cannot load the SQL parser: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    },
  );
  return loaded;
}

interface RawStatement {
  readonly stmt?: unknown;
  readonly stmt_location?: number;
  readonly stmt_len?: number;
}

/**
 * Analyses a client message (one or more statements). Synchronous: call `loadSqlParser()` first.
 * An empty message (only whitespace, comments or semicolons) is `ok` with no statements.
 */
export function analyseSql(text: string): SqlAnalysis {
  if (!ready) throw new CustosError('ERR_SQL_PARSER_NOT_LOADED', 'the SQL parser is not loaded: await loadSqlParser() at start-up before analyseSql()');
  // The parser reads a C string: it would stop at a NUL the caller's text still holds.
  if (text.includes('\u0000')) return { ok: false, error: 'the statement contains a NUL character' };
  if (text.trim() === '') return { ok: true, statements: [], normalized: '', fingerprint: '' };
  let raw: readonly RawStatement[];
  try {
    raw = (parseSync(text) as { stmts?: readonly RawStatement[] }).stmts ?? [];
  } catch (e: unknown) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  const offsets = characterOffsets(text);
  const statements: StatementFacts[] = [];
  for (const entry of raw) {
    const classified = classifyStatement(entry.stmt);
    const start = offsets(entry.stmt_location ?? 0);
    const end = entry.stmt_len === undefined || entry.stmt_len === 0 ? text.length : offsets((entry.stmt_location ?? 0) + entry.stmt_len);
    statements.push({
      kinds: classified.kinds,
      relations: classified.relations,
      functions: classified.functions,
      unfilteredWrite: classified.unfilteredWrite,
      opaque: classified.opaque,
      copy: classified.copy,
      ...(classified.settings !== undefined ? { settings: classified.settings } : {}),
      location: { start, length: trimmedLength(text, start, end) },
    });
  }
  return { ok: true, statements, ...auditText(text, statements.length) };
}

/**
 * Normalized text (constants → $n) and fingerprint; never the literal text. normalize leaves
 * constants in some statements (utility statements, PREPARE/EXECUTE): scrubLiterals takes them out.
 */
function auditText(text: string, count: number): { normalized: string; fingerprint: string } {
  if (count === 0) return { normalized: '', fingerprint: '' };
  let normalized: string;
  try {
    normalized = scrubLiterals(normalizeSync(text));
  } catch {
    normalized = '(normalization failed)';
  }
  let fingerprint: string;
  try {
    fingerprint = fingerprintSync(text);
  } catch {
    fingerprint = '';
  }
  return { normalized, fingerprint };
}

/** Length of text[start, end) without trailing whitespace and semicolons. */
function trimmedLength(text: string, start: number, end: number): number {
  let e = end;
  while (e > start) {
    const c = text.charCodeAt(e - 1);
    if (c === 59 /* ; */ || c === 32 || (c >= 9 && c <= 13)) e--;
    else break;
  }
  return e - start;
}

// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\u0000-\u007f]/;

/**
 * libpg-query reports UTF-8 byte offsets; StatementFacts carries string (UTF-16) offsets. Returns a
 * converter for ascending byte offsets (one pass over the text for the whole message).
 */
function characterOffsets(text: string): (byteOffset: number) => number {
  if (!NON_ASCII.test(text)) return (b) => b;
  let index = 0;
  let bytes = 0;
  return (target) => {
    if (target < bytes) {
      index = 0;
      bytes = 0;
    }
    while (bytes < target && index < text.length) {
      const code = text.codePointAt(index) ?? 0;
      bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
      index += code >= 0x10000 ? 2 : 1;
    }
    return index;
  };
}
