// The AccessRequest the operator materialises from a Redis approval request: every spec field as
// reviewers will read it with kubectl, the CRD's bounds (a long statement is shown cut, its digest
// still binds the whole), and the result passes the CRD's generated validator, so the API server
// will accept what the operator creates.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import validateRequest from '../../crds/generated/access-request.validate.js';
import type { AccessRequest } from '../../crds/generated/access-request.ts';
import type { ApprovalRequest, ApprovalSettings } from '../../policy/approvals/approval-types.ts';
import { ACCESS_REQUEST_LABELS, accessRequestManifest } from './access-request-manifest.ts';

const DIGEST = `sha256:${'c'.repeat(64)}`;
const CRD_MAX_COMMAND = 16_384;
const CUT_MARK = ' …(truncated)';

const SETTINGS: ApprovalSettings = {
  reviewers: { groups: ['dba'], users: ['erin@example.com'] },
  minApprovals: 2,
  mode: 'hold',
  holdTimeoutSeconds: 300,
  ttlSeconds: 3600,
  grant: { scope: 'once' },
};

function approvalRequest(overrides: Partial<ApprovalRequest> = {}, settings: Partial<ApprovalSettings> = {}): ApprovalRequest {
  return {
    id: 'ar-7k2mq4x6c3ha',
    createdAt: '2026-11-29T10:00:00.000Z',
    expiresAt: '2026-11-29T11:00:00.000Z',
    requester: { id: 'system:serviceaccount:payments:billing', kind: 'ServiceAccount', displayName: 'billing' },
    gateway: { id: 'gw-billing-0', namespace: 'payments', pod: 'billing-0', podUid: 'pod-uid-1' },
    target: { name: 'billing', protocol: 'postgres', database: 'app', user: 'app_rw' },
    policy: { name: 'billing-approvals', namespace: 'payments', version: '7', rule: 'approve-unfiltered' },
    command: 'DELETE FROM invoices WHERE created_at < $1',
    fingerprint: 'fp-1',
    commandDigest: DIGEST,
    reason: 'ticket OPS-42',
    settings: { ...SETTINGS, ...settings },
    ...overrides,
  };
}

function manifest(request: ApprovalRequest): AccessRequest {
  const result = accessRequestManifest(request);
  assert.ok(result, 'a request filed in a namespace has an AccessRequest');
  return result;
}

function assertValid(object: AccessRequest): void {
  assert.equal(validateRequest(object), true, JSON.stringify(validateRequest.errors));
}

describe('accessRequestManifest', () => {
  it('maps the filed request onto the AccessRequest spec, named by the request id in the gateway\'s namespace', () => {
    const object = manifest(approvalRequest());
    assert.deepEqual(object, {
      apiVersion: 'custos.io/v1alpha1',
      kind: 'AccessRequest',
      metadata: {
        name: 'ar-7k2mq4x6c3ha',
        namespace: 'payments',
        labels: { [ACCESS_REQUEST_LABELS.policy]: 'billing-approvals', [ACCESS_REQUEST_LABELS.managedBy]: 'custos-operator' },
      },
      spec: {
        policyRef: { name: 'billing-approvals', rule: 'approve-unfiltered' },
        requester: { id: 'system:serviceaccount:payments:billing', kind: 'ServiceAccount', displayName: 'billing', pod: 'billing-0' },
        target: { name: 'billing', protocol: 'postgres', database: 'app', user: 'app_rw' },
        command: 'DELETE FROM invoices WHERE created_at < $1',
        commandDigest: DIGEST,
        mode: 'hold',
        reason: 'ticket OPS-42',
        reviewers: { groups: ['dba'], users: ['erin@example.com'] },
        approvalsRequired: 2,
        expiresAt: '2026-11-29T11:00:00.000Z',
      },
    });
    assertValid(object);
  });

  it('leaves out what the request does not carry: display name, pod, database, user, reason', () => {
    const { reason: _reason, ...withoutReason } = approvalRequest({
      requester: { id: 'https://idp.example.com#9f2c', kind: 'OIDC' },
      gateway: { id: 'gw', namespace: 'payments' },
      target: { name: 'billing', protocol: 'postgres' },
    });
    const object = manifest(withoutReason);
    assert.deepEqual(object.spec.requester, { id: 'https://idp.example.com#9f2c', kind: 'OIDC' });
    assert.deepEqual(object.spec.target, { name: 'billing', protocol: 'postgres' });
    assert.equal('reason' in object.spec, false);
    assertValid(object);
  });

  it('shows a statement longer than the CRD allows cut at the bound, with the digest of the whole unchanged', () => {
    const long = `INSERT INTO t VALUES ${'($1),'.repeat(5000)}($2)`;
    assert.ok(long.length > CRD_MAX_COMMAND);
    const object = manifest(approvalRequest({ command: long }));
    const shown = object.spec.command ?? '';
    assert.equal(shown.length, CRD_MAX_COMMAND);
    assert.ok(shown.endsWith(CUT_MARK), 'the cut is marked for the reader');
    assert.equal(shown.slice(0, -CUT_MARK.length), long.slice(0, CRD_MAX_COMMAND - CUT_MARK.length));
    assert.equal(object.spec.commandDigest, DIGEST);
    assertValid(object);
  });

  it('keeps a statement exactly at the bound whole', () => {
    const exact = `SELECT '${'x'.repeat(CRD_MAX_COMMAND - 9)}'`;
    assert.equal(exact.length, CRD_MAX_COMMAND);
    const object = manifest(approvalRequest({ command: exact }));
    assert.equal(object.spec.command, exact);
    assertValid(object);
  });

  it('carries the mode: hold and return as set', () => {
    assert.equal(manifest(approvalRequest({}, { mode: 'hold' })).spec.mode, 'hold');
    const returning = manifest(approvalRequest({}, { mode: 'return' }));
    assert.equal(returning.spec.mode, 'return');
    assert.equal('windowSeconds' in returning.spec, false);
    assertValid(returning);
  });

  it('shows a window grant as mode window with its windowSeconds, whatever the settings\' mode', () => {
    const object = manifest(approvalRequest({}, { mode: 'return', grant: { scope: 'window', windowSeconds: 900 } }));
    assert.equal(object.spec.mode, 'window');
    assert.equal(object.spec.windowSeconds, 900);
    assertValid(object);
  });

  it('omits an empty reviewer list (the CRD requires a non-empty one when present)', () => {
    const groupsOnly = manifest(approvalRequest({}, { reviewers: { groups: ['dba', 'sre'], users: [] } }));
    assert.deepEqual(groupsOnly.spec.reviewers, { groups: ['dba', 'sre'] });
    assertValid(groupsOnly);
    const usersOnly = manifest(approvalRequest({}, { reviewers: { groups: [], users: ['erin@example.com'] } }));
    assert.deepEqual(usersOnly.spec.reviewers, { users: ['erin@example.com'] });
    assertValid(usersOnly);
  });

  it('copies the reviewer lists rather than sharing the settings\' arrays', () => {
    const request = approvalRequest();
    const object = manifest(request);
    assert.notEqual(object.spec.reviewers.groups, request.settings.reviewers.groups);
    assert.notEqual(object.spec.reviewers.users, request.settings.reviewers.users);
  });

  it('carries approvalsRequired and expiresAt', () => {
    const object = manifest(approvalRequest({ expiresAt: '2026-11-30T09:15:00.000Z' }, { minApprovals: 3 }));
    assert.equal(object.spec.approvalsRequired, 3);
    assert.equal(object.spec.expiresAt, '2026-11-30T09:15:00.000Z');
    assertValid(object);
  });

  it('cuts the requester\'s reason to the CRD\'s 1024 characters', () => {
    const object = manifest(approvalRequest({ reason: 'r'.repeat(5000) }));
    assert.equal(object.spec.reason, 'r'.repeat(1024));
    assertValid(object);
  });

  it('has no AccessRequest for a request filed outside a namespace (local mode)', () => {
    assert.equal(accessRequestManifest(approvalRequest({ gateway: { id: 'gw-local' } })), undefined);
    assert.equal(accessRequestManifest(approvalRequest({ gateway: { id: 'gw-local', namespace: '' } })), undefined);
  });

  it('would be refused by the CRD validator if the spec were broken (the validator is not vacuous)', () => {
    const object = manifest(approvalRequest());
    const broken = { ...object, spec: { ...object.spec, commandDigest: 'sha256:nope' } };
    assert.equal(validateRequest(broken), false);
    const tooLong = { ...object, spec: { ...object.spec, command: 'x'.repeat(CRD_MAX_COMMAND + 1) } };
    assert.equal(validateRequest(tooLong), false);
  });
});
