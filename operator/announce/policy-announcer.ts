// Publishes policy announcements (policy-announcement.ts) for the reconcile executor: after it has
// written a policy's ConfigMap it calls `announce`, and every sidecar of that policy re-reads its
// mounted file at once instead of waiting for the kubelet's refresh.
//
// An announcement is an optimisation, so it must never hold up or fail reconciliation: the
// connection never queues commands while Redis is away (a publish fails at once instead of
// waiting), every command has a timeout, and `announce` resolves with the outcome instead of
// rejecting. A lost announcement costs latency only: the sidecars still see the new file within the
// kubelet's sync period plus their poll interval. Reconnecting is ioredis's job (capped backoff,
// never giving up).
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { announcementChannel, encodeAnnouncement, policyDigest, type PolicyAnnouncement } from './policy-announcement.ts';

/** What the reconcile executor knows after writing the ConfigMap. */
export interface AnnouncedPolicy {
  readonly namespace: string;
  readonly name: string;
  readonly generation: number;
  /** The exact `policy.yaml` text written to the ConfigMap; its digest is what sidecars compare. */
  readonly policyYaml: string;
}

export type AnnounceOutcome =
  | { readonly result: 'published'; readonly announcement: PolicyAnnouncement; readonly channel: string; readonly receivers: number }
  | { readonly result: 'failed'; readonly channel: string; readonly error: string };

/** The slice the reconcile executor depends on; tests and Redis-less installs pass their own. */
export interface PolicyAnnouncements {
  /** Never rejects; do not await it on the reconcile path. */
  announce(policy: AnnouncedPolicy): Promise<AnnounceOutcome>;
}

export interface PolicyAnnouncerOptions {
  readonly redisUrl: string;
  readonly logger: Logger;
  /** Registers custos_policy_announcements_published_total{result} here. */
  readonly registry?: Registry;
  readonly now?: () => Date;
  /** Upper bound for one PUBLISH (default 2000 ms). */
  readonly commandTimeoutMs?: number;
}

const MAX_RECONNECT_BACKOFF_MS = 5000;

function publisherRedisOptions(commandTimeoutMs: number) {
  return {
    // Fail at once while disconnected; a queued announcement would arrive late or in a burst.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: commandTimeoutMs,
    // Capped exponential with jitter; never null, which would stop reconnecting for good.
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times - 1, 10), MAX_RECONNECT_BACKOFF_MS) * (0.8 + Math.random() * 0.2),
  } satisfies RedisOptions;
}

export class PolicyAnnouncer implements PolicyAnnouncements {
  readonly #redis: Redis;
  readonly #logger: Logger;
  readonly #now: () => Date;
  readonly #counter: Counter<'result'> | undefined;
  #published = 0;
  #failed = 0;
  #connected = false;

  constructor(options: PolicyAnnouncerOptions) {
    this.#logger = options.logger;
    this.#now = options.now ?? ((): Date => new Date());
    this.#counter =
      options.registry === undefined
        ? undefined
        : new Counter({
            name: 'custos_policy_announcements_published_total',
            help: 'Policy announcements published on Redis, by result (failed ones are picked up from the file later).',
            labelNames: ['result'],
            registers: [options.registry],
          });
    this.#redis = new Redis(options.redisUrl, publisherRedisOptions(options.commandTimeoutMs ?? 2000));
    this.#redis.on('ready', () => {
      this.#connected = true;
      this.#logger.info('policy announcer connected to Redis');
    });
    this.#redis.on('close', () => {
      if (this.#connected) this.#logger.warn('policy announcer lost its Redis connection; announcements fail until it is back');
      this.#connected = false;
    });
    // The error text names host and port, never the URL's credentials.
    this.#redis.on('error', (e: unknown) => { this.#logger.debug({ err: e instanceof Error ? e.message : String(e) }, 'policy announcer: Redis connection error'); });
  }

  /** Announcements published and failed since start (the counter's values without a registry). */
  get counts(): { readonly published: number; readonly failed: number } {
    return { published: this.#published, failed: this.#failed };
  }

  async announce(policy: AnnouncedPolicy): Promise<AnnounceOutcome> {
    let channel = `${policy.namespace}/${policy.name}`;
    try {
      channel = announcementChannel(policy.namespace, policy.name);
      const announcement: PolicyAnnouncement = {
        namespace: policy.namespace,
        name: policy.name,
        generation: policy.generation,
        digest: policyDigest(policy.policyYaml),
        at: this.#now().toISOString(),
      };
      const receivers = await this.#redis.publish(channel, encodeAnnouncement(announcement));
      this.#published++;
      this.#counter?.inc({ result: 'published' });
      this.#logger.debug({ channel, generation: announcement.generation, digest: announcement.digest, receivers }, 'policy announced');
      return { result: 'published', announcement, channel, receivers };
    } catch (e: unknown) {
      const error = e instanceof Error ? e.message : String(e);
      this.#failed++;
      this.#counter?.inc({ result: 'failed' });
      this.#logger.warn({ channel, generation: policy.generation, err: error }, 'policy announcement failed; sidecars pick the policy up from the mounted file instead');
      return { result: 'failed', channel, error };
    }
  }

  /** Closes the connection; later announcements fail. */
  async close(): Promise<void> {
    this.#connected = false;
    await this.#redis.quit().catch(() => { this.#redis.disconnect(); });
  }
}
