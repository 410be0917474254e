// ConnectionPlacement (connection-placement.ts) with the real SO_ORIGINAL_DST reader and real
// sockets on loopback: the start-up warning and gauge when the addon is missing, none when it is
// there, and direct connections (never redirected here) served as the listener's target. Placement
// of redirected connections is proven in network namespaces by test/destination-placement-netns.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ConnectionPlacement } from './connection-placement.ts';
import type { Placement } from './destination-placement.ts';
import { createMetrics } from './metrics.ts';
import { loadOriginalDestinationReader } from './original-destination.ts';

function capturedLogger(): { logger: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { out.push(chunk.toString()); done(); } });
  return { logger: pino({ level: 'debug' }, stream), lines: () => out.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

async function gauge(metrics: ReturnType<typeof createMetrics>): Promise<number | undefined> {
  return (await metrics.originalDestinationAvailable.get()).values[0]?.value;
}

/** Places one real loopback connection the way the listener does, in its 'connection' handler. */
async function placeDirectConnection(placement: ConnectionPlacement): Promise<Placement> {
  let placed: Placement | undefined;
  const server = createServer((socket: Socket) => {
    placed = placement.place('billing', socket);
    socket.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    client.resume();
    await new Promise((resolve) => client.once('close', resolve));
  } finally {
    server.close();
  }
  assert.ok(placed !== undefined, 'the connection was placed');
  return placed;
}

const TARGETS = [{ name: 'billing', host: '127.0.0.1', port: 5432 }];

describe('ConnectionPlacement', () => {
  it('warns once, loudly and with the reason, and sets the gauge to 0 when the addon is missing; connections are then served unverified', async () => {
    const { logger, lines } = capturedLogger();
    const metrics = createMetrics({ defaultMetrics: false });
    const missing = '/nonexistent/custos/original_dst.node';
    const placement = await ConnectionPlacement.start({ targets: () => TARGETS, onTargetsChange: () => undefined, logger, metrics, reader: loadOriginalDestinationReader(missing) });
    try {
      assert.equal(placement.transparent, false);
      assert.equal(await gauge(metrics), 0);
      const warnings = lines().filter((l) => l['level'] === 40);
      assert.equal(warnings.length, 1, JSON.stringify(lines()));
      assert.match(String(warnings[0]?.['msg']), /SO_ORIGINAL_DST is unavailable: the sidecar runs in EXPLICIT MODE ONLY/);
      assert.match(String(warnings[0]?.['msg']), /cannot be verified/);
      assert.ok(String(warnings[0]?.['reason']).includes(missing), String(warnings[0]?.['reason']));
      assert.match(await metrics.registry.metrics(), /^custos_original_destination_available 0$/m);
      assert.deepEqual(await placeDirectConnection(placement), { kind: 'serve', target: 'billing', via: 'unverified' });
    } finally {
      placement.close();
    }
  });

  it('says nothing and sets the gauge to 1 when the addon loads; a direct connection is served as the listener\'s target', async () => {
    const { logger, lines } = capturedLogger();
    const metrics = createMetrics({ defaultMetrics: false });
    const placement = await ConnectionPlacement.start({ targets: () => TARGETS, onTargetsChange: () => undefined, logger, metrics });
    try {
      assert.equal(placement.transparent, true, 'npm ci builds the addon; a missing addon on this machine is a defect');
      assert.equal(await gauge(metrics), 1);
      assert.deepEqual(lines().filter((l) => l['level'] === 40), []);
      assert.deepEqual(await placeDirectConnection(placement), { kind: 'serve', target: 'billing', via: 'direct' });
    } finally {
      placement.close();
    }
  });

  it('re-resolves the targets when the policy changes', async () => {
    let targets = TARGETS;
    let changed: () => void = () => undefined;
    const asked: string[] = [];
    const placement = await ConnectionPlacement.start({
      targets: () => targets,
      onTargetsChange: (listener) => { changed = listener; },
      logger: capturedLogger().logger,
      metrics: createMetrics({ defaultMetrics: false }),
      resolve: (host) => { asked.push(host); return Promise.resolve(['10.96.0.12']); },
      refreshIntervalMs: 3_600_000,
    });
    try {
      assert.deepEqual(placement.destinations(), [{ ...TARGETS[0], addresses: ['127.0.0.1'] }]);
      targets = [{ name: 'billing', host: 'billing-db.payments.svc', port: 5432 }];
      changed();
      const deadline = Date.now() + 2000;
      while (placement.destinations()[0]?.addresses.length !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(asked, ['billing-db.payments.svc'], 'the change triggered a resolution (the interval is an hour)');
      assert.deepEqual(placement.destinations(), [{ name: 'billing', host: 'billing-db.payments.svc', port: 5432, addresses: ['10.96.0.12'] }]);
    } finally {
      placement.close();
    }
  });
});
