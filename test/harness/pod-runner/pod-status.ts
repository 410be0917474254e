// The pod status the kubelet reports (pkg/kubelet/status, kubelet_pods.go generateAPIPodStatus),
// built from the runner's record of its containers: phase, podIP, conditions with their transition
// times, and initContainerStatuses/containerStatuses with waiting/running/terminated states, as
// `kubectl get pod` and `kubectl wait --for=condition=Ready` read them.

export type ContainerState =
  | { readonly waiting: { readonly reason: string; readonly message?: string } }
  | { readonly running: { readonly startedAt: string } }
  | {
      readonly terminated: {
        readonly exitCode: number;
        readonly signal?: number;
        readonly reason: string;
        readonly message?: string;
        readonly startedAt: string;
        readonly finishedAt: string;
        readonly containerID: string;
      };
    };

export type ContainerKind = 'init' | 'sidecar' | 'app';

export interface ContainerRecord {
  readonly name: string;
  readonly image: string;
  readonly kind: ContainerKind;
  state: ContainerState;
  lastState: ContainerState | undefined;
  restartCount: number;
  started: boolean;
  ready: boolean;
  containerID: string | undefined;
}

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed';

export interface PodRecord {
  phase: PodPhase;
  podIP: string | undefined;
  hostIP: string;
  startTime: string;
  sandboxReady: boolean;
  initialized: boolean;
  readonly init: ContainerRecord[];
  readonly app: ContainerRecord[];
}

export interface Condition {
  readonly type: string;
  readonly status: 'True' | 'False';
  readonly lastProbeTime: null;
  readonly lastTransitionTime: string;
  readonly reason?: string;
  readonly message?: string;
}

export function timestamp(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function isRunning(c: ContainerRecord): boolean {
  return 'running' in c.state;
}

export function isTerminated(c: ContainerRecord): boolean {
  return 'terminated' in c.state;
}

function containerStatus(c: ContainerRecord): Record<string, unknown> {
  return {
    name: c.name,
    state: c.state,
    lastState: c.lastState ?? {},
    ready: c.ready,
    restartCount: c.restartCount,
    image: c.image,
    imageID: c.image === '' ? '' : `custos-pod-runner://${c.image}`,
    ...(c.containerID === undefined ? {} : { containerID: c.containerID }),
    started: c.started,
  };
}

/** Conditions, keeping a condition's lastTransitionTime while its status stays the same. */
function conditions(record: PodRecord, previous: readonly Condition[], now: string): Condition[] {
  const unready = [...record.init.filter((c) => c.kind === 'sidecar'), ...record.app].filter((c) => !c.ready).map((c) => c.name);
  const incomplete = record.init.filter((c) => (c.kind === 'sidecar' ? !c.started : !('terminated' in c.state && c.state.terminated.exitCode === 0))).map((c) => c.name);
  const completed = record.phase === 'Succeeded' || record.phase === 'Failed';
  const readyFalse = completed
    ? { reason: 'PodCompleted' }
    : { reason: 'ContainersNotReady', message: `containers with unready status: [${unready.join(' ')}]` };
  const wanted: Array<Omit<Condition, 'lastProbeTime' | 'lastTransitionTime'>> = [
    { type: 'PodReadyToStartContainers', status: record.sandboxReady && !completed ? 'True' : 'False' },
    record.initialized || record.init.length === 0 || (completed && incomplete.length === 0)
      ? { type: 'Initialized', status: 'True', ...(completed && record.init.length > 0 ? { reason: 'PodCompleted' } : {}) }
      : { type: 'Initialized', status: 'False', reason: 'ContainersNotInitialized', message: `containers with incomplete status: [${incomplete.join(' ')}]` },
    unready.length === 0 && !completed ? { type: 'Ready', status: 'True' } : { type: 'Ready', status: 'False', ...readyFalse },
    unready.length === 0 && !completed ? { type: 'ContainersReady', status: 'True' } : { type: 'ContainersReady', status: 'False', ...readyFalse },
    { type: 'PodScheduled', status: 'True' },
  ];
  return wanted.map((c) => {
    const before = previous.find((p) => p.type === c.type);
    return { ...c, lastProbeTime: null, lastTransitionTime: before?.status === c.status ? before.lastTransitionTime : now };
  });
}

export function podStatus(record: PodRecord, previousConditions: readonly Condition[], now: Date): Record<string, unknown> {
  return {
    phase: record.phase,
    conditions: conditions(record, previousConditions, timestamp(now)),
    hostIP: record.hostIP,
    hostIPs: [{ ip: record.hostIP }],
    ...(record.podIP === undefined ? {} : { podIP: record.podIP, podIPs: [{ ip: record.podIP }] }),
    startTime: record.startTime,
    initContainerStatuses: record.init.map(containerStatus),
    containerStatuses: record.app.map(containerStatus),
    qosClass: 'BestEffort',
  };
}
