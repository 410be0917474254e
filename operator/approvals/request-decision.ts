// What the controller writes back to Kubernetes for one request: the AccessRequest's status and each
// AccessReview's verdict. Decided by the same `tally` the sidecar runs, over the reviews in the order
// they were relayed to Redis (the order the sidecar sees), so `kubectl custos describe` says what
// the sidecar will do. The sidecar remains the authority: it re-verifies every relayed token.
import type { AccessRequest, AccessRequestStatus } from '../../crds/generated/access-request.ts';
import type { AccessReview, AccessReviewStatus } from '../../crds/generated/access-review.ts';
import type { Review } from '../../policy/approvals/approval-types.ts';
import { tally } from '../../policy/approvals/tally.ts';
import { reviewableFromAccessRequest, reviewFromAccessReview } from './review-admission.ts';

export interface RequestDecision {
  readonly status: AccessRequestStatus;
  /** Verdict per AccessReview name. */
  readonly reviews: ReadonlyMap<string, AccessReviewStatus>;
}

/** What the sidecars recorded for a request: it ran (`executedAt`), or a sidecar saw it end. */
export type RequestClaim = { readonly executedAt: string } | { readonly ended: 'Denied' | 'Expired' };

/**
 * `reviews` in relay order (those of this request only). `claim`: the sidecars' record, which
 * settles the phase: executed, or ended Denied/Expired whatever later reviews say.
 */
export function decideRequest(request: AccessRequest, reviews: readonly AccessReview[], now: Date, claim?: RequestClaim | string): RequestDecision {
  const recorded: RequestClaim | undefined = typeof claim === 'string' ? { executedAt: claim } : claim;
  const byReview = new Map<Review, AccessReview>();
  const inputs = reviews.map((object) => {
    const review = reviewFromAccessReview(object);
    byReview.set(review, object);
    return review;
  });
  const result = tally(reviewableFromAccessRequest(request), inputs, now);
  const verdicts = new Map<string, AccessReviewStatus>();
  for (const review of result.counted) verdicts.set(nameOf(byReview.get(review)), { counted: true });
  for (const { review, why } of result.refused) verdicts.set(nameOf(byReview.get(review)), { counted: false, refusal: why });
  const executed = result.phase === 'Approved' && recorded !== undefined && 'executedAt' in recorded;
  const ended = recorded !== undefined && 'ended' in recorded ? recorded.ended : undefined;
  const status: AccessRequestStatus = {
    phase: executed ? 'Executed' : ended ?? result.phase,
    ...(result.decidedAt === undefined ? {} : { decidedAt: result.decidedAt }),
    approvals: result.counted.map((review) => {
      const name = byReview.get(review)?.metadata.name;
      return {
        reviewer: review.reviewer.username,
        decision: review.decision,
        reason: review.reason,
        at: review.at,
        ...(name === undefined ? {} : { decisionRef: name }),
      };
    }),
  };
  return { status, reviews: verdicts };
}

function nameOf(review: AccessReview | undefined): string {
  return review?.metadata.name ?? '';
}

/** Whether the status already says what `next` says (no write needed). */
export function sameRequestStatus(current: AccessRequestStatus | undefined, next: AccessRequestStatus): boolean {
  return JSON.stringify(comparable(current)) === JSON.stringify(comparable(next));
}

function comparable(status: AccessRequestStatus | undefined): unknown {
  return [status?.phase, status?.decidedAt, (status?.approvals ?? []).map((a) => [a.reviewer, a.decision, a.reason, a.at, a.decisionRef])];
}
