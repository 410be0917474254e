// CPU accounting from /proc (proc(5)): the portable way to compare the cost of proxies that share
// two cores with PostgreSQL and pgbench (reference/postgres-protocol.md §16.4 item 6). All values
// are in clock ticks (USER_HZ, `getconf CLK_TCK`, 100 on Linux x86-64).
import { execFileSync } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';

export const CLK_TCK = ((): number => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

export interface ProcTimes {
  readonly ppid: number;
  /** utime + stime of the process itself. */
  readonly own: number;
  /** cutime + cstime: children that exited and were waited for. */
  readonly reapedChildren: number;
}

/** Fields after the command name, which is in parentheses and may itself contain spaces or ')'. */
function parseStat(text: string): ProcTimes | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // After ") ": state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17); index 0 here is field 3.
  const f = text.slice(close + 2).split(' ');
  const n = (i: number): number => Number(f[i - 3] ?? 0);
  return { ppid: n(4), own: n(14) + n(15), reapedChildren: n(16) + n(17) };
}

export async function procTimes(pid: number | 'self'): Promise<ProcTimes | undefined> {
  try {
    return parseStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** utime + stime of one process (pgbouncer, the sidecar: single processes). */
export async function processTicks(pid: number): Promise<number> {
  return (await procTimes(pid))?.own ?? 0;
}

/**
 * CPU of a forking server (PostgreSQL's postmaster and its backends): the postmaster's own time,
 * what its exited children left in cutime/cstime, and the live children's current time. Backends
 * that live across the window count their delta; those that start or end inside it count fully.
 */
export async function processTreeTicks(rootPid: number): Promise<number> {
  const root = await procTimes(rootPid);
  if (root === undefined) return 0;
  let total = root.own + root.reapedChildren;
  const entries = await readdir('/proc').catch(() => [] as string[]);
  await Promise.all(entries.map(async (name) => {
    if (!/^\d+$/.test(name)) return;
    const t = await procTimes(Number(name));
    if (t !== undefined && t.ppid === rootPid) total += t.own;
  }));
  return total;
}

/** Children of this process that exited (pgbench runs): cutime + cstime of /proc/self. */
export async function reapedChildrenTicks(): Promise<number> {
  return (await procTimes('self'))?.reapedChildren ?? 0;
}

export interface MachineTicks {
  /** user + nice + system + irq + softirq + steal, all CPUs. */
  readonly busy: number;
  readonly total: number;
  /** Of busy: time stolen by the hypervisor. */
  readonly steal: number;
}

export async function machineTicks(): Promise<MachineTicks> {
  const text = await readFile('/proc/stat', 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('cpu ')) ?? '';
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait, steal };
}
