import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { isRequestId, newRequestId } from './request-id.ts';

describe('newRequestId', () => {
  it('encodes all-zero and all-one bytes at the ends of the alphabet', () => {
    assert.equal(newRequestId(() => new Uint8Array(8)), 'ar-aaaaaaaaaaaa');
    assert.equal(newRequestId(() => new Uint8Array(8).fill(0xff)), 'ar-777777777777');
  });

  it('uses the top 60 bits in order', () => {
    // 0x08 = 00001|000: the first character takes the top five bits.
    assert.equal(newRequestId(() => Uint8Array.of(0x08, 0, 0, 0, 0, 0, 0, 0)), 'ar-baaaaaaaaaaa');
  });

  it('produces valid Kubernetes names that differ between calls', () => {
    const ids = new Set(Array.from({ length: 200 }, () => newRequestId((n) => randomBytes(n))));
    assert.equal(ids.size, 200);
    for (const id of ids) {
      assert.ok(isRequestId(id), id);
      assert.match(id, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
  });

  it('refuses a short random source rather than padding it', () => {
    assert.throws(() => newRequestId(() => new Uint8Array(4)), RangeError);
  });

  it('rejects look-alike ids', () => {
    for (const bad of ['ar-ABCDEFGHIJKL', 'ar-abcdefghijk', 'ar-abcdefghijk1', 'xx-abcdefghijkl', 'ar-abcdefghijkl\n']) {
      assert.equal(isRequestId(bad), false, bad);
    }
  });
});
