// The operator's Kubernetes plumbing against the Kubernetes API double (no mocks): the resilient
// informer through dropped watches, 410 Gone, a server restart, refused requests, reset and
// stalled connections and events the watch never delivered; Lease leader election with two
// candidates, a partitioned leader, a stolen Lease, a stopped API server and a graceful hand-over
// (checked with the real kubectl); and where the KubeConfig comes from.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, V1ConfigMap, V1Lease, V1LeaseSpec, V1MicroTime, V1Namespace, V1ObjectMeta,
  type KubernetesListObject, type KubernetesObject,
} from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { ResilientInformer, type ResilientInformerOptions } from '../operator/kube/informer.ts';
import { loadKubeConfig } from '../operator/kube/kube-config.ts';
import { describeKubeError } from '../operator/kube/kube-errors.ts';
import { LeaderElector, type LeaderElectorOptions } from '../operator/kube/leader-election.ts';
import { isCustosError } from '../lib/errors.ts';
import { kubectlFor, writeKubeconfig } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';
import { waitFor } from './harness/processes.ts';

const TOKEN = 'operator-kube-test-token';
const TOKENS = { [TOKEN]: { username: 'custos-operator', groups: ['system:masters'] } };
const CRD = join(import.meta.dirname, '..', 'crds', 'accesspolicy.yaml');
const GROUP = 'custos.io';
const VERSION = 'v1alpha1';
const PLURAL = 'accesspolicies';
const NAMESPACE = 'payments';
/** Fast enough for tests; the production defaults are 1 s → 30 s. */
const TEST_BACKOFF = { initialMs: 50, maxMs: 400 };

interface AccessPolicy extends KubernetesObject {
  spec: { defaultAction?: string; targets: unknown[]; rules: unknown[] };
}

// ---- logs and metrics a user would look at ----

interface LogLine { level: number; msg: string; [key: string]: unknown }

function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback): void {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as Array<{ labels: Record<string, string | number>; value: number }>;
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
}

// ---- a TCP relay in front of the API server, to cut, reset or stall connections ----

interface Relay {
  readonly port: number;
  /** Destroys every open connection at once (the peer sees ECONNRESET mid-stream). */
  reset(): void;
  /** Stops forwarding on every open connection, in both directions, and keeps it open: a stalled stream. */
  freeze(): void;
  /** Refuses new connections until `reopen()` (existing ones are reset). */
  cut(): void;
  reopen(): void;
  close(): Promise<void>;
}

async function startRelay(targetPort: number): Promise<Relay> {
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  const frozen = new Set<Socket>();
  let refusing = false;
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    const pair = { client, upstream };
    pairs.add(pair);
    client.on('data', (d: Buffer) => upstream.write(d));
    upstream.on('data', (d: Buffer) => client.write(d));
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', drop);
      s.on('close', drop);
      s.on('end', drop);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const reset = (): void => {
    for (const { client, upstream } of [...pairs]) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    pairs.clear();
  };
  return {
    port: (server.address() as AddressInfo).port,
    reset,
    freeze(): void {
      for (const { client, upstream } of pairs) {
        for (const s of [client, upstream]) {
          s.removeAllListeners('data');
          s.pause();
          frozen.add(s);
        }
      }
      pairs.clear();
    },
    cut(): void {
      refusing = true;
      reset();
    },
    reopen(): void {
      refusing = false;
    },
    close: () => new Promise<void>((resolve) => {
      reset();
      for (const s of frozen) s.destroy();
      server.close(() => { resolve(); });
    }),
  };
}

// ---- API access ----

async function kubeConfigAt(api: KubeApi, port = api.port): Promise<KubeConfig> {
  const kc = new KubeConfig();
  kc.loadFromFile(await writeKubeconfig({ server: `https://127.0.0.1:${port}`, caCertPath: api.caCertPath, token: TOKEN, user: 'custos-operator' }));
  return kc;
}

function meta(name: string, namespace?: string, labels?: Record<string, string>): V1ObjectMeta {
  const m = new V1ObjectMeta();
  m.name = name;
  if (namespace !== undefined) m.namespace = namespace;
  if (labels !== undefined) m.labels = labels;
  return m;
}

function configMap(name: string, labels?: Record<string, string>): V1ConfigMap {
  const cm = new V1ConfigMap();
  cm.metadata = meta(name, undefined, labels);
  cm.data = { k: 'v' };
  return cm;
}

function policyBody(name: string, defaultAction = 'deny'): AccessPolicy {
  return {
    apiVersion: `${GROUP}/${VERSION}`, kind: 'AccessPolicy', metadata: meta(name, NAMESPACE),
    spec: { defaultAction, targets: [{ name: 'billing', protocol: 'postgres', host: '127.0.0.1', port: 5432 }], rules: [{ name: 'r1', action: 'allow' }] },
  };
}

async function installCrdAndNamespace(api: KubeApi): Promise<void> {
  const k = await kubectlFor(await api.kubeconfig());
  await k.ok(['apply', '-f', CRD]);
  await k.ok(['create', 'namespace', NAMESPACE]);
}

/** What the handlers saw, as `add name`, `update name rv (was rv)`, `delete name`. */
function record(informer: ResilientInformer<AccessPolicy>): string[] {
  const seen: string[] = [];
  informer.on('add', (o) => { seen.push(`add ${o.metadata?.name ?? ''} ${o.spec.defaultAction ?? ''}`); });
  informer.on('update', (o, previous) => { seen.push(`update ${o.metadata?.name ?? ''} ${o.spec.defaultAction ?? ''} (was ${previous.spec.defaultAction ?? ''})`); });
  informer.on('delete', (o) => { seen.push(`delete ${o.metadata?.name ?? ''}`); });
  return seen;
}

describe('ResilientInformer against the Kubernetes API double', { timeout: 120_000 }, () => {
  let api: KubeApi;
  let kc: KubeConfig;
  let custom: CustomObjectsApi;
  const informers: Array<ResilientInformer<AccessPolicy>> = [];

  before(async () => {
    api = await startKubeApi({ tokens: TOKENS, bookmarkIntervalMs: 200 });
    await installCrdAndNamespace(api);
    kc = await kubeConfigAt(api);
    custom = kc.makeApiClient(CustomObjectsApi);
  });
  after(async () => {
    for (const i of informers) await i.stop();
    await api.stop();
  });
  beforeEach(async () => {
    // Every test starts from no policies.
    for (const p of api.store.list(GROUP, PLURAL)) await custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NAMESPACE, plural: PLURAL, name: p.metadata.name ?? '' });
  });

  function policies(options: Partial<ResilientInformerOptions<AccessPolicy>> & { kubeConfig?: KubeConfig } = {}): { informer: ResilientInformer<AccessPolicy>; seen: string[]; lines: LogLine[]; registry: Registry } {
    const { logger, lines } = capturingLogger();
    const registry = new Registry();
    const client = (options.kubeConfig ?? kc).makeApiClient(CustomObjectsApi);
    const informer = new ResilientInformer<AccessPolicy>({
      name: 'accesspolicies',
      kubeConfig: kc,
      path: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      list: async () => (await client.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })) as KubernetesListObject<AccessPolicy>,
      logger,
      registry,
      backoff: TEST_BACKOFF,
      ...options,
    });
    informers.push(informer);
    return { informer, seen: record(informer), lines, registry };
  }

  const create = (name: string, action = 'deny'): Promise<unknown> => custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NAMESPACE, plural: PLURAL, body: policyBody(name, action) });
  const setAction = (name: string, action: string): Promise<unknown> => custom.patchNamespacedCustomObject({
    group: GROUP, version: VERSION, namespace: NAMESPACE, plural: PLURAL, name, body: [{ op: 'replace', path: '/spec/defaultAction', value: action }],
  });
  const remove = (name: string): Promise<unknown> => custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NAMESPACE, plural: PLURAL, name });
  /** GETs of the collection that were lists, not watches. */
  const lists = (): number => api.requests.filter((r) => r.method === 'GET' && r.path === `/apis/${GROUP}/${VERSION}/${PLURAL}` && !r.query.includes('watch=')).length;

  it('delivers add, update and delete for AccessPolicies and resolves start() once the first list is cached', async () => {
    await create('existing', 'deny');
    const { informer, seen, registry } = policies();
    assert.equal(informer.hasSynced, false);
    await informer.start();
    assert.equal(informer.hasSynced, true);
    assert.deepEqual(informer.list().map((p) => p.metadata?.name), ['existing']);
    await informer.idle();
    assert.deepEqual(seen, ['add existing deny']);

    await create('second', 'deny');
    await setAction('second', 'allow');
    await remove('existing');
    await waitFor('the watch events', async () => { await informer.idle(); return seen.length >= 4; });
    assert.deepEqual(seen, ['add existing deny', 'add second deny', 'update second allow (was deny)', 'delete existing']);
    assert.equal(informer.get(NAMESPACE, 'second')?.spec.defaultAction, 'allow');
    assert.equal(informer.get(NAMESPACE, 'existing'), undefined);
    assert.equal(await metricValue(registry, 'custos_informer_objects', { informer: 'accesspolicies' }), 1);
    assert.equal(await metricValue(registry, 'custos_informer_relists_total', { informer: 'accesspolicies', reason: 'initial' }), 1);
    const age = await metricValue(registry, 'custos_informer_last_event_age_seconds', { informer: 'accesspolicies' });
    assert.ok(age !== undefined && age >= 0, `last event age ${String(age)}`);
    // Bookmarks were asked for, and the watch resumed from the list's resourceVersion (a watch is
    // recorded when it ends).
    api.dropWatches();
    const watched = (): string | undefined => api.requests.find((r) => r.path === `/apis/${GROUP}/${VERSION}/${PLURAL}` && r.query.includes('watch=true'))?.query;
    await waitFor('a finished watch request', () => Promise.resolve(watched() !== undefined));
    assert.match(watched() ?? '', /allowWatchBookmarks=true/);
    assert.match(watched() ?? '', /resourceVersion=\d+/);
    await informer.stop();
  });

  it('advances its resourceVersion with bookmarks while nothing changes', async () => {
    const { informer } = policies();
    await informer.start();
    const start = Number(informer.resourceVersion);
    // Another resource moves the shared revision; only a bookmark can carry it to this watch.
    await kc.makeApiClient(CoreV1Api).createNamespacedConfigMap({ namespace: NAMESPACE, body: configMap('unrelated') });
    await waitFor('a bookmark past the ConfigMap', () => Promise.resolve(Number(informer.resourceVersion) > start));
    await informer.stop();
  });

  it('reconnects from its last resourceVersion, without relisting, after the server drops every watch', async () => {
    const { informer, seen, registry } = policies();
    await informer.start();
    const listsBefore = lists();
    api.dropWatches();
    await create('after-drop');
    api.dropWatches();
    await setAction('after-drop', 'allow');
    await waitFor('the events after the drops', async () => { await informer.idle(); return seen.length >= 2; });
    assert.deepEqual(seen, ['add after-drop deny', 'update after-drop allow (was deny)']);
    assert.equal(lists(), listsBefore, 'no relist');
    assert.ok((await metricValue(registry, 'custos_informer_restarts_total', { informer: 'accesspolicies' }) ?? 0) >= 1);
    await informer.stop();
  });

  it('relists after 410 Gone when the history no longer reaches its resourceVersion', async () => {
    await create('compacted', 'deny');
    const relay = await startRelay(api.port);
    try {
      const { informer, seen, registry, lines } = policies({ kubeConfig: await kubeConfigAt(api, relay.port) });
      await informer.start();
      // Cut the informer off while things change and the history is compacted past its resourceVersion.
      relay.cut();
      await setAction('compacted', 'allow');
      await create('born-in-the-gap');
      api.store.compact();
      relay.reopen();
      await waitFor('the relist', async () => { await informer.idle(); return seen.length >= 3; });
      // The relist reports in list order (by namespace and name).
      assert.deepEqual(seen, ['add compacted deny', 'add born-in-the-gap deny', 'update compacted allow (was deny)']);
      assert.equal(await metricValue(registry, 'custos_informer_relists_total', { informer: 'accesspolicies', reason: 'expired' }), 1);
      assert.equal(await metricValue(registry, 'custos_informer_relist_changes_total', { informer: 'accesspolicies', event: 'update' }), 1);
      assert.ok(lines.some((l) => l.msg === 'watch expired (410 Gone); relisting' && String(l.detail).includes('410 Expired')));
      await informer.stop();
    } finally {
      await relay.close();
    }
  });

  it('resumes from its resourceVersion after the server is stopped and restarted with the same state', async () => {
    await create('survivor', 'deny');
    const { informer, seen, lines } = policies();
    await informer.start();
    const state = api.state;
    await api.stop();
    await waitFor('a failed reconnect', () => Promise.resolve(lines.some((l) => l.msg === 'watch ended; reconnecting from the last resourceVersion' && l.reason === 'error')));
    // Written while the server is down (straight into its store): only a resumed watch replays it.
    const stored = api.store.get(GROUP, PLURAL, NAMESPACE, 'survivor');
    assert.ok(stored !== undefined);
    api.store.put(GROUP, PLURAL, { ...stored, spec: { ...(stored.spec as object), defaultAction: 'allow' } }, 'MODIFIED');
    api = await startKubeApi({ state, tokens: TOKENS, bookmarkIntervalMs: 200 });
    await waitFor('the replayed change', async () => { await informer.idle(); return seen.length >= 2; });
    await create('after-restart');
    await waitFor('a live event after the restart', async () => { await informer.idle(); return seen.length >= 3; });
    assert.deepEqual(seen, ['add survivor deny', 'update survivor allow (was deny)', 'add after-restart deny']);
    assert.equal(lists(), 0, 'resumed without a relist (the restarted server records its own requests)');
    await informer.stop();
  });

  it('keeps retrying through refused requests (401 after a credential change) and recovers', async () => {
    const { informer, seen, lines } = policies();
    await informer.start();
    const state = api.state;
    await api.stop();
    api = await startKubeApi({ state, tokens: { 'another-token': { username: 'someone-else', groups: ['system:masters'] } }, bookmarkIntervalMs: 200 });
    try {
      await waitFor('a refused watch', () => Promise.resolve(lines.some((l) => l.reason === 'error' && l.status === 401)));
    } finally {
      await api.stop();
      api = await startKubeApi({ state, tokens: TOKENS, bookmarkIntervalMs: 200 });
    }
    await create('after-401');
    await waitFor('the event after the 401s', async () => { await informer.idle(); return seen.includes('add after-401 deny'); });
    await informer.stop();
  });

  it('reconnects after the connection is reset in the middle of the watch stream', async () => {
    const relay = await startRelay(api.port);
    try {
      const viaRelay = await kubeConfigAt(api, relay.port);
      const { informer, seen, lines, registry } = policies({ kubeConfig: viaRelay });
      await informer.start();
      await waitFor('the watch', () => Promise.resolve(informer.watching));
      relay.reset();
      await create('after-reset');
      await waitFor('the event after the reset', async () => { await informer.idle(); return seen.includes('add after-reset deny'); });
      // client-node reports a reset stream as an error or as its end, depending on which of its
      // streams notices first; either way the informer reconnects from its resourceVersion.
      assert.ok(lines.some((l) => l.msg === 'watch ended; reconnecting from the last resourceVersion' && (l.reason === 'error' || l.reason === 'closed')));
      assert.equal(await metricValue(registry, 'custos_informer_restarts_total', { informer: 'accesspolicies' }), 1);
      assert.equal(await metricValue(registry, 'custos_informer_relists_total', { informer: 'accesspolicies', reason: 'expired' }), undefined);
      await informer.stop();
    } finally {
      await relay.close();
    }
  });

  it('forces a reconnect through the watchdog when the stream stalls without closing', async () => {
    const relay = await startRelay(api.port);
    try {
      const viaRelay = await kubeConfigAt(api, relay.port);
      // Bookmarks every 200 ms keep a healthy watch well inside the 1 s watchdog.
      const { informer, seen, lines } = policies({ kubeConfig: viaRelay, watchdogSeconds: 1 });
      await informer.start();
      await create('before-stall');
      await waitFor('the first event', async () => { await informer.idle(); return seen.length >= 1; });
      relay.freeze();
      await create('during-stall');
      // client-node's own inactivity timeout would take 30 s; the watchdog takes about 1 s.
      await waitFor('the event after the watchdog', async () => { await informer.idle(); return seen.includes('add during-stall deny'); }, 15_000);
      assert.ok(lines.some((l) => l.reason === 'watchdog'), 'the watchdog forced the reconnect');
      await informer.stop();
    } finally {
      await relay.close();
    }
  });

  it('repairs changes the watch never delivered on its periodic relist', async () => {
    await create('edited-silently', 'deny');
    await create('deleted-silently', 'deny');
    const { informer, seen, registry, lines } = policies({ relistSeconds: 1 });
    await informer.start();
    await informer.idle();
    const edited = api.store.get(GROUP, PLURAL, NAMESPACE, 'edited-silently');
    assert.ok(edited !== undefined);
    api.store.withoutWatchEvents(() => {
      api.store.put(GROUP, PLURAL, { ...edited, spec: { ...(edited.spec as object), defaultAction: 'allow' } }, 'MODIFIED');
      api.store.remove(GROUP, PLURAL, NAMESPACE, 'deleted-silently');
      api.store.put(GROUP, PLURAL, {
        apiVersion: `${GROUP}/${VERSION}`, kind: 'AccessPolicy', metadata: { name: 'added-silently', namespace: NAMESPACE, uid: crypto.randomUUID() }, spec: policyBody('added-silently').spec,
      }, 'ADDED');
    });
    await waitFor('the repair', async () => { await informer.idle(); return seen.length >= 5; }, 15_000);
    assert.deepEqual(seen.slice(2).sort(), ['add added-silently deny', 'delete deleted-silently', 'update edited-silently allow (was deny)']);
    for (const event of ['add', 'update', 'delete']) {
      assert.equal(await metricValue(registry, 'custos_informer_relist_changes_total', { informer: 'accesspolicies', event }), 1, event);
    }
    assert.ok(lines.some((l) => l.msg === 'relist found changes the watch had not delivered' && l.reason === 'periodic' && l.level === 40));
    await informer.stop();
  });

  it('logs and counts failing handlers, keeps calling them in order, and never leaves an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => { unhandled.push(e); };
    process.on('unhandledRejection', onUnhandled);
    try {
      const { informer, seen, registry, lines } = policies();
      const calls: string[] = [];
      informer.on('add', async (o) => {
        calls.push(o.metadata?.name ?? '');
        await new Promise((r) => setTimeout(r, 10));
        if (o.metadata?.name === 'rejects') throw new Error('handler rejected');
      });
      informer.on('add', (o) => {
        if (o.metadata?.name === 'throws') throw new Error('handler threw');
      });
      await informer.start();
      for (const name of ['rejects', 'throws', 'fine']) await create(name);
      await waitFor('all three adds', async () => { await informer.idle(); return seen.length >= 3; });
      await informer.idle();
      assert.deepEqual(calls, ['rejects', 'throws', 'fine'], 'the async handler saw every event, in order');
      assert.equal(await metricValue(registry, 'custos_informer_handler_errors_total', { informer: 'accesspolicies', event: 'add' }), 2);
      const failures = lines.filter((l) => l.msg === 'informer handler failed');
      assert.deepEqual(failures.map((l) => `${String(l.name)}: ${String(l.err)}`).sort(), ['rejects: Error: handler rejected', 'throws: Error: handler threw']);
      await informer.stop();
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('watches one namespace with a label selector (a namespaced path)', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const { logger } = capturingLogger();
    const informer = new ResilientInformer<KubernetesObject & { data?: Record<string, string> }>({
      name: 'configmaps', kubeConfig: kc, path: `/api/v1/namespaces/${NAMESPACE}/configmaps`, labelSelector: 'app.kubernetes.io/managed-by=custos',
      list: async () => core.listNamespacedConfigMap({ namespace: NAMESPACE, labelSelector: 'app.kubernetes.io/managed-by=custos' }),
      logger, registry: new Registry(), backoff: TEST_BACKOFF,
    });
    await informer.start();
    const managed = { 'app.kubernetes.io/managed-by': 'custos' };
    await core.createNamespacedConfigMap({ namespace: NAMESPACE, body: configMap('custos-policy-a', managed) });
    await core.createNamespacedConfigMap({ namespace: NAMESPACE, body: configMap('someone-elses') });
    await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('custos-policy-elsewhere', managed) });
    await waitFor('the managed ConfigMap', () => Promise.resolve(informer.get(NAMESPACE, 'custos-policy-a') !== undefined));
    await core.createNamespacedConfigMap({ namespace: NAMESPACE, body: configMap('custos-policy-b', managed) });
    await waitFor('the second managed ConfigMap', () => Promise.resolve(informer.get(NAMESPACE, 'custos-policy-b') !== undefined));
    assert.deepEqual(informer.list().map((c) => c.metadata?.name).sort(), ['custos-policy-a', 'custos-policy-b']);
    await informer.stop();
  });

  it('rejects start() when stopped before its first list succeeded', async () => {
    const relay = await startRelay(api.port);
    relay.cut();
    try {
      const { informer } = policies({ kubeConfig: await kubeConfigAt(api, relay.port) });
      const started = informer.start();
      await informer.stop();
      await assert.rejects(started, (e: unknown) => isCustosError(e, 'ERR_INFORMER_STOPPED'));
      assert.equal(informer.hasSynced, false);
    } finally {
      await relay.close();
    }
  });
});

describe('LeaderElector against the Kubernetes API double', { timeout: 120_000 }, () => {
  const LEASE = 'custos-operator';
  const OPERATOR_NS = 'custos';
  /** Short but proportionate to controller-runtime's 15/10/2. */
  const FAST = { leaseDurationSeconds: 2, renewDeadlineSeconds: 1.5, retryPeriodSeconds: 0.2 };
  let api: KubeApi;
  let kc: KubeConfig;
  let leases: CoordinationV1Api;
  const electors: LeaderElector[] = [];

  before(async () => {
    api = await startKubeApi({ tokens: TOKENS });
    kc = await kubeConfigAt(api);
    leases = kc.makeApiClient(CoordinationV1Api);
    const ns = new V1Namespace();
    ns.metadata = meta(OPERATOR_NS);
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: ns });
  });
  after(async () => {
    for (const e of electors) await e.stop();
    await api.stop();
  });
  beforeEach(async () => {
    for (const e of electors.splice(0)) await e.stop();
    await leases.deleteNamespacedLease({ name: LEASE, namespace: OPERATOR_NS }).catch(() => undefined);
  });

  /** Every leadership change, in order: `<identity> started` / `<identity> stopped`. */
  const timeline: string[] = [];

  function elector(identity: string, options: Partial<LeaderElectorOptions> = {}): { elector: LeaderElector; registry: Registry; signals: AbortSignal[]; lines: LogLine[] } {
    const registry = new Registry();
    const signals: AbortSignal[] = [];
    const { logger, lines } = capturingLogger();
    const e = new LeaderElector({
      kubeConfig: kc, namespace: OPERATOR_NS, leaseName: LEASE, identity, logger, registry, ...FAST,
      onStartedLeading: (signal) => {
        timeline.push(`${identity} started`);
        signals.push(signal);
      },
      onStoppedLeading: () => { timeline.push(`${identity} stopped`); },
      ...options,
    });
    electors.push(e);
    return { elector: e, registry, signals, lines };
  }

  async function lease(): Promise<V1Lease> {
    return leases.readNamespacedLease({ name: LEASE, namespace: OPERATOR_NS });
  }

  it('elects exactly one of two candidates and records it in the Lease (checked with kubectl)', async () => {
    timeline.length = 0;
    const a = elector('operator-a');
    const b = elector('operator-b');
    a.elector.start();
    b.elector.start();
    await waitFor('a leader', () => Promise.resolve(a.elector.isLeader || b.elector.isLeader));
    const [leader, follower] = a.elector.isLeader ? [a, b] : [b, a];
    // Several renewals later, still exactly one.
    for (let i = 0; i < 10; i += 1) {
      assert.equal(Number(a.elector.isLeader) + Number(b.elector.isLeader), 1, 'exactly one leader');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await metricValue(leader.registry, 'custos_leader', { lease: LEASE }), 1);
    assert.equal(await metricValue(follower.registry, 'custos_leader', { lease: LEASE }), 0);
    assert.equal(timeline.length, 1);

    const k = await kubectlFor(await api.kubeconfig());
    const yaml = parseYaml(await k.ok(['get', 'lease', LEASE, '-n', OPERATOR_NS, '-o', 'yaml'])) as { spec: Record<string, unknown> };
    const leaderName = timeline[0]?.split(' ')[0];
    assert.equal(yaml.spec.holderIdentity, leaderName);
    assert.equal(yaml.spec.leaseDurationSeconds, 2);
    assert.equal(yaml.spec.leaseTransitions, 0);
    assert.match(String(yaml.spec.renewTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime');
    assert.match(String(yaml.spec.acquireTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime');
    const table = await k.ok(['get', 'lease', LEASE, '-n', OPERATOR_NS]);
    assert.match(table, new RegExp(`${LEASE}\\s+${leaderName ?? ''}`));
  });

  it('elects one leader among five candidates racing for an absent Lease (409s decide the race)', async () => {
    timeline.length = 0;
    const candidates = ['a', 'b', 'c', 'd', 'e'].map((n) => elector(`operator-${n}`));
    for (const c of candidates) c.elector.start();
    await waitFor('a leader', () => Promise.resolve(candidates.some((c) => c.elector.isLeader)));
    for (let i = 0; i < 10; i += 1) {
      assert.equal(candidates.filter((c) => c.elector.isLeader).length, 1, 'exactly one leader');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(timeline.length, 1, 'leadership never changed hands');
    const spec = (await lease()).spec;
    assert.equal(`${String(spec?.holderIdentity)} started`, timeline[0]);
    assert.equal(spec?.leaseTransitions, 0);
  });

  it('hands over when the leader is cut off: it stops leading first, then the other takes over', async () => {
    timeline.length = 0;
    const relay = await startRelay(api.port);
    try {
      const a = elector('operator-a', { kubeConfig: await kubeConfigAt(api, relay.port) });
      a.elector.start();
      await waitFor('operator-a leads', () => Promise.resolve(a.elector.isLeader));
      const b = elector('operator-b');
      b.elector.start();
      relay.cut();
      await waitFor('operator-b takes over', () => Promise.resolve(b.elector.isLeader), 10_000);
      assert.equal(a.elector.isLeader, false);
      assert.equal(a.signals[0]?.aborted, true, 'the leader work was told to stop');
      assert.deepEqual(timeline, ['operator-a started', 'operator-a stopped', 'operator-b started'], 'never two leaders at once');
      assert.match(String(a.lines.find((l) => l.msg === 'stopped leading')?.reason), /renew deadline/);
      const spec = (await lease()).spec;
      assert.equal(spec?.holderIdentity, 'operator-b');
      assert.equal(spec.leaseTransitions, 1);
      assert.equal(await metricValue(a.registry, 'custos_leader', { lease: LEASE }), 0);
    } finally {
      await relay.close();
    }
  });

  it('stops leading at once when a read shows the Lease was deleted and recreated for someone else', async () => {
    timeline.length = 0;
    const a = elector('operator-a', { leaseDurationSeconds: 10, renewDeadlineSeconds: 8 });
    a.elector.start();
    await waitFor('operator-a leads', () => Promise.resolve(a.elector.isLeader));
    // Deleted and recreated for someone else in one step (through the store, so that operator-a
    // cannot slip its own create in between the two API calls).
    const now = new V1MicroTime(Date.now()).toISOString();
    api.store.remove('coordination.k8s.io', 'leases', OPERATOR_NS, LEASE);
    api.store.put('coordination.k8s.io', 'leases', {
      apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
      metadata: { name: LEASE, namespace: OPERATOR_NS, uid: crypto.randomUUID(), creationTimestamp: now.replace(/\.\d+Z$/, 'Z') },
      spec: { holderIdentity: 'intruder', leaseDurationSeconds: 60, acquireTime: now, renewTime: now, leaseTransitions: 0 },
    }, 'ADDED');
    // Well before its 8 s renew deadline: the 409 on renewal leads to a read that names the intruder.
    await waitFor('operator-a steps down', () => Promise.resolve(!a.elector.isLeader), 4000);
    assert.match(String(a.lines.find((l) => l.msg === 'stopped leading')?.reason), /held by intruder/);
    assert.deepEqual(timeline, ['operator-a started', 'operator-a stopped']);
    // It campaigns again but does not take a live Lease from its holder.
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(a.elector.isLeader, false);
    assert.equal((await lease()).spec?.holderIdentity, 'intruder');
  });

  it('stops leading when the API server goes away, and leads again when it is back', async () => {
    timeline.length = 0;
    const a = elector('operator-a');
    a.elector.start();
    await waitFor('operator-a leads', () => Promise.resolve(a.elector.isLeader));
    const state = api.state;
    await api.stop();
    await waitFor('operator-a stops leading', () => Promise.resolve(!a.elector.isLeader), 5000);
    api = await startKubeApi({ state, tokens: TOKENS });
    await waitFor('operator-a leads again', () => Promise.resolve(a.elector.isLeader), 10_000);
    assert.deepEqual(timeline, ['operator-a started', 'operator-a stopped', 'operator-a started']);
    assert.equal(a.signals[0]?.aborted, true);
    assert.equal(a.signals[1]?.aborted, false);
    // The Lease still named it, so this was a renewal, not a transition.
    assert.equal((await lease()).spec?.leaseTransitions, 0);
  });

  it('releases the Lease on stop() so the successor need not wait for it to expire', async () => {
    timeline.length = 0;
    // A 60 s lease: without the release, operator-b would wait a minute.
    const slow = { leaseDurationSeconds: 60, renewDeadlineSeconds: 10, retryPeriodSeconds: 0.2 };
    const a = elector('operator-a', slow);
    a.elector.start();
    await waitFor('operator-a leads', () => Promise.resolve(a.elector.isLeader));
    const b = elector('operator-b', slow);
    b.elector.start();
    await a.elector.stop();
    assert.equal(a.signals[0]?.aborted, true);
    assert.equal((await lease()).spec?.holderIdentity === 'operator-a', false, 'released before stop() returned');
    await waitFor('operator-b takes over', () => Promise.resolve(b.elector.isLeader), 5000);
    assert.deepEqual(timeline, ['operator-a started', 'operator-a stopped', 'operator-b started']);
    const spec = (await lease()).spec;
    assert.equal(spec?.holderIdentity, 'operator-b');
    assert.equal(spec.leaseTransitions, 1);
  });

  it('refuses timings under which two leaders could overlap', () => {
    const base = { kubeConfig: kc, namespace: OPERATOR_NS, leaseName: LEASE, identity: 'x', logger: pino({ level: 'silent' }), registry: new Registry(), onStartedLeading: () => undefined };
    for (const bad of [
      { leaseDurationSeconds: 10, renewDeadlineSeconds: 10 },
      { leaseDurationSeconds: 1.5, renewDeadlineSeconds: 1 },
      { renewDeadlineSeconds: 2, retryPeriodSeconds: 2 },
      { retryPeriodSeconds: 0 },
      { identity: '' },
    ]) {
      assert.throws(() => new LeaderElector({ ...base, ...bad }), (e: unknown) => isCustosError(e, 'ERR_LEADER_ELECTION_CONFIG'), JSON.stringify(bad));
    }
  });

  it('is held to the API server\'s MicroTime decoding (a millisecond Date is refused)', async () => {
    const spec = new V1LeaseSpec();
    spec.holderIdentity = 'sloppy';
    // What a careless client sends: a plain Date, serialized with milliseconds.
    Object.assign(spec, { renewTime: new Date() });
    const body = new V1Lease();
    body.metadata = new V1ObjectMeta();
    body.metadata.name = 'sloppy';
    body.spec = spec;
    await assert.rejects(leases.createNamespacedLease({ namespace: OPERATOR_NS, body }), (e: unknown) => {
      assert.match(describeKubeError(e), /^HTTP 400 BadRequest: Lease in version "v1" cannot be handled as a Lease: parsing time "[^"]+\.\d{3}Z" as "2006-01-02T15:04:05.000000Z07:00"/);
      return true;
    });
  });
});

describe('loadKubeConfig', () => {
  let api: KubeApi;
  let dir: string;

  before(async () => {
    api = await startKubeApi({ tokens: TOKENS });
    dir = await mkdtemp(join(tmpdir(), 'custos-kube-config-'));
  });
  after(async () => {
    await api.stop();
  });

  async function namespaces(kubeConfig: KubeConfig): Promise<string[]> {
    const list = await kubeConfig.makeApiClient(CoreV1Api).listNamespace();
    return list.items.map((n) => n.metadata?.name ?? '');
  }

  async function serviceAccountDir(): Promise<string> {
    const sa = join(await mkdtemp(join(dir, 'sa-')), 'serviceaccount');
    await mkdir(sa, { recursive: true });
    await writeFile(join(sa, 'token'), TOKEN);
    await writeFile(join(sa, 'ca.crt'), api.caCert);
    await writeFile(join(sa, 'namespace'), 'custos');
    return sa;
  }

  it('uses the service account in a pod (KUBERNETES_SERVICE_HOST set)', async () => {
    const loaded = loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(api.port) }, serviceAccountDir: await serviceAccountDir() });
    assert.equal(loaded.origin, 'in-cluster');
    assert.equal(loaded.server, api.url);
    assert.equal(loaded.namespace, 'custos');
    assert.ok((await namespaces(loaded.kubeConfig)).includes('kube-system'));
  });

  it('uses KUBECONFIG, and an explicit path over everything else', async () => {
    const kubeconfig = await api.kubeconfig();
    const env = { KUBECONFIG: kubeconfig, KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' };
    const fromEnv = loadKubeConfig({ env, serviceAccountDir: join(dir, 'absent') });
    assert.equal(fromEnv.origin, 'kubeconfig');
    assert.ok((await namespaces(fromEnv.kubeConfig)).includes('default'));
    const explicit = loadKubeConfig({ kubeconfigPath: kubeconfig, env: { KUBECONFIG: join(dir, 'absent'), KUBERNETES_SERVICE_HOST: '10.0.0.1' } });
    assert.equal(explicit.server, api.url);
  });

  const failures: Array<{ name: string; source: () => Promise<Parameters<typeof loadKubeConfig>[0]>; message: RegExp }> = [
    { name: 'neither a cluster nor a kubeconfig', source: () => Promise.resolve({ env: {} }), message: /no Kubernetes credentials: not running in a cluster \(KUBERNETES_SERVICE_HOST is not set\) and no kubeconfig given/ },
    { name: 'a pod without its token', source: () => Promise.resolve({ env: { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: join(dir, 'absent') }), message: /token does not exist: is automountServiceAccountToken false/ },
    { name: 'a pod without KUBERNETES_SERVICE_PORT', source: async () => ({ env: { KUBERNETES_SERVICE_HOST: '10.0.0.1' }, serviceAccountDir: await serviceAccountDir() }), message: /KUBERNETES_SERVICE_PORT is not/ },
    { name: 'a missing kubeconfig file', source: () => Promise.resolve({ kubeconfigPath: join(dir, 'missing.yaml') }), message: /kubeconfig .*missing\.yaml does not exist/ },
    { name: 'a KUBECONFIG that is not YAML', source: async () => { const p = join(dir, 'garbage'); await writeFile(p, 'clusters: ['); return { env: { KUBECONFIG: p } }; }, message: /KUBECONFIG .*garbage cannot be read/ },
    { name: 'a kubeconfig without a current context', source: async () => { const p = join(dir, 'empty'); await writeFile(p, 'apiVersion: v1\nkind: Config\nclusters: []\n'); return { kubeconfigPath: p }; }, message: /kubeconfig .*empty has no current context with a cluster/ },
  ];
  for (const f of failures) {
    it(`explains ${f.name}`, async () => {
      const source = await f.source();
      assert.throws(() => loadKubeConfig(source), (e: unknown) => isCustosError(e, 'ERR_KUBECONFIG') && f.message.test(e.message));
    });
  }
});
