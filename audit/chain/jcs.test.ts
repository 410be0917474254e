import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalize } from './jcs.ts';
import { isCustosError } from '../../lib/errors.ts';

function fromBits(hex: string): number {
  return Buffer.from(hex, 'hex').readDoubleBE(0);
}

describe('canonicalize (RFC 8785)', () => {
  // RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical serialisation.
  const numbers: readonly [string, string][] = [
    ['0000000000000000', '0'],
    ['8000000000000000', '0'],
    ['0000000000000001', '5e-324'],
    ['8000000000000001', '-5e-324'],
    ['7fefffffffffffff', '1.7976931348623157e+308'],
    ['ffefffffffffffff', '-1.7976931348623157e+308'],
    ['4340000000000000', '9007199254740992'],
    ['c340000000000000', '-9007199254740992'],
    ['4430000000000000', '295147905179352830000'],
    ['44b52d02c7e14af5', '9.999999999999997e+22'],
    ['44b52d02c7e14af6', '1e+23'],
    ['44b52d02c7e14af7', '1.0000000000000001e+23'],
    ['444b1ae4d6e2ef4e', '999999999999999700000'],
    ['444b1ae4d6e2ef4f', '999999999999999900000'],
    ['444b1ae4d6e2ef50', '1e+21'],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
    ['3eb0c6f7a0b5ed8d', '0.000001'],
    ['41b3de4355555553', '333333333.3333332'],
    ['41b3de4355555554', '333333333.33333325'],
    ['41b3de4355555555', '333333333.3333333'],
    ['41b3de4355555556', '333333333.3333334'],
    ['41b3de4355555557', '333333333.33333343'],
    ['becbf647612f3696', '-0.0000033333333333333333'],
    ['43143ff3c1cb0959', '1424953923781206.2'],
  ];
  for (const [bits, expected] of numbers) {
    it(`serialises ${bits} as ${expected} when given that IEEE 754 value`, () => {
      assert.equal(canonicalize(fromBits(bits)), expected);
    });
  }

  const rejected: readonly [string, unknown][] = [
    ['NaN', fromBits('7fffffffffffffff')],
    ['Infinity', fromBits('7ff0000000000000')],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['a nested NaN', { a: [1, { b: Number.NaN }] }],
    ['a bigint', 1n],
    ['a lone surrogate in a string', 'x\ud800'],
    ['a lone surrogate in a member name', { '\udc00': 1 }],
    ['a Date', new Date(0)],
    ['a function', () => 1],
  ];
  for (const [name, value] of rejected) {
    it(`throws ERR_AUDIT_JCS when given ${name}`, () => {
      assert.throws(() => canonicalize(value), (e: unknown) => isCustosError(e, 'ERR_AUDIT_JCS'));
    });
  }

  it('produces the RFC 8785 §3.2.2 example output when given its input', () => {
    const input: unknown = JSON.parse(String.raw`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }`);
    assert.equal(canonicalize(input),
      String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`);
  });

  it('sorts member names by UTF-16 code units when they mix planes (RFC 8785 §3.2.3)', () => {
    const input = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    assert.equal(canonicalize(input),
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
      + '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}');
  });

  it('omits undefined members and writes undefined array items as null when present', () => {
    assert.equal(canonicalize({ b: undefined, a: [undefined, 1] }), '{"a":[null,1]}');
  });

  it('matches JSON.parse round trips for nested structures when keys are unordered', () => {
    const value = { z: { y: [true, null, 'x'], a: -0.5 }, a: '' };
    const text = canonicalize(value);
    assert.equal(text, '{"a":"","z":{"a":-0.5,"y":[true,null,"x"]}}');
    assert.equal(canonicalize(JSON.parse(text)), text);
  });
});
