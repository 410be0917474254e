// Acceptance: audit delivery. Events reach the local spool before statements run and get to the
// pod's Redis stream exactly once, in order, even when Redis goes away in the middle of a workload;
// the trail verifies with `custos audit verify` and reads back with `custos audit tail`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { AuditEvent } from '../audit/event.ts';
import { redisStreamEntries, spoolEvents, streamEvents, uniqueName } from './harness/audit-events.ts';
import { CUSTOS_CLI, NODE, POD_UID, startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createBillingSchema, runCommand } from './harness/fixtures.ts';
import { waitFor } from './harness/processes.ts';

const SESSIONS = 3;
const STATEMENTS_PER_SESSION = 40;

let stack: CustosStack;
let workloadName: string;
let statementsRun = 0;
let failures: unknown[] = [];

before(async () => {
  stack = await startCustosStack({ redis: true });
  await createBillingSchema(stack);
});

after(async () => {
  await stack.stop();
});

async function session(index: number, onStatement: () => Promise<void>): Promise<void> {
  const client = new pg.Client({ ...stack.clientConfig(await stack.token()), application_name: workloadName });
  await client.connect();
  try {
    for (let i = 0; i < STATEMENTS_PER_SESSION; i++) {
      const id = 1000 + index * 1000 + i;
      const statement = i % 3 === 0
        ? client.query('INSERT INTO invoices (id, customer, amount) VALUES ($1, $2, $3)', [id, `workload ${index}`, i])
        : i % 3 === 1
          ? client.query('SELECT count(*) FROM invoices WHERE id >= $1', [id - i])
          : client.query(`SELECT id FROM invoices WHERE id = ${id - 2}`);
      await statement.catch((e: unknown) => { failures.push(e); });
      await onStatement();
    }
  } finally {
    await client.end();
  }
}

describe('sidecar audit delivery', () => {
  it('keeps serving while Redis is down mid-workload, then ships every event exactly once, in order', async () => {
    workloadName = uniqueName('workload');
    failures = [];
    const total = SESSIONS * STATEMENTS_PER_SESSION;
    let stopped: Promise<void> | undefined;
    let started: Promise<void> | undefined;
    const onStatement = async (): Promise<void> => {
      statementsRun++;
      if (statementsRun === Math.floor(total / 4)) {
        // Stop Redis only once the shipper is demonstrably shipping this workload.
        await waitFor('workload events in the stream', async () =>
          streamEvents(await redisStreamEntries(stack.redis?.url ?? '', POD_UID)).some((e) => e.reason === workloadName), 10_000);
        stopped = stack.redis?.stop();
        await stopped;
      }
      if (statementsRun === Math.floor((total * 3) / 4)) {
        // Let the shipper fail against the dead Redis for a while before it comes back.
        await new Promise((r) => setTimeout(r, 1500));
        started = stack.redis?.start();
        await started;
      }
    };
    await Promise.all(Array.from({ length: SESSIONS }, (_, i) => session(i, onStatement)));
    assert.ok(stopped !== undefined && started !== undefined, 'Redis was stopped and started mid-workload');
    assert.deepEqual(failures, [], 'no statement failed because Redis was down');
    assert.equal(statementsRun, total);

    const spooled = await spoolEvents(stack.spoolDir);
    const mine = spooled.filter((e) => (e.event_type === 'db.query.attempt' || e.event_type === 'db.query.result'));
    const workloadAttempts = mine.filter((e) => e.event_type === 'db.query.attempt' && e.reason === workloadName);
    assert.equal(workloadAttempts.length, total);

    let streamed: AuditEvent[] = [];
    const wanted = new Set(spooled.map((e) => e.event_id));
    try {
      await waitFor('every spooled event in the Redis stream', async () => {
        streamed = streamEvents(await redisStreamEntries(stack.redis?.url ?? '', POD_UID));
        const ids = new Set(streamed.map((e) => e.event_id));
        return [...wanted].every((id) => ids.has(id));
      }, 30_000, 250);
    } catch (e: unknown) {
      const ids = new Set(streamed.map((s) => s.event_id));
      const missing = spooled.filter((s) => !ids.has(s.event_id));
      assert.fail(`${(e as Error).message}: ${missing.length} of ${spooled.length} spooled events missing from the stream, e.g. ${JSON.stringify(missing.slice(0, 3).map((m) => [m.seq, m.event_type]))}`);
    }

    // Exactly once by event_id.
    const counts = new Map<string, number>();
    for (const e of streamed) counts.set(e.event_id, (counts.get(e.event_id) ?? 0) + 1);
    const duplicated = [...counts].filter(([, n]) => n > 1);
    assert.deepEqual(duplicated, [], 'events shipped more than once');
    for (const e of mine) assert.equal(counts.get(e.event_id), 1, `${e.event_type} seq ${e.seq} in the stream exactly once`);

    // In order: seq per boot and session_seq per session increase along the stream.
    const lastSeq = new Map<string, number>();
    const lastSessionSeq = new Map<string, number>();
    for (const e of streamed) {
      const boot = `${e.gateway_id}/${e.boot_id}`;
      assert.ok(e.seq > (lastSeq.get(boot) ?? 0), `seq ${e.seq} after ${String(lastSeq.get(boot))} in boot ${boot}`);
      lastSeq.set(boot, e.seq);
      const session = e.session_id ?? '';
      assert.ok(e.session_seq > (lastSessionSeq.get(session) ?? 0), `session_seq ${e.session_seq} after ${String(lastSessionSeq.get(session))} in session ${session}`);
      lastSessionSeq.set(session, e.session_seq);
    }
    // And the stream carries the same event, byte for byte, as the spool.
    const byId = new Map(streamed.map((e) => [e.event_id, e]));
    for (const e of mine) assert.deepEqual(byId.get(e.event_id), e);

    // The rows the workload inserted are all there.
    const inserted = SESSIONS * Math.ceil(STATEMENTS_PER_SESSION / 3);
    assert.equal((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id >= 1000')).trim(), String(inserted));
  });

  it('verifies the spool with custos audit verify (exit 0)', async () => {
    const result = await runCommand(NODE, [CUSTOS_CLI, 'audit', 'verify', '--spool', stack.spoolDir]);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    const report = JSON.parse(result.stdout) as { ok: boolean; problems: unknown[] };
    assert.equal(report.ok, true);
    assert.deepEqual(report.problems, []);
  });

  it('verifies the Redis stream with custos audit verify (exit 0)', async () => {
    const result = await runCommand(NODE, [CUSTOS_CLI, 'audit', 'verify', '--redis', stack.redis?.url ?? '', '--pod', POD_UID]);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  });

  it('prints the last events with custos audit tail -n 5', async () => {
    const events = await spoolEvents(stack.spoolDir);
    const result = await runCommand(NODE, [CUSTOS_CLI, 'audit', 'tail', '--spool', stack.spoolDir, '-n', '5']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 5, result.stdout);
    // The spool may have grown by a session.end meanwhile: compare with the events as of the tail.
    const after = await spoolEvents(stack.spoolDir);
    const last = after.length >= events.length ? after.slice(-5) : events.slice(-5);
    for (const [i, e] of last.entries()) {
      assert.ok(lines[i]?.includes(`session=${e.session_id ?? '-'}#${e.session_seq}`), `line ${i}: ${String(lines[i])} should show ${e.event_type} ${String(e.session_id)}#${e.session_seq}`);
      assert.ok(lines[i]?.includes(e.event_type));
    }
  });
});
