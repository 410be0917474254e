// Blocking a statement without desynchronising the transaction (reference/postgres-protocol.md §9):
// instead of dropping it, the proxy sends the server, in its place, a statement that fails with the
// proxy's SQLSTATE and message. The server then aborts the explicit transaction, or the implicit
// one of the Sync batch, exactly as after a genuine error, and client and server agree on the
// transaction state. The substitute is built only from proxy-controlled text (rule names are
// restricted by the CRD pattern; messages come from the policy author), never from client SQL.

export interface Refusal {
  /** SQLSTATE the client sees, e.g. 42501 for a policy denial. */
  readonly sqlstate: string;
  readonly message: string;
  readonly detail?: string;
  readonly hint?: string;
}

const DOLLAR_TAG = '$custos_refusal$';

function literal(text: string): string {
  // A standard string literal: doubling quotes is the complete escape with
  // standard_conforming_strings on (the default since PostgreSQL 9.1); backslashes and NUL are
  // removed so the literal means the same under either setting.
  return `'${text.replace(/[\\\0]/g, '').replace(/'/g, "''")}'`;
}

/** A DO block that raises `refusal` on the server (PL/pgSQL is installed and trusted by default). */
export function substituteSql(refusal: Refusal): string {
  if (!/^[0-9A-Z]{5}$/.test(refusal.sqlstate)) throw new Error(`invalid SQLSTATE ${refusal.sqlstate}`);
  const options = [`ERRCODE = '${refusal.sqlstate}'`, `MESSAGE = ${literal(refusal.message)}`];
  if (refusal.detail !== undefined) options.push(`DETAIL = ${literal(refusal.detail)}`);
  if (refusal.hint !== undefined) options.push(`HINT = ${literal(refusal.hint)}`);
  const body = `BEGIN RAISE EXCEPTION USING ${options.join(', ')}; END`;
  if (body.includes(DOLLAR_TAG)) throw new Error('refusal text contains the dollar-quote tag');
  return `DO ${DOLLAR_TAG}${body}${DOLLAR_TAG}`;
}
