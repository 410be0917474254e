// The `policy.yaml` the operator writes for the sidecar, and the check that the sidecar will accept
// it and enforce exactly the spec the API server holds.
//
// The sidecar reads the file with crds/validate-document.ts `parsePolicyYaml` (YAML 1.1, as kubectl
// reads manifests, where `yes`, `on`, `0755` and `1:20` are not strings) and compiles it with
// policy/compile.ts. So the document is written with the YAML 1.1 schema, which quotes every string
// that 1.1 would read as something else, and then parsed back and compiled with the sidecar's own
// functions: the ConfigMap only ever receives text the sidecar loads, and a spec that would not
// survive the trip (a bug here, or in the YAML library) is refused instead of silently changed.
import { createHash } from 'node:crypto';
import { Document, Scalar, visit } from 'yaml';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import { PolicySyntaxError, PolicyValidationError as SchemaValidationError, parsePolicyYaml } from '../../crds/validate-document.ts';
import { compilePolicy, PolicyValidationError as CompileValidationError } from '../../policy/compile.ts';
import { policyNamespace } from './observed.ts';

/** A problem with a policy, named the way kubectl names fields (`spec.rules[0].targets[0]`). */
export interface FieldProblem {
  /** Empty when the problem is not at one field. */
  readonly field: string;
  readonly message: string;
}

export type SidecarPolicyCheck =
  | { readonly ok: true; readonly policyYaml: string; readonly digest: string }
  | { readonly ok: false; readonly problems: readonly FieldProblem[] };

const YAML_MERGE_TAG = 'tag:yaml.org,2002:merge';

/** The policy as the sidecar's file holds it: no status, no server-managed metadata. */
export function policyDocument(policy: AccessPolicy): AccessPolicy {
  return {
    apiVersion: policy.apiVersion,
    kind: policy.kind,
    metadata: { name: policy.metadata.name, namespace: policyNamespace(policy) },
    spec: policy.spec,
  };
}

/**
 * `policy.yaml` for `policy`. Deterministic (same spec, same text, same digest), so an unchanged
 * policy never rewrites its ConfigMap. Metadata that changes on every write (resourceVersion,
 * generation, managedFields) stays out for the same reason.
 */
export function renderPolicyYaml(policy: AccessPolicy): string {
  const namespace = policyNamespace(policy);
  // The merge tag is left out so that a map key `<<` (say, in matchLabels) is a string, and then
  // quoted below: a YAML 1.1 reader takes a plain `<<` key for a merge instruction.
  const doc = new Document(policyDocument(policy), {
    version: '1.1',
    customTags: (tags) => tags.filter((t) => typeof t === 'string' || t.tag !== YAML_MERGE_TAG),
  });
  visit(doc, {
    Scalar(_key, node) {
      if (node.value === '<<') node.type = Scalar.QUOTE_DOUBLE;
    },
  });
  const header = [
    `# Written by custos-operator from AccessPolicy ${namespace}/${policy.metadata.name}; edits here are overwritten.`,
    `# Change the policy instead: kubectl edit accesspolicy ${policy.metadata.name} -n ${namespace}`,
  ].join('\n');
  return `${header}\n${doc.toString({ lineWidth: 0 })}`;
}

/** SHA-256 (hex) of a text as UTF-8: the digest the sidecar's policy store computes for its file. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * Renders `policy.yaml` and loads it the way the sidecar does (schema, then compile); returns the
 * text, or every problem with its field.
 */
export function checkPolicyForSidecar(policy: AccessPolicy): SidecarPolicyCheck {
  let policyYaml: string;
  try {
    policyYaml = renderPolicyYaml(policy);
  } catch (e: unknown) {
    return { ok: false, problems: [{ field: 'spec', message: `cannot be written as YAML: ${messageOf(e)}` }] };
  }
  const digest = sha256Hex(policyYaml);
  let parsed: AccessPolicy;
  try {
    parsed = parsePolicyYaml(policyYaml, POLICY_SOURCE);
    compilePolicy(parsed, { version: digest.slice(0, 12) });
  } catch (e: unknown) {
    return { ok: false, problems: problemsOf(e) };
  }
  if (canonicalJson(parsed.spec) !== canonicalJson(policy.spec)) {
    return { ok: false, problems: [{ field: 'spec', message: 'reads back differently from policy.yaml than the API server holds it; the sidecar would enforce another policy' }] };
  }
  return { ok: true, policyYaml, digest };
}

const POLICY_SOURCE = 'policy.yaml';

function problemsOf(e: unknown): FieldProblem[] {
  if (e instanceof CompileValidationError) return e.issues.map((i) => ({ field: i.field, message: i.message }));
  if (e instanceof SchemaValidationError) return e.issues.map((i) => ({ field: i.field, message: i.detail }));
  if (e instanceof PolicySyntaxError) return [{ field: '', message: e.message }];
  return [{ field: '', message: messageOf(e) }];
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** `spec.rules[0].targets[0]: unknown target "x"`, one problem per `; `. */
export function describeProblems(problems: readonly FieldProblem[]): string {
  return problems.map((p) => (p.field === '' ? p.message : `${p.field}: ${p.message}`)).join('; ');
}

/** JSON with object keys sorted: equal for equal JSON values whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
    // fromEntries defines own properties, so a key `__proto__` stays a key instead of a prototype.
    return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}
