// Micro-benchmark of the per-statement policy path: analyseSql (parse + whole-tree walk +
// normalize + fingerprint) and evaluate against examples/policy.yaml, for three statement sizes
// (reference/postgres-protocol.md §16.3). Run: node_modules/.bin/node bench/policy-analysis.ts
import { readFileSync } from 'node:fs';
import { fingerprintSync, normalizeSync, parseSync } from 'libpg-query';
import { parsePolicyYaml } from '../crds/validate-document.ts';
import { compilePolicy } from '../policy/compile.ts';
import { evaluate } from '../policy/evaluate.ts';
import { analyseSql, loadSqlParser } from '../policy/sql/parser.ts';
import type { EvaluationInput, RequestIdentity } from '../policy/types.ts';

const columns = Array.from({ length: 60 }, (_, i) => `"t${i % 5}"."column_name_${i}"`).join(', ');
const ORM = `SELECT ${columns} FROM "public"."invoices" AS "t0" LEFT JOIN "public"."customers" AS "t1" ON "t1"."id" = "t0"."customer_id" LEFT JOIN "public"."addresses" AS "t2" ON "t2"."id" = "t1"."address_id" LEFT JOIN "public"."payments" AS "t3" ON "t3"."invoice_id" = "t0"."id" LEFT JOIN "public"."currencies" AS "t4" ON "t4"."code" = "t3"."currency" WHERE "t0"."id" IN (${Array.from({ length: 50 }, (_, i) => `$${i + 1}`).join(', ')}) ORDER BY "t0"."created_at" DESC LIMIT 100`;

const STATEMENTS: ReadonlyArray<readonly [string, string]> = [
  ['pgbench -S', 'SELECT abalance FROM pgbench_accounts WHERE aid = 12345;'],
  ['2-table join', "SELECT i.id, i.amount, c.name FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.created_at > now() - interval '7 days' AND c.region = 'eu' ORDER BY i.created_at DESC LIMIT 50"],
  ['ORM query', ORM],
];

await loadSqlParser();
const policy = compilePolicy(parsePolicyYaml(readFileSync(new URL('../examples/policy.yaml', import.meta.url), 'utf8'), 'examples/policy.yaml'));
const identity: RequestIdentity = {
  caller: {
    kind: 'caller',
    authMethod: 'oidc',
    issuer: 'https://demo.custos.local',
    subject: 'repo:acme/billing',
    claims: { repository: 'acme/billing', ref: 'refs/heads/main', workflow: 'deploy-prod' },
  },
};

/** µs per call: the fastest of several rounds (the machine is shared; the minimum is the least disturbed). */
function measure(fn: () => unknown, rounds = 7, roundMs = 150): number {
  for (let i = 0; i < 200; i++) fn(); // warm-up
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    let iterations = 0;
    const start = process.hrtime.bigint();
    let elapsed = 0n;
    while (elapsed < BigInt(roundMs) * 1_000_000n) {
      for (let i = 0; i < 50; i++) fn();
      iterations += 50;
      elapsed = process.hrtime.bigint() - start;
    }
    best = Math.min(best, Number(elapsed) / 1000 / iterations);
  }
  return best;
}

const rows: Record<string, Record<string, string>> = {};
for (const [name, sql] of STATEMENTS) {
  const analysis = analyseSql(sql);
  const input: EvaluationInput = { identity, target: 'billing', sql: analysis };
  const decision = evaluate(policy, input);
  rows[name] = {
    chars: String(sql.length),
    decision: `${decision.action}/${decision.rule ?? 'default'}`,
    'parseSync µs': measure(() => parseSync(sql)).toFixed(2),
    'normalize µs': measure(() => normalizeSync(sql)).toFixed(2),
    'fingerprint µs': measure(() => fingerprintSync(sql)).toFixed(2),
    'analyseSql µs': measure(() => analyseSql(sql)).toFixed(2),
    'evaluate µs': measure(() => evaluate(policy, input)).toFixed(3),
    'analyse+evaluate µs': measure(() => evaluate(policy, { identity, target: 'billing', sql: analyseSql(sql) })).toFixed(2),
  };
}
console.table(rows);
