// Shared data and tools for the sidecar acceptance tests: the billing schema the example policy
// talks about, owned by the upstream role so that a statement the sidecar wrongly let through
// would really take effect (a DROP would drop), and psql/pgbench runners that never throw.
import { spawn } from 'node:child_process';
import type { CustosStack } from './custos-stack.ts';

export async function createBillingSchema(stack: CustosStack): Promise<void> {
  const owner = stack.postgres.user;
  await stack.postgres.psql([
    'DROP TABLE IF EXISTS invoices, customers',
    'CREATE TABLE invoices (id integer PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL DEFAULT 0)',
    'CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL)',
    "INSERT INTO invoices SELECT g, 'customer ' || g, g * 10 FROM generate_series(1, 5) g",
    "INSERT INTO customers VALUES (1, 'Acme'), (2, 'Globex')",
    `ALTER TABLE invoices OWNER TO ${owner}`,
    `ALTER TABLE customers OWNER TO ${owner}`,
  ].join('; '));
}

/** True when the table still exists upstream (checked as superuser, not through the sidecar). */
export async function tableExists(stack: CustosStack, name: string): Promise<boolean> {
  return (await stack.postgres.psql(`SELECT to_regclass('public.${name}') IS NOT NULL`)).trim() === 't';
}

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion and returns its exit code and output (never rejects on exit code). */
export async function runCommand(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => undefined);
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    child.stdin.end(options.input ?? '');
  });
}

/** psql through the sidecar with the token as PGPASSWORD. */
export async function psqlThroughSidecar(stack: CustosStack, token: string, args: readonly string[], options: { input?: string; applicationName?: string } = {}): Promise<CommandResult> {
  const conninfo = `host=127.0.0.1 port=${stack.port} dbname=${stack.postgres.database} user=x sslmode=disable application_name=${options.applicationName ?? 'custos-psql'}`;
  return runCommand('psql', ['-X', '-w', '-v', 'ON_ERROR_STOP=1', conninfo, ...args], {
    env: { PGPASSWORD: token, PGCONNECT_TIMEOUT: '10' },
    ...(options.input !== undefined ? { input: options.input } : {}),
  });
}
