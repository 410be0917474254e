// The whole PostgreSQL data path for cross-component tests, all real: a throwaway PostgreSQL, an
// optional Redis, a local token issuer, and the Custos sidecar started as its own process with
// `custos sidecar --config FILE`, exactly as a pod runs it.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createLocalIssuer, type LocalIssuer } from '../../sidecar/identity/local-issuer.ts';
import { startPostgres, type PostgresInstance, type PostgresOptions } from './postgres.ts';
import { ISSUER, REPO_ROOT, writeSidecarFiles, type PolicyDocument } from './sidecar-files.ts';
import { spawnManaged, stopProcess, waitFor } from './processes.ts';
import { startRedis, type RedisInstance } from './redis.ts';

export { ISSUER, POD_UID, REPO_ROOT } from './sidecar-files.ts';
export const NODE = join(REPO_ROOT, 'node_modules', '.bin', 'node');
export const CUSTOS_CLI = join(REPO_ROOT, 'cli', 'custos.ts');

export interface StackOptions {
  readonly postgres?: PostgresOptions;
  readonly redis?: boolean;
  /** Edits the policy document (a `yaml` Document of examples/policy.yaml, already pointed at the stack). */
  readonly editPolicy?: (doc: PolicyDocument) => void;
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
  const { policyFile, configFile, spoolDir, port, httpPort } = await writeSidecarFiles({
    dir,
    postgres,
    issuer,
    ...(options.editPolicy !== undefined ? { editPolicy: options.editPolicy } : {}),
    spoolMaxBytes: options.spoolMaxBytes ?? 1024 * 1024 * 1024, // load tests (pgbench) must not fill it; spool-full tests set their own
    gatewayId: 'custos-test',
    logLevel: 'debug',
    extraConfig: { ...(redis !== undefined ? { redisUrl: redis.url } : {}), ...options.extraConfig },
  });

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
