import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isCustosError } from '../../../../lib/errors.ts';
import { BackendFramer, FrontendFramer, type Frame } from './framer.ts';
import { MAX_STARTUP_PACKET_LENGTH, PROTOCOL_CODE, STARTUP_PACKET_TYPE } from './constants.ts';
import * as fe from './frontend-serializer.ts';
import * as be from './backend-serializer.ts';
import { buffers, header, startupPacket, typed } from './testing/test-buffers.ts';

type Summary = { type: number; payload: string; raw: string };
const summarize = (frames: readonly Frame[]): Summary[] =>
  frames.map((f) => ({ type: f.type, payload: f.payload.toString('hex'), raw: f.raw.toString('hex') }));

const backendStream = (): Buffer[] => [
  buffers.authenticationSASL(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']),
  buffers.authenticationOk(),
  be.parameterStatus('server_version', '15.18'),
  be.backendKeyData(4242, Buffer.from([1, 2, 3, 4])),
  be.readyForQuery('I'),
  buffers.rowDescription([{ name: 'a', tableOid: 16384, attributeNumber: 1, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 }]),
  buffers.dataRow([Buffer.from('1'), null, Buffer.alloc(0)]),
  be.commandComplete('SELECT 1'),
  buffers.copyData(Buffer.alloc(300, 7)),
  be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'hello' }),
  buffers.parseComplete(),
  be.emptyQueryResponse(),
  be.errorResponse({ severity: 'ERROR', code: '42501', message: 'permission denied' }),
  be.readyForQuery('E'),
];

const frontendStream = (): Buffer[] => [
  fe.sslRequest(),
  fe.startupMessage({ user: 'app', database: 'db', application_name: 'x' }),
  fe.passwordMessage('secret'),
  fe.query('select 1'),
  fe.parse('s1', 'select $1::int', [23]),
  fe.bind({ portal: 'p', statement: 's1', paramFormats: [0], params: [Buffer.from('7')], resultFormats: [1] }),
  fe.describe('P', 'p'),
  fe.execute('p', 10),
  fe.sync(),
  fe.copyData(Buffer.alloc(100, 1)),
  fe.copyDone(),
  fe.terminate(),
];

function pushAll(framer: FrontendFramer | BackendFramer, chunks: readonly Buffer[]): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) out.push(...framer.push(c));
  return out;
}

describe('BackendFramer', () => {
  it('yields the same frames for every split point of a multi-message stream', () => {
    const all = Buffer.concat(backendStream());
    const expected = summarize(new BackendFramer().push(all));
    assert.equal(expected.length, backendStream().length);
    for (let i = 0; i <= all.length; i++) {
      const f = new BackendFramer();
      const got = summarize(pushAll(f, [all.subarray(0, i), all.subarray(i)]));
      assert.deepEqual(got, expected, `split at ${i}`);
      assert.equal(f.bufferedBytes, 0);
    }
  });

  it('yields the same frames when fed one byte at a time', () => {
    const all = Buffer.concat(backendStream());
    const expected = summarize(new BackendFramer().push(all));
    const f = new BackendFramer();
    const got: Frame[] = [];
    for (let i = 0; i < all.length; i++) got.push(...f.push(all.subarray(i, i + 1)));
    assert.deepEqual(summarize(got), expected);
  });

  it('yields the same frames for any random chunking', () => {
    const all = Buffer.concat(backendStream());
    const expected = summarize(new BackendFramer().push(all));
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: all.length - 1 }), { maxLength: 20 }), (cuts) => {
        const points = [0, ...cuts.sort((a, b) => a - b), all.length];
        const chunks = points.slice(1).map((end, i) => all.subarray(points[i], end));
        assert.deepEqual(summarize(pushAll(new BackendFramer(), chunks)), expected);
      }),
      { numRuns: 200 },
    );
  });

  it('returns subarrays of the chunk without copying when the chunk holds whole messages', () => {
    const all = Buffer.concat(backendStream());
    const frames = new BackendFramer().push(all);
    for (const f of frames) {
      assert.equal(f.raw.buffer, all.buffer);
      assert.equal(f.payload.buffer, all.buffer);
    }
  });

  it('holds back a truncated message until the rest arrives', () => {
    const msg = be.commandComplete('INSERT 0 1');
    const f = new BackendFramer();
    assert.deepEqual(f.push(msg.subarray(0, msg.length - 1)), []);
    assert.equal(f.bufferedBytes, msg.length - 1);
    const frames = f.push(msg.subarray(msg.length - 1));
    assert.equal(frames.length, 1);
    assert.deepEqual(frames[0]?.raw, msg);
    assert.equal(f.bufferedBytes, 0);
  });

  const bad: readonly { name: string; bytes: Buffer; code: string; max?: number }[] = [
    { name: 'length 3', bytes: header('Z', 3), code: 'ERR_PG_MALFORMED' },
    { name: 'length 0', bytes: header('Z', 0), code: 'ERR_PG_MALFORMED' },
    { name: 'negative length', bytes: header('D', -1), code: 'ERR_PG_MALFORMED' },
    { name: 'length over the default 64 MiB cap', bytes: header('D', 64 * 1024 * 1024 + 1), code: 'ERR_PG_FRAME_TOO_LARGE' },
    { name: 'length over a configured cap', bytes: header('D', 1025), code: 'ERR_PG_FRAME_TOO_LARGE', max: 1024 },
  ];
  for (const c of bad) {
    it(`throws ${c.code} before buffering when the declared length is ${c.name}`, () => {
      const f = new BackendFramer(c.max !== undefined ? { maxMessageLength: c.max } : {});
      assert.throws(() => f.push(c.bytes), (e: unknown) => isCustosError(e, c.code));
      // Framing is lost: the framer refuses further input.
      assert.throws(() => f.push(be.readyForQuery('I')), (e: unknown) => isCustosError(e, c.code));
    });
    it(`throws ${c.code} when the bad header of "${c.name}" arrives split after a good message`, () => {
      const f = new BackendFramer(c.max !== undefined ? { maxMessageLength: c.max } : {});
      const all = Buffer.concat([be.readyForQuery('I'), c.bytes]);
      assert.equal(f.push(all.subarray(0, 8)).length, 1);
      assert.throws(() => f.push(all.subarray(8)), (e: unknown) => isCustosError(e, c.code));
    });
  }

  it('accepts a message exactly at the configured cap', () => {
    const body = Buffer.alloc(1020);
    const f = new BackendFramer({ maxMessageLength: 1024 });
    assert.equal(f.push(typed('d', body)).length, 1);
  });

  it('throws nothing but CustosError on random bytes in random chunks', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const f = new BackendFramer({ maxMessageLength: 4096 });
        try {
          for (const c of chunks) for (const fr of f.push(Buffer.from(c))) assert.ok(fr.raw.length >= 5);
        } catch (e: unknown) {
          if (!isCustosError(e)) throw e;
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('FrontendFramer', () => {
  it('yields the same frames for every split point of a startup-then-typed stream', () => {
    const all = Buffer.concat(frontendStream());
    const expected = summarize(new FrontendFramer().push(all));
    assert.equal(expected.length, frontendStream().length);
    assert.equal(expected[0]?.type, STARTUP_PACKET_TYPE);
    assert.equal(expected[1]?.type, STARTUP_PACKET_TYPE);
    assert.equal(expected[2]?.type, 'p'.charCodeAt(0));
    for (let i = 0; i <= all.length; i++) {
      const got = summarize(pushAll(new FrontendFramer(), [all.subarray(0, i), all.subarray(i)]));
      assert.deepEqual(got, expected, `split at ${i}`);
    }
  });

  it('stays in startup mode after SSLRequest and GSSENCRequest and switches after StartupMessage', () => {
    const f = new FrontendFramer();
    f.push(fe.sslRequest());
    assert.equal(f.mode, 'startup');
    f.push(fe.gssEncRequest());
    assert.equal(f.mode, 'startup');
    f.push(fe.startupMessage({ user: 'u' }));
    assert.equal(f.mode, 'typed');
  });

  it('lets the caller switch to typed mode explicitly', () => {
    const f = new FrontendFramer();
    f.startTypedMode();
    const frames = f.push(fe.query('select 1'));
    assert.equal(frames[0]?.type, 'Q'.charCodeAt(0));
  });

  it('reports bytes buffered behind an SSLRequest so the caller can detect buffer stuffing', () => {
    const f = new FrontendFramer();
    const frames = f.push(Buffer.concat([fe.sslRequest(), fe.startupMessage({ user: 'u' }).subarray(0, 6)]));
    assert.equal(frames.length, 1);
    assert.equal(f.bufferedBytes, 6);
  });

  const bad: readonly { name: string; bytes: Buffer; code: string; max?: number }[] = [
    { name: 'startup length 7', bytes: Buffer.from([0, 0, 0, 7, 0, 3, 0, 0]), code: 'ERR_PG_MALFORMED' },
    { name: 'startup length 0', bytes: Buffer.from([0, 0, 0, 0]), code: 'ERR_PG_MALFORMED' },
    { name: 'startup length over MAX_STARTUP_PACKET_LENGTH', bytes: Buffer.from([0, 0, 0x27, 0x11, 0, 3, 0, 0]) /* 10 001 */, code: 'ERR_PG_FRAME_TOO_LARGE' },
    { name: 'negative startup length', bytes: Buffer.from([0xff, 0xff, 0xff, 0xff]), code: 'ERR_PG_MALFORMED' },
  ];
  for (const c of bad) {
    it(`throws ${c.code} when the ${c.name}`, () => {
      assert.throws(() => new FrontendFramer().push(c.bytes), (e: unknown) => isCustosError(e, c.code));
    });
  }

  it('accepts a startup packet of exactly MAX_STARTUP_PACKET_LENGTH and refuses one byte more', () => {
    const ok = startupPacket(PROTOCOL_CODE.V3_0, Buffer.alloc(MAX_STARTUP_PACKET_LENGTH - 8));
    assert.equal(new FrontendFramer().push(ok).length, 1);
    const tooBig = startupPacket(PROTOCOL_CODE.V3_0, Buffer.alloc(MAX_STARTUP_PACKET_LENGTH - 7));
    assert.throws(() => new FrontendFramer().push(tooBig.subarray(0, 4)), (e: unknown) => isCustosError(e, 'ERR_PG_FRAME_TOO_LARGE'));
  });

  it('refuses a typed message over the default 16 MiB frontend cap from its header alone', () => {
    const f = new FrontendFramer();
    f.startTypedMode();
    assert.throws(() => f.push(header('Q', 16 * 1024 * 1024 + 1)), (e: unknown) => isCustosError(e, 'ERR_PG_FRAME_TOO_LARGE'));
  });

  it('throws nothing but CustosError on random bytes in random chunks', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const f = new FrontendFramer({ maxMessageLength: 4096 });
        try {
          for (const c of chunks) f.push(Buffer.from(c));
        } catch (e: unknown) {
          if (!isCustosError(e)) throw e;
        }
      }),
      { numRuns: 500 },
    );
  });
});
