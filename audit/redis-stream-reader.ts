// Reads audit streams back for `custos audit tail|verify`: XRANGE pages through what is there,
// then (with follow) XREAD BLOCK waits for new entries. Entries carry the whole event as JSON in
// their `data` field (see shipper/fence-script.ts).
import { Redis } from 'ioredis';
import type { AuditEvent } from './event.ts';
import { streamKey } from './shipper/fence-script.ts';

export interface ReadStreamOptions {
  readonly follow: boolean;
  /** Entries per XRANGE/XREAD call (default 500). */
  readonly count?: number;
  readonly signal?: AbortSignal;
  /** Start after this stream entry id (exclusive); default: the beginning. */
  readonly after?: string;
  /** How long one XREAD BLOCK waits before checking the signal again (default 1000 ms). */
  readonly blockMs?: number;
}

type Entry = [id: string, fields: string[]];

function parseEntries(reply: unknown): Entry[] {
  if (!Array.isArray(reply)) return [];
  return reply.filter((e): e is Entry => Array.isArray(e) && typeof e[0] === 'string' && Array.isArray(e[1]));
}

/**
 * The entry lists of an XREAD reply: RESP2 `[[key, entries], ...]`, or RESP3's map, which ioredis
 * (protocol 3, legacy mapping) flattens to `[key, entries, ...]`; nil (timeout) yields nothing.
 */
function streamsOf(reply: unknown): unknown[] {
  if (!Array.isArray(reply)) return [];
  if (typeof reply[0] === 'string') return reply.filter((_, i) => i % 2 === 1);
  return reply.map((s: unknown): unknown => (Array.isArray(s) ? (s as unknown[])[1] : undefined));
}

function eventOf([id, fields]: Entry): AuditEvent {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'data') return JSON.parse(fields[i + 1] ?? '') as AuditEvent;
  }
  throw new Error(`stream entry ${id} has no data field`);
}

/** Events of one pod's stream in stream order; with follow, waits for more until the signal aborts. */
export async function* readStream(redisUrl: string, podUid: string, options: ReadStreamOptions): AsyncGenerator<AuditEvent> {
  const key = streamKey(podUid);
  const count = options.count ?? 500;
  const signal = options.signal;
  const aborted = (): boolean => signal?.aborted === true;
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000, enableOfflineQueue: true });
  redis.on('error', () => undefined); // surfaced through the failing command instead
  // A blocked XREAD cannot be cancelled: disconnecting rejects it, which ends the loop.
  const onAbort = (): void => { redis.disconnect(); };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await redis.connect();
    let last = options.after ?? '-';
    for (;;) {
      if (aborted()) return;
      const start = last === '-' ? '-' : `(${last}`;
      const page = parseEntries(await redis.xrange(key, start, '+', 'COUNT', count));
      for (const entry of page) {
        last = entry[0];
        yield eventOf(entry);
      }
      if (page.length < count) break;
    }
    if (last === '-') last = '0-0';
    while (options.follow && !aborted()) {
      let reply: unknown;
      try {
        reply = await redis.call('XREAD', 'COUNT', count, 'BLOCK', options.blockMs ?? 1000, 'STREAMS', key, last);
      } catch (e: unknown) {
        if (aborted()) return;
        throw e;
      }
      for (const entries of streamsOf(reply)) {
        for (const entry of parseEntries(entries)) {
          last = entry[0];
          yield eventOf(entry);
        }
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    redis.disconnect();
  }
}

const STREAM_KEY_RE = /^custos:audit:\{([^}]+)\}$/;

/** Pod UIDs that have an audit stream (SCAN for custos:audit:{*}, companions like :meta excluded). */
export async function listAuditStreams(redisUrl: string): Promise<string[]> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000 });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const pods = new Set<string>();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', 'custos:audit:{*}', 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const uid = STREAM_KEY_RE.exec(key)?.[1];
        if (uid !== undefined) pods.add(uid);
      }
    } while (cursor !== '0');
    return [...pods].sort();
  } finally {
    redis.disconnect();
  }
}
