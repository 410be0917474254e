import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './generate.ts';
import { PolicySyntaxError, PolicyValidationError, fieldPath, parsePolicyYaml } from './validate-document.ts';

const POLICY = `apiVersion: custos.io/v1alpha1
kind: AccessPolicy
metadata:
  name: billing
spec:
  targets:
    - {name: billing, protocol: postgres, host: 127.0.0.1, port: 5432}
  rules:
    - name: deny-opaque
      match: {sql: {opaque: yes}}
      action: deny
`;

const SECRET = `apiVersion: v1
kind: Secret
metadata: {name: billing-db}
stringData: {username: app, password: secret}
`;

describe('parsePolicyYaml', () => {
  it('validates the example policy shipped in examples/policy.yaml', () => {
    const text = readFileSync(join(REPO_ROOT, 'examples/policy.yaml'), 'utf8');
    const policy = parsePolicyYaml(text, 'examples/policy.yaml');
    assert.equal(policy.metadata.namespace, 'payments');
    assert.deepEqual(policy.spec.rules.map((r) => [r.name, r.action]), [
      ['deny-ddl', 'deny'], ['deny-copy-program', 'deny'], ['deny-opaque-code', 'deny'],
      ['deny-unfiltered-writes', 'deny'], ['allow-reads', 'allow'], ['allow-writes-billing', 'allow'],
    ]);
    assert.equal(policy.spec.defaultAction, 'deny');
  });

  const accepted: readonly { name: string; text: string; check: (p: ReturnType<typeof parsePolicyYaml>) => void }[] = [
    { name: 'a single policy uses YAML 1.1 booleans as kubectl does', text: POLICY, check: (p) => { assert.equal(p.spec.rules[0]?.match?.sql?.opaque, true); } },
    { name: 'the policy sits among other objects', text: `${SECRET}---\n${POLICY}`, check: (p) => { assert.equal(p.metadata.name, 'billing'); } },
    { name: 'empty documents surround the policy', text: `---\n${POLICY}---\n`, check: (p) => { assert.equal(p.spec.targets[0]?.port, 5432); } },
    {
      name: 'a timestamp is unquoted',
      text: `${POLICY}status:\n  conditions: [{type: Ready, status: "True", lastTransitionTime: 2025-01-01T00:00:00Z}]\n`,
      check: (p) => { assert.equal(p.status?.conditions?.[0]?.lastTransitionTime, '2025-01-01T00:00:00Z'); },
    },
  ];
  for (const c of accepted) {
    it(`returns the policy when ${c.name}`, () => { c.check(parsePolicyYaml(c.text, 'p.yaml')); });
  }

  const syntax: readonly { name: string; text: string; message: RegExp; line: number; column: number }[] = [
    { name: 'a flow sequence is not closed', text: 'spec:\n  rules: [a\n  targets: 1\n', message: /^p\.yaml:3:\d+: YAML syntax error: /, line: 3, column: 3 },
    { name: 'a key is repeated', text: POLICY.replace('  name: billing\n', '  name: billing\n  name: other\n'), message: /^p\.yaml:5:3: YAML syntax error: Map keys must be unique/, line: 5, column: 3 },
    { name: 'the file holds two policies', text: `${POLICY}---\n${POLICY}`, message: /^p\.yaml: holds 2 AccessPolicy documents \(lines 1, 12\); give one policy per file$/, line: 12, column: 1 },
    { name: 'the file is empty', text: '# nothing here\n', message: /^p\.yaml: empty file: expected an AccessPolicy$/, line: 0, column: 0 },
    { name: 'no document is a policy', text: `${SECRET}---\n${SECRET}`, message: /^p\.yaml: none of its 2 documents is an AccessPolicy$/, line: 0, column: 0 },
  ];
  for (const c of syntax) {
    it(`throws PolicySyntaxError when ${c.name}`, () => {
      assert.throws(() => parsePolicyYaml(c.text, 'p.yaml'), (e: unknown) => {
        assert.ok(e instanceof PolicySyntaxError);
        assert.equal(e.code, 'ERR_POLICY_SYNTAX');
        assert.match(e.message, c.message);
        assert.deepEqual([e.line, e.column], [c.line, c.column]);
        return true;
      });
    });
  }

  it('names the file and the field when a single document is not a valid policy', () => {
    assert.throws(() => parsePolicyYaml(POLICY.replace('action: deny', 'action: block'), 'p.yaml'), (e: unknown) => {
      assert.ok(e instanceof PolicyValidationError);
      assert.equal(e.message, 'p.yaml: spec.rules[0].action: Unsupported value: "block": supported values: "allow", "deny", "require-approval"');
      return true;
    });
  });

  it('validates a lone document of another kind and names its kind', () => {
    assert.throws(() => parsePolicyYaml(SECRET, 'p.yaml'), (e: unknown) => e instanceof PolicyValidationError && e.issues.some((i) => i.field === 'kind'));
  });
});

describe('fieldPath', () => {
  const doc = { spec: { rules: [{ match: {} }], 'odd key': { '0': 1 } }, metadata: { labels: { 'a/b': 'x' } } };
  const cases: readonly [string, string][] = [
    ['', ''],
    ['/spec/rules/0/match', 'spec.rules[0].match'],
    ['/metadata/labels/a~1b', 'metadata.labels[a/b]'],
    ['/spec/odd key/0', 'spec[odd key][0]'],
  ];
  for (const [pointer, expected] of cases) {
    it(`renders ${JSON.stringify(pointer)} as ${JSON.stringify(expected)}`, () => { assert.equal(fieldPath(pointer, doc), expected); });
  }
});
