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
import type { ReviewerAuthentication, Reviewer } from '../../policy/approvals/approval-types.ts';
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

  /** The reviewer the token names, as of `at`; throws TokenVerificationError when it does not verify. */
  async verify(token: string, at: Date): Promise<Reviewer> {
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
