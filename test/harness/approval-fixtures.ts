// The approval a store test asks for: a return-mode rule reviewed by group `dba`, and an unfiltered
// DELETE by the billing workload's service account. Tests override what they are about.
import type { ApprovalSettings } from '../../policy/approvals/approval-types.ts';
import type { ApprovalAsk } from '../../sidecar/approvals/approval-service.ts';

export function approvalSettings(overrides: Partial<ApprovalSettings> = {}): ApprovalSettings {
  return {
    reviewers: { groups: ['dba'], users: [] }, minApprovals: 1, mode: 'return', holdTimeoutSeconds: 300, ttlSeconds: 3600,
    grant: { scope: 'once' }, ...overrides,
  };
}

export function approvalAsk(overrides: Partial<ApprovalAsk> = {}): ApprovalAsk {
  return {
    requester: { id: 'system:serviceaccount:payments:billing', kind: 'ServiceAccount' },
    target: { name: 'invoices-db', protocol: 'postgres', database: 'app', user: 'app' },
    policy: { name: 'billing', namespace: 'payments', version: '7', rule: 'unbounded-deletes' },
    sql: 'DELETE FROM invoices',
    command: 'DELETE FROM invoices',
    fingerprint: 'fp-delete-invoices',
    reason: 'JIRA-42 purge',
    settings: approvalSettings(),
    ...overrides,
  };
}
