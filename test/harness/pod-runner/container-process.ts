// One run of one container as a local process group: started through launch-command.ts, its
// stdout and stderr kept (what `kubectl logs` would show) and appended to a log file, its exit
// reported as the container runtime reports it (exit code, or 128+signal). Stopping sends SIGTERM
// to the main process only, as the runtime does, then SIGKILL to the whole group after the grace
// period; when the main process ends, whatever it left behind is killed with it.
import type { ChildProcess } from 'node:child_process';
import { appendFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { spawnManaged } from '../processes.ts';

export interface ExitStatus {
  readonly exitCode: number;
  readonly signal: number | undefined;
  readonly finishedAt: Date;
}

export interface ContainerProcess {
  readonly pid: number;
  readonly startedAt: Date;
  /** True once the launcher has set the container up and exec'd its command; false if it died first. */
  readonly started: Promise<boolean>;
  readonly exited: Promise<ExitStatus>;
  /** SIGTERM, then SIGKILL of the group after `graceMs`; resolves when the main process is gone. */
  stop(graceMs: number): Promise<ExitStatus>;
}

const MAX_LOG = 4 * 1024 * 1024;

export class LogBuffer {
  #text = '';
  append(chunk: string): void {
    this.#text += chunk;
    if (this.#text.length > MAX_LOG) this.#text = this.#text.slice(-MAX_LOG);
  }
  text(): string {
    return this.#text;
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

export function startContainerProcess(argv: readonly string[], env: Readonly<Record<string, string>>, log: LogBuffer, logFile: string): ContainerProcess {
  const [command = '', ...args] = argv;
  const child: ChildProcess = spawnManaged(command, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  let writes = Promise.resolve();
  const onData = (d: Buffer): void => {
    const text = d.toString();
    log.append(text);
    writes = writes.then(() => appendFile(logFile, text)).catch(() => undefined);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const startedAt = new Date();
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('error', (e) => {
      log.append(`failed to start: ${e.message}\n`);
      resolve({ exitCode: 128, signal: undefined, finishedAt: new Date() });
    });
    child.once('exit', (code, signal) => {
      if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
      const signo = signal === null ? undefined : constants.signals[signal];
      resolve({ exitCode: code ?? 128 + (signo ?? 0), signal: signo, finishedAt: new Date() });
    });
  });
  const pid = child.pid ?? -1;
  const started = new Promise<boolean>((resolve) => {
    const signal = child.stdio[3];
    if (signal === null || signal === undefined || !('on' in signal)) {
      resolve(false);
      return;
    }
    signal.on('data', () => { resolve(true); });
    signal.on('error', () => { resolve(false); });
    signal.on('close', () => { resolve(false); });
    void exited.then(() => { resolve(false); });
  });
  return {
    pid,
    startedAt,
    started,
    exited,
    async stop(graceMs: number): Promise<ExitStatus> {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => { if (pid > 0) killGroup(pid, 'SIGKILL'); }, Math.max(0, graceMs));
      const status = await exited;
      clearTimeout(timer);
      return status;
    },
  };
}
