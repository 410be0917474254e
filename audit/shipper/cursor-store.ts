// The shipper's durable position in the spool: `<dir>/cursor.json`, replaced atomically by
// write temp → fsync → rename → fsync directory (reference/identity-and-audit.md §8.1), so after a
// crash the file holds either the old or the new cursor, never a torn one.
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { CustosError } from '../../lib/errors.ts';
import { syncDir } from '../spool/layout.ts';
import type { Cursor } from '../spool/spool-reader.ts';

export const CURSOR_FILE = 'cursor.json';

export interface StoredCursor extends Cursor {
  /** The last shipped event, for operators and restart checks. */
  readonly seq: number;
  readonly event_id: string;
  readonly hash: string;
}

export async function loadCursor(dir: string): Promise<StoredCursor | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, CURSOR_FILE), 'utf8');
  } catch (e: unknown) {
    if (e instanceof Error && 'code' in e && e.code === 'ENOENT') return undefined;
    throw e;
  }
  const value: unknown = JSON.parse(text);
  if (!isStoredCursor(value)) throw new CustosError('ERR_AUDIT_CURSOR', `${join(dir, CURSOR_FILE)} is not a valid cursor`);
  return value;
}

export async function saveCursor(dir: string, cursor: StoredCursor): Promise<void> {
  const path = join(dir, CURSOR_FILE);
  const temp = `${path}.tmp`;
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(JSON.stringify(cursor));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
  await syncDir(dir);
}

function isStoredCursor(v: unknown): v is StoredCursor {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Record<string, unknown>;
  return typeof c['boot'] === 'string' && Number.isSafeInteger(c['segment']) && Number.isSafeInteger(c['offset'])
    && Number.isSafeInteger(c['seq']) && typeof c['event_id'] === 'string' && typeof c['hash'] === 'string';
}
