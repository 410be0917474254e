// The JSON records approvals keep in Redis, and their strict parsing: anything read back from Redis
// is untrusted input (another writer, an older version, corruption), so a record that does not have
// exactly the expected shape is refused rather than half-used. A malformed request makes the
// sidecar answer `unavailable`; a malformed review is ignored and logged.
import { CustosError } from '../../lib/errors.ts';
import type { ApprovalRequest, ApprovalSettings } from '../../policy/approvals/approval-types.ts';
import { isRequestId } from '../../policy/approvals/request-id.ts';
import { isRecord } from '../../lib/is-record.ts';

export const ERR_APPROVAL_RECORD_INVALID = 'ERR_APPROVAL_RECORD_INVALID';

/** Bounds on what a reviewer may store: the reason is shown to people, the token is a JWT. */
export const MAX_REVIEW_REASON_LENGTH = 1024;
export const MAX_REVIEW_TOKEN_LENGTH = 8192;
/** The longest window grant any rule may give (APPROVAL_LIMITS.windowSeconds.max). */
export const MAX_WINDOW_SECONDS = 28_800;
const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

/**
 * A review as a reviewer's tool stores it. The reviewer is not in it: the sidecar establishes who
 * reviewed by verifying `token` (the reviewer's own OIDC token), so writing to Redis is not enough
 * to forge a review.
 */
export interface ReviewRecord {
  readonly decision: 'approve' | 'deny';
  readonly reason: string;
  /** ISO 8601, when the reviewer decided; the token is verified as of this instant. */
  readonly at: string;
  /** The digest of the request the reviewer read; copied from the request, never typed in. */
  readonly commandDigest: string;
  /** The reviewer's raw JWT. Never printed or logged. */
  readonly token: string;
}

/** The claim key's value once a request was seen Denied or Expired (never a claim's JSON, which
 * names the gateway that executed the statement). */
export const FINAL_CLAIM_PREFIX = 'final:';

/** The final phase a claim key records, if it records one. */
export function finalPhase(claim: string | null): 'Denied' | 'Expired' | undefined {
  if (claim === `${FINAL_CLAIM_PREFIX}Denied`) return 'Denied';
  if (claim === `${FINAL_CLAIM_PREFIX}Expired`) return 'Expired';
  return undefined;
}

function invalid(what: string): CustosError {
  return new CustosError(ERR_APPROVAL_RECORD_INVALID, `malformed approval record: ${what}`);
}


function parseJson(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalid(`${what} is not JSON`);
  }
  if (!isRecord(value)) throw invalid(`${what} is not an object`);
  return value;
}

function str(record: Record<string, unknown>, key: string, what: string): string {
  const value = record[key];
  if (typeof value !== 'string') throw invalid(`${what}.${key} is not a string`);
  return value;
}

function optionalStr(record: Record<string, unknown>, key: string, what: string): string | undefined {
  const value = record[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalid(`${what}.${key} is not a string`);
  return value;
}

function obj(record: Record<string, unknown>, key: string, what: string): Record<string, unknown> {
  const value = record[key];
  if (!isRecord(value)) throw invalid(`${what}.${key} is not an object`);
  return value;
}

function isoTime(record: Record<string, unknown>, key: string, what: string): string {
  const value = str(record, key, what);
  if (!Number.isFinite(Date.parse(value))) throw invalid(`${what}.${key} is not a time`);
  return value;
}

function positiveInteger(record: Record<string, unknown>, key: string, what: string): number {
  const value = record[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) throw invalid(`${what}.${key} is not a positive integer`);
  return value;
}

function stringList(record: Record<string, unknown>, key: string, what: string): string[] {
  const value = record[key];
  if (!Array.isArray(value) || !value.every((member) => typeof member === 'string')) throw invalid(`${what}.${key} is not a list of strings`);
  return value;
}

function parseSettings(record: Record<string, unknown>): ApprovalSettings {
  const reviewers = obj(record, 'reviewers', 'settings');
  const mode = record['mode'];
  if (mode !== 'hold' && mode !== 'return') throw invalid('settings.mode');
  const grant = obj(record, 'grant', 'settings');
  let parsedGrant: ApprovalSettings['grant'];
  if (grant['scope'] === 'once') parsedGrant = { scope: 'once' };
  else if (grant['scope'] === 'window') {
    const windowSeconds = positiveInteger(grant, 'windowSeconds', 'settings.grant');
    // No rule can grant a longer window (policy/approvals/compile-approval.ts): a longer one was written by hand.
    if (windowSeconds > MAX_WINDOW_SECONDS) throw invalid('settings.grant.windowSeconds is above the maximum');
    parsedGrant = { scope: 'window', windowSeconds };
  }
  else throw invalid('settings.grant.scope');
  return {
    reviewers: { groups: stringList(reviewers, 'groups', 'settings.reviewers'), users: stringList(reviewers, 'users', 'settings.reviewers') },
    minApprovals: positiveInteger(record, 'minApprovals', 'settings'),
    mode,
    holdTimeoutSeconds: positiveInteger(record, 'holdTimeoutSeconds', 'settings'),
    ttlSeconds: positiveInteger(record, 'ttlSeconds', 'settings'),
    grant: parsedGrant,
  };
}

function withOptional<T extends object>(base: T, key: string, value: string | undefined): T {
  return value === undefined ? base : { ...base, [key]: value };
}

export function serializeRequest(request: ApprovalRequest): string {
  return JSON.stringify(request);
}

/** Parses a stored request; `expectedId` guards against a record stored under another id. */
export function parseRequest(text: string, expectedId?: string): ApprovalRequest {
  const r = parseJson(text, 'request');
  const id = str(r, 'id', 'request');
  if (!isRequestId(id) || (expectedId !== undefined && id !== expectedId)) throw invalid('request.id');
  const requester = obj(r, 'requester', 'request');
  const kind = requester['kind'];
  if (kind !== 'ServiceAccount' && kind !== 'OIDC') throw invalid('request.requester.kind');
  const gateway = obj(r, 'gateway', 'request');
  const target = obj(r, 'target', 'request');
  if (target['protocol'] !== 'postgres') throw invalid('request.target.protocol');
  const policy = obj(r, 'policy', 'request');
  const commandDigest = str(r, 'commandDigest', 'request');
  if (!DIGEST_PATTERN.test(commandDigest)) throw invalid('request.commandDigest');
  const request: ApprovalRequest = {
    id,
    createdAt: isoTime(r, 'createdAt', 'request'),
    expiresAt: isoTime(r, 'expiresAt', 'request'),
    requester: withOptional({ id: str(requester, 'id', 'request.requester'), kind }, 'displayName', optionalStr(requester, 'displayName', 'request.requester')),
    gateway: withOptional(withOptional(withOptional({ id: str(gateway, 'id', 'request.gateway') },
      'namespace', optionalStr(gateway, 'namespace', 'request.gateway')),
    'pod', optionalStr(gateway, 'pod', 'request.gateway')),
    'podUid', optionalStr(gateway, 'podUid', 'request.gateway')),
    target: withOptional(withOptional({ name: str(target, 'name', 'request.target'), protocol: 'postgres' as const },
      'database', optionalStr(target, 'database', 'request.target')),
    'user', optionalStr(target, 'user', 'request.target')),
    policy: withOptional({ name: str(policy, 'name', 'request.policy'), version: str(policy, 'version', 'request.policy'), rule: str(policy, 'rule', 'request.policy') },
      'namespace', optionalStr(policy, 'namespace', 'request.policy')),
    command: str(r, 'command', 'request'),
    fingerprint: str(r, 'fingerprint', 'request'),
    commandDigest,
    settings: parseSettings(obj(r, 'settings', 'request')),
  };
  const withReason = withOptional(request, 'reason', optionalStr(r, 'reason', 'request'));
  if (r['reviewerAuthentication'] === undefined) return withReason;
  const reviewers = obj(r, 'reviewerAuthentication', 'request');
  return {
    ...withReason,
    reviewerAuthentication: { issuer: str(reviewers, 'issuer', 'request.reviewerAuthentication'), audience: str(reviewers, 'audience', 'request.reviewerAuthentication') },
  };
}

export function serializeReviewRecord(review: ReviewRecord): string {
  return JSON.stringify({ decision: review.decision, reason: review.reason, at: review.at, commandDigest: review.commandDigest, token: review.token });
}

export function parseReviewRecord(text: string): ReviewRecord {
  const r = parseJson(text, 'review');
  const decision = r['decision'];
  if (decision !== 'approve' && decision !== 'deny') throw invalid('review.decision');
  const reason = str(r, 'reason', 'review');
  if (reason.length > MAX_REVIEW_REASON_LENGTH) throw invalid('review.reason is too long');
  const token = str(r, 'token', 'review');
  if (token.length === 0 || token.length > MAX_REVIEW_TOKEN_LENGTH) throw invalid('review.token');
  const commandDigest = str(r, 'commandDigest', 'review');
  if (!DIGEST_PATTERN.test(commandDigest)) throw invalid('review.commandDigest');
  return { decision, reason, at: isoTime(r, 'at', 'review'), commandDigest, token };
}
