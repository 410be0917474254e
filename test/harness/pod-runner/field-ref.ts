// Downward API field paths (pkg/fieldpath, pkg/kubelet/kubelet_pods.go podFieldSelectorRuntimeValue):
// the value the kubelet gives an env var or a downwardAPI file for `fieldPath`.
import type { Pod } from './pod-spec.ts';

/** What only the node knows when the container starts. */
export interface RuntimeFields {
  readonly podIP: string;
  readonly hostIP: string;
  readonly nodeName: string;
}

/** labels and annotations as the kubelet writes them: sorted `key="value"` lines (strconv.Quote). */
function formatMap(m: Record<string, string> | undefined): string {
  return Object.keys(m ?? {}).sort().map((k) => `${k}=${JSON.stringify(m?.[k] ?? '')}`).join('\n');
}

export class FieldPathError extends Error {}

export function fieldValue(pod: Pod, fieldPath: string, runtime: RuntimeFields): string {
  const subscript = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (subscript !== null) {
    const map = subscript[1] === 'labels' ? pod.metadata.labels : pod.metadata.annotations;
    return map?.[subscript[2] ?? ''] ?? '';
  }
  switch (fieldPath) {
    case 'metadata.name': return pod.metadata.name ?? '';
    case 'metadata.namespace': return pod.metadata.namespace ?? '';
    case 'metadata.uid': return pod.metadata.uid ?? '';
    case 'metadata.labels': return formatMap(pod.metadata.labels);
    case 'metadata.annotations': return formatMap(pod.metadata.annotations);
    case 'spec.nodeName': return pod.spec.nodeName ?? runtime.nodeName;
    case 'spec.serviceAccountName': return pod.spec.serviceAccountName ?? 'default';
    case 'status.podIP':
    case 'status.podIPs': return runtime.podIP;
    case 'status.hostIP':
    case 'status.hostIPs': return runtime.hostIP;
    default: throw new FieldPathError(`unsupported fieldPath ${JSON.stringify(fieldPath)}`);
  }
}
