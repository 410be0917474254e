// Operating the sidecar: Prometheus metrics, health and readiness, graceful drain on SIGTERM,
// fail-fast configuration, a broken policy reload that keeps the last good policy, and the
// session's search path followed for unqualified names.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { CUSTOS_CLI, NODE, startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { run } from './harness/processes.ts';
import { metricSample } from './harness/metrics.ts';

async function metrics(stack: CustosStack): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${stack.httpPort}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

const sample = metricSample;

describe('sidecar operations', () => {
  let stack: CustosStack;
  before(async () => {
    // allow-reads limited to schema public, so the search path matters for unqualified names.
    stack = await startCustosStack({
      redis: true,
      editPolicy: (doc) => {
        const rules = doc.getIn(['spec', 'rules']) as { items: unknown[] };
        const index = rules.items.findIndex((r) => (r as { get(k: string): unknown }).get('name') === 'allow-reads');
        doc.setIn(['spec', 'rules', index, 'match', 'sql', 'objects'], ['public.*']);
        // Settings and transaction control touch no object: a rule of their own.
        rules.items.splice(index, 0, doc.createNode({ name: 'allow-session', match: { sql: { statements: ['set', 'show', 'transaction'] } }, action: 'allow' }));
      },
    });
    await stack.postgres.psql("CREATE TABLE invoices (id int PRIMARY KEY, customer text); INSERT INTO invoices VALUES (1, 'Acme')");
    await stack.postgres.psql('CREATE SCHEMA evil AUTHORIZATION custos_app');
    await stack.postgres.psql('CREATE TABLE evil.invoices (id int, secret text); INSERT INTO evil.invoices VALUES (1, \'planted\')');
    await stack.postgres.psql('GRANT ALL ON ALL TABLES IN SCHEMA public, evil TO custos_app');
  });
  after(async () => {
    await stack.stop();
  });

  it('exports decisions by action and rule, statement latency, audit and Redis metrics', async () => {
    const client = await stack.connect();
    await client.query('SELECT count(*) FROM invoices');
    await client.query('DROP TABLE invoices').catch(() => undefined);
    await client.end();
    await new Promise((r) => setTimeout(r, 300));
    const text = await metrics(stack);
    assert.ok((sample(text, 'custos_decisions_total', { action: 'allow', rule: 'allow-reads' }) ?? 0) >= 1, 'allow decisions counted');
    assert.ok((sample(text, 'custos_decisions_total', { action: 'deny', rule: 'deny-ddl' }) ?? 0) >= 1, 'deny decisions counted by rule');
    assert.ok((sample(text, 'custos_statement_duration_seconds_count', { outcome: 'success' }) ?? 0) >= 1, 'statement latency histogram');
    assert.ok((sample(text, 'custos_audit_events_total', { type: 'db.query.attempt' }) ?? 0) >= 2);
    assert.equal(sample(text, 'custos_redis_up'), 1);
    assert.ok((sample(text, 'custos_audit_shipped_events_total') ?? 0) >= 1, 'events shipped to Redis');
    assert.notEqual(sample(text, 'custos_audit_spool_bytes'), undefined);
    assert.equal(sample(text, 'custos_audit_spool_full'), 0);
  });

  it('listens on ::1 next to 127.0.0.1, where custos-init redirects IPv6 connections', async () => {
    const client = new pg.Client({ ...stack.clientConfig(await stack.token()), host: '::1' });
    await client.connect();
    try {
      assert.equal((await client.query('SELECT count(*) FROM invoices')).rowCount, 1);
    } finally {
      await client.end();
    }
  });

  it('reports healthy and ready', async () => {
    assert.equal((await fetch(`http://127.0.0.1:${stack.httpPort}/healthz`)).status, 200);
    const ready = await fetch(`http://127.0.0.1:${stack.httpPort}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
  });

  it('follows SET search_path: an allow rule on public.invoices no longer covers the unqualified name', async () => {
    const client = await stack.connect();
    try {
      assert.equal((await client.query('SELECT count(*) FROM invoices')).rowCount, 1);
      await client.query('SET search_path = evil, public');
      await assert.rejects(client.query('SELECT secret FROM invoices'), (e: { code?: string }) => e.code === '42501');
      // Qualified names are unaffected.
      assert.equal((await client.query('SELECT count(*) FROM public.invoices')).rowCount, 1);
    } finally {
      await client.end();
    }
  });

  it('keeps the last good policy when a reload is broken, and says why', async () => {
    const original = await readFile(stack.policyFile, 'utf8');
    try {
      await writeFile(stack.policyFile, original.replace('action: deny', 'action: permit'));
      await new Promise((r) => setTimeout(r, 2500));
      const client = await stack.connect();
      try {
        await assert.rejects(client.query('DROP TABLE invoices'), (e: { code?: string; message?: string }) => e.code === '42501' && /deny-ddl/.test(e.message ?? ''));
      } finally {
        await client.end();
      }
      assert.match(stack.logs(), /policy reload failed: keeping the last good policy/);
      assert.match(stack.logs(), /Unsupported value: \\"permit\\"|Unsupported value: "permit"/);
      assert.ok((sample(await metrics(stack), 'custos_policy_reloads_total', { result: 'error' }) ?? 0) >= 1);
    } finally {
      await writeFile(stack.policyFile, original);
    }
  });

  it('drains on SIGTERM: not ready, no new sessions, running sessions finish, exit 0', async () => {
    const client = await stack.connect();
    const slow = client.query('SELECT pg_sleep(1.5) AS slept FROM public.invoices');
    await new Promise((r) => setTimeout(r, 200));
    const exited = stack.stopSidecar('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    const refused = new pg.Client(stack.clientConfig(await stack.token()));
    await assert.rejects(refused.connect());
    const result = await slow;
    assert.equal(result.rowCount, 1, 'the in-flight statement completed');
    await client.end().catch(() => undefined);
    assert.equal(await exited, 0);
    await stack.restartSidecar();
  });
});

describe('sidecar start-up', () => {
  it('fails fast with the field named when the config is invalid', async () => {
    const stack = await startCustosStack();
    try {
      const bad = join(stack.dir, 'bad.yaml');
      await writeFile(bad, `policyFile: ${stack.policyFile}\nspool:\n  maxBytes: 10\n`);
      await assert.rejects(run(NODE, [CUSTOS_CLI, 'sidecar', '--config', bad]), /config\.spool\.maxBytes/);
      const badPolicy = join(stack.dir, 'bad-policy.yaml');
      await writeFile(badPolicy, (await readFile(stack.policyFile, 'utf8')).replace('port:', 'prot:'));
      const config = join(stack.dir, 'bad-policy-config.yaml');
      await writeFile(config, `policyFile: ${badPolicy}\n`);
      await assert.rejects(run(NODE, [CUSTOS_CLI, 'sidecar', '--config', config]), /spec\.targets\[0\]/);
    } finally {
      await stack.stop();
    }
  });
});
