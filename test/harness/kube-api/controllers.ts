// What the API server's registry strategies, built-in admission plugins and the controllers a
// fresh cluster runs do to built-in objects, as far as clients can see it: Namespace labels and
// phase, each namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, the
// ServiceAccount admission plugin's token volume on Pods, Pod and Service defaults.
import { randomUUID } from 'node:crypto';
import { forbidden } from './errors.ts';
import type { ObjectStore } from './store.ts';
import { isObject, nowTimestamp, type JsonObject, type KubeObject } from './types.ts';

const NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/** The 5-character suffix of generateName (k8s.io/apiserver pkg/storage/names). */
export function randomSuffix(length = 5): string {
  let out = '';
  for (let i = 0; i < length; i += 1) out += NAME_ALPHABET[Math.floor(Math.random() * NAME_ALPHABET.length)] ?? 'x';
  return out;
}

function containers(spec: JsonObject): JsonObject[] {
  return ['initContainers', 'containers'].flatMap((f) => (Array.isArray(spec[f]) ? spec[f].filter(isObject) : []));
}

function imagePullPolicy(image: unknown): string {
  const ref = typeof image === 'string' ? image : '';
  const tag = ref.includes('@') ? 'digest' : /:[^/]+$/.exec(ref)?.[0].slice(1) ?? 'latest';
  return tag === 'latest' ? 'Always' : 'IfNotPresent';
}

/** Defaults the registry strategies and defaulting functions apply on create. */
export function prepareForCreate(group: string, resource: string, object: KubeObject, state: { nextClusterIp: () => string }): void {
  if (group !== '') return;
  switch (resource) {
    case 'namespaces': {
      object.metadata.labels = { ...object.metadata.labels, 'kubernetes.io/metadata.name': object.metadata.name ?? '' };
      object.spec = { finalizers: ['kubernetes'], ...(isObject(object.spec) ? object.spec : {}) };
      object.status = { phase: 'Active' };
      break;
    }
    case 'secrets':
      if (typeof object.type !== 'string' || object.type === '') object.type = 'Opaque';
      break;
    case 'pods': {
      const spec: JsonObject = isObject(object.spec) ? object.spec : {};
      object.spec = spec;
      spec.restartPolicy ??= 'Always';
      spec.terminationGracePeriodSeconds ??= 30;
      spec.dnsPolicy ??= 'ClusterFirst';
      spec.schedulerName ??= 'default-scheduler';
      spec.securityContext ??= {};
      spec.enableServiceLinks ??= true;
      spec.preemptionPolicy ??= 'PreemptLowerPriority';
      spec.priority ??= 0;
      for (const c of containers(spec)) {
        c.imagePullPolicy ??= imagePullPolicy(c.image);
        c.terminationMessagePath ??= '/dev/termination-log';
        c.terminationMessagePolicy ??= 'File';
        c.resources ??= {};
      }
      object.status = { phase: 'Pending', qosClass: 'BestEffort' };
      break;
    }
    case 'services': {
      const spec: JsonObject = isObject(object.spec) ? object.spec : {};
      object.spec = spec;
      spec.type ??= 'ClusterIP';
      spec.sessionAffinity ??= 'None';
      if (spec.clusterIP === undefined && spec.type !== 'ExternalName') {
        const ip = state.nextClusterIp();
        spec.clusterIP = ip;
        spec.clusterIPs = [ip];
        spec.ipFamilies = ['IPv4'];
        spec.ipFamilyPolicy = 'SingleStack';
        spec.internalTrafficPolicy ??= 'Cluster';
      }
      if (Array.isArray(spec.ports)) {
        for (const p of spec.ports.filter(isObject)) {
          p.protocol ??= 'TCP';
          p.targetPort ??= p.port;
        }
      }
      object.status = { loadBalancer: {} };
      break;
    }
    default:
  }
}

const SA_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount): defaults
 * serviceAccountName, refuses a missing service account, and adds the kube-api-access volume
 * (token, kube-root-ca.crt, namespace) mounted into every container.
 */
export function admitServiceAccount(pod: KubeObject, store: ObjectStore): void {
  const spec: JsonObject = isObject(pod.spec) ? pod.spec : {};
  pod.spec = spec;
  const namespace = pod.metadata.namespace ?? '';
  if (typeof spec.serviceAccountName !== 'string' || spec.serviceAccountName === '') spec.serviceAccountName = 'default';
  const name = String(spec.serviceAccountName);
  spec.serviceAccount ??= name;
  const sa = store.get('', 'serviceaccounts', namespace, name);
  if (sa === undefined) {
    throw forbidden(`pods "${pod.metadata.name ?? pod.metadata.generateName ?? ''}" is forbidden: error looking up service account ${namespace}/${name}: serviceaccount "${name}" not found`,
      { name: pod.metadata.name ?? '', kind: 'pods' });
  }
  const automount = spec.automountServiceAccountToken ?? sa.automountServiceAccountToken ?? true;
  if (automount !== true) return;
  const all = containers(spec);
  if (all.some((c) => Array.isArray(c.volumeMounts) && c.volumeMounts.some((m) => isObject(m) && m.mountPath === SA_MOUNT))) return;
  const volumeName = `kube-api-access-${randomSuffix()}`;
  const volumes = Array.isArray(spec.volumes) ? spec.volumes : [];
  volumes.push({
    name: volumeName,
    projected: {
      defaultMode: 420,
      sources: [
        { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
      ],
    },
  });
  spec.volumes = volumes;
  for (const c of all) {
    const mounts = Array.isArray(c.volumeMounts) ? c.volumeMounts : [];
    mounts.push({ name: volumeName, readOnly: true, mountPath: SA_MOUNT });
    c.volumeMounts = mounts;
  }
}

/** Objects the namespace controllers create in a new namespace. */
export function namespaceDefaults(namespace: string, caCert: string, clock: () => number): Array<{ resource: string; object: KubeObject }> {
  const meta = (name: string): KubeObject['metadata'] => ({ name, namespace, uid: randomUUID(), creationTimestamp: nowTimestamp(clock) });
  return [
    { resource: 'serviceaccounts', object: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta('default') } },
    {
      resource: 'configmaps',
      object: {
        apiVersion: 'v1', kind: 'ConfigMap',
        metadata: { ...meta('kube-root-ca.crt'), annotations: { 'kubernetes.io/description': 'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.' } },
        data: { 'ca.crt': caCert },
      },
    },
  ];
}
