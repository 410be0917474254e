import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { approvalDigest, windowGrantDigest, type ApprovalDigestInput } from './approval-digest.ts';

const base: ApprovalDigestInput = {
  gateway: { id: 'gw', namespace: 'payments', pod: 'billing-0', podUid: 'uid-1' },
  target: 'invoices-db',
  database: 'app',
  user: 'app',
  requesterId: 'system:serviceaccount:payments:billing',
  sql: 'DELETE FROM invoices WHERE id = $1',
  parameters: [Buffer.from('42')],
};

describe('approvalDigest', () => {
  it('is sha256:<64 hex> and stable', () => {
    assert.match(approvalDigest(base), /^sha256:[0-9a-f]{64}$/);
    assert.equal(approvalDigest(base), approvalDigest({ ...base, parameters: [Buffer.from('42')] }));
  });

  const variants: [string, ApprovalDigestInput][] = [
    ['another statement', { ...base, sql: 'DELETE FROM invoices WHERE id = $1 ' }],
    ['another parameter value', { ...base, parameters: [Buffer.from('43')] }],
    ['a NULL parameter instead of an empty one', { ...base, parameters: [null] }],
    ['an empty parameter instead of a NULL one (reverse)', { ...base, parameters: [Buffer.alloc(0)] }],
    ['no parameters (simple protocol) instead of zero parameters', { ...base, parameters: undefined }],
    ['zero parameters', { ...base, parameters: [] }],
    ['two parameters that concatenate to the same bytes', { ...base, parameters: [Buffer.from('4'), Buffer.from('2')] }],
    ['another pod of the same gateway', { ...base, gateway: { ...base.gateway, pod: 'billing-1', podUid: 'uid-2' } }],
    ['another gateway id', { ...base, gateway: { ...base.gateway, id: 'gw2' } }],
    ['another target', { ...base, target: 'ledger-db' }],
    ['another database', { ...base, database: 'app2' }],
    ['no database', { ...base, database: undefined }],
    ['another user', { ...base, user: 'admin' }],
    ['another requester', { ...base, requesterId: 'system:serviceaccount:payments:other' }],
    ['fields shifted across a boundary', { ...base, target: 'invoices-dbapp', database: '' }],
  ];
  it('differs whenever any bound field differs', () => {
    const seen = new Map<string, string>([[approvalDigest(base), 'base']]);
    for (const [name, input] of variants) {
      const digest = approvalDigest(input);
      assert.equal(seen.get(digest), undefined, `${name} collides with ${seen.get(digest) ?? ''}`);
      seen.set(digest, name);
    }
  });
});

describe('windowGrantDigest', () => {
  const grant = {
    requesterId: 'r', gateway: base.gateway, target: 't', database: 'db', user: 'u',
    policy: { name: 'p', namespace: 'ns', rule: 'rule' }, command: 'DELETE FROM scratch.t WHERE id = $1', fingerprint: 'f',
  };
  it('differs by requester, gateway, target, database, user, policy, rule, normalized text and fingerprint, and never equals an approval digest', () => {
    const variants = [
      grant,
      { ...grant, requesterId: 'r2' },
      { ...grant, gateway: { id: 'gw', pod: 'other' } },
      { ...grant, target: 't2' },
      { ...grant, database: undefined },
      { ...grant, database: 'db2' },
      { ...grant, user: 'u2' },
      { ...grant, policy: { ...grant.policy, name: 'p2' } },
      { ...grant, policy: { ...grant.policy, namespace: undefined } },
      { ...grant, policy: { ...grant.policy, rule: 'rule2' } },
      // Same fingerprint (libpg_query ignores the schema and constant-only WHERE clauses), other text.
      { ...grant, command: 'DELETE FROM public.t WHERE id = $1' },
      { ...grant, command: 'DELETE FROM scratch.t' },
      { ...grant, fingerprint: 'f2' },
    ];
    const digests = new Set(variants.map((variant) => windowGrantDigest(variant)));
    assert.equal(digests.size, variants.length);
    assert.ok(!digests.has(approvalDigest(base)));
  });
});
