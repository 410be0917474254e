// AccessReview admission, attacks first: every way a review could be forged, misattributed or used
// to change a decision is refused with a message the reviewer understands; then the honest paths,
// whose stamped object passes the CRD's generated validator and counts in the controller's tally.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AccessRequest } from '../../crds/generated/access-request.ts';
import type { AccessReview } from '../../crds/generated/access-review.ts';
import validateReview from '../../crds/generated/access-review.validate.js';
import validateRequest from '../../crds/generated/access-request.validate.js';
import { tally } from '../../policy/approvals/tally.ts';
import { applyJsonPatch } from '../webhook/json-patch.ts';
import {
  admitReview, reviewableFromAccessRequest, reviewFromAccessReview,
  type AdmissionOperation, type AdmissionRefusal, type AdmissionUserInfo, type ReviewAdmissionInput,
} from './review-admission.ts';

const DIGEST_A = `sha256:${'a'.repeat(64)}`;
const DIGEST_B = `sha256:${'b'.repeat(64)}`;
const NOW = new Date('2026-11-29T10:30:00.000Z');
const CREATED = '2026-11-29T10:00:00Z';
const EXPIRES = '2026-11-29T11:00:00Z';
const REQUESTER_SA = 'system:serviceaccount:payments:billing';

type Status = NonNullable<AccessRequest['status']>;

/** `null`: no status yet (the operator created the request but has not set its phase). */
function accessRequest(status: Status | null = { phase: 'Pending' }, spec: Partial<AccessRequest['spec']> = {}): AccessRequest {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessRequest',
    metadata: { name: 'ar-7k2mq4x6c3ha', namespace: 'payments', creationTimestamp: CREATED },
    spec: {
      policyRef: { name: 'billing-approvals', rule: 'approve-unfiltered', generation: 3 },
      requester: { id: REQUESTER_SA, kind: 'ServiceAccount', uid: 'billing-sa-uid', onBehalfOf: 'carol@example.com', pod: 'billing-0' },
      target: { name: 'billing', protocol: 'postgres', database: 'app', user: 'app' },
      command: 'DELETE FROM invoices',
      commandDigest: DIGEST_A,
      reviewers: { groups: ['dba'], users: ['erin@example.com'] },
      approvalsRequired: 2,
      expiresAt: EXPIRES,
      ...spec,
    },
    ...(status === null ? {} : { status }),
  };
}

function submitted(spec: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessReview',
    metadata: { name: 'ar-7k2mq4x6c3ha-alice', namespace: 'payments' },
    spec: { requestName: 'ar-7k2mq4x6c3ha', decision: 'approve', reason: 'ticket OPS-42: purge of test invoices', commandDigest: DIGEST_A, ...spec },
  };
}

const ALICE: AdmissionUserInfo = { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'alice-uid' };
const ERIN: AdmissionUserInfo = { username: 'erin@example.com', groups: ['system:authenticated'] };
const MALLORY: AdmissionUserInfo = { username: 'mallory@example.com', groups: ['developers', 'system:authenticated'], uid: 'mallory-uid' };

function input(overrides: Partial<ReviewAdmissionInput> = {}): ReviewAdmissionInput {
  return { operation: 'CREATE', review: submitted(), userInfo: ALICE, accessRequest: accessRequest(), now: NOW, ...overrides };
}

describe('admitReview refuses attacks', () => {
  const attacks: ReadonlyArray<{ readonly name: string; readonly input: ReviewAdmissionInput; readonly refusal: AdmissionRefusal; readonly message: RegExp }> = [
    {
      name: 'a forged spec.reviewer naming an allowed reviewer',
      input: input({ userInfo: MALLORY, review: submitted({ reviewer: { username: 'alice@example.com', groups: ['dba'] } }) }),
      refusal: 'forged-reviewer',
      message: /spec\.reviewer .*"alice@example\.com".* is not you: you are authenticated as "mallory@example\.com"; the reviewer is always set from your authenticated identity/,
    },
    {
      name: 'a spec.reviewer that is the caller but claims an extra group',
      input: input({ review: submitted({ reviewer: { username: 'alice@example.com', groups: ['dba', 'system:authenticated', 'admins'], uid: 'alice-uid' } }) }),
      refusal: 'forged-reviewer',
      message: /is not you/,
    },
    {
      name: 'a spec.reviewer that is the caller under another uid',
      input: input({ review: submitted({ reviewer: { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'someone-else' } }) }),
      refusal: 'forged-reviewer',
      message: /is not you/,
    },
    {
      name: 'a service account in the reviewers\' group',
      input: input({ userInfo: { username: 'system:serviceaccount:payments:deployer', groups: ['dba', 'system:serviceaccounts', 'system:serviceaccounts:payments'], uid: 'deployer-uid' } }),
      refusal: 'service-account-reviewer',
      message: /system:serviceaccount:payments:deployer is a service account: workloads never review access requests, a person must decide/,
    },
    {
      name: 'the requester\'s service account reviewing its own request',
      input: input({ userInfo: { username: REQUESTER_SA, groups: ['dba', 'system:serviceaccounts'], uid: 'billing-sa-uid' } }),
      refusal: 'self-review',
      message: /system:serviceaccount:payments:billing may not review payments\/ar-7k2mq4x6c3ha: it is their own request .*nobody approves their own request/,
    },
    {
      name: 'a dba impersonating the requester (kubectl --as, userInfo is the impersonated identity)',
      input: input({ userInfo: { username: REQUESTER_SA, groups: ['dba', 'system:authenticated'] } }),
      refusal: 'self-review',
      message: /it is their own request/,
    },
    {
      name: 'the human the workload acts for (spec.requester.onBehalfOf), although in the dba group',
      input: input({ userInfo: { username: 'carol@example.com', groups: ['dba', 'system:authenticated'], uid: 'carol-uid' } }),
      refusal: 'self-review',
      message: /carol@example\.com may not review .*it is their own request/,
    },
    {
      name: 'the requester\'s service-account UID under another user name',
      input: input({ userInfo: { username: 'renamed@example.com', groups: ['dba'], uid: 'billing-sa-uid' } }),
      refusal: 'self-review',
      message: /it is their own request/,
    },
    {
      name: 'the requester under its display name, in another case (an alias through another client)',
      input: input({
        userInfo: { username: 'Billing-Bot@example.com', groups: ['dba'] },
        accessRequest: accessRequest({ phase: 'Pending' }, { requester: { id: 'https://idp.example.com#9f2c', kind: 'OIDC', displayName: 'billing-bot@example.com' } }),
      }),
      refusal: 'self-review',
      message: /Billing-Bot@example\.com may not review .*it is their own request/,
    },
    {
      name: 'an outsider (authenticated, not in dba, not a named user)',
      input: input({ userInfo: MALLORY }),
      refusal: 'not-an-allowed-reviewer',
      message: /mallory@example\.com is not a reviewer of payments\/ar-7k2mq4x6c3ha: it may be reviewed by members of dba or the users erin@example\.com/,
    },
    {
      name: 'an anonymous request',
      input: input({ userInfo: { username: 'system:anonymous', groups: ['system:unauthenticated'] } }),
      refusal: 'unauthenticated',
      message: /anonymous requests never review/,
    },
    {
      name: 'digest B (another command) submitted for request A',
      input: input({ review: submitted({ commandDigest: DIGEST_B }) }),
      refusal: 'digest-mismatch',
      message: new RegExp(`spec\\.commandDigest ${DIGEST_B} is not the digest of payments/ar-7k2mq4x6c3ha \\(${DIGEST_A}\\): you reviewed another command`),
    },
    {
      name: 'a review of an approved request',
      input: input({ accessRequest: accessRequest({ phase: 'Approved', decidedAt: '2026-11-29T10:20:00Z' }) }),
      refusal: 'after-decision',
      message: /payments\/ar-7k2mq4x6c3ha is already Approved: a decided request cannot be reviewed again/,
    },
    {
      name: 'an approval that would overturn a denial',
      input: input({ accessRequest: accessRequest({ phase: 'Denied' }) }),
      refusal: 'after-decision',
      message: /is already Denied/,
    },
    {
      name: 'a review of an executed request',
      input: input({ accessRequest: accessRequest({ phase: 'Executed' }) }),
      refusal: 'after-decision',
      message: /is already Executed/,
    },
    {
      name: 'a review of a request the controller marked Expired',
      input: input({ accessRequest: accessRequest({ phase: 'Expired' }) }),
      refusal: 'after-expiry',
      message: /payments\/ar-7k2mq4x6c3ha expired at 2026-11-29T11:00:00Z and will never run/,
    },
    {
      name: 'a review after expiresAt while the controller still shows Pending',
      input: input({ now: new Date('2026-11-29T11:00:00.000Z') }),
      refusal: 'after-expiry',
      message: /expired at 2026-11-29T11:00:00Z/,
    },
    {
      name: 'a second review by a reviewer already counted (changing sides)',
      input: input({ review: submitted({ decision: 'deny' }), accessRequest: accessRequest({ phase: 'Pending', approvals: [{ reviewer: 'alice@example.com', decision: 'approve', at: '2026-11-29T10:10:00Z' }] }) }),
      refusal: 'duplicate',
      message: /alice@example\.com has already reviewed payments\/ar-7k2mq4x6c3ha: each reviewer has one voice/,
    },
    {
      name: 'a second review by the same person under a differently cased user name',
      input: input({ userInfo: { username: 'Alice@Example.com', groups: ['dba'] }, accessRequest: accessRequest({ phase: 'Pending', approvals: [{ reviewer: 'alice@example.com', decision: 'approve', at: '2026-11-29T10:10:00Z' }] }) }),
      refusal: 'duplicate',
      message: /Alice@Example\.com has already reviewed/,
    },
    {
      name: 'an UPDATE flipping a decision',
      input: input({ operation: 'UPDATE', review: submitted({ decision: 'deny', reviewer: { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'alice-uid' } }) }),
      refusal: 'create-only',
      message: /AccessReviews are create-only: a decision cannot be changed once made/,
    },
    {
      name: 'a DELETE (to clear a denial)',
      input: input({ operation: 'DELETE', review: null }),
      refusal: 'create-only',
      message: /AccessReviews cannot be deleted: they are the record of a decision/,
    },
    {
      name: 'a CONNECT',
      input: input({ operation: 'CONNECT' as AdmissionOperation }),
      refusal: 'create-only',
      message: /admit CREATE only, not CONNECT/,
    },
    {
      name: 'a review of a request that does not exist',
      input: input({ accessRequest: undefined }),
      refusal: 'unknown-request',
      message: /AccessRequest payments\/ar-7k2mq4x6c3ha does not exist: run kubectl custos requests/,
    },
    {
      name: 'an adapter that fetched another request than spec.requestName',
      input: input({ review: submitted({ requestName: 'ar-aaaaaaaaaaaa' }) }),
      refusal: 'unknown-request',
      message: /AccessRequest payments\/ar-aaaaaaaaaaaa does not exist/,
    },
    {
      name: 'a request in another namespace',
      input: input({ accessRequest: { ...accessRequest(), metadata: { name: 'ar-7k2mq4x6c3ha', namespace: 'staging' } } }),
      refusal: 'unknown-request',
      message: /does not exist/,
    },
    {
      name: 'a request the operator has not opened yet (no phase)',
      input: input({ accessRequest: accessRequest(null) }),
      refusal: 'not-open',
      message: /not open for review yet/,
    },
    {
      name: 'a blank reason',
      input: input({ review: submitted({ reason: ' \t ' }) }),
      refusal: 'reason-required',
      message: /spec\.reason: Required value: a review needs a reason/,
    },
    {
      name: 'no reason at all',
      input: input({ review: submitted({ reason: undefined }) }),
      refusal: 'malformed',
      message: /spec\.reason: Required value/,
    },
    {
      name: 'a decision that is neither approve nor deny',
      input: input({ review: submitted({ decision: 'abstain' }) }),
      refusal: 'malformed',
      message: /spec\.decision: Unsupported value: "abstain": supported values: "approve", "deny"/,
    },
    {
      name: 'a digest that is not sha256:<hex>',
      input: input({ review: submitted({ commandDigest: 'md5:abc' }) }),
      refusal: 'malformed',
      message: /spec\.commandDigest: Invalid value: "md5:abc"/,
    },
    {
      name: 'a review without spec',
      input: input({ review: { apiVersion: 'custos.io/v1alpha1', kind: 'AccessReview', metadata: { name: 'x' } } }),
      refusal: 'malformed',
      message: /^spec: Required value$/,
    },
    {
      name: 'a reason longer than 1024 characters (counted as the API server does)',
      input: input({ review: submitted({ reason: '🔒'.repeat(1025) }) }),
      refusal: 'malformed',
      message: /spec\.reason: Too long: may not be more than 1024 characters/,
    },
  ];

  for (const attack of attacks) {
    it(`refuses ${attack.name}`, () => {
      const result = admitReview(attack.input);
      assert.ok(!result.allowed, JSON.stringify(result));
      assert.equal(result.refusal, attack.refusal, result.message);
      assert.match(result.message, attack.message);
    });
  }

  it('a denial by an outsider is refused as an approval would be (a deny must come from a reviewer)', () => {
    const result = admitReview(input({ userInfo: MALLORY, review: submitted({ decision: 'deny' }) }));
    assert.ok(!result.allowed, JSON.stringify(result));
    assert.equal(result.refusal, 'not-an-allowed-reviewer');
  });
});

describe('admitReview admits honest reviews and stamps the authenticated reviewer', () => {
  it('stamps spec.reviewer from userInfo; the stamped object passes the CRD schema', () => {
    const review = submitted();
    const result = admitReview(input({ review }));
    assert.ok(result.allowed, JSON.stringify(result));
    assert.deepEqual(result.patch, [{ op: 'add', path: '/spec/reviewer', value: { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'alice-uid' } }]);
    const stamped = applyJsonPatch(review, result.patch);
    assert.equal(validateReview(stamped), true, JSON.stringify(validateReview.errors));
    assert.deepEqual(result.review, {
      reviewer: { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], id: 'alice-uid', via: 'kubernetes' },
      decision: 'approve', reason: 'ticket OPS-42: purge of test invoices', at: NOW.toISOString(), commandDigest: DIGEST_A,
    });
  });

  it('without the stamp the object fails the CRD schema (the webhook is what makes it valid)', () => {
    assert.equal(validateReview(submitted()), false);
    assert.ok(validateReview.errors?.some((e) => e.params['missingProperty'] === 'reviewer'));
  });

  it('accepts a client-supplied reviewer identical to the caller (groups in any order), and still stamps it', () => {
    const review = submitted({ reviewer: { username: 'alice@example.com', groups: ['system:authenticated', 'dba'], uid: 'alice-uid' } });
    const result = admitReview(input({ review }));
    assert.ok(result.allowed, JSON.stringify(result));
    assert.deepEqual(applyJsonPatch(review, result.patch).spec, { ...(review['spec'] as object), reviewer: { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'alice-uid' } });
  });

  it('admits a user named in spec.reviewers.users, without a uid', () => {
    const result = admitReview(input({ userInfo: ERIN, review: submitted({ decision: 'deny', reason: 'not during month-end close' }) }));
    assert.ok(result.allowed, JSON.stringify(result));
    assert.deepEqual(result.patch, [{ op: 'add', path: '/spec/reviewer', value: { username: 'erin@example.com', groups: ['system:authenticated'] } }]);
  });

  it('admits a second distinct reviewer while the first approval is counted', () => {
    const result = admitReview(input({
      userInfo: { username: 'bob@example.com', groups: ['dba'] },
      accessRequest: accessRequest({ phase: 'Pending', approvals: [{ reviewer: 'alice@example.com', decision: 'approve', at: '2026-11-29T10:10:00Z' }] }),
    }));
    assert.ok(result.allowed, JSON.stringify(result));
  });

  it('an admitted, stored review counts in the controller\'s tally; two distinct reviewers approve', () => {
    const request = accessRequest();
    assert.equal(validateRequest(request), true, JSON.stringify(validateRequest.errors));
    const stored = (user: AdmissionUserInfo, at: string): AccessReview => {
      const result = admitReview(input({ userInfo: user }));
      assert.ok(result.allowed, JSON.stringify(result));
      const object = applyJsonPatch(submitted(), result.patch) as unknown as AccessReview;
      return { ...object, metadata: { ...object.metadata, creationTimestamp: at } };
    };
    const reviews = [stored(ALICE, '2026-11-29T10:31:00Z'), stored({ username: 'bob@example.com', groups: ['dba'] }, '2026-11-29T10:32:00Z')];
    const first = tally(reviewableFromAccessRequest(request), reviews.slice(0, 1).map(reviewFromAccessReview), NOW);
    assert.equal(first.phase, 'Pending');
    const both = tally(reviewableFromAccessRequest(request), reviews.map(reviewFromAccessReview), NOW);
    assert.equal(both.phase, 'Approved');
    assert.equal(both.decidedAt, '2026-11-29T10:32:00Z');
    assert.deepEqual(both.counted.map((r) => r.reviewer.username), ['alice@example.com', 'bob@example.com']);
  });

  it('reads an AccessRequest as the tally does: default one approval, absent reviewer lists empty', () => {
    const { approvalsRequired: _, ...spec } = accessRequest().spec;
    const request: AccessRequest = { ...accessRequest(), spec: { ...spec, reviewers: { groups: ['dba'] } } };
    assert.deepEqual(reviewableFromAccessRequest(request), {
      requester: { id: REQUESTER_SA }, commandDigest: DIGEST_A, expiresAt: EXPIRES,
      settings: { reviewers: { groups: ['dba'], users: [] }, minApprovals: 1 },
    });
  });

  it('a stored review without a creation time never counts', () => {
    const review: AccessReview = {
      apiVersion: 'custos.io/v1alpha1', kind: 'AccessReview', metadata: { name: 'r' },
      spec: { requestName: 'ar-7k2mq4x6c3ha', decision: 'approve', reason: 'ok', commandDigest: DIGEST_A, reviewer: { username: 'alice@example.com', groups: ['dba'] } },
    };
    const status = tally(reviewableFromAccessRequest(accessRequest(null, { approvalsRequired: 1 })), [reviewFromAccessReview(review)], NOW);
    assert.equal(status.phase, 'Pending');
    assert.equal(status.refused[0]?.why, 'after-expiry');
  });
});
