// The floor of any Node proxy (reference/postgres-protocol.md §16.2 "node_pipe"): accept on a
// loopback port, connect upstream, `socket.pipe()` both ways, nothing else. Run as its own process
// by bench/pg.ts so its CPU can be read from /proc like the other proxies'.
//
//   node bench/node-pipe.ts LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT
import { connect, createServer } from 'node:net';

const [listenPort, upstreamHost, upstreamPort] = process.argv.slice(2);
if (listenPort === undefined || upstreamHost === undefined || upstreamPort === undefined) {
  process.stderr.write('usage: node bench/node-pipe.ts LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT\n');
  process.exit(2);
}

const server = createServer((client) => {
  const upstream = connect(Number(upstreamPort), upstreamHost);
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  client.pipe(upstream);
  upstream.pipe(client);
  const close = (): void => { client.destroy(); upstream.destroy(); };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
});
server.listen(Number(listenPort), '127.0.0.1', () => { process.stdout.write(`listening ${listenPort}\n`); });
process.once('SIGTERM', () => { server.close(); process.exit(0); });
