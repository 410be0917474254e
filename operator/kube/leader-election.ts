// LeaderElector: one active controller among the operator's replicas, on a coordination.k8s.io/v1
// Lease (reference/kubernetes.md §12, ADR 0007), after client-go's tools/leaderelection with
// controller-runtime's timings (lease 15 s, renew deadline 10 s, retry 2 s):
//
// - candidates try every retryPeriod (jittered ×[1, 2.2) as client-go's JitterFactor 1.2) to
//   create the Lease, take it over once it expired (lease-decision.ts), or renew it when it is
//   theirs; every write carries the resourceVersion that was read, so of two candidates deciding
//   at once one gets 409 Conflict and stays a candidate;
// - the leader renews every retryPeriod; if no renewal succeeded within renewDeadline (measured
//   from when the last successful request was *sent*, so the lease outlives our belief in it), or
//   a read shows another holder, it stops leading at once: the AbortSignal given to
//   onStartedLeading fires, custos_leader drops to 0, onStoppedLeading runs, and it goes back to
//   candidacy. renewDeadline < leaseDuration leaves the old leader time to stop before anyone
//   else may take over;
// - stop() stops leading (signal, onStoppedLeading, awaited) and then releases the Lease (empty
//   holder, 1 s duration, as client-go's ReleaseOnCancel), so a successor takes over on its next
//   try instead of waiting for the lease to expire.
import { CoordinationV1Api, V1Lease, V1LeaseSpec, V1MicroTime, V1ObjectMeta, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { CustosError } from '../../lib/errors.ts';
import { describeKubeError, httpStatusOf } from './kube-errors.ts';
import { decideLease, releasedRecord, sameRecord, type LeaseRecord } from './lease-decision.ts';

export interface LeaderElectorOptions {
  readonly kubeConfig: KubeConfig;
  /** Namespace of the Lease (the operator's own). */
  readonly namespace: string;
  readonly leaseName: string;
  /** Who we are in holderIdentity: the pod name, unique among the replicas. */
  readonly identity: string;
  readonly logger: Logger;
  readonly registry: Registry;
  /** Written into the Lease; an integer (default 15). */
  readonly leaseDurationSeconds?: number;
  /** Stop leading when no renewal succeeded for this long (default 10; less than the lease duration). */
  readonly renewDeadlineSeconds?: number;
  /** Between attempts (default 2; less than the renew deadline). */
  readonly retryPeriodSeconds?: number;
  /**
   * Leader-only work starts here; `signal` aborts the moment leadership is lost or stop() is
   * called. A rejection is logged; it does not give up the Lease.
   */
  readonly onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /** Awaited before the elector campaigns again or releases the Lease. */
  readonly onStoppedLeading?: () => void | Promise<void>;
  /** Wall clock in milliseconds (default Date.now). */
  readonly now?: () => number;
  /** Uniform random in [0, 1) for the retry jitter (default Math.random). */
  readonly random?: () => number;
}

/** client-go's wait.JitterUntil factor for the candidates' retry loop. */
const JITTER_FACTOR = 1.2;
const LEADER_METRIC = 'custos_leader';

type Attempt = 'leading' | 'held' | 'failed';

function millis(value: unknown): number | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value.getTime();
  // client-node hands MicroTime fields through as the wire string.
  if (typeof value === 'string') {
    const t = Date.parse(value);
    return Number.isNaN(t) ? undefined : t;
  }
  return undefined;
}

function recordOf(lease: V1Lease): LeaseRecord {
  const spec = lease.spec;
  return {
    holderIdentity: spec?.holderIdentity ?? '',
    leaseDurationSeconds: spec?.leaseDurationSeconds ?? 0,
    acquireTime: millis(spec?.acquireTime),
    renewTime: millis(spec?.renewTime),
    leaseTransitions: spec?.leaseTransitions ?? 0,
  };
}

function specOf(record: LeaseRecord, existing: V1LeaseSpec | undefined): V1LeaseSpec {
  const spec = new V1LeaseSpec();
  spec.holderIdentity = record.holderIdentity;
  spec.leaseDurationSeconds = record.leaseDurationSeconds;
  spec.leaseTransitions = record.leaseTransitions;
  // MicroTime must go out with six fraction digits; a plain Date's milliseconds are refused by
  // the API server's decoder.
  if (record.acquireTime !== undefined) spec.acquireTime = new V1MicroTime(record.acquireTime);
  if (record.renewTime !== undefined) spec.renewTime = new V1MicroTime(record.renewTime);
  // Coordinated leader election's fields are someone else's to set: keep them.
  if (existing?.strategy !== undefined) spec.strategy = existing.strategy;
  if (existing?.preferredHolder !== undefined) spec.preferredHolder = existing.preferredHolder;
  return spec;
}

/** The Lease to write: `metadata` as read (its resourceVersion is the precondition) or new. */
function leaseBody(metadata: V1ObjectMeta, spec: V1LeaseSpec): V1Lease {
  const lease = new V1Lease();
  lease.apiVersion = 'coordination.k8s.io/v1';
  lease.kind = 'Lease';
  lease.metadata = metadata;
  lease.spec = spec;
  return lease;
}

function newMetadata(namespace: string, name: string): V1ObjectMeta {
  const metadata = new V1ObjectMeta();
  metadata.name = name;
  metadata.namespace = namespace;
  return metadata;
}

function leaderGauge(registry: Registry): Gauge<'lease'> {
  return (registry.getSingleMetric(LEADER_METRIC) as Gauge<'lease'> | undefined)
    ?? new Gauge({ name: LEADER_METRIC, help: '1 while this replica holds the leader Lease, else 0.', labelNames: ['lease'], registers: [registry] });
}

export class LeaderElector {
  readonly #api: CoordinationV1Api;
  readonly #namespace: string;
  readonly #leaseName: string;
  readonly #identity: string;
  readonly #log: Logger;
  readonly #gauge: Gauge<'lease'>;
  readonly #leaseDurationSeconds: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  readonly #onStoppedLeading: () => void | Promise<void>;
  readonly #now: () => number;
  readonly #random: () => number;

  #running: Promise<void> | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;
  /** Present while leading; aborted the moment we stop. */
  #leadership: AbortController | undefined;
  #steppingDown: Promise<void> = Promise.resolve();
  /** The Lease as we last read or wrote it (its resourceVersion is what our next write claims). */
  #lease: V1Lease | undefined;
  #observed: { readonly record: LeaseRecord | undefined; readonly at: number } | undefined;
  /** When the latest attempt began: a renewal counts from when it was sent, not when it was answered. */
  #attemptSentAt = 0;

  constructor(options: LeaderElectorOptions) {
    const lease = options.leaseDurationSeconds ?? 15;
    const renew = options.renewDeadlineSeconds ?? 10;
    const retry = options.retryPeriodSeconds ?? 2;
    // client-go's NewLeaderElector checks: otherwise two leaders can overlap.
    if (!Number.isInteger(lease) || lease < 1) throw new CustosError('ERR_LEADER_ELECTION_CONFIG', `leaseDurationSeconds must be a whole number of seconds ≥ 1, not ${lease}`);
    if (!(renew < lease)) throw new CustosError('ERR_LEADER_ELECTION_CONFIG', `renewDeadlineSeconds (${renew}) must be less than leaseDurationSeconds (${lease})`);
    if (!(retry > 0) || !(renew > JITTER_FACTOR * retry)) {
      throw new CustosError('ERR_LEADER_ELECTION_CONFIG', `retryPeriodSeconds (${retry}) must be positive and renewDeadlineSeconds (${renew}) more than ${JITTER_FACTOR}× it`);
    }
    if (options.identity === '') throw new CustosError('ERR_LEADER_ELECTION_CONFIG', 'the leader election identity must not be empty');
    this.#api = options.kubeConfig.makeApiClient(CoordinationV1Api);
    this.#namespace = options.namespace;
    this.#leaseName = options.leaseName;
    this.#identity = options.identity;
    this.#log = options.logger.child({ lease: `${options.namespace}/${options.leaseName}`, identity: options.identity });
    this.#gauge = leaderGauge(options.registry);
    this.#gauge.set({ lease: options.leaseName }, 0);
    this.#leaseDurationSeconds = lease;
    this.#renewDeadlineMs = renew * 1000;
    this.#retryPeriodMs = retry * 1000;
    this.#onStartedLeading = options.onStartedLeading;
    this.#onStoppedLeading = options.onStoppedLeading ?? (() => undefined);
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  get isLeader(): boolean {
    return this.#leadership !== undefined && !this.#leadership.signal.aborted;
  }

  /** Starts campaigning (returns at once; leadership is reported through the callbacks). */
  start(): void {
    if (this.#stopped || this.#running !== undefined) return;
    this.#running = this.#run().catch((e: unknown) => {
      // #run handles every failure itself; reaching this is a bug.
      this.#log.error({ err: describeKubeError(e) }, 'leader election loop failed');
      this.#stepDown('the election loop failed');
    });
  }

  /** Stops campaigning; if leading, stops leading and releases the Lease for a successor. */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#wake?.();
      this.#stepDown('stopping');
    }
    await this.#running;
    await this.#steppingDown;
  }

  async #run(): Promise<void> {
    while (!this.#isStopped()) {
      if ((await this.#attempt()) === 'leading') {
        await this.#lead();
        continue;
      }
      await this.#pause(this.#retryPeriodMs * (1 + JITTER_FACTOR * this.#random()));
    }
  }

  /** Leads until the renewals stop succeeding, another holder shows up, or stop(). */
  async #lead(): Promise<void> {
    const leadership = new AbortController();
    this.#leadership = leadership;
    this.#gauge.set({ lease: this.#leaseName }, 1);
    this.#log.info({ leaseTransitions: this.#lease?.spec?.leaseTransitions }, 'started leading');
    const expire = (): void => { this.#stepDown('no renewal succeeded within the renew deadline'); };
    let deadline = setTimeout(expire, Math.max(0, this.#attemptSentAt + this.#renewDeadlineMs - this.#now()));
    void (async () => {
      try {
        await this.#onStartedLeading(leadership.signal);
      } catch (e: unknown) {
        this.#log.error({ err: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }, 'onStartedLeading failed');
      }
    })();
    // A function, so that TypeScript does not narrow `aborted` across the awaits.
    const lost = (): boolean => leadership.signal.aborted;
    while (!this.#isStopped() && !lost()) {
      await this.#pause(this.#retryPeriodMs, leadership.signal);
      if (this.#isStopped() || lost()) break;
      const attempt = await this.#attempt();
      if (lost()) break;
      if (attempt === 'leading') {
        clearTimeout(deadline);
        deadline = setTimeout(expire, Math.max(0, this.#attemptSentAt + this.#renewDeadlineMs - this.#now()));
      } else if (attempt === 'held') {
        this.#stepDown(`the Lease is held by ${this.#lease?.spec?.holderIdentity ?? 'another candidate'}`);
      }
    }
    clearTimeout(deadline);
    // stop() may have landed while the winning attempt was in flight, before this leadership
    // existed for it to abort: abort it here, or leader-only work would outlive the Lease.
    if (this.#isStopped()) this.#stepDown('stopping');
    await this.#steppingDown;
    if (this.#isStopped()) await this.#release();
  }

  /** Stops leading now (idempotent): abort the leader's signal, then run onStoppedLeading. */
  #stepDown(reason: string): void {
    const leadership = this.#leadership;
    if (leadership === undefined || leadership.signal.aborted) return;
    leadership.abort(new CustosError('ERR_LEADERSHIP_LOST', `stopped leading: ${reason}`));
    this.#gauge.set({ lease: this.#leaseName }, 0);
    this.#log[reason === 'stopping' ? 'info' : 'warn']({ reason }, 'stopped leading');
    this.#wake?.();
    this.#steppingDown = (async () => {
      try {
        await this.#onStoppedLeading();
      } catch (e: unknown) {
        this.#log.error({ err: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }, 'onStoppedLeading failed');
      }
    })();
  }

  /** One tryAcquireOrRenew: `leading` when the Lease is ours now, `held` when someone else's, `failed` otherwise. */
  async #attempt(): Promise<Attempt> {
    this.#attemptSentAt = this.#now();
    let lease: V1Lease | undefined;
    // A leader renews from the Lease it last wrote, skipping the read: if anyone else wrote in
    // between, the resourceVersion no longer matches, the write fails with 409, and the next
    // attempt reads.
    if (this.isLeader && this.#lease !== undefined) lease = this.#lease;
    else {
      try {
        lease = await this.#api.readNamespacedLease({ name: this.#leaseName, namespace: this.#namespace });
      } catch (e: unknown) {
        if (httpStatusOf(e) !== 404) return this.#failed('reading the Lease failed', e);
      }
    }
    this.#lease = lease;
    const now = this.#now();
    const current = lease === undefined ? undefined : recordOf(lease);
    this.#observe(current, now);
    const decision = decideLease({ current, identity: this.#identity, now, observedAt: this.#observed?.at ?? now, leaseDurationSeconds: this.#leaseDurationSeconds });
    if (decision.action === 'wait') {
      this.#log.debug({ holder: decision.holder, expiresAt: new Date(decision.expiresAt).toISOString() }, 'the Lease is held by another candidate');
      return 'held';
    }
    try {
      if (decision.action === 'create') {
        this.#lease = await this.#api.createNamespacedLease({
          namespace: this.#namespace,
          body: leaseBody(newMetadata(this.#namespace, this.#leaseName), specOf(decision.record, undefined)),
        });
      } else {
        this.#lease = await this.#api.replaceNamespacedLease({
          name: this.#leaseName, namespace: this.#namespace,
          body: leaseBody(lease?.metadata ?? newMetadata(this.#namespace, this.#leaseName), specOf(decision.record, lease?.spec)),
        });
      }
    } catch (e: unknown) {
      this.#lease = undefined;
      const status = httpStatusOf(e);
      // 409: another candidate wrote first (created it, or updated the version we read).
      if (status === 409) {
        this.#log.debug({ action: decision.action }, 'lost the race for the Lease (409 Conflict)');
        return 'failed';
      }
      return this.#failed(`${decision.action === 'create' ? 'creating' : 'updating'} the Lease failed`, e);
    }
    this.#observe(recordOf(this.#lease), now);
    if (decision.action === 'acquire') {
      this.#log.info({ previousHolder: current?.holderIdentity ?? '', leaseTransitions: decision.record.leaseTransitions }, 'took over the Lease');
    }
    return 'leading';
  }

  /** Gives the Lease up so that a successor need not wait for it to expire. */
  async #release(): Promise<void> {
    for (let tries = 0; tries < 2; tries += 1) {
      let lease = this.#lease;
      try {
        lease ??= await this.#api.readNamespacedLease({ name: this.#leaseName, namespace: this.#namespace });
        const current = recordOf(lease);
        if (current.holderIdentity !== this.#identity) return;
        this.#lease = await this.#api.replaceNamespacedLease({
          name: this.#leaseName, namespace: this.#namespace,
          body: leaseBody(lease.metadata ?? newMetadata(this.#namespace, this.#leaseName), specOf(releasedRecord(current, this.#now()), lease.spec)),
        });
        this.#log.info('released the Lease');
        return;
      } catch (e: unknown) {
        this.#lease = undefined;
        // 409: the Lease changed since we wrote it; read it again and release only if still ours.
        if (httpStatusOf(e) !== 409) {
          this.#log.warn({ err: describeKubeError(e) }, 'releasing the Lease failed; a successor waits for it to expire');
          return;
        }
      }
    }
  }

  #observe(record: LeaseRecord | undefined, now: number): void {
    if (this.#observed === undefined || !sameRecord(this.#observed.record, record)) this.#observed = { record, at: now };
  }

  #failed(what: string, e: unknown): Attempt {
    this.#log.warn({ err: describeKubeError(e) }, what);
    return 'failed';
  }

  /** Read through a method so that TypeScript does not narrow it across awaits. */
  #isStopped(): boolean {
    return this.#stopped;
  }

  /** Waits `ms`, or less if stop() is called, leadership is lost, or `signal` aborts. */
  async #pause(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.#stopped || signal?.aborted === true) return;
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', wake);
        if (this.#wake === wake) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      signal?.addEventListener('abort', wake, { once: true });
      this.#wake = wake;
    });
  }
}
