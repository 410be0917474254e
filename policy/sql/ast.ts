// Reading libpg-query's JSON AST without trusting its shape. A node in a `Node *` field is wrapped
// as `{"TypeName": {...fields}}`; a field typed as a specific struct (e.g. `RangeVar *relation`)
// holds the bare fields. Defaults are omitted (false, 0, empty lists), so absence means "default".

export type AstObject = Readonly<Record<string, unknown>>;

export function isAstObject(value: unknown): value is AstObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The node type of a wrapped node (`{"SelectStmt": {...}}`), or undefined for a bare struct. */
export function wrappedType(value: AstObject): string | undefined {
  let only: string | undefined;
  for (const key in value) {
    if (only !== undefined) return undefined;
    only = key;
  }
  if (only === undefined) return undefined;
  const c = only.charCodeAt(0);
  return c >= 65 && c <= 90 ? only : undefined;
}

/** The fields of a node whether it is wrapped as `type` or bare; undefined when it is another type. */
export function nodeOf(value: unknown, type: string): AstObject | undefined {
  if (!isAstObject(value)) return undefined;
  const inner = value[type];
  if (isAstObject(inner) && wrappedType(value) === type) return inner;
  return undefined;
}

export function stringField(node: AstObject, key: string): string | undefined {
  const v = node[key];
  return typeof v === 'string' ? v : undefined;
}

export function listField(node: AstObject, key: string): readonly unknown[] {
  const v = node[key];
  return Array.isArray(v) ? v : [];
}

/** `[{"String": {"sval": "a"}}, ...]` → ['a', ...]; non-String items (e.g. `*`) are skipped. */
export function stringList(items: readonly unknown[]): string[] {
  const out: string[] = [];
  for (const item of items) {
    const s = nodeOf(item, 'String');
    if (s !== undefined) out.push(stringField(s, 'sval') ?? '');
  }
  return out;
}

/** A constant's value: string, number, boolean, or null for SQL NULL; undefined when not an A_Const. */
export function constantValue(node: AstObject): string | number | boolean | null | undefined {
  if (node['isnull'] === true) return null;
  const sval = node['sval'];
  if (isAstObject(sval)) return stringField(sval, 'sval') ?? '';
  const ival = node['ival'];
  if (isAstObject(ival)) return typeof ival['ival'] === 'number' ? ival['ival'] : 0;
  const fval = node['fval'];
  if (isAstObject(fval)) return Number(stringField(fval, 'fval') ?? '0');
  const boolval = node['boolval'];
  if (isAstObject(boolval)) return boolval['boolval'] === true;
  const bsval = node['bsval'];
  if (isAstObject(bsval)) return stringField(bsval, 'bsval') ?? '';
  return undefined;
}
