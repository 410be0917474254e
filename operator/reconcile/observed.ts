// What the reconcile planner observes: the slices of ConfigMaps, Pods and Namespaces it reads, as
// local types rather than @kubernetes/client-node's V1 classes (an I/O module, barred from this pure
// folder). Every field is optional, so both the classes the informers hold and plain JSON from the
// API fit without conversion. Timestamps are `unknown`: JSON gives strings, client-node gives Dates,
// and the planner only asks whether one is present.
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';

export interface OwnerReferenceLike {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
  readonly controller?: boolean;
  readonly blockOwnerDeletion?: boolean;
}

export interface ObjectMetaLike {
  readonly name?: string;
  readonly namespace?: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly ownerReferences?: readonly OwnerReferenceLike[];
  readonly finalizers?: readonly string[];
  readonly deletionTimestamp?: unknown;
}

export interface ObservedConfigMap {
  readonly metadata?: ObjectMetaLike;
  readonly data?: Readonly<Record<string, string>>;
  readonly binaryData?: Readonly<Record<string, string>>;
  readonly immutable?: boolean;
}

export interface ObservedPod {
  readonly metadata?: ObjectMetaLike;
  readonly spec?: { readonly hostNetwork?: boolean };
  /** `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`. */
  readonly status?: { readonly phase?: string };
}

export interface ObservedNamespace {
  readonly metadata?: ObjectMetaLike;
  /** `Active` or `Terminating`. */
  readonly status?: { readonly phase?: string };
}

/** One consistent look at the cluster, as the informer caches hold it. */
export interface ObservedState {
  /** Every AccessPolicy the operator watches (all namespaces). */
  readonly policies: readonly AccessPolicy[];
  /**
   * ConfigMaps that may be policy ConfigMaps: at least every one labelled
   * `app.kubernetes.io/managed-by=custos-operator`, plus any other the caller has (a same-named
   * ConfigMap someone else wrote is taken over; one the caller does not see is adopted by the
   * executor when its create meets AlreadyExists).
   */
  readonly configMaps: readonly ObservedConfigMap[];
  /** Pods of the namespaces that hold policies (others are ignored). */
  readonly pods: readonly ObservedPod[];
  readonly namespaces: readonly ObservedNamespace[];
}

/** `namespace/name`: the key of namespaced objects in the planner's indexes. */
export function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** The namespace kubectl puts a namespaced object without one into. */
export function policyNamespace(policy: AccessPolicy): string {
  return policy.metadata.namespace ?? 'default';
}

export function isDeleting(metadata: ObjectMetaLike | undefined): boolean {
  return metadata?.deletionTimestamp !== undefined && metadata.deletionTimestamp !== null;
}
