// Acceptance: the sidecar speaks PostgreSQL well enough for real clients (pgbench in all three
// query modes, psql COPY both ways, LISTEN/NOTIFY, cancel) and survives whatever bytes an attacker
// sends (every truncation of a valid stream, random garbage, absurd lengths, buffer stuffing).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TLSSocket } from 'node:tls';
import fc from 'fast-check';
import pg from 'pg';
import * as fe from '../sidecar/protocols/postgres/codec/frontend-serializer.ts';
import { startupPacket } from '../sidecar/protocols/postgres/codec/testing/test-buffers.ts';
import { startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createBillingSchema, psqlThroughSidecar, runCommand } from './harness/fixtures.ts';
import { makeCertificates } from './harness/tls.ts';
import { errorOf, sqlstateOf, WireClient } from './harness/wire-client.ts';

let stack: CustosStack;
let certificatesDir: string;

before(async () => {
  const certs = await makeCertificates(['localhost', '127.0.0.1']);
  certificatesDir = certs.dir;
  stack = await startCustosStack({
    // The example policy plus what these protocol features need: COPY through the client's own
    // stdin/stdout for ci, and LISTEN/NOTIFY for anyone. Server-side COPY stays denied (its rule
    // comes first).
    editPolicy: (doc) => {
      doc.addIn(['spec', 'rules'], doc.createNode({
        name: 'allow-copy-stdio', subjects: ['ci'],
        match: { sql: { statements: ['copy-from', 'copy-to'], objects: ['public.invoices'], copy: ['stdin', 'stdout'] } },
        action: 'allow',
      }));
      doc.addIn(['spec', 'rules'], doc.createNode({ name: 'allow-listen-notify', match: { sql: { statements: ['listen', 'notify'] } }, action: 'allow' }));
    },
    extraConfig: { tls: { certFile: certs.certPath, keyFile: certs.keyPath } },
  });
  await createBillingSchema(stack);
});

after(async () => {
  await stack.stop();
  await runCommand('rm', ['-rf', certificatesDir]);
});

/** DataRow with one text column "1". */
const DATA_ROW_ONE = Buffer.from([0x44, 0, 0, 0, 11, 0, 1, 0, 0, 0, 1, 0x31]);

async function healthz(): Promise<number> {
  return (await fetch(`http://127.0.0.1:${stack.httpPort}/healthz`)).status;
}

/** Opens a raw socket, writes `bytes`, half-closes, and reads until the sidecar closes. */
async function sendAndHalfClose(bytes: Buffer, timeoutMs = 5000): Promise<{ received: Buffer; closed: boolean }> {
  const client = await WireClient.open(stack.port, { typed: false });
  client.socket.end(bytes);
  const { closed } = await client.untilClosed(timeoutMs);
  const received = client.received;
  client.end();
  return { received, closed };
}

describe('sidecar protocol', () => {
  describe('pgbench through the sidecar', () => {
    before(async () => {
      const init = await runCommand('pgbench', ['-i', '-s', '1', '-q', '-h', stack.postgres.socketDir, '-p', String(stack.postgres.port), '-U', 'postgres', stack.postgres.database]);
      assert.equal(init.code, 0, init.stderr);
      await stack.postgres.psql(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${stack.postgres.user}`);
    });

    for (const mode of ['simple', 'extended', 'prepared'] as const) {
      it(`runs the select-only workload with zero failures in ${mode} mode`, async () => {
        const result = await runCommand('pgbench', ['-n', '-S', '-T', '3', '-c', '4', '-j', '2', '-M', mode, '-h', '127.0.0.1', '-p', String(stack.port), '-U', 'x', stack.postgres.database], {
          env: { PGPASSWORD: await stack.token(), PGSSLMODE: 'disable' },
          timeoutMs: 30_000,
        });
        assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
        assert.match(result.stdout, /number of failed transactions: 0 /);
        const tps = /tps = ([\d.]+)/.exec(result.stdout)?.[1];
        assert.ok(tps !== undefined && Number(tps) > 0, result.stdout);
        const processed = /number of transactions actually processed: (\d+)/.exec(result.stdout)?.[1];
        assert.ok(Number(processed) > 0, result.stdout);
      });
    }
  });

  describe('COPY through psql', () => {
    it('copies 20 000 rows in with COPY FROM STDIN and out again with COPY TO STDOUT', async () => {
      const rows = Array.from({ length: 20_000 }, (_, i) => `${10_000 + i}\tcopied customer ${i}\t${i}.50`);
      const copyIn = await psqlThroughSidecar(stack, await stack.token(), ['-c', 'COPY invoices (id, customer, amount) FROM STDIN'], { input: `${rows.join('\n')}\n\\.\n` });
      assert.equal(copyIn.code, 0, copyIn.stderr);
      assert.match(copyIn.stdout, /COPY 20000/);
      assert.equal((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id >= 10000')).trim(), '20000');
      const copyTable = await psqlThroughSidecar(stack, await stack.token(), ['-c', 'COPY invoices TO STDOUT']);
      assert.equal(copyTable.code, 0, copyTable.stderr);
      const lines = copyTable.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 20_005);
      assert.ok(lines.includes(`${10_000 + 19_999}\tcopied customer 19999\t19999.50`));
    });

    it('still denies COPY TO PROGRAM with the extra COPY rule in place', async () => {
      const result = await psqlThroughSidecar(stack, await stack.token(), ['-c', "COPY invoices TO PROGRAM 'id'"]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /permission denied by policy rule "deny-copy-program"/);
    });

    it('rolls back a COPY FROM STDIN that the client aborts with CopyFail', async () => {
      const { client } = await WireClient.login(stack.port, await stack.token());
      try {
        client.send(fe.query('COPY invoices (id, customer) FROM STDIN'));
        await client.until((m) => m.type === 'CopyInResponse');
        client.send(Buffer.concat([fe.copyData(Buffer.from('30000\tabandoned\n')), fe.copyFail('client gave up')]));
        const messages = await client.until((m) => m.type === 'ReadyForQuery');
        assert.equal(errorOf(messages.find((m) => m.type === 'ErrorResponse'))?.sqlstate, '57014');
      } finally {
        client.end();
      }
      assert.equal((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id = 30000')).trim(), '0');
    });
  });

  describe('asynchronous messages', () => {
    it('delivers a notification from another session, and a self-notification with the client-visible pid', async () => {
      const listener = await stack.connect();
      const notifier = await stack.connect();
      try {
        const received: pg.Notification[] = [];
        listener.on('notification', (n) => received.push(n));
        await listener.query('LISTEN invoices_changed');
        await notifier.query("NOTIFY invoices_changed, 'from another session'");
        await listener.query("NOTIFY invoices_changed, 'from myself'");
        const deadline = Date.now() + 3000;
        while (received.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(received.map((n) => n.payload).sort(), ['from another session', 'from myself']);
        const self = received.find((n) => n.payload === 'from myself');
        const other = received.find((n) => n.payload === 'from another session');
        const listenerPid = (listener as unknown as { processID: number }).processID;
        assert.equal(self?.processId, listenerPid, 'a self-notification carries the pid the client got in BackendKeyData');
        assert.notEqual(other?.processId, listenerPid);
        // The client-visible pid is the sidecar's, not the upstream backend's.
        const upstreamPid = (await listener.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
        assert.notEqual(upstreamPid, listenerPid);
      } finally {
        await listener.end();
        await notifier.end();
      }
    });
  });

  describe('cancel', () => {
    const cancelBytes = (pid: number, secret: number): Buffer => {
      const s = Buffer.alloc(4);
      s.writeInt32BE(secret);
      return fe.cancelRequest(pid, s);
    };

    it('cancels SELECT pg_sleep(10) with 57014 within 2 s using the key the client received', async () => {
      const client = await stack.connect();
      try {
        const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
        const sleeping = client.query('SELECT pg_sleep(10)').then(() => undefined, (e: unknown) => e);
        await new Promise((r) => setTimeout(r, 300));
        const started = Date.now();
        await sendAndHalfClose(cancelBytes(processID, secretKey));
        const error = await sleeping;
        assert.equal(sqlstateOf(error), '57014');
        assert.ok(Date.now() - started < 2000, `cancel took ${Date.now() - started} ms`);
        assert.equal((await client.query('SELECT 1 AS ok')).rows.length, 1, 'the session survives the cancel');
      } finally {
        await client.end();
      }
    });

    it('ignores a CancelRequest with a wrong secret and says nothing', async () => {
      const client = await stack.connect();
      try {
        const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
        const sleeping = client.query('SELECT pg_sleep(1.5) AS slept');
        await new Promise((r) => setTimeout(r, 200));
        const { received, closed } = await sendAndHalfClose(cancelBytes(processID, (secretKey ^ 1) | 0));
        assert.equal(received.length, 0, 'a CancelRequest is never answered');
        assert.equal(closed, true);
        assert.equal((await sleeping).rows.length, 1, 'the statement completed');
      } finally {
        await client.end();
      }
    });
  });

  describe('pre-startup packets', () => {
    it('answers GSSENCRequest with N and then accepts a normal startup on the same connection', async () => {
      const client = await WireClient.open(stack.port, { typed: false });
      try {
        client.send(fe.gssEncRequest());
        const deadline = Date.now() + 3000;
        while (client.received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        assert.deepEqual(client.received, Buffer.from('N'));
        assert.equal(client.closed, false);
      } finally {
        client.end();
      }
    });

    it('closes a connection whose SSLRequest is followed by plaintext bytes (buffer stuffing), without a TLS handshake', async () => {
      const stuffed = Buffer.concat([fe.sslRequest(), fe.startupMessage({ user: 'x', database: 'app' }), fe.passwordMessage('injected')]);
      const { received, closed } = await sendAndHalfClose(stuffed);
      assert.equal(closed, true);
      // Not even the one-byte S: the sidecar closes before answering, so no TLS handshake starts and
      // the injected startup is never read.
      assert.equal(received.length, 0, `received ${received.toString('hex')}`);
    });

    it('accepts an SSLRequest alone with S and completes TLS, then authenticates over it (positive control)', async () => {
      const client = new pg.Client({ ...stack.clientConfig(await stack.token()), ssl: { rejectUnauthorized: false } });
      await client.connect();
      try {
        assert.equal((await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);
        assert.ok((client as unknown as { connection: { stream: unknown } }).connection.stream instanceof TLSSocket);
      } finally {
        await client.end();
      }
    });
  });

  describe('hostile bytes never crash the sidecar', () => {
    let valid: Buffer;
    before(async () => {
      valid = Buffer.concat([
        fe.startupMessage({ user: 'x', database: stack.postgres.database }),
        fe.passwordMessage(await stack.token()),
        fe.query('SELECT 1'),
        fe.parse('', 'SELECT $1::int'),
        fe.bind({ params: [Buffer.from('7')] }),
        fe.execute('', 0),
        fe.sync(),
        fe.terminate(),
      ]);
    });

    it('handles every prefix of a valid stream, each half-closed, and closes every connection', async () => {
      const unclosed: number[] = [];
      const lengths = Array.from({ length: valid.length + 1 }, (_, i) => i);
      for (let i = 0; i < lengths.length; i += 16) {
        await Promise.all(lengths.slice(i, i + 16).map(async (n) => {
          // Generous bound: a loaded 2-core machine; a leak stays open forever.
          const { closed } = await sendAndHalfClose(valid.subarray(0, n), 10_000);
          if (!closed) unclosed.push(n);
        }));
      }
      assert.deepEqual(unclosed, [], 'connections left open after the client half-closed');
      assert.equal(await healthz(), 200);
    });

    it('runs the whole valid stream (the control of the prefix test)', async () => {
      const { received, closed } = await sendAndHalfClose(valid);
      assert.equal(closed, true);
      // AuthenticationOk, then a DataRow "1" and a DataRow "7".
      assert.ok(received.includes(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0])), 'AuthenticationOk');
      assert.ok(received.includes(DATA_ROW_ONE), 'DataRow 1');
      assert.ok(received.includes(Buffer.from([0x44, 0, 0, 0, 11, 0, 1, 0, 0, 0, 1, 0x37])), 'DataRow 7');
    });

    it('survives random garbage before startup and after authentication', async () => {
      const login = Buffer.concat([fe.startupMessage({ user: 'x', database: stack.postgres.database }), fe.passwordMessage(await stack.token())]);
      await fc.assert(fc.asyncProperty(fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 300 }), async (afterLogin, garbage) => {
        const { closed } = await sendAndHalfClose(Buffer.concat([afterLogin ? login : Buffer.alloc(0), garbage]));
        return closed;
      }), { numRuns: 200, seed: 20_240_601 });
      assert.equal(await healthz(), 200);
    });

    it('refuses oversized and impossible length fields', async () => {
      const int32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
      const login = Buffer.concat([fe.startupMessage({ user: 'x', database: stack.postgres.database }), fe.passwordMessage(await stack.token())]);
      const cases: ReadonlyArray<[string, Buffer]> = [
        ['a startup length of 2^31-1', Buffer.concat([int32(0x7fffffff), int32(196608)])],
        ['a negative startup length', Buffer.concat([int32(-8), int32(196608)])],
        ['a startup length below 8', Buffer.concat([int32(4), int32(196608)])],
        ['a startup packet of 10 001 bytes', startupPacket(196608, Buffer.concat([Buffer.from('user\0'), Buffer.alloc(10_001 - 8 - 5 - 2, 0x61), Buffer.from('\0\0')]))],
        ['a password message of 1 MiB', Buffer.concat([fe.startupMessage({ user: 'x', database: 'app' }), Buffer.from('p'), int32(1024 * 1024), Buffer.alloc(1024 * 1024, 0x41)])],
        ['a Query length of 2^31-1 after login', Buffer.concat([login, Buffer.from('Q'), int32(0x7fffffff), Buffer.from('SELECT 1')])],
        ['a Query length below 4 after login', Buffer.concat([login, Buffer.from('Q'), int32(3)])],
        ['an unknown message type after login', Buffer.concat([login, Buffer.from('!'), int32(4)])],
      ];
      for (const [name, bytes] of cases) {
        const { received, closed } = await sendAndHalfClose(bytes);
        assert.equal(closed, true, `${name}: connection closed`);
        assert.ok(!received.includes(DATA_ROW_ONE), `${name}: nothing ran`);
      }
      assert.equal((await sendAndHalfClose(cases[3]?.[1] ?? Buffer.alloc(0))).received.includes(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])), false,
        'the 10 001-byte startup packet is not answered with a password request');
      assert.equal(await healthz(), 200);
    });

    it('is still alive and serving after all of the above', async () => {
      assert.equal(await healthz(), 200);
      const client = await stack.connect();
      try {
        assert.equal((await client.query<{ n: string }>('SELECT count(*)::text AS n FROM invoices WHERE id < 10')).rows[0]?.n, '5');
      } finally {
        await client.end();
      }
      assert.doesNotMatch(stack.logs(), /internal error in session/);
    });
  });
});
