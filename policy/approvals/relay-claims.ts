// The claims of a review token the operator signs when it relays a Kubernetes AccessReview to the
// sidecar (docs/adr/0011-kubernetes-approvals.md). Shared by the signer (operator/approvals) and the
// verifier (sidecar/approvals/reviewer-verifier.ts) so the two cannot drift apart.
import { createHash } from 'node:crypto';

/** Claim names; the two `custos.io/` claims bind a token to exactly one review of one request. */
export const RELAY_CLAIMS = {
  username: 'username',
  groups: 'groups',
  uid: 'uid',
  request: 'custos.io/request',
  commandDigest: 'custos.io/commandDigest',
  /** The decision and a digest of the reason: the record beside the token cannot flip or reword them. */
  decision: 'custos.io/decision',
  reasonDigest: 'custos.io/reasonDigest',
} as const;

/** The audience of relay tokens: any sidecar trusting the operator's issuer, bound further by the claims above. */
export const RELAY_AUDIENCE = 'custos.io/reviews';

/** How long a relay token is valid after the review it carries (it is verified as of the review time). */
export const RELAY_TOKEN_LIFETIME_SECONDS = 300;

/** What a review token must be bound to (claims absent on an OIDC token: no binding asked of it). */
export interface ReviewBinding {
  readonly request: string;
  readonly commandDigest: string;
  readonly decision: 'approve' | 'deny';
  readonly reason: string;
}

/** `sha256:<hex>` of the reason as UTF-8 (the claim; the reason itself stays in the record). */
export function reasonDigest(reason: string): string {
  return `sha256:${createHash('sha256').update(reason, 'utf8').digest('hex')}`;
}
