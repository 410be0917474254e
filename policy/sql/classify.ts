// What one statement does, from a walk over every node of its libpg-query AST (DESIGN §3 "SQL
// analysis", reference §14). Decisions are made on node types and fields, never on spelling, and
// nothing is skipped: a DML statement in a CTE, an EXPLAIN ANALYZE, a MERGE action, a function in a
// column DEFAULT all count.
//
// Choices, documented for policy authors (docs/policy.md):
// - Plain EXPLAIN (without ANALYZE, or ANALYZE false/off/0) does not run its statement: it adds only
//   `explain`; the inner statement's relations and functions are still reported (the planner reads
//   the catalog and may evaluate immutable functions), and its opaqueness carries over.
// - A SQL-level PREPARE carries its statement's kinds (its text is in this message), and is not
//   opaque; EXECUTE of a name is opaque (the text was sent earlier, or never).
// - DECLARE carries its query's kinds; CREATE VIEW / RULE / FUNCTION ... BEGIN ATOMIC carry the
//   kinds of the statements they store (conservative for deny rules).
// - `select` is any SELECT (or VALUES, TABLE) anywhere, sub-queries included, except the VALUES
//   list of an INSERT.
// - CTE names are not relations where the CTE is in scope (non-recursive WITH: later CTEs and the
//   main statement; RECURSIVE: all of it). A DML target is always a table, whatever the CTEs.
import type { CopyEndpoint, QualifiedName, SettingChange, StatementKind } from '../types.ts';
import { type AstObject, isAstObject, listField, nodeOf, stringField, stringList, wrappedType } from './ast.ts';
import { predicateTruth } from './constant-predicate.ts';
import { ANALYSIS_SETTINGS, settingOfVariableSet } from './settings.ts';

export interface ClassifiedStatement {
  readonly kinds: StatementKind[];
  readonly relations: QualifiedName[];
  readonly functions: QualifiedName[];
  readonly unfilteredWrite: boolean;
  readonly opaque: boolean;
  readonly copy: CopyEndpoint[];
  readonly settings: SettingChange[] | undefined;
}

/** Fields that hold a bare RangeVar (a struct pointer, not a wrapped Node): targets, not FROM items. */
const RANGE_VAR_FIELDS = new Set(['relation', 'rel', 'table', 'sequence', 'typevar', 'pktable', 'constrrel', 'view', 'identitySequence', 'name']);

/** Leaves and nodes that cannot contain a relation, a function call or a statement. */
const LEAVES = new Set(['String', 'Integer', 'Float', 'Boolean', 'BitString', 'A_Const', 'A_Star', 'ParamRef', 'ColumnRef', 'TypeName', 'RoleSpec', 'SQLValueFunction', 'SetToDefault', 'AccessPriv']);

const KIND_OF: Readonly<Record<string, StatementKind>> = {
  TruncateStmt: 'truncate',
  DoStmt: 'do',
  CallStmt: 'call',
  CreateFunctionStmt: 'create-function',
  PrepareStmt: 'prepare',
  ExecuteStmt: 'execute',
  DeallocateStmt: 'deallocate',
  DeclareCursorStmt: 'declare',
  FetchStmt: 'fetch',
  ClosePortalStmt: 'close',
  ListenStmt: 'listen',
  UnlistenStmt: 'listen',
  NotifyStmt: 'notify',
  LockStmt: 'lock',
  VacuumStmt: 'maintenance',
  ClusterStmt: 'maintenance',
  ReindexStmt: 'maintenance',
  CheckPointStmt: 'maintenance',
  RefreshMatViewStmt: 'maintenance',
  VariableShowStmt: 'show',
  TransactionStmt: 'transaction',
  ConstraintsSetStmt: 'set',
  CreateTableAsStmt: 'create',
  ViewStmt: 'create',
  IndexStmt: 'create',
  RuleStmt: 'create',
  CreateTrigStmt: 'create',
  DefineStmt: 'create',
  CompositeTypeStmt: 'create',
  ImportForeignSchemaStmt: 'create',
  RenameStmt: 'alter',
  CommentStmt: 'alter',
  SecLabelStmt: 'alter',
  ReassignOwnedStmt: 'alter',
  AlterDefaultPrivilegesStmt: 'alter',
  LoadStmt: 'other',
};

/** Code whose effect the text does not show. */
const OPAQUE_NODES = new Set(['DoStmt', 'CallStmt', 'CreateFunctionStmt', 'ExecuteStmt', 'LoadStmt']);

/** Statement nodes that only appear inside other statements and have no kind of their own. */
const INNER_STATEMENTS = new Set(['ReturnStmt', 'PLAssignStmt', 'RawStmt']);

/** Built-ins that run SQL passed to them as a string: the statement they run is not in the text. */
const SQL_EXECUTING_FUNCTIONS = new Set(['query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'dblink', 'dblink_exec', 'dblink_open', 'dblink_send_query']);

/** Object types whose DROP / COMMENT names are relations (given as name lists, not RangeVars). */
const RELATION_OBJECT_TYPES = new Set(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_INDEX', 'OBJECT_SEQUENCE', 'OBJECT_FOREIGN_TABLE']);

const FALSE_OPTION_WORDS = new Set(['false', 'off', 'no', 'f', 'n', '0']);

class StatementWalker {
  readonly kinds = new Set<StatementKind>();
  readonly relations = new Map<string, QualifiedName>();
  readonly functions = new Map<string, QualifiedName>();
  readonly copy = new Set<CopyEndpoint>();
  settings: SettingChange[] | undefined;
  opaque = false;
  unfilteredWrite = false;
  /** > 0 inside a statement that is planned but not run (plain EXPLAIN). */
  #planOnly = 0;
  /** CTE names visible at this point, innermost scope last. */
  readonly #cteScopes: (readonly string[])[] = [];

  value(v: unknown, key: string): void {
    if (Array.isArray(v)) {
      for (const item of v) this.value(item, key);
      return;
    }
    if (!isAstObject(v)) return;
    const type = wrappedType(v);
    if (type !== undefined) {
      const body = v[type];
      if (isAstObject(body)) this.node(type, body);
      return;
    }
    if (RANGE_VAR_FIELDS.has(key) && typeof v['relname'] === 'string') {
      this.#relation(v, false);
    } else if (key === 'funccall') {
      this.node('FuncCall', v);
    } else if (key === 'larg' || key === 'rarg') {
      this.node('SelectStmt', v); // set-operation branches are bare SelectStmt structs
    } else {
      this.#fields(v, undefined);
    }
  }

  node(type: string, body: AstObject): void {
    if (LEAVES.has(type)) return;
    switch (type) {
      case 'RangeVar':
        this.#relation(body, true);
        return;
      case 'FuncCall':
        this.#funcCall(body);
        break;
      case 'SelectStmt': {
        this.#kind('select');
        if (body['lockingClause'] !== undefined) this.#kind('lock');
        if (body['intoClause'] !== undefined) this.#kind('create');
        this.#withScope(body);
        return;
      }
      case 'InsertStmt': {
        this.#kind('insert');
        // INSERT ... VALUES reads nothing: its VALUES list is not a `select` (sub-queries in it are).
        const values = nodeOf(body['selectStmt'], 'SelectStmt');
        if (values !== undefined && isValuesList(values)) {
          this.#withScope({ ...body, selectStmt: undefined });
          this.#fields(values, undefined);
        } else {
          this.#withScope(body);
        }
        return;
      }
      case 'UpdateStmt':
      case 'DeleteStmt': {
        this.#kind(type === 'UpdateStmt' ? 'update' : 'delete');
        const where = body['whereClause'];
        if (where === undefined || predicateTruth(where, targetNames(body)) === 'always') this.#unfiltered();
        this.#withScope(body);
        return;
      }
      case 'MergeStmt':
        this.#merge(body);
        return;
      case 'ExplainStmt':
        this.#explain(body);
        return;
      case 'CopyStmt':
        this.#copyStmt(body);
        break;
      case 'VariableSetStmt': {
        this.#kind('set');
        const { change, opaque } = settingOfVariableSet(body);
        this.#setting(change);
        if (opaque) this.opaque = true;
        break;
      }
      case 'DiscardStmt':
        this.#kind('discard');
        if (body['target'] === 'DISCARD_ALL') this.#setting({ name: 'all', value: null, local: false });
        break;
      case 'GrantStmt':
      case 'GrantRoleStmt':
        this.#kind(body['is_grant'] === true ? 'grant' : 'revoke');
        break;
      case 'AlterDefaultPrivilegesStmt': {
        this.#kind('alter');
        const action = body['action'];
        if (isAstObject(action)) this.#kind(action['is_grant'] === true ? 'grant' : 'revoke');
        break;
      }
      case 'DropStmt':
        this.#kind('drop');
        if (RELATION_OBJECT_TYPES.has(stringField(body, 'removeType') ?? '')) {
          for (const object of listField(body, 'objects')) this.#namedRelation(object);
        }
        break;
      case 'CommentStmt':
      case 'SecLabelStmt':
        this.#kind('alter');
        if (RELATION_OBJECT_TYPES.has(stringField(body, 'objtype') ?? '')) this.#namedRelation(body['object']);
        break;
      case 'CreateTrigStmt': {
        this.#kind('create');
        this.#function(stringList(listField(body, 'funcname')));
        break;
      }
      default:
        this.#statementKind(type);
    }
    if (OPAQUE_NODES.has(type)) this.opaque = true;
    this.#fields(body, undefined);
  }

  #fields(body: AstObject, skip: string | undefined): void {
    for (const key in body) if (key !== skip) this.value(body[key], key);
  }

  #kind(kind: StatementKind): void {
    if (this.#planOnly === 0) this.kinds.add(kind);
  }

  #unfiltered(): void {
    if (this.#planOnly === 0) this.unfilteredWrite = true;
  }

  #setting(change: SettingChange): void {
    if (this.#planOnly !== 0) return;
    (this.settings ??= []).push(change);
  }

  #statementKind(type: string): void {
    const kind = KIND_OF[type];
    if (kind !== undefined) this.#kind(kind);
    else if (type.startsWith('Create')) this.#kind('create');
    else if (type.startsWith('Alter')) this.#kind('alter');
    else if (type.startsWith('Drop')) this.#kind('drop');
    else if (type.endsWith('Stmt') && !INNER_STATEMENTS.has(type)) this.#kind('other');
  }

  #relation(rangeVar: AstObject, fromItem: boolean): void {
    const name = stringField(rangeVar, 'relname');
    if (name === undefined) return;
    const schema = stringField(rangeVar, 'schemaname') ?? null;
    // Only a FROM item can name a CTE; a target (`relation`, `into`) is always a table.
    if (fromItem && schema === null && this.#isCte(name)) return;
    this.#addName(this.relations, schema, name);
  }

  /** DROP TABLE a.b / COMMENT ON TABLE t: the names come as a List of Strings. */
  #namedRelation(object: unknown): void {
    const list = nodeOf(object, 'List');
    const names = stringList(list === undefined ? [] : listField(list, 'items'));
    const name = names.at(-1);
    if (name === undefined) return;
    this.#addName(this.relations, names.length >= 2 ? (names.at(-2) ?? null) : null, name);
  }

  #funcCall(body: AstObject): void {
    const names = stringList(listField(body, 'funcname'));
    this.#function(names);
    const name = names.at(-1) ?? '';
    if (SQL_EXECUTING_FUNCTIONS.has(name)) this.opaque = true;
    const schema = names.length >= 2 ? names.at(-2) : undefined;
    if (name === 'set_config' && (schema === undefined || schema === 'pg_catalog')) {
      // set_config('search_path', ...) is SET by another name; a computed name could be anything.
      const first = nodeOf(listField(body, 'args')[0], 'A_Const');
      const sval = first === undefined ? undefined : first['sval'];
      const setting = isAstObject(sval) ? stringField(sval, 'sval') : undefined;
      if (setting === undefined || ANALYSIS_SETTINGS.has(setting.trim().toLowerCase())) this.opaque = true;
    }
  }

  #function(names: readonly string[]): void {
    const name = names.at(-1);
    if (name === undefined) return;
    this.#addName(this.functions, names.length >= 2 ? (names.at(-2) ?? null) : null, name);
  }

  #addName(into: Map<string, QualifiedName>, schema: string | null, name: string): void {
    const key = schema === null ? name : `${schema}\u0000${name}`;
    if (!into.has(key)) into.set(key, { schema, name });
  }

  #isCte(name: string): boolean {
    for (const scope of this.#cteScopes) if (scope.includes(name)) return true;
    return false;
  }

  /** Walks a statement that may carry a WITH clause, with its CTE names in scope where SQL puts them. */
  #withScope(body: AstObject): void {
    const withClause = body['withClause'];
    if (!isAstObject(withClause)) {
      this.#fields(body, undefined);
      return;
    }
    const ctes: AstObject[] = [];
    for (const item of listField(withClause, 'ctes')) {
      const cte = nodeOf(item, 'CommonTableExpr');
      if (cte !== undefined) ctes.push(cte);
    }
    const names = ctes.map((c) => stringField(c, 'ctename') ?? '');
    if (withClause['recursive'] === true) {
      this.#cteScopes.push(names);
      for (const cte of ctes) this.value(cte['ctequery'], 'ctequery');
    } else {
      for (const [i, cte] of ctes.entries()) {
        this.#cteScopes.push(names.slice(0, i));
        this.value(cte['ctequery'], 'ctequery');
        this.#cteScopes.pop();
      }
      this.#cteScopes.push(names);
    }
    this.#fields(body, 'withClause');
    this.#cteScopes.pop();
  }

  #merge(body: AstObject): void {
    this.#kind('merge');
    const targets = targetNames(body);
    const on = predicateTruth(body['joinCondition'], targets);
    for (const item of listField(body, 'mergeWhenClauses')) {
      const clause = nodeOf(item, 'MergeWhenClause');
      if (clause === undefined) continue;
      const command = stringField(clause, 'commandType');
      if (command === 'CMD_INSERT') this.#kind('insert');
      if (command !== 'CMD_UPDATE' && command !== 'CMD_DELETE') continue;
      this.#kind(command === 'CMD_UPDATE' ? 'update' : 'delete');
      const condition = clause['condition'];
      const unconditional = condition === undefined || predicateTruth(condition, targets) === 'always';
      const matchKind = stringField(clause, 'matchKind');
      // WHEN MATCHED acts on the rows the ON joins; WHEN NOT MATCHED BY SOURCE on every other target row.
      if (matchKind === 'MERGE_WHEN_MATCHED' ? on === 'always' && unconditional : unconditional) this.#unfiltered();
    }
    this.#withScope(body);
  }

  #explain(body: AstObject): void {
    this.#kind('explain');
    const analyze = listField(body, 'options').some((option) => {
      const def = nodeOf(option, 'DefElem');
      const name = def === undefined ? '' : (stringField(def, 'defname') ?? '').toLowerCase();
      return (name === 'analyze' || name === 'analyse') && def !== undefined && !isFalseOption(def['arg']);
    });
    if (!analyze) this.#planOnly++;
    this.value(body['query'], 'query');
    if (!analyze) this.#planOnly--;
  }

  #copyStmt(body: AstObject): void {
    this.#kind(body['is_from'] === true ? 'copy-from' : 'copy-to');
    const endpoint: CopyEndpoint = body['is_program'] === true ? 'program' : stringField(body, 'filename') !== undefined ? 'file' : body['is_from'] === true ? 'stdin' : 'stdout';
    if (this.#planOnly === 0) this.copy.add(endpoint);
  }
}

function isValuesList(select: AstObject): boolean {
  return select['valuesLists'] !== undefined && select['targetList'] === undefined && select['withClause'] === undefined;
}

/** The names a DML statement's own columns can be qualified with: its alias, else its table name. */
function targetNames(body: AstObject): string[] {
  const relation = body['relation'];
  if (!isAstObject(relation)) return [];
  const alias = relation['alias'];
  const aliasName = isAstObject(alias) ? stringField(alias, 'aliasname') : undefined;
  const name = aliasName ?? stringField(relation, 'relname');
  return name === undefined ? [] : [name];
}

/** An option argument that turns a boolean option off (absent means on). */
function isFalseOption(arg: unknown): boolean {
  if (arg === undefined) return false;
  const s = nodeOf(arg, 'String');
  if (s !== undefined) return FALSE_OPTION_WORDS.has((stringField(s, 'sval') ?? '').toLowerCase());
  const i = nodeOf(arg, 'Integer');
  if (i !== undefined) return (typeof i['ival'] === 'number' ? i['ival'] : 0) === 0;
  const b = nodeOf(arg, 'Boolean');
  if (b !== undefined) return b['boolval'] !== true;
  return false;
}

/** Classifies one parsed statement (the `stmt` of a libpg-query `stmts` entry). */
export function classifyStatement(stmt: unknown): ClassifiedStatement {
  const walker = new StatementWalker();
  walker.value(stmt, 'stmt');
  const kinds = [...walker.kinds];
  if (kinds.length === 0) kinds.push('other');
  return {
    kinds,
    relations: [...walker.relations.values()],
    functions: [...walker.functions.values()],
    unfilteredWrite: walker.unfilteredWrite,
    opaque: walker.opaque,
    copy: [...walker.copy],
    settings: walker.settings,
  };
}
