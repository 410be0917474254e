// Compiles the approval settings of an AccessPolicy (a rule's `approval`, `spec.defaultApproval`,
// `spec.reviewerAuthentication`) into the ApprovalSettings / ReviewerAuthentication the sidecar
// files requests with: defaults filled in, and the combinations the schema cannot express checked
// here, each problem naming its field. The schema already bounds every number; the checks are
// repeated where a value out of bounds would weaken a request (a policy object may reach the
// compiler without the schema, e.g. from a test or a future caller).
import type { AccessPolicyApproval, AccessPolicyIssuer, AccessPolicyReviewerAuthentication } from '../../crds/generated/access-policy.ts';
import type { PolicyIssue } from '../policy-validation-error.ts';
import type { ApprovalSettings, ReviewerAuthentication } from './approval-types.ts';

/** Defaults and maxima, as approval-types.ts documents them and crds/accesspolicy.yaml bounds them. */
export const APPROVAL_LIMITS = {
  minApprovals: { default: 1, min: 1, max: 10 },
  holdTimeoutSeconds: { default: 300, min: 1, max: 3600 },
  ttlSeconds: { default: 3600, min: 60, max: 86400 },
  windowSeconds: { min: 60, max: 28800 },
} as const;

export const REVIEWER_AUTHENTICATION_DEFAULTS = {
  usernameClaim: 'email',
  groupsClaim: 'groups',
  maxTokenAgeSeconds: 600,
} as const;
const MAX_TOKEN_AGE = { min: 30, max: 3600 } as const;

/** Kubernetes user names and groups that only service accounts (or nobody authenticated) carry. */
const SERVICE_ACCOUNT_USER_PREFIX = 'system:serviceaccount:';
const SERVICE_ACCOUNT_GROUPS = /^system:serviceaccounts(:|$)/;
const UNAUTHENTICATED_GROUP = 'system:unauthenticated';

/**
 * Compiles one approval block at `field` (e.g. `spec.rules[3].approval`); undefined when it has a
 * problem (reported in `issues`), so that a broken block never yields weaker settings.
 */
export function compileApproval(approval: AccessPolicyApproval, field: string, issues: PolicyIssue[]): ApprovalSettings | undefined {
  const before = issues.length;
  const groups = approval.reviewers.groups ?? [];
  const users = approval.reviewers.users ?? [];
  const reviewersField = `${field}.reviewers`;
  if (groups.length === 0 && users.length === 0) {
    issues.push({ field: reviewersField, message: 'at least one group or user is required (who may review the statements this holds)' });
  }
  checkNames(groups, `${reviewersField}.groups`, issues, (group) =>
    SERVICE_ACCOUNT_GROUPS.test(group)
      ? 'only service accounts are in this group, and service accounts never review'
      : group === UNAUTHENTICATED_GROUP ? 'an unauthenticated reviewer is never accepted' : undefined);
  checkNames(users, `${reviewersField}.users`, issues, (user) =>
    user.startsWith(SERVICE_ACCOUNT_USER_PREFIX) ? 'service accounts never review (workloads and bots cannot approve)' : undefined);

  const minApprovals = bounded(approval.minApprovals, APPROVAL_LIMITS.minApprovals, `${field}.minApprovals`, issues);
  // Without groups, only the listed users can approve: more approvals than users never decide.
  if (groups.length === 0 && users.length > 0 && minApprovals > users.length) {
    issues.push({ field: `${field}.minApprovals`, message: `needs ${minApprovals} distinct reviewers, but only ${users.length} users are listed and no groups` });
  }

  const mode = approval.mode ?? 'hold';
  const ttlSeconds = bounded(approval.ttlSeconds, APPROVAL_LIMITS.ttlSeconds, `${field}.ttlSeconds`, issues);
  let holdTimeoutSeconds: number;
  if (approval.holdTimeoutSeconds !== undefined) {
    if (mode !== 'hold') issues.push({ field: `${field}.holdTimeoutSeconds`, message: `only applies to mode hold, not ${mode}` });
    holdTimeoutSeconds = bounded(approval.holdTimeoutSeconds, APPROVAL_LIMITS.holdTimeoutSeconds, `${field}.holdTimeoutSeconds`, issues);
    // A held statement can never outlive its request: past the TTL nobody may approve it anyway.
    if (holdTimeoutSeconds > ttlSeconds) {
      issues.push({ field: `${field}.holdTimeoutSeconds`, message: `must not exceed ttlSeconds (${ttlSeconds}): a request cannot be approved after it expires` });
    }
  } else {
    holdTimeoutSeconds = Math.min(APPROVAL_LIMITS.holdTimeoutSeconds.default, ttlSeconds);
  }

  let grant: ApprovalSettings['grant'] = { scope: 'once' };
  const scope = approval.grant?.scope ?? 'once';
  const windowSeconds = approval.grant?.windowSeconds;
  if (scope === 'window') {
    if (windowSeconds === undefined) issues.push({ field: `${field}.grant.windowSeconds`, message: 'required with scope window (how long the grant lasts)' });
    else grant = { scope: 'window', windowSeconds: bounded(windowSeconds, { ...APPROVAL_LIMITS.windowSeconds, default: windowSeconds }, `${field}.grant.windowSeconds`, issues) };
  } else if (windowSeconds !== undefined) {
    issues.push({ field: `${field}.grant.windowSeconds`, message: 'only applies to scope window, not once' });
  }

  if (issues.length > before) return undefined;
  return {
    reviewers: { groups: [...groups], users: [...users] },
    minApprovals,
    mode,
    holdTimeoutSeconds,
    ttlSeconds,
    grant,
  };
}

/**
 * Compiles `spec.reviewerAuthentication`; undefined when it has a problem. `issuers` are the
 * policy's trusted caller-token issuers: sharing one of them *and* its audience would let a
 * database caller token (which the requester holds) pass as a review token.
 */
export function compileReviewerAuthentication(
  source: AccessPolicyReviewerAuthentication,
  field: string,
  issuers: readonly AccessPolicyIssuer[],
  issues: PolicyIssue[],
): ReviewerAuthentication | undefined {
  const before = issues.length;
  if ((source.jwksUri === undefined) === (source.jwksFile === undefined)) issues.push({ field, message: 'exactly one of jwksUri or jwksFile must be set' });
  for (const [i, issuer] of issuers.entries()) {
    if (issuer.issuer === source.issuer && issuer.audience === source.audience) {
      issues.push({
        field: `${field}.audience`,
        message: `equals the audience of spec.issuers[${i}] (same issuer): a database caller token would be accepted as a review; give review tokens their own audience`,
      });
    }
  }
  for (const key of ['usernameClaim', 'groupsClaim'] as const) {
    if (source[key]?.trim() === '') issues.push({ field: `${field}.${key}`, message: 'must not be empty' });
  }
  const maxTokenAgeSeconds = bounded(
    source.maxTokenAgeSeconds,
    { ...MAX_TOKEN_AGE, default: REVIEWER_AUTHENTICATION_DEFAULTS.maxTokenAgeSeconds },
    `${field}.maxTokenAgeSeconds`,
    issues,
  );
  if (issues.length > before) return undefined;
  return {
    issuer: source.issuer,
    audience: source.audience,
    ...(source.jwksUri !== undefined ? { jwksUri: source.jwksUri } : {}),
    ...(source.jwksFile !== undefined ? { jwksFile: source.jwksFile } : {}),
    usernameClaim: source.usernameClaim ?? REVIEWER_AUTHENTICATION_DEFAULTS.usernameClaim,
    groupsClaim: source.groupsClaim ?? REVIEWER_AUTHENTICATION_DEFAULTS.groupsClaim,
    maxTokenAgeSeconds,
  };
}

/** An integer within [min, max], or the default when absent; out of range is reported. */
function bounded(value: number | undefined, limits: { readonly default: number; readonly min: number; readonly max: number }, field: string, issues: PolicyIssue[]): number {
  if (value === undefined) return limits.default;
  if (!Number.isInteger(value) || value < limits.min || value > limits.max) {
    issues.push({ field, message: `must be an integer from ${limits.min} to ${limits.max}, got ${value}` });
  }
  return value;
}

function checkNames(names: readonly string[], field: string, issues: PolicyIssue[], refusal: (name: string) => string | undefined): void {
  const seen = new Set<string>();
  for (const [i, name] of names.entries()) {
    if (name.trim() === '') issues.push({ field: `${field}[${i}]`, message: 'must not be empty' });
    else if (seen.has(name)) issues.push({ field: `${field}[${i}]`, message: `duplicate "${name}"` });
    const why = refusal(name);
    if (why !== undefined) issues.push({ field: `${field}[${i}]`, message: `"${name}": ${why}` });
    seen.add(name);
  }
}
