import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AccessPolicy, AccessPolicyPodSelector } from '../../crds/generated/access-policy.ts';
import { matchSelector, selectPolicies } from './pod-selection.ts';

const labels = { app: 'billing', tier: 'api' };

describe('matchSelector', () => {
  const table: Array<[string, AccessPolicyPodSelector | undefined, boolean]> = [
    ['an absent selector selects every pod', undefined, true],
    ['an empty selector selects every pod', {}, true],
    ['matchLabels equal', { matchLabels: { app: 'billing' } }, true],
    ['matchLabels with a different value', { matchLabels: { app: 'ledger' } }, false],
    ['matchLabels on a missing key', { matchLabels: { team: 'x' } }, false],
    ['In holds', { matchExpressions: [{ key: 'tier', operator: 'In', values: ['web', 'api'] }] }, true],
    ['In on a missing key', { matchExpressions: [{ key: 'team', operator: 'In', values: ['x'] }] }, false],
    ['NotIn holds for a missing key', { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['x'] }] }, true],
    ['NotIn fails for a listed value', { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['billing'] }] }, false],
    ['Exists', { matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, true],
    ['DoesNotExist', { matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, false],
    ['matchLabels AND matchExpressions', { matchLabels: { app: 'billing' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['web'] }] }, false],
  ];
  for (const [label, selector, expected] of table) {
    it(`${expected ? 'matches' : 'does not match'} when ${label}`, () => {
      assert.deepEqual(matchSelector(selector, labels), { matches: expected });
    });
  }

  it('does not treat inherited object properties as labels', () => {
    assert.deepEqual(matchSelector({ matchExpressions: [{ key: 'constructor', operator: 'Exists' }] }, {}), { matches: false });
  });

  it('reports a malformed selector instead of matching', () => {
    assert.deepEqual(matchSelector({ matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }, labels), {
      matches: false,
      invalid: 'spec.selector.matchExpressions[0].values: Forbidden (operator Exists takes no values)',
    });
  });
});

describe('selectPolicies', () => {
  const policy = (name: string, selector: AccessPolicyPodSelector, namespace = 'payments'): AccessPolicy => ({
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name, namespace },
    spec: { selector, targets: [], rules: [] },
  });

  it('returns the selecting policies of the namespace sorted by name, and the malformed ones', () => {
    const result = selectPolicies(
      [
        policy('zeta', { matchLabels: { app: 'billing' } }),
        policy('alpha', {}),
        policy('other-ns', {}, 'sandbox'),
        policy('nope', { matchLabels: { app: 'x' } }),
        policy('broken', { matchExpressions: [{ key: 'a', operator: 'In' }] }),
      ],
      'payments',
      labels,
    );
    assert.deepEqual(result.selected.map((p) => p.metadata.name), ['alpha', 'zeta']);
    assert.deepEqual(result.invalid, ['broken: spec.selector.matchExpressions[0].values: Required value (operator In needs at least one value)']);
  });
});
