import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkStartupParameters, isUtf8Encoding, searchPathOf } from './startup-parameters.ts';
import { substituteSql } from './substitute-statement.ts';

describe('checkStartupParameters', () => {
  const table: Array<[string, Record<string, string>, string | null]> = [
    ['accepts the parameters libpq and the pg driver send', { user: 'u', database: 'd', application_name: 'a', client_encoding: 'UTF8', DateStyle: 'ISO', TimeZone: 'UTC', extra_float_digits: '2' }, null],
    ['refuses replication mode (walsender)', { user: 'u', replication: 'database' }, '08P01'],
    ['refuses replication=true', { user: 'u', replication: 'true' }, '08P01'],
    ['refuses options=-c role=admin', { user: 'u', options: '-c role=admin' }, '08P01'],
    ['ignores an empty options parameter', { user: 'u', options: ' ' }, null],
    ['refuses arbitrary GUCs such as role', { user: 'u', role: 'postgres' }, '08P01'],
    ['refuses session_authorization', { user: 'u', session_authorization: 'postgres' }, '08P01'],
    ['refuses a client encoding other than UTF-8', { user: 'u', client_encoding: 'SJIS' }, '0A000'],
  ];
  for (const [name, params, sqlstate] of table) {
    it(name, () => {
      const result = checkStartupParameters(new Map(Object.entries(params)));
      if (sqlstate === null) assert.equal(result.ok, true);
      else assert.deepEqual(result.ok ? null : result.sqlstate, sqlstate);
    });
  }

  it('never forwards user and database (the sidecar logs in with its own credentials)', () => {
    const result = checkStartupParameters(new Map([['user', 'u'], ['database', 'd'], ['application_name', 'x']]));
    assert.ok(result.ok);
    assert.deepEqual(result.forward, { application_name: 'x' });
  });

  it('reports _pq_ protocol extensions for NegotiateProtocolVersion instead of failing', () => {
    const result = checkStartupParameters(new Map([['user', 'u'], ['_pq_.test', 'x']]));
    assert.ok(result.ok);
    assert.deepEqual(result.protocolExtensions, ['_pq_.test']);
  });
});

describe('isUtf8Encoding', () => {
  for (const v of ['UTF8', 'utf8', 'UTF-8', 'unicode', "'UTF8'"]) it(`accepts ${v}`, () => { assert.equal(isUtf8Encoding(v), true); });
  for (const v of ['SJIS', 'LATIN1', 'GBK', 'SQL_ASCII', '']) it(`refuses ${v}`, () => { assert.equal(isUtf8Encoding(v), false); });
});

describe('searchPathOf', () => {
  it('defaults to public and folds unquoted names', () => {
    assert.deepEqual(searchPathOf(undefined), ['public']);
    assert.deepEqual(searchPathOf('"$user", Billing, "Mixed"'), ['billing', 'Mixed']);
  });
});

describe('substituteSql', () => {
  it('raises the refusal with its SQLSTATE, escaping quotes in policy text', () => {
    const sql = substituteSql({ sqlstate: '42501', message: "it's denied", detail: 'rule "x"' });
    assert.equal(sql, "DO $custos_refusal$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'it''s denied', DETAIL = 'rule \"x\"'; END$custos_refusal$");
  });

  it('refuses text that would end the dollar quote early', () => {
    assert.throws(() => substituteSql({ sqlstate: '42501', message: 'x$custos_refusal$; DROP TABLE t; --' }));
  });

  it('refuses an invalid SQLSTATE', () => {
    assert.throws(() => substituteSql({ sqlstate: "42501'", message: 'x' }));
  });
});
