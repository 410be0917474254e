import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { judgeReview, nextRevocation, SERVICE_ACCOUNT_REVOKED_MESSAGE, type ReviewOutcome, type ReviewVerdict } from './service-account-review.ts';

const SA = 'system:serviceaccount:payments:billing-app';
const review = (username: unknown): unknown => ({
  kind: 'SelfSubjectReview', apiVersion: 'authentication.k8s.io/v1', status: { userInfo: { username, uid: 'u-1', groups: ['system:authenticated'] } },
});
const response = (status: number, body: unknown): ReviewOutcome => ({ kind: 'response', status, body });

describe('judgeReview: what a SelfSubjectReview says about the pod\'s service account', () => {
  it('201 naming the pod\'s service account: valid', () => {
    assert.deepEqual(judgeReview(response(201, review(SA)), SA), { kind: 'valid' });
  });

  it('201 before the projected token was ever verified: valid (nothing to compare with)', () => {
    assert.deepEqual(judgeReview(response(201, review(SA)), undefined), { kind: 'valid' });
  });

  it('401 (the API server no longer accepts the token: deleted service account or pod): revoked', () => {
    const v = judgeReview(response(401, { kind: 'Status', code: 401, reason: 'Unauthorized' }), SA);
    assert.ok(v.kind === 'revoked', JSON.stringify(v));
    assert.ok(v.why.startsWith(SERVICE_ACCOUNT_REVOKED_MESSAGE), JSON.stringify(v));
    assert.match(JSON.stringify(v), /401 Unauthorized/);
  });

  it('403 saying the account is not found: revoked; an RBAC 403: unknown', () => {
    assert.equal(judgeReview(response(403, { kind: 'Status', message: 'serviceaccount "billing-app" not found' }), SA).kind, 'revoked');
    assert.equal(judgeReview(response(403, { kind: 'Status', message: 'selfsubjectreviews.authentication.k8s.io is forbidden: User cannot create' }), SA).kind, 'unknown');
  });

  it('201 naming another user (the API token is not the pod\'s service account): revoked', () => {
    const v = judgeReview(response(201, review('system:serviceaccount:payments:other')), SA);
    assert.equal(v.kind, 'revoked');
    assert.match(JSON.stringify(v), /authenticates as system:serviceaccount:payments:other, not system:serviceaccount:payments:billing-app/);
  });

  it('5xx, 404 (an API server without SelfSubjectReview), a body without userInfo, a network error: unknown', () => {
    for (const outcome of [
      response(500, {}), response(503, undefined), response(404, { kind: 'Status' }), response(201, { status: {} }), response(201, undefined),
      { kind: 'unreachable', error: 'connect ECONNREFUSED 127.0.0.1:6443' } as const,
    ]) {
      assert.equal(judgeReview(outcome, SA).kind, 'unknown', JSON.stringify(outcome));
    }
  });
});

describe('nextRevocation: unknown keeps the last state', () => {
  const revoked: ReviewVerdict = { kind: 'revoked', why: 'gone' };
  const unknown: ReviewVerdict = { kind: 'unknown', why: 'timeout' };
  it('valid → revoked → (unknown) → revoked → valid', () => {
    let state = nextRevocation(undefined, { kind: 'valid' });
    assert.equal(state, undefined);
    state = nextRevocation(state, revoked);
    assert.equal(state, 'gone');
    state = nextRevocation(state, unknown);
    assert.equal(state, 'gone');
    state = nextRevocation(state, { kind: 'valid' });
    assert.equal(state, undefined);
    assert.equal(nextRevocation(state, unknown), undefined);
  });
});
