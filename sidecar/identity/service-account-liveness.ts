// Asks the API server, every few seconds, whether the pod's service account still exists: a
// SelfSubjectReview made with the pod's in-cluster API token (kube-api-access volume), which the
// API server answers 401 once the service account or the pod the token is bound to is deleted.
// The decision is service-account-review.ts; this is the HTTP adapter and the schedule.
import { access, readFile } from 'node:fs/promises';
import { request } from 'node:https';
import type { Logger } from 'pino';
import { judgeReview, nextRevocation, type ReviewOutcome } from './service-account-review.ts';

export interface ServiceAccountLivenessOptions {
  /** https://host:port of the API server. */
  readonly apiServer: string;
  readonly tokenFile: string;
  readonly caFile: string;
  readonly intervalMs: number;
  /** The pod's service account as `system:serviceaccount:<ns>:<name>`, once its projected token was verified. */
  readonly expectedUsername: () => string | undefined;
  readonly logger: Logger;
}

const REVIEW_PATH = '/apis/authentication.k8s.io/v1/selfsubjectreviews';
const REQUEST_TIMEOUT_MS = 5000;
const MAX_BODY_BYTES = 64 * 1024;

export class ServiceAccountLiveness {
  readonly #o: ServiceAccountLivenessOptions;
  #revoked: string | undefined;
  #unknownLogged = false;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  private constructor(options: ServiceAccountLivenessOptions) {
    this.#o = options;
  }

  /** Starts checking, or returns undefined (with one info log) when the pod has no in-cluster API token. */
  static async start(options: ServiceAccountLivenessOptions): Promise<ServiceAccountLiveness | undefined> {
    const missing: string[] = [];
    for (const file of [options.tokenFile, options.caFile]) {
      if (!await access(file).then(() => true, () => false)) missing.push(file);
    }
    if (missing.length > 0) {
      options.logger.info({ missing }, 'no in-cluster API token: a deleted service account is noticed only when its projected token expires');
      return undefined;
    }
    const liveness = new ServiceAccountLiveness(options);
    await liveness.check();
    liveness.#schedule();
    return liveness;
  }

  /** Why the service account is no longer valid, if the API server said so. */
  get revoked(): string | undefined {
    return this.#revoked;
  }

  /** One SelfSubjectReview, and the state it leads to. */
  async check(): Promise<void> {
    const outcome = await this.#review();
    const verdict = judgeReview(outcome, this.#o.expectedUsername());
    const previous = this.#revoked;
    this.#revoked = nextRevocation(previous, verdict);
    if (verdict.kind === 'unknown') {
      // Keep the last state; say so once per outage, not every interval.
      if (!this.#unknownLogged) this.#o.logger.warn({ why: verdict.why }, 'cannot check the pod\'s service account with the API server; keeping the last answer');
      this.#unknownLogged = true;
      return;
    }
    this.#unknownLogged = false;
    if (this.#revoked !== undefined && previous === undefined) this.#o.logger.warn({ why: this.#revoked }, 'workload identity revoked: refusing new connections');
    if (this.#revoked === undefined && previous !== undefined) this.#o.logger.info('the pod\'s service account is valid again');
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => { void this.check().finally(() => { this.#schedule(); }); }, this.#o.intervalMs);
    this.#timer.unref();
  }

  async #review(): Promise<ReviewOutcome> {
    let token: string;
    let ca: Buffer;
    try {
      // Both are re-read every time: the kubelet rotates the token and the CA bundle.
      token = (await readFile(this.#o.tokenFile, 'latin1')).trim();
      ca = await readFile(this.#o.caFile);
    } catch (e: unknown) {
      const code = (e as { code?: unknown }).code;
      return { kind: 'unreachable', error: `cannot read the in-cluster API token or CA: ${typeof code === 'string' ? code : 'read failed'}` };
    }
    const body = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });
    return new Promise((resolve) => {
      const req = request(new URL(REVIEW_PATH, this.#o.apiServer), {
        method: 'POST', ca, timeout: REQUEST_TIMEOUT_MS,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(body) },
      }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => { size += d.length; if (size <= MAX_BODY_BYTES) chunks.push(d); });
        res.on('end', () => {
          let parsed: unknown;
          try { parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { parsed = undefined; }
          resolve({ kind: 'response', status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', (e) => { resolve({ kind: 'unreachable', error: e.message }); });
      });
      req.on('timeout', () => { req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)); });
      req.on('error', (e) => { resolve({ kind: 'unreachable', error: e.message }); });
      req.end(body);
    });
  }
}
