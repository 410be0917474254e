// The approval service of local mode (docs/adr/0009): requests, reviews and claims in Redis, with
// every review's reviewer established by verifying the reviewer's own token (reviewer-verifier.ts)
// and every decision made by the pure tally (policy/approvals/tally.ts). Keys: approval-keys.ts.
//
// Fail-closed throughout: a Redis error, a malformed request or an unverifiable review can only
// make the answer `unavailable`, `pending` or "not counted" — never `approved`.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { decodeJwt } from 'jose';
import type { Logger } from 'pino';
import { approvalDigest, windowGrantDigest } from '../../policy/approvals/approval-digest.ts';
import type { ApprovalRequest, ApprovalSettings, ApprovalStatus, Review, ReviewerAuthentication, Reviewer } from '../../policy/approvals/approval-types.ts';
import { newRequestId } from '../../policy/approvals/request-id.ts';
import { tally } from '../../policy/approvals/tally.ts';
import { DEFAULT_CLOCK_TOLERANCE_SECONDS, TokenVerificationError } from '../identity/token-verifier.ts';
import {
  claimKey, digestIndexKey, PENDING_INBOX_KEY, RECORD_RETENTION_SECONDS, requestKey, reviewChannel, reviewsKey, windowGrantKey,
} from './approval-keys.ts';
import {
  FINAL_CLAIM_PREFIX, finalPhase, MAX_WINDOW_SECONDS, parseRequest, parseReviewRecord, serializeRequest, type ReviewRecord,
} from './approval-records.ts';
import type { ApprovalAnswer, ApprovalAsk, ApprovalService } from './approval-service.ts';
import { ReviewerVerifier } from './reviewer-verifier.ts';

// Files a request unless the digest index already names another one: KEYS digest index, request,
// inbox; ARGV id, request JSON, inbox score, record TTL ms, the id the caller saw in the index
// ('' for none; an expired request it may replace). Returns [1, id] when filed, [0, other id].
const FILE_REQUEST_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[5] then return {0, current} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return {1, ARGV[1]}
`;

// Forgets the digest → id entry only if it still names this request (a spent single-use approval),
// so the next identical statement files a fresh request instead of hearing `consumed` forever.
const FORGET_DIGEST_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

const MAX_CACHED_REVIEWERS = 1000;

/** What policy/sql/parser.ts puts in place of a statement it could not normalize. */
const NORMALIZATION_FAILED = '(normalization failed)';

/** Verification failures that may pass later with the same token: keys not loaded, a kid not yet published. */
const TRANSIENT_REASONS: ReadonlySet<string> = new Set(['keys-unavailable', 'unknown-kid']);

/** A review that cannot be verified now but might verify later (only denies are reported so). */
const UNVERIFIABLE_NOW = Symbol('unverifiable-now');

export interface RedisApprovalServiceOptions {
  readonly redisUrl: string;
  /** This sidecar: bound into every digest, so an approval never runs on another pod. */
  readonly gateway: ApprovalRequest['gateway'];
  /** From the compiled policy (`spec.reviewerAuthentication`); without it no local-mode review counts. */
  readonly reviewerAuthentication?: ReviewerAuthentication | undefined;
  /**
   * From the sidecar config the operator renders: its issuer for Kubernetes reviews it relays
   * (`kind: kubernetes-relay`, ADR 0011). Fixed for the sidecar's lifetime.
   */
  readonly kubernetesReviews?: ReviewerAuthentication | undefined;
  /** Tests: a ready verifier instead of one built from `reviewerAuthentication`. */
  readonly reviewerVerifier?: ReviewerVerifier;
  readonly logger?: Pick<Logger, 'warn' | 'info'>;
  /** Milliseconds since the epoch. */
  readonly clock?: () => number;
  readonly randomBytes?: (size: number) => Uint8Array;
  /** How often a held statement re-reads its request when no review message arrives (default 1000). */
  readonly pollIntervalMs?: number;
  readonly clockToleranceSeconds?: number;
}

interface Loaded {
  readonly request: ApprovalRequest;
  readonly records: readonly string[];
}

export class RedisApprovalService implements ApprovalService {
  readonly #redis: Redis;
  readonly #gateway: ApprovalRequest['gateway'];
  readonly #logger: Pick<Logger, 'warn' | 'info'> | undefined;
  readonly #clock: () => number;
  readonly #randomBytes: (size: number) => Uint8Array;
  readonly #pollIntervalMs: number;
  readonly #toleranceMs: number;
  #verifier: ReviewerVerifier | undefined;
  #verifierReady: Promise<void> = Promise.resolve();
  readonly #relayVerifier: ReviewerVerifier | undefined;
  readonly #relayReady: Promise<void> = Promise.resolve();
  /** Verified reviewers by request id and review record text (what a record's verification depends on). */
  #reviewers = new Map<string, Reviewer>();
  /** Records already logged as not counted, so a held statement's polling logs each once. */
  #loggedRefusals = new Set<string>();
  #closed = false;

  constructor(options: RedisApprovalServiceOptions) {
    this.#redis = new Redis(options.redisUrl, {
      lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000, commandTimeout: 2000, enableOfflineQueue: true,
    });
    // Surfaced through failing commands (→ `unavailable`); ioredis reconnects by itself.
    this.#redis.on('error', () => undefined);
    this.#gateway = options.gateway;
    this.#logger = options.logger;
    this.#clock = options.clock ?? Date.now;
    this.#randomBytes = options.randomBytes ?? ((size) => randomBytes(size));
    this.#pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.#toleranceMs = (options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS) * 1000;
    if (options.reviewerVerifier !== undefined) {
      this.#verifier = options.reviewerVerifier;
    } else if (options.reviewerAuthentication !== undefined) {
      this.configureReviewers(options.reviewerAuthentication);
    }
    if (options.kubernetesReviews !== undefined) {
      this.#relayVerifier = this.#newVerifier(options.kubernetesReviews);
      this.#relayReady = this.#relayVerifier.start().catch(() => undefined);
    }
  }

  #newVerifier(authentication: ReviewerAuthentication): ReviewerVerifier {
    return new ReviewerVerifier(authentication, {
      onKeysRefresh: (event) => {
        if (!event.ok) this.#logger?.warn({ issuer: event.issuer, result: event.result, detail: event.detail }, 'reviewer JWKS refresh failed');
      },
    });
  }

  /** Installs the reviewer authentication of a (re)loaded policy; undefined: no review counts. */
  configureReviewers(authentication: ReviewerAuthentication | undefined): void {
    if (authentication !== undefined && this.#verifier !== undefined
      && JSON.stringify(authentication) === JSON.stringify(this.#verifier.authentication)) return;
    this.#verifier?.stop();
    this.#reviewers = new Map();
    if (authentication === undefined) {
      this.#verifier = undefined;
      this.#verifierReady = Promise.resolve();
      return;
    }
    const verifier = this.#newVerifier(authentication);
    this.#verifier = verifier;
    this.#verifierReady = verifier.start().catch(() => undefined);
  }

  async ask(ask: ApprovalAsk): Promise<ApprovalAnswer & { readonly created?: boolean }> {
    try {
      const now = this.#clock();
      if (ask.settings.grant.scope === 'window' && windowable(ask)) {
        const granted = await this.#windowGrant(ask, now);
        if (granted !== undefined) return granted;
      }
      const digest = approvalDigest({
        gateway: this.#gateway, target: ask.target.name, database: ask.target.database, user: ask.target.user,
        requesterId: ask.requester.id, sql: ask.sql, parameters: ask.parameters,
      });
      const indexed = await this.#redis.get(digestIndexKey(digest));
      if (indexed !== null) {
        const answer = await this.#answerExisting(indexed, digest, ask, now);
        if (answer !== undefined) return answer;
      }
      return await this.#file(ask, digest, indexed ?? '', now);
    } catch (e: unknown) {
      return unavailable(e);
    }
  }

  async wait(request: ApprovalRequest, options: { readonly signal: AbortSignal; readonly deadline: Date }): Promise<ApprovalAnswer> {
    const { signal, deadline } = options;
    let wake: (() => void) | undefined;
    const subscriber = this.#redis.duplicate({ lazyConnect: true });
    subscriber.on('error', () => undefined);
    subscriber.on('message', () => { wake?.(); });
    // A lost subscription only costs latency: the poll below still sees the review.
    subscriber.subscribe(reviewChannel(request.id)).catch(() => undefined);
    let lastError: unknown;
    try {
      for (;;) {
        if (signal.aborted) return { outcome: 'pending', request };
        try {
          const answer = await this.#decide(request);
          lastError = undefined;
          if (answer.outcome !== 'pending') return answer;
        } catch (e: unknown) {
          lastError = e;
        }
        const remaining = deadline.getTime() - this.#clock();
        if (remaining <= 0) return lastError === undefined ? { outcome: 'pending', request } : unavailable(lastError);
        await new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            signal.removeEventListener('abort', done);
            wake = undefined;
            resolve();
          };
          const timer = setTimeout(done, Math.min(this.#pollIntervalMs, remaining));
          signal.addEventListener('abort', done, { once: true });
          wake = done;
        });
      }
    } finally {
      subscriber.disconnect();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#verifier?.stop();
    this.#relayVerifier?.stop();
    this.#redis.disconnect();
    await Promise.resolve();
  }

  /** The status of a request as this sidecar sees it: reviews read from Redis, each one verified. */
  async status(request: ApprovalRequest): Promise<ApprovalStatus> {
    const records = await this.#redis.lrange(reviewsKey(request.id), 0, -1);
    return this.#tally({ request, records }, this.#clock());
  }

  async #windowGrant(ask: ApprovalAsk, now: number): Promise<ApprovalAnswer | undefined> {
    const key = this.#windowKey(ask.requester.id, ask);
    const id = await this.#redis.get(key);
    if (id === null) return undefined;
    const loaded = await this.#load(id);
    if (loaded === undefined) return undefined;
    const { request } = loaded;
    // The grant key is only an index: the window is re-derived from the verified request, so a
    // key planted in Redis cannot grant anything the reviews do not.
    if (request.settings.grant.scope !== 'window' || request.fingerprint !== ask.fingerprint || request.command !== ask.command
      || request.target.name !== ask.target.name || request.target.database !== ask.target.database || request.target.user !== ask.target.user
      || request.policy.name !== ask.policy.name || request.policy.namespace !== ask.policy.namespace || request.policy.rule !== ask.policy.rule) return undefined;
    const untrusted = this.#untrusted(request, ask, now);
    if (untrusted !== undefined) {
      this.#logger?.warn({ approvalRequest: id, why: untrusted }, 'window grant request record not trusted');
      return undefined;
    }
    // A window is only ever opened by a successful claim: no claim, or a request this sidecar saw
    // denied or expired, grants nothing.
    const claim = await this.#redis.get(claimKey(id));
    if (claim === null || finalPhase(claim) !== undefined) return undefined;
    const status = await this.#tally(loaded, now);
    if (status.phase !== 'Approved' || status.decidedAt === undefined) return undefined;
    if (now >= Date.parse(status.decidedAt) + request.settings.grant.windowSeconds * 1000) return undefined;
    return { outcome: 'approved', request, status, via: 'window' };
  }

  /** The window grant key of a statement shape (see windowGrantDigest: normalized text, not the fingerprint alone). */
  #windowKey(requesterId: string, shape: Pick<ApprovalAsk, 'target' | 'policy' | 'command' | 'fingerprint'>): string {
    return windowGrantKey(windowGrantDigest({
      requesterId, gateway: this.#gateway, target: shape.target.name, database: shape.target.database, user: shape.target.user,
      policy: shape.policy, command: shape.command, fingerprint: shape.fingerprint,
    }));
  }

  /** Answers from the request the digest index names; undefined when a new request must be filed. */
  async #answerExisting(id: string, digest: string, ask: ApprovalAsk, now: number): Promise<ApprovalAnswer | undefined> {
    const loaded = await this.#load(id);
    if (loaded?.request.commandDigest !== digest) return undefined;
    // A record that is not what this sidecar would have filed for this ask (rewritten in Redis, or
    // filed under a rule that has changed since) decides nothing: a fresh request replaces it in
    // the digest index and goes to the reviewers under the rule as it stands now.
    const untrusted = this.#untrusted(loaded.request, ask, now);
    if (untrusted !== undefined) {
      this.#logger?.warn({ approvalRequest: id, why: untrusted }, 'approval request record not trusted; filing a new request');
      await this.#redis.zrem(PENDING_INBOX_KEY, id);
      return undefined;
    }
    const status = await this.#tally(loaded, now);
    const answer = await this.#conclude(loaded.request, status, now);
    // Expired, or denied and past its expiry: the same statement may ask again with a new request
    // (a denial stands for the request's lifetime, so resending does not spam reviewers).
    if (answer.outcome === 'expired' || (answer.outcome === 'denied' && now >= Date.parse(loaded.request.expiresAt))) {
      await this.#redis.zrem(PENDING_INBOX_KEY, id);
      return undefined;
    }
    return answer;
  }

  /**
   * Why a stored request cannot answer this ask (undefined if it can). Redis is writable by more
   * than this sidecar, so only what the digest does not bind is checked here: whose request it is,
   * which gateway holds it, the settings it is decided under (those of the rule asking now, so a
   * tightened rule also applies to requests already filed), and its lifetime.
   */
  #untrusted(request: ApprovalRequest, ask: ApprovalAsk, now: number): string | undefined {
    if (request.requester.id !== ask.requester.id || request.requester.kind !== ask.requester.kind) return 'requester-mismatch';
    if (!sameGateway(request.gateway, this.#gateway)) return 'gateway-mismatch';
    if (!sameSettings(request.settings, ask.settings)) return 'settings-mismatch';
    const created = Date.parse(request.createdAt);
    const expires = Date.parse(request.expiresAt);
    if (!(created <= now)) return 'created-in-future';
    if (!(Math.abs(expires - created - request.settings.ttlSeconds * 1000) <= 1000)) return 'lifetime-mismatch';
    if (request.settings.grant.scope === 'window' && request.settings.grant.windowSeconds > MAX_WINDOW_SECONDS) return 'window-too-long';
    return undefined;
  }

  async #decide(request: ApprovalRequest): Promise<ApprovalAnswer> {
    const now = this.#clock();
    const records = await this.#redis.lrange(reviewsKey(request.id), 0, -1);
    const status = await this.#tally({ request, records }, now);
    const answer = await this.#conclude(request, status, now);
    if (answer.outcome === 'expired') await this.#redis.zrem(PENDING_INBOX_KEY, request.id);
    return answer;
  }

  /**
   * Records that this sidecar saw the request end Denied or Expired, in the claim key (`SET NX`), so
   * no later review — a backdated approval that tallies before the deny, or one dated inside the
   * request's lifetime but pushed after it expired — can ever claim it.
   */
  async #finalize(request: ApprovalRequest, phase: 'Denied' | 'Expired', now: number): Promise<void> {
    await this.#redis.set(claimKey(request.id), `${FINAL_CLAIM_PREFIX}${phase}`, 'PX', this.#recordTtlMs(request, now), 'NX');
  }

  async #conclude(request: ApprovalRequest, status: ApprovalStatus, now: number): Promise<ApprovalAnswer> {
    switch (status.phase) {
      case 'Pending':
        return { outcome: 'pending', request };
      case 'Denied':
        await this.#finalize(request, 'Denied', now);
        await this.#redis.zrem(PENDING_INBOX_KEY, request.id);
        return { outcome: 'denied', request, status };
      case 'Expired':
        await this.#finalize(request, 'Expired', now);
        return { outcome: 'expired', request, status };
      case 'Approved': {
        await this.#redis.zrem(PENDING_INBOX_KEY, request.id);
        const claim = JSON.stringify({ gateway: this.#gateway, at: new Date(now).toISOString() });
        const claimed = await this.#redis.set(claimKey(request.id), claim, 'PX', this.#recordTtlMs(request, now), 'NX');
        if (claimed !== 'OK') {
          // Already seen Denied or Expired: that stands, whatever the reviews now say.
          const final = finalPhase(await this.#redis.get(claimKey(request.id)));
          if (final !== undefined) {
            const ended: ApprovalStatus = { phase: final, counted: status.counted, refused: status.refused };
            return { outcome: final === 'Denied' ? 'denied' : 'expired', request, status: ended };
          }
          await this.#redis.eval(FORGET_DIGEST_SCRIPT, 1, digestIndexKey(request.commandDigest), request.id);
          return { outcome: 'consumed', request };
        }
        const grant = request.settings.grant;
        if (grant.scope === 'window' && windowable(request)) {
          const key = this.#windowKey(request.requester.id, request);
          await this.#redis.set(key, request.id, 'EX', grant.windowSeconds);
        }
        return { outcome: 'approved', request, status, via: 'claim' };
      }
    }
  }

  async #file(ask: ApprovalAsk, digest: string, replacing: string, now: number): Promise<ApprovalAnswer & { readonly created?: boolean }> {
    const request: ApprovalRequest = {
      id: newRequestId(this.#randomBytes),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + ask.settings.ttlSeconds * 1000).toISOString(),
      requester: ask.requester,
      gateway: this.#gateway,
      target: ask.target,
      policy: ask.policy,
      command: ask.command,
      fingerprint: ask.fingerprint,
      commandDigest: digest,
      ...(ask.reason === undefined ? {} : { reason: ask.reason }),
      settings: ask.settings,
      ...(this.#verifier === undefined ? {} : {
        reviewerAuthentication: { issuer: this.#verifier.authentication.issuer, audience: this.#verifier.authentication.audience },
      }),
    };
    const reply = await this.#redis.eval(
      FILE_REQUEST_SCRIPT, 3, digestIndexKey(digest), requestKey(request.id), PENDING_INBOX_KEY,
      request.id, serializeRequest(request), Date.parse(request.expiresAt), this.#recordTtlMs(request, now), replacing,
    );
    if (!Array.isArray(reply) || typeof reply[1] !== 'string') throw new Error('unexpected reply from the file-request script');
    if (reply[0] === 1) {
      this.#logger?.info({ approvalRequest: request.id, rule: request.policy.rule }, 'approval request filed');
      return { outcome: 'pending', request, created: true };
    }
    // Another execution of the same statement filed first: answer from its request.
    const answer = await this.#answerExisting(reply[1], digest, ask, now);
    if (answer === undefined) throw new Error('approval request for this statement changed concurrently');
    return answer;
  }

  #recordTtlMs(request: ApprovalRequest, now: number): number {
    return Math.max(1000, Date.parse(request.expiresAt) - now) + RECORD_RETENTION_SECONDS * 1000;
  }

  async #load(id: string): Promise<Loaded | undefined> {
    const [requestReply, recordsReply] = await this.#redis.multi().get(requestKey(id)).lrange(reviewsKey(id), 0, -1).exec() ?? [];
    if (requestReply?.[0] != null || recordsReply?.[0] != null) throw new Error('reading an approval request failed');
    const text = requestReply?.[1];
    if (typeof text !== 'string') return undefined;
    const records = recordsReply?.[1];
    return { request: parseRequest(text, id), records: Array.isArray(records) ? records.filter((r): r is string => typeof r === 'string') : [] };
  }

  async #tally(loaded: Loaded, now: number): Promise<ApprovalStatus> {
    const reviews: Review[] = [];
    for (const record of loaded.records) {
      const review = await this.#verifiedReview(loaded.request, record, now);
      if (review === UNVERIFIABLE_NOW) {
        // A deny that may well be genuine but cannot be checked right now (reviewer keys
        // unreachable, a key id not yet published): ignoring it could let a later approval win a
        // race the deny won. What was decided before it stands; otherwise nobody can say yet.
        const before = tally(loaded.request, reviews, new Date(now));
        if (before.phase !== 'Pending') return before;
        throw new Error(`approval request ${loaded.request.id}: a deny cannot be verified right now (reviewer keys unavailable)`);
      }
      if (review !== undefined) reviews.push(review);
    }
    return tally(loaded.request, reviews, new Date(now));
  }

  /** The review with its reviewer established from its token; undefined (and logged) when it cannot count. */
  async #verifiedReview(request: ApprovalRequest, text: string, now: number): Promise<Review | typeof UNVERIFIABLE_NOW | undefined> {
    let record: ReviewRecord;
    try {
      record = parseReviewRecord(text);
    } catch (e: unknown) {
      this.#logRefusal(request, text, 'malformed-record', e instanceof Error ? e.message : String(e));
      return undefined;
    }
    const at = Date.parse(record.at);
    // A review cannot predate its request or come from the future: this bounds how far a token can
    // be carried (replayed) by backdating, together with the token's own age limit.
    if (at < Date.parse(request.createdAt) - this.#toleranceMs || at > now + this.#toleranceMs) {
      this.#logRefusal(request, text, 'review-time-out-of-range');
      return undefined;
    }
    const cacheKey = `${request.id}\n${text}`;
    let reviewer = this.#reviewers.get(cacheKey);
    if (reviewer === undefined) {
      const verifier = this.#verifierFor(record.token);
      if (verifier === undefined) {
        this.#logRefusal(request, text, 'no-reviewer-authentication');
        return undefined;
      }
      await (verifier === this.#relayVerifier ? this.#relayReady : this.#verifierReady);
      try {
        reviewer = await verifier.verify(record.token, new Date(at), { request: request.id, commandDigest: record.commandDigest, decision: record.decision, reason: record.reason });
      } catch (e: unknown) {
        const why = e instanceof TokenVerificationError ? e.reason : 'verification-failed';
        if (record.decision === 'deny' && (!(e instanceof TokenVerificationError) || TRANSIENT_REASONS.has(e.reason))) {
          this.#logRefusal(request, text, 'deny-not-verifiable-yet', why);
          return UNVERIFIABLE_NOW;
        }
        // Bad signature, another issuer or audience, expired or too old at the review time, bound
        // to another request or statement: never counts.
        this.#logRefusal(request, text, why, e instanceof Error ? e.message : undefined);
        return undefined;
      }
      if (this.#reviewers.size >= MAX_CACHED_REVIEWERS) this.#reviewers.clear();
      this.#reviewers.set(cacheKey, reviewer);
    }
    return { reviewer, decision: record.decision, reason: record.reason, at: record.at, commandDigest: record.commandDigest };
  }

  /**
   * The verifier for a review token: the operator's relay issuer or the policy's reviewer issuer,
   * chosen by the token's unverified `iss` (only a lookup: the chosen verifier pins its issuer).
   * A token naming neither goes to the policy's verifier, which refuses it with the reason.
   */
  #verifierFor(token: string): ReviewerVerifier | undefined {
    const relay = this.#relayVerifier;
    if (relay !== undefined && unverifiedIssuer(token) === relay.authentication.issuer) return relay;
    return this.#verifier ?? relay;
  }

  #logRefusal(request: ApprovalRequest, record: string, why: string, detail?: string): void {
    if (this.#loggedRefusals.has(record)) return;
    if (this.#loggedRefusals.size >= MAX_CACHED_REVIEWERS) this.#loggedRefusals.clear();
    this.#loggedRefusals.add(record);
    // Never the record itself: it holds the reviewer's token.
    this.#logger?.warn({ approvalRequest: request.id, why, ...(detail === undefined ? {} : { detail }) }, 'approval review not counted');
  }
}

function unverifiedIssuer(token: string): string | undefined {
  try {
    const { iss } = decodeJwt(token);
    return iss;
  } catch {
    return undefined;
  }
}

/** A statement whose text could not be normalized (or fingerprinted) shares no window with others. */
function windowable(shape: Pick<ApprovalAsk, 'command' | 'fingerprint'>): boolean {
  return shape.command !== '' && shape.command !== NORMALIZATION_FAILED && shape.fingerprint !== '';
}

function sameGateway(a: ApprovalRequest['gateway'], b: ApprovalRequest['gateway']): boolean {
  return a.id === b.id && a.namespace === b.namespace && a.pod === b.pod && a.podUid === b.podUid;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((member, i) => member === b[i]);
}

/** Field by field (not JSON text: key order is not meaning), every field of ApprovalSettings. */
function sameSettings(a: ApprovalSettings, b: ApprovalSettings): boolean {
  return sameList(a.reviewers.groups, b.reviewers.groups) && sameList(a.reviewers.users, b.reviewers.users)
    && a.minApprovals === b.minApprovals && a.mode === b.mode && a.holdTimeoutSeconds === b.holdTimeoutSeconds
    && a.ttlSeconds === b.ttlSeconds && a.grant.scope === b.grant.scope
    && (a.grant.scope === 'once' || (b.grant.scope === 'window' && a.grant.windowSeconds === b.grant.windowSeconds));
}

function unavailable(e: unknown): ApprovalAnswer {
  return { outcome: 'unavailable', error: e instanceof Error ? e.message : String(e) };
}
