// The reconcile planner (DESIGN §4, reference/kubernetes.md §12): from one observed snapshot of
// AccessPolicies, ConfigMaps, Pods and Namespaces, the writes that make the cluster match the
// policies. Pure, level-based and idempotent: planning again on the result of its own actions
// yields no action (tests prove it), and the output order is fixed whatever the input order.
//
// Per policy:
//   1. judge it as the sidecar will: CRD schema and compilation of the very `policy.yaml` that
//      would be written (policy-document.ts), a well-formed selector, a name that fits the
//      ConfigMap's label, a size that fits a ConfigMap;
//   2. valid → the ConfigMap `custos-policy-<policy>` must hold it: `apply-configmap` when the
//      observed one differs; invalid → the ConfigMap is left alone, so sidecars keep the last valid
//      version (as the sidecar itself keeps its last good policy), and Ready=False says why;
//   3. status: observedGeneration, selectedPods, and Ready (True/ConfigMapReady,
//      False/InvalidPolicy, False/PolicyTooLarge, False/AmbiguousSelection) → `update-status` only
//      when it differs from the observed status.
// Then every managed ConfigMap whose policy no longer exists → `delete-configmap`.
import type { AccessPolicy, AccessPolicyStatus } from '../../crds/generated/access-policy.ts';
import { LABEL_NAMESPACE_INJECTION, LABEL_PART_OF, LABEL_POD_INJECT } from '../webhook/build-patch.ts';
import type { InjectionSettings } from '../webhook/injection-settings.ts';
import { matchSelector, selectPolicies } from '../webhook/pod-selection.ts';
import { policyConfigMapName } from '../webhook/sidecar-config.ts';
import type { ApplyConfigMapAction, DeleteConfigMapAction, ReconcileAction, UpdateStatusAction } from './actions.ts';
import { isDeleting, objectKey, policyNamespace, type ObservedConfigMap, type ObservedNamespace, type ObservedPod, type ObservedState } from './observed.ts';
import {
  CONFIGMAP_MAX_BYTES, configMapDataBytes, configMapManifest, isConfigMapCurrent, managedPolicyOf, MAX_POLICY_NAME_LENGTH,
  POLICY_CONFIGMAP_ANNOTATIONS, renderPolicyConfigMap, type DesiredPolicyConfigMap,
} from './policy-configmap.ts';
import type { PolicyCheckMemo } from './policy-check-memo.ts';
import { checkPolicyForSidecar, describeProblems, type FieldProblem, type SidecarPolicyCheck } from './policy-document.ts';
import { CONDITION_READY, READY_REASONS, setCondition, statusEquals, type ConditionUpdate } from './policy-status.ts';

export interface PlanInput extends ObservedState {
  readonly settings: InjectionSettings;
  /** The time new conditions are stamped with (lastTransitionTime). */
  readonly now: Date;
  /** Reuses checks of unchanged policies across plans (the reconciler keeps one). */
  readonly memo?: PolicyCheckMemo;
}

/** How many pod names a condition message lists before saying "and N more". */
const MAX_PODS_NAMED = 5;

export function planPolicies(input: PlanInput): ReconcileAction[] {
  const namespaces = new Map<string, ObservedNamespace>();
  for (const ns of input.namespaces) if (ns.metadata?.name !== undefined) namespaces.set(ns.metadata.name, ns);
  const configMaps = new Map<string, ObservedConfigMap>();
  for (const cm of input.configMaps) {
    const { name, namespace } = cm.metadata ?? {};
    if (name !== undefined && namespace !== undefined) configMaps.set(objectKey(namespace, name), cm);
  }
  const policies = [...input.policies].sort((a, b) => compareKeys(keyOf(a), keyOf(b)));
  const selections = selectPods(policies, input.pods);
  const terminating = (namespace: string): boolean => isTerminating(namespaces.get(namespace));
  const memo = input.memo;
  const checkPolicy = memo === undefined ? checkPolicyForSidecar : (p: AccessPolicy): SidecarPolicyCheck => memo.check(p);

  const actions: ReconcileAction[] = [];
  for (const policy of policies) {
    const namespace = policyNamespace(policy);
    // A policy being deleted, or in a namespace being deleted, is going away with all it owns.
    if (isDeleting(policy.metadata) || terminating(namespace)) continue;
    const observed = configMaps.get(objectKey(namespace, policyConfigMapName(policy.metadata.name)));
    const verdict = judgePolicy(policy, input.settings, checkPolicy);
    if (verdict.ok && (observed === undefined || !isConfigMapCurrent(observed, verdict.desired))) {
      actions.push(applyAction(policy, verdict.desired, verdict.policyDigest, observed));
    }
    const selection = selections.get(keyOf(policy)) ?? { pods: [], shared: new Map<string, readonly string[]>() };
    const ready = readyCondition(policy, verdict, observed, selection, namespaces.get(namespace));
    const status = desiredStatus(policy, selection.pods.length, ready, input.now);
    if (!statusEquals(policy.status, status)) actions.push(statusAction(policy, status));
  }

  const policyKeys = new Set(policies.map(keyOf));
  const orphans: DeleteConfigMapAction[] = [];
  for (const cm of configMaps.values()) {
    const owner = managedPolicyOf(cm);
    const { name = '', namespace = '', uid, resourceVersion } = cm.metadata ?? {};
    if (owner === undefined || policyKeys.has(objectKey(namespace, owner)) || isDeleting(cm.metadata) || terminating(namespace)) continue;
    orphans.push({
      kind: 'delete-configmap', namespace, name, policy: owner,
      preconditions: { ...(uid === undefined ? {} : { uid }), ...(resourceVersion === undefined ? {} : { resourceVersion }) },
    });
  }
  orphans.sort((a, b) => compareKeys(objectKey(a.namespace, a.name), objectKey(b.namespace, b.name)));
  return [...actions, ...orphans];
}

// ---- judging a policy ----------------------------------------------------------------------

type Verdict =
  | { readonly ok: true; readonly desired: DesiredPolicyConfigMap; readonly policyDigest: string }
  | { readonly ok: false; readonly reason: string; readonly message: string };

function judgePolicy(policy: AccessPolicy, settings: InjectionSettings, checkPolicy: (p: AccessPolicy) => SidecarPolicyCheck): Verdict {
  const problems: FieldProblem[] = [];
  if (policy.metadata.name.length > MAX_POLICY_NAME_LENGTH) {
    problems.push({
      field: 'metadata.name',
      message: `Too long: must be no more than ${MAX_POLICY_NAME_LENGTH} characters (the name is the value of label custos.io/policy on its ConfigMap)`,
    });
  }
  const selector = matchSelector(policy.spec.selector, {});
  if ('invalid' in selector) problems.push(splitProblem(selector.invalid));
  const check = checkPolicy(policy);
  if (!check.ok) problems.push(...check.problems);
  if (!check.ok || problems.length > 0) return { ok: false, reason: READY_REASONS.invalidPolicy, message: describeProblems(problems) };

  const desired = renderPolicyConfigMap(policy, check.policyYaml, settings);
  const bytes = configMapDataBytes(desired.data);
  if (bytes > CONFIGMAP_MAX_BYTES) {
    return {
      ok: false,
      reason: READY_REASONS.policyTooLarge,
      message: `spec: the policy renders to ${bytes} bytes, more than the ${CONFIGMAP_MAX_BYTES} a ConfigMap holds; split it into several policies`,
    };
  }
  return { ok: true, desired, policyDigest: check.digest };
}

/** `spec.selector.matchExpressions[0].values: Forbidden (…)` → field and message. */
function splitProblem(text: string): FieldProblem {
  const at = text.indexOf(': ');
  return at < 0 ? { field: '', message: text } : { field: text.slice(0, at), message: text.slice(at + 2) };
}

function applyAction(policy: AccessPolicy, desired: DesiredPolicyConfigMap, policyDigest: string, observed: ObservedConfigMap | undefined): ApplyConfigMapAction {
  const { uid, generation } = policy.metadata;
  return {
    kind: 'apply-configmap',
    namespace: desired.namespace,
    name: desired.name,
    policy: { namespace: policyNamespace(policy), name: policy.metadata.name, ...(uid === undefined ? {} : { uid }), ...(generation === undefined ? {} : { generation }) },
    configMap: configMapManifest(desired, observed),
    policyDigest,
    reason: observed === undefined ? 'missing' : 'out-of-date',
  };
}

// ---- pods ----------------------------------------------------------------------------------

interface PodSelection {
  /** Names of the pods the policy selects, sorted. */
  readonly pods: readonly string[];
  /** Pod name → the other policies that select it too (sorted). */
  readonly shared: ReadonlyMap<string, readonly string[]>;
}

/**
 * Which counted pods each policy selects, with the webhook's own selection function (so status and
 * admission agree on ambiguity). A pod counts while it runs or may still run (not Succeeded or
 * Failed) and is one the webhook governs: not opted out, not a Custos pod, not on the host network
 * (the webhook skips those before it looks at policies).
 */
function selectPods(policies: readonly AccessPolicy[], pods: readonly ObservedPod[]): Map<string, PodSelection> {
  const byNamespace = new Map<string, AccessPolicy[]>();
  for (const p of policies) {
    const list = byNamespace.get(policyNamespace(p)) ?? [];
    list.push(p);
    byNamespace.set(policyNamespace(p), list);
  }
  const selected = new Map<string, { pods: string[]; shared: Map<string, readonly string[]> }>();
  for (const pod of pods) {
    const namespace = pod.metadata?.namespace;
    const name = pod.metadata?.name;
    const candidates = namespace === undefined ? undefined : byNamespace.get(namespace);
    if (namespace === undefined || name === undefined || candidates === undefined || !isCounted(pod)) continue;
    const chosen = selectPolicies(candidates, namespace, pod.metadata?.labels ?? {}).selected.map((p) => p.metadata.name);
    for (const policy of chosen) {
      const key = objectKey(namespace, policy);
      const entry = selected.get(key) ?? { pods: [], shared: new Map<string, readonly string[]>() };
      entry.pods.push(name);
      const others = chosen.filter((o) => o !== policy);
      if (others.length > 0) entry.shared.set(name, others);
      selected.set(key, entry);
    }
  }
  for (const entry of selected.values()) entry.pods.sort(compareKeys);
  return selected;
}

function isCounted(pod: ObservedPod): boolean {
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return false;
  const labels = pod.metadata?.labels ?? {};
  return labels[LABEL_POD_INJECT] !== 'false' && labels[LABEL_PART_OF] !== 'custos' && pod.spec?.hostNetwork !== true;
}

// ---- status ----------------------------------------------------------------------------------

function readyCondition(
  policy: AccessPolicy, verdict: Verdict, observed: ObservedConfigMap | undefined, selection: PodSelection, namespace: ObservedNamespace | undefined,
): ConditionUpdate {
  const cmName = policyConfigMapName(policy.metadata.name);
  const generation = policy.metadata.generation;
  const base = { type: CONDITION_READY, ...(generation === undefined ? {} : { observedGeneration: generation }) };
  if (!verdict.ok) {
    return { ...base, status: 'False', reason: verdict.reason, message: `${verdict.message}; ${lastGoodVersion(cmName, observed)}` };
  }
  if (selection.shared.size > 0) {
    return { ...base, status: 'False', reason: READY_REASONS.ambiguousSelection, message: describeAmbiguity(selection.shared) };
  }
  const served = generation === undefined ? `ConfigMap ${cmName} holds the policy` : `ConfigMap ${cmName} holds generation ${generation}`;
  const labels = namespace?.metadata?.labels;
  const note = namespace !== undefined && labels?.[LABEL_NAMESPACE_INJECTION] !== 'enabled'
    ? `; namespace ${policyNamespace(policy)} is not labelled ${LABEL_NAMESPACE_INJECTION}=enabled, so no pod gets the sidecar`
    : '';
  return { ...base, status: 'True', reason: READY_REASONS.configMapReady, message: `${served}${note}` };
}

/** What sidecars enforce while the policy is invalid. */
function lastGoodVersion(cmName: string, observed: ObservedConfigMap | undefined): string {
  if (observed === undefined) return `ConfigMap ${cmName} is not written until the policy is valid`;
  const generation = observed.metadata?.annotations?.[POLICY_CONFIGMAP_ANNOTATIONS.policyGeneration];
  return generation === undefined
    ? `sidecars keep enforcing the last valid version (ConfigMap ${cmName} is unchanged)`
    : `sidecars keep enforcing generation ${generation} (ConfigMap ${cmName} is unchanged)`;
}

/** `pods a, b are also selected by AccessPolicy x; …`, grouped by the other policies. */
function describeAmbiguity(shared: ReadonlyMap<string, readonly string[]>): string {
  const groups = new Map<string, string[]>();
  for (const [pod, others] of shared) {
    const key = others.join(', ');
    const list = groups.get(key) ?? [];
    list.push(pod);
    groups.set(key, list);
  }
  const parts = [...groups].sort(([a], [b]) => compareKeys(a, b)).map(([others, pods]) => {
    pods.sort(compareKeys);
    const named = pods.slice(0, MAX_PODS_NAMED).join(', ');
    const more = pods.length > MAX_PODS_NAMED ? ` and ${pods.length - MAX_PODS_NAMED} more` : '';
    const which = others.includes(', ') ? `AccessPolicies ${others}` : `AccessPolicy ${others}`;
    return `${pods.length === 1 ? 'pod' : 'pods'} ${named}${more} ${pods.length === 1 ? 'is' : 'are'} also selected by ${which}`;
  });
  return `${parts.join('; ')}; the webhook refuses to create a pod that several policies select: narrow spec.selector so that one policy selects each pod`;
}

function desiredStatus(policy: AccessPolicy, selectedPods: number, ready: ConditionUpdate, now: Date): AccessPolicyStatus {
  const generation = policy.metadata.generation;
  return {
    ...policy.status,
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    selectedPods,
    conditions: setCondition(policy.status?.conditions ?? [], ready, now),
  };
}

function statusAction(policy: AccessPolicy, status: AccessPolicyStatus): UpdateStatusAction {
  const resourceVersion = policy.metadata.resourceVersion;
  return {
    kind: 'update-status',
    namespace: policyNamespace(policy),
    name: policy.metadata.name,
    ...(resourceVersion === undefined ? {} : { resourceVersion }),
    status,
  };
}

// ---- helpers -------------------------------------------------------------------------------

function keyOf(policy: AccessPolicy): string {
  return objectKey(policyNamespace(policy), policy.metadata.name);
}

/** Code-unit order: the same in every locale, so the action order never depends on the machine. */
function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isTerminating(namespace: ObservedNamespace | undefined): boolean {
  return namespace !== undefined && (isDeleting(namespace.metadata) || namespace.status?.phase === 'Terminating');
}
