// Where masked data lives in the upstream database, by the identifiers PostgreSQL puts on the wire:
// RowDescription reports (table OID, attnum) for bare column references (reference §10.2), so the
// masking rules, written as schema.table.column, are resolved to OIDs through the catalog, and view
// columns are mapped to the base columns they expose (a view is reported with its own OID).
import type { MaskedColumnRule, MaskStrategy } from '../../policy/masking/compile-masking.ts';
import type { MaskedColumnSet, OutputDerivation } from '../../policy/masking/derivation.ts';

/** One column of a user relation, as read from pg_attribute/pg_class/pg_namespace. */
export interface CatalogColumn {
  readonly relid: number;
  readonly attnum: number;
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  /** pg_class.relkind: r table, p partitioned, v view, m materialized view, f foreign. */
  readonly relkind: string;
}

export interface CatalogView {
  readonly relid: number;
  readonly definition: string;
}

/** Strategy applied to outputs derived from masked columns by an expression: the value is gone. */
export const DERIVED_STRATEGY: MaskStrategy = { kind: 'redact', keepFirst: 0, keepLast: 0 };
const WHOLE_ROW_STRATEGY: MaskStrategy = { kind: 'null', keepFirst: 0, keepLast: 0 };

export class ProvenanceMap implements MaskedColumnSet {
  /** relid → attnum → strategy. attnum 0 is the whole-row reference of a relation with masked columns. */
  readonly #byOid = new Map<number, Map<number, MaskStrategy>>();
  /** `schema.table` → masked column names, and table name → the same across schemas. */
  readonly #byName = new Map<string, Set<string>>();
  readonly #byTable = new Map<string, Set<string>>();
  readonly #columns = new Map<string, string[]>();
  readonly #relids = new Set<number>();
  /** User-defined functions, by `schema\0name` and by bare name (unqualified calls). */
  readonly #userFunctions = new Set<string>();
  readonly loadedAt: number;

  constructor(
    rules: readonly MaskedColumnRule[],
    columns: readonly CatalogColumn[],
    views: readonly CatalogView[],
    analyseView: (sql: string, masked: MaskedColumnSet) => OutputDerivation[],
    now: number,
    userFunctions: ReadonlyArray<{ readonly schema: string; readonly name: string }> = [],
  ) {
    this.loadedAt = now;
    for (const f of userFunctions) {
      this.#userFunctions.add(`${f.schema}\u0000${f.name}`);
      this.#userFunctions.add(f.name);
    }
    const wanted = new Map<string, MaskStrategy>();
    for (const r of rules) {
      wanted.set(`${r.schema}\u0000${r.table}\u0000${r.column}`, r.strategy);
      addTo(this.#byName, `${r.schema}\u0000${r.table}`, r.column);
      addTo(this.#byTable, r.table, r.column);
    }
    const ordered = [...columns].sort((a, b) => a.relid - b.relid || a.attnum - b.attnum);
    for (const c of ordered) {
      this.#relids.add(c.relid);
      const key = `${c.schema}\u0000${c.table}`;
      const list = this.#columns.get(key) ?? [];
      list.push(c.column);
      this.#columns.set(key, list);
      const strategy = wanted.get(`${c.schema}\u0000${c.table}\u0000${c.column}`);
      if (strategy !== undefined) this.#mark(c.relid, c.attnum, strategy);
    }
    // Views expose base columns under their own OID: derive which view columns are masked.
    const viewNames = new Map(columns.filter((c) => c.relkind === 'v' || c.relkind === 'm').map((c) => [c.relid, c] as const));
    // Views over views: repeat until no view gains a masked column (dependency order, unknown here).
    for (let pass = 0, changed = true; changed && pass <= views.length; pass++) {
      changed = false;
      for (const v of views) changed = this.#deriveView(v, viewNames.get(v.relid), analyseView) || changed;
    }
  }

  /** Marks the view's columns derived from masked columns; true when something new was marked. */
  #deriveView(v: CatalogView, view: CatalogColumn | undefined, analyseView: (sql: string, masked: MaskedColumnSet) => OutputDerivation[]): boolean {
    let derivations: OutputDerivation[];
    try {
      derivations = analyseView(v.definition, this);
    } catch {
      // A view Custos cannot analyse is treated as masked entirely: conservative.
      derivations = (this.#columns.get(`${view?.schema ?? ''}\u0000${view?.table ?? ''}`) ?? []).map(() => 'unknown' as const);
    }
    let changed = false;
    derivations.forEach((d, i) => {
      if (d === 'clean' || this.#byOid.get(v.relid)?.has(i + 1) === true) return;
      changed = true;
      this.#mark(v.relid, i + 1, DERIVED_STRATEGY);
      if (view === undefined) return;
      const name = this.#columns.get(`${view.schema}\u0000${view.table}`)?.[i];
      if (name !== undefined) {
        addTo(this.#byName, `${view.schema}\u0000${view.table}`, name);
        addTo(this.#byTable, view.table, name);
      }
    });
    return changed;
  }

  #mark(relid: number, attnum: number, strategy: MaskStrategy): void {
    let attrs = this.#byOid.get(relid);
    if (attrs === undefined) {
      attrs = new Map([[0, WHOLE_ROW_STRATEGY]]);
      this.#byOid.set(relid, attrs);
    }
    attrs.set(attnum, strategy);
  }

  /** The strategy for a RowDescription field's origin, or undefined when the origin is not masked. */
  strategyFor(relid: number, attnum: number): MaskStrategy | undefined {
    if (relid === 0) return undefined;
    return this.#byOid.get(relid)?.get(attnum);
  }

  /**
   * Whether the relation existed when the catalog was read (a newer one, e.g. a view created a
   * moment ago, is not mapped yet). OIDs below FirstNormalObjectId (16384) are built-in catalogs.
   */
  knows(relid: number): boolean {
    return relid < FIRST_NORMAL_OBJECT_ID || this.#relids.has(relid);
  }

  /** A call to a user-defined function: its body may read masked columns unseen by the AST. */
  isUserFunction(schema: string | null, name: string): boolean {
    return schema === null ? this.#userFunctions.has(name) : this.#userFunctions.has(`${schema}\u0000${name}`);
  }

  get empty(): boolean {
    return this.#byOid.size === 0 && this.#byTable.size === 0;
  }

  maskedColumns(schema: string | null, table: string): ReadonlySet<string> {
    return (schema === null ? this.#byTable.get(table) : this.#byName.get(`${schema}\u0000${table}`)) ?? EMPTY;
  }

  columnsOf(schema: string | null, table: string): readonly string[] | undefined {
    if (schema !== null) return this.#columns.get(`${schema}\u0000${table}`);
    const matches = [...this.#columns.entries()].filter(([k]) => k.endsWith(`\u0000${table}`));
    return matches.length === 1 ? matches[0]?.[1] : undefined;
  }
}

const EMPTY: ReadonlySet<string> = new Set();
const FIRST_NORMAL_OBJECT_ID = 16384;

function addTo(map: Map<string, Set<string>>, key: string, value: string): void {
  let set = map.get(key);
  if (set === undefined) {
    set = new Set();
    map.set(key, set);
  }
  set.add(value);
}
