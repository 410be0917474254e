// AccessPolicy status with the semantics of k8s.io/apimachinery `meta.SetStatusCondition`
// (metav1.Condition: type, status, observedGeneration, lastTransitionTime, reason, message):
// lastTransitionTime moves only when a condition's status flips, so re-planning an unchanged
// world produces the same status and no write (no status churn).
import type { AccessPolicyCondition, AccessPolicyStatus } from '../../crds/generated/access-policy.ts';
import { canonicalJson } from './policy-document.ts';

export const CONDITION_READY = 'Ready';

/** Reasons of the Ready condition: CamelCase, stable, for alerts and `kubectl wait`. */
export const READY_REASONS = {
  /** The policy is valid, its ConfigMap holds it, and no pod is selected by another policy too. */
  configMapReady: 'ConfigMapReady',
  /** The spec fails the CRD schema or compilation; sidecars keep the last valid version. */
  invalidPolicy: 'InvalidPolicy',
  /** The policy renders to more than a ConfigMap holds. */
  policyTooLarge: 'PolicyTooLarge',
  /** A pod it selects is selected by another policy too; the webhook refuses such pods. */
  ambiguousSelection: 'AmbiguousSelection',
} as const;
export type ReadyReason = (typeof READY_REASONS)[keyof typeof READY_REASONS];

/** Longer messages are cut: a condition message is for people, and the API server caps it at 32 KiB. */
export const MAX_CONDITION_MESSAGE = 4096;

export interface ConditionUpdate {
  readonly type: string;
  readonly status: AccessPolicyCondition['status'];
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration?: number;
}

/** metav1 time: RFC 3339 in UTC, whole seconds (what the API server stores for a metav1.Time). */
export function conditionTime(now: Date): string {
  return now.toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * `conditions` with `update` set: in place when a condition of its type exists (keeping its
 * lastTransitionTime unless the status flips), appended otherwise. Other types are kept as they are.
 */
export function setCondition(conditions: readonly AccessPolicyCondition[], update: ConditionUpdate, now: Date): AccessPolicyCondition[] {
  const message = update.message.length > MAX_CONDITION_MESSAGE ? `${update.message.slice(0, MAX_CONDITION_MESSAGE - 1)}…` : update.message;
  const build = (lastTransitionTime: string): AccessPolicyCondition => ({
    type: update.type,
    status: update.status,
    ...(update.observedGeneration === undefined ? {} : { observedGeneration: update.observedGeneration }),
    lastTransitionTime,
    reason: update.reason,
    message,
  });
  const index = conditions.findIndex((c) => c.type === update.type);
  const previous = index < 0 ? undefined : conditions[index];
  const unchangedSince = previous?.status === update.status ? previous.lastTransitionTime : undefined;
  const condition = build(unchangedSince ?? conditionTime(now));
  const next = [...conditions];
  if (index < 0) next.push(condition);
  else next[index] = condition;
  return next;
}

/** Equal as JSON: what a status write would change nothing of. */
export function statusEquals(a: AccessPolicyStatus | undefined, b: AccessPolicyStatus | undefined): boolean {
  return canonicalJson(a ?? {}) === canonicalJson(b ?? {});
}
