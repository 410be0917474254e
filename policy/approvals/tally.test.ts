import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ApprovalRequest, ApprovalSettings, Review, Reviewer } from './approval-types.ts';
import { reviewerRefusal, tally } from './tally.ts';

const DIGEST_A = `sha256:${'a'.repeat(64)}`;
const DIGEST_B = `sha256:${'b'.repeat(64)}`;
const CREATED = '2026-01-01T10:00:00.000Z';
const EXPIRES = '2026-01-01T11:00:00.000Z';
const BEFORE_EXPIRY = new Date('2026-01-01T10:30:00.000Z');
const AFTER_EXPIRY = new Date('2026-01-01T11:00:00.000Z');

function settings(overrides: Partial<ApprovalSettings> = {}): ApprovalSettings {
  return {
    reviewers: { groups: ['dba'], users: ['carol@example.com'] },
    minApprovals: 1,
    mode: 'hold',
    holdTimeoutSeconds: 300,
    ttlSeconds: 3600,
    grant: { scope: 'once' },
    ...overrides,
  };
}

function request(overrides: Partial<ApprovalRequest> = {}): ApprovalRequest {
  return {
    id: 'ar-abcdefghijkl',
    createdAt: CREATED,
    expiresAt: EXPIRES,
    requester: { id: 'system:serviceaccount:payments:billing', kind: 'ServiceAccount' },
    gateway: { id: 'gw', namespace: 'payments', pod: 'billing-0', podUid: 'uid-1' },
    target: { name: 'invoices-db', protocol: 'postgres', database: 'app', user: 'app' },
    policy: { name: 'p', namespace: 'payments', version: '1', rule: 'deletes' },
    command: 'DELETE FROM invoices',
    fingerprint: 'f1',
    commandDigest: DIGEST_A,
    settings: settings(),
    ...overrides,
  };
}

const alice: Reviewer = { username: 'alice@example.com', groups: ['dba'], id: 'https://idp.example#alice', via: 'oidc' };
const bob: Reviewer = { username: 'bob@example.com', groups: ['dba', 'dev'], id: 'https://idp.example#bob', via: 'oidc' };
const carol: Reviewer = { username: 'carol@example.com', groups: [], id: 'https://idp.example#carol', via: 'oidc' };
const mallory: Reviewer = { username: 'mallory@example.com', groups: ['dev'], id: 'https://idp.example#mallory', via: 'oidc' };

let minute = 0;
function review(reviewer: Reviewer, decision: 'approve' | 'deny', overrides: Partial<Review> = {}): Review {
  minute += 1;
  return {
    reviewer, decision, reason: 'checked the ticket', commandDigest: DIGEST_A,
    at: new Date(Date.parse(CREATED) + minute * 60_000).toISOString(), ...overrides,
  };
}

describe('tally', () => {
  const refusals: { name: string; request?: ApprovalRequest; review: Review; why: string }[] = [
    {
      name: 'refuses the requester service account reviewing its own request',
      review: review({ username: 'system:serviceaccount:payments:billing', groups: ['dba'], via: 'kubernetes' }, 'approve'),
      why: 'self-review',
    },
    {
      name: 'refuses an OIDC alias of the requester (same iss#sub, another user name)',
      request: request({ requester: { id: 'https://idp.example#alice', kind: 'OIDC' } }),
      review: review({ ...alice, username: 'alice.admin@example.com' }, 'approve'),
      why: 'self-review',
    },
    {
      name: 'refuses a user whose user name is the OIDC requester id',
      request: request({ requester: { id: 'https://idp.example#alice', kind: 'OIDC' } }),
      review: review({ username: 'https://idp.example#alice', groups: ['dba'], via: 'kubernetes' }, 'approve'),
      why: 'self-review',
    },
    {
      name: 'refuses another service account even in an allowed group',
      review: review({ username: 'system:serviceaccount:custos:operator', groups: ['dba'], via: 'kubernetes' }, 'approve'),
      why: 'service-account-reviewer',
    },
    { name: 'refuses a reviewer outside the groups and users', review: review(mallory, 'approve'), why: 'not-an-allowed-reviewer' },
    { name: 'refuses a reviewer with no groups at all', review: review({ username: 'eve@example.com', groups: [], via: 'oidc' }, 'approve'), why: 'not-an-allowed-reviewer' },
    { name: 'refuses an approval of digest B presented for request A', review: review(alice, 'approve', { commandDigest: DIGEST_B }), why: 'digest-mismatch' },
    { name: 'refuses an approval at the expiry instant', review: review(alice, 'approve', { at: EXPIRES }), why: 'after-expiry' },
    { name: 'refuses an approval with an unparseable time', review: review(alice, 'approve', { at: 'yesterday' }), why: 'after-expiry' },
    { name: 'refuses an approval without a reason', review: review(alice, 'approve', { reason: '' }), why: 'reason-required' },
    { name: 'refuses an approval whose reason is only blanks', review: review(alice, 'approve', { reason: ' \t ' }), why: 'reason-required' },
    { name: 'refuses a deny from an outsider (it does not end the request)', review: review(mallory, 'deny'), why: 'not-an-allowed-reviewer' },
  ];
  for (const row of refusals) {
    it(row.name, () => {
      const status = tally(row.request ?? request(), [row.review], BEFORE_EXPIRY);
      assert.equal(status.phase, 'Pending');
      assert.deepEqual(status.counted, []);
      assert.deepEqual(status.refused.map((r) => r.why), [row.why]);
    });
  }

  it('approves with one eligible approval from a group member', () => {
    const approval = review(alice, 'approve');
    const status = tally(request(), [approval], BEFORE_EXPIRY);
    assert.equal(status.phase, 'Approved');
    assert.deepEqual(status.counted, [approval]);
    assert.equal(status.decidedAt, approval.at);
  });

  it('approves with an approval from a listed user outside every group', () => {
    assert.equal(tally(request(), [review(carol, 'approve')], BEFORE_EXPIRY).phase, 'Approved');
  });

  it('needs distinct reviewers: the same reviewer approving twice is one approval', () => {
    const twoNeeded = request({ settings: settings({ minApprovals: 2 }) });
    const status = tally(twoNeeded, [review(alice, 'approve'), review(alice, 'approve')], BEFORE_EXPIRY);
    assert.equal(status.phase, 'Pending');
    assert.equal(status.counted.length, 1);
    assert.deepEqual(status.refused.map((r) => r.why), ['duplicate']);
    const approved = tally(twoNeeded, [review(alice, 'approve'), review(alice, 'approve'), review(bob, 'approve')], BEFORE_EXPIRY);
    assert.equal(approved.phase, 'Approved');
  });

  it('keeps the first review when a reviewer changes sides', () => {
    const twoNeeded = request({ settings: settings({ minApprovals: 2 }) });
    const status = tally(twoNeeded, [review(alice, 'approve'), review(alice, 'deny')], BEFORE_EXPIRY);
    assert.equal(status.phase, 'Pending');
    assert.deepEqual(status.refused.map((r) => r.why), ['duplicate']);
  });

  it('lets a reviewer whose first review was refused review again', () => {
    const status = tally(request(), [review(alice, 'approve', { reason: '' }), review(alice, 'approve')], BEFORE_EXPIRY);
    assert.equal(status.phase, 'Approved');
  });

  it('denies on any eligible deny even when approvals came first', () => {
    const twoNeeded = request({ settings: settings({ minApprovals: 2 }) });
    const status = tally(twoNeeded, [review(alice, 'approve'), review(bob, 'deny'), review(carol, 'approve')], BEFORE_EXPIRY);
    assert.equal(status.phase, 'Denied');
    assert.deepEqual(status.refused.map((r) => r.why), ['after-decision']);
  });

  it('decides a concurrent approve and deny by recorded order, and the loser is after-decision', () => {
    const approval = review(alice, 'approve');
    const denial = review(bob, 'deny');
    const approvedFirst = tally(request(), [approval, denial], BEFORE_EXPIRY);
    assert.equal(approvedFirst.phase, 'Approved');
    assert.deepEqual(approvedFirst.refused, [{ review: denial, why: 'after-decision' }]);
    const deniedFirst = tally(request(), [denial, approval], BEFORE_EXPIRY);
    assert.equal(deniedFirst.phase, 'Denied');
    assert.deepEqual(deniedFirst.refused, [{ review: approval, why: 'after-decision' }]);
  });

  it('does not let a backdated claimed time reorder a race', () => {
    const denial = review(bob, 'deny');
    const backdatedApproval = review(alice, 'approve', { at: CREATED });
    assert.equal(tally(request(), [denial, backdatedApproval], BEFORE_EXPIRY).phase, 'Denied');
  });

  it('expires a request undecided at its expiry, and ignores approvals after it', () => {
    const late = review(alice, 'approve', { at: '2026-01-01T11:00:01.000Z' });
    const status = tally(request(), [late], AFTER_EXPIRY);
    assert.equal(status.phase, 'Expired');
    assert.equal(status.decidedAt, EXPIRES);
    assert.deepEqual(status.refused.map((r) => r.why), ['after-expiry']);
  });

  it('keeps an approval made before expiry once the expiry has passed', () => {
    assert.equal(tally(request(), [review(alice, 'approve')], AFTER_EXPIRY).phase, 'Approved');
  });

  it('stays pending before expiry with no reviews', () => {
    const status = tally(request(), [], BEFORE_EXPIRY);
    assert.deepEqual(status, { phase: 'Pending', counted: [], refused: [] });
  });

  it('treats an unparseable expiry as expired', () => {
    assert.equal(tally(request({ expiresAt: 'never' }), [], BEFORE_EXPIRY).phase, 'Expired');
  });

  it('refuses a reviewer whose only allowed-looking group differs by case', () => {
    assert.equal(reviewerRefusal(request(), { username: 'x@example.com', groups: ['DBA'], via: 'oidc' }), 'not-an-allowed-reviewer');
  });
});

describe('tally: one person, one voice (aliases)', () => {
  it('counts one approval when the same subject reviews with and without an email claim', () => {
    const withEmail: Reviewer = { username: 'dana@example.com', groups: ['dba'], id: 'https://idp.example#dana', via: 'oidc' };
    const withoutEmail: Reviewer = { username: 'dana', groups: ['dba'], id: 'https://idp.example#dana', via: 'oidc' };
    const status = tally(request({ settings: settings({ minApprovals: 2 }) }), [review(withEmail, 'approve'), review(withoutEmail, 'approve')], BEFORE_EXPIRY);
    assert.equal(status.phase, 'Pending');
    assert.deepEqual(status.refused.map((r) => r.why), ['duplicate']);
  });

  it('counts one approval for the same user name in another case or from another issuer', () => {
    const first: Reviewer = { username: 'Erin@Example.com', groups: ['dba'], id: 'https://idp-a.example#erin', via: 'oidc' };
    const second: Reviewer = { username: 'erin@example.com', groups: ['dba'], id: 'https://idp-b.example#e-123', via: 'oidc' };
    const status = tally(request({ settings: settings({ minApprovals: 2 }) }), [review(first, 'approve'), review(second, 'approve')], BEFORE_EXPIRY);
    assert.equal(status.phase, 'Pending');
  });

  it('refuses a reviewer whose user name is the requester display name, in any case', () => {
    const requester = { id: 'https://idp.example#app-7f3a', kind: 'OIDC' as const, displayName: 'Frank@Example.com' };
    const frank: Reviewer = { username: 'frank@example.com', groups: ['dba'], id: 'https://other-app.example#f-9', via: 'oidc' };
    assert.equal(reviewerRefusal(request({ requester }), frank), 'self-review');
  });
});
