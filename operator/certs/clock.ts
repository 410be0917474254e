// Time as a dependency: certificate lifetimes and rotation schedules are tested by moving a fake
// clock instead of waiting for real hours to pass.

export interface Clock {
  now(): number;
  /** Calls `fn` once after `ms`; returns the cancel function. */
  setTimer(ms: number, fn: () => void): () => void;
}

/** setTimeout cannot wait longer than 2^31-1 ms (~24.8 days); longer waits are split. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    let handle: NodeJS.Timeout;
    const due = Date.now() + ms;
    const arm = (): void => {
      const left = due - Date.now();
      // unref: a pending rotation must not keep a stopping process alive.
      handle = setTimeout(left > MAX_TIMEOUT_MS ? arm : fn, Math.max(0, Math.min(left, MAX_TIMEOUT_MS)));
      handle.unref();
    };
    arm();
    return () => { clearTimeout(handle); };
  },
};

/** Sleeps on `clock`, resolving early (without error) when `signal` aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve();
      return;
    }
    const onAbort = (): void => {
      cancel();
      resolve();
    };
    const cancel = clock.setTimer(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
