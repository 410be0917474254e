import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApiException } from '@kubernetes/client-node';
import { describeKubeError } from './kube-errors.ts';
import { classifyErrorEvent, classifyWatchDone, needsBackoff } from './watch-end.ts';

function httpError(statusCode: number, message: string): Error {
  return Object.assign(new Error(message), { statusCode });
}

describe('classifyWatchDone', () => {
  const cases: Array<{ name: string; err: unknown; kind: string; status?: number }> = [
    { name: 'a clean end of the stream', err: null, kind: 'closed' },
    { name: 'client-node\'s inactivity timeout', err: new DOMException('The operation was aborted due to timeout', 'TimeoutError'), kind: 'timeout' },
    { name: 'an HTTP 410 answer to the watch request', err: httpError(410, 'Gone'), kind: 'expired' },
    { name: 'an HTTP 500', err: httpError(500, 'Internal Server Error'), kind: 'error', status: 500 },
    { name: 'an HTTP 401', err: httpError(401, 'Unauthorized'), kind: 'error', status: 401 },
    { name: 'a reset connection', err: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), kind: 'error' },
    { name: 'an ApiException 410', err: new ApiException(410, 'Gone', '{"reason":"Expired","message":"too old"}', {}), kind: 'expired' },
  ];
  for (const c of cases) {
    it(`classifies ${c.name} as ${c.kind}`, () => {
      const end = classifyWatchDone(c.err, describeKubeError);
      assert.equal(end.kind, c.kind);
      assert.equal('status' in end ? end.status : undefined, c.status);
    });
  }
});

describe('classifyErrorEvent', () => {
  it('reads 410 Expired as expired and anything else as an error with its code', () => {
    assert.deepEqual(classifyErrorEvent({ kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 5 (9)' }), {
      kind: 'expired', detail: 'ERROR event 410 Expired: too old resource version: 5 (9)',
    });
    assert.deepEqual(classifyErrorEvent({ kind: 'Status', code: 500, reason: 'InternalError', message: 'boom' }), {
      kind: 'error', detail: 'ERROR event 500 InternalError: boom', status: 500,
    });
    assert.deepEqual(classifyErrorEvent('garbage'), { kind: 'error', detail: 'ERROR event' });
  });
});

describe('needsBackoff', () => {
  it('backs off after failures and clean ends, not after timeouts, the watchdog or planned relists', () => {
    assert.deepEqual(
      (['closed', 'error', 'expired', 'timeout', 'watchdog', 'relist', 'stopped'] as const).map((kind) => needsBackoff(kind === 'error' || kind === 'expired' ? { kind, detail: '' } : { kind })),
      [true, true, true, false, false, false, false],
    );
  });
});

describe('describeKubeError', () => {
  it('names status, reason and message without the response headers', () => {
    const e = new ApiException(409, 'Conflict', '{"kind":"Status","reason":"Conflict","message":"the object has been modified"}', { 'set-cookie': 'secret' });
    assert.equal(describeKubeError(e), 'HTTP 409 Conflict: the object has been modified');
    assert.equal(describeKubeError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })), 'ECONNREFUSED Error: connect ECONNREFUSED 127.0.0.1:1');
    assert.equal(describeKubeError(httpError(403, 'Forbidden')), 'HTTP 403 Error: Forbidden');
  });
});
