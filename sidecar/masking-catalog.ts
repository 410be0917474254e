// Reads the upstream catalog for masking provenance through the sidecar's own connection: every
// column of user relations (OIDs and attnums, for RowDescription and star expansion) and the
// definitions of views (mapped to base columns by the derivation analysis).
import type { UpstreamConnection } from './protocols/postgres/upstream-client.ts';
import { sideQuery } from './protocols/postgres/side-query.ts';
import type { CatalogColumn, CatalogView } from './masking/provenance.ts';

const USER_SCHEMAS = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'`;

export const COLUMNS_SQL = `SELECT c.oid, a.attnum, n.nspname, c.relname, a.attname, c.relkind
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ${USER_SCHEMAS}
  ORDER BY c.oid, a.attnum`;

export const VIEWS_SQL = `SELECT c.oid, pg_catalog.pg_get_viewdef(c.oid)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('v', 'm') AND ${USER_SCHEMAS}`;

/** User-defined functions: their bodies can read masked columns the statement never names. */
export const FUNCTIONS_SQL = `SELECT DISTINCT n.nspname, p.proname
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  WHERE ${USER_SCHEMAS}`;

export async function readCatalog(connection: UpstreamConnection): Promise<{ columns: CatalogColumn[]; views: CatalogView[]; functions: Array<{ schema: string; name: string }> }> {
  const columns = (await sideQuery(connection, COLUMNS_SQL)).map((r) => ({
    relid: Number(r[0]),
    attnum: Number(r[1]),
    schema: r[2] ?? '',
    table: r[3] ?? '',
    column: r[4] ?? '',
    relkind: r[5] ?? 'r',
  }));
  const views = (await sideQuery(connection, VIEWS_SQL)).map((r) => ({ relid: Number(r[0]), definition: r[1] ?? '' }));
  const functions = (await sideQuery(connection, FUNCTIONS_SQL)).map((r) => ({ schema: r[0] ?? '', name: r[1] ?? '' }));
  return { columns, views, functions };
}
