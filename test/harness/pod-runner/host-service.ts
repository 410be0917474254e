// A Service whose endpoint is a server on the host's loopback (a test PostgreSQL, Redis): a TCP
// relay listens on the pods' gateway address at the Service port and connects to the loopback
// server, and the Service name goes into the pods' hosts file. Pods then reach the server only
// across their veth, at `name.namespace.svc:port`, as they would reach a ClusterIP; the server
// itself keeps listening on 127.0.0.1 and sees the relay's loopback connections.
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface HostServiceTarget {
  readonly host?: string;
  readonly port: number;
}

export interface HostService {
  readonly address: string;
  readonly port: number;
  /** Connections relayed so far. */
  connections(): number;
  close(): Promise<void>;
}

export async function startHostService(address: string, port: number, target: HostServiceTarget): Promise<HostService> {
  const open = new Set<Socket>();
  let count = 0;
  const server: Server = createServer((client) => {
    count += 1;
    const upstream = connect(target.port, target.host ?? '127.0.0.1');
    for (const s of [client, upstream]) {
      open.add(s);
      s.once('close', () => open.delete(s));
    }
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, resolve);
  });
  return {
    address,
    port,
    connections: () => count,
    async close(): Promise<void> {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => { server.close(() => { resolve(); }); });
    },
  };
}
