// A local "cluster" made of real processes: the Kubernetes API double, the chart (rendered with the
// real helm, applied with the real kubectl) and one or more `custos operator` processes, each run
// with the environment the chart's Deployment gives its container (downward API resolved here), so
// the operator is configured exactly as it would be in a pod. The end-to-end tests and
// `npm run cluster` both use it. The pod runner (kubelet stand-in) joins it in issue 6.
import { copyFile, mkdtemp } from 'node:fs/promises';
import type { ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { freePort } from './free-port.ts';
import { kubectlFor, renderChart, type Kubectl } from './kube-tools.ts';
import { startKubeApi, type KubeApi, type KubeApiOptions } from './kube-api/server.ts';
import type { StaticTokenUser } from './kube-api/authn.ts';
import { spawnManaged, stopProcess, waitFor } from './processes.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(REPO_ROOT, 'cli', 'custos.ts');

export const RELEASE_NAMESPACE = 'custos-system';
export const OPERATOR_SERVICE_ACCOUNT = 'custos-operator';

export interface OperatorProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly webhookPort: number;
  readonly metricsPort: number;
  /** Everything it logged (pino JSON lines), for assertions and for failure messages. */
  logs(): string;
  /** SIGTERM and wait for exit (graceful: releases the Lease). */
  stop(): Promise<void>;
  /** SIGKILL: a crashed leader that never releases its Lease. */
  kill(): Promise<void>;
}

export interface LocalClusterOptions {
  /** `--set` values for the chart (e.g. `redis.url=redis://127.0.0.1:6379`). */
  readonly chartValues?: readonly string[];
  /** Operators to start (default 1). */
  readonly operators?: number;
  /** Extra environment for every operator (e.g. short lease durations in tests). */
  readonly operatorEnv?: Readonly<Record<string, string>>;
  /** Passed to the API double (e.g. a small watch history). */
  readonly api?: Pick<KubeApiOptions, 'historySize' | 'bookmarkIntervalMs' | 'gracefulPodDeletion'>;
  /** Fixed API port (npm run cluster); default a free one. */
  readonly apiPort?: number;
  /** Further users the API double authenticates by bearer token (`cluster.api.kubeconfig(username)`). */
  readonly users?: readonly StaticTokenUser[];
  /** Where the admin kubeconfig is written (`<dir>/kubeconfig`); default a new temporary directory. */
  readonly dir?: string;
}

export interface LocalCluster {
  api: KubeApi;
  readonly dir: string;
  /** Admin kubeconfig (user `admin`, group `system:masters`). */
  readonly kubeconfig: string;
  readonly kubectl: Kubectl;
  readonly operators: OperatorProcess[];
  startOperator(): Promise<OperatorProcess>;
  /**
   * Stops the API double and starts it again with the same data, CA, keys and port; `whileDown`
   * runs in between (e.g. a write and an etcd-style compaction, so resumed watches get 410 Gone).
   */
  restartApi(whileDown?: (store: KubeApi['store']) => void): Promise<void>;
  /** The name of the operator holding the leader Lease, if any. */
  leader(): Promise<string | undefined>;
  stop(): Promise<void>;
}

interface ContainerEnv { readonly name: string; readonly value?: string; readonly valueFrom?: { readonly fieldRef?: { readonly fieldPath: string } } }
interface ChartDocument { readonly kind?: string; readonly spec?: { readonly template?: { readonly spec?: { readonly containers?: ReadonlyArray<{ readonly name: string; readonly env?: readonly ContainerEnv[] }> } } } }

/** The operator container's environment from the rendered chart, downward API fields resolved. */
export function operatorEnvFromChart(rendered: string, pod: { namespace: string; name: string }): Record<string, string> {
  const documents = parseAllDocuments(rendered).map((d) => d.toJS() as ChartDocument | null);
  const deployment = documents.find((d) => d?.kind === 'Deployment');
  const container = deployment?.spec?.template?.spec?.containers?.find((c) => c.name === 'operator');
  if (container === undefined) throw new Error('the rendered chart has no operator container');
  const downward: Readonly<Record<string, string>> = { 'metadata.namespace': pod.namespace, 'metadata.name': pod.name };
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    const value = e.value ?? (field === undefined ? undefined : downward[field]);
    if (value === undefined) throw new Error(`operator env ${e.name}: cannot resolve ${JSON.stringify(e.valueFrom)}`);
    env[e.name] = value;
  }
  return env;
}

export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'custos-cluster-')));
  const adminToken = `admin-${crypto.randomUUID()}`;
  const operatorToken = `operator-${crypto.randomUUID()}`;
  const operators: OperatorProcess[] = [];
  let nextWebhook = 0;
  const apiOptions: KubeApiOptions = {
    ...options.api,
    tokens: {
      [adminToken]: { username: 'admin', groups: ['system:masters'], uid: 'admin-uid' },
      [operatorToken]: { username: `system:serviceaccount:${RELEASE_NAMESPACE}:${OPERATOR_SERVICE_ACCOUNT}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${RELEASE_NAMESPACE}`, 'system:authenticated'], uid: 'operator-uid' },
      ...Object.fromEntries((options.users ?? []).map((user) => [`${user.username.replace(/[^a-z0-9]/gi, '')}-${crypto.randomUUID()}`, user])),
    },
    publicOidc: true,
    // The webhook Service's endpoints: the live operators, taken in turn as kube-proxy would.
    serviceUrl: (service) => {
      if (service.namespace !== RELEASE_NAMESPACE) return undefined;
      const live = operators.filter((o) => o.child.exitCode === null && o.child.signalCode === null);
      const target = live[nextWebhook++ % Math.max(live.length, 1)];
      return target === undefined ? 'https://127.0.0.1:1/unavailable' : `https://127.0.0.1:${target.webhookPort}${service.path}`;
    },
  };
  let api = await startKubeApi(options.apiPort === undefined ? apiOptions : { ...apiOptions, port: options.apiPort });
  const kubeconfig = join(dir, 'kubeconfig');
  await copyFile(await api.kubeconfig('admin'), kubeconfig);
  const kubectl = await kubectlFor(kubeconfig);
  await kubectl.ok(['create', 'namespace', RELEASE_NAMESPACE]);
  const rendered = await renderChart(RELEASE_NAMESPACE, options.chartValues ?? []);
  await kubectl.ok(['apply', '-f', '-'], { input: rendered });
  const operatorKubeconfig = await api.kubeconfig(`system:serviceaccount:${RELEASE_NAMESPACE}:${OPERATOR_SERVICE_ACCOUNT}`);

  const startOperator = async (): Promise<OperatorProcess> => {
    const name = `custos-operator-${operators.length}`;
    const [webhookPort, metricsPort] = [await freePort(), await freePort()];
    const env = {
      ...process.env,
      ...operatorEnvFromChart(rendered, { namespace: RELEASE_NAMESPACE, name }),
      KUBECONFIG: operatorKubeconfig,
      CUSTOS_WEBHOOK_HOST: '127.0.0.1',
      CUSTOS_WEBHOOK_PORT: String(webhookPort),
      CUSTOS_METRICS_HOST: '127.0.0.1',
      CUSTOS_METRICS_PORT: String(metricsPort),
      // Tests stop operators often; a real rollout keeps the 5 s default for endpoint withdrawal.
      CUSTOS_SHUTDOWN_DELAY_SECONDS: '1',
      ...options.operatorEnv,
    };
    const child = spawnManaged(process.execPath, [CLI, 'operator'], { env, cwd: REPO_ROOT });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const operator: OperatorProcess = {
      name, child, webhookPort, metricsPort,
      logs: () => output,
      stop: () => stopProcess(child),
      kill: () => stopProcess(child, 'SIGKILL'),
    };
    operators.push(operator);
    // Ready: caches synced and the webhook serving (only then is it a Service endpoint).
    await waitFor(`${name} to report /readyz`, async () => {
      if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}:\n${output}`);
      const r = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
      return r.ok;
    }, 30_000, 100).catch((e: unknown) => {
      throw new Error(`${String(e)}\n--- ${name} output ---\n${output}`);
    });
    return operator;
  };

  for (let i = 0; i < (options.operators ?? 1); i++) await startOperator();

  const cluster: LocalCluster = {
    api,
    dir,
    kubeconfig,
    kubectl,
    operators,
    startOperator,
    async restartApi(whileDown) {
      const state = api.state;
      await api.stop();
      whileDown?.(state.store);
      api = await startKubeApi({ ...apiOptions, state });
      cluster.api = api;
    },
    async leader() {
      const r = await kubectl.run(['get', 'lease', '-n', RELEASE_NAMESPACE, '-o', 'jsonpath={.items[*].spec.holderIdentity}']);
      const holder = r.stdout.trim();
      return r.code === 0 && holder !== '' ? holder : undefined;
    },
    async stop() {
      await Promise.all(operators.map((o) => o.stop()));
      await api.stop();
    },
  };
  return cluster;
}
