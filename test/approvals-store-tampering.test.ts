// Attacks on the local-mode approval store by someone who can write to Redis (docs/adr/0009,
// "limits"): rewriting a filed request (its times, its settings, its requester), reviving a request
// the sidecar already saw denied or expired with a backdated approval, hiding a deny whose token
// cannot be verified right now, and stretching a window grant to other tables or to a statement
// without its WHERE clause. None of them may end in `approved`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ApprovalRequest, ReviewerAuthentication } from '../policy/approvals/approval-types.ts';
import { analyseSql } from '../policy/sql/parser.ts';
import { requestKey, reviewsKey } from '../sidecar/approvals/approval-keys.ts';
import { serializeReviewRecord } from '../sidecar/approvals/approval-records.ts';
import type { ApprovalAnswer, ApprovalAsk } from '../sidecar/approvals/approval-service.ts';
import { RedisApprovalService } from '../sidecar/approvals/redis-approval-service.ts';
import { createLocalIssuer, type LocalIssuer } from '../sidecar/identity/local-issuer.ts';
import { approvalAsk, approvalSettings, REVIEWER_AUDIENCE, REVIEWER_ISSUER, useApprovalStore } from './harness/approval-fixtures.ts';

const AUDIENCE = REVIEWER_AUDIENCE;
/** Real Redis, reviewer issuer and services on the test clock (a skew the tests advance). */
const bench = useApprovalStore('custos-approvals-tamper-');
const clock = bench.clock;
const service = (options: { gateway?: ApprovalRequest['gateway']; authentication?: ReviewerAuthentication } = {}): RedisApprovalService => bench.service(options);

const settings = approvalSettings;
const ask = approvalAsk;

function reviewerToken(email: string, groups: readonly string[], options: { issuedAt?: number; expiresInSeconds?: number; by?: LocalIssuer } = {}): Promise<string> {
  return (options.by ?? bench.issuer).mint({ email, groups }, {
    audience: AUDIENCE, subject: email.split('@')[0] ?? email,
    ...(options.issuedAt === undefined ? {} : { issuedAt: options.issuedAt }),
    ...(options.expiresInSeconds === undefined ? {} : { expiresInSeconds: options.expiresInSeconds }),
  });
}

/** A review pushed straight into Redis, as an attacker (or the CLI) stores it. */
async function push(request: ApprovalRequest, decision: 'approve' | 'deny', token: string, atMs = clock(), reason = 'checked'): Promise<void> {
  await bench.admin.rpush(reviewsKey(request.id), serializeReviewRecord({ decision, reason, at: new Date(atMs).toISOString(), commandDigest: request.commandDigest, token }));
}

function pendingRequest(answer: ApprovalAnswer): ApprovalRequest {
  if (answer.outcome !== 'pending') assert.fail(`expected pending, got ${answer.outcome}`);
  return answer.request;
}

async function file(svc: RedisApprovalService, question = ask()): Promise<ApprovalRequest> {
  const answer = await svc.ask(question);
  assert.equal(answer.created, true);
  return pendingRequest(answer);
}

/** Rewrites the stored request record (what a Redis writer can do). */
async function rewrite(request: ApprovalRequest, change: (stored: Record<string, unknown>) => Record<string, unknown>): Promise<void> {
  const text = await bench.admin.get(requestKey(request.id));
  assert.ok(text !== null);
  await bench.admin.set(requestKey(request.id), JSON.stringify(change(JSON.parse(text) as Record<string, unknown>)), 'KEEPTTL');
}

describe('approval store tampering: rewritten request records', () => {
  it('does not let a rewritten createdAt make an old harvested token fit', async () => {
    const svc = service();
    const request = await file(svc);
    const now = clock();
    // A genuine dba token harvested 2000 s ago (it aged out long before this request existed).
    const harvested = await reviewerToken('dana@example.com', ['dba'], { issuedAt: Math.floor(now / 1000) - 2000, expiresInSeconds: 300 });
    await rewrite(request, (stored) => ({ ...stored, createdAt: new Date(now - 2100_000).toISOString() }));
    await push(request, 'approve', harvested, now - 1900_000);
    const answer = await svc.ask(ask());
    assert.notEqual(answer.outcome, 'approved');
    // The tampered record is set aside: a fresh request goes to the reviewers.
    assert.equal(answer.created, true);
    assert.notEqual(pendingRequest(answer).id, request.id);
  });

  it('refuses a request whose createdAt is in the future', async () => {
    const svc = service();
    const request = await file(svc);
    await rewrite(request, (stored) => ({
      ...stored, createdAt: new Date(clock() + 3_600_000).toISOString(), expiresAt: new Date(clock() + 7_200_000).toISOString(),
    }));
    const answer = await svc.ask(ask());
    assert.equal(answer.created, true);
    assert.notEqual(pendingRequest(answer).id, request.id);
  });

  it('does not take settings from the stored request: added reviewers, widened windows, a tightened rule', async () => {
    const svc = service();
    const windowed = ask({ settings: settings({ grant: { scope: 'window', windowSeconds: 600 } }) });
    const request = await file(svc, windowed);
    // mallory (not a dba) adds herself as a reviewer user and widens the window to a year.
    await rewrite(request, (stored) => ({
      ...stored, settings: { ...(stored['settings'] as object), reviewers: { groups: ['dba'], users: ['mallory@example.com'] }, grant: { scope: 'window', windowSeconds: 600 } },
    }));
    await push(request, 'approve', await reviewerToken('mallory@example.com', ['dev']));
    const answer = await svc.ask(windowed);
    assert.notEqual(answer.outcome, 'approved');
    assert.equal(answer.created, true);

    // A stored window wider than any rule allows is refused when parsed.
    const second = pendingRequest(answer);
    await rewrite(second, (stored) => ({ ...stored, settings: { ...(stored['settings'] as object), grant: { scope: 'window', windowSeconds: 31_536_000 } } }));
    const parsed = await svc.ask(windowed);
    assert.notEqual(parsed.outcome, 'approved');

    // The rule was tightened to two approvals after a request was filed and approved by one: the
    // request filed under the old rule does not run the statement.
    await bench.admin.flushall();
    const loose = await file(svc, ask());
    await push(loose, 'approve', await reviewerToken('dana@example.com', ['dba']));
    const tightened = await svc.ask(ask({ settings: settings({ minApprovals: 2 }) }));
    assert.notEqual(tightened.outcome, 'approved');
    assert.equal(tightened.created, true);
  });

  it('does not let a window grant outlive its bound through a rewritten request', async () => {
    const svc = service();
    const windowed = ask({ settings: settings({ grant: { scope: 'window', windowSeconds: 600 } }), sql: 'DELETE FROM invoices WHERE id = 1' });
    const request = await file(svc, windowed);
    await push(request, 'approve', await reviewerToken('dana@example.com', ['dba']));
    assert.equal((await svc.ask(windowed)).outcome, 'approved');
    await rewrite(request, (stored) => ({ ...stored, settings: { ...(stored['settings'] as object), grant: { scope: 'window', windowSeconds: 86_400 } } }));
    bench.skewMs = 700_000;
    const later = await svc.ask({ ...windowed, sql: 'DELETE FROM invoices WHERE id = 2', settings: settings({ grant: { scope: 'window', windowSeconds: 86_400 } }) });
    assert.notEqual(later.outcome, 'approved');
  });

  it('does not let a rewritten requester turn a self-review into a review by someone else', async () => {
    const svc = service();
    const dana = ask({ requester: { id: `${REVIEWER_ISSUER}#dana`, kind: 'OIDC' } });
    const request = await file(svc, dana);
    await rewrite(request, (stored) => ({ ...stored, requester: { id: `${REVIEWER_ISSUER}#someone-else`, kind: 'OIDC' } }));
    await push(request, 'approve', await reviewerToken('dana@example.com', ['dba']));
    const answer = await svc.ask(dana);
    assert.notEqual(answer.outcome, 'approved');
    assert.equal(answer.created, true);
  });

  it('does not answer another requester, or another gateway, from a request rewritten to name them', async () => {
    const svc = service();
    const request = await file(svc);
    await push(request, 'approve', await reviewerToken('dana@example.com', ['dba']));
    // The approved request is re-pointed at the billing SA's digest entry from another requester's.
    const other = ask({ requester: { id: 'system:serviceaccount:payments:other', kind: 'ServiceAccount' } });
    const otherRequest = await file(svc, other);
    await rewrite(request, (stored) => ({ ...stored, id: otherRequest.id, commandDigest: otherRequest.commandDigest }));
    await bench.admin.set(requestKey(otherRequest.id), (await bench.admin.get(requestKey(request.id))) ?? '', 'KEEPTTL');
    await bench.admin.rpush(reviewsKey(otherRequest.id), ...(await bench.admin.lrange(reviewsKey(request.id), 0, -1)).map((r) => r.replace(request.commandDigest, otherRequest.commandDigest)));
    const answer = await svc.ask(other);
    assert.notEqual(answer.outcome, 'approved');

    // The same record under another gateway: this sidecar does not take it.
    await bench.admin.flushall();
    const mine = await file(svc);
    await rewrite(mine, (stored) => ({ ...stored, gateway: { id: 'elsewhere' } }));
    await push(mine, 'approve', await reviewerToken('dana@example.com', ['dba']));
    const elsewhere = await svc.ask(ask());
    assert.notEqual(elsewhere.outcome, 'approved');
  });
});

describe('approval store tampering: finality', () => {
  it('never revives a request this sidecar saw denied, even with a backdated approval that tallies first', async () => {
    const svc = service();
    const request = await file(svc);
    const filedAt = Date.parse(request.createdAt);
    await push(request, 'deny', await reviewerToken('erin@example.com', ['dba']), clock(), 'no ticket');
    assert.equal((await svc.ask(ask())).outcome, 'denied');
    // The attacker rewrites the review list: a genuine approval dated before the deny goes first.
    const approval = await reviewerToken('dana@example.com', ['dba']);
    await bench.admin.del(reviewsKey(request.id));
    await push(request, 'approve', approval, filedAt + 1);
    for (const outcome of [(await svc.ask(ask())).outcome, (await svc.ask(ask())).outcome]) {
      assert.ok(['denied', 'consumed'].includes(outcome), outcome);
    }
  });

  it('never revives a request this sidecar saw expired with a backdated approval', async () => {
    const svc = service();
    const short = ask({ settings: settings({ ttlSeconds: 60 }) });
    const request = await file(svc, short);
    bench.skewMs = 61_000;
    const held = await svc.wait(request, { signal: new AbortController().signal, deadline: new Date(clock() + 1000) });
    assert.equal(held.outcome, 'expired');
    // A genuine reviewer token whose review is backdated into the request's lifetime.
    const backdatedAt = Date.parse(request.createdAt) + 30_000;
    await push(request, 'approve', await reviewerToken('dana@example.com', ['dba'], { issuedAt: Math.floor(backdatedAt / 1000) - 10 }), backdatedAt);
    assert.notEqual((await svc.wait(request, { signal: new AbortController().signal, deadline: new Date(clock() + 300) })).outcome, 'approved');
    const again = await svc.ask(short);
    assert.notEqual(again.outcome, 'approved');
  });
});

describe('approval store tampering: denials that cannot be verified right now', () => {
  it('answers unavailable, not approved, while the reviewer JWKS is unreachable and a deny is on record', async () => {
    const { jwksFile: _file, ...rest } = bench.auth;
    const down: ReviewerAuthentication = { ...rest, jwksUri: 'http://127.0.0.1:1/jwks' };
    const svc = service({ authentication: down });
    const request = await file(svc);
    await push(request, 'deny', await reviewerToken('erin@example.com', ['dba']), clock(), 'no ticket');
    await push(request, 'approve', await reviewerToken('dana@example.com', ['dba']));
    assert.equal((await svc.ask(ask())).outcome, 'unavailable');
    assert.equal((await svc.wait(request, { signal: new AbortController().signal, deadline: new Date(clock() + 300) })).outcome, 'unavailable');
    // With the keys back the deny counts first: denied, never approved.
    const healthy = service();
    assert.equal((await healthy.ask(ask())).outcome, 'denied');
  });

  it('answers unavailable when a deny is signed with a key id the JWKS does not (yet) hold', async () => {
    const svc = service();
    const request = await file(svc);
    const rotated = await createLocalIssuer({ issuer: REVIEWER_ISSUER, alg: 'ES256', kid: 'next-key', clock });
    await push(request, 'deny', await reviewerToken('erin@example.com', ['dba'], { by: rotated }), clock(), 'no ticket');
    await push(request, 'approve', await reviewerToken('dana@example.com', ['dba']));
    assert.equal((await svc.ask(ask())).outcome, 'unavailable');
    assert.equal((await svc.ask(ask())).outcome, 'unavailable');
  });

  it('still ignores (and logs) a deny whose token is permanently invalid', async () => {
    const svc = service();
    const request = await file(svc);
    const impostor = await createLocalIssuer({ issuer: REVIEWER_ISSUER, alg: 'ES256', kid: bench.issuer.kid, clock });
    const now = Math.floor(clock() / 1000);
    await push(request, 'deny', await reviewerToken('erin@example.com', ['dba'], { by: impostor }), clock(), 'forged');
    await push(request, 'deny', await reviewerToken('frank@example.com', ['dba'], { issuedAt: now - 1200, expiresInSeconds: 600 }), clock(), 'expired');
    await push(request, 'approve', await reviewerToken('dana@example.com', ['dba']));
    assert.equal((await svc.ask(ask())).outcome, 'approved');
    assert.deepEqual(bench.warnings.filter((w) => w['approvalRequest'] === request.id).map((w) => w['why']).sort(), ['bad-signature', 'expired']);
  });
});

/** An ask as the session builds it: normalized text and libpg_query's fingerprint of the real statement. */
function statement(sql: string, overrides: Partial<ApprovalAsk> = {}): ApprovalAsk {
  const analysis = analyseSql(sql);
  if (!analysis.ok) assert.fail(analysis.error);
  return ask({ sql, command: analysis.normalized, fingerprint: analysis.fingerprint, ...overrides });
}

describe('approval store tampering: window grants', () => {
  it('does not stretch a window to another schema or to the statement without its WHERE clause', async () => {
    const svc = service();
    const windowed = settings({ grant: { scope: 'window', windowSeconds: 600 } });
    const approvedStatement = statement('DELETE FROM scratch.invoices WHERE id = 1', { settings: windowed });
    // libpg_query's fingerprint ignores the schema: the grant must not be keyed on it alone.
    assert.equal(statement('DELETE FROM public.invoices WHERE id = 1').fingerprint, approvedStatement.fingerprint);
    const request = await file(svc, approvedStatement);
    await push(request, 'approve', await reviewerToken('dana@example.com', ['dba']));
    assert.equal((await svc.ask(approvedStatement)).outcome, 'approved');
    const sameShape = await svc.ask(statement('DELETE FROM scratch.invoices WHERE id = 2', { settings: windowed }));
    assert.ok(sameShape.outcome === 'approved' && sameShape.via === 'window', sameShape.outcome);
    for (const sql of ['DELETE FROM public.invoices WHERE id = 1', 'DELETE FROM scratch.invoices']) {
      const answer = await svc.ask(statement(sql, { settings: windowed }));
      assert.equal(answer.outcome, 'pending', sql);
      assert.equal(answer.created, true, sql);
    }
    // Another database, target user or rule is another grant too.
    for (const other of [
      { target: { name: 'invoices-db', protocol: 'postgres' as const, database: 'other', user: 'app' } },
      { target: { name: 'invoices-db', protocol: 'postgres' as const, database: 'app', user: 'admin' } },
      { policy: { name: 'billing', namespace: 'payments', version: '7', rule: 'another-rule' } },
    ]) {
      assert.equal((await svc.ask(statement('DELETE FROM scratch.invoices WHERE id = 3', { settings: windowed, ...other }))).outcome, 'pending');
    }
  });
});
