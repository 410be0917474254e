// The garbage collector of kube-controller-manager, as clients see it: when an object is deleted,
// every object whose ownerReferences all point at objects that no longer exist is deleted too, in
// the background (a moment after the owner's DELETE returns), cascading. `kubectl delete
// --cascade=orphan` (propagationPolicy Orphan) instead removes the owner from its dependents'
// ownerReferences, so they stay. Foreground deletion is not modelled.
import type { ObjectStore, StoreEvent } from './store.ts';
import { isObject } from './types.ts';

function ownerUids(object: { metadata: { ownerReferences?: unknown[] } }): string[] {
  return (object.metadata.ownerReferences ?? []).filter(isObject).map((r) => r.uid).filter((u): u is string => typeof u === 'string');
}

/** Removes `ownerUid` from every dependent's ownerReferences (propagationPolicy Orphan). */
export function orphanDependents(store: ObjectStore, ownerUid: string): void {
  for (const { group, resource, object } of store.entries()) {
    const refs = (object.metadata.ownerReferences ?? []).filter(isObject);
    if (!refs.some((r) => r.uid === ownerUid)) continue;
    store.setOwnerReferences(group, resource, object, refs.filter((r) => r.uid !== ownerUid));
  }
}

/** Starts collecting; returns the function that stops it (the server's stop). */
export function startGarbageCollector(store: ObjectStore): () => void {
  let pending: NodeJS.Immediate | undefined;
  const collect = (): void => {
    pending = undefined;
    const live = new Set(store.entries().map((e) => e.object.metadata.uid).filter((u): u is string => typeof u === 'string'));
    for (const { group, resource, object } of store.entries()) {
      const owners = ownerUids(object);
      if (owners.length > 0 && owners.every((uid) => !live.has(uid))) {
        store.remove(group, resource, object.metadata.namespace ?? '', object.metadata.name ?? '');
      }
    }
  };
  const onEvent = (event: StoreEvent): void => {
    // Removals emit DELETED events of their own, so cascades are collected in later rounds.
    if (event.type === 'DELETED' && pending === undefined) pending = setImmediate(collect);
  };
  const unsubscribe = store.subscribe(onEvent);
  return () => {
    unsubscribe();
    if (pending !== undefined) clearImmediate(pending);
  };
}
