// Against a real PostgreSQL 15 (test/harness/postgres.ts), plus tiny hostile servers for the cases a
// real server never produces.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import { isCustosError } from '../../../lib/errors.ts';
import { startPostgres, type PostgresInstance } from '../../../test/harness/postgres.ts';
import { decodeBackendMessage, type BackendMessage } from './codec/backend-messages.ts';
import { BackendFramer } from './codec/framer.ts';
import * as fe from './codec/frontend-serializer.ts';
import { connectUpstream, sendCancelRequest, UpstreamError, type UpstreamConnection, type UpstreamOptions, type UpstreamTlsOptions } from './upstream-client.ts';

/** Runs one simple query on a connection handed over by connectUpstream; returns messages up to ReadyForQuery. */
function simpleQuery(conn: UpstreamConnection, sql: string, timeoutMs = 15_000): Promise<BackendMessage[]> {
  return new Promise((resolve, reject) => {
    const framer = new BackendFramer();
    const out: BackendMessage[] = [];
    const timer = setTimeout(() => { cleanup(); reject(new Error(`query timed out: ${sql}`)); }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      for (const frame of framer.push(chunk)) {
        const msg = decodeBackendMessage(frame);
        out.push(msg);
        if (msg.type === 'ReadyForQuery') { cleanup(); resolve(out); return; }
      }
    };
    const onError = (e: Error): void => { cleanup(); reject(e); };
    const cleanup = (): void => {
      clearTimeout(timer);
      conn.socket.off('data', onData);
      conn.socket.off('error', onError);
      conn.socket.pause();
    };
    conn.socket.on('data', onData);
    conn.socket.on('error', onError);
    conn.socket.resume();
    if (conn.buffered.length > 0) onData(conn.buffered);
    conn.socket.write(fe.query(sql));
  });
}

function firstValue(messages: readonly BackendMessage[]): string | undefined {
  const row = messages.find((m) => m.type === 'DataRow');
  const v = row?.type === 'DataRow' ? row.values[0] : undefined;
  return v === undefined || v === null ? undefined : v.toString();
}

function close(conn: UpstreamConnection): void {
  conn.socket.end(fe.terminate());
  conn.socket.destroy();
}

function optionsFor(pg: PostgresInstance, tls: UpstreamTlsOptions, extra: Partial<UpstreamOptions> = {}): UpstreamOptions {
  return { host: pg.host, port: pg.port, database: pg.database, user: pg.user, password: pg.password, tls, connectTimeoutMs: 10_000, ...extra };
}

/** A TCP server that answers every connection with `onData`. */
async function hostileServer(onData: (socket: net.Socket, chunk: Buffer) => void): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('data', (chunk: Buffer) => { onData(s, chunk); });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => { resolve(); }); }),
  };
}

/**
 * pg.psql, retried on EPIPE: test/harness/processes.ts run() writes psql's stdin without an 'error'
 * listener, so a psql that exits before reading it occasionally fails with EPIPE (reported to the
 * harness owner).
 */
async function psql(pg: PostgresInstance, sql: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await pg.psql(sql);
    } catch (e: unknown) {
      if (attempt >= 3 || !(e instanceof Error) || !/EPIPE/.test(e.message)) throw e;
    }
  }
}

const hostileOptions = (port: number, tls: UpstreamTlsOptions, extra: Partial<UpstreamOptions> = {}): UpstreamOptions =>
  ({ host: '127.0.0.1', port, database: 'db', user: 'u', password: 'hunter2-secret', tls, connectTimeoutMs: 3000, ...extra });

describe('connectUpstream against PostgreSQL 15 with SCRAM-SHA-256 and TLS', () => {
  let pg: PostgresInstance;
  let ca: string;
  before(async () => {
    pg = await startPostgres({ auth: 'scram-sha-256', tls: true });
    ca = await readFile(pg.caCertPath ?? '', 'utf8');
  });
  after(async () => { await pg.stop(); });

  it('authenticates with SCRAM over verify-full TLS and collects parameters and the backend key', async () => {
    const conn = await connectUpstream(optionsFor(pg, { mode: 'verify-full', ca, serverName: pg.serverName }, { applicationName: 'custos-test', extraParameters: { TimeZone: 'UTC' } }));
    try {
      assert.equal(conn.encrypted, true);
      assert.equal(conn.authMethod, 'scram-sha-256');
      assert.equal(conn.transactionStatus, 'I');
      assert.match(conn.parameters.get('server_version') ?? '', /^15\./);
      assert.equal(conn.parameters.get('application_name'), 'custos-test');
      assert.equal(conn.parameters.get('TimeZone'), 'UTC');
      assert.equal(conn.backendKey.secret.length, 4);
      const res = await simpleQuery(conn, 'select pg_backend_pid() || \',\' || ssl from pg_stat_ssl where pid = pg_backend_pid()');
      assert.equal(firstValue(res), `${conn.backendKey.pid},true`);
    } finally {
      close(conn);
    }
  });

  it('hands over a socket that starts flowing when the new owner only attaches a data listener', { timeout: 10_000 }, async () => {
    const conn = await connectUpstream(optionsFor(pg, { mode: 'require' }));
    try {
      const framer = new BackendFramer();
      const ready = new Promise<BackendMessage[]>((resolve) => {
        const seen: BackendMessage[] = [];
        conn.socket.on('data', (chunk: Buffer) => {
          for (const f of framer.push(chunk)) {
            const m = decodeBackendMessage(f);
            seen.push(m);
            if (m.type === 'ReadyForQuery') resolve(seen);
          }
        });
      });
      conn.socket.write(fe.query('select 42'));
      assert.equal(firstValue(await ready), '42');
    } finally {
      close(conn);
    }
  });

  it('connects with verify-ca when the server name does not match, since only the chain is checked', async () => {
    const conn = await connectUpstream(optionsFor(pg, { mode: 'verify-ca', ca, serverName: 'db.example.com' }));
    close(conn);
  });

  const tlsFailures: readonly { name: string; tls: () => UpstreamTlsOptions; match: RegExp }[] = [
    { name: 'verify-full is given a server name the certificate does not cover', tls: () => ({ mode: 'verify-full', ca, serverName: 'db.example.com' }), match: /db\.example\.com/ },
    { name: 'verify-ca is given no CA and the system roots do not trust the server', tls: () => ({ mode: 'verify-ca' }), match: /certificate/i },
  ];
  for (const c of tlsFailures) {
    it(`fails with ERR_PG_UPSTREAM_CONNECT when ${c.name}`, async () => {
      await assert.rejects(connectUpstream(optionsFor(pg, c.tls())), (e: unknown) => isCustosError(e, 'ERR_PG_UPSTREAM_CONNECT') && c.match.test(e.message));
    });
  }

  it('uses TLS without verification for require and prefer', async () => {
    for (const mode of ['require', 'prefer'] as const) {
      const conn = await connectUpstream(optionsFor(pg, { mode }));
      assert.equal(conn.encrypted, true, mode);
      close(conn);
    }
  });

  it('rejects a wrong password with ERR_PG_UPSTREAM and SQLSTATE 28P01, without the password in the error', async () => {
    const wrong = 'not-the-password-4711';
    const err: unknown = await connectUpstream(optionsFor(pg, { mode: 'require' }, { password: wrong })).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.code, 'ERR_PG_UPSTREAM');
    assert.equal(err.sqlstate, '28P01');
    assert.equal(err.severity, 'FATAL');
    assert.match(err.serverMessage, /password authentication failed for user "custos_app"/);
    for (const text of [err.message, err.serverMessage, err.stack ?? '']) {
      assert.ok(!text.includes(wrong) && !text.includes(pg.password), text);
    }
  });

  it('rejects an unknown database with ERR_PG_UPSTREAM and SQLSTATE 3D000', async () => {
    await assert.rejects(connectUpstream(optionsFor(pg, { mode: 'require' }, { database: 'nope' })), (e: unknown) => e instanceof UpstreamError && e.sqlstate === '3D000');
  });

  it('delivers a CancelRequest that cancels a running pg_sleep(10)', async () => {
    const tls: UpstreamTlsOptions = { mode: 'verify-full', ca, serverName: pg.serverName };
    const conn = await connectUpstream(optionsFor(pg, tls));
    try {
      const started = Date.now();
      const pending = simpleQuery(conn, 'select pg_sleep(10)');
      // Wait until the server is really running the statement before cancelling it.
      for (let i = 0; i < 50; i++) {
        const active = await psql(pg, `select count(*) from pg_stat_activity where pid = ${conn.backendKey.pid} and state = 'active'`);
        if (active.trim() === '1') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await sendCancelRequest(pg.host, pg.port, conn.backendKey.pid, conn.backendKey.secret, tls);
      const res = await pending;
      const error = res.find((m) => m.type === 'ErrorResponse');
      assert.ok(error?.type === 'ErrorResponse', 'expected an ErrorResponse');
      assert.equal(error.fields.get('C'), '57014');
      assert.ok(Date.now() - started < 8000, 'the sleep was not cut short');
    } finally {
      close(conn);
    }
  });

  it('normalizes a Unicode password with SASLprep exactly as the server does', async () => {
    try {
      // The server stores SCRAM secrets of SASLprep(password): U+2168 ROMAN NUMERAL NINE → "IX".
      await psql(pg, `ALTER ROLE ${pg.user} PASSWORD 'IX-s\u00e9cret'`);
      const conn = await connectUpstream(optionsFor(pg, { mode: 'require' }, { password: '\u2168-se\u0301cret' }));
      close(conn);
      // Prohibited output (private use): both sides fall back to the raw password.
      await psql(pg, `ALTER ROLE ${pg.user} PASSWORD '\u00e9\ue000x'`);
      const raw = await connectUpstream(optionsFor(pg, { mode: 'require' }, { password: '\u00e9\ue000x' }));
      close(raw);
    } finally {
      await psql(pg, `ALTER ROLE ${pg.user} PASSWORD '${pg.password}'`);
    }
  });
});

describe('connectUpstream against PostgreSQL 15 with MD5 and no TLS', () => {
  let pg: PostgresInstance;
  before(async () => { pg = await startPostgres({ auth: 'md5' }); });
  after(async () => { await pg.stop(); });

  it('authenticates with MD5 over plaintext when TLS is disabled', async () => {
    const conn = await connectUpstream(optionsFor(pg, { mode: 'disable' }));
    try {
      assert.equal(conn.authMethod, 'md5');
      assert.equal(conn.encrypted, false);
      assert.equal(firstValue(await simpleQuery(conn, 'select current_user')), pg.user);
    } finally {
      close(conn);
    }
  });

  it('falls back to plaintext for prefer when the server answers N', async () => {
    const conn = await connectUpstream(optionsFor(pg, { mode: 'prefer' }));
    assert.equal(conn.encrypted, false);
    close(conn);
  });

  for (const mode of ['require', 'verify-ca', 'verify-full'] as const) {
    it(`fails with ERR_PG_UPSTREAM_TLS for ${mode} when the server has no TLS`, async () => {
      await assert.rejects(connectUpstream(optionsFor(pg, { mode })), (e: unknown) => isCustosError(e, 'ERR_PG_UPSTREAM_TLS') && /does not support TLS/.test(e.message));
    });
  }
});

describe('connectUpstream against PostgreSQL 15 with cleartext passwords', () => {
  let pg: PostgresInstance;
  before(async () => { pg = await startPostgres({ auth: 'password', tls: true }); });
  after(async () => { await pg.stop(); });

  it('sends a cleartext password over TLS', async () => {
    const conn = await connectUpstream(optionsFor(pg, { mode: 'require' }));
    assert.equal(conn.authMethod, 'password');
    assert.equal(conn.encrypted, true);
    close(conn);
  });

  it('refuses to send a cleartext password without TLS', async () => {
    await assert.rejects(connectUpstream(optionsFor(pg, { mode: 'disable' })), (e: unknown) => isCustosError(e, 'ERR_PG_AUTH') && /cleartext password over an unencrypted connection/.test(e.message));
  });

  it('sends a cleartext password without TLS only when allowCleartextWithoutTls is set', async () => {
    const conn = await connectUpstream(optionsFor(pg, { mode: 'disable' }, { allowCleartextWithoutTls: true }));
    assert.equal(conn.encrypted, false);
    close(conn);
  });
});

describe('connectUpstream against hostile or broken servers', () => {
  it('aborts when unencrypted bytes follow the S answer (CVE-2021-23222 buffer stuffing)', async () => {
    // 'S' immediately followed by a forged AuthenticationOk.
    const server = await hostileServer((s) => { s.write(Buffer.from([0x53, 0x52, 0, 0, 0, 8, 0, 0, 0, 0])); });
    try {
      await assert.rejects(connectUpstream(hostileOptions(server.port, { mode: 'require' })), (e: unknown) => isCustosError(e, 'ERR_PG_UPSTREAM_TLS') && /unencrypted data after the SSL response/.test(e.message));
    } finally {
      await server.close();
    }
  });

  it('does not display an ErrorResponse sent in reply to SSLRequest (CVE-2024-10977)', async () => {
    const server = await hostileServer((s) => { s.end(Buffer.concat([Buffer.from('E'), Buffer.from([0, 0, 0, 20]), Buffer.from('SFATAL\0Mfake news\0\0')])); });
    try {
      await assert.rejects(connectUpstream(hostileOptions(server.port, { mode: 'prefer' })), (e: unknown) => isCustosError(e, 'ERR_PG_UPSTREAM_TLS') && !e.message.includes('fake news'));
    } finally {
      await server.close();
    }
  });

  it('rejects AuthenticationOk that skips the SCRAM server signature', async () => {
    const server = await hostileServer((s, chunk) => {
      if (chunk.readInt32BE(4) === 196608) s.write(Buffer.from([0x52, 0, 0, 0, 23, 0, 0, 0, 10, ...Buffer.from('SCRAM-SHA-256\0\0')]));
      else s.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]));
    });
    try {
      await assert.rejects(connectUpstream(hostileOptions(server.port, { mode: 'disable' })), (e: unknown) => isCustosError(e, 'ERR_PG_AUTH') && /before completing SCRAM/.test(e.message));
    } finally {
      await server.close();
    }
  });

  it('returns bytes that arrived after ReadyForQuery in the same read as buffered', async () => {
    const notice = Buffer.from([0x4e, 0, 0, 0, 12, 0x4d, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0, 0]); // NoticeResponse M=hello
    const server = await hostileServer((s) => {
      s.write(Buffer.concat([
        Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]), // AuthenticationOk (trust)
        Buffer.from([0x53, 0, 0, 0, 8, 0x61, 0, 0x62, 0, 0x4b, 0, 0, 0, 12, 0, 0, 0, 7, 1, 2, 3, 4]), // ParameterStatus a=b, BackendKeyData
        Buffer.from([0x5a, 0, 0, 0, 5, 0x54]), // ReadyForQuery T
        notice,
        notice.subarray(0, 3),
      ]));
    });
    try {
      const conn = await connectUpstream(hostileOptions(server.port, { mode: 'disable' }));
      assert.equal(conn.authMethod, 'trust');
      assert.equal(conn.transactionStatus, 'T');
      assert.deepEqual([...conn.parameters], [['a', 'b']]);
      assert.deepEqual(conn.backendKey, { pid: 7, secret: Buffer.from([1, 2, 3, 4]) });
      assert.deepEqual(conn.buffered, Buffer.concat([notice, notice.subarray(0, 3)]));
      conn.socket.destroy();
    } finally {
      await server.close();
    }
  });

  it('times out with ERR_PG_UPSTREAM_TIMEOUT when the server never answers', async () => {
    const server = await hostileServer(() => undefined);
    try {
      const started = Date.now();
      await assert.rejects(connectUpstream(hostileOptions(server.port, { mode: 'disable' }, { connectTimeoutMs: 200 })), (e: unknown) => isCustosError(e, 'ERR_PG_UPSTREAM_TIMEOUT'));
      assert.ok(Date.now() - started < 2000);
    } finally {
      await server.close();
    }
  });

  it('rejects with ERR_PG_UPSTREAM_ABORTED when the signal aborts', async () => {
    const server = await hostileServer(() => undefined);
    try {
      const ac = new AbortController();
      const pending = connectUpstream(hostileOptions(server.port, { mode: 'disable' }, { signal: ac.signal }));
      setTimeout(() => { ac.abort(); }, 50);
      await assert.rejects(pending, (e: unknown) => isCustosError(e, 'ERR_PG_UPSTREAM_ABORTED'));
    } finally {
      await server.close();
    }
  });

  it('refuses forbidden startup parameters before connecting', async () => {
    await assert.rejects(connectUpstream(hostileOptions(1, { mode: 'disable' }, { extraParameters: { replication: 'database' } })), (e: unknown) => isCustosError(e, 'ERR_PG_UPSTREAM_CONFIG'));
  });
});
