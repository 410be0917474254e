// The caller's stated reason for what it does: the `application_name` it connected with, or the
// value of a `SET custos.reason = '…'` the sidecar intercepts (the statement never reaches the
// server). The reason is shown to reviewers and recorded in audit events; it is never policy input,
// so a caller gains nothing by choosing it. Bounded and reduced to printable ASCII so it cannot
// forge log lines or flood a reviewer's terminal.

/** Longest reason kept; longer ones are cut (a sentence and a ticket number fit). */
export const MAX_REASON_LENGTH = 200;

/** The reason as recorded: printable ASCII, trimmed, at most MAX_REASON_LENGTH; undefined when empty. */
export function boundedReason(text: string): string | undefined {
  const printable = text.replace(/[^\x20-\x7e]/g, '?').trim().slice(0, MAX_REASON_LENGTH);
  return printable === '' ? undefined : printable;
}

/**
 * `SET [SESSION] custos.reason { = | TO } '…'` (one statement, a standard string literal) sets the
 * reason; `SET custos.reason TO DEFAULT` and `RESET custos.reason` clear it. Anything else (SET
 * LOCAL, several statements, another setting) is not a reason statement and goes through policy.
 */
export function reasonStatement(sql: string): { readonly reason: string | undefined } | undefined {
  const set = /^\s*SET\s+(?:SESSION\s+)?custos\.reason\s*(?:=|\bTO\b)\s*(?:'((?:[^']|'')*)'|(DEFAULT))\s*;?\s*$/is.exec(sql);
  if (set !== null) return { reason: set[2] !== undefined ? undefined : boundedReason((set[1] ?? '').replace(/''/g, "'")) };
  if (/^\s*RESET\s+custos\.reason\s*;?\s*$/i.test(sql)) return { reason: undefined };
  return undefined;
}

/** What the server runs in place of a reason statement: the same command tag and transaction effects, without the value. */
export const REASON_STATEMENT_STAND_IN = 'SET custos.reason TO DEFAULT';
