// Jittered exponential backoff for reconnect loops (reference/kubernetes.md §12: a naive restart
// loop floods the API server, kubernetes-client/javascript#1933). Pure: the caller passes the
// time and may pass the random source, so tests need no clock and no timers.
//
// The attempt count resets only after a *healthy period* (a connection that stayed up for
// `resetAfterMs`), not on every successful connect: a watch that connects and then dies at once,
// over and over, is the flooding case, and it must keep backing off.

export type Jitter = 'full' | 'equal';

export interface BackoffOptions {
  /** First delay before jitter (default 1000 ms). */
  readonly initialMs?: number;
  /** Cap of the delay before jitter (default 30 000 ms). */
  readonly maxMs?: number;
  /** Growth per consecutive failure (default 2). */
  readonly factor?: number;
  /**
   * `full`: uniform in [0, d); `equal` (default): uniform in [d/2, d), which keeps a floor so
   * that a burst of failures can never retry back to back.
   */
  readonly jitter?: Jitter;
  /** Healthy time after which the next failure starts again from `initialMs` (default 60 000 ms). */
  readonly resetAfterMs?: number;
  /** Uniform random in [0, 1) (default Math.random). */
  readonly random?: () => number;
}

export const DEFAULT_BACKOFF = {
  initialMs: 1000,
  maxMs: 30_000,
  factor: 2,
  jitter: 'equal',
  resetAfterMs: 60_000,
} as const satisfies Required<Omit<BackoffOptions, 'random'>>;

const ALMOST_ONE = 1 - Number.EPSILON;

export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #factor: number;
  readonly #jitter: Jitter;
  readonly #resetAfterMs: number;
  readonly #random: () => number;
  #attempt = 0;
  #healthySince: number | undefined;

  constructor(options: BackoffOptions = {}) {
    this.#initialMs = options.initialMs ?? DEFAULT_BACKOFF.initialMs;
    this.#maxMs = options.maxMs ?? DEFAULT_BACKOFF.maxMs;
    this.#factor = options.factor ?? DEFAULT_BACKOFF.factor;
    this.#jitter = options.jitter ?? DEFAULT_BACKOFF.jitter;
    this.#resetAfterMs = options.resetAfterMs ?? DEFAULT_BACKOFF.resetAfterMs;
    this.#random = options.random ?? Math.random;
    if (!(this.#initialMs > 0) || !(this.#maxMs >= this.#initialMs) || !(this.#factor >= 1) || !(this.#resetAfterMs >= 0)) {
      throw new RangeError(`invalid backoff: initialMs ${this.#initialMs}, maxMs ${this.#maxMs}, factor ${this.#factor}, resetAfterMs ${this.#resetAfterMs}`);
    }
  }

  /** Consecutive failures counted so far (0 after a reset). */
  get attempts(): number {
    return this.#attempt;
  }

  /** The operation is working as of `now` (a connection is up); starts the healthy period if none is running. */
  healthy(now: number): void {
    this.#healthySince ??= now;
  }

  /** A failure at `now`: the delay to wait before the next attempt, in milliseconds. */
  failed(now: number): number {
    if (this.#healthySince !== undefined && now - this.#healthySince >= this.#resetAfterMs) this.#attempt = 0;
    this.#healthySince = undefined;
    // factor ** attempt may reach Infinity after many failures; the cap absorbs it.
    const ceiling = Math.min(this.#maxMs, this.#initialMs * this.#factor ** this.#attempt);
    this.#attempt += 1;
    // A random source outside [0, 1) must not push the delay past the ceiling (or below 0).
    const raw = this.#random();
    const r = Number.isFinite(raw) && raw > 0 ? Math.min(raw, ALMOST_ONE) : 0;
    return this.#jitter === 'full' ? Math.floor(ceiling * r) : Math.floor(ceiling / 2 + (ceiling / 2) * r);
  }

  /** Forgets every failure (an explicit success that should not wait out a healthy period). */
  reset(): void {
    this.#attempt = 0;
    this.#healthySince = undefined;
  }
}
