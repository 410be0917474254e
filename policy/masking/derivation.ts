// Which outputs of a statement derive from masked columns (DESIGN §3 "Masking"; reference
// postgres-protocol.md §10.2, §11, §14.2 item 6). The wire layer masks bare columns by their
// RowDescription provenance (table OID, attnum); everything PostgreSQL reports as 0/0 (expressions,
// casts, aggregates, constructors, sub-selects, set operations, VALUES), whole-row references and
// view columns are decided here, by a conservative taint analysis over the whole libpg-query AST.
//
// A column reference is tainted when it may name a masked column of a relation in its scope
// (qualified, unqualified against every relation that may have it, `t.*`, whole-row `t`), or a
// column of a sub-select / CTE / set operation whose defining expression is tainted. Taint
// propagates through every expression (operators, casts, functions, aggregates, constructors).
// Beyond the outputs, the analysis reports masked columns used where their value can be inferred
// (predicates, joins, ordering, grouping, CASE conditions), statements that move masked data
// somewhere it can be read back unmasked, and whole-row references.
//
// Choices (conservative):
// - `outputs` also marks bare references to masked columns 'masked' (harmless: the wire masks them
//   by provenance anyway; needed for COPY, which has no RowDescription, and for views).
// - An unqualified name that no relation is known to have (no catalog column list) is resolved
//   against every relation of the innermost scope and of every outer scope.
// - CASE conditions, FILTER, aggregate ORDER BY and window clauses are predicates: they taint
//   `predicateUse`, not the output. Plain DISTINCT and set operations other than UNION ALL over a
//   tainted output are predicates too (deduplication compares values).
// - Writing a masked value into a column that is itself masked (in the target table) does not
//   launder; into any other column it does. CREATE VIEW over masked outputs launders (the catalog
//   mapping of view columns lags the DDL, even within one message).
import { parseSync } from 'libpg-query';
import { CustosError } from '../../lib/errors.ts';
import { type AstObject, constantValue, isAstObject, listField, nodeOf, stringField, stringList, wrappedType } from '../sql/ast.ts';
import { figureColname } from './derivation-names.ts';
import {
  aliasRelation, baseRelation, type Column, combineFound, derivedRelation, type Entry, entriesTaint, flatten, type Found, joinRelation, maxTaint,
  opaqueRelation, type Relation, type Taint, usingAliasRelation,
} from './derivation-relations.ts';

export interface MaskedColumnSet {
  /** Masked column names of a relation named in a statement; `schema` null = unqualified (match the table name in any schema: conservative). Empty set = nothing masked in it. */
  maskedColumns(schema: string | null, table: string): ReadonlySet<string>;
  /** The relation's columns in order (catalog), to expand `*` exactly; undefined when unknown. */
  columnsOf?(schema: string | null, table: string): readonly string[] | undefined;
}

export type OutputDerivation = 'clean' | 'masked' | 'unknown';

export interface MaskingAnalysis {
  /**
   * One entry per output column of the statement's result, in order ('masked' also for bare
   * references to masked columns); null when the positions cannot be determined (a `*` over a
   * relation of unknown width). When null, mask every 0/0 output if `derivesMasked`.
   */
  readonly outputs: readonly OutputDerivation[] | null;
  /** Some output that PostgreSQL reports without a column provenance (0/0, or attnum 0) derives from a masked column. */
  readonly derivesMasked: boolean;
  /** A masked column is used where it can be inferred without being output (WHERE, JOIN, GROUP BY, HAVING, ORDER BY, DISTINCT, window clauses, LIMIT/OFFSET, CASE conditions, FILTER, set-operation deduplication, sub-selects in those). */
  readonly predicateUse: boolean;
  /** The statement moves masked data somewhere it could be read back unmasked (INSERT/UPDATE/MERGE into unmasked columns, CREATE TABLE AS, SELECT INTO, CREATE VIEW, COPY … TO, set_config, pg_notify, large objects, …). */
  readonly launders: boolean;
  /** Whole-row reference to a relation with masked columns (`SELECT c FROM customers c`, `row_to_json(c)`, `c::text`, `ROW(c.*)`). */
  readonly wholeRow: boolean;
}

/** Functions whose arguments end up somewhere another statement or session can read them back. */
const LAUNDERING_FUNCTIONS = new Set([
  'set_config', 'pg_notify', 'lo_from_bytea', 'lo_put', 'lowrite', 'pg_logical_emit_message', 'setval',
  'dblink', 'dblink_exec', 'dblink_send_query', 'dblink_open', 'pg_file_write',
  // Advisory lock keys are visible to every session in pg_locks.
  'pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_advisory_xact_lock', 'pg_advisory_xact_lock_shared',
  'pg_try_advisory_lock', 'pg_try_advisory_lock_shared', 'pg_try_advisory_xact_lock', 'pg_try_advisory_xact_lock_shared',
]);

/** Operators and expression kinds that compare values (their result tells about the operands). */
const COMPARISON_OPERATORS = new Set(['=', '<>', '!=', '<', '>', '<=', '>=', '~~', '!~~', '~~*', '!~~*', '~', '!~', '~*', '!~*', '^@', '@@']);
const COMPARISON_KINDS = new Set([
  'AEXPR_OP_ANY', 'AEXPR_OP_ALL', 'AEXPR_DISTINCT', 'AEXPR_NOT_DISTINCT', 'AEXPR_IN', 'AEXPR_LIKE',
  'AEXPR_ILIKE', 'AEXPR_SIMILAR', 'AEXPR_BETWEEN', 'AEXPR_NOT_BETWEEN', 'AEXPR_BETWEEN_SYM', 'AEXPR_NOT_BETWEEN_SYM',
]);

function isComparison(body: AstObject): boolean {
  const kind = stringField(body, 'kind');
  if (kind !== undefined && COMPARISON_KINDS.has(kind)) return true;
  const operator = stringList(listField(body, 'name')).at(-1);
  return kind === 'AEXPR_OP' && operator !== undefined && COMPARISON_OPERATORS.has(operator);
}

/** Built-ins that read a whole relation (or cursor, schema, database) named by a string: their result is not analysable. */
const RELATION_READING_FUNCTIONS = new Set([
  'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema', 'cursor_to_xml', 'cursor_to_xmlschema',
  'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema', 'database_to_xml', 'database_to_xmlschema',
  'database_to_xml_and_xmlschema', 'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema',
  'dblink', 'dblink_get_result', 'dblink_fetch',
]);

/** Fields of expression nodes that are conditions or orderings, not values. */
const PREDICATE_FIELDS = new Set(['agg_filter', 'agg_order', 'over', 'whereClause', 'partitionClause', 'orderClause', 'startOffset', 'endOffset']);

interface Level {
  /** FROM items in order (joins as one item), for `*`. */
  readonly items: readonly Relation[];
  /** Every relation that can qualify a column here (join parts included). */
  readonly named: readonly Relation[];
}

interface CteBinding {
  readonly parent: CteBinding | undefined;
  readonly name: string;
  readonly relation: Relation;
}

interface Scope {
  /** Innermost last. */
  readonly levels: readonly Level[];
  readonly ctes: CteBinding | undefined;
}

interface Query {
  readonly entries: readonly Entry[];
}

/** Bound on statements analysed per top-level statement (recursive CTEs are re-analysed to a fixpoint). */
const MAX_WORK = 10_000;

const EMPTY_SCOPE: Scope = { levels: [], ctes: undefined };

function levelOf(items: readonly Relation[]): Level {
  const named: Relation[] = [];
  const add = (r: Relation): void => {
    named.push(r);
    for (const part of r.parts) add(part);
  };
  for (const item of items) add(item);
  return { items, named };
}

function withLevel(scope: Scope, level: Level): Scope {
  return { levels: [...scope.levels, level], ctes: scope.ctes };
}

function leaves(level: Level): Relation[] {
  return level.named.filter((r) => r.parts.length === 0);
}

function aliasOf(node: AstObject): { name: string | null; colnames: string[] } {
  const alias = node['alias'];
  if (!isAstObject(alias)) return { name: null, colnames: [] };
  return { name: stringField(alias, 'aliasname') ?? null, colnames: stringList(listField(alias, 'colnames')) };
}

/** A field that holds either a wrapped node or a bare struct of `type`. */
function structOf(value: unknown, type: string): AstObject | undefined {
  const wrapped = nodeOf(value, type);
  if (wrapped !== undefined) return wrapped;
  return isAstObject(value) && wrappedType(value) === undefined ? value : undefined;
}

function returningOf(body: AstObject): readonly unknown[] {
  const clause = body['returningClause'];
  if (isAstObject(clause)) return listField(clause, 'exprs');
  return listField(body, 'returningList');
}

function isTainted(t: Taint): boolean {
  return t !== 'clean';
}

class Analyser {
  predicateUse = false;
  launders = false;
  wholeRow = false;
  readonly #masked: MaskedColumnSet;
  /** First output name of each analysed sub-select (names `(SELECT x …)` in a select list). */
  readonly #firstNames = new WeakMap<object, string | null>();
  /** Statements analysed so far: recursive CTEs are analysed more than once; bounded against blow-up. */
  #work = 0;

  constructor(masked: MaskedColumnSet) {
    this.#masked = masked;
  }

  // ---- statements --------------------------------------------------------------------------

  /** A statement's result (RETURNING for DML), or null when it returns nothing this analysis models. */
  statement(node: unknown, scope: Scope): Query | null {
    if (!isAstObject(node)) return null;
    const type = wrappedType(node);
    const body = type === undefined ? undefined : node[type];
    if (type === undefined || !isAstObject(body)) return null;
    if (++this.#work > MAX_WORK) throw new CustosError('ERR_MASKING_TOO_COMPLEX', 'the statement is too complex to analyse for masking');
    switch (type) {
      case 'SelectStmt':
        return this.select(body, scope);
      case 'InsertStmt':
        return this.#insert(body, scope);
      case 'UpdateStmt':
        return this.#update(body, scope);
      case 'DeleteStmt':
        return this.#delete(body, scope);
      case 'MergeStmt':
        return this.#merge(body, scope);
      case 'CopyStmt':
        return this.#copy(body, scope);
      case 'CreateTableAsStmt': {
        const query = this.statement(body['query'], scope);
        const into = body['into'];
        const skipData = isAstObject(into) && into['skipData'] === true && stringField(body, 'objtype') !== 'OBJECT_MATVIEW';
        if (query === null || (!skipData && isTainted(entriesTaint(query.entries, 'any')))) this.launders = true;
        return null;
      }
      case 'ViewStmt': {
        const query = this.statement(body['query'], scope);
        if (query === null || isTainted(entriesTaint(query.entries, 'any'))) this.launders = true;
        return null;
      }
      case 'DeclareCursorStmt':
      case 'PrepareStmt':
        // The rows come later (FETCH, EXECUTE): the caller keeps this analysis under the name.
        return this.statement(body['query'], scope);
      case 'ExplainStmt':
        this.statement(body['query'], scope);
        return { entries: [{ kind: 'column', column: { name: 'QUERY PLAN', taint: 'clean', bare: false } }] };
      default:
        this.#utility(body, scope);
        return null;
    }
  }

  /** Any other statement: queries nested in it (rule actions, SQL function bodies) launder if tainted. */
  #utility(body: AstObject, scope: Scope): void {
    const visit = (v: unknown): void => {
      if (Array.isArray(v)) {
        for (const item of v) visit(item);
        return;
      }
      if (!isAstObject(v)) return;
      const type = wrappedType(v);
      if (type !== undefined && /^(Select|Insert|Update|Delete|Merge)Stmt$/.test(type)) {
        const query = this.statement(v, scope);
        if (query !== null && isTainted(entriesTaint(query.entries, 'any'))) this.launders = true;
        return;
      }
      for (const key in v) visit(v[key]);
    };
    visit(body);
  }

  select(body: AstObject, outer: Scope): Query {
    const scope = this.#with(body, outer);
    const op = stringField(body, 'op') ?? 'SETOP_NONE';
    if (op !== 'SETOP_NONE') return this.#setOperation(body, op, scope);
    if (body['valuesLists'] !== undefined) return this.#values(body, scope);
    const level = this.#from(listField(body, 'fromClause'), scope);
    const inner = withLevel(scope, level);
    this.#predicate(body['whereClause'], inner);
    const entries = this.#targets(listField(body, 'targetList'), inner);
    for (const item of listField(body, 'groupClause')) this.#groupItem(item, inner, entries);
    this.#predicate(body['havingClause'], inner);
    for (const def of listField(body, 'windowClause')) this.#predicate(def, inner);
    const distinct = listField(body, 'distinctClause');
    for (const item of distinct) {
      if (isAstObject(item) && wrappedType(item) === undefined) {
        // Plain DISTINCT: deduplicates on every output.
        if (isTainted(entriesTaint(entries, 'any'))) this.predicateUse = true;
      } else {
        this.#sortItem(item, inner, entries, true);
      }
    }
    for (const item of listField(body, 'sortClause')) this.#sortItem(nodeOf(item, 'SortBy')?.['node'], inner, entries, true);
    this.#predicate(body['limitOffset'], inner);
    this.#predicate(body['limitCount'], inner);
    if (body['intoClause'] !== undefined && isTainted(entriesTaint(entries, 'any'))) this.launders = true;
    return { entries };
  }

  #setOperation(body: AstObject, op: string, scope: Scope): Query {
    const branch = (v: unknown): Query => {
      const s = structOf(v, 'SelectStmt');
      return s === undefined ? { entries: [{ kind: 'star', relations: [opaqueRelation(null, 'unknown', null)] }] } : this.select(s, scope);
    };
    const left = branch(body['larg']);
    const right = branch(body['rarg']);
    const lc = flatten(left.entries);
    const rc = flatten(right.entries);
    const width = lc?.length ?? rc?.length;
    let entries: Entry[];
    if (width === undefined) {
      entries = [{ kind: 'star', relations: [opaqueRelation(null, maxTaint(entriesTaint(left.entries, 'any'), entriesTaint(right.entries, 'any')), null)] }];
    } else {
      // A branch of unknown width: its i-th column may or may not be a tainted one.
      const at = (columns: Column[] | null, query: Query, i: number): Taint =>
        columns === null ? (isTainted(entriesTaint(query.entries, 'any')) ? 'unknown' : 'clean') : (columns[i]?.taint ?? 'clean');
      entries = [];
      for (let i = 0; i < width; i++) {
        entries.push({ kind: 'column', column: { name: lc === null ? null : (lc[i]?.name ?? null), taint: maxTaint(at(lc, left, i), at(rc, right, i)), bare: false } });
      }
    }
    const dedup = !(op === 'SETOP_UNION' && body['all'] === true);
    if (dedup && isTainted(entriesTaint(entries, 'any'))) this.predicateUse = true;
    // ORDER BY / LIMIT of a set operation see only its output columns.
    const own = withLevel({ levels: [], ctes: scope.ctes }, levelOf([derivedRelation(null, entries)]));
    for (const item of listField(body, 'sortClause')) this.#sortItem(nodeOf(item, 'SortBy')?.['node'], own, entries, true);
    this.#predicate(body['limitOffset'], own);
    this.#predicate(body['limitCount'], own);
    if (body['intoClause'] !== undefined && isTainted(entriesTaint(entries, 'any'))) this.launders = true;
    return { entries };
  }

  #values(body: AstObject, scope: Scope): Query {
    const taints: Taint[] = [];
    for (const row of listField(body, 'valuesLists')) {
      const list = nodeOf(row, 'List');
      const items = list === undefined ? [] : listField(list, 'items');
      items.forEach((item, i) => {
        taints[i] = maxTaint(taints[i] ?? 'clean', this.expr(item, scope));
      });
    }
    const entries = taints.map((taint, i): Entry => ({ kind: 'column', column: { name: `column${i + 1}`, taint, bare: false } }));
    for (const item of listField(body, 'sortClause')) this.#sortItem(nodeOf(item, 'SortBy')?.['node'], withLevel(scope, levelOf([derivedRelation(null, entries)])), entries, true);
    return { entries };
  }

  /** WITH: binds CTE names for the statement (RECURSIVE: to a fixpoint of their taints). */
  #with(body: AstObject, scope: Scope): Scope {
    const clause = body['withClause'];
    if (!isAstObject(clause)) return scope;
    const ctes = listField(clause, 'ctes').flatMap((item) => {
      const cte = nodeOf(item, 'CommonTableExpr');
      return cte === undefined ? [] : [cte];
    });
    if (clause['recursive'] !== true) {
      let bound = scope.ctes;
      for (const cte of ctes) {
        const relation = this.#cte(cte, { levels: scope.levels, ctes: bound });
        bound = { parent: bound, name: relation.refname ?? '', relation };
      }
      return { levels: scope.levels, ctes: bound };
    }
    const bind = (relations: readonly Relation[]): CteBinding | undefined => {
      let bound = scope.ctes;
      for (const relation of relations) bound = { parent: bound, name: relation.refname ?? '', relation };
      return bound;
    };
    let relations: Relation[] = ctes.map((cte) => opaqueRelation(stringField(cte, 'ctename') ?? '', 'clean', null, true));
    for (let round = 0; ; round++) {
      const bound = bind(relations);
      const next = ctes.map((cte) => this.#cte(cte, { levels: scope.levels, ctes: bound }));
      if (signature(next) === signature(relations)) break;
      relations = next;
      if (round === 8) {
        relations = ctes.map((cte) => opaqueRelation(stringField(cte, 'ctename') ?? '', 'unknown', null, true));
        break;
      }
    }
    return { levels: scope.levels, ctes: bind(relations) };
  }

  #cte(cte: AstObject, scope: Scope): Relation {
    const name = stringField(cte, 'ctename') ?? '';
    const query = this.statement(cte['ctequery'], scope) ?? { entries: [{ kind: 'star', relations: [opaqueRelation(null, 'unknown', null)] }] };
    const entries: Entry[] = [...query.entries];
    // SEARCH / CYCLE add columns built from the CTE's own columns.
    const whole = entriesTaint(query.entries, 'any');
    const search = cte['search_clause'];
    if (isAstObject(search)) entries.push({ kind: 'column', column: { name: stringField(search, 'search_seq_column') ?? null, taint: whole, bare: false } });
    const cycle = cte['cycle_clause'];
    if (isAstObject(cycle)) {
      entries.push({ kind: 'column', column: { name: stringField(cycle, 'cycle_mark_column') ?? null, taint: 'clean', bare: false } });
      entries.push({ kind: 'column', column: { name: stringField(cycle, 'cycle_path_column') ?? null, taint: whole, bare: false } });
    }
    return aliasRelation(derivedRelation(name, entries), name, stringList(listField(cte, 'aliascolnames')));
  }

  // ---- DML ---------------------------------------------------------------------------------

  #target(relation: unknown): { relation: Relation; masked: ReadonlySet<string>; columns: readonly string[] | undefined } {
    const rv = structOf(relation, 'RangeVar');
    const schema = rv === undefined ? null : (stringField(rv, 'schemaname') ?? null);
    const table = rv === undefined ? '' : (stringField(rv, 'relname') ?? '');
    const masked = this.#masked.maskedColumns(schema, table);
    const columns = this.#masked.columnsOf?.(schema, table);
    const base = baseRelation(schema, table, masked, columns);
    const alias = rv === undefined ? { name: null, colnames: [] } : aliasOf(rv);
    return { relation: alias.name === null ? base : aliasRelation(base, alias.name, []), masked, columns };
  }

  /** Values written into `columns` (null: positions unknown) of a table whose masked columns are `masked`. */
  #write(taints: readonly Taint[] | null, anyTaint: Taint, columns: readonly string[] | null, masked: ReadonlySet<string>): void {
    // A value written into a masked column meets the stored ones in unique constraints and
    // ON CONFLICT (a violation answers "does this value exist"): an inference channel.
    if (masked.size > 0 && (columns === null || columns.some((c) => masked.has(c)))) this.predicateUse = true;
    if (taints === null) {
      if (isTainted(anyTaint) && (columns === null || columns.some((c) => !masked.has(c)))) this.launders = true;
      return;
    }
    taints.forEach((taint, i) => {
      const column = columns?.[i];
      if (isTainted(taint) && (column === undefined || !masked.has(column))) this.launders = true;
    });
  }

  #assignments(targetList: readonly unknown[], scope: Scope, masked: ReadonlySet<string>): void {
    for (const item of targetList) {
      const target = nodeOf(item, 'ResTarget');
      if (target === undefined) continue;
      const column = stringField(target, 'name') ?? '';
      for (const ind of listField(target, 'indirection')) this.#predicate(ind, scope); // subscripts choose the element written
      const value = target['val'];
      const multi = nodeOf(value, 'MultiAssignRef');
      const taint = multi === undefined ? this.expr(value, scope) : this.#multiAssign(multi, scope);
      if (isTainted(taint) && !masked.has(column)) this.launders = true;
      if (masked.has(column)) this.predicateUse = true; // see #write: constraints compare the new value
    }
  }

  /** `SET (a, b) = (SELECT x, y ...)` or `= ROW(x, y)`: the colno-th value. */
  #multiAssign(multi: AstObject, scope: Scope): Taint {
    const colno = typeof multi['colno'] === 'number' ? multi['colno'] : 0;
    const source = multi['source'];
    const sublink = nodeOf(source, 'SubLink');
    if (sublink !== undefined) {
      const query = this.statement(sublink['subselect'], scope);
      if (query === null) return 'unknown';
      const columns = flatten(query.entries);
      return columns === null ? entriesTaint(query.entries, 'any') : (columns[colno - 1]?.taint ?? 'clean');
    }
    const row = nodeOf(source, 'RowExpr');
    if (row !== undefined) {
      const arg = listField(row, 'args')[colno - 1];
      return arg === undefined ? this.expr(source, scope) : this.expr(arg, scope);
    }
    return this.expr(source, scope);
  }

  #returning(body: AstObject, scope: Scope): Query {
    return { entries: this.#targets(returningOf(body), scope) };
  }

  #insert(body: AstObject, outer: Scope): Query {
    const scope = this.#with(body, outer);
    const target = this.#target(body['relation']);
    const named = listField(body, 'cols').flatMap((c) => {
      const t = nodeOf(c, 'ResTarget');
      const name = t === undefined ? undefined : stringField(t, 'name');
      return name === undefined ? [] : [name];
    });
    const columns = named.length > 0 ? named : (target.columns ?? null);
    if (body['selectStmt'] !== undefined) {
      const query = this.statement(body['selectStmt'], scope);
      if (query === null) this.launders = true;
      else {
        const flat = flatten(query.entries);
        this.#write(flat === null ? null : flat.map((c) => c.taint), entriesTaint(query.entries, 'any'), columns, target.masked);
      }
    }
    const conflict = body['onConflictClause'];
    if (isAstObject(conflict)) {
      const excluded = aliasRelation(target.relation, 'excluded', []);
      const inner = withLevel(scope, levelOf([target.relation, excluded]));
      this.#assignments(listField(conflict, 'targetList'), inner, target.masked);
      this.#predicate(conflict['whereClause'], inner);
      const infer = conflict['infer'];
      if (isAstObject(infer)) this.#predicate(infer['whereClause'], inner);
    }
    return this.#returning(body, withLevel(scope, levelOf([target.relation])));
  }

  #update(body: AstObject, outer: Scope): Query {
    const scope = this.#with(body, outer);
    const target = this.#target(body['relation']);
    const level = this.#from(listField(body, 'fromClause'), scope, [target.relation]);
    const inner = withLevel(scope, level);
    this.#assignments(listField(body, 'targetList'), inner, target.masked);
    this.#predicate(body['whereClause'], inner);
    return this.#returning(body, inner);
  }

  #delete(body: AstObject, outer: Scope): Query {
    const scope = this.#with(body, outer);
    const target = this.#target(body['relation']);
    const level = this.#from(listField(body, 'usingClause'), scope, [target.relation]);
    const inner = withLevel(scope, level);
    this.#predicate(body['whereClause'], inner);
    return this.#returning(body, inner);
  }

  #merge(body: AstObject, outer: Scope): Query {
    const scope = this.#with(body, outer);
    const target = this.#target(body['relation']);
    const source = this.#fromItem(body['sourceRelation'], scope, []);
    const inner = withLevel(scope, levelOf([target.relation, source]));
    this.#predicate(body['joinCondition'], inner);
    for (const item of listField(body, 'mergeWhenClauses')) {
      const clause = nodeOf(item, 'MergeWhenClause');
      if (clause === undefined) continue;
      this.#predicate(clause['condition'], inner);
      if (stringField(clause, 'commandType') === 'CMD_INSERT') {
        const named = listField(clause, 'targetList').flatMap((c) => {
          const name = nodeOf(c, 'ResTarget') === undefined ? undefined : stringField(nodeOf(c, 'ResTarget') ?? {}, 'name');
          return name === undefined ? [] : [name];
        });
        const taints = listField(clause, 'values').map((v) => this.expr(v, inner));
        this.#write(taints, 'clean', named.length > 0 ? named : (target.columns ?? null), target.masked);
      } else {
        this.#assignments(listField(clause, 'targetList'), inner, target.masked);
      }
    }
    return this.#returning(body, inner);
  }

  #copy(body: AstObject, scope: Scope): Query | null {
    if (body['is_from'] === true) {
      this.#predicate(body['whereClause'], withLevel(scope, levelOf([this.#target(body['relation']).relation])));
      return null;
    }
    if (body['query'] !== undefined) {
      const query = this.statement(body['query'], scope);
      if (query === null || isTainted(entriesTaint(query.entries, 'any'))) this.launders = true;
      return query;
    }
    // COPY table [(columns)] TO: the rows leave as CopyData, with no RowDescription.
    const target = this.#target(body['relation']);
    const attlist = stringList(listField(body, 'attlist'));
    if (attlist.length > 0) {
      const entries = attlist.map((name): Entry => ({ kind: 'column', column: { name, taint: target.masked.has(name) ? 'masked' : 'clean', bare: true } }));
      if (isTainted(entriesTaint(entries, 'any'))) this.launders = true;
      return { entries };
    }
    if (target.masked.size > 0) this.launders = true;
    return { entries: [{ kind: 'star', relations: [target.relation] }] };
  }

  // ---- FROM --------------------------------------------------------------------------------

  #from(items: readonly unknown[], scope: Scope, leading: readonly Relation[] = []): Level {
    const relations: Relation[] = [...leading];
    for (const item of items) relations.push(this.#fromItem(item, scope, relations));
    return levelOf(relations);
  }

  /** One FROM item; `siblings` are the items before it (visible to LATERAL and table functions). */
  #fromItem(node: unknown, scope: Scope, siblings: readonly Relation[]): Relation {
    if (!isAstObject(node)) return opaqueRelation(null, 'clean', null);
    const type = wrappedType(node);
    const body = type === undefined ? undefined : node[type];
    if (type === undefined || !isAstObject(body)) return opaqueRelation(null, 'unknown', null);
    const lateral = withLevel(scope, levelOf(siblings));
    switch (type) {
      case 'RangeVar': {
        const schema = stringField(body, 'schemaname') ?? null;
        const table = stringField(body, 'relname') ?? '';
        const alias = aliasOf(body);
        if (schema === null) {
          for (let b = scope.ctes; b !== undefined; b = b.parent) {
            if (b.name === table) return aliasRelation(b.relation, alias.name ?? table, alias.colnames);
          }
        }
        const base = baseRelation(schema, table, this.#masked.maskedColumns(schema, table), this.#masked.columnsOf?.(schema, table));
        return alias.name === null && alias.colnames.length === 0 ? base : aliasRelation(base, alias.name ?? table, alias.colnames);
      }
      case 'RangeSubselect': {
        const query = this.statement(body['subquery'], body['lateral'] === true ? lateral : scope) ?? { entries: [] };
        const alias = aliasOf(body);
        return aliasRelation(derivedRelation(alias.name, query.entries), alias.name, alias.colnames);
      }
      case 'RangeFunction': {
        // Table functions see the items before them (implicitly LATERAL); their columns carry their arguments' taint.
        let taint: Taint = 'clean';
        const names: string[] = [];
        let widthKnown = true;
        for (const f of listField(body, 'functions')) {
          const list = nodeOf(f, 'List');
          const [call, coldefs] = list === undefined ? [f, undefined] : listField(list, 'items');
          taint = maxTaint(taint, this.expr(call, lateral));
          const defs = nodeOf(coldefs, 'List');
          if (defs === undefined) widthKnown = false;
          else for (const d of listField(defs, 'items')) names.push(stringField(nodeOf(d, 'ColumnDef') ?? {}, 'colname') ?? '');
        }
        for (const d of listField(body, 'coldeflist')) names.push(stringField(nodeOf(d, 'ColumnDef') ?? {}, 'colname') ?? '');
        if (listField(body, 'coldeflist').length > 0) widthKnown = true;
        if (body['ordinality'] === true) names.push('ordinality');
        const alias = aliasOf(body);
        return aliasRelation(opaqueRelation(alias.name, taint, widthKnown ? names : null), alias.name, alias.colnames);
      }
      case 'RangeTableSample': {
        const relation = this.#fromItem(body['relation'], scope, siblings);
        this.#predicate(body['args'], lateral);
        this.#predicate(body['repeatable'], lateral);
        return relation;
      }
      case 'JoinExpr':
        return this.#join(body, scope, siblings);
      default: {
        // XMLTABLE, JSON_TABLE and anything newer: every column carries the taint of everything in it.
        const taint = this.#generic(body, lateral);
        const alias = aliasOf(body);
        return aliasRelation(opaqueRelation(alias.name, taint, null), alias.name, alias.colnames);
      }
    }
  }

  #join(body: AstObject, scope: Scope, siblings: readonly Relation[]): Relation {
    const left = this.#fromItem(body['larg'], scope, siblings);
    const right = this.#fromItem(body['rarg'], scope, [...siblings, left]);
    const using = stringList(listField(body, 'usingClause'));
    const alias = aliasOf(body);
    const shape = { kind: stringField(body, 'jointype') ?? 'JOIN_INNER', natural: body['isNatural'] === true, using, refname: alias.name };
    const joined = joinRelation(left, right, shape);
    const inner = withLevel(scope, levelOf([left, right]));
    this.#predicate(body['quals'], inner);
    for (const name of using) {
      const f = combineFound(left.find(name), right.find(name));
      if (f !== undefined && isTainted(f.taint)) this.predicateUse = true;
    }
    if (body['isNatural'] === true) {
      // NATURAL joins on every common name: without both column lists, any of them.
      const common = joined.columns === null ? null : (left.columns ?? []).filter((c) => right.columns?.some((r) => r.name === c.name));
      const taint = common === null ? maxTaint(left.anyTaint, right.anyTaint) : common.reduce<Taint>((t, c) => maxTaint(t, maxTaint(c.taint, right.find(c.name ?? '')?.taint ?? 'clean')), 'clean');
      if (isTainted(taint)) this.predicateUse = true;
    }
    const usingAlias = body['join_using_alias'];
    const usingName = isAstObject(usingAlias) ? stringField(usingAlias, 'aliasname') : undefined;
    const result = alias.colnames.length > 0 ? aliasRelation(joined, alias.name, alias.colnames) : joined;
    if (usingName === undefined) return result;
    // `JOIN … USING (id) AS u`: `u.id` names the merged columns.
    const merged = usingAliasRelation(usingName, left, right, shape);
    return { ...result, parts: [...result.parts, merged], find: (name) => result.find(name) };
  }

  // ---- select lists ------------------------------------------------------------------------

  #targets(list: readonly unknown[], scope: Scope): Entry[] {
    const entries: Entry[] = [];
    for (const item of list) {
      const target = nodeOf(item, 'ResTarget');
      if (target === undefined) continue;
      const value = target['val'];
      const star = this.#starTarget(value, scope);
      if (star !== undefined) {
        entries.push(star);
        continue;
      }
      const ref = nodeOf(value, 'ColumnRef');
      const found = ref === undefined ? { taint: this.expr(value, scope), bare: false } : this.#columnRef(listField(ref, 'fields'), scope);
      const name = stringField(target, 'name') ?? figureColname(value, (sub) => this.#firstName(sub));
      entries.push({ kind: 'column', column: { name, taint: found.taint, bare: found.bare } });
    }
    return entries;
  }

  /** `*`, `t.*`, `(t).*` in a select list: columns with their own provenance. */
  #starTarget(value: unknown, scope: Scope): Entry | undefined {
    const ref = nodeOf(value, 'ColumnRef');
    if (ref !== undefined) {
      const fields = listField(ref, 'fields');
      if (nodeOf(fields.at(-1), 'A_Star') === undefined) return undefined;
      if (fields.length === 1) return { kind: 'star', relations: scope.levels.at(-1)?.items ?? [] };
      const relations = this.#qualifier(stringList(fields.slice(0, -1)), scope);
      if (relations.length > 0) return { kind: 'star', relations };
      return { kind: 'star', relations: [opaqueRelation(null, this.expr(value, scope), null)] };
    }
    const ind = nodeOf(value, 'A_Indirection');
    if (ind === undefined || nodeOf(listField(ind, 'indirection').at(-1), 'A_Star') === undefined) return undefined;
    const argRef = nodeOf(ind['arg'], 'ColumnRef');
    const argNames = argRef === undefined ? [] : listField(argRef, 'fields');
    if (listField(ind, 'indirection').length === 1 && argNames.length === 1) {
      const relations = this.#qualifier(stringList(argNames), scope);
      if (relations.length > 0) return { kind: 'star', relations };
    }
    // `(composite expression).*`: width unknown, no provenance.
    return { kind: 'star', relations: [opaqueRelation(null, this.expr(value, scope), null)] };
  }

  /** The first output name of a sub-select already analysed in this select list. */
  #firstName(subselect: unknown): string | null {
    return isAstObject(subselect) ? (this.#firstNames.get(subselect) ?? null) : null;
  }

  /** GROUP BY item: input columns first, then output names or positions (both, conservatively). */
  #groupItem(item: unknown, scope: Scope, outputs: readonly Entry[]): void {
    const set = nodeOf(item, 'GroupingSet');
    if (set !== undefined) {
      for (const inner of listField(set, 'content')) this.#groupItem(inner, scope, outputs);
      return;
    }
    const row = nodeOf(item, 'RowExpr');
    if (row !== undefined) {
      for (const inner of listField(row, 'args')) this.#groupItem(inner, scope, outputs);
      return;
    }
    this.#sortItem(item, scope, outputs, false);
  }

  /** ORDER BY / DISTINCT ON / GROUP BY item: an output position, an output name, or an expression. */
  #sortItem(item: unknown, scope: Scope, outputs: readonly Entry[], outputNamesFirst: boolean): void {
    const constant = nodeOf(item, 'A_Const');
    if (constant !== undefined) {
      const position = constantValue(constant);
      if (typeof position === 'number') {
        const columns = flatten(outputs);
        const taint = columns === null ? entriesTaint(outputs, 'any') : (columns[position - 1]?.taint ?? 'clean');
        if (isTainted(taint)) this.predicateUse = true;
        return;
      }
    }
    const ref = nodeOf(item, 'ColumnRef');
    const fields = ref === undefined ? [] : listField(ref, 'fields');
    const name = fields.length === 1 ? stringList(fields)[0] : undefined;
    if (name !== undefined) {
      let byOutput: Found | undefined;
      for (const entry of outputs) {
        if (entry.kind === 'column' && (entry.column.name === name || entry.column.name === null)) byOutput = combineFound(byOutput, { taint: entry.column.taint, bare: false, certain: entry.column.name === name });
      }
      if (byOutput !== undefined && isTainted(byOutput.taint)) this.predicateUse = true;
      if (outputNamesFirst && byOutput?.certain === true) return;
    }
    this.#predicate(item, scope);
  }

  // ---- expressions -------------------------------------------------------------------------

  #predicate(node: unknown, scope: Scope): void {
    if (node === undefined) return;
    if (isTainted(this.expr(node, scope))) this.predicateUse = true;
  }

  /** The taint of an expression's value; records predicates, laundering and whole-row uses inside it. */
  expr(node: unknown, scope: Scope): Taint {
    if (Array.isArray(node)) {
      let taint: Taint = 'clean';
      for (const item of node) taint = maxTaint(taint, this.expr(item, scope));
      return taint;
    }
    if (!isAstObject(node)) return 'clean';
    const type = wrappedType(node);
    const body = type === undefined ? undefined : node[type];
    if (type === undefined || !isAstObject(body)) return this.#generic(node, scope);
    switch (type) {
      case 'A_Const':
      case 'ParamRef':
      case 'SQLValueFunction':
      case 'TypeName':
      case 'SetToDefault':
      case 'String':
      case 'Integer':
      case 'Float':
      case 'Boolean':
      case 'BitString':
      case 'A_Star':
        return 'clean';
      case 'ColumnRef':
        return this.#columnRef(listField(body, 'fields'), scope).taint;
      case 'FuncCall':
        return this.#funcCall(body, scope);
      case 'CaseExpr': {
        // Conditions are predicates; the value is one of the results.
        this.#predicate(body['arg'], scope);
        let taint = this.expr(body['defresult'], scope);
        for (const w of listField(body, 'args')) {
          const when = nodeOf(w, 'CaseWhen');
          if (when === undefined) continue;
          this.#predicate(when['expr'], scope);
          taint = maxTaint(taint, this.expr(when['result'], scope));
        }
        return taint;
      }
      case 'SubLink':
        return this.#subLink(body, scope);
      case 'A_Expr': {
        // A comparison of a masked value, wherever it stands (even in the select list, where its
        // result or the error it raises answers the question), is an inference channel.
        const taint = this.#generic(node, scope);
        if (isTainted(taint) && isComparison(body)) this.predicateUse = true;
        return taint;
      }
      case 'A_Indirection':
        return this.#indirection(body, scope);
      case 'WindowDef':
        this.#window(body, scope);
        return 'clean';
      case 'SortBy':
        return this.expr(body['node'], scope);
      case 'SelectStmt':
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt': {
        const query = this.statement(node, scope);
        return query === null ? 'unknown' : entriesTaint(query.entries, 'any');
      }
      default:
        return this.#generic(body, scope);
    }
  }

  /** Any other node: the taint of everything in it; condition-like fields are predicates. */
  #generic(body: AstObject, scope: Scope): Taint {
    let taint: Taint = 'clean';
    for (const key in body) {
      const value = body[key];
      if (PREDICATE_FIELDS.has(key)) {
        if (key === 'over' && isAstObject(value)) this.#window(structOf(value, 'WindowDef') ?? value, scope);
        else this.#predicate(value, scope);
        continue;
      }
      if (key === 'query' || key === 'subselect') {
        const query = this.statement(value, scope);
        taint = maxTaint(taint, query === null ? this.expr(value, scope) : entriesTaint(query.entries, 'any'));
        continue;
      }
      taint = maxTaint(taint, this.expr(value, scope));
    }
    return taint;
  }

  #window(def: AstObject, scope: Scope): void {
    this.#predicate(def['partitionClause'], scope);
    this.#predicate(def['orderClause'], scope);
    this.#predicate(def['startOffset'], scope);
    this.#predicate(def['endOffset'], scope);
  }

  #funcCall(body: AstObject, scope: Scope): Taint {
    const name = stringList(listField(body, 'funcname')).at(-1) ?? '';
    this.#predicate(body['agg_filter'], scope);
    this.#predicate(body['agg_order'], scope);
    const over = body['over'];
    if (isAstObject(over)) this.#window(structOf(over, 'WindowDef') ?? over, scope);
    // count(*) reads no column.
    let taint = this.expr(body['args'], scope);
    if (isTainted(taint) && LAUNDERING_FUNCTIONS.has(name)) this.launders = true;
    if (RELATION_READING_FUNCTIONS.has(name)) taint = maxTaint(taint, 'unknown');
    return taint;
  }

  #subLink(body: AstObject, scope: Scope): Taint {
    const kind = stringField(body, 'subLinkType');
    const subselect = body['subselect'];
    const query = this.statement(subselect, scope);
    const inner = query === null ? 'unknown' : entriesTaint(query.entries, 'any');
    const first = query?.entries[0];
    if (isAstObject(subselect)) this.#firstNames.set(subselect, first?.kind === 'column' ? first.column.name : null);
    // EXISTS returns whether rows matched: its inner predicates are already recorded.
    if (kind === 'EXISTS_SUBLINK') return 'clean';
    return maxTaint(inner, this.expr(body['testexpr'], scope));
  }

  #indirection(body: AstObject, scope: Scope): Taint {
    const indirection = listField(body, 'indirection');
    let taint: Taint;
    // `(t).column`: a column of relation t, not its whole row.
    const ref = nodeOf(body['arg'], 'ColumnRef');
    const refNames = ref === undefined ? [] : listField(ref, 'fields');
    const field = stringList(indirection.slice(0, 1))[0];
    if (refNames.length === 1 && field !== undefined && nodeOf(indirection[0], 'String') !== undefined) {
      taint = this.#columnRef([...refNames, indirection[0]], scope).taint;
    } else {
      taint = this.expr(body['arg'], scope);
    }
    for (const ind of indirection) {
      const indices = nodeOf(ind, 'A_Indices');
      if (indices !== undefined) taint = maxTaint(taint, maxTaint(this.expr(indices['lidx'], scope), this.expr(indices['uidx'], scope)));
    }
    return taint;
  }

  // ---- column references -------------------------------------------------------------------

  /** Relations a qualifier names (`t`, `schema.t`, `db.schema.t`), innermost scope level first. */
  #qualifier(names: readonly string[], scope: Scope): Relation[] {
    const table = names.at(-1);
    const schema = names.length >= 2 ? names.at(-2) : undefined;
    if (table === undefined) return [];
    for (let i = scope.levels.length - 1; i >= 0; i--) {
      const level = scope.levels[i];
      if (level === undefined) continue;
      const hits = level.named.filter((r) =>
        schema === undefined ? r.refname === table : r.table === table && r.refname === table && (r.schema === null || r.schema === schema),
      );
      if (hits.length > 0) return hits;
    }
    return [];
  }

  #columnRef(fields: readonly unknown[], scope: Scope): { taint: Taint; bare: boolean } {
    const star = nodeOf(fields.at(-1), 'A_Star') !== undefined;
    const names = stringList(fields);
    if (star) {
      // `*` or `t.*` inside an expression: the whole row.
      const relations = names.length === 0 ? (scope.levels.at(-1)?.items ?? []) : this.#qualifier(names, scope);
      return this.#wholeRows(relations);
    }
    const first = names[0];
    if (first === undefined) return { taint: 'clean', bare: false };
    if (names.length === 1) return this.#unqualified(first, scope);
    // t.col[.field…], schema.t.col[.field…], db.schema.t.col: every reading PostgreSQL may choose.
    let found: Found | undefined;
    for (let split = 1; split <= Math.min(3, names.length - 1); split++) {
      const column = names[split];
      if (column === undefined) continue;
      for (const r of this.#qualifier(names.slice(0, split), scope)) found = combineFound(found, r.find(column) ?? { taint: 'clean', bare: true, certain: true });
      if (found !== undefined) break;
    }
    if (found === undefined) {
      // No relation of that name: `col.field`, a field of a composite column.
      const column = this.#unqualified(first, scope);
      return { taint: column.taint, bare: false };
    }
    return { taint: found.taint, bare: found.bare && names.length <= 3 };
  }

  #wholeRows(relations: readonly Relation[]): { taint: Taint; bare: boolean } {
    let taint: Taint = 'clean';
    for (const r of relations) taint = maxTaint(taint, r.anyTaint);
    if (isTainted(taint)) this.wholeRow = true;
    return { taint, bare: false };
  }

  /**
   * An unqualified name: a column of the innermost level that surely has it (candidates from every
   * level on the way); PostgreSQL prefers a column at any level to a whole row, so a relation of
   * that name counts only when no level surely has the column.
   */
  #unqualified(name: string, scope: Scope): { taint: Taint; bare: boolean } {
    let found: Found | undefined;
    const rows: Relation[] = [];
    for (let i = scope.levels.length - 1; i >= 0; i--) {
      const level = scope.levels[i];
      if (level === undefined) continue;
      let here: Found | undefined;
      for (const r of leaves(level)) here = combineFound(here, r.find(name));
      // A FULL JOIN's merged USING column has no provenance: its join says so.
      for (const r of level.named) {
        const f = r.parts.length > 0 ? r.find(name) : undefined;
        if (f !== undefined && !f.bare) here = combineFound(here, f);
      }
      found = combineFound(found, here);
      if (found?.certain === true) break;
      rows.push(...level.named.filter((r) => r.refname === name));
    }
    if (found?.certain !== true && rows.length > 0) {
      const whole = this.#wholeRows(rows);
      return { taint: maxTaint(whole.taint, found?.taint ?? 'clean'), bare: false };
    }
    return found === undefined ? { taint: 'clean', bare: false } : { taint: found.taint, bare: found.bare };
  }
}

function signature(relations: readonly Relation[]): string {
  return JSON.stringify(relations.map((r) => [r.anyTaint, r.exprTaint, r.columns?.map((c) => [c.name, c.taint, c.bare]) ?? null]));
}

function toAnalysis(analyser: Analyser, query: Query | null): MaskingAnalysis {
  const columns = query === null ? null : flatten(query.entries);
  return {
    outputs: query === null ? null : columns === null ? null : columns.map((c) => c.taint),
    derivesMasked: query !== null && isTainted(entriesTaint(query.entries, 'expr')),
    predicateUse: analyser.predicateUse,
    launders: analyser.launders,
    wholeRow: analyser.wholeRow,
  };
}

interface RawStatement {
  readonly stmt?: unknown;
}

function parse(sql: string): readonly RawStatement[] {
  // The parser reads a C string: it would stop at a NUL the caller's text still holds.
  if (sql.includes('\u0000')) throw new CustosError('ERR_SQL_PARSE', 'the statement contains a NUL character');
  try {
    return (parseSync(sql) as { stmts?: readonly RawStatement[] }).stmts ?? [];
  } catch (e: unknown) {
    throw new CustosError('ERR_SQL_PARSE', `cannot parse the statement: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** Analyses one parsed statement (the `stmt` of a libpg-query `stmts` entry). */
export function analyseMaskingStatement(stmt: unknown, masked: MaskedColumnSet): MaskingAnalysis {
  const analyser = new Analyser(masked);
  return toAnalysis(analyser, analyser.statement(stmt, EMPTY_SCOPE));
}

/** One analysis per statement of a message (simple query protocol). Throws CustosError ERR_SQL_PARSE when it does not parse. */
export function analyseMaskingAll(sql: string, masked: MaskedColumnSet): MaskingAnalysis[] {
  return parse(sql).map((raw) => analyseMaskingStatement(raw.stmt, masked));
}

/**
 * Analyses a statement (`loadSqlParser()` must have run). Several statements: flags combined,
 * outputs only when exactly one statement; use `analyseMaskingAll` for one result per statement.
 * Throws CustosError ERR_SQL_PARSE when it does not parse: the caller denies.
 */
export function analyseMasking(sql: string, masked: MaskedColumnSet): MaskingAnalysis {
  const all = analyseMaskingAll(sql, masked);
  if (all.length === 1 && all[0] !== undefined) return all[0];
  return {
    outputs: all.length === 0 ? [] : null,
    derivesMasked: all.some((a) => a.derivesMasked),
    predicateUse: all.some((a) => a.predicateUse),
    launders: all.some((a) => a.launders),
    wholeRow: all.some((a) => a.wholeRow),
  };
}

/**
 * For `pg_get_viewdef()` text: which view output columns derive from masked columns (bare
 * references count, since the wire reports the view's OID for them). Views used by the view must
 * already be in `masked` (derive them in dependency order). Throws when the definition is not one
 * query or its width cannot be determined (the caller masks every column of the view).
 */
export function viewColumnDerivations(viewDefinitionSql: string, masked: MaskedColumnSet): OutputDerivation[] {
  const statements = parse(viewDefinitionSql);
  const stmt = statements[0]?.stmt;
  if (statements.length !== 1 || nodeOf(stmt, 'SelectStmt') === undefined) throw new CustosError('ERR_MASKING_VIEW', 'the view definition is not a single query');
  const outputs = analyseMaskingStatement(stmt, masked).outputs;
  if (outputs === null) throw new CustosError('ERR_MASKING_VIEW', 'the view definition has a column list of unknown width');
  return [...outputs];
}

/** A MaskedColumnSet over rules `{schema, table, column}`; an unqualified name matches the table in any schema. */
export function maskedColumnSet(
  rules: readonly { readonly schema: string; readonly table: string; readonly column: string }[],
  columnsOf?: (schema: string | null, table: string) => readonly string[] | undefined,
): MaskedColumnSet {
  const bySchema = new Map<string, Set<string>>();
  const byTable = new Map<string, Set<string>>();
  for (const r of rules) {
    const key = `${r.schema}\u0000${r.table}`;
    let s = bySchema.get(key);
    if (s === undefined) bySchema.set(key, (s = new Set()));
    s.add(r.column);
    let t = byTable.get(r.table);
    if (t === undefined) byTable.set(r.table, (t = new Set()));
    t.add(r.column);
  }
  const none: ReadonlySet<string> = new Set();
  return {
    maskedColumns: (schema, table) => (schema === null ? byTable.get(table) : bySchema.get(`${schema}\u0000${table}`)) ?? none,
    ...(columnsOf === undefined ? {} : { columnsOf }),
  };
}
