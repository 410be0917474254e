// The sidecar injector end to end against the Kubernetes API double, driven by the real kubectl
// 1.35: the chart's MutatingWebhookConfiguration (rendered by the real helm), the webhook CA made
// and stored by the CaStore as leader, a rotating serving leaf, the caBundle patcher, and the HTTPS
// webhook server that the double calls as the API server calls it (TLS verified against caBundle
// and the name custos-webhook.custos-system.svc). Adversarial cases first: what is not a review,
// untrusted and expired certificates, a blank caBundle, an unreachable API.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { Writable } from 'node:stream';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { parseAllDocuments } from 'yaml';
import type { AccessPolicy } from '../crds/generated/access-policy.ts';
import { createApiAdmissionContext } from '../operator/admission/api-admission-context.ts';
import type { AdmissionContext } from '../operator/admission/admission-context.ts';
import { startWebhookServer, type WebhookServer } from '../operator/admission/webhook-server.ts';
import { CaStore } from '../operator/certs/ca-store.ts';
import { runCaBundlePatcher } from '../operator/certs/ca-bundle-patcher.ts';
import { registerCertExpiryMetric } from '../operator/certs/cert-expiry-metric.ts';
import { DAY_MS, issueServingCertificate, webhookServiceNames } from '../operator/certs/certificate-builder.ts';
import { Listeners, type CertificateSource, type ServingCertificate } from '../operator/certs/certificate-source.ts';
import { RotatingServingCertificate } from '../operator/certs/serving-cert.ts';
import { buildInjectionPatch, type InjectionResult } from '../operator/webhook/build-patch.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../operator/webhook/injection-settings.ts';
import type { PodLike } from '../operator/webhook/pod-types.ts';
import { kubectlFor, renderChart, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';
import { waitFor } from './harness/processes.ts';
import { makeCertificates } from './harness/tls.ts';

const RELEASE_NS = 'custos-system';
const SERVICE = 'custos-webhook';
const CONFIGURATION = 'custos-sidecar-injector';
const CA_SECRET = 'custos-webhook-ca';
const ENFORCED = 'payments';
const PLAIN = 'plain';
const SECRET_ENV_VALUE = 'env-value-that-must-never-be-logged-7f3a';

// ---- helpers -------------------------------------------------------------------------------

function capturingLogger(): { logger: Logger; text: () => string } {
  let out = '';
  const stream = new Writable({ write(chunk: Buffer, _enc, cb) { out += chunk.toString(); cb(); } });
  return { logger: pino({ level: 'debug' }, stream), text: () => out };
}

/** The chart's MutatingWebhookConfiguration, rendered by the real helm for the release namespace. */
async function renderWebhookConfiguration(): Promise<string> {
  const docs = parseAllDocuments(await renderChart(RELEASE_NS)).map((d) => d.toJS() as { kind?: string } | null);
  const configuration = docs.find((d) => d?.kind === 'MutatingWebhookConfiguration');
  assert.ok(configuration, 'the chart renders a MutatingWebhookConfiguration');
  return JSON.stringify(configuration);
}

interface RawResponse { readonly status: number; readonly headers: Record<string, string | string[] | undefined>; readonly body: string }

/** One HTTPS request to the webhook, trusting `ca`; `body` may be streamed in chunks. */
function post(server: WebhookServer, ca: string, options: { path?: string; method?: string; headers?: Record<string, string | number>; body?: string | Buffer[] }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${server.url}${options.path ?? '/mutate/pods'}`, {
      method: options.method ?? 'POST', ca, servername: `${SERVICE}.${RELEASE_NS}.svc`, agent: false,
      headers: { 'content-type': 'application/json', ...options.headers },
    }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }); });
      res.on('error', reject);
    });
    req.on('error', reject);
    const body = options.body ?? '';
    if (typeof body === 'string') {
      req.end(body);
      return;
    }
    // Stream the chunks, stopping once the server has answered (it refuses oversize bodies early);
    // the request is ended only when every chunk was sent.
    const state = { answered: false };
    req.once('response', () => { state.answered = true; });
    req.flushHeaders();
    const stop = (): boolean => state.answered || req.destroyed;
    void (async () => {
      for (const chunk of body) {
        if (stop()) return;
        if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
      }
      if (!stop()) req.end();
    })();
  });
}

/** The serving certificate a fresh TLS connection sees. */
function peerCertificate(server: WebhookServer, ca: string): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: server.port, ca, servername: `${SERVICE}.${RELEASE_NS}.svc` }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve(cert);
    });
    socket.once('error', reject);
  });
}

function review(uid: string, object: unknown, overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
    request: {
      uid, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: ENFORCED, operation: 'CREATE', userInfo: { username: 'alice', groups: [] }, object, oldObject: null, dryRun: false, ...overrides,
    },
  });
}

function podManifest(name: string, namespace: string, extra: { labels?: Record<string, string>; capabilities?: string[] } = {}): PodLike {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace, labels: { 'custos.io/policy': 'billing', ...extra.labels } },
    spec: {
      containers: [{
        name: 'app', image: 'ghcr.io/acme/billing:1.4',
        env: [{ name: 'API_KEY', value: SECRET_ENV_VALUE }],
        securityContext: { runAsUser: 1000, ...(extra.capabilities === undefined ? {} : { capabilities: { add: extra.capabilities } }) },
      }],
    },
  };
}

/** A source whose certificate a test can replace (to serve an expired leaf), else the rotating one. */
class SwitchableSource implements CertificateSource {
  readonly #inner: CertificateSource;
  readonly #listeners = new Listeners<ServingCertificate>(() => undefined);
  #override: ServingCertificate | undefined;

  constructor(inner: CertificateSource) {
    this.#inner = inner;
    inner.onChange((c) => { if (this.#override === undefined) this.#listeners.emit(c); });
  }

  current(): ServingCertificate { return this.#override ?? this.#inner.current(); }
  onChange(listener: (c: ServingCertificate) => void): () => void { return this.#listeners.add(listener); }
  set(override: ServingCertificate | undefined): void {
    this.#override = override;
    this.#listeners.emit(this.current());
  }
}

// ---- the suite -------------------------------------------------------------------------------

describe('mutating webhook: HTTPS transport, certificates and caBundle against the API double', () => {
  let api: KubeApi;
  let k: Kubectl;
  let kc: KubeConfig;
  let server: WebhookServer;
  let caStore: CaStore;
  let rotating: RotatingServingCertificate;
  let certificates: SwitchableSource;
  let registry: Registry;
  let logs: () => string;
  let trustedCa: string;
  let renderedConfiguration: string;
  let policy: AccessPolicy;
  let failLookups = false;
  let hangLookups = false;
  let patcher: { controller: AbortController; done: Promise<void> } | undefined;

  const startPatcher = (logger: Logger): void => {
    const controller = new AbortController();
    const done = runCaBundlePatcher({
      kubeConfig: kc, configurationName: CONFIGURATION, bundle: caStore.bundle, signal: controller.signal, logger,
      backoff: { initialMs: 50, maxMs: 500 },
    });
    patcher = { controller, done };
  };
  const caBundle = async (): Promise<string> =>
    k.ok(['get', 'mutatingwebhookconfiguration', CONFIGURATION, '-o', 'jsonpath={.webhooks[0].clientConfig.caBundle}']);
  const expectedBundle = (): string => Buffer.from(caStore.bundle.current()).toString('base64');

  before(async () => {
    const captured = capturingLogger();
    logs = captured.text;
    let webhookUrl = '';
    api = await startKubeApi({
      tokens: { 'webhook-test-admin': { username: 'admin', groups: ['system:masters'] } },
      serviceUrl: (s) => (s.name === SERVICE && s.namespace === RELEASE_NS ? `${webhookUrl}${s.path}` : undefined),
    });
    kc = new KubeConfig();
    kc.loadFromFile(await api.kubeconfig());
    k = await kubectlFor(await api.kubeconfig());
    await k.ok(['create', 'namespace', RELEASE_NS]);
    await k.ok(['apply', '-f', 'crds/']);
    renderedConfiguration = await renderWebhookConfiguration();
    await k.ok(['apply', '-f', '-'], { input: renderedConfiguration });
    await k.ok(['create', 'namespace', ENFORCED]);
    await k.ok(['label', 'namespace', ENFORCED, 'custos.io/injection=enabled']);
    await k.ok(['create', 'namespace', PLAIN]);
    await k.ok(['apply', '-f', 'examples/policy.yaml']);
    policy = JSON.parse(await k.ok(['get', 'accesspolicy', 'billing', '-n', ENFORCED, '-o', 'json'])) as AccessPolicy;

    // In-process certificate mode, as the leader runs it.
    caStore = new CaStore({ core: kc.makeApiClient(CoreV1Api), namespace: RELEASE_NS, secretName: CA_SECRET, logger: captured.logger });
    await caStore.load({ isLeader: () => true });
    trustedCa = caStore.bundle.current();
    rotating = await RotatingServingCertificate.start({
      authority: caStore, names: [...webhookServiceNames(SERVICE, RELEASE_NS), '127.0.0.1'], logger: captured.logger, caChangeDelayMs: 0,
    });
    certificates = new SwitchableSource(rotating);
    registry = new Registry();
    registerCertExpiryMetric(registry, { serving: () => certificates.current().notAfter, ca: () => caStore.current().notAfter });
    const real = createApiAdmissionContext(kc);
    const context: AdmissionContext = {
      namespace: async (name) => {
        if (failLookups) throw new Error('connect ECONNREFUSED 10.96.0.1:443');
        if (hangLookups) await new Promise((r) => setTimeout(r, 2000));
        return real.namespace(name);
      },
      policies: async (namespace) => real.policies(namespace),
    };
    server = await startWebhookServer({
      host: '127.0.0.1', port: 0, certificates, context, settings: DEFAULT_INJECTION_SETTINGS, registry, logger: captured.logger,
    });
    webhookUrl = server.url;
  });

  after(async () => {
    patcher?.controller.abort();
    await patcher?.done;
    rotating.close();
    await server.close(100);
    await api.stop();
  });

  describe('refuses what is not an AdmissionReview for it', () => {
    it('answers 404 on another path and 405 (Allow: POST) on another method', async () => {
      const other = await post(server, trustedCa, { path: '/mutate', body: review('u-1', podManifest('x', ENFORCED)) });
      assert.equal(other.status, 404);
      assert.match(other.body, /no handler for \/mutate; the webhook serves POST \/mutate\/pods/);
      const get = await post(server, trustedCa, { method: 'GET' });
      assert.equal(get.status, 405);
      assert.equal(get.headers.allow, 'POST');
      const put = await post(server, trustedCa, { method: 'PUT', body: review('u-2', podManifest('x', ENFORCED)) });
      assert.equal(put.status, 405);
    });

    it('answers 415 to a body that is not JSON by content-type, and 400 to one that does not parse', async () => {
      const yaml = await post(server, trustedCa, { headers: { 'content-type': 'application/yaml' }, body: 'apiVersion: admission.k8s.io/v1' });
      assert.equal(yaml.status, 415);
      const broken = await post(server, trustedCa, { body: '{"apiVersion": "admission.k8s.io/v1", ' });
      assert.equal(broken.status, 400);
      assert.match((JSON.parse(broken.body) as { message: string }).message, /^the body is not JSON/);
    });

    it('answers 400 with the field at fault to a malformed AdmissionReview', async () => {
      const noUid = await post(server, trustedCa, { body: review('', podManifest('x', ENFORCED)) });
      assert.equal(noUid.status, 400);
      const status = JSON.parse(noUid.body) as { kind: string; code: number; reason: string; message: string };
      assert.deepEqual([status.kind, status.code, status.reason], ['Status', 400, 'BadRequest']);
      assert.match(status.message, /^malformed AdmissionReview: request\.uid/);
      const deployment = await post(server, trustedCa, { body: review('u-3', {}, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }) });
      assert.equal(deployment.status, 400);
      assert.match(deployment.body, /this webhook admits core\/v1 Pod only/);
      const update = await post(server, trustedCa, { body: review('u-4', podManifest('x', ENFORCED), { operation: 'UPDATE' }) });
      assert.equal(update.status, 400);
      assert.match(update.body, /registered for CREATE, got UPDATE/);
    });

    it('refuses an oversize body with 413, whether declared or streamed, without reading it all', async () => {
      const declared = await post(server, trustedCa, { headers: { 'content-length': 4 * 1024 * 1024 }, body: [] });
      assert.equal(declared.status, 413);
      assert.match(declared.body, /exceeds the limit of 3145728 bytes/);
      const chunks = Array.from({ length: 64 }, () => Buffer.alloc(128 * 1024, 0x20));
      const streamed = await post(server, trustedCa, { headers: { 'transfer-encoding': 'chunked' }, body: chunks });
      assert.equal(streamed.status, 413);
      assert.equal(streamed.headers.connection, 'close');
    });

    it('answers 408 and closes the connection when a client trickles its body (slowloris)', async () => {
      const strict = await startWebhookServer({
        host: '127.0.0.1', port: 0, certificates, context: { namespace: () => Promise.resolve(undefined), policies: () => Promise.resolve([]) },
        settings: DEFAULT_INJECTION_SETTINGS, registry: new Registry(), logger: capturingLogger().logger, decisionTimeoutMs: 300,
      });
      try {
        const answer = await new Promise<string>((resolve, reject) => {
          let text = '';
          const socket = tlsConnect({ host: '127.0.0.1', port: strict.port, ca: trustedCa, servername: `${SERVICE}.${RELEASE_NS}.svc` }, () => {
            socket.write('POST /mutate/pods HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
          });
          socket.on('data', (d: Buffer) => (text += d.toString()));
          socket.once('close', () => { resolve(text); });
          socket.once('error', reject);
        });
        assert.match(answer, /^HTTP\/1\.1 408 /);
      } finally {
        await strict.close(100);
      }
    });

    it('counts refused requests as invalid in custos_admission_duration_seconds', async () => {
      const text = await registry.metrics();
      const count = /custos_admission_duration_seconds_count\{result="invalid"\} (\d+)/.exec(text);
      assert.ok(count !== null && Number(count[1]) >= 9, text);
    });

    it('answers /healthz', async () => {
      const health = await post(server, trustedCa, { path: '/healthz', method: 'GET' });
      assert.equal(health.status, 200);
    });
  });

  describe('TLS', () => {
    it('presents a leaf for the Service names signed by the stored CA; a client trusting another CA refuses it', async () => {
      const cert = await peerCertificate(server, trustedCa);
      assert.equal(cert.serialNumber, rotating.current().serialNumber);
      assert.match(cert.subjectaltname ?? '', /DNS:custos-webhook\.custos-system\.svc, DNS:custos-webhook\.custos-system\.svc\.cluster\.local/);
      const stranger = await makeCertificates(['localhost']);
      await assert.rejects(peerCertificate(server, stranger.caCert), /unable to verify|self-signed|unable to get local issuer/i);
    });

    it('refuses clients below TLS 1.3', async () => {
      await assert.rejects(new Promise((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: server.port, ca: trustedCa, servername: `${SERVICE}.${RELEASE_NS}.svc`, maxVersion: 'TLSv1.2' }, () => {
          socket.end();
          resolve(undefined);
        });
        socket.once('error', reject);
      }), /protocol version|alert/i);
    });
  });

  describe('through the API server', () => {
    it('denies pod creation while caBundle is blank: the API server cannot verify the webhook and failurePolicy is Fail', async () => {
      assert.equal(await caBundle(), '');
      const r = await k.run(['apply', '-f', '-'], { input: JSON.stringify(podManifest('before-bundle', ENFORCED)) });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /failed calling webhook "inject\.sidecar\.custos\.io".*x509: certificate signed by unknown authority/);
      assert.equal((await k.run(['get', 'pod', 'before-bundle', '-n', ENFORCED])).code, 1);
    });

    it('injects once the leader patched caBundle: custos-init and the native sidecar, exactly as buildInjectionPatch renders them', async () => {
      startPatcher(capturingLogger().logger);
      await waitFor('caBundle patched', async () => (await caBundle()) === expectedBundle());
      const manifest = podManifest('billing-0', ENFORCED);
      const r = await k.run(['apply', '-f', '-'], { input: JSON.stringify(manifest) });
      assert.equal(r.code, 0, r.stderr);
      const stored = JSON.parse(await k.ok(['get', 'pod', 'billing-0', '-n', ENFORCED, '-o', 'json'])) as Required<PodLike> & { spec: { initContainers: Array<Record<string, unknown>> } };
      // The webhook sees the pod after the API server's ServiceAccount admission added the
      // kube-api-access volume and mounted it into the app (the sidecar mounts it too, for its
      // service-account check).
      const apiAccess = (stored.spec.volumes as Array<{ name: string }>).filter((v) => v.name.startsWith('kube-api-access-'));
      assert.equal(apiAccess.length, 1, 'ServiceAccount admission added kube-api-access');
      const admitted = { ...manifest, spec: { ...manifest.spec, containers: stored.spec.containers ?? [], volumes: [...(manifest.spec?.volumes ?? []), ...apiAccess] } };
      const expected: InjectionResult = buildInjectionPatch({
        pod: admitted, namespace: { name: ENFORCED, labels: { 'custos.io/injection': 'enabled' } }, policies: [policy], settings: DEFAULT_INJECTION_SETTINGS,
      });
      assert.equal(expected.kind, 'patch');
      assert.deepEqual(stored.spec.initContainers.map((c) => c.name), ['custos-init', 'custos-sidecar']);
      const added = expected.patch.find((op) => op.path === '/spec/initContainers');
      assert.ok(added !== undefined && added.op === 'add');
      assert.deepEqual(stored.spec.initContainers, added.value);
      assert.equal(stored.spec.initContainers[1]?.restartPolicy, 'Always');
      const sidecarMounts = stored.spec.initContainers[1]['volumeMounts'] as Array<{ name: string; mountPath: string }> | undefined;
      assert.ok(sidecarMounts?.some((m) => m.name === apiAccess[0]?.name && m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount'), 'the sidecar mounts the pod\'s API token');
      assert.equal(stored.metadata.annotations?.['custos.io/status'], JSON.stringify(expected.status));
      assert.equal(stored.metadata.annotations['kubectl.kubernetes.io/default-container'], 'app');
      assert.equal(stored.metadata.labels?.['custos.io/injected'], 'true');
      const metrics = await registry.metrics();
      assert.match(metrics, /custos_injections_total\{result="patch",reason="injected"\} 1/);
      assert.match(metrics, /custos_admission_duration_seconds_count\{result="patch"\} 1/);
    });

    it('refuses a pod that adds NET_ADMIN, and kubectl prints what to change', async () => {
      const r = await k.run(['apply', '-f', '-'], { input: JSON.stringify(podManifest('escalating', ENFORCED, { capabilities: ['NET_ADMIN'] })) });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /admission webhook "inject\.sidecar\.custos\.io" denied the request: Custos refuses pod payments\/escalating \(AccessPolicy billing\): container app \(spec\.containers\[0\]\) adds capabilities NET_ADMIN, which can rewrite the pod's iptables rules and bypass the sidecar; remove them/);
      assert.equal((await k.run(['get', 'pod', 'escalating', '-n', ENFORCED])).code, 1);
      assert.match(await registry.metrics(), /custos_injections_total\{result="reject",reason="adds-net-admin"\} 1/);
    });

    it('leaves pods of a namespace that did not opt in unchanged (the API server does not even call)', async () => {
      const calls = api.admissionCalls.length;
      await k.ok(['apply', '-f', '-'], { input: JSON.stringify(podManifest('untouched', PLAIN)) });
      const stored = JSON.parse(await k.ok(['get', 'pod', 'untouched', '-n', PLAIN, '-o', 'json'])) as PodLike;
      assert.equal(stored.spec?.initContainers, undefined);
      assert.equal(stored.metadata?.annotations?.['custos.io/status'], undefined);
      assert.equal(api.admissionCalls.length, calls);
    });

    it('admits unchanged a pod that no policy selects, and one that opted out', async () => {
      await k.ok(['apply', '-f', '-'], { input: JSON.stringify(podManifest('unselected', ENFORCED, { labels: { 'custos.io/policy': 'reporting' } })) });
      const stored = JSON.parse(await k.ok(['get', 'pod', 'unselected', '-n', ENFORCED, '-o', 'json'])) as PodLike;
      assert.equal(stored.spec?.initContainers, undefined);
      assert.match(await registry.metrics(), /custos_injections_total\{result="skip",reason="no-policy-selects-pod"\} 1/);
      const calls = api.admissionCalls.length;
      await k.ok(['apply', '-f', '-'], { input: JSON.stringify(podManifest('opted-out', ENFORCED, { labels: { 'custos.io/inject': 'false' } })) });
      const optedOut = JSON.parse(await k.ok(['get', 'pod', 'opted-out', '-n', ENFORCED, '-o', 'json'])) as PodLike;
      assert.equal(optedOut.spec?.initContainers, undefined);
      // The webhook still sees it (ADR 0006 amendment: opted-out pods must not read credentials) and skips it.
      assert.equal(api.admissionCalls.length, calls + 1, 'opted-out pods still reach the webhook');
      assert.match(await registry.metrics(), /custos_injections_total\{result="skip",reason="pod-opted-out"\} 1/);
    });

    it('does not admit a pod when the namespace cannot be read: the API server applies failurePolicy Fail', async () => {
      failLookups = true;
      try {
        const r = await k.run(['apply', '-f', '-'], { input: JSON.stringify(podManifest('api-down', ENFORCED)) });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /failed calling webhook "inject\.sidecar\.custos\.io".*custos webhook cannot decide: cannot read namespace payments: connect ECONNREFUSED/);
      } finally {
        failLookups = false;
      }
      assert.equal((await k.run(['get', 'pod', 'api-down', '-n', ENFORCED])).code, 1);
    });

    it('answers 504 before the API server gives up when deciding takes too long', async () => {
      hangLookups = true;
      try {
        // The API server sends ?timeout=<timeoutSeconds>s; the handler answers a second earlier.
        const r = await post(server, trustedCa, { path: '/mutate/pods?timeout=2s', body: review('slow-1', podManifest('slow', ENFORCED)) });
        assert.equal(r.status, 504);
        assert.match(r.body, /no decision within 1000 ms/);
      } finally {
        hangLookups = false;
      }
    });

    it('never logs the pod\'s environment values', () => {
      assert.match(logs(), /"uid":/);
      assert.doesNotMatch(logs(), new RegExp(SECRET_ENV_VALUE));
    });

    it('denies pod creation while the webhook presents an expired leaf, and recovers with the current one', async () => {
      const now = Date.now();
      const expired = await issueServingCertificate(caStore.current(), {
        names: webhookServiceNames(SERVICE, RELEASE_NS), now: new Date(now - 2 * DAY_MS), lifetimeMs: DAY_MS,
      });
      certificates.set(expired);
      try {
        const r = await k.run(['apply', '-f', '-'], { input: JSON.stringify(podManifest('while-expired', ENFORCED)) });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /x509: certificate has expired or is not yet valid/);
      } finally {
        certificates.set(undefined);
      }
      await k.ok(['apply', '-f', '-'], { input: JSON.stringify(podManifest('after-expired', ENFORCED)) });
    });

    it('repairs caBundle after a helm upgrade blanks it (kubectl replace with the rendered chart)', async () => {
      await k.ok(['replace', '-f', '-'], { input: renderedConfiguration });
      await waitFor('caBundle repaired', async () => (await caBundle()) === expectedBundle());
      await k.ok(['apply', '-f', '-'], { input: JSON.stringify(podManifest('after-upgrade', ENFORCED)) });
    });

    it('serves a new leaf after rotation, exported in custos_webhook_cert_expiry_seconds, and admission keeps working', async () => {
      const before = await peerCertificate(server, trustedCa);
      const changed = new Promise<ServingCertificate>((resolve) => { const off = certificates.onChange((c) => { off(); resolve(c); }); });
      await rotating.rotate('test');
      const next = await changed;
      assert.notEqual(next.serialNumber, before.serialNumber);
      const after = await peerCertificate(server, trustedCa);
      assert.equal(after.serialNumber, next.serialNumber);
      const metrics = await registry.metrics();
      assert.match(metrics, new RegExp(`custos_webhook_cert_expiry_seconds\\{certificate="serving"\\} ${Math.floor(next.notAfter.getTime() / 1000)}`));
      assert.match(metrics, new RegExp(`custos_webhook_cert_expiry_seconds\\{certificate="ca"\\} ${Math.floor(caStore.current().notAfter.getTime() / 1000)}`));
      await k.ok(['apply', '-f', '-'], { input: JSON.stringify(podManifest('after-rotation', ENFORCED)) });
      const stored = JSON.parse(await k.ok(['get', 'pod', 'after-rotation', '-n', ENFORCED, '-o', 'json'])) as PodLike;
      assert.deepEqual(stored.spec?.initContainers?.map((c) => c.name), ['custos-init', 'custos-sidecar']);
    });

    it('stops patching once leadership is lost', async () => {
      assert.ok(patcher);
      const patches = (): number => api.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith(`/mutatingwebhookconfigurations/${CONFIGURATION}`)).length;
      patcher.controller.abort();
      await patcher.done;
      const patchesBefore = patches();
      await k.ok(['replace', '-f', '-'], { input: renderedConfiguration });
      // A live patcher repairs this within a few milliseconds (see above); a stopped one never does.
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(await caBundle(), '');
      assert.equal(patches(), patchesBefore);
      patcher = undefined;
    });
  });

  it('stores the CA in the release namespace Secret named by CUSTOS_WEBHOOK_CA_SECRET', async () => {
    const secret = JSON.parse(await k.ok(['get', 'secret', CA_SECRET, '-n', RELEASE_NS, '-o', 'json'])) as { type: string; data: Record<string, string> };
    assert.equal(secret.type, 'Opaque');
    assert.equal(Buffer.from(secret.data['ca.crt'] ?? '', 'base64').toString(), caStore.current().certPem);
    assert.match(Buffer.from(secret.data['ca.key'] ?? '', 'base64').toString(), /^-----BEGIN PRIVATE KEY-----/);
  });
});
