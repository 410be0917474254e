// The webhook's AdmissionContext in the running operator: answers from the informer caches, and
// asks the API server only when the cache may be behind in a way that would matter — a namespace it
// has not seen yet (created a moment ago), or an opted-in namespace where it holds no policy (a
// policy applied a moment before the pod). Never the other way round: a cache miss must not turn
// into "inject nothing" for a pod the policy selects.
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import type { AdmissionContext, NamespaceInfo } from './admission-context.ts';

export interface AdmissionCaches {
  /** undefined when the cache has not seen the namespace. */
  namespace(name: string): NamespaceInfo | undefined;
  policies(namespace: string): readonly AccessPolicy[];
  synced(): boolean;
}

export function createCachedAdmissionContext(caches: AdmissionCaches, api: AdmissionContext): AdmissionContext {
  return {
    async namespace(name) {
      if (!caches.synced()) return api.namespace(name);
      return caches.namespace(name) ?? api.namespace(name);
    },
    async policies(namespace) {
      if (!caches.synced()) return api.policies(namespace);
      const cached = caches.policies(namespace);
      return cached.length > 0 ? cached : api.policies(namespace);
    },
  };
}
