// Acceptance: the audit trail of masking. Result events say how many values were masked and by
// which rule (`column:<output name>`, `detector:<name>`), exempt callers are recorded as such, and
// no protected value (nor its digit-only, reversed, hex, base64 or hash forms) ever lands in the
// spool, the sidecar's logs or the Redis stream — not even after an attacker has typed real values
// into statements, provoked errors and notices from the data, or an auditor has read clear values.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { AuditEvent } from '../audit/event.ts';
import { allFileBytes, byReason, redisStreamEntries, spoolEvents, streamEvents, uniqueName, waitForEvents } from './harness/audit-events.ts';
import { POD_UID, startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createMaskingSchema, assertNoProtectedValue, CUSTOMERS, leaksIn, maskingPolicy, NEWSLETTER, protectedForms, psqlVia, writeHmacKey } from './harness/masking-fixtures.ts';
import { waitFor } from './harness/processes.ts';

let stack: CustosStack;
let cleanupKey: () => Promise<void> = () => Promise.resolve();
const FORMS = protectedForms();
const C1 = CUSTOMERS[0] ?? assert.fail('fixture');
const names = {
  select: uniqueName('mask-select'),
  derived: uniqueName('mask-derived'),
  detector: uniqueName('mask-detector'),
  refused: uniqueName('mask-refused'),
  exempt: uniqueName('mask-exempt'),
  hostile: uniqueName('mask-hostile'),
};

/** Statements that try to drag protected values into errors, notices, settings and literals. */
const HOSTILE: readonly string[] = [
  `SELECT id FROM customers WHERE email = '${C1.email}'`,
  `SELECT id FROM customers WHERE ssn = '${C1.ssn}' OR card = '${C1.card}'`,
  `SET application_name = '${C1.email}'`,
  `SELECT '${C1.ssn}'::text AS typed_by_the_attacker`,
  'SELECT email::int FROM customers',
  'SELECT card::smallint FROM customers',
  "SELECT translate(ssn, '-', '')::smallint FROM customers",
  "SELECT pg_cancel_backend(translate(ssn, '-', '')::int) FROM customers WHERE id = 1",
  "SELECT set_config('application_name', translate(ssn, '-', ''), false) FROM customers LIMIT 1",
  "SELECT pg_notify('leak', translate(ssn, '-', '')) FROM customers LIMIT 1",
  'INSERT INTO newsletter SELECT email FROM customers',
  "INSERT INTO customers (id, name, email) SELECT 999, 'copy', email FROM customers WHERE id = 1",
  'UPDATE customers SET email = (SELECT email FROM customers WHERE id = 2) WHERE id = 1',
  'BEGIN',
  "DECLARE c CURSOR FOR SELECT translate(ssn, '-', '')::smallint, pg_terminate_backend(translate(ssn, '-', '')::int) FROM customers",
  'FETCH 1 FROM c',
  'ROLLBACK',
  'SELECT * FROM customers ORDER BY id',
  "SELECT id, reverse(email), translate(ssn, '-', ''), md5(card) FROM customers ORDER BY id",
];

async function run(name: string, statements: readonly string[], token?: string): Promise<void> {
  const client = new pg.Client({ ...stack.clientConfig(token ?? (await stack.token())), application_name: name, query_timeout: 15_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql).catch(() => undefined);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function resultsOf(events: readonly AuditEvent[], name: string): AuditEvent[] {
  return byReason(events, name).filter((e) => e.event_type === 'db.query.result');
}

before(async () => {
  const key = await writeHmacKey();
  cleanupKey = key.cleanup;
  stack = await startCustosStack({ redis: true, editPolicy: maskingPolicy(key.file) });
  await createMaskingSchema(stack);
  await stack.restartSidecar();
  await run(names.select, ['SELECT * FROM customers ORDER BY id']);
  await run(names.derived, ['SELECT id, upper(email) AS u FROM customers ORDER BY id']);
  await run(names.detector, ["SELECT string_agg(email, ' ' ORDER BY email) AS list FROM newsletter"]);
  await run(names.refused, ["SELECT id FROM customers WHERE ssn LIKE '1%'"]);
  await run(names.exempt, ['SELECT * FROM customers ORDER BY id', "SELECT upper(email), translate(ssn, '-', '') FROM customers"], await stack.token({ role: 'auditor' }));
  await run(names.hostile, HOSTILE);
  await psqlVia(stack.port, stack, await stack.token(), ['-c', 'COPY customers TO STDOUT'], { applicationName: uniqueName('mask-copy') });
  await psqlVia(stack.port, stack, await stack.token(), ['-c', "COPY (SELECT translate(ssn, '-', '') FROM customers) TO STDOUT"], { applicationName: uniqueName('mask-copy') });
});

after(async () => {
  await stack.stop();
  await cleanupKey();
});

describe('sidecar masking: audit', () => {
  it('records how many values each column rule masked on the result event', async () => {
    const events = await waitForEvents(stack.spoolDir, (all) => resultsOf(all, names.select).length >= 1);
    const [result] = resultsOf(events, names.select);
    assert.equal(result?.outcome, 'success');
    assert.equal(result.result?.rows, CUSTOMERS.length);
    const masked = result.masking?.masked ?? {};
    assert.equal(masked['column:email'], CUSTOMERS.length, JSON.stringify(result.masking));
    assert.equal(masked['column:ssn'], CUSTOMERS.length, JSON.stringify(result.masking));
    assert.equal(masked['column:card'], CUSTOMERS.length, JSON.stringify(result.masking));
    assert.equal(masked['column:id'], undefined, 'clean columns are not counted');
    assert.equal(masked['column:name'], undefined, 'clean columns are not counted');
    const attempt = byReason(events, names.select).find((e) => e.event_type === 'db.query.attempt');
    assert.notEqual(attempt?.masking?.exempt, true);
  });

  it('records masked derived outputs under their output name', async () => {
    const events = await waitForEvents(stack.spoolDir, (all) => resultsOf(all, names.derived).length >= 1);
    const [result] = resultsOf(events, names.derived);
    assert.equal(result?.masking?.masked?.['column:u'], CUSTOMERS.length, JSON.stringify(result?.masking));
  });

  it('records detector findings as detector:<name> counts', async () => {
    const events = await waitForEvents(stack.spoolDir, (all) => resultsOf(all, names.detector).length >= 1);
    const [result] = resultsOf(events, names.detector);
    assert.equal(result?.masking?.masked?.['detector:email'], NEWSLETTER.length, JSON.stringify(result?.masking));
  });

  it('records a masking refusal as a failed attempt with its SQLSTATE', async () => {
    const events = await waitForEvents(stack.spoolDir, (all) => byReason(all, names.refused).some((e) => e.event_type === 'db.query.attempt'));
    const attempt = byReason(events, names.refused).find((e) => e.event_type === 'db.query.attempt');
    assert.equal(attempt?.outcome, 'failure');
    assert.equal(attempt.result?.sqlstate, '42501');
    assert.equal(attempt.policy?.decision, 'allow', 'the statement policy allowed it; masking refused it');
  });

  it('records exempt reads as exempt, with no masking counts', async () => {
    const events = await waitForEvents(stack.spoolDir, (all) => resultsOf(all, names.exempt).length >= 2);
    const attempts = byReason(events, names.exempt).filter((e) => e.event_type === 'db.query.attempt');
    assert.equal(attempts.length, 2);
    for (const a of attempts) assert.equal(a.masking?.exempt, true);
    for (const r of resultsOf(events, names.exempt)) assert.equal(r.masking?.masked, undefined);
  });

  it('never writes a protected value to the spool', async () => {
    await waitForEvents(stack.spoolDir, (all) => resultsOf(all, names.hostile).length + byReason(all, names.hostile).filter((e) => e.outcome === 'failure').length >= 10);
    const bytes = await allFileBytes(stack.spoolDir);
    assert.ok(bytes.length > 0);
    const leaked = leaksIn(bytes, FORMS);
    const where = (await spoolEvents(stack.spoolDir)).filter((e) => leaksIn(JSON.stringify(e), FORMS).length > 0).map((e) => JSON.stringify(e).slice(0, 400));
    assert.deepEqual(leaked, [], `in events:\n${where.join('\n')}`);
  });

  it('never writes a protected value to the logs', () => {
    const logs = stack.logs();
    assert.ok(logs.length > 0);
    const leaked = leaksIn(logs, FORMS);
    const lines = logs.split('\n').filter((l) => leaksIn(l, FORMS).length > 0).map((l) => l.slice(0, 400));
    assert.deepEqual(leaked, [], `in log lines:\n${lines.join('\n')}`);
  });

  it('never ships a protected value to Redis', async () => {
    const redisUrl = stack.redis?.url ?? '';
    const lastId = (await spoolEvents(stack.spoolDir)).at(-1)?.event_id;
    let entries: Array<[string, string[]]> = [];
    await waitFor('the stream to hold the spool', async () => {
      entries = await redisStreamEntries(redisUrl, POD_UID);
      return streamEvents(entries).some((e) => e.event_id === lastId);
    }, 15_000);
    const flat = entries.map(([id, fields]) => `${id}\n${fields.join('\n')}`).join('\n');
    assertNoProtectedValue(flat, FORMS, 'protected values found');
  });
});
