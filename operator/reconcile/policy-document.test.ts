// policy.yaml must read back, with the sidecar's own YAML 1.1 parser, as exactly the spec the API
// server holds: a string that YAML 1.1 reads as a boolean, a number, a date or a merge key would
// otherwise change what the sidecar enforces without anyone editing the policy.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { AccessPolicy, AccessPolicySpec } from '../../crds/generated/access-policy.ts';
import { parsePolicyYaml } from '../../crds/validate-document.ts';
import { canonicalJson, checkPolicyForSidecar, renderPolicyYaml, sha256Hex } from './policy-document.ts';

function policyWith(spec: Partial<AccessPolicySpec>): AccessPolicy {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'billing', namespace: 'payments', uid: 'u', generation: 4, resourceVersion: '99' },
    spec: {
      targets: [{ name: 'billing', protocol: 'postgres', host: 'db', port: 5432 }],
      rules: [{ name: 'r', action: 'deny' }],
      ...spec,
    },
    status: { observedGeneration: 3 },
  };
}

/** Strings YAML 1.1 does not read as strings when they are written plain. */
const YAML_11_TRAPS = [
  'yes', 'no', 'on', 'off', 'y', 'n', 'Y', 'NO', 'True', '~', 'null', 'Null', '', ' ', '0755', '0o17', '0x1F', '0b101', '1_000', '1:20', '190:20:30',
  '1e3', '.5', '+12', '-.inf', '.NaN', '2001-12-14', '2001-12-14t21:59:43.10-05:00', '<<', '=', '!tag', '&anchor', '*alias', '%directive', '@', '`',
  '# comment', '- item', 'key: value', '{a: 1}', '[1]', '"quoted"', "'single'", '|', '>', 'tab\there', 'line\nbreak', 'trailing ', ' leading',
  '\u0000', '\u007f', '\u0085', '\u2028', '\ufeffbom', 'ü😀', '\ud800',
];

describe('renderPolicyYaml', () => {
  it('writes the policy without status or server-managed metadata, behind a header saying where it comes from', () => {
    const text = renderPolicyYaml(policyWith({}));
    assert.match(text, /^# Written by custos-operator from AccessPolicy payments\/billing; edits here are overwritten\.\n# Change the policy instead: kubectl edit accesspolicy billing -n payments\napiVersion: custos\.io\/v1alpha1\n/);
    assert.deepEqual(parsePolicyYaml(text, 'policy.yaml'), {
      apiVersion: 'custos.io/v1alpha1', kind: 'AccessPolicy', metadata: { name: 'billing', namespace: 'payments' }, spec: policyWith({}).spec,
    });
  });

  it('is deterministic: the same spec gives the same text whatever the metadata and status', () => {
    const a = policyWith({});
    const b = { ...policyWith({}), metadata: { ...a.metadata, resourceVersion: '100', generation: 5 }, status: { selectedPods: 7 } };
    assert.equal(renderPolicyYaml(a), renderPolicyYaml(b));
  });

  for (const trap of YAML_11_TRAPS) {
    it(`keeps ${JSON.stringify(trap)} a string, as key and as value`, () => {
      const policy = policyWith({ selector: { matchLabels: { [trap]: trap, k: trap } }, rules: [{ name: 'r', action: 'deny', message: trap }] });
      const back = parsePolicyYaml(renderPolicyYaml(policy), 'policy.yaml');
      assert.equal(canonicalJson(back.spec), canonicalJson(policy.spec));
      assert.equal(back.spec.rules[0]?.message, trap);
    });
  }

  it('keeps a __proto__ label key a key', () => {
    const matchLabels = JSON.parse('{"__proto__": "x", "app": "y"}') as Record<string, string>;
    const back = parsePolicyYaml(renderPolicyYaml(policyWith({ selector: { matchLabels } })), 'policy.yaml');
    assert.deepEqual(Object.entries(back.spec.selector?.matchLabels ?? {}), [['__proto__', 'x'], ['app', 'y']]);
  });

  it('round-trips any label keys and values and any rule message (property)', () => {
    fc.assert(fc.property(
      fc.dictionary(fc.string({ unit: 'binary', maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 12 }), { maxKeys: 6 }),
      fc.string({ unit: 'binary', maxLength: 40 }),
      (matchLabels, message) => {
        const policy = policyWith({ selector: { matchLabels }, rules: [{ name: 'r', action: 'deny', message }] });
        const back = parsePolicyYaml(renderPolicyYaml(policy), 'policy.yaml');
        assert.equal(canonicalJson(back.spec), canonicalJson(policy.spec));
      },
    ), { numRuns: 300 });
  });
});

describe('checkPolicyForSidecar', () => {
  it('returns the text and the digest the sidecar will compute for the file', () => {
    const check = checkPolicyForSidecar(policyWith({}));
    assert.ok(check.ok);
    assert.equal(check.digest, sha256Hex(check.policyYaml));
  });

  it('returns compile problems with their fields', () => {
    const check = checkPolicyForSidecar(policyWith({ rules: [{ name: 'r', action: 'deny', targets: ['nope'] }, { name: 'r', action: 'allow' }] }));
    assert.deepEqual(check, {
      ok: false,
      problems: [
        { field: 'spec.rules[0].targets[0]', message: 'unknown target "nope"' },
        { field: 'spec.rules[1].name', message: 'duplicate rule name "r"' },
      ],
    });
  });

  it('returns schema problems with their fields', () => {
    const check = checkPolicyForSidecar(policyWith({ targets: [{ name: 'billing', protocol: 'postgres', host: 'db', port: 70000 }] }));
    assert.equal(check.ok, false);
    assert.match(JSON.stringify(check), /"field":"spec\.targets\[0\]\.port"/);
  });
});
