// The AccessReview webhook's AdmissionReview codec: what is not an AccessReview admission is refused
// naming the field at fault, DELETE is judged on the stored object, and the answer is either the
// stamping JSON Patch or a 403 whose message kubectl shows the reviewer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeReviewAdmission, encodeReviewAdmission, type ReviewDecodeResult } from './review-admission-review.ts';

const UID = '3c1f0a52-8f0e-4c55-9a43-2f0c2b7e9d11';

const SUBMITTED = {
  apiVersion: 'custos.io/v1alpha1',
  kind: 'AccessReview',
  metadata: { generateName: 'ar-7k2mq4x6c3ha-', namespace: 'payments' },
  spec: { requestName: 'ar-7k2mq4x6c3ha', decision: 'approve', reason: 'ticket OPS-42', commandDigest: `sha256:${'a'.repeat(64)}` },
};
const STORED = { ...SUBMITTED, metadata: { name: 'ar-7k2mq4x6c3ha-x8d2k', namespace: 'payments', uid: 'stored-uid' } };

function admission(request: Record<string, unknown> = {}, envelope: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: UID,
      kind: { group: 'custos.io', version: 'v1alpha1', kind: 'AccessReview' },
      resource: { group: 'custos.io', version: 'v1alpha1', resource: 'accessreviews' },
      namespace: 'payments',
      operation: 'CREATE',
      userInfo: { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'alice-uid' },
      object: SUBMITTED,
      oldObject: null,
      dryRun: false,
      ...request,
    },
    ...envelope,
  };
}

function refused(result: ReviewDecodeResult): { message: string; uid?: string } {
  if (result.ok) assert.fail('expected the AdmissionReview to be refused');
  return result;
}

describe('decodeReviewAdmission', () => {
  it('decodes an AccessReview CREATE: uid, namespace, the submitted object and the authenticated user', () => {
    const result = decodeReviewAdmission(admission());
    assert.ok(result.ok);
    assert.deepEqual(result.request, {
      uid: UID,
      operation: 'CREATE',
      namespace: 'payments',
      review: SUBMITTED,
      userInfo: { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'alice-uid' },
    });
  });

  it('judges UPDATE on the object as submitted', () => {
    const changed = { ...STORED, spec: { ...STORED.spec, decision: 'deny' } };
    const result = decodeReviewAdmission(admission({ operation: 'UPDATE', object: changed, oldObject: STORED }));
    assert.ok(result.ok);
    assert.equal(result.request.operation, 'UPDATE');
    assert.deepEqual(result.request.review, changed);
  });

  it('judges DELETE on the stored object (oldObject), as the API server sends no object', () => {
    const result = decodeReviewAdmission(admission({ operation: 'DELETE', object: null, oldObject: STORED }));
    assert.ok(result.ok);
    assert.equal(result.request.operation, 'DELETE');
    assert.deepEqual(result.request.review, STORED);
  });

  it('carries the user\'s uid when the API server sends one, and leaves it out when blank or absent', () => {
    const withUid = decodeReviewAdmission(admission());
    assert.ok(withUid.ok);
    assert.equal(withUid.request.userInfo.uid, 'alice-uid');
    const blank = decodeReviewAdmission(admission({ userInfo: { username: 'erin@example.com', groups: ['system:authenticated'], uid: '' } }));
    assert.ok(blank.ok);
    assert.deepEqual(blank.request.userInfo, { username: 'erin@example.com', groups: ['system:authenticated'] });
    const absent = decodeReviewAdmission(admission({ userInfo: { username: 'erin@example.com' } }));
    assert.ok(absent.ok);
    assert.deepEqual(absent.request.userInfo, { username: 'erin@example.com', groups: [] }, 'absent groups are none');
  });

  const malformed: ReadonlyArray<[string, unknown, RegExp, boolean]> = [
    // [name, body, message, whether the uid is known to answer with]
    ['not an object', [], /^expected an AdmissionReview object, got \[\]$/, false],
    ['null', null, /^expected an AdmissionReview object, got null$/, false],
    ['a v1beta1 AdmissionReview', admission({}, { apiVersion: 'admission.k8s.io/v1beta1' }), /^expected apiVersion admission\.k8s\.io\/v1 and kind AdmissionReview, got apiVersion "admission\.k8s\.io\/v1beta1"/, false],
    ['another kind of review', admission({}, { kind: 'TokenReview' }), /and kind "TokenReview"$/, false],
    ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, /^request: required object is missing$/, false],
    ['a missing uid', admission({ uid: undefined }), /^request\.uid: expected a non-empty printable string of at most 128 characters, got /, false],
    ['an empty uid', admission({ uid: '' }), /^request\.uid: expected a non-empty printable string of at most 128 characters, got /, false],
    ['a uid with a newline', admission({ uid: 'a\nb' }), /^request\.uid: expected a non-empty printable string of at most 128 characters, got /, false],
    ['a Pod', admission({ kind: { group: '', version: 'v1', kind: 'Pod' } }), /^request\.kind: this webhook admits AccessReview\.custos\.io only$/, true],
    ['an AccessRequest', admission({ kind: { group: 'custos.io', version: 'v1alpha1', kind: 'AccessRequest' } }), /^request\.kind: this webhook admits AccessReview\.custos\.io only/, true],
    ['an AccessReview of another group', admission({ kind: { group: 'evil.io', version: 'v1', kind: 'AccessReview' } }), /^request\.kind: /, true],
    ['the status subresource', admission({ subResource: 'status', operation: 'UPDATE' }), /^request\.subResource: the status subresource is written by the controller, not admitted here$/, true],
    ['an unknown operation', admission({ operation: 'PATCH' }), /^request\.operation: expected one of CREATE, UPDATE, DELETE, CONNECT$/, true],
    ['a missing operation', admission({ operation: undefined }), /^request\.operation: /, true],
    ['no namespace', admission({ namespace: undefined }), /^request\.namespace: AccessReviews are namespaced, but the request names no namespace$/, true],
    ['an empty namespace', admission({ namespace: '' }), /^request\.namespace: /, true],
    ['no userInfo', admission({ userInfo: undefined }), /^request\.userInfo\.username: required string is missing$/, true],
    ['no user name', admission({ userInfo: { groups: ['dba'] } }), /^request\.userInfo\.username: required string is missing$/, true],
    ['groups that are not strings', admission({ userInfo: { username: 'alice@example.com', groups: ['dba', 7] } }), /^request\.userInfo\.groups: expected a list of strings$/, true],
    ['groups that are not a list', admission({ userInfo: { username: 'alice@example.com', groups: 'dba' } }), /^request\.userInfo\.groups: expected a list of strings$/, true],
    ['a uid that is not a string', admission({ userInfo: { username: 'alice@example.com', groups: [], uid: 42 } }), /^request\.userInfo\.uid: expected a string$/, true],
  ];
  for (const [name, body, message, uidKnown] of malformed) {
    it(`refuses ${name}, naming the field`, () => {
      const result = refused(decodeReviewAdmission(body));
      assert.match(result.message, message);
      assert.equal(result.uid, uidKnown ? UID : undefined);
    });
  }

  it('accepts an empty subResource (the API server sends "" for the main resource)', () => {
    assert.ok(decodeReviewAdmission(admission({ subResource: '' })).ok);
  });
});

describe('encodeReviewAdmission', () => {
  it('answers an admitted review with the stamping patch, base64 JSON Patch, echoing the uid', () => {
    const patch = [{ op: 'add' as const, path: '/spec/reviewer', value: { username: 'alice@example.com', groups: ['dba'], uid: 'alice-uid' } }];
    const review = { reviewer: { username: 'alice@example.com', groups: ['dba'], id: 'alice-uid', via: 'kubernetes' as const }, decision: 'approve' as const, reason: 'ok', at: '2026-11-29T10:30:00.000Z', commandDigest: `sha256:${'a'.repeat(64)}` };
    const answer = encodeReviewAdmission(UID, { allowed: true, patch, review });
    assert.equal(answer.apiVersion, 'admission.k8s.io/v1');
    assert.equal(answer.kind, 'AdmissionReview');
    const { response } = answer;
    assert.equal(response.uid, UID);
    assert.equal(response.allowed, true);
    assert.equal(response.patchType, 'JSONPatch');
    assert.ok(response.patch !== undefined);
    assert.match(response.patch, /^[A-Za-z0-9+/]+=*$/, 'base64');
    assert.deepEqual(JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')), patch);
    assert.equal(response.status, undefined);
  });

  it('answers a refused review with 403 Forbidden carrying the message, and no patch', () => {
    const message = 'mallory@example.com is not a reviewer of payments/ar-7k2mq4x6c3ha: it may be reviewed by members of dba';
    const answer = encodeReviewAdmission(UID, { allowed: false, refusal: 'not-an-allowed-reviewer', message });
    assert.deepEqual(answer, {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: UID, allowed: false, status: { metadata: {}, status: 'Failure', code: 403, reason: 'Forbidden', message } },
    });
  });

  it('keeps non-ASCII text intact through the base64 patch', () => {
    const patch = [{ op: 'add' as const, path: '/spec/reviewer', value: { username: 'zoë@example.com', groups: ['dba'] } }];
    const review = { reviewer: { username: 'zoë@example.com', groups: ['dba'], via: 'kubernetes' as const }, decision: 'deny' as const, reason: 'nein', at: '2026-11-29T10:30:00.000Z', commandDigest: `sha256:${'a'.repeat(64)}` };
    const { response } = encodeReviewAdmission(UID, { allowed: true, patch, review });
    assert.deepEqual(JSON.parse(Buffer.from(response.patch ?? '', 'base64').toString('utf8')), patch);
  });
});
