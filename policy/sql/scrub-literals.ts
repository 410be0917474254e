// libpg_query's normalize replaces the constants it knows how to find, but leaves some in place
// (utility statements: CREATE SERVER … OPTIONS (password '…'), COPY … FROM PROGRAM '…', ALTER
// SYSTEM, COMMENT ON … IS '…', PREPARE/EXECUTE, …). Text shown to reviewers or written to the audit
// log must carry no literal: every string, number, bit-string and hex-string constant token the
// PostgreSQL lexer finds becomes `$n`, numbered after the parameters already in the text.
// Comments are dropped as well.
import { scanSync, type ScanToken } from 'libpg-query';

/** What the scrubbed text is when the lexer cannot read it: nothing of the statement is kept. */
export const UNSCRUBBABLE_TEXT = '(statement text withheld: constants could not be removed)';

const NAMED_CONSTANTS = new Set(['SCONST', 'ICONST', 'FCONST', 'BCONST', 'XCONST', 'USCONST']);

/** Token types of the constants libpg-query's scan names UNKNOWN (bit, hex and Unicode strings), learned once. */
let probedTypes: ReadonlySet<number> | undefined;

function constantTypes(): ReadonlySet<number> {
  if (probedTypes === undefined) {
    const types = new Set<number>();
    for (const token of scanSync("SELECT 'a', 1, 1.5, B'1', X'1', U&'a'").tokens) {
      if (token.text !== 'SELECT' && token.text !== ',') types.add(token.tokenType);
    }
    probedTypes = types;
  }
  return probedTypes;
}

function isConstant(token: ScanToken): boolean {
  return NAMED_CONSTANTS.has(token.tokenName) || constantTypes().has(token.tokenType);
}

/**
 * Replaces every constant token of `text` with `$n` (n after the highest `$n` already present).
 * Pure; synchronous (the parser's WASM module must be loaded). Text the lexer refuses becomes
 * UNSCRUBBABLE_TEXT rather than leaking.
 */
export function scrubLiterals(text: string): string {
  // Fast path (the scan is about half the cost of analysing a short statement): text with no
  // quote, no dollar quote, no comment and no digit starting a token holds no constant and no
  // comment, and the scan would return it unchanged.
  if (!MAY_HOLD_CONSTANT_OR_COMMENT.test(text)) return text;
  return scrubByScan(text);
}

/** A quote, a dollar quote (`$$`, `$tag$`), a comment opener, or a digit not part of a word or a `$n`. */
const MAY_HOLD_CONSTANT_OR_COMMENT = /'|\$[^\s$\d]*\$|--|\/\*|(?:^|[^\w$])\.?\d/u;

/** scrubLiterals without the fast path (exported for the test that proves the fast path exact). */
export function scrubByScan(text: string): string {
  if (text === '') return text;
  let tokens: readonly ScanToken[];
  try {
    tokens = scanSync(text).tokens;
  } catch {
    return UNSCRUBBABLE_TEXT;
  }
  // Scan offsets are UTF-8 byte offsets.
  const bytes = Buffer.from(text, 'utf8');
  let next = 0;
  for (const token of tokens) {
    const param = /^\$(\d+)$/.exec(token.text);
    if (param?.[1] !== undefined) next = Math.max(next, Number(param[1]));
  }
  // Rebuilt from the tokens: constants become $n, comments a space; gaps between tokens are
  // whitespace (anything else there, which the lexer should never leave, is dropped too).
  const parts: string[] = [];
  let at = 0;
  for (const token of tokens) {
    if (token.start < at || token.end > bytes.length || token.end < token.start) return UNSCRUBBABLE_TEXT;
    parts.push(gap(bytes.subarray(at, token.start).toString('utf8')));
    parts.push(isComment(token) ? ' ' : isConstant(token) ? `$${++next}` : bytes.subarray(token.start, token.end).toString('utf8'));
    at = token.end;
  }
  parts.push(gap(bytes.subarray(at).toString('utf8')));
  return parts.join('');
}

/** Comments may quote anything (a password in a note): they are dropped too. */
function isComment(token: ScanToken): boolean {
  return token.tokenName === 'C_COMMENT' || token.tokenName === 'SQL_COMMENT';
}

function gap(text: string): string {
  return /^\s*$/.test(text) ? text : ' ';
}
