// startKubeApi: the Kubernetes API test double as an HTTPS server on 127.0.0.1 with its own CA.
// This file routes requests (discovery, OpenAPI, OIDC, resource paths) and negotiates the
// response format (JSON, Table, aggregated discovery); the verbs live in handlers.ts.
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { freePort } from '../free-port.ts';
import { writeKubeconfig } from '../kube-tools.ts';
import { makeCertificates, type TestCertificates } from '../tls.ts';
import { AdmissionChain, type AdmissionCall, type ServiceReference } from './admission.ts';
import { createAuthenticator, type StaticTokenUser } from './authn.ts';
import { namespaceDefaults } from './controllers.ts';
import { typesFromCrd } from './crd-registry.ts';
import {
  AGGREGATED_V2, aggregatedDiscovery, apiGroup, apiGroupList, apiResourceList, apiVersions, openApiV3Document, openApiV3Index, SERVER_VERSION,
} from './discovery.ts';
import { badRequest, internalError, KubeApiError, methodNotSupported, pageNotFound } from './errors.ts';
import { ResourceHandlers, type RequestContext } from './handlers.ts';
import { ResourceRegistry, type ResourceType } from './resources.ts';
import { ObjectStore } from './store.ts';
import { decodeProtobuf, PROTOBUF } from './protobuf.ts';
import { toTable } from './table.ts';
import { startGarbageCollector } from './garbage-collector.ts';
import { createTokenIssuer, JWKS_PATH, OIDC_PATH, type TokenIssuer } from './tokens.ts';
import { apiVersionOf, nowTimestamp, type KubeObject, type UserInfo } from './types.ts';
import { serveWatch, type OpenWatch } from './watch-hub.ts';

/** What survives a restart: a new server started with it serves the same data, CA, keys and port. */
export interface KubeApiState {
  readonly store: ObjectStore;
  readonly certificates: TestCertificates;
  readonly issuer: TokenIssuer;
  readonly port: number;
}

export interface KubeApiOptions {
  /** Bearer token → user. Default: one random token for `admin` in group `system:masters`. */
  readonly tokens?: Readonly<Record<string, StaticTokenUser>>;
  /** Reuse the store, CA, signing key and port of a stopped server (restart). */
  readonly state?: KubeApiState;
  /** Listen on this port (without `state`); default a free one. */
  readonly port?: number;
  /** Watch history kept for resumption (default 1000 changes); older resourceVersions answer 410. */
  readonly historySize?: number;
  /** Interval of BOOKMARK events on watches that allow them (default 5000 ms; the API server uses about a minute). */
  readonly bookmarkIntervalMs?: number;
  /** Serve aggregated discovery (default true); false makes kubectl use the legacy per-group documents. */
  readonly aggregatedDiscovery?: boolean;
  /** Where webhooks given as `clientConfig.service` listen. */
  readonly serviceUrl?: (service: ServiceReference) => string | undefined;
  /** Serve the OIDC discovery document and JWKS without authentication (default false, as the default RBAC). */
  readonly publicOidc?: boolean;
  /**
   * Delete pods gracefully, as the API server does pods bound to a node: `kubectl delete pod`
   * leaves them Terminating until a kubelet (the pod runner) has stopped them and deletes them
   * with grace period 0 (default false: pods are deleted at once, as no kubelet runs them).
   */
  readonly gracefulPodDeletion?: boolean;
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly accept: string;
  readonly contentType: string;
  readonly user: string;
  readonly code: number;
}

export interface IssueTokenOptions {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly audiences?: readonly string[];
  readonly expirationSeconds?: number;
  readonly pod?: string;
}

/**
 * What the kubelet would stream for GET pods/<name>/log: the container's output so far, or
 * undefined when no node runs that container (the pod runner registers itself as the source).
 */
export type PodLogSource = (namespace: string, pod: string, container: string) => string | undefined;

export interface KubeApi {
  readonly url: string;
  readonly port: number;
  readonly caCertPath: string;
  readonly caCert: string;
  readonly issuer: string;
  readonly state: KubeApiState;
  readonly store: ObjectStore;
  readonly registry: ResourceRegistry;
  readonly tokens: Readonly<Record<string, StaticTokenUser>>;
  /** Every admission webhook call, in order. */
  readonly admissionCalls: AdmissionCall[];
  /** Every request served, in order (for asserting what clients such as kubectl asked). */
  readonly requests: RecordedRequest[];
  /** Writes a kubeconfig for `username` (default: the first token's user). */
  kubeconfig(username?: string, options?: { namespace?: string }): Promise<string>;
  /** A TokenRequest as the kubelet makes it; the service account (and pod, if named) must exist. */
  issueToken(options: IssueTokenOptions): Promise<string>;
  /** Ends every open watch (clients see the stream close), as an API server does on restart or timeout. */
  dropWatches(): void;
  /** Serves pods/log (`kubectl logs`) from `source` too (each pod runner adds one); returns its removal. */
  addPodLogSource(source: PodLogSource): () => void;
  stop(): Promise<void>;
}

const MAX_BODY = 3 * 1024 * 1024;
/** A response was written. */
const DONE = true;
type Done = typeof DONE;

function initialObjects(store: ObjectStore, caCert: string): void {
  const clock = Date.now;
  for (const name of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) {
    store.put('', 'namespaces', {
      apiVersion: 'v1', kind: 'Namespace',
      metadata: { name, uid: crypto.randomUUID(), creationTimestamp: nowTimestamp(clock), labels: { 'kubernetes.io/metadata.name': name } },
      spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' },
    }, 'ADDED');
    for (const { resource, object } of namespaceDefaults(name, caCert, clock)) store.put('', resource, object, 'ADDED');
  }
  store.put('', 'services', {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: 'kubernetes', namespace: 'default', uid: crypto.randomUUID(), creationTimestamp: nowTimestamp(clock), labels: { component: 'apiserver', provider: 'kubernetes' } },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.1'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', sessionAffinity: 'None',
      internalTrafficPolicy: 'Cluster', ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 6443 }] },
    status: { loadBalancer: {} },
  }, 'ADDED');
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > MAX_BODY) throw new KubeApiError({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Request entity too large: limit is 3145728', reason: 'RequestEntityTooLarge', code: 413 });
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

function parseBody(body: Buffer, contentType: string): unknown {
  if (contentType.startsWith(PROTOBUF)) return body.length === 0 ? undefined : decodeProtobuf(body);
  const text = body.toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return /yaml/.test(contentType) ? parseYaml(text) : JSON.parse(text);
  } catch (e: unknown) {
    throw badRequest(`couldn't get version/kind; json parse error: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export async function startKubeApi(options: KubeApiOptions = {}): Promise<KubeApi> {
  const tokens = options.tokens ?? { [randomBytes(24).toString('base64url')]: { username: 'admin', groups: ['system:masters'] } };
  let state = options.state;
  if (state === undefined) {
    const port = options.port ?? (await freePort());
    const certificates = await makeCertificates(['localhost', '127.0.0.1']);
    const store = new ObjectStore(options.historySize === undefined ? {} : { historySize: options.historySize });
    const issuer = await createTokenIssuer(`https://127.0.0.1:${port}`);
    initialObjects(store, certificates.caCert);
    state = { store, certificates, issuer, port };
  }
  const { store, certificates, issuer, port } = state;
  const url = `https://127.0.0.1:${port}`;
  const registry = new ResourceRegistry();
  for (const crd of store.list('apiextensions.k8s.io', 'customresourcedefinitions')) registry.setCustom(crd.metadata.name ?? '', typesFromCrd(crd));
  const admission = new AdmissionChain(store, options.serviceUrl === undefined ? {} : { serviceUrl: options.serviceUrl });
  const authenticate = createAuthenticator(tokens, issuer, store);
  const stopGarbageCollector = startGarbageCollector(store);
  const handlers = new ResourceHandlers({
    store, registry, admission, issuer, caCert: certificates.caCert, tokens, clock: Date.now,
    ...(options.gracefulPodDeletion === undefined ? {} : { gracefulPodDeletion: options.gracefulPodDeletion }),
  });
  const requests: RecordedRequest[] = [];
  const watches = new Set<OpenWatch>();
  const bookmarkIntervalMs = options.bookmarkIntervalMs ?? 5000;
  const aggregated = options.aggregatedDiscovery ?? true;
  const podLogSources = new Set<PodLogSource>();
  const podLogs: PodLogSource = (namespace, pod, container) => {
    for (const source of podLogSources) {
      const text = source(namespace, pod, container);
      if (text !== undefined) return text;
    }
    return undefined;
  };

  const reply = (res: ServerResponse, code: number, body: unknown, contentType = 'application/json', warnings: readonly string[] = []): Done => {
    const headers: Record<string, string | string[]> = { 'content-type': contentType, 'cache-control': 'no-cache, private' };
    if (warnings.length > 0) headers.warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
    res.writeHead(code, headers);
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
    return DONE;
  };

  const route = async (req: IncomingMessage, res: ServerResponse, record: { user: string; code: number }): Promise<Done> => {
    const parsed = new URL(req.url ?? '/', url);
    const path = parsed.pathname.replace(/\/+$/, '') || '/';
    const query = parsed.searchParams;
    const method = req.method ?? 'GET';
    const accept = req.headers.accept ?? '';
    const wantsAggregated = aggregated && /as=APIGroupDiscoveryList/.test(accept) && /v=v2(;|,|$)/.test(accept);

    // Public endpoints (system:public-info-viewer).
    if (path === '/version') return reply(res, 200, SERVER_VERSION);
    if (path === '/healthz' || path === '/livez' || path === '/readyz') return reply(res, 200, 'ok', 'text/plain; charset=utf-8');
    const isOidc = path === OIDC_PATH || path === JWKS_PATH;
    let user: UserInfo | undefined;
    if (!(isOidc && options.publicOidc === true)) {
      user = await authenticate(req.headers.authorization);
      record.user = user.username;
    }
    if (path === OIDC_PATH) return reply(res, 200, issuer.openidConfiguration());
    if (path === JWKS_PATH) return reply(res, 200, issuer.jwks(), 'application/jwk-set+json');
    if (user === undefined) throw pageNotFound();

    if (path === '/api') {
      if (wantsAggregated) return reply(res, 200, aggregatedDiscovery(registry, true), AGGREGATED_V2);
      return reply(res, 200, apiVersions(`127.0.0.1:${port}`));
    }
    if (path === '/apis') {
      if (wantsAggregated) return reply(res, 200, aggregatedDiscovery(registry, false), AGGREGATED_V2);
      return reply(res, 200, apiGroupList(registry));
    }
    if (path === '/openapi/v3') return reply(res, 200, openApiV3Index(registry));
    let m = /^\/openapi\/v3\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(path);
    if (m !== null) {
      const doc = openApiV3Document(registry, m[2] ?? '', m[1] ?? m[3] ?? '');
      if (doc === undefined) throw pageNotFound();
      return reply(res, 200, doc);
    }

    m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/(.*))?$/.exec(path);
    if (m === null) {
      const groupOnly = /^\/apis\/([^/]+)$/.exec(path);
      const group = groupOnly === null ? undefined : apiGroup(registry, groupOnly[1] ?? '');
      if (group !== undefined) return reply(res, 200, group);
      throw pageNotFound();
    }
    const group = m[2] ?? '';
    const version = m[1] ?? m[3] ?? '';
    const rest = (m[4] ?? '').split('/').filter((s) => s !== '').map(decodeURIComponent);
    if (rest.length === 0) {
      const list = apiResourceList(registry, group, version);
      if (list === undefined) throw pageNotFound();
      return reply(res, 200, list);
    }
    let namespace: string | undefined;
    let parts = rest;
    if (rest[0] === 'namespaces' && rest.length >= 3 && registry.find(group, version, rest[2] ?? '')?.namespaced === true) {
      namespace = rest[1];
      parts = rest.slice(2);
    }
    const [resource = '', name, subresource = '', ...extra] = parts;
    const type = registry.find(group, version, resource);
    if (type === undefined || extra.length > 0) throw pageNotFound();
    if (!type.namespaced && namespace !== undefined) throw pageNotFound();
    if (subresource !== '' && !type.subresources.includes(subresource)) throw pageNotFound();

    const ctx: RequestContext = { user, query, warnings: [] };
    const contentType = req.headers['content-type'] ?? 'application/json';
    const raw = method === 'GET' ? Buffer.alloc(0) : await readBody(req);
    const asTable = /as=Table/.test(accept) && /g=meta\.k8s\.io/.test(accept);
    const tableOptions = { includeObject: query.get('includeObject') ?? 'PartialObjectMetadata' };
    const send = (code: number, body: unknown): Done => reply(res, code, body, 'application/json', ctx.warnings);
    const ns = namespace ?? '';
    const needsNamespace = (): void => {
      if (type.namespaced && namespace === undefined) throw methodNotSupported(type.group, type.resource, method);
    };

    if (name === undefined) {
      switch (method) {
        case 'GET': {
          if (type.virtual) throw methodNotSupported(type.group, type.resource, 'list');
          if (query.get('watch') === 'true' || query.get('watch') === '1') {
            const matches = handlers.selector(type, query);
            const render = (o: KubeObject, first: boolean): unknown => (asTable ? toTable(type, [o], o.metadata.resourceVersion ?? '', { ...tableOptions, noHeaders: !first }) : o);
            const w = serveWatch(store, { type, namespace, query, matches, render, bookmarkIntervalMs }, res, () => { watches.delete(w); });
            watches.add(w);
            return DONE;
          }
          const { items, resourceVersion } = handlers.list(type, namespace, query);
          if (asTable) return send(200, toTable(type, items, resourceVersion, tableOptions));
          return send(200, { kind: type.listKind, apiVersion: apiVersionOf(type.group, type.version), metadata: { resourceVersion }, items });
        }
        case 'POST': {
          if (!type.virtual) needsNamespace();
          const r = await handlers.create(type, ns, parseBody(raw, contentType), ctx);
          return send(r.code, r.body);
        }
        case 'DELETE': {
          const r = await handlers.deleteCollection(type, namespace, parseBody(raw, contentType), ctx);
          return send(r.code, r.body);
        }
        default: throw methodNotSupported(type.group, type.resource, method);
      }
    }
    needsNamespace();
    if (subresource === 'token') {
      if (method !== 'POST') throw methodNotSupported(type.group, `${type.resource}/token`, method);
      const r = await handlers.tokenRequest(ns, name, parseBody(raw, contentType));
      return send(r.code, r.body);
    }
    if (subresource === 'log') {
      if (method !== 'GET') throw methodNotSupported(type.group, `${type.resource}/log`, method);
      return reply(res, 200, podLog(handlers.get(type, ns, name), query, podLogs), 'text/plain');
    }
    switch (method) {
      case 'GET': {
        const o = handlers.get(type, ns, name);
        if (asTable) return send(200, toTable(type, [o], o.metadata.resourceVersion ?? '', tableOptions));
        return send(200, o);
      }
      case 'PUT': {
        const r = await handlers.update(type, ns, name, subresource, parseBody(raw, contentType), ctx);
        return send(r.code, r.body);
      }
      case 'PATCH': {
        const r = await handlers.patch(type, ns, name, subresource, contentType, raw.toString('utf8'), ctx);
        return send(r.code, r.body);
      }
      case 'DELETE': {
        if (subresource !== '') throw methodNotSupported(type.group, `${type.resource}/${subresource}`, method);
        const r = await handlers.delete(type, ns, name, parseBody(raw, contentType), ctx);
        return send(r.code, r.body);
      }
      default: throw methodNotSupported(type.group, type.resource, method);
    }
  };

  const server: Server = createServer({ cert: certificates.cert, key: certificates.key }, (req, res) => {
    const record = { user: '', code: 0 };
    res.on('finish', () => {
      const parsed = new URL(req.url ?? '/', url);
      requests.push({
        method: req.method ?? '', path: parsed.pathname, query: parsed.search, accept: req.headers.accept ?? '',
        contentType: req.headers['content-type'] ?? '', user: record.user, code: res.statusCode,
      });
    });
    route(req, res, record).catch((e: unknown) => {
      const error = e instanceof KubeApiError ? e : internalError(e instanceof Error ? e.stack ?? e.message : String(e));
      if (res.headersSent) {
        res.end();
        return;
      }
      reply(res, error.status.code, error.status);
    });
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => { resolve(); });
  });

  const firstUser = Object.values(tokens)[0]?.username;
  const fixedState = state;
  return {
    url, port, caCertPath: certificates.caCertPath, caCert: certificates.caCert, issuer: issuer.issuer,
    state: fixedState, store, registry, tokens, admissionCalls: admission.calls, requests,
    async kubeconfig(username = firstUser, kubeconfigOptions = {}): Promise<string> {
      const token = Object.entries(tokens).find(([, u]) => u.username === username)?.[0];
      if (token === undefined) throw new Error(`no token for user ${String(username)}`);
      return writeKubeconfig({ server: url, caCertPath: certificates.caCertPath, token, user: username ?? 'user', ...kubeconfigOptions });
    },
    async issueToken(o: IssueTokenOptions): Promise<string> {
      const r = await handlers.tokenRequest(o.namespace, o.serviceAccount, {
        spec: {
          ...(o.audiences === undefined ? {} : { audiences: o.audiences }),
          ...(o.expirationSeconds === undefined ? {} : { expirationSeconds: o.expirationSeconds }),
          ...(o.pod === undefined ? {} : { boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: o.pod } }),
        },
      });
      const body = r.body as { status: { token: string } };
      return body.status.token;
    },
    dropWatches(): void {
      for (const w of [...watches]) w.close();
    },
    addPodLogSource(source): () => void {
      podLogSources.add(source);
      return () => { podLogSources.delete(source); };
    },
    async stop(): Promise<void> {
      stopGarbageCollector();
      for (const w of [...watches]) w.close();
      await new Promise<void>((resolve) => {
        server.close(() => { resolve(); });
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      });
    },
  };
}

/** GET pods/<name>/log: the container named by ?container= (or the only one), ?tailLines= and ?limitBytes= applied. */
function podLog(pod: KubeObject, query: URLSearchParams, source: PodLogSource): string {
  const name = pod.metadata.name ?? '';
  const spec = pod.spec as { containers?: Array<{ name: string }>; initContainers?: Array<{ name: string }> } | undefined;
  const containers = (spec?.containers ?? []).map((c) => c.name);
  const inits = (spec?.initContainers ?? []).map((c) => c.name);
  let container = query.get('container') ?? '';
  if (container === '') {
    if (containers.length !== 1) {
      throw badRequest(`a container name must be specified for pod ${name}, choose one of: [${containers.join(' ')}]${inits.length > 0 ? ` or one of the init containers: [${inits.join(' ')}]` : ''}`);
    }
    container = containers[0] ?? '';
  }
  if (!containers.includes(container) && !inits.includes(container)) throw badRequest(`container ${container} is not valid for pod ${name}`);
  const text = source(pod.metadata.namespace ?? '', name, container);
  if (text === undefined) throw badRequest(`container "${container}" in pod "${name}" is waiting to start: no node runs it (start a pod runner)`);
  let out = text;
  const tail = query.get('tailLines');
  if (tail !== null && /^\d+$/.test(tail)) {
    const lines = out.split('\n');
    const trailing = lines.at(-1) === '' ? lines.pop() : undefined;
    out = lines.slice(Math.max(0, lines.length - Number(tail))).join('\n') + (trailing === undefined ? '' : '\n');
  }
  const limit = query.get('limitBytes');
  if (limit !== null && /^\d+$/.test(limit)) out = Buffer.from(out).subarray(0, Number(limit)).toString();
  return out;
}

export type { ResourceType };
