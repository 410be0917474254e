// The audit event: versioned, one JSON object per event, identical in the local spool, the Redis
// stream and session archives. Field names follow reference/identity-and-audit.md §5.
// Events never carry literals, passwords, tokens or unmasked values: commands are normalized text
// plus a fingerprint, and the raw statement only ever appears as a SHA-256 digest.

export const AUDIT_SCHEMA_VERSION = '1.0.0';

export type AuditEventType =
  | 'gateway.start'
  | 'gateway.stop'
  | 'session.start'
  | 'session.end'
  | 'authn.failure'
  | 'db.query.attempt'
  | 'db.query.result'
  | 'audit.degraded'
  | 'audit.gap'
  | 'approval.requested'
  | 'approval.decided'
  | 'approval.executed'
  | 'approval.expired'
  | 'approval.cancelled';

export interface AuditActor {
  readonly type: 'workload' | 'bot' | 'human' | 'unknown';
  /** `iss` + ` ` + `sub` of the verified principal; absent when authentication failed. */
  readonly id?: string;
  readonly auth?: {
    readonly method: 'k8s-sa' | 'oidc' | 'local' | 'none';
    readonly issuer?: string;
    readonly jti?: string;
    readonly expires_at?: string;
  };
  readonly k8s?: {
    readonly namespace?: string;
    readonly serviceaccount?: string;
    readonly sa_uid?: string;
    readonly pod?: string;
    readonly pod_uid?: string;
    readonly node?: string;
  };
  /** Caller claims that explain why (CI run, ticket, agent task), chosen by allow-list. */
  readonly claims?: Readonly<Record<string, string>>;
  /** The workload the caller's connection came from, when both identities are present. */
  readonly workload_id?: string;
}

export interface AuditTarget {
  readonly kind: 'postgres';
  readonly name: string;
  readonly host?: string;
  readonly port?: number;
  readonly database?: string;
  readonly db_user?: string;
}

export interface AuditCommand {
  /** Normalized text: constants replaced by $n. */
  readonly text: string;
  readonly fingerprint?: string;
  /** SHA-256 hex of the exact statement bytes; approvals bind to it. */
  readonly digest: string;
  readonly protocol: 'simple' | 'extended' | 'copy';
  readonly statement_name?: string;
  readonly kinds?: readonly string[];
  readonly objects?: readonly string[];
}

export interface AuditPolicy {
  readonly name: string;
  readonly version: string;
  readonly rule: string | null;
  readonly decision: 'allow' | 'deny' | 'require_approval';
  readonly reason: string;
}

export interface AuditResult {
  readonly rows?: number;
  readonly command_tag?: string;
  readonly sqlstate?: string;
  readonly duration_ms?: number;
  readonly bytes?: number;
}

/** One reviewer's counted review, as the approval store reported it (never a token). */
export interface AuditApprovalReview {
  readonly username: string;
  readonly decision: 'approve' | 'deny';
  readonly reason: string;
  readonly at: string;
}

/**
 * An approval request an event is about (approval.* events, and the refusals they explain). Links
 * every step of one request by `id`; `digest` is the request's `sha256:` command digest.
 */
export interface AuditApproval {
  readonly id: string;
  readonly mode: 'hold' | 'return';
  readonly digest: string;
  /** Pending, Approved, Denied, Expired (the request's phase when the event was written). */
  readonly phase: string;
  readonly reviewers: readonly AuditApprovalReview[];
  /** approval.requested: when the request expires and how many approvals it needs. */
  readonly expires_at?: string;
  readonly min_approvals?: number;
  /** approval.executed: `claim` (single use) or `window` (a granted time window). */
  readonly via?: 'claim' | 'window';
}

/** What the data path hands to the audit log; the log adds ordering and integrity fields. */
export interface AuditEventDraft {
  readonly event_type: AuditEventType;
  /** When the action happened (RFC 3339 UTC). */
  readonly time: string;
  readonly session_id?: string;
  readonly actor?: AuditActor;
  readonly target?: AuditTarget;
  readonly src?: { readonly ip?: string; readonly port?: number };
  readonly operation?: string;
  readonly command?: AuditCommand;
  readonly policy?: AuditPolicy;
  /** ECS semantics: allow/deny lives in policy.decision. */
  readonly outcome?: 'success' | 'failure' | 'unknown';
  readonly result?: AuditResult;
  /** The caller's stated reason (application_name, SET custos.reason). */
  readonly reason?: string;
  /** Links an attempt to its result. */
  readonly attempt_id?: string;
  /**
   * Masking applied to the results: values masked per `column:<output name>` and
   * `detector:<name>` (counts only, never values), or that the caller is exempt (sees clear values).
   */
  readonly masking?: { readonly exempt?: boolean; readonly masked?: Readonly<Record<string, number>> };
  /** The just-in-time approval request this event belongs to (never statement literals or tokens). */
  readonly approval?: AuditApproval;
  readonly message?: string;
}

export interface AuditEvent extends AuditEventDraft {
  readonly schema_version: string;
  /** UUIDv7; the idempotency key consumers dedupe on. */
  readonly event_id: string;
  readonly observed_time: string;
  readonly gateway_id: string;
  readonly boot_id: string;
  /** Monotonic per (gateway_id, boot_id) from 1; a gap means loss. */
  readonly seq: number;
  /** Monotonic per session from 1 (gateway-level events use session `gateway:<boot_id>`). */
  readonly session_seq: number;
  /** Per-session hash chain: hash = SHA-256(prev_hash ‖ JCS(event without hash)). */
  readonly prev_hash: string;
  readonly hash: string;
}

/** The append side of the audit log, as the data path sees it. */
export interface AuditLog {
  /**
   * Assigns ordering and chain fields, appends the event to the durable local spool and resolves
   * once it is on disk (group-committed fsync). Rejects with an AuditSpoolFullError when the
   * spool is at capacity: the caller must then refuse the command (no audit, no access).
   */
  append(draft: AuditEventDraft): Promise<AuditEvent>;
  /** True while new appends would be refused. */
  readonly full: boolean;
}
