// Issue 6 acceptance, the whole path: a workload that changes nothing. Its pod is applied with the
// real kubectl; the chart (real helm), `custos operator` (webhook + reconciler) and the API double
// admit and inject it; the pod runner (kubelet stand-in) runs custos-init's real iptables rules,
// the real sidecar as UID 17337 and the app's real psql in the pod's network namespace; PostgreSQL
// and Redis are real and reached only through the host side of the pod's veth (Service
// `billing-db.payments.svc:5432`). The app connects with no password and no Custos configuration:
// Custos is in the path anyway, knows the pod from its verified projected token and enforces the
// policy of its service account. Needs root, as CI runs it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import type { AuditEvent } from '../audit/event.ts';
import { redisStreamEntries, streamEvents } from './harness/audit-events.ts';
import { freePort } from './harness/free-port.ts';
import { startLocalCluster, type LocalCluster } from './harness/local-cluster.ts';
import { custosImage, startPodRunner, type ImageFixture, type PodRunner } from './harness/pod-runner/index.ts';
import { startPostgres, type PostgresInstance } from './harness/postgres.ts';
import { waitFor } from './harness/processes.ts';
import { startRedis, type RedisInstance } from './harness/redis.ts';

const NS = 'payments';
const SERVICE = `billing-db.${NS}.svc`;
const APP_UID = 1000;
const POD = 'billing-app';

/**
 * The AccessPolicy: the `billing-app` service account may read; everything else is denied (the
 * default). `readsAction` flips the read rule, for the hot-reload test. The target host is the
 * Service name: custos-init resolves it in the pod (hosts file, as cluster DNS would) to the
 * address its iptables rule redirects, and the sidecar to the address it places connections by.
 */
function policy(readsAction: 'allow' | 'deny' = 'allow'): string {
  return `apiVersion: custos.io/v1alpha1
kind: AccessPolicy
metadata:
  name: billing
  namespace: ${NS}
spec:
  selector:
    matchLabels:
      app: billing
  subjects:
    - name: billing-app
      serviceAccount:
        name: billing-app
  targets:
    - name: billing
      protocol: postgres
      host: ${SERVICE}
      port: 5432
      database: app
      credentials:
        secretName: billing-db
  rules:
    - name: reads
      subjects: [billing-app]
      match:
        sql:
          statements: [read]
      action: ${readsAction}
  defaultAction: deny
`;
}

/** The workload: psql against the Service, no password, no Custos anything; then it idles (so `kubectl exec` has a container). */
const APP_POD = `apiVersion: v1
kind: Pod
metadata:
  name: ${POD}
  namespace: ${NS}
  labels:
    app: billing
spec:
  serviceAccountName: billing-app
  terminationGracePeriodSeconds: 2
  containers:
    - name: app
      image: test/billing-app:1.0
      securityContext:
        runAsUser: ${APP_UID}
        runAsGroup: ${APP_UID}
      args:
        - psql -w -X -A -t -h ${SERVICE} -p 5432 -U billing -d app -c 'SELECT id, amount FROM invoices ORDER BY id'; echo "psql exited $?"; exec sleep 3600
`;

let postgres: PostgresInstance;
let redis: RedisInstance;
let cluster: LocalCluster;
let runner: PodRunner;
const cleanups: Array<() => Promise<void>> = [];

const kubectl = (args: readonly string[], input?: string): Promise<string> => cluster.kubectl.ok(args, input === undefined ? {} : { input });
const apply = (yaml: string): Promise<string> => kubectl(['apply', '-f', '-'], yaml);
const podField = (path: string): Promise<string> => kubectl(['get', 'pod', POD, '-n', NS, '-o', `jsonpath=${path}`]);

interface Psql { readonly code: number | null; readonly stdout: string; readonly stderr: string }

/** psql in the app container, as the app's UID (a `kubectl exec` stand-in); VERBOSITY verbose prints the SQLSTATE. */
async function psqlInApp(sql: string, host = SERVICE): Promise<Psql> {
  return runner.exec(NS, POD, 'app', ['psql', '-w', '-X', '-A', '-t', '-v', 'VERBOSITY=verbose', '-h', host, '-p', '5432', '-U', 'billing', '-d', 'app', '-c', sql]);
}

/** The SQLSTATE psql printed (`ERROR:  42501: ...` / `FATAL:  28000: ...`), if any. */
function sqlstate(result: Psql): string | undefined {
  return /(?:ERROR|FATAL):\s+([0-9A-Z]{5}):/.exec(result.stderr)?.[1];
}

async function podUid(): Promise<string> {
  return podField('{.metadata.uid}');
}

async function auditEvents(): Promise<AuditEvent[]> {
  return streamEvents(await redisStreamEntries(redis.url, await podUid()));
}

function diagnostics(): string {
  const pod = runner.pod(NS, POD);
  const logs = pod === undefined ? '(pod not running here)' : ['custos-init', 'custos-sidecar', 'app'].map((c) => `--- ${c} ---\n${runner.logs(NS, POD, c).slice(-3000)}`).join('\n');
  return `\nproblem: ${pod?.problem ?? 'none'}\n${logs}\n--- operator ---\n${cluster.operators.map((o) => o.logs().slice(-2000)).join('\n')}`;
}

describe('an injected pod that really runs: the whole path, applied with kubectl', { timeout: 240_000 }, () => {
  before(async () => {
    postgres = await startPostgres();
    cleanups.push(() => postgres.stop());
    await postgres.psql([
      'CREATE TABLE invoices (id integer PRIMARY KEY, amount integer NOT NULL)',
      'INSERT INTO invoices VALUES (1, 100), (2, 250)',
      'CREATE TABLE ledger (id integer PRIMARY KEY)',
      `ALTER TABLE invoices OWNER TO ${postgres.user}`,
      `ALTER TABLE ledger OWNER TO ${postgres.user}`,
    ].join('; '));
    redis = await startRedis();
    cleanups.push(() => redis.destroy());
    // The API double's issuer is its URL, so its port is chosen first: the chart is told the
    // cluster's token issuer and JWKS as a cluster admin would (values of its openid-configuration).
    const apiPort = await freePort();
    const issuer = `https://127.0.0.1:${apiPort}`;
    cluster = await startLocalCluster({
      apiPort,
      api: { gracefulPodDeletion: true },
      chartValues: [`redis.url=${redis.url}`, `workloadIdentity.issuer=${issuer}`, `workloadIdentity.jwksUri=${issuer}/openid/v1/jwks`,
        // Sidecars ask the API server every second (not 30) whether the pod's service account still exists.
        'workloadIdentity.serviceAccountCheckSeconds=1'],
    });
    cleanups.push(() => cluster.stop());
    assert.equal(cluster.api.issuer, issuer);
    // The Custos images trust the cluster's CA, as an image built for a cluster trusts its API server.
    // The API double keeps its CA under a private directory; the image gets a readable copy.
    const imageDir = await mkdtemp(join(tmpdir(), 'custos-image-'));
    cleanups.push(() => rm(imageDir, { recursive: true, force: true }));
    await chmod(imageDir, 0o755);
    await copyFile(cluster.api.caCertPath, join(imageDir, 'cluster-ca.crt'));
    const custos: ImageFixture = { ...custosImage(), env: { NODE_EXTRA_CA_CERTS: join(imageDir, 'cluster-ca.crt') } };
    runner = await startPodRunner({
      api: cluster.api,
      namespaces: [NS],
      images: { 'ghcr.io/custos-io/custos-init': custos, 'ghcr.io/custos-io/custos': custos, 'test/billing-app': { entrypoint: ['/bin/sh', '-c'] } },
      // The API server and Redis, on the pod's loopback as on the host's (in a cluster: their Services).
      loopbackPorts: [cluster.api.port, redis.port],
      probePeriodMs: 500,
    });
    cleanups.push(() => runner.stop());
    await runner.exposeService({ name: 'billing-db', namespace: NS, port: 5432, target: { port: postgres.port } });

    await kubectl(['create', 'namespace', NS]);
    await kubectl(['label', 'namespace', NS, 'custos.io/injection=enabled']);
    await kubectl(['create', 'serviceaccount', 'billing-app', '-n', NS]);
    await kubectl(['create', 'secret', 'generic', 'billing-db', '-n', NS, `--from-literal=username=${postgres.user}`, `--from-literal=password=${postgres.password}`]);
    await apply(policy());
    await waitFor('the policy to be Ready', async () => (await kubectl(['get', 'accesspolicy', 'billing', '-n', NS, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])) === 'True', 30_000, 200);
    await apply(APP_POD);
    await waitFor('the injected pod to be Running 2/2', async () => {
      const row = (await kubectl(['get', 'pod', POD, '-n', NS, '--no-headers'])).trim().split(/\s+/);
      return row[1] === '2/2' && row[2] === 'Running';
    }, 60_000, 250).catch((e: unknown) => { throw new Error(`${String(e)}${diagnostics()}`); });
  });

  after(async () => {
    // Last started, first stopped; only what before() got to start.
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('injects custos-init and the sidecar into the pod kubectl applied', async () => {
    const pod = JSON.parse(await kubectl(['get', 'pod', POD, '-n', NS, '-o', 'json'])) as { spec: { initContainers?: Array<{ name: string; image: string }>; containers: Array<{ name: string }> } };
    assert.deepEqual(pod.spec.initContainers?.map((c) => c.name), ['custos-init', 'custos-sidecar']);
    assert.deepEqual(pod.spec.containers.map((c) => c.name), ['app']);
    assert.match(runner.logs(NS, POD, 'custos-init'), new RegExp(`interception installed and verified: billing ${SERVICE.replaceAll('.', '\\.')}`));
  });

  it('serves the app\'s allowed query: psql without a password sees the rows', async () => {
    await waitFor('the app to have run its query', () => Promise.resolve(runner.logs(NS, POD, 'app').includes('psql exited')), 20_000, 200);
    assert.equal(runner.logs(NS, POD, 'app'), '1|100\n2|250\npsql exited 0\n', diagnostics());
    const again = await psqlInApp('SELECT count(*) FROM invoices');
    assert.equal(again.stdout, '2\n', again.stderr);
  });

  it('refuses DROP TABLE with 42501, and the table stays', async () => {
    const drop = await psqlInApp('DROP TABLE ledger');
    assert.notEqual(drop.code, 0);
    assert.equal(sqlstate(drop), '42501', drop.stderr);
    assert.equal((await postgres.psql("SELECT to_regclass('public.ledger') IS NOT NULL")).trim(), 't');
  });

  it('audits every event with the pod\'s namespace, service account and UID (the Redis stream)', async () => {
    const uid = await podUid();
    let events: AuditEvent[] = [];
    await waitFor('the refused DROP in the audit stream in Redis', async () => {
      events = await auditEvents();
      return events.some((e) => e.outcome === 'failure' && e.event_type !== 'session.start');
    }, 15_000, 250);
    assert.ok(events.length >= 4, `${events.length} events`);
    for (const e of events) {
      const k8s = e.actor?.k8s;
      assert.deepEqual([k8s?.namespace, k8s?.serviceaccount, k8s?.pod, k8s?.pod_uid], [NS, 'billing-app', POD, uid], JSON.stringify(e));
    }
  });

  it('follows the kubelet\'s rotation of the projected token: the next session runs under the new token', async () => {
    const token = async (): Promise<string> => {
      const r = await runner.exec(NS, POD, 'custos-sidecar', ['cat', '/var/run/secrets/custos/token']);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim();
    };
    const before = decodeJwt(await token());
    assert.equal(before.sub, 'system:serviceaccount:payments:billing-app');
    assert.deepEqual(before.aud, ['custos']);
    await runner.rotateTokens(NS, POD);
    let after = before;
    await waitFor('the rotated token in the sidecar', async () => { after = decodeJwt(await token()); return after.jti !== before.jti; }, 10_000, 200);
    const select = await psqlInApp('SELECT count(*) FROM invoices');
    assert.equal(select.stdout, '2\n', select.stderr);
    const lastSession = async (): Promise<AuditEvent | undefined> => (await auditEvents()).filter((e) => e.event_type === 'session.start' && e.outcome === 'success').at(-1);
    await waitFor('the session in the audit stream', async () => (await lastSession())?.actor?.auth?.jti === after.jti, 10_000, 200)
      .catch(async (e: unknown) => { throw new Error(`${String(e)}; last session: ${JSON.stringify(await lastSession())}`); });
    const auth = (await lastSession())?.actor?.auth;
    assert.deepEqual([auth?.method, auth?.issuer, auth?.jti], ['k8s-sa', cluster.api.issuer, after.jti]);
  });

  it('cannot be bypassed: the app connecting to the database address with the real owner credentials still lands on the sidecar', async () => {
    const address = runner.hostAddress;
    // With the upstream owner's password PostgreSQL itself would drop the table; the sidecar does not.
    const direct = await runner.exec(NS, POD, 'app', ['env', `PGPASSWORD=${postgres.password}`, 'psql', '-w', '-X', '-A', '-t', '-v', 'VERBOSITY=verbose',
      '-h', address, '-p', '5432', '-U', postgres.user, '-d', 'app', '-c', 'DROP TABLE ledger']);
    assert.equal(sqlstate(direct), '42501', direct.stderr);
    assert.equal((await postgres.psql("SELECT to_regclass('public.ledger') IS NOT NULL")).trim(), 't');
    const byAddress = await psqlInApp('SELECT amount FROM invoices WHERE id = 2', address);
    assert.equal(byAddress.stdout, '250\n', byAddress.stderr);
    // PostgreSQL's own port is on the host's loopback only: nothing in the pod reaches it.
    const hostPort = await runner.exec(NS, POD, 'app', ['psql', '-w', '-X', '-h', '127.0.0.1', '-p', String(postgres.port), '-U', postgres.user, '-d', 'app', '-c', 'SELECT 1']);
    assert.notEqual(hostPort.code, 0);
    assert.match(hostPort.stderr, /Connection refused/);
    // The app's UID cannot touch the pod's interception rules.
    const flush = await runner.exec(NS, POD, 'app', ['iptables', '-t', 'nat', '-F', 'CUSTOS_OUTPUT']);
    assert.notEqual(flush.code, 0);
    assert.match(flush.stderr, /Permission denied/);
    const refusedDrops = (await auditEvents()).filter((e) => e.outcome === 'failure' && (e.command?.text ?? '').includes('DROP TABLE ledger'));
    assert.equal(refusedDrops.length, 2, 'both DROPs were decided (and refused) by the sidecar');
  });

  it('rejects at admission a pod asking for NET_ADMIN, or running as the proxy UID, with the message kubectl prints', async () => {
    const sneaky = (name: string, securityContext: string): string => APP_POD.replace(`name: ${POD}`, `name: ${name}`).replace(/securityContext:\n(?: {8}.*\n)+/, `securityContext:\n${securityContext}`);
    const netAdmin = await cluster.kubectl.run(['apply', '-f', '-'], { input: sneaky('sneaky-net-admin', '        capabilities:\n          add: [NET_ADMIN]\n') });
    assert.notEqual(netAdmin.code, 0);
    assert.match(netAdmin.stderr, /admission webhook "[^"]+" denied the request: Custos refuses pod payments\/sneaky-net-admin \(AccessPolicy billing\): container app \(spec\.containers\[0\]\) adds capabilities NET_ADMIN, which can rewrite the pod's iptables rules and bypass the sidecar/);
    const proxyUid = await cluster.kubectl.run(['apply', '-f', '-'], { input: sneaky('sneaky-proxy-uid', '        runAsUser: 17337\n') });
    assert.notEqual(proxyUid.code, 0);
    assert.match(proxyUid.stderr, /denied the request: .*runAsUser 17337, the Custos proxy UID, whose traffic is never intercepted/);
    assert.equal((await cluster.kubectl.run(['get', 'pods', '-n', NS, '-o', 'name'])).stdout, `pod/${POD}\n`);
  });

  it('follows a policy changed with kubectl within seconds, without restarting the pod', async () => {
    const uid = await podUid();
    await apply(policy('deny'));
    const started = Date.now();
    let last: Psql | undefined;
    await waitFor('the sidecar to refuse reads', async () => { last = await psqlInApp('SELECT count(*) FROM invoices'); return sqlstate(last) === '42501'; }, 15_000, 200)
      .catch((e: unknown) => { throw new Error(`${String(e)}; last: ${JSON.stringify(last)}${diagnostics()}`); });
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    await apply(policy('allow'));
    await waitFor('the sidecar to serve reads again', async () => (await psqlInApp('SELECT count(*) FROM invoices')).stdout === '2\n', 15_000, 200);
    assert.equal(await podUid(), uid);
    assert.equal(await podField('{.status.initContainerStatuses[*].restartCount} {.status.containerStatuses[*].restartCount}'), '0 0 0');
    assert.equal(await podField('{.status.phase}'), 'Running');
  });

  // Last: it takes the pod's identity away for good.
  it('stops new connections once the pod\'s service account is deleted (its token still verifies offline), and says why', async () => {
    const serving = await psqlInApp('SELECT count(*) FROM invoices');
    assert.equal(serving.stdout, '2\n', serving.stderr);
    // The projected token keeps a valid signature until it expires; only the API server knows.
    await kubectl(['delete', 'serviceaccount', 'billing-app', '-n', NS]);
    const started = Date.now();
    let last: Psql | undefined;
    const revoked = /FATAL: {2}workload identity of this pod was revoked: the pod's service account is no longer valid/;
    await waitFor('the sidecar to refuse new connections', async () => { last = await psqlInApp('SELECT count(*) FROM invoices'); return revoked.test(last.stderr); }, 15_000, 250)
      .catch((e: unknown) => { throw new Error(`${String(e)}; last: ${JSON.stringify(last)}${diagnostics()}`); });
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.deepEqual([last?.code, last?.stdout], [2, ''], last?.stderr);
    // libpq prints no SQLSTATE for a refused connection; the audit event records the one the sidecar sent.
    await waitFor('the refusal in the audit stream', async () => (await auditEvents()).some((e) => e.event_type === 'authn.failure' && e.message === 'service-account-revoked'), 10_000, 250);
    const refusal = (await auditEvents()).filter((e) => e.event_type === 'authn.failure').at(-1);
    assert.deepEqual([refusal?.outcome, refusal?.message, refusal?.result?.sqlstate], ['failure', 'service-account-revoked', '28000'], JSON.stringify(refusal));
    assert.match(runner.logs(NS, POD, 'custos-sidecar'), /workload identity revoked: refusing new connections/);
    assert.match(runner.logs(NS, POD, 'custos-sidecar'), /401 Unauthorized/);
    // The sidecar reports not ready, and the kubelet's readiness probe takes the pod out of its Services.
    await waitFor('the pod to be not Ready', async () => (await podField('{.status.conditions[?(@.type=="Ready")].status}')) === 'False', 10_000, 250)
      .catch((e: unknown) => { throw new Error(`${String(e)}${diagnostics()}`); });
    assert.equal(await podField('{.status.initContainerStatuses[?(@.name=="custos-sidecar")].ready}'), 'false');
    assert.equal(await podField('{.status.phase}'), 'Running');
  });
});
