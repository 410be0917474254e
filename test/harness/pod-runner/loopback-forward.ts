// Host loopback ports made reachable on each pod's loopback at the same port. The API double
// listens on the host's 127.0.0.1 and names itself https://127.0.0.1:<port> as the token issuer
// (its certificate has no other name), while a pod's 127.0.0.1 is its own: so a sidecar that
// fetches the issuer's OIDC discovery and JWKS, or a client of KUBERNETES_SERVICE_HOST, could
// never reach it. A small relay in the pod's network namespace listens on 127.0.0.1:<port> and
// connects to a Unix socket (the filesystem crosses network namespaces); the runner serves that
// socket and connects to the host's 127.0.0.1:<port>. In a cluster the API server is reached at
// the kubernetes Service address instead; this is the pod runner's way of giving pods that route.
import type { ChildProcess } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { spawnManaged, stopProcess, waitForOutput } from '../processes.ts';

const RELAY = `
const net = require('node:net');
const [dir, ...ports] = process.argv.slice(1);
let pending = ports.length;
for (const port of ports) {
  net.createServer((client) => {
    const upstream = net.connect(dir + '/loopback-' + port + '.sock');
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  }).listen(Number(port), '127.0.0.1', () => { if (--pending === 0) console.log('ready'); });
}
`;

function pipeBoth(a: Socket, b: Socket): void {
  a.pipe(b).pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
}

export interface LoopbackForwarder {
  /** Starts the relay in a pod's network namespace; resolves once it listens. */
  startInPod(netns: string, setpriv: string): Promise<ChildProcess>;
  stop(): Promise<void>;
}

export async function startLoopbackForwarder(dir: string, ports: readonly number[]): Promise<LoopbackForwarder> {
  const servers: Server[] = [];
  const open = new Set<Socket>();
  for (const port of ports) {
    const server = createServer((client) => {
      open.add(client);
      client.once('close', () => open.delete(client));
      pipeBoth(client, connect(port, '127.0.0.1'));
    });
    const path = join(dir, `loopback-${port}.sock`);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, resolve);
    });
    // The relay runs as nobody.
    await chmod(path, 0o777);
    servers.push(server);
  }
  return {
    async startInPod(netns, setpriv): Promise<ChildProcess> {
      const child = spawnManaged('ip', ['netns', 'exec', netns, setpriv, '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', RELAY, dir, ...ports.map(String)]);
      await waitForOutput(child, 'ready', `loopback relay in ${netns}`);
      return child;
    },
    async stop(): Promise<void> {
      for (const s of open) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => { s.close(() => { resolve(); }); })));
    },
  };
}

export async function stopRelay(child: ChildProcess): Promise<void> {
  await stopProcess(child, 'SIGKILL', 2_000);
}
