// `npm start` is the first thing a new user runs: the embedded demo must work end to end.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CUSTOS_CLI, NODE, REPO_ROOT } from './harness/custos-stack.ts';
import { run } from './harness/processes.ts';

describe('custos demo (npm start)', () => {
  it('runs PGlite behind the sidecar: the read works, DROP TABLE is refused with 42501 and the rule, and every statement is audited', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'custos-demo-'));
    try {
      const out = await run(NODE, [CUSTOS_CLI, 'demo', '--walkthrough-only', '--port', '0', '--dir', dir], { cwd: REPO_ROOT });
      assert.match(out, /"customer":"Acme Corp"/);
      assert.match(out, /→ SELECT 4/);
      assert.match(out, /DROP TABLE invoices;\n\s+→ ERROR 42501: permission denied by policy rule "deny-ddl"/);
      assert.match(out, /DELETE FROM invoices;\n\s+→ ERROR 42501: permission denied by policy rule "deny-unfiltered-writes"/);
      assert.match(out, /db\.query\.attempt\s+deny\(deny-ddl\) failure .* "DROP TABLE invoices" sqlstate=42501/);
      assert.match(out, /db\.query\.result\s+success .* tag="SELECT 4" rows=4/);
      assert.equal((out.match(/db\.query\.attempt/g) ?? []).length, 6, 'one attempt event per walkthrough statement');
      // The audit tail command a user is told to run reads the same spool.
      const tail = await run(NODE, [CUSTOS_CLI, 'audit', 'tail', '--spool', join(dir, 'spool'), '--json']);
      const events = tail.trim().split('\n').map((l) => JSON.parse(l) as { event_type: string; command?: { text: string } });
      assert.ok(events.some((e) => e.event_type === 'db.query.attempt' && e.command?.text === 'DROP TABLE invoices'));
      const verify = await run(NODE, [CUSTOS_CLI, 'audit', 'verify', '--spool', join(dir, 'spool')]);
      assert.match(verify, /"ok": true/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
