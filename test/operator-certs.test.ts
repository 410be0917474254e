// Webhook certificate management against the Kubernetes API double: the CA Secret (leader creates,
// a racing leader reads the winner's, followers wait and never write, an unusable Secret is
// replaced), CA rotation with new + previous CA in the bundle, the serving leaf's renewal schedule
// on a fake clock, the caBundle patcher on its own, and cert-manager mode reloading mounted files
// swapped the way the kubelet swaps them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, rename, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { isCustosError } from '../lib/errors.ts';
import { startWebhookServer } from '../operator/admission/webhook-server.ts';
import { runCaBundlePatcher } from '../operator/certs/ca-bundle-patcher.ts';
import { CaStore } from '../operator/certs/ca-store.ts';
import {
  DAY_MS, HOUR_MS, createCertificateAuthority, issueServingCertificate, splitPemCertificates, type CertificateAuthority,
} from '../operator/certs/certificate-builder.ts';
import type { ServingCertificate } from '../operator/certs/certificate-source.ts';
import type { Clock } from '../operator/certs/clock.ts';
import { FileCertificateSource } from '../operator/certs/file-certificate-source.ts';
import { RotatingServingCertificate, type AuthoritySource } from '../operator/certs/serving-cert.ts';
import { startWebhookCertificates } from '../operator/certs/webhook-certificates.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../operator/webhook/injection-settings.ts';
import { kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';
import { waitFor } from './harness/processes.ts';

const NS = 'custos-system';

/** Time that moves only when told; due timers fire in order as it moves. */
class FakeClock implements Clock {
  #now: number;
  #timers: Array<{ at: number; fn: () => void }> = [];

  constructor(start: number) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(ms: number, fn: () => void): () => void {
    const timer = { at: this.#now + ms, fn };
    this.#timers.push(timer);
    return () => { this.#timers = this.#timers.filter((t) => t !== timer); };
  }

  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = due.at;
      due.fn();
    }
    this.#now = target;
  }

  pending(): number {
    return this.#timers.length;
  }
}

function capturingLogger(): { logger: Logger; text: () => string } {
  let out = '';
  const stream = new Writable({ write(chunk: Buffer, _enc, cb) { out += chunk.toString(); cb(); } });
  return { logger: pino({ level: 'debug' }, stream), text: () => out };
}

const quiet = capturingLogger().logger;

function nextChange(source: { onChange(l: (c: ServingCertificate) => void): () => void }): Promise<ServingCertificate> {
  return new Promise((resolve) => { const off = source.onChange((c) => { off(); resolve(c); }); });
}

function fixedAuthority(ca: CertificateAuthority): AuthoritySource {
  return { current: () => ca, onChange: () => () => undefined };
}

describe('webhook CA Secret (CaStore) against the API double', () => {
  let api: KubeApi;
  let k: Kubectl;
  const clients: Record<string, CoreV1Api> = {};

  before(async () => {
    api = await startKubeApi({
      tokens: {
        'leader-a-token': { username: 'leader-a', groups: ['system:masters'] },
        'leader-b-token': { username: 'leader-b', groups: ['system:masters'] },
        'follower-token': { username: 'follower', groups: ['system:masters'] },
        'admin-token': { username: 'admin', groups: ['system:masters'] },
      },
    });
    for (const user of ['leader-a', 'leader-b', 'follower']) {
      const kc = new KubeConfig();
      kc.loadFromFile(await api.kubeconfig(user));
      clients[user] = kc.makeApiClient(CoreV1Api);
    }
    k = await kubectlFor(await api.kubeconfig('admin'));
    await k.ok(['create', 'namespace', NS]);
  });
  after(async () => {
    await api.stop();
  });

  const store = (user: string, secretName: string, extra: { clock?: Clock; validityMs?: number } = {}): CaStore => {
    const core = clients[user];
    assert.ok(core);
    return new CaStore({ core, namespace: NS, secretName, logger: quiet, ...extra });
  };
  // Secret writes by `user`; each test uses its own Secret name, and creates are POSTs to the collection.
  const writes = (user: string, secretName: string, since = 0): string[] => api.requests.slice(since)
    .filter((r) => r.user === user && r.method !== 'GET' && (r.path === `/api/v1/namespaces/${NS}/secrets` || r.path === `/api/v1/namespaces/${NS}/secrets/${secretName}`))
    .map((r) => `${r.method} ${r.code}`);

  it('lets one of two racing leaders create the CA; the other gets 409 and adopts the winner\'s', async () => {
    const mark = api.requests.length;
    const [a, b] = [store('leader-a', 'race-ca'), store('leader-b', 'race-ca')];
    const [caA, caB] = await Promise.all([a.load({ isLeader: () => true }), b.load({ isLeader: () => true })]);
    assert.equal(caA.certPem, caB.certPem);
    const all = [...writes('leader-a', 'race-ca', mark), ...writes('leader-b', 'race-ca', mark)].sort();
    assert.deepEqual(all, ['POST 201', 'POST 409']);
    const secret = JSON.parse(await k.ok(['get', 'secret', 'race-ca', '-n', NS, '-o', 'json'])) as { data: Record<string, string>; metadata: { labels: Record<string, string> } };
    assert.deepEqual(Object.keys(secret.data).sort(), ['ca.crt', 'ca.key']);
    assert.equal(Buffer.from(secret.data['ca.crt'] ?? '', 'base64').toString(), caA.certPem);
    assert.equal(secret.metadata.labels['app.kubernetes.io/part-of'], 'custos');
    // A restarted leader reuses it.
    const again = await store('leader-a', 'race-ca').load({ isLeader: () => true });
    assert.equal(again.certPem, caA.certPem);
    assert.equal(writes('leader-a', 'race-ca', mark).concat(writes('leader-b', 'race-ca', mark)).length, 2, 'no further writes');
  });

  it('makes a follower wait for the leader\'s CA without ever writing the Secret', async () => {
    const mark = api.requests.length;
    const follower = store('follower', 'follower-ca');
    let resolved = false;
    const loading = follower.load({ isLeader: () => false }, { pollIntervalMs: 20 }).then((ca) => { resolved = true; return ca; });
    await waitFor('the follower to have polled twice', () => Promise.resolve(api.requests.filter((r) => r.user === 'follower' && r.path.endsWith('/follower-ca')).length >= 2));
    assert.equal(resolved, false);
    const leaderCa = await store('leader-a', 'follower-ca').load({ isLeader: () => true });
    const followerCa = await loading;
    assert.equal(followerCa.certPem, leaderCa.certPem);
    assert.deepEqual(writes('follower', 'follower-ca', mark), []);
    assert.deepEqual(writes('leader-a', 'follower-ca', mark), ['POST 201']);
  });

  it('gives up waiting when stopped', async () => {
    const controller = new AbortController();
    const loading = store('follower', 'never-ca').load({ isLeader: () => false }, { signal: controller.signal, pollIntervalMs: 20 });
    controller.abort();
    await assert.rejects(loading, (e: unknown) => isCustosError(e, 'ERR_CERT_ABORTED'));
  });

  it('replaces an unusable CA Secret as leader; a follower does not trust it meanwhile', async () => {
    const stranger = await createCertificateAuthority({ commonName: 'stranger', now: new Date(), validityMs: DAY_MS });
    const other = await createCertificateAuthority({ commonName: 'other', now: new Date(), validityMs: DAY_MS });
    // A certificate with somebody else's key: whoever wrote this cannot be trusted to sign.
    await k.ok(['create', 'secret', 'generic', 'broken-ca', '-n', NS, `--from-literal=ca.crt=${stranger.certPem}`, `--from-literal=ca.key=${other.keyPem}`]);
    const follower = store('follower', 'broken-ca');
    assert.equal(await follower.sync({ isLeader: () => false }), false);
    const mark = api.requests.length;
    const fixed = await store('leader-a', 'broken-ca').load({ isLeader: () => true });
    assert.notEqual(fixed.certPem, stranger.certPem);
    assert.deepEqual(writes('leader-a', 'broken-ca', mark), ['PUT 200']);
    assert.equal(await follower.sync({ isLeader: () => false }), true);
    assert.equal(follower.current().certPem, fixed.certPem);
  });

  it('rotates the CA when a fifth of its validity remains, keeping the previous CA in the bundle until it expires', async () => {
    const clock = new FakeClock(Date.now());
    const leader = store('leader-a', 'rotating-ca', { clock, validityMs: 10 * DAY_MS });
    const follower = store('follower', 'rotating-ca', { clock, validityMs: 10 * DAY_MS });
    const first = await leader.load({ isLeader: () => true });
    await follower.load({ isLeader: () => false });
    // As long-lived as the CA allows, so that only the CA change re-issues it in this test.
    const leaf = await RotatingServingCertificate.start({ authority: follower, names: ['custos-webhook.custos-system.svc'], logger: quiet, clock, caChangeDelayMs: 0, lifetimeMs: 30 * DAY_MS });
    const oldLeaf = leaf.current();

    clock.advance(7 * DAY_MS); // 3 of 10 days left: not due
    assert.equal(await leader.sync({ isLeader: () => true }), true);
    assert.equal(leader.current().certPem, first.certPem);

    clock.advance(1.5 * DAY_MS); // 1.5 of 10 days left: due
    const bundleChanged = new Promise<string>((resolve) => { const off = leader.bundle.onChange((b) => { off(); resolve(b); }); });
    await leader.sync({ isLeader: () => true });
    const second = leader.current();
    assert.notEqual(second.certPem, first.certPem);
    assert.deepEqual(splitPemCertificates(await bundleChanged).map((p) => new X509Certificate(p).fingerprint256), [
      new X509Certificate(second.certPem).fingerprint256, new X509Certificate(first.certPem).fingerprint256,
    ]);

    // The follower sees the rotation on its next sync and its leaf is re-signed by the new CA.
    const reissued = nextChange(leaf);
    await follower.sync({ isLeader: () => false });
    assert.equal(follower.current().certPem, second.certPem);
    const newLeaf = await reissued;
    assert.ok(new X509Certificate(newLeaf.certPem).checkIssued(new X509Certificate(second.certPem)));
    // Both leaves verify against the bundle the API server gets: nobody is cut off mid-rotation.
    const bundle = splitPemCertificates(follower.bundle.current()).map((p) => new X509Certificate(p));
    for (const l of [oldLeaf, newLeaf]) assert.ok(bundle.some((ca) => new X509Certificate(l.certPem).verify(ca.publicKey)), `leaf ${l.serialNumber} verifies`);

    clock.advance(2 * DAY_MS); // the previous CA has expired: it leaves the bundle
    await leader.sync({ isLeader: () => true });
    assert.equal(splitPemCertificates(leader.bundle.current()).length, 1);
    leaf.close();
  });
});

describe('serving certificate renewal (fake clock)', () => {
  const start = Date.parse('2030-06-01T00:00:00Z');

  it('re-issues when 10 % of a 24 h lifetime remains, not before', async () => {
    const clock = new FakeClock(start);
    const ca = await createCertificateAuthority({ commonName: 'ca', now: new Date(start), validityMs: 365 * DAY_MS });
    const leaf = await RotatingServingCertificate.start({ authority: fixedAuthority(ca), names: ['a.b.svc'], logger: quiet, clock });
    const first = leaf.current();
    assert.equal(first.notAfter.getTime(), start + DAY_MS);
    let changes = 0;
    leaf.onChange(() => { changes++; });
    clock.advance(21.5 * HOUR_MS);
    assert.equal(changes, 0);
    assert.equal(leaf.current().serialNumber, first.serialNumber);
    const next = nextChange(leaf);
    clock.advance(0.2 * HOUR_MS); // 21.7 h: past 90 %
    const second = await next;
    assert.notEqual(second.serialNumber, first.serialNumber);
    assert.equal(second.notAfter.getTime(), start + 21.7 * HOUR_MS + DAY_MS, 'issued when the timer fired, valid for another 24 h');
    assert.equal(clock.pending(), 1, 'exactly one renewal scheduled');
    leaf.close();
    assert.equal(clock.pending(), 0);
  });

  it('never keeps serving an expired leaf after the process slept past its expiry', async () => {
    const clock = new FakeClock(start);
    const ca = await createCertificateAuthority({ commonName: 'ca', now: new Date(start), validityMs: 365 * DAY_MS });
    const leaf = await RotatingServingCertificate.start({ authority: fixedAuthority(ca), names: ['a.b.svc'], logger: quiet, clock, lifetimeMs: 48 * HOUR_MS });
    const next = nextChange(leaf);
    clock.advance(5 * DAY_MS);
    const renewed = await next;
    assert.ok(renewed.notAfter.getTime() > clock.now());
    assert.ok(renewed.notBefore.getTime() <= clock.now());
    leaf.close();
  });

  it('keeps the current leaf and retries when renewal fails (CA expired), then recovers', async () => {
    const clock = new FakeClock(start);
    const { logger, text } = capturingLogger();
    const shortCa = await createCertificateAuthority({ commonName: 'short', now: new Date(start), validityMs: 30 * HOUR_MS });
    const longCa = await createCertificateAuthority({ commonName: 'long', now: new Date(start), validityMs: 365 * DAY_MS });
    let ca = shortCa;
    const leaf = await RotatingServingCertificate.start({ authority: { current: () => ca, onChange: () => () => undefined }, names: ['a.b.svc'], logger, clock, lifetimeMs: 24 * HOUR_MS });
    const first = leaf.current();
    // Renewal at 21.6 h gives a leaf cut short at the CA's 30 h; its renewal then finds the CA expired.
    let next = nextChange(leaf);
    clock.advance(22 * HOUR_MS);
    await next;
    assert.equal(leaf.current().notAfter.getTime(), shortCa.notAfter.getTime());
    const cutShort = leaf.current();
    clock.advance(9 * HOUR_MS); // 31 h: the CA has expired
    await waitFor('the failure to be logged', () => Promise.resolve(text().includes('serving certificate renewal failed; retrying')));
    assert.equal(leaf.current().serialNumber, cutShort.serialNumber);
    assert.notEqual(cutShort.serialNumber, first.serialNumber);
    ca = longCa;
    next = nextChange(leaf);
    clock.advance(10_000);
    const recovered = await next;
    assert.ok(new X509Certificate(recovered.certPem).checkIssued(new X509Certificate(longCa.certPem)));
    leaf.close();
  });

  it('refuses nonsensical settings', async () => {
    const ca = await createCertificateAuthority({ commonName: 'ca', now: new Date(start), validityMs: DAY_MS });
    await assert.rejects(RotatingServingCertificate.start({ authority: fixedAuthority(ca), names: ['a'], logger: quiet, renewFraction: 1 }), /renewFraction/);
    await assert.rejects(RotatingServingCertificate.start({ authority: fixedAuthority(ca), names: ['a'], logger: quiet, lifetimeMs: -5 }), /lifetime/);
  });
});

describe('caBundle patcher on its own', () => {
  let api: KubeApi;
  let k: Kubectl;
  let kc: KubeConfig;
  const NAME = 'patcher-test-injector';

  const configuration = (caBundle: string): string => JSON.stringify({
    apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: NAME },
    webhooks: ['one', 'two'].map((n) => ({
      name: `${n}.custos.io`, admissionReviewVersions: ['v1'], sideEffects: 'None', failurePolicy: 'Fail',
      clientConfig: { service: { name: 'custos-webhook', namespace: NS, path: '/mutate/pods', port: 443 }, caBundle },
      rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }],
      namespaceSelector: { matchLabels: { [`${n}.custos.io/never`]: 'true' } },
    })),
  });
  const bundles = async (): Promise<string> => k.ok(['get', 'mutatingwebhookconfiguration', NAME, '-o', 'jsonpath={.webhooks[*].clientConfig.caBundle}']);
  // The patcher's own patches (kubectl label patches the same path, as a merge patch).
  const patches = (): number => api.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith(`/mutatingwebhookconfigurations/${NAME}`) && r.query.includes('fieldManager=custos-operator')).length;

  before(async () => {
    api = await startKubeApi({ tokens: { 'patcher-token': { username: 'operator', groups: ['system:masters'] } }, bookmarkIntervalMs: 100 });
    kc = new KubeConfig();
    kc.loadFromFile(await api.kubeconfig());
    k = await kubectlFor(await api.kubeconfig());
  });
  after(async () => {
    await api.stop();
  });

  it('patches every webhook once the configuration appears, re-patches on bundle change and deletion, and writes nothing when it is current', async () => {
    const caOne = await createCertificateAuthority({ commonName: 'one', now: new Date(), validityMs: DAY_MS });
    const caTwo = await createCertificateAuthority({ commonName: 'two', now: new Date(), validityMs: DAY_MS });
    let pem = caOne.certPem;
    const listeners = new Set<(b: string) => void>();
    const bundle = { current: () => pem, onChange: (l: (b: string) => void) => { listeners.add(l); return () => listeners.delete(l); } };
    const controller = new AbortController();
    const done = runCaBundlePatcher({ kubeConfig: kc, configurationName: NAME, bundle, signal: controller.signal, logger: quiet, backoff: { initialMs: 20, maxMs: 200 } });
    try {
      // Not installed yet (helm install still running): patched as soon as it appears.
      await k.ok(['apply', '-f', '-'], { input: configuration('') });
      const one = Buffer.from(caOne.certPem).toString('base64');
      await waitFor('both webhooks patched', async () => (await bundles()) === `${one} ${one}`);
      assert.equal(patches(), 1, 'one JSON patch covers both webhooks');

      // A change that leaves caBundle alone (a label) is looked at and left alone.
      const reads = (): number => api.requests.filter((r) => r.method === 'GET' && r.user === 'operator' && r.path.endsWith(`/mutatingwebhookconfigurations/${NAME}`) && !r.query.includes('watch')).length;
      await waitFor('the patcher to settle after its own patch', async () => {
        const n = reads();
        await new Promise((r) => setTimeout(r, 200));
        return reads() === n;
      });
      const readsBefore = reads();
      await k.ok(['label', 'mutatingwebhookconfiguration', NAME, 'touched=yes']);
      await waitFor('the patcher to re-read after the label change', () => Promise.resolve(reads() > readsBefore));
      assert.equal(patches(), 1);

      // CA rotation: the new bundle goes out.
      pem = `${caTwo.certPem}${caOne.certPem}`;
      for (const l of listeners) l(pem);
      const both = Buffer.from(pem).toString('base64');
      await waitFor('the rotated bundle', async () => (await bundles()) === `${both} ${both}`);

      // Deleted and re-created by a re-install: patched again.
      await k.ok(['delete', 'mutatingwebhookconfiguration', NAME]);
      await k.ok(['apply', '-f', '-'], { input: configuration('') });
      await waitFor('the re-created configuration patched', async () => (await bundles()) === `${both} ${both}`);
    } finally {
      controller.abort();
      await done;
    }
  });

  it('resumes after the API server drops its watch', async () => {
    const ca = await createCertificateAuthority({ commonName: 'three', now: new Date(), validityMs: DAY_MS });
    const controller = new AbortController();
    const done = runCaBundlePatcher({
      kubeConfig: kc, configurationName: NAME, bundle: { current: () => ca.certPem, onChange: () => () => undefined },
      signal: controller.signal, logger: quiet, backoff: { initialMs: 20, maxMs: 200 },
    });
    try {
      const b64 = Buffer.from(ca.certPem).toString('base64');
      await waitFor('patched', async () => (await bundles()) === `${b64} ${b64}`);
      api.dropWatches();
      await k.ok(['replace', '-f', '-'], { input: configuration('') });
      await waitFor('repaired after the watch was dropped', async () => (await bundles()) === `${b64} ${b64}`);
    } finally {
      controller.abort();
      await done;
    }
  });
});

describe('cert-manager mode: certificate files from a mounted Secret', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let generation = 0;

  /** Writes a new `..<timestamp>` directory and swaps the `..data` symlink, as the kubelet does. */
  async function publish(files: { cert: string; key: string; ca?: string }): Promise<void> {
    generation++;
    const data = `..2030_01_01_00_00_0${generation}.000000000`;
    await mkdir(join(dir, data));
    await writeFile(join(dir, data, 'tls.crt'), files.cert);
    await writeFile(join(dir, data, 'tls.key'), files.key);
    if (files.ca !== undefined) await writeFile(join(dir, data, 'ca.crt'), files.ca);
    await symlink(data, join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'custos-webhook-tls-'));
    ca = await createCertificateAuthority({ commonName: 'cert-manager-selfsigned', now: new Date(), validityMs: 90 * DAY_MS });
  });

  const leafFor = (names: string[] = ['custos-webhook.custos-system.svc', '127.0.0.1']): ReturnType<typeof issueServingCertificate> =>
    issueServingCertificate(ca, { names, now: new Date(), lifetimeMs: 90 * DAY_MS });

  it('refuses to start without a usable pair', async () => {
    await assert.rejects(FileCertificateSource.start({ dir, logger: quiet }), (e: unknown) => isCustosError(e, 'ERR_CERT_FILES_INVALID') && /tls\.crt and tls\.key are required/.test(e.message));
  });

  it('serves the mounted pair and swaps to the new one after the kubelet swaps ..data; a half-written pair is ignored', async () => {
    const first = await leafFor();
    await publish({ cert: first.certPem, key: first.keyPem, ca: ca.certPem });
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) await symlink(join('..data', f), join(dir, f));
    const { logger, text } = capturingLogger();
    const source = await FileCertificateSource.start({ dir, logger, pollIntervalMs: 20 });
    const server = await startWebhookServer({
      host: '127.0.0.1', port: 0, certificates: source, registry: new Registry(), logger, settings: DEFAULT_INJECTION_SETTINGS,
      context: { namespace: () => Promise.resolve(undefined), policies: () => Promise.resolve([]) },
    });
    const serial = (): Promise<string> => new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: server.port, ca: ca.certPem, servername: 'custos-webhook.custos-system.svc' }, () => {
        const s = socket.getPeerCertificate().serialNumber;
        socket.end();
        resolve(s);
      });
      socket.once('error', reject);
    });
    try {
      assert.equal(await serial(), first.serialNumber);
      assert.equal(source.caPem(), ca.certPem);

      // Renewed by cert-manager: new key, new certificate.
      const second = await leafFor();
      const swapped = nextChange(source);
      await publish({ cert: second.certPem, key: second.keyPem, ca: ca.certPem });
      assert.equal((await swapped).serialNumber, second.serialNumber);
      assert.equal(await serial(), second.serialNumber);

      // A pair caught half-way (new certificate, old key): refused, the current pair keeps serving.
      const third = await leafFor();
      await publish({ cert: third.certPem, key: second.keyPem, ca: ca.certPem });
      assert.equal(await source.poll(), false);
      assert.match(text(), /tls\.key does not belong to tls\.crt/);
      assert.equal(await serial(), second.serialNumber);

      // Completed: picked up.
      const fixed = nextChange(source);
      await publish({ cert: third.certPem, key: third.keyPem });
      assert.equal((await fixed).serialNumber, third.serialNumber);
      assert.equal(source.caPem(), undefined);
      assert.equal(await serial(), third.serialNumber);
    } finally {
      source.close();
      await server.close(100);
    }
  });
});

describe('startWebhookCertificates (what the wiring calls)', () => {
  let api: KubeApi;
  let kc: KubeConfig;
  before(async () => {
    api = await startKubeApi({ tokens: { 'wiring-token': { username: 'operator', groups: ['system:masters'] } } });
    kc = new KubeConfig();
    kc.loadFromFile(await api.kubeconfig());
    await (await kubectlFor(await api.kubeconfig())).ok(['create', 'namespace', NS]);
  });
  after(async () => {
    await api.stop();
  });

  it('in-process: a follower waits for the leader\'s CA; both serve leaves the leader\'s bundle verifies; expiry is exported', async () => {
    const controller = new AbortController();
    const common = {
      mode: 'in-process' as const, kubeConfig: kc, namespace: NS, serviceName: 'custos-webhook', caSecretName: 'wiring-ca',
      extraNames: ['127.0.0.1'], signal: controller.signal, logger: quiet, caSyncIntervalMs: 50,
    };
    try {
      const followerRegistry = new Registry();
      const follower = startWebhookCertificates({ ...common, leadership: { isLeader: () => false }, registry: followerRegistry });
      const leaderRegistry = new Registry();
      const leader = await startWebhookCertificates({ ...common, leadership: { isLeader: () => true }, registry: leaderRegistry });
      const followed = await follower;
      assert.ok(leader.caBundle);
      const bundle = splitPemCertificates(leader.caBundle.current()).map((p) => new X509Certificate(p));
      for (const certs of [leader, followed]) {
        const leaf = new X509Certificate(certs.source.current().certPem);
        assert.ok(bundle.some((ca) => leaf.verify(ca.publicKey)));
        assert.equal(leaf.checkHost('custos-webhook.custos-system.svc'), 'custos-webhook.custos-system.svc');
        assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
      }
      assert.notEqual(leader.source.current().serialNumber, followed.source.current().serialNumber, 'each replica has its own leaf and key');
      const metrics = await followerRegistry.metrics();
      assert.match(metrics, /custos_webhook_cert_expiry_seconds\{certificate="serving"\} \d+/);
      assert.match(metrics, /custos_webhook_cert_expiry_seconds\{certificate="ca"\} \d+/);
    } finally {
      controller.abort();
    }
  });

  it('cert-manager: serves the mounted files and has no bundle to patch', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'custos-webhook-tls-'));
    const ca = await createCertificateAuthority({ commonName: 'cm', now: new Date(), validityMs: DAY_MS });
    const leaf = await issueServingCertificate(ca, { names: ['custos-webhook.custos-system.svc'], now: new Date(), lifetimeMs: DAY_MS });
    await writeFile(join(dir, 'tls.crt'), leaf.certPem);
    await writeFile(join(dir, 'tls.key'), leaf.keyPem);
    const mark = api.requests.length;
    const controller = new AbortController();
    const common = {
      kubeConfig: kc, namespace: NS, serviceName: 'custos-webhook', caSecretName: 'unused', leadership: { isLeader: () => true },
      signal: controller.signal, logger: quiet, registry: new Registry(),
    };
    try {
      const certs = await startWebhookCertificates({ ...common, mode: 'cert-manager', certDir: dir });
      assert.equal(certs.source.current().serialNumber, leaf.serialNumber);
      assert.equal(certs.caBundle, undefined);
      await assert.rejects(startWebhookCertificates({ ...common, mode: 'cert-manager', registry: new Registry() }), /CUSTOS_WEBHOOK_CERT_DIR/);
    } finally {
      controller.abort();
    }
    // (A last in-flight sync of the previous test's CA store may still read wiring-ca.)
    assert.equal(api.requests.slice(mark).filter((r) => r.path.includes('/secrets') && !r.path.endsWith('/wiring-ca')).length, 0, 'cert-manager mode never touches Secrets through the API');
  });
});
