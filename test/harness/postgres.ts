// A throwaway PostgreSQL server for tests: initdb in a temp dir, a free port on 127.0.0.1, the
// authentication method the test asks for, optional TLS with a throwaway CA. Real PostgreSQL from
// Debian's packages (test/harness/install-debian-deps.sh), run as the `postgres` OS user because
// initdb refuses to run as root.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { chmod, chown, copyFile, mkdtemp, readdir, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { freePort } from './free-port.ts';
import { run, spawnManaged, stopProcess, waitFor } from './processes.ts';
import { makeCertificates } from './tls.ts';

export type PostgresAuth = 'scram-sha-256' | 'md5' | 'password' | 'trust';

export interface PostgresOptions {
  /** Method for the test user over TCP (default scram-sha-256). */
  readonly auth?: PostgresAuth;
  /** Serve TLS with a throwaway CA whose server certificate names localhost and 127.0.0.1. */
  readonly tls?: boolean;
  /** Extra postgresql.conf lines. */
  readonly config?: readonly string[];
}

export interface PostgresInstance {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  /** Superuser, reachable only over the Unix socket in `socketDir` (trust). */
  readonly superuser: string;
  readonly socketDir: string;
  /** Unprivileged login role owning `database`, authenticating with `auth` over TCP. */
  readonly user: string;
  readonly password: string;
  readonly caCertPath?: string;
  readonly serverName: string;
  readonly dataDir: string;
  /** Runs SQL as the superuser through psql; returns unaligned tuples-only output. */
  psql(sql: string, database?: string): Promise<string>;
  stop(): Promise<void>;
}

let binDirCache: string | undefined;

export async function postgresBinDir(): Promise<string> {
  if (binDirCache !== undefined) return binDirCache;
  const versions = (await readdir('/usr/lib/postgresql').catch(() => [] as string[])).sort((a, b) => Number(b) - Number(a));
  const version = versions.includes('15') ? '15' : versions[0];
  if (version === undefined) throw new Error('PostgreSQL server binaries not found: run test/harness/install-debian-deps.sh');
  binDirCache = `/usr/lib/postgresql/${version}/bin`;
  return binDirCache;
}

function postgresUser(): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresInstance> {
  const auth = options.auth ?? 'scram-sha-256';
  const bin = await postgresBinDir();
  const dir = await mkdtemp(join(tmpdir(), 'custos-pg-'));
  const dataDir = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUser() : undefined;
  const runAs = owner ? { uid: owner.uid, gid: owner.gid } : {};
  if (owner) await chown(dir, owner.uid, owner.gid);

  await run(join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-E', 'UTF8', '--no-locale', '--auth-local=trust', '--auth-host=reject', '-N'], { ...runAs, cwd: dir });

  const port = await freePort();
  const user = 'custos_app';
  const database = 'app';
  const password = randomBytes(12).toString('base64url');
  const conf = [
    `port = ${port}`,
    `listen_addresses = '127.0.0.1'`,
    `unix_socket_directories = '${dir}'`,
    'fsync = off',
    'synchronous_commit = off',
    'full_page_writes = off',
    'max_connections = 200',
    'shared_buffers = 32MB',
    `password_encryption = '${auth === 'md5' ? 'md5' : 'scram-sha-256'}'`,
    'log_min_messages = warning',
    ...(options.config ?? []),
  ];
  let caCertPath: string | undefined;
  if (options.tls === true) {
    const certs = await makeCertificates(['localhost', '127.0.0.1'], join(dir, 'tls'));
    for (const f of ['server.crt', 'server.key', 'ca.crt']) await copyFile(join(certs.dir, f), join(dataDir, f));
    if (owner) for (const f of ['server.crt', 'server.key', 'ca.crt']) await chown(join(dataDir, f), owner.uid, owner.gid);
    await chmod(join(dataDir, 'server.key'), 0o600);
    conf.push('ssl = on', `ssl_cert_file = 'server.crt'`, `ssl_key_file = 'server.key'`);
    caCertPath = certs.caCertPath;
  }
  await appendFile(join(dataDir, 'postgresql.conf'), `\n${conf.join('\n')}\n`);
  await writeFile(join(dataDir, 'pg_hba.conf'), [
    'local all postgres trust',
    'local all all trust',
    `host all ${user} 127.0.0.1/32 ${auth}`,
    `host all all 127.0.0.1/32 ${auth}`,
    '',
  ].join('\n'));

  const child: ChildProcess = spawnManaged(join(bin, 'postgres'), ['-D', dataDir], { ...runAs, cwd: dir });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
  const psql = async (sql: string, db = 'postgres'): Promise<string> =>
    run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', dir, '-p', String(port), '-U', 'postgres', '-d', db, '-c', sql]);
  try {
    await waitFor('PostgreSQL to accept connections', async () => {
      if (child.exitCode !== null) throw new Error(`postgres exited: ${log}`);
      await psql('select 1');
      return true;
    }, 30_000);
  } catch (e: unknown) {
    child.kill('SIGKILL');
    throw new Error(`PostgreSQL did not start: ${log}`, { cause: e });
  }
  await psql(`CREATE ROLE ${user} LOGIN PASSWORD '${password}'`);
  await psql(`CREATE DATABASE ${database} OWNER ${user}`);

  return {
    host: '127.0.0.1', port, database, superuser: 'postgres', socketDir: dir, user, password,
    ...(caCertPath !== undefined ? { caCertPath } : {}),
    serverName: 'localhost', dataDir,
    psql: (sql, db) => psql(sql, db ?? database),
    async stop() {
      await stopProcess(child, 'SIGINT');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
