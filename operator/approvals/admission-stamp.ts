// Proof that an AccessReview passed the review webhook as the API server finally stored it
// (docs/adr/0011-kubernetes-approvals.md). The webhook signs, with the operator's review key, what
// it admitted — namespace, request, decision, digest, reason and the reviewer it stamped — into an
// annotation; the relay signs a review token only for a review whose stamp verifies and still
// matches the object. A review created while the webhook was bypassed (its configuration edited
// or missing) has no stamp, and one a later mutating webhook rewrote (say, spec.reviewer) no
// longer matches: neither is ever relayed.
import { jwtVerify, SignJWT } from 'jose';
import type { AccessReview } from '../../crds/generated/access-review.ts';
import { reasonDigest } from '../../policy/approvals/relay-claims.ts';
import type { RelaySigner } from './relay-record.ts';

export const ADMISSION_STAMP_ANNOTATION = 'custos.io/admission-stamp';
const STAMP_AUDIENCE = 'custos.io/admission-stamp';

/** What the webhook admitted, in the form both sides compare. */
export interface StampedReview {
  readonly namespace: string;
  readonly requestName: string;
  readonly decision: 'approve' | 'deny';
  readonly commandDigest: string;
  readonly reason: string;
  readonly reviewer: { readonly username: string; readonly groups: readonly string[]; readonly uid?: string };
}

function claimsOf(review: StampedReview): Record<string, unknown> {
  return {
    ns: review.namespace,
    request: review.requestName,
    decision: review.decision,
    digest: review.commandDigest,
    reason: reasonDigest(review.reason),
    username: review.reviewer.username,
    groups: [...review.reviewer.groups].sort(),
    uid: review.reviewer.uid ?? '',
  };
}

export async function signAdmissionStamp(review: StampedReview, signer: RelaySigner, now: Date): Promise<string> {
  return new SignJWT(claimsOf(review))
    .setProtectedHeader({ alg: 'ES256', kid: signer.kid, typ: 'JWT' })
    .setIssuer(signer.issuer)
    .setAudience(STAMP_AUDIENCE)
    .setIssuedAt(Math.floor(now.getTime() / 1000))
    .sign(signer.privateKey);
}

/** Why the stored review cannot be relayed, or undefined when its stamp verifies and matches it. */
export async function stampProblem(review: AccessReview, signer: Pick<RelaySigner, 'issuer' | 'publicKey'>): Promise<string | undefined> {
  const stamp = review.metadata.annotations?.[ADMISSION_STAMP_ANNOTATION];
  if (stamp === undefined) return 'no admission stamp (created while the review webhook was bypassed?)';
  let claims: Record<string, unknown>;
  try {
    ({ payload: claims } = await jwtVerify(stamp, signer.publicKey, { issuer: signer.issuer, audience: STAMP_AUDIENCE, algorithms: ['ES256'] }));
  } catch {
    return 'admission stamp does not verify';
  }
  const expected = claimsOf({
    namespace: review.metadata.namespace ?? '',
    requestName: review.spec.requestName,
    decision: review.spec.decision,
    commandDigest: review.spec.commandDigest,
    reason: review.spec.reason,
    reviewer: review.spec.reviewer,
  });
  for (const [key, value] of Object.entries(expected)) {
    if (JSON.stringify(claims[key]) !== JSON.stringify(value)) return `the stored review differs from what was admitted (${key})`;
  }
  return undefined;
}
