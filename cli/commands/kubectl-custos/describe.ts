// `kubectl custos describe NAME`: everything a reviewer should read before deciding (who asks,
// for which command on which target, under which rule, who may decide, by when) and the
// AccessReviews already filed for it, in creation order, with the controller's verdict on each
// (counted, or why not). Laid out like `kubectl describe`.
import type { AccessRequest } from '../../../crds/generated/access-request.ts';
import type { AccessReview } from '../../../crds/generated/access-review.ts';
import type { Cluster } from './cluster.ts';
import { age, oneLine, table, untilExpiry } from './format.ts';
import type { PluginIo } from './io.ts';
import { requesterName, targetText } from './inbox.ts';

const LABEL_WIDTH = 21;

function field(label: string, value: string): string {
  return `${`${label}:`.padEnd(LABEL_WIDTH)}${value}`;
}

function byCreation(a: AccessReview, b: AccessReview): number {
  const at = (r: AccessReview): number => Date.parse(r.metadata.creationTimestamp ?? '') || 0;
  return at(a) - at(b) || a.metadata.name.localeCompare(b.metadata.name);
}

/** The reviews of `name` among a namespace's AccessReviews, oldest first. */
export function reviewsOf(name: string, reviews: readonly AccessReview[]): AccessReview[] {
  return reviews.filter((r) => r.spec.requestName === name).sort(byCreation);
}

function verdict(review: AccessReview): string {
  const { counted, refusal } = review.status ?? {};
  if (counted === true) return 'yes';
  if (counted === false) return `no: ${oneLine(refusal ?? 'not counted', 40)}`;
  return 'not yet tallied';
}

function reviewersText(request: AccessRequest): string {
  const { groups = [], users = [] } = request.spec.reviewers;
  const parts = [
    ...(groups.length > 0 ? [`groups ${groups.map((g) => oneLine(g, 253)).join(', ')}`] : []),
    ...(users.length > 0 ? [`users ${users.map((u) => oneLine(u, 253)).join(', ')}`] : []),
  ];
  return parts.length > 0 ? parts.join('; ') : '<none>';
}

function at(timestamp: string | undefined, relative: string): string {
  return timestamp === undefined ? '<none>' : `${timestamp} (${relative})`;
}

export function describeText(request: AccessRequest, reviews: readonly AccessReview[], now: Date): string {
  const { spec, status, metadata } = request;
  const requester = spec.requester;
  const target = spec.target;
  const counted = (status?.approvals ?? []).filter((a) => a.decision === 'approve').length;
  const lines = [
    field('Name', oneLine(metadata.name, 253)),
    field('Namespace', oneLine(metadata.namespace ?? '', 63)),
    field('Phase', status?.phase ?? '<none> (not open for review yet)'),
    field('Requester', oneLine(requesterName(request))),
    field('  ID', `${oneLine(requester.id, 1024)} (${requester.kind})`),
    ...(requester.onBehalfOf === undefined ? [] : [field('  On behalf of', oneLine(requester.onBehalfOf, 1024))]),
    ...(requester.pod === undefined ? [] : [field('  Pod', oneLine(requester.pod, 253))]),
    field('Target', `${oneLine(targetText(request))} (${target.protocol})`),
    field('  Database', target.database === undefined ? '<none>' : oneLine(target.database, 63)),
    field('  User', target.user === undefined ? '<none>' : oneLine(target.user, 63)),
    field('Rule', `${oneLine(spec.policyRef.rule ?? '<none>', 63)} (policy ${oneLine(spec.policyRef.name, 253)}${spec.policyRef.generation === undefined ? '' : `, generation ${spec.policyRef.generation}`})`),
    ...(spec.risk === undefined ? [] : [field('Risk', spec.risk)]),
    field('Mode', `${spec.mode ?? '<none>'}${spec.mode === 'window' && spec.windowSeconds !== undefined ? ` (${spec.windowSeconds}s)` : ''}`),
    field('Reason given', spec.reason === undefined ? '<none>' : oneLine(spec.reason, 1024)),
    field('Command', spec.command === undefined ? '<none>' : oneLine(spec.command, 16384)),
    field('Command digest', oneLine(spec.commandDigest, 80)),
    field('Reviewers allowed', reviewersText(request)),
    field('Approvals required', `${spec.approvalsRequired ?? 1} (${counted} counted so far)`),
    field('Created', at(metadata.creationTimestamp, `${age(metadata.creationTimestamp, now)} ago`)),
    field('Expires', `${spec.expiresAt} (${untilExpiry(spec.expiresAt, now)})`),
    field('Decided at', status?.decidedAt === undefined ? '<none>' : status.decidedAt),
  ];
  const own = reviewsOf(metadata.name, reviews);
  if (own.length === 0) {
    lines.push(field('Reviews', '<none>'));
    return `${lines.join('\n')}\n`;
  }
  lines.push('Reviews:');
  const rows = own.map((r) => [
    oneLine(r.metadata.name, 253),
    oneLine(r.spec.reviewer.username, 80),
    r.spec.decision,
    verdict(r),
    age(r.metadata.creationTimestamp, now),
    oneLine(r.spec.reason, 1024),
  ]);
  const reviewTable = table([['NAME', 'REVIEWER', 'DECISION', 'COUNTED', 'AGE', 'REASON'], ...rows]);
  return `${lines.join('\n')}\n${reviewTable.trimEnd().split('\n').map((line) => `  ${line}`).join('\n')}\n`;
}

export async function runDescribe(cluster: Cluster, namespace: string, name: string, io: PluginIo): Promise<number> {
  const [request, reviews] = await Promise.all([cluster.getAccessRequest(namespace, name), cluster.listAccessReviews(namespace)]);
  io.stdout(describeText(request, reviews, io.now()));
  return 0;
}
