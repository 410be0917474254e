// Reading the audit trail back in acceptance tests: every event of the local spool, and waiting for
// the ones a test caused (found by the `reason` field, which the sidecar fills from the client's
// application_name).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditEvent } from '../../audit/event.ts';
import { readSpool } from '../../audit/spool/spool-reader.ts';
import { waitFor } from './processes.ts';

export async function spoolEvents(dir: string): Promise<AuditEvent[]> {
  const out: AuditEvent[] = [];
  for await (const item of readSpool(dir)) if (item.kind === 'event') out.push(item.event);
  return out;
}

/** Waits until the spool's events satisfy `ready`, then returns them; fails with what was there. */
export async function waitForEvents(dir: string, ready: (events: AuditEvent[]) => boolean, timeoutMs = 5000): Promise<AuditEvent[]> {
  let events: AuditEvent[] = [];
  try {
    await waitFor('audit events', async () => {
      events = await spoolEvents(dir);
      return ready(events);
    }, timeoutMs);
  } catch {
    throw new Error(`audit events not found; the spool holds:\n${events.slice(-40).map((e) => JSON.stringify(e)).join('\n')}`);
  }
  return events;
}

/** Events a session with this application_name produced. */
export function byReason(events: readonly AuditEvent[], reason: string): AuditEvent[] {
  return events.filter((e) => e.reason === reason);
}

/** The raw bytes of every file under `dir`, recursively. */
export async function allFileBytes(dir: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) await walk(p);
      // Files may vanish between listing and reading (the shipper's write-then-rename cursor).
      else if (entry.isFile()) parts.push(await readFile(p).catch((e: unknown) => { if ((e as { code?: unknown }).code === 'ENOENT') return Buffer.alloc(0); throw e; }));
    }
  };
  await walk(dir);
  return Buffer.concat(parts);
}

let counter = 0;
/** A unique application_name for one test, to find its audit events. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${++counter}`;
}

/** Raw XRANGE of a pod's audit stream: `[entry id, field/value list]`. */
export async function redisStreamEntries(redisUrl: string, podUid: string): Promise<Array<[string, string[]]>> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000 });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await redis.xrange(`custos:audit:{${podUid}}`, '-', '+');
  } finally {
    redis.disconnect();
  }
}

/** The events carried by stream entries (their `data` field). */
export function streamEvents(entries: ReadonlyArray<[string, string[]]>): AuditEvent[] {
  return entries.map(([id, fields]) => {
    const i = fields.indexOf('data');
    const data = i >= 0 ? fields[i + 1] : undefined;
    if (data === undefined) throw new Error(`stream entry ${id} has no data field`);
    return JSON.parse(data) as AuditEvent;
  });
}
