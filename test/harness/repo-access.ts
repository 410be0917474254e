// Tests that run processes as other users (the sidecar as its proxy UID, apps as 1000) need those
// users to reach the checkout: its modules and entry points. A clone in a `mktemp -d` directory
// (mode 0700, as CI makes one) is closed to them, so the path to the repository is opened for
// traversal only (o+x on each directory that lacks it: nothing becomes listable or readable).
import { chmod, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { REPO_ROOT } from './sidecar-files.ts';

export async function letOtherUsersReachRepo(): Promise<void> {
  let dir = REPO_ROOT.replace(/\/+$/, '');
  for (;;) {
    const { mode } = await stat(dir);
    if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001);
    const parent = dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}
