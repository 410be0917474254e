// The resource types the double serves: the built-in kinds (data, as the API server's discovery
// lists them) and, registered at run time, the custom resources of established CRDs.
import type { CrdSchema } from './schema.ts';
import type { PrinterColumn } from './table.ts';

export const STANDARD_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] as const;

export interface ResourceType {
  readonly group: string;
  readonly version: string;
  /** Plural, lower case: the path segment. */
  readonly resource: string;
  readonly singular: string;
  readonly kind: string;
  readonly listKind: string;
  readonly namespaced: boolean;
  readonly shortNames: readonly string[];
  readonly categories: readonly string[];
  readonly verbs: readonly string[];
  /** Subresources served: `status`, `token` (ServiceAccount TokenRequest). */
  readonly subresources: readonly string[];
  /** metadata.generation is kept (bumped on changes outside metadata and status). */
  readonly generation: boolean;
  /** Create-only review kinds that are answered, never stored. */
  readonly virtual: boolean;
  /** Strategic merge patch is accepted (compiled-in Go types); custom resources take merge and JSON patch only. */
  readonly strategicMerge: boolean;
  readonly crd?: {
    readonly name: string;
    readonly schema: CrdSchema | undefined;
    readonly printerColumns: readonly PrinterColumn[];
    readonly storageVersion: string;
  };
}

interface BuiltIn {
  g: string; v: string; r: string; k: string; ns: boolean;
  short?: string[]; cat?: string[]; verbs?: readonly string[]; sub?: string[]; gen?: boolean; virtual?: boolean; singular?: string;
}

const CREATE_ONLY = ['create'] as const;

const BUILT_INS: readonly BuiltIn[] = [
  { g: '', v: 'v1', r: 'namespaces', k: 'Namespace', ns: false, short: ['ns'], sub: ['status'], verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'] },
  { g: '', v: 'v1', r: 'configmaps', k: 'ConfigMap', ns: true, short: ['cm'] },
  { g: '', v: 'v1', r: 'secrets', k: 'Secret', ns: true },
  { g: '', v: 'v1', r: 'pods', k: 'Pod', ns: true, short: ['po'], cat: ['all'], sub: ['status', 'log'], gen: true },
  { g: '', v: 'v1', r: 'services', k: 'Service', ns: true, short: ['svc'], cat: ['all'], sub: ['status'], verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] },
  { g: '', v: 'v1', r: 'serviceaccounts', k: 'ServiceAccount', ns: true, short: ['sa'], sub: ['token'] },
  { g: '', v: 'v1', r: 'endpoints', k: 'Endpoints', ns: true, short: ['ep'] },
  { g: '', v: 'v1', r: 'events', k: 'Event', ns: true, short: ['ev'] },
  { g: '', v: 'v1', r: 'nodes', k: 'Node', ns: false, short: ['no'], sub: ['status'] },
  { g: '', v: 'v1', r: 'persistentvolumeclaims', k: 'PersistentVolumeClaim', ns: true, short: ['pvc'], sub: ['status'] },
  { g: 'events.k8s.io', v: 'v1', r: 'events', k: 'Event', ns: true, short: ['ev'] },
  { g: 'coordination.k8s.io', v: 'v1', r: 'leases', k: 'Lease', ns: true },
  { g: 'apiextensions.k8s.io', v: 'v1', r: 'customresourcedefinitions', k: 'CustomResourceDefinition', ns: false, short: ['crd', 'crds'], cat: ['api-extensions'], sub: ['status'], gen: true },
  { g: 'admissionregistration.k8s.io', v: 'v1', r: 'mutatingwebhookconfigurations', k: 'MutatingWebhookConfiguration', ns: false, cat: ['api-extensions'], gen: true },
  { g: 'admissionregistration.k8s.io', v: 'v1', r: 'validatingwebhookconfigurations', k: 'ValidatingWebhookConfiguration', ns: false, cat: ['api-extensions'], gen: true },
  { g: 'admissionregistration.k8s.io', v: 'v1', r: 'validatingadmissionpolicies', k: 'ValidatingAdmissionPolicy', ns: false, cat: ['api-extensions'], sub: ['status'], gen: true },
  { g: 'admissionregistration.k8s.io', v: 'v1', r: 'validatingadmissionpolicybindings', k: 'ValidatingAdmissionPolicyBinding', ns: false, cat: ['api-extensions'], gen: true },
  { g: 'authentication.k8s.io', v: 'v1', r: 'selfsubjectreviews', k: 'SelfSubjectReview', ns: false, verbs: CREATE_ONLY, virtual: true },
  { g: 'authentication.k8s.io', v: 'v1', r: 'tokenreviews', k: 'TokenReview', ns: false, verbs: CREATE_ONLY, virtual: true },
  { g: 'authorization.k8s.io', v: 'v1', r: 'selfsubjectaccessreviews', k: 'SelfSubjectAccessReview', ns: false, verbs: CREATE_ONLY, virtual: true },
  { g: 'authorization.k8s.io', v: 'v1', r: 'selfsubjectrulesreviews', k: 'SelfSubjectRulesReview', ns: false, verbs: CREATE_ONLY, virtual: true },
  { g: 'apps', v: 'v1', r: 'deployments', k: 'Deployment', ns: true, short: ['deploy'], cat: ['all'], sub: ['status'], gen: true },
  { g: 'apps', v: 'v1', r: 'daemonsets', k: 'DaemonSet', ns: true, short: ['ds'], cat: ['all'], sub: ['status'], gen: true },
  { g: 'apps', v: 'v1', r: 'statefulsets', k: 'StatefulSet', ns: true, short: ['sts'], cat: ['all'], sub: ['status'], gen: true },
  { g: 'apps', v: 'v1', r: 'replicasets', k: 'ReplicaSet', ns: true, short: ['rs'], cat: ['all'], sub: ['status'], gen: true },
  { g: 'batch', v: 'v1', r: 'jobs', k: 'Job', ns: true, cat: ['all'], sub: ['status'], gen: true },
  { g: 'batch', v: 'v1', r: 'cronjobs', k: 'CronJob', ns: true, short: ['cj'], cat: ['all'], sub: ['status'], gen: true },
  { g: 'discovery.k8s.io', v: 'v1', r: 'endpointslices', k: 'EndpointSlice', ns: true },
  { g: 'networking.k8s.io', v: 'v1', r: 'networkpolicies', k: 'NetworkPolicy', ns: true, short: ['netpol'], gen: true },
  { g: 'policy', v: 'v1', r: 'poddisruptionbudgets', k: 'PodDisruptionBudget', ns: true, short: ['pdb'], sub: ['status'], gen: true },
  { g: 'rbac.authorization.k8s.io', v: 'v1', r: 'clusterroles', k: 'ClusterRole', ns: false },
  { g: 'rbac.authorization.k8s.io', v: 'v1', r: 'clusterrolebindings', k: 'ClusterRoleBinding', ns: false },
  { g: 'rbac.authorization.k8s.io', v: 'v1', r: 'roles', k: 'Role', ns: true },
  { g: 'rbac.authorization.k8s.io', v: 'v1', r: 'rolebindings', k: 'RoleBinding', ns: true },
  { g: 'scheduling.k8s.io', v: 'v1', r: 'priorityclasses', k: 'PriorityClass', ns: false, short: ['pc'] },
];

function singularOf(kind: string): string {
  return kind.toLowerCase();
}

export function builtInTypes(): ResourceType[] {
  return BUILT_INS.map((b) => ({
    group: b.g, version: b.v, resource: b.r, singular: b.singular ?? singularOf(b.k), kind: b.k, listKind: `${b.k}List`,
    namespaced: b.ns, shortNames: b.short ?? [], categories: b.cat ?? [], verbs: b.verbs ?? STANDARD_VERBS,
    subresources: b.sub ?? [], generation: b.gen ?? false, virtual: b.virtual ?? false, strategicMerge: true,
  }));
}

/** Group order in discovery: the core group first, then as the real API server lists them. */
const GROUP_ORDER = ['', 'apiregistration.k8s.io', 'apps', 'events.k8s.io', 'authentication.k8s.io', 'authorization.k8s.io', 'autoscaling',
  'batch', 'certificates.k8s.io', 'networking.k8s.io', 'policy', 'rbac.authorization.k8s.io', 'storage.k8s.io', 'admissionregistration.k8s.io',
  'apiextensions.k8s.io', 'scheduling.k8s.io', 'coordination.k8s.io', 'node.k8s.io', 'discovery.k8s.io', 'flowcontrol.apiserver.k8s.io'];

/** Every type served now: built-ins plus the custom resources of established CRDs. */
export class ResourceRegistry {
  #builtIns: ResourceType[] = builtInTypes();
  #custom = new Map<string, ResourceType[]>();

  /** Replaces the types a CRD serves (empty to remove them). */
  setCustom(crdName: string, types: ResourceType[]): void {
    if (types.length === 0) this.#custom.delete(crdName);
    else this.#custom.set(crdName, types);
  }

  all(): ResourceType[] {
    return [...this.#builtIns, ...[...this.#custom.values()].flat()];
  }

  find(group: string, version: string, resource: string): ResourceType | undefined {
    return this.all().find((t) => t.group === group && t.version === version && t.resource === resource);
  }

  /** The type serving `kind` in `apiVersion`, for bodies that name their kind. */
  findKind(group: string, version: string, kind: string): ResourceType | undefined {
    return this.all().find((t) => t.group === group && t.version === version && t.kind === kind);
  }

  /** Groups with their versions, preferred version first, in discovery order. */
  groups(): Array<{ group: string; versions: string[] }> {
    const byGroup = new Map<string, string[]>();
    for (const t of this.all()) {
      const versions = byGroup.get(t.group) ?? [];
      if (!versions.includes(t.version)) versions.push(t.version);
      byGroup.set(t.group, versions);
    }
    const rank = (g: string): number => {
      const i = GROUP_ORDER.indexOf(g);
      return i < 0 ? GROUP_ORDER.length : i;
    };
    return [...byGroup.entries()]
      .map(([group, versions]) => ({ group, versions: versions.sort(compareVersions) }))
      .sort((a, b) => rank(a.group) - rank(b.group) || a.group.localeCompare(b.group));
  }
}

/** Kubernetes version priority: GA > beta > alpha, higher numbers first (v1 > v1beta2 > v1alpha1). */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string): [number, number, number] => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (m === null) return [-1, 0, 0];
    const stage = m[2] === undefined ? 3 : m[2] === 'beta' ? 2 : 1;
    return [stage, Number(m[1]), Number(m[3] ?? 0)];
  };
  const [sa, ma, na] = parse(a);
  const [sb, mb, nb] = parse(b);
  return sb - sa || mb - ma || nb - na || a.localeCompare(b);
}
