// `custos policy check`: the decision the sidecar would take, without a database. Platform teams
// run it in CI over a file of statements (JSON lines on stdin) to test a policy before applying it.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { CompiledPolicy } from '../../policy/compile.ts';
import { evaluate } from '../../policy/evaluate.ts';
import { analyseMasking, maskedColumnSet } from '../../policy/masking/derivation.ts';
import { subjectMatchesIdentity } from '../../policy/subjects.ts';
import { analyseSql, loadSqlParser } from '../../policy/sql/parser.ts';
import type { Decision, Principal, RequestIdentity } from '../../policy/types.ts';
import { loadPolicyFile } from '../../sidecar/policy-store.ts';

/**
 * Identity as JSON: `{"workload": {"namespace": "payments", "serviceAccount": "reporter"},
 * "caller": {"issuer": "https://…", "subject": "…", "claims": {…}}}`; either part may be absent.
 */
function text(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : fallback;
}

export function parseIdentity(value: unknown): RequestIdentity {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object') throw new Error('identity must be a JSON object');
  const v = value as { workload?: Record<string, unknown>; caller?: Record<string, unknown> };
  const out: { workload?: Principal; caller?: Principal } = {};
  if (v.workload !== undefined) {
    const namespace = text(v.workload['namespace'], 'default');
    const serviceAccount = text(v.workload['serviceAccount'], 'default');
    out.workload = {
      kind: 'workload',
      authMethod: 'local',
      issuer: 'https://kubernetes.default.svc',
      subject: `system:serviceaccount:${namespace}:${serviceAccount}`,
      claims: {},
      kubernetes: { namespace, serviceAccount },
    };
  }
  if (v.caller !== undefined) {
    const claims = (v.caller['claims'] ?? {}) as Record<string, unknown>;
    out.caller = {
      kind: 'caller',
      authMethod: 'local',
      issuer: text(v.caller['issuer'], text(claims['iss'], '')),
      subject: text(v.caller['subject'], text(claims['sub'], '')),
      claims,
    };
  }
  return out;
}

export function checkStatement(policy: CompiledPolicy, request: { sql: string; identity?: unknown; target?: string; searchPath?: readonly string[] }): object {
  const target = request.target ?? policy.spec.targets[0]?.name ?? '';
  const analysis = analyseSql(request.sql);
  const decision: Decision = evaluate(policy, {
    identity: parseIdentity(request.identity),
    target,
    sql: analysis,
    ...(request.searchPath !== undefined ? { searchPath: request.searchPath } : {}),
  });
  const identity = parseIdentity(request.identity);
  const masking = decision.action === 'allow' ? maskingReport(policy, request.sql, analysis.ok, identity) : undefined;
  const refusedBy = masking?.refused;
  // Who would review, and how the client would wait: the rule's settings, or for a condition on a
  // masked column the policy's defaultApproval (which masking carries).
  const approval = refusedBy === undefined
    ? decision.approval
    : refusedBy.action === 'require-approval' ? policy.masking?.predicatesApproval : undefined;
  return {
    action: refusedBy === undefined ? decision.action : refusedBy.action,
    rule: decision.rule,
    reason: refusedBy === undefined ? decision.reason : `masking-${refusedBy.reason}`,
    ...(approval !== undefined ? { approval } : {}),
    ...(masking !== undefined ? { masking } : {}),
    ...(decision.message !== undefined ? { message: decision.message } : {}),
    target,
    ...(analysis.ok ? { normalized: analysis.normalized, fingerprint: analysis.fingerprint } : { error: analysis.error }),
    statements: decision.statements.map((s) => ({
      action: s.action,
      rule: s.rule,
      reason: s.reason,
      kinds: s.facts?.kinds ?? [],
      objects: (s.facts?.relations ?? []).map((r) => (r.schema === null ? r.name : `${r.schema}.${r.name}`)),
      functions: (s.facts?.functions ?? []).map((f) => (f.schema === null ? f.name : `${f.schema}.${f.name}`)),
      opaque: s.facts?.opaque ?? false,
      unfilteredWrite: s.facts?.unfilteredWrite ?? false,
      copy: s.facts?.copy ?? [],
    })),
  };
}

/**
 * Which output columns the sidecar would mask, and whether masking would refuse the statement.
 * Without the catalog, masked columns are known by name only: outputs that are bare masked
 * columns are masked by provenance on the wire even where this report says `clean`.
 */
function maskingReport(policy: CompiledPolicy, sql: string, parsed: boolean, identity: RequestIdentity): MaskingReport | undefined {
  const rules = policy.masking;
  if (rules === null || !parsed) return undefined;
  if (rules.exemptSubjects.some((s) => subjectMatchesIdentity(s, identity))) return { exempt: true };
  const analysis = analyseMasking(sql, maskedColumnSet(rules.columns));
  const refused: MaskingReport['refused'] = analysis.launders
    ? { action: 'deny', reason: 'launders' }
    : analysis.predicateUse && rules.predicates !== 'allow'
      ? { action: rules.predicates, reason: 'predicate' }
      : undefined;
  return {
    outputs: analysis.outputs,
    derivesMasked: analysis.derivesMasked,
    wholeRow: analysis.wholeRow,
    predicateUse: analysis.predicateUse,
    launders: analysis.launders,
    ...(refused !== undefined ? { refused } : {}),
  };
}

interface MaskingReport {
  readonly exempt?: boolean;
  readonly outputs?: readonly string[] | null;
  readonly derivesMasked?: boolean;
  readonly wholeRow?: boolean;
  readonly predicateUse?: boolean;
  readonly launders?: boolean;
  readonly refused?: { readonly action: 'deny' | 'require-approval'; readonly reason: 'launders' | 'predicate' };
}

export async function runPolicyCheck(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      policy: { type: 'string', short: 'p' },
      identity: { type: 'string' },
      target: { type: 'string' },
      sql: { type: 'string' },
      'search-path': { type: 'string' },
    },
    strict: true,
  });
  if (values.policy === undefined) {
    process.stderr.write('custos policy check: --policy FILE is required\n');
    return 2;
  }
  await loadSqlParser();
  const { policy } = await loadPolicyFile(values.policy);
  const searchPath = values['search-path']?.split(',').map((s) => s.trim());
  const defaults = {
    ...(values.target !== undefined ? { target: values.target } : {}),
    ...(values.identity !== undefined ? { identity: JSON.parse(values.identity) as unknown } : {}),
    ...(searchPath !== undefined ? { searchPath } : {}),
  };
  if (values.sql !== undefined) {
    process.stdout.write(`${JSON.stringify(checkStatement(policy, { ...defaults, sql: values.sql }))}\n`);
    return 0;
  }
  // Batch mode: one JSON object per line in, one decision per line out, in order.
  let line = 0;
  let failures = 0;
  for await (const text of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    line++;
    if (text.trim() === '') continue;
    try {
      const request = JSON.parse(text) as { sql?: unknown; identity?: unknown; target?: unknown };
      if (typeof request.sql !== 'string') throw new Error('"sql" must be a string');
      const decision = checkStatement(policy, {
        ...defaults,
        sql: request.sql,
        ...(request.identity !== undefined ? { identity: request.identity } : {}),
        ...(typeof request.target === 'string' ? { target: request.target } : {}),
      });
      process.stdout.write(`${JSON.stringify(decision)}\n`);
    } catch (e: unknown) {
      failures++;
      process.stdout.write(`${JSON.stringify({ line, error: (e as Error).message })}\n`);
    }
  }
  return failures > 0 ? 1 : 0;
}
