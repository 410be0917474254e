// Acceptance: just-in-time approval of `require-approval` statements in the PostgreSQL session
// (issue 5, sidecar part), against a real sidecar process, real PostgreSQL and real Redis, with
// reviewers authenticated by real tokens of a local issuer. Every "never executes" claim is checked
// on the table itself (the upstream role owns it: a statement let through would take effect), and
// every step in the audit spool, linked by the request id.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { AuditEvent } from '../audit/event.ts';
import { requestKey, reviewChannel, reviewsKey } from '../sidecar/approvals/approval-keys.ts';
import { parseRequest, serializeReviewRecord } from '../sidecar/approvals/approval-records.ts';
import * as fe from '../sidecar/protocols/postgres/codec/frontend-serializer.ts';
import { byReason, uniqueName, waitForEvents } from './harness/audit-events.ts';
import { CUSTOS_CLI, NODE, startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { approvalBlock, type ApprovalRuleOptions, UNFILTERED_WRITES_RULE } from './harness/approval-fixtures.ts';
import { createBillingSchema, runCommand } from './harness/fixtures.ts';
import { createMaskingSchema, expectedPartialEmail, CUSTOMERS, maskingPolicy, writeHmacKey } from './harness/masking-fixtures.ts';
import type { PolicyDocument } from './harness/sidecar-files.ts';
import { sqlstateOf, WireClient, type Message } from './harness/wire-client.ts';
import { createConnection } from 'node:net';

/**
 * The example policy with unfiltered writes needing a `dba`'s approval: DELETE held (`mode`), and
 * with `withReturnRules` an unfiltered UPDATE in return mode and a DELETE of customers held only
 * 2 s; reviewers authenticate with tokens of the stack's issuer for their own audience.
 */
function approvalPolicy(options: ApprovalRuleOptions, withReturnRules = false): (doc: PolicyDocument) => void {
  return (doc) => {
    doc.setIn(['spec', 'rules', UNFILTERED_WRITES_RULE], {
      name: 'approve-unfiltered-writes',
      match: { sql: { where: 'missing-or-constant' } },
      action: 'require-approval',
      message: 'a write without a WHERE clause needs a DBA',
      approval: approvalBlock(options),
    });
    if (withReturnRules) {
      const rules = doc.getIn(['spec', 'rules']) as { items: unknown[] };
      rules.items.splice(UNFILTERED_WRITES_RULE, 0,
        doc.createNode({
          name: 'approve-customer-renames',
          match: { sql: { statements: ['update'], objects: ['public.customers'], where: 'missing-or-constant' } },
          action: 'require-approval',
          approval: { ...approvalBlock({ mode: 'return' }), grant: { scope: 'window', windowSeconds: 600 } },
        }),
        doc.createNode({
          name: 'approve-unfiltered-updates',
          match: { sql: { statements: ['update'], where: 'missing-or-constant' } },
          action: 'require-approval',
          approval: approvalBlock({ mode: 'return' }),
        }),
        doc.createNode({
          name: 'approve-customer-wipes',
          match: { sql: { statements: ['delete'], objects: ['public.customers'], where: 'missing-or-constant' } },
          action: 'require-approval',
          approval: approvalBlock({ mode: 'hold', holdTimeoutSeconds: 2 }),
        }));
    }
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
    assert.ok(!events.some((e) => e.reason === 'x'), 'a SET refused in a failed transaction changes no reason');
  });

  it('intercepts SET custos.reason in the extended protocol too (drivers that prepare everything)', async () => {
    const name = uniqueName('reason-extended');
    const client = await connectAs(stack, name);
    const reason = `INC-99 ${name}`;
    try {
      const set = await client.query({ name: 'why', text: `SET custos.reason = '${reason}'` });
      assert.equal(set.command, 'SET');
      assert.equal((await client.query<Record<string, string>>('SHOW custos.reason')).rows[0]?.['custos.reason'], '');
      // Executing the prepared statement again keeps working (the stand-in stays prepared upstream).
      assert.equal((await client.query({ name: 'why', text: `SET custos.reason = '${reason}'` })).command, 'SET');
    } finally {
      await client.end();
    }
    const events = await waitForEvents(stack.spoolDir, (all) => all.some((e) => e.reason === reason && e.command?.text === 'SHOW custos.reason'));
    assert.ok(events.some((e) => e.reason === reason && e.operation === 'SET' && /caller reason set/.test(e.message ?? '')));
  });
});

/** Writes a review the way `custos approvals approve|deny` does: the reviewer's token, the digest they read, then a wake-up. */
async function writeReview(stack: CustosStack, redis: Redis, id: string, who: keyof typeof REVIEWERS, decision: 'approve' | 'deny', reason: string): Promise<void> {
  const text = await redis.get(requestKey(id));
  assert.ok(text !== null, `request ${id} is in Redis`);
  const request = parseRequest(text, id);
  const token = await stack.issuer.mint(REVIEWERS[who], { audience: 'custos-reviews', subject: who, expiresInSeconds: 300 });
  await redis.rpush(reviewsKey(id), serializeReviewRecord({ decision, reason, at: new Date().toISOString(), commandDigest: request.commandDigest, token }));
  await redis.publish(reviewChannel(id), 'review');
}

// Requests are bound to the exact statement (its digest): each test below uses a statement text of
// its own, so that one test's request (approved, denied, pending) never answers another's.

/** Reviewers as the local issuer authenticates them: two in the `dba` group, one outside it. */
const REVIEWERS = {
  alice: { email: 'alice@example.com', groups: ['dba'] },
  carol: { email: 'carol@example.com', groups: ['dba'] },
  bob: { email: 'bob@example.com', groups: ['developers'] },
} as const;

describe('require-approval with Redis', () => {
  let stack: CustosStack;
  let redis: Redis;

  before(async () => {
    stack = await startCustosStack({ redis: true, editPolicy: approvalPolicy({ mode: 'hold' }, true) });
    await createBillingSchema(stack);
    redis = new Redis(stack.redis?.url ?? '', { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
  });
  after(async () => {
    redis.disconnect();
    await stack.stop();
  });

  async function review(id: string, who: keyof typeof REVIEWERS, decision: 'approve' | 'deny', reason: string): Promise<void> {
    await writeReview(stack, redis, id, who, decision, reason);
  }

  /** A review through the real CLI (`custos approvals approve|deny`), with the reviewer's token in the environment. */
  async function reviewWithCli(id: string, who: keyof typeof REVIEWERS, decision: 'approve' | 'deny', reason: string): Promise<string> {
    const token = await stack.issuer.mint(REVIEWERS[who], { audience: 'custos-reviews', subject: who, expiresInSeconds: 300 });
    const result = await runCommand(NODE, [CUSTOS_CLI, 'approvals', decision, id, '--reason', reason, '--redis', stack.redis?.url ?? ''], {
      env: { ...process.env, CUSTOS_REVIEWER_TOKEN: token },
    });
    return `${result.code} ${result.stdout}${result.stderr}`;
  }

  /** The approval events of one session (by its reason), once `ready` holds. */
  async function approvalEvents(name: string, ready: (mine: AuditEvent[]) => boolean): Promise<AuditEvent[]> {
    return byReason(await waitForEvents(stack.spoolDir, (all) => ready(byReason(all, name)), 15_000), name);
  }

  /** The id of the request this session filed (other than `except`), from its approval.requested event. */
  async function requestedId(name: string, except?: string): Promise<string> {
    const filed = (mine: readonly AuditEvent[]): AuditEvent | undefined =>
      ofType(mine, 'approval.requested').find((e) => e.outcome === 'unknown' && e.approval?.id !== except);
    const id = filed(await approvalEvents(name, (mine) => filed(mine) !== undefined))?.approval?.id;
    assert.ok(id !== undefined && /^ar-[a-z2-7]{12}$/.test(id), `a request id, got ${String(id)}`);
    return id;
  }

  async function amounts(): Promise<string> {
    return (await stack.postgres.psql("SELECT string_agg(amount::text, ',' ORDER BY id) FROM invoices")).trim();
  }

  it('holds DELETE FROM invoices until a dba approves, then runs it once; the trail names requester, statement, reviewer, reason and outcome', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('hold');
    const client = await connectAs(stack, name);
    try {
      const held = client.query('DELETE FROM invoices').then((r) => r, (e: unknown) => e as Error);
      const id = await requestedId(name);
      assert.equal(await invoiceCount(stack), 5, 'nothing runs while the request is pending');
      // A reviewer outside the group is refused by the CLI, and would not count if written anyway.
      assert.doesNotMatch(await reviewWithCli(id, 'bob', 'approve', 'looks fine to me'), /^0 /);
      await review(id, 'bob', 'approve', 'looks fine to me');
      assert.match(await reviewWithCli(id, 'alice', 'approve', 'INC-42: duplicate import'), /^0 /);
      const result = await held;
      if (result instanceof Error) assert.fail(`the held statement did not run: ${result.message}`);
      assert.equal(result.command, 'DELETE');
      assert.equal(result.rowCount, 5);
      assert.equal(await invoiceCount(stack), 0);
      // The session carries on normally after the hold.
      assert.equal((await client.query<{ n: number }>('SELECT count(*)::int AS n FROM invoices')).rows[0]?.n, 0);

      const events = await approvalEvents(name, (mine) => mine.some((e) => e.event_type === 'db.query.result' && e.result?.command_tag === 'DELETE 5'));
      const attempt = ofType(events, 'db.query.attempt').find((e) => e.policy?.decision === 'require_approval');
      assert.ok(attempt);
      assert.equal(attempt.actor?.id, `${stack.issuer.issuer} repo:acme/billing:ref:refs/heads/main`);
      assert.equal(attempt.command?.text, 'DELETE FROM invoices');
      assert.equal(attempt.policy?.rule, 'approve-unfiltered-writes');
      const requested = ofType(events, 'approval.requested')[0];
      assert.equal(requested?.attempt_id, attempt.event_id);
      assert.equal(requested.approval?.mode, 'hold');
      assert.equal(requested.approval.min_approvals, 1);
      assert.match(requested.approval.digest, /^sha256:[0-9a-f]{64}$/);
      assert.ok(requested.approval.expires_at !== undefined);
      const executed = ofType(events, 'approval.executed')[0];
      assert.equal(executed?.approval?.id, id);
      assert.equal(executed.approval.phase, 'Approved');
      assert.deepEqual(executed.approval.reviewers.map((r) => [r.username, r.decision, r.reason]), [['alice@example.com', 'approve', 'INC-42: duplicate import']]);
      assert.equal(executed.command?.text, 'DELETE FROM invoices');
      const result2 = ofType(events, 'db.query.result').find((e) => e.attempt_id === attempt.event_id);
      assert.equal(result2?.outcome, 'success');
      assert.equal(result2.result?.rows, 5);
      // Never literals or tokens in the trail.
      assert.ok(!JSON.stringify(events).includes('eyJ'), 'no token in the audit events');
    } finally {
      await client.end();
    }
  });

  it('return mode: fails fast naming the request; after approval the identical statement runs once; a second run needs a new request', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('return');
    const client = await connectAs(stack, name);
    try {
      const first = await errorOfQuery(client, 'UPDATE invoices SET amount = amount + 1');
      assert.equal(first.code, '57014');
      const id = /request (ar-[a-z2-7]{12}) is pending/.exec(first.message)?.[1];
      assert.ok(id !== undefined, first.message);
      assert.match(first.message, new RegExp(`a reviewer approves it with: custos approvals approve ${id} --reason`));
      assert.match(first.detail ?? '', /run the identical statement again/);
      assert.equal(await amounts(), '10,20,30,40,50');
      // Asking again before approval finds the same request.
      assert.match((await errorOfQuery(client, 'UPDATE invoices SET amount = amount + 1')).message, new RegExp(id));

      await review(id, 'alice', 'approve', 'month-end correction');
      const ran = await client.query('UPDATE invoices SET amount = amount + 1');
      assert.equal(ran.rowCount, 5);
      assert.equal(await amounts(), '11,21,31,41,51');

      const again = await errorOfQuery(client, 'UPDATE invoices SET amount = amount + 1');
      assert.equal(again.code, '57014');
      const second = /request (ar-[a-z2-7]{12}) is pending/.exec(again.message)?.[1];
      assert.ok(second !== undefined && second !== id, `a new request, not ${id}: ${again.message}`);
      assert.equal(await amounts(), '11,21,31,41,51', 'the approval ran exactly once');
    } finally {
      await client.end();
    }
  });

  it('an approval cannot be used for a different statement or other parameters (extended protocol)', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('digest');
    const client = await connectAs(stack, name);
    try {
      const bump = (n: number): pg.QueryConfig => ({ text: 'UPDATE invoices SET amount = amount + $1', values: [n] });
      const first = await client.query(bump(1)).then(() => assert.fail('ran unapproved'), (e: unknown) => e as Error & { code?: string });
      assert.equal(first.code, '57014');
      const id = /request (ar-[a-z2-7]{12})/.exec(first.message)?.[1];
      assert.ok(id !== undefined);
      await review(id, 'carol', 'approve', 'one euro correction');

      for (const other of [bump(2), { text: 'UPDATE invoices SET amount = amount + $1 ', values: [1] }]) {
        const refused = await client.query(other).then(() => assert.fail('ran with another statement'), (e: unknown) => e as Error & { code?: string });
        assert.equal(refused.code, '57014');
        assert.doesNotMatch(refused.message, new RegExp(id));
      }
      const simpleText = await errorOfQuery(client, 'UPDATE invoices SET amount = amount + 1');
      assert.doesNotMatch(simpleText.message, new RegExp(id), 'the simple-protocol text is another statement than the bound one');
      assert.equal(await amounts(), '10,20,30,40,50');
      // The extended protocol stays in step: the same session runs the approved statement.
      assert.equal((await client.query(bump(1))).rowCount, 5);
      assert.equal(await amounts(), '11,21,31,41,51');
    } finally {
      await client.end();
    }
  });

  it('a window grant lets the same identity rerun statements of the approved fingerprint, and nothing else', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('window');
    const client = await connectAs(stack, name);
    const names = async (): Promise<string> => (await stack.postgres.psql("SELECT string_agg(name, ',' ORDER BY id) FROM customers")).trim();
    try {
      const first = await errorOfQuery(client, "UPDATE customers SET name = name || '!'");
      const id = /request (ar-[a-z2-7]{12}) is pending/.exec(first.message)?.[1];
      assert.ok(id !== undefined, first.message);
      await review(id, 'alice', 'approve', 'rename window for the migration');
      assert.equal((await client.query("UPDATE customers SET name = name || '!'")).rowCount, 2);
      // Same fingerprint (other constants): covered by the window, no new request.
      assert.equal((await client.query("UPDATE customers SET name = name || '?'")).rowCount, 2);
      assert.equal(await names(), 'Acme!?,Globex!?');
      // Another fingerprint is not.
      const other = await errorOfQuery(client, 'UPDATE customers SET name = upper(name)');
      assert.equal(other.code, '57014');
      assert.equal(await names(), 'Acme!?,Globex!?');
      const events = await approvalEvents(name, (mine) => ofType(mine, 'approval.executed').length >= 2);
      assert.ok(ofType(events, 'approval.executed').some((e) => e.approval?.via === 'window'), 'the second run is recorded as covered by the window');
    } finally {
      await client.end();
    }
  });

  it('a denial ends the held statement with 57014 naming the reviewer and reason; nothing runs', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('deny');
    const client = await connectAs(stack, name);
    try {
      await client.query('BEGIN');
      const held = client.query('DELETE FROM invoices WHERE true').then(() => assert.fail('ran though denied'), (e: unknown) => e as Error & { code?: string });
      const id = await requestedId(name);
      await review(id, 'alice', 'deny', 'not during the month-end close');
      const error = await held;
      assert.equal(error.code, '57014');
      assert.match(error.message, new RegExp(`approval request ${id} was denied by alice@example.com: "not during the month-end close"`));
      // The transaction failed coherently, as after any error.
      assert.equal(sqlstateOf(await errorOfQuery(client, 'SELECT 1')), '25P02');
      await client.query('ROLLBACK');
      assert.equal(await invoiceCount(stack), 5);
      const events = await approvalEvents(name, (mine) => ofType(mine, 'approval.decided').some((e) => e.approval?.id === id));
      const decided = ofType(events, 'approval.decided').find((e) => e.approval?.id === id);
      assert.equal(decided?.approval?.phase, 'Denied');
      assert.deepEqual(decided.approval.reviewers.map((r) => [r.username, r.decision]), [['alice@example.com', 'deny']]);
      assert.equal(ofType(events, 'approval.executed').length, 0);
    } finally {
      await client.end();
    }
  });

  it('the hold timeout ends the statement with 57014 and approval.expired; nothing runs', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('timeout');
    const client = await connectAs(stack, name);
    try {
      const error = await errorOfQuery(client, 'DELETE FROM customers');
      assert.equal(error.code, '57014');
      assert.match(error.message, /was not decided within 2 s; the statement was not run/);
      assert.equal(Number((await stack.postgres.psql('SELECT count(*) FROM customers')).trim()), 2);
      const events = await approvalEvents(name, (mine) => ofType(mine, 'approval.expired').length > 0);
      assert.equal(ofType(events, 'approval.expired')[0]?.outcome, 'failure');
      assert.equal(ofType(events, 'approval.executed').length, 0);
    } finally {
      await client.end();
    }
  });

  it('holds a pipelined extended-protocol batch in order: the messages behind the held Execute wait, then run after it', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('pipeline');
    const { client } = await WireClient.login(stack.port, await stack.token(), { application_name: name, database: stack.postgres.database });
    try {
      client.send(Buffer.concat([
        fe.parse('', 'DELETE FROM invoices WHERE $1::int > 0'),
        fe.bind({ params: [Buffer.from('1')] }),
        fe.execute(),
        fe.sync(),
        fe.query('SELECT count(*) FROM invoices'),
      ]));
      const id = await requestedId(name);
      assert.equal(await invoiceCount(stack), 5);
      await review(id, 'alice', 'approve', 'pipelined batch');
      const batch = await client.until((m) => m.type === 'ReadyForQuery', 15_000);
      assert.deepEqual(batch.map((m) => m.type), ['ParseComplete', 'BindComplete', 'CommandComplete', 'ReadyForQuery']);
      assert.deepEqual(tagOf(batch[2]), 'DELETE 5');
      const query = await client.until((m) => m.type === 'ReadyForQuery');
      const row = query.find((m) => m.type === 'DataRow');
      assert.equal(row?.type === 'DataRow' ? row.values[0]?.toString() : undefined, '0', 'the query behind the held batch ran after it');
    } finally {
      client.end();
    }
  });

  it('an approval that arrives after the caller token expired does not run the statement', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('expired-caller');
    const expiresAt = Math.floor(Date.now() / 1000) + 3;
    const client = new pg.Client({ ...stack.clientConfig(await stack.token({}, { expiresInSeconds: 3 })), application_name: name });
    await client.connect();
    client.on('error', () => undefined);
    try {
      const held = client.query('DELETE FROM invoices WHERE 2 > 1').then(() => assert.fail('ran for an expired caller'), (e: unknown) => e as Error & { code?: string });
      const id = await requestedId(name);
      while (Date.now() / 1000 <= expiresAt + 1) await new Promise((r) => setTimeout(r, 200));
      await review(id, 'alice', 'approve', 'approved too late for this token');
      const error = await held;
      assert.equal(error.code, '57014');
      assert.match(error.message, /caller token expired while the statement waited for approval/);
      assert.equal(await invoiceCount(stack), 5);
      const events = await approvalEvents(name, (mine) => ofType(mine, 'approval.cancelled').length > 0);
      assert.equal(ofType(events, 'approval.executed').length, 0);
    } finally {
      await client.end().catch(() => undefined);
    }
  });

  it('a client cancel while held ends the wait with 57014; the session survives and nothing runs, even after a later approval', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('cancel');
    const client = await connectAs(stack, name);
    try {
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
      const held = client.query('DELETE FROM public.invoices').then(() => assert.fail('ran though cancelled'), (e: unknown) => e as Error & { code?: string });
      const id = await requestedId(name);
      await sendCancel(stack.port, processID, secretKey);
      const error = await held;
      assert.equal(error.code, '57014');
      assert.equal(error.message, 'canceling statement due to user request');
      assert.equal((await client.query<{ n: number }>('SELECT count(*)::int AS n FROM invoices')).rows[0]?.n, 5, 'the session is usable');
      const events = await approvalEvents(name, (mine) => ofType(mine, 'approval.cancelled').length > 0);
      assert.equal(ofType(events, 'approval.cancelled')[0]?.approval?.id, id);
      await review(id, 'alice', 'approve', 'too late');
      assert.equal(await invoiceCount(stack), 5);
    } finally {
      await client.end();
    }
  });

  it('a client disconnecting while held ends the wait (approval.cancelled); nothing runs', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('disconnect');
    const client = await connectAs(stack, name);
    client.on('error', () => undefined);
    const held = client.query('delete from invoices').then(() => undefined, () => undefined);
    const id = await requestedId(name);
    (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await held;
    const events = await approvalEvents(name, (mine) => ofType(mine, 'approval.cancelled').length > 0);
    assert.match(ofType(events, 'approval.cancelled')[0]?.message ?? '', /disconnected/);
    await review(id, 'alice', 'approve', 'too late');
    assert.equal(await invoiceCount(stack), 5);
  });

  it('a Redis outage while pending never executes; the request survives in Redis', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('outage');
    const client = await connectAs(stack, name);
    const server = stack.redis;
    assert.ok(server !== undefined);
    try {
      const held = client.query('DELETE FROM public.customers').then(() => assert.fail('ran during an outage'), (e: unknown) => e as Error & { code?: string });
      const id = await requestedId(name);
      await server.stop();
      const error = await held;
      assert.equal(error.code, '57014');
      assert.equal(Number((await stack.postgres.psql('SELECT count(*) FROM customers')).trim()), 2);
      // While Redis is down, a new approvable statement is refused, not run.
      const down = await errorOfQuery(client, 'DELETE FROM invoices WHERE 1 = 1');
      assert.equal(down.code, '57014');
      assert.match(down.message, /approval service unavailable/);
      assert.equal(await invoiceCount(stack), 5);
      await server.start();
      assert.ok((await redis.get(requestKey(id))) !== null, 'the pending request is still in Redis');
    } finally {
      await client.end();
    }
  });

  it('a sidecar restart while held runs nothing; the request stays in Redis and the resent statement runs once after approval', async () => {
    await createBillingSchema(stack);
    const name = uniqueName('restart');
    const client = await connectAs(stack, name);
    client.on('error', () => undefined);
    const held = client.query('DELETE FROM invoices AS i').then(() => 'ran', () => 'ended');
    const id = await requestedId(name);
    await stack.restartSidecar();
    assert.equal(await held, 'ended');
    assert.equal(await invoiceCount(stack), 5);
    assert.ok((await redis.get(requestKey(id))) !== null, 'the request survived the restart');
    await review(id, 'alice', 'approve', 'after the restart');

    const again = await connectAs(stack, name);
    try {
      const ran = await again.query('DELETE FROM invoices AS i');
      assert.equal(ran.rowCount, 5);
      await createBillingSchema(stack);
      // Single use: the same statement now files a new request (hold mode: it waits; cancel it by ending the session).
      again.on('error', () => undefined);
      const second = again.query('DELETE FROM invoices AS i').then(() => 'ran', () => 'ended');
      const next = await requestedId(name, id);
      assert.notEqual(next, id);
      assert.equal(await invoiceCount(stack), 5);
      (again as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      assert.equal(await second, 'ended');
    } finally {
      await again.end().catch(() => undefined);
    }
  });
});

function tagOf(m: Message | undefined): string | undefined {
  return m?.type === 'CommandComplete' ? m.tag : undefined;
}

/** Sends a CancelRequest with the key the client received, as libpq does (new connection, then close). */
async function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  const key = Buffer.alloc(4);
  key.writeInt32BE(secret);
  await new Promise<void>((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => { socket.end(fe.cancelRequest(pid, key)); });
    socket.once('close', () => { resolve(); });
    socket.once('error', reject);
  });
}

describe('masking: a condition on a masked column under require-approval', () => {
  let stack: CustosStack;
  let redis: Redis;
  let key: Awaited<ReturnType<typeof writeHmacKey>>;

  before(async () => {
    key = await writeHmacKey();
    stack = await startCustosStack({
      redis: true,
      editPolicy: (doc) => {
        maskingPolicy(key.file)(doc);
        doc.setIn(['spec', 'masking', 'predicates'], 'require-approval');
        doc.setIn(['spec', 'defaultApproval'], doc.createNode(approvalBlock({ mode: 'hold' })));
        doc.setIn(['spec', 'reviewerAuthentication'], doc.createNode({
          issuer: String(doc.getIn(['spec', 'issuers', 0, 'issuer'])),
          audience: 'custos-reviews',
          jwksFile: String(doc.getIn(['spec', 'issuers', 0, 'jwksFile'])),
        }));
      },
    });
    await createMaskingSchema(stack);
    await stack.restartSidecar();
    redis = new Redis(stack.redis?.url ?? '', { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
  });
  after(async () => {
    redis.disconnect();
    await stack.stop();
    await key.cleanup();
  });

  it('holds the query until approved, then runs it with its results still masked', async () => {
    const name = uniqueName('masking-predicate');
    const client = await connectAs(stack, name);
    try {
      const held = client.query<{ id: number; email: string }>("SELECT id, email FROM customers WHERE ssn = '123-45-6789'").then((r) => r, (e: unknown) => e as Error);
      const events = byReason(await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'approval.requested'), 15_000), name);
      const requested = ofType(events, 'approval.requested')[0];
      const id = requested?.approval?.id;
      assert.ok(id !== undefined);
      await writeReview(stack, redis, id, 'alice', 'approve', 'fraud investigation FR-7');
      const result = await held;
      if (result instanceof Error) assert.fail(`the approved query did not run: ${result.message}`);
      const customer = CUSTOMERS.find((c) => c.ssn === '123-45-6789');
      assert.ok(customer !== undefined);
      assert.deepEqual(result.rows, [{ id: customer.id, email: expectedPartialEmail(customer.email) }]);
      const after = byReason(await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'db.query.result')), name);
      assert.equal(ofType(after, 'approval.executed')[0]?.approval?.id, id);
      assert.ok((ofType(after, 'db.query.result')[0]?.masking?.masked?.['column:email'] ?? 0) >= 1, 'the result event counts the masked email');
    } finally {
      await client.end();
    }
  });
});
