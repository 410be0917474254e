// Acceptance (issue 6, scope 1): the real sidecar places intercepted connections by their original
// destination. Network namespaces as in test/harness/netns.ts: the sidecar runs in "pod" as the
// proxy UID 17337 with the real interception rules applied there, and an app (UID 1000, the `pg`
// driver) connects to target addresses; "db" holds the target addresses 10.231.0.2 and 10.231.0.3,
// where a relay passes connections to a real PostgreSQL through its Unix socket (PostgreSQL runs
// in the host namespace; its socket file is reachable from any network namespace).
//
//   billing  10.231.0.2:5432  → listener 15001 (its own redirect)
//   orders   10.231.0.3:5432  → listener 15002 (dialled directly: explicit mode)
//   stale rules, as if the addresses had moved since custos-init ran: 10.231.0.3:5432 and
//   10.231.0.2:6432 are also redirected to billing's listener 15001.
//
// Needs root and `ip netns` (CI runs as root): without them the test fails, it does not skip. It
// also fails when `npm ci` could not build the SO_ORIGINAL_DST addon.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { chown, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import type { AuditEvent } from '../audit/event.ts';
import { applyInterceptionRules } from '../operator/interception/apply-rules.ts';
import type { InterceptionInput } from '../operator/interception/iptables-rules.ts';
import { createLocalIssuer, type LocalIssuer } from '../sidecar/identity/local-issuer.ts';
import { waitForEvents } from './harness/audit-events.ts';
import { CUSTOS_CLI, ISSUER, NODE, REPO_ROOT } from './harness/custos-stack.ts';
import { metricSample } from './harness/metrics.ts';
import { asIds, createPodAndDb, NETNS_NODE, type PodAndDb } from './harness/netns.ts';
import { startPostgres, type PostgresInstance } from './harness/postgres.ts';
import { spawnManaged, stopProcess, waitFor, waitForOutput } from './harness/processes.ts';
import { writeSidecarFiles } from './harness/sidecar-files.ts';

const PROXY = 17337;
const APP = 1000;
const BILLING_LISTENER = 15001;
const ORDERS_LISTENER = 15002;
const ADMIN = 15020;

const RULES: Omit<InterceptionInput, 'currentNatTable' | 'family'> = {
  proxyUid: PROXY,
  proxyGid: PROXY,
  targets: [
    { name: 'billing', host: '10.231.0.2', port: 5432, redirectTo: BILLING_LISTENER },
    { name: 'billing', host: '10.231.0.3', port: 5432, redirectTo: BILLING_LISTENER },
    { name: 'billing', host: '10.231.0.2', port: 6432, redirectTo: BILLING_LISTENER },
  ],
  excludeCidrs: [],
};

// Relay in "db": `path host@port...`; passes every TCP connection to the Unix socket `path`.
const RELAY = `
const net = require('node:net');
const [path, ...specs] = process.argv.slice(1);
let pending = specs.length;
for (const spec of specs) {
  const [host, port] = spec.split('@');
  const server = net.createServer((client) => {
    const upstream = net.connect(path);
    client.pipe(upstream);
    upstream.pipe(client);
    const close = () => { client.destroy(); upstream.destroy(); };
    client.on('error', close); upstream.on('error', close); client.on('close', close); upstream.on('close', close);
  });
  server.on('error', (e) => { console.error(spec + ': ' + e.message); process.exit(1); });
  server.listen({ host, port: Number(port) }, () => { if (--pending === 0) console.log('ready'); });
}
`;

// App in "pod": connects with the pg driver to host:port, runs one query, prints one JSON line:
// {rows} or {error: {code, severity, message, detail, hint}}.
const APP_CLIENT = `
const pg = require(process.argv[1]);
const [host, port, sql, password] = process.argv.slice(2);
const client = new pg.Client({ host, port: Number(port), user: 'app', database: 'app', password: password || 'none', connectionTimeoutMillis: 8000 });
client.on('error', () => {});
client.connect()
  .then(() => client.query(sql))
  .then((r) => { console.log(JSON.stringify({ rows: r.rows })); return client.end(); })
  .catch((e) => { console.log(JSON.stringify({ error: { code: e.code, severity: e.severity, message: e.message, detail: e.detail, hint: e.hint } })); process.exit(0); });
`;

// HTTP GET from inside the pod (the admin port binds the pod's loopback): prints status and body.
const HTTP_GET = `
fetch(process.argv[1]).then(async (r) => { console.log(r.status + ' ' + (await r.text())); }, (e) => { console.log('000 ' + e.message); });
`;

interface AppAnswer {
  readonly rows?: Array<Record<string, unknown>>;
  readonly error?: { code?: string; severity?: string; message?: string; detail?: string; hint?: string };
}

let net: PodAndDb;
let postgres: PostgresInstance;
let dir: string;
let policyFile: string;
let spoolDir: string;
const children: ChildProcess[] = [];
let sidecarLogs = '';
let issuer: LocalIssuer;

async function app(host: string, port: number, sql = 'SELECT current_database() AS db, 1 + 1 AS two', password = ''): Promise<AppAnswer> {
  const out = await net.sh(net.inPod([...asIds(APP, APP), NETNS_NODE, '-e', APP_CLIENT, join(REPO_ROOT, 'node_modules', 'pg'), host, String(port), sql, password]));
  try {
    return JSON.parse(out.trim()) as AppAnswer;
  } catch {
    throw new Error(`the app client printed no answer: ${out}\nsidecar logs:\n${sidecarLogs}`);
  }
}

async function adminGet(path: string): Promise<{ status: number; body: string }> {
  const out = await net.sh(net.inPod([NETNS_NODE, '-e', HTTP_GET, `http://127.0.0.1:${ADMIN}${path}`]));
  const space = out.indexOf(' ');
  return { status: Number(out.slice(0, space)), body: out.slice(space + 1) };
}

async function chownTree(path: string, uid: number): Promise<void> {
  await chown(path, uid, uid);
  if (!(await stat(path)).isDirectory()) return;
  for (const entry of await readdir(path)) await chownTree(join(path, entry), uid);
}

function refusedStarts(events: readonly AuditEvent[]): AuditEvent[] {
  return events.filter((e) => e.event_type === 'session.start' && e.outcome === 'failure' && (e.message ?? '').startsWith('destination refused'));
}

/** Rewrites the policy file through `edit` (the sidecar polls it every 200 ms). */
async function editPolicy(edit: (doc: ReturnType<typeof parseDocument>) => void): Promise<void> {
  const doc = parseDocument(await readFile(policyFile, 'utf8'));
  edit(doc);
  await writeFile(policyFile, doc.toString());
}

before(async () => {
  net = await createPodAndDb('placement');
  postgres = await startPostgres();
  await postgres.psql('CREATE TABLE invoices (id int PRIMARY KEY, amount int); INSERT INTO invoices VALUES (1, 100)');
  await postgres.psql('GRANT SELECT ON invoices TO custos_app');

  const relay = spawnManaged('ip', ['netns', 'exec', net.db, NETNS_NODE, '-e', RELAY, join(postgres.socketDir, `.s.PGSQL.${postgres.port}`), '10.231.0.2@5432', '10.231.0.3@5432']);
  children.push(relay);
  await waitForOutput(relay, 'ready', 'the PostgreSQL relay in the db namespace');

  dir = await mkdtemp(join(tmpdir(), 'custos-placement-'));
  issuer = await createLocalIssuer({ issuer: ISSUER, alg: 'ES256' });
  const target = (name: string, host: string) => ({ name, protocol: 'postgres', host, port: 5432, database: 'app', clientAuthentication: 'workload', credentials: { secretName: 'billing-db' } });
  const tokenFile = join(dir, 'workload-token');
  const files = await writeSidecarFiles({
    dir,
    postgres,
    issuer,
    editPolicy: (doc) => { doc.setIn(['spec', 'targets'], [target('billing', '10.231.0.2'), target('orders', '10.231.0.3')]); },
    spoolMaxBytes: 16 * 1024 * 1024,
    gatewayId: 'custos-placement-test',
    logLevel: 'debug',
    extraConfig: {
      listen: { host: '127.0.0.1', ports: { billing: BILLING_LISTENER, orders: ORDERS_LISTENER } },
      http: { host: '127.0.0.1', port: ADMIN },
      policyReload: { pollIntervalMs: 200 },
      workloadIdentity: { tokenFile, issuer: ISSUER, audience: 'custos', jwksFile: join(dir, 'jwks.json') },
    },
  });
  policyFile = files.policyFile;
  spoolDir = files.spoolDir;
  await writeFile(tokenFile, await issuer.mint(
    { 'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'billing-api', uid: 'sa-uid-1' }, pod: { name: 'billing-api-0', uid: 'pod-uid-1' } } },
    { audience: 'custos', subject: 'system:serviceaccount:payments:billing-api', expiresInSeconds: 3600 },
  ));
  // The sidecar runs as the proxy UID, as in a pod: it owns its files and spool.
  await chownTree(dir, PROXY);

  await applyInterceptionRules({ ...RULES, family: 'ipv4' }, { run: net.podRunner });
  const proc = spawnManaged('ip', ['netns', 'exec', net.pod, ...asIds(PROXY, PROXY), NODE, CUSTOS_CLI, 'sidecar', '--config', files.configFile], { cwd: dir });
  children.push(proc);
  proc.stdout?.on('data', (d: Buffer) => { sidecarLogs += d.toString(); });
  proc.stderr?.on('data', (d: Buffer) => { sidecarLogs += d.toString(); });
  await waitFor('the sidecar in the pod to become ready', async () => {
    if (proc.exitCode !== null) throw new Error(`the sidecar exited with ${proc.exitCode}:\n${sidecarLogs}`);
    return (await adminGet('/readyz')).status === 200;
  }, 30_000, 200);
});

after(async () => {
  for (const child of children) await stopProcess(child, 'SIGKILL', 2_000);
  await net.destroy();
  await postgres.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('the sidecar places intercepted connections by original destination', () => {
  it('serves the app\'s connection to a target address, redirected to that target\'s listener', async () => {
    const answer = await app('10.231.0.2', 5432);
    assert.deepEqual(answer, { rows: [{ db: 'app', two: 2 }] }, sidecarLogs);
    const events = await waitForEvents(spoolDir, (all) => all.some((e) => e.event_type === 'session.start' && e.outcome === 'success'));
    const started = events.filter((e) => e.event_type === 'session.start' && e.outcome === 'success');
    assert.equal(started.at(-1)?.target?.name, 'billing');
    assert.equal(started.at(-1)?.actor?.k8s?.pod_uid, 'pod-uid-1', 'the session runs under the pod\'s verified workload identity');
  });

  it('refuses a connection redirected to one target\'s listener whose original destination is another target\'s address', async () => {
    const answer = await app('10.231.0.3', 5432);
    assert.ok(answer.error !== undefined, JSON.stringify(answer));
    assert.equal(answer.error.code, '08004');
    assert.equal(answer.error.severity, 'FATAL');
    assert.equal(answer.error.message, 'Custos refuses this connection: 10.231.0.3:5432 is the address of target "orders", but the connection was redirected to the listener of target "billing"');
    assert.match(answer.error.detail ?? '', /this listener serves target "billing" \(10\.231\.0\.2:5432, currently 10\.231\.0\.2\)/);
    const events = await waitForEvents(spoolDir, (all) => refusedStarts(all).some((e) => (e.message ?? '').includes('10.231.0.3:5432')));
    const refused = refusedStarts(events).find((e) => (e.message ?? '').includes('10.231.0.3:5432'));
    assert.ok(refused !== undefined);
    assert.equal(refused.target?.name, 'billing');
    assert.equal(refused.result?.sqlstate, '08004');
    assert.equal(refused.actor?.k8s?.pod_uid, 'pod-uid-1', 'the refusal is attributed to the pod');
    assert.match(sidecarLogs, /"reason":"other-target".*"destination":"10\.231\.0\.3:5432".*"owner":"orders"/);
  });

  it('refuses a redirected connection whose original destination is no target (no passthrough)', async () => {
    const answer = await app('10.231.0.2', 6432);
    assert.ok(answer.error !== undefined, JSON.stringify(answer));
    assert.equal(answer.error.code, '08004');
    assert.equal(answer.error.message, 'Custos refuses this connection: 10.231.0.2:6432 is not the address of any target in the policy (unknown destinations are refused)');
  });

  it('still serves a direct connection to a listener (explicit mode): as the listener\'s target', async () => {
    assert.deepEqual(await app('127.0.0.1', BILLING_LISTENER), { rows: [{ db: 'app', two: 2 }] });
    assert.deepEqual(await app('127.0.0.1', ORDERS_LISTENER, 'SELECT amount FROM invoices WHERE id = 1'), { rows: [{ amount: 100 }] });
  });

  it('reports the addon as available and counts refusals in /metrics', async () => {
    const { status, body } = await adminGet('/metrics');
    assert.equal(status, 200);
    assert.equal(metricSample(body, 'custos_original_destination_available'), 1);
    assert.equal(metricSample(body, 'custos_destination_refusals_total', { target: 'billing', reason: 'other-target' }), 1);
    assert.equal(metricSample(body, 'custos_destination_refusals_total', { target: 'billing', reason: 'unknown-destination' }), 1);
    assert.doesNotMatch(sidecarLogs, /EXPLICIT MODE ONLY/);
  });

  it('takes a caller token over a redirected connection without TLS: the client is a process of this pod', async () => {
    // billing asks for an OIDC token as the password; cleartext is refused over the network, but a
    // redirect through the pod's own OUTPUT chain comes from the pod even with the pod IP as source.
    await editPolicy((doc) => { doc.setIn(['spec', 'targets', 0, 'clientAuthentication'], 'caller-token'); });
    const token = await issuer.mint({ repository: 'acme/billing', ref: 'refs/heads/main', workflow: 'deploy-tests' }, { audience: 'custos', subject: 'repo:acme/billing:ref:refs/heads/main', expiresInSeconds: 600 });
    await new Promise((resolve) => setTimeout(resolve, 1000)); // the sidecar re-reads the file every 200 ms
    const answer = await app('10.231.0.2', 5432, 'SELECT 1 AS one', token);
    assert.deepEqual(answer, { rows: [{ one: 1 }] }, sidecarLogs.slice(-3000));
    const events = await waitForEvents(spoolDir, (all) => all.some((e) => e.event_type === 'session.start' && e.outcome === 'success' && e.actor?.id?.includes('repo:acme/billing') === true));
    const started = events.filter((e) => e.event_type === 'session.start' && e.outcome === 'success').at(-1);
    assert.equal(started?.target?.name, 'billing');
    assert.equal(started.actor?.id, `${ISSUER} repo:acme/billing:ref:refs/heads/main`, 'the caller token, not the workload, is the actor');
    await editPolicy((doc) => { doc.setIn(['spec', 'targets', 0, 'clientAuthentication'], 'workload'); });
  });

  it('follows a target\'s changed address: after a policy change the new address is served and the old one refused', async () => {
    // billing moves to 10.231.0.3 (now shared with orders: an exact tie serves at either listener).
    await editPolicy((doc) => { doc.setIn(['spec', 'targets', 0, 'host'], '10.231.0.3'); });
    await waitFor('the sidecar to place 10.231.0.3:5432 as billing', async () => (await app('10.231.0.3', 5432)).rows !== undefined, 10_000, 200);
    assert.deepEqual(await app('10.231.0.3', 5432), { rows: [{ db: 'app', two: 2 }] });
    const old = await app('10.231.0.2', 5432);
    assert.ok(old.error !== undefined, JSON.stringify(old));
    assert.equal(old.error.code, '08004');
    assert.equal(old.error.message, 'Custos refuses this connection: 10.231.0.2:5432 is not the address of any target in the policy (unknown destinations are refused)');
  });
});
