// `custos policy check` as platform teams use it in CI: one statement, or JSON lines on stdin.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CUSTOS_CLI, NODE, REPO_ROOT } from './harness/custos-stack.ts';
import { run } from './harness/processes.ts';

const POLICY = join(REPO_ROOT, 'examples', 'policy.yaml');
const CI = { caller: { issuer: 'https://demo.custos.local', subject: 'ci', claims: { repository: 'acme/billing', ref: 'refs/heads/main', workflow: 'deploy-x' } } };

interface CheckOutput {
  action: string;
  rule: string | null;
  reason: string;
  statements: Array<{ kinds: string[]; objects: string[]; opaque: boolean; unfilteredWrite: boolean }>;
}

async function check(sql: string, identity?: unknown): Promise<CheckOutput> {
  const args = [CUSTOS_CLI, 'policy', 'check', '--policy', POLICY, '--target', 'billing', '--sql', sql];
  if (identity !== undefined) args.push('--identity', JSON.stringify(identity));
  return JSON.parse(await run(NODE, args)) as CheckOutput;
}

describe('custos policy check', () => {
  it('prints the decision, the deciding rule and the statement facts as JSON', async () => {
    const out = await check('DROP/**/TABLE invoices');
    assert.equal(out.action, 'deny');
    assert.equal(out.rule, 'deny-ddl');
    const [facts] = out.statements;
    assert.ok(facts);
    assert.deepEqual(facts.kinds, ['drop']);
    assert.deepEqual(facts.objects, ['invoices']);
  });

  it('applies subjects: the ci caller may update invoices, an anonymous caller may not', async () => {
    assert.equal((await check('UPDATE invoices SET status = $1 WHERE id = $2', CI)).rule, 'allow-writes-billing');
    const anonymous = await check('UPDATE invoices SET status = $1 WHERE id = $2');
    assert.equal(anonymous.action, 'deny');
    assert.equal(anonymous.reason, 'default-action');
  });

  it('decides JSON lines from stdin, one decision per line, in order', async () => {
    const lines = [
      { sql: 'SELECT * FROM invoices' },
      { sql: 'WITH d AS (DELETE FROM invoices RETURNING *) SELECT * FROM d' },
      { sql: "DO $$ BEGIN EXECUTE 'x'; END $$" },
      { sql: 'DELETE FROM invoices WHERE id = 1', identity: CI },
      { sql: 'SELEC 1' },
    ].map((l) => JSON.stringify(l)).join('\n');
    const out = (await run(NODE, [CUSTOS_CLI, 'policy', 'check', '--policy', POLICY], { input: `${lines}\n` }))
      .trim().split('\n').map((l) => JSON.parse(l) as CheckOutput);
    assert.deepEqual(out.map((o) => [o.action, o.rule ?? o.reason]), [
      ['allow', 'allow-reads'],
      ['deny', 'deny-unfiltered-writes'],
      ['deny', 'deny-opaque-code'],
      ['allow', 'allow-writes-billing'],
      ['deny', 'unparseable'],
    ]);
  });

  it('exits non-zero on a malformed input line and says which', async () => {
    await assert.rejects(run(NODE, [CUSTOS_CLI, 'policy', 'check', '--policy', POLICY], { input: '{"sql": 1}\n' }), /exited with 1/);
  });

  it('reports which outputs will be masked, and refusals by the masking policy', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'custos-cli-'));
    const file = join(dir, 'policy.yaml');
    const withMasking = (await readFile(POLICY, 'utf8')).replace(
      '  defaultAction: deny',
      '  masking:\n    exemptSubjects: [ci]\n    columns:\n      - {column: public.invoices.customer, strategy: redact}\n  defaultAction: deny',
    );
    await writeFile(file, withMasking);
    const check = async (sql: string, identity?: unknown): Promise<CheckOutput & { masking?: { outputs?: string[]; exempt?: boolean } }> => {
      const args = [CUSTOS_CLI, 'policy', 'check', '--policy', file, '--sql', sql];
      if (identity !== undefined) args.push('--identity', JSON.stringify(identity));
      return JSON.parse(await run(NODE, args)) as CheckOutput & { masking?: { outputs?: string[]; exempt?: boolean } };
    };
    try {
      const read = await check('SELECT id, upper(customer), status FROM invoices');
      assert.equal(read.action, 'allow');
      assert.deepEqual(read.masking?.outputs, ['clean', 'masked', 'clean']);
      const inferred = await check("SELECT id FROM invoices WHERE customer LIKE 'A%'");
      assert.equal(inferred.action, 'deny');
      assert.equal(inferred.reason, 'masking-predicate');
      assert.equal((await check('SELECT customer FROM invoices', CI)).masking?.exempt, true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('prints the approval settings of a require-approval decision (examples/approvals-policy.yaml)', async () => {
    const policy = join(REPO_ROOT, 'examples', 'approvals-policy.yaml');
    const api = { workload: { namespace: 'payments', serviceAccount: 'billing-api' } };
    const check = async (sql: string): Promise<CheckOutput & { approval?: unknown }> =>
      JSON.parse(await run(NODE, [CUSTOS_CLI, 'policy', 'check', '--policy', policy, '--identity', JSON.stringify(api), '--sql', sql])) as CheckOutput & { approval?: unknown };
    const held = await check('DELETE FROM invoices');
    assert.equal(held.action, 'require-approval');
    assert.equal(held.rule, 'approve-unfiltered-writes');
    assert.deepEqual(held.approval, {
      reviewers: { groups: ['dba'], users: [] }, minApprovals: 1, mode: 'hold', holdTimeoutSeconds: 600, ttlSeconds: 3600, grant: { scope: 'once' },
    });
    const returned = await check('TRUNCATE invoices');
    assert.deepEqual(returned.approval, {
      reviewers: { groups: ['dba'], users: ['cto@example.com'] }, minApprovals: 2, mode: 'return', holdTimeoutSeconds: 300, ttlSeconds: 7200, grant: { scope: 'once' },
    });
    const allowed = await check('DELETE FROM invoices WHERE id = 1');
    assert.equal(allowed.action, 'allow');
    assert.equal('approval' in allowed, false, 'no approval field on an allow decision');
  });

  it('prints spec.defaultApproval when masking asks for approval of a condition on a masked column', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'custos-cli-'));
    const file = join(dir, 'policy.yaml');
    const withMasking = (await readFile(POLICY, 'utf8')).replace(
      '  defaultAction: deny',
      '  masking:\n    predicates: require-approval\n    columns:\n      - {column: public.invoices.customer, strategy: redact}\n'
        + '  defaultApproval:\n    reviewers: {groups: [privacy]}\n    mode: return\n  defaultAction: deny',
    );
    await writeFile(file, withMasking);
    try {
      const out = JSON.parse(await run(NODE, [CUSTOS_CLI, 'policy', 'check', '--policy', file, '--sql', "SELECT id FROM invoices WHERE customer LIKE 'A%'"])) as CheckOutput & { approval?: { reviewers: unknown; mode: string } };
      assert.equal(out.action, 'require-approval');
      assert.equal(out.reason, 'masking-predicate');
      assert.deepEqual(out.approval?.reviewers, { groups: ['privacy'], users: [] });
      assert.equal(out.approval.mode, 'return');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the approval field when a require-approval rule has no reviewers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'custos-cli-'));
    const file = join(dir, 'policy.yaml');
    await writeFile(file, (await readFile(POLICY, 'utf8')).replace('      action: deny\n      message: schema changes', '      action: require-approval\n      message: schema changes'));
    try {
      await assert.rejects(
        run(NODE, [CUSTOS_CLI, 'policy', 'check', '--policy', file, '--sql', 'SELECT 1']),
        /spec\.rules\[0\]\.approval: required with action require-approval/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the field when the policy is invalid', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'custos-cli-'));
    const file = join(dir, 'policy.yaml');
    await writeFile(file, (await readFile(POLICY, 'utf8')).replace('action: deny', 'action: permit'));
    await assert.rejects(
      run(NODE, [CUSTOS_CLI, 'policy', 'check', '--policy', file, '--sql', 'SELECT 1']),
      /spec\.rules\[0\]\.action: Unsupported value: "permit": supported values: "allow", "deny", "require-approval"/,
    );
    await rm(dir, { recursive: true, force: true });
  });
});
