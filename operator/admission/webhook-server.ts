// The sidecar injector's HTTPS transport (reference/kubernetes.md §3): `POST /mutate/pods` (the path
// of charts/custos/templates/mutatingwebhookconfiguration.yaml) decodes the AdmissionReview, looks
// up the namespace and its AccessPolicies, asks the pure builder (operator/webhook/build-patch.ts)
// and encodes its answer. Everything else here is about refusing what is not a well-formed review,
// quickly and with the right status code, and about presenting the current certificate.
//
// Status codes and what the API server does with them: any non-2xx answer is a failed webhook
// call, so the webhook's failurePolicy (Fail) applies and the pod is not admitted. That is what we
// want for a malformed request (400), an oversize one (413), and for "cannot decide" (503 when the
// namespace or policies cannot be read, 504 when deciding takes too long): never admit silently.
// The error body is a metav1.Status, whose message the API server's REST client surfaces.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { isCustosError } from '../../lib/errors.ts';
import type { CertificateSource, ServingCertificate } from '../certs/certificate-source.ts';
import type { InjectionResult } from '../webhook/build-patch.ts';
import type { InjectionSettings } from '../webhook/injection-settings.ts';
import { decidePodAdmission, ERR_ADMISSION_CONTEXT, type AdmissionContext } from './admission-context.ts';
import { admissionMetrics, type AdmissionOutcome } from './admission-metrics.ts';
import { decodeAdmissionReview, encodeAdmissionResponse, type AdmissionOperation, type PodAdmissionRequest } from './admission-review.ts';

/** clientConfig.service.path in the chart's MutatingWebhookConfiguration. */
export const MUTATE_PODS_PATH = '/mutate/pods';
export const HEALTH_PATH = '/healthz';

/**
 * An UPDATE review carries the object twice (object and oldObject), and etcd stores objects up to
 * 1.5 MiB, so 3 MiB admits every pod the API server can hold. (Pepr uses 2 MB for CREATE only.)
 */
export const DEFAULT_MAX_BODY_BYTES = 3 * 1024 * 1024;
/** The chart's webhook timeoutSeconds is 10: answer (even with an error) well before the API server gives up. */
export const DEFAULT_DECISION_TIMEOUT_MS = 8000;

export interface WebhookServerOptions {
  /** Default 0.0.0.0 (the API server reaches the pod IP). */
  readonly host?: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  readonly certificates: CertificateSource;
  readonly context: AdmissionContext;
  readonly settings: InjectionSettings;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly path?: string;
  /** Operations accepted; anything else is a 400 (the chart registers CREATE only). */
  readonly operations?: readonly AdmissionOperation[];
  readonly maxBodyBytes?: number;
  readonly decisionTimeoutMs?: number;
  /**
   * Further admission endpoints by path (the AccessReview webhook): each gets the parsed
   * AdmissionReview and answers the AdmissionReview to send back. A throw is a 503, so the
   * webhook's failurePolicy applies.
   */
  readonly routes?: Readonly<Record<string, AdmissionRoute>>;
}

/** `outcome` labels the admission duration metric. */
export type AdmissionRoute = (body: unknown) => Promise<{ readonly response: unknown; readonly outcome: AdmissionOutcome }>;

export interface WebhookServer {
  readonly server: Server;
  readonly port: number;
  /** https://<host>:<port> as listened on (127.0.0.1 for 0.0.0.0). */
  readonly url: string;
  /** Stops accepting connections; in-flight reviews get `graceMs` (default 5 s) to finish. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Refused before (or while) reading the body: close the connection rather than have node:http
 * read and discard whatever the client still sends.
 */
const UNREAD_BODY: Readonly<Record<string, string>> = { connection: 'close' };

class HttpError extends Error {
  readonly statusCode: number;
  readonly reason: string;
  readonly outcome: AdmissionOutcome;

  constructor(statusCode: number, reason: string, message: string, outcome: AdmissionOutcome) {
    super(message);
    this.statusCode = statusCode;
    this.reason = reason;
    this.outcome = outcome;
  }
}

function statusBody(code: number, reason: string, message: string): string {
  // `message` first: clients that show only the start of the body still see it.
  return JSON.stringify({ message, kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason, code });
}

function sendError(res: ServerResponse, e: HttpError, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(e.statusCode, { 'content-type': 'application/json', ...headers });
  res.end(statusBody(e.statusCode, e.reason, e.message));
}

/**
 * Reads the body up to `limit` bytes; a larger one is refused as soon as it is seen to be larger.
 * The rest is left unread (the connection is closed after the 413), never buffered.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = (size: string): HttpError => new HttpError(413, 'RequestEntityTooLarge', `request body of ${size} exceeds the limit of ${limit} bytes`, 'invalid');
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(`${declared} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    req.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > limit) {
        settled = true;
        req.pause();
        reject(tooLarge(`more than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks));
    });
    req.once('error', (e) => {
      if (settled) return;
      settled = true;
      reject(new HttpError(400, 'BadRequest', `reading the request failed: ${e.message}`, 'invalid'));
    });
  });
}

/** The API server appends `?timeout=10s` (its own deadline for this call). */
function callerDeadlineMs(url: URL): number | undefined {
  const m = /^([0-9]+)s$/.exec(url.searchParams.get('timeout') ?? '');
  return m === null ? undefined : Number(m[1]) * 1000;
}

function podName(request: PodAdmissionRequest): string {
  const meta = request.pod.metadata;
  return request.name !== '' ? request.name : meta?.name ?? (meta?.generateName !== undefined ? `${meta.generateName}*` : '');
}

export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const path = options.path ?? MUTATE_PODS_PATH;
  const operations = options.operations ?? ['CREATE'];
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const decisionTimeoutMs = options.decisionTimeoutMs ?? DEFAULT_DECISION_TIMEOUT_MS;
  const routes = options.routes ?? {};
  const metrics = admissionMetrics(options.registry);
  const log = options.logger;

  /** `work` within `deadlineMs`, else 504: the API server gives up at its own timeout, with no message. */
  const withDeadline = async <T>(work: Promise<T>, deadlineMs: number, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        reject(new HttpError(504, 'Timeout', `custos webhook: no decision within ${deadlineMs} ms (${what} took too long)`, 'error'));
      }, deadlineMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (e: unknown) {
      work.catch(() => undefined); // lost the race: its late failure is of no interest
      throw e;
    } finally {
      clearTimeout(timer);
    }
  };

  const decide = async (request: PodAdmissionRequest, deadlineMs: number): Promise<InjectionResult> => {
    try {
      return await withDeadline(decidePodAdmission(request, options.context, options.settings), deadlineMs, 'reading the namespace and AccessPolicies');
    } catch (e: unknown) {
      if (e instanceof HttpError) throw e;
      if (isCustosError(e, ERR_ADMISSION_CONTEXT)) throw new HttpError(503, 'ServiceUnavailable', `custos webhook cannot decide: ${e.message}`, 'error');
      throw new HttpError(500, 'InternalError', `custos webhook failed: ${e instanceof Error ? e.message : String(e)}`, 'error');
    }
  };

  /** The decision budget for a review: ours, or less when the API server's own deadline is nearer. */
  const deadlineFor = (url: URL): number => {
    const callerDeadline = callerDeadlineMs(url);
    return callerDeadline === undefined ? decisionTimeoutMs : Math.max(100, Math.min(decisionTimeoutMs, callerDeadline - 1000));
  };

  const readJson = async (req: IncomingMessage, at: string): Promise<unknown> => {
    if (req.method !== 'POST') {
      throw new HttpError(405, 'MethodNotAllowed', `${String(req.method)} is not allowed on ${at}; the API server sends POST`, 'invalid');
    }
    const mediaType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (mediaType !== 'application/json') {
      throw new HttpError(415, 'UnsupportedMediaType', `content-type ${JSON.stringify(req.headers['content-type'] ?? '')} is not supported; send application/json`, 'invalid');
    }
    const body = await readBody(req, maxBodyBytes);
    try {
      return JSON.parse(body.toString('utf8'));
    } catch (e: unknown) {
      throw new HttpError(400, 'BadRequest', `the body is not JSON: ${e instanceof Error ? e.message : String(e)}`, 'invalid');
    }
  };

  const routed = async (req: IncomingMessage, res: ServerResponse, url: URL, route: AdmissionRoute): Promise<AdmissionOutcome> => {
    const at = url.pathname;
    const parsed = await readJson(req, at);
    let answer: string;
    let outcome: AdmissionOutcome;
    try {
      const result = await withDeadline(route(parsed), deadlineFor(url), 'deciding');
      answer = JSON.stringify(result.response);
      outcome = result.outcome;
    } catch (e: unknown) {
      log.error({ path: at, err: e instanceof Error ? e.message : String(e) }, 'admission failed; the API server applies the failurePolicy');
      if (e instanceof HttpError) throw e;
      throw new HttpError(503, 'ServiceUnavailable', `custos webhook cannot decide: ${e instanceof Error ? e.message : String(e)}`, 'error');
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
    res.end(answer);
    return outcome;
  };

  const review = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<AdmissionOutcome> => {
    const parsed = await readJson(req, path);
    const decoded = decodeAdmissionReview(parsed, { operations });
    if (!decoded.ok) {
      log.warn({ uid: decoded.uid, problem: decoded.message }, 'malformed AdmissionReview refused');
      throw new HttpError(400, 'BadRequest', `malformed AdmissionReview: ${decoded.message}`, 'invalid');
    }
    const request = decoded.request;
    // Never the pod itself: its env and annotations may hold values that are not ours to log.
    const reqLog = log.child({ uid: request.uid, namespace: request.namespace, pod: podName(request), operation: request.operation, user: request.userInfo.username });
    let result: InjectionResult;
    try {
      result = await decide(request, deadlineFor(url));
    } catch (e: unknown) {
      if (e instanceof HttpError) reqLog.error({ status: e.statusCode, err: e.message }, 'admission failed; the API server applies the failurePolicy');
      throw e;
    }
    metrics.injections.inc({ result: result.kind, reason: result.reason });
    if (result.kind === 'reject') reqLog.info({ result: result.kind, reason: result.reason, message: result.message }, 'pod refused');
    else reqLog.info({ result: result.kind, reason: result.reason, ...(result.kind === 'patch' ? { policy: result.policy } : {}) }, result.kind === 'patch' ? 'sidecar injected' : 'pod admitted without injection');
    const answer = JSON.stringify(encodeAdmissionResponse(request.uid, result));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
    res.end(answer);
    return result.kind;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const started = process.hrtime.bigint();
    const url = new URL(req.url ?? '/', 'https://webhook.invalid');
    if (url.pathname === HEALTH_PATH) {
      if (req.method === 'GET' || req.method === 'HEAD') res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      else res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
    if (url.pathname !== path && route === undefined) {
      sendError(res, new HttpError(404, 'NotFound', `no handler for ${url.pathname}; the webhook serves POST ${[path, ...Object.keys(routes)].join(', ')}`, 'invalid'), UNREAD_BODY);
      return;
    }
    const observe = (outcome: AdmissionOutcome): void => {
      metrics.duration.observe({ result: outcome }, Number(process.hrtime.bigint() - started) / 1e9);
    };
    (route === undefined ? review(req, res, url) : routed(req, res, url, route)).then(observe, (e: unknown) => {
      const error = e instanceof HttpError ? e : new HttpError(500, 'InternalError', `custos webhook failed: ${e instanceof Error ? e.message : String(e)}`, 'error');
      if (!(e instanceof HttpError)) log.error({ err: error.message }, 'admission handler failed');
      const headers: Record<string, string> = [405, 413, 415].includes(error.statusCode) ? { ...UNREAD_BODY } : {};
      if (error.statusCode === 405) headers.allow = 'POST';
      sendError(res, error, headers);
      observe(error.outcome);
    });
  };

  const tlsOptions = (c: ServingCertificate): { cert: string; key: string; minVersion: 'TLSv1.3' } => ({ cert: c.certPem, key: c.keyPem, minVersion: 'TLSv1.3' });
  // TLS 1.3 only, as Linkerd's webhook: every supported API server (Go ≥ 1.13) speaks it.
  // node:http checks requestTimeout only every connectionsCheckingInterval (default 30 s).
  const server = createServer({ ...tlsOptions(options.certificates.current()), connectionsCheckingInterval: 1000 }, handle);
  // Go's HTTP client keeps idle connections for 90 s and does not retry a POST on a connection the
  // server closed meanwhile: outlive it, so the client always closes first.
  server.keepAliveTimeout = 120_000;
  // The whole request must arrive within the decision budget: a client that trickles its headers
  // or body (slowloris) gets 408 instead of holding a connection.
  server.requestTimeout = decisionTimeoutMs;
  server.headersTimeout = Math.min(decisionTimeoutMs, 5000);
  const unsubscribe = options.certificates.onChange((c) => {
    try {
      server.setSecureContext(tlsOptions(c));
      log.info({ serial: c.serialNumber, notAfter: c.notAfter.toISOString() }, 'serving certificate swapped');
    } catch (e: unknown) {
      log.error({ serial: c.serialNumber, err: e instanceof Error ? e.message : String(e) }, 'new serving certificate refused by TLS; keeping the previous one');
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address;
  log.info({ port: address.port, path }, 'webhook listening');
  return {
    server,
    port: address.port,
    url: `https://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${address.port}`,
    close: (graceMs = 5000) => new Promise<void>((resolve) => {
      unsubscribe();
      const force = setTimeout(() => { server.closeAllConnections(); }, graceMs);
      server.close(() => {
        clearTimeout(force);
        resolve();
      });
      server.closeIdleConnections();
    }),
  };
}
