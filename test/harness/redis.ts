// A throwaway Redis server for tests on a free port in a temp dir; `stop()` (SIGKILL, a crash) then
// `start()` restarts it on the same port with its data (for outage tests). It runs with AOF and
// `appendfsync always`, the durability the audit shipper relies on before it frees spool segments
// (docs/adr/0003). Real redis-server from Debian's packages.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.ts';
import { spawnManaged, stopProcess, waitFor } from './processes.ts';

export interface RedisInstance {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops and removes the temp dir; the instance cannot be restarted. */
  destroy(): Promise<void>;
}

async function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.setTimeout(1000);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => { socket.destroy(); resolve(d.toString().startsWith('+PONG')); });
    socket.once('error', () => { resolve(false); });
    socket.once('timeout', () => { socket.destroy(); resolve(false); });
  });
}

export async function startRedis(): Promise<RedisInstance> {
  const dir = await mkdtemp(join(tmpdir(), 'custos-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const proc = spawnManaged('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always',
      '--dir', dir, '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning']);
    child = proc;
    let log = '';
    proc.stdout?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-2000); });
    await waitFor('Redis to answer PING', async () => {
      if (proc.exitCode !== null) throw new Error(`redis-server exited: ${log}`);
      return ping(port);
    });
  };
  await start();
  const stop = async (): Promise<void> => {
    if (child) await stopProcess(child, 'SIGKILL');
    child = undefined;
  };
  return {
    host: '127.0.0.1', port, url: `redis://127.0.0.1:${port}`,
    start, stop,
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
