import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, type RedisInstance } from '../../test/harness/redis.ts';
import type { AuditEvent, AuditEventDraft } from '../event.ts';
import { verifyEvents } from '../chain/verify.ts';
import { listAuditStreams, readStream } from '../redis-stream-reader.ts';
import { listBoots, listSegments } from '../spool/layout.ts';
import { SpoolWriter } from '../spool/spool-writer.ts';
import { loadCursor, saveCursor } from './cursor-store.ts';
import { metaKey, streamKey } from './fence-script.ts';
import { RedisShipper } from './redis-shipper.ts';

let redis: RedisInstance;
let client: Redis;
const dirs: string[] = [];
const shippers: RedisShipper[] = [];
function track(shipper: RedisShipper): RedisShipper {
  shippers.push(shipper);
  return shipper;
}

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  client.on('error', () => undefined);
});
after(async () => {
  // Stop any shipper a failed test left running, so the file ends instead of hanging.
  await Promise.all(shippers.map((s) => s.stop(0)));
  client.disconnect();
  await redis.destroy();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'custos-ship-'));
  dirs.push(dir);
  return dir;
}

function draft(i: number): AuditEventDraft {
  return { event_type: 'db.query.attempt', time: new Date(0).toISOString(), session_id: `s${i % 3}`,
    command: { text: `select $1 -- ${i}`, digest: 'b'.repeat(64), protocol: 'simple' } };
}

async function streamEvents(pod: string): Promise<AuditEvent[]> {
  const entries = await client.xrange(streamKey(pod), '-', '+');
  return entries.map(([, fields]) => JSON.parse(fields[fields.indexOf('data') + 1] ?? '') as AuditEvent);
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('RedisShipper', () => {
  it('ships every event exactly once in seq order when Redis goes down and comes back mid-workload', async () => {
    const dir = await tempDir();
    const pod = 'pod-outage';
    const writer = await SpoolWriter.open({ dir, gatewayId: 'gw', maxBytes: 32 * 1024 * 1024, segmentBytes: 4096 });
    const shipped: number[] = [];
    const up: boolean[] = [];
    const shipper = track(new RedisShipper({ spoolDir: dir, podUid: pod, redis: { url: redis.url }, batchSize: 16, pollIntervalMs: 10, maxBackoffMs: 200,
      onFreed: () => { void writer.refreshUsage(); }, metrics: { shipped: (n) => shipped.push(n), redisUp: (u) => up.push(u) } }));
    shipper.start();
    const appended: AuditEvent[] = [];
    for (let i = 0; i < 100; i++) appended.push(await writer.append(draft(i)));
    await until('the first 100 events in the stream', async () => (await client.xlen(streamKey(pod))) === 100);

    // The harness runs Redis without persistence; snapshot so the restart keeps what was acknowledged
    // (a Redis that loses acknowledged writes is the archiver's problem, see ADR 0003).
    await client.save();
    await redis.stop();
    for (let i = 100; i < 250; i++) appended.push(await writer.append(draft(i)));
    await until('the shipper to notice', () => shipper.state === 'disconnected');
    assert.ok(shipper.lagEvents > 0, `lag ${shipper.lagEvents}`);
    await redis.start();
    for (let i = 250; i < 300; i++) appended.push(await writer.append(draft(i)));

    assert.equal(await shipper.drain(20_000), true);
    const inStream = await streamEvents(pod);
    assert.deepEqual(inStream.map((e) => e.event_id), appended.map((e) => e.event_id));
    assert.deepEqual(inStream.map((e) => e.seq), appended.map((_, i) => i + 1));
    assert.deepEqual(verifyEvents(inStream).findings, []);
    assert.equal(shipper.lagEvents, 0);
    assert.equal(shipper.state, 'connected');
    assert.ok(up.includes(false) && up.at(-1) === true, JSON.stringify(up));
    assert.ok(shipped.reduce((a, b) => a + b, 0) === 300);
    // The fence's high-water mark and the cursor have both advanced to the last event.
    assert.equal(await client.hget(metaKey(pod), `last_seq:${writer.bootId}`), '300');
    assert.equal((await loadCursor(dir))?.seq, 300);
    // Shipped segments were deleted; only the writer's current segment is left.
    assert.deepEqual(await listSegments(dir, writer.bootId), [writer.currentSegment]);
    await shipper.stop(1000);
    await writer.close();
  });

  it('writes nothing twice when a batch is resent after a lost reply', async () => {
    const dir = await tempDir();
    const pod = 'pod-resend';
    const writer = await SpoolWriter.open({ dir, gatewayId: 'gw', maxBytes: 1 << 20 });
    for (let i = 0; i < 30; i++) await writer.append(draft(i));
    const first = track(new RedisShipper({ spoolDir: dir, podUid: pod, redis: { url: redis.url }, batchSize: 8, pollIntervalMs: 10 }));
    first.start();
    assert.equal(await first.drain(10_000), true);
    await first.stop(1000);
    assert.equal(await client.xlen(streamKey(pod)), 30);

    // The reply to the XADD batch "was lost": the cursor still points at the start.
    await saveCursor(dir, { boot: writer.bootId, segment: 1, offset: 0, seq: 0, event_id: '', hash: '' });
    for (let i = 30; i < 35; i++) await writer.append(draft(i));
    const shipped: number[] = [];
    const second = track(new RedisShipper({ spoolDir: dir, podUid: pod, redis: { url: redis.url }, batchSize: 8, pollIntervalMs: 10, metrics: { shipped: (n) => shipped.push(n), redisUp: () => undefined } }));
    second.start();
    assert.equal(await second.drain(10_000), true);
    await second.stop(1000);
    const inStream = await streamEvents(pod);
    assert.deepEqual(inStream.map((e) => e.seq), Array.from({ length: 35 }, (_, i) => i + 1));
    assert.equal(new Set(inStream.map((e) => e.event_id)).size, 35);
    assert.equal(shipped.reduce((a, b) => a + b, 0), 5);
    await writer.close();
  });

  it('starts a fresh fence for a new boot and deletes the old boot once shipped', async () => {
    const dir = await tempDir();
    const pod = 'pod-boots';
    const one = await SpoolWriter.open({ dir, gatewayId: 'gw', maxBytes: 1 << 20 });
    for (let i = 0; i < 5; i++) await one.append(draft(i));
    await one.close();
    const two = await SpoolWriter.open({ dir, gatewayId: 'gw', maxBytes: 1 << 20 });
    for (let i = 0; i < 3; i++) await two.append(draft(i));
    const shipper = track(new RedisShipper({ spoolDir: dir, podUid: pod, redis: { url: redis.url }, pollIntervalMs: 10 }));
    shipper.start();
    assert.equal(await shipper.drain(10_000), true);
    await shipper.stop(1000);
    const inStream = await streamEvents(pod);
    assert.deepEqual(inStream.map((e) => [e.boot_id, e.seq]), [
      ...[1, 2, 3, 4, 5].map((s) => [one.bootId, s]), ...[1, 2, 3].map((s) => [two.bootId, s])]);
    assert.equal(await client.hget(metaKey(pod), `last_seq:${one.bootId}`), '5');
    assert.equal(await client.hget(metaKey(pod), `last_seq:${two.bootId}`), '3');
    assert.deepEqual(await listBoots(dir), [two.bootId]);
    await two.close();
  });

  it('keeps retrying without loss when Redis is down at start', async () => {
    const dir = await tempDir();
    const pod = 'pod-late';
    const writer = await SpoolWriter.open({ dir, gatewayId: 'gw', maxBytes: 1 << 20 });
    await redis.stop();
    const shipper = track(new RedisShipper({ spoolDir: dir, podUid: pod, redis: { url: redis.url }, pollIntervalMs: 10, maxBackoffMs: 200 }));
    try {
      shipper.start();
      for (let i = 0; i < 10; i++) await writer.append(draft(i));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(shipper.state, 'disconnected');
      assert.equal(shipper.lagEvents, 10);
    } finally {
      await redis.start();
    }
    assert.equal(await shipper.drain(15_000), true);
    assert.equal(await client.xlen(streamKey(pod)), 10);
    await shipper.stop(1000);
    await writer.close();
  });
});

describe('readStream', () => {
  it('returns existing events then follows new ones until aborted', async () => {
    const dir = await tempDir();
    const pod = 'pod-tail';
    const writer = await SpoolWriter.open({ dir, gatewayId: 'gw', maxBytes: 1 << 20 });
    for (let i = 0; i < 3; i++) await writer.append(draft(i));
    const shipper = track(new RedisShipper({ spoolDir: dir, podUid: pod, redis: { url: redis.url }, pollIntervalMs: 10 }));
    shipper.start();
    assert.equal(await shipper.drain(10_000), true);

    const controller = new AbortController();
    const seen: number[] = [];
    const tail = (async () => {
      for await (const event of readStream(redis.url, pod, { follow: true, count: 2, signal: controller.signal, blockMs: 200 })) {
        seen.push(event.seq);
        if (seen.length === 3) for (let i = 3; i < 6; i++) await writer.append(draft(i));
        if (seen.length === 6) controller.abort();
      }
    })();
    await tail;
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);

    const nofollow: number[] = [];
    for await (const event of readStream(redis.url, pod, { follow: false })) nofollow.push(event.seq);
    assert.deepEqual(nofollow, [1, 2, 3, 4, 5, 6]);
    assert.ok((await listAuditStreams(redis.url)).includes(pod));
    assert.ok(!(await listAuditStreams(redis.url)).some((p) => p.includes(':')));
    await shipper.stop(1000);
    await writer.close();
  });
});
