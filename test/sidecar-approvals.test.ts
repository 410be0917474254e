// Acceptance: just-in-time approval of `require-approval` statements in the PostgreSQL session
// (issue 5, sidecar part), against a real sidecar process, real PostgreSQL and real Redis, with
// reviewers authenticated by real tokens of a local issuer. Every "never executes" claim is checked
// on the table itself (the upstream role owns it: a statement let through would take effect), and
// every step in the audit spool, linked by the request id.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { AuditEvent } from '../audit/event.ts';
import { byReason, uniqueName, waitForEvents } from './harness/audit-events.ts';
import { startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createBillingSchema } from './harness/fixtures.ts';
import type { PolicyDocument } from './harness/sidecar-files.ts';
import { sqlstateOf } from './harness/wire-client.ts';

/** Index of `deny-unfiltered-writes` in examples/policy.yaml: it becomes the approval rule. */
const UNFILTERED_WRITES_RULE = 3;

interface ApprovalRuleOptions {
  readonly mode: 'hold' | 'return';
  readonly holdTimeoutSeconds?: number;
  readonly ttlSeconds?: number;
}

/** The example policy with unfiltered writes held for the `dba` group, and reviewers' tokens from the stack's issuer. */
function approvalPolicy(options: ApprovalRuleOptions): (doc: PolicyDocument) => void {
  return (doc) => {
    doc.setIn(['spec', 'rules', UNFILTERED_WRITES_RULE], {
      name: 'approve-unfiltered-writes',
      match: { sql: { where: 'missing-or-constant' } },
      action: 'require-approval',
      message: 'a write without a WHERE clause needs a DBA',
      approval: {
        reviewers: { groups: ['dba'] },
        mode: options.mode,
        ...(options.mode === 'hold' ? { holdTimeoutSeconds: options.holdTimeoutSeconds ?? 60 } : {}),
        ttlSeconds: options.ttlSeconds ?? 600,
      },
    });
    doc.setIn(['spec', 'reviewerAuthentication'], {
      issuer: String(doc.getIn(['spec', 'issuers', 0, 'issuer'])),
      audience: 'custos-reviews',
      jwksFile: String(doc.getIn(['spec', 'issuers', 0, 'jwksFile'])),
    });
  };
}

async function invoiceCount(stack: CustosStack): Promise<number> {
  return Number((await stack.postgres.psql('SELECT count(*) FROM invoices')).trim());
}

async function connectAs(stack: CustosStack, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ ...stack.clientConfig(await stack.token()), application_name: applicationName });
  await client.connect();
  return client;
}

async function errorOfQuery(client: pg.Client, sql: string): Promise<Error & { code?: string; detail?: string; hint?: string }> {
  const outcome = await client.query(sql).then((r) => r, (e: unknown) => e as Error & { code?: string });
  if (!(outcome instanceof Error)) assert.fail(`expected a refusal, the statement ran: ${JSON.stringify((outcome as pg.QueryResult).command)}`);
  return outcome;
}

function ofType(events: readonly AuditEvent[], type: AuditEvent['event_type']): AuditEvent[] {
  return events.filter((e) => e.event_type === type);
}

describe('require-approval without Redis', () => {
  let stack: CustosStack;
  before(async () => {
    stack = await startCustosStack({ editPolicy: approvalPolicy({ mode: 'hold' }) });
    await createBillingSchema(stack);
  });
  after(async () => {
    await stack.stop();
  });

  it('refuses with 57014 saying approvals need Redis, runs nothing, and audits the attempt', async () => {
    const name = uniqueName('no-redis');
    const client = await connectAs(stack, name);
    try {
      const error = await errorOfQuery(client, 'DELETE FROM invoices');
      assert.equal(error.code, '57014');
      assert.match(error.message, /^approval required by policy rule "approve-unfiltered-writes": just-in-time approvals need Redis/);
      assert.equal(await invoiceCount(stack), 5);
      // The session is still usable: the refusal was a substituted statement, not a dropped one.
      assert.equal((await client.query<{ n: number }>('SELECT count(*)::int AS n FROM invoices')).rows[0]?.n, 5);
    } finally {
      await client.end();
    }
    const events = byReason(await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'db.query.attempt')), name);
    const attempt = ofType(events, 'db.query.attempt')[0];
    assert.equal(attempt?.policy?.decision, 'require_approval');
    assert.equal(attempt.outcome, 'failure');
    assert.equal(attempt.result?.sqlstate, '57014');
    assert.match(attempt.message ?? '', /approvals need Redis/);
    assert.equal(attempt.command?.text, 'DELETE FROM invoices');
  });

  it('intercepts SET custos.reason: the server never sees the value, later events carry it', async () => {
    const name = uniqueName('reason');
    const client = await connectAs(stack, name);
    try {
      const set = await client.query("SET custos.reason = 'INC-4711 clean up duplicate invoices'");
      assert.equal(set.command, 'SET');
      // The server ran a stand-in without the value.
      assert.equal((await client.query<Record<string, string>>('SHOW custos.reason')).rows[0]?.['custos.reason'], '');
      await client.query('SELECT 1');
      // Inside a failed transaction, the stand-in fails as the real SET would: the session stays coherent.
      await client.query('BEGIN');
      assert.equal(sqlstateOf(await errorOfQuery(client, 'SELECT 1/0')), '22012');
      assert.equal(sqlstateOf(await errorOfQuery(client, "SET custos.reason = 'x'")), '25P02');
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
    const reason = 'INC-4711 clean up duplicate invoices';
    const events = await waitForEvents(stack.spoolDir, (all) => all.some((e) => e.reason === reason && e.command?.text === 'SELECT $1'));
    const mine = events.filter((e) => e.reason === reason);
    assert.ok(mine.some((e) => e.event_type === 'db.query.attempt' && e.operation === 'SET' && /caller reason set/.test(e.message ?? '')));
    assert.ok(!events.some((e) => e.command?.text.includes('INC-4711') === true), 'the reason is never a statement text');
  });
});
