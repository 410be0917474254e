// List-then-watch of one resource across the cluster, as client-go's reflector runs it: a cache
// keyed by namespace/name, a resumed watch after the stream ends, and a fresh list (with the
// differences delivered as events) after 410 Gone. The kubelet watches its pods and the
// ConfigMaps and Secrets their volumes use this way.
import { KubeRequestError, type KubeClient, type KubeObjectLike, type WatchEvent } from './kube-client.ts';

export type InformerEvent = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface Informer {
  get(namespace: string, name: string): KubeObjectLike | undefined;
  list(): KubeObjectLike[];
  /** Resolves once the first list is in the cache. */
  readonly synced: Promise<void>;
  stop(): void;
}

const keyOf = (o: KubeObjectLike): string => `${o.metadata.namespace ?? ''}/${o.metadata.name ?? ''}`;

/** `path` is the collection, e.g. /api/v1/pods; `keep` filters what enters the cache. */
export function startInformer(
  client: KubeClient,
  path: string,
  keep: (o: KubeObjectLike) => boolean,
  onEvent: (type: InformerEvent, object: KubeObjectLike, previous: KubeObjectLike | undefined) => void,
  onError: (e: unknown) => void,
): Informer {
  const cache = new Map<string, KubeObjectLike>();
  const abort = new AbortController();
  let markSynced: () => void = () => undefined;
  const synced = new Promise<void>((resolve) => { markSynced = resolve; });

  const apply = (type: InformerEvent, o: KubeObjectLike): void => {
    const key = keyOf(o);
    const previous = cache.get(key);
    if (type === 'DELETED') {
      if (previous === undefined) return;
      cache.delete(key);
      onEvent('DELETED', o, previous);
      return;
    }
    if (!keep(o)) {
      if (previous !== undefined) {
        cache.delete(key);
        onEvent('DELETED', o, previous);
      }
      return;
    }
    cache.set(key, o);
    onEvent(previous === undefined ? 'ADDED' : 'MODIFIED', o, previous);
  };

  const relist = async (): Promise<string> => {
    const list = await client.json<{ metadata: { resourceVersion: string }; items: KubeObjectLike[] }>('GET', path);
    const seen = new Set<string>();
    for (const item of list.items) {
      seen.add(keyOf(item));
      const previous = cache.get(keyOf(item));
      if (previous?.metadata.resourceVersion !== item.metadata.resourceVersion) apply('MODIFIED', item);
    }
    for (const [key, o] of [...cache]) if (!seen.has(key)) apply('DELETED', o);
    return list.metadata.resourceVersion;
  };

  const stopped = (): boolean => abort.signal.aborted;
  const loop = async (): Promise<void> => {
    let resourceVersion = '';
    while (!stopped()) {
      try {
        if (resourceVersion === '') {
          resourceVersion = await relist();
          markSynced();
        }
        const stream = { gone: false };
        await client.watch(`${path}?watch=true&allowWatchBookmarks=true&resourceVersion=${resourceVersion}`, (e: WatchEvent) => {
          if (e.type === 'ERROR') {
            stream.gone = true;
            return;
          }
          if (e.object.metadata.resourceVersion !== undefined) resourceVersion = e.object.metadata.resourceVersion;
          if (e.type !== 'BOOKMARK') apply(e.type, e.object);
        }, abort.signal);
        if (stream.gone) resourceVersion = '';
      } catch (e: unknown) {
        if (stopped()) return;
        if (e instanceof KubeRequestError && e.code === 410) resourceVersion = '';
        else onError(e);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  };
  void loop();

  return {
    get: (namespace, name) => cache.get(`${namespace}/${name}`),
    list: () => [...cache.values()],
    synced,
    stop: () => { abort.abort(); },
  };
}
