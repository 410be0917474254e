// Local-mode approvals end to end against a real Redis and real signed reviewer tokens: the
// RedisApprovalService (what the sidecar asks) and `custos approvals` (what reviewers run, called
// in-process here; test/approvals-cli.test.ts runs the real command). Forged reviews — another
// issuer's key, another audience, a tampered payload, a stale token, a backdated record, the
// requester reviewing itself past the CLI — must never count.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runApprovals } from '../cli/commands/approvals.ts';
import type { ApprovalRequest } from '../policy/approvals/approval-types.ts';
import { reviewsKey } from '../sidecar/approvals/approval-keys.ts';
import { serializeReviewRecord } from '../sidecar/approvals/approval-records.ts';
import type { ApprovalAnswer, ApprovalAsk } from '../sidecar/approvals/approval-service.ts';
import { RedisApprovalService } from '../sidecar/approvals/redis-approval-service.ts';
import { createLocalIssuer, encodeSegment, mintKubernetesToken } from '../sidecar/identity/local-issuer.ts';
import { approvalAsk, approvalSettings, REVIEWER_AUDIENCE, REVIEWER_ISSUER, SIDECAR_GATEWAY, useApprovalStore } from './harness/approval-fixtures.ts';

const AUDIENCE = REVIEWER_AUDIENCE;
const GATEWAY = SIDECAR_GATEWAY;
/** Real Redis, reviewer issuer and services on the test clock (a skew the tests advance). */
const bench = useApprovalStore('custos-approvals-');
const clock = bench.clock;
const service = (gateway?: ApprovalRequest['gateway']): RedisApprovalService => bench.service(gateway === undefined ? {} : { gateway });

const settings = approvalSettings;
const ask = approvalAsk;

function reviewerToken(email: string, groups: readonly string[], options: { audience?: string; issuedAt?: number; sub?: string } = {}): Promise<string> {
  return bench.issuer.mint({ email, groups }, {
    audience: options.audience ?? AUDIENCE, subject: options.sub ?? email.split('@')[0] ?? email,
    ...(options.issuedAt === undefined ? {} : { issuedAt: options.issuedAt }),
  });
}

/** Runs `custos approvals …` in-process with the token in CUSTOS_REVIEWER_TOKEN. */
async function cli(args: string[], token?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runApprovals([...args, '--redis', bench.redis.url], {
    stdout: (t) => { stdout += t; }, stderr: (t) => { stderr += t; },
    env: token === undefined ? {} : { CUSTOS_REVIEWER_TOKEN: token }, clock,
  });
  return { code, stdout, stderr };
}

async function review(decision: 'approve' | 'deny', id: string, token: string, reason = 'checked JIRA-42'): Promise<void> {
  const result = await cli([decision, id, '--reason', reason], token);
  assert.equal(result.code, 0, result.stderr);
}

/** The request of a `pending` answer (fails the test on any other answer). */
function pendingRequest(answer: ApprovalAnswer): ApprovalRequest {
  if (answer.outcome !== 'pending') assert.fail(`expected pending, got ${answer.outcome}`);
  return answer.request;
}

/** How an answer ends: the outcome, or `approved:<via>`. */
function ending(answer: ApprovalAnswer): string {
  return answer.outcome === 'approved' ? `approved:${answer.via}` : answer.outcome;
}

async function pendingId(svc: RedisApprovalService, question = ask()): Promise<string> {
  const answer = await svc.ask(question);
  assert.equal(answer.created, true);
  return pendingRequest(answer).id;
}

describe('RedisApprovalService with custos approvals', () => {
  it('files a request once, approves it once, then reports it consumed and files anew', async () => {
    const svc = service();
    const id = await pendingId(svc);
    const again = await svc.ask(ask());
    assert.equal(again.outcome, 'pending');
    assert.equal(again.created, undefined);
    assert.equal(pendingRequest(again).id, id);

    await review('approve', id, await reviewerToken('dana@example.com', ['dba']));
    const approved = await svc.ask(ask());
    if (approved.outcome !== 'approved') assert.fail(`expected approved, got ${approved.outcome}`);
    assert.equal(approved.via, 'claim');
    assert.equal(approved.request.id, id);
    assert.deepEqual(approved.status.counted.map((r) => [r.reviewer.username, r.reviewer.id, r.reviewer.groups]), [['dana@example.com', `${REVIEWER_ISSUER}#dana`, ['dba']]]);

    const third = await svc.ask(ask());
    assert.equal(third.outcome, 'consumed');
    const fourth = await svc.ask(ask());
    assert.equal(fourth.outcome, 'pending');
    assert.equal(fourth.created, true);
    assert.notEqual(pendingRequest(fourth).id, id);
  });

  it('lets only one of two sidecars racing for the same approval claim it', async () => {
    const first = service();
    const second = service();
    const id = await pendingId(first);
    await review('approve', id, await reviewerToken('dana@example.com', ['dba']));
    const outcomes = (await Promise.all([first.ask(ask()), second.ask(ask())])).map((a) => a.outcome).sort();
    assert.deepEqual(outcomes, ['approved', 'consumed']);
  });

  it('answers denied after an eligible deny, and keeps answering it', async () => {
    const svc = service();
    const id = await pendingId(svc);
    await review('deny', id, await reviewerToken('dana@example.com', ['dba']), 'no ticket');
    const denied = await svc.ask(ask());
    if (denied.outcome !== 'denied') assert.fail(`expected denied, got ${denied.outcome}`);
    assert.equal(denied.status.counted[0]?.reason, 'no ticket');
    assert.equal((await svc.ask(ask())).outcome, 'denied');
  });

  it('expires an unreviewed request and files a new one for the same statement', async () => {
    const svc = service();
    const id = await pendingId(svc, ask({ settings: settings({ ttlSeconds: 60 }) }));
    bench.skewMs = 61_000;
    const request = (await svc.ask(ask({ settings: settings({ ttlSeconds: 60 }) })));
    assert.equal(request.outcome, 'pending');
    assert.equal(request.created, true);
    assert.notEqual(pendingRequest(request).id, id);
    const cliRefusal = await cli(['approve', id, '--reason', 'late'], await reviewerToken('dana@example.com', ['dba']));
    assert.equal(cliRefusal.code, 1);
    assert.match(cliRefusal.stderr, /already Expired/);
  });

  it('never counts forged or misdirected reviews, and still counts a genuine one', async () => {
    const svc = service();
    const id = await pendingId(svc);
    const impostor = await createLocalIssuer({ issuer: REVIEWER_ISSUER, alg: 'ES256', kid: bench.issuer.kid, clock });
    const otherIssuer = await createLocalIssuer({ issuer: 'https://elsewhere.example', alg: 'ES256', clock });
    const genuineOutsider = await reviewerToken('mallory@example.com', ['dev']);
    const [header, , signature] = genuineOutsider.split('.');
    const now = Math.floor(clock() / 1000);
    const tampered = `${header ?? ''}.${encodeSegment({ iss: REVIEWER_ISSUER, sub: 'mallory', aud: AUDIENCE, iat: now, exp: now + 600, email: 'mallory@example.com', groups: ['dba'] })}.${signature ?? ''}`;
    const forgeries = {
      'same bench.issuer name, attacker key': await impostor.mint({ email: 'eve@example.com', groups: ['dba'] }, { audience: AUDIENCE, subject: 'eve' }),
      'another issuer': await otherIssuer.mint({ email: 'eve@example.com', groups: ['dba'] }, { audience: AUDIENCE, subject: 'eve' }),
      'wrong audience': await reviewerToken('erin@example.com', ['dba'], { audience: 'some-other-app' }),
      'tampered payload (groups added)': tampered,
      'stale iat': await bench.issuer.mint({ email: 'frank@example.com', groups: ['dba'] }, { audience: AUDIENCE, subject: 'frank', issuedAt: now - 3600, expiresInSeconds: 7200 }),
      'service-account token from the reviewer issuer': await mintKubernetesToken(bench.issuer, { namespace: 'custos', serviceAccount: 'operator', audience: AUDIENCE, claims: { groups: ['dba'] } }),
    };
    // The CLI cannot verify tokens (its pre-check would take the first forgery at its word and
    // call the request decided), so the forgeries go straight into Redis, as an attacker with
    // write access would put them; the first one also goes through the CLI, which stores it.
    await review('approve', id, forgeries['same bench.issuer name, attacker key'], 'forgery via the CLI');
    const filed = await svc.ask(ask());
    const digest = pendingRequest(filed).commandDigest;
    for (const [name, token] of Object.entries(forgeries)) {
      await bench.admin.rpush(reviewsKey(id), serializeReviewRecord({ decision: 'approve', reason: `forgery: ${name}`, at: new Date(clock()).toISOString(), commandDigest: digest, token }));
    }
    const still = await svc.ask(ask());
    assert.equal(still.outcome, 'pending', 'a forged review was counted');
    const status = await svc.status(pendingRequest(still));
    assert.deepEqual(status.counted, []);
    assert.deepEqual(status.refused.map((r) => r.why), ['service-account-reviewer']);
    // Logged without the token.
    assert.ok(bench.warnings.length >= 5, JSON.stringify(bench.warnings));
    const logged = JSON.stringify(bench.warnings);
    for (const token of Object.values(forgeries)) assert.ok(!logged.includes(token.split('.')[2] ?? ''), 'a token leaked into the log');

    // The CLI's unverified view now calls the request decided; the genuine review goes in directly.
    await bench.admin.rpush(reviewsKey(id), serializeReviewRecord({ decision: 'approve', reason: 'genuine', at: new Date(clock()).toISOString(), commandDigest: digest, token: await reviewerToken('dana@example.com', ['dba']) }));
    assert.equal((await svc.ask(ask())).outcome, 'approved');
  });

  it('ignores reviews written straight into Redis that the CLI would refuse or that are backdated', async () => {
    const oidcRequester = { id: `${REVIEWER_ISSUER}#dana`, kind: 'OIDC' as const };
    const svc = service();
    const id = await pendingId(svc, ask({ requester: oidcRequester }));
    const danaToken = await reviewerToken('dana@example.com', ['dba']);
    // The CLI refuses self-approval at once …
    const refused = await cli(['approve', id, '--reason', 'mine'], danaToken);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /your own request/);
    // … and a record pushed past it does not count either.
    const request = await svc.ask(ask({ requester: oidcRequester }));
    const digest = pendingRequest(request).commandDigest;
    await bench.admin.rpush(reviewsKey(id), serializeReviewRecord({ decision: 'approve', reason: 'mine', at: new Date(clock()).toISOString(), commandDigest: digest, token: danaToken }));
    // A genuine reviewer's token with a review time before the request existed: a replay.
    const backdated = await reviewerToken('erin@example.com', ['dba'], { issuedAt: Math.floor(clock() / 1000) - 300 });
    await bench.admin.rpush(reviewsKey(id), serializeReviewRecord({ decision: 'approve', reason: 'old', at: new Date(clock() - 200_000).toISOString(), commandDigest: digest, token: backdated }));
    // Not JSON at all.
    await bench.admin.rpush(reviewsKey(id), '{"decision":"approve"');
    const answer = await svc.ask(ask({ requester: oidcRequester }));
    assert.equal(answer.outcome, 'pending');
    const status = await svc.status(pendingRequest(answer));
    assert.deepEqual(status.refused.map((r) => r.why), ['self-review']);
    assert.deepEqual(status.counted, []);
  });

  it('binds the approval to the exact statement, parameters, requester and gateway', async () => {
    const svc = service();
    const base = ask({ sql: 'DELETE FROM invoices WHERE id = $1', parameters: [Buffer.from('42')] });
    const id = await pendingId(svc, base);
    await review('approve', id, await reviewerToken('dana@example.com', ['dba']));
    const others: [string, RedisApprovalService, ApprovalAsk][] = [
      ['another statement', svc, { ...base, sql: 'DELETE FROM invoices WHERE id = $1 OR true' }],
      ['other parameters', svc, { ...base, parameters: [Buffer.from('43')] }],
      ['a NULL parameter', svc, { ...base, parameters: [null] }],
      ['another requester', svc, { ...base, requester: { id: 'system:serviceaccount:payments:other', kind: 'ServiceAccount' } }],
      ['another target user', svc, { ...base, target: { ...base.target, user: 'admin' } }],
      ['another pod', service({ ...GATEWAY, pod: 'billing-1', podUid: 'pod-uid-1' }), base],
    ];
    for (const [name, asker, question] of others) {
      const answer = await asker.ask(question);
      assert.equal(answer.outcome, 'pending', name);
      assert.equal(answer.created, true, name);
      assert.notEqual(pendingRequest(answer).id, id, name);
    }
    const exact = await svc.ask(base);
    assert.equal(exact.outcome, 'approved');
  });

  it('grants a window for the same identity and fingerprint, and only for its length', async () => {
    const svc = service();
    const windowed = settings({ grant: { scope: 'window', windowSeconds: 600 } });
    const first = ask({ settings: windowed, sql: 'DELETE FROM invoices WHERE id = 1', fingerprint: 'fp-delete-by-id' });
    const id = await pendingId(svc, first);
    await review('approve', id, await reviewerToken('dana@example.com', ['dba']));
    const claimed = await svc.ask(first);
    assert.equal(ending(claimed), 'approved:claim');
    const sameShape = { ...first, sql: 'DELETE FROM invoices WHERE id = 2' };
    const windowAnswer = await svc.ask(sameShape);
    assert.equal(ending(windowAnswer), 'approved:window');
    const otherIdentity = await svc.ask({ ...sameShape, requester: { id: 'system:serviceaccount:payments:other', kind: 'ServiceAccount' } });
    assert.equal(otherIdentity.outcome, 'pending');
    const otherShape = await svc.ask({ ...sameShape, fingerprint: 'fp-drop-table', sql: 'DROP TABLE invoices' });
    assert.equal(otherShape.outcome, 'pending');
    const otherPod = await service({ ...GATEWAY, pod: 'billing-1', podUid: 'pod-uid-1' }).ask(sameShape);
    assert.equal(otherPod.outcome, 'pending');
    bench.skewMs = 601_000;
    const afterWindow = await svc.ask({ ...first, sql: 'DELETE FROM invoices WHERE id = 3' });
    assert.equal(afterWindow.outcome, 'pending');
  });

  it('does not let a window grant planted in Redis approve anything', async () => {
    const svc = service();
    const windowed = ask({ settings: settings({ grant: { scope: 'window', windowSeconds: 600 } }) });
    const id = await pendingId(svc, windowed);
    for (const key of await bench.admin.keys('custos:approval:digest:*')) {
      // Point every conceivable grant key at the pending request: the window is re-derived from it.
      await bench.admin.set(key.replace(':digest:', ':window:'), id);
    }
    const { windowGrantDigest } = await import('../policy/approvals/approval-digest.ts');
    const { windowGrantKey } = await import('../sidecar/approvals/approval-keys.ts');
    await bench.admin.set(windowGrantKey(windowGrantDigest({ requesterId: windowed.requester.id, gateway: GATEWAY, target: windowed.target.name, database: windowed.target.database, user: windowed.target.user, policy: windowed.policy, command: windowed.command, fingerprint: windowed.fingerprint })), id);
    assert.equal((await svc.ask({ ...windowed, sql: 'DELETE FROM invoices WHERE 1 = 1' })).outcome, 'pending');
  });

  it('wakes a held statement when it is approved, and claims the approval for it', async () => {
    const svc = service();
    const id = await pendingId(svc, ask({ settings: settings({ mode: 'hold' }) }));
    const request = await svc.ask(ask({ settings: settings({ mode: 'hold' }) }));
    const held = svc.wait(pendingRequest(request), { signal: new AbortController().signal, deadline: new Date(clock() + 60_000) });
    await review('approve', id, await reviewerToken('dana@example.com', ['dba']));
    const answer = await held;
    assert.equal(ending(answer), 'approved:claim');
    assert.equal((await svc.ask(ask({ settings: settings({ mode: 'hold' }) }))).outcome, 'consumed');
  });

  it('ends a held statement denied, expired, cancelled or timed out — never approved', async () => {
    const svc = service();
    const denyId = await pendingId(svc, ask({ sql: 'DELETE FROM a' }));
    const denyRequest = await svc.ask(ask({ sql: 'DELETE FROM a' }));
    const deniedWait = svc.wait(pendingRequest(denyRequest), { signal: new AbortController().signal, deadline: new Date(clock() + 60_000) });
    await review('deny', denyId, await reviewerToken('dana@example.com', ['dba']), 'no');
    assert.equal((await deniedWait).outcome, 'denied');

    const pending = await svc.ask(ask({ sql: 'DELETE FROM b', settings: settings({ ttlSeconds: 60 }) }));
    const request = pendingRequest(pending);
    const cancel = new AbortController();
    const cancelled = svc.wait(request, { signal: cancel.signal, deadline: new Date(clock() + 60_000) });
    cancel.abort();
    assert.equal((await cancelled).outcome, 'pending');
    assert.equal((await svc.wait(request, { signal: new AbortController().signal, deadline: new Date(clock() + 300) })).outcome, 'pending');
    bench.skewMs = 61_000;
    assert.equal((await svc.wait(request, { signal: new AbortController().signal, deadline: new Date(clock() + 60_000) })).outcome, 'expired');
  });

  it('keeps the request through a Redis outage and a sidecar restart, answering unavailable meanwhile', async () => {
    const svc = service();
    const id = await pendingId(svc);
    const request = await svc.ask(ask());
    await bench.redis.stop();
    try {
      assert.equal((await svc.ask(ask())).outcome, 'unavailable');
      const waited = await svc.wait(pendingRequest(request), { signal: new AbortController().signal, deadline: new Date(clock() + 1500) });
      assert.equal(waited.outcome, 'unavailable');
    } finally {
      await bench.redis.start();
    }
    const restarted = service();
    const after = await restarted.ask(ask());
    assert.equal(after.outcome, 'pending');
    assert.equal(after.created, undefined);
    assert.equal(pendingRequest(after).id, id);
  });
});
