// The per-policy ConfigMap `custos-policy-<policy>` (ADR 0006): what it must hold, whether an
// observed one already does, and the object to write over an observed one without dropping what
// others put on it (their labels, annotations, non-controller owners, finalizers).
import { stringify } from 'yaml';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import type { InjectionSettings } from '../webhook/injection-settings.ts';
import { POLICY_CONFIGMAP_KEYS, policyConfigMapName, renderSidecarConfig } from '../webhook/sidecar-config.ts';
import type { ObservedConfigMap, OwnerReferenceLike } from './observed.ts';
import { policyNamespace } from './observed.ts';
import { canonicalJson, sha256Hex } from './policy-document.ts';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'custos-operator';
/** The policy a managed ConfigMap belongs to; lets the operator find orphans without the owner. */
export const POLICY_LABEL = 'custos.io/policy';

export const POLICY_CONFIGMAP_ANNOTATIONS = {
  /** SHA-256 over every key and value of `data`: one glance says whether two ConfigMaps agree. */
  dataDigest: 'custos.io/data-digest',
  /** SHA-256 of `policy.yaml`, as the sidecar computes it for its file (and policy announcements carry). */
  policyDigest: 'custos.io/policy-digest',
  /** The AccessPolicy `metadata.generation` the data was rendered from. */
  policyGeneration: 'custos.io/policy-generation',
} as const;

/** ConfigMap size limit of the API server (sum of key and value lengths over data and binaryData). */
export const CONFIGMAP_MAX_BYTES = 1024 * 1024;

/** The longest policy name whose ConfigMap can carry it as a label value (label values: at most 63). */
export const MAX_POLICY_NAME_LENGTH = 63;

/** A ConfigMap as written to the API server (plain JSON). */
export interface ConfigMapManifest {
  readonly apiVersion: 'v1';
  readonly kind: 'ConfigMap';
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    /** Set when replacing an observed ConfigMap (the API server refuses a stale one with 409). */
    readonly resourceVersion?: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly annotations: Readonly<Record<string, string>>;
    readonly ownerReferences?: readonly OwnerReferenceLike[];
    readonly finalizers?: readonly string[];
  };
  readonly data: Readonly<Record<string, string>>;
}

/** What the policy's ConfigMap must hold; other labels, annotations and owners are left alone. */
export interface DesiredPolicyConfigMap {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** Absent only for a policy without a uid (never from the API server). */
  readonly owner?: OwnerReferenceLike;
  readonly data: Readonly<Record<string, string>>;
}

export function renderPolicyConfigMap(policy: AccessPolicy, policyYaml: string, settings: InjectionSettings): DesiredPolicyConfigMap {
  const data = {
    [POLICY_CONFIGMAP_KEYS.policy]: policyYaml,
    [POLICY_CONFIGMAP_KEYS.sidecarConfig]: stringify(renderSidecarConfig(policy, settings), { lineWidth: 0 }),
    ...(settings.reviewRelay === undefined ? {} : { [POLICY_CONFIGMAP_KEYS.reviewerKeys]: settings.reviewRelay.jwks }),
  };
  const { uid, generation } = policy.metadata;
  return {
    namespace: policyNamespace(policy),
    name: policyConfigMapName(policy.metadata.name),
    labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [POLICY_LABEL]: policy.metadata.name },
    annotations: {
      [POLICY_CONFIGMAP_ANNOTATIONS.dataDigest]: dataDigest(data),
      [POLICY_CONFIGMAP_ANNOTATIONS.policyDigest]: sha256Hex(policyYaml),
      ...(generation === undefined ? {} : { [POLICY_CONFIGMAP_ANNOTATIONS.policyGeneration]: String(generation) }),
    },
    ...(uid === undefined
      ? {}
      // No blockOwnerDeletion: setting it needs `update` on accesspolicies/finalizers where the
      // OwnerReferencesPermissionEnforcement admission plugin runs, and foreground deletion of a
      // policy has nothing to wait for.
      : { owner: { apiVersion: policy.apiVersion, kind: policy.kind, name: policy.metadata.name, uid, controller: true } }),
    data,
  };
}

/** Digest over the keys and values of `data`, independent of key order. */
export function dataDigest(data: Readonly<Record<string, string>>): string {
  return sha256Hex(canonicalJson(data));
}

/** Bytes the API server counts against CONFIGMAP_MAX_BYTES. */
export function configMapDataBytes(data: Readonly<Record<string, string>>): number {
  let total = 0;
  for (const [k, v] of Object.entries(data)) total += Buffer.byteLength(k, 'utf8') + Buffer.byteLength(v, 'utf8');
  return total;
}

/**
 * Whether `observed` already holds what `desired` asks for: exactly the data (no other keys, no
 * binaryData: both would be files in the sidecar's policy directory), our labels and annotations,
 * and our policy as its one controller.
 */
export function isConfigMapCurrent(observed: ObservedConfigMap, desired: DesiredPolicyConfigMap): boolean {
  if (canonicalJson(observed.data ?? {}) !== canonicalJson(desired.data)) return false;
  if (Object.keys(observed.binaryData ?? {}).length > 0) return false;
  const meta = observed.metadata;
  for (const [k, v] of Object.entries(desired.labels)) if (meta?.labels?.[k] !== v) return false;
  for (const [k, v] of Object.entries(desired.annotations)) if (meta?.annotations?.[k] !== v) return false;
  if (desired.owner !== undefined) {
    const controllers = (meta?.ownerReferences ?? []).filter((r) => r.controller === true);
    const [only] = controllers;
    if (controllers.length !== 1 || only === undefined || !sameOwner(only, desired.owner)) return false;
  }
  return true;
}

function sameOwner(a: OwnerReferenceLike, b: OwnerReferenceLike): boolean {
  return a.uid === b.uid && a.kind === b.kind && a.apiVersion === b.apiVersion && a.name === b.name;
}

/**
 * The ConfigMap to write: `desired` over `observed` (create when there is none). Our labels and
 * annotations win; the data is exactly ours; another controller's owner reference is replaced by
 * ours (the name `custos-policy-<policy>` is ours by contract, and two controllers would fight).
 */
export function configMapManifest(desired: DesiredPolicyConfigMap, observed?: ObservedConfigMap): ConfigMapManifest {
  const meta = observed?.metadata;
  const owners = (meta?.ownerReferences ?? []).filter((r) => r.controller !== true && r.uid !== desired.owner?.uid);
  if (desired.owner !== undefined) owners.push(desired.owner);
  const resourceVersion = meta?.resourceVersion;
  const finalizers = meta?.finalizers;
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: desired.name,
      namespace: desired.namespace,
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
      labels: { ...meta?.labels, ...desired.labels },
      annotations: { ...meta?.annotations, ...desired.annotations },
      ...(owners.length === 0 ? {} : { ownerReferences: owners.map((o) => ({ ...o })) }),
      ...(finalizers === undefined || finalizers.length === 0 ? {} : { finalizers: [...finalizers] }),
    },
    data: { ...desired.data },
  };
}

/** The policy a ConfigMap was written for, when it is a Custos-managed policy ConfigMap. */
export function managedPolicyOf(configMap: ObservedConfigMap): string | undefined {
  const meta = configMap.metadata;
  if (meta?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) return undefined;
  const policy = meta.labels[POLICY_LABEL];
  // Only ever the name the contract gives the policy's ConfigMap: a label copied onto some other
  // ConfigMap must not get it deleted.
  if (policy === undefined || meta.name !== policyConfigMapName(policy)) return undefined;
  return policy;
}

/**
 * A create's manifest re-aimed at a ConfigMap found to exist after all (create answered
 * AlreadyExists because the caches did not show it): the same content written over `existing`,
 * at its resourceVersion, as the planner would have planned it had it seen the object.
 */
export function rebaseConfigMapManifest(manifest: ConfigMapManifest, existing: ObservedConfigMap): ConfigMapManifest {
  const owner = manifest.metadata.ownerReferences?.find((r) => r.controller === true);
  const desired: DesiredPolicyConfigMap = {
    namespace: manifest.metadata.namespace,
    name: manifest.metadata.name,
    labels: manifest.metadata.labels,
    annotations: manifest.metadata.annotations,
    ...(owner === undefined ? {} : { owner }),
    data: manifest.data,
  };
  return configMapManifest(desired, existing);
}
