import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ApprovalRequest } from '../../policy/approvals/approval-types.ts';
import { parseRequest, parseReviewRecord, serializeRequest, serializeReviewRecord, type ReviewRecord } from './approval-records.ts';

const request: ApprovalRequest = {
  id: 'ar-abcdefghijkl',
  createdAt: '2026-01-01T10:00:00.000Z',
  expiresAt: '2026-01-01T11:00:00.000Z',
  requester: { id: 'system:serviceaccount:payments:billing', kind: 'ServiceAccount' },
  gateway: { id: 'gw', pod: 'billing-0' },
  target: { name: 'db', protocol: 'postgres', user: 'app' },
  policy: { name: 'p', version: '1', rule: 'r' },
  command: 'DELETE FROM invoices',
  fingerprint: 'f',
  commandDigest: `sha256:${'0'.repeat(64)}`,
  reason: 'why',
  settings: { reviewers: { groups: ['dba'], users: [] }, minApprovals: 1, mode: 'hold', holdTimeoutSeconds: 300, ttlSeconds: 3600, grant: { scope: 'window', windowSeconds: 60 } },
};

const review: ReviewRecord = { decision: 'approve', reason: 'ok', at: '2026-01-01T10:01:00.000Z', commandDigest: `sha256:${'0'.repeat(64)}`, token: 'a.b.c' };

function mutate(value: object, change: (copy: Record<string, unknown>) => void): string {
  const copy = JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
  change(copy);
  return JSON.stringify(copy);
}

describe('approval records', () => {
  it('round-trips a request and a review exactly', () => {
    assert.deepEqual(parseRequest(serializeRequest(request), request.id), request);
    assert.deepEqual(parseReviewRecord(serializeReviewRecord(review)), review);
    const withReviewers: ApprovalRequest = { ...request, reviewerAuthentication: { issuer: 'https://idp.example', audience: 'custos-reviewers' } };
    assert.deepEqual(parseRequest(serializeRequest(withReviewers), request.id), withReviewers);
  });

  it('refuses a request stored under another id', () => {
    assert.throws(() => parseRequest(serializeRequest(request), 'ar-zzzzzzzzzzzz'), /request\.id/);
  });

  const badRequests: [string, string][] = [
    ['not JSON', '{'],
    ['an array', '[]'],
    ['an id that is not a request id', mutate(request, (r) => { r['id'] = '../../etc'; })],
    ['an unknown requester kind', mutate(request, (r) => { (r['requester'] as Record<string, unknown>)['kind'] = 'Root'; })],
    ['a malformed digest', mutate(request, (r) => { r['commandDigest'] = 'sha256:xyz'; })],
    ['zero approvals needed', mutate(request, (r) => { (r['settings'] as Record<string, unknown>)['minApprovals'] = 0; })],
    ['a fractional approval count', mutate(request, (r) => { (r['settings'] as Record<string, unknown>)['minApprovals'] = 0.5; })],
    ['reviewer groups that are not strings', mutate(request, (r) => { ((r['settings'] as Record<string, unknown>)['reviewers'] as Record<string, unknown>)['groups'] = [1]; })],
    ['an unknown grant scope', mutate(request, (r) => { (r['settings'] as Record<string, unknown>)['grant'] = { scope: 'forever' }; })],
    ['a window longer than any rule may grant', mutate(request, (r) => { (r['settings'] as Record<string, unknown>)['grant'] = { scope: 'window', windowSeconds: 28_801 }; })],
    ['reviewer authentication without an audience', mutate(request, (r) => { r['reviewerAuthentication'] = { issuer: 'https://idp.example' }; })],
    ['an unparseable expiry', mutate(request, (r) => { r['expiresAt'] = 'soon'; })],
  ];
  for (const [name, text] of badRequests) {
    it(`refuses a request with ${name}`, () => {
      assert.throws(() => parseRequest(text), { code: 'ERR_APPROVAL_RECORD_INVALID' });
    });
  }

  const badReviews: [string, string][] = [
    ['another decision', mutate(review, (r) => { r['decision'] = 'approve!'; })],
    ['no token', mutate(review, (r) => { r['token'] = ''; })],
    ['a huge token', mutate(review, (r) => { r['token'] = 'x'.repeat(9000); })],
    ['a huge reason', mutate(review, (r) => { r['reason'] = 'x'.repeat(2000); })],
    ['a reason that is not a string', mutate(review, (r) => { r['reason'] = null; })],
    ['an unparseable time', mutate(review, (r) => { r['at'] = 'now'; })],
    ['a malformed digest', mutate(review, (r) => { r['commandDigest'] = 'md5:00'; })],
  ];
  for (const [name, text] of badReviews) {
    it(`refuses a review with ${name}`, () => {
      assert.throws(() => parseReviewRecord(text), { code: 'ERR_APPROVAL_RECORD_INVALID' });
    });
  }

  it('does not carry a reviewer field from the stored record into the parsed review', () => {
    const parsed = parseReviewRecord(mutate(review, (r) => { r['reviewer'] = { username: 'root', groups: ['dba'] }; }));
    assert.equal(Object.hasOwn(parsed, 'reviewer'), false);
  });
});
