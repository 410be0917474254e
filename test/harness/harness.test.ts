import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { readFile } from 'node:fs/promises';
import { startPostgres } from './postgres.ts';
import { startRedis } from './redis.ts';

describe('test harness', () => {
  it('starts a real PostgreSQL with SCRAM and TLS that the pg driver can use', async () => {
    const server = await startPostgres({ auth: 'scram-sha-256', tls: true });
    try {
      assert.ok(server.caCertPath);
      const client = new pg.Client({
        host: server.host, port: server.port, user: server.user, password: server.password, database: server.database,
        ssl: { ca: await readFile(server.caCertPath, 'utf8'), servername: 'localhost' },
      });
      await client.connect();
      const res = await client.query<{ v: string; ssl: boolean }>('select version() as v, ssl from pg_stat_ssl where pid = pg_backend_pid()');
      await client.end();
      assert.match(res.rows[0]?.v ?? '', /PostgreSQL 15/);
      assert.equal(res.rows[0]?.ssl, true);
      const bad = new pg.Client({ host: server.host, port: server.port, user: server.user, password: 'wrong', database: server.database, ssl: false });
      await assert.rejects(bad.connect(), /password authentication failed/);
    } finally {
      await server.stop();
    }
  });

  it('starts, stops and restarts a real Redis on the same port', async () => {
    const redis = await startRedis();
    try {
      const { Redis } = await import('ioredis');
      const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await client.connect();
      assert.equal(await client.ping(), 'PONG');
      client.disconnect();
      await redis.stop();
      await redis.start();
      const again = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await again.connect();
      assert.equal(await again.ping(), 'PONG');
      again.disconnect();
    } finally {
      await redis.destroy();
    }
  });
});
