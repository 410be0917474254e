// What a statement under a `require-approval` decision may do (DESIGN.md §3 "Approvals"): the
// session asks the approval service, then runs the statement only on an answer `approved`; every
// other ending is a 57014 refusal the session substitutes as for any block (ADR 0004), so the
// transaction and the extended-protocol batch stay in step with the server. Every step is audited,
// linked by the request id, with the normalized statement and digests only (never literals).
//
//   created                → approval.requested
//   approved (claim/window) → approval.executed (must be on disk before the statement runs)
//   pending, return mode   → 57014 naming the request and how to approve it
//   pending, hold mode     → wait until min(holdTimeout, expiry), a cancel or a disconnect
//   denied                 → 57014 naming the denying reviewer and reason, approval.decided
//   expired / hold timeout → 57014, approval.expired
//   cancelled              → 57014 "canceling statement due to user request", approval.cancelled
//   consumed               → one fresh ask (a single-use approval is spent), else 57014
//   unavailable            → 57014 "approval service unavailable" (naming the request once it is known)
//
// An approved statement still runs only if, after the claim, no cancel or disconnect arrived and
// `beforeRun` (the session: still open, caller still valid, the current policy still decides the
// same) has no objection; approval.executed is written last, right before the statement runs.
import type { AuditApproval, AuditEventType } from '../../../audit/event.ts';
import type { ApprovalRequest, ApprovalStatus } from '../../../policy/approvals/approval-types.ts';
import type { ApprovalAnswer, ApprovalAsk, ApprovalService } from '../../approvals/approval-service.ts';
import type { Refusal } from './substitute-statement.ts';

export type ApprovalEventType = Extract<AuditEventType, `approval.${string}`>;

export interface ApprovalEvent {
  readonly type: ApprovalEventType;
  readonly outcome: 'success' | 'failure' | 'unknown';
  readonly approval?: AuditApproval;
  readonly message?: string;
}

export interface ApprovalGateInput {
  readonly ask: ApprovalAsk;
  /** The rule that asked (for messages). */
  readonly rule: string;
  /** Aborted by a CancelRequest for this session ('cancel') or the client going away ('disconnect'). */
  readonly signal: AbortSignal;
  readonly now: () => number;
  /**
   * Last check before an approved statement runs (the session still open, the caller's token still
   * valid, the policy in force now still asking for this approval); a refusal stops it.
   */
  readonly beforeRun?: () => Refusal | undefined;
  /** Appends an approval event; resolves false when the audit log refused it. */
  readonly record: (event: ApprovalEvent) => Promise<boolean>;
}

export type ApprovalVerdict =
  | { readonly kind: 'run'; readonly approval: AuditApproval }
  | { readonly kind: 'refuse'; readonly refusal: Refusal };

/**
 * The command a reviewer runs, as the refusal tells the requester: in a cluster (the request names
 * the pod's namespace, where the operator materialises it) the kubectl plugin, else the local CLI.
 */
export function approveCommand(request: Pick<ApprovalRequest, 'id' | 'gateway'>): string {
  const namespace = request.gateway.namespace;
  return namespace === undefined || namespace === ''
    ? `custos approvals approve ${request.id} --reason "<why>"`
    : `kubectl custos approve ${request.id} -n ${namespace} --reason "<why>"`;
}

export async function passApprovalGate(service: ApprovalService, input: ApprovalGateInput): Promise<ApprovalVerdict> {
  let answer: ApprovalAnswer & { readonly created?: boolean } = await askSafely(service, input.ask);
  if (answer.outcome === 'consumed') {
    // A single-use approval was spent by an earlier execution: this run needs a request of its own.
    await input.record({ type: 'approval.decided', outcome: 'failure', approval: spentApproval(answer.request), message: 'approval already used: a new request is needed' });
    answer = await askSafely(service, input.ask);
  }
  if (answer.outcome !== 'unavailable' && answer.outcome !== 'consumed' && answer.created === true) {
    await input.record({ type: 'approval.requested', outcome: 'unknown', approval: requestedApproval(answer.request) });
  }
  if (answer.outcome === 'pending' && answer.request.settings.mode === 'hold') {
    return conclude(await holdFor(service, answer.request, input), input);
  }
  return conclude(answer, input);
}

async function askSafely(service: ApprovalService, ask: ApprovalAsk): Promise<ApprovalAnswer & { readonly created?: boolean }> {
  try {
    return await service.ask(ask);
  } catch (e: unknown) {
    return { outcome: 'unavailable', error: e instanceof Error ? e.message : String(e) };
  }
}

type HoldAnswer =
  | Exclude<ApprovalAnswer, { readonly outcome: 'unavailable' }>
  | { readonly outcome: 'cancelled' | 'timeout'; readonly request: ApprovalRequest }
  /** The service failed; `request` when it failed after the request was known (audited with its id). */
  | { readonly outcome: 'unavailable'; readonly error: string; readonly request?: ApprovalRequest };

async function holdFor(service: ApprovalService, request: ApprovalRequest, input: ApprovalGateInput): Promise<HoldAnswer> {
  const holdUntil = input.now() + request.settings.holdTimeoutSeconds * 1000;
  const deadline = new Date(Math.min(holdUntil, Date.parse(request.expiresAt)));
  if (input.signal.aborted) return { outcome: 'cancelled', request };
  let answer: ApprovalAnswer;
  try {
    answer = await service.wait(request, { signal: input.signal, deadline });
  } catch (e: unknown) {
    if (isAborted(input.signal)) return { outcome: 'cancelled', request };
    return { outcome: 'unavailable', error: e instanceof Error ? e.message : String(e), request };
  }
  // An abort wins over whatever the wait answered, an approval already claimed included: the claim
  // is spent, but the client that asked has cancelled or gone (conclude checks again after this).
  if (isAborted(input.signal)) return { outcome: 'cancelled', request };
  if (answer.outcome === 'pending') return { outcome: 'timeout', request };
  if (answer.outcome === 'unavailable') return { ...answer, request };
  return answer;
}

async function conclude(answer: HoldAnswer, input: ApprovalGateInput): Promise<ApprovalVerdict> {
  const refuse = async (event: ApprovalEvent, refusal: Omit<Refusal, 'sqlstate'>): Promise<ApprovalVerdict> => {
    await input.record(event);
    return { kind: 'refuse', refusal: { sqlstate: '57014', ...refusal } };
  };
  switch (answer.outcome) {
    case 'approved': {
      const approval = { ...auditApproval(answer.request, answer.status), via: answer.via };
      // A cancel or disconnect that arrived while the approval was decided or claimed still wins.
      if (isAborted(input.signal)) {
        return refuse(
          { type: 'approval.cancelled', outcome: 'failure', approval, message: `approved, but not run: ${cancelReason(input.signal)}` },
          { message: 'canceling statement due to user request', detail: `the statement was waiting for approval request ${answer.request.id}` },
        );
      }
      const stop = input.beforeRun?.();
      if (stop !== undefined) {
        await input.record({ type: 'approval.cancelled', outcome: 'failure', approval, message: `approved, but not run: ${stop.message}` });
        return { kind: 'refuse', refusal: stop };
      }
      const recorded = await input.record({ type: 'approval.executed', outcome: 'unknown', approval });
      if (!recorded) {
        return {
          kind: 'refuse',
          refusal: { sqlstate: '53000', message: 'Custos cannot record this approved statement in its audit log: statement refused', hint: 'no audit, no access' },
        };
      }
      return { kind: 'run', approval };
    }
    case 'pending': {
      const { id } = answer.request;
      return refuse(
        { type: 'approval.requested', outcome: 'failure', approval: auditApproval(answer.request, undefined), message: 'pending: statement returned to the caller (return mode)' },
        {
          message: `approval required by policy rule "${input.rule}": request ${id} is pending, so the statement was not run; a reviewer approves it with: ${approveCommand(answer.request)}`,
          detail: 'once approved, run the identical statement again: it runs once',
          hint: `request ${id} expires at ${answer.request.expiresAt}`,
        },
      );
    }
    case 'denied': {
      const deny = answer.status.counted.find((r) => r.decision === 'deny');
      const by = deny !== undefined ? ` by ${printable(deny.reviewer.username)}: "${printable(deny.reason)}"` : '';
      return refuse(
        { type: 'approval.decided', outcome: 'failure', approval: auditApproval(answer.request, answer.status), message: 'denied: statement not run' },
        { message: `approval request ${answer.request.id} was denied${by}; the statement was not run` },
      );
    }
    case 'expired':
      return refuse(
        { type: 'approval.expired', outcome: 'failure', approval: auditApproval(answer.request, answer.status), message: 'request expired: statement not run' },
        { message: `approval request ${answer.request.id} expired before it was approved; the statement was not run` },
      );
    case 'timeout':
      return refuse(
        {
          type: 'approval.expired',
          outcome: 'failure',
          approval: auditApproval(answer.request, undefined),
          message: `hold timeout (${answer.request.settings.holdTimeoutSeconds} s) reached: statement not run`,
        },
        {
          message: `approval request ${answer.request.id} was not decided within ${answer.request.settings.holdTimeoutSeconds} s; the statement was not run`,
          hint: `the request stays reviewable until ${answer.request.expiresAt}: once approved, run the identical statement again`,
        },
      );
    case 'cancelled':
      return refuse(
        { type: 'approval.cancelled', outcome: 'failure', approval: auditApproval(answer.request, undefined), message: cancelReason(input.signal) },
        { message: 'canceling statement due to user request', detail: `the statement was waiting for approval request ${answer.request.id}` },
      );
    case 'consumed':
      return refuse(
        { type: 'approval.decided', outcome: 'failure', approval: spentApproval(answer.request), message: 'approval already used: statement not run' },
        { message: `approval request ${answer.request.id} was already used for one execution; run the statement again to file a new request` },
      );
    case 'unavailable':
      // The error text stays in the audit event; the client learns only that the service failed.
      return refuse(
        {
          type: 'approval.requested',
          outcome: 'failure',
          ...(answer.request !== undefined ? { approval: auditApproval(answer.request, undefined) } : {}),
          message: `approval service unavailable: ${printable(answer.error)}`,
        },
        { message: 'approval service unavailable: the statement was not run', hint: 'retry later' },
      );
    default: {
      const exhaustive: never = answer;
      return exhaustive;
    }
  }
}

/** Read through a call: the signal changes while the wait runs (a narrowed `signal.aborted` would not). */
function isAborted(signal: AbortSignal): boolean {
  return signal.aborted;
}

function cancelReason(signal: AbortSignal): string {
  return signal.reason === 'disconnect' ? 'the client disconnected while the statement was held' : 'the client cancelled the held statement';
}

/** A single-use approval already executed once: approved, and spent. */
function spentApproval(request: ApprovalRequest): AuditApproval {
  return { ...auditApproval(request, undefined), phase: 'Approved' };
}

function requestedApproval(request: ApprovalRequest): AuditApproval {
  return { ...auditApproval(request, undefined), expires_at: request.expiresAt, min_approvals: request.settings.minApprovals };
}

/** The audit view of a request: id, mode, digest, phase and counted reviews (no tokens, no literals). */
export function auditApproval(request: ApprovalRequest, status: ApprovalStatus | undefined): AuditApproval {
  return {
    id: request.id,
    mode: request.settings.mode,
    digest: request.commandDigest,
    phase: status?.phase ?? 'Pending',
    reviewers: (status?.counted ?? []).map((r) => ({ username: r.reviewer.username, decision: r.decision, reason: r.reason, at: r.at })),
  };
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}
