// Subjects: named identities that rules refer to. A `serviceAccount` subject matches a principal's
// Kubernetes service account; an `oidc` subject matches a principal's issuer exactly and every
// claim matcher. A subject matches a connection when it matches either of its identities (the
// pod's workload identity or the caller token).
import type { AccessPolicyClaimMatcher, AccessPolicySubject } from '../crds/generated/access-policy.ts';
import { compileGlob, type StringMatcher } from './glob.ts';
import type { PolicyIssue } from './policy-validation-error.ts';
import type { Principal, RequestIdentity } from './types.ts';

interface CompiledClaimMatcher {
  readonly path: readonly string[];
  readonly test: StringMatcher;
}

export type CompiledSubject =
  | { readonly name: string; readonly type: 'serviceAccount'; readonly namespace: string; readonly serviceAccount: string | null }
  | { readonly name: string; readonly type: 'oidc'; readonly issuer: string; readonly claims: readonly CompiledClaimMatcher[] };

/**
 * Compiles one subject; problems go to `issues`. `policyNamespace` is the namespace a
 * serviceAccount subject defaults to. Returns undefined when the subject is unusable.
 */
export function compileSubject(subject: AccessPolicySubject, field: string, policyNamespace: string, issuers: ReadonlySet<string>, issues: PolicyIssue[]): CompiledSubject | undefined {
  const { serviceAccount, oidc } = subject;
  if ((serviceAccount === undefined) === (oidc === undefined)) {
    issues.push({ field, message: 'exactly one of serviceAccount or oidc must be set' });
    return undefined;
  }
  if (serviceAccount !== undefined) {
    return {
      name: subject.name,
      type: 'serviceAccount',
      namespace: serviceAccount.namespace ?? policyNamespace,
      serviceAccount: serviceAccount.name === '*' ? null : serviceAccount.name,
    };
  }
  if (oidc === undefined) return undefined;
  if (!issuers.has(oidc.issuer)) issues.push({ field: `${field}.oidc.issuer`, message: `issuer "${oidc.issuer}" is not in spec.issuers, so no token from it can be verified` });
  const claims: CompiledClaimMatcher[] = [];
  for (const [i, matcher] of (oidc.claims ?? []).entries()) {
    const compiled = compileClaimMatcher(matcher, `${field}.oidc.claims[${i}]`, issues);
    if (compiled !== undefined) claims.push(compiled);
  }
  return { name: subject.name, type: 'oidc', issuer: oidc.issuer, claims };
}

function compileClaimMatcher(matcher: AccessPolicyClaimMatcher, field: string, issues: PolicyIssue[]): CompiledClaimMatcher | undefined {
  const given = [matcher.equals, matcher.in, matcher.glob].filter((v) => v !== undefined).length;
  if (given !== 1) {
    issues.push({ field, message: 'exactly one of equals, in or glob must be set' });
    return undefined;
  }
  const path = matcher.claim.split('.');
  if (path.some((segment) => segment === '')) {
    issues.push({ field: `${field}.claim`, message: `claim path "${matcher.claim}" has an empty segment` });
    return undefined;
  }
  if (matcher.equals !== undefined) {
    const expected = matcher.equals;
    return { path, test: (v) => v === expected };
  }
  if (matcher.in !== undefined) {
    if (matcher.in.length === 0) {
      issues.push({ field: `${field}.in`, message: 'must not be empty' });
      return undefined;
    }
    const allowed = new Set(matcher.in);
    return { path, test: (v) => allowed.has(v) };
  }
  return { path, test: compileGlob(matcher.glob ?? '', { question: true }) };
}

export function subjectMatchesIdentity(subject: CompiledSubject, identity: RequestIdentity): boolean {
  return (identity.workload !== undefined && subjectMatchesPrincipal(subject, identity.workload))
    || (identity.caller !== undefined && subjectMatchesPrincipal(subject, identity.caller));
}

function subjectMatchesPrincipal(subject: CompiledSubject, principal: Principal): boolean {
  if (subject.type === 'serviceAccount') {
    const k8s = principal.kubernetes;
    return k8s !== undefined && k8s.namespace === subject.namespace && (subject.serviceAccount === null || k8s.serviceAccount === subject.serviceAccount);
  }
  if (principal.issuer !== subject.issuer) return false;
  for (const matcher of subject.claims) if (!claimMatches(principal.claims, matcher)) return false;
  return true;
}

/** Only strings match; an array of strings matches when any element does. */
function claimMatches(claims: Readonly<Record<string, unknown>>, matcher: CompiledClaimMatcher): boolean {
  const value = resolveClaim(claims, matcher.path, 0);
  if (typeof value === 'string') return matcher.test(value);
  if (Array.isArray(value)) {
    for (const item of value) if (typeof item === 'string' && matcher.test(item)) return true;
  }
  return false;
}

/**
 * A dotted path into nested claims. Claim names may themselves hold dots (`kubernetes.io`), so at
 * each level own keys that are a prefix of the remaining path are tried, longest first. Own properties only:
 * `constructor` or `__proto__` never reach Object.prototype.
 */
function resolveClaim(value: unknown, path: readonly string[], from: number): unknown {
  if (from === path.length) return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  for (let end = path.length; end > from; end--) {
    const key = path.slice(from, end).join('.');
    if (Object.hasOwn(value, key)) {
      const found = resolveClaim((value as Record<string, unknown>)[key], path, end);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}
