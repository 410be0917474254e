// A throwaway pgbouncer in front of a throwaway PostgreSQL, for the benchmark baseline: session
// pooling, SCRAM on both sides (pgbouncer 1.18 derives the upstream SCRAM exchange from a plaintext
// password in its auth_file), listening on a free loopback port. pgbouncer refuses to run as root,
// so under root it runs as the `postgres` OS user, like the harness's PostgreSQL.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/harness/free-port.ts';
import { run, spawnManaged, stopProcess, waitFor } from '../test/harness/processes.ts';

export const PGBOUNCER_BIN = '/usr/sbin/pgbouncer';

export interface PgbouncerOptions {
  /** Upstream PostgreSQL (TCP). */
  readonly upstreamHost: string;
  readonly upstreamPort: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
  /** Server connections per user/database pair; keep it ≥ the benchmark's clients. */
  readonly poolSize: number;
}

export interface PgbouncerInstance {
  readonly host: string;
  readonly port: number;
  /** The pgbouncer process itself (single-threaded), for /proc/<pid>/stat. */
  readonly pid: number;
  logs(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

function quoteUserlist(value: string): string {
  return `"${value.replace(/"/g, '""')}"`;
}

export async function startPgbouncer(options: PgbouncerOptions): Promise<PgbouncerInstance> {
  const dir = await mkdtemp(join(tmpdir(), 'custos-pgbouncer-'));
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot
    ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()) }
    : undefined;
  const port = await freePort();
  const userlist = join(dir, 'userlist.txt');
  const ini = join(dir, 'pgbouncer.ini');
  await writeFile(userlist, `${quoteUserlist(options.user)} ${quoteUserlist(options.password)}\n`, { mode: 0o600 });
  await writeFile(ini, [
    '[databases]',
    `${options.database} = host=${options.upstreamHost} port=${options.upstreamPort} dbname=${options.database}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    // No Unix socket: every endpoint of the benchmark is reached over TCP loopback.
    'unix_socket_dir =',
    'auth_type = scram-sha-256',
    `auth_file = ${userlist}`,
    'pool_mode = session',
    `default_pool_size = ${options.poolSize}`,
    `max_client_conn = ${Math.max(100, options.poolSize * 4)}`,
    `max_db_connections = ${options.poolSize}`,
    'ignore_startup_parameters = extra_float_digits',
    'log_connections = 0',
    'log_disconnections = 0',
    'log_pooler_errors = 1',
    'stats_period = 3600',
    '',
  ].join('\n'));
  if (owner) {
    for (const p of [dir, userlist, ini]) await chown(p, owner.uid, owner.gid);
  }

  const child: ChildProcess = spawnManaged(PGBOUNCER_BIN, [ini], { cwd: dir, ...(owner ? { uid: owner.uid, gid: owner.gid } : {}) });
  let log = '';
  const keep = (d: Buffer): void => { log = (log + d.toString()).slice(-8000); };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const pid = child.pid;
  if (pid === undefined) throw new Error('pgbouncer did not start');
  try {
    await waitFor('pgbouncer to accept connections', async () => {
      if (child.exitCode !== null) throw new Error(`pgbouncer exited with ${child.exitCode}: ${log}`);
      await run('psql', ['-X', '-q', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-U', options.user, '-d', options.database, '-c', 'select 1'], {
        env: { ...process.env, PGPASSWORD: options.password, PGSSLMODE: 'disable' },
      });
      return true;
    }, 20_000, 100);
  } catch (e: unknown) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`pgbouncer did not start: ${log}`, { cause: e });
  }
  return {
    host: '127.0.0.1',
    port,
    pid,
    logs: () => log,
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      await stopProcess(child, 'SIGINT');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
