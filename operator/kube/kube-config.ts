// Where the operator's Kubernetes credentials come from, in the order controller-runtime's
// GetConfig uses: an explicit kubeconfig path (the operator configuration's `kubeconfig`), then
// the KUBECONFIG variable, then the pod's service account (in-cluster). An explicit choice wins
// over the ambient one because every pod has KUBERNETES_SERVICE_HOST set: a kubeconfig someone
// configured on purpose must not be silently ignored there. Neither present is an error that says
// what was looked for, instead of client-node's silent fallback to http://localhost:8080.
import { existsSync, readFileSync } from 'node:fs';
import { delimiter } from 'node:path';
import { isIPv6 } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { CustosError } from '../../lib/errors.ts';

/** The service account files the kubelet mounts into every pod that automounts its token. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export type KubeConfigOrigin = 'kubeconfig' | 'in-cluster';

export interface KubeConfigSource {
  /** A kubeconfig file chosen explicitly (wins over everything else). */
  readonly kubeconfigPath?: string | undefined;
  /** The environment (default process.env): KUBECONFIG, KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Where the service account token, CA and namespace are (default SERVICE_ACCOUNT_DIR). */
  readonly serviceAccountDir?: string;
}

export interface LoadedKubeConfig {
  readonly kubeConfig: KubeConfig;
  readonly origin: KubeConfigOrigin;
  /** The API server URL (for a start-up log line; carries no credentials). */
  readonly server: string;
  /** In-cluster: the pod's namespace from the service account mount. */
  readonly namespace?: string;
}

function fail(message: string, cause?: unknown): never {
  throw new CustosError('ERR_KUBECONFIG', message, cause === undefined ? undefined : { cause });
}

function fromFile(path: string, what: string): LoadedKubeConfig {
  if (!existsSync(path)) fail(`${what} ${path} does not exist`);
  const kubeConfig = new KubeConfig();
  try {
    kubeConfig.loadFromFile(path);
  } catch (e: unknown) {
    fail(`${what} ${path} cannot be read: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) fail(`${what} ${path} has no current context with a cluster`);
  return { kubeConfig, origin: 'kubeconfig', server: cluster.server };
}

function inCluster(host: string, port: string | undefined, dir: string): LoadedKubeConfig {
  if (port === undefined || port === '') fail('KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not');
  const tokenFile = `${dir}/token`;
  const caFile = `${dir}/ca.crt`;
  if (!existsSync(tokenFile)) {
    fail(`running in a cluster (KUBERNETES_SERVICE_HOST=${host}) but ${tokenFile} does not exist: is automountServiceAccountToken false for the operator's pod?`);
  }
  if (!existsSync(caFile)) fail(`running in a cluster but the API server CA ${caFile} does not exist`);
  const namespaceFile = `${dir}/namespace`;
  const namespace = existsSync(namespaceFile) ? readFileSync(namespaceFile, 'utf8').trim() : undefined;
  const server = `https://${isIPv6(host) ? `[${host}]` : host}:${port}`;
  const kubeConfig = new KubeConfig();
  // As KubeConfig.loadFromCluster builds it, but from the environment we were given. The
  // `tokenFile` provider re-reads the token every minute, so the kubelet's rotation of the
  // projected service account token is picked up without a restart.
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'in-cluster', server, caFile, skipTLSVerify: false }],
    users: [{ name: 'in-cluster', authProvider: { name: 'tokenFile', config: { tokenFile } } }],
    contexts: [{ name: 'in-cluster', cluster: 'in-cluster', user: 'in-cluster', ...(namespace === undefined ? {} : { namespace }) }],
    currentContext: 'in-cluster',
  });
  return { kubeConfig, origin: 'in-cluster', server, ...(namespace === undefined ? {} : { namespace }) };
}

/** Loads the KubeConfig the operator talks to the API server with; throws ERR_KUBECONFIG saying what is missing. */
export function loadKubeConfig(source: KubeConfigSource = {}): LoadedKubeConfig {
  const env = source.env ?? process.env;
  if (source.kubeconfigPath !== undefined && source.kubeconfigPath !== '') return fromFile(source.kubeconfigPath, 'kubeconfig');
  const fromEnv = env.KUBECONFIG;
  if (fromEnv !== undefined && fromEnv !== '') {
    // KUBECONFIG may list several files; the operator uses the first, as its only context.
    const first = fromEnv.split(delimiter).find((p) => p !== '') ?? fromEnv;
    return fromFile(first, 'KUBECONFIG');
  }
  const host = env.KUBERNETES_SERVICE_HOST;
  if (host !== undefined && host !== '') return inCluster(host, env.KUBERNETES_SERVICE_PORT, source.serviceAccountDir ?? SERVICE_ACCOUNT_DIR);
  return fail('no Kubernetes credentials: not running in a cluster (KUBERNETES_SERVICE_HOST is not set) and no kubeconfig given (set KUBECONFIG or the kubeconfig path)');
}
