// Statement kinds and the group names that expand to them (crds/accesspolicy.yaml `statements`).
import type { StatementKind } from './types.ts';

const DDL: readonly StatementKind[] = ['create', 'alter', 'drop', 'truncate', 'grant', 'revoke', 'create-function'];
const DML: readonly StatementKind[] = ['insert', 'update', 'delete', 'merge', 'copy-from'];
const READ: readonly StatementKind[] = ['select', 'show', 'copy-to', 'fetch', 'declare', 'explain'];

export const STATEMENT_GROUPS: Readonly<Record<'ddl' | 'dml' | 'read' | 'write', readonly StatementKind[]>> = {
  ddl: DDL,
  dml: DML,
  read: READ,
  write: [...DML, ...DDL],
};

export function expandStatementKinds(names: readonly string[]): ReadonlySet<StatementKind> {
  const kinds = new Set<StatementKind>();
  for (const name of names) {
    if (Object.hasOwn(STATEMENT_GROUPS, name)) {
      for (const k of STATEMENT_GROUPS[name as keyof typeof STATEMENT_GROUPS]) kinds.add(k);
    } else {
      kinds.add(name as StatementKind);
    }
  }
  return kinds;
}
