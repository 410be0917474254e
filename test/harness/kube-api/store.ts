// The double's etcd: objects by (group, resource, namespace, name), one monotonic resourceVersion
// counter shared by every write (as etcd's revision is), and a bounded history of changes that
// watches replay from. A resourceVersion older than the history answers 410 Expired, as a
// compacted etcd does. The store outlives a server, so a restarted server keeps its data.
import { deepClone, type JsonObject, type KubeObject } from './types.ts';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  readonly type: WatchEventType;
  readonly group: string;
  readonly resource: string;
  readonly namespace: string;
  readonly object: KubeObject;
  readonly resourceVersion: number;
}

export type StoreListener = (event: StoreEvent) => void;

export interface ObjectStoreOptions {
  /** Changes kept for watches to resume from (default 1000). */
  readonly historySize?: number;
}

function keyOf(group: string, resource: string, namespace: string, name: string): string {
  return `${group}\u0000${resource}\u0000${namespace}\u0000${name}`;
}

export class ObjectStore {
  readonly historySize: number;
  #objects = new Map<string, KubeObject>();
  #history: StoreEvent[] = [];
  #revision = 0;
  /** Every change with a resourceVersion above this is in the history. */
  #compacted = 0;
  #listeners = new Set<StoreListener>();
  #unwatched = false;

  constructor(options: ObjectStoreOptions = {}) {
    this.historySize = options.historySize ?? 1000;
  }

  /** The newest resourceVersion (what a list returns as its metadata.resourceVersion). */
  get revision(): number {
    return this.#revision;
  }

  get compactedRevision(): number {
    return this.#compacted;
  }

  get(group: string, resource: string, namespace: string, name: string): KubeObject | undefined {
    const found = this.#objects.get(keyOf(group, resource, namespace, name));
    return found === undefined ? undefined : deepClone(found);
  }

  /** Every stored object with its group and resource (for controllers that look across kinds). */
  entries(): Array<{ readonly group: string; readonly resource: string; readonly object: KubeObject }> {
    return [...this.#objects.entries()].map(([key, object]) => {
      const [group = '', resource = ''] = key.split('\u0000');
      return { group, resource, object: deepClone(object) };
    });
  }

  /** Replaces a stored object's metadata.ownerReferences (the garbage collector orphaning it). */
  setOwnerReferences(group: string, resource: string, object: KubeObject, ownerReferences: readonly JsonObject[]): void {
    const updated = deepClone(object);
    if (ownerReferences.length === 0) delete updated.metadata.ownerReferences;
    else updated.metadata.ownerReferences = deepClone([...ownerReferences]);
    this.put(group, resource, updated, 'MODIFIED');
  }

  /** Objects of a resource, in one namespace or (undefined) all, sorted by namespace and name. */
  list(group: string, resource: string, namespace?: string): KubeObject[] {
    const prefix = namespace === undefined ? keyOf(group, resource, '', '').slice(0, -1) : keyOf(group, resource, namespace, '');
    return [...this.#objects.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => deepClone(o));
  }

  /** Stores `object` with the next resourceVersion and records the change; returns the stored copy. */
  put(group: string, resource: string, object: KubeObject, type: 'ADDED' | 'MODIFIED'): KubeObject {
    const stored = deepClone(object);
    this.#revision += 1;
    stored.metadata.resourceVersion = String(this.#revision);
    this.#objects.set(keyOf(group, resource, stored.metadata.namespace ?? '', stored.metadata.name ?? ''), stored);
    this.#record(group, resource, stored, type);
    return deepClone(stored);
  }

  /** Removes an object; the DELETED event carries a new resourceVersion, as etcd's delete revision. */
  remove(group: string, resource: string, namespace: string, name: string): KubeObject | undefined {
    const key = keyOf(group, resource, namespace, name);
    const existing = this.#objects.get(key);
    if (existing === undefined) return undefined;
    this.#objects.delete(key);
    this.#revision += 1;
    const gone = deepClone(existing);
    gone.metadata.resourceVersion = String(this.#revision);
    this.#record(group, resource, gone, 'DELETED');
    return deepClone(gone);
  }

  /**
   * Test fault: the writes `change` makes are stored (new resourceVersions, seen by get and list)
   * but no watch ever delivers them, live or replayed, as when an informer's watch silently lost
   * events (defenseunicorns/pepr#745); only a relist can find them.
   */
  withoutWatchEvents<R>(change: () => R): R {
    this.#unwatched = true;
    try {
      return change();
    } finally {
      this.#unwatched = false;
    }
  }

  #record(group: string, resource: string, object: KubeObject, type: WatchEventType): void {
    if (this.#unwatched) return;
    const event: StoreEvent = { type, group, resource, namespace: object.metadata.namespace ?? '', object: deepClone(object), resourceVersion: this.#revision };
    this.#history.push(event);
    while (this.#history.length > this.historySize) {
      const dropped = this.#history.shift();
      if (dropped !== undefined) this.#compacted = dropped.resourceVersion;
    }
    for (const listener of [...this.#listeners]) listener(event);
  }

  /**
   * Changes after `resourceVersion`, oldest first; `undefined` when that version is compacted
   * away (the caller answers 410 Expired).
   */
  changesSince(resourceVersion: number): StoreEvent[] | undefined {
    if (resourceVersion < this.#compacted) return undefined;
    return this.#history.filter((e) => e.resourceVersion > resourceVersion);
  }

  /** Forgets the history (as an etcd compaction): every older resourceVersion now answers 410. */
  compact(): void {
    this.#history = [];
    this.#compacted = this.#revision;
  }

  subscribe(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => { this.#listeners.delete(listener); };
  }
}
