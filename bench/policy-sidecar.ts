// A benchmark sidecar whose policy the caller edits (e.g. adds `spec.masking`), with extra files
// (an HMAC key) next to it. Laid out by test/harness/sidecar-files.ts like bench/custos-sidecar.ts —
// the example policy pointed at a local issuer and the given PostgreSQL, credentials in a
// Secret-style folder, the audit spool on local disk with group-committed datasync, no Redis, log
// level info — which has no policy hook; this is that sidecar plus `editPolicy` and `files`.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalIssuer } from '../sidecar/identity/local-issuer.ts';
import { CI_CLAIMS, CUSTOS_CLI, ISSUER, NODE } from '../test/harness/custos-stack.ts';
import { writeSidecarFiles, type PolicyDocument } from '../test/harness/sidecar-files.ts';
import type { PostgresInstance } from '../test/harness/postgres.ts';
import { spawnManaged, stopProcess, waitFor } from '../test/harness/processes.ts';
import type { BenchSidecar } from './custos-sidecar.ts';

export interface PolicySidecarOptions {
  readonly postgres: PostgresInstance;
  /**
   * Edits the policy (a `yaml` Document of examples/policy.yaml, already pointed at the issuer and
   * the PostgreSQL). `dir` is the sidecar's private directory, where `files` were written.
   */
  readonly editPolicy?: (doc: PolicyDocument, dir: string) => void;
  /** Files written into the sidecar's directory before it starts (name → content, mode 0600). */
  readonly files?: Readonly<Record<string, string>>;
  readonly cpuProfDir?: string;
  readonly logLevel?: string;
  readonly spoolMaxBytes?: number;
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    total += (await stat(join(entry.parentPath, entry.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

export async function startPolicySidecar(options: PolicySidecarOptions): Promise<BenchSidecar> {
  const { postgres } = options;
  const dir = await mkdtemp(join(tmpdir(), 'custos-bench-sidecar-'));
  for (const [name, content] of Object.entries(options.files ?? {})) await writeFile(join(dir, name), content, { mode: 0o600 });
  const issuer = await createLocalIssuer({ issuer: ISSUER, alg: 'ES256' });
  const { configFile, port, httpPort, spoolDir } = await writeSidecarFiles({
    dir,
    postgres,
    issuer,
    ...(options.editPolicy !== undefined ? { editPolicy: (doc: PolicyDocument) => { options.editPolicy?.(doc, dir); } } : {}),
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
      await stopProcess(child, 'SIGTERM', 30_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
