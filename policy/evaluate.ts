// Decides each statement of a client message against a compiled policy: the first rule whose
// targets, subjects and match all hold decides, else the default action. The message's decision
// is the most restrictive of its statements' (deny > require-approval > allow).
//
// How a rule's match.sql holds depends on its action, conservative both ways:
// - deny / require-approval: any of the statement's kinds is listed, any relation / function
//   matches (an unqualified name in any schema), any COPY endpoint is listed;
// - allow: the rule must cover everything the statement does: every kind listed, every relation /
//   function covered (an unqualified one in every schema it may resolve to under the session's
//   search_path), every COPY endpoint listed; and an opaque statement only with `opaque: true`.
//   Otherwise `statements: [select]` would allow `INSERT ... SELECT` or a CTE that deletes.
// `where: missing-or-constant` and `opaque` are plain conditions on the statement either way.
//
// A require-approval decision carries the approval settings of its rule (or spec.defaultApproval).
// One request covers a whole message, so a message whose statements need approval under different
// settings (say, the dba group for one and security for another) is denied: approving it under
// either set alone would let one group approve what only the other may.
import type { ApprovalSettings } from './approvals/approval-types.ts';
import type { CompiledPolicy, CompiledRule } from './compile.ts';
import { coversEverySchema, functionCandidates, matchesAnySchema, relationCandidates } from './name-pattern.ts';
import { type CompiledSubject, subjectMatchesIdentity } from './subjects.ts';
import type { Action, Decision, EvaluationInput, StatementDecision, StatementFacts } from './types.ts';

const DEFAULT_SEARCH_PATH: readonly string[] = ['public'];
const RESTRICTIVENESS: Readonly<Record<Action, number>> = { allow: 0, 'require-approval': 1, deny: 2 };

/** Per-call state: the search path as the message's own SETs change it, subject results once each. */
class Context {
  readonly input: EvaluationInput;
  searchPath: readonly string[];
  #functionCandidates: readonly string[] | undefined;
  #subjects: Map<CompiledSubject, boolean> | undefined;

  constructor(input: EvaluationInput) {
    this.input = input;
    this.searchPath = input.searchPath ?? DEFAULT_SEARCH_PATH;
  }

  functionCandidates(): readonly string[] {
    return (this.#functionCandidates ??= functionCandidates(this.searchPath));
  }

  subjectMatches(subject: CompiledSubject): boolean {
    this.#subjects ??= new Map();
    let matched = this.#subjects.get(subject);
    if (matched === undefined) {
      matched = subjectMatchesIdentity(subject, this.input.identity);
      this.#subjects.set(subject, matched);
    }
    return matched;
  }

  /** Follows SET search_path / RESET within the message; an unknown path covers nothing for allow rules. */
  apply(facts: StatementFacts): void {
    for (const change of facts.settings ?? []) {
      if (change.name === 'search_path' || change.name === 'all') {
        this.searchPath = change.value ?? [];
        this.#functionCandidates = undefined;
      }
    }
  }
}

export function evaluate(policy: CompiledPolicy, input: EvaluationInput): Decision {
  const sql = input.sql;
  if (!sql.ok) {
    const refusal: StatementDecision = { action: 'deny', rule: null, reason: 'unparseable', message: sql.error };
    return { action: 'deny', rule: null, reason: 'unparseable', message: sql.error, statements: [refusal] };
  }
  // An empty query runs nothing (the server answers EmptyQueryResponse).
  if (sql.statements.length === 0) return { action: 'allow', rule: null, reason: 'empty', statements: [] };

  const context = new Context(input);
  const statements: StatementDecision[] = [];
  let decisive: StatementDecision | undefined;
  for (const facts of sql.statements) {
    const decision = decideStatement(policy, facts, context);
    statements.push(decision);
    if (decisive === undefined || RESTRICTIVENESS[decision.action] > RESTRICTIVENESS[decisive.action]) decisive = decision;
    context.apply(facts);
  }
  if (decisive === undefined) throw new Error('unreachable: a message with statements has a decision');
  if (decisive.action === 'require-approval') {
    const conflict = approvalConflict(statements);
    if (conflict !== undefined) return { action: 'deny', rule: decisive.rule, reason: 'approval-conflict', message: conflict, statements };
  }
  return {
    action: decisive.action,
    rule: decisive.rule,
    reason: decisive.reason,
    ...(decisive.message !== undefined ? { message: decisive.message } : {}),
    ...(decisive.approval !== undefined ? { approval: decisive.approval } : {}),
    statements,
  };
}

/** Why the message's approvals cannot be one request, or undefined when they can. */
function approvalConflict(statements: readonly StatementDecision[]): string | undefined {
  const asking = statements.filter((s) => s.action === 'require-approval');
  // compileApproval builds every settings object with the same key order, so JSON compares them.
  const distinct = new Set(asking.map((s) => JSON.stringify(s.approval ?? null)));
  if (distinct.size <= 1) return undefined;
  const rules = [...new Set(asking.map((s) => s.rule ?? '(default)'))].map((r) => `"${r}"`).join(', ');
  return `statements of this message need approval under different rules (${rules}): send them separately`;
}

function decideStatement(policy: CompiledPolicy, facts: StatementFacts, context: Context): StatementDecision {
  for (const rule of policy.rules) {
    if (ruleApplies(rule, facts, context)) {
      const decision: StatementDecision = { action: rule.action, rule: rule.name, reason: 'rule-matched', ...(rule.message !== undefined ? { message: rule.message } : {}), facts };
      return withApproval(decision, rule.approval);
    }
  }
  return withApproval({ action: policy.defaultAction, rule: null, reason: 'default-action', facts }, policy.defaultApproval ?? undefined);
}

/**
 * Attaches the approval settings to a require-approval decision. Without settings nobody could
 * review it, so it is denied rather than held forever (compilePolicy never lets that happen).
 */
function withApproval(decision: StatementDecision, approval: ApprovalSettings | undefined): StatementDecision {
  if (decision.action !== 'require-approval') return decision;
  if (approval === undefined) return { ...decision, action: 'deny', reason: 'approval-unconfigured', message: 'approval required, but the policy names no reviewers' };
  return { ...decision, approval };
}

function ruleApplies(rule: CompiledRule, facts: StatementFacts, context: Context): boolean {
  if (rule.targets !== null && !rule.targets.has(context.input.target)) return false;
  if (rule.opaque !== null && rule.opaque !== facts.opaque) return false;
  if (rule.unfilteredWrite && !facts.unfilteredWrite) return false;
  if (!(rule.action === 'allow' ? allowCovers(rule, facts, context) : denyMatches(rule, facts))) return false;
  if (rule.subjects !== null) {
    for (const subject of rule.subjects) if (context.subjectMatches(subject)) return true;
    return false;
  }
  return true;
}

function denyMatches(rule: CompiledRule, facts: StatementFacts): boolean {
  const { kinds, objects, functions, copy } = rule;
  if (kinds !== null && !facts.kinds.some((k) => kinds.has(k))) return false;
  if (objects !== null && !facts.relations.some((r) => matchesAnySchema(objects, r))) return false;
  if (functions !== null && !facts.functions.some((f) => matchesAnySchema(functions, f))) return false;
  if (copy !== null && !facts.copy.some((c) => copy.has(c))) return false;
  return true;
}

function allowCovers(rule: CompiledRule, facts: StatementFacts, context: Context): boolean {
  const { kinds, objects, functions, copy } = rule;
  // An allow rule never vouches for code it cannot see unless it says so.
  if (facts.opaque && rule.opaque !== true) return false;
  if (kinds !== null && !facts.kinds.every((k) => kinds.has(k))) return false;
  if (objects !== null) {
    if (facts.relations.length === 0) return false;
    for (const r of facts.relations) {
      if (!coversEverySchema(objects, r, r.schema === null ? relationCandidates(context.searchPath, r.name) : context.searchPath)) return false;
    }
  }
  if (functions !== null) {
    if (facts.functions.length === 0) return false;
    for (const f of facts.functions) if (!coversEverySchema(functions, f, context.functionCandidates())) return false;
  }
  if (copy !== null && (facts.copy.length === 0 || !facts.copy.every((c) => copy.has(c)))) return false;
  return true;
}
