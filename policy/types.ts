// Contract types of the policy language: identities in, decisions out. Pure data, no I/O.
import type { ApprovalSettings } from './approvals/approval-types.ts';

/** Kubernetes attributes of a workload identity (from a projected service-account token). */
export interface KubernetesIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly serviceAccountUid?: string;
  readonly podName?: string;
  readonly podUid?: string;
  readonly nodeName?: string;
}

/** A verified identity. Built only from a token whose signature and claims were checked. */
export interface Principal {
  readonly kind: 'workload' | 'caller';
  readonly authMethod: 'k8s-sa' | 'oidc' | 'local';
  readonly issuer: string;
  readonly subject: string;
  /** The verified payload as jose returned it; never a second decoding of the token. */
  readonly claims: Readonly<Record<string, unknown>>;
  readonly kubernetes?: KubernetesIdentity;
  /** Token expiry, seconds since the epoch. */
  readonly expiresAt?: number;
}

/** Who is behind a connection: the pod's own workload identity and/or a per-connection caller token. */
export interface RequestIdentity {
  readonly workload?: Principal;
  readonly caller?: Principal;
}

/** Statement kinds, named as in crds/accesspolicy.yaml `match.sql.statements` (groups excluded). */
export type StatementKind =
  | 'select' | 'insert' | 'update' | 'delete' | 'merge' | 'truncate' | 'copy-from' | 'copy-to'
  | 'create' | 'alter' | 'drop' | 'grant' | 'revoke' | 'set' | 'show' | 'transaction' | 'explain'
  | 'do' | 'call' | 'create-function' | 'prepare' | 'execute' | 'deallocate' | 'declare' | 'fetch'
  | 'close' | 'listen' | 'notify' | 'lock' | 'maintenance' | 'discard' | 'other';

/** A relation or function name as the parser resolved it (unquoted identifiers lower-cased). */
export interface QualifiedName {
  /** null when the statement did not qualify the name (resolution depends on search_path). */
  readonly schema: string | null;
  readonly name: string;
}

export type CopyEndpoint = 'stdin' | 'stdout' | 'program' | 'file';

/** A run-time setting changed by SET / RESET (so the session can follow e.g. `search_path`). */
export interface SettingChange {
  /** Lower-cased setting name (`search_path`, `role`, `client_encoding`, ...); `all` for RESET ALL. */
  readonly name: string;
  /** The new value as written (list settings split, identifiers resolved); null for RESET / DEFAULT. */
  readonly value: readonly string[] | null;
  /** SET LOCAL: reverts at the end of the transaction. */
  readonly local: boolean;
}

/** What one SQL statement does, from a whole-tree walk of its AST. */
export interface StatementFacts {
  /** Every kind present, including nested effects (DML in CTEs, EXPLAIN ANALYZE, MERGE actions). */
  readonly kinds: readonly StatementKind[];
  readonly relations: readonly QualifiedName[];
  readonly functions: readonly QualifiedName[];
  /** UPDATE/DELETE/MERGE whose filter is missing or references no column. */
  readonly unfilteredWrite: boolean;
  /** Effect not knowable from the text (DO, CREATE FUNCTION/PROCEDURE, CALL, PREPARE/EXECUTE). */
  readonly opaque: boolean;
  readonly copy: readonly CopyEndpoint[];
  /** SET / RESET effects, in order (absent when the statement changes no setting). */
  readonly settings?: readonly SettingChange[];
  /** Byte-free character offsets of this statement inside the analysed text. */
  readonly location: { readonly start: number; readonly length: number };
}

export type SqlAnalysis =
  | {
      readonly ok: true;
      readonly statements: readonly StatementFacts[];
      /** Constants replaced by $n: safe for audit (never literals). */
      readonly normalized: string;
      /** libpg-query fingerprint: equal for statements that differ only in constants. */
      readonly fingerprint: string;
    }
  | { readonly ok: false; readonly error: string };

export type Action = 'allow' | 'deny' | 'require-approval';

export interface StatementDecision {
  readonly action: Action;
  /** Name of the deciding rule; null when the default action applied. */
  readonly rule: string | null;
  /** Machine-readable reason, e.g. `rule-matched`, `default-action`, `unparseable`. */
  readonly reason: string;
  readonly message?: string;
  readonly facts?: StatementFacts;
  /** With action require-approval: the deciding rule's approval settings (or spec.defaultApproval). */
  readonly approval?: ApprovalSettings;
}

/** The decision for a whole client message: the most restrictive of its statements' decisions. */
export interface Decision {
  readonly action: Action;
  readonly rule: string | null;
  readonly reason: string;
  readonly message?: string;
  /**
   * With action require-approval: who reviews and how the client waits. Always present on a
   * require-approval decision (the compiler refuses a policy that could yield one without it).
   */
  readonly approval?: ApprovalSettings;
  readonly statements: readonly StatementDecision[];
}

export interface EvaluationInput {
  readonly identity: RequestIdentity;
  readonly target: string;
  readonly sql: SqlAnalysis;
  /** The session's schema search path, for unqualified names (default ['public']). */
  readonly searchPath?: readonly string[];
}
