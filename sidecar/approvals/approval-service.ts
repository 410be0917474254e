// What the PostgreSQL session needs from the approval machinery, as one interface: the Redis-backed
// implementation (redis-approval-service.ts) files requests, verifies reviews and claims approvals;
// the session only decides when to ask and what to do with the answer. Every method fails closed:
// an error means "not approved" to the caller, never "go ahead".
import type { ApprovalRequest, ApprovalSettings, ApprovalStatus, Requester } from '../../policy/approvals/approval-types.ts';

/** What the session knows when a rule says `require-approval`. */
export interface ApprovalAsk {
  readonly requester: Requester;
  readonly target: ApprovalRequest['target'];
  readonly policy: ApprovalRequest['policy'];
  /** The exact statement text (hashed into the digest, never stored). */
  readonly sql: string;
  /** Extended protocol: the bound parameter values as sent (hashed into the digest, never stored). */
  readonly parameters?: readonly (Buffer | null)[];
  readonly command: string;
  readonly fingerprint: string;
  readonly reason?: string;
  readonly settings: ApprovalSettings;
}

export type ApprovalAnswer =
  /** Approved and claimed for this execution (single use), or covered by a window grant. */
  | { readonly outcome: 'approved'; readonly request: ApprovalRequest; readonly status: ApprovalStatus; readonly via: 'claim' | 'window' }
  /** Still pending: return mode answers 57014 with the id; hold mode keeps waiting. */
  | { readonly outcome: 'pending'; readonly request: ApprovalRequest }
  | { readonly outcome: 'denied' | 'expired'; readonly request: ApprovalRequest; readonly status: ApprovalStatus }
  /** Approved earlier but already executed (single use): a new request is needed. */
  | { readonly outcome: 'consumed'; readonly request: ApprovalRequest }
  /** Redis unreachable or a malformed record: refuse (57014) and audit. */
  | { readonly outcome: 'unavailable'; readonly error: string };

export interface ApprovalService {
  /**
   * Files a request for this exact statement, or finds the one already filed for the same digest
   * (a resent statement in return mode), and answers what the statement may do now. A window
   * grant for the same identity, fingerprint, target and gateway answers `approved` via `window`.
   * `created` tells the caller to audit `approval.requested`.
   */
  ask(ask: ApprovalAsk): Promise<ApprovalAnswer & { readonly created?: boolean }>;
  /**
   * Hold mode: waits (Redis pub/sub wake-up plus polling, so a lost message only delays) until the
   * request is decided, `signal` aborts (client cancel), or `deadline` passes; then answers as ask
   * does (an approval is claimed before `approved` is returned).
   */
  wait(request: ApprovalRequest, options: { readonly signal: AbortSignal; readonly deadline: Date }): Promise<ApprovalAnswer>;
  close(): Promise<void>;
}
