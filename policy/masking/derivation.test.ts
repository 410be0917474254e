// Attacks first: every way to move a masked value out of a column without PostgreSQL reporting the
// column's provenance (reference/postgres-protocol.md §10.2, §11, §14.2 item 6), and the clean
// controls that must not be flagged.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { isCustosError } from '../../lib/errors.ts';
import { loadSqlParser } from '../sql/parser.ts';
import { analyseMasking, analyseMaskingAll, type MaskedColumnSet, type MaskingAnalysis, maskedColumnSet, type OutputDerivation, viewColumnDerivations } from './derivation.ts';

/** customers(id, name, email, ssn, card): email, ssn, card masked. orders and newsletter: nothing masked. */
const RULES = ['email', 'ssn', 'card'].map((column) => ({ schema: 'public', table: 'customers', column }));
const CATALOG: Readonly<Record<string, readonly string[]>> = {
  customers: ['id', 'name', 'email', 'ssn', 'card'],
  orders: ['id', 'customer_id', 'email', 'total'],
  newsletter: ['id', 'email'],
  other: ['id', 'x'],
  t: ['a', 'b'],
};
const MASKED = maskedColumnSet(RULES);
const WITH_CATALOG = maskedColumnSet(RULES, (_schema, table) => CATALOG[table]);

type Flag = 'derivesMasked' | 'predicateUse' | 'launders' | 'wholeRow';

interface Case {
  readonly sql: string;
  /** Expected outputs (undefined: not checked). */
  readonly outputs?: readonly OutputDerivation[] | null;
  /** Flags that must be set; every other flag must be clear. */
  readonly flags: readonly Flag[];
  readonly catalog?: boolean;
}

const FLAGS: readonly Flag[] = ['derivesMasked', 'predicateUse', 'launders', 'wholeRow'];

function check(c: Case): MaskingAnalysis {
  const result = analyseMasking(c.sql, c.catalog === true ? WITH_CATALOG : MASKED);
  if (c.outputs !== undefined) assert.deepEqual(result.outputs, c.outputs, `outputs of ${c.sql}`);
  for (const flag of FLAGS) assert.equal(result[flag], c.flags.includes(flag), `${flag} of ${c.sql}`);
  return result;
}

const M: readonly Flag[] = ['derivesMasked'];

const OUTPUT_ATTACKS: readonly Case[] = [
  // Aliases: the name changes, the provenance does not (the wire masks it; outputs say so too).
  { sql: 'SELECT email AS contact FROM customers', outputs: ['masked'], flags: [] },
  { sql: 'SELECT c.email AS e, c.id FROM customers AS c', outputs: ['masked', 'clean'], flags: [] },
  { sql: 'SELECT public.customers.email FROM public.customers', outputs: ['masked'], flags: [] },
  { sql: 'SELECT "EMAIL" FROM customers', outputs: ['clean'], flags: [] },
  // Casts and collation.
  { sql: 'SELECT email::text FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT CAST(ssn AS varchar) FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT email COLLATE "C" FROM customers', outputs: ['masked'], flags: M },
  // Functions and operators.
  { sql: 'SELECT lower(email) FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT substr(ssn, 1, 3) FROM customers', outputs: ['masked'], flags: M },
  { sql: "SELECT email || '' FROM customers", outputs: ['masked'], flags: M },
  { sql: 'SELECT concat(name, email) FROM customers', outputs: ['masked'], flags: M },
  { sql: "SELECT format('%s', ssn) FROM customers", outputs: ['masked'], flags: M },
  { sql: "SELECT coalesce(email, 'x') FROM customers", outputs: ['masked'], flags: M },
  { sql: 'SELECT CASE WHEN true THEN email END FROM customers', outputs: ['masked'], flags: M },
  { sql: "SELECT greatest(email, '') FROM customers", outputs: ['masked'], flags: M },
  { sql: "SELECT nullif(email, '') FROM customers", outputs: ['masked'], flags: M },
  { sql: 'SELECT pg_catalog.upper(c.email) FROM customers c', outputs: ['masked'], flags: M },
  { sql: 'SELECT id, -card FROM customers', outputs: ['clean', 'masked'], flags: M },
  // Aggregates and windows.
  { sql: "SELECT string_agg(email, ',') FROM customers", outputs: ['masked'], flags: M },
  { sql: 'SELECT array_agg(ssn) FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT min(card) FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT json_agg(c) FROM customers c', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  { sql: 'SELECT first_value(email) OVER () FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT JSON_ARRAYAGG(email) FROM customers', outputs: ['masked'], flags: M },
  // Constructors and serialisation.
  { sql: 'SELECT row(email) FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT ROW(c.*) FROM customers c', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  { sql: "SELECT json_build_object('e', email) FROM customers", outputs: ['masked'], flags: M },
  { sql: 'SELECT to_json(c) FROM customers c', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  { sql: 'SELECT row_to_json(c) FROM customers c', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  { sql: 'SELECT c::text FROM customers c', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  { sql: 'SELECT customers::text FROM customers', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  { sql: 'SELECT c FROM customers c', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  { sql: 'SELECT ARRAY[ssn] FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT xmlelement(name x, email) FROM customers', outputs: ['masked'], flags: M },
  { sql: "SELECT JSON_OBJECT('e': email) FROM customers", outputs: ['masked'], flags: M },
  { sql: 'SELECT JSON_ARRAY(SELECT email FROM customers)', outputs: ['masked'], flags: M },
  { sql: 'SELECT ARRAY(SELECT ssn FROM customers)', outputs: ['masked'], flags: M },
  { sql: "SELECT table_to_xml('customers', true, false, '')", outputs: ['unknown'], flags: M },
  // Field selection and subscripts.
  // PostgreSQL turns this into a plain column (provenance kept); reported as derived: conservative.
  { sql: 'SELECT (c).email FROM customers c', outputs: ['masked'], flags: M },
  { sql: 'SELECT (array_agg(ssn))[1] FROM customers', outputs: ['masked'], flags: M },
  // Scalar sub-selects.
  { sql: 'SELECT (SELECT email FROM customers LIMIT 1)', outputs: ['masked'], flags: M },
  { sql: 'SELECT o.id, (SELECT c.ssn FROM customers c WHERE c.id = o.customer_id) FROM orders o', outputs: ['clean', 'masked'], flags: M },
  // Set operations: every branch, by position.
  { sql: 'SELECT name FROM customers UNION ALL SELECT email FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT name FROM customers UNION SELECT email FROM customers', outputs: ['masked'], flags: ['derivesMasked', 'predicateUse'] },
  { sql: 'SELECT id, name FROM customers UNION ALL SELECT id, ssn FROM customers UNION ALL SELECT 1, 2', outputs: ['clean', 'masked'], flags: M },
  { sql: 'SELECT email FROM customers INTERSECT SELECT $1', outputs: ['masked'], flags: ['derivesMasked', 'predicateUse'] },
  { sql: "SELECT ssn FROM customers EXCEPT ALL SELECT '123-45-6789'", outputs: ['masked'], flags: ['derivesMasked', 'predicateUse'] },
  { sql: 'VALUES ((SELECT email FROM customers LIMIT 1), 1)', outputs: ['masked', 'clean'], flags: M },
  // Sub-selects and CTEs: pass-through (bare, the wire sees the OID) and expressions (0/0).
  { sql: 'SELECT e FROM (SELECT email AS e FROM customers) s', outputs: ['masked'], flags: [] },
  { sql: 'SELECT e FROM (SELECT upper(email) AS e FROM customers) s', outputs: ['masked'], flags: M },
  { sql: 'SELECT upper FROM (SELECT upper(email) FROM customers) s', outputs: ['masked'], flags: M },
  { sql: 'SELECT s.x FROM (SELECT lower(ssn) FROM customers) AS s(x)', outputs: ['masked'], flags: M },
  { sql: 'SELECT email FROM (SELECT email::text FROM customers) s', outputs: ['masked'], flags: M },
  { sql: 'SELECT "case" FROM (SELECT CASE WHEN id > 0 THEN ssn END FROM customers) s', outputs: ['masked'], flags: M },
  { sql: 'SELECT x FROM (SELECT CASE WHEN id > 0 THEN 1 ELSE 2 END, email || \'\' AS x FROM customers) s', outputs: ['masked'], flags: M },
  { sql: 'WITH x AS (SELECT upper(email) AS e FROM customers) SELECT e FROM x', outputs: ['masked'], flags: M },
  { sql: 'WITH x(e) AS (SELECT email || \'\' FROM customers) SELECT y.e FROM x AS y', outputs: ['masked'], flags: M },
  { sql: 'WITH a AS (SELECT ssn::text AS v FROM customers), b AS (SELECT v AS w FROM a) SELECT w FROM b', outputs: ['masked'], flags: M },
  { sql: 'SELECT v FROM (SELECT w AS v FROM (SELECT concat(ssn) AS w FROM customers) i) o', outputs: ['masked'], flags: M },
  { sql: 'SELECT * FROM (SELECT id, md5(card) FROM customers) s', outputs: ['clean', 'masked'], flags: M },
  { sql: 'SELECT s.* FROM (SELECT json_build_array(email) FROM customers) s', outputs: ['masked'], flags: M },
  { sql: 'SELECT s FROM (SELECT email FROM customers) s', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  { sql: 'WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers UNION ALL SELECT n + 1, e || \'\' FROM r WHERE n < 3) SELECT e FROM r', outputs: ['masked'], flags: M },
  { sql: 'WITH RECURSIVE r(n, e) AS (SELECT 1, \'\' UNION ALL SELECT n + 1, (SELECT email FROM customers LIMIT 1) FROM r WHERE n < 3) SELECT e, n FROM r', outputs: ['masked', 'clean'], flags: M },
  // LATERAL and table functions.
  { sql: 'SELECT l.u FROM customers c, LATERAL (SELECT upper(c.email) AS u) l', outputs: ['masked'], flags: M },
  { sql: 'SELECT u FROM customers c CROSS JOIN LATERAL (SELECT c.ssn AS u) l', outputs: ['masked'], flags: [] },
  { sql: 'SELECT x FROM customers c, unnest(ARRAY[c.email]) AS u(x)', outputs: ['masked'], flags: M },
  { sql: "SELECT * FROM customers c, regexp_split_to_table(c.ssn, '-') p", outputs: null, flags: M },
  // `x` may be the function's row or its column: both are considered.
  { sql: 'SELECT x FROM (SELECT 1) z, unnest(ARRAY(SELECT email FROM customers)) x', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  // Whole rows of derived relations and `(rec).*`.
  { sql: 'SELECT (c).* FROM customers c', outputs: null, flags: [] },
  { sql: 'SELECT (c).* FROM customers c', outputs: ['clean', 'clean', 'masked', 'masked', 'masked'], flags: [], catalog: true },
  // Star expansion with the catalog.
  { sql: 'SELECT * FROM customers', outputs: ['clean', 'clean', 'masked', 'masked', 'masked'], flags: [], catalog: true },
  { sql: 'SELECT *, upper(email) FROM customers', outputs: null, flags: M },
  { sql: 'SELECT *, upper(email) FROM customers', outputs: ['clean', 'clean', 'masked', 'masked', 'masked', 'masked'], flags: M, catalog: true },
  { sql: 'SELECT o.*, c.email || \'\' FROM orders o JOIN customers c ON c.id = o.customer_id', outputs: ['clean', 'clean', 'clean', 'clean', 'masked'], flags: M, catalog: true },
  { sql: 'SELECT * FROM customers c(a, b, x)', outputs: ['clean', 'clean', 'masked', 'masked', 'masked'], flags: [], catalog: true },
  { sql: 'SELECT upper(x) FROM customers c(a, b, x)', outputs: ['masked'], flags: M },
  { sql: 'SELECT * FROM orders JOIN customers USING (id)', outputs: ['clean', 'clean', 'clean', 'clean', 'clean', 'masked', 'masked', 'masked'], flags: [], catalog: true },
  // Joins: USING merges (FULL JOIN merges with COALESCE: no provenance), join and USING aliases.
  { sql: 'SELECT email FROM customers FULL JOIN orders USING (email)', outputs: ['masked'], flags: ['derivesMasked', 'predicateUse'] },
  { sql: 'SELECT email FROM customers LEFT JOIN orders USING (email)', outputs: ['masked'], flags: ['predicateUse'] },
  { sql: 'SELECT u.email FROM customers JOIN orders USING (email) AS u', outputs: ['masked'], flags: ['predicateUse'] },
  { sql: 'SELECT j.ssn || \'\' FROM (customers JOIN orders ON true) AS j', outputs: ['masked'], flags: M },
  { sql: 'SELECT j FROM (customers c JOIN orders o ON true) AS j', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  // Functional notation for a column, table functions over masked data.
  { sql: 'SELECT email(c) FROM customers c', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  { sql: "SELECT jt.* FROM customers c, JSON_TABLE(to_json(c.email), '$' COLUMNS (e text PATH '$')) jt", outputs: null, flags: M },
  { sql: "SELECT x.v FROM customers c, XMLTABLE('/r' PASSING xmlelement(name r, c.ssn) COLUMNS v text PATH '.') x", outputs: ['masked'], flags: M },
  { sql: "SELECT dblink('host=x', 'SELECT email FROM customers')", outputs: ['unknown'], flags: M },
  // Shadowing: the innermost scope that surely has the name wins, else every candidate.
  { sql: 'SELECT (SELECT email FROM newsletter LIMIT 1) FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT (SELECT lower(email) FROM orders o WHERE o.id = c.id) FROM customers c', outputs: ['masked'], flags: M },
  // A column of an outer level beats a relation of the same name in an inner one.
  { sql: 'SELECT (SELECT ssn FROM orders AS ssn LIMIT 1) FROM customers', outputs: ['masked'], flags: M },
  { sql: 'SELECT (SELECT ssn FROM orders AS ssn LIMIT 1) FROM customers', outputs: ['masked'], flags: M, catalog: true },
  { sql: 'SELECT (SELECT c FROM orders AS c LIMIT 1) FROM customers c', outputs: ['masked'], flags: ['derivesMasked', 'wholeRow'] },
  // Alias lists on a table: position unknown without the catalog, every renamed column may be masked.
  { sql: 'SELECT b FROM customers AS c(a, b, x)', outputs: ['masked'], flags: [] },
  { sql: 'SELECT b FROM customers AS c(a, b, x)', outputs: ['clean'], flags: [], catalog: true },
];

const PREDICATE_ATTACKS: readonly Case[] = [
  { sql: "SELECT id FROM customers WHERE email = 'x'", outputs: ['clean'], flags: ['predicateUse'] },
  { sql: "SELECT id FROM customers WHERE email LIKE 'a%'", outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT id FROM customers ORDER BY ssn', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT count(*) FROM customers GROUP BY card', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT o.id FROM orders o JOIN customers c ON c.email = o.email', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT o.id FROM orders o JOIN customers c USING (email)', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT o.id FROM orders o NATURAL JOIN customers c', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT 1 WHERE EXISTS (SELECT 1 FROM customers WHERE ssn LIKE \'1%\')', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT DISTINCT ON (email) id FROM customers', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: "SELECT CASE WHEN ssn LIKE '1%' THEN 1 END FROM customers", outputs: ['clean'], flags: ['predicateUse'] },
  { sql: "SELECT CASE ssn WHEN '1' THEN 'a' ELSE 'b' END FROM customers", outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT id FROM customers GROUP BY id HAVING max(ssn) > \'5\'', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT row_number() OVER (PARTITION BY card) FROM customers', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT row_number() OVER w FROM customers WINDOW w AS (ORDER BY email)', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT count(*) FILTER (WHERE ssn > \'5\') FROM customers', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: "SELECT string_agg(name, ',' ORDER BY ssn) FROM customers", outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT id FROM customers LIMIT (SELECT length(ssn) FROM customers LIMIT 1)', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT id FROM orders WHERE email IN (SELECT email FROM customers)', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT id FROM customers ORDER BY 2 * length(card)', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT id, email FROM customers ORDER BY 2', outputs: ['clean', 'masked'], flags: ['predicateUse'] },
  { sql: 'SELECT email AS e FROM customers ORDER BY e', outputs: ['masked'], flags: ['predicateUse'] },
  { sql: 'SELECT DISTINCT email FROM customers', outputs: ['masked'], flags: ['predicateUse'] },
  { sql: 'SELECT c.id FROM customers c WHERE c::text LIKE \'%@%\'', outputs: ['clean'], flags: ['predicateUse', 'wholeRow'] },
  { sql: 'SELECT o.id FROM orders o WHERE o.customer_id = (SELECT id FROM customers WHERE email = $1)', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: "UPDATE orders SET total = 0 WHERE customer_id IN (SELECT id FROM customers WHERE ssn LIKE '1%')", outputs: [], flags: ['predicateUse'] },
  { sql: "DELETE FROM customers WHERE ssn = '1'", outputs: [], flags: ['predicateUse'] },
  { sql: "EXPLAIN ANALYZE SELECT 1 FROM customers WHERE ssn LIKE '1%'", outputs: ['clean'], flags: ['predicateUse'] },
  { sql: "SELECT JSON_ARRAYAGG(name ORDER BY ssn) FROM customers", outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT id FROM customers c WHERE c = c', outputs: ['clean'], flags: ['predicateUse', 'wholeRow'] },
  { sql: "SELECT 1 FROM customers WHERE 'a@b' = ANY (ARRAY[email])", outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT (SELECT 1 WHERE c.card LIKE \'4%\') FROM customers c', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT id FROM customers ORDER BY (SELECT ssn)', outputs: ['clean'], flags: ['predicateUse'] },
  { sql: 'SELECT upper(email) AS e FROM customers GROUP BY e', outputs: ['masked'], flags: ['derivesMasked', 'predicateUse'] },
  { sql: 'SELECT x FROM (SELECT email AS x FROM customers UNION ALL SELECT \'a\') s ORDER BY 1', outputs: ['masked'], flags: ['derivesMasked', 'predicateUse'] },
  { sql: "SELECT id FROM customers TABLESAMPLE bernoulli (10) WHERE card > '4'", outputs: ['clean'], flags: ['predicateUse'] },
];

const LAUNDERING_ATTACKS: readonly Case[] = [
  { sql: 'INSERT INTO t SELECT email FROM customers', outputs: [], flags: ['launders'] },
  { sql: 'INSERT INTO t (a) SELECT upper(ssn) FROM customers', outputs: [], flags: ['launders'] },
  { sql: 'INSERT INTO t VALUES ((SELECT email FROM customers LIMIT 1))', outputs: [], flags: ['launders'] },
  { sql: 'CREATE TABLE t AS SELECT * FROM customers', outputs: null, flags: ['launders'] },
  { sql: 'CREATE TEMP TABLE t AS SELECT id, card FROM customers', outputs: null, flags: ['launders'] },
  { sql: 'CREATE MATERIALIZED VIEW mv AS SELECT email FROM customers WITH NO DATA', outputs: null, flags: ['launders'] },
  { sql: 'CREATE VIEW v AS SELECT email FROM customers', outputs: null, flags: ['launders'] },
  { sql: 'SELECT email INTO t FROM customers', outputs: ['masked'], flags: ['launders'] },
  { sql: 'COPY (SELECT email FROM customers) TO STDOUT', outputs: ['masked'], flags: ['launders'] },
  { sql: 'COPY customers TO STDOUT', outputs: null, flags: ['launders'] },
  { sql: 'COPY customers TO STDOUT', outputs: ['clean', 'clean', 'masked', 'masked', 'masked'], flags: ['launders'], catalog: true },
  { sql: 'COPY customers (id, ssn) TO STDOUT', outputs: ['clean', 'masked'], flags: ['launders'] },
  { sql: 'UPDATE other SET x = (SELECT ssn FROM customers LIMIT 1)', outputs: [], flags: ['launders'] },
  { sql: 'UPDATE other o SET x = c.email FROM customers c WHERE c.id = o.id', outputs: [], flags: ['launders'] },
  { sql: 'UPDATE other SET (id, x) = (SELECT 1, card FROM customers LIMIT 1)', outputs: [], flags: ['launders'] },
  { sql: 'UPDATE customers SET name = email', outputs: [], flags: ['launders'] },
  { sql: "SELECT set_config('application_name', email, false) FROM customers", outputs: ['masked'], flags: ['derivesMasked', 'launders'] },
  { sql: "SELECT pg_notify('c', email) FROM customers", outputs: ['masked'], flags: ['derivesMasked', 'launders'] },
  { sql: 'SELECT lo_from_bytea(0, convert_to(ssn, \'UTF8\')) FROM customers', outputs: ['masked'], flags: ['derivesMasked', 'launders'] },
  { sql: 'WITH w AS (INSERT INTO t SELECT email FROM customers RETURNING a) SELECT 1', outputs: ['clean'], flags: ['launders'] },
  { sql: 'WITH w AS (UPDATE other SET x = c.ssn FROM customers c RETURNING other.id) SELECT id FROM w', outputs: ['clean'], flags: ['launders'] },
  { sql: "INSERT INTO customers (id, email) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = customers.email", outputs: [], flags: ['launders', 'predicateUse'] },
  { sql: 'MERGE INTO other o USING customers c ON o.id = c.id WHEN MATCHED THEN UPDATE SET x = c.email', outputs: [], flags: ['launders'] },
  { sql: 'MERGE INTO other o USING customers c ON o.id = c.id WHEN NOT MATCHED THEN INSERT (id, x) VALUES (c.id, c.ssn)', outputs: [], flags: ['launders'] },
  { sql: "COPY (SELECT upper(email) FROM customers) TO '/tmp/x'", outputs: ['masked'], flags: ['derivesMasked', 'launders'] },
  { sql: 'CREATE TABLE t AS TABLE customers', outputs: null, flags: ['launders'] },
  { sql: 'INSERT INTO newsletter SELECT id, email FROM customers', outputs: [], flags: ['launders'], catalog: true },
  { sql: 'INSERT INTO t (a) VALUES (1) RETURNING (SELECT email FROM customers LIMIT 1)', outputs: ['masked'], flags: M },
  { sql: "SELECT 1 FROM customers WHERE set_config('my.x', ssn, false) IS NOT NULL", outputs: ['clean'], flags: ['predicateUse', 'launders'] },
  { sql: 'CREATE FUNCTION f() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT email FROM customers; END', outputs: null, flags: ['launders'] },
  { sql: 'DECLARE k CURSOR FOR SELECT lower(email) FROM customers', outputs: ['masked'], flags: M },
  { sql: 'PREPARE p AS SELECT card::text FROM customers', outputs: ['masked'], flags: M },
];

const CLEAN: readonly Case[] = [
  { sql: 'SELECT id, name FROM customers WHERE id = 1', outputs: ['clean', 'clean'], flags: [] },
  { sql: 'SELECT count(*) FROM customers', outputs: ['clean'], flags: [] },
  { sql: 'SELECT email FROM newsletter', outputs: ['clean'], flags: [] },
  { sql: 'SELECT newsletter.email FROM newsletter', outputs: ['clean'], flags: [] },
  { sql: 'SELECT upper(n.email) FROM newsletter n WHERE n.email LIKE \'%x\' ORDER BY n.email', outputs: ['clean'], flags: [] },
  { sql: 'SELECT email FROM other.customers', outputs: ['clean'], flags: [] },
  { sql: "SELECT 'email', 'ssn' AS card FROM customers WHERE name = 'email'", outputs: ['clean', 'clean'], flags: [] },
  { sql: 'SELECT upper(name) AS email FROM customers ORDER BY email', outputs: ['clean'], flags: [] },
  { sql: 'SELECT o.id, o.email FROM orders o JOIN customers c ON c.id = o.customer_id', outputs: ['clean', 'clean'], flags: [], catalog: true },
  { sql: 'SELECT email FROM newsletter WHERE id IN (SELECT id FROM customers)', outputs: ['clean'], flags: [], catalog: true },
  { sql: 'SELECT (SELECT email FROM newsletter LIMIT 1) FROM customers', outputs: ['clean'], flags: [], catalog: true },
  { sql: 'WITH x AS (SELECT id, upper(name) AS n FROM customers) SELECT n FROM x', outputs: ['clean'], flags: [] },
  { sql: 'SELECT id, name FROM customers UNION SELECT id, email FROM newsletter', outputs: ['clean', 'clean'], flags: [] },

  { sql: 'SELECT * FROM generate_series(1, 3)', outputs: null, flags: [] },
  { sql: 'SELECT 1', outputs: ['clean'], flags: [] },
  { sql: 'SET search_path = public', outputs: null, flags: [] },
  { sql: 'CREATE TABLE t AS SELECT * FROM customers WITH NO DATA', outputs: null, flags: [] },
  { sql: "COPY customers FROM STDIN", outputs: null, flags: [] },
  { sql: "WITH customers AS (SELECT 'x' AS email) SELECT upper(email) FROM customers", outputs: ['clean'], flags: [] },
  { sql: 'SELECT customers.email FROM newsletter customers, customers c', outputs: ['clean'], flags: [] },
  { sql: 'SELECT n.email FROM newsletter n JOIN orders o USING (id) WHERE o.total > 1', outputs: ['clean'], flags: [] },
  { sql: 'SELECT o.email || c.name FROM orders o JOIN customers c ON c.id = o.customer_id', outputs: ['clean'], flags: [] },
  { sql: 'EXECUTE p', outputs: null, flags: [] },
];

describe('analyseMasking', () => {
  before(async () => {
    await loadSqlParser();
  });

  describe('marks outputs derived from masked columns', () => {
    for (const c of OUTPUT_ATTACKS) it(`marks ${c.sql} when ${c.catalog === true ? 'the catalog is known' : 'only masked names are known'}`, () => {
      check(c);
    });
  });
  describe('flags inference through predicates', () => {
    for (const c of PREDICATE_ATTACKS) it(`flags ${c.sql}`, () => {
      check(c);
    });
  });
  describe('flags laundering', () => {
    for (const c of LAUNDERING_ATTACKS) it(`flags ${c.sql} ${c.catalog === true ? '(catalog known)' : ''}`, () => {
      check(c);
    });
  });
  describe('leaves clean statements clean', () => {
    for (const c of CLEAN) it(`does not flag ${c.sql} ${c.catalog === true ? '(catalog known)' : ''}`, () => {
      check(c);
    });
  });

  it('throws ERR_SQL_PARSE when the statement does not parse', () => {
    assert.throws(() => analyseMasking('SELEC email FROM customers', MASKED), (e: unknown) => isCustosError(e, 'ERR_SQL_PARSE'));
    assert.throws(() => analyseMasking('SELECT 1\u0000; SELECT email FROM customers', MASKED), (e: unknown) => isCustosError(e, 'ERR_SQL_PARSE'));
  });

  it('refuses a statement too complex to analyse when recursive CTEs nest deeply', () => {
    let sql = 'SELECT 1';
    for (let i = 0; i < 16; i++) sql = `WITH RECURSIVE r${i}(n) AS (SELECT 1 UNION ALL SELECT n FROM r${i}, (${sql}) s${i}) SELECT n FROM r${i}`;
    assert.throws(() => analyseMasking(sql, MASKED), (e: unknown) => isCustosError(e, 'ERR_MASKING_TOO_COMPLEX'));
  });

  it('returns one analysis per statement when a message holds several', () => {
    const all = analyseMaskingAll('SELECT id FROM customers; SELECT lower(email) FROM customers', MASKED);
    assert.deepEqual(all.map((a) => a.outputs), [['clean'], ['masked']]);
    const combined = analyseMasking('SELECT id FROM customers; SELECT lower(email) FROM customers', MASKED);
    assert.equal(combined.outputs, null);
    assert.equal(combined.derivesMasked, true);
  });

  it('matches an unqualified table in any schema and a qualified one only in its schema when the rules are schema-qualified', () => {
    const set: MaskedColumnSet = maskedColumnSet([{ schema: 'crm', table: 'customers', column: 'email' }]);
    assert.deepEqual(analyseMasking('SELECT lower(email) FROM customers', set).outputs, ['masked']);
    assert.deepEqual(analyseMasking('SELECT lower(email) FROM crm.customers', set).outputs, ['masked']);
    assert.deepEqual(analyseMasking('SELECT lower(email) FROM public.customers', set).outputs, ['clean']);
  });
});

describe('viewColumnDerivations', () => {
  before(async () => {
    await loadSqlParser();
  });

  const VIEWS: readonly { readonly sql: string; readonly expected: readonly OutputDerivation[] }[] = [
    { sql: 'SELECT id, upper(email) AS e, name FROM customers', expected: ['clean', 'masked', 'clean'] },
    { sql: ' SELECT customers.id,\n    customers.email\n   FROM customers;', expected: ['clean', 'masked'] },
    { sql: 'SELECT c.id, o.total FROM customers c JOIN orders o ON o.customer_id = c.id', expected: ['clean', 'clean'] },
    { sql: 'SELECT name FROM customers UNION SELECT ssn FROM customers', expected: ['masked'] },
  ];
  for (const v of VIEWS) it(`derives ${v.expected.join(', ')} when the view is ${v.sql.trim()}`, () => {
    assert.deepEqual(viewColumnDerivations(v.sql, MASKED), v.expected);
  });

  it('throws when the definition is not one query', () => {
    assert.throws(() => viewColumnDerivations('DROP TABLE customers', MASKED), (e: unknown) => isCustosError(e, 'ERR_MASKING_VIEW'));
  });
});

describe('analyseMasking: comparisons anywhere are inference channels', () => {
  const masked = maskedColumnSet([{ schema: 'public', table: 'customers', column: 'ssn' }]);
  const cases: Array<[string, boolean]> = [
    ["SELECT 1 / (ssn <> '123-45-6789')::int FROM customers", true],
    ["SELECT ssn = 'x' FROM customers", true],
    ["SELECT ssn LIKE '1%' FROM customers", true],
    ["SELECT ssn IN ('a', 'b') FROM customers", true],
    ["SELECT ssn BETWEEN 'a' AND 'b' FROM customers", true],
    ['SELECT length(ssn) FROM customers', false],
    ["SELECT id = 1 FROM customers", false],
  ];
  for (const [sql, predicate] of cases) {
    it(`${predicate ? 'flags' : 'does not flag'} ${sql}`, () => {
      assert.equal(analyseMasking(sql, masked).predicateUse, predicate);
    });
  }

  // Writing into a masked column is not laundering (the value stays masked), but constraints compare
  // the written value with the stored ones: a unique violation answers "does this value exist".
  for (const sql of ["INSERT INTO customers (id, email) SELECT id, email FROM customers", 'UPDATE customers SET email = lower(email) WHERE id = 1 RETURNING id, email', "INSERT INTO customers (id, email) VALUES (99, 'guess@example.com')"]) {
    it(`flags a write into a masked column as a predicate, not laundering: ${sql}`, () => {
      const analysis = analyseMasking(sql, maskedColumnSet([{ schema: 'public', table: 'customers', column: 'email' }]));
      assert.equal(analysis.predicateUse, true);
      assert.equal(analysis.launders, false);
    });
  }

  it('treats advisory locks keyed by a masked value as laundering (the key is visible in pg_locks)', () => {
    assert.equal(analyseMasking('SELECT pg_advisory_lock(hashtext(ssn)) FROM customers', masked).launders, true);
  });
});
