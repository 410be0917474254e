// Acceptance, at the protocol level: what no driver sends but an attacker can. Portals executed in
// chunks, pipelines mixing masked and clean statements before one Sync, per-column result formats,
// an Execute of a cursor portal that was never bound through the extended protocol, Describe of
// such a portal, and a view created after the sidecar read the catalog. Every byte the raw client
// receives is checked for protected values, and the DataRows it can decode for their masked form.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fe from '../sidecar/protocols/postgres/codec/frontend-serializer.ts';
import { startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createMaskingSchema, CUSTOMERS, expectedPartialEmail, isHmacToken, assertNoProtectedValue, maskingPolicy, protectedForms, REDACTED, writeHmacKey } from './harness/masking-fixtures.ts';
import { errorOf, type Message, WireClient } from './harness/wire-client.ts';

let stack: CustosStack;
let cleanupKey: () => Promise<void> = () => Promise.resolve();
const FORMS = protectedForms();

before(async () => {
  const key = await writeHmacKey();
  cleanupKey = key.cleanup;
  stack = await startCustosStack({ editPolicy: maskingPolicy(key.file) });
  await createMaskingSchema(stack);
  await stack.restartSidecar();
});

after(async () => {
  await stack.stop();
  await cleanupKey();
});

async function session(): Promise<WireClient> {
  const { client, messages } = await WireClient.login(stack.port, await stack.token(), { database: stack.postgres.database });
  assert.equal(messages.at(-1)?.type, 'ReadyForQuery', JSON.stringify(messages.map((m) => errorOf(m) ?? m.type)));
  return client;
}

function dataRows(messages: readonly Message[]): Array<ReadonlyArray<Buffer | null>> {
  return messages.flatMap((m) => (m.type === 'DataRow' ? [m.values] : []));
}

function text(v: Buffer | null | undefined): string | null {
  return v === null || v === undefined ? null : v.toString('utf8');
}

/** Fails with the labels of every protected form in what the client received. */
function assertNoLeak(client: WireClient, what: string): void {
  assertNoProtectedValue(client.received, FORMS, `protected values reached the client: ${what}`);
}

describe('sidecar masking: protocol-level attacks', () => {
  it('a portal executed in chunks (Execute with a row limit, PortalSuspended, Execute again) stays masked', async () => {
    const client = await session();
    try {
      client.send(Buffer.concat([
        fe.parse('', 'SELECT id, email, ssn, card FROM customers ORDER BY id'),
        // Mixed result formats: id binary, email text, ssn binary, card text.
        fe.bind({ resultFormats: [1, 0, 1, 0] }),
        fe.describe('P'),
        fe.execute('', 3),
        fe.execute('', 5),
        fe.execute('', 0),
        fe.sync(),
      ]));
      const messages = await client.until((m) => m.type === 'ReadyForQuery');
      assertNoLeak(client, 'chunked portal');
      assert.equal(messages.filter((m) => m.type === 'PortalSuspended').length, 2, JSON.stringify(messages.map((m) => errorOf(m) ?? m.type)));
      const rows = dataRows(messages);
      assert.equal(rows.length, CUSTOMERS.length);
      for (const [i, c] of CUSTOMERS.entries()) {
        const row = rows[i] ?? [];
        assert.equal(row[0]?.readInt32BE(0), c.id, 'clean binary int4 unchanged');
        assert.equal(text(row[1]), expectedPartialEmail(c.email), `row ${i} email`);
        assert.equal(text(row[2]), REDACTED, `row ${i} ssn (binary text format)`);
        assert.ok(isHmacToken(text(row[3])), `row ${i} card`);
      }
    } finally {
      client.end();
    }
  });

  it('a pipeline mixing clean and masked statements before one Sync masks each result set by its own statement', async () => {
    const client = await session();
    try {
      client.send(Buffer.concat([
        fe.parse('', 'SELECT email FROM newsletter ORDER BY email'), fe.bind(), fe.execute(),
        fe.parse('', 'SELECT id, upper(email) FROM customers ORDER BY id'), fe.bind({ resultFormats: [1] }), fe.execute(),
        fe.parse('', "SELECT 'x'::text AS clean, 42 AS n"), fe.bind(), fe.execute(),
        fe.parse('s1', "SELECT translate(ssn, '-', '') FROM customers ORDER BY id"), fe.bind({ statement: 's1' }), fe.execute(),
        fe.sync(),
      ]));
      const messages = await client.until((m) => m.type === 'ReadyForQuery', 10_000);
      assertNoLeak(client, 'pipeline');
      const errors = messages.flatMap((m) => { const e = errorOf(m); return e ? [e] : []; });
      assert.deepEqual(errors, []);
      const rows = dataRows(messages);
      assert.equal(rows.length, 3 + CUSTOMERS.length + 1 + CUSTOMERS.length);
      assert.deepEqual(rows.slice(0, 3).map((r) => text(r[0])), ['reader.one@news.example', 'reader.three@news.example', 'reader.two@news.example'], 'the clean table is untouched');
      const clean = rows[3 + CUSTOMERS.length];
      assert.deepEqual([text(clean?.[0]), text(clean?.[1])], ['x', '42'], 'a clean statement in the middle is untouched');
    } finally {
      client.end();
    }
  });

  it('Execute of a cursor portal opened by DECLARE (never bound through the extended protocol) is masked', async () => {
    const client = await session();
    try {
      await client.query('BEGIN');
      const declared = await client.query("DECLARE c CURSOR FOR SELECT id, translate(ssn, '-', '') AS d, reverse(email) AS r, email, card FROM customers ORDER BY id");
      assert.equal(errorOf(declared.find((m) => m.type === 'ErrorResponse')), undefined);
      client.send(Buffer.concat([fe.describe('P', 'c'), fe.execute('c', 0), fe.sync()]));
      const messages = await client.until((m) => m.type === 'ReadyForQuery', 10_000);
      assertNoLeak(client, 'Execute of a DECLAREd cursor');
      const rows = dataRows(messages);
      if (rows.length > 0) {
        for (const [i, c] of CUSTOMERS.entries()) {
          const row = rows[i] ?? [];
          assert.notEqual(text(row[1]), c.ssn.replace(/-/g, ''));
          assert.equal(text(row[3]), expectedPartialEmail(c.email));
        }
      } else {
        assert.ok(messages.some((m) => m.type === 'ErrorResponse'), 'neither rows nor a refusal');
      }
    } finally {
      client.end();
    }
  });

  it('a Describe of the statement reports the declared types, and the rows decode in binary for every column', async () => {
    const client = await session();
    try {
      client.send(Buffer.concat([
        fe.parse('d', 'SELECT id, email, ssn, card, length(email) AS n, md5(ssn)::uuid AS u, to_jsonb(card) AS j FROM customers ORDER BY id'),
        fe.describe('S', 'd'),
        fe.bind({ statement: 'd', resultFormats: [1] }),
        fe.execute(),
        fe.sync(),
      ]));
      const messages = await client.until((m) => m.type === 'ReadyForQuery', 10_000);
      assertNoLeak(client, 'binary Describe/Execute');
      const description = messages.find((m) => m.type === 'RowDescription');
      assert.ok(description?.type === 'RowDescription');
      assert.deepEqual(description.fields.map((f) => f.typeOid), [23, 25, 25, 25, 23, 2950, 3802]);
      const rows = dataRows(messages);
      assert.equal(rows.length, CUSTOMERS.length);
      for (const [i, c] of CUSTOMERS.entries()) {
        const row = rows[i] ?? [];
        assert.equal(row[0]?.readInt32BE(0), c.id);
        assert.equal(text(row[1]), expectedPartialEmail(c.email));
        assert.equal(text(row[2]), REDACTED);
        // Derived outputs: NULL or a value valid for the type in binary.
        const n = row[4];
        if (n !== null && n !== undefined) {
          assert.equal(n.length, 4, 'an int4 in binary is 4 bytes');
          assert.notEqual(n.readInt32BE(0), c.email.length, 'length(email) came back clear');
        }
        const u = row[5];
        if (u !== null && u !== undefined) assert.equal(u.length, 16, 'a uuid in binary is 16 bytes');
        const j = row[6];
        if (j !== null && j !== undefined) {
          assert.equal(j[0], 1, 'jsonb binary starts with version 1');
          JSON.parse(j.subarray(1).toString('utf8'));
        }
      }
    } finally {
      client.end();
    }
  });

  it('a view created after the sidecar read the catalog is masked until it is known', async () => {
    await stack.postgres.psql(`CREATE VIEW late_view AS SELECT id, name, email, ssn, card FROM customers; ALTER VIEW late_view OWNER TO ${stack.postgres.user}`);
    const client = await session();
    try {
      const messages = await client.query('SELECT * FROM late_view ORDER BY id');
      assertNoLeak(client, 'a view newer than the catalog snapshot');
      const rows = dataRows(messages);
      if (rows.length > 0) {
        for (const [i, c] of CUSTOMERS.entries()) {
          const row = rows[i] ?? [];
          assert.notEqual(text(row[2]), c.email);
          assert.notEqual(text(row[3]), c.ssn);
        }
      }
    } finally {
      client.end();
    }
  });
});
