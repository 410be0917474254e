// Acceptance: every statement is decided by the example policy (examples/policy.yaml), in the simple
// and the extended protocol, and a refusal leaves client and server agreeing on the transaction.
// Each refusal is checked three ways: the SQLSTATE and rule the client sees, the table really being
// intact upstream (the upstream role owns it, so a statement let through would take effect), and
// the audit attempt event with the decision.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rename, writeFile } from 'node:fs/promises';
import pg from 'pg';
import { parseDocument } from 'yaml';
import type { AuditEvent } from '../audit/event.ts';
import * as fe from '../sidecar/protocols/postgres/codec/frontend-serializer.ts';
import { byReason, uniqueName, waitForEvents } from './harness/audit-events.ts';
import { startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createBillingSchema, tableExists } from './harness/fixtures.ts';
import { errorOf, sqlstateOf, WireClient } from './harness/wire-client.ts';

let stack: CustosStack;
let originalPolicy: string;

before(async () => {
  stack = await startCustosStack();
  await createBillingSchema(stack);
  originalPolicy = await readFile(stack.policyFile, 'utf8');
});

after(async () => {
  await stack.stop();
});

type Caller = 'ci' | 'other';

async function connectAs(caller: Caller, applicationName: string): Promise<pg.Client> {
  const token = caller === 'ci' ? await stack.token() : await stack.token({ repository: 'acme/other' });
  const client = new pg.Client({ ...stack.clientConfig(token), application_name: applicationName });
  await client.connect();
  return client;
}

/** Runs a query and returns its error (or fails the test when it succeeded). */
async function refusalOf(client: pg.Client, query: string | pg.QueryConfig): Promise<Error & { code?: string }> {
  const outcome = await client.query(query).then((r) => r, (e: unknown) => e as Error & { code?: string });
  if (!(outcome instanceof Error)) assert.fail(`expected a refusal, the statement ran: ${JSON.stringify((outcome as pg.QueryResult).command)}`);
  return outcome;
}

async function snapshot(): Promise<string> {
  return stack.postgres.psql("SELECT string_agg(id || ':' || customer || ':' || amount, ',' ORDER BY id) FROM invoices");
}

async function deniedAttempt(name: string, rule: string | null | readonly string[]): Promise<AuditEvent> {
  const events = await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'db.query.attempt' && e.policy?.decision === 'deny'));
  const attempt = byReason(events, name).find((e) => e.event_type === 'db.query.attempt' && e.policy?.decision === 'deny');
  assert.ok(attempt);
  if (rule === null || typeof rule === 'string') assert.equal(attempt.policy?.rule, rule);
  else assert.ok(rule.includes(attempt.policy?.rule ?? ''), `rule ${String(attempt.policy?.rule)} is not one of ${rule.join(', ')}`);
  assert.equal(attempt.outcome, 'failure');
  return attempt;
}

interface DenyCase {
  readonly name: string;
  readonly caller: Caller;
  readonly query: string | pg.QueryConfig;
  readonly sqlstate: string;
  /** The rule named in the message and the audit event; null for the default action; a list when either is right. */
  readonly rule: string | null | readonly string[];
}

const RULE_MESSAGE = (rule: string | null | readonly string[]): RegExp =>
  rule === null
    ? /^permission denied by policy: no rule allows this statement \(default action\)/
    : new RegExp(`^permission denied by policy rule "(${(typeof rule === 'string' ? [rule] : rule).join('|')})": `);

function describeDenials(protocol: string, cases: readonly DenyCase[]): void {
  for (const c of cases) {
    it(`denies ${c.name} (${protocol}) with ${c.sqlstate}${c.rule !== null ? ` by ${String(c.rule)}` : ''}`, async () => {
      const name = uniqueName('deny');
      const before = await snapshot();
      const client = await connectAs(c.caller, name);
      try {
        const error = await refusalOf(client, c.query);
        assert.equal(error.code, c.sqlstate, error.message);
        if (c.sqlstate === '42501') assert.match(error.message, RULE_MESSAGE(c.rule));
        if (c.sqlstate === '42601') assert.match(error.message, /Custos could not parse/);
        // The session is still usable and idle afterwards.
        assert.equal((await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);
      } finally {
        await client.end();
      }
      assert.ok(await tableExists(stack, 'invoices'), 'invoices still exists');
      assert.ok(await tableExists(stack, 'customers'), 'customers still exists');
      assert.ok(!(await tableExists(stack, 'evil')), 'no table was created');
      assert.equal(await snapshot(), before, 'invoices is unchanged');
      if (c.sqlstate === '42501') await deniedAttempt(name, c.rule);
      if (c.sqlstate === '42601') {
        const events = await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'db.query.attempt'));
        const attempt = byReason(events, name).find((e) => e.event_type === 'db.query.attempt');
        assert.equal(attempt?.policy?.decision, 'deny');
        assert.equal(attempt.command?.text, '(unparseable statement)');
      }
    });
  }
}

const SIMPLE_DENIALS: readonly DenyCase[] = [
  { name: 'DROP TABLE', caller: 'ci', query: 'DROP TABLE invoices', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'DROP/**/TABLE', caller: 'ci', query: 'DROP/**/TABLE invoices', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'dRoP tAbLe with a quoted, qualified name', caller: 'ci', query: 'dRoP tAbLe "public"."invoices" CASCADE', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'DROP TABLE after a line comment and newlines', caller: 'ci', query: '-- harmless\n\n  DROP\nTABLE\tinvoices', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'CREATE TABLE', caller: 'ci', query: 'CREATE TABLE evil (x int)', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'CREATE TABLE AS', caller: 'ci', query: 'CREATE TABLE evil AS SELECT * FROM invoices', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'SELECT INTO (creates a table)', caller: 'ci', query: 'SELECT * INTO evil FROM invoices', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'ALTER TABLE', caller: 'ci', query: 'ALTER TABLE invoices DROP COLUMN amount', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'TRUNCATE', caller: 'ci', query: 'TRUNCATE invoices', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'DELETE without WHERE', caller: 'ci', query: 'DELETE FROM invoices', sqlstate: '42501', rule: 'deny-unfiltered-writes' },
  { name: 'DELETE WHERE 1=1', caller: 'ci', query: 'DELETE FROM invoices WHERE 1=1', sqlstate: '42501', rule: 'deny-unfiltered-writes' },
  { name: 'DELETE WHERE true', caller: 'ci', query: 'DELETE FROM invoices WHERE true', sqlstate: '42501', rule: 'deny-unfiltered-writes' },
  { name: 'UPDATE without WHERE', caller: 'ci', query: 'UPDATE invoices SET amount = 0', sqlstate: '42501', rule: 'deny-unfiltered-writes' },
  { name: 'DML hidden in a CTE for a non-ci caller', caller: 'other', query: 'WITH d AS (DELETE FROM invoices WHERE id = 1 RETURNING *) SELECT * FROM d', sqlstate: '42501', rule: null },
  { name: 'an UPDATE hidden in a CTE for a non-ci caller', caller: 'other', query: 'WITH u AS (UPDATE invoices SET amount = 0 WHERE id = 2 RETURNING id) SELECT count(*) FROM u', sqlstate: '42501', rule: null },
  { name: 'a DO block', caller: 'ci', query: 'DO $$ BEGIN DELETE FROM invoices; END $$', sqlstate: '42501', rule: 'deny-opaque-code' },
  { name: 'a DO block with a tagged dollar quote', caller: 'other', query: 'DO $x$ BEGIN EXECUTE \'DROP TABLE invoices\'; END $x$ LANGUAGE plpgsql', sqlstate: '42501', rule: 'deny-opaque-code' },
  { name: 'SQL-level PREPARE of an unfiltered DELETE', caller: 'ci', query: 'PREPARE p AS DELETE FROM invoices', sqlstate: '42501', rule: ['deny-opaque-code', 'deny-unfiltered-writes'] },
  { name: 'COPY TO PROGRAM', caller: 'ci', query: "COPY invoices TO PROGRAM 'id'", sqlstate: '42501', rule: 'deny-copy-program' },
  { name: 'COPY TO a server file', caller: 'ci', query: "COPY invoices TO '/tmp/custos-copy-out'", sqlstate: '42501', rule: 'deny-copy-program' },
  { name: 'COPY FROM a server file', caller: 'ci', query: "COPY invoices FROM '/etc/hostname'", sqlstate: '42501', rule: 'deny-copy-program' },
  { name: 'a multi-statement string ending in DROP', caller: 'ci', query: 'SELECT 1; DROP TABLE invoices', sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'an INSERT batched with a DROP', caller: 'ci', query: "INSERT INTO invoices (id, customer) VALUES (800, 'multi'); DROP TABLE invoices", sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'unparseable SQL', caller: 'ci', query: 'SELEC * FROM invoices', sqlstate: '42601', rule: null },
  { name: 'an unterminated string', caller: 'ci', query: "SELECT 'abc", sqlstate: '42601', rule: null },
];

const EXTENDED_DENIALS: readonly DenyCase[] = [
  { name: 'DROP TABLE as a named statement', caller: 'ci', query: { name: 'x', text: 'DROP TABLE invoices' }, sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'TRUNCATE as a named statement', caller: 'ci', query: { name: 'trunc', text: 'TRUNCATE invoices' }, sqlstate: '42501', rule: 'deny-ddl' },
  { name: 'UPDATE without WHERE with a parameter', caller: 'ci', query: { text: 'UPDATE invoices SET amount = $1', values: [0] }, sqlstate: '42501', rule: 'deny-unfiltered-writes' },
  { name: 'DELETE without WHERE as a named statement', caller: 'ci', query: { name: 'del', text: 'DELETE FROM invoices' }, sqlstate: '42501', rule: 'deny-unfiltered-writes' },
  { name: 'DML in a CTE with a parameter for a non-ci caller', caller: 'other', query: { text: 'WITH d AS (DELETE FROM invoices WHERE id = $1 RETURNING *) SELECT * FROM d', values: [1] }, sqlstate: '42501', rule: null },
  { name: 'an INSERT with parameters for a non-ci caller', caller: 'other', query: { text: 'INSERT INTO invoices (id, customer) VALUES ($1, $2)', values: [810, 'x'] }, sqlstate: '42501', rule: null },
  { name: 'a DO block as a named statement', caller: 'ci', query: { name: 'do', text: 'DO $$ BEGIN DELETE FROM invoices; END $$' }, sqlstate: '42501', rule: 'deny-opaque-code' },
  { name: 'COPY TO PROGRAM as a named statement', caller: 'ci', query: { name: 'cp', text: "COPY invoices TO PROGRAM 'id'" }, sqlstate: '42501', rule: 'deny-copy-program' },
];

describe('sidecar enforcement', () => {
  describe('simple protocol', () => {
    describeDenials('simple', SIMPLE_DENIALS);
  });

  describe('extended protocol', () => {
    describeDenials('extended', EXTENDED_DENIALS);

    it('denies a named prepared statement again on every re-execution', async () => {
      const name = uniqueName('reexec');
      const client = await connectAs('ci', name);
      try {
        for (let i = 0; i < 3; i++) {
          const error = await refusalOf(client, { name: 'again', text: 'DROP TABLE invoices' });
          assert.equal(error.code, '42501');
        }
      } finally {
        await client.end();
      }
      assert.ok(await tableExists(stack, 'invoices'));
    });
  });

  it('never runs the SELECT of a multi-statement string that is denied as a whole', async () => {
    const { client } = await WireClient.login(stack.port, await stack.token());
    try {
      const messages = await client.query('SELECT 42 AS answer; DROP TABLE invoices');
      assert.deepEqual(messages.map((m) => m.type), ['ErrorResponse', 'ReadyForQuery']);
      assert.equal(errorOf(messages[0])?.sqlstate, '42501');
      assert.deepEqual(messages.at(-1), { type: 'ReadyForQuery', status: 'I' });
    } finally {
      client.end();
    }
    assert.equal((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id = 800')).trim(), '0');
  });

  it('records an attempt with the decision for allowed statements, and a result with rows and command tag', async () => {
    const name = uniqueName('allowed');
    const client = await connectAs('ci', name);
    try {
      assert.equal((await client.query('SELECT id FROM invoices WHERE id <= 3 ORDER BY id')).rowCount, 3);
      assert.equal((await client.query('UPDATE invoices SET amount = amount WHERE id = $1', [2])).rowCount, 1);
    } finally {
      await client.end();
    }
    const events = byReason(await waitForEvents(stack.spoolDir, (all) => byReason(all, name).filter((e) => e.event_type === 'db.query.result').length >= 2), name);
    const attempts = events.filter((e) => e.event_type === 'db.query.attempt');
    const results = events.filter((e) => e.event_type === 'db.query.result');
    assert.equal(attempts.length, 2);
    assert.deepEqual(attempts.map((a) => [a.policy?.decision, a.policy?.rule, a.command?.protocol]), [['allow', 'allow-reads', 'simple'], ['allow', 'allow-writes-billing', 'extended']]);
    for (const [i, result] of results.entries()) {
      assert.equal(result.attempt_id, attempts[i]?.event_id, 'the result names its attempt');
      assert.equal(result.outcome, 'success');
    }
    assert.deepEqual(results.map((r) => [r.result?.rows, r.result?.command_tag]), [[3, 'SELECT 3'], [1, 'UPDATE 1']]);
    // The attempt is on disk before the result (audit before action).
    assert.ok((attempts[0]?.session_seq ?? 0) < (results[0]?.session_seq ?? 0));
  });

  describe('transaction coherence when a statement is blocked', () => {
    it('aborts the explicit transaction on both sides: 25P02 after the denial, COMMIT rolls back', async () => {
      const client = await connectAs('ci', uniqueName('tx'));
      try {
        await client.query('BEGIN');
        await client.query("INSERT INTO invoices (id, customer) VALUES (850, 'in tx')");
        const denied = await refusalOf(client, 'DROP TABLE invoices');
        assert.equal(denied.code, '42501');
        assert.match(denied.message, RULE_MESSAGE('deny-ddl'));
        assert.equal(sqlstateOf(await refusalOf(client, 'SELECT 1')), '25P02');
        const commit = await client.query('COMMIT');
        assert.equal(commit.command, 'ROLLBACK');
        assert.equal((await client.query<{ n: string }>('SELECT count(*)::text AS n FROM invoices WHERE id = 850')).rows[0]?.n, '0');
      } finally {
        await client.end();
      }
      assert.equal((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id = 850')).trim(), '0');
      assert.ok(await tableExists(stack, 'invoices'));
    });

    it('aborts the explicit transaction when the denial comes from the extended protocol', async () => {
      const client = await connectAs('ci', uniqueName('tx-ext'));
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO invoices (id, customer) VALUES ($1, $2)', [851, 'in tx']);
        assert.equal((await refusalOf(client, { name: 'dx', text: 'DROP TABLE invoices' })).code, '42501');
        assert.equal(sqlstateOf(await refusalOf(client, { text: 'SELECT $1::int', values: [1] })), '25P02');
        assert.equal((await client.query('COMMIT')).command, 'ROLLBACK');
      } finally {
        await client.end();
      }
      assert.equal((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id = 851')).trim(), '0');
    });

    const pipeline = (statements: readonly string[]): Buffer => Buffer.concat([
      ...statements.flatMap((sql) => [fe.parse('', sql), fe.bind({}), fe.execute('', 0)]),
      fe.sync(),
    ]);

    it('fails the rest of a pipelined batch inside BEGIN and rolls back at COMMIT', async () => {
      const { client } = await WireClient.login(stack.port, await stack.token());
      try {
        assert.deepEqual((await client.query('BEGIN')).at(-1), { type: 'ReadyForQuery', status: 'T' });
        client.send(pipeline(["INSERT INTO invoices (id, customer) VALUES (852, 'pipelined')", 'DROP TABLE invoices', 'SELECT 1']));
        const messages = await client.until((m) => m.type === 'ReadyForQuery');
        const types = messages.map((m) => m.type);
        // As from PostgreSQL itself for a statement failing at Execute: the INSERT completes, the
        // DROP parses and binds, fails, and the SELECT is skipped up to Sync.
        assert.deepEqual(types, ['ParseComplete', 'BindComplete', 'CommandComplete', 'ParseComplete', 'BindComplete', 'ErrorResponse', 'ReadyForQuery'], JSON.stringify(types));
        const error = errorOf(messages[5]);
        assert.equal(error?.sqlstate, '42501');
        assert.match(error.message, RULE_MESSAGE('deny-ddl'));
        assert.deepEqual(messages.at(-1), { type: 'ReadyForQuery', status: 'E' });
        const afterwards = await client.query('SELECT 1');
        assert.equal(errorOf(afterwards[0])?.sqlstate, '25P02');
        const commit = await client.query('COMMIT');
        assert.deepEqual(commit.map((m) => m.type === 'CommandComplete' ? m.tag : m.type), ['ROLLBACK', 'ReadyForQuery']);
        assert.deepEqual(commit.at(-1), { type: 'ReadyForQuery', status: 'I' });
      } finally {
        client.end();
      }
      assert.equal((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id = 852')).trim(), '0');
    });

    it('rolls back the implicit transaction of a pipelined batch without BEGIN', async () => {
      const { client } = await WireClient.login(stack.port, await stack.token());
      try {
        client.send(pipeline(["INSERT INTO invoices (id, customer) VALUES (853, 'implicit')", 'TRUNCATE invoices']));
        const messages = await client.until((m) => m.type === 'ReadyForQuery');
        assert.equal(errorOf(messages.find((m) => m.type === 'ErrorResponse'))?.sqlstate, '42501');
        assert.deepEqual(messages.at(-1), { type: 'ReadyForQuery', status: 'I' });
        // The next batch runs normally.
        client.send(pipeline(['SELECT 7']));
        const next = await client.until((m) => m.type === 'ReadyForQuery');
        assert.ok(next.some((m) => m.type === 'DataRow'));
      } finally {
        client.end();
      }
      assert.equal((await stack.postgres.psql('SELECT count(*) FROM invoices WHERE id = 853')).trim(), '0');
      assert.equal((await stack.postgres.psql('SELECT count(*) >= 5 FROM invoices')).trim(), 't');
    });
  });

  describe('protocol features', () => {
    it('refuses FunctionCall with 0A000 and keeps the session usable', async () => {
      const name = uniqueName('fcall');
      const { client } = await WireClient.login(stack.port, await stack.token(), { application_name: name });
      try {
        // pg_terminate_backend(pid, timeout) by OID: there is no SQL text for the policy to read.
        const oid = Number((await stack.postgres.psql("SELECT 'pg_catalog.pg_terminate_backend(int4,int8)'::regprocedure::oid")).trim());
        const pid = Buffer.alloc(4);
        pid.writeInt32BE(1);
        client.send(fe.functionCall({ functionOid: oid, argFormats: [1], args: [pid, Buffer.alloc(8)], resultFormat: 0 }));
        const messages = await client.until((m) => m.type === 'ReadyForQuery');
        assert.ok(!messages.some((m) => m.type === 'FunctionCallResponse'), 'the function did not run');
        const error = errorOf(messages.find((m) => m.type === 'ErrorResponse'));
        assert.equal(error?.sqlstate, '0A000');
        assert.match(error.message, /FunctionCall/);
        assert.deepEqual(messages.at(-1), { type: 'ReadyForQuery', status: 'I' });
        const after = await client.query('SELECT 1 AS still_here');
        assert.ok(after.some((m) => m.type === 'DataRow'), JSON.stringify(after.map((m) => m.type)));
      } finally {
        client.end();
      }
      await waitForEvents(stack.spoolDir, (all) => byReason(all, name).some((e) => e.event_type === 'db.query.attempt' && e.operation === 'FUNCTION_CALL'));
    });

    for (const sql of ["SET client_encoding = 'SJIS'", "SET NAMES 'SJIS'", "SELECT set_config('client_encoding', 'SJIS', false)"]) {
      it(`never lets the session leave UTF-8 through ${sql}`, async () => {
        const { client } = await WireClient.login(stack.port, await stack.token());
        try {
          client.send(fe.query(sql));
          const messages = await client.until((m) => m.type === 'ReadyForQuery' || (m.type === 'ErrorResponse' && m.fields.get('V') === 'FATAL'));
          const error = errorOf(messages.find((m) => m.type === 'ErrorResponse'));
          if (error?.severity === 'FATAL') {
            // The backstop: the server switched, the sidecar ends the session.
            assert.equal(error.sqlstate, '0A000');
            assert.equal((await client.untilClosed()).closed, true);
          } else {
            // Refused by policy before it reached the server: the encoding is still UTF-8.
            assert.equal(error?.sqlstate, '42501', JSON.stringify(messages.map((m) => m.type)));
            const show = await client.query('SHOW client_encoding');
            const row = show.find((m) => m.type === 'DataRow');
            assert.equal(row?.type === 'DataRow' ? row.values[0]?.toString() : undefined, 'UTF8');
          }
        } finally {
          client.end();
        }
      });
    }

    it('refuses client_encoding SJIS at startup with FATAL 0A000', async () => {
      const { client, messages } = await WireClient.login(stack.port, await stack.token(), { client_encoding: 'SJIS' });
      client.end();
      const error = errorOf(messages.at(-1));
      assert.equal(error?.sqlstate, '0A000');
      assert.equal(error.severity, 'FATAL');
      assert.ok(!messages.some((m) => m.type === 'AuthenticationCleartextPassword'), 'refused before asking for a token');
    });

    it('refuses Execute of a portal the sidecar never saw bound (SQL-level cursor) with 42501', async () => {
      const { client } = await WireClient.login(stack.port, await stack.token());
      try {
        await client.query('BEGIN');
        const declared = await client.query('DECLARE c CURSOR FOR SELECT * FROM invoices');
        const declareError = errorOf(declared[0]);
        if (declareError !== undefined) {
          // The policy does not allow DECLARE: refused before any portal exists (also safe).
          assert.equal(declareError.sqlstate, '42501');
        } else {
          client.send(Buffer.concat([fe.execute('c', 0), fe.sync()]));
          const messages = await client.until((m) => m.type === 'ReadyForQuery');
          assert.ok(!messages.some((m) => m.type === 'DataRow'), 'no rows through a portal the policy never saw');
          assert.equal(errorOf(messages.find((m) => m.type === 'ErrorResponse'))?.sqlstate, '42501');
        }
        await client.query('ROLLBACK');
      } finally {
        client.end();
      }
    });
  });

  describe('policy hot reload', () => {
    const edited = (mutate: (doc: ReturnType<typeof parseDocument>) => void): string => {
      const doc = parseDocument(originalPolicy);
      mutate(doc);
      return doc.toString();
    };
    const writeAtomically = async (text: string): Promise<void> => {
      await writeFile(`${stack.policyFile}.tmp`, text);
      await rename(`${stack.policyFile}.tmp`, stack.policyFile);
    };
    const selectCustomers = (client: pg.Client): Promise<unknown> => client.query('SELECT name FROM customers').then(() => 'allowed', (e: unknown) => e);

    it('denies a previously allowed SELECT within 3 s of a policy change, on an open session, without a restart', async () => {
      const name = uniqueName('reload');
      const client = await connectAs('ci', name);
      const healthBefore = await fetch(`http://127.0.0.1:${stack.httpPort}/healthz`).then((r) => r.status);
      try {
        assert.equal(await selectCustomers(client), 'allowed');
        await writeAtomically(edited((doc) => {
          const list = doc.getIn(['spec', 'rules']) as { items: unknown[] };
          list.items.unshift(doc.createNode({
            name: 'deny-customers', match: { sql: { objects: ['public.customers'] } }, action: 'deny', message: 'customers are off limits',
          }));
        }));
        const started = Date.now();
        let outcome: unknown = 'allowed';
        while (Date.now() - started < 3000) {
          outcome = await selectCustomers(client);
          if (outcome !== 'allowed') break;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.notEqual(outcome, 'allowed', 'still allowed 3 s after the policy change');
        assert.equal(sqlstateOf(outcome), '42501');
        assert.match((outcome as Error).message, RULE_MESSAGE('deny-customers'));
        // Other reads are unaffected, and a new session gets the new policy too.
        assert.equal((await client.query('SELECT count(*) FROM invoices')).rowCount, 1);
        const fresh = await connectAs('other', uniqueName('reload-new'));
        try {
          assert.equal(sqlstateOf(await selectCustomers(fresh)), '42501');
        } finally {
          await fresh.end();
        }
      } finally {
        await client.end();
      }
      assert.equal(healthBefore, 200);
      const attempt = await deniedAttempt(name, 'deny-customers');
      const allowed = byReason(await waitForEvents(stack.spoolDir, () => true), name).find((e) => e.policy?.decision === 'allow');
      assert.ok(allowed?.policy?.version !== undefined && attempt.policy?.version !== allowed.policy.version, 'the denial names the new policy version');
    });

    it('keeps enforcing the last good policy when the file is replaced by an invalid one', async () => {
      await writeAtomically('apiVersion: custos.io/v1alpha1\nkind: AccessPolicy\nspec: [this is not a policy\n');
      await new Promise((r) => setTimeout(r, 2500));
      const client = await connectAs('ci', uniqueName('broken-policy'));
      try {
        assert.equal(sqlstateOf(await selectCustomers(client)), '42501');
        assert.equal((await refusalOf(client, 'DROP TABLE invoices')).code, '42501');
      } finally {
        await client.end();
      }
      assert.ok(await tableExists(stack, 'invoices'));
    });

    it('ends the session with FATAL 0A000 when a policy lets SET client_encoding reach the server (the backstop)', async () => {
      // A policy author explicitly allowing opaque SETs (the analyser marks an encoding change opaque).
      await writeAtomically(edited((doc) => {
        (doc.getIn(['spec', 'rules']) as { items: unknown[] }).items.unshift(doc.createNode({ name: 'allow-opaque-set', match: { sql: { statements: ['set'], opaque: true } }, action: 'allow' }));
      }));
      try {
        const started = Date.now();
        let last: string[] = [];
        for (;;) {
          const { client } = await WireClient.login(stack.port, await stack.token());
          try {
            client.send(fe.query("SET client_encoding = 'SJIS'"));
            const { messages, closed } = await client.untilClosed(1000);
            const error = messages.map(errorOf).find((e) => e !== undefined);
            last = messages.map((m) => m.type);
            if (error?.sqlstate === '42501' && Date.now() - started < 3000) continue; // the old policy still
            assert.equal(error?.sqlstate, '0A000', JSON.stringify(last));
            assert.equal(error.severity, 'FATAL');
            assert.equal(closed, true, 'the session ended');
            assert.ok(!messages.some((m) => m.type === 'ReadyForQuery'), 'no ReadyForQuery after the switch');
            break;
          } finally {
            client.end();
          }
        }
      } finally {
        await writeAtomically(originalPolicy);
      }
    });

    it('allows the SELECT again after the policy is restored', async () => {
      await writeAtomically(originalPolicy);
      const client = await connectAs('ci', uniqueName('restored'));
      try {
        const started = Date.now();
        let outcome: unknown;
        do {
          outcome = await selectCustomers(client);
          if (outcome === 'allowed') break;
          await new Promise((r) => setTimeout(r, 100));
        } while (Date.now() - started < 3000);
        assert.equal(outcome, 'allowed');
      } finally {
        await client.end();
      }
    });
  });
});

