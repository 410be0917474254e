// The attacks of the masking leak suite (test/sidecar-masking-leaks.test.ts), as data: each is a
// statement an attacker with read access would try, with what the client must see when it runs.
import assert from 'node:assert/strict';
import { CUSTOMERS, luhnComplete, NEWSLETTER } from './masking-fixtures.ts';

export type Mode = 'text' | 'binary';
/**
 * clean: equal to the clear value; email/ssn/card: that column's masked form; masked: anything but
 * the clear value (redacted, NULL, a token); any: not compared (the tap check still applies).
 */
export type Kind = 'clean' | 'email' | 'ssn' | 'card' | 'masked' | 'any';

export interface Attack {
  readonly name: string;
  readonly sql: string;
  readonly values?: readonly unknown[];
  /** Statements run first on the same session (each may fail: only what the client receives is judged). */
  readonly steps?: readonly string[];
  /** mask: must succeed with `cols`; refuse: must fail with `sqlstate` (default 42501); error: must fail; any: either. */
  readonly expect: 'mask' | 'refuse' | 'error' | 'any';
  readonly cols?: readonly Kind[];
  readonly sqlstate?: string;
  readonly modes?: readonly Mode[];
  /** Row order is not defined: compare masked cells as a set against the clear values. */
  readonly unordered?: boolean;
}


// ─── the attacks ───────────────────────────────────────────────────────────────────────────────

export const ROW: readonly Kind[] = ['clean', 'clean', 'email', 'ssn', 'card'];
export const C1 = CUSTOMERS[0] ?? assert.fail('fixture');

/** Expressions over masked columns: every one must come back masked (value never clear). */
export const DERIVED_EXPRESSIONS: readonly string[] = [
  'email::text', 'ssn::varchar(20)', 'CAST(card AS bytea)', 'email COLLATE "C"', "name || ' ' || email", 'ssn || \'\'',
  'upper(email)', 'lower(email)', 'substr(ssn, 1, 3)', 'right(ssn, 4)', 'left(card, 6)', 'reverse(email)', 'md5(email)',
  "sha256(convert_to(ssn, 'UTF8'))", 'hashtext(ssn)', "encode(convert_to(email, 'UTF8'), 'hex')", "encode(convert_to(card, 'UTF8'), 'base64')",
  "translate(ssn, '-', '')", "translate(email, 'abcdefghijklmnopqrstuvwxyz', 'bcdefghijklmnopqrstuvwxyza')",
  "regexp_replace(card, '\\D', '', 'g')", "replace(email, '@', ' at ')", "split_part(email, '@', 1)", "format('%s', email)",
  "concat_ws('|', id, card)", "coalesce(ssn, 'none')", 'CASE WHEN id > 10 THEN email ELSE ssn END', "nullif(card, '')",
  "greatest(email, '')", 'quote_literal(email)', "lpad(ssn, 20, '*')", "overlay(ssn placing 'X' from 1 for 1)",
  'row(email)', 'ARRAY[ssn]', "string_to_array(ssn, '-')", "regexp_split_to_array(card, '')", 'ascii(substr(ssn, 1, 1))',
  'xmlelement(name x, email)', "json_build_object('e', email)", 'to_jsonb(ssn)', 'to_json(card)::text',
  '(SELECT c2.ssn FROM customers c2 WHERE c2.id = customers.id)', 'ARRAY(SELECT ssn FROM customers c3 WHERE c3.id = customers.id)',
];

export const PLAIN_READS: readonly Attack[] = [
  { name: 'SELECT *', sql: 'SELECT * FROM customers ORDER BY id', expect: 'mask', cols: ROW },
  { name: 'aliases', sql: 'SELECT id, email AS contact, ssn AS id_number, card AS pan FROM customers ORDER BY id', expect: 'mask', cols: ['clean', 'email', 'ssn', 'card'] },
  { name: 'swapped column names', sql: 'SELECT name AS email, email AS name, ssn AS id FROM customers ORDER BY customers.id', expect: 'mask', cols: ['clean', 'email', 'ssn'] },
  { name: 'SELECT c.* FROM customers c', sql: 'SELECT c.* FROM customers c ORDER BY c.id', expect: 'mask', cols: ROW },
  { name: 'TABLE customers', sql: 'TABLE customers ORDER BY id', expect: 'mask', cols: ROW },
  { name: 'quoted, qualified names', sql: 'SELECT "email", "public"."customers"."ssn" FROM "public"."customers" ORDER BY "customers".id', expect: 'mask', cols: ['email', 'ssn'] },
  { name: 'a Unicode-escaped identifier', sql: 'SELECT U&"\\0065mail" FROM customers ORDER BY id', expect: 'mask', cols: ['email'] },
  { name: 'a column alias list', sql: 'SELECT e2, s2, k2 FROM customers AS c(i, n, e2, s2, k2) ORDER BY i', expect: 'mask', cols: ['email', 'ssn', 'card'] },
  { name: 'field selection from the whole row', sql: 'SELECT (c).email, (c).ssn, (c).card FROM customers c ORDER BY (c).id', expect: 'mask', cols: ['masked', 'masked', 'masked'] },
  { name: 'ONLY', sql: 'SELECT email FROM ONLY customers ORDER BY id', expect: 'mask', cols: ['email'] },
  { name: 'TABLESAMPLE', sql: 'SELECT id, ssn FROM customers TABLESAMPLE SYSTEM (100) ORDER BY id', expect: 'mask', cols: ['clean', 'ssn'] },
  { name: 'a self-join USING id', sql: 'SELECT * FROM customers a JOIN customers b USING (id) ORDER BY id', expect: 'mask', cols: ['clean', 'clean', 'email', 'ssn', 'card', 'clean', 'email', 'ssn', 'card'] },
  { name: 'a filter on a clean column', sql: 'SELECT email, ssn, card FROM customers WHERE id = 1', expect: 'mask', cols: ['email', 'ssn', 'card'] },
  { name: 'extended protocol with a parameter', sql: 'SELECT id, email, ssn, card FROM customers WHERE id = $1', values: [2], expect: 'mask', cols: ['clean', 'email', 'ssn', 'card'] },
  { name: 'a parameter concatenated with a masked column', sql: 'SELECT $1::text || email FROM customers ORDER BY id', values: ['>'], expect: 'mask', cols: ['masked'] },
  { name: 'large DataRows split across network reads', sql: 'SELECT email, repeat(name, 5000), ssn FROM customers ORDER BY id', expect: 'mask', cols: ['email', 'clean', 'ssn'] },
  { name: 'the clean table stays clean', sql: 'SELECT email FROM newsletter ORDER BY email', expect: 'mask', cols: ['clean'] },
];

export const EXPRESSIONS: readonly Attack[] = DERIVED_EXPRESSIONS.map((expr) => ({
  name: `expression ${expr}`, sql: `SELECT id, ${expr} AS v FROM customers ORDER BY id`, expect: 'mask', cols: ['clean', 'masked'],
}));

export const AGGREGATES_AND_CONSTRUCTORS: readonly Attack[] = [
  { name: "string_agg(email, ',')", sql: "SELECT string_agg(email, ',' ORDER BY id) FROM customers", expect: 'mask', cols: ['masked'] },
  { name: "string_agg(ssn, '') (defeats the SSN pattern)", sql: "SELECT string_agg(ssn, '' ORDER BY id) FROM customers", expect: 'mask', cols: ['masked'] },
  { name: 'array_agg(ssn)', sql: 'SELECT array_agg(ssn ORDER BY id) FROM customers', expect: 'mask', cols: ['masked'] },
  { name: 'min(card), max(email)', sql: 'SELECT min(card), max(email) FROM customers', expect: 'mask', cols: ['masked', 'masked'] },
  { name: 'json_agg(c)', sql: 'SELECT json_agg(c ORDER BY c.id) FROM customers c', expect: 'mask', cols: ['masked'] },
  { name: 'jsonb_agg of a column', sql: 'SELECT jsonb_agg(c.ssn ORDER BY c.id) FROM customers c', expect: 'mask', cols: ['masked'] },
  { name: 'xmlagg', sql: 'SELECT xmlagg(xmlelement(name e, email) ORDER BY id) FROM customers', expect: 'mask', cols: ['masked'] },
  { name: 'count(*) next to string_agg(card)', sql: "SELECT count(*), string_agg(card, ';' ORDER BY id) FROM customers", expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'mode() WITHIN GROUP (ORDER BY ssn)', sql: 'SELECT mode() WITHIN GROUP (ORDER BY ssn) FROM customers', expect: 'any', cols: ['masked'] },
  { name: 'row_to_json(c)', sql: 'SELECT row_to_json(c) FROM customers c ORDER BY c.id', expect: 'mask', cols: ['masked'] },
  { name: 'to_jsonb(c)', sql: 'SELECT to_jsonb(c) FROM customers c ORDER BY c.id', expect: 'mask', cols: ['masked'] },
  { name: 'c::text', sql: 'SELECT c::text FROM customers c ORDER BY c.id', expect: 'mask', cols: ['masked'] },
  { name: 'the whole-row reference c', sql: 'SELECT c FROM customers c ORDER BY c.id', expect: 'mask', cols: ['masked'] },
  { name: '(c.*)::text', sql: 'SELECT (c.*)::text FROM customers c ORDER BY c.id', expect: 'mask', cols: ['masked'] },
  { name: 'json_build_object of two columns', sql: "SELECT json_build_object('e', email, 's', ssn) FROM customers ORDER BY id", expect: 'mask', cols: ['masked'] },
  { name: 'ARRAY(sub-select)', sql: 'SELECT ARRAY(SELECT email FROM customers ORDER BY id)', expect: 'mask', cols: ['masked'] },
  { name: 'json_populate_record round trip, expanded', sql: 'SELECT (json_populate_record(null::customers, row_to_json(c))).* FROM customers c ORDER BY c.id', expect: 'mask', cols: ['any', 'any', 'masked', 'masked', 'masked'] },
  { name: 'jsonb_to_record in FROM', sql: 'SELECT * FROM jsonb_to_record((SELECT to_jsonb(c) FROM customers c WHERE c.id = 1)) AS x(email text, ssn text, card text)', expect: 'mask', cols: ['masked', 'masked', 'masked'] },
  { name: 'json_each_text of a row', sql: 'SELECT * FROM json_each_text((SELECT row_to_json(c) FROM customers c WHERE c.id = 2))', expect: 'any', cols: ['any', 'any'] },
  { name: 'unnest in the select list', sql: 'SELECT unnest(ARRAY[email, ssn, card]) FROM customers WHERE id = 2', expect: 'mask', cols: ['masked'] },
  { name: 'unnest of an aggregated array in FROM', sql: "SELECT * FROM unnest((SELECT array_agg(translate(ssn, '-', '') ORDER BY id) FROM customers))", expect: 'mask', cols: ['masked'] },
  { name: 'regexp_split_to_table in FROM', sql: "SELECT * FROM regexp_split_to_table((SELECT string_agg(ssn, ' ' ORDER BY id) FROM customers), ' ')", expect: 'mask', cols: ['masked'] },
  { name: 'VALUES holding a scalar sub-select', sql: 'SELECT * FROM (VALUES ((SELECT ssn FROM customers WHERE id = 1))) v(x)', expect: 'mask', cols: ['masked'] },
];

export const SUBQUERIES_AND_SETS: readonly Attack[] = [
  { name: 'a scalar sub-select', sql: 'SELECT (SELECT email FROM customers WHERE id = 1)', expect: 'mask', cols: ['masked'] },
  { name: 'a correlated scalar sub-select', sql: 'SELECT id, (SELECT ssn FROM customers c2 WHERE c2.id = c.id) AS s FROM customers c ORDER BY id', expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'a CTE', sql: 'WITH x AS (SELECT id, email, ssn, card FROM customers) SELECT * FROM x ORDER BY id', expect: 'mask', cols: ['clean', 'email', 'ssn', 'card'] },
  { name: 'a materialized CTE of an expression', sql: 'WITH x AS MATERIALIZED (SELECT id, upper(email) AS u FROM customers) SELECT u FROM x ORDER BY id', expect: 'mask', cols: ['masked'] },
  { name: 'a recursive CTE seeded with a masked value', sql: 'WITH RECURSIVE r(n, e) AS (SELECT 1, (SELECT ssn FROM customers WHERE id = 1) UNION ALL SELECT n + 1, e FROM r WHERE n < 3) SELECT * FROM r', expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'a recursive CTE over the table', sql: 'WITH RECURSIVE r(n, e) AS (SELECT id, card FROM customers WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE n < 3) SELECT * FROM r', expect: 'mask', cols: ['any', 'masked'] },
  { name: 'nested sub-selects', sql: 'SELECT * FROM (SELECT * FROM (SELECT id, email, ssn FROM customers) a) b ORDER BY id', expect: 'mask', cols: ['clean', 'email', 'ssn'] },
  { name: 'LATERAL', sql: 'SELECT c.id, l.x FROM customers c, LATERAL (SELECT c.ssn AS x) l ORDER BY c.id', expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'LATERAL with expressions', sql: 'SELECT c.id, l.* FROM customers c CROSS JOIN LATERAL (SELECT upper(c.email), c.card) l ORDER BY c.id', expect: 'mask', cols: ['clean', 'masked', 'masked'] },
  // UNION (not ALL) and INTERSECT compare values to remove duplicates: refusing them as a condition on a masked column is as right as masking them.
  { name: 'UNION with the clean table', sql: 'SELECT email FROM customers UNION SELECT email FROM newsletter', expect: 'any', cols: ['masked'], unordered: true },
  { name: 'UNION ALL, clean branch first', sql: 'SELECT email FROM newsletter UNION ALL SELECT email FROM customers', expect: 'mask', cols: ['masked'], unordered: true },
  { name: 'UNION ALL of a clean and a masked column (name-based masking fooled)', sql: 'SELECT name FROM customers UNION ALL SELECT ssn FROM customers', expect: 'mask', cols: ['masked'], unordered: true },
  { name: 'INTERSECT of a masked column with itself', sql: 'SELECT card FROM customers INTERSECT SELECT card FROM customers', expect: 'any', cols: ['masked'], unordered: true },
  { name: 'a window function over a clean partition', sql: 'SELECT id, first_value(email) OVER (PARTITION BY id % 2 ORDER BY id) FROM customers ORDER BY id', expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'lag(ssn)', sql: 'SELECT id, lag(ssn) OVER (ORDER BY id) FROM customers ORDER BY id', expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'string_agg(card) OVER ()', sql: "SELECT id, string_agg(card, ',') OVER () FROM customers ORDER BY id", expect: 'mask', cols: ['clean', 'masked'] },
];

export const VIEWS_AND_WRITES: readonly Attack[] = [
  { name: 'SELECT * FROM customer_contacts (view)', sql: 'SELECT * FROM customer_contacts ORDER BY id', expect: 'mask', cols: ['clean', 'clean', 'masked'] },
  { name: 'SELECT e FROM customer_upper (view of an expression)', sql: 'SELECT e FROM customer_upper ORDER BY id', expect: 'mask', cols: ['masked'] },
  { name: 'TABLE of a view', sql: 'TABLE customer_contacts ORDER BY id', expect: 'mask', cols: ['clean', 'clean', 'masked'] },
  { name: 'a view in a sub-select', sql: 'SELECT * FROM (SELECT * FROM customer_upper) s ORDER BY id', expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'a view row as JSON', sql: 'SELECT to_jsonb(v) FROM customer_contacts v ORDER BY v.id', expect: 'mask', cols: ['masked'] },
  { name: 'a view over a view, renaming the masked column', sql: 'SELECT * FROM customer_directory ORDER BY customer_id', expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'a predicate on a renamed column of a view over a view', sql: "SELECT customer_id FROM customer_directory WHERE contact LIKE 'a%'", expect: 'refuse' },
  { name: 'a view joined with the table', sql: 'SELECT v.email, c.ssn FROM customer_contacts v JOIN customers c USING (id) ORDER BY id', expect: 'mask', cols: ['masked', 'ssn'] },
  { name: 'UPDATE … RETURNING *', sql: 'UPDATE customers SET name = name WHERE id = 1 RETURNING *', expect: 'mask', cols: ROW },
  { name: 'UPDATE … RETURNING expressions', sql: "UPDATE customers SET name = name WHERE id = 2 RETURNING id, upper(email), ssn || ''", expect: 'mask', cols: ['clean', 'masked', 'masked'] },
  { name: 'INSERT … ON CONFLICT DO UPDATE RETURNING', sql: "INSERT INTO customers (id, name) VALUES (4, 'David Brown') ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING id, email, ssn, card", expect: 'mask', cols: ['clean', 'email', 'ssn', 'card'] },
  // The statement policy refuses a SELECT over a write unless one rule covers both: judged only by what comes back.
  { name: 'a data-modifying CTE', sql: 'WITH u AS (UPDATE customers SET name = name WHERE id = 3 RETURNING *) SELECT email, ssn FROM u', expect: 'any', cols: ['masked', 'masked'] },
];

export const CURSORS: readonly Attack[] = [
  { name: 'a cursor over SELECT *', steps: ['BEGIN', 'DECLARE c CURSOR FOR SELECT * FROM customers ORDER BY id'], sql: 'FETCH ALL FROM c', expect: 'mask', cols: ROW },
  {
    name: 'a cursor over expressions (masking must follow the DECLARE to the FETCH)',
    steps: ['BEGIN', "DECLARE c CURSOR FOR SELECT id, reverse(email), translate(ssn, '-', ''), md5(card), string_agg(ssn, '') OVER () FROM customers ORDER BY id"],
    sql: 'FETCH ALL FROM c', expect: 'mask', cols: ['clean', 'masked', 'masked', 'masked', 'masked'],
  },
  { name: 'a WITH HOLD cursor fetched after COMMIT', steps: ['BEGIN', "DECLARE h CURSOR WITH HOLD FOR SELECT id, translate(ssn, '-', '') FROM customers ORDER BY id", 'COMMIT'], sql: 'FETCH ALL FROM h', expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'a scroll cursor, FETCH ABSOLUTE', steps: ['BEGIN', 'DECLARE s SCROLL CURSOR FOR SELECT email, ssn, card FROM customers ORDER BY id'], sql: 'FETCH ABSOLUTE 3 FROM s', expect: 'mask', cols: ['email', 'ssn', 'card'] },
  { name: 'a BINARY cursor over SELECT *', steps: ['BEGIN', 'DECLARE b BINARY CURSOR FOR SELECT * FROM customers ORDER BY id'], sql: 'FETCH ALL FROM b', expect: 'mask', cols: ['any', 'clean', 'email', 'ssn', 'card'], modes: ['text'] },
  { name: 'a BINARY cursor over expressions', steps: ['BEGIN', "DECLARE b BINARY CURSOR FOR SELECT translate(ssn, '-', ''), hashtext(card), convert_to(email, 'UTF8') FROM customers ORDER BY id"], sql: 'FETCH ALL FROM b', expect: 'mask', cols: ['masked', 'masked', 'masked'], modes: ['text'] },
];

export const ERRORS_FROM_DATA: readonly Attack[] = [
  { name: 'email::int (22P02 echoes the value)', sql: 'SELECT email::int FROM customers', expect: 'error' },
  { name: 'ssn::int', sql: 'SELECT ssn::int FROM customers', expect: 'error' },
  { name: 'card::smallint (22003 echoes the value)', sql: 'SELECT card::smallint FROM customers', expect: 'error' },
  { name: "translate(ssn, '-', '')::smallint (digits the SSN detector cannot see)", sql: "SELECT translate(ssn, '-', '')::smallint FROM customers", expect: 'error' },
  { name: 'email::json (detail quotes the token)', sql: 'SELECT email::json FROM customers', expect: 'error' },
  { name: 'xmlparse(document email) (detail quotes the input)', sql: "SELECT xmlparse(document replace(email, '@', ' ')) FROM customers", expect: 'error' },
  { name: 'email::uuid', sql: 'SELECT email::uuid FROM customers', expect: 'error' },
  { name: 'a view value cast to int', sql: 'SELECT (SELECT email FROM customer_contacts ORDER BY id LIMIT 1)::int', expect: 'error' },
  { name: 'a whole row cast to int', sql: 'SELECT c::text::int FROM customers c', expect: 'error' },
  { name: '1/0 with a predicate on a masked column', sql: 'SELECT 1/0 FROM customers WHERE email IS NOT NULL', expect: 'error' },
  { name: '1/0 on the masked table', sql: 'SELECT 1/0 FROM customers', expect: 'error' },
  { name: 'a unique violation quoting a masked key (email moved to another row)', sql: 'UPDATE customers SET email = (SELECT email FROM customers WHERE id = 2) WHERE id = 1', expect: 'error' },
  { name: 'a unique violation from INSERT … SELECT of a masked column', sql: "INSERT INTO customers (id, name, email) SELECT 999, 'copy', email FROM customers WHERE id = 1", expect: 'error' },
  {
    name: 'an error raised at FETCH of a cursor (the FETCH itself names no table)',
    steps: ['BEGIN', "DECLARE c CURSOR FOR SELECT translate(ssn, '-', '')::smallint FROM customers"], sql: 'FETCH 1 FROM c', expect: 'error',
  },
  {
    name: 'an error with a DETAIL raised at FETCH of a cursor',
    steps: ['BEGIN', "DECLARE c CURSOR FOR SELECT ('<' || translate(ssn, '-', ''))::xml FROM customers"], sql: 'FETCH 1 FROM c', expect: 'error',
  },
  { name: 'a WARNING notice quoting a value (pg_cancel_backend of a PID made of the SSN)', sql: "SELECT pg_cancel_backend(translate(ssn, '-', '')::int) FROM customers WHERE id = 1", expect: 'any' },
  {
    name: 'a WARNING notice raised at FETCH of a cursor',
    steps: ['BEGIN', "DECLARE c CURSOR FOR SELECT pg_terminate_backend(translate(ssn, '-', '')::int) FROM customers ORDER BY id"], sql: 'FETCH 3 FROM c', expect: 'any',
  },
];

export const PARAMETER_STATUS: readonly Attack[] = [
  { name: 'set_config(application_name, email) (ParameterStatus)', sql: "SELECT set_config('application_name', email, false) FROM customers LIMIT 1", expect: 'refuse' },
  { name: 'set_config(application_name, digits of the SSN)', sql: "SELECT set_config('application_name', translate(ssn, '-', ''), false) FROM customers LIMIT 1", expect: 'refuse' },
  { name: 'pg_catalog.set_config through a sub-select', sql: "SELECT pg_catalog.set_config('application_name', x, false) FROM (SELECT card AS x FROM customers LIMIT 1) s", expect: 'refuse' },
  { name: 'set_config with the name as a parameter', sql: 'SELECT set_config($1, email, false) FROM customers LIMIT 1', values: ['application_name'], expect: 'refuse' },
  {
    name: 'set_config hidden in a cursor (runs at FETCH)',
    steps: ['BEGIN', "DECLARE c CURSOR FOR SELECT set_config('application_name', translate(ssn, '-', ''), false) FROM customers"], sql: 'FETCH 1 FROM c', expect: 'any',
  },
  { name: 'SET application_name to a real customer email: the echo is scrubbed', sql: `SET application_name = '${C1.email}'`, expect: 'any' },
  { name: 'SHOW application_name after setting it to a customer email', steps: [`SET application_name = '${C1.email}'`], sql: 'SHOW application_name', expect: 'mask', cols: ['masked'] },
];

/** Two-step laundering: stash a derived value somewhere masking does not follow, read it back. */
export const LAUNDERING: readonly Attack[] = [
  { name: 'INSERT … SELECT into the clean table', sql: 'INSERT INTO newsletter SELECT email FROM customers', expect: 'refuse' },
  { name: 'INSERT … SELECT … RETURNING', sql: "INSERT INTO newsletter (email) SELECT translate(ssn, '-', '') FROM customers RETURNING *", expect: 'refuse' },
  { name: 'a CTE feeding an INSERT', sql: 'WITH x AS (SELECT card FROM customers) INSERT INTO newsletter SELECT card FROM x', expect: 'refuse' },
  { name: 'UPDATE a clean column from a masked one, RETURNING it', sql: "UPDATE customers SET name = translate(ssn, '-', '') WHERE id = 5 RETURNING name", expect: 'refuse' },
  { name: 'UPDATE the clean table from a scalar sub-select', sql: `UPDATE newsletter SET email = (SELECT ssn FROM customers WHERE id = 1) WHERE email = '${NEWSLETTER[0] ?? ''}'`, expect: 'refuse' },
  { name: 'ON CONFLICT DO UPDATE copying a masked column', sql: "INSERT INTO customers (id, name) VALUES (6, 'x') ON CONFLICT (id) DO UPDATE SET name = customers.ssn RETURNING name", expect: 'refuse' },
  { name: 'MERGE inserting masked values into the clean table', sql: 'MERGE INTO newsletter n USING customers c ON false WHEN NOT MATCHED THEN INSERT VALUES (c.ssn)', expect: 'refuse' },
  { name: 'CREATE TABLE AS', sql: 'CREATE TABLE stolen AS SELECT * FROM customers', expect: 'refuse' },
  { name: 'SELECT INTO', sql: 'SELECT * INTO stolen FROM customers', expect: 'refuse' },
  { name: 'a custom setting, read back', steps: ["SELECT set_config('stash.v', translate(ssn, '-', ''), false) FROM customers WHERE id = 1"], sql: "SELECT current_setting('stash.v', true)", expect: 'any' },
  { name: 'a sequence, read back', steps: ["SELECT setval('ticket_seq', translate(ssn, '-', '')::bigint) FROM customers WHERE id = 1"], sql: 'SELECT last_value FROM ticket_seq', expect: 'any' },
  {
    name: 'a large object, read back',
    steps: ["SELECT lo_from_bytea(0, convert_to(translate(ssn, '-', ''), 'UTF8')) FROM customers WHERE id = 1"],
    sql: 'SELECT lo_get(oid) FROM pg_largeobject_metadata', expect: 'any',
  },
  { name: 'an advisory lock key, read back from pg_locks', steps: ["SELECT pg_advisory_lock(translate(ssn, '-', '')::bigint) FROM customers WHERE id = 1"], sql: "SELECT objid FROM pg_locks WHERE locktype = 'advisory'", expect: 'any' },
  { name: 'application_name, read back from pg_stat_activity', steps: ["SELECT set_config('application_name', translate(ssn, '-', ''), false) FROM customers WHERE id = 1"], sql: 'SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()', expect: 'any' },
  { name: 'planner statistics (pg_stats histogram bounds)', sql: "SELECT attname, histogram_bounds FROM pg_stats WHERE schemaname = 'public' AND tablename = 'customers' ORDER BY attname", expect: 'any' },
  { name: 'planner statistics as text, digits only', sql: "SELECT translate(histogram_bounds::text, '-', '') FROM pg_stats WHERE tablename = 'customers' AND attname = 'ssn'", expect: 'any' },
  { name: 'table_to_xml (a table named in a string)', sql: "SELECT table_to_xml('customers', true, false, '')", expect: 'any' },
  { name: 'xpath over table_to_xml (xml[] output)', sql: "SELECT xpath('/row/ssn/text()', table_to_xml('public.customers', true, false, ''))", expect: 'any' },
  { name: 'table_to_xml as text, digits only', sql: "SELECT translate(table_to_xml('customers', true, false, '')::text, '-', '')", expect: 'any' },
  { name: 'table_to_xml of a view', sql: "SELECT translate(table_to_xml('customer_contacts', true, false, '')::text, '@', ' ')", expect: 'any' },
  { name: 'schema_to_xml', sql: "SELECT translate(schema_to_xml('public', true, false, '')::text, '-', '')", expect: 'any' },
  { name: 'database_to_xml', sql: "SELECT translate(database_to_xml(true, false, '')::text, '-', '')", expect: 'any' },
  {
    name: 'cursor_to_xml over a DECLAREd cursor',
    steps: ['BEGIN', "DECLARE c CURSOR FOR SELECT translate(ssn, '-', '') AS d FROM customers"],
    sql: "SELECT cursor_to_xml('c', 20, true, false, '')", expect: 'any',
  },
  { name: 'ts_stat (runs the SQL in its argument)', sql: "SELECT word FROM ts_stat('SELECT to_tsvector(''simple'', translate(ssn, ''-'', '''')) FROM customers') ORDER BY word", expect: 'any' },
  { name: 'ts_stat over emails', sql: "SELECT word FROM ts_stat('SELECT to_tsvector(''simple'', replace(email, ''@'', '' '')) FROM customers') ORDER BY word", expect: 'any' },
  { name: 'pg_stats through a quoted, aliased name', sql: 'SELECT s.histogram_bounds::text FROM "pg_catalog"."pg_stats" s WHERE s.attname = \'ssn\'', expect: 'any' },
  { name: 'query_to_xml (SQL in a string)', sql: "SELECT query_to_xml('select translate(ssn, ''-'', '''') as s from customers', true, false, '')", expect: 'any' },
];

export const PREDICATES: readonly Attack[] = [
  { name: "WHERE email = '…'", sql: `SELECT id FROM customers WHERE email = '${C1.email}'`, expect: 'refuse' },
  { name: 'ORDER BY ssn', sql: 'SELECT id FROM customers ORDER BY ssn', expect: 'refuse' },
  { name: 'GROUP BY card', sql: 'SELECT count(*) FROM customers GROUP BY card', expect: 'refuse' },
  { name: 'WHERE ssn LIKE', sql: "SELECT id FROM customers WHERE ssn LIKE '1%'", expect: 'refuse' },
  { name: 'a range predicate (binary search)', sql: "SELECT count(*) FROM customers WHERE ssn > '150'", expect: 'refuse' },
  { name: 'JOIN on a masked column', sql: 'SELECT c.id FROM customers c JOIN newsletter n ON n.email = c.email', expect: 'refuse' },
  { name: 'a predicate inside IN (sub-select)', sql: "SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE ssn LIKE '12%')", expect: 'refuse' },
  { name: 'DISTINCT on a masked column', sql: 'SELECT DISTINCT ssn FROM customers', expect: 'refuse' },
  { name: 'DISTINCT ON a masked column', sql: 'SELECT DISTINCT ON (card) id FROM customers', expect: 'refuse' },
  { name: 'a window ordered by a masked column', sql: 'SELECT id, row_number() OVER (ORDER BY ssn) FROM customers', expect: 'refuse' },
  { name: 'the whole row in WHERE', sql: "SELECT id FROM customers c WHERE c::text LIKE '%123-45%'", expect: 'refuse' },
  { name: 'to_jsonb(whole row) containment in WHERE', sql: 'SELECT id FROM customers WHERE to_jsonb(customers) @> \'{"ssn": "123-45-6789"}\'', expect: 'refuse' },
  { name: 'HAVING on a masked aggregate', sql: "SELECT count(*) FROM customers HAVING max(ssn) > '2'", expect: 'refuse' },
  { name: 'a predicate on a view column', sql: "SELECT id FROM customer_contacts WHERE email LIKE 'a%'", expect: 'refuse' },
  { name: 'a predicate on a derived view column', sql: "SELECT id FROM customer_upper WHERE e LIKE 'A%'", expect: 'refuse' },
  { name: 'a clean value compared with a sub-select of a masked column', sql: "SELECT count(*) FROM (VALUES ('123-45-6789')) v(s) WHERE v.s IN (SELECT ssn FROM customers)", expect: 'refuse' },
  { name: 'position() in WHERE', sql: "SELECT count(*) FROM customers WHERE position('@mailbox' IN email) > 0", expect: 'refuse' },
  { name: 'an aggregate FILTER', sql: "SELECT count(*) FILTER (WHERE ssn LIKE '1%') FROM customers", expect: 'refuse' },
  { name: 'a correlated sub-select in WHERE', sql: "SELECT id FROM customers WHERE (SELECT customers.ssn) LIKE '1%'", expect: 'refuse' },
  { name: 'a predicate inside LATERAL', sql: "SELECT id FROM customers c, LATERAL (SELECT 1 WHERE c.ssn LIKE '1%') l", expect: 'refuse' },
  { name: 'ORDER BY an expression of a masked column', sql: 'SELECT id FROM customers ORDER BY length(email)', expect: 'refuse' },
  { name: 'IS NULL on a masked column', sql: 'SELECT id FROM customers WHERE ssn IS NULL', expect: 'refuse' },
  { name: 'a parameterised predicate', sql: 'SELECT id FROM customers WHERE ssn = $1', values: [C1.ssn], expect: 'refuse' },
  { name: 'a join USING a masked column of a view', sql: 'SELECT id FROM customers JOIN customer_contacts USING (id, email)', expect: 'refuse' },
  { name: 'a predicate in a cursor', steps: ['BEGIN'], sql: "DECLARE c CURSOR FOR SELECT id FROM customers WHERE ssn LIKE '1%'", expect: 'refuse' },
];


/** Objects that already exist in the database and read the protected columns for the caller. */
export const USER_OBJECTS: readonly Attack[] = [
  { name: 'a materialized view of masked columns', sql: 'SELECT * FROM customer_mv ORDER BY id', expect: 'mask', cols: ['clean', 'masked', 'masked'] },
  { name: 'a user function reading a masked column, called per row', sql: 'SELECT id, customer_tax_id(id) FROM customers ORDER BY id', expect: 'mask', cols: ['clean', 'masked'] },
  { name: 'a user function reading a masked column, called alone', sql: 'SELECT customer_tax_id(1)', expect: 'mask', cols: ['masked'] },
  { name: 'a set-returning user function over the masked table', sql: 'SELECT * FROM active_customers() ORDER BY id', expect: 'mask', cols: ['any', 'any', 'masked', 'masked', 'masked'] },
  { name: 'a user function raising a NOTICE with a masked value', sql: 'SELECT check_customer(1)', expect: 'any' },
];

/** Several statements in one simple Query (text only: the extended protocol takes one). */
export const MULTI_STATEMENT: readonly Attack[] = [
  { name: 'a clean statement then an expression over masked columns', sql: 'SELECT 1; SELECT upper(email) FROM customers ORDER BY id', expect: 'mask', cols: ['masked'], modes: ['text'] },
  { name: 'a clean table then digits of the SSN', sql: "SELECT email FROM newsletter LIMIT 1; SELECT translate(ssn, '-', '') FROM customers ORDER BY id", expect: 'mask', cols: ['masked'], modes: ['text'] },
  { name: 'BEGIN; DECLARE; FETCH in one Query', sql: 'BEGIN; DECLARE c CURSOR FOR SELECT reverse(email) FROM customers ORDER BY id; FETCH ALL FROM c', expect: 'mask', cols: ['masked'], modes: ['text'] },
];

export const FAKE_EMAIL = 'nobody.there@example.com';
export const FAKE_SSN = '321-54-9876';
export const FAKE_CARD = luhnComplete('450875768300170');
export const ORACLES: ReadonlyArray<[name: string, sql: string, steps?: readonly string[], teardown?: string]> = [
  ['INTERSECT with a guess', "SELECT count(*) FROM (SELECT '{E}'::text INTERSECT SELECT email FROM customers) t"],
  ['EXCEPT a guess', "SELECT count(*) FROM (SELECT email FROM customers EXCEPT SELECT '{E}') t"],
  ['UNION dedup with a guess', "SELECT count(*) FROM (SELECT email FROM customers UNION SELECT '{E}') t"],
  ['count(DISTINCT) with a guess', "SELECT count(DISTINCT e) FROM (SELECT email AS e FROM customers UNION ALL SELECT '{E}') t"],
  ['IN (sub-select) in the select list', "SELECT '{E}' IN (SELECT email FROM customers) AS hit"],
  ['CASE in the select list returning a clean column', "SELECT id, CASE WHEN ssn = '{S}' THEN name END FROM customers ORDER BY id"],
  ['max(CASE …)', "SELECT max(CASE WHEN ssn = '{S}' THEN 1 ELSE 0 END) FROM customers"],
  ['bool_or', "SELECT bool_or(ssn = '{S}') FROM customers"],
  ['array_position', "SELECT array_position((SELECT array_agg(ssn ORDER BY id) FROM customers), '{S}')"],
  ['division by zero on a match (error oracle)', "SELECT CASE WHEN email = '{E}' THEN 1 / (id - id) ELSE 1 END FROM customers"],
  ['1 / (ssn <> guess)::int (error oracle without CASE)', "SELECT 1 / (ssn <> '{S}')::int FROM customers"],
  ['a cast that fails on a match (error oracle)', "SELECT (CASE WHEN card = '{C}' THEN 'x' ELSE '1' END)::int FROM customers"],
  ['a unique violation on a guessed email', "INSERT INTO customers (id, name, email) VALUES (900, 'probe', '{E}')", ['BEGIN'], 'ROLLBACK'],
  ['ON CONFLICT DO NOTHING on a guessed email (row count)', "INSERT INTO customers (id, name, email) VALUES (901, 'probe', '{E}') ON CONFLICT DO NOTHING", ['BEGIN'], 'ROLLBACK'],
  ['EXPLAIN ANALYZE of a predicate (actual rows)', "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT id FROM customers WHERE email = '{E}'"],
  ['EXPLAIN (no ANALYZE) of an equality: planner statistics (most common values)', "EXPLAIN (COSTS ON) SELECT id FROM customers WHERE card = '{C}'"],
  ['EXPLAIN (no ANALYZE) of a range: planner statistics (histogram)', "EXPLAIN SELECT id FROM customers WHERE ssn < '{S}'"],
  ['UPDATE … WHERE a masked column (row count)', "UPDATE customers SET name = name WHERE ssn = '{S}'", ['BEGIN'], 'ROLLBACK'],
  ['DELETE … WHERE a masked column (row count)', "DELETE FROM customers WHERE email = '{E}'", ['BEGIN'], 'ROLLBACK'],
  ['UPDATE setting a guessed value on a unique masked column', "UPDATE customers SET email = '{E}' WHERE id = 20", ['BEGIN'], 'ROLLBACK'],
  ['MERGE joined on a masked column (row count)', "MERGE INTO customers c USING (SELECT '{E}'::text AS e) g ON c.email = g.e WHEN MATCHED THEN UPDATE SET name = c.name", ['BEGIN'], 'ROLLBACK'],
  ['EXISTS with a correlated predicate', "SELECT count(*) FROM (VALUES ('{S}')) v(s) WHERE EXISTS (SELECT FROM customers c WHERE c.ssn = v.s)"],
  ['a JSON path over the whole row', "SELECT count(*) FROM customers c WHERE jsonb_path_exists(to_jsonb(c), '$ ? (@.ssn == \"{S}\")')"],
  ['jsonb_path_exists over an aggregate', "SELECT jsonb_path_exists(jsonb_agg(c), '$[*] ? (@.card == \"{C}\")') FROM customers c"],
  ['a LIMIT computed from a masked comparison', "SELECT id FROM customers ORDER BY id LIMIT (SELECT count(*) FROM customers WHERE card = '{C}')"],
  ['nullif IS NULL', "SELECT nullif(ssn, '{S}') IS NULL FROM customers WHERE id = 1"],
];
