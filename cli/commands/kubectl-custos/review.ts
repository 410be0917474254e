// `kubectl custos approve|deny NAME --reason …`: reads the AccessRequest, refuses at once what no
// review can change any more (a decided, expired or not yet opened request), then creates an
// AccessReview bound to the digest of the command just read. Who reviews is not sent: the review
// webhook stamps spec.reviewer from the user the API server authenticated
// (docs/adr/0011-kubernetes-approvals.md), and whatever else it refuses (self-review, a reviewer
// outside the request's reviewers) comes back as its Status message.
import type { AccessRequest } from '../../../crds/generated/access-request.ts';
import type { AccessReviewSubmission, Cluster } from './cluster.ts';
import { humanDuration } from './format.ts';
import { LocalRefusal } from './errors.ts';
import type { PluginIo } from './io.ts';

export type Decision = 'approve' | 'deny';

/** The AccessReview for `decision` on `request`: generateName NAME-, no spec.reviewer. */
export function reviewSubmission(request: AccessRequest, namespace: string, decision: Decision, reason: string): AccessReviewSubmission {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessReview',
    metadata: { generateName: `${request.metadata.name}-`, namespace },
    spec: { requestName: request.metadata.name, decision, reason, commandDigest: request.spec.commandDigest },
  };
}

/** Why no review of `request` can count now, in the webhook's words; undefined when one can. */
export function localRefusal(request: AccessRequest, now: Date): string | undefined {
  const name = request.metadata.name;
  const phase = request.status?.phase;
  const expiresAt = Date.parse(request.spec.expiresAt);
  if (phase === undefined) return `${name} is not open for review yet (the operator has not set its phase); try again in a moment`;
  if (phase === 'Expired' || (phase === 'Pending' && !(expiresAt > now.getTime()))) {
    const ago = Number.isNaN(expiresAt) ? '' : `, ${humanDuration(now.getTime() - expiresAt)} ago`;
    return `${name} expired at ${request.spec.expiresAt}${ago}, and will never run; the requester must run the statement again to file a new request`;
  }
  if (phase !== 'Pending') {
    const decided = request.status?.decidedAt === undefined ? '' : ` (decided at ${request.status.decidedAt})`;
    return `${name} is already ${phase}${decided}: a decided request cannot be reviewed again`;
  }
  return undefined;
}

export interface ReviewInvocation {
  readonly namespace: string;
  /** Whether -n was given, so that the follow-up command shown names it too. */
  readonly namespaceGiven: boolean;
  readonly name: string;
  readonly decision: Decision;
  readonly reason: string;
}

export async function runReview(cluster: Cluster, invocation: ReviewInvocation, io: PluginIo): Promise<number> {
  const request = await cluster.getAccessRequest(invocation.namespace, invocation.name);
  const refusal = localRefusal(request, io.now());
  if (refusal !== undefined) throw new LocalRefusal(refusal);
  const created = await cluster.createAccessReview(reviewSubmission(request, invocation.namespace, invocation.decision, invocation.reason));
  const describe = `kubectl custos describe ${request.metadata.name}${invocation.namespaceGiven ? ` -n ${invocation.namespace}` : ''}`;
  io.stdout(`accessreview/${created} created: ${invocation.decision} for ${request.metadata.name} (the operator counts it; see ${describe})\n`);
  return 0;
}
