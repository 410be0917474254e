// Acceptance: what the workload, the logs and the audit trail can learn. The sidecar logs in
// upstream with a password the workload never holds: a tap on the client's wire, the sidecar's
// logs, every byte of the spool and the Redis stream must show neither that password nor anything
// derived from it, nor the caller's JWT, nor the literals of the statements it ran.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import pg from 'pg';
import { allFileBytes, redisStreamEntries, spoolEvents, streamEvents, uniqueName } from './harness/audit-events.ts';
import { POD_UID, startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createBillingSchema } from './harness/fixtures.ts';
import { waitFor } from './harness/processes.ts';
import { startTcpTap, type TcpTap } from './harness/tcp-tap.ts';
import { sqlstateOf } from './harness/wire-client.ts';

const SECRET_LITERAL = 'Very Secret Name';

let stack: CustosStack;
let tap: TcpTap;
const callerTokens: string[] = [];
/** Every form of upstream secret material that must never leave the sidecar: [label, bytes]. */
let secretForms: Array<[string, Buffer]> = [];

function formsOf(label: string, value: Buffer): Array<[string, Buffer]> {
  return [
    [`${label} (raw)`, value],
    [`${label} (base64)`, Buffer.from(value.toString('base64'))],
    [`${label} (hex)`, Buffer.from(value.toString('hex'))],
  ];
}

/** Every secret form found in `haystack`; empty when clean. */
function leaks(haystack: Buffer | string, forms: ReadonlyArray<[string, Buffer]>): string[] {
  const bytes = typeof haystack === 'string' ? Buffer.from(haystack) : haystack;
  return forms.filter(([, needle]) => bytes.includes(needle)).map(([label]) => label);
}

async function workloadThroughTap(): Promise<void> {
  const token = await stack.token();
  callerTokens.push(token);
  const client = new pg.Client({ ...stack.clientConfig(token), port: tap.port, application_name: uniqueName('tap') });
  const notices: string[] = [];
  client.on('notice', (n) => notices.push(n.message ?? ''));
  await client.connect();
  try {
    await client.query('SELECT id, customer FROM invoices ORDER BY id');
    await client.query('SELECT $1::text AS p', ['param']);
    // A server error and a warning (NoticeResponse) pass through the sidecar to the client.
    assert.equal(sqlstateOf(await client.query('SELECT 1 / 0').catch((e: unknown) => e)), '22012');
    await client.query('COMMIT');
    assert.ok(notices.some((n) => /no transaction in progress/.test(n)), `expected a notice, got ${JSON.stringify(notices)}`);
    // Refusals by the sidecar.
    assert.equal(sqlstateOf(await client.query('DROP TABLE invoices').catch((e: unknown) => e)), '42501');
    assert.equal(sqlstateOf(await client.query('SELEC nonsense').catch((e: unknown) => e)), '42601');
    // Statements with a literal the audit trail must not keep.
    await client.query(`SELECT * FROM invoices WHERE customer = '${SECRET_LITERAL}'`);
    await client.query(`INSERT INTO invoices (id, customer) VALUES (700, '${SECRET_LITERAL}')`);
    await client.query('SELECT * FROM invoices WHERE customer = $1', [SECRET_LITERAL]);
    assert.equal(sqlstateOf(await client.query(`DELETE FROM invoices WHERE customer = '${SECRET_LITERAL}' OR 1=1; DROP TABLE customers`).catch((e: unknown) => e)), '42501');
  } finally {
    await client.end();
  }
  // A refused login through the tap, with a token the issuer never signed.
  const forged = `${token.slice(0, token.lastIndexOf('.'))}.${Buffer.from('forged-signature-forged-signature').toString('base64url')}`;
  callerTokens.push(forged);
  const bad = new pg.Client({ ...stack.clientConfig(forged), port: tap.port });
  bad.on('error', () => undefined);
  assert.equal(sqlstateOf(await bad.connect().catch((e: unknown) => e)), '28P01');
}

before(async () => {
  stack = await startCustosStack({ redis: true });
  await createBillingSchema(stack);
  const password = stack.postgres.password;
  const user = stack.postgres.user;
  const verifier = (await stack.postgres.psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${user}'`)).trim();
  const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
  assert.ok(m, `expected a SCRAM verifier, got ${verifier.slice(0, 14)}…`);
  const salt = Buffer.from(m[2] ?? '', 'base64');
  const salted = pbkdf2Sync(password, salt, Number(m[1]), 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  assert.deepEqual(storedKey, Buffer.from(m[3] ?? '', 'base64'), 'the derivation matches the server verifier');
  const md5Inner = createHash('md5').update(password + user).digest('hex');
  secretForms = [
    ['upstream password', Buffer.from(password)],
    ['SCRAM verifier', Buffer.from(verifier)],
    ...formsOf('SCRAM SaltedPassword', salted),
    ...formsOf('SCRAM ClientKey', clientKey),
    ...formsOf('SCRAM StoredKey', storedKey),
    ...formsOf('SCRAM ServerKey', serverKey),
    ['MD5 inner hash', Buffer.from(md5Inner)],
    ['MD5 password', Buffer.from(`md5${md5Inner}`)],
  ];
  tap = await startTcpTap(stack.port);
  await workloadThroughTap();
});

after(async () => {
  await tap.close();
  await stack.stop();
});

describe('sidecar secrets', () => {
  it('never sends the upstream password or its MD5/SCRAM material to the client', () => {
    const wire = tap.toClient();
    assert.ok(wire.length > 500, 'the tap recorded the sessions');
    // Sanity: the tap did see what the client was given (rows, the notice, the refusals).
    assert.ok(wire.includes(Buffer.from('customer 3')) && wire.includes(Buffer.from('42501')) && wire.includes(Buffer.from('no transaction in progress')));
    assert.deepEqual(leaks(wire, secretForms), []);
  });

  it('never writes the upstream password or its material to the logs', () => {
    assert.ok(stack.logs().length > 0);
    assert.deepEqual(leaks(stack.logs(), secretForms), []);
  });

  it('never writes the upstream password or its material to the spool', async () => {
    const bytes = await allFileBytes(stack.spoolDir);
    assert.ok(bytes.length > 0);
    assert.deepEqual(leaks(bytes, secretForms), []);
  });

  it('never ships the upstream password, the caller token or statement literals to Redis', async () => {
    const redisUrl = stack.redis?.url ?? '';
    const spooled = await spoolEvents(stack.spoolDir);
    const lastId = spooled.at(-1)?.event_id;
    let entries: Array<[string, string[]]> = [];
    await waitFor('the stream to hold the spool', async () => {
      entries = await redisStreamEntries(redisUrl, POD_UID);
      return streamEvents(entries).some((e) => e.event_id === lastId);
    }, 15_000);
    const flat = entries.map(([id, fields]) => `${id}\n${fields.join('\n')}`).join('\n');
    assert.deepEqual(leaks(flat, secretForms), []);
    for (const token of callerTokens) {
      assert.ok(!flat.includes(token), 'caller token in Redis');
      assert.ok(!flat.includes(token.slice(token.lastIndexOf('.') + 1)), 'caller token signature in Redis');
    }
    assert.ok(!flat.includes(SECRET_LITERAL), 'statement literal in Redis');
  });

  it('never writes the caller token to the logs or the spool', async () => {
    const spool = await allFileBytes(stack.spoolDir);
    const logs = stack.logs();
    for (const token of callerTokens) {
      const signature = token.slice(token.lastIndexOf('.') + 1);
      const payload = token.split('.')[1] ?? '';
      for (const [where, text] of [['logs', Buffer.from(logs)], ['spool', spool]] as const) {
        assert.ok(!text.includes(token), `caller token in ${where}`);
        assert.ok(!text.includes(signature), `caller token signature in ${where}`);
        assert.ok(!text.includes(payload), `caller token payload segment in ${where}`);
      }
    }
  });

  it('keeps statement literals out of audit events (normalized text only)', async () => {
    const spool = await allFileBytes(stack.spoolDir);
    assert.ok(!spool.includes(Buffer.from(SECRET_LITERAL)), 'statement literal in the spool');
    const events = await spoolEvents(stack.spoolDir);
    const selects = events.filter((e) => e.event_type === 'db.query.attempt' && /customer = \$\d/.test(e.command?.text ?? ''));
    assert.ok(selects.length >= 2, `expected normalized attempts, got ${JSON.stringify(events.map((e) => e.command?.text))}`);
    for (const e of events) assert.ok(!JSON.stringify(e).includes(SECRET_LITERAL));
  });
});
