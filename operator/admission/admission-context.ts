// What the webhook must know besides the AdmissionReview: the pod's namespace (its labels opt it in)
// and the AccessPolicies of that namespace. The wiring backs this with informer caches and falls
// back to a GET; api-admission-context.ts is the plain-GET version. A lookup that fails is an
// error, never "no policy": admitting an uninjected pod because the API was unreachable would
// turn an outage into a bypass, so the transport answers 503 and the API server applies the
// webhook's failurePolicy (Fail).
import { CustosError } from '../../lib/errors.ts';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import { buildInjectionPatch, type InjectionResult } from '../webhook/build-patch.ts';
import type { InjectionSettings } from '../webhook/injection-settings.ts';
import type { PodAdmissionRequest } from './admission-review.ts';

export interface NamespaceInfo {
  readonly name: string;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface AdmissionContext {
  /** undefined when the namespace does not exist; throws when it cannot be read. */
  namespace(name: string): Promise<NamespaceInfo | undefined>;
  /** The AccessPolicies of `namespace`; throws when they cannot be read. */
  policies(namespace: string): Promise<readonly AccessPolicy[]>;
  /**
   * A context that reads the API server directly, when this one may be stale (informer caches):
   * a skip because the namespace is not opted in or no policy selects the pod is confirmed with it,
   * since a cache that lags a `kubectl label` or a new policy would otherwise admit the pod
   * uninjected for its whole life. Injections and rejections need no confirmation.
   */
  readonly authoritative?: AdmissionContext;
}

/** Skips that a stale cache could produce wrongly (see AdmissionContext.authoritative). */
const SKIPS_TO_CONFIRM: ReadonlySet<string> = new Set(['namespace-not-enabled', 'no-policy-selects-pod']);

/** ERR_ADMISSION_CONTEXT: the namespace or its policies could not be read; the pod is not admitted. */
export const ERR_ADMISSION_CONTEXT = 'ERR_ADMISSION_CONTEXT';

/** Looks up what buildInjectionPatch needs and decides; throws ERR_ADMISSION_CONTEXT when a lookup fails. */
export async function decidePodAdmission(request: PodAdmissionRequest, context: AdmissionContext, settings: InjectionSettings): Promise<InjectionResult> {
  const lookup = async <T>(what: string, read: () => Promise<T>): Promise<T> => {
    try {
      return await read();
    } catch (e: unknown) {
      throw new CustosError(ERR_ADMISSION_CONTEXT, `cannot read ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  };
  const [namespace, policies] = await Promise.all([
    lookup(`namespace ${request.namespace}`, () => context.namespace(request.namespace)),
    lookup(`the AccessPolicies of namespace ${request.namespace}`, () => context.policies(request.namespace)),
  ]);
  // The API server only sends pods of existing namespaces; an unknown one means a stale cache.
  if (namespace === undefined) throw new CustosError(ERR_ADMISSION_CONTEXT, `namespace ${request.namespace} is not known yet`);
  const result = buildInjectionPatch({
    pod: request.pod,
    namespace: { name: namespace.name, ...(namespace.labels === undefined ? {} : { labels: namespace.labels }) },
    policies,
    settings,
    requestUser: request.userInfo,
  });
  if (result.kind === 'skip' && SKIPS_TO_CONFIRM.has(result.reason) && context.authoritative !== undefined) {
    return decidePodAdmission(request, context.authoritative, settings);
  }
  return result;
}
