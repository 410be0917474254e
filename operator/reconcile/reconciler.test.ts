// The reconcile loop's scheduling, on mocked timers (node:test MockTimers drive setTimeout and
// Date, so every delay is exact and no test waits on the wall clock): leader-only runs, debounce,
// requeue with backoff, reset after success, and stopping at once when leadership is lost.
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../webhook/injection-settings.ts';
import type { ActionExecutor, ActionOutcome, OutcomeResult, ReconcileAction } from './actions.ts';
import type { ObservedState } from './observed.ts';
import { Reconciler, type ReconcileRun } from './reconciler.ts';

const POLICY: AccessPolicy = {
  apiVersion: 'custos.io/v1alpha1',
  kind: 'AccessPolicy',
  metadata: { name: 'billing', namespace: 'payments', uid: 'u1', generation: 1, resourceVersion: '1' },
  spec: { targets: [{ name: 'db', protocol: 'postgres', host: 'db', port: 5432 }], rules: [{ name: 'r', action: 'deny' }] },
};
/** A world the planner always has two actions for (nothing ever gets applied here). */
const WORLD: ObservedState = { policies: [POLICY], configMaps: [], pods: [], namespaces: [] };

/** Executes nothing; answers each action with the next scripted result (default `applied`). */
class ScriptedExecutor implements ActionExecutor {
  readonly calls: Array<{ actions: readonly ReconcileAction[]; signal: AbortSignal | undefined }> = [];
  results: OutcomeResult[] = [];
  /** When set, execute() waits for it before answering (a run in flight). */
  gate: Promise<void> | undefined;

  async execute(actions: readonly ReconcileAction[], options: { readonly signal?: AbortSignal } = {}): Promise<ActionOutcome[]> {
    this.calls.push({ actions, signal: options.signal });
    if (this.gate !== undefined) await this.gate;
    return actions.map((action) => {
      const result = options.signal?.aborted === true ? 'skipped' : this.results.shift() ?? 'applied';
      return { action, result, detail: result === 'skipped' ? 'not the leader any more' : result };
    });
  }
}

interface Harness {
  readonly reconciler: Reconciler;
  readonly executor: ScriptedExecutor;
  readonly runs: ReconcileRun[];
  observed: number;
  observe: () => ObservedState;
  /** Resolves with the next completed run. */
  nextRun(): Promise<ReconcileRun>;
}

function harness(options: { debounceMs?: number; maxMs?: number } = {}): Harness {
  const executor = new ScriptedExecutor();
  const waiters: Array<(run: ReconcileRun) => void> = [];
  const h: Harness = {
    executor,
    runs: [],
    observed: 0,
    observe: () => WORLD,
    nextRun: () => new Promise((resolve) => { waiters.push(resolve); }),
    reconciler: undefined as unknown as Reconciler,
  };
  (h as { reconciler: Reconciler }).reconciler = new Reconciler({
    observe: () => {
      h.observed++;
      return h.observe();
    },
    settings: DEFAULT_INJECTION_SETTINGS,
    executor,
    logger: pino({ level: 'silent' }),
    debounceMs: options.debounceMs ?? 100,
    backoff: { initialMs: 200, maxMs: options.maxMs ?? 1600 },
    now: () => new Date('2025-03-01T12:00:00Z'),
    random: () => 1 - Number.EPSILON, // the full backoff ceiling (jitter at its top)
    onRun: (run) => {
      h.runs.push(run);
      for (const w of waiters.splice(0)) w(run);
    },
  });
  return h;
}

/** Advances the mocked clock and lets the promises that timers started settle. */
async function advance(ms: number): Promise<void> {
  mock.timers.tick(ms);
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

describe('Reconciler', () => {
  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  });
  afterEach(() => {
    mock.timers.reset();
  });

  it('does nothing while not the leader: runOnce reports notLeader, trigger schedules nothing', async () => {
    const h = harness();
    assert.deepEqual(await h.reconciler.runOnce(), { actions: [], outcomes: [], requeued: false, notLeader: true });
    h.reconciler.trigger();
    await advance(60_000);
    assert.equal(h.observed, 0);
    assert.equal(h.executor.calls.length, 0);
  });

  it('reconciles everything once on becoming the leader, after the debounce', async () => {
    const h = harness();
    h.reconciler.setEnabled(true);
    await advance(99);
    assert.equal(h.observed, 0, 'not before the debounce');
    const run = h.nextRun();
    await advance(1);
    assert.deepEqual((await run).actions.map((a) => a.kind), ['apply-configmap', 'update-status']);
    assert.equal(h.executor.calls.length, 1);
  });

  it('runs once for a burst of triggers', async () => {
    const h = harness();
    h.reconciler.setEnabled(true);
    for (let i = 0; i < 10; i++) {
      h.reconciler.trigger();
      await advance(5);
    }
    await advance(10_000);
    assert.equal(h.observed, 1);
  });

  it('runs again after a run when triggered during it', async () => {
    const h = harness();
    let release = (): void => undefined;
    h.executor.gate = new Promise((r) => { release = r; });
    h.reconciler.setEnabled(true);
    await advance(100);
    assert.equal(h.executor.calls.length, 1, 'first run in flight');
    h.reconciler.trigger();
    await advance(10_000);
    assert.equal(h.executor.calls.length, 1, 'no overlapping run');
    h.executor.gate = undefined;
    release();
    await advance(0);
    await advance(100);
    assert.equal(h.executor.calls.length, 2);
  });

  it('requeues conflicts and failures with a doubling backoff up to the maximum, and resets it after a clean run', async () => {
    const h = harness({ maxMs: 800 });
    // Four failed runs (one failed action each), then a clean one.
    h.executor.results = ['conflict', 'applied', 'failed', 'applied', 'applied', 'conflict', 'failed', 'applied'];
    h.reconciler.setEnabled(true);
    await advance(100);
    assert.equal(h.runs.length, 1);
    assert.equal(h.runs[0]?.requeued, true);
    const expectedDelays = [200, 400, 800, 800];
    for (const [i, delay] of expectedDelays.entries()) {
      await advance(delay - 1);
      assert.equal(h.runs.length, i + 1, `retry ${i + 1} not before ${delay} ms`);
      await advance(1);
      assert.equal(h.runs.length, i + 2, `retry ${i + 1} after ${delay} ms`);
    }
    assert.equal(h.runs.at(-1)?.requeued, false, 'the fifth run is clean');
    await advance(60_000);
    assert.equal(h.runs.length, 5, 'nothing more after a clean run');
    // A new failure starts again from the initial delay.
    h.executor.results = ['failed'];
    h.reconciler.trigger();
    await advance(100);
    assert.equal(h.runs.length, 6);
    await advance(200);
    assert.equal(h.runs.length, 7);
  });

  it('holds triggers back until the backoff has passed', async () => {
    const h = harness();
    h.executor.results = ['failed'];
    h.reconciler.setEnabled(true);
    await advance(100);
    h.reconciler.trigger();
    await advance(150);
    assert.equal(h.runs.length, 1, 'the trigger waits for the 200 ms backoff');
    await advance(50);
    assert.equal(h.runs.length, 2);
  });

  it('retries when observing fails (caches not synced), with the error in the run', async () => {
    const h = harness();
    let synced = false;
    h.observe = () => {
      if (!synced) throw new Error('informer caches not synced');
      return WORLD;
    };
    h.reconciler.setEnabled(true);
    await advance(100);
    assert.deepEqual(h.runs[0], { actions: [], outcomes: [], error: 'informer caches not synced', requeued: true });
    synced = true;
    await advance(200);
    assert.equal(h.runs[1]?.actions.length, 2);
  });

  it('stops at once when leadership is lost: the run in flight gets an aborted signal, nothing is requeued', async () => {
    const h = harness();
    let release = (): void => undefined;
    h.executor.gate = new Promise((r) => { release = r; });
    h.reconciler.setEnabled(true);
    await advance(100);
    const signal = h.executor.calls[0]?.signal;
    assert.ok(signal);
    assert.equal(signal.aborted, false);
    const run = h.nextRun();
    h.reconciler.setEnabled(false);
    assert.equal(signal.aborted, true);
    release();
    const finished = await run;
    assert.deepEqual(finished.outcomes.map((o) => o.result), ['skipped', 'skipped']);
    assert.equal(finished.requeued, false);
    h.reconciler.trigger();
    await advance(120_000);
    assert.equal(h.executor.calls.length, 1);
    assert.deepEqual(await h.reconciler.runOnce(), { actions: [], outcomes: [], requeued: false, notLeader: true });
  });

  it('gives each leadership term a fresh signal and reconciles again on re-election', async () => {
    const h = harness();
    h.reconciler.setEnabled(true);
    await advance(100);
    h.reconciler.setEnabled(false);
    h.reconciler.setEnabled(true);
    await advance(100);
    assert.equal(h.executor.calls.length, 2);
    assert.equal(h.executor.calls[0]?.signal?.aborted, true);
    assert.equal(h.executor.calls[1]?.signal?.aborted, false);
  });

  it('keeps running when an onRun listener throws', async () => {
    const executor = new ScriptedExecutor();
    const reconciler = new Reconciler({
      observe: () => WORLD, settings: DEFAULT_INJECTION_SETTINGS, executor, logger: pino({ level: 'silent' }),
      onRun: () => { throw new Error('listener bug'); },
    });
    reconciler.setEnabled(true);
    assert.equal((await reconciler.runOnce()).actions.length, 2);
    assert.equal((await reconciler.runOnce()).actions.length, 2);
    await reconciler.close();
  });

  it('close() disables and waits for the run in flight', async () => {
    const h = harness();
    let release = (): void => undefined;
    h.executor.gate = new Promise((r) => { release = r; });
    h.reconciler.setEnabled(true);
    await advance(100);
    let closed = false;
    const closing = h.reconciler.close().then(() => { closed = true; });
    await advance(0);
    assert.equal(closed, false);
    release();
    await closing;
    assert.equal(h.reconciler.enabled, false);
  });
});
