// The four collections the operator watches, each behind a ResilientInformer: AccessPolicies (what to
// reconcile and what the webhook injects), Namespaces (the opt-in label), Pods (selected-pod counts)
// and the ConfigMaps the operator manages (label-selected, so it never caches anyone else's).
// Every replica runs them: the webhook answers from them, the leader reconciles from them.
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type KubernetesListObject, type KubernetesObject, type V1ConfigMap, type V1Namespace, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AccessPolicy } from '../crds/generated/access-policy.ts';
import { ResilientInformer } from './kube/informer.ts';
import { ACCESS_POLICY_API } from './reconcile/executor.ts';
import type { ObservedPod, ObservedState } from './reconcile/observed.ts';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from './reconcile/policy-configmap.ts';

export interface WatchedResources {
  readonly policies: ResilientInformer<AccessPolicy & KubernetesObject>;
  readonly namespaces: ResilientInformer<V1Namespace>;
  readonly pods: ResilientInformer<V1Pod>;
  readonly configMaps: ResilientInformer<V1ConfigMap>;
  /** Starts every informer; resolves when all have listed once (the caches are usable). */
  start(): Promise<void>;
  readonly synced: () => boolean;
  /** The caches as the reconcile planner reads them. */
  observe(): ObservedState;
  /** Calls `listener` on every add, update and delete of any of them. */
  onChange(listener: () => void): void;
  stop(): Promise<void>;
}

/** Whether an update changes what the planner reads of a pod: labels, annotations, phase, deletion, hostNetwork. */
export function podSelectionChanged(pod: ObservedPod, previous: ObservedPod): boolean {
  const view = (p: ObservedPod): string => JSON.stringify([p.metadata?.labels ?? {}, p.metadata?.annotations ?? {}, p.status?.phase, p.metadata?.deletionTimestamp !== undefined, p.spec?.hostNetwork === true]);
  return view(pod) !== view(previous);
}

export function createWatchedResources(options: { kubeConfig: KubeConfig; logger: Logger; registry: Registry; watchdogSeconds?: number; relistSeconds?: number }): WatchedResources {
  const core = options.kubeConfig.makeApiClient(CoreV1Api);
  const custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
  const common = {
    kubeConfig: options.kubeConfig,
    logger: options.logger,
    registry: options.registry,
    ...(options.watchdogSeconds === undefined ? {} : { watchdogSeconds: options.watchdogSeconds }),
    ...(options.relistSeconds === undefined ? {} : { relistSeconds: options.relistSeconds }),
  };
  const managed = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;
  const { group, version, plural } = ACCESS_POLICY_API;
  const policies = new ResilientInformer<AccessPolicy & KubernetesObject>({
    ...common,
    name: plural,
    path: `/apis/${group}/${version}/${plural}`,
    list: async () => (await custom.listClusterCustomObject({ group, version, plural })) as KubernetesListObject<AccessPolicy & KubernetesObject>,
  });
  const namespaces = new ResilientInformer<V1Namespace>({ ...common, name: 'namespaces', path: '/api/v1/namespaces', list: () => core.listNamespace() });
  const pods = new ResilientInformer<V1Pod>({ ...common, name: 'pods', path: '/api/v1/pods', list: () => core.listPodForAllNamespaces() });
  const configMaps = new ResilientInformer<V1ConfigMap>({
    ...common,
    name: 'configmaps',
    path: '/api/v1/configmaps',
    labelSelector: managed,
    list: () => core.listConfigMapForAllNamespaces({ labelSelector: managed }),
  });
  const all = [policies, namespaces, pods, configMaps] as const;
  return {
    policies, namespaces, pods, configMaps,
    async start() {
      await Promise.all(all.map((informer) => informer.start()));
    },
    synced: () => all.every((informer) => informer.hasSynced),
    observe: () => ({ policies: policies.list(), namespaces: namespaces.list(), pods: pods.list(), configMaps: configMaps.list() }),
    onChange(listener) {
      const handler = (): void => { listener(); };
      for (const informer of [policies, namespaces, configMaps] as const) {
        informer.on('add', handler);
        informer.on('update', handler);
        informer.on('delete', handler);
      }
      // Pods change status all the time; the planner reads only what selection and counting use.
      pods.on('add', handler);
      pods.on('delete', handler);
      pods.on('update', (pod, previous) => { if (podSelectionChanged(pod, previous)) listener(); });
    },
    async stop() {
      await Promise.all(all.map((informer) => informer.stop()));
    },
  };
}
