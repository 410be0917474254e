// Validates AccessPolicy documents exactly as `kubectl apply` (strict field validation) and the
// API server would, with the standalone validator generated from the CRD, and reports each
// problem the way they do: `spec.rules[2].action: Unsupported value: "permit": supported values:
// "allow", "deny", "require-approval"`. Pure: no file system; callers pass text or parsed data.
import type { ErrorObject } from 'ajv';
import { parseAllDocuments, type Document } from 'yaml';
import { CustosError } from '../lib/errors.ts';
import type { AccessPolicy, AccessPolicySpec } from './generated/access-policy.ts';
import { ACCESS_POLICY_API_VERSION, ACCESS_POLICY_KIND } from './generated/access-policy.ts';
import validateGenerated from './generated/access-policy.validate.js';

/** One problem in a document: the field, as kubectl names it, and what is wrong with it. */
export interface FieldIssue {
  /** `spec.targets[0].port`; empty for the document itself. */
  readonly field: string;
  /** `Required value`, `Unsupported value: "permit": supported values: ...`. */
  readonly detail: string;
}

/** A document that does not satisfy the CRD schema; `field` names the first problem. */
export class PolicyValidationError extends CustosError {
  readonly field: string;
  readonly issues: readonly FieldIssue[];

  constructor(issues: readonly FieldIssue[], source?: string) {
    const lines = issues.map((i) => (i.field === '' ? i.detail : `${i.field}: ${i.detail}`));
    const prefix = source === undefined ? '' : `${source}: `;
    const message = lines.length === 1 ? `${prefix}${lines[0] ?? ''}` : `${prefix}${lines.length} errors:\n${lines.map((l) => `* ${l}`).join('\n')}`;
    super('ERR_POLICY_INVALID', message);
    this.name = 'PolicyValidationError';
    this.field = issues[0]?.field ?? '';
    this.issues = issues;
  }
}

/** A policy file that is not valid YAML (or holds the wrong number of policies). */
export class PolicySyntaxError extends CustosError {
  /** 1-based; 0 when the problem is not at one place. */
  readonly line: number;
  readonly column: number;

  constructor(message: string, line: number, column: number, options?: { cause?: unknown }) {
    super('ERR_POLICY_SYNTAX', message, options);
    this.name = 'PolicySyntaxError';
    this.line = line;
    this.column = column;
  }
}

/**
 * Checks a whole AccessPolicy object (apiVersion `custos.io/v1alpha1`, kind `AccessPolicy`,
 * metadata with a name, spec) and returns it typed; throws PolicyValidationError otherwise.
 */
export function validateAccessPolicy(doc: unknown, source?: string): AccessPolicy {
  if (validateGenerated(doc)) return doc;
  throw new PolicyValidationError(describeErrors(validateGenerated.errors ?? [], doc), source);
}

/**
 * Checks a bare `spec` (as tests and `custos policy check` fixtures often hold it), reporting
 * fields with their `spec.` prefix as for a whole document.
 */
export function validateAccessPolicySpec(spec: unknown, source?: string): AccessPolicySpec {
  const wrapped = { apiVersion: ACCESS_POLICY_API_VERSION, kind: ACCESS_POLICY_KIND, metadata: { name: 'spec' }, spec };
  return validateAccessPolicy(wrapped, source).spec;
}

/**
 * Parses and validates a policy file. A file may hold other Kubernetes objects (`---`
 * separated) but exactly one AccessPolicy; YAML errors name the line and column.
 */
export function parsePolicyYaml(text: string, source: string): AccessPolicy {
  // YAML 1.1 as kubectl reads manifests (sigs.k8s.io/yaml: `yes`/`on` are booleans), but
  // timestamps stay strings as in JSON.
  // An empty stream is an empty array too.
  const list: Document.Parsed[] = parseAllDocuments(text, {
    version: '1.1',
    prettyErrors: true,
    uniqueKeys: true,
    customTags: (tags) => tags.filter((t) => typeof t === 'string' || t.tag !== 'tag:yaml.org,2002:timestamp'),
  });
  for (const doc of list) {
    const problem = doc.errors[0];
    if (problem !== undefined) {
      const pos = problem.linePos?.[0];
      const line = pos?.line ?? 0;
      const col = pos?.col ?? 0;
      // prettyErrors appends " at line L, column C:" and a code excerpt; we say where up front.
      const what = (problem.message.split('\n')[0] ?? problem.message).replace(/ at line \d+, column \d+:?$/, '');
      throw new PolicySyntaxError(`${source}:${line}:${col}: YAML syntax error: ${what}`, line, col, { cause: problem });
    }
  }
  const objects = list
    .filter((d) => d.contents !== null)
    .map((d) => ({ value: d.toJS({ maxAliasCount: 100 }) as unknown, line: lineOf(text, d.range[0]) }));
  if (objects.length === 0) throw new PolicySyntaxError(`${source}: empty file: expected an AccessPolicy`, 0, 0);
  const [only] = objects;
  if (objects.length === 1 && only !== undefined) return validateAccessPolicy(only.value, source);
  const policies = objects.filter((o) => kindOf(o.value) === ACCESS_POLICY_KIND);
  const [policy, second] = policies;
  if (policy === undefined) {
    throw new PolicySyntaxError(`${source}: none of its ${objects.length} documents is an AccessPolicy`, 0, 0);
  }
  if (second !== undefined) {
    throw new PolicySyntaxError(
      `${source}: holds ${policies.length} AccessPolicy documents (lines ${policies.map((p) => p.line).join(', ')}); give one policy per file`,
      second.line, 1);
  }
  return validateAccessPolicy(policy.value, source);
}

function kindOf(value: unknown): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)['kind'] : undefined;
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

// ---------------------------------------------------------------------------------------------
// ajv errors → kubectl-style field errors

/** Turns ajv errors into kubectl-style issues; `doc` is the validated value (for field names). */
export function describeErrors(errors: readonly ErrorObject[], doc: unknown): FieldIssue[] {
  // A failed oneOf/anyOf also reports why each branch failed; the compound error says it better.
  const compound = errors.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf').map((e) => e.schemaPath + '/');
  const issues: FieldIssue[] = [];
  for (const error of errors) {
    if (compound.some((prefix) => error.schemaPath.startsWith(prefix))) continue;
    const issue = describeError(error, doc);
    if (!issues.some((i) => i.field === issue.field && i.detail === issue.detail)) issues.push(issue);
  }
  return issues;
}

function describeError(error: ErrorObject, doc: unknown): FieldIssue {
  const path = fieldPath(error.instancePath, doc);
  const value: unknown = error.data;
  const params = error.params as Record<string, unknown>;
  const invalid = (why: string): FieldIssue => ({ field: path, detail: `Invalid value: ${showValue(value)}: ${path || '<root>'} in body ${why}` });
  switch (error.keyword) {
    case 'required':
      return { field: join(path, String(params['missingProperty'])), detail: 'Required value' };
    case 'additionalProperties':
      return { field: join(path, String(params['additionalProperty'])), detail: 'field not declared in schema' };
    case 'enum': {
      const allowed = Array.isArray(params['allowedValues']) ? (params['allowedValues'] as unknown[]) : [];
      return { field: path, detail: `Unsupported value: ${JSON.stringify(value)}: supported values: ${allowed.map((v) => JSON.stringify(v)).join(', ')}` };
    }
    case 'type': {
      const actual = jsonType(value);
      return { field: path, detail: `Invalid value: "${actual}": ${path || '<root>'} in body must be of type ${String(params['type'])}: "${actual}"` };
    }
    case 'format':
      return invalid(`must be of type ${String(params['format'])}: ${JSON.stringify(value)}`);
    case 'pattern':
      return invalid(`should match '${String(params['pattern'])}'`);
    case 'minLength':
      return invalid(`should be at least ${String(params['limit'])} chars long`);
    case 'maxLength':
      return { field: path, detail: `Too long: may not be more than ${String(params['limit'])} characters` };
    case 'minimum':
      return invalid(`should be greater than or equal to ${String(params['limit'])}`);
    case 'maximum':
      return invalid(`should be less than or equal to ${String(params['limit'])}`);
    case 'minItems':
      return { field: path, detail: `Invalid value: ${Array.isArray(value) ? value.length : 0}: ${path} in body should have at least ${String(params['limit'])} items` };
    case 'maxItems':
      return { field: path, detail: `Too many: ${Array.isArray(value) ? value.length : 0}: must have at most ${String(params['limit'])} items` };
    case 'oneOf':
    case 'anyOf':
      return { field: path, detail: describeAlternatives(error, value) };
    default:
      return { field: path, detail: `Invalid value: ${showValue(value)}: ${error.message ?? error.keyword}` };
  }
}

/** oneOf/anyOf of `required`-only branches (the structural-schema idiom for "one of these fields"). */
function describeAlternatives(error: ErrorObject, value: unknown): string {
  const branches = Array.isArray(error.schema) ? (error.schema as unknown[]) : [];
  const names = branches.flatMap((b) => {
    const required = typeof b === 'object' && b !== null ? (b as Record<string, unknown>)['required'] : undefined;
    return Array.isArray(required) ? [required.map(String).join(' and ')] : [];
  });
  const list = names.length <= 2 ? names.join(' or ') : `${names.slice(0, -1).join(', ')} or ${names[names.length - 1] ?? ''}`;
  const set = names.filter((n) => typeof value === 'object' && value !== null && n.split(' and ').every((f) => f in value));
  if (error.keyword === 'oneOf' && set.length > 1) {
    return `Invalid value: ${showValue(value)}: exactly one of ${list} may be set (found ${set.join(', ')})`;
  }
  return `Required value: ${error.keyword === 'oneOf' ? 'exactly' : 'at least'} one of ${list} must be set`;
}

/** `/spec/rules/2/action` → `spec.rules[2].action` (arrays indexed, odd map keys bracketed). */
export function fieldPath(pointer: string, doc: unknown): string {
  if (pointer === '') return '';
  let out = '';
  let node: unknown = doc;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      out += `[${key}]`;
      node = node[Number(key)];
    } else {
      out = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? join(out, key) : `${out}[${key}]`;
      node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[key] : undefined;
    }
  }
  return out;
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

/** Scalars as JSON (kubectl quotes strings); objects and arrays by their type, never dumped. */
function showValue(value: unknown): string {
  if (value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return JSON.stringify(value);
  return `"${jsonType(value)}"`;
}
