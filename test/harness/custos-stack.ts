// The whole PostgreSQL data path for cross-component tests, all real: a throwaway PostgreSQL, an
// optional Redis, a local token issuer, and the Custos sidecar started as its own process with
// `custos sidecar --config FILE`, exactly as a pod runs it.
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { parseDocument } from 'yaml';
import { createLocalIssuer, type LocalIssuer } from '../../sidecar/identity/local-issuer.ts';
import { freePort } from './free-port.ts';
import { startPostgres, type PostgresInstance, type PostgresOptions } from './postgres.ts';
import { spawnManaged, stopProcess, waitFor } from './processes.ts';
import { startRedis, type RedisInstance } from './redis.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const NODE = join(REPO_ROOT, 'node_modules', '.bin', 'node');
export const CUSTOS_CLI = join(REPO_ROOT, 'cli', 'custos.ts');
export const ISSUER = 'https://issuer.custos.test';
export const POD_UID = 'pod-uid-0001';

export interface StackOptions {
  readonly postgres?: PostgresOptions;
  readonly redis?: boolean;
  /** Edits the policy document (a `yaml` Document of examples/policy.yaml, already pointed at the stack). */
  readonly editPolicy?: (doc: ReturnType<typeof parseDocument>) => void;
  readonly spoolMaxBytes?: number;
  readonly extraConfig?: Record<string, unknown>;
}

export interface CustosStack {
  readonly postgres: PostgresInstance;
  readonly redis: RedisInstance | undefined;
  readonly issuer: LocalIssuer;
  readonly dir: string;
  readonly policyFile: string;
  readonly spoolDir: string;
  readonly port: number;
  readonly httpPort: number;
  /** Everything the sidecar process wrote to stdout and stderr (its logs). */
  logs(): string;
  /** A valid caller token for the `ci` subject of the example policy. */
  token(claims?: Record<string, unknown>, options?: Parameters<LocalIssuer['mint']>[1]): Promise<string>;
  /** pg client options that reach the sidecar with `password` (a token). */
  clientConfig(password: string): pg.ClientConfig;
  connect(password?: string): Promise<pg.Client>;
  restartSidecar(): Promise<void>;
  stopSidecar(signal?: NodeJS.Signals): Promise<number | null>;
  stop(): Promise<void>;
}

export const CI_CLAIMS = { repository: 'acme/billing', ref: 'refs/heads/main', workflow: 'deploy-tests' } as const;

export async function startCustosStack(options: StackOptions = {}): Promise<CustosStack> {
  const dir = await mkdtemp(join(tmpdir(), 'custos-stack-'));
  const postgres = await startPostgres(options.postgres ?? {});
  const redis = options.redis === true ? await startRedis() : undefined;
  const issuer = await createLocalIssuer({ issuer: ISSUER, alg: 'ES256' });
  const jwksFile = join(dir, 'jwks.json');
  await issuer.writeJwksFile(jwksFile);

  const policyDoc = parseDocument(await readFile(join(REPO_ROOT, 'examples', 'policy.yaml'), 'utf8'));
  policyDoc.setIn(['spec', 'issuers', 0, 'issuer'], ISSUER);
  policyDoc.setIn(['spec', 'issuers', 0, 'jwksFile'], jwksFile);
  policyDoc.setIn(['spec', 'subjects', 1, 'oidc', 'issuer'], ISSUER);
  policyDoc.setIn(['spec', 'targets', 0, 'host'], postgres.host);
  policyDoc.setIn(['spec', 'targets', 0, 'port'], postgres.port);
  policyDoc.setIn(['spec', 'targets', 0, 'database'], postgres.database);
  if (postgres.caCertPath !== undefined) {
    policyDoc.setIn(['spec', 'targets', 0, 'tls'], { mode: 'verify-full', caSecretName: 'billing-ca', serverName: 'localhost' });
  }
  options.editPolicy?.(policyDoc);
  const policyFile = join(dir, 'policy.yaml');
  await writeFile(policyFile, policyDoc.toString());

  const credentials = join(dir, 'credentials');
  await mkdir(join(credentials, 'billing-db'), { recursive: true });
  await writeFile(join(credentials, 'billing-db', 'username'), postgres.user);
  await writeFile(join(credentials, 'billing-db', 'password'), postgres.password, { mode: 0o600 });
  if (postgres.caCertPath !== undefined) {
    await mkdir(join(credentials, 'billing-ca'), { recursive: true });
    await writeFile(join(credentials, 'billing-ca', 'ca.crt'), await readFile(postgres.caCertPath));
  }

  const port = await freePort();
  const httpPort = await freePort();
  const spoolDir = join(dir, 'spool');
  const configFile = join(dir, 'sidecar.yaml');
  await writeFile(configFile, JSON.stringify({
    policyFile,
    listen: { host: '127.0.0.1', ports: { billing: port } },
    http: { host: '127.0.0.1', port: httpPort },
    credentialsDir: credentials,
    spool: { dir: spoolDir, maxBytes: options.spoolMaxBytes ?? 64 * 1024 * 1024 },
    ...(redis !== undefined ? { redisUrl: redis.url } : {}),
    gateway: { id: 'custos-test', podUid: POD_UID },
    shutdownGraceSeconds: 2,
    logLevel: 'debug',
    ...options.extraConfig,
  }));

  let child: ChildProcess | undefined;
  let logs = '';
  const startSidecar = async (): Promise<void> => {
    const env = { ...process.env };
    delete env['REDIS_URL'];
    const proc = spawnManaged(NODE, [CUSTOS_CLI, 'sidecar', '--config', configFile], { cwd: dir, env });
    child = proc;
    proc.stdout?.on('data', (d: Buffer) => { logs += d.toString(); });
    proc.stderr?.on('data', (d: Buffer) => { logs += d.toString(); });
    await waitFor('the sidecar to become ready', async () => {
      if (proc.exitCode !== null) throw new Error(`sidecar exited with ${proc.exitCode}:\n${logs}`);
      const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
      return res.status === 200;
    }, 30_000);
  };
  const stopSidecar = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    const proc = child;
    if (proc === undefined) return null;
    await stopProcess(proc, signal);
    child = undefined;
    return proc.exitCode;
  };
  await startSidecar();

  const clientConfig = (password: string): pg.ClientConfig => ({
    host: '127.0.0.1', port, user: 'ci-bot', database: postgres.database, password, application_name: 'custos-tests',
  });
  const token = (claims: Record<string, unknown> = {}, mintOptions: Parameters<LocalIssuer['mint']>[1] = {}): Promise<string> =>
    issuer.mint({ ...CI_CLAIMS, ...claims }, { audience: 'custos', subject: 'repo:acme/billing:ref:refs/heads/main', expiresInSeconds: 600, ...mintOptions });

  return {
    postgres, redis, issuer, dir, policyFile, spoolDir, port, httpPort,
    logs: () => logs,
    token,
    clientConfig,
    async connect(password?: string) {
      const client = new pg.Client(clientConfig(password ?? (await token())));
      await client.connect();
      return client;
    },
    async restartSidecar() {
      await stopSidecar();
      await startSidecar();
    },
    stopSidecar,
    async stop() {
      await stopSidecar();
      await redis?.destroy();
      await postgres.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
