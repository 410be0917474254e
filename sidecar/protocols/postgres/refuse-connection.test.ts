// A refused connection (refuse-connection.ts) as a client sees it on the wire, with the real audit
// spool: the refusal arrives as a FATAL ErrorResponse after the StartupMessage (after an 'N' to
// SSLRequest first), it is logged, counted and audited even for a client that sends nothing, and
// a CancelRequest is simply closed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import type { AuditEvent } from '../../../audit/event.ts';
import { SpoolWriter } from '../../../audit/spool/spool-writer.ts';
import { errorOf, WireClient } from '../../../test/harness/wire-client.ts';
import { spoolEvents } from '../../../test/harness/audit-events.ts';
import { placeConnection, type Placement } from '../../destination-placement.ts';
import { createMetrics } from '../../metrics.ts';
import { decodeBackendMessage } from './codec/backend-messages.ts';
import { BackendFramer } from './codec/framer.ts';
import * as fe from './codec/frontend-serializer.ts';
import { refuseConnection } from './refuse-connection.ts';

const REFUSAL = placeConnection({
  listenerTarget: 'billing',
  lookup: { destination: { address: '10.96.0.13', port: 5432, family: 4 } },
  targets: [
    { name: 'billing', host: 'billing-db.payments.svc', port: 5432, addresses: ['10.96.0.12'] },
    { name: 'orders', host: '10.96.0.13', port: 5432, addresses: ['10.96.0.13'] },
  ],
}) as Extract<Placement, { kind: 'refuse' }>;

let dir: string;
let spool: SpoolWriter;
let server: Server;
let port: number;
const metrics = createMetrics({ defaultMetrics: false });
const logLines: string[] = [];
const logger = pino({ level: 'debug' }, new Writable({ write(chunk: Buffer, _enc, done) { logLines.push(chunk.toString()); done(); } }));

before(async () => {
  assert.equal(REFUSAL.kind, 'refuse');
  dir = await mkdtemp(join(tmpdir(), 'custos-refuse-'));
  spool = await SpoolWriter.open({ dir: join(dir, 'spool'), gatewayId: 'refuse-test', maxBytes: 1024 * 1024, commitIntervalMs: 0 });
  server = createServer({ allowHalfOpen: true }, (socket) => {
    refuseConnection(socket, 'billing', REFUSAL, { audit: spool, metrics, logger, now: Date.now, workloadIdentity: () => Promise.resolve(undefined) });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.close();
  await spool.close();
  await rm(dir, { recursive: true, force: true });
});

const MESSAGE = 'Custos refuses this connection: 10.96.0.13:5432 is the address of target "orders", but the connection was redirected to the listener of target "billing"';

async function refusals(): Promise<AuditEvent[]> {
  return (await spoolEvents(join(dir, 'spool'))).filter((e) => e.event_type === 'session.start' && e.outcome === 'failure');
}

describe('refuseConnection', () => {
  it('answers the StartupMessage with FATAL 08004 naming the destination, and closes', async () => {
    const client = await WireClient.open(port);
    client.send(fe.startupMessage({ user: 'app', database: 'billing' }));
    const { messages, closed } = await client.untilClosed();
    assert.equal(closed, true);
    assert.equal(messages.length, 1, JSON.stringify(messages.map((m) => m.type)));
    assert.deepEqual(errorOf(messages[0]), { sqlstate: '08004', severity: 'FATAL', message: MESSAGE });
  });

  it('is what node-postgres reports to the application', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'app', database: 'billing', password: 'unused', connectionTimeoutMillis: 5000 });
    client.on('error', () => undefined);
    await assert.rejects(client.connect(), (e: unknown) => {
      const err = e as { code?: string; message?: string; severity?: string; detail?: string; hint?: string };
      assert.equal(err.code, '08004');
      assert.equal(err.severity, 'FATAL');
      assert.equal(err.message, MESSAGE);
      assert.match(err.detail ?? '', /this listener serves target "billing"/);
      assert.match(err.hint ?? '', /custos-init/);
      return true;
    });
  });

  it('answers SSLRequest and GSSENCRequest with N, then refuses the StartupMessage', async () => {
    const client = await WireClient.open(port, { typed: false });
    client.send(fe.gssEncRequest());
    client.send(fe.sslRequest());
    // The single-byte answers come before any message: wait for both before the StartupMessage.
    const deadline = Date.now() + 5000;
    while (client.received.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual([...client.received], [0x4e, 0x4e]);
    client.send(fe.startupMessage({ user: 'app', database: 'billing' }));
    const { closed } = await client.untilClosed();
    assert.equal(closed, true);
    const frames = new BackendFramer().push(client.received.subarray(2));
    assert.equal(frames.length, 1);
    assert.deepEqual(errorOf(decodeBackendMessage(frames[0] as never)), { sqlstate: '08004', severity: 'FATAL', message: MESSAGE });
  });

  it('closes a CancelRequest without an answer', async () => {
    const client = await WireClient.open(port, { typed: false });
    client.send(fe.cancelRequest(1234, Buffer.alloc(4, 7)));
    const { closed } = await client.untilClosed();
    assert.equal(closed, true);
    assert.equal(client.received.length, 0);
  });

  it('answers a malformed startup packet with the refusal too', async () => {
    const client = await WireClient.open(port);
    client.send(Buffer.from([0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78]));
    const { messages, closed } = await client.untilClosed();
    assert.equal(closed, true);
    assert.equal(errorOf(messages[0])?.sqlstate, '08004');
  });

  it('logs, counts and audits every refusal, also of a client that sent nothing', async () => {
    const before = (await refusals()).length;
    const silent = await WireClient.open(port);
    await new Promise((r) => setTimeout(r, 50));
    silent.end();
    let events: AuditEvent[] = [];
    const deadline = Date.now() + 5000;
    while (events.length <= before && Date.now() < deadline) {
      events = await refusals();
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(events.length > before, 'the silent client was audited');
    const last = events.at(-1);
    assert.ok(last !== undefined);
    assert.equal(last.target?.name, 'billing');
    assert.equal(last.result?.sqlstate, '08004');
    assert.equal(last.message, `destination refused (other-target): ${MESSAGE}`);
    assert.equal(last.src?.ip, '127.0.0.1');
    assert.equal(last.actor?.type, 'unknown');
    const total = (await metrics.destinationRefusals.get()).values.find((v) => v.labels['target'] === 'billing' && v.labels['reason'] === 'other-target')?.value;
    assert.equal(total, events.length, 'one count per refused connection');
    const logged = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 40 && String(l['msg']).startsWith('connection refused: '));
    assert.equal(logged.length, events.length);
    assert.equal(logged.at(-1)?.['destination'], '10.96.0.13:5432');
    assert.equal(logged.at(-1)?.['owner'], 'orders');
  });
});
