import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { AuditEvent, AuditEventDraft } from '../event.ts';
import { chainHash, chainKey, genesisHash } from './hash-chain.ts';
import { verifyEvents, type FindingKind } from './verify.ts';

const BOOT = '01900000-0000-7000-8000-000000000001';

/** Builds a well-formed log the way the spool writer does: seq per boot, chains per session. */
function buildLog(sessions: readonly (string | undefined)[]): AuditEvent[] {
  const heads = new Map<string, { hash: string; n: number }>();
  return sessions.map((session_id, i) => {
    const draft: AuditEventDraft = { event_type: 'db.query.attempt', time: '2025-01-01T00:00:00.000Z', ...(session_id ? { session_id } : {}),
      command: { text: `select $${i + 1}`, digest: 'd'.repeat(64), protocol: 'simple' } };
    const key = chainKey({ ...draft, boot_id: BOOT });
    const head = heads.get(key) ?? { hash: genesisHash(key), n: 0 };
    const partial = { ...draft, schema_version: '1.0.0', event_id: `e-${i + 1}`, observed_time: '2025-01-01T00:00:00.000Z',
      gateway_id: 'gw', boot_id: BOOT, seq: i + 1, session_seq: head.n + 1, prev_hash: head.hash };
    const event: AuditEvent = { ...partial, hash: chainHash(head.hash, partial) };
    heads.set(key, { hash: event.hash, n: event.session_seq });
    return event;
  });
}

function kinds(events: readonly AuditEvent[]): FindingKind[] {
  return verifyEvents(events).findings.map((f) => f.kind).sort();
}

/** Re-seals an event after tampering, as a forger who knows the algorithm would. */
function reseal(event: Omit<AuditEvent, 'hash'>): AuditEvent {
  return { ...event, hash: chainHash(event.prev_hash, event) };
}

describe('chainHash', () => {
  it('ignores a hash member when the event still carries one', () => {
    const [e] = buildLog(['s']);
    assert.ok(e);
    assert.equal(chainHash(e.prev_hash, e), e.hash);
  });

  it('derives the genesis from the session id when a chain starts', () => {
    assert.equal(genesisHash('s1'), createHash('sha256').update('custos-genesis:s1').digest('hex'));
    assert.notEqual(genesisHash('s1'), genesisHash('s2'));
    assert.match(genesisHash('s1'), /^[0-9a-f]{64}$/);
  });
});

describe('verifyEvents', () => {
  const sessions = ['a', 'b', 'a', undefined, 'a', 'b', 'a'];

  it('reports no findings when the log is intact', () => {
    const report = verifyEvents(buildLog(sessions));
    assert.deepEqual(report.findings, []);
    assert.equal(report.ok, true);
    assert.equal(report.events, 7);
    assert.equal(report.boots, 1);
    assert.equal(report.sessions, 3);
  });

  const cases: readonly { name: string; tamper: (log: AuditEvent[]) => AuditEvent[]; expected: FindingKind[] }[] = [
    {
      name: 'an event is modified',
      tamper: (log) => log.map((e) => (e.seq === 3 ? { ...e, command: { text: 'drop table t', digest: 'x', protocol: 'simple' as const } } : e)),
      expected: ['hash-mismatch'],
    },
    {
      name: 'an event is modified and its own hash recomputed',
      tamper: (log) => log.map((e) => (e.seq === 3 ? reseal({ ...e, operation: 'SELECT' }) : e)),
      // The next event of session a (seq 5) still points at the original hash.
      expected: ['chain-break'],
    },
    {
      name: 'an event is deleted',
      tamper: (log) => log.filter((e) => e.seq !== 3),
      // seq gap, session_seq gap and prev_hash break at seq 5.
      expected: ['chain-break', 'gap', 'gap'],
    },
    {
      name: 'two events of one session are swapped',
      tamper: (log) => { const out = [...log]; const [x, y] = [out[2], out[4]]; if (x && y) { out[2] = y; out[4] = x; } return out; },
      expected: ['chain-break', 'chain-break', 'chain-break', 'gap', 'gap', 'out-of-order', 'out-of-order', 'out-of-order'],
    },
    {
      name: 'a forged event is inserted with a valid hash',
      tamper: (log) => {
        const prev = log[2];
        assert.ok(prev);
        const forged = reseal({ ...prev, event_id: 'forged', seq: 4, session_seq: 3, prev_hash: prev.hash, operation: 'DELETE' });
        return [...log.slice(0, 3), forged, ...log.slice(3)];
      },
      // The forgery takes seq 4 (the real seq 4 is then out of order) and the real session a #3
      // (seq 5) no longer follows the chain head.
      expected: ['chain-break', 'out-of-order', 'out-of-order'],
    },
    {
      name: 'the last event is deleted',
      tamper: (log) => log.slice(0, -1),
      // Truncation of the tail is invisible to the chain alone: signed checkpoints catch it.
      expected: [],
    },
  ];
  for (const { name, tamper, expected } of cases) {
    it(`reports ${expected.length === 0 ? 'nothing' : expected.join(', ')} when ${name}`, () => {
      assert.deepEqual(kinds(tamper(buildLog(sessions))), expected);
    });
  }

  it('tolerates and lists duplicates when an event is delivered twice', () => {
    const log = buildLog(sessions);
    const again = log[3];
    assert.ok(again);
    const report = verifyEvents([...log.slice(0, 5), again, ...log.slice(5), again]);
    assert.equal(report.ok, true);
    assert.deepEqual(report.duplicates, [{ event_id: again.event_id, seq: again.seq, boot_id: BOOT, copies: 2 }]);
  });

  it('reports a duplicate when two events share an event_id but differ', () => {
    const log = buildLog(sessions);
    const first = log[1];
    assert.ok(first);
    const report = verifyEvents([...log, { ...first, operation: 'X' }]);
    assert.deepEqual(report.findings.map((f) => f.kind), ['duplicate']);
  });

  it('accepts a suffix of the log when partial is set', () => {
    const suffix = buildLog(sessions).slice(2);
    assert.deepEqual(kinds(suffix).length > 0, true);
    assert.deepEqual(verifyEvents(suffix, { partial: true }).findings, []);
  });

  it('keeps chains of different boots apart when a session id repeats', () => {
    const one = buildLog(['s', 's']);
    const two = buildLog(['s']).map((e) => {
      const boot_id = '01900000-0000-7000-8000-000000000002';
      return reseal({ ...e, boot_id, event_id: 'other' });
    });
    assert.deepEqual(verifyEvents([...one, ...two]).findings, []);
  });
});
