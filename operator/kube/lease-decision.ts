// Leader election on a coordination.k8s.io/v1 Lease, the decision half (client-go
// tools/leaderelection, leaderelection.go tryAcquireOrRenew). Pure: given the Lease as read (or
// absent), our identity, the time and when we first saw this version of the record, it says what
// to write, or that someone else holds it. The elector (leader-election.ts) does the I/O and
// writes with the read resourceVersion, so two candidates deciding at once cannot both win.
//
// Expiry is judged twice, and both must agree: the holder's own renewTime plus the duration
// (what the record says), and our local observation that the record has not changed for the
// duration (what client-go uses, because renewTime is another node's clock). A candidate whose
// clock runs ahead cannot steal a live lease, and one that has just started waits one full
// duration of silence before taking over, as client-go's candidates do.

export interface LeaseRecord {
  readonly holderIdentity: string;
  readonly leaseDurationSeconds: number;
  /** Milliseconds since the epoch; undefined when absent or unparseable. */
  readonly acquireTime: number | undefined;
  readonly renewTime: number | undefined;
  readonly leaseTransitions: number;
}

export interface LeaseDecisionInput {
  /** The record as read; undefined when the Lease does not exist. */
  readonly current: LeaseRecord | undefined;
  readonly identity: string;
  readonly now: number;
  /** When we first saw `current` unchanged (local clock). */
  readonly observedAt: number;
  /** The duration we write into the lease when we hold it. */
  readonly leaseDurationSeconds: number;
}

export type LeaseDecision =
  | { readonly action: 'create'; readonly record: LeaseRecord }
  /** Take over from another holder (or an empty, released lease). */
  | { readonly action: 'acquire'; readonly record: LeaseRecord }
  | { readonly action: 'renew'; readonly record: LeaseRecord }
  | { readonly action: 'wait'; readonly holder: string; readonly expiresAt: number };

/** When the current holder's claim lapses: the later of the holder's and our own view. */
export function leaseExpiry(current: LeaseRecord, observedAt: number): number {
  const durationMs = current.leaseDurationSeconds * 1000;
  const byRecord = current.renewTime === undefined ? Number.NEGATIVE_INFINITY : current.renewTime + durationMs;
  return Math.max(byRecord, observedAt + durationMs);
}

export function decideLease(input: LeaseDecisionInput): LeaseDecision {
  const { current, identity, now, leaseDurationSeconds } = input;
  if (current === undefined) {
    return { action: 'create', record: { holderIdentity: identity, leaseDurationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 } };
  }
  if (current.holderIdentity === identity) {
    return { action: 'renew', record: { ...current, leaseDurationSeconds, acquireTime: current.acquireTime ?? now, renewTime: now } };
  }
  if (current.holderIdentity !== '') {
    const expiresAt = leaseExpiry(current, input.observedAt);
    if (now <= expiresAt) return { action: 'wait', holder: current.holderIdentity, expiresAt };
  }
  // client-go counts every change of holder, a released (empty) lease included.
  return {
    action: 'acquire',
    record: { holderIdentity: identity, leaseDurationSeconds, acquireTime: now, renewTime: now, leaseTransitions: current.leaseTransitions + 1 },
  };
}

/** What a leader writes when it steps down on purpose: nobody holds it, so a candidate takes it at once. */
export function releasedRecord(current: LeaseRecord, now: number): LeaseRecord {
  return { holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaseTransitions: current.leaseTransitions };
}

/** Two records are the same version of the claim (the elector restarts its observation clock when they differ). */
export function sameRecord(a: LeaseRecord | undefined, b: LeaseRecord | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.holderIdentity === b.holderIdentity && a.leaseDurationSeconds === b.leaseDurationSeconds && a.renewTime === b.renewTime
    && a.acquireTime === b.acquireTime && a.leaseTransitions === b.leaseTransitions;
}
