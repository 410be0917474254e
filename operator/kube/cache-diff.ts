// The informer's cache as pure functions: objects keyed by namespace/name, the change one watch
// event makes, and the changes a full list makes against what the cache holds (how a relist
// turns into synthetic add/update/delete events, so an event the watch missed is repaired).
// Objects are compared by resourceVersion only: the API server changes it on every write, and
// comparing contents would call two serializations of one version different.

/** The part of a Kubernetes object the cache needs (client-node's KubernetesObject fits). */
export interface CachedObject {
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly resourceVersion?: string } | undefined;
}

export type CacheChange<T> =
  | { readonly type: 'add'; readonly object: T }
  | { readonly type: 'update'; readonly object: T; readonly previous: T }
  | { readonly type: 'delete'; readonly object: T };

/** `namespace/name` (`/name` for cluster-scoped objects); undefined for an object without a name. */
export function cacheKey(object: CachedObject): string | undefined {
  const name = object.metadata?.name;
  if (name === undefined || name === '') return undefined;
  return `${object.metadata?.namespace ?? ''}/${name}`;
}

export function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function sameVersion(a: CachedObject, b: CachedObject): boolean {
  const rv = a.metadata?.resourceVersion;
  return rv !== undefined && rv !== '' && rv === b.metadata?.resourceVersion;
}

/** Stores `object` (an ADDED or MODIFIED event); the change to report, or undefined for a version already held. */
export function upsert<T extends CachedObject>(cache: Map<string, T>, object: T): CacheChange<T> | undefined {
  const key = cacheKey(object);
  if (key === undefined) return undefined;
  const previous = cache.get(key);
  if (previous !== undefined && sameVersion(previous, object)) return undefined;
  cache.set(key, object);
  return previous === undefined ? { type: 'add', object } : { type: 'update', object, previous };
}

/** Drops `object` (a DELETED event); the change to report, or undefined when it was not cached. */
export function remove<T extends CachedObject>(cache: Map<string, T>, object: T): CacheChange<T> | undefined {
  const key = cacheKey(object);
  if (key === undefined || !cache.delete(key)) return undefined;
  return { type: 'delete', object };
}

/**
 * Replaces the cache's contents with a full list and returns what changed: adds and updates in
 * list order, then deletes (with the last version the cache held, since a list cannot say what a
 * deleted object finally looked like).
 */
export function replaceAll<T extends CachedObject>(cache: Map<string, T>, listed: readonly T[]): CacheChange<T>[] {
  const changes: CacheChange<T>[] = [];
  const seen = new Set<string>();
  for (const object of listed) {
    const key = cacheKey(object);
    if (key === undefined) continue;
    seen.add(key);
    const change = upsert(cache, object);
    if (change !== undefined) changes.push(change);
  }
  for (const [key, object] of [...cache]) {
    if (seen.has(key)) continue;
    cache.delete(key);
    changes.push({ type: 'delete', object });
  }
  return changes;
}
