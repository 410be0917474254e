// Watch semantics of the Kubernetes API double, driven by @kubernetes/client-node (what the
// operator uses): bookmarks, 410 Gone for a compacted resourceVersion and the informer's relist,
// resumption after dropped watches and after a server restart on the same port.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api, KubeConfig, makeInformer, V1ConfigMap, V1ObjectMeta, Watch } from '@kubernetes/client-node';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';
import { waitFor } from './harness/processes.ts';

interface WatchEvent { readonly type: string; readonly object: { metadata?: { name?: string; resourceVersion?: string; annotations?: Record<string, string> }; code?: number; reason?: string } }

async function kubeConfigFor(api: KubeApi): Promise<KubeConfig> {
  const kc = new KubeConfig();
  kc.loadFromFile(await api.kubeconfig());
  return kc;
}

function configMap(name: string, value: string | undefined, labels: Record<string, string> = { app: 'watch-test' }): V1ConfigMap {
  const cm = new V1ConfigMap();
  cm.metadata = new V1ObjectMeta();
  cm.metadata.name = name;
  cm.metadata.labels = labels;
  if (value !== undefined) cm.data = { value };
  return cm;
}

/** Collects the events of one raw watch until `stop()`. */
async function collect(kc: KubeConfig, path: string, query: Record<string, string | boolean>): Promise<{ events: WatchEvent[]; done: Promise<unknown>; stop: () => void }> {
  const events: WatchEvent[] = [];
  let resolveDone: (e: unknown) => void = () => undefined;
  const done = new Promise<unknown>((r) => { resolveDone = r; });
  const request = await new Watch(kc).watch(path, query, (type: string, object: WatchEvent['object']) => { events.push({ type, object }); }, (e: unknown) => { resolveDone(e); });
  return { events, done, stop: () => { request.abort(); } };
}

describe('Kubernetes API double: watches with @kubernetes/client-node', () => {
  let api: KubeApi;
  let kc: KubeConfig;
  let core: CoreV1Api;

  before(async () => {
    api = await startKubeApi({ tokens: { 'watch-token': { username: 'operator', groups: ['custos'] } }, bookmarkIntervalMs: 100, historySize: 50 });
    kc = await kubeConfigFor(api);
    core = kc.makeApiClient(CoreV1Api);
  });
  after(async () => {
    await api.stop();
  });

  it('sends BOOKMARK events carrying the current resourceVersion when asked', async () => {
    const list = await core.listNamespacedConfigMap({ namespace: 'default' });
    const w = await collect(kc, '/api/v1/namespaces/default/configmaps', { allowWatchBookmarks: true, resourceVersion: list.metadata?.resourceVersion ?? '' });
    await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('bookmarked', 'a') });
    await waitFor('a bookmark after the change', () => Promise.resolve(w.events.some((e) => e.type === 'BOOKMARK' && Number(e.object.metadata?.resourceVersion) >= Number(list.metadata?.resourceVersion) + 1)));
    w.stop();
    assert.deepEqual(w.events.filter((e) => e.type !== 'BOOKMARK').map((e) => [e.type, e.object.metadata?.name]), [['ADDED', 'bookmarked']]);
    const bookmark = w.events.find((e) => e.type === 'BOOKMARK');
    assert.deepEqual(Object.keys(bookmark?.object ?? {}).sort(), ['apiVersion', 'kind', 'metadata']);
  });

  it('does not send bookmarks unless asked, and replays changes after a resourceVersion', async () => {
    const start = (await core.listNamespacedConfigMap({ namespace: 'default' })).metadata?.resourceVersion ?? '';
    await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('replayed', '1') });
    await core.patchNamespacedConfigMap({ namespace: 'default', name: 'replayed', body: [{ op: 'replace', path: '/data/value', value: '2' }] });
    await core.deleteNamespacedConfigMap({ namespace: 'default', name: 'replayed' });
    const w = await collect(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: start });
    await waitFor('the replay', () => Promise.resolve(w.events.length >= 3));
    await new Promise((r) => setTimeout(r, 300));
    w.stop();
    assert.deepEqual(w.events.map((e) => [e.type, e.object.metadata?.name]), [['ADDED', 'replayed'], ['MODIFIED', 'replayed'], ['DELETED', 'replayed']]);
  });

  it('answers a compacted resourceVersion with a 410 Expired ERROR event', async () => {
    const old = (await core.listNamespacedConfigMap({ namespace: 'default' })).metadata?.resourceVersion ?? '';
    await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('compacted', '1') });
    api.store.compact();
    const w = await collect(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: old });
    await w.done;
    assert.deepEqual(w.events, [{
      type: 'ERROR',
      object: {
        kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
        message: `too old resource version: ${old} (${api.store.compactedRevision + 1})`, reason: 'Expired', code: 410,
      },
    }]);
  });

  it('lets an informer relist after 410 and resume after dropped watches and a server restart', async () => {
    const informer = makeInformer(kc, '/api/v1/namespaces/default/configmaps', () => core.listNamespacedConfigMap({ namespace: 'default', labelSelector: 'app=watch-test' }), 'app=watch-test');
    const seen: string[] = [];
    let errors = 0;
    let running = true;
    informer.on('add', (o) => { seen.push(`add ${o.metadata?.name ?? ''}`); });
    informer.on('update', (o) => { seen.push(`update ${o.metadata?.name ?? ''} ${o.data?.value ?? ''}`); });
    informer.on('delete', (o) => { seen.push(`delete ${o.metadata?.name ?? ''}`); });
    // client-node stops on any error but 410 (reference/kubernetes.md §12): restart it, as the operator's wrapper does.
    informer.on('error', () => {
      errors += 1;
      setTimeout(() => { if (running) void informer.start(); }, 100);
    });
    await informer.start();
    try {
      await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('first', '1') });
      await waitFor('first', () => Promise.resolve(informer.get('first', 'default') !== undefined));

      // Dropped watch + compacted history: the resume answers 410, the informer relists.
      const lists = (): number => api.requests.filter((r) => r.path === '/api/v1/namespaces/default/configmaps' && r.method === 'GET' && !r.query.includes('watch=')).length;
      const listsBefore = lists();
      api.dropWatches();
      await core.patchNamespacedConfigMap({ namespace: 'default', name: 'first', body: [{ op: 'replace', path: '/data/value', value: '2' }] });
      api.store.compact();
      await waitFor('the relist after 410', () => Promise.resolve(informer.get('first', 'default')?.data?.value === '2'), 10_000);
      assert.equal(lists(), listsBefore + 1, 'the informer relisted once');

      // Restart on the same port with the same store, CA and keys.
      const state = api.state;
      await api.stop();
      await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('unreachable', 'x') }).then(
        () => assert.fail('the stopped server answered'),
        () => undefined,
      );
      api = await startKubeApi({ state, tokens: api.tokens, bookmarkIntervalMs: 100 });
      await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('after-restart', '3') });
      await core.deleteNamespacedConfigMap({ namespace: 'default', name: 'first' });
      await waitFor('events after the restart', () => Promise.resolve(informer.get('after-restart', 'default') !== undefined && informer.get('first', 'default') === undefined), 15_000);
      assert.ok(seen.includes('add first'));
      assert.ok(seen.includes('update first 2'));
      assert.ok(seen.includes('add after-restart'));
      assert.ok(seen.includes('delete first'));
      assert.ok(errors <= 5, `the informer needed ${errors} restarts`);
    } finally {
      running = false;
      await informer.stop();
    }
  });

  it('reports objects entering and leaving a label selector as ADDED and DELETED', async () => {
    const w = await collect(kc, '/api/v1/namespaces/default/configmaps', { labelSelector: 'tier=gold' });
    await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('mover', undefined, { tier: 'silver' }) });
    const relabel = (tier: string): Array<Record<string, string>> => [{ op: 'replace', path: '/metadata/labels/tier', value: tier }];
    await core.patchNamespacedConfigMap({ namespace: 'default', name: 'mover', body: relabel('gold') });
    await core.patchNamespacedConfigMap({ namespace: 'default', name: 'mover', body: [{ op: 'add', path: '/data', value: { a: 'b' } }] });
    await core.patchNamespacedConfigMap({ namespace: 'default', name: 'mover', body: relabel('bronze') });
    await waitFor('the selector transitions', () => Promise.resolve(w.events.length >= 3));
    w.stop();
    assert.deepEqual(w.events.map((e) => e.type), ['ADDED', 'MODIFIED', 'DELETED']);
  });
});
