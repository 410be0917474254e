import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyJsonPatch, escapePointerToken, pointer } from './json-patch.ts';

describe('JSON pointer escaping', () => {
  it('escapes ~ before / (RFC 6901 §3)', () => {
    assert.equal(escapePointerToken('custos.io/status'), 'custos.io~1status');
    assert.equal(escapePointerToken('a~/b'), 'a~0~1b');
    assert.equal(pointer('metadata', 'annotations', 'kubectl.kubernetes.io/default-container'), '/metadata/annotations/kubectl.kubernetes.io~1default-container');
  });
});

describe('applyJsonPatch', () => {
  it('adds into arrays by index and with -, replaces members, removes, and leaves the input alone', () => {
    const doc = { a: [1, 3], m: { 'x/y': 1 } };
    const out = applyJsonPatch(doc, [
      { op: 'add', path: '/a/1', value: 2 },
      { op: 'add', path: '/a/-', value: 4 },
      { op: 'add', path: '/m/x~1y', value: 2 },
      { op: 'add', path: '/n', value: { k: true } },
      { op: 'remove', path: '/a/0' },
      { op: 'test', path: '/a', value: [2, 3, 4] },
      { op: 'replace', path: '/n/k', value: false },
    ]);
    assert.deepEqual(out, { a: [2, 3, 4], m: { 'x/y': 2 }, n: { k: false } });
    assert.deepEqual(doc, { a: [1, 3], m: { 'x/y': 1 } });
  });

  const failures: Array<[string, Parameters<typeof applyJsonPatch>[1]]> = [
    ['an add past the end of an array', [{ op: 'add', path: '/a/3', value: 0 }]],
    ['a remove of a missing member', [{ op: 'remove', path: '/missing' }]],
    ['an add under a missing parent', [{ op: 'add', path: '/x/y', value: 1 }]],
    ['a failed test', [{ op: 'test', path: '/a/0', value: 2 }]],
    ['a leading-zero index', [{ op: 'remove', path: '/a/01' }]],
  ];
  for (const [label, ops] of failures) {
    it(`refuses ${label}`, () => {
      assert.throws(() => applyJsonPatch({ a: [1, 2] }, ops), (e: unknown) => (e as { code?: string }).code === 'ERR_JSON_PATCH_INVALID');
    });
  }
});
