// The pod runner: a kubelet stand-in for tests (DESIGN §6). It watches the API server for pods in
// the namespaces it is given and runs each as local processes in its own network namespace (see
// pod-worker.ts), with volumes as files kept in sync with their ConfigMaps, Secrets and tokens,
// and reports status through pods/status. It talks to the API double over HTTPS only, as a
// kubelet does, so what it reads and writes is what kubectl shows.
//
//   const runner = await startPodRunner({ api, namespaces: ['payments'], images: { 'registry.example/custos': custosImage(), 'test/app': { entrypoint: [process.execPath, APP] } } });
//   await runner.setServices([{ name: 'billing-db', namespace: 'payments', address: runner.hostAddress }]);
//   ... kubectl apply a pod; kubectl wait --for=condition=Ready pod/x; runner.logs('payments', 'x', 'app') ...
//   await runner.stop();
import { access, chmod, mkdtemp, rm } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { CommandResult } from '../processes.ts';
import type { ImageTable } from './image-fixtures.ts';
import { startInformer, type Informer } from './informer.ts';
import { createKubeClient, isNotFound, KubeRequestError, type KubeConnection, type KubeObjectLike } from './kube-client.ts';
import { startHostService, type HostService, type HostServiceTarget } from './host-service.ts';
import { startLoopbackForwarder } from './loopback-forward.ts';
import { createNodeNetwork, type ServiceAddress } from './pod-network.ts';
import type { ConfigMapLike, Pod, SecretLike } from './pod-spec.ts';
import { PodWorker, type HostTools } from './pod-worker.ts';
import { letOtherUsersReachRepo } from '../repo-access.ts';

export { custosImage, type ImageFixture, type ImageTable } from './image-fixtures.ts';
export type { ServiceAddress } from './pod-network.ts';
export type { HostService, HostServiceTarget } from './host-service.ts';

export interface PodRunnerOptions {
  /**
   * The API server: a started API double (its first static token is used; `kubectl logs` is
   * served from the runner) or url, CA and token.
   */
  readonly api: KubeConnection | {
    readonly url: string;
    readonly caCert: string;
    readonly tokens: Readonly<Record<string, unknown>>;
    addPodLogSource(source: (namespace: string, pod: string, container: string) => string | undefined): () => void;
  };
  /** Pods in these namespaces run here (a pod bound to another spec.nodeName is left alone). */
  readonly namespaces: readonly string[];
  /** Image → program. */
  readonly images: ImageTable;
  /** Default custos-test-node. */
  readonly nodeName?: string;
  /** Service names pods resolve (more with setServices). */
  readonly services?: readonly ServiceAddress[];
  /** Extra hostname → address lines in every pod's /etc/hosts. */
  readonly hosts?: Readonly<Record<string, string>>;
  /** Environment every container gets under its own (e.g. KUBERNETES_SERVICE_HOST/PORT). */
  readonly env?: Readonly<Record<string, string>>;
  /** Run every probe at this period instead of its periodSeconds (tests that cannot wait 10 s). */
  readonly probePeriodMs?: number;
  /** Rotate projected tokens after this long instead of at 80% of their lifetime (at least 10 minutes in the API server). */
  readonly tokenRefreshMs?: number;
  /** Restart back-off: first delay and cap (the kubelet's are 10 s and 5 min; default 1 s and 10 s here). */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  /**
   * Host loopback ports that pods reach at the same port on their own loopback, e.g. the API
   * double's port, so that https://127.0.0.1:<port> (its URL and token issuer) works inside pods.
   * With the API server's port relayed, containers also get KUBERNETES_SERVICE_HOST/PORT for it.
   */
  readonly loopbackPorts?: readonly number[];
}

export interface RunningPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** The network namespace (`ip netns exec <netns> ...`). */
  readonly netns: string | undefined;
  readonly podIP: string | undefined;
  /** Per-pod directory: volumes/<name>/, logs/<container>.log. */
  readonly dir: string;
  readonly phase: string;
  /** Why the pod is not starting (a missing ConfigMap or Secret, a container config error), if it is not. */
  readonly problem: string | undefined;
  /** PID of the container's running process. */
  pid(container: string): number | undefined;
}

export interface PodRunner {
  readonly nodeName: string;
  /** The pods' gateway: the host as pods reach it. Bind a server here (or 0.0.0.0) to serve pods. */
  readonly hostAddress: string;
  /** The pods' /24. */
  readonly cidr: string;
  pod(namespace: string, name: string): RunningPod | undefined;
  /** Resolves when the runner runs pod `name` and has given it an IP. */
  waitForPod(namespace: string, name: string, timeoutMs?: number): Promise<RunningPod>;
  /** Everything container `container` printed (stdout and stderr, every restart), as `kubectl logs` would show. */
  logs(namespace: string, name: string, container: string): string;
  /** Runs `command` in a running container (its namespaces, user and environment): a `kubectl exec` stand-in. */
  exec(namespace: string, name: string, container: string, command: readonly string[]): Promise<CommandResult>;
  /**
   * Serves a loopback server (a test PostgreSQL) to pods as Service `name.namespace.svc:port`: a
   * relay on the host side of their veth (hostAddress:port) and the name in their hosts file.
   */
  exposeService(service: { name: string; namespace: string; port: number; target: HostServiceTarget }): Promise<HostService>;
  /** Replaces the Service names pods resolve; rewrites the hosts file of every running pod. */
  setServices(services: readonly ServiceAddress[], hosts?: Readonly<Record<string, string>>): Promise<void>;
  /** Requests new projected tokens now (as a rotation would), for one pod or all. */
  rotateTokens(namespace?: string, name?: string): Promise<void>;
  /** Stops every pod (grace period 0) and removes the runner's network and files. */
  stop(): Promise<void>;
}

async function findTool(name: string): Promise<string> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const dir of dirs) {
    const path = join(dir, name);
    if (await access(path, constants.X_OK).then(() => true, () => false)) return path;
  }
  throw new Error(`the pod runner needs ${name} (util-linux / a shell) on PATH`);
}

function connectionOf(api: PodRunnerOptions['api']): KubeConnection {
  if ('token' in api) return api;
  const token = Object.keys(api.tokens)[0];
  if (token === undefined) throw new Error('the API double has no static token for the pod runner');
  return { url: api.url, caCert: api.caCert, token };
}

/**
 * The kubernetes Service variables the kubelet gives every container, when pods can reach the API
 * server (its port relayed onto their loopback): in-cluster clients then work inside pods, with
 * the kube-api-access volume's token and CA.
 */
function kubernetesServiceEnv(connection: KubeConnection, loopbackPorts: readonly number[]): Record<string, string> {
  const url = new URL(connection.url);
  const port = Number(url.port || 443);
  if (url.hostname !== '127.0.0.1' || !loopbackPorts.includes(port)) return {};
  const p = String(port);
  return {
    KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: p, KUBERNETES_SERVICE_PORT_HTTPS: p,
    KUBERNETES_PORT: `tcp://127.0.0.1:${p}`, [`KUBERNETES_PORT_${p}_TCP`]: `tcp://127.0.0.1:${p}`,
    [`KUBERNETES_PORT_${p}_TCP_PROTO`]: 'tcp', [`KUBERNETES_PORT_${p}_TCP_PORT`]: p, [`KUBERNETES_PORT_${p}_TCP_ADDR`]: '127.0.0.1',
  };
}

export async function startPodRunner(options: PodRunnerOptions): Promise<PodRunner> {
  // Containers run as the pods' UIDs and load the checkout's modules (the Custos image).
  await letOtherUsersReachRepo();
  const connection = connectionOf(options.api);
  const client = createKubeClient(connection);
  const nodeName = options.nodeName ?? 'custos-test-node';
  const tools: HostTools = { sh: await findTool('sh'), setpriv: await findTool('setpriv'), nsenter: await findTool('nsenter') };
  const podsDir = await mkdtemp(join(tmpdir(), 'custos-pod-runner-'));
  // Containers that run as other users still reach their log and volume directories through here.
  await chmod(podsDir, 0o755);
  const network = await createNodeNetwork();
  const loopback = options.loopbackPorts === undefined || options.loopbackPorts.length === 0 ? undefined : await startLoopbackForwarder(podsDir, options.loopbackPorts);
  const namespaces = new Set(options.namespaces);
  let services: readonly ServiceAddress[] = options.services ?? [];
  let hosts: Readonly<Record<string, string>> = options.hosts ?? {};
  const workers = new Map<string, PodWorker>();
  const hostServices: HostService[] = [];
  /** Pods being stopped after their deletion; stop() waits for them. */
  const stopping = new Set<Promise<void>>();
  const retire = (w: PodWorker, graceSeconds?: number, finalize = false): void => {
    const done = w.terminate(graceSeconds).then(async () => {
      if (!finalize) return;
      // Graceful deletion: stopped, so the kubelet deletes the object for good (grace 0, this pod's uid only).
      await client.json('DELETE', `/api/v1/namespaces/${w.namespace}/pods/${w.name}`, {
        apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: w.uid },
      }).catch((e: unknown) => { if (!isNotFound(e) && !(e instanceof KubeRequestError && e.code === 409)) warn(`final delete of pod ${w.namespace}/${w.name}: ${String(e)}`); });
    });
    stopping.add(done);
    void done.finally(() => stopping.delete(done));
  };
  const warn = (message: string): void => { console.error(`pod runner: ${message}`); };
  const inScope = (o: KubeObjectLike): boolean => namespaces.has(o.metadata.namespace ?? '');

  const resync = (o: KubeObjectLike): void => {
    for (const w of workers.values()) if (w.namespace === o.metadata.namespace) void w.syncVolumes();
  };
  const configMaps: Informer = startInformer(client, '/api/v1/configmaps', inScope, (_t, o) => { resync(o); }, (e) => { warn(String(e)); });
  const secrets: Informer = startInformer(client, '/api/v1/secrets', inScope, (_t, o) => { resync(o); }, (e) => { warn(String(e)); });
  await Promise.all([configMaps.synced, secrets.synced]);

  const deps = {
    client, network, images: options.images, tools, nodeName, podsDir,
    configMap: (ns: string, name: string) => configMaps.get(ns, name) as ConfigMapLike | undefined,
    secret: (ns: string, name: string) => secrets.get(ns, name) as SecretLike | undefined,
    dns: () => ({ services, hosts }),
    baseEnv: { ...kubernetesServiceEnv(connection, options.loopbackPorts ?? []), ...options.env },
    probePeriodMs: options.probePeriodMs,
    tokenRefreshMs: options.tokenRefreshMs,
    backoffMs: options.backoffMs ?? { initial: 1000, max: 10_000 },
    loopback,
    warn,
  };
  const key = (namespace: string, name: string): string => `${namespace}/${name}`;
  const ours = (o: KubeObjectLike): boolean => {
    const pod = o as unknown as Pod;
    if (!inScope(o) || pod.spec.hostNetwork === true) return false;
    return pod.spec.nodeName === undefined || pod.spec.nodeName === '' || pod.spec.nodeName === nodeName;
  };
  const pods = startInformer(client, '/api/v1/pods', ours, (type, o) => {
    const pod = o as unknown as Pod;
    const k = key(pod.metadata.namespace ?? '', pod.metadata.name ?? '');
    const existing = workers.get(k);
    if (type === 'DELETED') {
      if (existing !== undefined && existing.uid === pod.metadata.uid) {
        workers.delete(k);
        retire(existing);
      }
      return;
    }
    if (existing !== undefined && existing.uid !== pod.metadata.uid) {
      // Deleted and created again between two events: a new pod.
      workers.delete(k);
      retire(existing);
    } else if (existing !== undefined) {
      existing.update(pod);
      // Graceful deletion (the API double's gracefulPodDeletion, or finalizers): stop the pod
      // within its grace period, then delete the object with grace 0, as the kubelet does.
      if (pod.metadata.deletionTimestamp !== undefined) {
        workers.delete(k);
        retire(existing, pod.metadata.deletionGracePeriodSeconds, true);
      }
      return;
    }
    const phase = pod.status?.phase;
    if (pod.metadata.deletionTimestamp !== undefined || phase === 'Succeeded' || phase === 'Failed') return;
    workers.set(k, new PodWorker(pod, deps));
  }, (e) => { warn(String(e)); });
  await pods.synced;
  const api = options.api;
  const removeLogSource = 'addPodLogSource' in api
    ? api.addPodLogSource((namespace, name, container) => workers.get(key(namespace, name))?.logs.get(container)?.text())
    : undefined;

  const setServices = async (next: readonly ServiceAddress[], nextHosts: Readonly<Record<string, string>>): Promise<void> => {
    services = next;
    hosts = nextHosts;
    await Promise.all([...workers.values()].map(async (w) => { await w.network?.writeHosts(services, hosts); }));
  };
  const view = (w: PodWorker): RunningPod => ({
    namespace: w.namespace, name: w.name, uid: w.uid, netns: w.network?.netns, podIP: w.podIP, dir: w.dir, phase: w.phase, problem: w.problem,
    pid: (container) => w.running.get(container)?.process.pid,
  });
  const worker = (namespace: string, name: string): PodWorker => {
    const w = workers.get(key(namespace, name));
    if (w === undefined) throw new Error(`the pod runner is not running pod ${namespace}/${name}`);
    return w;
  };

  return {
    nodeName,
    hostAddress: network.gateway,
    cidr: network.cidr,
    pod: (namespace, name) => {
      const w = workers.get(key(namespace, name));
      return w === undefined ? undefined : view(w);
    },
    async waitForPod(namespace, name, timeoutMs = 15_000): Promise<RunningPod> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const w = workers.get(key(namespace, name));
        if (w?.podIP !== undefined) return view(w);
        if (Date.now() > deadline) throw new Error(`timed out waiting for the pod runner to run pod ${namespace}/${name}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    logs: (namespace, name, container) => worker(namespace, name).logs.get(container)?.text() ?? '',
    exec: (namespace, name, container, command) => worker(namespace, name).exec(container, command),
    async exposeService(service): Promise<HostService> {
      const relay = await startHostService(network.gateway, service.port, service.target);
      hostServices.push(relay);
      const others = services.filter((s) => !(s.name === service.name && s.namespace === service.namespace));
      await setServices([...others, { name: service.name, namespace: service.namespace, address: network.gateway }], hosts);
      return relay;
    },
    setServices: async (next, nextHosts = hosts) => { await setServices(next, nextHosts); },
    async rotateTokens(namespace, name): Promise<void> {
      const targets = [...workers.values()].filter((w) => (namespace === undefined || w.namespace === namespace) && (name === undefined || w.name === name));
      await Promise.all(targets.map((w) => w.syncVolumes({ forceTokens: true })));
    },
    async stop(): Promise<void> {
      removeLogSource?.();
      pods.stop();
      configMaps.stop();
      secrets.stop();
      await Promise.all([...workers.values()].map((w) => w.terminate(0)));
      workers.clear();
      await Promise.all([...stopping]);
      await Promise.all(hostServices.map((h) => h.close()));
      await loopback?.stop();
      await network.destroy();
      await rm(podsDir, { recursive: true, force: true });
    },
  };
}
