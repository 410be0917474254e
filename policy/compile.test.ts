import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { AccessPolicy, AccessPolicySpec } from '../crds/generated/access-policy.ts';
import { parsePolicyYaml } from '../crds/validate-document.ts';
import { isCustosError } from '../lib/errors.ts';
import { compilePolicy, PolicyValidationError } from './compile.ts';

function baseSpec(): AccessPolicySpec {
  return {
    issuers: [{ issuer: 'https://idp.example', audience: 'custos', jwksUri: 'https://idp.example/jwks' }],
    subjects: [
      { name: 'reporter', serviceAccount: { name: 'reporter' } },
      { name: 'ci', oidc: { issuer: 'https://idp.example', claims: [{ claim: 'repository', equals: 'acme/billing' }] } },
    ],
    targets: [{ name: 'billing', protocol: 'postgres', host: 'db', port: 5432, clientAuthentication: 'caller-token' }],
    rules: [
      { name: 'deny-ddl', match: { sql: { statements: ['ddl'] } }, action: 'deny' },
      { name: 'allow-reads', subjects: ['ci', 'reporter'], targets: ['billing'], match: { sql: { statements: ['read'], objects: ['public.*'] } }, action: 'allow' },
    ],
  };
}

function policyOf(spec: AccessPolicySpec, namespace?: string): AccessPolicy {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'billing', ...(namespace !== undefined ? { namespace } : {}) },
    spec,
  };
}

const REVIEWER_AUTH = { issuer: 'https://idp.example', audience: 'custos-review', jwksUri: 'https://idp.example/jwks' } as const;

/** Adds, as spec.rules[2], a require-approval rule with a minimal approval block. */
function approvalSpec(spec: AccessPolicySpec): void {
  spec.rules.push({ name: 'approve-unfiltered', match: { sql: { where: 'missing-or-constant' } }, action: 'require-approval', approval: { reviewers: { groups: ['dba'] } } });
}

interface InvalidCase {
  readonly name: string;
  readonly edit: (spec: AccessPolicySpec) => void;
  readonly field: string;
  readonly message: RegExp;
}

/* eslint-disable @typescript-eslint/no-non-null-assertion -- the base spec has these entries */
const INVALID: readonly InvalidCase[] = [
  { name: 'a rule names an unknown target', edit: (s) => { s.rules[1]!.targets = ['billng']; }, field: 'spec.rules[1].targets[0]', message: /unknown target "billng"/ },
  { name: 'a rule names an unknown subject', edit: (s) => { s.rules[1]!.subjects = ['ci', 'cj']; }, field: 'spec.rules[1].subjects[1]', message: /unknown subject "cj"/ },
  { name: 'two targets share a name', edit: (s) => { s.targets.push({ ...s.targets[0]!, host: 'other' }); }, field: 'spec.targets[1].name', message: /duplicate target name "billing"/ },
  { name: 'two subjects share a name', edit: (s) => { s.subjects!.push({ name: 'ci', serviceAccount: { name: 'x' } }); }, field: 'spec.subjects[2].name', message: /duplicate subject name "ci"/ },
  { name: 'two rules share a name', edit: (s) => { s.rules.push({ name: 'deny-ddl', action: 'deny' }); }, field: 'spec.rules[2].name', message: /duplicate rule name "deny-ddl"/ },
  { name: 'two issuers share an issuer value', edit: (s) => { s.issuers!.push({ issuer: 'https://idp.example', audience: 'other', jwksFile: '/k' }); }, field: 'spec.issuers[1].issuer', message: /duplicate issuer "https:\/\/idp.example"/ },
  { name: 'an issuer has both JWKS sources', edit: (s) => { s.issuers![0]!.jwksFile = '/k'; }, field: 'spec.issuers[0]', message: /exactly one of jwksUri or jwksFile/ },
  { name: 'an issuer has no JWKS source', edit: (s) => { delete s.issuers![0]!.jwksUri; }, field: 'spec.issuers[0]', message: /exactly one of jwksUri or jwksFile/ },
  { name: 'a subject has both identities', edit: (s) => { s.subjects![0]!.oidc = { issuer: 'https://idp.example' }; }, field: 'spec.subjects[0]', message: /exactly one of serviceAccount or oidc/ },
  { name: 'a subject has no identity', edit: (s) => { delete s.subjects![0]!.serviceAccount; }, field: 'spec.subjects[0]', message: /exactly one of serviceAccount or oidc/ },
  { name: "an oidc subject's issuer is not trusted", edit: (s) => { s.subjects![1]!.oidc!.issuer = 'https://idp.example/'; }, field: 'spec.subjects[1].oidc.issuer', message: /"https:\/\/idp.example\/" is not in spec.issuers/ },
  { name: 'a claim matcher has no condition', edit: (s) => { s.subjects![1]!.oidc!.claims = [{ claim: 'sub' }]; }, field: 'spec.subjects[1].oidc.claims[0]', message: /exactly one of equals, in or glob/ },
  { name: 'a claim matcher has two conditions', edit: (s) => { s.subjects![1]!.oidc!.claims = [{ claim: 'sub', equals: 'a', glob: 'b*' }]; }, field: 'spec.subjects[1].oidc.claims[0]', message: /exactly one of equals, in or glob/ },
  { name: 'a claim matcher has an empty in list', edit: (s) => { s.subjects![1]!.oidc!.claims = [{ claim: 'sub', in: [] }]; }, field: 'spec.subjects[1].oidc.claims[0].in', message: /must not be empty/ },
  { name: 'a claim path has an empty segment', edit: (s) => { s.subjects![1]!.oidc!.claims = [{ claim: 'a..b', equals: 'x' }]; }, field: 'spec.subjects[1].oidc.claims[0].claim', message: /empty segment/ },
  { name: 'a caller-token target has no issuer to verify with', edit: (s) => { delete s.issuers; s.subjects!.pop(); s.rules[1]!.subjects = ['reporter']; }, field: 'spec.targets[0].clientAuthentication', message: /caller-token needs at least one entry in spec.issuers/ },
  { name: 'an object pattern is not schema-qualified', edit: (s) => { s.rules[1]!.match = { sql: { objects: ['invoices'] } }; }, field: 'spec.rules[1].match.sql.objects[0]', message: /expected schema.name/ },
  { name: 'a function pattern has an empty name', edit: (s) => { s.rules[1]!.match = { sql: { functions: ['pg_catalog.'] } }; }, field: 'spec.rules[1].match.sql.functions[0]', message: /expected schema.name/ },
  { name: 'a statements list is empty', edit: (s) => { s.rules[0]!.match = { sql: { statements: [] } }; }, field: 'spec.rules[0].match.sql.statements', message: /must not be empty/ },
  { name: 'a copy list is empty', edit: (s) => { s.rules[0]!.match = { sql: { copy: [] } }; }, field: 'spec.rules[0].match.sql.copy', message: /must not be empty/ },
  { name: 'a rule lists no targets', edit: (s) => { s.rules[0]!.targets = []; }, field: 'spec.rules[0].targets', message: /must not be empty/ },
  // Approvals (index 2 is the require-approval rule of approvalSpec, applied first by these edits).
  { name: 'a require-approval rule has no approval block', edit: (s) => { approvalSpec(s); delete s.rules[2]!.approval; }, field: 'spec.rules[2].approval', message: /required with action require-approval/ },
  { name: 'an approval block names no reviewer', edit: (s) => { approvalSpec(s); s.rules[2]!.approval = { reviewers: {} }; }, field: 'spec.rules[2].approval.reviewers', message: /at least one group or user is required/ },
  { name: 'an approval block has empty reviewer lists', edit: (s) => { approvalSpec(s); s.rules[2]!.approval = { reviewers: { groups: [], users: [] } }; }, field: 'spec.rules[2].approval.reviewers', message: /at least one group or user/ },
  { name: 'a deny rule carries an approval block', edit: (s) => { approvalSpec(s); s.rules[0]!.approval = { reviewers: { groups: ['dba'] } }; }, field: 'spec.rules[0].approval', message: /only applies to action require-approval, not deny/ },
  { name: 'an allow rule carries an approval block', edit: (s) => { approvalSpec(s); s.rules[1]!.approval = { reviewers: { groups: ['dba'] } }; }, field: 'spec.rules[1].approval', message: /only applies to action require-approval, not allow/ },
  { name: 'a window grant has no windowSeconds', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.grant = { scope: 'window' }; }, field: 'spec.rules[2].approval.grant.windowSeconds', message: /required with scope window/ },
  { name: 'a once grant has windowSeconds', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.grant = { scope: 'once', windowSeconds: 600 }; }, field: 'spec.rules[2].approval.grant.windowSeconds', message: /only applies to scope window/ },
  { name: 'the hold timeout outlasts the request', edit: (s) => { approvalSpec(s); Object.assign(s.rules[2]!.approval!, { ttlSeconds: 600, holdTimeoutSeconds: 900 }); }, field: 'spec.rules[2].approval.holdTimeoutSeconds', message: /must not exceed ttlSeconds \(600\)/ },
  { name: 'a return-mode rule sets a hold timeout', edit: (s) => { approvalSpec(s); Object.assign(s.rules[2]!.approval!, { mode: 'return', holdTimeoutSeconds: 60 }); }, field: 'spec.rules[2].approval.holdTimeoutSeconds', message: /only applies to mode hold, not return/ },
  { name: 'minApprovals exceeds the listed users and no group is named', edit: (s) => { approvalSpec(s); s.rules[2]!.approval = { reviewers: { users: ['a@x', 'b@x'] }, minApprovals: 3 }; }, field: 'spec.rules[2].approval.minApprovals', message: /needs 3 distinct reviewers, but only 2 users/ },
  { name: 'minApprovals is above the maximum', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.minApprovals = 11; }, field: 'spec.rules[2].approval.minApprovals', message: /from 1 to 10, got 11/ },
  { name: 'minApprovals is zero', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.minApprovals = 0; }, field: 'spec.rules[2].approval.minApprovals', message: /from 1 to 10, got 0/ },
  { name: 'ttlSeconds is above a day', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.ttlSeconds = 86401; }, field: 'spec.rules[2].approval.ttlSeconds', message: /from 60 to 86400/ },
  { name: 'the hold timeout is above an hour', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.holdTimeoutSeconds = 3601; }, field: 'spec.rules[2].approval.holdTimeoutSeconds', message: /from 1 to 3600/ },
  { name: 'a window is longer than 8 hours', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.grant = { scope: 'window', windowSeconds: 28801 }; }, field: 'spec.rules[2].approval.grant.windowSeconds', message: /from 60 to 28800/ },
  { name: 'a reviewer is a service account', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.reviewers.users = ['system:serviceaccount:payments:api']; }, field: 'spec.rules[2].approval.reviewers.users[0]', message: /service accounts never review/ },
  { name: 'a reviewer group holds only service accounts', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.reviewers.groups = ['dba', 'system:serviceaccounts:payments']; }, field: 'spec.rules[2].approval.reviewers.groups[1]', message: /only service accounts are in this group/ },
  { name: 'the reviewer group is the unauthenticated group', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.reviewers.groups = ['system:unauthenticated']; }, field: 'spec.rules[2].approval.reviewers.groups[0]', message: /unauthenticated reviewer/ },
  { name: 'a reviewer group is listed twice', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.reviewers.groups = ['dba', 'dba']; }, field: 'spec.rules[2].approval.reviewers.groups[1]', message: /duplicate "dba"/ },
  { name: 'a reviewer user is blank', edit: (s) => { approvalSpec(s); s.rules[2]!.approval!.reviewers.users = [' ']; }, field: 'spec.rules[2].approval.reviewers.users[0]', message: /must not be empty/ },
  { name: 'defaultAction asks for approval without defaultApproval', edit: (s) => { s.defaultAction = 'require-approval'; }, field: 'spec.defaultApproval', message: /required by defaultAction: require-approval/ },
  { name: 'masking predicates ask for approval without defaultApproval', edit: (s) => { s.masking = { predicates: 'require-approval', columns: [{ column: 'public.t.c', strategy: 'redact' }] }; }, field: 'spec.defaultApproval', message: /required by masking.predicates: require-approval/ },
  { name: 'defaultApproval is given but nothing uses it', edit: (s) => { s.defaultApproval = { reviewers: { groups: ['dba'] } }; }, field: 'spec.defaultApproval', message: /has no effect/ },
  { name: 'defaultApproval names no reviewer', edit: (s) => { s.defaultAction = 'require-approval'; s.defaultApproval = { reviewers: {} }; }, field: 'spec.defaultApproval.reviewers', message: /at least one group or user/ },
  { name: 'reviewer authentication has both JWKS sources', edit: (s) => { s.reviewerAuthentication = { ...REVIEWER_AUTH, jwksFile: '/k' }; }, field: 'spec.reviewerAuthentication', message: /exactly one of jwksUri or jwksFile/ },
  { name: 'reviewer authentication has no JWKS source', edit: (s) => { s.reviewerAuthentication = { issuer: REVIEWER_AUTH.issuer, audience: REVIEWER_AUTH.audience }; }, field: 'spec.reviewerAuthentication', message: /exactly one of jwksUri or jwksFile/ },
  { name: 'review tokens share issuer and audience with caller tokens', edit: (s) => { s.reviewerAuthentication = { ...REVIEWER_AUTH, audience: 'custos' }; }, field: 'spec.reviewerAuthentication.audience', message: /equals the audience of spec.issuers\[0\].*caller token would be accepted as a review/ },
  { name: 'the review token age is above an hour', edit: (s) => { s.reviewerAuthentication = { ...REVIEWER_AUTH, maxTokenAgeSeconds: 7200 }; }, field: 'spec.reviewerAuthentication.maxTokenAgeSeconds', message: /from 30 to 3600/ },
  { name: 'the groups claim is blank', edit: (s) => { s.reviewerAuthentication = { ...REVIEWER_AUTH, groupsClaim: ' ' }; }, field: 'spec.reviewerAuthentication.groupsClaim', message: /must not be empty/ },
];
/* eslint-enable @typescript-eslint/no-non-null-assertion */

describe('compilePolicy', () => {
  it('compiles a valid policy with defaults when optional fields are absent', () => {
    const compiled = compilePolicy(policyOf(baseSpec(), 'payments'));
    assert.equal(compiled.name, 'billing');
    assert.equal(compiled.namespace, 'payments');
    assert.equal(compiled.defaultAction, 'deny');
    assert.match(compiled.version, /^[0-9a-f]{12}$/);
    assert.deepEqual([...compiled.targets.keys()], ['billing']);
    assert.equal(compiled.issuers.length, 1);
    assert.deepEqual(compiled.rules.map((r) => r.name), ['deny-ddl', 'allow-reads']);
  });

  it('expands statement groups into kinds when a rule names ddl, dml, read or write', () => {
    const spec = baseSpec();
    spec.rules = [
      { name: 'ddl', match: { sql: { statements: ['ddl'] } }, action: 'deny' },
      { name: 'dml', match: { sql: { statements: ['dml'] } }, action: 'deny' },
      { name: 'read', match: { sql: { statements: ['read', 'set'] } }, action: 'deny' },
      { name: 'write', match: { sql: { statements: ['write'] } }, action: 'deny' },
    ];
    const kinds = compilePolicy(policyOf(spec)).rules.map((r) => [...(r.kinds ?? [])].sort());
    assert.deepEqual(kinds, [
      ['alter', 'create', 'create-function', 'drop', 'grant', 'revoke', 'truncate'],
      ['copy-from', 'delete', 'insert', 'merge', 'update'],
      ['copy-to', 'declare', 'explain', 'fetch', 'select', 'set', 'show'],
      ['alter', 'copy-from', 'create', 'create-function', 'delete', 'drop', 'grant', 'insert', 'merge', 'revoke', 'truncate', 'update'],
    ]);
  });

  it('keeps a given version and derives a stable one from the spec otherwise', () => {
    assert.equal(compilePolicy(policyOf(baseSpec()), { version: 'abc123' }).version, 'abc123');
    const a = compilePolicy(policyOf(baseSpec())).version;
    const reordered = baseSpec();
    reordered.targets = [{ port: 5432, host: 'db', protocol: 'postgres', name: 'billing', clientAuthentication: 'caller-token' }];
    assert.equal(compilePolicy(policyOf(reordered)).version, a, 'key order does not change the version');
    const changed = baseSpec();
    changed.defaultAction = 'allow';
    assert.notEqual(compilePolicy(policyOf(changed)).version, a);
  });

  it('compiles masking to null when the masking object is empty', () => {
    const spec = baseSpec();
    spec.masking = {};
    assert.equal(compilePolicy(policyOf(spec)).masking, null);
    assert.equal(compilePolicy(policyOf(baseSpec())).masking, null);
  });

  it('compiles masking rules when columns are given', () => {
    const spec = baseSpec();
    spec.masking = { exemptSubjects: ['reporter'], columns: [{ column: 'public.customers.email', strategy: 'partial', keepFirst: 1 }] };
    const masking = compilePolicy(policyOf(spec)).masking;
    assert.deepEqual(masking?.columns, [{ schema: 'public', table: 'customers', column: 'email', strategy: { kind: 'partial', keepFirst: 1, keepLast: 4 } }]);
    assert.deepEqual(masking.exemptSubjects.map((s) => s.name), ['reporter']);
  });

  it('compiles examples/policy.yaml', () => {
    const document = parsePolicyYaml(readFileSync(new URL('../examples/policy.yaml', import.meta.url), 'utf8'), 'examples/policy.yaml');
    const compiled = compilePolicy(document);
    assert.equal(compiled.namespace, 'payments');
    assert.ok(compiled.rules.length > 0);
  });

  describe('semantic errors', () => {
    for (const c of INVALID) {
      it(`names ${c.field} when ${c.name}`, () => {
        const spec = baseSpec();
        c.edit(spec);
        assert.throws(() => compilePolicy(policyOf(spec)), (e: unknown) => {
          assert.ok(e instanceof PolicyValidationError, String(e));
          assert.ok(isCustosError(e, 'ERR_POLICY_INVALID'));
          assert.equal(e.field, c.field);
          assert.match(e.issues[0]?.message ?? '', c.message);
          assert.ok(e.message.startsWith(`${c.field}: `), e.message);
          return true;
        });
      });
    }

    it('reports every problem when there are several', () => {
      const spec = baseSpec();
      spec.rules[1] = { name: 'allow-reads', targets: ['nope'], subjects: ['nobody'], action: 'allow' };
      spec.masking = { columns: [{ column: 'customers.email', strategy: 'redact' }] };
      assert.throws(() => compilePolicy(policyOf(spec)), (e: unknown) => {
        assert.ok(e instanceof PolicyValidationError);
        assert.deepEqual(e.issues.map((i) => i.field), ['spec.rules[1].targets[0]', 'spec.rules[1].subjects[0]', 'spec.masking.columns[0].column']);
        assert.equal(e.message.split('\n').length, 3);
        return true;
      });
    });
  });
});
