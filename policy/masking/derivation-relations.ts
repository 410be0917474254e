// The relations a statement's column references resolve against, for the masking derivation
// (derivation.ts): base tables and views (masked columns from the policy, column lists from the
// catalog when the caller has them), sub-selects, CTEs, joins, table functions. Each answers "which
// of my columns could `name` be, and does it derive from a masked column", conservatively: where a
// width or a name is not known, the answer covers every column it could be.

/** How an output relates to masked columns: `unknown` may be masked (treat it so). */
export type Taint = 'clean' | 'unknown' | 'masked';

export function maxTaint(a: Taint, b: Taint): Taint {
  if (a === 'masked' || b === 'masked') return 'masked';
  if (a === 'unknown' || b === 'unknown') return 'unknown';
  return 'clean';
}

/** One column of a relation or of a query's result. */
export interface Column {
  /** The output name PostgreSQL gives it; null when this analysis cannot tell (matches any name). */
  readonly name: string | null;
  readonly taint: Taint;
  /** PostgreSQL reports a table OID and attnum for it (a bare column, passed through). */
  readonly bare: boolean;
}

/** What a column name resolves to in one relation. */
export interface Found {
  readonly taint: Taint;
  readonly bare: boolean;
  /** The relation surely has a column of that name (resolution stops at this scope level). */
  readonly certain: boolean;
}

export interface Relation {
  /** The name it is qualified with (alias, else table or CTE name); null for an unaliased join or sub-select. */
  readonly refname: string | null;
  /** Base table or view: its schema as written (null = unqualified) and name, for `schema.table.column`. */
  readonly schema: string | null;
  readonly table: string | null;
  /** Columns in order when the width is known (for `*` expansion); null otherwise. */
  readonly columns: readonly Column[] | null;
  find(name: string): Found | undefined;
  /** Taint of the whole row (whole-row references, `t.*` inside expressions). */
  readonly anyTaint: Taint;
  /** Taint of the columns PostgreSQL reports as 0/0 (not bare). */
  readonly exprTaint: Taint;
  /** Joins: the joined relations (still visible by their own names). */
  readonly parts: readonly Relation[];
}

export function combineFound(a: Found | undefined, b: Found | undefined): Found | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return { taint: maxTaint(a.taint, b.taint), bare: a.bare && b.bare, certain: a.certain || b.certain };
}

/** A base table or view named in the statement. */
export function baseRelation(schema: string | null, table: string, masked: ReadonlySet<string>, all: readonly string[] | undefined): Relation {
  const anyTaint: Taint = masked.size > 0 ? 'masked' : 'clean';
  const columns = all === undefined ? null : all.map((name): Column => ({ name, taint: masked.has(name) ? 'masked' : 'clean', bare: true }));
  return {
    refname: table,
    schema,
    table,
    columns,
    anyTaint,
    exprTaint: 'clean',
    parts: [],
    find(name) {
      if (masked.has(name)) return { taint: 'masked', bare: true, certain: true };
      if (columns === null) return { taint: 'clean', bare: true, certain: false };
      return columns.some((c) => c.name === name) ? { taint: 'clean', bare: true, certain: true } : undefined;
    },
  };
}

/** A relation PostgreSQL names `refname` whose columns all carry `taint` (table functions, XMLTABLE, placeholders). */
export function opaqueRelation(refname: string | null, taint: Taint, names: readonly string[] | null, certain = false): Relation {
  return {
    refname,
    schema: null,
    table: null,
    columns: names === null ? null : names.map((name) => ({ name, taint, bare: false })),
    anyTaint: taint,
    exprTaint: taint,
    parts: [],
    find(name) {
      return { taint, bare: false, certain: certain || (names?.includes(name) ?? false) };
    },
  };
}

/** One item of a query's result: a column, or a `*` expanding some relations' columns. */
export type Entry = { readonly kind: 'column'; readonly column: Column } | { readonly kind: 'star'; readonly relations: readonly Relation[] };

/** The result columns in order, or null when a star's width is unknown. */
export function flatten(entries: readonly Entry[]): Column[] | null {
  const out: Column[] = [];
  for (const entry of entries) {
    if (entry.kind === 'column') {
      out.push(entry.column);
      continue;
    }
    for (const relation of entry.relations) {
      if (relation.columns === null) return null;
      out.push(...relation.columns);
    }
  }
  return out;
}

export function entriesTaint(entries: readonly Entry[], which: 'any' | 'expr'): Taint {
  let taint: Taint = 'clean';
  for (const entry of entries) {
    if (entry.kind === 'column') {
      if (which === 'any' || !entry.column.bare) taint = maxTaint(taint, entry.column.taint);
    } else {
      for (const r of entry.relations) taint = maxTaint(taint, which === 'any' ? r.anyTaint : r.exprTaint);
    }
  }
  return taint;
}

/** A sub-select, CTE or set operation seen as a relation. */
export function derivedRelation(refname: string | null, entries: readonly Entry[]): Relation {
  const columns = flatten(entries);
  return {
    refname,
    schema: null,
    table: null,
    columns,
    anyTaint: entriesTaint(entries, 'any'),
    exprTaint: entriesTaint(entries, 'expr'),
    parts: [],
    find(name) {
      let named: Found | undefined;
      let unnamed: Found | undefined;
      let stars: Found | undefined;
      for (const entry of entries) {
        if (entry.kind === 'column') {
          const c = entry.column;
          if (c.name === name) named = combineFound(named, { taint: c.taint, bare: c.bare, certain: true });
          else if (c.name === null) unnamed = combineFound(unnamed, { taint: c.taint, bare: c.bare, certain: false });
        } else {
          for (const r of entry.relations) stars = combineFound(stars, r.find(name));
        }
      }
      if (named !== undefined) return named;
      return combineFound(stars, unnamed);
    },
  };
}

/** `relation AS refname (colnames)`: renames the first columns by position, hides the old name. */
export function aliasRelation(relation: Relation, refname: string | null, colnames: readonly string[]): Relation {
  const columns = relation.columns === null ? null : relation.columns.map((c, i) => (i < colnames.length ? { ...c, name: colnames[i] ?? c.name } : c));
  return {
    refname,
    schema: relation.schema,
    // An alias hides the table name: `public.customers.email` no longer reaches it.
    table: refname === relation.refname ? relation.table : null,
    columns,
    anyTaint: relation.anyTaint,
    exprTaint: relation.exprTaint,
    parts: relation.parts,
    find(name) {
      const i = colnames.indexOf(name);
      if (i < 0) return relation.find(name);
      const c = columns?.[i];
      // Width or order unknown: the renamed column could be any of them.
      if (c === undefined) return { taint: relation.anyTaint, bare: relation.exprTaint === 'clean', certain: true };
      return { taint: c.taint, bare: c.bare, certain: true };
    },
  };
}

export interface JoinShape {
  readonly kind: string;
  readonly natural: boolean;
  readonly using: readonly string[];
  readonly refname: string | null;
}

/** A JOIN: its columns are both sides' (USING / NATURAL columns merged once, first). */
export function joinRelation(left: Relation, right: Relation, shape: JoinShape): Relation {
  let merged: readonly string[] = shape.using;
  if (shape.natural) {
    const rightNames = new Set(right.columns?.map((c) => c.name));
    merged = left.columns === null || right.columns === null ? [] : left.columns.flatMap((c) => (c.name !== null && rightNames.has(c.name) ? [c.name] : []));
  }
  let columns: Column[] | null = null;
  if (left.columns !== null && right.columns !== null) {
    const full = shape.kind === 'JOIN_FULL';
    const mergedSet = new Set(merged);
    columns = merged.map((name): Column => {
      const f = combineFound(left.find(name), right.find(name));
      return { name, taint: f?.taint ?? 'clean', bare: !full && (f?.bare ?? true) };
    });
    for (const c of [...left.columns, ...right.columns]) if (c.name === null || !mergedSet.has(c.name)) columns.push(c);
  }
  return {
    refname: shape.refname,
    schema: null,
    table: null,
    columns,
    anyTaint: maxTaint(left.anyTaint, right.anyTaint),
    exprTaint: maxTaint(maxTaint(left.exprTaint, right.exprTaint), shape.kind === 'JOIN_FULL' && merged.length > 0 ? maxTaint(left.anyTaint, right.anyTaint) : 'clean'),
    parts: [left, right],
    find(name) {
      const f = combineFound(left.find(name), right.find(name));
      // FULL JOIN USING merges with COALESCE: PostgreSQL reports no provenance for it.
      return f !== undefined && shape.kind === 'JOIN_FULL' && merged.includes(name) ? { ...f, bare: false } : f;
    },
  };
}

/** `JOIN … USING (a, b) AS u`: `u.a` names the merged column. */
export function usingAliasRelation(refname: string, left: Relation, right: Relation, shape: JoinShape): Relation {
  const full = shape.kind === 'JOIN_FULL';
  const found = (name: string): Found | undefined => {
    const f = combineFound(left.find(name), right.find(name));
    return f === undefined ? undefined : { taint: f.taint, bare: f.bare && !full, certain: true };
  };
  const columns = shape.using.map((name): Column => {
    const f = found(name);
    return { name, taint: f?.taint ?? 'clean', bare: f?.bare ?? !full };
  });
  const anyTaint = columns.reduce<Taint>((t, c) => maxTaint(t, c.taint), 'clean');
  return {
    refname,
    schema: null,
    table: null,
    columns,
    anyTaint,
    exprTaint: full ? anyTaint : 'clean',
    parts: [],
    find: (name) => (shape.using.includes(name) ? found(name) : undefined),
  };
}
