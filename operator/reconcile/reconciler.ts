// The reconcile loop: observe → plan → execute, one run at a time, only while this replica leads.
//
// - `trigger()` (informer events) schedules a run after a short debounce, so a burst of events (a
//   Deployment scaling up, a relist) costs one run; triggers during a run schedule one more after it.
// - Conflicts, failures and skipped actions requeue the whole reconcile after a jittered
//   exponential backoff: the planner is level-based, so a fresh plan from fresh caches is the retry,
//   never a replay of the stale action. A run that leaves nothing to redo resets the backoff.
// - `setEnabled(true)` on winning the Lease runs a full reconcile; `setEnabled(false)` on losing it
//   stops at once: pending timers are cleared and the executor skips what is left of a run in
//   flight (it checks the signal between writes), because only the leader writes.
import type { Logger } from 'pino';
import { needsRequeue, type ActionExecutor, type ActionOutcome, type ReconcileAction } from './actions.ts';
import type { ObservedState } from './observed.ts';
import { planPolicies } from './plan.ts';
import { PolicyCheckMemo } from './policy-check-memo.ts';
import type { InjectionSettings } from '../webhook/injection-settings.ts';

export interface ReconcilerOptions {
  /** The current snapshot (the informer caches); throwing (caches not synced) counts as a failed run. */
  readonly observe: () => ObservedState | Promise<ObservedState>;
  readonly settings: InjectionSettings;
  readonly executor: ActionExecutor;
  readonly logger: Logger;
  /** Delay between the first trigger of a burst and the run (default 100 ms). */
  readonly debounceMs?: number;
  /** Requeue backoff: first delay (default 250 ms), doubling per failed run up to maxMs (default 60 s). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  readonly now?: () => Date;
  /** Uniform in [0, 1): the backoff jitter (default Math.random). */
  readonly random?: () => number;
  /** Told about every run (metrics, and the policy announcer: which ConfigMaps were written). */
  readonly onRun?: (run: ReconcileRun) => void;
}

export interface ReconcileRun {
  readonly actions: readonly ReconcileAction[];
  readonly outcomes: readonly ActionOutcome[];
  /** Observing or planning failed: no action was planned. */
  readonly error?: string;
  /** Another run is scheduled after a backoff. */
  readonly requeued: boolean;
  /** Not run: this replica is not the leader. */
  readonly notLeader?: true;
}

export class Reconciler {
  readonly #options: ReconcilerOptions;
  readonly #logger: Logger;
  readonly #debounceMs: number;
  readonly #initialBackoffMs: number;
  readonly #maxBackoffMs: number;
  #enabled = false;
  /** Aborted when leadership ends; a new one per term. */
  #term = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #timerDue = 0;
  /** Earliest time the next triggered run may start (the backoff after a failed run). */
  #notBefore = 0;
  #failures = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #running = false;
  #dirty = false;
  readonly #memo = new PolicyCheckMemo();

  constructor(options: ReconcilerOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#debounceMs = options.debounceMs ?? 100;
    this.#initialBackoffMs = options.backoff?.initialMs ?? 250;
    this.#maxBackoffMs = options.backoff?.maxMs ?? 60_000;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  /** Leader election's callback: true on acquiring the Lease (reconciles everything), false on losing it. */
  setEnabled(leading: boolean): void {
    if (leading === this.#enabled) return;
    this.#enabled = leading;
    if (leading) {
      this.#term = new AbortController();
      this.#failures = 0;
      this.#notBefore = 0;
      this.#logger.info('reconciler enabled (leader)');
      this.trigger();
    } else {
      this.#term.abort();
      this.#clearTimer();
      this.#dirty = false;
      this.#logger.info('reconciler disabled (not the leader)');
    }
  }

  /** Something changed: reconcile soon (debounced). Ignored while not the leader. */
  trigger(): void {
    if (!this.#enabled) return;
    if (this.#running) {
      this.#dirty = true;
      return;
    }
    this.#schedule(Math.max(this.#debounceMs, this.#notBefore - Date.now()));
  }

  /** Reconciles now (after a run in flight), ignoring debounce and backoff; resolves with what it did. */
  runOnce(): Promise<ReconcileRun> {
    this.#clearTimer();
    const run = this.#queue.then(() => this.#run());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Stops: no further runs; resolves once a run in flight has finished. */
  async close(): Promise<void> {
    this.setEnabled(false);
    await this.#queue;
  }

  #schedule(delayMs: number): void {
    const due = Date.now() + delayMs;
    // An earlier timer already covers this trigger; a later one (backoff) gives way to nothing.
    if (this.#timer !== undefined && this.#timerDue <= due) return;
    this.#clearTimer();
    this.#timerDue = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.runOnce();
    }, delayMs);
    this.#timer.unref();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #run(): Promise<ReconcileRun> {
    if (!this.#enabled) return { actions: [], outcomes: [], requeued: false, notLeader: true };
    this.#running = true;
    this.#dirty = false;
    let run: ReconcileRun;
    try {
      run = await this.#reconcile(this.#term);
    } finally {
      this.#running = false;
      if (this.#triggeredDuringRun()) this.trigger();
    }
    try {
      this.#options.onRun?.(run);
    } catch (e: unknown) {
      this.#logger.warn({ error: messageOf(e) }, 'reconcile: onRun listener threw');
    }
    return run;
  }

  /** Whether trigger() was called while the run was in flight (and is still worth acting on). */
  #triggeredDuringRun(): boolean {
    return this.#dirty && this.#enabled;
  }

  async #reconcile(term: AbortController): Promise<ReconcileRun> {
    let actions: ReconcileAction[];
    try {
      const observed = await this.#options.observe();
      actions = planPolicies({ ...observed, settings: this.#options.settings, now: this.#options.now?.() ?? new Date(), memo: this.#memo });
      this.#memo.retainOnly(observed.policies);
    } catch (e: unknown) {
      const error = messageOf(e);
      this.#logger.warn({ error }, 'reconcile: cannot observe or plan; retrying after a backoff');
      return { actions: [], outcomes: [], error, requeued: this.#requeue(true, term) };
    }
    let outcomes: ActionOutcome[] = [];
    if (actions.length > 0) {
      try {
        outcomes = await this.#options.executor.execute(actions, { signal: term.signal });
      } catch (e: unknown) {
        // The executor contract says it never rejects; a broken one must not stop the loop.
        const error = messageOf(e);
        this.#logger.warn({ error }, 'reconcile: the executor failed; retrying after a backoff');
        return { actions, outcomes: [], error, requeued: this.#requeue(true, term) };
      }
    }
    const redo = outcomes.filter(needsRequeue).length;
    if (actions.length > 0) this.#logger.info({ actions: actions.length, redo }, 'reconciled');
    return { actions, outcomes, requeued: this.#requeue(redo > 0, term) };
  }

  /** After a run: schedule the retry when `failed`, else reset the backoff. Returns whether it requeued. */
  #requeue(failed: boolean, term: AbortController): boolean {
    if (!failed) {
      this.#failures = 0;
      this.#notBefore = 0;
      return false;
    }
    if (term.signal.aborted || !this.#enabled) return false;
    const ceiling = Math.min(this.#maxBackoffMs, this.#initialBackoffMs * 2 ** this.#failures);
    this.#failures++;
    // Jitter between half and all of the ceiling, so that replicas and retries do not synchronise.
    const delay = Math.round(ceiling * (0.5 + 0.5 * (this.#options.random ?? Math.random)()));
    this.#notBefore = Date.now() + delay;
    this.#schedule(delay);
    return true;
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
