// `custos demo` (what `npm start` runs): a real PostgreSQL (PGlite, compiled to WASM) behind a
// Custos sidecar that enforces examples/policy.yaml, a demo token issuer, a scripted walkthrough,
// then instructions to try it yourself with psql until Ctrl-C.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import pg from 'pg';
import { parseDocument } from 'yaml';
import { formatEvent } from './audit-tail.ts';
import { auditEvents } from './audit-source.ts';
import { resolveSidecarConfig } from '../../sidecar/config.ts';
import { createLogger } from '../../sidecar/logger.ts';
import { startSidecar, type Sidecar } from '../../sidecar/main.ts';
import { createLocalIssuer } from '../../sidecar/identity/local-issuer.ts';

const DEMO_ISSUER = 'https://demo.custos.local';

const SEED_SQL = `
CREATE TABLE invoices (
  id serial PRIMARY KEY,
  customer text NOT NULL,
  amount_cents integer NOT NULL,
  status text NOT NULL DEFAULT 'open',
  issued_on date NOT NULL DEFAULT current_date
);
INSERT INTO invoices (customer, amount_cents, status) VALUES
  ('Acme Corp', 129900, 'paid'),
  ('Globex', 45000, 'open'),
  ('Initech', 980000, 'overdue'),
  ('Umbrella', 12500, 'open');
`;

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => { resolvePort(false); });
    server.listen(port, '127.0.0.1', () => server.close(() => { resolvePort(true); }));
  });
}

interface WalkthroughStep {
  readonly title: string;
  readonly sql: string;
}

const WALKTHROUGH: readonly WalkthroughStep[] = [
  { title: 'a read the policy allows (rule allow-reads)', sql: 'SELECT id, customer, amount_cents, status FROM invoices ORDER BY id' },
  { title: 'a write the ci subject may do (rule allow-writes-billing)', sql: "UPDATE invoices SET status = 'paid' WHERE id = 2" },
  { title: 'schema change: refused by rule deny-ddl', sql: 'DROP TABLE invoices' },
  { title: 'a DELETE without WHERE: refused by rule deny-unfiltered-writes', sql: 'DELETE FROM invoices' },
  { title: 'DML hidden in a CTE is still a DELETE', sql: 'WITH gone AS (DELETE FROM invoices RETURNING *) SELECT count(*) FROM gone' },
  { title: 'opaque code: refused by rule deny-opaque-code', sql: "DO $$ BEGIN EXECUTE 'DROP TABLE invoices'; END $$" },
];

export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string', default: '6432' },
      dir: { type: 'string', default: '.custos' },
      'walkthrough-only': { type: 'boolean' },
    },
    strict: true,
  });
  const base = resolve(values.dir);
  const work = join(base, 'demo');
  await mkdir(join(work, 'credentials', 'billing-db'), { recursive: true });

  // 1. The database: real PostgreSQL in WASM, seeded with an invoices table.
  const db = await PGlite.create();
  await db.exec(SEED_SQL);
  const pgServer = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1', maxConnections: 16 });
  await pgServer.start();
  const dbPort = (pgServer as unknown as { port: number }).port;

  // 2. A demo token issuer: its JWKS is a file the sidecar reads; the token is the psql password.
  const issuer = await createLocalIssuer({ issuer: DEMO_ISSUER, alg: 'ES256' });
  const jwksFile = join(work, 'jwks.json');
  await issuer.writeJwksFile(jwksFile);
  const token = await issuer.mint(
    { repository: 'acme/billing', ref: 'refs/heads/main', workflow: 'deploy-demo', run_id: '4242' },
    { subject: 'repo:acme/billing:ref:refs/heads/main', audience: 'custos', expiresInSeconds: 3600 },
  );

  // 3. The example policy, with its JWKS path pointed at the demo issuer's file.
  const policyText = await readFile(new URL('../../examples/policy.yaml', import.meta.url), 'utf8');
  const policyDoc = parseDocument(policyText);
  policyDoc.setIn(['spec', 'issuers', 0, 'jwksFile'], jwksFile);
  const policyFile = join(work, 'policy.yaml');
  await writeFile(policyFile, policyDoc.toString());
  // The upstream credentials the workload never sees (PGlite accepts any; a real server checks them).
  await writeFile(join(work, 'credentials', 'billing-db', 'username'), 'postgres\n');
  await writeFile(join(work, 'credentials', 'billing-db', 'password'), 'demo-upstream-password\n', { mode: 0o600 });

  let port = Number(values.port);
  if (!(await portIsFree(port))) port = 0;
  const config = resolveSidecarConfig(
    {
      policyFile,
      listen: { host: '127.0.0.1', ports: { billing: port } },
      http: { host: '127.0.0.1', port: 0 },
      credentialsDir: join(work, 'credentials'),
      spool: { dir: join(base, 'spool'), maxBytes: 64 * 1024 * 1024 },
      gateway: { id: 'custos-demo', podUid: 'demo' },
      targetOverrides: { billing: { host: '127.0.0.1', port: dbPort, database: 'postgres' } },
      shutdownGraceSeconds: 2,
      logLevel: process.env['CUSTOS_LOG_LEVEL'] ?? 'warn',
    },
    base,
  );
  const logger = createLogger(config.logLevel, process.stderr);
  const sidecar: Sidecar = await startSidecar(config, logger);
  const sidecarPort = sidecar.listeners.get('billing')?.port ?? port;
  const out = (line = ''): void => { process.stdout.write(`${line}\n`); };

  out('Custos demo: PostgreSQL (PGlite) behind a Custos sidecar enforcing examples/policy.yaml');
  out(`  database (upstream)   127.0.0.1:${dbPort}  — only the sidecar holds its credentials`);
  out(`  sidecar (for clients) 127.0.0.1:${sidecarPort}  — metrics and health on http://127.0.0.1:${sidecar.ops.port}/metrics`);
  out(`  policy in force       ${policyFile} (edit it: the sidecar reloads it within a second)`);
  out(`  audit spool           ${config.spool.dir}${config.redisUrl !== undefined ? `, shipped to ${config.redisUrl} (stream custos:audit:{demo})` : ' (set REDIS_URL to ship to Redis)'}`);
  out();

  // 4. The walkthrough, with the pg driver through the sidecar, as a workload would connect.
  out('Walkthrough (pg driver → sidecar → PostgreSQL):');
  const client = new pg.Client({ host: '127.0.0.1', port: sidecarPort, database: 'billing', user: 'ci-bot', password: token, application_name: 'custos-demo' });
  await client.connect();
  for (const step of WALKTHROUGH) {
    out(`\n  -- ${step.title}\n  ${step.sql};`);
    try {
      const result = await client.query(step.sql);
      if (result.rows.length > 0 && result.command === 'SELECT') {
        for (const row of result.rows) out(`     ${JSON.stringify(row)}`);
      }
      out(`  → ${result.command} ${result.rowCount ?? ''}`.trimEnd());
    } catch (e: unknown) {
      const err = e as { code?: string; message?: string };
      out(`  → ERROR ${err.code ?? ''}: ${err.message ?? String(e)}`);
    }
  }
  await client.end();
  await new Promise((r) => setTimeout(r, 100));

  out('\nAudit trail of this session (custos audit tail):');
  const bootId = sidecar.spool.bootId;
  for await (const event of auditEvents({ spool: config.spool.dir }, () => undefined)) {
    if (event.boot_id === bootId) out(`  ${formatEvent(event)}`);
  }

  if (values['walkthrough-only'] === true) {
    await sidecar.drain();
    await pgServer.stop();
    await db.close();
    return 0;
  }

  out('\nTry it yourself (the token is valid for one hour):');
  out(`  PGPASSWORD='${token}' \\`);
  out(`    psql "host=127.0.0.1 port=${sidecarPort} dbname=billing user=ci-bot sslmode=disable"`);
  out('  then: SELECT * FROM invoices;   DROP TABLE invoices;   DELETE FROM invoices;');
  out(`Follow the audit trail in another terminal:  npx custos audit tail --follow --spool ${config.spool.dir}`);
  out('Check a statement without running it:        npx custos policy check --policy examples/policy.yaml --sql "TRUNCATE invoices"');
  out('\nPress Ctrl-C to stop.');

  await new Promise<void>((resolveStop) => {
    const stop = (): void => { resolveStop(); };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await sidecar.drain();
  await pgServer.stop();
  await db.close();
  return 0;
}
