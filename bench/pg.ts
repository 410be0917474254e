// `npm run bench:pg`: select-only pgbench through three endpoints of the same throwaway
// PostgreSQL 15 — direct, pgbouncer (session pool) and the Custos sidecar with full enforcement
// (JWT caller, SQL analysis, policy decision, audit spool with datasync before forwarding) — all
// over TCP loopback, interleaved run by run, with latency percentiles from pgbench's per-transaction
// log and CPU per transaction of each process from /proc. Method: docs/benchmarks.md and
// reference/postgres-protocol.md §16.4.
//
//   npm run bench:pg -- [--duration 10] [--clients 8] [--jobs 2] [--runs 3] [--warmup 3]
//                       [--modes simple,extended,prepared] [--endpoints direct,pgbouncer,custos[,node-pipe]]
//                       [--scale 10] [--json FILE] [--cpu-prof DIR] [--keep-logs DIR]
//
// Exits 1 when any run (warm-ups included) had a failed or aborted transaction, timed out, or a
// proxy died: errors under load are a correctness problem, not a performance one.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { NODE, REPO_ROOT } from '../test/harness/custos-stack.ts';
import { postgresBinDir, startPostgres, type PostgresInstance } from '../test/harness/postgres.ts';
import { run, spawnManaged, stopProcess, waitFor } from '../test/harness/processes.ts';
import { freePort } from '../test/harness/free-port.ts';
import { CUSTOS_BENCH_USER, startBenchSidecar, type BenchSidecar } from './custos-sidecar.ts';
import { PGBOUNCER_BIN, startPgbouncer, type PgbouncerInstance } from './pgbouncer.ts';
import { CLK_TCK, machineTicks, processTicks, processTreeTicks, reapedChildrenTicks } from './proc-stat.ts';

const MODES = ['simple', 'extended', 'prepared'] as const;
type Mode = (typeof MODES)[number];
const ENDPOINTS = ['direct', 'pgbouncer', 'custos', 'node-pipe', 'custos-tmpfs'] as const;
type EndpointName = (typeof ENDPOINTS)[number];
const DEFAULT_ENDPOINTS: readonly EndpointName[] = ['direct', 'pgbouncer', 'custos'];

interface Options {
  readonly duration: number;
  readonly clients: number;
  readonly jobs: number;
  readonly runs: number;
  readonly warmup: number;
  readonly scale: number;
  readonly modes: readonly Mode[];
  readonly endpoints: readonly EndpointName[];
  readonly json: string | undefined;
  readonly cpuProf: string | undefined;
  readonly keepLogs: string | undefined;
  readonly spoolDir: string | undefined;
}

const USAGE = `usage: npm run bench:pg -- [options]
  --duration S        seconds per measured run (default 10)
  --clients N         pgbench clients, -c (default 8)
  --jobs N            pgbench threads, -j (default 2)
  --runs N            measured runs per mode and endpoint, interleaved (default 3)
  --warmup S          seconds of the discarded warm-up run per mode and endpoint (default 3; 0 = none)
  --modes LIST        simple,extended,prepared (default all)
  --endpoints LIST    direct,pgbouncer,custos,node-pipe,custos-tmpfs (default direct,pgbouncer,custos)
                      node-pipe: a bare Node socket.pipe() proxy, the floor of any Node proxy;
                      custos-tmpfs: a second sidecar whose spool is on /dev/shm (attribution of
                      the disk's datasync latency only: not a valid deployment)
  --scale N           pgbench -i scale factor (default 10)
  --json FILE         also write every run's raw figures as JSON
  --cpu-prof DIR      run the sidecar under node --cpu-prof, profile written to DIR at exit
  --keep-logs DIR     keep pgbench's per-transaction logs in DIR
  --spool-dir DIR     put the sidecar's audit spool under DIR (e.g. /dev/shm to take the disk's
                      datasync out of the picture: attribution only, not a valid deployment)
`;

function parseList<T extends string>(value: string, allowed: readonly T[], flag: string): T[] {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) throw new Error(`${flag}: unknown value "${item}" (allowed: ${allowed.join(', ')})`);
  }
  if (items.length === 0) throw new Error(`${flag}: empty list`);
  return items as T[];
}

function parseIntFlag(value: string | undefined, fallback: number, flag: string, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer ≥ ${min}, got "${value}"`);
  return n;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      duration: { type: 'string' }, clients: { type: 'string' }, jobs: { type: 'string' }, runs: { type: 'string' },
      warmup: { type: 'string' }, scale: { type: 'string' }, modes: { type: 'string' }, endpoints: { type: 'string' },
      json: { type: 'string' }, 'cpu-prof': { type: 'string' }, 'keep-logs': { type: 'string' }, 'spool-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return undefined;
  const clients = parseIntFlag(values.clients, 8, '--clients', 1);
  return {
    duration: parseIntFlag(values.duration, 10, '--duration', 1),
    clients,
    jobs: Math.min(clients, parseIntFlag(values.jobs, 2, '--jobs', 1)),
    runs: parseIntFlag(values.runs, 3, '--runs', 1),
    warmup: parseIntFlag(values.warmup, 3, '--warmup', 0),
    scale: parseIntFlag(values.scale, 10, '--scale', 1),
    modes: parseList(values.modes ?? MODES.join(','), MODES, '--modes'),
    endpoints: parseList(values.endpoints ?? DEFAULT_ENDPOINTS.join(','), ENDPOINTS, '--endpoints'),
    json: values.json,
    cpuProf: values['cpu-prof'],
    keepLogs: values['keep-logs'],
    spoolDir: values['spool-dir'],
  };
}

// ─── machine ──────────────────────────────────────────────────────────────────────────────────

interface Machine {
  readonly cpu: string;
  readonly nproc: number;
  readonly kernel: string;
  readonly postgres: string;
  readonly pgbench: string;
  readonly pgbouncer: string;
  readonly node: string;
  readonly spoolFilesystem: string;
  readonly loadStart: readonly number[];
}

async function firstLine(command: string, args: readonly string[]): Promise<string> {
  try {
    return (await run(command, args)).split('\n')[0]?.trim() ?? '?';
  } catch {
    return '?';
  }
}

async function describeMachine(spoolParent: string): Promise<Machine> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const cpu = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? '?';
  const bin = await postgresBinDir();
  const df = (await run('df', ['-T', spoolParent]).catch(() => '')).split('\n')[1]?.split(/\s+/) ?? [];
  return {
    cpu,
    nproc: availableParallelism(),
    kernel: release(),
    postgres: await firstLine(join(bin, 'postgres'), ['--version']),
    pgbench: await firstLine('pgbench', ['--version']),
    pgbouncer: await firstLine(PGBOUNCER_BIN, ['--version']),
    node: process.version,
    spoolFilesystem: df.length > 1 ? `${df[1] ?? '?'} on ${df[0] ?? '?'}` : '?',
    loadStart: loadavg(),
  };
}

// ─── node pipe ────────────────────────────────────────────────────────────────────────────────

interface NodePipe {
  readonly port: number;
  readonly pid: number;
  alive(): boolean;
  stop(): Promise<void>;
}

async function startNodePipe(host: string, upstreamPort: number): Promise<NodePipe> {
  const port = await freePort();
  const child = spawnManaged(NODE, [join(REPO_ROOT, 'bench', 'node-pipe.ts'), String(port), host, String(upstreamPort)]);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor('the node pipe to listen', () => {
    if (child.exitCode !== null) throw new Error(`node pipe exited: ${out}`);
    return Promise.resolve(out.includes('listening'));
  }, 15_000);
  const pid = child.pid;
  if (pid === undefined) throw new Error('node pipe did not start');
  return {
    port, pid,
    alive: () => child.exitCode === null && child.signalCode === null,
    stop: () => stopProcess(child, 'SIGTERM'),
  };
}

// ─── one pgbench run ──────────────────────────────────────────────────────────────────────────

interface Endpoint {
  readonly name: EndpointName;
  readonly port: number;
  readonly user: string;
  password(): Promise<string>;
  /** The proxy process for CPU accounting; undefined for direct. */
  readonly proxyPid: number | undefined;
  alive(): boolean;
  spoolBytes?(): Promise<number>;
  /** The proxy's recent log output, shown when a run fails. */
  logsTail?(): string;
}

interface RunResult {
  readonly mode: Mode;
  readonly endpoint: EndpointName;
  readonly warmup: boolean;
  readonly seconds: number;
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly tps: number;
  readonly transactions: number;
  readonly failed: number;
  readonly aborted: number;
  readonly latencyAvgMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly loggedTransactions: number;
  readonly loggedFailures: number;
  /** CPU microseconds per transaction. */
  readonly cpuUs: { readonly proxy: number; readonly postgres: number; readonly pgbench: number; readonly other: number };
  /** Cores busy outside pgbench, PostgreSQL and the proxy during the run (other tenants, kernel). */
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

/** pgbench -l lines: client_id transaction_no time script_no time_epoch time_us …; time in µs or "failed"/"skipped". */
async function readLatencyLogs(dir: string): Promise<{ latenciesUs: Float64Array; failures: number }> {
  const values: number[] = [];
  let failures = 0;
  for (const file of await readdir(dir)) {
    const text = await readFile(join(dir, file), 'utf8');
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const line = text.slice(start, end);
      start = end + 1;
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
  postgres: PostgresInstance, endpoint: Endpoint, mode: Mode, seconds: number, options: Options, warmup: boolean, postmasterPid: number,
): Promise<RunResult> {
  const logDir = await mkdtemp(join(tmpdir(), 'custos-bench-log-'));
  const args = [
    '-n', '-S', '-M', mode, '-c', String(options.clients), '-j', String(options.jobs), '-T', String(seconds),
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
    // A proxy that hangs under load would leave pgbench waiting forever: bound every run.
    const timer = setTimeout(() => { killed = true; child.kill('SIGKILL'); }, (seconds + 60) * 1000);
    child.once('close', (c) => {
      clearTimeout(timer);
      currentPgbench = undefined;
      resolve({ code: c, stdout: out, stderr: err, timedOut: killed });
    });
  });
  const elapsed = (performance.now() - started) / 1000;
  const machineAfter = await machineTicks();
  // Backends and proxy sessions finish tearing down after pgbench exits.
  await new Promise((r) => setTimeout(r, 300));
  const after = {
    proxy: endpoint.proxyPid !== undefined ? await processTicks(endpoint.proxyPid) : 0,
    postgres: await processTreeTicks(postmasterPid),
    pgbench: await reapedChildrenTicks(),
  };
  const spoolAfter = endpoint.spoolBytes ? await endpoint.spoolBytes() : undefined;

  const { latenciesUs, failures: loggedFailures } = await readLatencyLogs(logDir);
  if (options.keepLogs !== undefined && !warmup) {
    const dest = join(options.keepLogs, `${mode}-${endpoint.name}-${Date.now()}`);
    await cp(logDir, dest, { recursive: true });
  }
  await rm(logDir, { recursive: true, force: true });

  const transactions = matchNumber(stdout, /number of transactions actually processed: (\d+)/);
  const failed = matchNumber(stdout, /number of failed transactions: (\d+)/);
  const tps = matchNumber(stdout, /tps = ([\d.]+) \(without initial connection time\)/);
  const aborted = (stderr.match(/client \d+ aborted/g) ?? []).length;
  const perTx = (ticks: number): number => (transactions > 0 ? (ticks / CLK_TCK) * 1e6 / transactions : Number.NaN);
  const proxy = after.proxy - before.proxy;
  const pg = after.postgres - before.postgres;
  const bench = after.pgbench - before.pgbench;
  const machineBusy = machineAfter.busy - before.machine.busy;
  const other = Math.max(0, machineBusy - proxy - pg - bench);
  const problems: string[] = [];
  if (timedOut) problems.push(`pgbench did not finish within ${seconds + 60} s (killed): the endpoint hung`);
  if (code !== 0) problems.push(`pgbench exited with ${code}: ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
  if (!Number.isFinite(transactions) || transactions === 0) problems.push('no transaction completed');
  if (Number.isFinite(failed) && failed > 0) problems.push(`${failed} failed transactions`);
  if (aborted > 0) problems.push(`${aborted} clients aborted`);
  if (loggedFailures > 0) problems.push(`${loggedFailures} failed/skipped transactions in the latency log`);
  if (!endpoint.alive()) problems.push(`the ${endpoint.name} process is no longer running`);

  return {
    mode, endpoint: endpoint.name, warmup, seconds, exitCode: code, timedOut,
    tps, transactions, failed: Number.isFinite(failed) ? failed : 0, aborted,
    latencyAvgMs: matchNumber(stdout, /latency average = ([\d.]+) ms/),
    p50Ms: percentile(latenciesUs, 0.5) / 1000,
    p99Ms: percentile(latenciesUs, 0.99) / 1000,
    loggedTransactions: latenciesUs.length,
    loggedFailures,
    cpuUs: { proxy: perTx(proxy), postgres: perTx(pg), pgbench: perTx(bench), other: perTx(other) },
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
const fmtSigned = (n: number, digits: number): string => (Number.isFinite(n) ? `${n >= 0 ? '+' : ''}${n.toFixed(digits)}` : '—');

interface Cell {
  readonly mode: Mode;
  readonly endpoint: EndpointName;
  readonly tps: number;
  readonly tpsMin: number;
  readonly tpsMax: number;
  readonly p50: number;
  readonly p99: number;
  readonly proxyUs: number;
  readonly postgresUs: number;
  readonly pgbenchUs: number;
  readonly otherUs: number;
  readonly auditBytesPerTx: number | undefined;
  readonly runs: number;
}

function summarise(results: readonly RunResult[], options: Options): Cell[] {
  const cells: Cell[] = [];
  for (const mode of options.modes) {
    for (const endpoint of options.endpoints) {
      const rs = results.filter((r) => !r.warmup && r.mode === mode && r.endpoint === endpoint);
      if (rs.length === 0) continue;
      const tps = rs.map((r) => r.tps);
      const audit = rs.map((r) => r.auditBytesPerTx).filter((x): x is number => x !== undefined);
      cells.push({
        mode, endpoint, runs: rs.length,
        tps: median(tps), tpsMin: Math.min(...tps), tpsMax: Math.max(...tps),
        p50: median(rs.map((r) => r.p50Ms)), p99: median(rs.map((r) => r.p99Ms)),
        proxyUs: median(rs.map((r) => r.cpuUs.proxy)), postgresUs: median(rs.map((r) => r.cpuUs.postgres)),
        pgbenchUs: median(rs.map((r) => r.cpuUs.pgbench)), otherUs: median(rs.map((r) => r.cpuUs.other)),
        auditBytesPerTx: audit.length > 0 ? median(audit) : undefined,
      });
    }
  }
  return cells;
}

function renderTables(cells: readonly Cell[]): string {
  const lines: string[] = [];
  lines.push('| Mode | Endpoint | Median TPS (min–max) | vs direct | vs pgbouncer | p50 ms | p99 ms | added p50 / p99 ms vs direct | proxy CPU µs/tx |');
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of cells) {
    const direct = cells.find((d) => d.mode === c.mode && d.endpoint === 'direct');
    const bouncer = cells.find((d) => d.mode === c.mode && d.endpoint === 'pgbouncer');
    const vsDirect = direct ? fmt(c.tps / direct.tps, 2) : '—';
    const vsBouncer = bouncer ? fmt(c.tps / bouncer.tps, 2) : '—';
    const added = c.endpoint === 'direct' || direct === undefined ? '—' : `${fmtSigned(c.p50 - direct.p50, 3)} / ${fmtSigned(c.p99 - direct.p99, 3)}`;
    lines.push(`| ${c.mode} | ${c.endpoint} | ${fmtInt(c.tps)} (${fmtInt(c.tpsMin)}–${fmtInt(c.tpsMax)}) | ${vsDirect} | ${vsBouncer} | ${fmt(c.p50, 3)} | ${fmt(c.p99, 3)} | ${added} | ${c.endpoint === 'direct' ? '—' : fmt(c.proxyUs, 1)} |`);
  }
  lines.push('');
  lines.push('CPU per transaction (µs, medians): where the two cores go.');
  lines.push('');
  lines.push('| Mode | Endpoint | pgbench | PostgreSQL | proxy | other (tenants, kernel) | audit spool bytes/tx |');
  lines.push('|---|---|---:|---:|---:|---:|---:|');
  for (const c of cells) {
    lines.push(`| ${c.mode} | ${c.endpoint} | ${fmt(c.pgbenchUs, 1)} | ${fmt(c.postgresUs, 1)} | ${c.endpoint === 'direct' ? '—' : fmt(c.proxyUs, 1)} | ${fmt(c.otherUs, 1)} | ${c.auditBytesPerTx !== undefined ? fmtInt(c.auditBytesPerTx) : '—'} |`);
  }
  return lines.join('\n');
}

function machineLine(m: Machine, options: Options, results: readonly RunResult[]): string {
  const measured = results.filter((r) => !r.warmup);
  const other = median(measured.map((r) => r.otherCores));
  const otherMax = Math.max(...measured.map((r) => r.otherCores));
  const steal = median(measured.map((r) => r.stealCores));
  const end = loadavg();
  return [
    `Machine: ${m.cpu}, nproc ${m.nproc}, Linux ${m.kernel}; ${m.postgres}; ${m.pgbench}; ${m.pgbouncer}; Node ${m.node}; audit spool on ${m.spoolFilesystem}.`,
    `Load average (1/5/15 min) at start ${m.loadStart.map((x) => x.toFixed(2)).join('/')}, at end ${end.map((x) => x.toFixed(2)).join('/')}; ` +
      `CPU outside pgbench, PostgreSQL and the proxy during runs: median ${other.toFixed(2)} cores (max ${otherMax.toFixed(2)}), steal ${steal.toFixed(2)} cores.`,
    `Workload: pgbench -n -S -c ${options.clients} -j ${options.jobs} -T ${options.duration}, scale ${options.scale}, TCP loopback 127.0.0.1 without TLS for every endpoint; ` +
      `${options.runs} interleaved runs per cell after a ${options.warmup} s discarded warm-up; medians.`,
  ].join('\n');
}

// ─── main ─────────────────────────────────────────────────────────────────────────────────────

async function main(argv: string[]): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseOptions(argv);
  } catch (e: unknown) {
    process.stderr.write(`bench:pg: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options === undefined) {
    process.stdout.write(USAGE);
    return 0;
  }
  const opts = options;
  if (opts.endpoints.some((e) => e.startsWith('custos')) && !existsSync(join(REPO_ROOT, 'policy', 'evaluate.ts'))) {
    process.stderr.write('bench:pg: the policy engine (policy/evaluate.ts) is not there yet, so the sidecar cannot start; run with --endpoints direct,pgbouncer\n');
    return 2;
  }
  process.once('SIGINT', () => {
    state.interrupted = true;
    currentPgbench?.kill('SIGKILL');
  });

  const log = (s: string): void => { process.stderr.write(`${s}\n`); };
  const machine = await describeMachine(opts.spoolDir ?? tmpdir());
  log(`bench:pg: ${opts.modes.join(',')} × ${opts.endpoints.join(',')}, ${opts.runs} runs × ${opts.duration} s (+${opts.warmup} s warm-up), -c ${opts.clients} -j ${opts.jobs}; load ${machine.loadStart.map((x) => x.toFixed(2)).join(' ')}`);

  let postgres: PostgresInstance | undefined;
  let bouncer: PgbouncerInstance | undefined;
  const sidecars: BenchSidecar[] = [];
  let pipe: NodePipe | undefined;
  const results: RunResult[] = [];
  try {
    postgres = await startPostgres({ auth: 'scram-sha-256' });
    const pg = postgres;
    log(`postgres on 127.0.0.1:${pg.port}; pgbench -i -s ${opts.scale}`);
    await run('pgbench', ['-i', '-q', '-s', String(opts.scale), '-h', pg.socketDir, '-p', String(pg.port), '-U', pg.superuser, pg.database]);
    await pg.psql(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${pg.user}; ANALYZE;`);
    const postmasterPid = Number((await readFile(join(pg.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);

    const endpoints: Endpoint[] = [];
    for (const name of opts.endpoints) {
      if (name === 'direct') {
        endpoints.push({ name, port: pg.port, user: pg.user, password: () => Promise.resolve(pg.password), proxyPid: undefined, alive: () => true });
      } else if (name === 'pgbouncer') {
        const b = await startPgbouncer({ upstreamHost: pg.host, upstreamPort: pg.port, database: pg.database, user: pg.user, password: pg.password, poolSize: Math.max(20, opts.clients) });
        bouncer = b;
        log(`pgbouncer on 127.0.0.1:${b.port} (pid ${b.pid})`);
        endpoints.push({ name, port: b.port, user: pg.user, password: () => Promise.resolve(pg.password), proxyPid: b.pid, alive: () => b.alive(), logsTail: () => b.logs().slice(-3000) });
      } else if (name === 'node-pipe') {
        const p = await startNodePipe(pg.host, pg.port);
        pipe = p;
        log(`node pipe on 127.0.0.1:${p.port} (pid ${p.pid})`);
        endpoints.push({ name, port: p.port, user: pg.user, password: () => Promise.resolve(pg.password), proxyPid: p.pid, alive: () => p.alive() });
      } else {
        const s = await startBenchSidecar({
          postgres: pg,
          ...(opts.cpuProf !== undefined ? { cpuProfDir: opts.cpuProf } : {}),
          ...(name === 'custos-tmpfs' ? { spoolParent: '/dev/shm' } : opts.spoolDir !== undefined ? { spoolParent: opts.spoolDir } : {}),
        });
        sidecars.push(s);
        log(`${name} sidecar on 127.0.0.1:${s.port} (pid ${s.pid}, spool ${s.spoolDir})`);
        // A fresh token per run, valid well past the run (the session ends when its token expires).
        const expires = Math.min(3600, Math.max(600, opts.duration * 4 + 120));
        endpoints.push({ name, port: s.port, user: CUSTOS_BENCH_USER, password: () => s.token(expires), proxyPid: s.pid, alive: () => s.alive(), spoolBytes: () => s.spoolBytes(), logsTail: () => s.logs().slice(-3000) });
      }
    }

    const report = (r: RunResult, label: string): void => {
      const extra = r.auditBytesPerTx !== undefined ? ` audit ${Math.round(r.auditBytesPerTx)} B/tx` : '';
      log(`  ${label.padEnd(10)} ${r.mode.padEnd(8)} ${r.endpoint.padEnd(12)} ${fmtInt(r.tps).padStart(7)} tps  p50 ${fmt(r.p50Ms, 3)} p99 ${fmt(r.p99Ms, 3)} ms  ` +
        `cpu/tx pgbench ${fmt(r.cpuUs.pgbench, 0)} pg ${fmt(r.cpuUs.postgres, 0)} proxy ${fmt(r.cpuUs.proxy, 0)} µs  other ${r.otherCores.toFixed(2)} cores${extra}` +
        (r.problems.length > 0 ? `  PROBLEM: ${r.problems.join('; ')}` : ''));
      const ep = endpoints.find((e) => e.name === r.endpoint);
      if (r.problems.length > 0 && ep?.logsTail !== undefined) log(`  ${r.endpoint} log tail:\n${ep.logsTail()}`);
    };

    for (const mode of opts.modes) {
      if (opts.warmup > 0) {
        for (const ep of endpoints) {
          if (isInterrupted()) break;
          const r = await runPgbench(pg, ep, mode, opts.warmup, opts, true, postmasterPid);
          results.push(r);
          report(r, 'warm-up');
        }
      }
      for (let i = 1; i <= opts.runs && !isInterrupted(); i++) {
        for (const ep of endpoints) {
          if (isInterrupted()) break;
          const r = await runPgbench(pg, ep, mode, opts.duration, opts, false, postmasterPid);
          results.push(r);
          report(r, `run ${i}/${opts.runs}`);
        }
      }
    }
  } finally {
    for (const s of sidecars) await s.stop().catch((e: unknown) => { log(`sidecar stop: ${String(e)}`); });
    await pipe?.stop().catch((e: unknown) => { log(`node pipe stop: ${String(e)}`); });
    await bouncer?.stop().catch((e: unknown) => { log(`pgbouncer stop: ${String(e)}`); });
    await postgres?.stop().catch((e: unknown) => { log(`postgres stop: ${String(e)}`); });
  }

  const cells = summarise(results, opts);
  const out = `\n${machineLine(machine, opts, results)}\n\n${renderTables(cells)}\n`;
  process.stdout.write(out);
  const problems = results.filter((r) => r.problems.length > 0);
  if (opts.json !== undefined) {
    await writeFile(opts.json, `${JSON.stringify({ machine, options: opts, clkTck: CLK_TCK, cells, runs: results }, null, 2)}\n`);
  }
  if (isInterrupted()) {
    process.stderr.write('\nbench:pg: interrupted\n');
    return 130;
  }
  if (problems.length > 0) {
    process.stderr.write(`\nbench:pg: ${problems.length} run(s) had errors — a correctness problem, not a performance one:\n`);
    for (const r of problems) process.stderr.write(`  ${r.warmup ? 'warm-up' : 'run'} ${r.mode} ${r.endpoint}: ${r.problems.join('; ')}\n`);
    return 1;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    process.stderr.write(`bench:pg: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
