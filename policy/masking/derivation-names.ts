// The name PostgreSQL gives an unaliased output column (FigureColnameInternal in
// src/backend/parser/parse_target.c), so that `SELECT upper FROM (SELECT upper(email) FROM t) s`
// resolves `upper` to the tainted column. Where this module is not sure, it answers null, and a
// null-named column matches every name (conservative).
import { isAstObject, listField, stringField, stringList, wrappedType } from '../sql/ast.ts';

const XML_NAMES: Readonly<Record<string, string>> = {
  IS_XMLCONCAT: 'xmlconcat',
  IS_XMLELEMENT: 'xmlelement',
  IS_XMLFOREST: 'xmlforest',
  IS_XMLPARSE: 'xmlparse',
  IS_XMLPI: 'xmlpi',
  IS_XMLROOT: 'xmlroot',
  IS_XMLSERIALIZE: 'xmlserialize',
};

const FIXED_NAMES: Readonly<Record<string, string>> = {
  GroupingFunc: 'grouping',
  MergeSupportFunc: 'merge_action',
  CoalesceExpr: 'coalesce',
  XmlSerialize: 'xmlserialize',
  JsonParseExpr: 'json',
  JsonScalarExpr: 'json_scalar',
  JsonSerializeExpr: 'json_serialize',
  JsonObjectConstructor: 'json_object',
  JsonArrayConstructor: 'json_array',
  JsonArrayQueryConstructor: 'json_array',
  JsonObjectAgg: 'json_objectagg',
  JsonArrayAgg: 'json_arrayagg',
};

const JSON_FUNC_NAMES: Readonly<Record<string, string>> = {
  JSON_EXISTS_OP: 'json_exists',
  JSON_QUERY_OP: 'json_query',
  JSON_VALUE_OP: 'json_value',
};

/** Constructs PostgreSQL names `?column?`: their name is known (and a weak one). */
const ANONYMOUS = new Set(['A_Const', 'A_Expr', 'BoolExpr', 'NullTest', 'BooleanTest', 'ParamRef', 'A_ArrayExpr', 'RowExpr', 'CaseExpr']);

interface Figured {
  /** null: not sure. */
  readonly name: string | null;
  /** 2: a real name; 1: a fallback (type name, `case`, `array`, `row`); 0: `?column?`. */
  readonly strength: 0 | 1 | 2;
}

const ANON: Figured = { name: '?column?', strength: 0 };

/**
 * The output name of an unaliased select-list expression. `sublinkName` gives the first output
 * name of an expression sub-select (`(SELECT x ...)` is named `x`).
 */
export function figureColname(node: unknown, sublinkName: (subselect: unknown) => string | null): string | null {
  return figure(node, sublinkName).name;
}

function figure(node: unknown, sublinkName: (subselect: unknown) => string | null): Figured {
  if (!isAstObject(node)) return { name: null, strength: 0 };
  const type = wrappedType(node);
  const body = type === undefined ? undefined : node[type];
  if (type === undefined || !isAstObject(body)) return { name: null, strength: 0 };
  const fixed = FIXED_NAMES[type];
  if (fixed !== undefined) return { name: fixed, strength: 2 };
  switch (type) {
    case 'ColumnRef': {
      const last = listField(body, 'fields').at(-1);
      const names = stringList(last === undefined ? [] : [last]);
      return names.length === 1 ? { name: names[0] ?? null, strength: 2 } : { name: null, strength: 0 };
    }
    case 'A_Indirection': {
      const last = listField(body, 'indirection').at(-1);
      const names = stringList(last === undefined ? [] : [last]);
      if (names.length === 1) return { name: names[0] ?? null, strength: 2 };
      return figure(body['arg'], sublinkName);
    }
    case 'FuncCall': {
      const name = stringList(listField(body, 'funcname')).at(-1);
      return name === undefined ? { name: null, strength: 0 } : { name, strength: 2 };
    }
    case 'A_Expr':
      return stringField(body, 'kind') === 'AEXPR_NULLIF' ? { name: 'nullif', strength: 2 } : ANON;
    case 'TypeCast': {
      const inner = figure(body['arg'], sublinkName);
      if (inner.strength === 2) return inner;
      const typeName = body['typeName'];
      const name = isAstObject(typeName) ? stringList(listField(typeName, 'names')).at(-1) : undefined;
      // The names of built-in types as written (`int`, `varchar`) differ from the catalog's; unsure.
      return { name: null, strength: name === undefined ? 0 : 1 };
    }
    case 'CollateClause':
      return figure(body['arg'], sublinkName);
    case 'SubLink': {
      const kind = stringField(body, 'subLinkType');
      if (kind === 'EXISTS_SUBLINK') return { name: 'exists', strength: 2 };
      if (kind === 'ARRAY_SUBLINK') return { name: 'array', strength: 2 };
      if (kind === 'EXPR_SUBLINK' || kind === 'MULTIEXPR_SUBLINK') {
        const name = sublinkName(body['subselect']);
        return name === null ? { name: null, strength: 0 } : { name, strength: 2 };
      }
      return ANON;
    }
    case 'CaseExpr': {
      const inner = figure(body['defresult'], sublinkName);
      return inner.strength === 2 ? inner : { name: 'case', strength: 1 };
    }
    case 'A_ArrayExpr':
      return { name: 'array', strength: 1 };
    case 'RowExpr':
      return { name: 'row', strength: 1 };
    case 'MinMaxExpr':
      return { name: stringField(body, 'op') === 'IS_LEAST' ? 'least' : 'greatest', strength: 2 };
    case 'SQLValueFunction':
      // Clean by construction: the exact name does not matter to the analysis.
      return { name: null, strength: 2 };
    case 'XmlExpr': {
      const name = XML_NAMES[stringField(body, 'op') ?? ''];
      return name === undefined ? ANON : { name, strength: 2 };
    }
    case 'JsonFuncExpr': {
      const name = JSON_FUNC_NAMES[stringField(body, 'op') ?? ''];
      return name === undefined ? { name: null, strength: 0 } : { name, strength: 2 };
    }
    default:
      return ANONYMOUS.has(type) ? ANON : { name: null, strength: 0 };
  }
}

