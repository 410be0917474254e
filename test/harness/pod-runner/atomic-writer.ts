// The kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go), which ConfigMap, Secret,
// downwardAPI and projected volumes use: each version of the payload lives in a timestamped
// directory `..2026_01_01_00_00_00.123456789`, `..data` is a symlink to the current one, and each
// top-level name the user sees is a symlink through `..data`. An update writes the new directory,
// points `..data_tmp` at it and renames that over `..data` (one atomic rename), so a reader sees
// the old files or the new ones, never a mix, and watchers see the `..data` swap they see in a cluster.
import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export interface PayloadFile {
  readonly data: Buffer;
  /** File mode, e.g. 0o644 (the kubelet's default 420). */
  readonly mode: number;
}

/** Relative path (may contain `/`) → content. */
export type Payload = ReadonlyMap<string, PayloadFile>;

const DATA_DIR = '..data';
const DATA_TMP = '..data_tmp';

function timestampDirPrefix(now: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `..${now.getUTCFullYear()}_${p(now.getUTCMonth() + 1)}_${p(now.getUTCDate())}_${p(now.getUTCHours())}_${p(now.getUTCMinutes())}_${p(now.getUTCSeconds())}.`;
}

async function currentPayload(dir: string): Promise<Map<string, Buffer> | undefined> {
  const target = await readlink(join(dir, DATA_DIR)).catch(() => undefined);
  if (target === undefined) return undefined;
  const out = new Map<string, Buffer>();
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(dir, target, rel), { withFileTypes: true })) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) await walk(path);
      else out.set(path, await readFile(join(dir, target, path)));
    }
  };
  await walk('');
  return out;
}

function samePayload(current: ReadonlyMap<string, Buffer> | undefined, next: Payload): boolean {
  if (current?.size !== next.size) return false;
  for (const [path, file] of next) {
    const old = current.get(path);
    if (old === undefined || !old.equals(file.data)) return false;
  }
  return true;
}

/** Writes `payload` into `dir` (created if needed); returns false when it was already there. */
export async function writeAtomically(dir: string, payload: Payload): Promise<boolean> {
  for (const path of payload.keys()) {
    if (path === '' || path.startsWith('/') || path.split('/').some((p) => p === '..' || p === '' || p.startsWith('..'))) {
      throw new Error(`invalid volume file path ${JSON.stringify(path)}: must be relative, without '..' and not starting with '..'`);
    }
  }
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  const current = await currentPayload(dir);
  if (samePayload(current, payload)) return false;
  const oldTarget = await readlink(join(dir, DATA_DIR)).catch(() => undefined);

  const versionDir = await mkdtemp(join(dir, timestampDirPrefix(new Date())));
  await chmod(versionDir, 0o755);
  for (const [path, file] of payload) {
    const full = join(versionDir, path);
    await mkdir(dirname(full), { recursive: true, mode: 0o755 });
    await writeFile(full, file.data);
    await chmod(full, file.mode);
  }
  const versionName = versionDir.slice(dir.length + 1);
  await rm(join(dir, DATA_TMP), { force: true });
  await symlink(versionName, join(dir, DATA_TMP));
  await rename(join(dir, DATA_TMP), join(dir, DATA_DIR));

  const topLevel = new Set([...payload.keys()].map((p) => p.split('/')[0] ?? p));
  for (const name of topLevel) {
    const exists = await lstat(join(dir, name)).then(() => true, () => false);
    if (!exists) await symlink(join(DATA_DIR, name), join(dir, name));
  }
  for (const entry of await readdir(dir)) {
    if (!entry.startsWith('..') && !topLevel.has(entry)) await rm(join(dir, entry), { force: true, recursive: true });
  }
  if (oldTarget !== undefined && oldTarget !== versionName) await rm(join(dir, oldTarget), { recursive: true, force: true });
  return true;
}
