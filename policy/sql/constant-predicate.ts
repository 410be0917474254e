// Does a DELETE/UPDATE/MERGE filter really filter? A predicate "filters" only if whether it holds
// depends on the target's columns. `WHERE true`, `WHERE 1=1`, `WHERE $1`, `WHERE now() > '2000-01-01'`
// and `WHERE id = 1 OR true` all select every row (or let the client choose to): they do not.
// Column-free parts the client controls (parameters, function calls) count as possibly true. What
// needs the catalog or the planner (`WHERE id = id`, a view) is out of reach here (reference §14.1.4).
import { type AstObject, constantValue, isAstObject, listField, nodeOf, stringField, stringList, wrappedType } from './ast.ts';

/** `always`: holds for every row (or the client can make it); `never`: holds for no row; `depends`: on the row. */
export type PredicateTruth = 'always' | 'never' | 'depends';

/**
 * How a filter on the relation(s) named `targets` (name or alias) behaves. Column references count
 * when they are outside subqueries, or qualified with a target name inside one (correlation).
 */
export function predicateTruth(expr: unknown, targets: readonly string[]): PredicateTruth {
  if (!referencesColumn(expr, targets, 0)) {
    const value = foldConstant(expr);
    return value === false || value === null ? 'never' : 'always';
  }
  const bool = nodeOf(expr, 'BoolExpr');
  if (bool === undefined) return 'depends';
  const args = listField(bool, 'args').map((a) => predicateTruth(a, targets));
  switch (stringField(bool, 'boolop')) {
    case 'AND_EXPR':
      return args.includes('never') ? 'never' : args.includes('depends') ? 'depends' : 'always';
    case 'OR_EXPR':
      return args.includes('always') ? 'always' : args.includes('depends') ? 'depends' : 'never';
    case 'NOT_EXPR': {
      const inner = args[0];
      return inner === 'always' ? 'never' : inner === 'never' ? 'always' : 'depends';
    }
    default:
      return 'depends';
  }
}

function referencesColumn(value: unknown, targets: readonly string[], subqueryDepth: number): boolean {
  if (Array.isArray(value)) return value.some((v) => referencesColumn(v, targets, subqueryDepth));
  if (!isAstObject(value)) return false;
  const type = wrappedType(value);
  if (type === undefined) {
    for (const key in value) if (referencesColumn(value[key], targets, subqueryDepth)) return true;
    return false;
  }
  const node = value[type];
  if (!isAstObject(node)) return false;
  switch (type) {
    case 'ColumnRef': {
      if (subqueryDepth === 0) return true;
      const names = stringList(listField(node, 'fields'));
      // t.col or schema.t.col inside a subquery: a correlated reference to the target.
      return names.length >= 2 && targets.includes(names[names.length - 2] ?? '');
    }
    case 'CurrentOfExpr':
      return true;
    case 'SelectStmt':
      return referencesInSelect(node, targets, subqueryDepth + 1);
    default:
      for (const key in node) if (referencesColumn(node[key], targets, subqueryDepth)) return true;
      return false;
  }
}

function referencesInSelect(node: AstObject, targets: readonly string[], depth: number): boolean {
  for (const key in node) {
    const v = node[key];
    // Set-operation branches are bare SelectStmt structs.
    if ((key === 'larg' || key === 'rarg') && isAstObject(v) && wrappedType(v) === undefined) {
      if (referencesInSelect(v, targets, depth)) return true;
    } else if (referencesColumn(v, targets, depth)) {
      return true;
    }
  }
  return false;
}

type Folded = string | number | boolean | null | undefined;

const TRUE_WORDS = new Set(['t', 'tr', 'tru', 'true', 'y', 'ye', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['f', 'fa', 'fal', 'fals', 'false', 'n', 'no', 'of', 'off', '0']);

/** The value of a column-free expression when it is made of literals only; undefined when unknown. */
function foldConstant(expr: unknown): Folded {
  if (!isAstObject(expr)) return undefined;
  const type = wrappedType(expr);
  if (type === undefined) return undefined;
  const node = expr[type];
  if (!isAstObject(node)) return undefined;
  switch (type) {
    case 'A_Const':
      return constantValue(node);
    case 'TypeCast': {
      const value = foldConstant(node['arg']);
      const typeName = isAstObject(node['typeName']) ? stringList(listField(node['typeName'], 'names')).at(-1) : undefined;
      if (typeName === 'bool' && typeof value === 'string') {
        const word = value.trim().toLowerCase();
        return TRUE_WORDS.has(word) ? true : FALSE_WORDS.has(word) ? false : undefined;
      }
      return typeName === 'bool' && typeof value === 'number' ? value !== 0 : value;
    }
    case 'BoolExpr': {
      const args = listField(node, 'args').map(foldConstant);
      switch (stringField(node, 'boolop')) {
        case 'AND_EXPR':
          return args.includes(false) ? false : args.every((a) => a === true) ? true : args.includes(null) && args.every((a) => a === true || a === null) ? null : undefined;
        case 'OR_EXPR':
          return args.includes(true) ? true : args.every((a) => a === false) ? false : args.includes(null) && args.every((a) => a === false || a === null) ? null : undefined;
        case 'NOT_EXPR': {
          const a = args[0];
          return typeof a === 'boolean' ? !a : a === null ? null : undefined;
        }
        default:
          return undefined;
      }
    }
    case 'A_Expr': {
      if (stringField(node, 'kind') !== 'AEXPR_OP') return undefined;
      const op = stringList(listField(node, 'name')).at(-1);
      const l = foldConstant(node['lexpr']);
      const r = foldConstant(node['rexpr']);
      if (l === undefined || r === undefined) return undefined;
      if (l === null || r === null) return null;
      if (typeof l !== typeof r) return undefined;
      switch (op) {
        case '=': return l === r;
        case '<>': case '!=': return l !== r;
        case '<': return l < r;
        case '>': return l > r;
        case '<=': return l <= r;
        case '>=': return l >= r;
        default: return undefined;
      }
    }
    default:
      return undefined;
  }
}
