// Reads the spool in (boot, segment, offset) order across every boot present, verifying each
// record's CRC (reference/identity-and-audit.md §8.5).
//
// Problems are yielded as items rather than thrown, so one bad record never makes the rest of the
// spool unreadable (the shipper ships around it, `custos audit verify` reports it, and the missing
// seq shows up as a gap):
//   - { kind: 'torn' }: an incomplete record at the end of the last segment of a boot. In the live
//     boot this is a write in progress (read again later); in an earlier boot it is a crash's torn
//     tail (the writer truncates those on open). Reading continues with the next boot.
//   - { kind: 'corrupt' }: a bad length or CRC, or a payload that is not JSON, before the end; the
//     reader skips to the next offset where a valid record starts (or the segment's end) and says
//     how many bytes it skipped. An incomplete record at the end of a segment that is not the last
//     of its boot is corruption too (the writer only rotates after a complete datasync).
import { open, type FileHandle } from 'node:fs/promises';
import type { AuditEvent } from '../event.ts';
import { listBoots, listSegments, segmentPath } from './layout.ts';
import { decodeRecords, resyncRecords } from './record-format.ts';

/** A position in the spool: the next record to read. */
export interface Cursor {
  readonly boot: string;
  readonly segment: number;
  readonly offset: number;
}

export type SpoolItem =
  | { readonly kind: 'event'; readonly event: AuditEvent; readonly at: Cursor; readonly next: Cursor }
  | { readonly kind: 'torn'; readonly at: Cursor; readonly bytes: number }
  | { readonly kind: 'corrupt'; readonly at: Cursor; readonly reason: 'crc' | 'length' | 'json' | 'truncated'; readonly skippedBytes: number; readonly next: Cursor };

export interface RawRecord {
  readonly kind: 'record';
  readonly payload: Buffer;
  readonly at: Cursor;
  readonly next: Cursor;
}

type RawItem = RawRecord | Exclude<SpoolItem, { kind: 'event' }>;

const CHUNK_BYTES = 1024 * 1024;

/** Compares two cursors in spool order. */
export function compareCursors(a: Cursor, b: Cursor): number {
  if (a.boot !== b.boot) return a.boot < b.boot ? -1 : 1;
  if (a.segment !== b.segment) return a.segment - b.segment;
  return a.offset - b.offset;
}

/** Events (and problems) from `from` (inclusive) to the current end of the spool. */
export async function* readSpool(dir: string, from?: Cursor): AsyncGenerator<SpoolItem> {
  for await (const item of readRecords(dir, from)) {
    if (item.kind !== 'record') {
      yield item;
      continue;
    }
    let event: AuditEvent;
    try {
      event = JSON.parse(item.payload.toString('utf8')) as AuditEvent;
    } catch {
      yield { kind: 'corrupt', at: item.at, reason: 'json', skippedBytes: item.next.offset - item.at.offset, next: item.next };
      continue;
    }
    yield { kind: 'event', event, at: item.at, next: item.next };
  }
}

/** Counts whole records from `from` to the end without parsing them; returns where it stopped. */
export async function countRecords(dir: string, from?: Cursor): Promise<{ count: number; end: Cursor | undefined }> {
  let count = 0;
  let end: Cursor | undefined = from;
  for await (const item of readRecords(dir, from)) {
    if (item.kind === 'record') {
      count++;
      end = item.next;
    } else if (item.kind === 'corrupt') {
      end = item.next;
    }
  }
  return { count, end };
}

/** Raw CRC-checked records in spool order. */
export async function* readRecords(dir: string, from?: Cursor): AsyncGenerator<RawItem> {
  for (const boot of await listBoots(dir)) {
    if (from && boot < from.boot) continue;
    const segments = await listSegments(dir, boot);
    for (const [index, segment] of segments.entries()) {
      let start = 0;
      if (from && boot === from.boot) {
        if (segment < from.segment) continue;
        if (segment === from.segment) start = from.offset;
      }
      const last = index === segments.length - 1;
      yield* readSegment(dir, boot, segment, start, last);
    }
  }
}

async function* readSegment(dir: string, boot: string, segment: number, start: number, last: boolean): AsyncGenerator<RawItem> {
  let handle: FileHandle;
  try {
    handle = await open(segmentPath(dir, boot, segment), 'r');
  } catch (e: unknown) {
    if (e instanceof Error && 'code' in e && e.code === 'ENOENT') return; // shipped and deleted meanwhile
    throw e;
  }
  const at = (offset: number): Cursor => ({ boot, segment, offset });
  try {
    let buf = Buffer.alloc(0);
    let base = start; // file offset of buf[0]
    let eof = false;
    for (;;) {
      if (!eof) {
        const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
        const { bytesRead } = await handle.read(chunk, 0, CHUNK_BYTES, base + buf.length);
        if (bytesRead === 0) eof = true;
        else buf = buf.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([buf, chunk.subarray(0, bytesRead)]);
      }
      const result = decodeRecords(buf);
      for (const r of result.records) {
        yield { kind: 'record', payload: Buffer.from(r.payload), at: at(base + r.offset), next: at(base + r.end) };
      }
      if (result.stop.kind === 'corrupt') {
        // Resynchronise on the rest of the segment (it fits in memory: segments are bounded).
        if (!eof) {
          const rest = await readToEnd(handle, base + buf.length);
          buf = Buffer.concat([buf.subarray(result.next), rest]);
          base += result.next;
          eof = true;
          continue; // decode again from the corrupt record, now with the whole tail
        }
        const resumed = resyncRecords(buf, result.next);
        const skipTo = resumed < 0 ? buf.length : resumed;
        yield { kind: 'corrupt', at: at(base + result.next), reason: result.stop.reason, skippedBytes: skipTo - result.next, next: at(base + skipTo) };
        buf = buf.subarray(skipTo);
        base += skipTo;
        continue;
      }
      buf = buf.subarray(result.next);
      base += result.next;
      if (eof) {
        if (buf.length > 0) {
          if (last) yield { kind: 'torn', at: at(base), bytes: buf.length };
          else yield { kind: 'corrupt', at: at(base), reason: 'truncated', skippedBytes: buf.length, next: at(base + buf.length) };
        }
        return;
      }
    }
  } finally {
    await handle.close();
  }
}

async function readToEnd(handle: FileHandle, position: number): Promise<Buffer> {
  const { size } = await handle.stat();
  const out = Buffer.allocUnsafe(Math.max(0, size - position));
  let done = 0;
  while (done < out.length) {
    const { bytesRead } = await handle.read(out, done, out.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return out.subarray(0, done);
}
