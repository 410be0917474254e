import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { InjectionResult } from '../webhook/build-patch.ts';
import { decodeAdmissionReview, encodeAdmissionResponse, sanitizeWarnings, type DecodeResult } from './admission-review.ts';

const UID = '705ab4f5-6393-11e8-b7cc-42010a800002';

function review(request: Record<string, unknown> = {}, envelope: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: UID,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'payments',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts'] },
      object: { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'billing-7c9f-', namespace: 'payments' }, spec: { containers: [{ name: 'app' }] } },
      oldObject: null,
      dryRun: false,
      ...request,
    },
    ...envelope,
  };
}

function refused(result: DecodeResult): string {
  if (result.ok) assert.fail('expected the review to be refused');
  return result.message;
}

describe('decodeAdmissionReview', () => {
  const options = { operations: ['CREATE'] as const };

  it('decodes what the API server sends for a pod CREATE', () => {
    const result = decodeAdmissionReview(review(), options);
    assert.ok(result.ok);
    assert.equal(result.request.uid, UID);
    assert.equal(result.request.operation, 'CREATE');
    assert.equal(result.request.namespace, 'payments');
    assert.equal(result.request.name, '');
    assert.deepEqual(result.request.userInfo, { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts'] });
    assert.equal(result.request.pod.metadata?.generateName, 'billing-7c9f-');
    assert.equal(result.request.dryRun, false);
  });

  it('defaults absent groups, name and dryRun', () => {
    const result = decodeAdmissionReview(review({ userInfo: { username: 'alice' }, dryRun: undefined, name: undefined }), options);
    assert.ok(result.ok);
    assert.deepEqual(result.request.userInfo.groups, []);
    assert.equal(result.request.dryRun, false);
  });

  const malformed: ReadonlyArray<[string, unknown, RegExp]> = [
    ['a JSON array', [], /expected an AdmissionReview object, got \[\]/],
    ['null', null, /expected an AdmissionReview object, got null/],
    ['a v1beta1 review', review({}, { apiVersion: 'admission.k8s.io/v1beta1' }), /expected apiVersion admission\.k8s\.io\/v1 and kind AdmissionReview, got apiVersion "admission\.k8s\.io\/v1beta1"/],
    ['another kind', review({}, { kind: 'TokenReview' }), /kind "TokenReview"/],
    ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, /^request: required object is missing$/],
    ['no uid', review({ uid: undefined }), /request\.uid: expected a non-empty printable string/],
    ['an empty uid', review({ uid: '' }), /request\.uid/],
    ['a numeric uid', review({ uid: 42 }), /request\.uid.*got 42/],
    ['a uid with a newline (log and header injection)', review({ uid: 'abc\nlevel=error' }), /request\.uid/],
    ['an overlong uid', review({ uid: 'u'.repeat(129) }), /request\.uid/],
    ['a Deployment', review({ kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }), /request\.kind: this webhook admits core\/v1 Pod only/],
    ['a subresource', review({ subResource: 'ephemeralcontainers' }), /pods\/ephemeralcontainers subresource/],
    ['an UPDATE when registered for CREATE', review({ operation: 'UPDATE' }), /registered for CREATE, got UPDATE/],
    ['an unknown operation', review({ operation: 'EXPLODE' }), /request\.operation: expected one of CREATE, UPDATE, DELETE, CONNECT/],
    ['no namespace', review({ namespace: undefined }), /request\.namespace: pods are namespaced/],
    ['a pod from another namespace', review({ object: { kind: 'Pod', metadata: { namespace: 'kube-system' }, spec: {} } }), /"kube-system" differs from request\.namespace "payments"/],
    ['no object', review({ object: null }), /request\.object: the pod is missing/],
    ['an object of another kind', review({ object: { kind: 'Secret', metadata: {} } }), /request\.object\.kind: expected Pod, got "Secret"/],
    ['a spec that is not an object', review({ object: { kind: 'Pod', spec: [] } }), /request\.object\.spec: expected an object/],
    ['metadata that is not an object', review({ object: { kind: 'Pod', metadata: 'x' } }), /request\.object\.metadata: expected an object/],
    ['no userInfo', review({ userInfo: undefined }), /request\.userInfo\.username/],
    ['groups that are not strings', review({ userInfo: { username: 'a', groups: [1] } }), /request\.userInfo\.groups/],
    ['a string dryRun', review({ dryRun: 'true' }), /request\.dryRun: expected a boolean/],
  ];
  for (const [what, body, message] of malformed) {
    it(`refuses ${what}, saying which field is wrong`, () => {
      assert.match(refused(decodeAdmissionReview(body, options)), message);
    });
  }

  it('returns the uid with a refusal once it could be read, for the log line', () => {
    const result = decodeAdmissionReview(review({ operation: 'DELETE' }), options);
    assert.deepEqual(result, { ok: false, message: 'request.operation: this webhook is registered for CREATE, got DELETE', uid: UID });
  });

  it('accepts UPDATE when registered for it', () => {
    assert.ok(decodeAdmissionReview(review({ operation: 'UPDATE' }), { operations: ['CREATE', 'UPDATE'] }).ok);
  });

  it('cuts long values it quotes in messages', () => {
    const message = refused(decodeAdmissionReview(review({ kind: { group: 'x'.repeat(500), version: 'v1', kind: 'Pod' } }), options));
    assert.ok(message.length < 200, message);
  });
});

describe('encodeAdmissionResponse', () => {
  it('echoes the uid and sends a patch as base64 JSONPatch with its warnings', () => {
    const patch = [{ op: 'add' as const, path: '/metadata/labels/custos.io~1injected', value: 'true' }];
    const result: InjectionResult = {
      kind: 'patch', reason: 'injected', patch, policy: 'billing',
      status: { version: '0.1.0', policy: 'billing', fingerprint: 'f', initContainers: [], containers: [], volumes: [] },
      annotations: {}, labels: {}, warnings: ['AccessPolicy other: selector invalid'],
    };
    const review = encodeAdmissionResponse(UID, result);
    assert.equal(review.apiVersion, 'admission.k8s.io/v1');
    assert.equal(review.kind, 'AdmissionReview');
    assert.equal(review.response.uid, UID);
    assert.equal(review.response.allowed, true);
    assert.equal(review.response.patchType, 'JSONPatch');
    assert.deepEqual(JSON.parse(Buffer.from(review.response.patch ?? '', 'base64').toString('utf8')), patch);
    assert.deepEqual(review.response.warnings, ['AccessPolicy other: selector invalid']);
    assert.equal(review.response.status, undefined);
  });

  it('allows a skipped pod without a patch or warnings', () => {
    const review = encodeAdmissionResponse(UID, { kind: 'skip', reason: 'no-policy-selects-pod', message: 'no policy', warnings: [] });
    assert.deepEqual(review.response, { uid: UID, allowed: true });
  });

  it('denies a rejected pod with 403 Forbidden and the builder\'s message', () => {
    const message = 'Custos refuses pod payments/x: container app adds capabilities NET_ADMIN; remove them';
    const review = encodeAdmissionResponse(UID, { kind: 'reject', reason: 'adds-net-admin', message });
    assert.deepEqual(review.response, { uid: UID, allowed: false, status: { metadata: {}, status: 'Failure', code: 403, reason: 'Forbidden', message } });
  });
});

describe('sanitizeWarnings', () => {
  it('replaces control characters, which would break the Warning header, and drops empty ones', () => {
    assert.deepEqual(sanitizeWarnings(['a\r\nWarning: 299 - "forged"', '\u0000\u001f', 'tab\there']), ['a Warning: 299 - "forged"', 'tab here']);
  });

  it('keeps at most ten warnings of at most 256 characters', () => {
    const out = sanitizeWarnings(Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(1000, 'w')));
    assert.equal(out.length, 10);
    for (const w of out) assert.equal(w.length, 256);
    assert.ok(out[0]?.endsWith('...'));
  });
});
