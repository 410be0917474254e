// The durable side of the audit log (reference/identity-and-audit.md §8, DESIGN §3 "Audit").
//
// append() assigns ordering and chain fields synchronously, in call order, then queues the encoded
// record. A group commit writes every record queued within `commitIntervalMs` (or while the
// previous commit's datasync was running) with one write and one datasync, and only then resolves
// those appends: an attempt event is on disk before its statement is forwarded ("audit before
// action"). All file I/O is async on the libuv pool; nothing on the append path blocks the loop.
//
// Capacity is the byte total of every segment in `dir`, across boots, that the shipper has not yet
// deleted. A record that would exceed `maxBytes` is refused with ERR_AUDIT_SPOOL_FULL before it is
// assigned a seq, so nothing is written and the chain has no hole: block, never drop. `full` clears
// once refreshUsage() (called by the shipper after it deletes segments, and at most once a second
// by refused appends) finds room again.
//
// A failed write or datasync leaves the file in an unknown state (a later fsync may report success
// for pages the kernel already dropped), so the writer fails every pending append and stays failed,
// like Vector's disk buffer: the data path refuses statements until the sidecar is restarted.
import { mkdir, open, readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { CustosError, isCustosError } from '../../lib/errors.ts';
import { genesisHash, sealEvent } from '../chain/hash-chain.ts';
import { AUDIT_SCHEMA_VERSION, type AuditEvent, type AuditEventDraft, type AuditLog } from '../event.ts';
import { silentLogger, type AuditLogger } from '../logger.ts';
import { createUuidV7Generator, uuidV7Timestamp, type UuidV7Generator } from '../uuid-v7.ts';
import { listBoots, listSegments, segmentPath, segmentSize, syncDir } from './layout.ts';
import { decodeRecords, encodeRecordJson, resyncRecords } from './record-format.ts';

export const ERR_AUDIT_SPOOL_FULL = 'ERR_AUDIT_SPOOL_FULL';
export const ERR_AUDIT_SPOOL_FAILED = 'ERR_AUDIT_SPOOL_FAILED';
export const ERR_AUDIT_SPOOL_CLOSED = 'ERR_AUDIT_SPOOL_CLOSED';
export const ERR_AUDIT_INVALID_EVENT = 'ERR_AUDIT_INVALID_EVENT';

export const DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024;
export const DEFAULT_COMMIT_INTERVAL_MS = 5;
const FULL_REFRESH_INTERVAL_MS = 1000;

export function isSpoolFull(e: unknown): e is CustosError {
  return isCustosError(e, ERR_AUDIT_SPOOL_FULL);
}

/** The file operations the writer needs; injectable to test I/O failures. */
export interface SegmentFile {
  /** Writes all of `data` at `position`. */
  write(data: Buffer, position: number): Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

export interface CommitInfo {
  readonly records: number;
  readonly bytes: number;
  readonly durationMs: number;
}

export interface SpoolWriterOptions {
  readonly dir: string;
  readonly gatewayId: string;
  readonly maxBytes: number;
  readonly segmentBytes?: number;
  readonly commitIntervalMs?: number;
  readonly clock?: () => Date;
  readonly logger?: AuditLogger;
  /** Bytes of each accepted record (after its commit). */
  readonly onAppend?: (bytes: number) => void;
  /** Spool bytes in use, after each commit and each refresh. */
  readonly onUsage?: (bytes: number) => void;
  /** Each group commit: one write + one datasync per segment touched. */
  readonly onCommit?: (info: CommitInfo) => void;
  /** Creates a new segment file (exclusive create). Default: node:fs/promises. */
  readonly openSegment?: (path: string) => Promise<SegmentFile>;
}

export interface RecoveryReport {
  /** Boots whose last segment ended in a torn record that was truncated away. */
  readonly tornTails: number;
  readonly tornBytes: number;
}

interface Pending {
  readonly event: AuditEvent;
  readonly record: Buffer;
  readonly resolve: (event: AuditEvent) => void;
  readonly reject: (e: unknown) => void;
}

async function openSegmentFile(path: string): Promise<SegmentFile> {
  const handle = await open(path, 'wx');
  return {
    async write(data, position) {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
        done += bytesWritten;
      }
    },
    datasync: () => handle.datasync(),
    close: () => handle.close(),
  };
}

/**
 * Truncates a torn tail off the last segment of every earlier boot (a crash mid-write), so the
 * reader sees only whole records. Corruption before the tail is left for the reader to report.
 */
async function recoverTornTails(dir: string, logger: AuditLogger): Promise<RecoveryReport> {
  let tornTails = 0;
  let tornBytes = 0;
  for (const boot of await listBoots(dir)) {
    const last = (await listSegments(dir, boot)).at(-1);
    if (last === undefined) continue;
    const path = segmentPath(dir, boot, last);
    const buf = await readFile(path);
    let pos = 0;
    for (;;) {
      const result = decodeRecords(buf, pos);
      pos = result.next;
      if (result.stop.kind !== 'corrupt') break;
      // Skip past a corrupt record only to find whether the very end is torn.
      const resumed = resyncRecords(buf, pos);
      if (resumed < 0) { pos = buf.length; break; }
      pos = resumed;
    }
    if (pos < buf.length) {
      tornTails++;
      tornBytes += buf.length - pos;
      logger.warn({ boot, segment: last, offset: pos, bytes: buf.length - pos }, 'audit spool: truncating torn tail left by a crash');
      await truncate(path, pos);
      const handle = await open(path, 'r+');
      try { await handle.datasync(); } finally { await handle.close(); }
    }
  }
  return { tornTails, tornBytes };
}

export class SpoolWriter implements AuditLog {
  readonly dir: string;
  readonly gatewayId: string;
  readonly bootId: string;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly commitIntervalMs: number;
  readonly recovery: RecoveryReport;

  #full = false;
  #failed: unknown = undefined;
  #closed = false;
  #seq = 0;
  readonly #sessions = new Map<string, { hash: string; seq: number }>();
  readonly #clock: () => Date;
  readonly #nextId: UuidV7Generator;
  readonly #logger: AuditLogger;
  readonly #options: SpoolWriterOptions;
  readonly #openSegment: (path: string) => Promise<SegmentFile>;

  #segment = 0;
  #segmentFile: SegmentFile | undefined;
  #segmentSize = 0;
  /** Bytes of this boot's segments still on disk, by segment number. */
  readonly #ownSegments = new Map<number, number>();
  /** Bytes of earlier boots' segments still on disk (as of the last refresh). */
  #otherBytes = 0;
  /** Bytes accepted but not yet written. */
  #pendingBytes = 0;
  #refusedBytes = 0;
  #lastRefresh = 0;

  #queue: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;

  private constructor(options: SpoolWriterOptions, bootId: string, otherBytes: number, recovery: RecoveryReport, nextId: UuidV7Generator, clock: () => Date) {
    this.dir = options.dir;
    this.gatewayId = options.gatewayId;
    this.bootId = bootId;
    this.maxBytes = options.maxBytes;
    this.segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.commitIntervalMs = options.commitIntervalMs ?? DEFAULT_COMMIT_INTERVAL_MS;
    this.recovery = recovery;
    this.#otherBytes = otherBytes;
    this.#nextId = nextId;
    this.#clock = clock;
    this.#logger = options.logger ?? silentLogger;
    this.#options = options;
    this.#openSegment = options.openSegment ?? openSegmentFile;
  }

  static async open(options: SpoolWriterOptions): Promise<SpoolWriter> {
    if (!(options.maxBytes > 0)) throw new RangeError('maxBytes must be positive');
    const logger = options.logger ?? silentLogger;
    const clock = options.clock ?? (() => new Date());
    await mkdir(options.dir, { recursive: true });
    const recovery = await recoverTornTails(options.dir, logger);
    const boots = await listBoots(options.dir);
    let otherBytes = 0;
    for (const boot of boots) {
      for (const segment of await listSegments(options.dir, boot)) otherBytes += Math.max(0, await segmentSize(options.dir, boot, segment));
    }
    // The new boot must sort after every earlier one even if the wall clock stepped back.
    const lastBoot = boots.at(-1);
    const minTimestamp = lastBoot === undefined ? 0 : uuidV7Timestamp(lastBoot) + 1;
    const bootId = createUuidV7Generator({ now: () => clock().getTime(), minTimestamp })();
    await mkdir(join(options.dir, bootId));
    await syncDir(options.dir);
    const nextId = createUuidV7Generator({ now: () => clock().getTime() });
    const writer = new SpoolWriter(options, bootId, otherBytes, recovery, nextId, clock);
    await writer.#rotate();
    writer.#options.onUsage?.(writer.usage);
    logger.info({ boot_id: bootId, dir: options.dir, usage: writer.usage, max_bytes: options.maxBytes, ...recovery }, 'audit spool opened');
    return writer;
  }

  /** True while appends are refused for lack of space. */
  get full(): boolean {
    return this.#full;
  }

  /** True once a write or datasync failed; every later append is refused. */
  get failed(): boolean {
    return this.#failed !== undefined;
  }

  /** Bytes in use: segments on disk plus records accepted but not yet written. */
  get usage(): number {
    let own = 0;
    for (const bytes of this.#ownSegments.values()) own += bytes;
    return this.#otherBytes + own + this.#pendingBytes;
  }

  /** The last seq assigned in this boot. */
  get seq(): number {
    return this.#seq;
  }

  /** The segment currently appended to (the highest of this boot). */
  get currentSegment(): number {
    return this.#segment;
  }

  append(draft: AuditEventDraft): Promise<AuditEvent> {
    if (this.#failed !== undefined) {
      return Promise.reject(new CustosError(ERR_AUDIT_SPOOL_FAILED, 'audit spool failed after an I/O error', { cause: this.#failed }));
    }
    if (this.#closed) return Promise.reject(new CustosError(ERR_AUDIT_SPOOL_CLOSED, 'audit spool is closed'));

    const key = draft.session_id ?? `gateway:${this.bootId}`;
    const head = this.#sessions.get(key);
    const prevHash = head?.hash ?? genesisHash(key);
    const unsealed = {
      ...draft,
      schema_version: AUDIT_SCHEMA_VERSION,
      event_id: this.#nextId(),
      observed_time: this.#clock().toISOString(),
      gateway_id: this.gatewayId,
      boot_id: this.bootId,
      seq: this.#seq + 1,
      session_seq: (head?.seq ?? 0) + 1,
      prev_hash: prevHash,
    };
    let event: AuditEvent;
    let record: Buffer;
    try {
      const sealed = sealEvent(prevHash, unsealed);
      event = { ...unsealed, hash: sealed.hash };
      record = encodeRecordJson(sealed.json);
    } catch (e: unknown) {
      return Promise.reject(new CustosError(ERR_AUDIT_INVALID_EVENT, 'audit event cannot be serialised', { cause: e }));
    }

    if (this.usage + record.length > this.maxBytes) {
      if (!this.#full) this.#logger.error({ usage: this.usage, max_bytes: this.maxBytes }, 'audit spool full: refusing new events');
      this.#full = true;
      this.#refusedBytes = Math.max(this.#refusedBytes, record.length);
      this.#maybeRefreshWhileFull();
      return Promise.reject(new CustosError(ERR_AUDIT_SPOOL_FULL, `audit spool full (${this.usage} of ${this.maxBytes} bytes)`));
    }

    // Accepted: commit the ordering state now, in call order.
    this.#seq = event.seq;
    if (draft.event_type === 'session.end') this.#sessions.delete(key);
    else this.#sessions.set(key, { hash: event.hash, seq: event.session_seq });
    this.#pendingBytes += record.length;
    return new Promise<AuditEvent>((resolve, reject) => {
      this.#queue.push({ event, record, resolve, reject });
      this.#schedule();
    });
  }

  /**
   * Re-reads the bytes of every segment on disk (after the shipper deleted some) and clears `full`
   * when the record that was refused would fit again. Returns the usage in bytes.
   */
  async refreshUsage(): Promise<number> {
    this.#lastRefresh = Date.now();
    let other = 0;
    for (const boot of await listBoots(this.dir)) {
      if (boot === this.bootId) continue;
      for (const segment of await listSegments(this.dir, boot)) other += Math.max(0, await segmentSize(this.dir, boot, segment));
    }
    const present = new Set(await listSegments(this.dir, this.bootId));
    // Only earlier segments can have been deleted; the listing may predate a rotation.
    for (const segment of [...this.#ownSegments.keys()]) {
      if (segment < this.#segment && !present.has(segment)) this.#ownSegments.delete(segment);
    }
    this.#otherBytes = other;
    const usage = this.usage;
    if (this.#full && usage + this.#refusedBytes <= this.maxBytes) {
      this.#full = false;
      this.#refusedBytes = 0;
      this.#logger.warn({ usage, max_bytes: this.maxBytes }, 'audit spool has room again: accepting events');
    }
    this.#options.onUsage?.(usage);
    return usage;
  }

  /** Commits everything accepted so far, then closes the segment. Later appends are refused. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    while (this.#flushing !== undefined || this.#queue.length > 0) {
      if (this.#flushing === undefined) this.#startFlush();
      await this.#flushing;
    }
    const file = this.#segmentFile;
    this.#segmentFile = undefined;
    if (file) await file.close().catch((e: unknown) => { this.#logger.warn({ err: e }, 'audit spool: close failed'); });
  }

  #maybeRefreshWhileFull(): void {
    if (Date.now() - this.#lastRefresh < FULL_REFRESH_INTERVAL_MS) return;
    this.#lastRefresh = Date.now();
    this.refreshUsage().catch((e: unknown) => { this.#logger.warn({ err: e }, 'audit spool: usage refresh failed'); });
  }

  #schedule(): void {
    if (this.#flushing !== undefined || this.#timer !== undefined) return; // the running commit picks it up
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#startFlush();
    }, this.commitIntervalMs);
  }

  #startFlush(): void {
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      // Appends that arrived during the datasync already waited a commit: write them at once.
      if (this.#queue.length > 0 && this.#failed === undefined) this.#startFlush();
    });
  }

  async #flush(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    const started = performance.now();
    let bytes = 0;
    try {
      let chunk: Buffer[] = [];
      let chunkBytes = 0;
      for (const item of batch) {
        if (this.#segmentSize + chunkBytes > 0 && this.#segmentSize + chunkBytes + item.record.length > this.segmentBytes) {
          await this.#writeChunk(chunk, chunkBytes);
          await this.#requireFile().datasync();
          await this.#rotate();
          chunk = [];
          chunkBytes = 0;
        }
        chunk.push(item.record);
        chunkBytes += item.record.length;
        bytes += item.record.length;
      }
      await this.#writeChunk(chunk, chunkBytes);
      await this.#requireFile().datasync();
    } catch (e: unknown) {
      this.#fail(e, batch);
      return;
    }
    this.#options.onCommit?.({ records: batch.length, bytes, durationMs: performance.now() - started });
    this.#options.onUsage?.(this.usage);
    for (const item of batch) {
      this.#options.onAppend?.(item.record.length);
      item.resolve(item.event);
    }
  }

  async #writeChunk(chunk: Buffer[], bytes: number): Promise<void> {
    if (bytes === 0) return;
    const data = chunk.length === 1 && chunk[0] ? chunk[0] : Buffer.concat(chunk, bytes);
    await this.#requireFile().write(data, this.#segmentSize);
    this.#segmentSize += bytes;
    this.#pendingBytes -= bytes;
    this.#ownSegments.set(this.#segment, this.#segmentSize);
  }

  #requireFile(): SegmentFile {
    if (!this.#segmentFile) throw new CustosError(ERR_AUDIT_SPOOL_CLOSED, 'audit spool segment is closed');
    return this.#segmentFile;
  }

  /** Closes the current segment (already synced) and creates the next one, durably named. */
  async #rotate(): Promise<void> {
    const previous = this.#segmentFile;
    this.#segmentFile = undefined;
    if (previous) await previous.close();
    const next = this.#segment + 1;
    const file = await this.#openSegment(segmentPath(this.dir, this.bootId, next));
    await syncDir(join(this.dir, this.bootId));
    this.#segment = next;
    this.#segmentFile = file;
    this.#segmentSize = 0;
    this.#ownSegments.set(next, 0);
  }

  #fail(e: unknown, batch: readonly Pending[]): void {
    this.#failed = e;
    this.#logger.error({ err: e, boot_id: this.bootId, seq: this.#seq }, 'audit spool write failed: refusing all further events');
    const error = new CustosError(ERR_AUDIT_SPOOL_FAILED, 'audit spool write failed', { cause: e });
    const queued = this.#queue;
    this.#queue = [];
    this.#pendingBytes = 0;
    for (const item of [...batch, ...queued]) item.reject(error);
    const file = this.#segmentFile;
    this.#segmentFile = undefined;
    if (file) file.close().catch(() => undefined);
  }
}
