// Label selectors (the string form of ?labelSelector= and the LabelSelector object of webhooks and
// policies) and field selectors, with the semantics of k8s.io/apimachinery pkg/labels and
// pkg/fields.
import { badRequest } from './errors.ts';
import { isObject, type KubeObject } from './types.ts';

export interface Requirement {
  readonly key: string;
  readonly operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  readonly values: readonly string[];
}

export function matchesRequirements(requirements: readonly Requirement[], labels: Readonly<Record<string, string>> | undefined): boolean {
  const l = labels ?? {};
  return requirements.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const value = l[r.key];
    switch (r.operator) {
      case 'In': return has && value !== undefined && r.values.includes(value);
      case 'NotIn': return !has || value === undefined || !r.values.includes(value);
      case 'Exists': return has;
      case 'DoesNotExist': return !has;
      default: { const never: never = r.operator; return never; }
    }
  });
}

/** Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`. */
export function parseLabelSelector(text: string): Requirement[] {
  const requirements: Requirement[] = [];
  const trimmed = text.trim();
  if (trimmed === '') return requirements;
  // Split on commas that are not inside a parenthesised value set.
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of trimmed) {
    if (ch === '(') depth += 1;
    if (ch === ')') depth -= 1;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += ch;
  }
  parts.push(current);
  for (const raw of parts) {
    const part = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([^\s!=(),]+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(part)) !== null) {
      const values = (m[3] ?? '').split(',').map((v) => v.trim()).filter((v) => v !== '');
      requirements.push({ key: m[1] ?? '', operator: m[2] === 'in' ? 'In' : 'NotIn', values });
    } else if ((m = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(part)) !== null) {
      requirements.push({ key: m[1] ?? '', operator: m[2] === '!=' ? 'NotIn' : 'In', values: [m[3] ?? ''] });
    } else if ((m = /^!\s*([^\s!=(),]+)$/.exec(part)) !== null) {
      requirements.push({ key: m[1] ?? '', operator: 'DoesNotExist', values: [] });
    } else if ((m = /^([^\s!=(),]+)$/.exec(part)) !== null) {
      requirements.push({ key: m[1] ?? '', operator: 'Exists', values: [] });
    } else {
      throw badRequest(`unable to parse requirement: found '${part}', expected: identifier`);
    }
  }
  return requirements;
}

/** A metav1.LabelSelector object; null/undefined matches everything, as in webhook selectors. */
export function labelSelectorRequirements(selector: unknown): Requirement[] {
  if (!isObject(selector)) return [];
  const requirements: Requirement[] = [];
  if (isObject(selector.matchLabels)) {
    for (const [key, value] of Object.entries(selector.matchLabels)) requirements.push({ key, operator: 'In', values: [String(value)] });
  }
  if (Array.isArray(selector.matchExpressions)) {
    for (const e of selector.matchExpressions) {
      if (!isObject(e)) continue;
      const operator = e.operator;
      if (operator !== 'In' && operator !== 'NotIn' && operator !== 'Exists' && operator !== 'DoesNotExist') continue;
      requirements.push({ key: String(e.key), operator, values: Array.isArray(e.values) ? e.values.map(String) : [] });
    }
  }
  return requirements;
}

export function matchesLabelSelector(selector: unknown, labels: Readonly<Record<string, string>> | undefined): boolean {
  return matchesRequirements(labelSelectorRequirements(selector), labels);
}

export interface FieldRequirement {
  readonly field: string;
  readonly equals: boolean;
  readonly value: string;
}

export function parseFieldSelector(text: string): FieldRequirement[] {
  if (text.trim() === '') return [];
  return text.split(',').map((part) => {
    const m = /^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(part);
    if (m === null) throw badRequest(`invalid selector: '${text}'; can't understand '${part}'`);
    return { field: m[1] ?? '', equals: m[2] !== '!=', value: m[3] ?? '' };
  });
}

/** Field labels each kind supports besides metadata.name and metadata.namespace (pkg/registry/*\/strategy.go). */
const FIELD_LABELS: Readonly<Record<string, readonly string[]>> = {
  Pod: ['spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'spec.hostNetwork', 'status.phase', 'status.podIP', 'status.nominatedNodeName'],
  Event: ['involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid', 'involvedObject.apiVersion',
    'involvedObject.resourceVersion', 'involvedObject.fieldPath', 'reason', 'reportingComponent', 'source', 'type',
    'regarding.kind', 'regarding.namespace', 'regarding.name', 'regarding.uid', 'reportingController'],
  Secret: ['type'],
  Namespace: ['status.phase'],
  Node: ['spec.unschedulable'],
};

function fieldValue(object: KubeObject, field: string): string {
  let current: unknown = object;
  for (const part of field.split('.')) current = isObject(current) ? current[part] : undefined;
  if (field === 'source' && isObject(object.source)) return typeof object.source.component === 'string' ? object.source.component : '';
  if (current === undefined || current === null) return '';
  return typeof current === 'string' ? current : JSON.stringify(current);
}

/** Checks the field labels are supported for `kind`: the API server answers 400 otherwise. */
export function checkFieldSelector(kind: string, requirements: readonly FieldRequirement[], selectableFields: readonly string[] = []): void {
  for (const r of requirements) {
    if (r.field === 'metadata.name' || r.field === 'metadata.namespace') continue;
    if ((FIELD_LABELS[kind] ?? []).includes(r.field) || selectableFields.includes(r.field)) continue;
    throw badRequest(`field label not supported: ${r.field}`);
  }
}

export function matchesFields(requirements: readonly FieldRequirement[], object: KubeObject): boolean {
  return requirements.every((r) => (fieldValue(object, r.field) === r.value) === r.equals);
}
