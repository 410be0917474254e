// RFC 9562 UUID version 7 (https://www.rfc-editor.org/rfc/rfc9562#section-5.7):
//   unix_ts_ms (48) | ver=0b0111 (4) | rand_a (12) | var=0b10 (2) | rand_b (62)
// Monotonic within a millisecond with a 42-bit dedicated counter (§6.2 method 1): rand_a plus the
// top 30 bits of rand_b, seeded randomly each new millisecond with its top bit clear (room for at
// least 2^41 increments); 32 random bits follow. On counter overflow, and when the clock steps
// back, the timestamp is carried forward (§6.2 "counter rollover", "monotonicity"), so ids sort in
// generation order as strings and as bytes.
import { randomFillSync } from 'node:crypto';

export interface UuidV7Options {
  /** Milliseconds since the Unix epoch. */
  readonly now?: () => number;
  /** Fills the buffer with random bytes. */
  readonly random?: (bytes: Uint8Array) => void;
  /** Ids never carry a timestamp below this (e.g. to sort after ids from an earlier run). */
  readonly minTimestamp?: number;
}

const COUNTER_BITS = 42;
const COUNTER_MAX = 2 ** COUNTER_BITS - 1;
const COUNTER_SEED_RANGE = 2 ** (COUNTER_BITS - 1);

export type UuidV7Generator = () => string;

export function createUuidV7Generator(options: UuidV7Options = {}): UuidV7Generator {
  const now = options.now ?? Date.now;
  const random = options.random ?? pooledRandom();
  const floor = options.minTimestamp ?? 0;
  let lastTs = -1;
  let counter = 0;
  const rnd = Buffer.alloc(10);

  return () => {
    random(rnd);
    let ts = Math.max(Math.floor(now()), floor);
    if (ts > lastTs) {
      // New millisecond: seed the counter from 41 random bits (bytes 4..9).
      counter = rnd.readUIntBE(4, 6) % COUNTER_SEED_RANGE;
    } else {
      ts = lastTs;
      counter++;
      if (counter > COUNTER_MAX) {
        ts++;
        counter = 0;
      }
    }
    lastTs = ts;
    return formatUuidV7(ts, counter, rnd);
  };
}

/** Random bytes from a pool refilled 4 KiB at a time: one randomFillSync call per ~400 ids. */
function pooledRandom(): (bytes: Uint8Array) => void {
  const pool = Buffer.allocUnsafe(4096);
  let used = pool.length;
  return (bytes) => {
    if (used + bytes.length > pool.length) {
      randomFillSync(pool);
      used = 0;
    }
    bytes.set(pool.subarray(used, used + bytes.length));
    used += bytes.length;
  };
}

function formatUuidV7(ts: number, counter: number, rnd: Buffer): string {
  const b = Buffer.allocUnsafe(16);
  b.writeUIntBE(ts, 0, 6);
  b.writeUInt16BE(0x7000 + Math.floor(counter / 2 ** 30), 6); // ver 7 + counter bits 41..30 (rand_a)
  b.writeUInt32BE(2 ** 31 + (counter % 2 ** 30), 8); // var 0b10 + counter bits 29..0
  rnd.copy(b, 12, 0, 4);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const UUID_V7_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export function isUuidV7(value: string): boolean {
  return UUID_V7_RE.test(value);
}

/** The unix_ts_ms of a UUIDv7 (no validation beyond the hex digits). */
export function uuidV7Timestamp(id: string): number {
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

const defaultGenerator = createUuidV7Generator();

/** A UUIDv7 from the process-wide monotonic generator. */
export function uuidV7(): string {
  return defaultGenerator();
}
