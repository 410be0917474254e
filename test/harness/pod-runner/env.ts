// A container's environment as the kubelet builds it (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables):
// envFrom first, then env in order (later wins), $(VAR) references expanded against what is
// already defined, valueFrom resolved from the downward API, Secrets and ConfigMaps. A missing
// non-optional Secret or ConfigMap key is CreateContainerConfigError, as the kubelet reports it.
import { fieldValue, type RuntimeFields } from './field-ref.ts';
import type { ConfigMapLike, Container, Pod, SecretLike } from './pod-spec.ts';

export interface EnvLookups {
  configMap(name: string): ConfigMapLike | undefined;
  secret(name: string): SecretLike | undefined;
}

/** The container cannot be created yet; `message` is what the kubelet puts in the waiting state. */
export class ContainerConfigError extends Error {
  readonly reason = 'CreateContainerConfigError';
}

export function secretValues(secret: SecretLike): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}

export function configMapValues(cm: ConfigMapLike): Record<string, string> {
  return { ...cm.data };
}

/** $(VAR) → value when VAR is defined, $$ → $, anything else left as written (third_party/forked/golang/expansion). */
export function expandReferences(text: string, defined: ReadonlyMap<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole: string, name: string | undefined) => {
    if (whole === '$$') return '$';
    return name !== undefined && defined.has(name) ? defined.get(name) ?? '' : whole;
  });
}

export function containerEnv(pod: Pod, container: Container, runtime: RuntimeFields, lookups: EnvLookups): Map<string, string> {
  const env = new Map<string, string>();
  const namespace = pod.metadata.namespace ?? '';
  for (const source of container.envFrom ?? []) {
    const prefix = source.prefix ?? '';
    let values: Record<string, string> | undefined;
    if (source.configMapRef !== undefined) {
      const cm = lookups.configMap(source.configMapRef.name ?? '');
      if (cm === undefined && source.configMapRef.optional !== true) throw new ContainerConfigError(`configmap "${source.configMapRef.name ?? ''}" not found`);
      values = cm === undefined ? {} : configMapValues(cm);
    } else if (source.secretRef !== undefined) {
      const secret = lookups.secret(source.secretRef.name ?? '');
      if (secret === undefined && source.secretRef.optional !== true) throw new ContainerConfigError(`secret "${source.secretRef.name ?? ''}" not found`);
      values = secret === undefined ? {} : secretValues(secret);
    }
    for (const [k, v] of Object.entries(values ?? {})) env.set(`${prefix}${k}`, v);
  }
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom;
    if (from === undefined) {
      env.set(variable.name, expandReferences(variable.value ?? '', env));
      continue;
    }
    if (from.fieldRef !== undefined) {
      env.set(variable.name, fieldValue(pod, from.fieldRef.fieldPath, runtime));
    } else if (from.secretKeyRef !== undefined) {
      const ref = from.secretKeyRef;
      const secret = lookups.secret(ref.name ?? '');
      const value = secret === undefined ? undefined : secretValues(secret)[ref.key];
      if (value !== undefined) env.set(variable.name, value);
      else if (ref.optional !== true) {
        throw new ContainerConfigError(secret === undefined ? `secret "${ref.name ?? ''}" not found` : `couldn't find key ${ref.key} in Secret ${namespace}/${ref.name ?? ''}`);
      }
    } else if (from.configMapKeyRef !== undefined) {
      const ref = from.configMapKeyRef;
      const cm = lookups.configMap(ref.name ?? '');
      const value = cm === undefined ? undefined : configMapValues(cm)[ref.key];
      if (value !== undefined) env.set(variable.name, value);
      else if (ref.optional !== true) {
        throw new ContainerConfigError(cm === undefined ? `configmap "${ref.name ?? ''}" not found` : `couldn't find key ${ref.key} in ConfigMap ${namespace}/${ref.name ?? ''}`);
      }
    } else {
      throw new ContainerConfigError(`env ${variable.name}: valueFrom.resourceFieldRef is not supported by the pod runner`);
    }
  }
  return env;
}
