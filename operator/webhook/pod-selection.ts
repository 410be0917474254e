// Label selector matching for `AccessPolicy.spec.selector`, with the semantics of
// k8s.io/apimachinery `metav1.LabelSelectorAsSelector`: matchLabels and matchExpressions are ANDed,
// an absent or empty selector selects every pod, `NotIn` and `DoesNotExist` hold for a pod without
// the key. A malformed selector (In/NotIn without values, Exists/DoesNotExist with values) selects
// nothing and says why, as Kubernetes refuses to turn it into a selector at all.
import type { AccessPolicy, AccessPolicyPodSelector } from '../../crds/generated/access-policy.ts';

export type SelectorMatch = { readonly matches: boolean } | { readonly matches: false; readonly invalid: string };

export function matchSelector(selector: AccessPolicyPodSelector | undefined, labels: Readonly<Record<string, string>>): SelectorMatch {
  const has = (key: string): boolean => Object.hasOwn(labels, key);
  for (const [index, req] of (selector?.matchExpressions ?? []).entries()) {
    const values = req.values ?? [];
    const field = `spec.selector.matchExpressions[${index}]`;
    if ((req.operator === 'In' || req.operator === 'NotIn') && values.length === 0) {
      return { matches: false, invalid: `${field}.values: Required value (operator ${req.operator} needs at least one value)` };
    }
    if ((req.operator === 'Exists' || req.operator === 'DoesNotExist') && values.length > 0) {
      return { matches: false, invalid: `${field}.values: Forbidden (operator ${req.operator} takes no values)` };
    }
  }
  for (const [key, value] of Object.entries(selector?.matchLabels ?? {})) {
    if (!has(key) || labels[key] !== value) return { matches: false };
  }
  for (const req of selector?.matchExpressions ?? []) {
    const value = has(req.key) ? labels[req.key] : undefined;
    const values = req.values ?? [];
    let ok: boolean;
    switch (req.operator) {
      case 'In': ok = value !== undefined && values.includes(value); break;
      case 'NotIn': ok = value === undefined || !values.includes(value); break;
      case 'Exists': ok = value !== undefined; break;
      case 'DoesNotExist': ok = value === undefined; break;
      default: {
        const unknown: never = req.operator;
        return { matches: false, invalid: `spec.selector.matchExpressions: unsupported operator ${JSON.stringify(unknown)}` };
      }
    }
    if (!ok) return { matches: false };
  }
  return { matches: true };
}

export interface PolicySelection {
  /** Policies that select the pod, sorted by name. */
  readonly selected: readonly AccessPolicy[];
  /** Policies ignored because their selector is malformed: `name: field: problem`. */
  readonly invalid: readonly string[];
}

/** The policies of `namespace` whose selector matches the pod's labels. */
export function selectPolicies(policies: readonly AccessPolicy[], namespace: string, labels: Readonly<Record<string, string>>): PolicySelection {
  const selected: AccessPolicy[] = [];
  const invalid: string[] = [];
  for (const policy of policies) {
    if (policy.metadata.namespace !== undefined && policy.metadata.namespace !== namespace) continue;
    const result = matchSelector(policy.spec.selector, labels);
    if ('invalid' in result) invalid.push(`${policy.metadata.name}: ${result.invalid}`);
    else if (result.matches) selected.push(policy);
  }
  selected.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  return { selected, invalid: invalid.sort() };
}
