import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Backoff } from './backoff.ts';

/** Delays of `n` consecutive failures at time 0. */
function delays(backoff: Backoff, n: number): number[] {
  return Array.from({ length: n }, () => backoff.failed(0));
}

describe('Backoff', () => {
  it('doubles from 1 s to the 30 s cap when the random source is at its top', () => {
    const b = new Backoff({ jitter: 'full', random: () => 0.999999 });
    assert.deepEqual(delays(b, 8), [999, 1999, 3999, 7999, 15_999, 29_999, 29_999, 29_999]);
  });

  it('waits nothing at the bottom of full jitter and half the ceiling at the bottom of equal jitter', () => {
    assert.deepEqual(delays(new Backoff({ jitter: 'full', random: () => 0 }), 3), [0, 0, 0]);
    assert.deepEqual(delays(new Backoff({ jitter: 'equal', random: () => 0 }), 7), [500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
  });

  it('uses equal jitter by default, so back-to-back retries are impossible', () => {
    assert.deepEqual(delays(new Backoff({ random: () => 0 }), 2), [500, 1000]);
  });

  it('keeps every delay within [ceiling/2, ceiling) for equal jitter and [0, ceiling) for full jitter', () => {
    fc.assert(fc.property(fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 1, maxLength: 40 }), fc.boolean(), (randoms, full) => {
      let i = 0;
      const b = new Backoff({ jitter: full ? 'full' : 'equal', random: () => randoms[i] ?? 0 });
      for (; i < randoms.length; i += 1) {
        const ceiling = Math.min(30_000, 1000 * 2 ** i);
        const d = b.failed(0);
        assert.ok(d >= (full ? 0 : Math.floor(ceiling / 2)) && d < ceiling, `attempt ${i}: ${d} outside the range for ceiling ${ceiling}`);
      }
    }));
  });

  it('starts again from the first delay after a healthy period of resetAfterMs', () => {
    const b = new Backoff({ jitter: 'full', random: () => 0.999999, resetAfterMs: 60_000 });
    delays(b, 4);
    b.healthy(1000);
    assert.equal(b.failed(61_000), 999);
    assert.equal(b.attempts, 1);
  });

  it('keeps growing when each connection dies before the healthy period ends (the flooding case)', () => {
    const b = new Backoff({ jitter: 'full', random: () => 0.999999, resetAfterMs: 60_000 });
    const seen: number[] = [];
    let now = 0;
    for (let i = 0; i < 5; i += 1) {
      b.healthy(now);
      now += 100;
      seen.push(b.failed(now));
    }
    assert.deepEqual(seen, [999, 1999, 3999, 7999, 15_999]);
  });

  it('measures the healthy period from its start, not from the last healthy() call', () => {
    const b = new Backoff({ jitter: 'full', random: () => 0.999999, resetAfterMs: 10_000 });
    delays(b, 3);
    b.healthy(0);
    b.healthy(9000);
    assert.equal(b.failed(10_000), 999);
  });

  it('forgets failures on reset()', () => {
    const b = new Backoff({ jitter: 'full', random: () => 0.999999 });
    delays(b, 5);
    b.reset();
    assert.equal(b.failed(0), 999);
  });

  it('never exceeds the cap after very many failures', () => {
    const b = new Backoff({ jitter: 'full', random: () => 0.999999 });
    delays(b, 5000);
    assert.equal(b.failed(0), 29_999);
  });

  it('clamps a random source that leaves [0, 1)', () => {
    assert.equal(new Backoff({ jitter: 'full', random: () => 7 }).failed(0), 999);
    assert.equal(new Backoff({ jitter: 'full', random: () => Number.NaN }).failed(0), 0);
    assert.equal(new Backoff({ jitter: 'full', random: () => -1 }).failed(0), 0);
  });

  it('refuses nonsensical settings', () => {
    for (const options of [{ initialMs: 0 }, { initialMs: 10, maxMs: 5 }, { factor: 0.5 }, { resetAfterMs: -1 }, { initialMs: Number.NaN }]) {
      assert.throws(() => new Backoff(options), RangeError, JSON.stringify(options));
    }
  });
});
