// A policy that is well-formed for the schema but wrong in meaning: every problem names its field
// the way kubectl does (`spec.rules[3].targets[0]: unknown target "billng"`).
import { CustosError } from '../lib/errors.ts';

export interface PolicyIssue {
  /** kubectl-style path, e.g. `spec.rules[3].targets[0]`. */
  readonly field: string;
  readonly message: string;
}

export class PolicyValidationError extends CustosError {
  /** The first problem's field. */
  readonly field: string;
  readonly issues: readonly PolicyIssue[];

  constructor(issues: readonly PolicyIssue[]) {
    super('ERR_POLICY_INVALID', issues.map((i) => `${i.field}: ${i.message}`).join('\n'));
    this.name = 'PolicyValidationError';
    this.field = issues[0]?.field ?? 'spec';
    this.issues = issues;
  }
}
