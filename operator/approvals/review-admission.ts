// Admission of AccessReview submissions (crds/accessreview.yaml), pure: who reviews is the user the
// API server authenticated (`request.userInfo`), never what the client wrote; a review is created
// once and never changed or deleted. The four-eyes rules themselves are not repeated here: they
// are `reviewerRefusal` and `tally` (policy/approvals/tally.ts), shared with the sidecar and the
// local-mode CLI, applied to the referenced AccessRequest. The webhook adapter (not built yet, see
// docs/adr/0011-kubernetes-approvals.md) decodes the AdmissionReview, reads the AccessRequest
// named by spec.requestName in the review's namespace, calls `admitReview` and encodes the answer.
//
// Background: reference/identity-and-audit.md §10.3 (where each check runs) and §10.4 (checklist).
import type { ApprovalPhase, Review, Reviewer, ReviewRefusal } from '../../policy/approvals/approval-types.ts';
import { reviewerRefusal, tally, type ReviewableRequest } from '../../policy/approvals/tally.ts';
import type { AccessRequest } from '../../crds/generated/access-request.ts';
import type { AccessReview, AccessReviewReviewer, AccessReviewStatus } from '../../crds/generated/access-review.ts';
import type { JsonPatchOperation } from '../webhook/json-patch.ts';
import { isRecord } from '../../lib/is-record.ts';

/** The CRD's status.refusal enum and the tally's ReviewRefusal are the same set (checked by tsc). */
type CrdRefusal = NonNullable<AccessReviewStatus['refusal']>;
const _refusalsMatch: [CrdRefusal] extends [ReviewRefusal] ? ([ReviewRefusal] extends [CrdRefusal] ? true : false) : false = true;

export type AdmissionOperation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';

/** request.userInfo as the API server sends it (the impersonated identity, if any). */
export interface AdmissionUserInfo {
  readonly username: string;
  readonly groups: readonly string[];
  readonly uid?: string;
}

export interface ReviewAdmissionInput {
  readonly operation: AdmissionOperation;
  /**
   * request.object: the AccessReview as submitted. Mutating webhooks run before schema
   * validation, so it is checked here field by field rather than trusted to match the CRD.
   */
  readonly review: unknown;
  readonly userInfo: AdmissionUserInfo;
  /** The AccessRequest named by spec.requestName in the review's namespace; undefined if none. */
  readonly accessRequest: AccessRequest | undefined;
  readonly now: Date;
}

/** Why admission refused, beyond the tally's refusals (stable strings, for metrics and tests). */
export type AdmissionRefusal =
  | ReviewRefusal
  | 'create-only'
  | 'malformed'
  | 'forged-reviewer'
  | 'unauthenticated'
  | 'unknown-request'
  | 'not-open';

export type ReviewAdmission =
  | {
      readonly allowed: true;
      /** Stamps spec.reviewer from userInfo (`add` replaces a client-supplied value). */
      readonly patch: readonly JsonPatchOperation[];
      /** The review as the controller will count it (at = now). */
      readonly review: Review;
    }
  | { readonly allowed: false; readonly refusal: AdmissionRefusal; readonly message: string };

/** An AccessRequest as the tally reads it: requester, digest, expiry, reviewers, approvals needed. */
export function reviewableFromAccessRequest(request: AccessRequest): ReviewableRequest {
  const reviewers = request.spec.reviewers;
  return {
    requester: {
      id: request.spec.requester.id,
      ...(request.spec.requester.displayName === undefined ? {} : { displayName: request.spec.requester.displayName }),
    },
    commandDigest: request.spec.commandDigest,
    expiresAt: request.spec.expiresAt,
    settings: {
      reviewers: { groups: reviewers.groups ?? [], users: reviewers.users ?? [] },
      minApprovals: request.spec.approvalsRequired ?? 1,
    },
  };
}

/** The reviewer a stamped AccessReview names, as `tally` compares reviewers. */
export function reviewerFromStamp(stamp: AccessReviewReviewer): Reviewer {
  return { username: stamp.username, groups: stamp.groups, ...(stamp.uid ? { id: stamp.uid } : {}), via: 'kubernetes' };
}

/** An admitted AccessReview as a tally input; its time is when the API server stored it. */
export function reviewFromAccessReview(review: AccessReview): Review {
  return {
    reviewer: reviewerFromStamp(review.spec.reviewer),
    decision: review.spec.decision,
    reason: review.spec.reason,
    // A review without a creation time can never count (tally treats an unparseable time as late).
    at: review.metadata.creationTimestamp ?? '',
    commandDigest: review.spec.commandDigest,
  };
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const MAX_REASON = 1024;

interface Submitted {
  readonly namespace: string | undefined;
  readonly requestName: string;
  readonly decision: 'approve' | 'deny';
  readonly reason: string;
  readonly commandDigest: string;
  /** What the client wrote in spec.reviewer, if anything (never trusted, only compared). */
  readonly claimedReviewer: unknown;
}


function quote(v: unknown): string {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Length in Unicode code points, as the API server counts maxLength. */
function codePoints(text: string): number {
  let length = 0;
  for (const _ of text) length++;
  return length;
}

function parseSubmitted(object: unknown): Submitted | string {
  if (!isRecord(object)) return 'the AccessReview object is missing';
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  const spec = object.spec;
  if (!isRecord(spec)) return 'spec: Required value';
  const { requestName, decision, reason, commandDigest } = spec;
  if (typeof requestName !== 'string' || requestName === '') return 'spec.requestName: Required value: name the AccessRequest you review';
  if (decision !== 'approve' && decision !== 'deny') return `spec.decision: Unsupported value: ${quote(decision)}: supported values: "approve", "deny"`;
  if (typeof reason !== 'string') return 'spec.reason: Required value: say why you decide so';
  if (codePoints(reason) > MAX_REASON) return `spec.reason: Too long: may not be more than ${MAX_REASON} characters`;
  if (typeof commandDigest !== 'string' || !DIGEST.test(commandDigest)) {
    return `spec.commandDigest: Invalid value: ${quote(commandDigest)}: expected the request's sha256:<64 hex> digest`;
  }
  const namespace = typeof metadata.namespace === 'string' && metadata.namespace !== '' ? metadata.namespace : undefined;
  return { namespace, requestName, decision, reason, commandDigest, claimedReviewer: spec.reviewer };
}

function stamp(userInfo: AdmissionUserInfo): AccessReviewReviewer {
  return { username: userInfo.username, groups: [...userInfo.groups], ...(userInfo.uid ? { uid: userInfo.uid } : {}) };
}

/** A client-supplied reviewer is accepted only when it is exactly the authenticated user. */
function sameReviewer(claimed: unknown, actual: AccessReviewReviewer): boolean {
  if (!isRecord(claimed)) return false;
  const keys = Object.keys(claimed);
  if (keys.some((k) => k !== 'username' && k !== 'groups' && k !== 'uid')) return false;
  if (claimed.username !== actual.username) return false;
  const claimedUid = claimed.uid === '' ? undefined : claimed.uid;
  if (claimedUid !== actual.uid) return false;
  const groups = claimed.groups ?? [];
  if (!Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) return false;
  const sorted = (list: readonly string[]): string => JSON.stringify([...new Set(list)].sort());
  return sorted(groups) === sorted(actual.groups);
}

function describeReviewers(request: ReviewableRequest): string {
  const { groups, users } = request.settings.reviewers;
  const parts = [
    ...(groups.length > 0 ? [`members of ${groups.join(', ')}`] : []),
    ...(users.length > 0 ? [`the users ${users.join(', ')}`] : []),
  ];
  return parts.length > 0 ? parts.join(' or ') : 'nobody (the request names no reviewers)';
}

interface MessageContext {
  readonly who: string;
  readonly name: string;
  readonly request: ReviewableRequest;
  readonly submitted: Submitted;
  readonly phase: ApprovalPhase | 'Executed' | 'Revoked' | undefined;
}

/** What each tally refusal means to the person who just ran `kubectl custos approve|deny`. */
const REFUSAL_MESSAGES: Readonly<Record<ReviewRefusal, (c: MessageContext) => string>> = {
  'self-review': (c) => `${c.who} may not review ${c.name}: it is their own request (they are its requester or act for it); nobody approves their own request, ask another reviewer`,
  'service-account-reviewer': (c) => `${c.who} is a service account: workloads never review access requests, a person must decide`,
  'not-an-allowed-reviewer': (c) => `${c.who} is not a reviewer of ${c.name}: it may be reviewed by ${describeReviewers(c.request)}`,
  'digest-mismatch': (c) => `spec.commandDigest ${c.submitted.commandDigest} is not the digest of ${c.name} (${c.request.commandDigest}): you reviewed another command; run kubectl custos describe ${c.name} and review what it asks`,
  'after-expiry': (c) => `${c.name} expired at ${c.request.expiresAt} and will never run; the requester must try again to file a new request`,
  'after-decision': (c) => `${c.name} is already ${c.phase ?? 'decided'}: a decided request cannot be reviewed again`,
  'duplicate': (c) => `${c.who} has already reviewed ${c.name}: each reviewer has one voice, and a decision cannot be changed`,
  'reason-required': () => 'spec.reason: Required value: a review needs a reason (it is blank)',
};

function refuse(refusal: AdmissionRefusal, message: string): ReviewAdmission {
  return { allowed: false, refusal, message };
}

/**
 * Decides one AccessReview admission: CREATE only; the reviewer is stamped from userInfo; the
 * review must be one the controller would count against the AccessRequest as it stands now.
 */
export function admitReview(input: ReviewAdmissionInput): ReviewAdmission {
  const { operation, userInfo, accessRequest, now } = input;
  if (operation === 'UPDATE') {
    return refuse('create-only', 'AccessReviews are create-only: a decision cannot be changed once made (each reviewer has one voice)');
  }
  if (operation === 'DELETE') {
    return refuse('create-only', 'AccessReviews cannot be deleted: they are the record of a decision');
  }
  if (operation !== 'CREATE') return refuse('create-only', `AccessReviews admit CREATE only, not ${operation}`);

  const submitted = parseSubmitted(input.review);
  if (typeof submitted === 'string') return refuse('malformed', submitted);

  if (userInfo.username === '' || userInfo.username === 'system:anonymous' || userInfo.groups.includes('system:unauthenticated')) {
    return refuse('unauthenticated', 'anonymous requests never review: authenticate as yourself');
  }
  const reviewer = stamp(userInfo);
  if (submitted.claimedReviewer !== undefined && !sameReviewer(submitted.claimedReviewer, reviewer)) {
    return refuse('forged-reviewer',
      `spec.reviewer ${quote(submitted.claimedReviewer)} is not you: you are authenticated as ${quote(reviewer.username)}; ` +
      'the reviewer is always set from your authenticated identity, leave spec.reviewer out');
  }

  const name = `${submitted.namespace === undefined ? '' : `${submitted.namespace}/`}${submitted.requestName}`;
  if (accessRequest === undefined
    || accessRequest.metadata.name !== submitted.requestName
    || (submitted.namespace !== undefined && accessRequest.metadata.namespace !== undefined && accessRequest.metadata.namespace !== submitted.namespace)) {
    return refuse('unknown-request', `AccessRequest ${name} does not exist: run kubectl custos requests to see the pending ones`);
  }

  const request = reviewableFromAccessRequest(accessRequest);
  const phase = accessRequest.status?.phase;
  const context: MessageContext = { who: reviewer.username, name, request, submitted, phase };
  const byTally = (why: ReviewRefusal): ReviewAdmission => refuse(why, REFUSAL_MESSAGES[why](context));
  const asReviewer = reviewerFromStamp(reviewer);

  // Checklist 1: the requester under every stable id the request carries — its id, the human it
  // acts for (onBehalfOf) and its service-account UID — is the same person.
  const { onBehalfOf, uid } = accessRequest.spec.requester;
  for (const id of [onBehalfOf, uid]) {
    if (id !== undefined && id !== '' && reviewerRefusal({ requester: { id }, settings: request.settings }, asReviewer) === 'self-review') {
      return byTally('self-review');
    }
  }
  const byReviewer = reviewerRefusal(request, asReviewer);
  if (byReviewer !== undefined) return byTally(byReviewer);

  // The controller owns the phase; until it has opened the request (phase Pending) nothing is
  // reviewable, and after a decision or expiry nothing changes it.
  if (phase === undefined) return refuse('not-open', `${name} is not open for review yet (the operator has not set its phase); try again in a moment`);
  if (phase === 'Expired') return byTally('after-expiry');
  if (phase !== 'Pending') return byTally('after-decision');
  // One voice per person, with user names case-folded as the tally compares them.
  const folded = reviewer.username.toLowerCase();
  if ((accessRequest.status?.approvals ?? []).some((counted) => counted.reviewer.toLowerCase() === folded)) return byTally('duplicate');

  // Everything the tally checks about a single review: digest, time against expiresAt, reason.
  const review: Review = { reviewer: asReviewer, decision: submitted.decision, reason: submitted.reason, at: now.toISOString(), commandDigest: submitted.commandDigest };
  const [refused] = tally(request, [review], now).refused;
  if (refused !== undefined) return byTally(refused.why);

  return { allowed: true, patch: [{ op: 'add', path: '/spec/reviewer', value: reviewer }], review };
}
