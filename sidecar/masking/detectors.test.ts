import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type BuiltinDetectorType, createDetector, DetectorPatternError, ibanChecksum, isIpv6, luhn } from './detectors.ts';

/** What a detector finds in `text`, as the matched substrings. */
function found(type: BuiltinDetectorType, text: string): string[] {
  return createDetector(type).find(text).map((s) => text.slice(s.start, s.end));
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}
const JWT_SAMPLE = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub: '1234567890', name: 'Alice' })}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c`;
const NOT_JWT = `${b64url({ foo: 'bar' })}.${b64url({ sub: 'x' })}.c2lnbmF0dXJl`;

interface Case {
  readonly type: BuiltinDetectorType;
  readonly text: string;
  /** The substrings found, in order; empty for a near miss. */
  readonly expect: readonly string[];
}

const CASES: readonly Case[] = [
  // email
  { type: 'email', text: 'Key (email)=(alice@example.com) already exists.', expect: ['alice@example.com'] },
  { type: 'email', text: 'contact: "bob.smith+tag@mail.example.co.uk".', expect: ['bob.smith+tag@mail.example.co.uk'] },
  { type: 'email', text: 'josé.garcía@correo.español.es', expect: ['josé.garcía@correo.español.es'] },
  { type: 'email', text: 'user@localhost', expect: [] },
  { type: 'email', text: 'version 1.2@3.4', expect: [] },
  { type: 'email', text: '@example.com and alice@', expect: [] },
  { type: 'email', text: `${'a'.repeat(65)}@example.com`, expect: [] },
  // payment card
  { type: 'payment-card', text: 'invalid input syntax for type integer: "4111 1111 1111 1111"', expect: ['4111 1111 1111 1111'] },
  { type: 'payment-card', text: 'card 5500-0000-0000-0004 exp 12/29', expect: ['5500-0000-0000-0004'] },
  { type: 'payment-card', text: 'amex 378282246310005.', expect: ['378282246310005'] },
  { type: 'payment-card', text: 'ref 1234 4111 1111 1111 1111 end', expect: ['4111 1111 1111 1111'] },
  { type: 'payment-card', text: '4111 1111 1111 1112', expect: [] },
  { type: 'payment-card', text: '4111-1111 1111-1111', expect: [] },
  { type: 'payment-card', text: 'id 0000000000000000', expect: [] },
  { type: 'payment-card', text: 'order 79927398713 and 1234567812345678', expect: [] },
  { type: 'payment-card', text: 'x4111111111111111', expect: [] },
  // SSN
  { type: 'us-ssn', text: 'ssn 123-45-6789.', expect: ['123-45-6789'] },
  { type: 'us-ssn', text: 'ssn 123 45 6789', expect: ['123 45 6789'] },
  { type: 'us-ssn', text: 'area 000-12-3456', expect: [] },
  { type: 'us-ssn', text: 'area 666-12-3456', expect: [] },
  { type: 'us-ssn', text: 'area 912-34-5678', expect: [] },
  { type: 'us-ssn', text: 'group 123-00-4567', expect: [] },
  { type: 'us-ssn', text: 'serial 123-45-0000', expect: [] },
  { type: 'us-ssn', text: 'two 123-45-6789, 234-56-7890', expect: ['123-45-6789', '234-56-7890'] },
  { type: 'us-ssn', text: '123-45 6789 and 123456789', expect: [] },
  { type: 'us-ssn', text: 'phone 555-123-45-6789', expect: [] },
  { type: 'us-ssn', text: 'phone 123-45-6789-0000', expect: [] },
  { type: 'us-ssn', text: 'card 4111 1111 1111 1111 123-45-6789', expect: ['123-45-6789'] },
  // IBAN
  { type: 'iban', text: 'IBAN DE89 3704 0044 0532 0130 00 AND MORE', expect: ['DE89 3704 0044 0532 0130 00'] },
  { type: 'iban', text: 'to GB82WEST12345698765432.', expect: ['GB82WEST12345698765432'] },
  { type: 'iban', text: 'FR1420041010050500013M02606', expect: ['FR1420041010050500013M02606'] },
  { type: 'iban', text: 'DE89 3704 0044 0532 0130 01', expect: [] },
  { type: 'iban', text: 'DE89 3704 0044 0532 0130 00 GB82 WEST 1234 5698 7654 32', expect: ['DE89 3704 0044 0532 0130 00', 'GB82 WEST 1234 5698 7654 32'] },
  { type: 'iban', text: 'GB82WEST1234569876543', expect: [] },
  { type: 'iban', text: 'ZZ12 3456 7890 1234 5678 90', expect: [] },
  // phone
  { type: 'phone', text: 'call +1 415-555-2671 now', expect: ['+1 415-555-2671'] },
  { type: 'phone', text: '+442079460958', expect: ['+442079460958'] },
  { type: 'phone', text: 'tel (415) 555-2671', expect: ['(415) 555-2671'] },
  { type: 'phone', text: 'tel 020 7946 0958', expect: ['020 7946 0958'] },
  { type: 'phone', text: 'on 2024-01-15 at 10:30:00', expect: [] },
  { type: 'phone', text: 'total 1 234 567 890 EUR, or 1.234.567.890', expect: [] },
  { type: 'phone', text: 'epoch 1700000000 and id 4155552671', expect: [] },
  { type: 'phone', text: 'from 192.168.100.200', expect: [] },
  { type: 'phone', text: '+1 555', expect: [] },
  // JWT
  { type: 'jwt', text: `Bearer ${JWT_SAMPLE}.`, expect: [JWT_SAMPLE] },
  { type: 'jwt', text: `${b64url({ alg: 'none' })}.${b64url({ sub: 'x' })}.`, expect: [`${b64url({ alg: 'none' })}.${b64url({ sub: 'x' })}.`] },
  { type: 'jwt', text: NOT_JWT, expect: [] },
  { type: 'jwt', text: 'aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQ=', expect: [] },
  { type: 'jwt', text: 'com.example.package.Class', expect: [] },
  { type: 'jwt', text: `${JWT_SAMPLE}.${b64url({})}.x`, expect: [] },
  // cloud keys
  { type: 'cloud-access-key', text: 'aws_access_key_id=AKIAIOSFODNN7EXAMPLE', expect: ['AKIAIOSFODNN7EXAMPLE'] },
  { type: 'cloud-access-key', text: 'ASIAY34FZKBOKMUTVV7A,', expect: ['ASIAY34FZKBOKMUTVV7A'] },
  { type: 'cloud-access-key', text: 'key=AIzaSyA1b2C3d4E5f6G7h8I9j0K_L-MnOpQrStU', expect: ['AIzaSyA1b2C3d4E5f6G7h8I9j0K_L-MnOpQrStU'] },
  { type: 'cloud-access-key', text: `AccountName=x;AccountKey=${'A'.repeat(86)}==;`, expect: [`${'A'.repeat(86)}==`] },
  { type: 'cloud-access-key', text: 'AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX', expect: [] },
  // generic secrets
  { type: 'generic-secret', text: 'password=hunter2&user=bob', expect: ['hunter2'] },
  { type: 'generic-secret', text: '{"db_password": "pa ss\\"word", "user": "bob"}', expect: ['pa ss\\"word'] },
  { type: 'generic-secret', text: 'SECRET: s3cr3t', expect: ['s3cr3t'] },
  { type: 'generic-secret', text: 'api_key 3f9a8b7c6d5e', expect: ['3f9a8b7c6d5e'] },
  { type: 'generic-secret', text: 'postgres://app:Tr0ub4dor@db:5432/x', expect: ['Tr0ub4dor'] },
  { type: 'generic-secret', text: 'Authorization: Bearer abcdef123456', expect: ['abcdef123456'] },
  { type: 'generic-secret', text: 'k -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- k', expect: ['-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----'] },
  { type: 'generic-secret', text: `token ghp_${'a1'.repeat(18)} here`, expect: [`ghp_${'a1'.repeat(18)}`] },
  { type: 'generic-secret', text: 'xoxb-1234567890-abcdefghij', expect: ['xoxb-1234567890-abcdefghij'] },
  { type: 'generic-secret', text: 'the password must be at least 8 characters', expect: [] },
  { type: 'generic-secret', text: 'api_key rotation is due', expect: [] },
  { type: 'generic-secret', text: 'the secretary: Jane', expect: [] },
  // IPv4
  { type: 'ipv4', text: 'from 10.0.0.1:5432 and 192.168.1.255.', expect: ['10.0.0.1', '192.168.1.255'] },
  { type: 'ipv4', text: '256.1.1.1 and 1.2.3.999', expect: [] },
  { type: 'ipv4', text: 'oid 1.3.6.1.4.1 and 01.2.3.4', expect: [] },
  // IPv6
  { type: 'ipv6', text: 'host 2001:0db8:85a3:0000:0000:8a2e:0370:7334 up', expect: ['2001:0db8:85a3:0000:0000:8a2e:0370:7334'] },
  { type: 'ipv6', text: 'peer [2001:db8::1]:5432 and ::1.', expect: ['2001:db8::1', '::1'] },
  { type: 'ipv6', text: '::ffff:192.0.2.128', expect: ['::ffff:192.0.2.128'] },
  { type: 'ipv6', text: 'at 12:30:45 mac de:ad:be:ef:00:11 std::vector', expect: [] },
  { type: 'ipv6', text: '2001:db8::1::2 and 1:2:3:4:5:6:7:8:9 and 12345::1', expect: [] },
];

describe('detectors', () => {
  for (const c of CASES) {
    const what = c.expect.length === 0 ? 'finds nothing' : `finds ${c.expect.length}`;
    it(`${c.type} ${what} when the text is ${JSON.stringify(c.text.length > 60 ? c.text.slice(0, 57) + '...' : c.text)}`, () => {
      assert.deepEqual(found(c.type, c.text), c.expect);
    });
  }

  it('validates Luhn, IBAN mod-97 and IPv6 structure when called directly', () => {
    assert.equal(luhn('79927398713'), true);
    assert.equal(luhn('79927398710'), false);
    assert.equal(ibanChecksum('GB82WEST12345698765432'), true);
    assert.equal(ibanChecksum('GB83WEST12345698765432'), false);
    assert.equal(isIpv6('1:2:3:4:5:6:7::'), true);
    assert.equal(isIpv6('1:2:3:4:5:6:7:8::'), false);
  });

  it('finds every occurrence when a value repeats', () => {
    assert.deepEqual(found('email', 'a@b.io, a@b.io; c@d.io'), ['a@b.io', 'a@b.io', 'c@d.io']);
  });

  it('gives the same answer when a finder is reused', () => {
    const finder = createDetector('us-ssn');
    assert.deepEqual(finder.find('123-45-6789'), [{ start: 0, end: 11 }]);
    assert.deepEqual(finder.find('123-45-6789'), [{ start: 0, end: 11 }]);
  });

  describe('custom', () => {
    it('finds matches of the pattern when it is valid', () => {
      const finder = createDetector('custom', { pattern: 'EMP-\\d{6}' });
      const text = 'employees EMP-123456 and EMP-654321, not EMP-12';
      assert.deepEqual(finder.find(text).map((s) => text.slice(s.start, s.end)), ['EMP-123456', 'EMP-654321']);
    });

    it('compiles with the u flag when the pattern uses Unicode properties', () => {
      const finder = createDetector('custom', { pattern: '\\p{Lu}{3}-\\d+' });
      assert.deepEqual(finder.find('ÄÖÜ-1'), [{ start: 0, end: 5 }]);
    });

    for (const [pattern, message, why] of [
      ['(unclosed', /does not compile/, 'does not compile'],
      ['a*', /empty string/, 'can match the empty string'],
      ['(?=a)', /empty string/, 'is a bare lookahead'],
      ['\\b', /empty string/, 'is a bare word boundary'],
      ['x|', /empty string/, 'has an empty alternative'],
    ] as const) {
      it(`refuses ${JSON.stringify(pattern)} when it ${why}`, () => {
        assert.throws(() => createDetector('custom', { pattern }), (e: unknown) => e instanceof DetectorPatternError && message.test(e.message));
      });
    }

    it('refuses a missing pattern', () => {
      assert.throws(() => createDetector('custom'), DetectorPatternError);
    });
  });

  it('scans a long word in linear time when no candidate is in it (regression: quadratic URI rule)', () => {
    const word = 'x'.repeat(20_000);
    for (const type of ['email', 'payment-card', 'us-ssn', 'iban', 'phone', 'jwt', 'cloud-access-key', 'generic-secret', 'ipv4', 'ipv6'] as const) {
      const started = performance.now();
      createDetector(type).find(word);
      assert.ok(performance.now() - started < 50, `${type} took ${(performance.now() - started).toFixed(0)} ms`);
    }
  });

  describe('properties', () => {
    const types: readonly BuiltinDetectorType[] = ['email', 'payment-card', 'us-ssn', 'iban', 'phone', 'jwt', 'cloud-access-key', 'generic-secret', 'ipv4', 'ipv6'];
    const alphabet = fc.constantFrom(...'0123456789 -.:@+()=_"\'/aAzZeyJ\n€😀'.split(''));
    const texts = fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: alphabet, maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 100 }));

    it('never throws and returns sorted, disjoint, in-bounds spans when the text is arbitrary', () => {
      fc.assert(fc.property(fc.constantFrom(...types), texts, (type, text) => {
        const spans = createDetector(type).find(text);
        let previousEnd = -1;
        for (const s of spans) {
          assert.ok(s.start >= 0 && s.end <= text.length && s.start < s.end, JSON.stringify(s));
          assert.ok(s.start > previousEnd, 'sorted and disjoint');
          previousEnd = s.end;
        }
      }), { numRuns: 2000 });
    });

    it('finds a valid card number when it is embedded between words', () => {
      const luhnCard = fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 14, maxLength: 14 }).map((digits) => {
        const body = `4${digits.join('')}`;
        for (let check = 0; check <= 9; check++) if (luhn(body + String(check))) return body + String(check);
        throw new Error('unreachable');
      }).filter((n) => !/^(\d)\1+$/.test(n));
      fc.assert(fc.property(luhnCard, fc.constantFrom(' ', '"', '(', ': '), (card, around) => {
        assert.deepEqual(found('payment-card', `paid with${around}${card}${around}ok`), [card]);
      }));
    });
  });
});
