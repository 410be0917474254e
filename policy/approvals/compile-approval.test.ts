import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import type { AccessPolicy, AccessPolicyApproval, AccessPolicySpec } from '../../crds/generated/access-policy.ts';
import { parsePolicyYaml } from '../../crds/validate-document.ts';
import { compilePolicy } from '../compile.ts';
import type { PolicyIssue } from '../policy-validation-error.ts';
import type { ApprovalSettings } from './approval-types.ts';
import { compileApproval, compileReviewerAuthentication } from './compile-approval.ts';

function spec(approval: AccessPolicyApproval): AccessPolicySpec {
  return {
    targets: [{ name: 'billing', protocol: 'postgres', host: 'db', port: 5432 }],
    rules: [{ name: 'approve-unfiltered', match: { sql: { where: 'missing-or-constant' } }, action: 'require-approval', approval }],
  };
}

function document(s: AccessPolicySpec): AccessPolicy {
  return { apiVersion: 'custos.io/v1alpha1', kind: 'AccessPolicy', metadata: { name: 'p', namespace: 'payments' }, spec: s };
}

describe('compileApproval', () => {
  const DEFAULTS: ApprovalSettings = { reviewers: { groups: ['dba'], users: [] }, minApprovals: 1, mode: 'hold', holdTimeoutSeconds: 300, ttlSeconds: 3600, grant: { scope: 'once' } };
  const cases: ReadonlyArray<{ readonly name: string; readonly approval: AccessPolicyApproval; readonly settings: ApprovalSettings }> = [
    { name: 'only reviewers are given', approval: { reviewers: { groups: ['dba'] } }, settings: DEFAULTS },
    { name: 'only users review', approval: { reviewers: { users: ['alice@example.com'] } }, settings: { ...DEFAULTS, reviewers: { groups: [], users: ['alice@example.com'] } } },
    { name: 'the TTL is shorter than the default hold', approval: { reviewers: { groups: ['dba'] }, ttlSeconds: 120 }, settings: { ...DEFAULTS, ttlSeconds: 120, holdTimeoutSeconds: 120 } },
    { name: 'the hold timeout equals the TTL', approval: { reviewers: { groups: ['dba'] }, ttlSeconds: 600, holdTimeoutSeconds: 600 }, settings: { ...DEFAULTS, ttlSeconds: 600, holdTimeoutSeconds: 600 } },
    { name: 'return mode is chosen', approval: { reviewers: { groups: ['dba'] }, mode: 'return' }, settings: { ...DEFAULTS, mode: 'return' } },
    { name: 'a window grant is given', approval: { reviewers: { groups: ['dba'] }, grant: { scope: 'window', windowSeconds: 1800 } }, settings: { ...DEFAULTS, grant: { scope: 'window', windowSeconds: 1800 } } },
    { name: 'every maximum is used', approval: { reviewers: { groups: ['dba'] }, minApprovals: 10, holdTimeoutSeconds: 3600, ttlSeconds: 86400, grant: { scope: 'window', windowSeconds: 28800 } }, settings: { ...DEFAULTS, minApprovals: 10, holdTimeoutSeconds: 3600, ttlSeconds: 86400, grant: { scope: 'window', windowSeconds: 28800 } } },
    { name: 'as many users as approvals are listed', approval: { reviewers: { users: ['a@x', 'b@x'] }, minApprovals: 2 }, settings: { ...DEFAULTS, reviewers: { groups: [], users: ['a@x', 'b@x'] }, minApprovals: 2 } },
  ];
  for (const c of cases) {
    it(`applies the defaults and keeps the given values when ${c.name}`, () => {
      const issues: PolicyIssue[] = [];
      assert.deepEqual(compileApproval(c.approval, 'spec.rules[0].approval', issues), c.settings);
      assert.deepEqual(issues, []);
      // The same through the whole compiler: the rule carries the settings.
      assert.deepEqual(compilePolicy(document(spec(c.approval))).rules[0]?.approval, c.settings);
    });
  }

  it('yields no settings when the block has a problem, so a broken block never weakens a request', () => {
    const issues: PolicyIssue[] = [];
    assert.equal(compileApproval({ reviewers: { groups: ['dba'] }, grant: { scope: 'window' } }, 'x', issues), undefined);
    assert.deepEqual(issues.map((i) => i.field), ['x.grant.windowSeconds']);
  });

  it('reports every problem of a block together', () => {
    const issues: PolicyIssue[] = [];
    compileApproval({ reviewers: { users: ['system:serviceaccount:ns:sa'] }, minApprovals: 2, mode: 'return', holdTimeoutSeconds: 30 }, 'a', issues);
    assert.deepEqual(issues.map((i) => i.field), ['a.reviewers.users[0]', 'a.minApprovals', 'a.holdTimeoutSeconds']);
  });
});

describe('compileReviewerAuthentication', () => {
  it('applies the defaults (email, groups, 600 s) when only the issuer, audience and keys are given', () => {
    const issues: PolicyIssue[] = [];
    const compiled = compileReviewerAuthentication({ issuer: 'https://login.example', audience: 'custos-reviews', jwksFile: '/keys.json' }, 'r', [], issues);
    assert.deepEqual(compiled, { issuer: 'https://login.example', audience: 'custos-reviews', jwksFile: '/keys.json', usernameClaim: 'email', groupsClaim: 'groups', maxTokenAgeSeconds: 600 });
    assert.deepEqual(issues, []);
  });

  it('accepts the issuer of caller tokens when review tokens have their own audience', () => {
    const issues: PolicyIssue[] = [];
    const issuers = [{ issuer: 'https://login.example', audience: 'custos', jwksFile: '/k' }];
    const compiled = compileReviewerAuthentication({ issuer: 'https://login.example', audience: 'custos-reviews', jwksUri: 'https://login.example/jwks', usernameClaim: 'preferred_username', maxTokenAgeSeconds: 60 }, 'r', issuers, issues);
    assert.equal(compiled?.usernameClaim, 'preferred_username');
    assert.equal(compiled.maxTokenAgeSeconds, 60);
    assert.deepEqual(issues, []);
  });

  it('is exposed on the compiled policy, and null when absent', () => {
    const withAuth = { ...spec({ reviewers: { groups: ['dba'] } }), reviewerAuthentication: { issuer: 'https://login.example', audience: 'custos-reviews', jwksFile: '/k' } };
    assert.equal(compilePolicy(document(withAuth)).reviewerAuthentication?.groupsClaim, 'groups');
    assert.equal(compilePolicy(document(spec({ reviewers: { groups: ['dba'] } }))).reviewerAuthentication, null);
  });
});

describe('spec.defaultApproval', () => {
  it('is compiled for the default action and carried by masking for conditions on masked columns', () => {
    const s: AccessPolicySpec = {
      ...spec({ reviewers: { groups: ['dba'] } }),
      defaultAction: 'require-approval',
      defaultApproval: { reviewers: { groups: ['privacy'] }, mode: 'return' },
      masking: { predicates: 'require-approval', columns: [{ column: 'public.customers.ssn', strategy: 'redact' }] },
    };
    const compiled = compilePolicy(document(s));
    assert.deepEqual(compiled.defaultApproval?.reviewers, { groups: ['privacy'], users: [] });
    assert.equal(compiled.defaultApproval.mode, 'return');
    assert.equal(compiled.masking?.predicatesApproval, compiled.defaultApproval);
  });

  it('is null, and masking carries nothing, when no decision outside the rules asks for approval', () => {
    const s: AccessPolicySpec = { ...spec({ reviewers: { groups: ['dba'] } }), masking: { predicates: 'deny', columns: [{ column: 'public.customers.ssn', strategy: 'redact' }] } };
    const compiled = compilePolicy(document(s));
    assert.equal(compiled.defaultApproval, null);
    assert.equal(compiled.masking?.predicatesApproval, undefined);
  });
});

describe('the approval schema (crds/accesspolicy.yaml)', () => {
  const yamlOf = (approval: unknown): string => stringify(document({ ...spec({ reviewers: { groups: ['dba'] } }), rules: [{ name: 'r', action: 'require-approval', approval } as never] }));
  const cases: ReadonlyArray<{ readonly name: string; readonly approval: unknown; readonly error: RegExp }> = [
    { name: 'reviewers is missing', approval: {}, error: /spec\.rules\[0\]\.approval\.reviewers: Required value/ },
    { name: 'reviewers names neither groups nor users', approval: { reviewers: {} }, error: /spec\.rules\[0\]\.approval\.reviewers: Required value: at least one of groups or users must be set/ },
    { name: 'the groups list is empty', approval: { reviewers: { groups: [] } }, error: /spec\.rules\[0\]\.approval\.reviewers\.groups: Invalid value: 0: .* should have at least 1 items/ },
    { name: 'the mode is unknown', approval: { reviewers: { groups: ['dba'] }, mode: 'wait' }, error: /spec\.rules\[0\]\.approval\.mode: Unsupported value: "wait": supported values: "hold", "return"/ },
    { name: 'minApprovals is above 10', approval: { reviewers: { groups: ['dba'] }, minApprovals: 11 }, error: /spec\.rules\[0\]\.approval\.minApprovals: Invalid value: 11: .* should be less than or equal to 10/ },
    { name: 'ttlSeconds is below a minute', approval: { reviewers: { groups: ['dba'] }, ttlSeconds: 59 }, error: /spec\.rules\[0\]\.approval\.ttlSeconds: Invalid value: 59: .* should be greater than or equal to 60/ },
    { name: 'holdTimeoutSeconds is above an hour', approval: { reviewers: { groups: ['dba'] }, holdTimeoutSeconds: 3601 }, error: /spec\.rules\[0\]\.approval\.holdTimeoutSeconds: Invalid value: 3601: .* should be less than or equal to 3600/ },
    { name: 'the grant scope is missing', approval: { reviewers: { groups: ['dba'] }, grant: { windowSeconds: 60 } }, error: /spec\.rules\[0\]\.approval\.grant\.scope: Required value/ },
    { name: 'windowSeconds is above 8 hours', approval: { reviewers: { groups: ['dba'] }, grant: { scope: 'window', windowSeconds: 28801 } }, error: /spec\.rules\[0\]\.approval\.grant\.windowSeconds: Invalid value: 28801: .* should be less than or equal to 28800/ },
    { name: 'a field is misspelt', approval: { reviewers: { groups: ['dba'] }, minApproval: 2 }, error: /spec\.rules\[0\]\.approval\.minApproval: field not declared in schema/ },
  ];
  for (const c of cases) {
    it(`refuses the policy, naming the field, when ${c.name}`, () => {
      assert.throws(() => parsePolicyYaml(yamlOf(c.approval), 'p.yaml'), c.error);
    });
  }

  it('refuses reviewerAuthentication without a key source, naming both options', () => {
    const text = stringify(document({ ...spec({ reviewers: { groups: ['dba'] } }), reviewerAuthentication: { issuer: 'https://login.example', audience: 'a' } }));
    assert.throws(() => parsePolicyYaml(text, 'p.yaml'), /spec\.reviewerAuthentication: Required value: exactly one of jwksUri or jwksFile must be set/);
  });

  it('accepts and compiles examples/approvals-policy.yaml', () => {
    const text = readFileSync(new URL('../../examples/approvals-policy.yaml', import.meta.url), 'utf8');
    const compiled = compilePolicy(parsePolicyYaml(text, 'examples/approvals-policy.yaml'));
    const approvals = Object.fromEntries(compiled.rules.filter((r) => r.approval !== undefined).map((r) => [r.name, r.approval]));
    assert.deepEqual(Object.keys(approvals), ['approve-unfiltered-writes', 'approve-truncate', 'approve-vacuum-window']);
    assert.equal(approvals['approve-truncate']?.mode, 'return');
    assert.deepEqual(approvals['approve-vacuum-window']?.grant, { scope: 'window', windowSeconds: 1800 });
    assert.equal(compiled.reviewerAuthentication?.audience, 'custos-reviews');
  });
});
