// Acceptance: who gets through the sidecar. The caller's JWT is the PostgreSQL password; every
// forged, stale or misdirected token is refused with the SQLSTATE the session sends and leaves an
// `authn.failure` audit event; startup parameters that change what the session is are refused.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, KeyObject } from 'node:crypto';
import pg from 'pg';
import { createLocalIssuer, encodeSegment } from '../sidecar/identity/local-issuer.ts';
import { byReason, uniqueName, waitForEvents } from './harness/audit-events.ts';
import { ISSUER, startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createBillingSchema, psqlThroughSidecar } from './harness/fixtures.ts';
import { sqlstateOf, WireClient, errorOf } from './harness/wire-client.ts';

let stack: CustosStack;

before(async () => {
  stack = await startCustosStack();
  await createBillingSchema(stack);
});

after(async () => {
  await stack.stop();
});

/** Connects with `password`; returns the SQLSTATE of the refusal, or undefined when it connected. */
async function connectError(password: string, applicationName: string): Promise<{ code: string | undefined; message: string }> {
  const client = new pg.Client({ ...stack.clientConfig(password), application_name: applicationName });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e: unknown) {
    return { code: sqlstateOf(e), message: (e as Error).message };
  }
  await client.end();
  return { code: undefined, message: 'connected' };
}

/** A compact JWS with the given header and payload, HMAC-SHA256-signed with `secret`. */
function hmacToken(header: Record<string, unknown>, payload: Record<string, unknown>, secret: string | Buffer): string {
  const input = `${encodeSegment(header)}.${encodeSegment(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

function validPayload(): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: ISSUER, sub: 'repo:acme/billing:ref:refs/heads/main', aud: 'custos', iat: now, exp: now + 600,
    repository: 'acme/billing', ref: 'refs/heads/main', workflow: 'deploy-tests',
  };
}

/** A signed ci token whose compact form is exactly `length` characters long. */
async function tokenOfLength(length: number): Promise<string> {
  const base = await stack.token({ pad: '' });
  // Each 3 characters of claim add 4 of base64url; the header's extra member fixes the remainder.
  const estimate = Math.floor(((length - base.length) * 3) / 4);
  for (let padLength = Math.max(0, estimate - 16); padLength <= estimate + 6; padLength++) {
    for (let extra = 0; extra < 4; extra++) {
      const t = await stack.token({ pad: 'x'.repeat(padLength) }, { header: { x: 'y'.repeat(extra) } });
      if (t.length === length) return t;
    }
  }
  throw new Error(`could not build a token of ${length} characters`);
}

describe('sidecar authentication', () => {
  it('runs a SELECT for psql when the password is a valid caller token', async () => {
    const result = await psqlThroughSidecar(stack, await stack.token(), ['-A', '-t', '-c', 'select 1']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), '1');
  });

  it('runs a SELECT for the pg driver when the password is a valid caller token', async () => {
    const client = await stack.connect();
    try {
      const res = await client.query<{ n: string; who: string }>('SELECT count(*)::text AS n, current_user::text AS who FROM invoices');
      assert.equal(res.rows[0]?.n, '5');
      // The session runs upstream as the sidecar's role, whatever user name the client claimed.
      assert.equal(res.rows[0].who, stack.postgres.user);
    } finally {
      await client.end();
    }
  });

  it('accepts a valid token of exactly 8 KiB (the size limit is inclusive)', async () => {
    const token = await tokenOfLength(8192);
    assert.equal((await connectError(token, uniqueName('size-ok'))).code, undefined);
  });

  describe('refuses forged, stale and misdirected tokens with the session SQLSTATE and an authn.failure event', () => {
    const now = (): number => Math.floor(Date.now() / 1000);
    const cases: ReadonlyArray<{ name: string; sqlstate: string; token: () => Promise<string> }> = [
      { name: 'a wrong issuer', sqlstate: '28000', token: () => stack.token({ iss: 'https://evil.example' }) },
      { name: 'an issuer differing only by a trailing slash', sqlstate: '28000', token: () => stack.token({ iss: `${ISSUER}/` }) },
      { name: 'a wrong audience', sqlstate: '28000', token: () => stack.token({}, { audience: 'kubernetes' }) },
      { name: 'an expired token', sqlstate: '28P01', token: () => stack.token({}, { issuedAt: now() - 1200, expiresInSeconds: 300 }) },
      ...['none', 'None', 'NONE', 'nOnE'].flatMap((alg) => [
        { name: `alg "${alg}" with an empty signature`, sqlstate: '28P01', token: () => Promise.resolve(`${encodeSegment({ alg, typ: 'JWT' })}.${encodeSegment(validPayload())}.`) },
        { name: `alg "${alg}" with a junk signature`, sqlstate: '28P01', token: () => Promise.resolve(`${encodeSegment({ alg, typ: 'JWT' })}.${encodeSegment(validPayload())}.AAAA`) },
      ]),
      {
        name: 'HS256 keyed with the issuer public key PEM (key confusion)',
        sqlstate: '28P01',
        token: () => {
          const pem = KeyObject.from(stack.issuer.publicKey).export({ type: 'spki', format: 'pem' });
          return Promise.resolve(hmacToken({ alg: 'HS256', kid: stack.issuer.kid, typ: 'JWT' }, validPayload(), pem));
        },
      },
      {
        name: 'HS256 keyed with the issuer public key DER (key confusion)',
        sqlstate: '28P01',
        token: () => {
          const der = KeyObject.from(stack.issuer.publicKey).export({ type: 'spki', format: 'der' });
          return Promise.resolve(hmacToken({ alg: 'HS256', kid: stack.issuer.kid, typ: 'JWT' }, validPayload(), der));
        },
      },
      {
        name: 'HS256 keyed with the issuer public JWK (key confusion)',
        sqlstate: '28P01',
        token: () => Promise.resolve(hmacToken({ alg: 'HS256', kid: stack.issuer.kid, typ: 'JWT' }, validPayload(), JSON.stringify(stack.issuer.publicJwk))),
      },
      { name: 'a validly signed token of 8 KiB + 1', sqlstate: '28P01', token: () => tokenOfLength(8193) },
      {
        name: 'a token signed by another key under the right kid',
        sqlstate: '28P01',
        token: async () => {
          const impostor = await createLocalIssuer({ issuer: ISSUER, alg: 'ES256', kid: stack.issuer.kid });
          return impostor.mint({ repository: 'acme/billing', ref: 'refs/heads/main', workflow: 'deploy-tests' },
            { audience: 'custos', subject: 'repo:acme/billing:ref:refs/heads/main' });
        },
      },
      {
        name: 'a token with a flipped payload bit',
        sqlstate: '28P01',
        token: async () => {
          const [h, , s] = (await stack.token()).split('.');
          return `${h ?? ''}.${encodeSegment({ ...validPayload(), repository: 'acme/billinh' })}.${s ?? ''}`;
        },
      },
      { name: 'a token without exp', sqlstate: '28P01', token: () => stack.token({ exp: undefined }) },
      { name: 'a token issued an hour in the future', sqlstate: '28P01', token: () => stack.token({}, { issuedAt: now() + 3600 }) },
      { name: 'a token with an embedded attacker jwk', sqlstate: '28P01', token: async () => {
        const attacker = await createLocalIssuer({ issuer: ISSUER, alg: 'ES256' });
        return attacker.mint({ repository: 'acme/billing', ref: 'refs/heads/main', workflow: 'deploy-tests' },
          { audience: 'custos', subject: 'repo:acme/billing:ref:refs/heads/main', header: { jwk: attacker.publicJwk, kid: undefined } });
      } },
    ];
    for (const c of cases) {
      it(`refuses ${c.name} with ${c.sqlstate}`, async () => {
        const name = uniqueName('authn');
        const token = await c.token();
        const result = await connectError(token, name);
        assert.equal(result.code, c.sqlstate, `expected ${c.sqlstate}, got ${String(result.code)}: ${result.message}`);
        // A generic message: no detail that helps an attacker tune the forgery.
        assert.match(result.message, /token authentication failed/);
        const events = await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'authn.failure'));
        const mine = byReason(events, name);
        const failure = mine.find((e) => e.event_type === 'authn.failure');
        assert.ok(failure, 'an authn.failure event');
        assert.equal(failure.outcome, 'failure');
        assert.equal(failure.result?.sqlstate, c.sqlstate);
        assert.equal(failure.actor?.id, undefined, 'a refused caller has no verified identity');
        assert.ok(!mine.some((e) => e.event_type === 'session.start' && e.outcome === 'success'), 'no session was started');
        // The refused session's chain is closed (the audit log forgets its head), not left open.
        const ended = byReason(await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'session.end')), name)
          .find((e) => e.event_type === 'session.end');
        assert.equal(ended?.outcome, 'failure');
        assert.equal(ended.session_id, failure.session_id);
      });
    }
  });

  it('refuses an empty password with 28000 and an authn.failure event', async () => {
    const name = uniqueName('empty');
    const { client, messages } = await WireClient.login(stack.port, '', { application_name: name });
    try {
      const error = errorOf(messages.at(-1));
      assert.equal(error?.sqlstate, '28000');
      assert.equal(error.severity, 'FATAL');
      assert.ok(!messages.some((m) => m.type === 'AuthenticationOk'));
      assert.equal((await client.untilClosed()).closed, true, 'the sidecar closes after the FATAL');
    } finally {
      client.end();
    }
    const events = await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'authn.failure'));
    assert.equal(byReason(events, name).find((e) => e.event_type === 'authn.failure')?.result?.sqlstate, '28000');
  });

  it('refuses a bad token for psql with a non-zero exit and the refusal on stderr', async () => {
    const result = await psqlThroughSidecar(stack, await stack.token({}, { issuedAt: Math.floor(Date.now() / 1000) - 1200, expiresInSeconds: 300 }), ['-c', 'select 1']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /FATAL: {2}token authentication failed/);
    assert.equal(result.stdout, '');
  });

  it('lets a verified caller that is not the ci subject read but not write', async () => {
    const token = await stack.token({ repository: 'acme/other' });
    const client = new pg.Client({ ...stack.clientConfig(token), application_name: 'not-ci' });
    await client.connect();
    try {
      const read = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM invoices');
      assert.equal(read.rows[0]?.n, '5');
      const write = await client.query("INSERT INTO invoices (id, customer) VALUES (901, 'intruder')").then(() => undefined, (e: unknown) => e);
      assert.equal(sqlstateOf(write), '42501');
      assert.match((write as Error).message, /permission denied by policy/);
      const del = await client.query('DELETE FROM invoices WHERE id = 1').then(() => undefined, (e: unknown) => e);
      assert.equal(sqlstateOf(del), '42501');
    } finally {
      await client.end();
    }
    assert.equal((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id IN (1, 901)')).trim(), '1');
  });

  it('lets the ci subject write (the positive control of the test above)', async () => {
    const client = await stack.connect();
    try {
      const res = await client.query("INSERT INTO invoices (id, customer) VALUES (902, 'ci row')");
      assert.equal(res.rowCount, 1);
    } finally {
      await client.end();
    }
    assert.equal((await stack.postgres.psql('SELECT customer FROM invoices WHERE id = 902')).trim(), 'ci row');
  });

  describe('refuses startup parameters that change what the session is', () => {
    const cases: ReadonlyArray<{ name: string; config: pg.ClientConfig; sqlstate: string; message: RegExp }> = [
      { name: 'replication=database', config: { replication: 'database' } as pg.ClientConfig, sqlstate: '08P01', message: /replication/ },
      { name: 'options=-c role=postgres', config: { options: '-c role=postgres' }, sqlstate: '08P01', message: /options/ },
      { name: 'a GUC outside the allow-list (role)', config: {}, sqlstate: '08P01', message: /role/ },
      { name: 'a database other than the target\'s', config: { database: 'postgres' }, sqlstate: '3D000', message: /not reachable through this Custos listener/ },
    ];
    for (const c of cases) {
      it(`refuses ${c.name} with ${c.sqlstate}`, async () => {
        let result: { code: string | undefined; message: string };
        if (c.name.startsWith('a GUC')) {
          const { client, messages } = await WireClient.login(stack.port, await stack.token(), { role: 'postgres' });
          client.end();
          const e = errorOf(messages.at(-1));
          result = { code: e?.sqlstate, message: e?.message ?? messages.map((m) => m.type).join(',') };
        } else {
          const client = new pg.Client({ ...stack.clientConfig(await stack.token()), ...c.config });
          client.on('error', () => undefined);
          result = await client.connect().then(async () => { await client.end(); return { code: undefined, message: 'connected' }; },
            (e: unknown) => ({ code: sqlstateOf(e), message: (e as Error).message }));
        }
        assert.equal(result.code, c.sqlstate, result.message);
        assert.match(result.message, c.message);
      });
    }
  });

  it('refuses a startup that never sends a password before authentication with no upstream session', async () => {
    const client = await WireClient.open(stack.port);
    try {
      const { startupMessage, query } = await import('../sidecar/protocols/postgres/codec/frontend-serializer.ts');
      client.send(Buffer.concat([startupMessage({ user: 'x', database: 'app' }), query('SELECT 1')]));
      const { messages } = await client.untilClosed();
      assert.ok(messages.some((m) => m.type === 'AuthenticationCleartextPassword'));
      assert.equal(errorOf(messages.at(-1))?.sqlstate, '08P01');
      assert.ok(!messages.some((m) => m.type === 'AuthenticationOk' || m.type === 'DataRow'));
    } finally {
      client.end();
    }
  });
});
