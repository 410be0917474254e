// One pod's life on the runner's "node", in the kubelet's order (pkg/kubelet/kuberuntime
// SyncPod): sandbox (network namespace, pod IP, hosts file) → volumes (the pod waits while a
// ConfigMap or Secret is missing) → init containers one at a time, each to exit 0, a native
// sidecar (restartPolicy: Always) started and kept running, the next one starting once its
// startupProbe passes → app containers → restarts as restartPolicy says, with back-off → status
// through pods/status after every change. When the app containers are done for good, the
// sidecars are stopped (KEP-753). Deletion stops apps, then sidecars in reverse order, within
// terminationGracePeriodSeconds, and removes the network namespace and files.
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand, type CommandResult } from '../processes.ts';
import { writeAtomically } from './atomic-writer.ts';
import { startContainerProcess, LogBuffer, type ContainerProcess, type ExitStatus } from './container-process.ts';
import { containerEnv, ContainerConfigError } from './env.ts';
import type { RuntimeFields } from './field-ref.ts';
import { commandLine, findImage, type ImageTable } from './image-fixtures.ts';
import { isNotFound, type KubeClient } from './kube-client.ts';
import { launchArgv, nonRootViolation, processIdentity, setprivArgs, type BindMount, type ProcessIdentity } from './launch-command.ts';
import type { ChildProcess } from 'node:child_process';
import { stopRelay, type LoopbackForwarder } from './loopback-forward.ts';
import type { NodeNetwork, PodNetwork, ServiceAddress } from './pod-network.ts';
import { isSidecar, type ConfigMapLike, type Container, type Pod, type Probe, type SecretLike } from './pod-spec.ts';
import { podStatus, timestamp, type Condition, type ContainerRecord, type PodRecord } from './pod-status.ts';
import { probeTiming, runProbe } from './probes.ts';
import { volumeContent, type IssuedToken, type VolumeContent } from './volume-content.ts';

export interface HostTools {
  readonly sh: string;
  readonly setpriv: string;
  readonly nsenter: string;
}

export interface WorkerDeps {
  readonly client: KubeClient;
  readonly network: NodeNetwork;
  readonly images: ImageTable;
  readonly tools: HostTools;
  readonly nodeName: string;
  readonly podsDir: string;
  configMap(namespace: string, name: string): ConfigMapLike | undefined;
  secret(namespace: string, name: string): SecretLike | undefined;
  dns(): { services: readonly ServiceAddress[]; hosts: Readonly<Record<string, string>> };
  /** Extra environment for every container (e.g. KUBERNETES_SERVICE_HOST/PORT). */
  readonly baseEnv: Readonly<Record<string, string>>;
  readonly probePeriodMs: number | undefined;
  /** Token refresh after this many ms instead of at 80% of the token's lifetime. */
  readonly tokenRefreshMs: number | undefined;
  readonly backoffMs: { readonly initial: number; readonly max: number };
  /** Host loopback ports relayed onto each pod's loopback. */
  readonly loopback: LoopbackForwarder | undefined;
  warn(message: string): void;
}

interface Running {
  readonly process: ContainerProcess;
  readonly identity: ProcessIdentity;
  readonly env: Readonly<Record<string, string>>;
  /** Probe loops stop when this run ends. */
  alive: boolean;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

export class PodWorker {
  pod: Pod;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly dir: string;
  network: PodNetwork | undefined;
  readonly logs = new Map<string, LogBuffer>();
  readonly running = new Map<string, Running>();
  /** The last reason the pod could not start (a missing volume source, a config error). */
  problem: string | undefined;
  readonly done: Promise<void>;

  readonly #d: WorkerDeps;
  readonly #record: PodRecord;
  readonly #abort = new AbortController();
  #conditions: Condition[] = [];
  #statusInFlight: Promise<void> | undefined;
  #statusDirty = false;
  #statusStopped = false;
  #volumeSync: Promise<void> = Promise.resolve();
  #volumesReady = false;
  #tokens = new Map<string, IssuedToken>();
  #refreshTimer: NodeJS.Timeout | undefined;
  #terminated: Promise<void> | undefined;
  #reportedProblems = new Set<string>();
  #sidecarsStopping = false;
  #relay: ChildProcess | undefined;

  constructor(pod: Pod, deps: WorkerDeps) {
    this.pod = pod;
    this.#d = deps;
    this.namespace = pod.metadata.namespace ?? '';
    this.name = pod.metadata.name ?? '';
    this.uid = pod.metadata.uid ?? '';
    this.dir = join(deps.podsDir, `${this.namespace}_${this.name}_${this.uid}`);
    const hasInit = (pod.spec.initContainers ?? []).length > 0;
    const record = (c: Container, kind: ContainerRecord['kind']): ContainerRecord => ({
      name: c.name, image: c.image ?? '', kind, state: { waiting: { reason: hasInit ? 'PodInitializing' : 'ContainerCreating' } },
      lastState: undefined, restartCount: 0, started: false, ready: false, containerID: undefined,
    });
    this.#record = {
      phase: 'Pending', podIP: undefined, hostIP: deps.network.gateway, startTime: timestamp(new Date()), sandboxReady: false, initialized: false,
      init: (pod.spec.initContainers ?? []).map((c) => record(c, isSidecar(c) ? 'sidecar' : 'init')),
      app: pod.spec.containers.map((c) => record(c, 'app')),
    };
    this.done = this.#run().catch((e: unknown) => {
      deps.warn(`pod ${this.namespace}/${this.name}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    });
  }

  get podIP(): string | undefined {
    return this.#record.podIP;
  }

  get phase(): PodRecord['phase'] {
    return this.#record.phase;
  }

  /** A new version of the pod object (labels and annotations feed downwardAPI volumes). */
  update(pod: Pod): void {
    this.pod = pod;
    if (this.#volumesReady) void this.syncVolumes();
  }

  // ---- status ----

  #container(name: string): ContainerRecord {
    const c = [...this.#record.init, ...this.#record.app].find((x) => x.name === name);
    if (c === undefined) throw new Error(`no container ${name} in pod ${this.namespace}/${this.name}`);
    return c;
  }

  #pushStatus(): void {
    if (this.#statusStopped) return;
    this.#statusDirty = true;
    if (this.#statusInFlight !== undefined) return;
    this.#statusInFlight = (async () => {
      while (this.#statusDirty && !this.#statusStopped) {
        this.#statusDirty = false;
        const status = podStatus(this.#record, this.#conditions, new Date());
        this.#conditions = status.conditions as Condition[];
        try {
          await this.#d.client.json('PATCH', `/api/v1/namespaces/${this.namespace}/pods/${this.name}/status`, { status }, 'application/merge-patch+json');
        } catch (e: unknown) {
          if (isNotFound(e)) this.#statusStopped = true;
          else this.#d.warn(`pod ${this.namespace}/${this.name}: status update failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    })().finally(() => {
      this.#statusInFlight = undefined;
      if (this.#statusDirty) this.#pushStatus();
    });
  }

  /** Resolves once every status change so far has been written. */
  async statusWritten(): Promise<void> {
    while (this.#statusInFlight !== undefined) await this.#statusInFlight;
  }

  async #event(reason: string, message: string, type: 'Normal' | 'Warning' = 'Normal'): Promise<void> {
    const now = timestamp(new Date());
    await this.#d.client.json('POST', `/api/v1/namespaces/${this.namespace}/events`, {
      apiVersion: 'v1', kind: 'Event',
      metadata: { name: `${this.name}.${Date.now().toString(16)}${Math.floor(Math.random() * 1e6).toString(16)}`, namespace: this.namespace },
      involvedObject: { apiVersion: 'v1', kind: 'Pod', name: this.name, namespace: this.namespace, uid: this.uid },
      reason, message, type, count: 1, firstTimestamp: now, lastTimestamp: now,
      source: { component: 'kubelet', host: this.#d.nodeName }, reportingComponent: 'kubelet', reportingInstance: this.#d.nodeName,
    }).catch(() => undefined);
  }

  #reportProblem(message: string): void {
    this.problem = message;
    if (this.#reportedProblems.has(message)) return;
    this.#reportedProblems.add(message);
    void this.#event('FailedMount', message, 'Warning');
  }

  // ---- lifecycle ----

  get #signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** A method, not a property read, so that checks after an await are not narrowed away. */
  #aborted(): boolean {
    return this.#abort.signal.aborted;
  }

  async #run(): Promise<void> {
    await mkdir(join(this.dir, 'logs'), { recursive: true });
    this.#pushStatus();
    try {
      this.network = await this.#d.network.createPod(this.namespace, this.name, this.pod.spec.hostname ?? this.name);
    } catch (e: unknown) {
      this.problem = `Failed to create pod sandbox: ${e instanceof Error ? e.message : String(e)}`;
      await this.#event('FailedCreatePodSandBox', this.problem, 'Warning');
      throw e;
    }
    const dns = this.#d.dns();
    await this.network.writeHosts(dns.services, dns.hosts);
    if (this.#d.loopback !== undefined) this.#relay = await this.#d.loopback.startInPod(this.network.netns, this.#d.tools.setpriv);
    this.#record.podIP = this.network.podIP;
    this.#record.sandboxReady = true;
    this.#pushStatus();

    while (!this.#aborted()) {
      if (await this.#materialiseVolumes()) break;
      await sleep(500, this.#signal);
    }
    if (this.#aborted()) return;
    this.#volumesReady = true;
    this.problem = undefined;

    const restartPolicy = this.pod.spec.restartPolicy ?? 'Always';
    for (const c of this.pod.spec.initContainers ?? []) {
      if (this.#aborted()) return;
      if (isSidecar(c)) {
        void this.#supervise(c, () => !this.#sidecarsStopping);
        while (!this.#container(c.name).started && !this.#aborted()) await sleep(50, this.#signal);
        continue;
      }
      let attempt = 0;
      for (;;) {
        const exit = await this.#runOnce(c, attempt);
        if (this.#aborted()) return;
        if (exit?.exitCode === 0) break;
        // A container that could not be created (image, config) is retried whatever the policy says.
        if (exit !== undefined && restartPolicy === 'Never') {
          this.#record.phase = 'Failed';
          await this.#stopSidecars(this.#gracePeriodMs());
          this.#pushStatus();
          return;
        }
        await this.#backoff(c, attempt);
        attempt += 1;
      }
    }
    this.#record.initialized = true;
    for (const c of this.#record.app) c.state = { waiting: { reason: 'ContainerCreating' } };
    this.#pushStatus();

    const restarts = (exit: ExitStatus): boolean => restartPolicy === 'Always' || (restartPolicy === 'OnFailure' && exit.exitCode !== 0);
    const apps = this.pod.spec.containers.map((c) => this.#supervise(c, restarts));
    this.#record.phase = 'Running';
    this.#pushStatus();
    await Promise.all(apps);
    if (this.#aborted()) return;
    await this.#stopSidecars(this.#gracePeriodMs());
    const failed = this.#record.app.some((c) => !('terminated' in c.state) || c.state.terminated.exitCode !== 0);
    this.#record.phase = failed ? 'Failed' : 'Succeeded';
    this.#pushStatus();
  }

  #gracePeriodMs(): number {
    return (this.pod.metadata.deletionGracePeriodSeconds ?? this.pod.spec.terminationGracePeriodSeconds ?? 30) * 1000;
  }

  async #backoff(c: Container, attempt: number): Promise<void> {
    const record = this.#container(c.name);
    const ms = Math.min(this.#d.backoffMs.initial * 2 ** attempt, this.#d.backoffMs.max);
    if ('waiting' in record.state) {
      // Not created (image, config): the waiting reason says why, back-off or not.
      await sleep(ms, this.#signal);
      return;
    }
    if ('terminated' in record.state) record.lastState = record.state;
    record.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${Math.round(ms / 1000)}s restarting failed container=${c.name} pod=${this.name}_${this.namespace}(${this.uid})` } };
    this.#pushStatus();
    await sleep(ms, this.#signal);
  }

  /**
   * Runs `c` until `restarts(exit)` says no (or the pod is deleted). The back-off doubles with
   * each consecutive failure to start or crash, and starts over after a run that lasted a while
   * (the kubelet resets it after 10 minutes; here after twice the cap).
   */
  async #supervise(c: Container, restarts: (exit: ExitStatus) => boolean): Promise<void> {
    let attempt = 0;
    for (;;) {
      const started = Date.now();
      const exit = await this.#runOnce(c, attempt);
      if (this.#aborted() || (exit !== undefined && !restarts(exit))) return;
      if (Date.now() - started > 2 * this.#d.backoffMs.max) attempt = 0;
      await this.#backoff(c, attempt);
      if (this.#aborted()) return;
      attempt += 1;
    }
  }

  /** One run of `c`; undefined when it could not be started (its waiting state says why). */
  async #runOnce(c: Container, attempt: number): Promise<ExitStatus | undefined> {
    const record = this.#container(c.name);
    let started: Running;
    try {
      started = await this.#start(c);
    } catch (e: unknown) {
      const reason = e instanceof ContainerConfigError ? e.reason : e instanceof ImageNotFound ? (attempt === 0 ? 'ErrImagePull' : 'ImagePullBackOff') : 'RunContainerError';
      const message = e instanceof Error ? e.message : String(e);
      this.problem = message;
      record.state = { waiting: { reason, message } };
      this.#pushStatus();
      return undefined;
    }
    const launched = await started.process.started;
    if (this.#aborted()) {
      await started.process.stop(0);
      return undefined;
    }
    if (!launched) {
      // The launcher failed before exec'ing the command (a mount, a UID switch): StartError, as the runtime reports it.
      const exit = await started.process.exited;
      const message = this.logs.get(c.name)?.text().trim().split('\n').slice(-3).join('\n') ?? '';
      this.problem = `container ${c.name} failed to start: ${message}`;
      const at = timestamp(exit.finishedAt);
      if (record.containerID !== undefined) record.restartCount += 1;
      record.containerID = `custos-pod-runner://${started.process.pid}`;
      record.state = { terminated: { exitCode: 128, reason: 'StartError', message, startedAt: at, finishedAt: at, containerID: record.containerID } };
      this.#pushStatus();
      return { exitCode: 128, signal: undefined, finishedAt: exit.finishedAt };
    }
    if (record.containerID !== undefined) record.restartCount += 1;
    record.containerID = `custos-pod-runner://${started.process.pid}`;
    record.state = { running: { startedAt: timestamp(started.process.startedAt) } };
    record.started = c.startupProbe === undefined;
    record.ready = record.started && c.readinessProbe === undefined && record.kind !== 'init';
    this.running.set(c.name, started);
    this.#pushStatus();
    void this.#probeLoops(c, started);
    const exit = await started.process.exited;
    started.alive = false;
    if (this.running.get(c.name) === started) this.running.delete(c.name);
    record.ready = false;
    record.started = false;
    record.state = {
      terminated: {
        exitCode: exit.exitCode, ...(exit.signal === undefined ? {} : { signal: exit.signal }), reason: exit.exitCode === 0 ? 'Completed' : 'Error',
        startedAt: timestamp(started.process.startedAt), finishedAt: timestamp(exit.finishedAt), containerID: record.containerID,
      },
    };
    this.#pushStatus();
    return exit;
  }

  async #probeLoops(c: Container, run: Running): Promise<void> {
    const record = this.#container(c.name);
    const target = {
      podIP: this.#record.podIP ?? '',
      container: c,
      exec: async (command: readonly string[], timeoutMs: number): Promise<number> => (await this.#execIn(run, command, timeoutMs)).code ?? 1,
    };
    const loop = async (probe: Probe, onResult: (ok: boolean, timing: ReturnType<typeof probeTiming>, streak: { ok: number; bad: number }) => boolean): Promise<void> => {
      const timing = probeTiming(probe, this.#d.probePeriodMs);
      const streak = { ok: 0, bad: 0 };
      await sleep(timing.initialDelayMs, this.#signal);
      const alive = (): boolean => run.alive && !this.#aborted();
      while (alive()) {
        const ok = await runProbe(probe, target, timing.timeoutMs);
        if (!alive()) return;
        if (ok) {
          streak.ok += 1;
          streak.bad = 0;
        } else {
          streak.bad += 1;
          streak.ok = 0;
        }
        if (!onResult(ok, timing, streak)) return;
        await sleep(timing.periodMs, this.#signal);
      }
    };
    if (c.startupProbe !== undefined) {
      await loop(c.startupProbe, (ok, timing, streak) => {
        if (ok) {
          record.started = true;
          if (c.readinessProbe === undefined && record.kind !== 'init') record.ready = true;
          this.#pushStatus();
          return false;
        }
        if (streak.bad >= timing.failureThreshold) {
          void this.#event('Unhealthy', `Startup probe failed for container ${c.name}`, 'Warning');
          void run.process.stop(this.#gracePeriodMs());
          return false;
        }
        return true;
      });
      if (!record.started) return;
    }
    const loops: Array<Promise<void>> = [];
    if (c.readinessProbe !== undefined && record.kind !== 'init') {
      loops.push(loop(c.readinessProbe, (ok, timing, streak) => {
        const ready = ok ? (streak.ok >= timing.successThreshold ? true : record.ready) : (streak.bad >= timing.failureThreshold ? false : record.ready);
        if (ready !== record.ready && run.alive) {
          record.ready = ready;
          this.#pushStatus();
        }
        return true;
      }));
    }
    if (c.livenessProbe !== undefined) {
      loops.push(loop(c.livenessProbe, (ok, timing, streak) => {
        if (!ok && streak.bad >= timing.failureThreshold) {
          void this.#event('Killing', `Container ${c.name} failed liveness probe, will be restarted`, 'Normal');
          void run.process.stop(this.#gracePeriodMs());
          return false;
        }
        return true;
      }));
    }
    await Promise.all(loops);
  }

  // ---- volumes ----

  #runtimeFields(): RuntimeFields {
    return { podIP: this.#record.podIP ?? '', hostIP: this.#d.network.gateway, nodeName: this.#d.nodeName };
  }

  #volumeDir(name: string): string {
    return join(this.dir, 'volumes', name);
  }

  async #token(audience: string | undefined, expirationSeconds: number): Promise<IssuedToken> {
    const key = `${audience ?? ''}\u0000${expirationSeconds}`;
    const cached = this.#tokens.get(key);
    if (cached !== undefined && Date.now() < cached.refreshAt) return cached;
    const sa = this.pod.spec.serviceAccountName ?? 'default';
    const answer = await this.#d.client.json<{ status: { token: string; expirationTimestamp: string } }>(
      'POST', `/api/v1/namespaces/${this.namespace}/serviceaccounts/${sa}/token`,
      {
        apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest',
        spec: { ...(audience === undefined ? {} : { audiences: [audience] }), expirationSeconds, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: this.name, uid: this.uid } },
      },
    );
    // The kubelet refreshes a token once it is older than 80% of its lifetime.
    const lifetimeMs = Date.parse(answer.status.expirationTimestamp) - Date.now();
    const issued = { token: answer.status.token, refreshAt: Date.now() + (this.#d.tokenRefreshMs ?? lifetimeMs * 0.8) };
    this.#tokens.set(key, issued);
    return issued;
  }

  async #contents(): Promise<Array<{ name: string; content: VolumeContent }>> {
    const out: Array<{ name: string; content: VolumeContent }> = [];
    const lookups = {
      configMap: (name: string) => this.#d.configMap(this.namespace, name),
      secret: (name: string) => this.#d.secret(this.namespace, name),
      token: (audience: string | undefined, seconds: number) => this.#token(audience, seconds),
    };
    for (const v of this.pod.spec.volumes ?? []) out.push({ name: v.name, content: await volumeContent(v, this.pod, this.#runtimeFields(), lookups) });
    return out;
  }

  /** Sets every volume up; false (and the reason reported) while one cannot be. */
  async #materialiseVolumes(): Promise<boolean> {
    const contents = await this.#contents();
    const missing = contents.find((c) => c.content.kind === 'missing');
    if (missing !== undefined && missing.content.kind === 'missing') {
      this.#reportProblem(missing.content.message);
      return false;
    }
    await this.#writeVolumes(contents);
    return true;
  }

  async #writeVolumes(contents: Array<{ name: string; content: VolumeContent }>): Promise<void> {
    let refreshAt = Infinity;
    for (const { name, content } of contents) {
      const dir = this.#volumeDir(name);
      if (content.kind === 'emptyDir') {
        await mkdir(dir, { recursive: true });
        await chmod(dir, 0o777);
      } else if (content.kind === 'files') {
        await writeAtomically(dir, content.payload);
        if (content.refreshAt !== undefined) refreshAt = Math.min(refreshAt, content.refreshAt);
      }
    }
    if (this.#refreshTimer !== undefined) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    if (refreshAt !== Infinity && !this.#aborted()) {
      this.#refreshTimer = setTimeout(() => { void this.syncVolumes(); }, Math.max(0, refreshAt - Date.now()) + 10);
    }
  }

  /** Re-projects ConfigMap, Secret, downwardAPI and token volumes (after a change, or to rotate tokens). */
  syncVolumes(options: { forceTokens?: boolean } = {}): Promise<void> {
    this.#volumeSync = this.#volumeSync.then(async () => {
      if (!this.#volumesReady || this.#aborted()) return;
      if (options.forceTokens === true) this.#tokens.clear();
      // A source that vanished keeps its last content, as the kubelet keeps the files it has.
      const contents = (await this.#contents()).filter((c) => c.content.kind !== 'missing');
      await this.#writeVolumes(contents);
    }).catch((e: unknown) => { this.#d.warn(`pod ${this.namespace}/${this.name}: volume sync: ${e instanceof Error ? e.message : String(e)}`); });
    return this.#volumeSync;
  }

  /** Where each volumeMount comes from on the host. */
  async #bindMounts(c: Container): Promise<BindMount[]> {
    const mounts: BindMount[] = [];
    for (const m of c.volumeMounts ?? []) {
      const volume = (this.pod.spec.volumes ?? []).find((v) => v.name === m.name);
      if (volume === undefined) throw new ContainerConfigError(`volumeMount ${m.name} names no volume of the pod`);
      const base = volume.hostPath !== undefined ? volume.hostPath.path : this.#volumeDir(m.name);
      const source = m.subPath === undefined || m.subPath === '' ? base : join(base, m.subPath);
      if (m.subPath !== undefined && m.subPath !== '' && volume.emptyDir !== undefined) await mkdir(source, { recursive: true, mode: 0o777 });
      const sourceIsDir = (await stat(source).catch(() => undefined))?.isDirectory();
      if (sourceIsDir === undefined) throw new ContainerConfigError(`volumeMount ${m.name}: ${source} does not exist`);
      mounts.push({ source, target: m.mountPath, readOnly: m.readOnly === true, directory: sourceIsDir });
    }
    return mounts;
  }

  // ---- containers ----

  async #start(c: Container): Promise<Running> {
    const image = findImage(this.#d.images, c.image ?? '');
    if (image === undefined) throw new ImageNotFound(`Failed to pull image "${c.image ?? ''}": the pod runner's image table has no entry for it`);
    const env = containerEnv(this.pod, c, this.#runtimeFields(), {
      configMap: (name) => this.#d.configMap(this.namespace, name),
      secret: (name) => this.#d.secret(this.namespace, name),
    });
    const identity = processIdentity(c, this.pod.spec.securityContext);
    const violation = nonRootViolation(c, this.pod.spec.securityContext, identity.uid, `${this.name}_${this.namespace}(${this.uid})`);
    if (violation !== undefined) throw new ContainerConfigError(violation);
    const argv = commandLine(c, image, env);
    const mounts = await this.#bindMounts(c);
    const fullEnv: Record<string, string> = {
      PATH: DEFAULT_PATH, HOSTNAME: this.pod.spec.hostname ?? this.name, HOME: identity.uid === 0 ? '/root' : '/',
      ...this.#d.baseEnv, ...image.env, ...Object.fromEntries(env),
    };
    const network = this.network;
    if (network === undefined) throw new Error('the pod has no network namespace yet');
    const log = this.logs.get(c.name) ?? new LogBuffer();
    this.logs.set(c.name, log);
    const launch = launchArgv(network.netns, {
      sh: this.#d.tools.sh, setpriv: this.#d.tools.setpriv, mounts,
      readOnlyRootFilesystem: c.securityContext?.readOnlyRootFilesystem === true,
      workingDir: c.workingDir ?? image.workingDir ?? '/', identity, argv,
    });
    const process = startContainerProcess(['ip', ...launch], fullEnv, log, join(this.dir, 'logs', `${c.name}.log`));
    return { process, identity, env: fullEnv, alive: true };
  }

  async #execIn(run: Running, command: readonly string[], timeoutMs: number): Promise<CommandResult> {
    const t = this.#d.tools;
    const child = runCommand(t.nsenter, ['-t', String(run.process.pid), '-m', '-n', '--', t.setpriv, ...setprivArgs(run.identity), '--', ...command], { env: run.env, timeout: timeoutMs });
    return child;
  }

  /** Runs `command` in container `name`'s namespaces as its user, with its environment (a `kubectl exec` stand-in). */
  async exec(name: string, command: readonly string[], timeoutMs = 30_000): Promise<CommandResult> {
    const run = this.running.get(name);
    if (run === undefined) throw new Error(`container ${name} of pod ${this.namespace}/${this.name} is not running`);
    return this.#execIn(run, command, timeoutMs);
  }

  async #stopSidecars(graceMs: number): Promise<void> {
    this.#sidecarsStopping = true;
    const deadline = Date.now() + graceMs;
    for (const c of [...(this.pod.spec.initContainers ?? [])].reverse()) {
      const run = this.running.get(c.name);
      if (run !== undefined) await run.process.stop(Math.max(0, deadline - Date.now()));
    }
  }

  /** Pod deleted: stop everything within the grace period, then remove the sandbox and files. */
  terminate(graceSeconds?: number): Promise<void> {
    this.#terminated ??= (async () => {
      const graceMs = graceSeconds === undefined ? this.#gracePeriodMs() : graceSeconds * 1000;
      const deadline = Date.now() + graceMs;
      this.#abort.abort();
      if (this.#refreshTimer !== undefined) clearTimeout(this.#refreshTimer);
      const sidecars = new Set((this.pod.spec.initContainers ?? []).filter(isSidecar).map((c) => c.name));
      await Promise.all([...this.running].filter(([name]) => !sidecars.has(name)).map(([, run]) => run.process.stop(graceMs)));
      await this.#stopSidecars(Math.max(0, deadline - Date.now()));
      await Promise.all([...this.running.values()].map((run) => run.process.stop(0)));
      await this.done;
      await Promise.all([...this.running.values()].map((run) => run.process.stop(0)));
      await this.#volumeSync;
      this.#pushStatus();
      await this.statusWritten();
      this.#statusStopped = true;
      if (this.#relay !== undefined) await stopRelay(this.#relay);
      await this.network?.destroy();
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.#terminated;
  }
}

class ImageNotFound extends Error {}
