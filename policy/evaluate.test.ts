import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { AccessPolicyApproval, AccessPolicyRule, AccessPolicySpec } from '../crds/generated/access-policy.ts';
import { type CompiledPolicy, compilePolicy } from './compile.ts';
import { evaluate } from './evaluate.ts';
import { analyseSql, loadSqlParser } from './sql/parser.ts';
import type { Action, Principal, RequestIdentity } from './types.ts';

const ISSUER = 'https://idp.example';

function workload(namespace: string, serviceAccount: string): Principal {
  return {
    kind: 'workload',
    authMethod: 'k8s-sa',
    issuer: 'https://kubernetes.default.svc',
    subject: `system:serviceaccount:${namespace}:${serviceAccount}`,
    claims: { 'kubernetes.io': { namespace, serviceaccount: { name: serviceAccount } } },
    kubernetes: { namespace, serviceAccount },
  };
}

function caller(claims: Record<string, unknown>, issuer = ISSUER): Principal {
  return { kind: 'caller', authMethod: 'oidc', issuer, subject: typeof claims['sub'] === 'string' ? claims['sub'] : 'someone', claims };
}

function policy(rules: AccessPolicyRule[], extra: Partial<AccessPolicySpec> = {}): CompiledPolicy {
  return compilePolicy({
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'p', namespace: 'payments' },
    spec: {
      issuers: [
        { issuer: ISSUER, audience: 'custos', jwksUri: `${ISSUER}/jwks` },
        { issuer: 'https://kubernetes.default.svc', audience: 'custos', jwksFile: '/var/run/jwks.json' },
      ],
      subjects: [
        { name: 'reporter', serviceAccount: { name: 'reporter' } },
        { name: 'any-sa-in-ops', serviceAccount: { name: '*', namespace: 'ops' } },
        { name: 'ci', oidc: { issuer: ISSUER, claims: [{ claim: 'repository', equals: 'acme/billing' }, { claim: 'ref', in: ['refs/heads/main', 'refs/heads/release'] }, { claim: 'workflow', glob: 'deploy-*' }] } },
        { name: 'sre', oidc: { issuer: ISSUER, claims: [{ claim: 'groups', equals: 'sre' }] } },
        { name: 'payments-pods', oidc: { issuer: 'https://kubernetes.default.svc', claims: [{ claim: 'kubernetes.io.namespace', equals: 'payments' }] } },
        { name: 'numeric', oidc: { issuer: ISSUER, claims: [{ claim: 'level', equals: '5' }] } },
        { name: 'proto', oidc: { issuer: ISSUER, claims: [{ claim: 'constructor.name', equals: 'Object' }] } },
      ],
      targets: [
        { name: 'billing', protocol: 'postgres', host: 'db', port: 5432 },
        { name: 'analytics', protocol: 'postgres', host: 'dw', port: 5432 },
      ],
      rules,
      ...extra,
    },
  });
}

const DBA_APPROVAL: AccessPolicyApproval = { reviewers: { groups: ['dba'] } };

const CI_CLAIMS = { sub: 'repo:acme/billing', repository: 'acme/billing', ref: 'refs/heads/main', workflow: 'deploy-prod' };

interface Case {
  readonly name: string;
  readonly sql: string;
  readonly identity?: RequestIdentity;
  readonly target?: string;
  readonly searchPath?: readonly string[];
  readonly action: Action;
  readonly rule: string | null;
  readonly reason?: string;
}

function check(p: CompiledPolicy, c: Case): void {
  const decision = evaluate(p, {
    identity: c.identity ?? {},
    target: c.target ?? 'billing',
    sql: analyseSql(c.sql),
    ...(c.searchPath !== undefined ? { searchPath: c.searchPath } : {}),
  });
  assert.deepEqual({ action: decision.action, rule: decision.rule }, { action: c.action, rule: c.rule }, JSON.stringify(decision.statements.map((s) => [s.action, s.rule, s.facts?.kinds])));
  if (c.reason !== undefined) assert.equal(decision.reason, c.reason);
}

function table(title: string, p: () => CompiledPolicy, cases: readonly Case[]): void {
  describe(title, () => {
    let compiled: CompiledPolicy;
    before(() => {
      compiled = p();
    });
    for (const c of cases) {
      it(`${c.action === 'allow' ? 'allows' : c.action === 'deny' ? 'denies' : 'holds for approval'} ${JSON.stringify(c.sql)}${c.rule !== null ? ` by ${c.rule}` : ' by default'} when ${c.name}`, () => {
        check(compiled, c);
      });
    }
  });
}

describe('evaluate', () => {
  before(async () => {
    await loadSqlParser();
  });

  table('rule order and defaults', () => policy([
    { name: 'deny-drop', match: { sql: { statements: ['drop'] } }, action: 'deny', message: 'no drops' },
    { name: 'allow-drop-late', match: { sql: { statements: ['drop'] } }, action: 'allow' },
    { name: 'approve-truncate', match: { sql: { statements: ['truncate'] } }, action: 'require-approval', approval: DBA_APPROVAL },
    { name: 'allow-select', match: { sql: { statements: ['select'] } }, action: 'allow' },
  ]), [
    { name: 'an earlier deny rule matches', sql: 'DROP TABLE t', action: 'deny', rule: 'deny-drop', reason: 'rule-matched' },
    { name: 'the first matching rule asks for approval', sql: 'TRUNCATE t', action: 'require-approval', rule: 'approve-truncate' },
    { name: 'no rule matches (default deny)', sql: 'INSERT INTO t VALUES (1)', action: 'deny', rule: null, reason: 'default-action' },
    { name: 'an allow rule matches', sql: 'SELECT * FROM t', action: 'allow', rule: 'allow-select' },
    { name: 'the text does not parse', sql: 'SELEC * FROM t', action: 'deny', rule: null, reason: 'unparseable' },
    { name: 'a statement batch ends in a denied DROP', sql: 'SELECT 1; DROP TABLE t', action: 'deny', rule: 'deny-drop' },
    { name: 'the batch has an approval and a deny (deny wins)', sql: 'TRUNCATE t; SELECT 1; DROP TABLE t', action: 'deny', rule: 'deny-drop' },
    { name: 'the batch has an approval and an allow', sql: 'SELECT 1; TRUNCATE t', action: 'require-approval', rule: 'approve-truncate' },
    { name: 'the message is empty', sql: '  ', action: 'allow', rule: null, reason: 'empty' },
  ]);

  it('uses the default action the policy names when no rule matches', () => {
    for (const defaultAction of ['allow', 'deny', 'require-approval'] as const) {
      const extra = defaultAction === 'require-approval' ? { defaultAction, defaultApproval: DBA_APPROVAL } : { defaultAction };
      check(policy([], extra), { name: '', sql: 'SELECT 1', action: defaultAction, rule: null, reason: 'default-action' });
    }
  });

  it('gives the message of the first most restrictive statement', () => {
    const p = policy([
      { name: 'deny-drop', match: { sql: { statements: ['drop'] } }, action: 'deny', message: 'no drops' },
      { name: 'deny-truncate', match: { sql: { statements: ['truncate'] } }, action: 'deny', message: 'no truncates' },
    ], { defaultAction: 'allow' });
    const decision = evaluate(p, { identity: {}, target: 'billing', sql: analyseSql('SELECT 1; TRUNCATE t; DROP TABLE t') });
    assert.equal(decision.message, 'no truncates');
    assert.equal(decision.rule, 'deny-truncate');
    assert.deepEqual(decision.statements.map((s) => s.action), ['allow', 'deny', 'deny']);
    assert.deepEqual(decision.statements[2]?.facts?.kinds, ['drop']);
  });

  table('statement kinds and groups', () => policy([
    { name: 'deny-dml', match: { sql: { statements: ['dml'] } }, action: 'deny' },
    { name: 'allow-read', match: { sql: { statements: ['read', 'set', 'transaction'] } }, action: 'allow' },
  ]), [
    { name: 'a MERGE is dml', sql: 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', action: 'deny', rule: 'deny-dml' },
    { name: 'COPY FROM STDIN is dml', sql: 'COPY t FROM STDIN', action: 'deny', rule: 'deny-dml' },
    { name: 'DML hides in a CTE', sql: 'WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d', action: 'deny', rule: 'deny-dml' },
    { name: 'EXPLAIN ANALYZE runs a DELETE', sql: 'EXPLAIN ANALYZE DELETE FROM t WHERE id = 1', action: 'deny', rule: 'deny-dml' },
    { name: 'plain EXPLAIN only plans the DELETE', sql: 'EXPLAIN DELETE FROM t WHERE id = 1', action: 'allow', rule: 'allow-read' },
    { name: 'COPY TO STDOUT is a read', sql: 'COPY t TO STDOUT', action: 'allow', rule: 'allow-read' },
    { name: 'a cursor is a read', sql: 'DECLARE c CURSOR FOR SELECT * FROM t', action: 'allow', rule: 'allow-read' },
  ]);

  table('allow rules cover the whole statement', () => policy([
    { name: 'allow-reads', match: { sql: { statements: ['select', 'show', 'set', 'transaction', 'explain'] } }, action: 'allow' },
    { name: 'allow-invoice-writes', match: { sql: { statements: ['insert', 'update', 'delete'], objects: ['public.invoices'] } }, action: 'allow' },
    { name: 'allow-public-reads', match: { sql: { statements: ['select'], objects: ['public.*'] } }, action: 'allow' },
  ]), [
    // With "any kind" semantics, allow-reads would let these writes through because they also read.
    { name: 'an INSERT also selects', sql: 'INSERT INTO secrets SELECT * FROM invoices', action: 'deny', rule: null },
    { name: 'a read rule meets a CTE delete', sql: 'WITH d AS (DELETE FROM other WHERE id = 1 RETURNING *) SELECT * FROM d', action: 'deny', rule: null },
    { name: 'SELECT FOR UPDATE also locks', sql: 'SELECT * FROM t FOR UPDATE', action: 'deny', rule: null },
    { name: 'a write rule covers kinds and relation', sql: 'UPDATE invoices SET paid = true WHERE id = 1', action: 'allow', rule: 'allow-invoice-writes' },
    { name: 'a write rule meets a second relation', sql: 'DELETE FROM invoices USING customers WHERE invoices.cid = customers.id', action: 'deny', rule: null },
    { name: 'a batch also writes to a table no rule allows', sql: 'SELECT 1 FROM invoices; INSERT INTO other VALUES (1)', action: 'deny', rule: null },
    { name: 'every relation is in the allowed schema', sql: 'SELECT * FROM public.a JOIN public.b USING (id)', action: 'allow', rule: 'allow-reads' },
  ]);

  table('object patterns and unqualified names', () => policy([
    { name: 'deny-private', match: { sql: { objects: ['private.customers', 'vault.*'] } }, action: 'deny' },
    { name: 'allow-public-customers', match: { sql: { statements: ['select'], objects: ['public.customers'] } }, action: 'allow' },
    { name: 'allow-pg-catalog', match: { sql: { statements: ['select'], objects: ['pg_catalog.*'] } }, action: 'allow' },
  ]), [
    { name: 'a deny rule names the schema and the statement does not (any schema)', sql: 'DELETE FROM customers WHERE id = 1', action: 'deny', rule: 'deny-private' },
    { name: 'a deny rule meets the qualified name', sql: 'SELECT * FROM private.customers', action: 'deny', rule: 'deny-private' },
    { name: 'a schema-wide deny pattern meets any unqualified name', sql: 'SELECT * FROM keys', action: 'deny', rule: 'deny-private' },
    { name: 'a qualified name in another schema is not the denied one', sql: 'SELECT * FROM public.customers', action: 'allow', rule: 'allow-public-customers' },
    { name: 'quoting keeps case, so "Customers" is another table', sql: 'SELECT * FROM public."Customers"', action: 'deny', rule: null },
    { name: 'unquoted upper case folds to the allowed name', sql: 'SELECT * FROM PUBLIC.CUSTOMERS', action: 'allow', rule: 'allow-public-customers' },
  ]);

  table('search_path and allow rules', () => policy([
    { name: 'allow-public-customers', match: { sql: { statements: ['select'], objects: ['public.customers'] } }, action: 'allow' },
    { name: 'allow-set', match: { sql: { statements: ['set'] } }, action: 'allow' },
    { name: 'allow-any-schema-audit', match: { sql: { statements: ['select'], objects: ['*.audit_log'] } }, action: 'allow' },
    { name: 'allow-catalog', match: { sql: { statements: ['select'], objects: ['pg_catalog.pg_*'] } }, action: 'allow' },
  ]), [
    { name: 'the default search path is public', sql: 'SELECT * FROM customers', action: 'allow', rule: 'allow-public-customers' },
    { name: 'the search path is [public]', sql: 'SELECT * FROM customers', searchPath: ['public'], action: 'allow', rule: 'allow-public-customers' },
    // evil.customers, if it exists, wins over public.customers: the allow rule cannot vouch for it.
    { name: 'the search path puts evil first', sql: 'SELECT * FROM customers', searchPath: ['evil', 'public'], action: 'deny', rule: null },
    { name: 'the search path puts evil last', sql: 'SELECT * FROM customers', searchPath: ['public', 'evil'], action: 'deny', rule: null },
    { name: 'the search path is empty', sql: 'SELECT * FROM customers', searchPath: [], action: 'deny', rule: null },
    { name: 'the same message first changes the search path', sql: 'SET search_path = evil, public; SELECT * FROM customers', action: 'deny', rule: null },
    { name: 'the same message resets the search path', sql: 'RESET search_path; SELECT * FROM customers', action: 'deny', rule: null },
    { name: 'the same message sets the search path to public', sql: 'SET search_path = public; SELECT * FROM customers', searchPath: ['evil'], action: 'allow', rule: 'allow-set' },
    { name: 'the pattern covers every schema', sql: 'SELECT * FROM audit_log', searchPath: ['evil', 'public'], action: 'allow', rule: 'allow-any-schema-audit' },
    { name: 'a pg_ name may resolve to pg_catalog first', sql: 'SELECT * FROM pg_class', searchPath: ['public'], action: 'deny', rule: null },
    { name: 'pg_catalog is the only schema searched', sql: 'SELECT * FROM pg_class', searchPath: ['pg_catalog'], action: 'allow', rule: 'allow-catalog' },
  ]);

  table('functions', () => policy([
    { name: 'deny-file-access', match: { sql: { functions: ['pg_catalog.pg_read_file', 'pg_catalog.lo_import'] } }, action: 'deny' },
    { name: 'allow-app-functions', match: { sql: { statements: ['select'], functions: ['app.*'] } }, action: 'allow' },
    { name: 'allow-reads', match: { sql: { statements: ['select'] } }, action: 'allow' },
  ]), [
    { name: 'the built-in is called unqualified', sql: "SELECT pg_read_file('/etc/passwd')", action: 'deny', rule: 'deny-file-access' },
    { name: 'the built-in is called qualified', sql: "SELECT pg_catalog.pg_read_file('/etc/passwd')", action: 'deny', rule: 'deny-file-access' },
    { name: 'the built-in hides in a CTE', sql: "WITH x AS (SELECT lo_import('/etc/shadow')) SELECT * FROM x", action: 'deny', rule: 'deny-file-access' },
    { name: 'the built-in hides in a column default', sql: "SELECT 1; CREATE TABLE t (a text DEFAULT pg_read_file('/x'))", action: 'deny', rule: 'deny-file-access' },
    { name: 'an app function is qualified', sql: 'SELECT app.total(1)', action: 'allow', rule: 'allow-app-functions' },
    // Unqualified, `total` could be pg_catalog.total or public.total: not covered by app.*.
    { name: 'an app function is unqualified', sql: 'SELECT total(1)', searchPath: ['app'], action: 'allow', rule: 'allow-reads' },
  ]);

  table('opaque statements', () => policy([
    { name: 'allow-call-by-ops', subjects: ['any-sa-in-ops'], match: { sql: { statements: ['call'], opaque: true } }, action: 'allow' },
    { name: 'allow-everything', action: 'allow' },
    { name: 'approve-opaque', match: { sql: { opaque: true } }, action: 'require-approval', approval: DBA_APPROVAL },
  ]), [
    { name: 'an allow rule without opaque: true meets a DO block', sql: 'DO $$ BEGIN DELETE FROM t; END $$', action: 'require-approval', rule: 'approve-opaque' },
    { name: 'an allow rule without opaque: true meets CALL', sql: 'CALL p()', action: 'require-approval', rule: 'approve-opaque' },
    { name: 'an allow rule without opaque: true meets EXECUTE', sql: 'EXECUTE p', action: 'require-approval', rule: 'approve-opaque' },
    { name: 'an allow rule without opaque: true meets CREATE FUNCTION', sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", action: 'require-approval', rule: 'approve-opaque' },
    { name: 'SET turns standard_conforming_strings off', sql: 'SET standard_conforming_strings = off', action: 'require-approval', rule: 'approve-opaque' },
    { name: 'the allow rule says opaque: true and the subject matches', sql: 'CALL p()', identity: { workload: workload('ops', 'runner') }, action: 'allow', rule: 'allow-call-by-ops' },
    { name: 'the opaque allow rule does not list the kind', sql: 'DO $$ BEGIN END $$', identity: { workload: workload('ops', 'runner') }, action: 'require-approval', rule: 'approve-opaque' },
    { name: 'a known statement meets the catch-all allow', sql: 'SELECT 1', action: 'allow', rule: 'allow-everything' },
  ]);

  table('unfiltered writes and COPY endpoints', () => policy([
    { name: 'deny-unfiltered', match: { sql: { where: 'missing-or-constant' } }, action: 'deny' },
    { name: 'deny-server-copy', match: { sql: { copy: ['program', 'file'] } }, action: 'deny' },
    { name: 'allow-all', action: 'allow' },
  ]), [
    { name: 'the DELETE has no WHERE', sql: 'DELETE FROM t', action: 'deny', rule: 'deny-unfiltered' },
    { name: 'the WHERE is a tautology', sql: 'UPDATE t SET a = 1 WHERE 1 = 1', action: 'deny', rule: 'deny-unfiltered' },
    { name: 'the WHERE ORs in a constant', sql: 'DELETE FROM t WHERE id = $1 OR true', action: 'deny', rule: 'deny-unfiltered' },
    { name: 'the WHERE filters on a parameter', sql: 'DELETE FROM t WHERE id = $1', action: 'allow', rule: 'allow-all' },
    { name: 'COPY runs a program', sql: "COPY t TO PROGRAM 'sh'", action: 'deny', rule: 'deny-server-copy' },
    { name: 'COPY reads a server file', sql: "COPY t FROM '/etc/passwd'", action: 'deny', rule: 'deny-server-copy' },
    { name: 'COPY streams to the client', sql: 'COPY t TO STDOUT', action: 'allow', rule: 'allow-all' },
  ]);

  const ci = (claims: Record<string, unknown>): RequestIdentity => ({ caller: caller(claims) });
  table('subjects and targets', () => policy([
    { name: 'ci-writes', subjects: ['ci'], targets: ['billing'], match: { sql: { statements: ['insert'] } }, action: 'allow' },
    { name: 'reporter-reads', subjects: ['reporter'], match: { sql: { statements: ['select'] } }, action: 'allow' },
    { name: 'sre-reads', subjects: ['sre'], match: { sql: { statements: ['show'] } }, action: 'allow' },
    { name: 'pods-listen', subjects: ['payments-pods'], match: { sql: { statements: ['listen'] } }, action: 'allow' },
    { name: 'numeric-notify', subjects: ['numeric', 'proto'], match: { sql: { statements: ['notify'] } }, action: 'allow' },
  ]), [
    { name: 'every ci claim matches', sql: 'INSERT INTO t VALUES (1)', identity: ci(CI_CLAIMS), action: 'allow', rule: 'ci-writes' },
    { name: 'the ci rule is scoped to another target', sql: 'INSERT INTO t VALUES (1)', identity: ci(CI_CLAIMS), target: 'analytics', action: 'deny', rule: null },
    { name: 'the target is unknown', sql: 'INSERT INTO t VALUES (1)', identity: ci(CI_CLAIMS), target: 'nope', action: 'deny', rule: null },
    { name: 'one claim (ref) is not in the list', sql: 'INSERT INTO t VALUES (1)', identity: ci({ ...CI_CLAIMS, ref: 'refs/heads/feature' }), action: 'deny', rule: null },
    { name: 'the glob claim does not match', sql: 'INSERT INTO t VALUES (1)', identity: ci({ ...CI_CLAIMS, workflow: 'test-deploy-x' }), action: 'deny', rule: null },
    { name: 'a claim is missing', sql: 'INSERT INTO t VALUES (1)', identity: ci({ repository: 'acme/billing', ref: 'refs/heads/main' }), action: 'deny', rule: null },
    { name: 'the issuer differs by a trailing slash', sql: 'INSERT INTO t VALUES (1)', identity: { caller: caller(CI_CLAIMS, `${ISSUER}/`) }, action: 'deny', rule: null },
    { name: 'the claim is an array holding the value', sql: 'SHOW x', identity: ci({ groups: ['dev', 'sre'] }), action: 'allow', rule: 'sre-reads' },
    { name: 'the claim is an array without the value', sql: 'SHOW x', identity: ci({ groups: ['dev'] }), action: 'deny', rule: null },
    { name: 'the claim is an object, not a string', sql: 'SHOW x', identity: ci({ groups: { sre: true } }), action: 'deny', rule: null },
    { name: 'the claim is a number, not a string', sql: "NOTIFY c, 'x'", identity: ci({ level: 5 }), action: 'deny', rule: null },
    { name: 'the claim path reaches the prototype', sql: "NOTIFY c, 'x'", identity: ci({}), action: 'deny', rule: null },
    { name: 'the workload is the reporter in the policy namespace', sql: 'SELECT 1', identity: { workload: workload('payments', 'reporter') }, action: 'allow', rule: 'reporter-reads' },
    { name: 'the reporter runs in another namespace', sql: 'SELECT 1', identity: { workload: workload('other', 'reporter') }, action: 'deny', rule: null },
    { name: 'the caller matches and the workload does not (either identity)', sql: 'INSERT INTO t VALUES (1)', identity: { workload: workload('payments', 'web'), caller: caller(CI_CLAIMS) }, action: 'allow', rule: 'ci-writes' },
    { name: 'the workload matches and the caller does not (either identity)', sql: 'SELECT 1', identity: { workload: workload('payments', 'reporter'), caller: caller({ sub: 'x' }) }, action: 'allow', rule: 'reporter-reads' },
    { name: 'a dotted claim path crosses a key holding a dot', sql: 'LISTEN c', identity: { workload: workload('payments', 'web') }, action: 'allow', rule: 'pods-listen' },
    { name: 'the dotted claim has another value', sql: 'LISTEN c', identity: { workload: workload('other', 'web') }, action: 'deny', rule: null },
    { name: 'the connection is anonymous', sql: 'SELECT 1', identity: {}, action: 'deny', rule: null },
  ]);

  describe('approval settings', () => {
    const SECURITY_APPROVAL: AccessPolicyApproval = { reviewers: { users: ['sec@example.com'] }, mode: 'return' };
    const rules = (): AccessPolicyRule[] => [
      { name: 'approve-truncate', match: { sql: { statements: ['truncate'] } }, action: 'require-approval', approval: DBA_APPROVAL },
      { name: 'approve-unfiltered', match: { sql: { where: 'missing-or-constant' } }, action: 'require-approval', approval: { ...DBA_APPROVAL } },
      { name: 'approve-grants', match: { sql: { statements: ['grant'] } }, action: 'require-approval', approval: SECURITY_APPROVAL },
      { name: 'allow-rest', match: { sql: { statements: ['select', 'delete', 'insert'] } }, action: 'allow' },
    ];
    const decide = (p: CompiledPolicy, sql: string): ReturnType<typeof evaluate> => evaluate(p, { identity: {}, target: 'billing', sql: analyseSql(sql) });
    const DBA_SETTINGS = { reviewers: { groups: ['dba'], users: [] }, minApprovals: 1, mode: 'hold', holdTimeoutSeconds: 300, ttlSeconds: 3600, grant: { scope: 'once' } };

    it("returns the deciding rule's settings, defaults applied, on a require-approval decision", () => {
      const decision = decide(policy(rules()), 'TRUNCATE t');
      assert.equal(decision.action, 'require-approval');
      assert.deepEqual(decision.approval, DBA_SETTINGS);
      assert.deepEqual(decision.statements[0]?.approval, DBA_SETTINGS);
    });

    it('returns no settings on allow and deny decisions', () => {
      const p = policy(rules());
      assert.equal(decide(p, 'SELECT 1').approval, undefined);
      assert.equal(decide(p, 'DROP TABLE t').approval, undefined);
      assert.equal(decide(p, 'TRUNCATE t; DROP TABLE t').approval, undefined, 'deny wins, and carries no approval');
    });

    it('returns spec.defaultApproval when the default action asks for approval', () => {
      const p = policy([], { defaultAction: 'require-approval', defaultApproval: SECURITY_APPROVAL });
      const decision = decide(p, 'SELECT 1');
      assert.equal(decision.action, 'require-approval');
      assert.equal(decision.approval?.mode, 'return');
      assert.deepEqual(decision.approval.reviewers, { groups: [], users: ['sec@example.com'] });
    });

    it('holds a message for one request when its statements need the same settings under two rules', () => {
      const decision = decide(policy(rules()), 'TRUNCATE t; DELETE FROM t');
      assert.equal(decision.action, 'require-approval');
      assert.equal(decision.rule, 'approve-truncate');
      assert.deepEqual(decision.approval, DBA_SETTINGS);
    });

    it('denies a message whose statements need approval from different reviewers (one group must not approve for the other)', () => {
      const decision = decide(policy(rules()), 'TRUNCATE t; GRANT SELECT ON t TO x');
      assert.equal(decision.action, 'deny');
      assert.equal(decision.reason, 'approval-conflict');
      assert.match(decision.message ?? '', /"approve-truncate", "approve-grants".*send them separately/);
      assert.equal(decision.approval, undefined);
      assert.deepEqual(decision.statements.map((s) => s.action), ['require-approval', 'require-approval']);
    });

    it('denies a require-approval decision that has no settings rather than holding it for nobody', () => {
      const compiled = policy([], { defaultAction: 'require-approval', defaultApproval: DBA_APPROVAL });
      const decision = decide({ ...compiled, defaultApproval: null }, 'SELECT 1');
      assert.equal(decision.action, 'deny');
      assert.equal(decision.reason, 'approval-unconfigured');
    });
  });
});
