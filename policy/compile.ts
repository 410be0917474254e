// Compiles a schema-valid AccessPolicy (crds/validate-document.ts checks the schema) into the form
// `evaluate` runs on every statement: names resolved to indexes, groups expanded to kind sets,
// patterns compiled once, approval settings with their defaults. Semantic problems are all
// collected and reported together, each naming its field.
import { createHash } from 'node:crypto';
import type { AccessPolicy, AccessPolicyIssuer, AccessPolicyRule, AccessPolicySpec, AccessPolicyTarget } from '../crds/generated/access-policy.ts';
import type { ApprovalSettings, ReviewerAuthentication } from './approvals/approval-types.ts';
import { compileApproval, compileReviewerAuthentication } from './approvals/compile-approval.ts';
import { type CompiledMasking, compileMasking } from './masking/compile-masking.ts';
import { compileNamePattern, type NamePattern } from './name-pattern.ts';
import { type PolicyIssue, PolicyValidationError } from './policy-validation-error.ts';
import { expandStatementKinds } from './statement-groups.ts';
import { type CompiledSubject, compileSubject } from './subjects.ts';
import type { Action, CopyEndpoint, StatementKind } from './types.ts';

export { PolicyValidationError } from './policy-validation-error.ts';
export type { PolicyIssue } from './policy-validation-error.ts';

export interface CompiledRule {
  readonly name: string;
  readonly action: Action;
  readonly message?: string;
  /** null: every target. */
  readonly targets: ReadonlySet<string> | null;
  /** null: everyone; else the subjects of which any must match. */
  readonly subjects: readonly CompiledSubject[] | null;
  /** Conditions of match.sql; null when absent (holds). */
  readonly kinds: ReadonlySet<StatementKind> | null;
  readonly objects: readonly NamePattern[] | null;
  readonly functions: readonly NamePattern[] | null;
  readonly unfilteredWrite: boolean;
  readonly opaque: boolean | null;
  readonly copy: ReadonlySet<CopyEndpoint> | null;
  /** Present exactly when the action is require-approval: who reviews, how the client waits. */
  readonly approval?: ApprovalSettings;
}

export interface CompiledPolicy {
  readonly name: string;
  readonly namespace?: string;
  /** Given by the caller (e.g. a digest of the file), else a short hash of the spec. */
  readonly version: string;
  /** The validated source, for what is not policy evaluation (listeners, credentials, issuers). */
  readonly spec: AccessPolicySpec;
  readonly targets: ReadonlyMap<string, AccessPolicyTarget>;
  readonly issuers: readonly AccessPolicyIssuer[];
  readonly subjects: ReadonlyMap<string, CompiledSubject>;
  readonly rules: readonly CompiledRule[];
  readonly defaultAction: Action;
  /**
   * `spec.defaultApproval`: the settings of require-approval decisions no rule makes (the default
   * action, and `masking.predicates`, which `masking.predicatesApproval` also carries); null when
   * neither asks for approval.
   */
  readonly defaultApproval: ApprovalSettings | null;
  /** `spec.reviewerAuthentication` with defaults: how local-mode reviewers authenticate; null when absent. */
  readonly reviewerAuthentication: ReviewerAuthentication | null;
  /** Result masking; null when the policy masks nothing (no columns and no detectors). */
  readonly masking: CompiledMasking | null;
}

/** Compiles a policy; throws PolicyValidationError (code ERR_POLICY_INVALID) listing every problem. */
export function compilePolicy(policy: AccessPolicy, options: { version?: string } = {}): CompiledPolicy {
  const spec = policy.spec;
  const issues: PolicyIssue[] = [];
  // kubectl puts a namespaced object without a namespace into `default`.
  const namespace = policy.metadata.namespace;
  const subjectNamespace = namespace ?? 'default';

  const issuers = spec.issuers ?? [];
  const issuerNames = new Set<string>();
  for (const [i, issuer] of issuers.entries()) {
    const field = `spec.issuers[${i}]`;
    if ((issuer.jwksUri === undefined) === (issuer.jwksFile === undefined)) issues.push({ field, message: 'exactly one of jwksUri or jwksFile must be set' });
    if (issuerNames.has(issuer.issuer)) issues.push({ field: `${field}.issuer`, message: `duplicate issuer "${issuer.issuer}"` });
    issuerNames.add(issuer.issuer);
  }

  const subjects = new Map<string, CompiledSubject>();
  const subjectNames = new Set<string>();
  for (const [i, subject] of (spec.subjects ?? []).entries()) {
    const field = `spec.subjects[${i}]`;
    if (subjectNames.has(subject.name)) issues.push({ field: `${field}.name`, message: `duplicate subject name "${subject.name}"` });
    subjectNames.add(subject.name);
    const compiled = compileSubject(subject, field, subjectNamespace, issuerNames, issues);
    if (compiled !== undefined && !subjects.has(subject.name)) subjects.set(subject.name, compiled);
  }

  const targets = new Map<string, AccessPolicyTarget>();
  for (const [i, target] of spec.targets.entries()) {
    const field = `spec.targets[${i}]`;
    if (targets.has(target.name)) issues.push({ field: `${field}.name`, message: `duplicate target name "${target.name}"` });
    else targets.set(target.name, target);
    if (target.clientAuthentication === 'caller-token' && issuers.length === 0) {
      issues.push({ field: `${field}.clientAuthentication`, message: 'caller-token needs at least one entry in spec.issuers to verify tokens with' });
    }
  }

  const rules: CompiledRule[] = [];
  const ruleNames = new Set<string>();
  for (const [i, rule] of spec.rules.entries()) {
    const field = `spec.rules[${i}]`;
    if (ruleNames.has(rule.name)) issues.push({ field: `${field}.name`, message: `duplicate rule name "${rule.name}"` });
    ruleNames.add(rule.name);
    rules.push(compileRule(rule, field, targets, subjects, subjectNames, issues));
  }

  // Approvals that no rule asks for: the default action, and masked columns used in conditions.
  const approvalUsers = [
    ...(spec.defaultAction === 'require-approval' ? ['defaultAction: require-approval'] : []),
    ...(spec.masking?.predicates === 'require-approval' ? ['masking.predicates: require-approval'] : []),
  ];
  let defaultApproval: ApprovalSettings | null = null;
  if (spec.defaultApproval !== undefined) {
    if (approvalUsers.length === 0) {
      issues.push({ field: 'spec.defaultApproval', message: 'has no effect: only defaultAction: require-approval or masking.predicates: require-approval use it (rules carry their own approval)' });
    }
    defaultApproval = compileApproval(spec.defaultApproval, 'spec.defaultApproval', issues) ?? null;
  } else if (approvalUsers.length > 0) {
    issues.push({ field: 'spec.defaultApproval', message: `required by ${approvalUsers.join(' and ')}: who reviews those statements` });
  }

  const reviewerAuthentication = spec.reviewerAuthentication === undefined
    ? null
    : compileReviewerAuthentication(spec.reviewerAuthentication, 'spec.reviewerAuthentication', issuers, issues) ?? null;

  let masking: CompiledMasking | null = null;
  try {
    masking = compileMasking(spec.masking, subjects, 'spec.masking', subjectNames);
  } catch (e: unknown) {
    if (!(e instanceof PolicyValidationError)) throw e;
    issues.push(...e.issues);
  }
  if (masking !== null && masking.predicates === 'require-approval' && defaultApproval !== null) {
    masking = { ...masking, predicatesApproval: defaultApproval };
  }

  if (issues.length > 0) throw new PolicyValidationError(issues);
  return {
    name: policy.metadata.name,
    ...(namespace !== undefined ? { namespace } : {}),
    version: options.version ?? specVersion(spec),
    spec,
    targets,
    issuers,
    subjects,
    rules,
    defaultAction: spec.defaultAction ?? 'deny',
    defaultApproval,
    reviewerAuthentication,
    masking,
  };
}

function compileRule(
  rule: AccessPolicyRule,
  field: string,
  targets: ReadonlyMap<string, AccessPolicyTarget>,
  subjects: ReadonlyMap<string, CompiledSubject>,
  subjectNames: ReadonlySet<string>,
  issues: PolicyIssue[],
): CompiledRule {
  const nonEmpty = (list: readonly unknown[] | undefined, at: string): void => {
    if (list !== undefined && list.length === 0) issues.push({ field: at, message: 'must not be empty (omit the field to match everything)' });
  };

  nonEmpty(rule.targets, `${field}.targets`);
  for (const [j, name] of (rule.targets ?? []).entries()) {
    if (!targets.has(name)) issues.push({ field: `${field}.targets[${j}]`, message: `unknown target "${name}"` });
  }
  nonEmpty(rule.subjects, `${field}.subjects`);
  const ruleSubjects: CompiledSubject[] = [];
  for (const [j, name] of (rule.subjects ?? []).entries()) {
    const subject = subjects.get(name);
    if (subject !== undefined) ruleSubjects.push(subject);
    else if (!subjectNames.has(name)) issues.push({ field: `${field}.subjects[${j}]`, message: `unknown subject "${name}"` });
  }

  const sql = rule.match?.sql;
  const at = `${field}.match.sql`;
  nonEmpty(sql?.statements, `${at}.statements`);
  nonEmpty(sql?.objects, `${at}.objects`);
  nonEmpty(sql?.functions, `${at}.functions`);
  nonEmpty(sql?.copy, `${at}.copy`);
  const patterns = (list: readonly string[] | undefined, key: string): NamePattern[] | null => {
    if (list === undefined) return null;
    const out: NamePattern[] = [];
    for (const [j, source] of list.entries()) {
      const compiled = compileNamePattern(source);
      if (typeof compiled === 'string') issues.push({ field: `${at}.${key}[${j}]`, message: compiled });
      else out.push(compiled);
    }
    return out;
  };

  let approval: ApprovalSettings | undefined;
  if (rule.action === 'require-approval') {
    if (rule.approval === undefined) issues.push({ field: `${field}.approval`, message: 'required with action require-approval: who reviews the statements this rule holds (approval.reviewers)' });
    else approval = compileApproval(rule.approval, `${field}.approval`, issues);
  } else if (rule.approval !== undefined) {
    issues.push({ field: `${field}.approval`, message: `only applies to action require-approval, not ${rule.action}` });
  }

  return {
    name: rule.name,
    action: rule.action,
    ...(rule.message !== undefined ? { message: rule.message } : {}),
    targets: rule.targets === undefined ? null : new Set(rule.targets),
    subjects: rule.subjects === undefined ? null : ruleSubjects,
    kinds: sql?.statements === undefined ? null : expandStatementKinds(sql.statements),
    objects: patterns(sql?.objects, 'objects'),
    functions: patterns(sql?.functions, 'functions'),
    unfilteredWrite: sql?.where === 'missing-or-constant',
    opaque: sql?.opaque ?? null,
    copy: sql?.copy === undefined ? null : new Set(sql.copy),
    ...(approval !== undefined ? { approval } : {}),
  };
}

/** A short, key-order-independent hash of the spec. */
function specVersion(spec: AccessPolicySpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 12);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
