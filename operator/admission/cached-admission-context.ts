// The webhook's AdmissionContext in the running operator: answers from the informer caches, asks
// the API server for a namespace the cache has not seen yet (created a moment ago), and names the
// API context as authoritative, so that a skip the cache could have caused (namespace not opted
// in, no policy selects the pod) is confirmed against the API server before the pod is admitted
// uninjected. Never the other way round: a stale cache must not turn into "inject nothing".
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
      return caches.policies(namespace);
    },
    authoritative: api,
  };
}
