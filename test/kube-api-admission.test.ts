// Admission webhooks called by the Kubernetes API double as the API server calls them, with a
// tiny HTTPS webhook (its own CA in caBundle), driven by the real kubectl: JSONPatch mutation,
// denial messages, namespace and object selectors, failurePolicy with a webhook that is down,
// untrusted or slow, service references checked against <service>.<namespace>.svc, reinvocation
// and server-side dry run.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { freePort } from './harness/free-port.ts';
import { kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';
import { makeCertificates, type TestCertificates } from './harness/tls.ts';

interface Review {
  readonly path: string;
  readonly request: {
    uid: string; kind: unknown; resource: unknown; name?: string; namespace?: string; operation: string;
    userInfo: { username: string; groups: string[] }; object: { metadata: { labels?: Record<string, string> }; spec: { containers: Array<{ name: string }> } };
    oldObject: unknown; dryRun: boolean; options: unknown;
  };
}

let api: KubeApi;
let k: Kubectl;
let webhook: Server;
let webhookUrl: string;
let certs: TestCertificates;
let otherCa: TestCertificates;
const reviews: Review[] = [];

function respond(path: string, request: Review['request']): Record<string, unknown> | 'slow' {
  const labels = request.object.metadata.labels ?? {};
  switch (path) {
    case '/mutate': {
      if (request.object.spec.containers.some((c) => c.name === 'custos-sidecar')) return { allowed: true };
      const patch = [
        { op: 'add', path: '/metadata/labels/custos.io~1injected', value: 'true' },
        { op: 'add', path: '/spec/containers/-', value: { name: 'custos-sidecar', image: 'custos/sidecar:test' } },
      ];
      return { allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64'), warnings: ['custos sidecar injected'] };
    }
    case '/label':
      if (labels.later === 'yes') return { allowed: true };
      return { allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify([{ op: 'add', path: '/metadata/labels/later', value: 'yes' }])).toString('base64') };
    case '/deny':
      return labels.forbidden === 'true' ? { allowed: false, status: { code: 403, message: 'pods labelled forbidden=true are not allowed' } } : { allowed: true };
    case '/bad-uid':
      return { allowed: true, uid: 'not-the-request-uid' };
    case '/slow':
      return 'slow';
    default:
      return { allowed: true };
  }
}

interface HookSpec {
  readonly name: string;
  readonly path?: string;
  readonly url?: string;
  readonly service?: { name: string; namespace: string; path: string; port: number };
  readonly caBundle?: string;
  readonly failurePolicy?: 'Fail' | 'Ignore';
  readonly timeoutSeconds?: number;
  readonly reinvocationPolicy?: 'Never' | 'IfNeeded';
  readonly namespaceSelector?: unknown;
  readonly objectSelector?: unknown;
  readonly sideEffects?: string;
}

function configuration(kind: 'MutatingWebhookConfiguration' | 'ValidatingWebhookConfiguration', name: string, hooks: readonly HookSpec[]): string {
  return JSON.stringify({
    apiVersion: 'admissionregistration.k8s.io/v1', kind, metadata: { name },
    webhooks: hooks.map((h) => ({
      name: h.name,
      admissionReviewVersions: ['v1'],
      sideEffects: h.sideEffects ?? 'None',
      failurePolicy: h.failurePolicy ?? 'Fail',
      ...(h.timeoutSeconds === undefined ? {} : { timeoutSeconds: h.timeoutSeconds }),
      ...(kind === 'MutatingWebhookConfiguration' ? { reinvocationPolicy: h.reinvocationPolicy ?? 'Never' } : {}),
      clientConfig: {
        ...(h.service === undefined ? { url: h.url ?? `${webhookUrl}${h.path ?? '/'}` } : { service: h.service }),
        caBundle: h.caBundle ?? Buffer.from(certs.caCert).toString('base64'),
      },
      rules: [{ operations: ['CREATE', 'UPDATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }],
      namespaceSelector: h.namespaceSelector ?? { matchLabels: { 'custos.io/injection': 'enabled' } },
      ...(h.objectSelector === undefined ? {} : { objectSelector: h.objectSelector }),
    })),
  });
}

function pod(name: string, namespace: string, labels: Record<string, string> = {}): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels: { app: name, ...labels } }, spec: { containers: [{ name: 'app', image: 'busybox:1.36' }] } });
}

async function withConfiguration<T>(kind: 'MutatingWebhookConfiguration' | 'ValidatingWebhookConfiguration', hooks: readonly HookSpec[], body: () => Promise<T>): Promise<T> {
  const name = `test-${hooks.map((h) => h.name.split('.')[0] ?? '').join('-')}`;
  await k.ok(['apply', '-f', '-'], { input: configuration(kind, name, hooks) });
  try {
    return await body();
  } finally {
    await k.ok(['delete', kind.toLowerCase(), name]);
  }
}

describe('Kubernetes API double: admission webhooks', () => {
  before(async () => {
    certs = await makeCertificates(['localhost', '127.0.0.1', 'custos-webhook.custos-system.svc']);
    otherCa = await makeCertificates(['localhost', '127.0.0.1']);
    webhook = createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'https://localhost');
        const review = JSON.parse(text) as { request: Review['request'] };
        reviews.push({ path: url.pathname, request: review.request });
        const answer = respond(url.pathname, review.request);
        const send = (response: Record<string, unknown>): void => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, ...response } }));
        };
        if (answer === 'slow') setTimeout(() => { if (!res.destroyed) send({ allowed: true }); }, 2500);
        else send(answer);
      });
    });
    await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
    webhookUrl = `https://127.0.0.1:${(webhook.address() as AddressInfo).port}`;
    api = await startKubeApi({
      tokens: { 'admission-token': { username: 'alice', groups: ['platform'] } },
      serviceUrl: (s) => (s.name === 'custos-webhook' ? `${webhookUrl}${s.path}` : undefined),
    });
    k = await kubectlFor(await api.kubeconfig('alice'));
    await k.ok(['create', 'namespace', 'enforced']);
    await k.ok(['label', 'namespace', 'enforced', 'custos.io/injection=enabled']);
    await k.ok(['create', 'namespace', 'plain']);
  });
  after(async () => {
    await api.stop();
    webhook.closeAllConnections();
    await new Promise((r) => webhook.close(r));
  });

  it('applies a mutating webhook\'s JSONPatch and sends the AdmissionReview the API server sends', async () => {
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'inject.custos.test', path: '/mutate' }], async () => {
      const r = await k.run(['apply', '-f', '-'], { input: pod('web', 'enforced') });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'pod/web created\n');
      assert.match(r.stderr, /Warning: custos sidecar injected/);
      assert.equal(await k.ok(['get', 'pod', 'web', '-n', 'enforced', '-o', 'jsonpath={.spec.containers[*].name} {.metadata.labels.custos\\.io/injected}']), 'app custos-sidecar true');
      const review = reviews.findLast((x) => x.path === '/mutate');
      assert.ok(review !== undefined);
      const q = review.request;
      assert.match(q.uid, /^[0-9a-f-]{36}$/);
      assert.deepEqual(q.kind, { group: '', version: 'v1', kind: 'Pod' });
      assert.deepEqual(q.resource, { group: '', version: 'v1', resource: 'pods' });
      assert.equal(q.name, 'web');
      assert.equal(q.namespace, 'enforced');
      assert.equal(q.operation, 'CREATE');
      assert.equal(q.userInfo.username, 'alice');
      assert.deepEqual(q.userInfo.groups, ['platform', 'system:authenticated']);
      assert.equal(q.oldObject, null);
      assert.equal(q.dryRun, false);
      assert.deepEqual(q.options, { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1', fieldManager: 'kubectl-client-side-apply' });
      // The ServiceAccount admission plugin ran before the webhooks, as in the API server.
      assert.match(JSON.stringify(q.object), /kube-api-access-/);
    });
  });

  it('calls webhooks only for namespaces and objects their selectors match', async () => {
    await withConfiguration('MutatingWebhookConfiguration', [{
      name: 'inject.custos.test', path: '/mutate',
      objectSelector: { matchExpressions: [{ key: 'custos.io/inject', operator: 'NotIn', values: ['false'] }] },
    }], async () => {
      const before = reviews.length;
      await k.ok(['apply', '-f', '-'], { input: pod('outside', 'plain') });
      await k.ok(['apply', '-f', '-'], { input: pod('opted-out', 'enforced', { 'custos.io/inject': 'false' }) });
      assert.equal(reviews.length, before, 'no webhook call');
      assert.equal(await k.ok(['get', 'pod', 'outside', '-n', 'plain', '-o', 'jsonpath={.spec.containers[*].name}']), 'app');
      assert.equal(await k.ok(['get', 'pod', 'opted-out', '-n', 'enforced', '-o', 'jsonpath={.spec.containers[*].name}']), 'app');
      await k.ok(['apply', '-f', '-'], { input: pod('selected', 'enforced') });
      assert.equal(reviews.length, before + 1);
    });
  });

  it('prints the validating webhook\'s denial as kubectl shows it from a real API server', async () => {
    await withConfiguration('ValidatingWebhookConfiguration', [{ name: 'deny.custos.test', path: '/deny' }], async () => {
      const denied = await k.run(['apply', '-f', '-'], { input: pod('bad', 'enforced', { forbidden: 'true' }) });
      assert.equal(denied.code, 1);
      assert.equal(denied.stderr.trim(), 'Error from server: error when creating "STDIN": admission webhook "deny.custos.test" denied the request: pods labelled forbidden=true are not allowed');
      assert.equal((await k.run(['get', 'pod', 'bad', '-n', 'enforced'])).code, 1);
      assert.equal((await k.run(['apply', '-f', '-'], { input: pod('good', 'enforced') })).code, 0);
      // UPDATE goes through the webhook too.
      const update = await k.run(['label', 'pod', 'good', '-n', 'enforced', 'forbidden=true']);
      assert.match(update.stderr, /admission webhook "deny\.custos\.test" denied the request: pods labelled forbidden=true are not allowed/);
    });
  });

  it('applies failurePolicy when the webhook is down', async () => {
    const port = await freePort();
    const down = `https://127.0.0.1:${port}/mutate`;
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'down.custos.test', url: down }], async () => {
      const r = await k.run(['apply', '-f', '-'], { input: pod('down-fail', 'enforced') });
      assert.equal(r.stderr.trim(), `Error from server (InternalError): error when creating "STDIN": Internal error occurred: failed calling webhook "down.custos.test": failed to call webhook: Post "${down}?timeout=10s": dial tcp 127.0.0.1:${port}: connect: connection refused`);
    });
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'down.custos.test', url: down, failurePolicy: 'Ignore' }], async () => {
      assert.equal(await k.ok(['apply', '-f', '-'], { input: pod('down-ignore', 'enforced') }), 'pod/down-ignore created\n');
    });
    assert.deepEqual(api.admissionCalls.filter((c) => c.webhook === 'down.custos.test').map((c) => c.outcome), ['error', 'error']);
  });

  it('verifies the webhook certificate against caBundle, and a service webhook against <service>.<namespace>.svc', async () => {
    const untrusted = Buffer.from(otherCa.caCert).toString('base64');
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'untrusted.custos.test', path: '/mutate', caBundle: untrusted }], async () => {
      const r = await k.run(['apply', '-f', '-'], { input: pod('untrusted-fail', 'enforced') });
      assert.match(r.stderr, /failed calling webhook "untrusted\.custos\.test": failed to call webhook: Post "https:\/\/127\.0\.0\.1:\d+\/mutate\?timeout=10s": tls: failed to verify certificate: x509: certificate signed by unknown authority/);
    });
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'untrusted.custos.test', path: '/mutate', caBundle: untrusted, failurePolicy: 'Ignore' }], async () => {
      await k.ok(['apply', '-f', '-'], { input: pod('untrusted-ignore', 'enforced') });
      assert.equal(await k.ok(['get', 'pod', 'untrusted-ignore', '-n', 'enforced', '-o', 'jsonpath={.spec.containers[*].name}']), 'app');
    });
    const service = { name: 'custos-webhook', namespace: 'custos-system', path: '/mutate', port: 443 };
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'service.custos.test', service }], async () => {
      await k.ok(['apply', '-f', '-'], { input: pod('via-service', 'enforced') });
      assert.equal(await k.ok(['get', 'pod', 'via-service', '-n', 'enforced', '-o', 'jsonpath={.spec.containers[*].name}']), 'app custos-sidecar');
    });
    // Same webhook and CA, but the certificate does not name custos-other.custos-system.svc.
    const wrongName = { ...service, name: 'custos-other' };
    const mapped = await startKubeApi({ tokens: { t: { username: 'bob' } }, serviceUrl: () => `${webhookUrl}/mutate` });
    try {
      const km = await kubectlFor(await mapped.kubeconfig('bob'));
      await km.ok(['create', 'namespace', 'enforced']);
      await km.ok(['label', 'namespace', 'enforced', 'custos.io/injection=enabled']);
      await km.ok(['apply', '-f', '-'], { input: configuration('MutatingWebhookConfiguration', 'wrong-name', [{ name: 'wrong-name.custos.test', service: wrongName }]) });
      const r = await km.run(['apply', '-f', '-'], { input: pod('wrong-name', 'enforced') });
      assert.match(r.stderr, /failed calling webhook "wrong-name\.custos\.test": .*tls: failed to verify certificate: x509: .*custos-other\.custos-system\.svc/);
    } finally {
      await mapped.stop();
    }
  });

  it('gives up on a slow webhook after timeoutSeconds', async () => {
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'slow.custos.test', path: '/slow', timeoutSeconds: 1 }], async () => {
      const started = Date.now();
      const r = await k.run(['apply', '-f', '-'], { input: pod('slow-fail', 'enforced') });
      assert.ok(Date.now() - started < 2400, 'answered before the webhook did');
      assert.match(r.stderr, /failed calling webhook "slow\.custos\.test": failed to call webhook: Post "https:\/\/127\.0\.0\.1:\d+\/slow\?timeout=1s": context deadline exceeded/);
    });
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'slow.custos.test', path: '/slow', timeoutSeconds: 1, failurePolicy: 'Ignore' }], async () => {
      assert.equal(await k.ok(['apply', '-f', '-'], { input: pod('slow-ignore', 'enforced') }), 'pod/slow-ignore created\n');
    });
  });

  it('rejects a response for another request uid', async () => {
    await withConfiguration('ValidatingWebhookConfiguration', [{ name: 'bad-uid.custos.test', path: '/bad-uid' }], async () => {
      const r = await k.run(['apply', '-f', '-'], { input: pod('bad-uid', 'enforced') });
      assert.match(r.stderr, /Internal error occurred: failed calling webhook "bad-uid\.custos\.test": received invalid webhook response: expected response\.uid="[0-9a-f-]{36}", got "not-the-request-uid"/);
    });
  });

  it('reinvokes an IfNeeded webhook once when a later webhook changed the object', async () => {
    await withConfiguration('MutatingWebhookConfiguration', [
      { name: 'inject.custos.test', path: '/mutate', reinvocationPolicy: 'IfNeeded' },
      { name: 'label.custos.test', path: '/label' },
    ], async () => {
      const before = api.admissionCalls.length;
      await k.ok(['apply', '-f', '-'], { input: pod('reinvoked', 'enforced') });
      const calls = api.admissionCalls.slice(before).map((c) => `${c.webhook}${c.reinvocation ? ' (reinvoked)' : ''}`);
      assert.deepEqual(calls, ['inject.custos.test', 'label.custos.test', 'inject.custos.test (reinvoked)']);
      assert.equal(await k.ok(['get', 'pod', 'reinvoked', '-n', 'enforced', '-o', 'jsonpath={.spec.containers[*].name} {.metadata.labels.later}']), 'app custos-sidecar yes');
    });
  });

  it('runs webhooks (sideEffects None or NoneOnDryRun) on server-side dry run without storing', async () => {
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'inject.custos.test', path: '/mutate' }], async () => {
      const out = await k.ok(['apply', '--dry-run=server', '-o', 'jsonpath={.spec.containers[*].name}', '-f', '-'], { input: pod('dry', 'enforced') });
      assert.equal(out, 'app custos-sidecar');
      assert.equal(reviews.findLast((x) => x.path === '/mutate')?.request.dryRun, true);
      assert.equal((await k.run(['get', 'pod', 'dry', '-n', 'enforced'])).code, 1);
    });
    await withConfiguration('MutatingWebhookConfiguration', [{ name: 'effects.custos.test', path: '/mutate', sideEffects: 'NoneOnDryRun' }], async () => {
      assert.equal((await k.run(['apply', '--dry-run=server', '-f', '-'], { input: pod('dry2', 'enforced') })).code, 0);
    });
  });
});
