import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, truncate, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent, AuditEventDraft } from '../event.ts';
import { verifyEvents } from '../chain/verify.ts';
import { isCustosError } from '../../lib/errors.ts';
import { listSegments, segmentPath } from './layout.ts';
import { encodeRecord } from './record-format.ts';
import { readSpool, type SpoolItem } from './spool-reader.ts';
import { isSpoolFull, SpoolWriter, type CommitInfo, type SegmentFile, type SpoolWriterOptions } from './spool-writer.ts';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'custos-spool-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

function draft(i: number, session?: string): AuditEventDraft {
  return { event_type: 'db.query.attempt', time: '2025-01-01T00:00:00.000Z', ...(session ? { session_id: session } : {}),
    command: { text: `select $1 /* ${i} */`, digest: 'a'.repeat(64), protocol: 'simple' } };
}

async function readAll(dir: string): Promise<SpoolItem[]> {
  const items: SpoolItem[] = [];
  for await (const item of readSpool(dir)) items.push(item);
  return items;
}

function eventsOf(items: readonly SpoolItem[]): AuditEvent[] {
  return items.flatMap((i) => (i.kind === 'event' ? [i.event] : []));
}

async function open(dir: string, extra: Partial<SpoolWriterOptions> = {}): Promise<SpoolWriter> {
  return SpoolWriter.open({ dir, gatewayId: 'gw-1', maxBytes: 64 * 1024 * 1024, ...extra });
}

/** A real segment file whose datasync can be held or made to fail. */
function controllableFiles(): { openSegment: (path: string) => Promise<SegmentFile>; syncs: number; hold: () => () => void; failNext: (e: Error) => void } {
  const state = {
    syncs: 0,
    gate: undefined as Promise<void> | undefined,
    failure: undefined as Error | undefined,
  };
  const real = async (path: string): Promise<SegmentFile> => {
    const { open: fsOpen } = await import('node:fs/promises');
    const handle = await fsOpen(path, 'wx');
    return {
      async write(data, position) { await handle.write(data, 0, data.length, position); },
      async datasync() {
        if (state.gate) await state.gate;
        if (state.failure) { const e = state.failure; state.failure = undefined; throw e; }
        state.syncs++;
        await handle.datasync();
      },
      close: () => handle.close(),
    };
  };
  return {
    openSegment: real,
    get syncs() { return state.syncs; },
    hold() {
      let release = (): void => undefined;
      state.gate = new Promise((r) => { release = () => { state.gate = undefined; r(); }; });
      return release;
    },
    failNext(e) { state.failure = e; },
  };
}

describe('SpoolWriter', () => {
  it('group-commits concurrent appends into few datasyncs with contiguous seq and valid chains', async () => {
    const dir = await tempDir();
    const commits: CommitInfo[] = [];
    const writer = await open(dir, { onCommit: (c) => commits.push(c) });
    const sessions = ['s1', 's2', 's3', undefined];
    const appended = await Promise.all(Array.from({ length: 400 }, (_, i) => writer.append(draft(i, sessions[i % 4]))));
    await writer.close();

    assert.deepEqual(appended.map((e) => e.seq), Array.from({ length: 400 }, (_, i) => i + 1));
    assert.ok(commits.length <= 4, `expected few commits, got ${commits.length}`);
    assert.equal(commits.reduce((n, c) => n + c.records, 0), 400);
    const onDisk = eventsOf(await readAll(dir));
    assert.deepEqual(onDisk, appended);
    assert.deepEqual(verifyEvents(onDisk).findings, []);
    assert.deepEqual(onDisk.filter((e) => e.session_id === 's2').map((e) => e.session_seq), Array.from({ length: 100 }, (_, i) => i + 1));
    const gatewayEvents = onDisk.filter((e) => e.session_id === undefined);
    assert.equal(gatewayEvents.length, 100);
    assert.ok(onDisk.every((e) => e.gateway_id === 'gw-1' && e.boot_id === writer.bootId && e.schema_version === '1.0.0'));
  });

  it('resolves an append only after its datasync completed', async () => {
    const dir = await tempDir();
    const files = controllableFiles();
    const writer = await open(dir, { openSegment: files.openSegment, commitIntervalMs: 1 });
    const release = files.hold();
    let resolved = false;
    const pending = writer.append(draft(1)).then((e) => { resolved = true; return e; });
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(resolved, false);
    assert.equal(files.syncs, 0);
    release();
    await pending;
    assert.equal(files.syncs, 1);
    await writer.close();
  });

  it('rotates segments at segmentBytes and reads back in order across them', async () => {
    const dir = await tempDir();
    const writer = await open(dir, { segmentBytes: 2048 });
    for (let i = 0; i < 40; i++) await writer.append(draft(i, 's'));
    await writer.close();
    const segments = await listSegments(dir, writer.bootId);
    assert.ok(segments.length > 3, `segments: ${segments.join(',')}`);
    for (const s of segments.slice(0, -1)) assert.ok((await stat(segmentPath(dir, writer.bootId, s))).size <= 2048);
    assert.deepEqual(eventsOf(await readAll(dir)).map((e) => e.seq), Array.from({ length: 40 }, (_, i) => i + 1));
  });

  it('refuses with ERR_AUDIT_SPOOL_FULL and writes nothing when the spool is full, and accepts again once space is freed', async () => {
    const dir = await tempDir();
    const usages: number[] = [];
    const writer = await open(dir, { maxBytes: 4000, segmentBytes: 1000, onUsage: (u) => usages.push(u) });
    const accepted: AuditEvent[] = [];
    let refused: unknown;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      try { accepted.push(await writer.append(draft(i, 's'))); } catch (e: unknown) { refused = e; }
    }
    assert.ok(isSpoolFull(refused), String(refused));
    assert.ok(isCustosError(refused, 'ERR_AUDIT_SPOOL_FULL'));
    assert.equal(writer.full, true);
    const sizeBefore = writer.usage;
    assert.ok(sizeBefore <= 4000);
    await assert.rejects(writer.append(draft(999, 's')), isSpoolFull);
    assert.equal(writer.usage, sizeBefore);
    assert.equal(eventsOf(await readAll(dir)).length, accepted.length);

    // The shipper deletes the oldest (fully shipped) segment and says so.
    const [oldest] = await listSegments(dir, writer.bootId);
    assert.equal(oldest, 1);
    await unlink(segmentPath(dir, writer.bootId, 1));
    const usage = await writer.refreshUsage();
    assert.ok(usage < sizeBefore);
    assert.equal(writer.full, false);
    assert.equal(usages.at(-1), usage);
    const next = await writer.append(draft(1000, 's'));
    // No seq or chain link was consumed by the refusals.
    assert.equal(next.seq, accepted.length + 1);
    assert.equal(next.prev_hash, accepted.at(-1)?.hash);
    await writer.close();
  });

  it('fails pending appends and stays failed when datasync fails', async () => {
    const dir = await tempDir();
    const files = controllableFiles();
    const writer = await open(dir, { openSegment: files.openSegment });
    await writer.append(draft(0));
    files.failNext(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    const results = await Promise.allSettled([writer.append(draft(1)), writer.append(draft(2))]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(isCustosError(r.reason, 'ERR_AUDIT_SPOOL_FAILED'));
    }
    assert.equal(writer.failed, true);
    await assert.rejects(writer.append(draft(3)), (e: unknown) => isCustosError(e, 'ERR_AUDIT_SPOOL_FAILED'));
    await writer.close();
  });

  it('rejects an unserialisable event without consuming a seq', async () => {
    const dir = await tempDir();
    const writer = await open(dir);
    await assert.rejects(writer.append({ ...draft(0), result: { rows: Number.NaN } }), (e: unknown) => isCustosError(e, 'ERR_AUDIT_INVALID_EVENT'));
    assert.equal((await writer.append(draft(1))).seq, 1);
    await writer.close();
  });

  it('loses only the torn record and starts a new boot when reopened after a crash mid-record', async () => {
    const dir = await tempDir();
    const first = await open(dir);
    const before = await Promise.all(Array.from({ length: 10 }, (_, i) => first.append(draft(i, 'a'))));
    await first.close();
    const path = segmentPath(dir, first.bootId, 1);
    await truncate(path, (await stat(path)).size - 7);

    // Before recovery the reader reports the torn tail and stops there.
    const raw = await readAll(dir);
    assert.deepEqual(raw.at(-1)?.kind, 'torn');

    const second = await open(dir);
    assert.deepEqual(second.recovery, { tornTails: 1, tornBytes: encodeRecord(before[9] ?? {}).length - 7 });
    assert.ok(second.bootId > first.bootId);
    const after = await second.append(draft(100, 'b'));
    await second.close();
    assert.equal(after.seq, 1);
    const items = await readAll(dir);
    assert.ok(items.every((i) => i.kind === 'event'), JSON.stringify(items.filter((i) => i.kind !== 'event')));
    assert.deepEqual(eventsOf(items), [...before.slice(0, 9), after]);
    assert.deepEqual(await readdir(dir).then((n) => n.sort()), [first.bootId, second.bootId].sort());
  });
});

describe('readSpool', () => {
  it('reports a corrupt record in the middle and keeps reading after it', async () => {
    const dir = await tempDir();
    const writer = await open(dir);
    const events = await Promise.all(Array.from({ length: 5 }, (_, i) => writer.append(draft(i))));
    await writer.close();
    const items = await readAll(dir);
    const third = items[2];
    assert.ok(third?.kind === 'event');
    const { open: fsOpen } = await import('node:fs/promises');
    const handle = await fsOpen(segmentPath(dir, writer.bootId, 1), 'r+');
    await handle.write(Buffer.from('X'), 0, 1, third.at.offset + 20);
    await handle.close();

    const after = await readAll(dir);
    assert.deepEqual(after.map((i) => i.kind), ['event', 'event', 'corrupt', 'event', 'event']);
    const corrupt = after[2];
    assert.ok(corrupt?.kind === 'corrupt');
    assert.equal(corrupt.reason, 'crc');
    assert.deepEqual(corrupt.at, third.at);
    assert.deepEqual(corrupt.next, third.next);
    assert.deepEqual(eventsOf(after), [events[0], events[1], events[3], events[4]]);
  });

  it('starts at the cursor when one is given', async () => {
    const dir = await tempDir();
    const writer = await open(dir, { segmentBytes: 1024 });
    for (let i = 0; i < 20; i++) await writer.append(draft(i));
    await writer.close();
    const all = await readAll(dir);
    const mid = all[11];
    assert.ok(mid?.kind === 'event');
    const rest: number[] = [];
    for await (const item of readSpool(dir, mid.at)) if (item.kind === 'event') rest.push(item.event.seq);
    assert.deepEqual(rest, Array.from({ length: 9 }, (_, i) => i + 12));
  });
});
