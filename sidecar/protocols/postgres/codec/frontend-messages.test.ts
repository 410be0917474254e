import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isCustosError } from '../../../../lib/errors.ts';
import { FrontendFramer, type Frame } from './framer.ts';
import { decodeCleartextPassword, decodeFrontendMessage, decodeSASLInitialResponse, decodeStartupPacket, type FrontendMessage, type StartupPacket } from './frontend-messages.ts';
import { FRONTEND, PROTOCOL_CODE, STARTUP_PACKET_TYPE } from './constants.ts';
import * as fe from './frontend-serializer.ts';
import { startupPacket, startupParameters, typed } from './testing/test-buffers.ts';

/** Frames one typed message and decodes it, asserting the framer consumed it exactly. */
function roundTrip(bytes: Buffer): FrontendMessage {
  const f = new FrontendFramer();
  f.startTypedMode();
  const frames = f.push(bytes);
  assert.equal(frames.length, 1);
  assert.equal(f.bufferedBytes, 0);
  return decodeFrontendMessage(frames[0] as Frame);
}

function startup(bytes: Buffer): StartupPacket {
  const frames = new FrontendFramer().push(bytes);
  assert.equal(frames.length, 1);
  return decodeStartupPacket(frames[0] as Frame);
}

const str = fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replaceAll('\0', ''));
const bytes = fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u));
const value = fc.option(bytes, { nil: null });
const format = fc.constantFrom(0, 1);
const int32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const oid = fc.integer({ min: 0, max: 0xffffffff });

describe('decodeFrontendMessage', () => {
  it('round-trips every message type through serializer, framer and decoder', () => {
    fc.assert(
      fc.property(
        str, str, fc.array(oid, { maxLength: 5 }), fc.array(value, { maxLength: 5 }), fc.array(format, { maxLength: 5 }), int32, bytes, fc.constantFrom('S' as const, 'P' as const),
        (name, sql, oids, params, resultFormats, maxRows, data, kind) => {
          const paramFormats = params.map((p) => (p === null ? 0 : 1));
          const table: readonly [Buffer, FrontendMessage][] = [
            [fe.query(sql), { type: 'Query', sql }],
            [fe.parse(name, sql, oids), { type: 'Parse', name, sql, paramTypes: oids }],
            [fe.bind({ portal: name, statement: sql, paramFormats, params, resultFormats }), { type: 'Bind', portal: name, statement: sql, paramFormats, params, resultFormats }],
            [fe.describe(kind, name), { type: 'Describe', kind, name }],
            [fe.execute(name, maxRows), { type: 'Execute', portal: name, maxRows }],
            [fe.close(kind, name), { type: 'Close', kind, name }],
            [fe.sync(), { type: 'Sync' }],
            [fe.flush(), { type: 'Flush' }],
            [fe.copyData(data), { type: 'CopyData', data }],
            [fe.copyDone(), { type: 'CopyDone' }],
            [fe.copyFail(sql), { type: 'CopyFail', message: sql }],
            [fe.functionCall({ functionOid: oids[0] ?? 0, argFormats: paramFormats, args: params, resultFormat: 1 }),
              { type: 'FunctionCall', functionOid: oids[0] ?? 0, argFormats: paramFormats, args: params, resultFormat: 1 }],
            [fe.terminate(), { type: 'Terminate' }],
            [fe.passwordMessage(sql), { type: 'PasswordMessage', data: Buffer.from(`${sql}\0`) }],
          ];
          for (const [wire, expected] of table) assert.deepEqual(roundTrip(wire), expected);
        },
      ),
      { numRuns: 150 },
    );
  });

  const malformed: readonly { name: string; bytes: Buffer }[] = [
    { name: 'Query without a terminating NUL', bytes: typed('Q', Buffer.from('select 1')) },
    { name: 'Query with bytes after the NUL', bytes: typed('Q', Buffer.from('select 1\0drop table t\0')) },
    { name: 'Query with invalid UTF-8', bytes: typed('Q', Buffer.from([0x73, 0xc3, 0x28, 0])) },
    { name: 'Parse with a negative type count', bytes: typed('P', Buffer.from([0, 0x73, 0, 0xff, 0xff])) },
    { name: 'Parse whose type count exceeds the body', bytes: typed('P', Buffer.from([0, 0x73, 0, 0, 2, 0, 0, 0, 23])) },
    { name: 'Bind value longer than the message', bytes: typed('B', Buffer.from([0, 0, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff])) },
    { name: 'Bind value length -2', bytes: typed('B', Buffer.from([0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 0])) },
    { name: 'Bind format code 2', bytes: typed('B', Buffer.from([0, 0, 0, 1, 0, 2, 0, 0, 0, 0])) },
    { name: 'Bind with 2 formats for 1 value', bytes: typed('B', Buffer.from([0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0])) },
    { name: 'Describe of kind X', bytes: typed('D', Buffer.from('Xname\0')) },
    { name: 'Close without a kind', bytes: typed('C') },
    { name: 'Execute without maxRows', bytes: typed('E', Buffer.from([0])) },
    { name: 'Sync with a body', bytes: typed('S', Buffer.from([0])) },
    { name: 'an unknown type byte', bytes: typed('z') },
    { name: 'a backend-only type byte', bytes: typed('Z', Buffer.from('I')) },
  ];
  for (const c of malformed) {
    it(`throws ERR_PG_MALFORMED when given ${c.name}`, () => {
      assert.throws(() => roundTrip(c.bytes), (e: unknown) => isCustosError(e, 'ERR_PG_MALFORMED'));
    });
  }

  it('throws nothing but CustosError for any type byte and body', () => {
    const types = Object.values(FRONTEND);
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(...types), fc.integer({ min: 0, max: 255 })), fc.uint8Array({ maxLength: 48 }), (type, body) => {
        const payload = Buffer.from(body);
        try {
          decodeFrontendMessage({ type, payload, raw: payload });
        } catch (e: unknown) {
          if (!isCustosError(e, 'ERR_PG_MALFORMED')) throw e;
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('decodeStartupPacket', () => {
  it('decodes a StartupMessage with its parameters in order', () => {
    const msg = startup(fe.startupMessage({ user: 'app', database: 'db', application_name: 'psql' }));
    assert.ok(msg.type === 'StartupMessage');
    assert.equal(msg.protocolVersion, PROTOCOL_CODE.V3_0);
    assert.deepEqual([...msg.parameters], [['user', 'app'], ['database', 'db'], ['application_name', 'psql']]);
  });

  it('round-trips any parameter set with a user', () => {
    const key = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 12 }).map((s) => s.replaceAll('\0', 'x'));
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(key, str), { selector: ([k]) => k, maxLength: 20 }), str.filter((s) => s !== ''), (pairs, user) => {
        const params = new Map<string, string>([['user', user], ...pairs.filter(([k]) => k !== 'user')]);
        const msg = startup(fe.startupMessage(params));
        assert.deepEqual(msg, { type: 'StartupMessage', protocolVersion: PROTOCOL_CODE.V3_0, parameters: params });
      }),
      { numRuns: 150 },
    );
  });

  it('decodes SSLRequest, GSSENCRequest and CancelRequest', () => {
    assert.deepEqual(startup(fe.sslRequest()), { type: 'SSLRequest' });
    assert.deepEqual(startup(fe.gssEncRequest()), { type: 'GSSENCRequest' });
    assert.deepEqual(startup(fe.cancelRequest(1234, Buffer.from([9, 8, 7, 6]))), { type: 'CancelRequest', pid: 1234, secret: Buffer.from([9, 8, 7, 6]) });
  });

  const params = (pairs: readonly (readonly [string, string])[], terminate = true): Buffer => startupPacket(PROTOCOL_CODE.V3_0, startupParameters(pairs, terminate));
  const tooMany = Array.from({ length: 65 }, (_, i) => [`p${i}`, 'v'] as const);
  const bad: readonly { name: string; bytes: Buffer; match: RegExp }[] = [
    { name: 'the user is missing', bytes: params([['database', 'db']]), match: /no PostgreSQL user name/ },
    { name: 'the user is empty', bytes: params([['user', '']]), match: /no PostgreSQL user name/ },
    { name: 'the list has no final NUL', bytes: params([['user', 'u']], false), match: /not NUL-terminated/ },
    { name: 'a value has no NUL', bytes: startupPacket(PROTOCOL_CODE.V3_0, Buffer.from('user\0u')), match: /not NUL-terminated/ },
    { name: 'a parameter is duplicated', bytes: params([['user', 'a'], ['user', 'b']]), match: /duplicate parameter "user"/ },
    { name: 'there are more than 64 parameters', bytes: params([['user', 'u'], ...tooMany]), match: /more than 64/ },
    { name: 'bytes follow the final NUL', bytes: startupPacket(PROTOCOL_CODE.V3_0, Buffer.from('user\0u\0\0x')), match: /trailing/ },
    { name: 'the protocol is 2.0', bytes: startupPacket(0x00020000, startupParameters([['user', 'u']])), match: /unsupported frontend protocol 2\.0/ },
    { name: 'an SSLRequest carries a body', bytes: startupPacket(PROTOCOL_CODE.SSLRequest, Buffer.from([0])), match: /trailing/ },
    { name: 'a CancelRequest has a 2-byte secret', bytes: startupPacket(PROTOCOL_CODE.CancelRequest, Buffer.from([0, 0, 0, 1, 0, 0])), match: /secret of 2 bytes/ },
  ];
  for (const c of bad) {
    it(`throws ERR_PG_MALFORMED when ${c.name}`, () => {
      assert.throws(() => startup(c.bytes), (e: unknown) => isCustosError(e, 'ERR_PG_MALFORMED') && c.match.test(e.message));
    });
  }

  it('allows exactly 64 parameters', () => {
    const pairs = [['user', 'u'] as const, ...tooMany.slice(0, 63)];
    const msg = startup(params(pairs));
    assert.ok(msg.type === 'StartupMessage');
    assert.equal(msg.parameters.size, 64);
  });

  it('throws nothing but CustosError for any startup packet body', () => {
    const codes = [...Object.values(PROTOCOL_CODE), 0x00020000];
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(...codes), int32), fc.uint8Array({ maxLength: 64 }), (code, body) => {
        const raw = startupPacket(code, body);
        try {
          decodeStartupPacket({ type: STARTUP_PACKET_TYPE, payload: raw.subarray(4), raw });
        } catch (e: unknown) {
          if (!isCustosError(e, 'ERR_PG_MALFORMED')) throw e;
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('PasswordMessage interpretations', () => {
  it('decodes a cleartext password', () => {
    const msg = roundTrip(fe.passwordMessage('eyJhbGciOi.token'));
    assert.ok(msg.type === 'PasswordMessage');
    assert.equal(decodeCleartextPassword(msg.data), 'eyJhbGciOi.token');
  });

  it('rejects a cleartext password with bytes after its NUL', () => {
    assert.throws(() => decodeCleartextPassword(Buffer.from('a\0b\0')), (e: unknown) => isCustosError(e, 'ERR_PG_MALFORMED'));
  });

  it('round-trips SASLInitialResponse with and without data', () => {
    for (const response of [Buffer.from('n,,n=,r=abc'), null]) {
      const msg = roundTrip(fe.saslInitialResponse('SCRAM-SHA-256', response));
      assert.ok(msg.type === 'PasswordMessage');
      assert.deepEqual(decodeSASLInitialResponse(msg.data), { mechanism: 'SCRAM-SHA-256', response });
    }
  });
});
