// What each of a pod's volumes holds, as the kubelet's volume plugins compute it: the files of
// ConfigMap, Secret, downwardAPI and projected volumes (items, modes, optional), service-account
// tokens requested for the volume's audience, and the kinds that are directories (emptyDir,
// hostPath). Missing objects are reported with the kubelet's MountVolume.SetUp message, so the
// pod waits in ContainerCreating until they exist.
import type { Payload, PayloadFile } from './atomic-writer.ts';
import { fieldValue, type RuntimeFields } from './field-ref.ts';
import type { ConfigMapLike, DownwardApiFile, KeyToPath, Pod, ProjectionSource, SecretLike, Volume } from './pod-spec.ts';

export const DEFAULT_MODE = 0o644;
export const DEFAULT_TOKEN_SECONDS = 3600;

export interface IssuedToken {
  readonly token: string;
  /** When the kubelet would ask for the next one (80% of its lifetime, or as configured). */
  readonly refreshAt: number;
}

export interface VolumeLookups {
  configMap(name: string): ConfigMapLike | undefined;
  secret(name: string): SecretLike | undefined;
  /** A TokenRequest for the pod's service account, bound to the pod; cached until refreshAt. */
  token(audience: string | undefined, expirationSeconds: number): Promise<IssuedToken>;
}

export type VolumeContent =
  | { readonly kind: 'emptyDir' }
  | { readonly kind: 'hostPath'; readonly path: string }
  | { readonly kind: 'files'; readonly payload: Payload; readonly refreshAt: number | undefined }
  | { readonly kind: 'missing'; readonly message: string };

class MissingSource extends Error {}

function keyedFiles(
  what: 'configmap' | 'secret', name: string, values: Record<string, Buffer> | undefined, items: KeyToPath[] | undefined, optional: boolean, mode: number,
): Map<string, PayloadFile> {
  const files = new Map<string, PayloadFile>();
  if (values === undefined) {
    if (optional) return files;
    throw new MissingSource(`${what} "${name}" not found`);
  }
  if (items === undefined) {
    for (const [key, data] of Object.entries(values)) files.set(key, { data, mode });
    return files;
  }
  for (const item of items) {
    const data = values[item.key];
    if (data === undefined) {
      if (optional) continue;
      throw new MissingSource(`${what === 'configmap' ? 'configmap' : 'secret'} references non-existent ${what === 'configmap' ? 'config' : 'secret'} key: ${item.key}`);
    }
    files.set(item.path, { data, mode: item.mode ?? mode });
  }
  return files;
}

function configMapBytes(cm: ConfigMapLike | undefined): Record<string, Buffer> | undefined {
  if (cm === undefined) return undefined;
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(cm.data ?? {})) out[k] = Buffer.from(v, 'utf8');
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}

function secretBytes(secret: SecretLike | undefined): Record<string, Buffer> | undefined {
  if (secret === undefined) return undefined;
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}

function downwardFiles(items: DownwardApiFile[] | undefined, pod: Pod, runtime: RuntimeFields, mode: number): Map<string, PayloadFile> {
  const files = new Map<string, PayloadFile>();
  for (const item of items ?? []) {
    if (item.fieldRef === undefined) throw new MissingSource(`downwardAPI item ${item.path}: only fieldRef is supported by the pod runner`);
    files.set(item.path, { data: Buffer.from(fieldValue(pod, item.fieldRef.fieldPath, runtime)), mode: item.mode ?? mode });
  }
  return files;
}

async function projectedFiles(sources: ProjectionSource[], pod: Pod, runtime: RuntimeFields, lookups: VolumeLookups, mode: number): Promise<{ files: Map<string, PayloadFile>; refreshAt: number | undefined }> {
  const files = new Map<string, PayloadFile>();
  let refreshAt: number | undefined;
  for (const source of sources) {
    let part: Map<string, PayloadFile> = new Map();
    if (source.configMap !== undefined) {
      const name = source.configMap.name ?? '';
      part = keyedFiles('configmap', name, configMapBytes(lookups.configMap(name)), source.configMap.items, source.configMap.optional === true, mode);
    } else if (source.secret !== undefined) {
      const name = source.secret.name ?? '';
      part = keyedFiles('secret', name, secretBytes(lookups.secret(name)), source.secret.items, source.secret.optional === true, mode);
    } else if (source.downwardAPI !== undefined) {
      part = downwardFiles(source.downwardAPI.items, pod, runtime, mode);
    } else if (source.serviceAccountToken !== undefined) {
      const t = source.serviceAccountToken;
      const issued = await lookups.token(t.audience === '' ? undefined : t.audience, t.expirationSeconds ?? DEFAULT_TOKEN_SECONDS).catch((e: unknown) => {
        throw new MissingSource(`failed to fetch token: ${e instanceof Error ? e.message : String(e)}`);
      });
      refreshAt = Math.min(refreshAt ?? Infinity, issued.refreshAt);
      part.set(t.path, { data: Buffer.from(issued.token), mode });
    }
    for (const [k, v] of part) files.set(k, v);
  }
  return { files, refreshAt };
}

export async function volumeContent(volume: Volume, pod: Pod, runtime: RuntimeFields, lookups: VolumeLookups): Promise<VolumeContent> {
  try {
    if (volume.emptyDir !== undefined) return { kind: 'emptyDir' };
    if (volume.hostPath !== undefined) return { kind: 'hostPath', path: volume.hostPath.path };
    if (volume.configMap !== undefined) {
      const name = volume.configMap.name ?? '';
      const files = keyedFiles('configmap', name, configMapBytes(lookups.configMap(name)), volume.configMap.items, volume.configMap.optional === true, volume.configMap.defaultMode ?? DEFAULT_MODE);
      return { kind: 'files', payload: files, refreshAt: undefined };
    }
    if (volume.secret !== undefined) {
      const name = volume.secret.secretName ?? '';
      const files = keyedFiles('secret', name, secretBytes(lookups.secret(name)), volume.secret.items, volume.secret.optional === true, volume.secret.defaultMode ?? DEFAULT_MODE);
      return { kind: 'files', payload: files, refreshAt: undefined };
    }
    if (volume.downwardAPI !== undefined) {
      return { kind: 'files', payload: downwardFiles(volume.downwardAPI.items, pod, runtime, volume.downwardAPI.defaultMode ?? DEFAULT_MODE), refreshAt: undefined };
    }
    if (volume.projected !== undefined) {
      const { files, refreshAt } = await projectedFiles(volume.projected.sources ?? [], pod, runtime, lookups, volume.projected.defaultMode ?? DEFAULT_MODE);
      return { kind: 'files', payload: files, refreshAt };
    }
    const kind = Object.keys(volume).find((k) => k !== 'name') ?? 'unknown';
    return { kind: 'missing', message: `MountVolume.SetUp failed for volume "${volume.name}" : volume type ${kind} is not supported by the pod runner` };
  } catch (e: unknown) {
    if (!(e instanceof MissingSource)) throw e;
    return { kind: 'missing', message: `MountVolume.SetUp failed for volume "${volume.name}" : ${e.message}` };
  }
}
