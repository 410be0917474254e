// One watch stream (?watch=true): newline-delimited JSON events, replayed from the store's history
// after ?resourceVersion= (410 Expired as an ERROR event when compacted, as the watch cache
// answers), initial ADDED events for resourceVersion ""/"0" or ?sendInitialEvents=true (then a
// BOOKMARK annotated k8s.io/initial-events-end), periodic BOOKMARKs with ?allowWatchBookmarks=true,
// selector transitions (an object leaving a selector is DELETED, entering it is ADDED), and
// ?timeoutSeconds=.
import type { ServerResponse } from 'node:http';
import { badRequest, expired } from './errors.ts';
import type { ResourceType } from './resources.ts';
import type { ObjectStore, StoreEvent } from './store.ts';
import { apiVersionOf, type KubeObject } from './types.ts';

export interface WatchRequest {
  readonly type: ResourceType;
  /** undefined: every namespace. */
  readonly namespace: string | undefined;
  readonly query: URLSearchParams;
  readonly matches: (o: KubeObject) => boolean;
  /** Renders an object for the event (a Table row for kubectl get -w). */
  readonly render: (o: KubeObject, first: boolean) => unknown;
  readonly bookmarkIntervalMs: number;
}

export interface OpenWatch {
  close(): void;
}

export function serveWatch(store: ObjectStore, request: WatchRequest, res: ServerResponse, onClose: () => void): OpenWatch {
  const { type, namespace, query } = request;
  const rvParam = query.get('resourceVersion') ?? '';
  if (rvParam !== '' && !/^\d+$/.test(rvParam)) throw badRequest(`resourceVersion: Invalid value: "${rvParam}": must be a non-negative integer`);
  const bookmarks = query.get('allowWatchBookmarks') === 'true' || query.get('allowWatchBookmarks') === '1';
  const sendInitial = query.get('sendInitialEvents') === 'true';
  const timeoutSeconds = Number(query.get('timeoutSeconds') ?? '0');

  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' });
  res.flushHeaders();
  let first = true;
  let closed = false;
  const write = (eventType: string, object: unknown): void => {
    if (closed) return;
    res.write(`${JSON.stringify({ type: eventType, object })}\n`);
  };
  const send = (eventType: string, o: KubeObject): void => {
    o.apiVersion = apiVersionOf(type.group, type.version);
    o.kind = type.kind;
    write(eventType, request.render(o, first));
    first = false;
  };
  const bookmark = (extra: Record<string, string> = {}): void => {
    write('BOOKMARK', {
      kind: type.kind, apiVersion: apiVersionOf(type.group, type.version),
      metadata: { resourceVersion: String(store.revision), ...(Object.keys(extra).length > 0 ? { annotations: extra } : {}) },
    });
  };
  const inScope = (e: StoreEvent): boolean => e.group === type.group && e.resource === type.resource && (namespace === undefined || e.namespace === namespace);
  const keyOf = (o: KubeObject): string => `${o.metadata.namespace ?? ''}/${o.metadata.name ?? ''}`;
  const visible = new Set<string>();
  const deliver = (e: StoreEvent): void => {
    if (!inScope(e)) return;
    const key = keyOf(e.object);
    const matches = request.matches(e.object);
    if (e.type === 'DELETED') {
      if (visible.delete(key) || matches) send('DELETED', structuredClone(e.object));
    } else if (matches) {
      send(visible.has(key) ? e.type : 'ADDED', structuredClone(e.object));
      visible.add(key);
    } else if (visible.delete(key)) send('DELETED', structuredClone(e.object));
  };

  // Subscribe first and queue, so nothing written between the snapshot and the replay is lost.
  const queued: StoreEvent[] = [];
  let live = false;
  let lastSent = 0;
  const unsubscribe = store.subscribe((e) => {
    if (!live) queued.push(e);
    else if (e.resourceVersion > lastSent) {
      lastSent = e.resourceVersion;
      deliver(e);
    }
  });

  const current = store.list(type.group, type.resource, namespace).filter(request.matches);
  if (rvParam === '' || rvParam === '0' || sendInitial) {
    for (const o of current) {
      visible.add(keyOf(o));
      send('ADDED', o);
    }
    lastSent = store.revision;
    if (sendInitial && bookmarks) bookmark({ 'k8s.io/initial-events-end': 'true' });
  } else {
    const rv = Number(rvParam);
    const changes = store.changesSince(rv);
    if (changes === undefined) {
      write('ERROR', expired(`too old resource version: ${rv} (${store.compactedRevision + 1})`).status);
      closed = true;
      unsubscribe();
      res.end();
      onClose();
      return { close: () => undefined };
    }
    // Objects that existed at rv: the current ones not created since.
    const createdSince = new Set(changes.filter((c) => c.type === 'ADDED').map((c) => keyOf(c.object)));
    for (const o of current) if (!createdSince.has(keyOf(o))) visible.add(keyOf(o));
    for (const e of changes) deliver(e);
    lastSent = store.revision;
  }
  live = true;
  for (const e of queued) {
    if (e.resourceVersion > lastSent) {
      lastSent = e.resourceVersion;
      deliver(e);
    }
  }

  const timers: NodeJS.Timeout[] = [];
  if (bookmarks) timers.push(setInterval(() => { bookmark(); }, request.bookmarkIntervalMs));
  const close = (): void => {
    if (closed) return;
    closed = true;
    for (const t of timers) clearInterval(t);
    unsubscribe();
    res.end();
    onClose();
  };
  if (timeoutSeconds > 0) timers.push(setTimeout(close, timeoutSeconds * 1000));
  res.on('close', close);
  return { close };
}
