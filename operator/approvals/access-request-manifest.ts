// The AccessRequest the operator materialises for an approval request the sidecar filed in Redis
// (docs/adr/0011-kubernetes-approvals.md): what reviewers read with kubectl. Its spec is the request
// as filed; the sidecar decides on the Redis record and the reviews' tokens, never on this object,
// so a mismatch here can mislead a reader but cannot approve anything.
import type { AccessRequest } from '../../crds/generated/access-request.ts';
import type { ApprovalRequest } from '../../policy/approvals/approval-types.ts';

export const ACCESS_REQUEST_API = { group: 'custos.io', version: 'v1alpha1', plural: 'accessrequests', kind: 'AccessRequest' } as const;
export const ACCESS_REVIEW_API = { group: 'custos.io', version: 'v1alpha1', plural: 'accessreviews', kind: 'AccessReview' } as const;

/** Labels that let reviewers filter the inbox by policy and by the pod that asked. */
export const ACCESS_REQUEST_LABELS = { policy: 'custos.io/policy', managedBy: 'app.kubernetes.io/managed-by' } as const;

/** The CRD's bound on spec.command; longer statements are shown cut (the digest still binds the whole). */
const MAX_COMMAND = 16_384;
const CUT_MARK = ' …(truncated)';
const MAX_REASON = 1024;
const MAX_DISPLAY_NAME = 256;
/** Label values are at most 63 characters; a longer policy name is simply not a label. */
const MAX_LABEL_VALUE = 63;

/** At most `max` UTF-16 units, never splitting a surrogate pair (a cut emoji would become U+FFFD). */
function cut(text: string, max: number, mark = ''): string {
  if (text.length <= max) return text;
  let end = max - mark.length;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return text.slice(0, end) + mark;
}

/** The AccessRequest for `request`; undefined for a request without a namespace (local mode, not in a cluster). */
export function accessRequestManifest(request: ApprovalRequest): AccessRequest | undefined {
  const namespace = request.gateway.namespace;
  if (namespace === undefined || namespace === '') return undefined;
  const { settings, requester, target } = request;
  const reviewers = {
    ...(settings.reviewers.groups.length > 0 ? { groups: [...settings.reviewers.groups] } : {}),
    ...(settings.reviewers.users.length > 0 ? { users: [...settings.reviewers.users] } : {}),
  };
  const grant = settings.grant;
  return {
    apiVersion: `${ACCESS_REQUEST_API.group}/${ACCESS_REQUEST_API.version}`,
    kind: ACCESS_REQUEST_API.kind,
    metadata: {
      name: request.id,
      namespace,
      labels: {
        ...(request.policy.name.length <= MAX_LABEL_VALUE ? { [ACCESS_REQUEST_LABELS.policy]: request.policy.name } : {}),
        [ACCESS_REQUEST_LABELS.managedBy]: 'custos-operator',
      },
    },
    spec: {
      policyRef: { name: request.policy.name, rule: request.policy.rule },
      requester: {
        id: requester.id,
        kind: requester.kind,
        ...(requester.displayName === undefined ? {} : { displayName: cut(requester.displayName, MAX_DISPLAY_NAME) }),
        ...(request.gateway.pod === undefined ? {} : { pod: request.gateway.pod }),
      },
      target: {
        name: target.name,
        protocol: target.protocol,
        ...(target.database === undefined ? {} : { database: target.database }),
        ...(target.user === undefined ? {} : { user: target.user }),
      },
      command: cut(request.command, MAX_COMMAND, CUT_MARK),
      commandDigest: request.commandDigest,
      // The CRD's older single `mode` (ADR 0011): a window grant is shown as `window`.
      ...(grant.scope === 'window' ? { mode: 'window' as const, windowSeconds: grant.windowSeconds } : { mode: settings.mode }),
      ...(request.reason === undefined ? {} : { reason: cut(request.reason, MAX_REASON) }),
      reviewers,
      approvalsRequired: settings.minApprovals,
      expiresAt: request.expiresAt,
    },
  };
}
