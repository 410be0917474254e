// crds/accessreview.yaml as a cluster user meets it: applied with the real kubectl to the API
// double, which validates with the CRD's schema as the API server does. No review webhook is
// registered here (operator/approvals/review-admission.ts is not wired yet), so the reviews below
// carry the spec.reviewer the webhook would stamp; what this proves is the CRD: kinds, printer
// columns, status subresource, and the schema errors a reviewer sees.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';

const TOKEN = 'admin-token-for-accessreview-tests';
const DIGEST = `sha256:${'c'.repeat(64)}`;

function review(name: string, spec: Record<string, string | undefined>): string {
  const fields: Record<string, string | undefined> = {
    requestName: 'ar-7k2mq4x6c3ha',
    decision: 'approve',
    reason: 'ticket OPS-42: purge of test invoices',
    commandDigest: DIGEST,
    ...spec,
  };
  const lines = Object.entries(fields).filter((entry): entry is [string, string] => entry[1] !== undefined).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`);
  return `apiVersion: custos.io/v1alpha1
kind: AccessReview
metadata:
  name: ${name}
  namespace: payments
spec:
${lines.join('\n')}
  reviewer: { username: alice@example.com, groups: [dba, system:authenticated], uid: alice-uid }
`;
}

describe('AccessReview CRD through kubectl', () => {
  let api: KubeApi;
  let k: Kubectl;

  before(async () => {
    api = await startKubeApi({ tokens: { [TOKEN]: { username: 'admin', groups: ['system:masters'], uid: 'admin-uid' } } });
    k = await kubectlFor(await api.kubeconfig('admin'));
    const out = await k.ok(['apply', '-f', 'crds/']);
    assert.match(out, /customresourcedefinition\.apiextensions\.k8s\.io\/accessreviews\.custos\.io created/);
    await k.ok(['create', 'namespace', 'payments']);
  });
  after(async () => {
    await api.stop();
  });

  it('is served as a namespaced kind with the short name arv, in the custos category', async () => {
    const resources = await k.ok(['api-resources', '--api-group', 'custos.io']);
    assert.match(resources, /accessreviews\s+arv\s+custos\.io\/v1alpha1\s+true\s+AccessReview/);
    assert.match(await k.ok(['explain', 'accessreview.spec.decision']), /ENUM:\s+approve\s+deny/);
    assert.match(await k.ok(['explain', 'accessreview.spec.reviewer']), /stamped by the review webhook/);
  });

  it('creates a review with kubectl create and lists it with the Request, Decision, Reviewer and Age columns', async () => {
    assert.equal(await k.ok(['create', '-f', '-'], { input: review('ar-7k2mq4x6c3ha-alice', {}) }), 'accessreview.custos.io/ar-7k2mq4x6c3ha-alice created\n');
    const table = await k.ok(['get', 'arv', '-n', 'payments']);
    assert.match(table, /^NAME\s+REQUEST\s+DECISION\s+REVIEWER\s+AGE\n/);
    assert.match(table, /\nar-7k2mq4x6c3ha-alice\s+ar-7k2mq4x6c3ha\s+approve\s+alice@example\.com\s+\d+s\n/);
    assert.equal(await k.ok(['get', 'accessreview', 'ar-7k2mq4x6c3ha-alice', '-n', 'payments', '-o', 'jsonpath={.spec.reviewer.groups}']), '["dba","system:authenticated"]');
  });

  it('takes the controller\'s verdict through the status subresource, shown with -o wide', async () => {
    await k.ok(['create', '-f', '-'], { input: review('ar-7k2mq4x6c3ha-bob', { decision: 'deny', reason: 'not during month-end close' }) });
    await k.ok(['patch', 'arv', 'ar-7k2mq4x6c3ha-bob', '-n', 'payments', '--subresource', 'status', '--type', 'merge', '-p', '{"status":{"counted":false,"refusal":"duplicate"}}']);
    const wide = await k.ok(['get', 'arv', 'ar-7k2mq4x6c3ha-bob', '-n', 'payments', '-o', 'wide']);
    assert.match(wide, /^NAME\s+REQUEST\s+DECISION\s+REVIEWER\s+COUNTED\s+REFUSAL\s+AGE\n/);
    assert.match(wide, /ar-7k2mq4x6c3ha-bob\s+ar-7k2mq4x6c3ha\s+deny\s+alice@example\.com\s+false\s+duplicate\s+\d+s/);
    const bad = await k.run(['patch', 'arv', 'ar-7k2mq4x6c3ha-bob', '-n', 'payments', '--subresource', 'status', '--type', 'merge', '-p', '{"status":{"refusal":"bribed"}}']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /status\.refusal: Unsupported value: "bribed": supported values: "self-review", "service-account-reviewer"/);
  });

  const invalid: ReadonlyArray<{ readonly name: string; readonly spec: Record<string, string | undefined>; readonly error: RegExp }> = [
    { name: 'the reason is missing', spec: { reason: undefined }, error: /spec\.reason: Required value/ },
    { name: 'the reason is empty', spec: { reason: '' }, error: /spec\.reason: Invalid value: "": spec\.reason in body should be at least 1 chars long/ },
    { name: 'the reason is longer than 1024 characters', spec: { reason: 'x'.repeat(1025) }, error: /spec\.reason: Too long: may not be more than 1024/ },
    { name: 'the digest is not sha256:<hex>', spec: { commandDigest: 'md5:abc' }, error: /spec\.commandDigest: Invalid value: "md5:abc": spec\.commandDigest in body should match '\^sha256:\[0-9a-f\]\{64\}\$'/ },
    { name: 'the decision is neither approve nor deny', spec: { decision: 'abstain' }, error: /spec\.decision: Unsupported value: "abstain": supported values: "approve", "deny"/ },
    { name: 'no request is named', spec: { requestName: undefined }, error: /spec\.requestName: Required value/ },
  ];
  for (const c of invalid) {
    it(`refuses the review, naming the field, when ${c.name}`, async () => {
      const result = await k.run(['create', '-f', '-'], { input: review('bad', c.spec) });
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stderr, c.error);
    });
  }

  it('refuses a review without spec.reviewer (only the webhook\'s stamp makes it valid)', async () => {
    const unstamped = review('unstamped', {}).replace(/^ {2}reviewer: .*\n/m, '');
    const result = await k.run(['create', '-f', '-'], { input: unstamped });
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, /spec\.reviewer: Required value/);
  });
});
