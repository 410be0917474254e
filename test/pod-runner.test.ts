// The pod runner (test/harness/pod-runner/), the kubelet stand-in, driven as a cluster user drives
// a kubelet: pods applied with the real kubectl against the API double, and what kubectl then
// shows (Running, Completed, Init:Error, READY, kubectl wait) checked along with what really ran
// (files, UIDs, addresses, tokens, network namespaces). Needs root, as CI runs it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { readFile, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';
import { run, waitFor } from './harness/processes.ts';
import { custosImage, startPodRunner, type ImageTable, type PodRunner } from './harness/pod-runner/index.ts';
import type { AccessPolicy } from '../crds/generated/access-policy.ts';
import { configMapManifest, renderPolicyConfigMap } from '../operator/reconcile/policy-configmap.ts';
import { renderPolicyYaml } from '../operator/reconcile/policy-document.ts';
import { buildInjectionPatch } from '../operator/webhook/build-patch.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../operator/webhook/injection-settings.ts';
import { applyJsonPatch } from '../operator/webhook/json-patch.ts';

const NS = 'pod-runner';
const IMAGES: ImageTable = {
  'test/sh': { entrypoint: ['/bin/sh', '-c'] },
  'test/node': { entrypoint: [process.execPath] },
  'ghcr.io/custos-dev/custos': custosImage(),
  [DEFAULT_INJECTION_SETTINGS.images.init.replace(/:[^:/]+$/, '')]: custosImage(),
  [DEFAULT_INJECTION_SETTINGS.images.sidecar.replace(/:[^:/]+$/, '')]: custosImage(),
};

let api: KubeApi;
let k: Kubectl;
let runner: PodRunner;
let hostServer: Server;
let hostPort: number;

async function apply(yaml: string): Promise<void> {
  await k.ok(['apply', '-f', '-'], { input: yaml });
}

/** `kubectl get pod NAME` without headers: "NAME READY STATUS RESTARTS AGE" split on spaces. */
async function podRow(name: string): Promise<string[]> {
  return (await k.ok(['get', 'pod', name, '-n', NS, '--no-headers'])).trim().split(/\s+/);
}

async function waitForRow(name: string, ready: string, status: string, timeoutMs = 20_000): Promise<void> {
  let last: string[] = [];
  await waitFor(`pod ${name} to show ${ready} ${status}`, async () => {
    last = await podRow(name);
    return last[1] === ready && last[2] === status;
  }, timeoutMs, 200).catch((e: unknown) => {
    throw new Error(`${e instanceof Error ? e.message : String(e)}; last row: ${last.join(' ')}; problem: ${runner.pod(NS, name)?.problem ?? 'none'}`);
  });
}

async function jsonpath(name: string, path: string): Promise<string> {
  return k.ok(['get', 'pod', name, '-n', NS, '-o', `jsonpath=${path}`]);
}

async function netnsList(): Promise<string> {
  return run('ip', ['netns', 'list']);
}

describe('pod runner (kubelet stand-in) driven by the real kubectl', () => {
  before(async () => {
    api = await startKubeApi({ gracefulPodDeletion: true });
    k = await kubectlFor(await api.kubeconfig());
    await k.ok(['create', 'namespace', NS]);
    await k.ok(['create', 'serviceaccount', 'reporter', '-n', NS]);
    runner = await startPodRunner({ api, namespaces: [NS], images: IMAGES, probePeriodMs: 200, backoffMs: { initial: 200, max: 1000 }, loopbackPorts: [api.port] });
    hostServer = createServer((req, res) => { res.end(`host saw ${req.socket.remoteAddress ?? ''}\n`); });
    await new Promise<void>((resolve) => { hostServer.listen(0, runner.hostAddress, resolve); });
    hostPort = (hostServer.address() as { port: number }).port;
    await runner.setServices([{ name: 'host-svc', namespace: NS, address: runner.hostAddress }, { name: 'billing-db', namespace: NS, address: runner.hostAddress }]);
  });
  after(async () => {
    await runner.stop();
    hostServer.close();
    await api.stop();
  });

  it('runs an init container before the app, sharing an emptyDir; env from fieldRef and secretKeyRef; runAsUser honoured', async () => {
    await k.ok(['create', 'secret', 'generic', 'app-secret', '-n', NS, '--from-literal=password=s3cr3t']);
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: handoff, namespace: ${NS} }
spec:
  restartPolicy: Never
  serviceAccountName: reporter
  securityContext: { runAsUser: 1234, runAsGroup: 2345 }
  volumes: [{ name: work, emptyDir: {} }]
  initContainers:
  - name: prepare
    image: test/sh
    securityContext: { runAsUser: 0 }
    args: ['echo "prepared by $(id -u)" > /work/handoff.txt']
    volumeMounts: [{ name: work, mountPath: /work }]
  containers:
  - name: app
    image: test/sh
    args: ['cat /work/handoff.txt; echo "uid=$(id -u) gid=$(id -g)"; echo "pod=$POD_NAME ns=$POD_NS uid=$POD_UID sa=$SA ip=$POD_IP"; echo "password=$PASSWORD"; echo "greeting=$GREETING"']
    env:
    - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
    - { name: POD_NS, valueFrom: { fieldRef: { fieldPath: metadata.namespace } } }
    - { name: POD_UID, valueFrom: { fieldRef: { fieldPath: metadata.uid } } }
    - { name: SA, valueFrom: { fieldRef: { fieldPath: spec.serviceAccountName } } }
    - { name: POD_IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }
    - { name: PASSWORD, valueFrom: { secretKeyRef: { name: app-secret, key: password } } }
    - { name: GREETING, value: 'hello $(POD_NAME)' }
    volumeMounts: [{ name: work, mountPath: /work }]
`);
    await waitForRow('handoff', '0/1', 'Completed');
    const uid = await jsonpath('handoff', '{.metadata.uid}');
    const ip = await jsonpath('handoff', '{.status.podIP}');
    assert.match(ip, /^10\.188\.\d+\.\d+$/);
    assert.equal(runner.logs(NS, 'handoff', 'prepare'), '');
    assert.equal(await k.ok(['logs', 'handoff', '-n', NS, '--tail', '2']), 'password=s3cr3t\ngreeting=hello handoff\n');
    assert.equal(await k.ok(['logs', 'handoff', '-n', NS, '-c', 'prepare']), '');
    assert.equal(runner.logs(NS, 'handoff', 'app'), [
      'prepared by 0',
      'uid=1234 gid=2345',
      `pod=handoff ns=${NS} uid=${uid} sa=reporter ip=${ip}`,
      'password=s3cr3t',
      'greeting=hello handoff',
      '',
    ].join('\n'));
    assert.equal(await jsonpath('handoff', '{.status.phase} {.status.initContainerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}'), 'Succeeded Completed 0');
  });

  it('retries a container whose env names a missing Secret (CreateContainerConfigError) until it exists', async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: late, namespace: ${NS} }
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: test/sh
    args: ['echo "token=$TOKEN"']
    env: [{ name: TOKEN, valueFrom: { secretKeyRef: { name: late-secret, key: token } } }]
`);
    await waitForRow('late', '0/1', 'CreateContainerConfigError');
    assert.equal(await jsonpath('late', '{.status.containerStatuses[0].state.waiting.message}'), 'secret "late-secret" not found');
    await k.ok(['create', 'secret', 'generic', 'late-secret', '-n', NS, '--from-literal=token=abc']);
    await waitForRow('late', '0/1', 'Completed');
    assert.equal(runner.logs(NS, 'late', 'app'), 'token=abc\n');
  });

  it('keeps Secret, ConfigMap (items) and downwardAPI volumes in sync with kubectl updates (the ..data swap); ContainerCreating while a Secret is missing', async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: watcher, namespace: ${NS} }
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - { name: creds, secret: { secretName: rotating, defaultMode: 0400 } }
  - { name: policy, configMap: { name: policy, items: [{ key: policy.yaml, path: policy.yaml }] } }
  - { name: podinfo, downwardAPI: { items: [{ path: labels, fieldRef: { fieldPath: metadata.labels } }] } }
  containers:
  - name: app
    image: test/sh
    args: ['exec sleep 3600']
    volumeMounts:
    - { name: creds, mountPath: /etc/creds, readOnly: true }
    - { name: policy, mountPath: /etc/custos/policy, readOnly: true }
    - { name: podinfo, mountPath: /etc/podinfo }
`);
    await k.ok(['create', 'configmap', 'policy', '-n', NS, '--from-literal=policy.yaml=version: 1', '--from-literal=ignored=not projected']);
    await waitForRow('watcher', '0/1', 'ContainerCreating');
    await waitFor('the mount failure', () => Promise.resolve(runner.pod(NS, 'watcher')?.problem !== undefined));
    assert.equal(runner.pod(NS, 'watcher')?.problem, 'MountVolume.SetUp failed for volume "creds" : secret "rotating" not found');
    const events = await k.ok(['get', 'events', '-n', NS, '--field-selector', 'involvedObject.name=watcher', '-o', 'jsonpath={.items[*].reason}']);
    assert.match(events, /FailedMount/);

    await k.ok(['create', 'secret', 'generic', 'rotating', '-n', NS, '--from-literal=password=one']);
    await waitForRow('watcher', '1/1', 'Running');
    const cat = async (): Promise<string> => (await runner.exec(NS, 'watcher', 'app', ['cat', '/etc/creds/password'])).stdout;
    assert.equal(await cat(), 'one');
    const listing = (await runner.exec(NS, 'watcher', 'app', ['ls', '-la', '/etc/creds'])).stdout;
    assert.match(listing, /\.\.data -> \.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\./);
    assert.match(listing, /password -> \.\.data\/password/);
    // Read-only mount: not even root in the container can write there.
    const write = await runner.exec(NS, 'watcher', 'app', ['sh', '-c', 'echo x > /etc/creds/new']);
    assert.notEqual(write.code, 0);
    assert.match(write.stderr, /Read-only file system/);

    await k.ok(['create', 'secret', 'generic', 'rotating', '-n', NS, '--from-literal=password=two', '--dry-run=client', '-o', 'yaml'])
      .then((yaml) => k.ok(['apply', '-f', '-'], { input: yaml }));
    await waitFor('the secret file to change in the container', async () => (await cat()) === 'two', 10_000);
    const inPod = async (path: string): Promise<string> => (await runner.exec(NS, 'watcher', 'app', ['cat', path])).stdout;
    assert.equal((await runner.exec(NS, 'watcher', 'app', ['ls', '/etc/custos/policy'])).stdout, 'policy.yaml\n');
    assert.equal(await inPod('/etc/custos/policy/policy.yaml'), 'version: 1');
    await k.ok(['create', 'configmap', 'policy', '-n', NS, '--from-literal=policy.yaml=version: 2', '--dry-run=client', '-o', 'yaml'])
      .then((yaml) => k.ok(['apply', '-f', '-'], { input: yaml }));
    await waitFor('the ConfigMap item to change in the container', async () => (await inPod('/etc/custos/policy/policy.yaml')) === 'version: 2', 10_000);
    await k.ok(['label', 'pod', 'watcher', '-n', NS, 'tier=backend']);
    await waitFor('the downward API labels file to change', async () => (await inPod('/etc/podinfo/labels')) === 'tier="backend"', 10_000);
    const volume = join(runner.pod(NS, 'watcher')?.dir ?? '', 'volumes', 'creds');
    assert.equal((await stat(join(volume, await readlink(join(volume, '..data')), 'password'))).mode & 0o777, 0o400);
  });

  it('projects a service-account token with the requested audience, verifiable against the JWKS, and rotates it', async () => {
    const rotating = await startPodRunner({ api, namespaces: [`${NS}-tokens`], images: IMAGES, tokenRefreshMs: 1500 });
    try {
      await k.ok(['create', 'namespace', `${NS}-tokens`]);
      await k.ok(['create', 'serviceaccount', 'reporter', '-n', `${NS}-tokens`]);
      await apply(`apiVersion: v1
kind: Pod
metadata: { name: identity, namespace: ${NS}-tokens }
spec:
  serviceAccountName: reporter
  terminationGracePeriodSeconds: 1
  volumes:
  - name: custos-token
    projected: { sources: [{ serviceAccountToken: { audience: custos, expirationSeconds: 600, path: token } }] }
  containers:
  - name: app
    image: test/sh
    securityContext: { runAsUser: 17337, runAsGroup: 17337 }
    args: ['exec sleep 3600']
    volumeMounts: [{ name: custos-token, mountPath: /var/run/secrets/custos, readOnly: true }]
`);
      await k.ok(['wait', '--for=condition=Ready', 'pod/identity', '-n', `${NS}-tokens`, '--timeout=20s']);
      const read = async (): Promise<string> => {
        const r = await rotating.exec(`${NS}-tokens`, 'identity', 'app', ['cat', '/var/run/secrets/custos/token']);
        assert.equal(r.code, 0, r.stderr);
        return r.stdout;
      };
      const first = await read();
      const jwks = JSON.parse(await k.ok(['get', '--raw', '/openid/v1/jwks'])) as JSONWebKeySet;
      const { payload } = await jwtVerify(first, createLocalJWKSet(jwks), { issuer: api.issuer, audience: 'custos' });
      const podUid = await k.ok(['get', 'pod', 'identity', '-n', `${NS}-tokens`, '-o', 'jsonpath={.metadata.uid}']);
      assert.equal(payload.sub, `system:serviceaccount:${NS}-tokens:reporter`);
      assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 600);
      assert.deepEqual((payload['kubernetes.io'] as { pod: unknown }).pod, { name: 'identity', uid: podUid });
      await waitFor('the token to be rotated', async () => (await read()) !== first, 10_000);
      await jwtVerify(await read(), createLocalJWKSet(jwks), { issuer: api.issuer, audience: 'custos' });
    } finally {
      await rotating.stop();
    }
  });

  it('gives the pod an IP reachable from the host, reaches the host by a Service name, and reports readiness from an httpGet probe', async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: web, namespace: ${NS} }
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: test/node
    securityContext: { runAsUser: 4321, allowPrivilegeEscalation: false }
    args: ['-e', 'require("node:http").createServer((q, s) => s.end("pod " + process.getuid() + "\\n")).listen(8080, "0.0.0.0")']
    ports: [{ name: http, containerPort: 8080 }]
    readinessProbe: { httpGet: { path: /, port: http }, periodSeconds: 1 }
`);
    await k.ok(['wait', '--for=condition=Ready', `pod/web`, '-n', NS, '--timeout=20s']);
    assert.deepEqual((await podRow('web')).slice(1, 4), ['1/1', 'Running', '0']);
    const ip = await jsonpath('web', '{.status.podIP}');
    const answer = await fetch(`http://${ip}:8080/`).then((r) => r.text());
    assert.equal(answer, 'pod 4321\n');
    const fromPod = await runner.exec(NS, 'web', 'web', [process.execPath, '-e', `fetch("http://host-svc.${NS}.svc:${hostPort}/").then((r) => r.text()).then((t) => process.stdout.write(t))`]);
    assert.equal(fromPod.stdout, `host saw ${ip}\n`);
    const short = await runner.exec(NS, 'web', 'web', [process.execPath, '-e', `require("node:dns").lookup("host-svc", (e, a) => process.stdout.write(String(a)))`]);
    assert.equal(short.stdout, runner.hostAddress);
    // A server on the host's loopback only, exposed to pods as a Service through the veth.
    const loopbackOnly = createServer((req, res) => { res.end(`loopback server saw ${req.socket.remoteAddress ?? ''}\n`); });
    await new Promise<void>((resolve) => { loopbackOnly.listen(0, '127.0.0.1', resolve); });
    try {
      const relay = await runner.exposeService({ name: 'loopback-db', namespace: NS, port: 5432, target: { port: (loopbackOnly.address() as { port: number }).port } });
      const viaService = await runner.exec(NS, 'web', 'web', [process.execPath, '-e', `fetch("http://loopback-db:5432/").then((r) => r.text()).then((t) => process.stdout.write(t))`]);
      assert.equal(viaService.stdout, 'loopback server saw 127.0.0.1\n', viaService.stderr);
      assert.equal(relay.connections(), 1);
    } finally {
      loopbackOnly.close();
    }
  });

  it('runs a native sidecar before the app, gated by its startupProbe, and stops it when the app completes', async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: with-sidecar, namespace: ${NS} }
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: proxy
    image: test/node
    restartPolicy: Always
    args: ['-e', 'setTimeout(() => require("node:http").createServer((q, s) => s.end("proxy\\n")).listen(17020, "0.0.0.0"), 500)']
    startupProbe: { httpGet: { path: /readyz, port: 17020 }, periodSeconds: 1, failureThreshold: 60 }
  containers:
  - name: app
    image: test/node
    args: ['-e', 'fetch("http://127.0.0.1:17020/").then((r) => r.text()).then((t) => { process.stdout.write("app got " + t); setTimeout(() => {}, 1500); })']
`);
    await waitForRow('with-sidecar', '2/2', 'Running');
    await waitForRow('with-sidecar', '0/2', 'Completed');
    assert.equal(runner.logs(NS, 'with-sidecar', 'app'), 'app got proxy\n');
    assert.equal(await jsonpath('with-sidecar', '{.status.phase} {.status.initContainerStatuses[0].state.terminated.exitCode} {.status.initContainerStatuses[0].started}'), 'Succeeded 143 false');
  });

  it('reports a failing init container: Init:Error for restartPolicy Never, Init:CrashLoopBackOff with restarts otherwise', async () => {
    const pod = (name: string, policy: string): string => `apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${NS} }
spec:
  restartPolicy: ${policy}
  terminationGracePeriodSeconds: 1
  initContainers:
  - { name: migrate, image: test/sh, args: ['echo migration failed >&2; exit 3'] }
  containers:
  - { name: app, image: test/sh, args: ['exec sleep 3600'] }
`;
    await apply(pod('broken-once', 'Never'));
    await apply(pod('broken-loop', 'Always'));
    await waitForRow('broken-once', '0/1', 'Init:Error');
    assert.equal(await jsonpath('broken-once', '{.status.phase} {.status.initContainerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.waiting.reason}'), 'Failed 3 PodInitializing');
    assert.equal(await k.ok(['logs', 'broken-once', '-n', NS, '-c', 'migrate']), 'migration failed\n');
    await waitForRow('broken-loop', '0/1', 'Init:CrashLoopBackOff');
    await waitFor('restarts', async () => Number(await jsonpath('broken-loop', '{.status.initContainerStatuses[0].restartCount}')) >= 2, 15_000, 200);
    assert.equal(await jsonpath('broken-loop', '{.status.phase} {.status.initContainerStatuses[0].lastState.terminated.exitCode}'), 'Pending 3');
    await k.ok(['delete', 'pod', 'broken-loop', 'broken-once', '-n', NS]);
  });

  it('runs the Custos image as the webhook injects custos-init: rules in the pod\'s namespace, out of the app\'s reach; the API double on the pod\'s loopback', async () => {
    const interception = { proxyUid: 17337, proxyGid: 17337, excludeOutboundCIDRs: [], redirects: [{ target: 'billing', protocol: 'postgres', host: `billing-db.${NS}.svc`, port: 5432, listenPort: 17001 }] };
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: intercepted, namespace: ${NS} }
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{ name: custos-xtables-lock, emptyDir: {} }]
  initContainers:
  - name: custos-init
    image: ghcr.io/custos-dev/custos:0.1.0
    args: [init]
    env: [{ name: CUSTOS_INTERCEPTION, value: '${JSON.stringify(interception)}' }]
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: { add: [NET_ADMIN, NET_RAW], drop: [ALL] }
      readOnlyRootFilesystem: true
      runAsNonRoot: false
      runAsUser: 0
    volumeMounts: [{ name: custos-xtables-lock, mountPath: /run }]
  containers:
  - { name: app, image: test/sh, args: ['exec sleep 3600'], securityContext: { readOnlyRootFilesystem: true } }
`);
    await waitForRow('intercepted', '1/1', 'Running');
    // custos init resolved the Service name from the pod's hosts file.
    assert.match(runner.logs(NS, 'intercepted', 'custos-init'), new RegExp(`interception installed and verified: billing billing-db\\.${NS}\\.svc \\[${runner.hostAddress.replaceAll('.', '\\.')}\\]:5432 → 17001`));
    const netns = runner.pod(NS, 'intercepted')?.netns ?? '';
    const nat = await run('ip', ['netns', 'exec', netns, 'iptables-save', '-t', 'nat']);
    assert.match(nat, new RegExp(`-A CUSTOS_OUTPUT -d ${runner.hostAddress.replaceAll('.', '\\.')}/32 -p tcp -m tcp --dport 5432 -m comment --comment "custos/target:billing" -j REDIRECT --to-ports 17001`));
    // The app runs as root with the runtime's default capabilities: no NET_ADMIN, so the rules stay.
    const flush = await runner.exec(NS, 'intercepted', 'app', ['iptables', '-t', 'nat', '-F', 'CUSTOS_OUTPUT']);
    assert.notEqual(flush.code, 0);
    assert.match(flush.stderr, /Permission denied/);
    assert.equal(await run('ip', ['netns', 'exec', netns, 'iptables-save', '-t', 'nat']).then((t) => t.includes('--to-ports 17001')), true);
    const version = await runner.exec(NS, 'intercepted', 'app', [process.execPath, '-e',
      `require("node:https").get({ host: "127.0.0.1", port: ${api.port}, path: "/version", ca: require("node:fs").readFileSync(${JSON.stringify(api.caCertPath)}) }, (r) => { let t = ""; r.on("data", (d) => (t += d)); r.on("end", () => process.stdout.write(JSON.parse(t).gitVersion)); })`]);
    assert.equal(version.stdout, 'v1.35.0+custos-double', version.stderr);
    // In-cluster configuration works: KUBERNETES_SERVICE_HOST/PORT and the kube-api-access token and CA.
    const whoami = await runner.exec(NS, 'intercepted', 'app', ['sh', '-c',
      'D=/var/run/secrets/kubernetes.io/serviceaccount; exec ' + JSON.stringify(process.execPath) + ' -e \'require("node:https").get({ host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT, method: "GET", path: "/api/v1/namespaces/' + NS + '/pods/intercepted", ca: require("node:fs").readFileSync(process.argv[1] + "/ca.crt"), headers: { authorization: "Bearer " + require("node:fs").readFileSync(process.argv[1] + "/token", "utf8") } }, (r) => { process.stdout.write(String(r.statusCode)); })\' "$D"']);
    assert.equal(whoami.stdout, '200', whoami.stderr);
    const write = await runner.exec(NS, 'intercepted', 'app', ['touch', '/tmp/custos-pod-runner-rofs']);
    assert.match(write.stderr, /Read-only file system/);
  });

  it('runs a pod as the Custos webhook injects it: custos-init, the sidecar (UID 17337, read-only root) ready through its startup probe on the pod IP, then the app', async () => {
    const policy = {
      apiVersion: 'custos.io/v1alpha1', kind: 'AccessPolicy', metadata: { name: 'billing', namespace: NS, uid: 'policy-uid', generation: 1 },
      spec: {
        selector: { matchLabels: { app: 'billing-job' } },
        targets: [{ name: 'billing', protocol: 'postgres', host: `billing-db.${NS}.svc`, port: 5432, database: 'billing', credentials: { secretName: 'billing-db' } }],
        rules: [{ name: 'allow-reads', match: { sql: { statements: ['select'] } }, action: 'allow' }],
        defaultAction: 'deny',
      },
    } as unknown as AccessPolicy;
    const settings = DEFAULT_INJECTION_SETTINGS;
    // What the operator would write: the policy ConfigMap and the credentials Secret.
    const configMap = configMapManifest(renderPolicyConfigMap(policy, renderPolicyYaml(policy), settings));
    await apply(JSON.stringify({ ...configMap, metadata: { ...configMap.metadata, ownerReferences: undefined } }));
    await k.ok(['create', 'secret', 'generic', 'billing-db', '-n', NS, '--from-literal=username=billing_app', '--from-literal=password=upstream-pw']);
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'billing-job', namespace: NS, labels: { app: 'billing-job' } }, spec: { terminationGracePeriodSeconds: 2, containers: [{ name: 'app', image: 'test/sh', args: ['exec sleep 3600'] }] } };
    const injection = buildInjectionPatch({ pod, namespace: { name: NS, labels: { 'custos.io/injection': 'enabled' } }, policies: [policy], settings });
    if (injection.kind !== 'patch') throw new Error(`the webhook did not inject: ${JSON.stringify(injection)}`);
    await apply(JSON.stringify(applyJsonPatch(pod, injection.patch)));
    await waitForRow('billing-job', '2/2', 'Running', 40_000);
    assert.match(runner.logs(NS, 'billing-job', 'custos-sidecar'), /custos sidecar ready/);
    const sidecarPid = runner.pod(NS, 'billing-job')?.pid('custos-sidecar') ?? -1;
    assert.match(await readFile(`/proc/${sidecarPid}/status`, 'utf8'), /\nUid:\t17337\t17337\t17337\t17337\n/);
    const ip = await jsonpath('billing-job', '{.status.podIP}');
    assert.equal((await fetch(`http://${ip}:${settings.ports.admin}/readyz`)).status, 200);
    await k.ok(['delete', 'pod', 'billing-job', '-n', NS]);
  });

  it('on deletion (Terminating) sends SIGTERM, waits for the container, removes the network namespace and files, then deletes the pod object', async () => {
    const marker = '/tmp/custos-pod-runner-doomed.txt';
    await rm(marker, { force: true });
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: doomed, namespace: ${NS} }
spec:
  terminationGracePeriodSeconds: 5
  volumes: [{ name: out, hostPath: { path: /tmp } }]
  containers:
  - name: app
    image: test/sh
    args: ['trap "echo got TERM > /host-tmp/custos-pod-runner-$HOSTNAME.txt; sleep 1; exit 0" TERM; while true; do sleep 0.1; done']
    volumeMounts: [{ name: out, mountPath: /host-tmp }]
`);
    await waitForRow('doomed', '1/1', 'Running');
    const running = runner.pod(NS, 'doomed');
    const netns = running?.netns ?? '';
    const pid = running?.pid('app') ?? -1;
    assert.match(await netnsList(), new RegExp(netns));
    await k.ok(['delete', 'pod', 'doomed', '-n', NS, '--wait=false']);
    assert.equal((await podRow('doomed'))[2], 'Terminating');
    // The runner deletes the object once the pod is stopped and cleaned up, as a kubelet does.
    await k.ok(['wait', '--for=delete', 'pod/doomed', '-n', NS, '--timeout=20s']);
    assert.doesNotMatch(await netnsList(), new RegExp(netns));
    await assert.rejects(stat(running?.dir ?? '/nonexistent'), /ENOENT/);
    assert.equal(await readFile(marker, 'utf8'), 'got TERM\n');
    await rm(marker);
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
    await assert.rejects(stat(`/etc/netns/${netns}`), /ENOENT/);
    assert.equal(runner.pod(NS, 'doomed'), undefined);
  });
});
