// The reconcile executor: carries out the planner's actions with @kubernetes/client-node 2.x and
// reports one outcome per action. Thin on purpose: every decision was taken by the planner, so the
// only logic here is how the API server's answers map to outcomes.
//
// - ConfigMaps: create, or replace at the observed resourceVersion (a 409 is a conflict: the
//   caches were stale, re-plan). A create that meets AlreadyExists (a ConfigMap the caches did not
//   show) reads it and replaces it at its resourceVersion, as the planner would have.
// - Orphans: delete with uid/resourceVersion preconditions; 404 means done.
// - Status: JSON merge patch on the `/status` subresource carrying the policy's observed
//   resourceVersion, so a status computed from stale data is refused with 409 rather than written.
// Actions run in order; a failed ConfigMap write skips the same policy's status (which would
// otherwise claim Ready for a ConfigMap that was not written). Nothing throws: one failure never
// stops the others. Logs name objects, results and the API server's reason, never ConfigMap data.
import {
  ApiException, CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, V1ConfigMap, V1DeleteOptions, V1ObjectMeta, V1OwnerReference,
  V1Preconditions, type KubeConfig,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import {
  describeAction, SKIPPED_NOT_LEADER, type ActionExecutor, type ActionOutcome, type ApplyConfigMapAction, type DeleteConfigMapAction,
  type OutcomeResult, type ReconcileAction, type UpdateStatusAction,
} from './actions.ts';
import { objectKey } from './observed.ts';
import { rebaseConfigMapManifest, type ConfigMapManifest } from './policy-configmap.ts';

/** Recorded in managedFields for every write the operator makes. */
export const FIELD_MANAGER = 'custos-operator';

export const ACCESS_POLICY_API = { group: 'custos.io', version: 'v1alpha1', plural: 'accesspolicies' } as const;

export interface KubeActionExecutorOptions {
  readonly kubeConfig: KubeConfig;
  readonly logger: Logger;
}

/** What the API server said, from an ApiException (its body is the Status as text) or any other error. */
interface ApiFailure {
  readonly code: number | undefined;
  readonly reason: string | undefined;
  readonly message: string;
}

export class KubeActionExecutor implements ActionExecutor {
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #logger: Logger;

  constructor(options: KubeActionExecutorOptions) {
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.#logger = options.logger;
  }

  async execute(actions: readonly ReconcileAction[], options: { readonly signal?: AbortSignal } = {}): Promise<ActionOutcome[]> {
    const outcomes: ActionOutcome[] = [];
    /** Policies whose ConfigMap write did not happen in this run. */
    const unwritten = new Set<string>();
    for (const action of actions) {
      let outcome: ActionOutcome;
      if (options.signal?.aborted === true) {
        outcome = { action, result: 'skipped', detail: SKIPPED_NOT_LEADER };
      } else if (action.kind === 'update-status' && unwritten.has(objectKey(action.namespace, action.name))) {
        outcome = { action, result: 'skipped', detail: 'its ConfigMap was not written' };
      } else {
        outcome = await this.#run(action);
      }
      if (action.kind === 'apply-configmap' && outcome.result !== 'applied') unwritten.add(objectKey(action.policy.namespace, action.policy.name));
      this.#log(outcome);
      outcomes.push(outcome);
    }
    return outcomes;
  }

  async #run(action: ReconcileAction): Promise<ActionOutcome> {
    try {
      switch (action.kind) {
        case 'apply-configmap': return await this.#applyConfigMap(action);
        case 'delete-configmap': return await this.#deleteConfigMap(action);
        case 'update-status': return await this.#updateStatus(action);
        default: {
          const unknown: never = action;
          return { action: unknown, result: 'failed', detail: 'unknown action' };
        }
      }
    } catch (e: unknown) {
      const failure = apiFailure(e);
      return { action, result: failure.code === 409 ? 'conflict' : 'failed', detail: describeFailure(failure) };
    }
  }

  async #applyConfigMap(action: ApplyConfigMapAction): Promise<ActionOutcome> {
    const { namespace, name } = action;
    const outcome = (result: OutcomeResult, detail: string): ActionOutcome => ({ action, result, detail });
    let body = action.configMap;
    if (body.metadata.resourceVersion === undefined) {
      try {
        await this.#core.createNamespacedConfigMap({ namespace, body: toV1ConfigMap(body), fieldManager: FIELD_MANAGER });
        return outcome('applied', 'created');
      } catch (e: unknown) {
        const failure = apiFailure(e);
        if (failure.code === 404) return outcome('gone', `namespace ${namespace} does not exist`);
        if (failure.reason !== 'AlreadyExists') throw e;
      }
      body = rebaseConfigMapManifest(body, await this.#core.readNamespacedConfigMap({ namespace, name }));
    }
    try {
      await this.#core.replaceNamespacedConfigMap({ namespace, name, body: toV1ConfigMap(body), fieldManager: FIELD_MANAGER });
      return outcome('applied', 'updated');
    } catch (e: unknown) {
      // Deleted since the caches saw it: as stale as a changed resourceVersion; re-plan.
      if (apiFailure(e).code === 404) return outcome('conflict', `ConfigMap ${namespace}/${name} was deleted meanwhile`);
      throw e;
    }
  }

  async #deleteConfigMap(action: DeleteConfigMapAction): Promise<ActionOutcome> {
    const { namespace, name, preconditions } = action;
    try {
      const options = new V1DeleteOptions();
      options.preconditions = new V1Preconditions();
      if (preconditions.uid !== undefined) options.preconditions.uid = preconditions.uid;
      if (preconditions.resourceVersion !== undefined) options.preconditions.resourceVersion = preconditions.resourceVersion;
      await this.#core.deleteNamespacedConfigMap({ namespace, name, body: options });
      return { action, result: 'applied', detail: 'deleted' };
    } catch (e: unknown) {
      if (apiFailure(e).code === 404) return { action, result: 'applied', detail: 'already deleted' };
      throw e;
    }
  }

  async #updateStatus(action: UpdateStatusAction): Promise<ActionOutcome> {
    const { namespace, name, resourceVersion, status } = action;
    const body = { ...(resourceVersion === undefined ? {} : { metadata: { resourceVersion } }), status };
    try {
      await this.#custom.patchNamespacedCustomObjectStatus(
        { ...ACCESS_POLICY_API, namespace, name, body, fieldManager: FIELD_MANAGER },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      return { action, result: 'applied', detail: 'status updated' };
    } catch (e: unknown) {
      if (apiFailure(e).code === 404) return { action, result: 'gone', detail: `AccessPolicy ${namespace}/${name} no longer exists` };
      throw e;
    }
  }

  #log(outcome: ActionOutcome): void {
    const { action, result, detail } = outcome;
    const fields = {
      action: action.kind,
      namespace: action.namespace,
      name: action.name,
      result,
      detail,
      ...(action.kind === 'apply-configmap' ? { policy: action.policy.name, generation: action.policy.generation, policyDigest: action.policyDigest } : {}),
    };
    const message = `${describeAction(action)}: ${result}`;
    if (result === 'failed') this.#logger.warn(fields, message);
    else if (result === 'skipped') this.#logger.debug(fields, message);
    else this.#logger.info(fields, message);
  }
}

/** client-node's request bodies are its model classes. */
function toV1ConfigMap(manifest: ConfigMapManifest): V1ConfigMap {
  const m = manifest.metadata;
  const metadata = new V1ObjectMeta();
  metadata.name = m.name;
  metadata.namespace = m.namespace;
  if (m.resourceVersion !== undefined) metadata.resourceVersion = m.resourceVersion;
  metadata.labels = { ...m.labels };
  metadata.annotations = { ...m.annotations };
  if (m.ownerReferences !== undefined) {
    metadata.ownerReferences = m.ownerReferences.map((o) => {
      const ref = new V1OwnerReference();
      ref.apiVersion = o.apiVersion;
      ref.kind = o.kind;
      ref.name = o.name;
      ref.uid = o.uid;
      if (o.controller !== undefined) ref.controller = o.controller;
      if (o.blockOwnerDeletion !== undefined) ref.blockOwnerDeletion = o.blockOwnerDeletion;
      return ref;
    });
  }
  if (m.finalizers !== undefined) metadata.finalizers = [...m.finalizers];
  const configMap = new V1ConfigMap();
  configMap.apiVersion = manifest.apiVersion;
  configMap.kind = manifest.kind;
  configMap.metadata = metadata;
  configMap.data = { ...manifest.data };
  return configMap;
}

function apiFailure(e: unknown): ApiFailure {
  if (e instanceof ApiException) {
    const status = parseStatus(e.body);
    return { code: e.code, reason: status?.reason, message: status?.message ?? `HTTP ${e.code}` };
  }
  return { code: undefined, reason: undefined, message: e instanceof Error ? e.message : String(e) };
}

/** The Status object of an error response; client-node hands over the body as text. */
function parseStatus(body: unknown): { reason?: string; message?: string } | undefined {
  let value = body;
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { reason, message } = value as Record<string, unknown>;
  return { ...(typeof reason === 'string' ? { reason } : {}), ...(typeof message === 'string' ? { message } : {}) };
}

function describeFailure(failure: ApiFailure): string {
  const code = failure.code === undefined ? '' : `HTTP ${failure.code} `;
  const reason = failure.reason === undefined ? '' : `${failure.reason}: `;
  return `${code}${reason}${failure.message}`;
}
