import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ResponseTracker, type TrackedExecution } from './response-tracker.ts';

const P = 0x31, B = 0x32, C3 = 0x33, T = 0x54, n = 0x6e, D = 0x44, C = 0x43, E = 0x45, N = 0x4e, s = 0x73;

function execution(id: string): TrackedExecution {
  return { id, startedAt: 0, rows: 0, commandTags: [] };
}

describe('ResponseTracker', () => {
  it('attributes rows and the command tag of a simple query to its execution', () => {
    const t = new ResponseTracker();
    t.expect({ expect: 'query', injected: false, execution: execution('q1') });
    assert.equal(t.onBackendMessage(T).kind, 'forward');
    t.onBackendMessage(D);
    t.onBackendMessage(D);
    t.onBackendMessage(C, { commandTag: 'SELECT 2' });
    assert.equal(t.takeOutcomes().length, 0, 'a simple query completes at ReadyForQuery, not at CommandComplete');
    t.onReadyForQuery('I');
    const [outcome] = t.takeOutcomes();
    assert.equal(outcome?.status, 'success');
    assert.equal(outcome.execution.rows, 2);
    assert.deepEqual(outcome.execution.commandTags, ['SELECT 2']);
  });

  it('swallows the completions of injected Parse/Bind and replaces the substitute error with the denial', () => {
    const t = new ResponseTracker();
    const denial = Buffer.from('denial');
    t.expect({ expect: 'parse', injected: false });
    t.expect({ expect: 'bind', injected: false });
    t.expect({ expect: 'parse', injected: true });
    t.expect({ expect: 'bind', injected: true });
    t.expect({ expect: 'execute', injected: false, denial });
    t.sync();
    assert.equal(t.onBackendMessage(P).kind, 'forward');
    assert.equal(t.onBackendMessage(B).kind, 'forward');
    assert.equal(t.onBackendMessage(P).kind, 'swallow');
    assert.equal(t.onBackendMessage(B).kind, 'swallow');
    const verdict = t.onBackendMessage(E, { sqlstate: '42501' });
    assert.deepEqual(verdict, { kind: 'replace', bytes: denial });
    t.onReadyForQuery('I');
    assert.equal(t.outstanding, 0);
  });

  it('passes the server error through when the substitute failed for another reason (aborted transaction)', () => {
    const t = new ResponseTracker();
    t.expect({ expect: 'query', injected: false, denial: Buffer.from('x') });
    assert.equal(t.onBackendMessage(E, { sqlstate: '25P02' }).kind, 'forward');
  });

  it('reports executions skipped after an earlier error of the same batch', () => {
    const t = new ResponseTracker();
    t.expect({ expect: 'bind', injected: false });
    t.expect({ expect: 'execute', injected: false, execution: execution('e1') });
    t.expect({ expect: 'execute', injected: false, execution: execution('e2') });
    t.sync();
    t.onBackendMessage(E, { sqlstate: '22P02' }); // the Bind failed
    t.onReadyForQuery('I');
    const outcomes = t.takeOutcomes().map((o) => [o.execution.id, o.status]);
    assert.deepEqual(outcomes, [['e1', 'skipped'], ['e2', 'skipped']]);
  });

  it('attributes an error to the execution at the head of the batch', () => {
    const t = new ResponseTracker();
    t.expect({ expect: 'execute', injected: false, execution: execution('ok') });
    t.expect({ expect: 'execute', injected: false, execution: execution('bad') });
    t.expect({ expect: 'execute', injected: false, execution: execution('never') });
    t.sync();
    t.onBackendMessage(D);
    t.onBackendMessage(C, { commandTag: 'SELECT 1' });
    t.onBackendMessage(E, { sqlstate: '23505' });
    t.onReadyForQuery('E');
    const outcomes = t.takeOutcomes().map((o) => [o.execution.id, o.status, o.sqlstate]);
    assert.deepEqual(outcomes, [['ok', 'success', undefined], ['bad', 'failure', '23505'], ['never', 'skipped', undefined]]);
    assert.equal(t.transactionStatus, 'E');
  });

  it('does not track messages sent into a batch the server has already failed', () => {
    const t = new ResponseTracker();
    t.expect({ expect: 'parse', injected: false });
    t.onBackendMessage(E, { sqlstate: '42601' });
    t.expect({ expect: 'execute', injected: false, execution: execution('late') });
    t.sync();
    t.onReadyForQuery('I');
    assert.deepEqual(t.takeOutcomes().map((o) => o.status), ['skipped']);
  });

  it('keeps pipelined batches apart, one ReadyForQuery each', () => {
    const t = new ResponseTracker();
    t.expect({ expect: 'execute', injected: false, execution: execution('a') });
    t.sync();
    t.expect({ expect: 'parse', injected: true });
    t.expect({ expect: 'execute', injected: false, execution: execution('b') });
    t.sync();
    assert.equal(t.outstanding, 2);
    t.onBackendMessage(s);
    t.onReadyForQuery('T');
    assert.equal(t.onBackendMessage(P).kind, 'swallow');
    t.onBackendMessage(n);
    t.onBackendMessage(C, { commandTag: 'INSERT 0 1' });
    t.onReadyForQuery('T');
    assert.deepEqual(t.takeOutcomes().map((o) => [o.execution.id, o.status]), [['a', 'success'], ['b', 'success']]);
    assert.equal(t.outstanding, 0);
  });

  it('forwards notices and close completions without disturbing the queue', () => {
    const t = new ResponseTracker();
    t.expect({ expect: 'close', injected: false });
    assert.equal(t.onBackendMessage(N).kind, 'forward');
    assert.equal(t.onBackendMessage(C3).kind, 'forward');
    t.sync();
    t.onReadyForQuery('I');
    assert.equal(t.outstanding, 0);
  });
});
