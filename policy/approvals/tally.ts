// Decides an approval request from its reviews: the four-eyes checklist of
// reference/identity-and-audit.md §10.4 as one pure function, shared by the sidecar (Redis, local
// mode), the reviewer CLI's pre-checks and the operator. Reviews are taken in the order they were
// recorded (the store's order, not the reviewers' claimed times): that order decides a race
// between an approval and a denial.
import type { ApprovalPhase, ApprovalRequest, ApprovalStatus, Review, ReviewRefusal, Reviewer } from './approval-types.ts';

/**
 * The fields of a request that deciding it reads. Every ApprovalRequest (Redis, local mode) is
 * one; the operator builds one from an AccessRequest (operator/approvals/review-admission.ts).
 */
export interface ReviewableRequest {
  readonly requester: Pick<ApprovalRequest['requester'], 'id' | 'displayName'>;
  readonly commandDigest: string;
  readonly expiresAt: string;
  readonly settings: Pick<ApprovalRequest['settings'], 'reviewers' | 'minApprovals'>;
}

const SERVICE_ACCOUNT_PREFIX = 'system:serviceaccount:';

/** Why this reviewer may never review this request, whatever the review says; undefined if they may. */
export function reviewerRefusal(request: Pick<ReviewableRequest, 'requester' | 'settings'>, reviewer: Reviewer): ReviewRefusal | undefined {
  // Checklist 1: stable ids. A workload's requester id is its SA user name; an OIDC requester's is
  // `iss#sub`, which an OIDC reviewer carries as `id` whatever their user-name claim says.
  if (reviewer.username === request.requester.id || reviewer.id === request.requester.id) return 'self-review';
  // Aliases: the same person through another client or IdP application (Entra ID issues a `sub`
  // per application) shows up under the requester's display name or id in another case.
  const folded = reviewer.username.toLowerCase();
  const requesterNames = [request.requester.id, request.requester.displayName].filter((n): n is string => n !== undefined && n !== '');
  if (requesterNames.some((name) => name.toLowerCase() === folded)) return 'self-review';
  // Checklist 2: workloads and bots (including Custos's own service accounts) never approve.
  if (reviewer.username.startsWith(SERVICE_ACCOUNT_PREFIX)) return 'service-account-reviewer';
  const allowed = request.settings.reviewers;
  const inGroup = reviewer.groups.some((group) => allowed.groups.includes(group));
  if (!inGroup && !allowed.users.includes(reviewer.username)) return 'not-an-allowed-reviewer';
  return undefined;
}

/** Why this review cannot count, looking at the review alone (not at the others). */
function reviewRefusal(request: ReviewableRequest, review: Review, expiresAtMs: number): ReviewRefusal | undefined {
  const byReviewer = reviewerRefusal(request, review.reviewer);
  if (byReviewer !== undefined) return byReviewer;
  if (review.commandDigest !== request.commandDigest) return 'digest-mismatch';
  const at = Date.parse(review.at);
  // An unparseable time is treated as late: it can never make a review count.
  if (!Number.isFinite(at) || at >= expiresAtMs) return 'after-expiry';
  if (review.reason.trim().length === 0) return 'reason-required';
  return undefined;
}

/** The keys one person is known by: the stable id when there is one, and the user name, folded. */
function personKeys(reviewer: Reviewer): string[] {
  return [...(reviewer.id === undefined ? [] : [`id:${reviewer.id}`]), `name:${reviewer.username.toLowerCase()}`];
}

export function tally(request: ReviewableRequest, reviews: readonly Review[], now: Date): ApprovalStatus {
  const expiresAtMs = Date.parse(request.expiresAt);
  const counted: Review[] = [];
  const refused: { review: Review; why: ReviewRefusal }[] = [];
  const approvers = new Set<string>();
  const countedReviewers = new Set<string>();
  let phase: ApprovalPhase = 'Pending';
  let decidedAt: string | undefined;

  for (const review of reviews) {
    if (phase !== 'Pending') {
      refused.push({ review, why: 'after-decision' });
      continue;
    }
    const why = reviewRefusal(request, review, expiresAtMs);
    if (why !== undefined) {
      refused.push({ review, why });
      continue;
    }
    // Checklist 3: one voice per person; the first counted review stands (no changing sides). A
    // person is the same if either the stable id (`iss#sub`) or the user name matches: one token
    // with an email claim and one without must not make two approvers.
    const keys = personKeys(review.reviewer);
    if (keys.some((key) => countedReviewers.has(key))) {
      refused.push({ review, why: 'duplicate' });
      continue;
    }
    for (const key of keys) countedReviewers.add(key);
    counted.push(review);
    if (review.decision === 'deny') {
      // Checklist 5: any eligible deny ends the request.
      phase = 'Denied';
      decidedAt = review.at;
    } else {
      approvers.add(keys[0] ?? review.reviewer.username);
      if (approvers.size >= request.settings.minApprovals) {
        phase = 'Approved';
        decidedAt = review.at;
      }
    }
  }

  // Checklist 6: undecided at expiry means expired (and never executed); a NaN expiry is expired.
  if (phase === 'Pending' && !(now.getTime() < expiresAtMs)) {
    phase = 'Expired';
    decidedAt = request.expiresAt;
  }
  return { phase, counted, refused, ...(decidedAt === undefined ? {} : { decidedAt }) };
}
