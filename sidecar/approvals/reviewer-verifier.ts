// Establishes who wrote a review in local mode: the review carries the reviewer's own OIDC token,
// verified here with the same machinery as callers' tokens (sidecar/identity: IssuerKeys with its
// serve-stale JWKS, createTokenVerifier with every jose option pinned), against the policy's
// `spec.reviewerAuthentication`. Nothing a requester or a Redis writer controls names the reviewer.
//
// The token is verified *as of the review's time*, not now: a return-mode client may resend its
// statement long after the reviewer's short-lived token expired, and the review must still count.
// What stops a reviewer (or anyone) from backdating a review with an old token is that the token
// had to be valid at that instant (exp, nbf, iat ≤ at, at − iat ≤ maxTokenAgeSeconds) and that the
// service only accepts review times between the request's creation and now.
//
// Kubernetes reviews arrive as tokens the operator signs (`kind: kubernetes-relay`, ADR 0011): the
// reviewer is whom the API server authenticated, and the token names the one request and digest it
// was signed for, so it cannot be moved to another request or flipped onto another statement. An
// OIDC token that carries the same binding claims is held to them too.
import type { ReviewerAuthentication, Reviewer } from '../../policy/approvals/approval-types.ts';
import { reasonDigest, RELAY_CLAIMS, type ReviewBinding } from '../../policy/approvals/relay-claims.ts';
import { IssuerKeys, type JwksRefreshEvent } from '../identity/issuer-keys.ts';
import {
  createTokenVerifier, DEFAULT_CLOCK_TOLERANCE_SECONDS, ERR_AUTH_TOKEN_INVALID, TokenVerificationError, type TokenKeySource,
} from '../identity/token-verifier.ts';

export interface ReviewerVerifierOptions {
  /** A key source for the issuer; default: an IssuerKeys over `jwksFile` or `jwksUri`. */
  readonly keys?: TokenKeySource;
  readonly clockToleranceSeconds?: number;
  /** JWKS refresh outcomes (failures are worth a warning). */
  readonly onKeysRefresh?: (event: JwksRefreshEvent) => void;
}

export class ReviewerVerifier {
  readonly authentication: ReviewerAuthentication;
  readonly #keys: TokenKeySource;
  readonly #holder: IssuerKeys | undefined;
  readonly #clockTolerance: number;

  constructor(authentication: ReviewerAuthentication, options: ReviewerVerifierOptions = {}) {
    this.authentication = authentication;
    this.#clockTolerance = options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
    if (options.keys !== undefined) {
      this.#keys = options.keys;
    } else {
      const source = authentication.jwksFile !== undefined
        ? { kind: 'file' as const, path: authentication.jwksFile }
        : { kind: 'url' as const, url: authentication.jwksUri ?? '' };
      this.#holder = new IssuerKeys({
        issuer: authentication.issuer, source, ...(options.onKeysRefresh === undefined ? {} : { onRefresh: options.onKeysRefresh }),
      });
      this.#keys = this.#holder;
    }
  }

  /** Loads the reviewer issuer's keys (a failed first load leaves reviews uncounted, not an error). */
  async start(): Promise<void> {
    await this.#holder?.start();
  }

  stop(): void {
    this.#holder?.stop();
  }

  /**
   * The reviewer the token names, as of `at`, for the review of `binding`; throws
   * TokenVerificationError when it does not verify or is bound to another request or digest.
   */
  async verify(token: string, at: Date, binding: ReviewBinding): Promise<Reviewer> {
    const atMs = at.getTime();
    const auth = this.authentication;
    const verifier = createTokenVerifier({
      issuers: [{
        issuer: auth.issuer, audience: auth.audience, maxTokenAgeSeconds: auth.maxTokenAgeSeconds,
        clockToleranceSeconds: this.#clockTolerance, keys: this.#keys,
      }],
      clock: () => atMs,
    });
    const principal = await verifier.verify(token, 'caller');
    const iat = principal.claims['iat'];
    // jose bounds the token's age but not an `iat` after the review: a token minted later than the
    // review claims to have happened is a backdated review.
    if (typeof iat !== 'number' || iat > atMs / 1000 + this.#clockTolerance) {
      throw new TokenVerificationError(ERR_AUTH_TOKEN_INVALID, 'issued-in-future', 'token invalid: issued after the review time');
    }
    checkBinding(principal.claims, binding, auth.kind === 'kubernetes-relay');
    if (auth.kind === 'kubernetes-relay') {
      // The operator signs at the review's admission time: a record whose `at` was moved (to
      // reorder a race, or to dodge the expiry) no longer matches its token.
      if (Math.abs(iat - Math.floor(atMs / 1000)) > 1) throw bindingMismatch('issued for another review time');
      return relayedReviewer(principal.claims);
    }
    const id = `${principal.issuer}#${principal.subject}`;
    if (principal.kubernetes !== undefined) {
      // A service-account token from the reviewer issuer: keep its SA user name so the tally
      // refuses it as a workload (checklist 2) instead of letting a claim make it look human.
      return { username: principal.subject, groups: [], id, via: 'oidc' };
    }
    const named = principal.claims[auth.usernameClaim];
    const username = typeof named === 'string' && named.length > 0 ? named : principal.subject;
    const claimedGroups = principal.claims[auth.groupsClaim];
    const groups = Array.isArray(claimedGroups) ? claimedGroups.filter((g): g is string => typeof g === 'string') : [];
    return { username, groups, id, via: 'oidc' };
  }
}

function bindingMismatch(detail: string): TokenVerificationError {
  return new TokenVerificationError(ERR_AUTH_TOKEN_INVALID, 'invalid-claim', `token invalid: ${detail}`);
}

/**
 * Relay tokens must name this request, digest, decision and reason (so a Redis writer can neither
 * move a review nor flip or reword it); any token that names one of them must name these.
 */
function checkBinding(claims: Readonly<Record<string, unknown>>, binding: ReviewBinding, required: boolean): void {
  const request = claims[RELAY_CLAIMS.request];
  const digest = claims[RELAY_CLAIMS.commandDigest];
  const decision = claims[RELAY_CLAIMS.decision];
  const reason = claims[RELAY_CLAIMS.reasonDigest];
  if (required && (request === undefined || digest === undefined || decision === undefined || reason === undefined)) throw bindingMismatch('not bound to a request');
  if (request !== undefined && request !== binding.request) throw bindingMismatch('issued for another request');
  if (digest !== undefined && digest !== binding.commandDigest) throw bindingMismatch('issued for another statement');
  if (decision !== undefined && decision !== binding.decision) throw bindingMismatch('issued for another decision');
  if (reason !== undefined && reason !== reasonDigest(binding.reason)) throw bindingMismatch('issued for another reason');
}

/** The reviewer as the Kubernetes API server authenticated them, from an operator-signed token. */
function relayedReviewer(claims: Readonly<Record<string, unknown>>): Reviewer {
  const username = claims[RELAY_CLAIMS.username];
  const groups = claims[RELAY_CLAIMS.groups];
  const uid = claims[RELAY_CLAIMS.uid];
  if (typeof username !== 'string' || username === '' || !Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) {
    throw bindingMismatch('relay token without a reviewer');
  }
  return { username, groups: groups, ...(typeof uid === 'string' && uid !== '' ? { id: uid } : {}), via: 'kubernetes' };
}
