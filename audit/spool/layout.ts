// Spool directory layout (reference/identity-and-audit.md §8.1):
//
//   <dir>/cursor.json                    the shipper's position (see shipper/cursor-store.ts)
//   <dir>/<boot-id>/<segment>.log        segments of one writer run; boot ids are UUIDv7, so the
//                                        lexical order of boot directories is their start order
//
// Segment numbers start at 1 and are zero-padded to 10 digits so names sort numerically. Within a
// boot the highest-numbered segment is the one the writer may still be appending to.
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isUuidV7 } from '../uuid-v7.ts';

const SEGMENT_RE = /^(\d{10})\.log$/;

export function segmentFileName(segment: number): string {
  return `${String(segment).padStart(10, '0')}.log`;
}

export function segmentPath(dir: string, boot: string, segment: number): string {
  return join(dir, boot, segmentFileName(segment));
}

function isMissing(e: unknown): boolean {
  return e instanceof Error && 'code' in e && (e.code === 'ENOENT' || e.code === 'ENOTDIR');
}

/** Boot directories in start order. */
export async function listBoots(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e: unknown) {
    if (isMissing(e)) return [];
    throw e;
  }
  return entries.filter((d) => d.isDirectory() && isUuidV7(d.name)).map((d) => d.name).sort();
}

/** Segment numbers of a boot in ascending order ([] when the boot directory is gone). */
export async function listSegments(dir: string, boot: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(join(dir, boot));
  } catch (e: unknown) {
    if (isMissing(e)) return [];
    throw e;
  }
  const segments: number[] = [];
  for (const name of names) {
    const m = SEGMENT_RE.exec(name);
    if (m?.[1] !== undefined) segments.push(Number(m[1]));
  }
  return segments.sort((a, b) => a - b);
}

/** Size of a segment in bytes, or -1 when it no longer exists. */
export async function segmentSize(dir: string, boot: string, segment: number): Promise<number> {
  try {
    return (await stat(segmentPath(dir, boot, segment))).size;
  } catch (e: unknown) {
    if (isMissing(e)) return -1;
    throw e;
  }
}

/** fsync a directory so a file created, renamed or removed in it survives a crash. */
export async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
