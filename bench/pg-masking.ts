// `npm run bench:masking`: what result masking costs on a wide result. One throwaway PostgreSQL 15
// with a 10-column table `wide` of realistic personal data; a pgbench custom script selecting 1 000
// consecutive rows per transaction; three endpoints over TCP loopback, interleaved run by run —
// PostgreSQL directly, the sidecar with the example policy and no masking, and the sidecar with
// masking on three of the columns (partial, redact, hmac) plus the email and payment-card
// detectors — and each with queries that return the masked columns (`wide`) or none of them
// (`narrow`), to show that result sets without a masked column are forwarded untouched. Latency
// percentiles from pgbench's per-transaction log, CPU per transaction (and per row) from /proc.
// Method: docs/benchmarks.md "Masking", and bench/pg.ts, whose method this follows.
//
//   npm run bench:masking -- [--duration 10] [--clients 4] [--jobs 2] [--runs 3] [--warmup 3]
//                            [--modes extended] [--cells direct:wide,custos:wide,masking:wide,…]
//                            [--rows 10000] [--json FILE] [--cpu-prof DIR]
//
// Exits 1 when any run (warm-ups included) had a failed or aborted transaction, timed out, or a
// sidecar died, or when the masking sidecar did not mask what it should (or masked what it should
// not): the figures would not mean what the table says.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { luhnComplete } from '../test/harness/masking-fixtures.ts';
import { postgresBinDir, startPostgres, type PostgresInstance } from '../test/harness/postgres.ts';
import { run } from '../test/harness/processes.ts';
import { CUSTOS_BENCH_USER, type BenchSidecar } from './custos-sidecar.ts';
import { startPolicySidecar } from './policy-sidecar.ts';
import { CLK_TCK, machineTicks, processTicks, processTreeTicks, reapedChildrenTicks } from './proc-stat.ts';

const MODES = ['simple', 'extended', 'prepared'] as const;
type Mode = (typeof MODES)[number];
const ENDPOINTS = ['direct', 'custos', 'masking'] as const;
type EndpointName = (typeof ENDPOINTS)[number];
const QUERIES = ['wide', 'narrow', 'scan'] as const;
type QueryName = (typeof QUERIES)[number];
interface CellKey { readonly endpoint: EndpointName; readonly query: QueryName }
const DEFAULT_CELLS = 'direct:wide,custos:wide,masking:wide,custos:narrow,masking:narrow';

/** Rows per transaction: `id BETWEEN :a AND :a + SPAN - 1`. */
const SPAN = 1000;

const SELECT_LIST: Record<QueryName, string> = {
  // Every column, three of them masked by column rule.
  wide: '*',
  // No masked column: the planner finds nothing to mask and the rows pass as they came.
  narrow: 'id, name, amount',
  // Origin-less text (expressions over unmasked columns): scanned by the detectors, the backstop.
  scan: "id, name, note || '' AS note, payload || '' AS payload",
};

const HMAC_KEY = 'custos-bench-masking-key-0123456789abcdef';

interface Options {
  readonly duration: number;
  readonly clients: number;
  readonly jobs: number;
  readonly runs: number;
  readonly warmup: number;
  readonly rows: number;
  readonly modes: readonly Mode[];
  readonly cells: readonly CellKey[];
  readonly json: string | undefined;
  readonly cpuProf: string | undefined;
}

const USAGE = `usage: npm run bench:masking -- [options]
  --duration S        seconds per measured run (default 10)
  --clients N         pgbench clients, -c (default 4)
  --jobs N            pgbench threads, -j (default 2)
  --runs N            measured runs per cell, interleaved (default 3)
  --warmup S          seconds of the discarded warm-up run per cell (default 3; 0 = none)
  --modes LIST        simple,extended,prepared (default extended)
  --cells LIST        endpoint:query pairs (default ${DEFAULT_CELLS})
                      endpoints: direct, custos (example policy, no masking), masking (column rules
                      on email/ssn/card, detectors email + payment-card)
                      queries: wide (SELECT *), narrow (id, name, amount: no masked column),
                      scan (note || '', payload || '': origin-less text the detectors scan)
  --rows N            rows in the table (default 10000; each transaction reads ${SPAN})
  --json FILE         also write every run's raw figures as JSON
  --cpu-prof DIR      run the sidecars under node --cpu-prof, profiles written to DIR at exit
`;

function parseIntFlag(value: string | undefined, fallback: number, flag: string, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer ≥ ${min}, got "${value}"`);
  return n;
}

function parseCells(value: string): CellKey[] {
  const cells: CellKey[] = [];
  for (const item of value.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const [endpoint = '', query = ''] = item.split(':');
    if (!(ENDPOINTS as readonly string[]).includes(endpoint)) throw new Error(`--cells: unknown endpoint "${endpoint}" (allowed: ${ENDPOINTS.join(', ')})`);
    if (!(QUERIES as readonly string[]).includes(query)) throw new Error(`--cells: unknown query "${query}" (allowed: ${QUERIES.join(', ')})`);
    cells.push({ endpoint: endpoint as EndpointName, query: query as QueryName });
  }
  if (cells.length === 0) throw new Error('--cells: empty list');
  return cells;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      duration: { type: 'string' }, clients: { type: 'string' }, jobs: { type: 'string' }, runs: { type: 'string' },
      warmup: { type: 'string' }, rows: { type: 'string' }, modes: { type: 'string' }, cells: { type: 'string' },
      json: { type: 'string' }, 'cpu-prof': { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return undefined;
  const clients = parseIntFlag(values.clients, 4, '--clients', 1);
  const modes = (values.modes ?? 'extended').split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const m of modes) if (!(MODES as readonly string[]).includes(m)) throw new Error(`--modes: unknown value "${m}" (allowed: ${MODES.join(', ')})`);
  if (modes.length === 0) throw new Error('--modes: empty list');
  return {
    duration: parseIntFlag(values.duration, 10, '--duration', 1),
    clients,
    jobs: Math.min(clients, parseIntFlag(values.jobs, 2, '--jobs', 1)),
    runs: parseIntFlag(values.runs, 3, '--runs', 1),
    warmup: parseIntFlag(values.warmup, 3, '--warmup', 0),
    rows: parseIntFlag(values.rows, 10_000, '--rows', SPAN),
    modes: modes as Mode[],
    cells: parseCells(values.cells ?? DEFAULT_CELLS),
    json: values.json,
    cpuProf: values['cpu-prof'],
  };
}

// ─── the table ────────────────────────────────────────────────────────────────────────────────

/** Deterministic PRNG (mulberry32): the same table on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIRST = ['Alice', 'Bob', 'Carol', 'David', 'Erin', 'Frank', 'Grace', 'Henry', 'Irene', 'Jack', 'Karen', 'Liam', 'Mia', 'Noah', 'Olivia', 'Paul', 'Quinn', 'Rita', 'Sam', 'Tina', 'Zoë', 'José'];
const LAST = ['Johnson', 'Smith', 'White', 'Brown', 'Davis', 'Miller', 'Wilson', 'Moore', 'Taylor', 'Anderson', 'Thomas', 'Jackson', 'Harris', 'Martin', 'García', 'Müller'];
const DOMAINS = ['example.com', 'mailbox.org', 'corp-mail.net', 'example.co.uk'];
const PLANS = ['free', 'starter', 'pro', 'enterprise'];
const REGIONS = ['eu-west-1', 'eu-central-1', 'us-east-1', 'ap-southeast-2'];
const AGENTS = [
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
  'okhttp/4.12.0',
];

interface WideRows {
  readonly id: number[]; readonly name: string[]; readonly email: string[]; readonly ssn: string[]; readonly card: string[];
  readonly note: string[]; readonly amount: string[]; readonly created: string[]; readonly flag: boolean[]; readonly payload: string[];
}

function wideRows(count: number): WideRows {
  const r = prng(20261130);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const digits = (n: number): string => Array.from({ length: n }, () => String(Math.floor(r() * 10))).join('');
  const out: WideRows = { id: [], name: [], email: [], ssn: [], card: [], note: [], amount: [], created: [], flag: [], payload: [] };
  for (let id = 1; id <= count; id++) {
    const first = pick(FIRST);
    const last = pick(LAST);
    const email = `${first.toLowerCase()}.${last.toLowerCase()}${id}@${pick(DOMAINS)}`;
    // Valid-format SSNs (area 001–665, group 01–99, serial 0001–9999).
    const ssn = `${String(1 + Math.floor(r() * 665)).padStart(3, '0')}-${String(1 + Math.floor(r() * 99)).padStart(2, '0')}-${String(1 + Math.floor(r() * 9999)).padStart(4, '0')}`;
    const cardValid = luhnComplete((pick(['4', '51', '55', '2221', '37']) + digits(15)).slice(0, 15));
    const amount = (r() * 5000).toFixed(2);
    const created = new Date(Date.UTC(2023, 0, 1) + Math.floor(r() * 3 * 365 * 86_400_000)).toISOString();
    const notes = [
      `Called about invoice INV-2024-${String(id).padStart(5, '0')}; promised a refund of ${amount} EUR by the end of the month.`,
      `Prefers to be contacted by email (${first.toLowerCase()}@${pick(DOMAINS)}), never by phone.`,
      `Card ending ${cardValid.slice(-4)} was declined twice; the customer will update the payment method.`,
      `VIP since ${2015 + Math.floor(r() * 9)}. Account manager: ${pick(FIRST)} ${pick(LAST)}. Renewal in Q${1 + Math.floor(r() * 4)}.`,
      'Asked for the data export described in ticket 48213; sent the usual instructions.',
    ];
    // One note in ten carries an email address (the detectors' work in the `scan` query).
    const note = r() < 0.1 ? (notes[1] ?? '') : pick([notes[0], notes[2], notes[3], notes[4]]) ?? '';
    const payload = JSON.stringify({
      plan: pick(PLANS), seats: 1 + Math.floor(r() * 200), region: pick(REGIONS), features: ['sso', 'audit', 'api'].filter(() => r() < 0.6),
      order_ref: digits(12), ua: pick(AGENTS), locale: pick(['en-GB', 'de-DE', 'fr-FR', 'es-ES']),
    });
    out.id.push(id); out.name.push(`${first} ${last}`); out.email.push(email); out.ssn.push(ssn);
    // Half the cards in print form (groups of four), as applications often store them.
    out.card.push(id % 2 === 0 ? cardValid.replace(/(\d{4})(?=\d)/g, '$1 ') : cardValid);
    out.note.push(note); out.amount.push(amount); out.created.push(created); out.flag.push(r() < 0.3); out.payload.push(payload);
  }
  return out;
}

/** Creates and fills `wide` as the superuser over the Unix socket, owned by the application role. */
async function loadWide(postgres: PostgresInstance, count: number): Promise<{ bytesPerTx: Record<QueryName, number> }> {
  const client = new pg.Client({ host: postgres.socketDir, port: postgres.port, user: postgres.superuser, database: postgres.database });
  await client.connect();
  try {
    await client.query(`CREATE TABLE wide (id int PRIMARY KEY, name text, email text, ssn text, card text, note text,
      amount numeric(12,2), created timestamptz, flag boolean, payload text)`);
    const rows = wideRows(count);
    for (let start = 0; start < count; start += 1000) {
      const end = Math.min(count, start + 1000);
      const col = <K extends keyof WideRows>(k: K): WideRows[K] => rows[k].slice(start, end) as WideRows[K];
      await client.query(
        `INSERT INTO wide SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::numeric[], $8::timestamptz[], $9::boolean[], $10::text[])`,
        [col('id'), col('name'), col('email'), col('ssn'), col('card'), col('note'), col('amount'), col('created'), col('flag'), col('payload')],
      );
    }
    await client.query(`ALTER TABLE wide OWNER TO ${postgres.user}`);
    await client.query('VACUUM ANALYZE wide');
    // DataRow bytes of one transaction's result in the text format (1 type byte, Int32 length,
    // Int16 count, then Int32 length + text per column), averaged over the table.
    const size = async (list: string): Promise<number> => {
      const names = (await client.query(`SELECT ${list} FROM wide LIMIT 0`)).fields.map((f) => f.name);
      const sum = names.map((n) => `coalesce(octet_length(s."${n}"::text), 0)`).join(' + ');
      const res = await client.query<{ b: string }>(`SELECT avg(${sum}) AS b FROM (SELECT ${list} FROM wide) s`);
      return (Number(res.rows[0]?.b ?? 0) + 7 + 4 * names.length) * SPAN;
    };
    return { bytesPerTx: { wide: await size('*'), narrow: await size('id, name, amount'), scan: await size(SELECT_LIST.scan) } };
  } finally {
    await client.end();
  }
}

// ─── policies ─────────────────────────────────────────────────────────────────────────────────

function maskingPolicy(doc: Parameters<NonNullable<Parameters<typeof startPolicySidecar>[0]['editPolicy']>>[0], dir: string): void {
  doc.setIn(['spec', 'masking'], doc.createNode({
    hmacKeyFile: join(dir, 'hmac.key'),
    columns: [
      { column: 'public.wide.email', strategy: 'partial', keepFirst: 1, keepLast: 4 },
      { column: 'public.wide.ssn', strategy: 'redact' },
      { column: 'public.wide.card', strategy: 'hmac' },
    ],
    detectors: [{ type: 'email' }, { type: 'payment-card' }],
  }));
}

// ─── checks: the masking sidecar masks what the table says, and only that ───────────────────

function querySql(query: QueryName, a: number): string {
  return `SELECT ${SELECT_LIST[query]} FROM wide WHERE id BETWEEN ${a} AND ${a} + ${SPAN - 1} ORDER BY id`;
}

async function fetchRows(port: number, user: string, password: string, database: string, sql: string): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ host: '127.0.0.1', port, user, password, database, application_name: 'custos-bench-check' });
  await client.connect();
  try {
    return (await client.query<Record<string, unknown>>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Problems found; empty when direct, custos and masking return what they should. */
async function checkEndpoints(postgres: PostgresInstance, custos: BenchSidecar | undefined, masking: BenchSidecar | undefined, log: (s: string) => void): Promise<string[]> {
  const problems: string[] = [];
  const direct = (q: QueryName): Promise<Array<Record<string, unknown>>> => fetchRows(postgres.port, postgres.user, postgres.password, postgres.database, querySql(q, 1));
  const via = async (s: BenchSidecar, q: QueryName): Promise<Array<Record<string, unknown>>> => fetchRows(s.port, CUSTOS_BENCH_USER, await s.token(600), postgres.database, querySql(q, 1));
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  const clear: Record<QueryName, Array<Record<string, unknown>>> = { wide: await direct('wide'), narrow: await direct('narrow'), scan: await direct('scan') };
  for (const q of QUERIES) if (clear[q].length !== SPAN) problems.push(`direct ${q}: ${clear[q].length} rows, expected ${SPAN}`);
  if (custos !== undefined) {
    for (const q of QUERIES) if (!same(await via(custos, q), clear[q])) problems.push(`custos ${q}: the unmasked sidecar changed the result`);
  }
  if (masking !== undefined) {
    // The catalog is read asynchronously after start; statements are refused until it is.
    const firstWide = async (attempt: number): Promise<Array<Record<string, unknown>>> => {
      try {
        return await via(masking, 'wide');
      } catch (e: unknown) {
        if (attempt >= 50) throw e;
        await new Promise((r) => setTimeout(r, 200));
        return firstWide(attempt + 1);
      }
    };
    const wide = await firstWide(0);
    if (wide.length !== SPAN) problems.push(`masking wide: ${wide.length} rows, expected ${SPAN}`);
    let masked = 0;
    wide.forEach((row, i) => {
      const orig = clear.wide[i] ?? {};
      const email = String(row['email']);
      const ok = email !== orig['email'] && email.includes('*') && row['ssn'] === '[REDACTED]' && String(row['card']).startsWith('hmac:') &&
        row['name'] === orig['name'] && row['note'] === orig['note'] && row['payload'] === orig['payload'] && row['amount'] === orig['amount'];
      if (ok) masked++;
    });
    if (masked !== SPAN) problems.push(`masking wide: ${SPAN - masked} of ${SPAN} rows not masked as configured`);
    if (!same(await via(masking, 'narrow'), clear.narrow)) problems.push('masking narrow: a result without masked columns was changed');
    const scan = await via(masking, 'scan');
    const scrubbed = scan.filter((row, i) => row['note'] !== clear.scan[i]?.['note']).length;
    const withEmail = clear.scan.filter((row) => /@/.test(String(row['note']))).length;
    if (scrubbed !== withEmail) problems.push(`masking scan: ${scrubbed} notes scrubbed, ${withEmail} hold an email`);
    // No payload holds an email or a card (its longest digit run is 12): a change is a false positive.
    const payloads = scan.filter((row, i) => row['payload'] !== clear.scan[i]?.['payload']).length;
    if (payloads > 0) problems.push(`masking scan: ${payloads} payloads changed by the detectors (false positives)`);
    const first = wide[0] ?? {};
    log(`check: masking sidecar returns email ${String(first['email'])}, ssn ${String(first['ssn'])}, card ${String(first['card'])}; ` +
      `scan: ${scrubbed} of ${SPAN} notes scrubbed by the detectors`);
  }
  return problems;
}

// ─── one pgbench run ──────────────────────────────────────────────────────────────────────────

interface Endpoint {
  readonly name: EndpointName;
  readonly port: number;
  readonly user: string;
  password(): Promise<string>;
  readonly proxyPid: number | undefined;
  alive(): boolean;
  spoolBytes?(): Promise<number>;
  logsTail?(): string;
}

interface RunResult {
  readonly mode: Mode;
  readonly endpoint: EndpointName;
  readonly query: QueryName;
  readonly warmup: boolean;
  readonly seconds: number;
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly tps: number;
  readonly transactions: number;
  readonly failed: number;
  readonly aborted: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuUs: { readonly proxy: number; readonly postgres: number; readonly pgbench: number; readonly other: number };
  readonly otherCores: number;
  readonly stealCores: number;
  readonly load1: number;
  readonly auditBytesPerTx: number | undefined;
  readonly problems: readonly string[];
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

async function readLatencyLogs(dir: string): Promise<{ latenciesUs: Float64Array; failures: number }> {
  const values: number[] = [];
  let failures = 0;
  for (const file of await readdir(dir)) {
    for (const line of (await readFile(join(dir, file), 'utf8')).split('\n')) {
      if (line === '') continue;
      const field = line.split(' ', 3)[2];
      const us = Number(field);
      if (field === undefined || !Number.isFinite(us)) failures++;
      else values.push(us);
    }
  }
  const latenciesUs = Float64Array.from(values);
  latenciesUs.sort();
  return { latenciesUs, failures };
}

function matchNumber(text: string, re: RegExp): number {
  const m = re.exec(text);
  return m?.[1] !== undefined ? Number(m[1]) : Number.NaN;
}

let currentPgbench: ReturnType<typeof spawn> | undefined;
const state = { interrupted: false };
const isInterrupted = (): boolean => state.interrupted;

async function runPgbench(
  postgres: PostgresInstance, endpoint: Endpoint, query: QueryName, script: string, mode: Mode, seconds: number, options: Options, warmup: boolean, postmasterPid: number,
): Promise<RunResult> {
  const logDir = await mkdtemp(join(tmpdir(), 'custos-bench-log-'));
  const args = [
    '-n', '-f', script, '-M', mode, '-c', String(options.clients), '-j', String(options.jobs), '-T', String(seconds),
    '-h', '127.0.0.1', '-p', String(endpoint.port), '-U', endpoint.user,
    '-l', `--log-prefix=${join(logDir, 'tx')}`,
    postgres.database,
  ];
  const env = { ...process.env, PGPASSWORD: await endpoint.password(), PGSSLMODE: 'disable', PGAPPNAME: 'custos-bench' };
  const spoolBefore = endpoint.spoolBytes ? await endpoint.spoolBytes() : undefined;
  const load1 = loadavg()[0] ?? 0;
  const before = {
    proxy: endpoint.proxyPid !== undefined ? await processTicks(endpoint.proxyPid) : 0,
    postgres: await processTreeTicks(postmasterPid),
    pgbench: await reapedChildrenTicks(),
    machine: await machineTicks(),
  };
  const started = performance.now();
  const { code, stdout, stderr, timedOut } = await new Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }>((resolve) => {
    const child = spawn('pgbench', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    currentPgbench = child;
    let out = '';
    let err = '';
    let killed = false;
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-20_000); });
    const timer = setTimeout(() => { killed = true; child.kill('SIGKILL'); }, (seconds + 60) * 1000);
    child.once('close', (c) => {
      clearTimeout(timer);
      currentPgbench = undefined;
      resolve({ code: c, stdout: out, stderr: err, timedOut: killed });
    });
  });
  const elapsed = (performance.now() - started) / 1000;
  const machineAfter = await machineTicks();
  await new Promise((r) => setTimeout(r, 300));
  const after = {
    proxy: endpoint.proxyPid !== undefined ? await processTicks(endpoint.proxyPid) : 0,
    postgres: await processTreeTicks(postmasterPid),
    pgbench: await reapedChildrenTicks(),
  };
  const spoolAfter = endpoint.spoolBytes ? await endpoint.spoolBytes() : undefined;
  const { latenciesUs, failures: loggedFailures } = await readLatencyLogs(logDir);
  await rm(logDir, { recursive: true, force: true });

  const transactions = matchNumber(stdout, /number of transactions actually processed: (\d+)/);
  const failed = matchNumber(stdout, /number of failed transactions: (\d+)/);
  const tps = matchNumber(stdout, /tps = ([\d.]+) \(without initial connection time\)/);
  const aborted = (stderr.match(/client \d+ aborted/g) ?? []).length;
  const perTx = (ticks: number): number => (transactions > 0 ? (ticks / CLK_TCK) * 1e6 / transactions : Number.NaN);
  const proxy = after.proxy - before.proxy;
  const pgTicks = after.postgres - before.postgres;
  const bench = after.pgbench - before.pgbench;
  const other = Math.max(0, machineAfter.busy - before.machine.busy - proxy - pgTicks - bench);
  const problems: string[] = [];
  if (timedOut) problems.push(`pgbench did not finish within ${seconds + 60} s (killed): the endpoint hung`);
  if (code !== 0) problems.push(`pgbench exited with ${code}: ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
  if (!Number.isFinite(transactions) || transactions === 0) problems.push('no transaction completed');
  if (Number.isFinite(failed) && failed > 0) problems.push(`${failed} failed transactions`);
  if (aborted > 0) problems.push(`${aborted} clients aborted`);
  if (loggedFailures > 0) problems.push(`${loggedFailures} failed/skipped transactions in the latency log`);
  if (!endpoint.alive()) problems.push(`the ${endpoint.name} process is no longer running`);
  return {
    mode, endpoint: endpoint.name, query, warmup, seconds, exitCode: code, timedOut,
    tps, transactions, failed: Number.isFinite(failed) ? failed : 0, aborted,
    p50Ms: percentile(latenciesUs, 0.5) / 1000,
    p99Ms: percentile(latenciesUs, 0.99) / 1000,
    cpuUs: { proxy: perTx(proxy), postgres: perTx(pgTicks), pgbench: perTx(bench), other: perTx(other) },
    otherCores: other / CLK_TCK / elapsed,
    stealCores: (machineAfter.steal - before.machine.steal) / CLK_TCK / elapsed,
    load1,
    auditBytesPerTx: spoolBefore !== undefined && spoolAfter !== undefined && transactions > 0 ? (spoolAfter - spoolBefore) / transactions : undefined,
    problems,
  };
}

// ─── report ───────────────────────────────────────────────────────────────────────────────────

function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] ?? Number.NaN) : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const fmt = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '—');

interface Cell {
  readonly mode: Mode;
  readonly endpoint: EndpointName;
  readonly query: QueryName;
  readonly tps: number;
  readonly tpsMin: number;
  readonly tpsMax: number;
  readonly p50: number;
  readonly p99: number;
  readonly proxyUs: number;
  readonly postgresUs: number;
  readonly pgbenchUs: number;
  readonly otherUs: number;
  readonly otherCores: number;
  readonly auditBytesPerTx: number | undefined;
  readonly runs: number;
}

function summarise(results: readonly RunResult[], options: Options): Cell[] {
  const cells: Cell[] = [];
  for (const mode of options.modes) {
    for (const query of QUERIES) {
      for (const endpoint of ENDPOINTS) {
        const rs = results.filter((r) => !r.warmup && r.mode === mode && r.endpoint === endpoint && r.query === query);
        if (rs.length === 0) continue;
        const tps = rs.map((r) => r.tps);
        const audit = rs.map((r) => r.auditBytesPerTx).filter((x): x is number => x !== undefined);
        cells.push({
          mode, endpoint, query, runs: rs.length,
          tps: median(tps), tpsMin: Math.min(...tps), tpsMax: Math.max(...tps),
          p50: median(rs.map((r) => r.p50Ms)), p99: median(rs.map((r) => r.p99Ms)),
          proxyUs: median(rs.map((r) => r.cpuUs.proxy)), postgresUs: median(rs.map((r) => r.cpuUs.postgres)),
          pgbenchUs: median(rs.map((r) => r.cpuUs.pgbench)), otherUs: median(rs.map((r) => r.cpuUs.other)),
          otherCores: median(rs.map((r) => r.otherCores)),
          auditBytesPerTx: audit.length > 0 ? median(audit) : undefined,
        });
      }
    }
  }
  return cells;
}

function renderTables(cells: readonly Cell[]): string {
  const lines: string[] = [];
  lines.push(`| Mode | Query | Endpoint | Median TPS (min–max) | rows/s | vs direct | vs sidecar | p50 ms | p99 ms | sidecar CPU µs/tx | µs/row |`);
  lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of cells) {
    const direct = cells.find((d) => d.mode === c.mode && d.query === c.query && d.endpoint === 'direct');
    const sidecar = cells.find((d) => d.mode === c.mode && d.query === c.query && d.endpoint === 'custos');
    const proxy = c.endpoint === 'direct' ? '—' : fmt(c.proxyUs, 0);
    const perRow = c.endpoint === 'direct' ? '—' : fmt(c.proxyUs / SPAN, 2);
    lines.push(`| ${c.mode} | ${c.query} | ${c.endpoint} | ${fmtInt(c.tps)} (${fmtInt(c.tpsMin)}–${fmtInt(c.tpsMax)}) | ${fmtInt(c.tps * SPAN)} | ` +
      `${direct ? fmt(c.tps / direct.tps, 2) : '—'} | ${sidecar ? fmt(c.tps / sidecar.tps, 2) : '—'} | ${fmt(c.p50, 2)} | ${fmt(c.p99, 2)} | ${proxy} | ${perRow} |`);
  }
  lines.push('');
  lines.push('CPU per transaction (µs, medians): where the two cores go.');
  lines.push('');
  lines.push('| Mode | Query | Endpoint | pgbench | PostgreSQL | sidecar | other (tenants, kernel) | other cores | audit spool bytes/tx |');
  lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|');
  for (const c of cells) {
    lines.push(`| ${c.mode} | ${c.query} | ${c.endpoint} | ${fmt(c.pgbenchUs, 0)} | ${fmt(c.postgresUs, 0)} | ${c.endpoint === 'direct' ? '—' : fmt(c.proxyUs, 0)} | ` +
      `${fmt(c.otherUs, 0)} | ${fmt(c.otherCores, 2)} | ${c.auditBytesPerTx !== undefined ? fmtInt(c.auditBytesPerTx) : '—'} |`);
  }
  return lines.join('\n');
}

// ─── main ─────────────────────────────────────────────────────────────────────────────────────

async function firstLine(command: string, args: readonly string[]): Promise<string> {
  try {
    return (await run(command, args)).split('\n')[0]?.trim() ?? '?';
  } catch {
    return '?';
  }
}

async function main(argv: string[]): Promise<number> {
  let opts: Options | undefined;
  try {
    opts = parseOptions(argv);
  } catch (e: unknown) {
    process.stderr.write(`bench:masking: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (opts === undefined) {
    process.stdout.write(USAGE);
    return 0;
  }
  const options = opts;
  process.once('SIGINT', () => {
    state.interrupted = true;
    currentPgbench?.kill('SIGKILL');
  });
  const log = (s: string): void => { process.stderr.write(`${s}\n`); };
  const loadStart = loadavg();
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const cpu = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? '?';
  const bin = await postgresBinDir();
  const versions = `${await firstLine(join(bin, 'postgres'), ['--version'])}; ${await firstLine('pgbench', ['--version'])}; Node ${process.version}`;
  const cellList = options.cells.map((c) => `${c.endpoint}:${c.query}`).join(',');
  log(`bench:masking: ${options.modes.join(',')} × ${cellList}, ${options.runs} runs × ${options.duration} s (+${options.warmup} s warm-up), -c ${options.clients} -j ${options.jobs}; load ${loadStart.map((x) => x.toFixed(2)).join(' ')}`);

  let postgres: PostgresInstance | undefined;
  const sidecars: BenchSidecar[] = [];
  const results: RunResult[] = [];
  const workDir = await mkdtemp(join(tmpdir(), 'custos-bench-masking-'));
  let bytesPerTx: Record<QueryName, number> | undefined;
  try {
    postgres = await startPostgres({ auth: 'scram-sha-256' });
    const pgi = postgres;
    log(`postgres on 127.0.0.1:${pgi.port}; loading ${options.rows} rows into wide`);
    bytesPerTx = (await loadWide(pgi, options.rows)).bytesPerTx;
    const postmasterPid = Number((await readFile(join(pgi.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);

    const scripts = {} as Record<QueryName, string>;
    for (const q of QUERIES) {
      scripts[q] = join(workDir, `${q}.sql`);
      await writeFile(scripts[q], `\\set a random(1, ${options.rows - SPAN + 1})\nSELECT ${SELECT_LIST[q]} FROM wide WHERE id BETWEEN :a AND :a + ${SPAN - 1};\n`);
    }

    const wanted = new Set(options.cells.map((c) => c.endpoint));
    const expires = Math.min(3600, Math.max(600, options.duration * 4 + 120));
    const endpoints = new Map<EndpointName, Endpoint>();
    let custos: BenchSidecar | undefined;
    let masking: BenchSidecar | undefined;
    endpoints.set('direct', { name: 'direct', port: pgi.port, user: pgi.user, password: () => Promise.resolve(pgi.password), proxyPid: undefined, alive: () => true });
    for (const name of ['custos', 'masking'] as const) {
      if (!wanted.has(name)) continue;
      const s = await startPolicySidecar({
        postgres: pgi,
        ...(options.cpuProf !== undefined ? { cpuProfDir: options.cpuProf } : {}),
        ...(name === 'masking' ? { files: { 'hmac.key': HMAC_KEY }, editPolicy: maskingPolicy } : {}),
      });
      sidecars.push(s);
      if (name === 'custos') custos = s;
      else masking = s;
      log(`${name} sidecar on 127.0.0.1:${s.port} (pid ${s.pid})`);
      endpoints.set(name, { name, port: s.port, user: CUSTOS_BENCH_USER, password: () => s.token(expires), proxyPid: s.pid, alive: () => s.alive(), spoolBytes: () => s.spoolBytes(), logsTail: () => s.logs().slice(-3000) });
    }
    const checkProblems = await checkEndpoints(pgi, custos, masking, log);
    if (checkProblems.length > 0) throw new Error(`the endpoints do not return what the benchmark assumes:\n  ${checkProblems.join('\n  ')}`);

    const report = (r: RunResult, label: string): void => {
      log(`  ${label.padEnd(10)} ${r.mode.padEnd(8)} ${`${r.endpoint}:${r.query}`.padEnd(15)} ${fmtInt(r.tps).padStart(6)} tps  p50 ${fmt(r.p50Ms, 2)} p99 ${fmt(r.p99Ms, 2)} ms  ` +
        `cpu/tx pgbench ${fmt(r.cpuUs.pgbench, 0)} pg ${fmt(r.cpuUs.postgres, 0)} sidecar ${fmt(r.cpuUs.proxy, 0)} µs  other ${r.otherCores.toFixed(2)} cores  load ${r.load1.toFixed(2)}` +
        (r.problems.length > 0 ? `  PROBLEM: ${r.problems.join('; ')}` : ''));
      const ep = endpoints.get(r.endpoint);
      if (r.problems.length > 0 && ep?.logsTail !== undefined) log(`  ${r.endpoint} log tail:\n${ep.logsTail()}`);
    };
    const once = async (mode: Mode, cell: CellKey, seconds: number, warmup: boolean, label: string): Promise<void> => {
      const ep = endpoints.get(cell.endpoint);
      if (ep === undefined) throw new Error(`no endpoint ${cell.endpoint}`);
      const r = await runPgbench(pgi, ep, cell.query, scripts[cell.query], mode, seconds, options, warmup, postmasterPid);
      results.push(r);
      report(r, label);
    };
    for (const mode of options.modes) {
      if (options.warmup > 0) for (const cell of options.cells) if (!isInterrupted()) await once(mode, cell, options.warmup, true, 'warm-up');
      for (let i = 1; i <= options.runs && !isInterrupted(); i++) {
        for (const cell of options.cells) if (!isInterrupted()) await once(mode, cell, options.duration, false, `run ${i}/${options.runs}`);
      }
    }
  } finally {
    for (const s of sidecars) await s.stop().catch((e: unknown) => { log(`sidecar stop: ${String(e)}`); });
    await postgres?.stop().catch((e: unknown) => { log(`postgres stop: ${String(e)}`); });
    await rm(workDir, { recursive: true, force: true });
  }

  const cells = summarise(results, options);
  const measured = results.filter((r) => !r.warmup);
  const end = loadavg();
  const bytes = bytesPerTx;
  const kb = (q: QueryName): string => `${q} ${fmtInt(bytes[q] / 1024)} KiB`;
  const header = [
    `Machine: ${cpu}, nproc ${availableParallelism()}, Linux ${release()}; ${versions}.`,
    `Load average (1/5/15 min) at start ${loadStart.map((x) => x.toFixed(2)).join('/')}, at end ${end.map((x) => x.toFixed(2)).join('/')}; ` +
      `CPU outside pgbench, PostgreSQL and the sidecar during runs: median ${median(measured.map((r) => r.otherCores)).toFixed(2)} cores ` +
      `(max ${Math.max(...measured.map((r) => r.otherCores)).toFixed(2)}), steal ${median(measured.map((r) => r.stealCores)).toFixed(2)} cores.`,
    `Workload: pgbench -n -f (${SPAN} rows of ${options.rows} per transaction, id BETWEEN :a AND :a + ${SPAN - 1}) -c ${options.clients} -j ${options.jobs} -T ${options.duration}, ` +
      `TCP loopback without TLS; ${options.runs} interleaved runs per cell after a ${options.warmup} s discarded warm-up; medians. ` +
      `DataRow bytes per transaction (text format): ${(['wide', 'narrow', 'scan'] as const).map(kb).join(', ')}.`,
  ].join('\n');
  process.stdout.write(`\n${header}\n\n${renderTables(cells)}\n`);
  if (options.json !== undefined) {
    await writeFile(options.json, `${JSON.stringify({ options, clkTck: CLK_TCK, bytesPerTx, cells, runs: results }, null, 2)}\n`);
  }
  if (isInterrupted()) {
    process.stderr.write('\nbench:masking: interrupted\n');
    return 130;
  }
  const problems = results.filter((r) => r.problems.length > 0);
  if (problems.length > 0) {
    process.stderr.write(`\nbench:masking: ${problems.length} run(s) had errors — a correctness problem, not a performance one:\n`);
    for (const r of problems) process.stderr.write(`  ${r.warmup ? 'warm-up' : 'run'} ${r.mode} ${r.endpoint}:${r.query}: ${r.problems.join('; ')}\n`);
    return 1;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    process.stderr.write(`bench:masking: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
