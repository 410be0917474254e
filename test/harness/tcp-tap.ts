// A TCP tap between a client and the sidecar: forwards both ways and records every byte the client
// receives, so a test can prove what a workload can and cannot learn from the wire.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TcpTap {
  readonly port: number;
  /** Everything sent to clients (sidecar → client), all connections, in arrival order. */
  toClient(): Buffer;
  /** Everything clients sent (client → sidecar). */
  fromClient(): Buffer;
  close(): Promise<void>;
}

export async function startTcpTap(targetPort: number): Promise<TcpTap> {
  const down: Buffer[] = [];
  const up: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (d: Buffer) => { up.push(Buffer.from(d)); upstream.write(d); });
    upstream.on('data', (d: Buffer) => { down.push(Buffer.from(d)); client.write(d); });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    const destroy = (): void => { client.destroy(); upstream.destroy(); };
    client.on('error', destroy);
    upstream.on('error', destroy);
    client.on('close', () => { sockets.delete(client); upstream.end(); });
    upstream.on('close', () => { sockets.delete(upstream); client.end(); });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    toClient: () => Buffer.concat(down),
    fromClient: () => Buffer.concat(up),
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => { resolve(); });
    }),
  };
}
