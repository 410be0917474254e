// Acceptance: no audit, no access. With a small spool and no Redis to drain it, the sidecar fills
// its spool and then refuses statements with 53000 — and a refused statement never ran, while
// every statement that ran has its attempt event on disk.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { spoolEvents } from './harness/audit-events.ts';
import { CUSTOS_CLI, NODE, startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createBillingSchema, runCommand } from './harness/fixtures.ts';
import { sqlstateOf } from './harness/wire-client.ts';

let stack: CustosStack;

before(async () => {
  stack = await startCustosStack({ spoolMaxBytes: 96 * 1024 });
  await createBillingSchema(stack);
});

after(async () => {
  await stack.stop();
});

const insertSql = (id: number): string => `INSERT INTO invoices (id, customer, amount) VALUES (${id}, 'spool ${id}', ${id})`;
const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

describe('sidecar audit spool full', () => {
  const succeeded: number[] = [];
  const refused: number[] = [];

  it('refuses statements with 53000 once the spool is full, and never runs a refused one', async () => {
    const client = await stack.connect();
    client.on('error', () => undefined);
    try {
      for (let id = 100_000; id < 102_000 && refused.length < 5; id++) {
        const outcome = await client.query(insertSql(id)).then(() => undefined, (e: unknown) => e);
        if (outcome === undefined) {
          succeeded.push(id);
        } else {
          assert.equal(sqlstateOf(outcome), '53000', `expected 53000, got ${String(sqlstateOf(outcome))}: ${(outcome as Error).message}`);
          refused.push(id);
        }
      }
      assert.ok(succeeded.length > 10, `the spool took ${succeeded.length} statements first`);
      assert.equal(refused.length, 5, 'the spool filled up');
      // Once full it stays full: everything after the first refusal was refused too.
      assert.ok(Math.min(...refused) > Math.max(...succeeded));
      // Reads are statements too: no audit, no access.
      assert.equal(sqlstateOf(await client.query('SELECT 1').catch((e: unknown) => e)), '53000');
    } finally {
      await client.end().catch(() => undefined);
    }
    const count = Number((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id >= 100000')).trim());
    assert.equal(count, succeeded.length, 'rows inserted == INSERTs that returned success');
    const present = (await stack.postgres.psql(`SELECT count(*) FROM invoices WHERE id IN (${refused.join(',')})`)).trim();
    assert.equal(present, '0', 'no refused INSERT ran');
  });

  it('has the attempt event of every INSERT that ran in the spool', async () => {
    const events = await spoolEvents(stack.spoolDir);
    const digests = new Set(events.filter((e) => e.event_type === 'db.query.attempt' && e.policy?.decision === 'allow').map((e) => e.command?.digest));
    const missing = succeeded.filter((id) => !digests.has(sha256(insertSql(id))));
    assert.deepEqual(missing, [], 'INSERTs that ran without an attempt event on disk');
  });

  it('refuses new sessions with 53000 and reports not ready while the spool is full', async () => {
    const client = new pg.Client(stack.clientConfig(await stack.token()));
    client.on('error', () => undefined);
    assert.equal(sqlstateOf(await client.connect().catch((e: unknown) => e)), '53000');
    const ready = await fetch(`http://127.0.0.1:${stack.httpPort}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(await ready.text(), /audit-spool/);
  });

  it('leaves a spool that custos audit verify accepts', async () => {
    const result = await runCommand(NODE, [CUSTOS_CLI, 'audit', 'verify', '--spool', stack.spoolDir]);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  });
});
