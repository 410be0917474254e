// `schema.name` patterns for relations and functions (`public.invoices`, `public.*`, `*.audit_log`),
// and how they meet names from the parser, qualified or not.
//
// Unqualified names depend on the session's search_path; the match is conservative both ways:
// - an allow rule covers an unqualified name only if the pattern list covers it in EVERY schema the
//   name could resolve to (so `public.invoices` does not allow `invoices` under search_path
//   `evil, public`: evil.invoices may exist and would win);
// - a deny or require-approval rule matches an unqualified name in ANY schema.
// Names are case-sensitive as the parser gives them (unquoted identifiers are already lower case).
import type { QualifiedName } from './types.ts';
import { compileGlob, type StringMatcher } from './glob.ts';

export interface NamePattern {
  readonly source: string;
  readonly schema: StringMatcher;
  readonly name: StringMatcher;
}

/** Compiles `schema.name` (split at the first dot); returns an error message when malformed. */
export function compileNamePattern(source: string): NamePattern | string {
  const dot = source.indexOf('.');
  const schema = dot < 0 ? '' : source.slice(0, dot);
  const name = dot < 0 ? '' : source.slice(dot + 1);
  if (schema === '' || name === '') return `expected schema.name (use *.${source === '' ? 'name' : source} for any schema), got "${source}"`;
  return { source, schema: compileGlob(schema, { question: false }), name: compileGlob(name, { question: false }) };
}

function anyCovers(patterns: readonly NamePattern[], schema: string, name: string): boolean {
  for (const p of patterns) if (p.schema(schema) && p.name(name)) return true;
  return false;
}

/** Deny side: a qualified name as written; an unqualified one in any schema. */
export function matchesAnySchema(patterns: readonly NamePattern[], n: QualifiedName): boolean {
  if (n.schema !== null) return anyCovers(patterns, n.schema, n.name);
  for (const p of patterns) if (p.name(n.name)) return true;
  return false;
}

/**
 * Allow side: a qualified name as written; an unqualified one only if covered in every candidate
 * schema (and there is at least one).
 */
export function coversEverySchema(patterns: readonly NamePattern[], n: QualifiedName, candidates: readonly string[]): boolean {
  if (n.schema !== null) return anyCovers(patterns, n.schema, n.name);
  if (candidates.length === 0) return false;
  for (const schema of candidates) if (!anyCovers(patterns, schema, n.name)) return false;
  return true;
}

/**
 * Schemas an unqualified relation may resolve to: the search path, and pg_catalog (searched first
 * unless listed) for `pg_*` names, the only names system catalogs have. Temporary tables (pg_temp,
 * searched first) are the session's own, so they are not a way to reach someone else's data.
 */
export function relationCandidates(searchPath: readonly string[], name: string): readonly string[] {
  if (!name.startsWith('pg_') || searchPath.includes('pg_catalog')) return searchPath;
  return ['pg_catalog', ...searchPath];
}

/** Schemas an unqualified function may resolve to: pg_catalog (implicitly first) and the search path. */
export function functionCandidates(searchPath: readonly string[]): readonly string[] {
  return searchPath.includes('pg_catalog') ? searchPath : ['pg_catalog', ...searchPath];
}
