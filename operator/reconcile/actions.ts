// The planner's output and the executor's contract: what to write to the API server, and what
// became of each write. Actions are plain data, so tests assert on the list (cert-manager's
// ExpectedActions) and the executor stays a small switch.
import type { AccessPolicyStatus } from '../../crds/generated/access-policy.ts';
import type { ConfigMapManifest } from './policy-configmap.ts';

/** The AccessPolicy an action serves. */
export interface PolicyRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
  readonly generation?: number;
}

/** Create the policy ConfigMap, or replace the observed one (optimistic concurrency on its resourceVersion). */
export interface ApplyConfigMapAction {
  readonly kind: 'apply-configmap';
  readonly namespace: string;
  /** The ConfigMap's name (`custos-policy-<policy>`). */
  readonly name: string;
  readonly policy: PolicyRef;
  /** What to write: `metadata.resourceVersion` set replaces the observed object, absent creates one. */
  readonly configMap: ConfigMapManifest;
  /** SHA-256 (hex) of the `policy.yaml` text: what the sidecar's policy store will hash the file to. */
  readonly policyDigest: string;
  /** Why: no ConfigMap yet, or the observed one differs from what the policy renders to. */
  readonly reason: 'missing' | 'out-of-date';
}

/** Delete a managed ConfigMap whose policy is gone; the preconditions spare a ConfigMap re-created meanwhile. */
export interface DeleteConfigMapAction {
  readonly kind: 'delete-configmap';
  readonly namespace: string;
  readonly name: string;
  /** The policy its `custos.io/policy` label names. */
  readonly policy: string;
  readonly preconditions: { readonly uid?: string; readonly resourceVersion?: string };
}

/** Write the policy's status through the `/status` subresource. */
export interface UpdateStatusAction {
  readonly kind: 'update-status';
  readonly namespace: string;
  /** The AccessPolicy's name. */
  readonly name: string;
  /** The policy's observed resourceVersion: a status computed from stale data is refused (409). */
  readonly resourceVersion?: string;
  readonly status: AccessPolicyStatus;
}

export type ReconcileAction = ApplyConfigMapAction | DeleteConfigMapAction | UpdateStatusAction;

/**
 * - `applied`: the write happened (or a delete found the object already gone);
 * - `gone`: the object the action was about no longer exists (a status for a deleted policy);
 * - `conflict`: optimistic concurrency refused it: re-plan from fresh caches;
 * - `failed`: any other error: retry with backoff;
 * - `skipped`: not attempted (the ConfigMap of the same policy failed, or leadership was lost).
 */
export type OutcomeResult = 'applied' | 'gone' | 'conflict' | 'failed' | 'skipped';

export interface ActionOutcome {
  readonly action: ReconcileAction;
  readonly result: OutcomeResult;
  /** `created`, `updated`, `deleted`, `status updated`, or why not (the API server's message). */
  readonly detail: string;
}

export interface ActionExecutor {
  /**
   * Runs the actions in order and reports one outcome per action, in the same order; never rejects
   * for a failed action. Once `signal` aborts, the remaining actions are `skipped`.
   */
  execute(actions: readonly ReconcileAction[], options?: { readonly signal?: AbortSignal }): Promise<ActionOutcome[]>;
}

/** Outcomes that call for another reconcile (after a backoff): the world is not yet as planned. */
export function needsRequeue(outcome: ActionOutcome): boolean {
  return outcome.result === 'conflict' || outcome.result === 'failed' || (outcome.result === 'skipped' && outcome.detail !== SKIPPED_NOT_LEADER);
}

export const SKIPPED_NOT_LEADER = 'not the leader any more';

/** `apply ConfigMap payments/custos-policy-billing`: for logs and test messages. */
export function describeAction(action: ReconcileAction): string {
  switch (action.kind) {
    case 'apply-configmap': return `apply ConfigMap ${action.namespace}/${action.name}`;
    case 'delete-configmap': return `delete ConfigMap ${action.namespace}/${action.name}`;
    case 'update-status': return `update status of AccessPolicy ${action.namespace}/${action.name}`;
    default: {
      const unknown: never = action;
      return `unknown action ${JSON.stringify(unknown)}`;
    }
  }
}
