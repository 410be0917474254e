// The Custos sidecar for the benchmark: the same wiring as test/harness/custos-stack.ts (the example
// policy pointed at a local issuer and the given PostgreSQL, credentials in a Secret-style folder,
// the audit spool on local disk with group-committed datasync, no Redis), but against a PostgreSQL
// the benchmark already runs, with the process id exposed for CPU accounting, an info log level
// (what a pod runs) and an optional V8 CPU profile.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalIssuer } from '../sidecar/identity/local-issuer.ts';
import { CI_CLAIMS, CUSTOS_CLI, ISSUER, NODE } from '../test/harness/custos-stack.ts';
import { writeSidecarFiles } from '../test/harness/sidecar-files.ts';
import type { PostgresInstance } from '../test/harness/postgres.ts';
import { spawnManaged, stopProcess, waitFor } from '../test/harness/processes.ts';

/** The login name pgbench presents to the sidecar; identity comes from the token. */
export const CUSTOS_BENCH_USER = 'ci-bot';

export interface BenchSidecarOptions {
  readonly postgres: PostgresInstance;
  /** Write a V8 CPU profile (`--cpu-prof`) into this directory when the sidecar exits. */
  readonly cpuProfDir?: string;
  readonly logLevel?: string;
  /**
   * Parent directory of the audit spool (default: the OS temp dir, like the test harness). Pointing
   * it at tmpfs (/dev/shm) removes the disk's datasync latency: an attribution experiment, not a
   * configuration anyone should run, since the spool must survive a node crash.
   */
  readonly spoolParent?: string;
  /** Spool capacity; nothing ships it away during the benchmark (no Redis). */
  readonly spoolMaxBytes?: number;
}

export interface BenchSidecar {
  readonly port: number;
  readonly pid: number;
  readonly spoolDir: string;
  /** A fresh caller token for the example policy's `ci` subject. */
  token(expiresInSeconds: number): Promise<string>;
  /** Bytes currently in the spool (all segments). */
  spoolBytes(): Promise<number>;
  logs(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    total += (await stat(join(entry.parentPath, entry.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

export async function startBenchSidecar(options: BenchSidecarOptions): Promise<BenchSidecar> {
  const { postgres } = options;
  const dir = await mkdtemp(join(tmpdir(), 'custos-bench-sidecar-'));
  const issuer = await createLocalIssuer({ issuer: ISSUER, alg: 'ES256' });
  const spoolDir = options.spoolParent !== undefined ? await mkdtemp(join(options.spoolParent, 'custos-bench-spool-')) : join(dir, 'spool');
  const { configFile, port, httpPort } = await writeSidecarFiles({
    dir,
    postgres,
    issuer,
    spoolDir,
    spoolMaxBytes: options.spoolMaxBytes ?? 8 * 1024 * 1024 * 1024,
    gatewayId: 'custos-bench',
    logLevel: options.logLevel ?? 'info',
  });

  const env = { ...process.env };
  delete env['REDIS_URL'];
  delete env['NODE_OPTIONS'];
  const nodeArgs = options.cpuProfDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir] : [];
  const child: ChildProcess = spawnManaged(NODE, [...nodeArgs, CUSTOS_CLI, 'sidecar', '--config', configFile], { cwd: dir, env });
  let logs = '';
  const keep = (d: Buffer): void => { logs = (logs + d.toString()).slice(-200_000); };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const pid = child.pid;
  if (pid === undefined) throw new Error('the sidecar did not start');
  try {
    await waitFor('the sidecar to become ready', async () => {
      if (child.exitCode !== null) throw new Error(`sidecar exited with ${child.exitCode}:\n${logs}`);
      const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
      return res.status === 200;
    }, 30_000);
  } catch (e: unknown) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`the Custos sidecar did not become ready:\n${logs.slice(-4000)}`, { cause: e });
  }

  return {
    port,
    pid,
    spoolDir,
    token: (expiresInSeconds) => issuer.mint({ ...CI_CLAIMS }, { audience: 'custos', subject: 'repo:acme/billing:ref:refs/heads/main', expiresInSeconds }),
    spoolBytes: () => directoryBytes(spoolDir),
    logs: () => logs,
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      // SIGTERM drains and exits normally, which is when --cpu-prof writes its profile.
      await stopProcess(child, 'SIGTERM', 30_000);
      await rm(dir, { recursive: true, force: true });
      await rm(spoolDir, { recursive: true, force: true });
    },
  };
}
