// The pure half of the sidecar injector (DESIGN §4, reference/kubernetes.md §3–§6): given the pod
// from an AdmissionReview, its namespace, the namespace's AccessPolicies and the injection settings,
// decide `patch | skip | reject`. Skip and reject reasons are stable strings that double as the
// `reason` label of custos_injections_total (after linkerd2 pkg/inject/report.go). The transport
// (operator/webhook/server) only decodes the request and encodes this result.
//
// Order of decisions:
//   1. skips that need no policy: namespace not opted in, pod opted out, Custos' own pods,
//      hostNetwork, node-created (static/mirror) pods;
//   2. policy selection: none → skip; two or more → reject (ambiguity is refused, as Istio refuses
//      conflicting Sidecar resources, rather than picking one by name and surprising someone);
//   3. bypass checks on every container that will share the pod's network namespace (reject);
//   4. idempotency: a pod carrying our status annotation and exactly what we would inject now is
//      `already-injected` (empty patch); anything else ours is stripped and injected again (Istio
//      stripPod), so reinvocation after another webhook never duplicates a container or volume.
import { createHash } from 'node:crypto';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import type { InjectionSettings } from './injection-settings.ts';
import { pointer, type JsonPatchOperation } from './json-patch.ts';
import type { ContainerLike, EnvVarLike, PodLike, VolumeLike } from './pod-types.ts';
import { selectPolicies } from './pod-selection.ts';
import { MOUNT_PATHS, POLICY_CONFIGMAP_KEYS, SIDECAR_CONFIG_FILE, interceptionSpec, policyConfigMapName } from './sidecar-config.ts';

export const LABEL_NAMESPACE_INJECTION = 'custos.io/injection';
export const LABEL_POD_INJECT = 'custos.io/inject';
export const LABEL_INJECTED = 'custos.io/injected';
export const LABEL_PART_OF = 'app.kubernetes.io/part-of';
export const ANNOTATION_STATUS = 'custos.io/status';
export const ANNOTATION_DEFAULT_CONTAINER = 'kubectl.kubernetes.io/default-container';
const ANNOTATION_MIRROR = 'kubernetes.io/config.mirror';

export const INIT_CONTAINER_NAME = 'custos-init';
export const SIDECAR_CONTAINER_NAME = 'custos-sidecar';
const INJECTED_CONTAINER_NAMES: ReadonlySet<string> = new Set([INIT_CONTAINER_NAME, SIDECAR_CONTAINER_NAME]);
/** Every pod volume whose name starts with this belongs to Custos; app containers never mount one. */
export const RESERVED_VOLUME_PREFIX = 'custos-';

export const VOLUME_NAMES = {
  policy: 'custos-policy',
  sidecarConfig: 'custos-sidecar-config',
  token: 'custos-token',
  spool: 'custos-spool',
  xtablesLock: 'custos-xtables-lock',
  reviewerKeys: 'custos-reviewer-keys',
} as const;

/** Not injected; the pod is admitted unchanged. */
export const SKIP_REASONS = [
  'namespace-not-enabled',
  'pod-opted-out',
  'custos-component',
  'host-network',
  'node-created',
  'no-policy-selects-pod',
  'already-injected',
] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

/** The pod is denied; in this order of precedence when several apply. */
export const REJECT_REASONS = [
  'multiple-policies',
  'reserved-name',
  'runs-as-proxy-uid',
  'adds-net-admin',
  'privileged-container',
  'mounts-custos-volume',
  'uses-credentials-secret',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** Patched: first injection, or a strip-and-reinject of an earlier, now different injection. */
export type PatchReason = 'injected' | 'reinjected';

/** The JSON value of the `custos.io/status` annotation. */
export interface InjectionStatus {
  readonly version: string;
  readonly policy: string;
  /** Digest of everything injected (containers, volumes, settings); a change forces re-injection. */
  readonly fingerprint: string;
  readonly initContainers: readonly string[];
  readonly containers: readonly string[];
  readonly volumes: readonly string[];
}

export interface InjectionInput {
  readonly pod: PodLike;
  readonly namespace: { readonly name: string; readonly labels?: Readonly<Record<string, string>> };
  /** AccessPolicies of the pod's namespace (others are ignored). */
  readonly policies: readonly AccessPolicy[];
  readonly settings: InjectionSettings;
  /** AdmissionReview request.userInfo. */
  readonly requestUser?: { readonly username: string; readonly groups?: readonly string[] };
}

export type InjectionResult =
  | {
      readonly kind: 'patch';
      readonly reason: PatchReason;
      readonly patch: readonly JsonPatchOperation[];
      readonly policy: string;
      readonly status: InjectionStatus;
      /** Annotations and labels the patch sets (status included). */
      readonly annotations: Readonly<Record<string, string>>;
      readonly labels: Readonly<Record<string, string>>;
      /** AdmissionResponse.warnings. */
      readonly warnings: readonly string[];
    }
  | { readonly kind: 'skip'; readonly reason: SkipReason; readonly message: string; readonly warnings: readonly string[] }
  | { readonly kind: 'reject'; readonly reason: RejectReason; readonly message: string };

const skip = (reason: SkipReason, message: string, warnings: readonly string[] = []): InjectionResult => ({ kind: 'skip', reason, message, warnings });

export function buildInjectionPatch(input: InjectionInput): InjectionResult {
  const { pod, namespace, settings } = input;
  const labels = pod.metadata?.labels ?? {};
  const annotations = pod.metadata?.annotations ?? {};
  const podName = describePod(pod, namespace.name);

  if (namespace.labels?.[LABEL_NAMESPACE_INJECTION] !== 'enabled') {
    return skip('namespace-not-enabled', `namespace ${namespace.name} is not labelled ${LABEL_NAMESPACE_INJECTION}=enabled`);
  }
  // In an opted-in namespace, a pod that goes uninjected (opted out, labelled as Custos, on the
  // host network, selected by no policy) must not read the upstream credentials either: they are
  // the sidecar's alone, and a label must not be a way around that.
  const credentialReaders = (): InjectionResult | undefined => {
    const readers = findViolations(pod, input.policies, namespace.name, settings, false).filter((v) => v.reason === 'uses-credentials-secret');
    if (readers.length === 0) return undefined;
    return { kind: 'reject', reason: 'uses-credentials-secret', message: `Custos refuses pod ${podName}: ${readers.map((v) => v.message).join('; ')}` };
  };
  if (labels[LABEL_POD_INJECT] === 'false') return credentialReaders() ?? skip('pod-opted-out', `pod ${podName} is labelled ${LABEL_POD_INJECT}=false`);
  if (labels[LABEL_PART_OF] === 'custos') return credentialReaders() ?? skip('custos-component', `pod ${podName} is part of Custos (${LABEL_PART_OF}=custos)`);
  if (pod.spec?.hostNetwork === true) {
    return credentialReaders() ?? skip('host-network', `pod ${podName} uses the host network: there is no pod network namespace to intercept`);
  }
  if (input.requestUser?.username.startsWith('system:node:') === true || Object.hasOwn(annotations, ANNOTATION_MIRROR)) {
    return skip('node-created', `pod ${podName} is created by a kubelet (static or mirror pod)`);
  }

  const selection = selectPolicies(input.policies, namespace.name, labels);
  const warnings = selection.invalid.map((s) => `AccessPolicy ${s}; the policy selects no pods until it is fixed`);
  const [policy, ...others] = selection.selected;
  if (policy === undefined) return credentialReaders() ?? skip('no-policy-selects-pod', `no AccessPolicy in namespace ${namespace.name} selects pod ${podName}`, warnings);
  if (others.length > 0) {
    const names = selection.selected.map((p) => p.metadata.name).join(', ');
    return {
      kind: 'reject',
      reason: 'multiple-policies',
      message: `Custos refuses pod ${podName}: AccessPolicies ${names} select it, and a pod is governed by exactly one policy; narrow their spec.selector so that only one matches`,
    };
  }

  const status = parseStatus(annotations[ANNOTATION_STATUS]);
  const violations = findViolations(pod, input.policies, namespace.name, settings, status !== undefined);
  const first = violations[0];
  if (first !== undefined) {
    return {
      kind: 'reject',
      reason: first.reason,
      message: `Custos refuses pod ${podName} (AccessPolicy ${policy.metadata.name}): ${violations.map((v) => v.message).join('; ')}`,
    };
  }

  const rendered = renderInjection(policy, settings, apiAccessVolume(pod));
  if (status !== undefined && isCurrentInjection(pod, status, rendered)) {
    return skip('already-injected', `pod ${podName} already carries the current injection of AccessPolicy ${policy.metadata.name}`, warnings);
  }
  return { kind: 'patch', ...buildPatch(pod, rendered, status !== undefined), policy: policy.metadata.name, status: rendered.status, warnings };
}

// ---------------------------------------------------------------------------------------------
// Rendering

interface RenderedInjection {
  readonly initContainers: readonly [ContainerLike, ContainerLike];
  readonly volumes: readonly VolumeLike[];
  readonly status: InjectionStatus;
}

/** `custos-credentials-<secret>` when that is a valid volume name (DNS-1123 label), else a digest of it. */
export function credentialsVolumeName(secretName: string): string {
  const name = `${RESERVED_VOLUME_PREFIX}credentials-${secretName}`;
  if (name.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) return name;
  return `${RESERVED_VOLUME_PREFIX}credentials-${createHash('sha256').update(secretName).digest('hex').slice(0, 16)}`;
}

function credentialsSecrets(policy: AccessPolicy): string[] {
  const names = new Set<string>();
  for (const t of policy.spec.targets) if (t.credentials !== undefined) names.add(t.credentials.secretName);
  return [...names].sort();
}

function resources(r: InjectionSettings['resources']['init']): Record<string, unknown> {
  return {
    requests: { cpu: r.requests.cpu, memory: r.requests.memory },
    limits: { ...(r.limits.cpu !== undefined ? { cpu: r.limits.cpu } : {}), memory: r.limits.memory },
  };
}

function fieldEnv(name: string, fieldPath: string): EnvVarLike {
  // apiVersion is written out because the API server defaults it; the subset comparison on
  // reinvocation then sees exactly what it rendered.
  return { name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } };
}

/** The in-cluster API credentials: the kubelet's conventional mount of the service-account token and CA. */
const API_ACCESS_MOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * The pod's kube-api-access volume, as the ServiceAccount admission plugin (which runs before
 * webhooks) mounted it into the app's containers; the sidecar mounts it too, to ask the API server
 * whether the pod's service account still exists. Undefined when the pod opted out of automount.
 */
function apiAccessVolume(pod: PodLike): string | undefined {
  const spec = pod.spec ?? {};
  const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    if (INJECTED_CONTAINER_NAMES.has(c.name)) continue;
    const mount = (c.volumeMounts ?? []).find((m) => m.mountPath === API_ACCESS_MOUNT_PATH);
    if (mount !== undefined && volumes.has(mount.name) && !mount.name.startsWith(RESERVED_VOLUME_PREFIX)) return mount.name;
  }
  return undefined;
}

function renderInjection(policy: AccessPolicy, settings: InjectionSettings, apiAccess: string | undefined): RenderedInjection {
  const secrets = credentialsSecrets(policy);
  // Approvals need Redis; only then can reviews be relayed, so only then are their keys mounted.
  const approvalsEnabled = settings.redisUrl !== undefined;
  const admin = settings.ports.admin;
  const configMap = policyConfigMapName(policy.metadata.name);

  const init: ContainerLike = {
    name: INIT_CONTAINER_NAME,
    image: settings.images.init,
    imagePullPolicy: settings.images.pullPolicy,
    args: ['init'],
    env: [{ name: 'CUSTOS_INTERCEPTION', value: JSON.stringify(interceptionSpec(policy, settings)) }],
    resources: resources(settings.resources.init),
    // Never derived from the app's securityContext: an inherited drop of NET_RAW breaks iptables
    // (linkerd/linkerd2#6254). Root only because iptables needs it; nothing else is granted.
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: false,
      runAsUser: 0,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
    // iptables -w takes /run/xtables.lock; the root filesystem is read-only.
    volumeMounts: [{ name: VOLUME_NAMES.xtablesLock, mountPath: '/run' }],
  };

  const sidecar: ContainerLike = {
    name: SIDECAR_CONTAINER_NAME,
    image: settings.images.sidecar,
    imagePullPolicy: settings.images.pullPolicy,
    // Native sidecar: started before the app's init containers, stopped after the app containers.
    restartPolicy: 'Always',
    args: ['sidecar', '--config', SIDECAR_CONFIG_FILE],
    env: [
      fieldEnv('CUSTOS_POD_UID', 'metadata.uid'),
      fieldEnv('CUSTOS_POD_NAME', 'metadata.name'),
      fieldEnv('CUSTOS_POD_NAMESPACE', 'metadata.namespace'),
    ],
    ports: [{ name: 'custos-admin', containerPort: admin, protocol: 'TCP' }],
    startupProbe: {
      httpGet: { path: '/readyz', port: admin },
      periodSeconds: settings.startupProbe.periodSeconds,
      failureThreshold: settings.startupProbe.failureThreshold,
    },
    readinessProbe: { httpGet: { path: '/readyz', port: admin }, periodSeconds: 5 },
    // Readiness alone never restarts a hung sidecar.
    livenessProbe: { httpGet: { path: '/healthz', port: admin }, periodSeconds: 10, failureThreshold: 3 },
    resources: resources(settings.resources.sidecar),
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsGroup: settings.proxyGid,
      runAsNonRoot: true,
      runAsUser: settings.proxyUid,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: [
      { name: VOLUME_NAMES.policy, mountPath: MOUNT_PATHS.policyDir, readOnly: true },
      { name: VOLUME_NAMES.sidecarConfig, mountPath: MOUNT_PATHS.sidecarConfigDir, readOnly: true },
      { name: VOLUME_NAMES.token, mountPath: MOUNT_PATHS.tokenDir, readOnly: true },
      { name: VOLUME_NAMES.spool, mountPath: MOUNT_PATHS.spoolDir },
      ...(approvalsEnabled ? [{ name: VOLUME_NAMES.reviewerKeys, mountPath: MOUNT_PATHS.reviewerKeysDir, readOnly: true }] : []),
      // The upstream credentials: mounted here and nowhere else (credential brokering).
      ...secrets.map((s) => ({ name: credentialsVolumeName(s), mountPath: `${MOUNT_PATHS.credentialsDir}/${s}`, readOnly: true })),
      ...(apiAccess !== undefined ? [{ name: apiAccess, mountPath: API_ACCESS_MOUNT_PATH, readOnly: true }] : []),
    ],
  };

  const volumes: VolumeLike[] = [
    // Whole-directory mounts with items (no subPath), so ConfigMap updates reach the running
    // sidecar (policy hot reload). Not optional: without its policy the pod waits, fail closed.
    { name: VOLUME_NAMES.policy, configMap: { name: configMap, items: [{ key: POLICY_CONFIGMAP_KEYS.policy, path: POLICY_CONFIGMAP_KEYS.policy }] } },
    { name: VOLUME_NAMES.sidecarConfig, configMap: { name: configMap, items: [{ key: POLICY_CONFIGMAP_KEYS.sidecarConfig, path: 'config.yaml' }] } },
    {
      name: VOLUME_NAMES.token,
      projected: {
        sources: [{ serviceAccountToken: { audience: settings.serviceAccountToken.audience, expirationSeconds: settings.serviceAccountToken.expirationSeconds, path: 'token' } }],
      },
    },
    { name: VOLUME_NAMES.spool, emptyDir: { sizeLimit: settings.spool.sizeLimit } },
    { name: VOLUME_NAMES.xtablesLock, emptyDir: {} },
    // The operator's public keys for relayed reviews. Optional: a policy ConfigMap written before
    // the operator had them still starts the pod; such reviews just do not count until it is rewritten.
    ...(approvalsEnabled
      ? [{ name: VOLUME_NAMES.reviewerKeys, configMap: { name: configMap, optional: true, items: [{ key: POLICY_CONFIGMAP_KEYS.reviewerKeys, path: 'jwks.json' }] } }]
      : []),
    ...secrets.map((s) => ({ name: credentialsVolumeName(s), secret: { secretName: s } })),
  ];

  const fingerprint = createHash('sha256')
    .update(JSON.stringify({ version: settings.version, initContainers: [init, sidecar], volumes }))
    .digest('hex')
    .slice(0, 16);
  return {
    initContainers: [init, sidecar],
    volumes,
    status: {
      version: settings.version,
      policy: policy.metadata.name,
      fingerprint,
      initContainers: [INIT_CONTAINER_NAME, SIDECAR_CONTAINER_NAME],
      containers: [],
      volumes: volumes.map((v) => v.name),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Status annotation and idempotency

/** The status annotation when it is well-formed JSON of the expected shape; undefined otherwise. */
export function parseStatus(text: string | undefined): InjectionStatus | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((s) => typeof s === 'string');
  if (typeof v['version'] !== 'string' || typeof v['policy'] !== 'string' || typeof v['fingerprint'] !== 'string') return undefined;
  if (!strings(v['initContainers']) || !strings(v['containers']) || !strings(v['volumes'])) return undefined;
  return { version: v['version'], policy: v['policy'], fingerprint: v['fingerprint'], initContainers: v['initContainers'], containers: v['containers'], volumes: v['volumes'] };
}

/**
 * `actual` contains everything in `expected`: the API server adds defaults (terminationMessagePath,
 * probe timeouts, defaultMode, protocol) between invocations, so equality would never hold; any
 * value we set that someone changed does fail the comparison and forces re-injection.
 */
function containsRendered(actual: unknown, expected: unknown): boolean {
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length && expected.every((e, i) => containsRendered(actual[i], e));
  }
  if (typeof expected === 'object' && expected !== null) {
    if (typeof actual !== 'object' || actual === null || Array.isArray(actual)) return false;
    const a = actual as Record<string, unknown>;
    return Object.entries(expected).every(([k, e]) => Object.hasOwn(a, k) && containsRendered(a[k], e));
  }
  return actual === expected;
}

function isCurrentInjection(pod: PodLike, status: InjectionStatus, rendered: RenderedInjection): boolean {
  const expected = rendered.status;
  if (status.version !== expected.version || status.policy !== expected.policy || status.fingerprint !== expected.fingerprint) return false;
  const spec = pod.spec ?? {};
  const init = spec.initContainers ?? [];
  if (!containsRendered(init[0], rendered.initContainers[0]) || !containsRendered(init[1], rendered.initContainers[1])) return false;
  const ours = [...init.slice(2), ...(spec.containers ?? [])].filter((c) => INJECTED_CONTAINER_NAMES.has(c.name));
  if (ours.length > 0) return false;
  const podVolumes = (spec.volumes ?? []).filter((v) => v.name.startsWith(RESERVED_VOLUME_PREFIX));
  if (podVolumes.length !== rendered.volumes.length) return false;
  if (!rendered.volumes.every((r) => podVolumes.some((v) => v.name === r.name && containsRendered(v, r)))) return false;
  return pod.metadata?.labels?.[LABEL_INJECTED] === 'true';
}

// ---------------------------------------------------------------------------------------------
// Bypass checks

interface Violation {
  readonly reason: RejectReason;
  readonly message: string;
}

const ESCALATING_CAPABILITIES: ReadonlySet<string> = new Set(['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN', 'ALL']);

function findViolations(pod: PodLike, policies: readonly AccessPolicy[], namespace: string, settings: InjectionSettings, hasStatus: boolean): Violation[] {
  const found: Violation[] = [];
  const add = (reason: RejectReason, message: string): void => { found.push({ reason, message }); };
  const spec = pod.spec ?? {};
  const uid = settings.proxyUid;
  const gid = settings.proxyGid;

  // Secrets that hold upstream credentials of any policy of the namespace: only the sidecar reads them.
  const credentialSecrets = new Map<string, string>();
  for (const p of policies) {
    if (p.metadata.namespace !== undefined && p.metadata.namespace !== namespace) continue;
    for (const t of p.spec.targets) {
      if (t.credentials !== undefined && !credentialSecrets.has(t.credentials.secretName)) {
        credentialSecrets.set(t.credentials.secretName, `AccessPolicy ${p.metadata.name} target ${t.name}`);
      }
    }
  }
  const credentialUse = (secret: string | undefined, where: string): void => {
    const owner = secret === undefined ? undefined : credentialSecrets.get(secret);
    if (secret !== undefined && owner !== undefined) {
      add('uses-credentials-secret', `${where} reads Secret ${secret}, the upstream credentials of ${owner}; only the Custos sidecar may read it`);
    }
  };

  const psc = spec.securityContext ?? {};
  if (psc.runAsUser === uid) add('runs-as-proxy-uid', `spec.securityContext.runAsUser is ${uid}, the Custos proxy UID, whose traffic is never intercepted; choose another UID`);
  if (psc.runAsGroup === gid) add('runs-as-proxy-uid', `spec.securityContext.runAsGroup is ${gid}, the Custos proxy GID, whose traffic is never intercepted; choose another GID`);
  if (psc.fsGroup === gid) add('runs-as-proxy-uid', `spec.securityContext.fsGroup is ${gid}, the Custos proxy GID; choose another group`);
  if (psc.supplementalGroups?.includes(gid) === true) add('runs-as-proxy-uid', `spec.securityContext.supplementalGroups contains ${gid}, the Custos proxy GID; remove it`);

  const lists = [
    ['containers', spec.containers ?? []],
    ['initContainers', spec.initContainers ?? []],
    ['ephemeralContainers', spec.ephemeralContainers ?? []],
  ] as const;
  for (const [field, list] of lists) {
    for (const [i, c] of list.entries()) {
      const where = `container ${c.name} (spec.${field}[${i}])`;
      if (INJECTED_CONTAINER_NAMES.has(c.name)) {
        // Ours from an earlier invocation: replaced wholesale below, so not judged as an app container.
        if (hasStatus && field === 'initContainers') continue;
        add('reserved-name', `${where} uses a name reserved for the containers Custos injects; rename it`);
        continue;
      }
      const sc = c.securityContext ?? {};
      if (sc.runAsUser === uid) add('runs-as-proxy-uid', `${where} sets securityContext.runAsUser ${uid}, the Custos proxy UID, whose traffic is never intercepted; choose another UID`);
      if (sc.runAsGroup === gid) add('runs-as-proxy-uid', `${where} sets securityContext.runAsGroup ${gid}, the Custos proxy GID, whose traffic is never intercepted; choose another GID`);
      const added = (sc.capabilities?.add ?? []).map((cap) => cap.toUpperCase().replace(/^CAP_/, '')).filter((cap) => ESCALATING_CAPABILITIES.has(cap));
      if (added.length > 0) add('adds-net-admin', `${where} adds capabilities ${added.join(', ')}, which can rewrite the pod's iptables rules and bypass the sidecar; remove them`);
      if (sc.privileged === true) add('privileged-container', `${where} is privileged, which can rewrite the pod's iptables rules and bypass the sidecar; remove securityContext.privileged`);
      for (const m of c.volumeMounts ?? []) {
        if (m.name.startsWith(RESERVED_VOLUME_PREFIX)) add('mounts-custos-volume', `${where} mounts volume ${m.name}; volumes named ${RESERVED_VOLUME_PREFIX}* belong to the Custos sidecar`);
      }
      for (const e of c.env ?? []) credentialUse(e.valueFrom?.secretKeyRef?.name, `${where} env ${e.name}`);
      for (const e of c.envFrom ?? []) credentialUse(e.secretRef?.name, `${where} envFrom`);
    }
  }
  for (const [i, v] of (spec.volumes ?? []).entries()) {
    if (v.name.startsWith(RESERVED_VOLUME_PREFIX)) {
      if (!hasStatus) add('reserved-name', `volume ${v.name} (spec.volumes[${i}]) uses the prefix ${RESERVED_VOLUME_PREFIX}, reserved for the volumes Custos injects; rename it`);
      continue;
    }
    credentialUse(v.secret?.secretName, `volume ${v.name} (spec.volumes[${i}])`);
    for (const s of v.projected?.sources ?? []) credentialUse(s.secret?.name, `volume ${v.name} (spec.volumes[${i}])`);
  }
  const rank = (r: RejectReason): number => REJECT_REASONS.indexOf(r);
  return found.map((v, i) => ({ v, i })).sort((a, b) => rank(a.v.reason) - rank(b.v.reason) || a.i - b.i).map(({ v }) => v);
}

// ---------------------------------------------------------------------------------------------
// Patch

function buildPatch(
  pod: PodLike,
  rendered: RenderedInjection,
  reinvoked: boolean,
): { reason: PatchReason; patch: JsonPatchOperation[]; annotations: Record<string, string>; labels: Record<string, string> } {
  const ops: JsonPatchOperation[] = [];
  const spec = pod.spec ?? {};

  // 1. Strip an earlier injection, highest index first so the remaining indices stay valid.
  const removeWhere = <T>(field: 'initContainers' | 'containers' | 'volumes', list: readonly T[] | undefined, ours: (x: T) => boolean): void => {
    const items = list ?? [];
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i];
      if (item !== undefined && ours(item)) ops.push({ op: 'remove', path: pointer('spec', field, i) });
    }
  };
  removeWhere('initContainers', spec.initContainers, (c) => INJECTED_CONTAINER_NAMES.has(c.name));
  removeWhere('containers', spec.containers, (c) => INJECTED_CONTAINER_NAMES.has(c.name));
  removeWhere('volumes', spec.volumes, (v) => v.name.startsWith(RESERVED_VOLUME_PREFIX));
  const stripped = ops.length > 0;

  // 2. custos-init, then the native sidecar, before the app's init containers.
  const [init, sidecar] = rendered.initContainers;
  if (spec.initContainers === undefined) {
    ops.push({ op: 'add', path: '/spec/initContainers', value: [init, sidecar] });
  } else {
    ops.push({ op: 'add', path: '/spec/initContainers/0', value: init });
    ops.push({ op: 'add', path: '/spec/initContainers/1', value: sidecar });
  }

  // 3. Volumes, appended.
  if (spec.volumes === undefined) ops.push({ op: 'add', path: '/spec/volumes', value: rendered.volumes });
  else for (const v of rendered.volumes) ops.push({ op: 'add', path: '/spec/volumes/-', value: v });

  // 4. Label and annotations; the status annotation is written last.
  const metadata = pod.metadata;
  const labels: Record<string, string> = { [LABEL_INJECTED]: 'true' };
  const annotations: Record<string, string> = {};
  const firstApp = spec.containers?.find((c) => !INJECTED_CONTAINER_NAMES.has(c.name));
  if (firstApp !== undefined && metadata?.annotations?.[ANNOTATION_DEFAULT_CONTAINER] === undefined) {
    annotations[ANNOTATION_DEFAULT_CONTAINER] = firstApp.name;
  }
  annotations[ANNOTATION_STATUS] = JSON.stringify(rendered.status);

  if (metadata === undefined) {
    ops.push({ op: 'add', path: '/metadata', value: { labels, annotations } });
  } else {
    addMapEntries(ops, 'labels', metadata.labels, labels);
    addMapEntries(ops, 'annotations', metadata.annotations, annotations);
  }
  return { reason: stripped || reinvoked ? 'reinjected' : 'injected', patch: ops, annotations, labels };
}

function addMapEntries(ops: JsonPatchOperation[], field: 'labels' | 'annotations', existing: Readonly<Record<string, string>> | undefined, entries: Record<string, string>): void {
  if (existing === undefined) {
    ops.push({ op: 'add', path: pointer('metadata', field), value: entries });
    return;
  }
  // RFC 6902 §4.1: `add` on an existing object member replaces its value.
  for (const [key, value] of Object.entries(entries)) ops.push({ op: 'add', path: pointer('metadata', field, key), value });
}

function describePod(pod: PodLike, namespace: string): string {
  const m = pod.metadata;
  const name = m?.name ?? (m?.generateName !== undefined ? `${m.generateName}*` : '<unnamed>');
  return `${namespace}/${name}`;
}
