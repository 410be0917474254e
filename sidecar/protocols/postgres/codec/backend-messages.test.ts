import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isCustosError } from '../../../../lib/errors.ts';
import { BackendFramer, type Frame } from './framer.ts';
import { decodeBackendMessage, errorFieldsSummary, type BackendMessage, type FieldDescription } from './backend-messages.ts';
import { BACKEND } from './constants.ts';
import * as be from './backend-serializer.ts';
import { buffers, typed } from './testing/test-buffers.ts';

function roundTrip(bytes: Buffer): BackendMessage {
  const f = new BackendFramer();
  const frames = f.push(bytes);
  assert.equal(frames.length, 1);
  assert.equal(f.bufferedBytes, 0);
  return decodeBackendMessage(frames[0] as Frame);
}

const str = fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replaceAll('\0', ''));
const bytes = fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u));
const int16 = fc.integer({ min: -0x8000, max: 0x7fff });
const int32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const uint32 = fc.integer({ min: 0, max: 0xffffffff });
const field: fc.Arbitrary<FieldDescription> = fc.record({
  name: str, tableOid: uint32, attributeNumber: int16, typeOid: uint32, typeSize: int16, typeModifier: int32, format: fc.constantFrom(0, 1),
}).map((f) => ({ ...f }));

describe('decodeBackendMessage', () => {
  it('round-trips every message type the proxy reads', () => {
    fc.assert(
      fc.property(str, str, bytes, int32, fc.array(field, { maxLength: 4 }), fc.array(fc.option(bytes, { nil: null }), { maxLength: 5 }), fc.array(uint32, { maxLength: 5 }),
        (a, b, data, n, fields, values, oids) => {
          const salt = Buffer.from([1, 2, 3, 4]);
          const secret = Buffer.from([n & 0xff, 1, 2, 3]);
          const table: readonly [Buffer, BackendMessage][] = [
            [buffers.authenticationOk(), { type: 'AuthenticationOk' }],
            [buffers.authenticationCleartextPassword(), { type: 'AuthenticationCleartextPassword' }],
            [buffers.authenticationMD5Password(salt), { type: 'AuthenticationMD5Password', salt }],
            [buffers.authenticationSASL(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']), { type: 'AuthenticationSASL', mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'] }],
            [buffers.authenticationSASLContinue(data), { type: 'AuthenticationSASLContinue', data }],
            [buffers.authenticationSASLFinal(data), { type: 'AuthenticationSASLFinal', data }],
            [buffers.authenticationGSS(), { type: 'AuthenticationUnsupported', code: 7 }],
            [be.authenticationOk(), { type: 'AuthenticationOk' }],
            [be.authenticationCleartextPassword(), { type: 'AuthenticationCleartextPassword' }],
            [be.parameterStatus(a, b), { type: 'ParameterStatus', name: a, value: b }],
            [be.backendKeyData(n, secret), { type: 'BackendKeyData', pid: n, secret }],
            [be.readyForQuery('T'), { type: 'ReadyForQuery', status: 'T' }],
            [be.commandComplete(a), { type: 'CommandComplete', tag: a }],
            [buffers.rowDescription(fields), { type: 'RowDescription', fields }],
            [buffers.dataRow(values), { type: 'DataRow', values }],
            [buffers.parameterDescription(oids), { type: 'ParameterDescription', typeOids: oids }],
            [buffers.notification(n, a, b), { type: 'NotificationResponse', pid: n, channel: a, payload: b }],
            [buffers.parseComplete(), { type: 'ParseComplete' }],
            [buffers.bindComplete(), { type: 'BindComplete' }],
            [buffers.closeComplete(), { type: 'CloseComplete' }],
            [buffers.noData(), { type: 'NoData' }],
            [buffers.portalSuspended(), { type: 'PortalSuspended' }],
            [be.emptyQueryResponse(), { type: 'EmptyQueryResponse' }],
            [buffers.copyResponse('G', 0, [0, 0]), { type: 'CopyInResponse', format: 0, columnFormats: [0, 0] }],
            [buffers.copyResponse('H', 1, [1]), { type: 'CopyOutResponse', format: 1, columnFormats: [1] }],
            [buffers.copyResponse('W', 0, []), { type: 'CopyBothResponse', format: 0, columnFormats: [] }],
            [buffers.copyData(data), { type: 'CopyData', data }],
            [buffers.copyDone(), { type: 'CopyDone' }],
            [buffers.functionCallResponse(values[0] ?? null), { type: 'FunctionCallResponse', value: values[0] ?? null }],
            [be.negotiateProtocolVersion(0, [`_pq_.${a}`]), { type: 'NegotiateProtocolVersion', newestMinor: 0, unrecognizedOptions: [`_pq_.${a}`] }],
          ];
          for (const [wire, expected] of table) assert.deepEqual(roundTrip(wire), expected);
        }),
      { numRuns: 100 },
    );
  });

  it('round-trips ErrorResponse and NoticeResponse with S, V, C, M, D, H and extra fields', () => {
    fc.assert(
      fc.property(str, str, str, fc.constantFrom('42501', '57014', '28P01', '08P01'), (message, detail, hint, code) => {
        const fields = { severity: 'ERROR', code, message, detail, hint, extra: { W: 'context', n: 'constraint' } } as const;
        const err = roundTrip(be.errorResponse(fields));
        assert.ok(err.type === 'ErrorResponse');
        assert.deepEqual([...err.fields], [['S', 'ERROR'], ['V', 'ERROR'], ['C', code], ['M', message], ['D', detail], ['H', hint], ['W', 'context'], ['n', 'constraint']]);
        assert.deepEqual(errorFieldsSummary(err.fields), { severity: 'ERROR', sqlstate: code, message });
        const notice = roundTrip(be.noticeResponse({ severity: 'NOTICE', code: '00000', message }));
        assert.ok(notice.type === 'NoticeResponse');
        assert.equal(notice.fields.get('M'), message);
      }),
      { numRuns: 100 },
    );
  });

  it('decodes invalid UTF-8 in server text with replacement characters instead of failing', () => {
    const msg = roundTrip(typed('C', Buffer.from([0x53, 0xff, 0])));
    assert.deepEqual(msg, { type: 'CommandComplete', tag: 'S\ufffd' });
  });

  const malformed: readonly { name: string; bytes: Buffer }[] = [
    { name: 'ReadyForQuery with status X', bytes: typed('Z', Buffer.from('X')) },
    { name: 'ReadyForQuery without status', bytes: typed('Z') },
    { name: 'BackendKeyData with a 2-byte secret', bytes: typed('K', Buffer.from([0, 0, 0, 1, 0, 0])) },
    { name: 'MD5Password with a 3-byte salt', bytes: typed('R', Buffer.from([0, 0, 0, 5, 1, 2, 3])) },
    { name: 'AuthenticationOk with trailing bytes', bytes: typed('R', Buffer.from([0, 0, 0, 0, 1])) },
    { name: 'a SASL mechanism list without the final NUL', bytes: typed('R', Buffer.from([0, 0, 0, 10, 0x41, 0])) },
    { name: 'an ErrorResponse without its terminator', bytes: typed('E', Buffer.from('SERROR\0')) },
    { name: 'a DataRow value longer than the message', bytes: typed('D', Buffer.from([0, 1, 0, 0, 0, 9, 1])) },
    { name: 'a DataRow value length -2', bytes: typed('D', Buffer.from([0, 1, 0xff, 0xff, 0xff, 0xfe])) },
    { name: 'a RowDescription with a truncated field', bytes: typed('T', Buffer.from([0, 1, 0x61, 0, 0, 0])) },
    { name: 'NegotiateProtocolVersion claiming a billion options', bytes: typed('v', Buffer.from([0, 0, 0, 0, 0x40, 0, 0, 0])) },
    { name: 'an unknown type byte', bytes: typed('q') },
  ];
  for (const c of malformed) {
    it(`throws ERR_PG_MALFORMED when given ${c.name}`, () => {
      assert.throws(() => roundTrip(c.bytes), (e: unknown) => isCustosError(e, 'ERR_PG_MALFORMED'));
    });
  }

  it('throws nothing but CustosError for any type byte and body', () => {
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(...Object.values(BACKEND)), fc.integer({ min: 0, max: 255 })), fc.uint8Array({ maxLength: 48 }), (type, body) => {
        const payload = Buffer.from(body);
        try {
          decodeBackendMessage({ type, payload, raw: payload });
        } catch (e: unknown) {
          if (!isCustosError(e, 'ERR_PG_MALFORMED')) throw e;
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('backend serializer', () => {
  it('answers SSLRequest with one byte', () => {
    assert.deepEqual(be.sslAccept(), Buffer.from('S'));
    assert.deepEqual(be.sslRefuse(), Buffer.from('N'));
  });

  it('encodes ReadyForQuery byte for byte as PostgreSQL does', () => {
    assert.deepEqual(be.readyForQuery('I'), Buffer.from([0x5a, 0, 0, 0, 5, 0x49]));
  });

  const refused: readonly { name: string; build: () => Buffer }[] = [
    { name: 'a SQLSTATE that is not five characters', build: () => be.errorResponse({ severity: 'ERROR', code: '4250', message: 'x' }) },
    { name: 'a message containing NUL', build: () => be.errorResponse({ severity: 'ERROR', code: '42501', message: 'a\0b' }) },
    { name: 'an extra field that overrides M', build: () => be.errorResponse({ severity: 'ERROR', code: '42501', message: 'x', extra: { M: 'y' } }) },
    { name: 'a cancel secret of 3 bytes', build: () => be.backendKeyData(1, Buffer.from([1, 2, 3])) },
  ];
  for (const c of refused) {
    it(`throws ERR_PG_ENCODE when given ${c.name}`, () => {
      assert.throws(c.build, (e: unknown) => isCustosError(e, 'ERR_PG_ENCODE'));
    });
  }
});
