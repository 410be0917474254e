// Fast pick-up of policy changes: the operator announces each new policy digest on Redis
// (operator/announce/policy-announcement.ts); the kubelet refreshes the mounted ConfigMap only
// every ~60–90 s. On an announcement whose digest differs from the policy in force, the sidecar
// re-reads its policy file at once, then every 200 ms for up to 120 s, until the file carries the
// announced digest.
//
// Redis is not trusted to carry policy: an announcement only decides *when* the file is read. The
// policy in force always comes from the mounted file (written by the operator through the API
// server, whose RBAC guards it), never from the message, so anyone able to publish on Redis can at
// most make the sidecar read its own file more often, for a bounded time: announcements are
// validated, at most MAX_PENDING are tracked, each expires, and one poll loop serves them all.
//
// Redis being down never fails or delays the sidecar: nothing waits for the connection, commands
// are never queued, and the file poll keeps running. After a reconnect the subscription is renewed
// (ioredis's own resubscribe is off: it forgets a subscription that never succeeded).
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { announcementChannel, parseAnnouncement, type PolicyAnnouncement } from '../operator/announce/policy-announcement.ts';
import type { SidecarMetrics } from './metrics.ts';

export const FAST_POLL_INTERVAL_MS = 200;
export const FAST_POLL_WINDOW_MS = 120_000;
/** Distinct announced digests waited for at once; beyond this the oldest is dropped. */
export const MAX_PENDING = 16;

// ---------------------------------------------------------------------------------------------
// Pure: which announced digests are still awaited

export type ReceiveResult = 'tracked' | 'current';

export interface TrackerCheck {
  /** The awaited announcement the policy in force now matches. */
  readonly applied: PolicyAnnouncement | undefined;
  /** Announcements whose window ended without the file carrying their digest. */
  readonly expired: readonly PolicyAnnouncement[];
}

interface Pending {
  readonly announcement: PolicyAnnouncement;
  readonly deadline: number;
}

/** Announced digests awaited in the policy file, each until its deadline. No I/O, no clock. */
export class AnnouncementTracker {
  readonly #windowMs: number;
  readonly #maxPending: number;
  readonly #pending = new Map<string, Pending>();

  constructor(options: { windowMs?: number; maxPending?: number } = {}) {
    this.#windowMs = options.windowMs ?? FAST_POLL_WINDOW_MS;
    this.#maxPending = options.maxPending ?? MAX_PENDING;
  }

  get size(): number {
    return this.#pending.size;
  }

  /**
   * An announcement arrived. `current` when the policy in force already has its digest; otherwise
   * it is awaited until `now + window`. A repeat of an awaited digest keeps its first deadline, so
   * replaying a message cannot keep the fast poll going forever.
   */
  receive(announcement: PolicyAnnouncement, currentDigest: string, now: number): ReceiveResult {
    if (announcement.digest === currentDigest) return 'current';
    if (!this.#pending.has(announcement.digest)) {
      if (this.#pending.size >= this.#maxPending) {
        const oldest = this.#pending.keys().next().value;
        if (oldest !== undefined) this.#pending.delete(oldest);
      }
      this.#pending.set(announcement.digest, { announcement, deadline: now + this.#windowMs });
    }
    return 'tracked';
  }

  /**
   * After a read of the file: the awaited announcement now in force (it and older generations stop
   * being awaited: the file moved past them), and those that expired.
   */
  check(currentDigest: string, now: number): TrackerCheck {
    const hit = this.#pending.get(currentDigest);
    if (hit !== undefined) {
      for (const [digest, p] of this.#pending) {
        if (p.announcement.generation <= hit.announcement.generation) this.#pending.delete(digest);
      }
    }
    const expired: PolicyAnnouncement[] = [];
    for (const [digest, p] of this.#pending) {
      if (p.deadline <= now) {
        expired.push(p.announcement);
        this.#pending.delete(digest);
      }
    }
    return { applied: hit?.announcement, expired };
  }

  clear(): void {
    this.#pending.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Adapter: the Redis subscription and the fast poll

/** The policy store as seen from here (sidecar/policy-store.ts). */
export interface PolicySource {
  /** SHA-256 of the policy file text in force. */
  readonly digest: string;
  /** Re-reads the file; never rejects for a missing or broken file. */
  reload(): Promise<boolean>;
}

export interface PolicyAnnouncementListenerOptions {
  readonly redisUrl: string;
  readonly policy: { readonly namespace: string; readonly name: string };
  readonly store: PolicySource;
  readonly logger: Logger;
  readonly metrics?: SidecarMetrics;
  readonly fastPollIntervalMs?: number;
  readonly fastPollWindowMs?: number;
  readonly now?: () => number;
}

const MAX_RECONNECT_BACKOFF_MS = 5000;

export class PolicyAnnouncementListener {
  readonly channel: string;
  readonly #options: PolicyAnnouncementListenerOptions;
  readonly #redis: Redis;
  readonly #tracker: AnnouncementTracker;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #intervalMs: number;
  #polling: Promise<void> | undefined;
  /** Set by a message that arrives while the loop runs: read again without sleeping. */
  #again = false;
  #wake: (() => void) | undefined;
  #subscribed = false;
  #closed = false;

  constructor(options: PolicyAnnouncementListenerOptions) {
    this.#options = options;
    this.channel = announcementChannel(options.policy.namespace, options.policy.name);
    this.#logger = options.logger.child({ component: 'policy-announcements', channel: this.channel });
    this.#tracker = new AnnouncementTracker({ windowMs: options.fastPollWindowMs ?? FAST_POLL_WINDOW_MS });
    this.#now = options.now ?? Date.now;
    this.#intervalMs = options.fastPollIntervalMs ?? FAST_POLL_INTERVAL_MS;
    this.#redis = new Redis(options.redisUrl, {
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResubscribe: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      // Capped exponential with jitter; never null, which would stop reconnecting for good.
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times - 1, 10), MAX_RECONNECT_BACKOFF_MS) * (0.8 + Math.random() * 0.2),
    });
    this.#redis.on('ready', () => { this.#subscribe(); });
    this.#redis.on('close', () => {
      if (this.#subscribed && !this.#closed) this.#logger.warn('lost the Redis connection: policy changes are picked up from the file poll until it is back');
      this.#subscribed = false;
    });
    // Connection errors repeat on every retry; the close above says it once. The message names
    // host and port, never the URL's credentials.
    this.#redis.on('error', (e: unknown) => { this.#logger.debug({ err: e instanceof Error ? e.message : String(e) }, 'redis connection error'); });
    this.#redis.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.#receive(message);
    });
  }

  /** True while subscribed to the channel. */
  get subscribed(): boolean {
    return this.#subscribed;
  }

  /** Connects in the background; returns at once, whether or not Redis is reachable. */
  start(): void {
    // A failed first attempt rejects here, and ioredis keeps retrying; 'ready' subscribes.
    this.#redis.connect().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#tracker.clear();
    this.#wake?.();
    this.#redis.disconnect();
    await this.#polling;
  }

  #subscribe(): void {
    this.#redis.subscribe(this.channel).then(
      () => {
        this.#subscribed = true;
        this.#logger.info('following policy announcements');
      },
      (e: unknown) => { this.#logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'cannot subscribe to policy announcements; retrying on the next connection'); },
    );
  }

  #receive(message: string): void {
    if (this.#closed) return;
    const metrics = this.#options.metrics;
    const parsed = parseAnnouncement(message);
    if (!parsed.ok) {
      metrics?.policyAnnouncements.inc({ result: 'malformed' });
      // The problem only, never the message: it is untrusted input of any size.
      this.#logger.warn({ problem: parsed.problem }, 'ignored a malformed policy announcement');
      return;
    }
    const a = parsed.announcement;
    const { namespace, name } = this.#options.policy;
    if (a.namespace !== namespace || a.name !== name) {
      metrics?.policyAnnouncements.inc({ result: 'foreign' });
      this.#logger.warn({ announced: `${a.namespace}/${a.name}` }, 'ignored an announcement for another policy');
      return;
    }
    const result = this.#tracker.receive(a, this.#options.store.digest, this.#now());
    metrics?.policyAnnouncements.inc({ result });
    if (result === 'current') {
      this.#logger.debug({ generation: a.generation, digest: a.digest }, 'announced policy already in force');
      return;
    }
    this.#logger.info({ generation: a.generation, digest: a.digest }, 'policy announced: re-reading the policy file until it carries the announced digest');
    this.#pollSoon();
  }

  /** Reads the file now (or right after the read in progress) and keeps polling while digests are awaited. */
  #pollSoon(): void {
    if (this.#polling !== undefined) {
      this.#again = true;
      this.#wake?.();
      return;
    }
    this.#polling = this.#pollLoop();
  }

  async #pollLoop(): Promise<void> {
    try {
      await this.#pollWhileAwaited();
    } finally {
      // Synchronously with the loop's end, so a message handled next starts a new loop.
      this.#polling = undefined;
    }
  }

  async #pollWhileAwaited(): Promise<void> {
    const { store, metrics } = this.#options;
    while (!this.#closed) {
      this.#again = false;
      try {
        await store.reload();
      } catch (e: unknown) {
        this.#logger.error({ err: e instanceof Error ? e.message : String(e) }, 'policy re-read failed');
      }
      const { applied, expired } = this.#tracker.check(store.digest, this.#now());
      if (applied !== undefined) {
        metrics?.policyAnnouncementsApplied.inc();
        this.#logger.info({ generation: applied.generation, digest: applied.digest }, 'announced policy in force');
      }
      for (const a of expired) {
        metrics?.policyAnnouncementsUnconfirmed.inc();
        this.#logger.warn({ generation: a.generation, digest: a.digest }, 'the policy file never carried the announced digest; the policy in force is unchanged');
      }
      // Methods, not fields: both flags change while awaiting, which flow narrowing cannot see.
      if (this.#tracker.size === 0 || this.#isClosed()) return;
      if (!this.#readAgain()) await this.#sleep(this.#intervalMs);
    }
  }

  #isClosed(): boolean {
    return this.#closed;
  }

  #readAgain(): boolean {
    return this.#again;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}
