// An AdmissionContext that reads straight from the API server with @kubernetes/client-node: one GET
// for the namespace and one LIST for its AccessPolicies per admission. The operator's wiring puts
// informer caches in front of it; on its own it serves tests and small clusters.
import { ApiException, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import type { AdmissionContext, NamespaceInfo } from './admission-context.ts';

export const ACCESS_POLICY_GROUP = 'custos.io';
export const ACCESS_POLICY_VERSION = 'v1alpha1';
export const ACCESS_POLICY_PLURAL = 'accesspolicies';

export function createApiAdmissionContext(kubeConfig: KubeConfig): AdmissionContext {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  return {
    async namespace(name: string): Promise<NamespaceInfo | undefined> {
      try {
        const ns = await core.readNamespace({ name });
        return { name, labels: ns.metadata?.labels ?? {} };
      } catch (e: unknown) {
        if (e instanceof ApiException && e.code === 404) return undefined;
        throw e;
      }
    },
    async policies(namespace: string): Promise<readonly AccessPolicy[]> {
      const list = (await custom.listNamespacedCustomObject({
        group: ACCESS_POLICY_GROUP, version: ACCESS_POLICY_VERSION, namespace, plural: ACCESS_POLICY_PLURAL,
      })) as { items?: AccessPolicy[] };
      return list.items ?? [];
    },
  };
}
