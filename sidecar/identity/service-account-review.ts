// Is the pod's service account still valid? The projected token is verified offline (JWKS), and a
// deleted service account's token keeps a valid signature until it expires; only the API server
// knows it is gone. It answers a SelfSubjectReview made with the pod's API token with 401 once the
// service account (or the pod it is bound to) is deleted: the bound token dies with its objects.
// This file is the decision alone; service-account-liveness.ts asks the API server.

/** What one SelfSubjectReview POST came back with. */
export type ReviewOutcome =
  | { readonly kind: 'response'; readonly status: number; readonly body: unknown }
  | { readonly kind: 'unreachable'; readonly error: string };

/** What the outcome says about the service account. `unknown` keeps the last state. */
export type ReviewVerdict =
  | { readonly kind: 'valid' }
  | { readonly kind: 'revoked'; readonly why: string }
  | { readonly kind: 'unknown'; readonly why: string };

export const SERVICE_ACCOUNT_REVOKED_MESSAGE = 'the pod\'s service account is no longer valid';

function usernameOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const status = (body as { status?: unknown }).status;
  if (typeof status !== 'object' || status === null) return undefined;
  const userInfo = (status as { userInfo?: unknown }).userInfo;
  if (typeof userInfo !== 'object' || userInfo === null) return undefined;
  const username = (userInfo as { username?: unknown }).username;
  return typeof username === 'string' ? username : undefined;
}

function messageOf(body: unknown): string {
  const message = typeof body === 'object' && body !== null ? (body as { message?: unknown }).message : undefined;
  return typeof message === 'string' ? message : '';
}

/**
 * `expectedUsername` is the pod's service account as its verified projected token names it
 * (`system:serviceaccount:<namespace>:<name>`), undefined while that token was never verified.
 */
export function judgeReview(outcome: ReviewOutcome, expectedUsername: string | undefined): ReviewVerdict {
  if (outcome.kind === 'unreachable') return { kind: 'unknown', why: `API server unreachable: ${outcome.error}` };
  const { status, body } = outcome;
  if (status === 401) return { kind: 'revoked', why: `${SERVICE_ACCOUNT_REVOKED_MESSAGE} (the API server no longer accepts its token: 401 Unauthorized)` };
  // A 403 is an authorization answer, so the token itself was accepted: only one that says the
  // account is gone (e.g. from an authorizer webhook) revokes; an RBAC refusal tells us nothing.
  if (status === 403) {
    return /not found|no longer exists|deleted/i.test(messageOf(body))
      ? { kind: 'revoked', why: `${SERVICE_ACCOUNT_REVOKED_MESSAGE} (403: ${messageOf(body).slice(0, 200)})` }
      : { kind: 'unknown', why: 'the API server refused the SelfSubjectReview (403)' };
  }
  if (status === 201 || status === 200) {
    const username = usernameOf(body);
    if (username === undefined) return { kind: 'unknown', why: 'the SelfSubjectReview answer has no status.userInfo.username' };
    if (expectedUsername !== undefined && username !== expectedUsername) {
      return { kind: 'revoked', why: `${SERVICE_ACCOUNT_REVOKED_MESSAGE} (the API token authenticates as ${username.slice(0, 200)}, not ${expectedUsername})` };
    }
    return { kind: 'valid' };
  }
  return { kind: 'unknown', why: `the API server answered the SelfSubjectReview with HTTP ${status}` };
}

/** The state after a verdict: `unknown` (network errors, 5xx, 404 of an old API server) keeps the last one. */
export function nextRevocation(previous: string | undefined, verdict: ReviewVerdict): string | undefined {
  switch (verdict.kind) {
    case 'valid': return undefined;
    case 'revoked': return verdict.why;
    case 'unknown': return previous;
  }
}
