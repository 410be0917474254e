import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import { decodeRecords, encodeRecord, MAX_RECORD_PAYLOAD, RECORD_HEADER_BYTES, resyncRecords } from './record-format.ts';

const events = [{ seq: 1, text: 'select 1' }, { seq: 2, text: 'ünïcødé €' }, { seq: 3, nested: { b: [1, 2], a: null } }];

function payloads(buf: Buffer, offset = 0): unknown[] {
  return decodeRecords(buf, offset).records.map((r) => JSON.parse(r.payload.toString('utf8')) as unknown);
}

describe('encodeRecord', () => {
  it('writes length, CRC-32 and JCS payload when encoding an event', () => {
    const record = encodeRecord({ b: 1, a: 'x' });
    const payload = Buffer.from('{"a":"x","b":1}');
    assert.equal(record.readUInt32BE(0), payload.length);
    assert.equal(record.readUInt32BE(4), crc32(payload));
    assert.deepEqual(record.subarray(RECORD_HEADER_BYTES), payload);
  });

  it('throws when the payload exceeds the maximum record size', () => {
    assert.throws(() => encodeRecord({ big: 'x'.repeat(MAX_RECORD_PAYLOAD) }), RangeError);
  });
});

describe('decodeRecords', () => {
  const log = Buffer.concat(events.map((e) => encodeRecord(e)));

  it('decodes every record and ends cleanly when the buffer is complete', () => {
    const result = decodeRecords(log);
    assert.deepEqual(payloads(log), events);
    assert.deepEqual(result.stop, { kind: 'end' });
    assert.equal(result.next, log.length);
  });

  it('stops before the torn record when the buffer ends at every possible byte', () => {
    const ends = [0, ...events.map((e) => encodeRecord(e).length)].map((_, i, a) => a.slice(0, i + 1).reduce((x, y) => x + y, 0));
    for (let cut = 0; cut <= log.length; cut++) {
      const result = decodeRecords(log.subarray(0, cut));
      const complete = ends.filter((e) => e > 0 && e <= cut).length;
      assert.equal(result.records.length, complete, `cut ${cut}`);
      const boundary = ends[complete] ?? 0;
      assert.equal(result.next, boundary, `cut ${cut}`);
      if (cut === boundary) assert.deepEqual(result.stop, { kind: 'end' });
      else assert.deepEqual(result.stop, { kind: 'torn', offset: boundary, bytes: cut - boundary });
    }
  });

  it('resumes from an offset when decoding incrementally', () => {
    const first = decodeRecords(log, 0, 1);
    assert.deepEqual(first.stop, { kind: 'limit' });
    assert.deepEqual(payloads(log, first.next), events.slice(1));
  });

  const corruptions: readonly { name: string; flip: number; reason: 'crc' | 'length' }[] = [
    { name: 'a payload byte of the second record flips', flip: encodeRecord(events[0] ?? {}).length + RECORD_HEADER_BYTES + 2, reason: 'crc' },
    { name: 'a CRC byte of the second record flips', flip: encodeRecord(events[0] ?? {}).length + 5, reason: 'crc' },
    { name: 'the high length byte of the second record flips', flip: encodeRecord(events[0] ?? {}).length, reason: 'length' },
  ];
  for (const { name, flip, reason } of corruptions) {
    it(`reports ${reason} corruption at the record when ${name}`, () => {
      const bad = Buffer.from(log);
      bad[flip] = (bad[flip] ?? 0) ^ 0xff;
      const result = decodeRecords(bad);
      assert.equal(result.records.length, 1);
      assert.deepEqual(result.stop, { kind: 'corrupt', offset: encodeRecord(events[0] ?? {}).length, reason });
      const resumed = resyncRecords(bad, result.next);
      assert.equal(resumed, result.next + encodeRecord(events[1] ?? {}).length);
      assert.deepEqual(payloads(bad, resumed), events.slice(2));
    });
  }

  it('treats a zero-filled tail as torn when the filesystem extended the file without data', () => {
    const padded = Buffer.concat([log, Buffer.alloc(4096)]);
    const result = decodeRecords(padded);
    assert.equal(result.records.length, 3);
    assert.deepEqual(result.stop, { kind: 'torn', offset: log.length, bytes: 4096 });
  });

  it('round-trips any JSON object when encoded and decoded', () => {
    fc.assert(fc.property(fc.array(fc.dictionary(fc.string(), fc.jsonValue()), { maxLength: 5 }), (objs) => {
      const buf = Buffer.concat(objs.map((o) => encodeRecord(o)));
      const result = decodeRecords(buf);
      assert.equal(result.records.length, objs.length);
      assert.deepEqual(result.records.map((r) => JSON.parse(r.payload.toString('utf8')) as unknown), objs.map((o) => JSON.parse(JSON.stringify(o)) as unknown));
    }), { numRuns: 200 });
  });
});
