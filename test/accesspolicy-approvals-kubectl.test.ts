// The approval fields of crds/accesspolicy.yaml as a cluster user meets them: applied with the
// real kubectl to the API double, which validates with the CRD's schema as the API server does.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';

const TOKEN = 'admin-token-for-approval-schema-tests';

const policy = (name: string, approval: string): string => `apiVersion: custos.io/v1alpha1
kind: AccessPolicy
metadata:
  name: ${name}
  namespace: payments
spec:
  targets:
    - { name: billing, protocol: postgres, host: 127.0.0.1, port: 5432 }
  rules:
    - name: approve-unfiltered
      match: { sql: { where: missing-or-constant } }
      action: require-approval
      approval: ${approval}
`;

describe('AccessPolicy approval settings through kubectl', () => {
  let api: KubeApi;
  let k: Kubectl;

  before(async () => {
    api = await startKubeApi({ tokens: { [TOKEN]: { username: 'alice', groups: ['platform'], uid: 'alice-uid' } } });
    k = await kubectlFor(await api.kubeconfig('alice'));
    await k.ok(['apply', '-f', 'crds/']);
    await k.ok(['create', 'namespace', 'payments']);
  });
  after(async () => {
    await api.stop();
  });

  it('accepts examples/approvals-policy.yaml and keeps every approval field', async () => {
    assert.equal(await k.ok(['apply', '-f', 'examples/approvals-policy.yaml']), 'accesspolicy.custos.io/billing-approvals created\n');
    const jsonpath = '{.spec.rules[2].approval.minApprovals} {.spec.rules[2].approval.mode} {.spec.rules[3].approval.grant.windowSeconds} {.spec.reviewerAuthentication.audience}';
    assert.equal(await k.ok(['get', 'ap', 'billing-approvals', '-n', 'payments', '-o', `jsonpath=${jsonpath}`]), '2 return 1800 custos-reviews');
  });

  it('documents the fields in kubectl explain', async () => {
    assert.match(await k.ok(['explain', 'accesspolicy.spec.rules.approval.mode']), /ENUM:\s+hold\s+return/);
    assert.match(await k.ok(['explain', 'accesspolicy.spec.rules.approval.grant']), /windowSeconds\s+<integer>/);
    assert.match(await k.ok(['explain', 'accesspolicy.spec.reviewerAuthentication']), /usernameClaim\s+<string>/);
  });

  const invalid: ReadonlyArray<{ readonly name: string; readonly approval: string; readonly error: RegExp }> = [
    { name: 'no reviewer is named', approval: '{ reviewers: {} }', error: /spec\.rules\[0\]\.approval\.reviewers: Invalid value: "object": .*must validate at least one schema \(anyOf\)/ },
    { name: 'the mode is unknown', approval: '{ reviewers: { groups: [dba] }, mode: wait }', error: /spec\.rules\[0\]\.approval\.mode: Unsupported value: "wait": supported values: "hold", "return"/ },
    { name: 'a window is longer than 8 hours', approval: '{ reviewers: { groups: [dba] }, grant: { scope: window, windowSeconds: 28801 } }', error: /spec\.rules\[0\]\.approval\.grant\.windowSeconds: Invalid value: 28801/ },
    { name: 'minApprovals is above 10', approval: '{ reviewers: { groups: [dba] }, minApprovals: 11 }', error: /spec\.rules\[0\]\.approval\.minApprovals: Invalid value: 11/ },
  ];
  for (const c of invalid) {
    it(`refuses the policy, naming the field, when ${c.name}`, async () => {
      const result = await k.run(['apply', '-f', '-'], { input: policy('bad', c.approval) });
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stderr, c.error);
    });
  }
});
