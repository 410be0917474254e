// What the controller writes back for one request, from its AccessReviews in relay order: the
// AccessRequest's phase and counted approvals, and each AccessReview's verdict with the tally's
// refusal. The refusals come first (every way a review fails to count), then the decisions, the
// race the relay order settles, and when a status write can be skipped.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AccessRequest, AccessRequestStatus } from '../../crds/generated/access-request.ts';
import type { AccessReview, AccessReviewReviewer, AccessReviewStatus } from '../../crds/generated/access-review.ts';
import type { ReviewRefusal } from '../../policy/approvals/approval-types.ts';
import { decideRequest, sameRequestStatus } from './request-decision.ts';

const DIGEST_A = `sha256:${'a'.repeat(64)}`;
const DIGEST_B = `sha256:${'b'.repeat(64)}`;
const EXPIRES = '2026-11-29T11:00:00Z';
const BEFORE_EXPIRY = new Date('2026-11-29T10:30:00Z');
const REQUESTER = 'system:serviceaccount:payments:billing';

const ALICE: AccessReviewReviewer = { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'alice-uid' };
const BOB: AccessReviewReviewer = { username: 'bob@example.com', groups: ['dba', 'system:authenticated'], uid: 'bob-uid' };
const ERIN: AccessReviewReviewer = { username: 'erin@example.com', groups: ['system:authenticated'] };
const MALLORY: AccessReviewReviewer = { username: 'mallory@example.com', groups: ['developers', 'system:authenticated'], uid: 'mallory-uid' };

function accessRequest(approvalsRequired = 2): AccessRequest {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessRequest',
    metadata: { name: 'ar-7k2mq4x6c3ha', namespace: 'payments', creationTimestamp: '2026-11-29T10:00:00Z' },
    spec: {
      policyRef: { name: 'billing-approvals', rule: 'approve-unfiltered' },
      requester: { id: REQUESTER, kind: 'ServiceAccount', displayName: 'billing-bot@example.com' },
      target: { name: 'billing', protocol: 'postgres' },
      command: 'DELETE FROM invoices',
      commandDigest: DIGEST_A,
      reviewers: { groups: ['dba'], users: ['erin@example.com'] },
      approvalsRequired,
      expiresAt: EXPIRES,
    },
    status: { phase: 'Pending' },
  };
}

interface ReviewOptions {
  readonly decision?: 'approve' | 'deny';
  readonly reason?: string;
  readonly commandDigest?: string;
  readonly at?: string;
}

/** An admitted AccessReview named `name`, created at `at` (minutes past 10:00 by default). */
function review(name: string, reviewer: AccessReviewReviewer, options: ReviewOptions = {}): AccessReview {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessReview',
    metadata: { name, namespace: 'payments', uid: `uid-${name}`, creationTimestamp: options.at ?? '2026-11-29T10:10:00Z' },
    spec: {
      requestName: 'ar-7k2mq4x6c3ha',
      decision: options.decision ?? 'approve',
      reason: options.reason ?? `ticket OPS-42 (${name})`,
      commandDigest: options.commandDigest ?? DIGEST_A,
      reviewer,
    },
  };
}

function verdict(reviews: ReadonlyMap<string, AccessReviewStatus>, name: string): AccessReviewStatus {
  const found = reviews.get(name);
  assert.ok(found, `a verdict for ${name}`);
  return found;
}

describe('decideRequest: reviews that do not count', () => {
  const cases: ReadonlyArray<{ readonly name: string; readonly reviews: readonly AccessReview[]; readonly refused: string; readonly why: ReviewRefusal }> = [
    {
      name: 'the requester reviewing its own request',
      reviews: [review('self', { username: REQUESTER, groups: ['dba'] })],
      refused: 'self', why: 'self-review',
    },
    {
      name: 'the requester under its display name in another case',
      reviews: [review('alias', { username: 'Billing-Bot@example.com', groups: ['dba'] })],
      refused: 'alias', why: 'self-review',
    },
    {
      name: 'an outsider (not in dba, not a named user)',
      reviews: [review('outsider', MALLORY)],
      refused: 'outsider', why: 'not-an-allowed-reviewer',
    },
    {
      name: 'a service account in the reviewers\' group',
      reviews: [review('bot', { username: 'system:serviceaccount:payments:deployer', groups: ['dba'] })],
      refused: 'bot', why: 'service-account-reviewer',
    },
    {
      name: 'a review of another digest',
      reviews: [review('other-command', ALICE, { commandDigest: DIGEST_B })],
      refused: 'other-command', why: 'digest-mismatch',
    },
    {
      name: 'a review created at the expiry',
      reviews: [review('late', ALICE, { at: EXPIRES })],
      refused: 'late', why: 'after-expiry',
    },
    {
      name: 'a review without a creation time (never admitted by an API server)',
      reviews: [{ ...review('timeless', ALICE), metadata: { name: 'timeless', namespace: 'payments' } }],
      refused: 'timeless', why: 'after-expiry',
    },
    {
      name: 'a review after a deny decided the request',
      reviews: [review('deny', BOB, { decision: 'deny' }), review('too-late', ALICE, { at: '2026-11-29T10:11:00Z' })],
      refused: 'too-late', why: 'after-decision',
    },
    {
      name: 'a second review by the same person (user name in another case)',
      reviews: [review('first', ALICE), review('second', { ...ALICE, username: 'Alice@Example.com' }, { decision: 'deny', at: '2026-11-29T10:11:00Z' })],
      refused: 'second', why: 'duplicate',
    },
    {
      name: 'a second review by the same uid under another user name',
      reviews: [review('first', ALICE), review('renamed', { ...ALICE, username: 'alice.renamed@example.com' }, { at: '2026-11-29T10:11:00Z' })],
      refused: 'renamed', why: 'duplicate',
    },
    {
      name: 'a blank reason',
      reviews: [review('blank', ALICE, { reason: '   ' })],
      refused: 'blank', why: 'reason-required',
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}`, () => {
      const decision = decideRequest(accessRequest(), c.reviews, BEFORE_EXPIRY);
      assert.deepEqual(verdict(decision.reviews, c.refused), { counted: false, refusal: c.why });
      assert.ok(!(decision.status.approvals ?? []).some((a) => a.decisionRef === c.refused), 'a refused review is not listed as counted');
      assert.equal(decision.reviews.size, c.reviews.length, 'every review gets a verdict');
    });
  }

  it('does not let refused reviews make up the approvals needed', () => {
    const reviews = [review('outsider', MALLORY), review('self', { username: REQUESTER, groups: ['dba'] }), review('alice', ALICE)];
    const decision = decideRequest(accessRequest(2), reviews, BEFORE_EXPIRY);
    assert.equal(decision.status.phase, 'Pending');
    assert.deepEqual(decision.status.approvals?.map((a) => a.decisionRef), ['alice']);
  });
});

describe('decideRequest: decisions', () => {
  it('is Pending with no reviews, and has no decision time', () => {
    const decision = decideRequest(accessRequest(), [], BEFORE_EXPIRY);
    assert.deepEqual(decision.status, { phase: 'Pending', approvals: [] });
    assert.equal(decision.reviews.size, 0);
  });

  it('stays Pending below the approvals needed', () => {
    const decision = decideRequest(accessRequest(2), [review('alice', ALICE)], BEFORE_EXPIRY);
    assert.equal(decision.status.phase, 'Pending');
    assert.equal(decision.status.decidedAt, undefined);
    assert.deepEqual(verdict(decision.reviews, 'alice'), { counted: true });
  });

  it('is Approved after approvalsRequired distinct approvals, listing them with their AccessReview names', () => {
    const reviews = [
      review('ar-7k2mq4x6c3ha-alice', ALICE, { at: '2026-11-29T10:10:00Z' }),
      review('ar-7k2mq4x6c3ha-erin', ERIN, { at: '2026-11-29T10:12:00Z', reason: 'checked with finance' }),
    ];
    const decision = decideRequest(accessRequest(2), reviews, BEFORE_EXPIRY);
    assert.deepEqual(decision.status, {
      phase: 'Approved',
      decidedAt: '2026-11-29T10:12:00Z',
      approvals: [
        { reviewer: 'alice@example.com', decision: 'approve', reason: 'ticket OPS-42 (ar-7k2mq4x6c3ha-alice)', at: '2026-11-29T10:10:00Z', decisionRef: 'ar-7k2mq4x6c3ha-alice' },
        { reviewer: 'erin@example.com', decision: 'approve', reason: 'checked with finance', at: '2026-11-29T10:12:00Z', decisionRef: 'ar-7k2mq4x6c3ha-erin' },
      ],
    });
    assert.deepEqual([...decision.reviews.entries()], [['ar-7k2mq4x6c3ha-alice', { counted: true }], ['ar-7k2mq4x6c3ha-erin', { counted: true }]]);
  });

  it('is Denied by any counted deny, even after approvals', () => {
    const reviews = [review('alice', ALICE), review('bob', BOB, { decision: 'deny', at: '2026-11-29T10:15:00Z' })];
    const decision = decideRequest(accessRequest(3), reviews, BEFORE_EXPIRY);
    assert.equal(decision.status.phase, 'Denied');
    assert.equal(decision.status.decidedAt, '2026-11-29T10:15:00Z');
    assert.deepEqual(decision.status.approvals?.map((a) => [a.decisionRef, a.decision]), [['alice', 'approve'], ['bob', 'deny']]);
  });

  it('is not Denied by a deny that does not count', () => {
    const decision = decideRequest(accessRequest(1), [review('outsider', MALLORY, { decision: 'deny' }), review('alice', ALICE)], BEFORE_EXPIRY);
    assert.equal(decision.status.phase, 'Approved');
    assert.deepEqual(verdict(decision.reviews, 'outsider'), { counted: false, refusal: 'not-an-allowed-reviewer' });
  });

  it('is Expired when undecided at expiresAt, decided at the expiry', () => {
    const atExpiry = decideRequest(accessRequest(2), [review('alice', ALICE)], new Date(EXPIRES));
    assert.equal(atExpiry.status.phase, 'Expired');
    assert.equal(atExpiry.status.decidedAt, EXPIRES);
    assert.equal(decideRequest(accessRequest(2), [], new Date(Date.parse(EXPIRES) - 1)).status.phase, 'Pending');
  });

  it('stays Approved past expiresAt once decided in time', () => {
    const decision = decideRequest(accessRequest(1), [review('alice', ALICE)], new Date('2026-11-29T12:00:00Z'));
    assert.equal(decision.status.phase, 'Approved');
    assert.equal(decision.status.decidedAt, '2026-11-29T10:10:00Z');
  });

  it('is Executed when approved and a sidecar has claimed the approval', () => {
    const decision = decideRequest(accessRequest(1), [review('alice', ALICE)], BEFORE_EXPIRY, '2026-11-29T10:20:00Z');
    assert.equal(decision.status.phase, 'Executed');
    assert.equal(decision.status.decidedAt, '2026-11-29T10:10:00Z');
    assert.deepEqual(decision.status.approvals?.map((a) => a.decisionRef), ['alice']);
  });

  it('is never Executed unless approved, whatever executedAt says', () => {
    const executedAt = '2026-11-29T10:20:00Z';
    assert.equal(decideRequest(accessRequest(2), [review('alice', ALICE)], BEFORE_EXPIRY, executedAt).status.phase, 'Pending');
    assert.equal(decideRequest(accessRequest(1), [review('bob', BOB, { decision: 'deny' })], BEFORE_EXPIRY, executedAt).status.phase, 'Denied');
    assert.equal(decideRequest(accessRequest(1), [], new Date(EXPIRES), executedAt).status.phase, 'Expired');
  });
});

describe('decideRequest: the relay order settles a race', () => {
  // Both reviews were admitted against a Pending request; whichever the controller relayed first
  // decides, whatever their creation times say.
  const approve = review('alice-approves', ALICE, { decision: 'approve', at: '2026-11-29T10:10:05Z' });
  const deny = review('bob-denies', BOB, { decision: 'deny', at: '2026-11-29T10:10:00Z' });

  it('approve relayed first, then deny: Approved, the deny is after-decision', () => {
    const decision = decideRequest(accessRequest(1), [approve, deny], BEFORE_EXPIRY);
    assert.equal(decision.status.phase, 'Approved');
    assert.equal(decision.status.decidedAt, '2026-11-29T10:10:05Z');
    assert.deepEqual(verdict(decision.reviews, 'alice-approves'), { counted: true });
    assert.deepEqual(verdict(decision.reviews, 'bob-denies'), { counted: false, refusal: 'after-decision' });
  });

  it('deny relayed first, then approve: Denied, the approval is after-decision', () => {
    const decision = decideRequest(accessRequest(1), [deny, approve], BEFORE_EXPIRY);
    assert.equal(decision.status.phase, 'Denied');
    assert.deepEqual(verdict(decision.reviews, 'bob-denies'), { counted: true });
    assert.deepEqual(verdict(decision.reviews, 'alice-approves'), { counted: false, refusal: 'after-decision' });
  });
});

describe('sameRequestStatus', () => {
  const approval = { reviewer: 'alice@example.com', decision: 'approve' as const, reason: 'ok', at: '2026-11-29T10:10:00Z', decisionRef: 'alice' };
  const approved: AccessRequestStatus = { phase: 'Approved', decidedAt: '2026-11-29T10:10:00Z', approvals: [approval] };

  it('is true for the status just decided, however its keys are ordered', () => {
    const decision = decideRequest(accessRequest(1), [review('alice', ALICE)], BEFORE_EXPIRY);
    assert.equal(sameRequestStatus(decision.status, decision.status), true);
    const reordered: AccessRequestStatus = {
      approvals: [{ decisionRef: 'alice', at: '2026-11-29T10:10:00Z', reason: 'ok', decision: 'approve', reviewer: 'alice@example.com' }],
      decidedAt: '2026-11-29T10:10:00Z',
      phase: 'Approved',
    };
    assert.equal(sameRequestStatus(reordered, approved), true);
  });

  it('ignores what the decision does not write (conditions, observedGeneration)', () => {
    const withExtras: AccessRequestStatus = { ...approved, observedGeneration: 4, conditions: [{ type: 'Ready', status: 'True' }] };
    assert.equal(sameRequestStatus(withExtras, approved), true);
  });

  it('treats absent approvals as none', () => {
    assert.equal(sameRequestStatus({ phase: 'Pending' }, { phase: 'Pending', approvals: [] }), true);
  });

  const differing: ReadonlyArray<[string, AccessRequestStatus | undefined, AccessRequestStatus]> = [
    ['no status yet', undefined, { phase: 'Pending', approvals: [] }],
    ['another phase', { ...approved, phase: 'Pending' }, approved],
    ['Executed after Approved', approved, { ...approved, phase: 'Executed' }],
    ['another decision time', { ...approved, decidedAt: '2026-11-29T10:11:00Z' }, approved],
    ['one more approval', { ...approved, approvals: [] }, approved],
    ['another reviewer', { ...approved, approvals: [{ ...approval, reviewer: 'bob@example.com' }] }, approved],
    ['another reason', { ...approved, approvals: [{ ...approval, reason: 'changed' }] }, approved],
    ['another decisionRef', { ...approved, approvals: [{ ...approval, decisionRef: 'alice-2' }] }, approved],
  ];
  for (const [name, current, next] of differing) {
    it(`is false for ${name}`, () => {
      assert.equal(sameRequestStatus(current, next), false);
    });
  }
});
