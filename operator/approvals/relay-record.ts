// The Redis review record the operator writes for an admitted AccessReview: the local-mode shape
// (sidecar/approvals/approval-records.ts) with a token the operator signs in place of the
// reviewer's own, naming the reviewer the API server authenticated and bound to this one request
// and digest (policy/approvals/relay-claims.ts). The sidecar verifies it like any review token, so
// writing to Redis is still not enough to invent a reviewer.
import { SignJWT, type CryptoKey } from 'jose';
import type { AccessReview } from '../../crds/generated/access-review.ts';
import { serializeReviewRecord } from '../../sidecar/approvals/approval-records.ts';
import { reasonDigest, RELAY_AUDIENCE, RELAY_CLAIMS, RELAY_TOKEN_LIFETIME_SECONDS } from '../../policy/approvals/relay-claims.ts';

export interface RelaySigner {
  readonly issuer: string;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  /** The matching public key (admission stamps are verified with it before a review is relayed). */
  readonly publicKey: CryptoKey;
}

/** The review record (JSON text) for `review`; its time is when the API server admitted it. */
export async function relayRecord(review: AccessReview, signer: RelaySigner): Promise<string> {
  const at = review.metadata.creationTimestamp;
  const uid = review.metadata.uid;
  if (at === undefined || uid === undefined) throw new Error('an AccessReview without creationTimestamp or uid was not admitted by an API server');
  const atSeconds = Math.floor(Date.parse(at) / 1000);
  const { reviewer, requestName, commandDigest } = review.spec;
  const token = await new SignJWT({
    [RELAY_CLAIMS.username]: reviewer.username,
    [RELAY_CLAIMS.groups]: [...reviewer.groups],
    ...(reviewer.uid ? { [RELAY_CLAIMS.uid]: reviewer.uid } : {}),
    [RELAY_CLAIMS.request]: requestName,
    [RELAY_CLAIMS.commandDigest]: commandDigest,
    [RELAY_CLAIMS.decision]: review.spec.decision,
    [RELAY_CLAIMS.reasonDigest]: reasonDigest(review.spec.reason),
  })
    .setProtectedHeader({ alg: 'ES256', kid: signer.kid, typ: 'JWT' })
    .setIssuer(signer.issuer)
    .setAudience(RELAY_AUDIENCE)
    .setSubject(reviewer.username)
    .setJti(uid)
    .setIssuedAt(atSeconds)
    .setExpirationTime(atSeconds + RELAY_TOKEN_LIFETIME_SECONDS)
    .sign(signer.privateKey);
  return serializeReviewRecord({ decision: review.spec.decision, reason: review.spec.reason, at, commandDigest, token });
}
