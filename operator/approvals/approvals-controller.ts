// The Kubernetes side of approvals (docs/adr/0011-kubernetes-approvals.md), run by the leader:
//   1. materialise: every request in the Redis inbox becomes an AccessRequest reviewers can list;
//   2. relay: every admitted AccessReview is appended, once, to its request's review list in Redis,
//      as a record whose token the operator signs (relay-record.ts), where the sidecar counts it;
//   3. decide: AccessRequest and AccessReview status are written from the same tally the sidecar
//      runs, in relay order, and a request past its expiry is shown Expired.
// The sidecar never depends on this loop for safety: it decides from Redis and verifies every
// token itself; with the operator down, requests simply expire.
import { ApiException, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import { decodeJwt } from 'jose';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { AccessRequest } from '../../crds/generated/access-request.ts';
import type { AccessReview } from '../../crds/generated/access-review.ts';
import { claimKey, PENDING_INBOX_KEY, relayedKey, requestKey, reviewChannel, reviewsKey } from '../../sidecar/approvals/approval-keys.ts';
import { finalPhase, parseRequest, parseReviewRecord } from '../../sidecar/approvals/approval-records.ts';
import { ResilientInformer } from '../kube/informer.ts';
import { ACCESS_REQUEST_API, ACCESS_REVIEW_API, accessRequestManifest } from './access-request-manifest.ts';
import { stampProblem } from './admission-stamp.ts';
import { decideRequest, sameRequestStatus, type RequestClaim } from './request-decision.ts';
import { relayRecord, type RelaySigner } from './relay-record.ts';

// Appends a relayed review once per AccessReview UID, only while the request exists, with the
// request's lifetime. KEYS relayed set, review list, request; ARGV uid, record, channel.
// Returns 1 appended, 0 already relayed, -1 no such request (expired from Redis, or never filed).
const RELAY_SCRIPT = `
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
local ttl = redis.call('PTTL', KEYS[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('PUBLISH', ARGV[3], 'relayed')
return 1
`;

const FINAL_PHASES: ReadonlySet<string> = new Set(['Denied', 'Expired', 'Executed', 'Revoked']);
const FIELD_MANAGER = 'custos-operator';

export interface ApprovalsControllerOptions {
  readonly kubeConfig: KubeConfig;
  readonly redisUrl: string;
  readonly signer: RelaySigner;
  readonly logger: Logger;
  readonly registry: Registry;
  /** How often the Redis inbox and expiries are checked between watch events (default 1000 ms). */
  readonly intervalMs?: number;
  readonly clock?: () => number;
}

export class ApprovalsController {
  // Typed as plain objects: CustomObjectsApi and the watch hand over wire JSON (string timestamps),
  // which is what the generated CRD types describe; client-node's KubernetesObject says Date.
  readonly #requests: ResilientInformer<KubernetesObject>;
  readonly #reviews: ResilientInformer<KubernetesObject>;
  readonly #custom: CustomObjectsApi;
  readonly #redis: Redis;
  readonly #signer: RelaySigner;
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #clock: () => number;
  readonly #relays: Counter;
  /** Request ids known to exist as AccessRequests (or not materialisable): not read again. */
  readonly #materialised = new Set<string>();
  /** AccessReview UIDs relayed (or found unrelayable) by this process. */
  readonly #relayed = new Set<string>();
  readonly #warned = new Set<string>();
  #wake: (() => void) | undefined;
  #dirty = false;

  constructor(options: ApprovalsControllerOptions) {
    const custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.#custom = custom;
    this.#redis = new Redis(options.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000, commandTimeout: 2000 });
    // Surfaced through failing passes (logged, retried on the next tick); ioredis reconnects itself.
    this.#redis.on('error', () => undefined);
    this.#signer = options.signer;
    this.#log = options.logger.child({ component: 'approvals' });
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#clock = options.clock ?? Date.now;
    this.#relays = new Counter({
      name: 'custos_operator_review_relays_total',
      help: 'AccessReviews relayed to the sidecars through Redis, by result.',
      labelNames: ['result'],
      registers: [options.registry],
    });
    const common = { kubeConfig: options.kubeConfig, logger: options.logger, registry: options.registry };
    const informerOf = (target: typeof ACCESS_REQUEST_API | typeof ACCESS_REVIEW_API): ResilientInformer<KubernetesObject> => new ResilientInformer<KubernetesObject>({
      ...common,
      name: target.plural,
      path: `/apis/${target.group}/${target.version}/${target.plural}`,
      list: async () => (await custom.listClusterCustomObject(api(target))) as KubernetesListObject<KubernetesObject>,
    });
    this.#requests = informerOf(ACCESS_REQUEST_API);
    this.#reviews = informerOf(ACCESS_REVIEW_API);
    for (const informer of [this.#requests, this.#reviews] as const) {
      for (const event of ['add', 'update', 'delete'] as const) informer.on(event, () => { this.#poke(); });
    }
  }

  /** Starts the informers (every replica, so a new leader has warm caches). */
  async start(): Promise<void> {
    await Promise.all([this.#requests.start(), this.#reviews.start()]);
  }

  get synced(): boolean {
    return this.#requests.hasSynced && this.#reviews.hasSynced;
  }

  #accessRequests(): AccessRequest[] {
    return this.#requests.list() as unknown as AccessRequest[];
  }

  #accessReviews(): AccessReview[] {
    return this.#reviews.list() as unknown as AccessReview[];
  }

  /** Runs the loop while this replica leads (until `signal` aborts). */
  async lead(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.#dirty = false;
      await this.sync(); // a failing step logs itself; the next pass retries it
      if (this.#pokedDuringPass()) continue;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          this.#wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, this.#intervalMs);
        signal.addEventListener('abort', done, { once: true });
        this.#wake = done;
      });
    }
  }

  async stop(): Promise<void> {
    await Promise.all([this.#requests.stop(), this.#reviews.stop()]);
    this.#redis.disconnect();
  }

  /** One pass: materialise, relay, decide; a failing step never keeps the others from running. */
  async sync(): Promise<void> {
    const steps: Array<[string, () => Promise<void>]> = [['materialise', () => this.#materialise()], ['relay', () => this.#relay()], ['decide', () => this.#decide()]];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (e: unknown) {
        this.#log.warn({ step: name, err: e instanceof Error ? e.message : String(e) }, 'approvals step failed; retrying');
      }
    }
  }

  #pokedDuringPass(): boolean {
    return this.#dirty;
  }

  #poke(): void {
    this.#dirty = true;
    this.#wake?.();
  }

  /** Logs `message` once per `key` (a stuck object must not flood the log every second). */
  #warnOnce(key: string, fields: object, message: string): void {
    if (this.#warned.has(key)) return;
    if (this.#warned.size >= 10_000) this.#warned.clear();
    this.#warned.add(key);
    this.#log.warn(fields, message);
  }

  async #materialise(): Promise<void> {
    const now = this.#clock();
    const ids = await this.#redis.zrangebyscore(PENDING_INBOX_KEY, now, '+inf');
    for (const id of ids) {
      if (this.#materialised.has(id)) continue;
      let manifest: AccessRequest | undefined;
      try {
        const text = await this.#redis.get(requestKey(id));
        if (text === null) continue;
        manifest = accessRequestManifest(parseRequest(text, id));
      } catch (e: unknown) {
        // A record the sidecar itself would refuse: nobody should be asked to review it.
        this.#log.warn({ approvalRequest: id.slice(0, 40), err: e instanceof Error ? e.message : String(e) }, 'approval request record not materialised');
        this.#materialised.add(id);
        continue;
      }
      if (manifest === undefined) {
        this.#materialised.add(id);
        continue;
      }
      const namespace = manifest.metadata.namespace ?? '';
      if (this.#requests.get(namespace, id) === undefined) {
        try {
          await this.#custom.createNamespacedCustomObject({ ...api(ACCESS_REQUEST_API), namespace, body: manifest, fieldManager: FIELD_MANAGER });
          this.#log.info({ approvalRequest: id, namespace }, 'AccessRequest created');
        } catch (e: unknown) {
          const code = codeOf(e);
          const err = e instanceof Error ? e.message.slice(0, 500) : String(e);
          if (code === undefined || code >= 500 || code === 429) {
            // Transient (another webhook down, API server busy): this request is retried next
            // pass, and the others go on.
            this.#warnOnce(`create:${id}`, { approvalRequest: id, namespace, status: code, err }, 'AccessRequest not created yet; retrying');
            continue;
          }
          // 409: already materialised. Any other refusal (422, 403, 404 namespace) is about this
          // request only: logged once, never retried.
          if (code !== 409) this.#log.warn({ approvalRequest: id, namespace, status: code, err }, 'AccessRequest not created');
        }
      }
      this.#materialised.add(id);
    }
  }

  async #relay(): Promise<void> {
    const now = this.#clock();
    for (const review of this.#accessReviews()) {
      const uid = review.metadata.uid;
      if (uid === undefined || this.#relayed.has(uid) || review.status?.counted !== undefined) continue;
      const id = review.spec.requestName;
      const namespace = review.metadata.namespace ?? '';
      // Only into the request of this namespace: a review elsewhere naming its id is not for it.
      const request = this.#requests.get(namespace, id) as AccessRequest | undefined;
      if (request === undefined) continue;
      const problem = await stampProblem(review, this.#signer);
      if (problem !== undefined) {
        this.#relays.inc({ result: 'unstamped' });
        this.#log.warn({ review: review.metadata.name, namespace, approvalRequest: id, problem }, 'review not relayed: it did not pass the review webhook as stored');
        this.#relayed.add(uid);
        continue;
      }
      let result: unknown;
      try {
        const record = await relayRecord(review, this.#signer);
        result = await this.#redis.eval(RELAY_SCRIPT, 3, relayedKey(id), reviewsKey(id), requestKey(id), uid, record, reviewChannel(id));
      } catch (e: unknown) {
        if (!(e instanceof RangeError)) throw e; // Redis: the whole step retries next pass
        result = -1; // not a request id: nothing to relay to
      }
      this.#relays.inc({ result: result === 1 ? 'relayed' : result === 0 ? 'already-relayed' : 'no-request' });
      if (result === -1) {
        // The request is not in Redis: retried while the AccessRequest is open (Redis may be back
        // from a restart), given up once it has expired.
        this.#warnOnce(`relay:${uid}`, { review: review.metadata.name, approvalRequest: id }, 'review not relayed yet: the request is not in Redis');
        if (Date.parse(request.spec.expiresAt) > now) continue;
      }
      this.#relayed.add(uid);
    }
  }

  async #decide(): Promise<void> {
    const now = this.#clock();
    const byRequest = new Map<string, AccessReview[]>();
    for (const review of this.#accessReviews()) {
      const key = `${review.metadata.namespace ?? ''}/${review.spec.requestName}`;
      const list = byRequest.get(key) ?? [];
      list.push(review);
      byRequest.set(key, list);
    }
    for (const request of this.#accessRequests()) {
      const { namespace = '', name } = request.metadata;
      const reviews = byRequest.get(`${namespace}/${name}`) ?? [];
      const phase = request.status?.phase;
      if (phase !== undefined && FINAL_PHASES.has(phase) && reviews.every((r) => r.status?.counted !== undefined || this.#relayed.has(r.metadata.uid ?? ''))) continue;
      try {
        await this.#decideOne(request, reviews, now);
      } catch (e: unknown) {
        if (!(e instanceof ApiException)) throw e; // Redis: the step retries next pass
        this.#warnOnce(`status:${namespace}/${name}`, { approvalRequest: name, namespace, status: e.code }, 'AccessRequest status not written');
      }
    }
  }

  async #decideOne(request: AccessRequest, reviews: readonly AccessReview[], now: number): Promise<void> {
    const { namespace = '', name } = request.metadata;
    // Only relayed reviews, in the order the sidecar reads them: a review still waiting for its
    // relay is not counted (nor shown as counted) before the sidecar can count it.
    const relayed = await this.#inRelayOrder(name, reviews);
    const claim = await this.#claim(name);
    const decision = decideRequest(request, relayed, new Date(now), claim);
    if (!sameRequestStatus(request.status, decision.status)) {
      // Merge patch: a field the decision no longer has is removed with null.
      await this.#patchStatus(ACCESS_REQUEST_API, namespace, name, { ...decision.status, decidedAt: decision.status.decidedAt ?? null });
      this.#log.info({ approvalRequest: name, namespace, phase: decision.status.phase }, 'AccessRequest status updated');
    }
    for (const review of relayed) {
      const verdict = decision.reviews.get(review.metadata.name);
      if (verdict === undefined || (review.status?.counted === verdict.counted && review.status?.refusal === verdict.refusal)) continue;
      await this.#patchStatus(ACCESS_REVIEW_API, namespace, review.metadata.name, { counted: verdict.counted, refusal: verdict.refusal ?? null });
    }
  }

  /** The reviews whose records are in the request's Redis list, in that order. */
  async #inRelayOrder(id: string, reviews: readonly AccessReview[]): Promise<AccessReview[]> {
    const position = new Map<string, number>();
    let records: string[] = [];
    try {
      records = await this.#redis.lrange(reviewsKey(id), 0, -1);
    } catch (e: unknown) {
      if (!(e instanceof RangeError)) throw e;
    }
    records.forEach((text, index) => {
      const uid = relayedUid(text, this.#signer.issuer);
      if (uid !== undefined && !position.has(uid)) position.set(uid, index);
    });
    const rank = (r: AccessReview): number => position.get(r.metadata.uid ?? '') ?? -1;
    return reviews.filter((r) => rank(r) >= 0).sort((a, b) => rank(a) - rank(b));
  }

  /** What the sidecars recorded in the claim key: the execution time, or a final Denied/Expired. */
  async #claim(id: string): Promise<RequestClaim | undefined> {
    let claim: string | null;
    try {
      claim = await this.#redis.get(claimKey(id));
    } catch (e: unknown) {
      if (e instanceof RangeError) return undefined;
      throw e;
    }
    if (claim === null) return undefined;
    const ended = finalPhase(claim);
    if (ended !== undefined) return { ended };
    try {
      const parsed = JSON.parse(claim) as { at?: unknown };
      return typeof parsed.at === 'string' ? { executedAt: parsed.at } : undefined;
    } catch {
      return undefined;
    }
  }

  async #patchStatus(target: typeof ACCESS_REQUEST_API | typeof ACCESS_REVIEW_API, namespace: string, name: string, status: object): Promise<void> {
    try {
      await this.#custom.patchNamespacedCustomObjectStatus(
        { ...api(target), namespace, name, body: { status }, fieldManager: FIELD_MANAGER },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (e: unknown) {
      if (codeOf(e) !== 404) throw e;
    }
  }
}

function api(target: typeof ACCESS_REQUEST_API | typeof ACCESS_REVIEW_API): { group: string; version: string; plural: string } {
  return { group: target.group, version: target.version, plural: target.plural };
}

function codeOf(e: unknown): number | undefined {
  return e instanceof ApiException ? e.code : undefined;
}

/** The AccessReview UID a relayed record carries (its token's jti), if the operator's issuer wrote it. */
function relayedUid(text: string, issuer: string): string | undefined {
  try {
    const { token } = parseReviewRecord(text);
    const claims = decodeJwt(token);
    return claims.iss === issuer && typeof claims.jti === 'string' ? claims.jti : undefined;
  } catch {
    return undefined;
  }
}
