import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { CompiledDetector, MaskStrategy, MaskStrategyKind } from '../../policy/masking/compile-masking.ts';
import { createDetector, type DetectorType } from './detectors.ts';
import { HMAC_PREFIX, MaskingKeyError, maskText, maskValue, REDACTED, scrubText, TYPE_OID } from './strategies.ts';

const KEY = Buffer.from('a key mounted into the sidecar only');
const OTHER_KEY = Buffer.from('another key');

function strategy(kind: MaskStrategyKind, keepFirst = 0, keepLast = 0): MaskStrategy {
  return { kind, keepFirst, keepLast };
}
const REDACT = strategy('redact');
const HMAC = strategy('hmac');
const NULL = strategy('null');
const LAST4 = strategy('partial', 0, 4);

function detector(type: DetectorType, kind: MaskStrategyKind = 'redact', name: string = type): CompiledDetector {
  const finder = createDetector(type);
  return { name, type, strategy: strategy(kind, 0, kind === 'partial' ? 4 : 0), find: (t) => finder.find(t) };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('maskText', () => {
  const partial: ReadonlyArray<[string, number, number, string]> = [
    ['4111111111111111', 0, 4, '************1111'],
    ['alice@example.com', 1, 4, 'a************.com'],
    ['José Müller', 2, 2, 'Jo*******er'],
    ['😀😀😀😀😀😀', 1, 1, '😀****😀'],
    ['日本語テキスト', 0, 2, '*****スト'],
    ['abcd', 0, 4, '****'],
    ['abc', 1, 4, '***'],
    ['', 0, 4, ''],
  ];
  for (const [value, keepFirst, keepLast, expected] of partial) {
    it(`partial(${keepFirst},${keepLast}) gives ${JSON.stringify(expected)} when the value is ${JSON.stringify(value)}`, () => {
      const masked = maskText(strategy('partial', keepFirst, keepLast), value, undefined);
      assert.equal(masked, expected);
      assert.equal(Array.from(masked).length, Array.from(value).length, 'same length in code points');
    });
  }

  it('redacts to the fixed token when the strategy is redact or null', () => {
    assert.equal(maskText(REDACT, 'secret', undefined), REDACTED);
    assert.equal(maskText(NULL, 'secret', undefined), REDACTED);
  });

  it('gives a deterministic, keyed digest when the strategy is hmac', () => {
    const a = maskText(HMAC, 'alice@example.com', KEY);
    assert.match(a, /^hmac:[0-9a-f]{16}$/);
    assert.equal(maskText(HMAC, 'alice@example.com', KEY), a, 'deterministic');
    assert.notEqual(maskText(HMAC, 'alice@example.com', OTHER_KEY), a, 'depends on the key');
    assert.notEqual(maskText(HMAC, 'bob@example.com', KEY), a, 'depends on the value');
  });

  it('throws when the strategy is hmac and no key is loaded', () => {
    assert.throws(() => maskText(HMAC, 'x', undefined), MaskingKeyError);
    assert.throws(() => maskText(HMAC, 'x', Buffer.alloc(0)), MaskingKeyError);
  });

  it('keeps no run of hidden characters when partial masks arbitrary text', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.nat(5), fc.nat(5), (value, keepFirst, keepLast) => {
      const points = Array.from(value);
      const masked = Array.from(maskText(strategy('partial', keepFirst, keepLast), value, undefined));
      assert.equal(masked.length, points.length);
      const visible = points.length <= keepFirst + keepLast ? 0 : keepFirst + keepLast;
      assert.equal(masked.filter((c, i) => c !== '*' || points[i] === '*').length >= visible, true);
      if (points.length > keepFirst + keepLast) {
        assert.deepEqual(masked.slice(keepFirst, points.length - keepLast), Array<string>(points.length - keepFirst - keepLast).fill('*'));
      } else {
        assert.ok(masked.every((c) => c === '*'));
      }
    }));
  });
});

describe('maskValue', () => {
  const text = (s: string): Buffer => Buffer.from(s, 'utf8');

  it('returns NULL when the value is NULL or the strategy is null', () => {
    assert.equal(maskValue(REDACT, null, TYPE_OID.text, 0), null);
    assert.equal(maskValue(NULL, text('x'), TYPE_OID.text, 0), null);
  });

  for (const oid of [TYPE_OID.text, TYPE_OID.varchar, TYPE_OID.bpchar, TYPE_OID.name]) {
    for (const format of [0, 1] as const) {
      it(`writes the masked text when the type is ${oid} in format ${format}`, () => {
        assert.equal(maskValue(LAST4, text('4111111111111111'), oid, format)?.toString('utf8'), '************1111');
        assert.equal(maskValue(REDACT, text('x'), oid, format)?.toString('utf8'), REDACTED);
        assert.match(maskValue(HMAC, text('x'), oid, format, KEY)?.toString('utf8') ?? '', /^hmac:[0-9a-f]{16}$/);
      });
    }
  }

  it('keeps multi-byte characters whole when partial masks UTF-8 bytes', () => {
    assert.equal(maskValue(strategy('partial', 1, 1), text('Ünïcödé'), TYPE_OID.text, 0)?.toString('utf8'), 'Ü*****é');
  });

  it('writes a JSON string literal when the type is json', () => {
    for (const format of [0, 1] as const) {
      const out = maskValue(LAST4, text('{"card": "4111111111111111"}'), TYPE_OID.json, format);
      const parsed: unknown = JSON.parse(out?.toString('utf8') ?? '');
      assert.equal(parsed, '************************11"}');
    }
  });

  it('writes a version-1 jsonb value that parses as JSON when the type is jsonb in binary', () => {
    const input = Buffer.concat([Buffer.from([1]), text('{"email": "alice@example.com"}')]);
    const out = maskValue(HMAC, input, TYPE_OID.jsonb, 1, KEY);
    assert.ok(out !== null);
    assert.equal(out[0], 1);
    const parsed: unknown = JSON.parse(out.subarray(1).toString('utf8'));
    assert.equal(parsed, maskText(HMAC, '{"email": "alice@example.com"}', KEY), 'the digest of the JSON text, as in text format');
    assert.equal(maskValue(HMAC, text('{"email": "alice@example.com"}'), TYPE_OID.jsonb, 0, KEY)?.toString('utf8'), JSON.stringify(parsed));
  });

  it('writes escaped character content when the type is xml', () => {
    assert.equal(maskValue(strategy('partial', 3, 0), text('<a>secret</a>'), TYPE_OID.xml, 0)?.toString('utf8'), '&lt;a&gt;**********');
  });

  it('derives a valid, deterministic uuid when the type is uuid and the strategy is hmac', () => {
    const value = '6f1c2e1a-93b4-4c2e-9f5e-0a1b2c3d4e5f';
    const asText = maskValue(HMAC, text(value), TYPE_OID.uuid, 0, KEY)?.toString('utf8') ?? '';
    assert.match(asText, UUID_RE);
    assert.notEqual(asText, value);
    assert.equal(maskValue(HMAC, text(value.toUpperCase()), TYPE_OID.uuid, 0, KEY)?.toString('utf8'), asText, 'case does not matter');
    assert.notEqual(maskValue(HMAC, text(value), TYPE_OID.uuid, 0, OTHER_KEY)?.toString('utf8'), asText);
    const binary = maskValue(HMAC, Buffer.from(value.replace(/-/g, ''), 'hex'), TYPE_OID.uuid, 1, KEY);
    assert.equal(binary?.length, 16);
    assert.equal(binary.toString('hex'), asText.replace(/-/g, ''), 'binary and text agree');
  });

  const nulls: ReadonlyArray<[string, MaskStrategy, number, 0 | 1, Buffer]> = [
    ['int4 redact text', REDACT, TYPE_OID.int4, 0, text('42')],
    ['int4 hmac binary', HMAC, TYPE_OID.int4, 1, Buffer.from([0, 0, 0, 42])],
    ['int8 partial', LAST4, TYPE_OID.int8, 0, text('1234567890')],
    ['int2 hmac', HMAC, TYPE_OID.int2, 0, text('7')],
    ['uuid redact', REDACT, TYPE_OID.uuid, 0, text('6f1c2e1a-93b4-4c2e-9f5e-0a1b2c3d4e5f')],
    ['uuid hmac on a malformed binary value', HMAC, TYPE_OID.uuid, 1, Buffer.alloc(3)],
    ['numeric', REDACT, 1700, 0, text('12.5')],
    ['timestamptz', HMAC, 1184, 1, Buffer.alloc(8)],
    ['an extension type such as citext', REDACT, 98765, 0, text('alice')],
  ];
  for (const [name, s, oid, format, value] of nulls) {
    it(`returns NULL when the type cannot carry the masked form (${name})`, () => {
      assert.equal(maskValue(s, value, oid, format, KEY), null);
    });
  }
});

describe('scrubText', () => {
  const detectors = [detector('email'), detector('payment-card', 'partial'), detector('us-ssn', 'hmac')];

  const messages: ReadonlyArray<[string, string, string, Record<string, number>]> = [
    [
      'a unique violation detail',
      'Key (email)=(alice@example.com) already exists.',
      `Key (email)=(${REDACTED}) already exists.`,
      { email: 1 },
    ],
    [
      'an invalid input syntax error',
      'invalid input syntax for type integer: "4111 1111 1111 1111"',
      'invalid input syntax for type integer: "***************1111"',
      { 'payment-card': 1 },
    ],
    ['a notice with nothing sensitive', 'relation "customers" already exists, skipping', 'relation "customers" already exists, skipping', {}],
    [
      'a RAISE NOTICE with two values',
      'customer bob@example.org paid with 5500-0000-0000-0004',
      `customer ${REDACTED} paid with ***************0004`,
      { 'email': 1, 'payment-card': 1 },
    ],
  ];
  for (const [name, input, expected, findings] of messages) {
    it(`masks every detected value when the text is ${name}`, () => {
      const out = scrubText(input, detectors, KEY);
      assert.equal(out.text, expected);
      assert.deepEqual(Object.fromEntries(out.findings.map((f) => [f.detector, f.count])), findings);
    });
  }

  it('uses the keyed digest when a detector uses hmac', () => {
    const out = scrubText('ssn 123-45-6789 again 123-45-6789', detectors, KEY);
    const digest = maskText(HMAC, '123-45-6789', KEY);
    assert.equal(out.text, `ssn ${digest} again ${digest}`);
    assert.ok(digest.startsWith(HMAC_PREFIX));
    assert.deepEqual(out.findings, [{ detector: 'us-ssn', count: 2 }]);
  });

  it('merges overlapping spans with the least revealing strategy when detectors overlap', () => {
    // The custom detector covers "ID alice" and the email detector "alice@example.com": one span.
    const custom = createDetector('custom', { pattern: 'ID [a-z]+' });
    const both: CompiledDetector[] = [
      { name: 'ids', type: 'custom', strategy: LAST4, find: (t) => custom.find(t) },
      detector('email', 'redact'),
    ];
    const out = scrubText('user ID alice@example.com!', both);
    assert.equal(out.text, `user ${REDACTED}!`);
    assert.deepEqual(out.findings, [{ detector: 'ids', count: 1 }, { detector: 'email', count: 1 }]);
  });

  it('keeps JSON valid when a secret is scrubbed from a JSON payload', () => {
    const payload = '{"user": "bob", "password": "hunter2", "note": "card 4111111111111111"}';
    const out = scrubText(payload, [detector('generic-secret'), detector('payment-card', 'partial')]);
    assert.deepEqual(JSON.parse(out.text), { user: 'bob', password: REDACTED, note: 'card ************1111' });
  });

  it('returns the text unchanged and no findings when no detector is configured', () => {
    assert.deepEqual(scrubText('alice@example.com', []), { text: 'alice@example.com', findings: [] });
  });

  it('leaves no detected value behind when values and punctuation are mixed', () => {
    const all = (['email', 'payment-card', 'us-ssn', 'iban', 'ipv4', 'jwt', 'cloud-access-key'] as const).map((t) => detector(t));
    // Values are separated by at least a space: glued to a word, a value is not a value (boundaries).
    const piece = fc.constantFrom('alice@example.com', '4111 1111 1111 1111', '123-45-6789', 'DE89 3704 0044 0532 0130 00', '10.1.2.3', 'AKIAIOSFODNN7EXAMPLE', ',', '"', 'x', '(', ')', 'key=');
    fc.assert(fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
      const out = scrubText(pieces.join(' '), all, KEY);
      for (const d of all) assert.deepEqual(d.find(out.text), [], `${d.name} in ${out.text}`);
    }), { numRuns: 1000 });
  });
});
