import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decideLease, leaseExpiry, releasedRecord, sameRecord, type LeaseRecord } from './lease-decision.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const held = (holder: string, renewTime: number | undefined, overrides: Partial<LeaseRecord> = {}): LeaseRecord => ({
  holderIdentity: holder, leaseDurationSeconds: 15, acquireTime: T0 - 60_000, renewTime, leaseTransitions: 3, ...overrides,
});

describe('decideLease', () => {
  it('creates an absent Lease with us as holder and no transitions', () => {
    assert.deepEqual(decideLease({ current: undefined, identity: 'pod-a', now: T0, observedAt: T0, leaseDurationSeconds: 15 }), {
      action: 'create', record: { holderIdentity: 'pod-a', leaseDurationSeconds: 15, acquireTime: T0, renewTime: T0, leaseTransitions: 0 },
    });
  });

  it('renews our own Lease, keeping acquireTime and the transition count', () => {
    const d = decideLease({ current: held('pod-a', T0 - 2000), identity: 'pod-a', now: T0, observedAt: T0 - 2000, leaseDurationSeconds: 15 });
    assert.deepEqual(d, { action: 'renew', record: { ...held('pod-a', T0), renewTime: T0 } });
  });

  it('renews a Lease that names us even when it looks expired (a restarted pod with the same name)', () => {
    const d = decideLease({ current: held('pod-a', T0 - 3_600_000), identity: 'pod-a', now: T0, observedAt: T0 - 3_600_000, leaseDurationSeconds: 15 });
    assert.equal(d.action, 'renew');
  });

  const waits: Array<{ name: string; renewTime: number | undefined; observedAt: number; expiresAt: number }> = [
    { name: 'a live lease (renewed and observed 5 s ago)', renewTime: T0 - 5000, observedAt: T0 - 5000, expiresAt: T0 + 10_000 },
    { name: 'a lease whose renewTime is old but that we first saw 5 s ago (a candidate that just started)', renewTime: T0 - 3_600_000, observedAt: T0 - 5000, expiresAt: T0 + 10_000 },
    { name: 'a lease unchanged for 20 s by our clock but renewed 5 s ago by the holder\'s (our clock runs ahead)', renewTime: T0 - 5000, observedAt: T0 - 20_000, expiresAt: T0 + 10_000 },
    { name: 'a lease exactly at its expiry', renewTime: T0 - 15_000, observedAt: T0 - 15_000, expiresAt: T0 },
  ];
  for (const c of waits) {
    it(`waits on ${c.name}`, () => {
      assert.deepEqual(decideLease({ current: held('pod-b', c.renewTime), identity: 'pod-a', now: T0, observedAt: c.observedAt, leaseDurationSeconds: 15 }), {
        action: 'wait', holder: 'pod-b', expiresAt: c.expiresAt,
      });
    });
  }

  it('takes over once both the holder\'s renewTime and our observation are older than the duration, counting a transition', () => {
    const d = decideLease({ current: held('pod-b', T0 - 15_001), identity: 'pod-a', now: T0, observedAt: T0 - 15_001, leaseDurationSeconds: 15 });
    assert.deepEqual(d, { action: 'acquire', record: { holderIdentity: 'pod-a', leaseDurationSeconds: 15, acquireTime: T0, renewTime: T0, leaseTransitions: 4 } });
  });

  it('judges expiry by the duration written in the Lease, not our own', () => {
    const d = decideLease({ current: held('pod-b', T0 - 3000, { leaseDurationSeconds: 2 }), identity: 'pod-a', now: T0, observedAt: T0 - 3000, leaseDurationSeconds: 15 });
    assert.equal(d.action, 'acquire');
  });

  it('relies on observation alone when the Lease has no renewTime', () => {
    assert.equal(decideLease({ current: held('pod-b', undefined), identity: 'pod-a', now: T0, observedAt: T0 - 1000, leaseDurationSeconds: 15 }).action, 'wait');
    assert.equal(decideLease({ current: held('pod-b', undefined), identity: 'pod-a', now: T0, observedAt: T0 - 16_000, leaseDurationSeconds: 15 }).action, 'acquire');
  });

  it('acquires a released Lease (empty holder) at once, counting the transition as client-go does', () => {
    const released = releasedRecord(held('pod-b', T0 - 100), T0 - 100);
    const d = decideLease({ current: released, identity: 'pod-a', now: T0, observedAt: T0, leaseDurationSeconds: 15 });
    assert.deepEqual(d, { action: 'acquire', record: { holderIdentity: 'pod-a', leaseDurationSeconds: 15, acquireTime: T0, renewTime: T0, leaseTransitions: 4 } });
  });
});

describe('releasedRecord', () => {
  it('clears the holder and shortens the duration to 1 s, keeping the transition count', () => {
    assert.deepEqual(releasedRecord(held('pod-a', T0 - 1000), T0), { holderIdentity: '', leaseDurationSeconds: 1, acquireTime: T0, renewTime: T0, leaseTransitions: 3 });
  });
});

describe('leaseExpiry and sameRecord', () => {
  it('takes the later of the two views', () => {
    assert.equal(leaseExpiry(held('b', T0), T0 - 10_000), T0 + 15_000);
    assert.equal(leaseExpiry(held('b', T0 - 10_000), T0), T0 + 15_000);
  });

  it('tells records apart by every field', () => {
    const a = held('b', T0);
    assert.equal(sameRecord(a, { ...a }), true);
    assert.equal(sameRecord(undefined, undefined), true);
    assert.equal(sameRecord(a, undefined), false);
    for (const change of [{ holderIdentity: 'c' }, { renewTime: T0 + 1 }, { acquireTime: T0 }, { leaseTransitions: 4 }, { leaseDurationSeconds: 16 }]) {
      assert.equal(sameRecord(a, { ...a, ...change }), false, JSON.stringify(change));
    }
  });
});
