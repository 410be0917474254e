// ResilientInformer: a list-then-watch cache of one resource that does not die (reference/
// kubernetes.md §12). client-node's ListWatch (makeInformer) emits `error` and stops for good on
// any error but 410, never asks for bookmarks, has no watchdog, no periodic relist that repairs
// missed events, calls handlers synchronously (a rejected async handler becomes an unhandled
// rejection) and gives update handlers no previous version. Wrapping it would mean restarting
// it from its error handler while it clears and refills its cache, so this informer is built
// directly on client-node's Watch plus the caller's list call:
//
//   list ─► replace the cache (synthetic add/update/delete) ─► watch from the list's
//   resourceVersion with allowWatchBookmarks=true ─► every event and bookmark advances the RV
//
//   410 Gone (HTTP status or ERROR event)  ─► backoff, relist
//   other error, or the stream ends        ─► backoff, watch again from the last RV
//   client-node's inactivity timeout       ─► watch again from the last RV at once
//   watchdog: no event for watchdogSeconds ─► watch again from the last RV at once
//   periodic relist (jittered)             ─► relist, diffed against the cache, so an event a
//                                             watch silently missed still reaches the handlers
//
// Handlers run in event order per handler, each on its own promise chain, so a slow or failing
// handler never blocks the watch, the cache or the other handlers; a throw or rejection is logged
// and counted (custos_informer_handler_errors_total).
import { Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { CustosError } from '../../lib/errors.ts';
import { Backoff, type BackoffOptions } from './backoff.ts';
import { keyOf, remove, replaceAll, upsert, type CacheChange } from './cache-diff.ts';
import { informerMetrics, type InformerEventType, type InformerMetrics, type RelistReason } from './informer-metrics.ts';
import { describeKubeError } from './kube-errors.ts';
import { classifyErrorEvent, classifyWatchDone, needsBackoff, type WatchEnd } from './watch-end.ts';

export type { InformerEventType } from './informer-metrics.ts';

export interface InformerHandlers<T> {
  add: (object: T) => void | Promise<void>;
  update: (object: T, previous: T) => void | Promise<void>;
  delete: (object: T) => void | Promise<void>;
}

export interface ResilientInformerOptions<T extends KubernetesObject> {
  /** Names the informer in logs and in the `informer` metric label (e.g. `accesspolicies`). */
  readonly name: string;
  readonly kubeConfig: KubeConfig;
  /**
   * The collection to watch: cluster-wide (`/apis/custos.io/v1alpha1/accesspolicies`) or one
   * namespace (`/api/v1/namespaces/custos/configmaps`).
   */
  readonly path: string;
  /**
   * Lists the same collection (same namespace and selectors). Typed client-node list calls return
   * deserialized objects (Date timestamps) while watch events are wire JSON; CustomObjectsApi
   * returns wire JSON for both. The informer itself reads only metadata.
   */
  readonly list: () => Promise<KubernetesListObject<T>>;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /** Force a reconnect after this long without an event or bookmark (default 300, as Pepr's PEPR_LAST_SEEN_LIMIT_SECONDS). */
  readonly watchdogSeconds?: number;
  /** Relist about this often (default 600), jittered ±20 % so replicas do not relist together. */
  readonly relistSeconds?: number;
  /** Reconnect backoff (default 1 s doubling to 30 s, equal jitter, reset after a minute of health). */
  readonly backoff?: BackoffOptions;
  /** Uniform random in [0, 1) for the relist jitter (default Math.random). */
  readonly random?: () => number;
  /** Wall clock in milliseconds (default Date.now). */
  readonly now?: () => number;
}

type Handler = (...args: never[]) => void | Promise<void>;

interface WatchSession {
  /** Ends the watch (idempotent): aborts the request and settles the session with `end`. */
  finish(end: WatchEnd): void;
}

export class ResilientInformer<T extends KubernetesObject> {
  readonly name: string;
  readonly #path: string;
  readonly #list: () => Promise<KubernetesListObject<T>>;
  readonly #watch: Watch;
  readonly #log: Logger;
  readonly #metrics: InformerMetrics;
  readonly #query: Readonly<Record<string, string | boolean>>;
  readonly #watchdogMs: number;
  readonly #relistMs: number;
  readonly #backoff: Backoff;
  readonly #random: () => number;
  readonly #now: () => number;

  readonly #cache = new Map<string, T>();
  readonly #handlers: { [E in InformerEventType]: Array<InformerHandlers<T>[E]> } = { add: [], update: [], delete: [] };
  readonly #chains = new Map<Handler, Promise<void>>();
  readonly #synced = Promise.withResolvers<undefined>();
  #hasSynced = false;
  #resourceVersion = '';
  #lastEventAt: number | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #session: WatchSession | undefined;
  #watching = false;
  #relistDue = false;
  #relistTimer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #untrack: (() => void) | undefined;

  constructor(options: ResilientInformerOptions<T>) {
    this.name = options.name;
    this.#path = options.path;
    this.#list = options.list;
    this.#watch = new Watch(options.kubeConfig);
    this.#log = options.logger.child({ informer: options.name });
    this.#metrics = informerMetrics(options.registry);
    this.#query = {
      allowWatchBookmarks: true,
      ...(options.labelSelector === undefined ? {} : { labelSelector: options.labelSelector }),
      ...(options.fieldSelector === undefined ? {} : { fieldSelector: options.fieldSelector }),
    };
    const watchdogSeconds = options.watchdogSeconds ?? 300;
    const relistSeconds = options.relistSeconds ?? 600;
    if (!(watchdogSeconds > 0) || !(relistSeconds > 0)) {
      throw new RangeError(`informer ${options.name}: watchdogSeconds (${watchdogSeconds}) and relistSeconds (${relistSeconds}) must be positive`);
    }
    this.#watchdogMs = watchdogSeconds * 1000;
    this.#relistMs = relistSeconds * 1000;
    this.#random = options.random ?? Math.random;
    this.#backoff = new Backoff({ random: this.#random, ...options.backoff });
    this.#now = options.now ?? Date.now;
    // start() hands this promise out; a rejection (stopped before the first list) must not also
    // surface as an unhandled rejection when nobody awaits it.
    this.#synced.promise.catch(() => undefined);
  }

  /** Registers a handler; handlers may be async. Register before start() to see the initial adds. */
  on<E extends InformerEventType>(event: E, handler: InformerHandlers<T>[E]): void {
    this.#handlers[event].push(handler);
  }

  off<E extends InformerEventType>(event: E, handler: InformerHandlers<T>[E]): void {
    const list = this.#handlers[event];
    const i = list.indexOf(handler);
    if (i >= 0) list.splice(i, 1);
  }

  /** Starts listing and watching; resolves once the first list is in the cache (synced). */
  start(): Promise<void> {
    if (this.#stopped) return Promise.reject(new CustosError('ERR_INFORMER_STOPPED', `informer ${this.name} was stopped`));
    if (this.#running === undefined) {
      this.#untrack = this.#metrics.trackLastEvent(this.name, () => (this.#lastEventAt === undefined ? undefined : (this.#now() - this.#lastEventAt) / 1000));
      this.#running = this.#run().catch((e: unknown) => {
        // #run handles every failure itself; reaching this is a bug, and the informer is dead.
        this.#log.error({ err: describeKubeError(e) }, 'informer loop failed');
      });
    }
    return this.#synced.promise;
  }

  /** Stops watching and waits for the handlers to finish what they were given. */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      clearTimeout(this.#relistTimer);
      this.#wake?.();
      this.#session?.finish({ kind: 'stopped' });
      if (!this.#hasSynced) this.#synced.reject(new CustosError('ERR_INFORMER_STOPPED', `informer ${this.name} was stopped before its first list`));
    }
    await this.#running;
    await this.idle();
    this.#untrack?.();
    this.#untrack = undefined;
  }

  /** Resolves when every handler has finished the events dispatched so far. */
  async idle(): Promise<void> {
    while (this.#chains.size > 0) {
      const pending = [...this.#chains.values()];
      await Promise.all(pending);
      // Chains that gained no new work since are done.
      for (const [handler, chain] of [...this.#chains]) if (pending.includes(chain)) this.#chains.delete(handler);
    }
  }

  get hasSynced(): boolean {
    return this.#hasSynced;
  }

  /** A watch request is connected (the server answered 200) and has not ended: a readiness signal. */
  get watching(): boolean {
    return this.#watching;
  }

  /** The resourceVersion the next watch resumes from. */
  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  /** A snapshot of the cached objects (shared with the handlers: do not mutate them). */
  list(): T[] {
    return [...this.#cache.values()];
  }

  /** The cached object; namespace '' for cluster-scoped resources. */
  get(namespace: string, name: string): T | undefined {
    return this.#cache.get(keyOf(namespace, name));
  }

  async #run(): Promise<void> {
    let relist: RelistReason | undefined = 'initial';
    while (!this.#stopped) {
      if (relist === undefined && this.#relistDue) relist = 'periodic';
      if (relist !== undefined) {
        if (!(await this.#relist(relist))) {
          await this.#pause(this.#backoff.failed(this.#now()));
          continue;
        }
        relist = undefined;
      }
      const end = await this.#watchOnce();
      if (end.kind === 'stopped' || this.#isStopped()) break;
      if (end.kind === 'relist') {
        relist = 'periodic';
        continue;
      }
      // client-node's 30 s inactivity timeout ends every quiet watch (reference §12, 2.0.1):
      // routine, so it is not counted as a restart.
      if (end.kind !== 'timeout') this.#metrics.restarts.inc({ informer: this.name });
      const delay = needsBackoff(end) ? this.#backoff.failed(this.#now()) : 0;
      const fields = {
        reason: end.kind, resourceVersion: this.#resourceVersion, delayMs: delay,
        ...('detail' in end ? { detail: end.detail } : {}), ...('status' in end ? { status: end.status } : {}),
      };
      if (end.kind === 'expired') {
        relist = 'expired';
        this.#log.info(fields, 'watch expired (410 Gone); relisting');
      } else if (end.kind === 'error' || end.kind === 'watchdog') {
        this.#log.warn(fields, 'watch ended; reconnecting from the last resourceVersion');
      } else {
        this.#log.debug(fields, 'watch ended; reconnecting from the last resourceVersion');
      }
      if (delay > 0) await this.#pause(delay);
    }
  }

  /** Lists and replaces the cache; false when the list failed (logged). */
  async #relist(reason: RelistReason): Promise<boolean> {
    let listed: KubernetesListObject<T>;
    try {
      listed = await this.#list();
    } catch (e: unknown) {
      if (!this.#stopped) this.#log.warn({ reason, err: describeKubeError(e) }, 'list failed; retrying after backoff');
      return false;
    }
    if (this.#stopped) return false;
    // The type promises items; a misbehaving server or list function must not kill the loop.
    const items: unknown = listed.items;
    if (!Array.isArray(items)) {
      this.#log.warn({ reason }, 'list answered without items; retrying after backoff');
      return false;
    }
    const now = this.#now();
    const changes = replaceAll(this.#cache, listed.items);
    this.#resourceVersion = listed.metadata?.resourceVersion ?? '';
    this.#lastEventAt = now;
    this.#backoff.healthy(now);
    this.#metrics.relists.inc({ informer: this.name, reason });
    this.#metrics.objects.set({ informer: this.name }, this.#cache.size);
    if (reason !== 'initial') {
      for (const change of changes) this.#metrics.relistChanges.inc({ informer: this.name, event: change.type });
      if (changes.length > 0) {
        const counts = { add: 0, update: 0, delete: 0 };
        for (const change of changes) counts[change.type] += 1;
        // After 410 Gone the gap is expected; after a periodic relist it means the watch lost events.
        this.#log[reason === 'periodic' ? 'warn' : 'info']({ reason, ...counts, resourceVersion: this.#resourceVersion }, 'relist found changes the watch had not delivered');
      }
    }
    for (const change of changes) this.#dispatch(change);
    this.#relistDue = false;
    this.#scheduleRelist();
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#log.info({ objects: this.#cache.size, resourceVersion: this.#resourceVersion }, 'informer synced');
      this.#synced.resolve(undefined);
    }
    return true;
  }

  #scheduleRelist(): void {
    clearTimeout(this.#relistTimer);
    const jittered = this.#relistMs * (0.8 + 0.4 * this.#random());
    this.#relistTimer = setTimeout(() => {
      this.#relistDue = true;
      this.#session?.finish({ kind: 'relist' });
    }, jittered);
  }

  /** One watch request, from the current resourceVersion until it ends, for whatever reason. */
  async #watchOnce(): Promise<WatchEnd> {
    const ended = Promise.withResolvers<WatchEnd>();
    const state = { done: false };
    let controller: AbortController | undefined;
    const watchdog = setTimeout(() => { session.finish({ kind: 'watchdog' }); }, this.#watchdogMs);
    const session: WatchSession = {
      finish: (end) => {
        if (state.done) return;
        state.done = true;
        this.#watching = false;
        clearTimeout(watchdog);
        if (this.#session === session) this.#session = undefined;
        controller?.abort();
        ended.resolve(end);
      },
    };
    this.#session = session;
    const onEvent = (type: string, object: unknown): void => {
      if (state.done) return;
      watchdog.refresh();
      const end = this.#apply(type, object);
      if (end !== undefined) session.finish(end);
    };
    const onDone = (err: unknown): void => { session.finish(classifyWatchDone(err, describeKubeError)); };
    try {
      controller = await this.#watch.watch(this.#path, { ...this.#query, resourceVersion: this.#resourceVersion }, onEvent, onDone);
      if (state.done) controller.abort();
      else {
        this.#watching = true;
        this.#backoff.healthy(this.#now());
      }
    } catch (e: unknown) {
      // Raised before the request was made (e.g. the credentials could not be loaded).
      session.finish({ kind: 'error', detail: describeKubeError(e) });
    }
    return ended.promise;
  }

  /** Applies one watch event to the cache; a WatchEnd when the event ends the stream. */
  #apply(type: string, object: unknown): WatchEnd | undefined {
    if (type === 'ERROR') return classifyErrorEvent(object);
    if (typeof object !== 'object' || object === null) {
      this.#log.warn({ type }, 'watch event without an object ignored');
      return undefined;
    }
    const o = object as T;
    let change: CacheChange<T> | undefined;
    switch (type) {
      case 'ADDED':
      case 'MODIFIED':
        change = upsert(this.#cache, o);
        break;
      case 'DELETED':
        change = remove(this.#cache, o);
        break;
      case 'BOOKMARK':
        break;
      default:
        this.#log.warn({ type }, 'unknown watch event type ignored');
        return undefined;
    }
    this.#lastEventAt = this.#now();
    const rv = o.metadata?.resourceVersion;
    if (rv !== undefined && rv !== '') this.#resourceVersion = rv;
    if (change !== undefined) {
      this.#metrics.objects.set({ informer: this.name }, this.#cache.size);
      this.#dispatch(change);
    }
    return undefined;
  }

  #dispatch(change: CacheChange<T>): void {
    switch (change.type) {
      case 'add':
        for (const h of this.#handlers.add) this.#enqueue(h, 'add', change.object, () => h(change.object));
        break;
      case 'update':
        for (const h of this.#handlers.update) this.#enqueue(h, 'update', change.object, () => h(change.object, change.previous));
        break;
      case 'delete':
        for (const h of this.#handlers.delete) this.#enqueue(h, 'delete', change.object, () => h(change.object));
        break;
    }
  }

  /** Runs `call` after the handler's previous call settled; failures are logged and counted, never thrown. */
  #enqueue(handler: Handler, event: InformerEventType, object: T, call: () => void | Promise<void>): void {
    const previous = this.#chains.get(handler) ?? Promise.resolve();
    const next = previous.then(call).catch((e: unknown) => {
      this.#metrics.handlerErrors.inc({ informer: this.name, event });
      this.#log.error({
        event, namespace: object.metadata?.namespace, name: object.metadata?.name,
        err: e instanceof Error ? `${e.name}: ${e.message}` : String(e),
      }, 'informer handler failed');
    });
    this.#chains.set(handler, next);
  }

  /** Read through a method so that TypeScript does not narrow it across awaits. */
  #isStopped(): boolean {
    return this.#stopped;
  }

  /** Waits `ms`, or less if stop() is called. */
  async #pause(ms: number): Promise<void> {
    if (this.#stopped) return;
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        if (this.#wake === wake) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wake = wake;
    });
  }
}
