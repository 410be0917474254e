import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCustosError } from '../../lib/errors.ts';
import { analyseSql, loadSqlParser } from './parser.ts';

describe('loadSqlParser', () => {
  it('makes analyseSql throw ERR_SQL_PARSER_NOT_LOADED when it has not been awaited', () => {
    assert.throws(() => analyseSql('SELECT 1'), (e: unknown) => isCustosError(e, 'ERR_SQL_PARSER_NOT_LOADED'));
  });

  it('loads once when called repeatedly', async () => {
    const first = loadSqlParser();
    assert.equal(loadSqlParser(), first);
    await Promise.all([first, loadSqlParser()]);
    const analysis = analyseSql('SELECT 1');
    assert.ok(analysis.ok);
    assert.deepEqual(analysis.statements.map((s) => s.kinds), [['select']]);
  });
});
