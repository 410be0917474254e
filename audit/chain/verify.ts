// `custos audit verify` core (reference/identity-and-audit.md §6 "Verification"): checks a set of
// events in delivery order (stream or spool order, which the shipper's sequence fence keeps equal
// to seq order) for
//   - contiguous `seq` per (gateway_id, boot_id)              → 'gap' / 'out-of-order'
//   - contiguous `session_seq` per session chain              → 'gap' / 'out-of-order'
//   - chain continuity: prev_hash = previous hash or genesis  → 'chain-break'
//   - each hash recomputed                                    → 'hash-mismatch'
// Delivery is at-least-once, so repeated event_ids are tolerated: the first copy is verified, the
// others are listed in `duplicates` (a copy whose content differs is a finding, 'duplicate').
import type { AuditEvent } from '../event.ts';
import { canonicalize } from './jcs.ts';
import { chainHash, chainKey, genesisHash } from './hash-chain.ts';

export type FindingKind = 'gap' | 'hash-mismatch' | 'chain-break' | 'duplicate' | 'out-of-order';

export interface Finding {
  readonly kind: FindingKind;
  /** 'boot' for gateway seq findings, 'session' for session chain findings. */
  readonly scope: 'boot' | 'session' | 'event';
  readonly gateway_id: string;
  readonly boot_id: string;
  readonly session?: string;
  readonly event_id?: string;
  readonly seq?: number;
  readonly session_seq?: number;
  /** For gaps: the first and last missing number (seq or session_seq, per scope). */
  readonly missing?: { readonly from: number; readonly to: number };
  readonly message: string;
}

export interface Duplicate {
  readonly event_id: string;
  readonly seq: number;
  readonly boot_id: string;
  /** How many extra copies were seen. */
  readonly copies: number;
}

export interface VerifyReport {
  /** True when there are no findings (tolerated duplicates do not count). */
  readonly ok: boolean;
  readonly events: number;
  readonly boots: number;
  readonly sessions: number;
  readonly findings: readonly Finding[];
  readonly duplicates: readonly Duplicate[];
}

export interface VerifyOptions {
  /**
   * Accept a suffix of the log (e.g. a stream the archiver trimmed with MINID): each boot's and each
   * session's first event is taken as the start, and its prev_hash is not checked against genesis.
   */
  readonly partial?: boolean;
}

interface BootState { readonly gateway_id: string; readonly boot_id: string; expected: number; seen: boolean }
interface SessionState { lastHash: string; expected: number; seen: boolean }

export function verifyEvents(events: readonly AuditEvent[], options: VerifyOptions = {}): VerifyReport {
  const findings: Finding[] = [];
  const duplicates = new Map<string, Duplicate & { copies: number }>();
  const firstCopy = new Map<string, string>();
  const boots = new Map<string, BootState>();
  const sessions = new Map<string, SessionState>();
  const partial = options.partial === true;

  for (const event of events) {
    const base = { gateway_id: event.gateway_id, boot_id: event.boot_id, event_id: event.event_id, seq: event.seq };

    // At-least-once delivery: verify only the first copy of an event_id.
    const canonical = canonicalize(event);
    const earlier = firstCopy.get(event.event_id);
    if (earlier !== undefined) {
      if (earlier === canonical) {
        const dup = duplicates.get(event.event_id);
        if (dup) dup.copies++;
        else duplicates.set(event.event_id, { event_id: event.event_id, seq: event.seq, boot_id: event.boot_id, copies: 1 });
      } else {
        findings.push({ ...base, kind: 'duplicate', scope: 'event', message: `event_id ${event.event_id} seen twice with different content` });
      }
      continue;
    }
    firstCopy.set(event.event_id, canonical);

    // seq per (gateway_id, boot_id).
    const bootKey = `${event.gateway_id}\u0000${event.boot_id}`;
    let boot = boots.get(bootKey);
    if (!boot) {
      boot = { gateway_id: event.gateway_id, boot_id: event.boot_id, expected: 1, seen: false };
      boots.set(bootKey, boot);
    }
    if (partial && !boot.seen) boot.expected = event.seq;
    boot.seen = true;
    if (event.seq > boot.expected) {
      findings.push({ ...base, kind: 'gap', scope: 'boot', missing: { from: boot.expected, to: event.seq - 1 },
        message: `seq ${boot.expected}..${event.seq - 1} missing before seq ${event.seq}` });
      boot.expected = event.seq + 1;
    } else if (event.seq < boot.expected) {
      findings.push({ ...base, kind: 'out-of-order', scope: 'boot', message: `seq ${event.seq} after seq ${boot.expected - 1}` });
    } else {
      boot.expected = event.seq + 1;
    }

    // The session chain.
    const session = chainKey(event);
    const sessionKey = `${bootKey}\u0000${session}`;
    const withSession = { ...base, session, session_seq: event.session_seq };
    let state = sessions.get(sessionKey);
    if (!state) {
      state = { lastHash: genesisHash(session), expected: 1, seen: false };
      sessions.set(sessionKey, state);
    }
    const first = !state.seen;
    if (partial && first) {
      state.expected = event.session_seq;
      state.lastHash = event.prev_hash;
    }
    state.seen = true;
    if (event.session_seq > state.expected) {
      findings.push({ ...withSession, kind: 'gap', scope: 'session', missing: { from: state.expected, to: event.session_seq - 1 },
        message: `session_seq ${state.expected}..${event.session_seq - 1} of session ${session} missing` });
    } else if (event.session_seq < state.expected) {
      findings.push({ ...withSession, kind: 'out-of-order', scope: 'session',
        message: `session_seq ${event.session_seq} of session ${session} after ${state.expected - 1}` });
    }
    if (event.prev_hash !== state.lastHash) {
      findings.push({ ...withSession, kind: 'chain-break', scope: 'session',
        message: `prev_hash of session ${session} #${event.session_seq} does not match the previous event's hash` });
    }
    const recomputed = chainHash(event.prev_hash, event);
    if (recomputed !== event.hash) {
      findings.push({ ...withSession, kind: 'hash-mismatch', scope: 'event', message: `hash of event ${event.event_id} does not match its content` });
    }
    // Continue the chain from the stored hash so one modified event yields one mismatch, not a cascade.
    state.lastHash = event.hash;
    state.expected = Math.max(state.expected, event.session_seq + 1);
  }

  return {
    ok: findings.length === 0,
    events: events.length,
    boots: boots.size,
    sessions: sessions.size,
    findings,
    duplicates: [...duplicates.values()],
  };
}
