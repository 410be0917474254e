// Spool record framing (reference/identity-and-audit.md §8.1), pure code over Buffers:
//
//   offset 0  u32 BE  payload length (1 ..= MAX_RECORD_PAYLOAD)
//   offset 4  u32 BE  CRC-32 (ISO-HDLC, zlib.crc32) of the payload
//   offset 8  payload UTF-8 RFC 8785 JSON of one audit event
//
// A crash can leave a partial record at the end of a segment (a torn tail): the decoder stops
// before it and says so. A complete record whose CRC does not match, or a length that cannot be
// real, is corruption. Zero bytes at the tail (a filesystem that extended the file but lost the
// data) count as a torn tail too: a record length is never 0.
import { crc32 } from 'node:zlib';
import { canonicalize } from '../chain/jcs.ts';

export const RECORD_HEADER_BYTES = 8;
/** Events are small (normalised text, no literals); anything above this is a broken length. */
export const MAX_RECORD_PAYLOAD = 1024 * 1024;

export function encodeRecord(event: object): Buffer {
  return encodeRecordJson(canonicalize(event));
}

/** A record from JSON text already serialised (the sealed event of the spool writer). */
export function encodeRecordJson(json: string): Buffer {
  const payload = Buffer.from(json, 'utf8');
  if (payload.length > MAX_RECORD_PAYLOAD) throw new RangeError(`audit record of ${payload.length} bytes exceeds ${MAX_RECORD_PAYLOAD}`);
  const record = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length);
  record.writeUInt32BE(payload.length, 0);
  record.writeUInt32BE(crc32(payload), 4);
  payload.copy(record, RECORD_HEADER_BYTES);
  return record;
}

export interface DecodedRecord {
  /** Offset of the record header within the decoded buffer. */
  readonly offset: number;
  /** Offset just past the record. */
  readonly end: number;
  readonly payload: Buffer;
}

export type DecodeStop =
  /** Every byte was consumed. */
  | { readonly kind: 'end' }
  /** `maxRecords` were decoded; more bytes follow. */
  | { readonly kind: 'limit' }
  /** An incomplete record (or zero fill) starts at `offset`; more bytes may complete it. */
  | { readonly kind: 'torn'; readonly offset: number; readonly bytes: number }
  /** A complete record at `offset` is invalid. */
  | { readonly kind: 'corrupt'; readonly offset: number; readonly reason: 'crc' | 'length' };

export interface DecodeResult {
  readonly records: DecodedRecord[];
  /** Where decoding stopped: the offset of the first byte not consumed. */
  readonly next: number;
  readonly stop: DecodeStop;
}

/**
 * Decodes complete records from `buf` starting at `offset`, up to `maxRecords`. Payloads are
 * views into `buf` (copy them to keep them beyond the buffer's life).
 */
export function decodeRecords(buf: Buffer, offset = 0, maxRecords = Number.POSITIVE_INFINITY): DecodeResult {
  const records: DecodedRecord[] = [];
  let pos = offset;
  while (records.length < maxRecords) {
    const remaining = buf.length - pos;
    if (remaining === 0) return { records, next: pos, stop: { kind: 'end' } };
    if (remaining < RECORD_HEADER_BYTES) {
      return { records, next: pos, stop: { kind: 'torn', offset: pos, bytes: remaining } };
    }
    const length = buf.readUInt32BE(pos);
    if (length === 0 || length > MAX_RECORD_PAYLOAD) {
      if (isZeroFilled(buf, pos)) return { records, next: pos, stop: { kind: 'torn', offset: pos, bytes: remaining } };
      return { records, next: pos, stop: { kind: 'corrupt', offset: pos, reason: 'length' } };
    }
    const end = pos + RECORD_HEADER_BYTES + length;
    if (end > buf.length) return { records, next: pos, stop: { kind: 'torn', offset: pos, bytes: remaining } };
    const payload = buf.subarray(pos + RECORD_HEADER_BYTES, end);
    if (crc32(payload) !== buf.readUInt32BE(pos + 4)) {
      return { records, next: pos, stop: { kind: 'corrupt', offset: pos, reason: 'crc' } };
    }
    records.push({ offset: pos, end, payload });
    pos = end;
  }
  return { records, next: pos, stop: pos === buf.length ? { kind: 'end' } : { kind: 'limit' } };
}

/**
 * After corruption at `offset`, the offset of the next byte position where a valid record starts,
 * or -1. A false positive needs a sane length and a matching CRC-32 over random bytes.
 */
export function resyncRecords(buf: Buffer, offset: number): number {
  for (let pos = offset + 1; pos + RECORD_HEADER_BYTES <= buf.length; pos++) {
    const length = buf.readUInt32BE(pos);
    if (length === 0 || length > MAX_RECORD_PAYLOAD) continue;
    const end = pos + RECORD_HEADER_BYTES + length;
    if (end > buf.length) continue;
    if (crc32(buf.subarray(pos + RECORD_HEADER_BYTES, end)) === buf.readUInt32BE(pos + 4)) return pos;
  }
  return -1;
}

function isZeroFilled(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}
