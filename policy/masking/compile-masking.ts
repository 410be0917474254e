// Compiles `spec.masking` (schema-valid) into what the sidecar masks with: physical columns split
// into (schema, table, column), strategies with their defaults filled in, detectors compiled once,
// exempt subjects resolved. Semantic problems are collected and thrown together, each naming its
// field, as compile.ts does for the rest of the policy.
import type { AccessPolicyMasking } from '../../crds/generated/access-policy.ts';
import { createDetector, DetectorPatternError, type Span } from '../../sidecar/masking/detectors.ts';
import type { ApprovalSettings } from '../approvals/approval-types.ts';
import { type PolicyIssue, PolicyValidationError } from '../policy-validation-error.ts';
import type { CompiledSubject } from '../subjects.ts';

export type MaskStrategyKind = 'redact' | 'partial' | 'hmac' | 'null';

export interface MaskStrategy {
  readonly kind: MaskStrategyKind;
  /** partial: code points kept at the start (0 otherwise). */
  readonly keepFirst: number;
  /** partial: code points kept at the end (0 otherwise). */
  readonly keepLast: number;
}

export interface MaskedColumnRule {
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  readonly strategy: MaskStrategy;
}

export interface CompiledDetector {
  /** Audit and metric label: the configured name, else the type. */
  readonly name: string;
  readonly type: string;
  readonly strategy: MaskStrategy;
  /** Sorted, non-overlapping UTF-16 spans of detected values. */
  find(text: string): Array<{ start: number; end: number }>;
}

export interface CompiledMasking {
  readonly columns: readonly MaskedColumnRule[];
  readonly detectors: readonly CompiledDetector[];
  readonly exemptSubjects: readonly CompiledSubject[];
  readonly onUnresolvable: 'mask' | 'deny';
  readonly predicates: 'allow' | 'deny' | 'require-approval';
  /** With predicates require-approval: the policy's `spec.defaultApproval` (set by compilePolicy). */
  readonly predicatesApproval?: ApprovalSettings;
  readonly hmacKeyFile?: string;
}

export const PARTIAL_DEFAULT_KEEP_FIRST = 0;
export const PARTIAL_DEFAULT_KEEP_LAST = 4;

/** NAMEDATALEN − 1: PostgreSQL truncates identifiers to 63 bytes. */
const MAX_IDENTIFIER_BYTES = 63;

/**
 * Compiles `masking` (at `field`, normally `spec.masking`); null when it is absent or masks
 * nothing (no columns and no detectors). `subjects` are the policy's compiled subjects;
 * `subjectNames` every declared name (a subject that failed to compile is reported where it is
 * declared, not again here). Throws PolicyValidationError listing every problem.
 */
export function compileMasking(
  masking: AccessPolicyMasking | undefined,
  subjects: ReadonlyMap<string, CompiledSubject>,
  field = 'spec.masking',
  subjectNames: ReadonlySet<string> = new Set(subjects.keys()),
): CompiledMasking | null {
  if (masking === undefined) return null;
  const issues: PolicyIssue[] = [];
  const hasKey = masking.hmacKeyFile !== undefined;

  const strategyOf = (
    source: { strategy?: MaskStrategyKind; keepFirst?: number; keepLast?: number },
    at: string,
  ): MaskStrategy => {
    const kind = source.strategy ?? 'redact';
    if (kind === 'hmac' && !hasKey) issues.push({ field: `${at}.strategy`, message: `hmac needs ${field}.hmacKeyFile (the key file mounted into the sidecar)` });
    if (kind !== 'partial') {
      for (const key of ['keepFirst', 'keepLast'] as const) {
        if (source[key] !== undefined) issues.push({ field: `${at}.${key}`, message: `only applies to the partial strategy, not ${kind}` });
      }
      return { kind, keepFirst: 0, keepLast: 0 };
    }
    return { kind, keepFirst: source.keepFirst ?? PARTIAL_DEFAULT_KEEP_FIRST, keepLast: source.keepLast ?? PARTIAL_DEFAULT_KEEP_LAST };
  };

  const columns: MaskedColumnRule[] = [];
  const seenColumns = new Map<string, number>();
  for (const [i, rule] of (masking.columns ?? []).entries()) {
    const at = `${field}.columns[${i}]`;
    const strategy = strategyOf(rule, at);
    const parts = parseColumnName(rule.column);
    if (typeof parts === 'string') {
      issues.push({ field: `${at}.column`, message: parts });
      continue;
    }
    const [schema, table, column] = parts;
    const key = `${schema}\u0000${table}\u0000${column}`;
    const previous = seenColumns.get(key);
    if (previous !== undefined) {
      issues.push({ field: `${at}.column`, message: `duplicate column "${rule.column}" (also ${field}.columns[${previous}])` });
      continue;
    }
    seenColumns.set(key, i);
    columns.push({ schema, table, column, strategy });
  }

  const detectors: CompiledDetector[] = [];
  const detectorNames = new Map<string, number>();
  for (const [i, spec] of (masking.detectors ?? []).entries()) {
    const at = `${field}.detectors[${i}]`;
    const strategy = strategyOf({ strategy: spec.strategy ?? 'redact' }, at);
    if (spec.type === 'custom' && spec.name === undefined) issues.push({ field: `${at}.name`, message: 'a custom detector needs a name' });
    if (spec.type !== 'custom' && spec.pattern !== undefined) {
      issues.push({ field: `${at}.pattern`, message: `only custom detectors take a pattern (${spec.type} is built in)` });
    }
    const name = spec.name ?? spec.type;
    const previous = detectorNames.get(name);
    if (previous !== undefined) issues.push({ field: spec.name === undefined ? `${at}.type` : `${at}.name`, message: `duplicate detector name "${name}" (also ${field}.detectors[${previous}]; set name to tell them apart)` });
    else detectorNames.set(name, i);
    try {
      const finder = createDetector(spec.type, spec.pattern !== undefined ? { pattern: spec.pattern } : {});
      detectors.push({ name, type: spec.type, strategy, find: (text: string): Span[] => finder.find(text) });
    } catch (e: unknown) {
      if (!(e instanceof DetectorPatternError)) throw e;
      issues.push({ field: `${at}.pattern`, message: e.message });
    }
  }

  const exemptSubjects: CompiledSubject[] = [];
  for (const [j, name] of (masking.exemptSubjects ?? []).entries()) {
    const subject = subjects.get(name);
    if (subject !== undefined) {
      if (!exemptSubjects.includes(subject)) exemptSubjects.push(subject);
    } else if (!subjectNames.has(name)) {
      issues.push({ field: `${field}.exemptSubjects[${j}]`, message: `unknown subject "${name}"` });
    }
  }

  if (issues.length > 0) throw new PolicyValidationError(issues);
  if (columns.length === 0 && detectors.length === 0) return null;
  return {
    columns,
    detectors,
    exemptSubjects,
    onUnresolvable: masking.onUnresolvable ?? 'mask',
    predicates: masking.predicates ?? 'deny',
    ...(masking.hmacKeyFile !== undefined ? { hmacKeyFile: masking.hmacKeyFile } : {}),
  };
}

/**
 * Splits `schema.table.column`; a part holding a dot or a double quote is written in double
 * quotes with `""` for a quote, as in SQL. The names are kept exactly (no case folding): they are
 * compared with pg_namespace/pg_class/pg_attribute names. Returns a message when invalid.
 */
export function parseColumnName(text: string): [string, string, string] | string {
  const usage = `must be schema.table.column with the names as PostgreSQL stores them (e.g. public.customers.email), got "${text}"`;
  const parts: string[] = [];
  let i = 0;
  for (;;) {
    let part = '';
    if (text.charAt(i) === '"') {
      i++;
      for (;;) {
        if (i >= text.length) return usage;
        const ch = text.charAt(i);
        if (ch === '"') {
          if (text.charAt(i + 1) === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += ch;
        i++;
      }
    } else {
      while (i < text.length && text.charAt(i) !== '.') {
        if (text.charAt(i) === '"') return usage;
        part += text.charAt(i);
        i++;
      }
    }
    if (part === '' || part.trim() !== part) return usage;
    if (Buffer.byteLength(part, 'utf8') > MAX_IDENTIFIER_BYTES) return `"${part}" is longer than PostgreSQL's ${MAX_IDENTIFIER_BYTES}-byte identifier limit`;
    parts.push(part);
    if (i >= text.length) break;
    if (text.charAt(i) !== '.') return usage;
    i++;
  }
  const [schema, table, column] = parts;
  if (parts.length !== 3 || schema === undefined || table === undefined || column === undefined) return usage;
  return [schema, table, column];
}
