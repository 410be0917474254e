// The plugin's only I/O with the API server: credentials found as kubectl finds them (--kubeconfig,
// else KUBECONFIG, else ~/.kube/config, else in-cluster), --context, the context's namespace, and
// the four calls the commands make. A refusal keeps the API server's own Status message, since
// the review webhook writes its explanation there for the reviewer to read.
import { existsSync } from 'node:fs';
import { ApiException, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import type { AccessRequest } from '../../../crds/generated/access-request.ts';
import type { AccessReview } from '../../../crds/generated/access-review.ts';
import { ApiServerError, ConnectionError } from './errors.ts';
import { isRecord } from '../../../lib/is-record.ts';

const GROUP = 'custos.io';
const VERSION = 'v1alpha1';

/** What `approve` and `deny` send: never spec.reviewer, which the review webhook stamps. */
export interface AccessReviewSubmission {
  readonly apiVersion: 'custos.io/v1alpha1';
  readonly kind: 'AccessReview';
  readonly metadata: { readonly generateName: string; readonly namespace: string };
  readonly spec: {
    readonly requestName: string;
    readonly decision: 'approve' | 'deny';
    readonly reason: string;
    readonly commandDigest: string;
  };
}

export interface ClusterOptions {
  readonly kubeconfig?: string | undefined;
  readonly context?: string | undefined;
}

export interface Cluster {
  /** The namespace of the current context, else "default" (as kubectl chooses it). */
  readonly defaultNamespace: string;
  getAccessRequest(namespace: string, name: string): Promise<AccessRequest>;
  /** In one namespace, or in all of them when `namespace` is undefined. */
  listAccessRequests(namespace: string | undefined): Promise<AccessRequest[]>;
  listAccessReviews(namespace: string): Promise<AccessReview[]>;
  /** Creates the review; resolves to the name the API server generated. */
  createAccessReview(submission: AccessReviewSubmission): Promise<string>;
}

function loadKubeConfig(options: ClusterOptions): KubeConfig {
  const kubeConfig = new KubeConfig();
  if (options.kubeconfig !== undefined) {
    if (!existsSync(options.kubeconfig)) throw new ConnectionError(`kubeconfig ${options.kubeconfig} does not exist`);
    try {
      kubeConfig.loadFromFile(options.kubeconfig);
    } catch (e: unknown) {
      throw new ConnectionError(`kubeconfig ${options.kubeconfig} cannot be read: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  } else {
    try {
      kubeConfig.loadFromDefault();
    } catch (e: unknown) {
      throw new ConnectionError(`the kubeconfig cannot be read: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }
  if (options.context !== undefined) {
    // kubectl's own words for an unknown --context.
    if (kubeConfig.getContextObject(options.context) === null) throw new ConnectionError(`context was not found for specified context: ${options.context}`);
    kubeConfig.setCurrentContext(options.context);
  }
  if (kubeConfig.getCurrentCluster() === null) throw new ConnectionError('no cluster in the kubeconfig\'s current context: choose one with --context or --kubeconfig');
  return kubeConfig;
}


/** The Status an error response carried, whatever shape client-node left its body in. */
function statusOf(body: unknown): { reason: string; message: string } | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body) as unknown;
    } catch {
      return body.trim() === '' ? undefined : { reason: '', message: body.trim() };
    }
  }
  if (!isRecord(parsed) || typeof parsed.message !== 'string') return undefined;
  return { reason: typeof parsed.reason === 'string' ? parsed.reason : '', message: parsed.message };
}

function translate(e: unknown, server: string): Error {
  if (e instanceof ApiException) {
    const code = (e as ApiException<unknown>).code;
    const status = statusOf((e as ApiException<unknown>).body);
    // kubectl's wording for a rejected credential (the API server sends no Status body then).
    if (code === 401) return new ApiServerError(code, 'Unauthorized', status?.message ?? 'You must be logged in to the server (Unauthorized)');
    return new ApiServerError(code, status?.reason ?? '', status?.message ?? `the server answered HTTP ${code} without a message`);
  }
  const cause = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : '';
  return new ConnectionError(`cannot reach the API server at ${server}: ${e instanceof Error ? e.message : String(e)}${cause}`, { cause: e });
}

function itemsOf<T>(list: unknown, what: string): T[] {
  if (!isRecord(list) || !Array.isArray(list.items)) throw new ConnectionError(`the API server answered the list of ${what} with something that is not a list`);
  return list.items.filter(isRecord) as unknown as T[];
}

/** Connects as the kubeconfig says; nothing is sent until a command calls. */
export function connect(options: ClusterOptions): Cluster {
  const kubeConfig = loadKubeConfig(options);
  const server = kubeConfig.getCurrentCluster()?.server ?? '?';
  const api = kubeConfig.makeApiClient(CustomObjectsApi);
  const call = async <T>(request: () => Promise<T>): Promise<T> => {
    try {
      return await request();
    } catch (e: unknown) {
      throw translate(e, server);
    }
  };
  const contextNamespace = kubeConfig.getContextObject(kubeConfig.getCurrentContext())?.namespace;
  return {
    defaultNamespace: contextNamespace === undefined || contextNamespace === '' ? 'default' : contextNamespace,
    async getAccessRequest(namespace, name) {
      const object: unknown = await call(() => api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: 'accessrequests', name }));
      if (!isRecord(object) || !isRecord(object.spec)) throw new ConnectionError(`the API server answered the AccessRequest ${name} with something that is not one`);
      return object as unknown as AccessRequest;
    },
    async listAccessRequests(namespace) {
      const list: unknown = await call(() => (namespace === undefined
        ? api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'accessrequests' })
        : api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: 'accessrequests' })));
      return itemsOf<AccessRequest>(list, 'AccessRequests').filter((r) => isRecord(r.spec));
    },
    async listAccessReviews(namespace) {
      const list: unknown = await call(() => api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: 'accessreviews' }));
      return itemsOf<AccessReview>(list, 'AccessReviews').filter((r) => isRecord(r.spec));
    },
    async createAccessReview(submission) {
      const created: unknown = await call(() => api.createNamespacedCustomObject({
        group: GROUP, version: VERSION, namespace: submission.metadata.namespace, plural: 'accessreviews', body: submission,
      }));
      const metadata = isRecord(created) && isRecord(created.metadata) ? created.metadata : {};
      return typeof metadata.name === 'string' ? metadata.name : `${submission.metadata.generateName}?????`;
    },
  };
}
