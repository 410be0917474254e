// Ships the spool to the pod's Redis stream (reference/identity-and-audit.md §7, §8.4):
//
//   read ≤ batchSize events after the cursor → XADD them through the sequence fence (one script
//   call per boot run) → save the cursor → delete segments wholly below the cursor → tell the
//   writer space was freed.
//
// The request path never waits for this: it waits for the spool. Redis being down only stops the
// loop, which retries with capped exponential backoff; nothing is dropped (the spool fills and the
// writer refuses statements instead). The cursor only moves after the script succeeded, and the
// fence makes every resend (lost reply, crash before the cursor was saved) write nothing twice.
// The stream is never trimmed here: trimming is the archiver's job (MINID at its committed point).
//
// Segment deletion: a segment is deleted once the cursor is past its last byte, except the highest
// segment of the newest boot, which the writer may still be appending to. Boot ids are UUIDv7 and
// the writer makes each new boot sort last, so "newest" is the last directory name.
import { Redis, type RedisOptions } from 'ioredis';
import { rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type AuditLogger } from '../logger.ts';
import type { AuditEvent } from '../event.ts';
import { listBoots, listSegments, segmentPath, segmentSize } from '../spool/layout.ts';
import { compareCursors, countRecords, readSpool, type Cursor } from '../spool/spool-reader.ts';
import { loadCursor, saveCursor, type StoredCursor } from './cursor-store.ts';
import { FENCE_SCRIPT, FENCE_SCRIPT_SHA, metaKey, streamKey } from './fence-script.ts';

export interface ShipperMetrics {
  shipped(n: number): void;
  redisUp(up: boolean): void;
}

export interface RedisShipperOptions {
  readonly spoolDir: string;
  readonly podUid: string;
  readonly redis: { readonly url: string };
  readonly batchSize?: number;
  readonly pollIntervalMs?: number;
  readonly logger?: AuditLogger;
  readonly metrics?: ShipperMetrics;
  /** Called after segments were deleted (wire it to SpoolWriter.refreshUsage). */
  readonly onFreed?: () => void;
  /** Upper bound of the retry backoff after a failed batch (default 2000 ms). */
  readonly maxBackoffMs?: number;
}

export type ShipperState = 'connected' | 'disconnected';

const MAX_BACKOFF_MS = 2000;
const DEFAULT_STOP_TIMEOUT_MS = 5000;

/** ioredis settings for the request path (reference §7.4): fail fast, never queue, keep reconnecting. */
export function requestPathRedisOptions(maxBackoffMs = MAX_BACKOFF_MS) {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 2000,
    socketTimeout: 10_000,
    enableAutoPipelining: true,
    // Capped exponential with jitter; never null, which would stop reconnecting for good.
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times - 1, 10), maxBackoffMs) * (0.8 + Math.random() * 0.2),
  } satisfies RedisOptions;
}

interface Run {
  readonly boot: string;
  readonly events: AuditEvent[];
  readonly next: Cursor;
}

export class RedisShipper {
  readonly spoolDir: string;
  readonly podUid: string;
  readonly batchSize: number;
  readonly pollIntervalMs: number;

  #state: ShipperState = 'disconnected';
  #cursor: StoredCursor | undefined;
  #scanned: Cursor | undefined;
  #lag = 0;
  #loaded = false;
  #running: Promise<void> | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;
  #idleWaiters: (() => void)[] = [];
  #lastCorrupt = '';
  readonly #redis: Redis;
  readonly #logger: AuditLogger;
  readonly #options: RedisShipperOptions;
  readonly #maxBackoffMs: number;

  constructor(options: RedisShipperOptions) {
    this.spoolDir = options.spoolDir;
    this.podUid = options.podUid;
    this.batchSize = options.batchSize ?? 256;
    this.pollIntervalMs = options.pollIntervalMs ?? 50;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#maxBackoffMs = options.maxBackoffMs ?? MAX_BACKOFF_MS;
    this.#redis = new Redis(options.redis.url, requestPathRedisOptions(this.#maxBackoffMs));
    this.#redis.on('ready', () => { this.#setState('connected'); });
    this.#redis.on('close', () => { this.#setState('disconnected'); });
    this.#redis.on('error', (e: unknown) => { this.#logger.debug({ err: e }, 'audit shipper: redis connection error'); });
  }

  get state(): ShipperState {
    return this.#state;
  }

  /** Events in the spool not yet shipped, as of the last scan. */
  get lagEvents(): number {
    return this.#lag;
  }

  /** The last saved cursor (undefined before anything was shipped). */
  get cursor(): StoredCursor | undefined {
    return this.#cursor;
  }

  /** Starts the shipping loop in the background (it loads the saved cursor first). */
  start(): void {
    if (this.#running) return;
    this.#stopping = false;
    this.#loaded = false;
    // With lazyConnect the first connect is ours; when it fails ioredis keeps reconnecting.
    this.#redis.connect().catch((e: unknown) => { this.#logger.warn({ err: e }, 'audit shipper: redis not reachable yet'); });
    this.#running = this.#loop();
  }

  /** Resolves true once everything in the spool (as of now) is shipped, false after the timeout. */
  async drain(timeoutMs: number): Promise<boolean> {
    if (!this.#running) return false;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const idle = new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
      this.#wake?.();
      const remaining = deadline - Date.now();
      if (remaining <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        idle.then(() => false),
        new Promise<boolean>((resolve) => { timer = setTimeout(() => { resolve(true); }, remaining); }),
      ]);
      clearTimeout(timer);
      if (timedOut) return false;
      if (this.#lag === 0) return true;
    }
  }

  /** Drains what it can within `timeoutMs`, then stops the loop and closes the connection. */
  async stop(timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<void> {
    if (!this.#running) {
      this.#redis.disconnect();
      return;
    }
    const drained = await this.drain(timeoutMs);
    if (!drained) this.#logger.warn({ lag_events: this.#lag }, 'audit shipper: stopping with events left in the spool');
    this.#stopping = true;
    this.#wake?.();
    await this.#running;
    this.#running = undefined;
    this.#redis.disconnect();
    this.#setState('disconnected');
  }

  async #loop(): Promise<void> {
    let backoff = 50;
    while (!this.#stopping) {
      let progressed: boolean;
      try {
        progressed = await this.#cycle();
        backoff = 50;
      } catch (e: unknown) {
        this.#logger.warn({ err: e, lag_events: this.#lag, retry_ms: backoff }, 'audit shipper: batch not shipped, retrying');
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, this.#maxBackoffMs);
        continue;
      }
      if (!progressed) {
        for (const resolve of this.#idleWaiters.splice(0)) resolve();
        await this.#sleep(this.pollIntervalMs);
      }
    }
  }

  /** One read-ship-advance round; false when there was nothing to ship. */
  async #cycle(): Promise<boolean> {
    if (!this.#loaded) {
      this.#cursor = await loadCursor(this.spoolDir);
      this.#scanned = this.#cursor;
      this.#lag = 0;
      this.#loaded = true;
    }
    await this.#updateLag();
    const runs = await this.#readBatch();
    if (runs.length === 0) {
      await this.#deleteShipped();
      return false;
    }
    for (const run of runs) {
      const args: (string | number)[] = [run.boot];
      for (const e of run.events) args.push(e.seq, e.event_id, e.event_type, e.session_id ?? `gateway:${e.boot_id}`, JSON.stringify(e));
      const reply = await this.#evalFence(args);
      const last = run.events.at(-1);
      if (!last) continue;
      const cursor: StoredCursor = { ...run.next, seq: last.seq, event_id: last.event_id, hash: last.hash };
      await saveCursor(this.spoolDir, cursor);
      this.#cursor = cursor;
      this.#lag = Math.max(0, this.#lag - run.events.length);
      this.#options.metrics?.shipped(reply.added);
      if (reply.added < run.events.length) {
        this.#logger.info({ boot_id: run.boot, sent: run.events.length, added: reply.added, last_seq: reply.lastSeq }, 'audit shipper: fence skipped events already in the stream');
      }
    }
    this.#setState('connected');
    await this.#deleteShipped();
    return true;
  }

  async #evalFence(args: (string | number)[]): Promise<{ added: number; lastSeq: number }> {
    const keys = [streamKey(this.podUid), metaKey(this.podUid)];
    let reply: unknown;
    try {
      reply = await this.#redis.evalsha(FENCE_SCRIPT_SHA, 2, ...keys, ...args);
    } catch (e: unknown) {
      // After a Redis restart the script cache is empty.
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      reply = await this.#redis.eval(FENCE_SCRIPT, 2, ...keys, ...args);
    }
    if (!Array.isArray(reply) || typeof reply[0] !== 'number' || typeof reply[1] !== 'number') {
      throw new Error(`unexpected fence reply ${JSON.stringify(reply)}`);
    }
    return { added: reply[0], lastSeq: reply[1] };
  }

  /** Up to batchSize events after the cursor, grouped into runs of one boot. */
  async #readBatch(): Promise<Run[]> {
    const runs: Run[] = [];
    let count = 0;
    let current: { boot: string; events: AuditEvent[]; next: Cursor } | undefined;
    const scanned = this.#scanned;
    for await (const item of readSpool(this.spoolDir, this.#cursor)) {
      // Ship only what the lag scan has counted, so lag = counted - shipped stays exact.
      if (!scanned || compareCursors(item.at, scanned) >= 0) break;
      if (item.kind === 'torn') continue; // a write in progress, or a crashed boot's tail
      if (item.kind === 'corrupt') {
        const where = `${item.at.boot}/${item.at.segment}@${item.at.offset}`;
        if (where !== this.#lastCorrupt) {
          this.#lastCorrupt = where;
          this.#logger.error({ ...item.at, reason: item.reason, skipped_bytes: item.skippedBytes }, 'audit shipper: corrupt spool record skipped (shows up as a seq gap)');
        }
        continue;
      }
      if (!current || current.boot !== item.event.boot_id) {
        current = { boot: item.event.boot_id, events: [], next: item.next };
        runs.push(current);
      }
      current.events.push(item.event);
      current.next = item.next;
      if (++count >= this.batchSize) break;
    }
    return runs;
  }

  /** Counts records appended since the last scan, so lag needs no rescan of shipped data. */
  async #updateLag(): Promise<void> {
    const { count, end } = await countRecords(this.spoolDir, this.#scanned ?? this.#cursor);
    if (end) this.#scanned = end;
    this.#lag += count;
  }

  async #deleteShipped(): Promise<void> {
    const cursor = this.#cursor;
    if (!cursor) return;
    const boots = await listBoots(this.spoolDir);
    const newest = boots.at(-1);
    let freed = 0;
    for (const boot of boots) {
      if (boot > cursor.boot) break;
      const segments = await listSegments(this.spoolDir, boot);
      const highest = segments.at(-1);
      let kept = 0;
      for (const segment of segments) {
        if (boot === newest && segment === highest) { kept++; continue; } // the writer's segment
        let shipped = boot < cursor.boot || segment < cursor.segment;
        let size = -1;
        if (!shipped && segment === cursor.segment) {
          size = await segmentSize(this.spoolDir, boot, segment);
          shipped = size >= 0 && cursor.offset >= size;
        }
        if (!shipped) { kept++; continue; }
        if (size < 0) size = await segmentSize(this.spoolDir, boot, segment);
        try {
          await unlink(segmentPath(this.spoolDir, boot, segment));
          freed += Math.max(0, size);
        } catch (e: unknown) {
          if (!(e instanceof Error && 'code' in e && e.code === 'ENOENT')) throw e;
        }
      }
      if (kept === 0 && boot !== newest) {
        await rmdir(join(this.spoolDir, boot)).catch(() => undefined);
      }
    }
    if (freed > 0) {
      this.#logger.debug({ freed_bytes: freed }, 'audit shipper: deleted shipped segments');
      this.#options.onFreed?.();
    }
  }

  #setState(state: ShipperState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#options.metrics?.redisUp(state === 'connected');
    if (state === 'connected') this.#logger.info({ pod_uid: this.podUid }, 'audit shipper: redis connected');
    else this.#logger.warn({ pod_uid: this.podUid, lag_events: this.#lag }, 'audit shipper: redis disconnected');
  }

  async #sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.#wake = undefined; resolve(); }, ms);
      this.#wake = () => { clearTimeout(timer); this.#wake = undefined; resolve(); };
    });
  }
}
