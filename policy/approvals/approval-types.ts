// Just-in-time approval: the shared vocabulary of the policy compiler (which settings a
// `require-approval` rule carries), the sidecar (which files, holds and executes requests), the
// approval store (Redis) and the reviewers' tools (`custos approvals …`, later the operator and
// `kubectl custos`). Pure types only; the rules that decide a request live in tally.ts.
// Background: reference/identity-and-audit.md §10 (Teleport, hoop.dev, the four-eyes checklist).

/** What a `require-approval` rule's `approval` block compiles to (defaults applied, bounds checked). */
export interface ApprovalSettings {
  /** Who may review: Kubernetes/OIDC group names and user names; at least one entry overall. */
  readonly reviewers: { readonly groups: readonly string[]; readonly users: readonly string[] };
  /** Distinct eligible approvals needed (default 1). Any eligible deny ends the request. */
  readonly minApprovals: number;
  /** `hold`: the client waits; `return`: 57014 at once, the identical statement runs once approved. */
  readonly mode: 'hold' | 'return';
  /** hold: the longest a statement waits (default 300 s, at most 3600 s, never past the request's expiry). */
  readonly holdTimeoutSeconds: number;
  /** How long a request stays reviewable (default 3600 s, at most 86400 s). */
  readonly ttlSeconds: number;
  /**
   * `once`: the approval runs exactly one execution of exactly that statement (default).
   * `window`: for `windowSeconds` (at most 28800) the same identity may run statements with the
   * same fingerprint on the same pod and target without asking again.
   */
  readonly grant: { readonly scope: 'once' } | { readonly scope: 'window'; readonly windowSeconds: number };
}

/**
 * How reviewers authenticate in local mode (no Kubernetes): an OIDC token from this issuer. The
 * sidecar verifies every review's token itself, so a review cannot be forged by someone who can
 * only write to Redis. Declared once per policy (`spec.reviewerAuthentication`).
 */
export interface ReviewerAuthentication {
  /**
   * `oidc` (default): reviewers' own tokens, claims as configured. `kubernetes-relay`: tokens the
   * Custos operator signs for reviews the Kubernetes API server authenticated (AccessReview, ADR
   * 0011); the reviewer is in the `username`, `groups` and `uid` claims, and every token is bound
   * to one request and one command digest (relay-claims.ts).
   */
  readonly kind?: 'oidc' | 'kubernetes-relay';
  readonly issuer: string;
  readonly audience: string;
  readonly jwksUri?: string;
  readonly jwksFile?: string;
  /** Claim holding the reviewer's user name (default `email`, falling back to `sub`). */
  readonly usernameClaim: string;
  /** Claim holding the reviewer's groups (default `groups`). */
  readonly groupsClaim: string;
  /** A review token older than this is refused (default 600 s). */
  readonly maxTokenAgeSeconds: number;
}

/** The identity that asked: compared for four-eyes checks by `id`. */
export interface Requester {
  /** `system:serviceaccount:<ns>:<name>` for workloads, `<issuer>#<subject>` for OIDC callers. */
  readonly id: string;
  readonly kind: 'ServiceAccount' | 'OIDC';
  readonly displayName?: string;
}

/** One request, as filed by the sidecar. Immutable once filed. */
export interface ApprovalRequest {
  /** `ar-` + 12 lowercase base32 characters (a valid Kubernetes object name). */
  readonly id: string;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly requester: Requester;
  /** Where the statement would run: the sidecar (gateway) that holds it, bound into the digest. */
  readonly gateway: { readonly id: string; readonly namespace?: string; readonly pod?: string; readonly podUid?: string };
  readonly target: { readonly name: string; readonly protocol: 'postgres'; readonly database?: string; readonly user?: string };
  readonly policy: { readonly name: string; readonly namespace?: string; readonly version: string; readonly rule: string };
  /** Normalized statement text (constants as $n): what reviewers read; never the literals. */
  readonly command: string;
  /** The statement's fingerprint (window grants match on it). */
  readonly fingerprint: string;
  /** `sha256:<hex>` of approvalDigest(): the exact statement, parameters, target, user, requester, gateway. */
  readonly commandDigest: string;
  /** The caller's stated reason (application_name or `SET custos.reason`), if any. */
  readonly reason?: string;
  readonly settings: ApprovalSettings;
  /**
   * Local mode: the issuer and audience a review token must have for the sidecar that filed the
   * request to count it (from `spec.reviewerAuthentication`), so the reviewer CLI can refuse a
   * token the sidecar would ignore. Informational: the sidecar verifies against its own policy.
   */
  readonly reviewerAuthentication?: { readonly issuer: string; readonly audience: string };
}

/** A reviewer as established by an authenticator: the API server's userInfo, or a verified OIDC token. */
export interface Reviewer {
  readonly username: string;
  readonly groups: readonly string[];
  /** OIDC: `<issuer>#<subject>` (compared with OIDC requesters); Kubernetes: the user's UID if any. */
  readonly id?: string;
  readonly via: 'kubernetes' | 'oidc';
}

export interface Review {
  readonly reviewer: Reviewer;
  readonly decision: 'approve' | 'deny';
  readonly reason: string;
  readonly at: string;
  /** The digest the reviewer saw; a review for another digest never counts. */
  readonly commandDigest: string;
}

export type ApprovalPhase = 'Pending' | 'Approved' | 'Denied' | 'Expired';

/** Why a review was not counted (stable strings, shown to reviewers and recorded in audit events). */
export type ReviewRefusal =
  | 'self-review'
  | 'service-account-reviewer'
  | 'not-an-allowed-reviewer'
  | 'digest-mismatch'
  | 'after-expiry'
  | 'after-decision'
  | 'duplicate'
  | 'reason-required';

export interface ApprovalStatus {
  readonly phase: ApprovalPhase;
  /** Reviews that counted, in order. */
  readonly counted: readonly Review[];
  readonly refused: readonly { readonly review: Review; readonly why: ReviewRefusal }[];
  /** When the phase was reached (the deciding review's time, or expiresAt). */
  readonly decidedAt?: string;
}
