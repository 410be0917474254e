import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../webhook/injection-settings.ts';
import { planPolicies } from './plan.ts';
import { PolicyCheckMemo } from './policy-check-memo.ts';

function policy(uid: string | undefined, generation: number, defaultAction: 'allow' | 'deny'): AccessPolicy {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'billing', namespace: 'payments', generation, ...(uid === undefined ? {} : { uid }) },
    spec: { targets: [{ name: 'db', protocol: 'postgres', host: 'db', port: 5432 }], rules: [{ name: 'r', action: 'deny' }], defaultAction },
  };
}

describe('PolicyCheckMemo', () => {
  it('reuses the check of the same uid and generation, and checks a new generation afresh', () => {
    const memo = new PolicyCheckMemo();
    const first = memo.check(policy('u1', 1, 'allow'));
    assert.equal(memo.check(policy('u1', 1, 'allow')), first);
    const second = memo.check(policy('u1', 2, 'deny'));
    assert.notEqual(second, first);
    assert.ok(second.ok && second.policyYaml.includes('defaultAction: deny'));
  });

  it('never caches an object without uid', () => {
    const memo = new PolicyCheckMemo();
    memo.check(policy(undefined, 1, 'allow'));
    assert.equal(memo.size, 0);
  });

  it('forgets policies that are gone', () => {
    const memo = new PolicyCheckMemo();
    memo.check(policy('u1', 1, 'allow'));
    memo.check(policy('u2', 1, 'allow'));
    memo.retainOnly([policy('u2', 1, 'allow')]);
    assert.equal(memo.size, 1);
  });

  it('gives the planner the same actions as checking every time', () => {
    const memo = new PolicyCheckMemo();
    const input = { policies: [policy('u1', 3, 'deny')], configMaps: [], pods: [], namespaces: [], settings: DEFAULT_INJECTION_SETTINGS, now: new Date(0) };
    const plain = planPolicies(input);
    assert.deepEqual(planPolicies({ ...input, memo }), plain);
    assert.deepEqual(planPolicies({ ...input, memo }), plain);
    assert.equal(memo.size, 1);
  });
});
