// Acceptance: real clients keep working, unchanged, against masked tables. psql, the pg driver in
// text and in binary result format, and pgbench in its three query modes see well-formed results:
// the masked values decode without driver errors (a masked value must be valid for its column's
// type and format), clean columns and types are untouched, and nothing protected comes back.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { runCommand } from './harness/fixtures.ts';
import {
  createMaskingSchema, CUSTOMERS, expectedPartialEmail, isHmacToken, assertNoProtectedValue, maskingPolicy, protectedForms, psqlVia, REDACTED, writeHmacKey,
} from './harness/masking-fixtures.ts';

let stack: CustosStack;
let cleanupKey: () => Promise<void> = () => Promise.resolve();
const FORMS = protectedForms();

before(async () => {
  const key = await writeHmacKey();
  cleanupKey = key.cleanup;
  stack = await startCustosStack({
    editPolicy: maskingPolicy(key.file, { columns: [{ column: 'public.pgbench_accounts.filler', strategy: 'redact' }] }),
  });
  await createMaskingSchema(stack);
  const init = await runCommand('pgbench', ['-i', '-s', '1', '-q', '-h', stack.postgres.socketDir, '-p', String(stack.postgres.port), '-U', 'postgres', stack.postgres.database]);
  assert.equal(init.code, 0, init.stderr);
  await stack.postgres.psql(`UPDATE pgbench_accounts SET filler = 'acct ' || aid WHERE aid <= 10; GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${stack.postgres.user}`);
  // The masking catalog snapshot is read at start: restart so it knows the fixture tables.
  await stack.restartSidecar();
});

after(async () => {
  await stack.stop();
  await cleanupKey();
});

/** The sidecar's warnings and errors, for failure messages. */
function sidecarProblems(): string {
  return stack.logs().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-10).join('\n');
}

async function connect(): Promise<pg.Client> {
  const client = new pg.Client({ ...stack.clientConfig(await stack.token()), query_timeout: 15_000 });
  await client.connect();
  return client;
}

function assertMaskedCustomers(rows: ReadonlyArray<Record<string, unknown>>): void {
  assert.equal(rows.length, CUSTOMERS.length);
  const tokens = new Map<string, unknown>();
  for (const [i, c] of CUSTOMERS.entries()) {
    const r = rows[i] ?? {};
    assert.equal(r['id'], c.id);
    assert.equal(r['name'], c.name);
    assert.equal(r['email'], expectedPartialEmail(c.email));
    assert.equal(r['ssn'], REDACTED);
    assert.ok(isHmacToken(r['card']), `card ${JSON.stringify(r['card'])}`);
    const seen = tokens.get(c.card);
    if (seen !== undefined) assert.equal(r['card'], seen, 'the same card gets the same token');
    tokens.set(c.card, r['card']);
  }
  assert.equal(new Set(tokens.values()).size, new Set(CUSTOMERS.map((c) => c.card)).size, 'different cards get different tokens');
}

describe('sidecar masking: clients', () => {
  it('psql shows masked rows, aligned and unaligned, and exits 0', async () => {
    const token = await stack.token();
    const unaligned = await psqlVia(stack.port, stack, token, ['-A', '-t', '-F', '|', '-c', 'SELECT id, name, email, ssn, card FROM customers ORDER BY id']);
    assert.equal(unaligned.code, 0, unaligned.stderr);
    const rows = unaligned.stdout.trimEnd().split('\n').map((line) => {
      const [id, name, email, ssn, card] = line.split('|');
      return { id: Number(id), name, email, ssn, card };
    });
    assertMaskedCustomers(rows);
    const aligned = await psqlVia(stack.port, stack, token, ['-c', 'SELECT * FROM customers ORDER BY id', '-c', "SELECT upper(email) AS u, translate(ssn, '-', '') AS d FROM customers ORDER BY id"]);
    assert.equal(aligned.code, 0, aligned.stderr);
    assert.match(aligned.stdout, /\(20 rows\)[\s\S]*\(20 rows\)/);
    assertNoProtectedValue(aligned.stdout + unaligned.stdout, FORMS, 'protected values found');
    // The masked column keeps its declared type for clients that describe results.
    const described = await psqlVia(stack.port, stack, token, ['-f', '-'], { input: 'SELECT email, ssn, card FROM customers \\gdesc\n' });
    assert.equal(described.code, 0, described.stderr);
    assert.match(described.stdout, /email\s*\|\s*text[\s\S]*ssn\s*\|\s*text[\s\S]*card\s*\|\s*text/);
  });

  it('the pg driver in text mode: masked rows, field metadata unchanged', async () => {
    const client = await connect();
    try {
      const result = await client.query('SELECT * FROM customers ORDER BY id');
      assertMaskedCustomers(result.rows as Array<Record<string, unknown>>);
      assert.deepEqual(result.fields.map((f) => [f.name, f.dataTypeID]), [['id', 23], ['name', 25], ['email', 25], ['ssn', 25], ['card', 25]]);
      // A named prepared statement executed repeatedly stays masked every time.
      for (let i = 0; i < 5; i++) {
        const again = await client.query<{ id: number; email: string; ssn: string; card: string }>({ name: 'by-id', text: 'SELECT id, email, ssn, card FROM customers WHERE id = $1', values: [i + 1] });
        const c = CUSTOMERS[i];
        const row = again.rows[0];
        assert.ok(row !== undefined);
        assert.deepEqual({ ...row }, { id: c?.id, email: expectedPartialEmail(c?.email ?? ''), ssn: REDACTED, card: row.card });
        assert.ok(isHmacToken(row.card));
      }
    } finally {
      await client.end();
    }
  });

  it('the pg driver in binary mode: masked rows decode, and so does every derived type', async () => {
    const client = await connect();
    try {
      const plain = await client.query({ text: 'SELECT * FROM customers ORDER BY id', binary: true } as pg.QueryConfig);
      assertMaskedCustomers(plain.rows as Array<Record<string, unknown>>);
      // Outputs derived from masked columns in types other than text: int4, int8, bool, uuid, numeric,
      // bytea, jsonb, text[] and a timestamp next to them. Each must decode (or be NULL), none may error.
      const derived = await client.query({
        text: `SELECT id, length(email) AS n, hashtext(ssn)::int8 AS h, (ssn IS NULL) AS b, md5(card)::uuid AS u,
                      length(card)::numeric AS num, convert_to(ssn, 'UTF8') AS raw, to_jsonb(email) AS j, ARRAY[ssn, card] AS a,
                      now() AS t, name
               FROM customers ORDER BY id`,
        binary: true,
      } as pg.QueryConfig);
      assert.equal(derived.rows.length, CUSTOMERS.length);
      for (const [i, row] of (derived.rows as Array<Record<string, unknown>>).entries()) {
        const c = CUSTOMERS[i];
        assert.equal(row['id'], c?.id);
        assert.equal(row['name'], c?.name);
        assert.ok(row['t'] instanceof Date, 'a clean timestamp still decodes');
        assert.notEqual(row['n'], c?.email.length, 'length(email) is derived from a masked column');
        // (ssn IS NULL): a comparison (LIKE, =) would be refused as a predicate; this one must just decode.
        assert.ok(row['b'] === null || typeof row['b'] === 'boolean', `a boolean derived from a masked column decodes: ${JSON.stringify(row['b'])}`);
      }
      assertNoProtectedValue(JSON.stringify(derived.rows), FORMS, 'protected values found');
      // The session is still healthy after the binary results.
      assert.equal((await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);
    } finally {
      await client.end();
    }
  });

  it('text and binary results agree on every masked value', async () => {
    const client = await connect();
    try {
      const sql = 'SELECT id, email, ssn, card FROM customers ORDER BY id';
      const text = (await client.query(sql)).rows;
      const binary = (await client.query({ text: sql, binary: true } as pg.QueryConfig)).rows;
      assert.deepEqual(binary, text);
    } finally {
      await client.end();
    }
  });

  // A fixed number of transactions, not a duration: with no shipper in this stack, a fast machine
  // would fill the 64 MB audit spool and the sidecar would rightly refuse statements.
  describe('pgbench with a masking rule on pgbench_accounts.filler', () => {
    for (const mode of ['simple', 'extended', 'prepared'] as const) {
      it(`runs -S with zero failures in ${mode} mode`, async () => {
        const result = await runCommand('pgbench', ['-n', '-S', '-t', '250', '-c', '4', '-j', '2', '-M', mode, '-h', '127.0.0.1', '-p', String(stack.port), '-U', 'x', stack.postgres.database], {
          env: { PGPASSWORD: await stack.token(), PGSSLMODE: 'disable' },
          // Correctness, not speed (bench/ measures that): generous for a loaded 2-core CI machine.
          timeoutMs: 120_000,
        });
        assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}\nsidecar:\n${sidecarProblems()}`);
        assert.match(result.stdout, /number of failed transactions: 0 /);
        assert.match(result.stdout, /number of transactions actually processed: 1000\/1000/);
      });
    }

    it('a custom script reading the masked column runs with zero failures in prepared mode', async () => {
      const script = join(stack.dir, 'read-filler.sql');
      await writeFile(script, '\\set aid random(1, 10)\nSELECT aid, abalance, filler FROM pgbench_accounts WHERE aid = :aid;\n');
      const result = await runCommand('pgbench', ['-n', '-f', script, '-t', '500', '-c', '2', '-j', '2', '-M', 'prepared', '-h', '127.0.0.1', '-p', String(stack.port), '-U', 'x', stack.postgres.database], {
        env: { PGPASSWORD: await stack.token(), PGSSLMODE: 'disable' },
        timeoutMs: 30_000,
      });
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}\nsidecar:\n${sidecarProblems()}`);
      assert.match(result.stdout, /number of failed transactions: 0 /);
      const client = await connect();
      try {
        const rows = (await client.query<{ aid: number; filler: string }>('SELECT aid, filler FROM pgbench_accounts WHERE aid <= 3 ORDER BY aid')).rows;
        assert.equal(rows.length, 3);
        for (const r of rows) assert.ok(!r.filler.includes(`acct ${r.aid}`), `filler of account ${r.aid} came back clear: ${JSON.stringify(r.filler)}`);
      } finally {
        await client.end();
      }
    });
  });
});
