// `kubectl custos requests`: the reviewer's inbox. By default only what a reviewer can still act
// on (phase Pending and not past expiresAt), oldest first, so the request that has waited longest
// is on top; --all shows every phase with a PHASE column.
import type { AccessRequest } from '../../../crds/generated/access-request.ts';
import type { Cluster } from './cluster.ts';
import type { PluginIo } from './io.ts';
import { age, columnWidths, cut, oneLine, table, untilExpiry, width } from './format.ts';

export interface InboxView {
  /** undefined: every namespace (-A), with a NAMESPACE column. */
  readonly namespace: string | undefined;
  /** --all: every phase, with a PHASE column. */
  readonly allPhases: boolean;
  readonly now: Date;
  /** The terminal's width, when stdout is one: the statement column is cut to fit it. */
  readonly columns: number | undefined;
}

/** Without a terminal to fit, a statement is cut here (enough to recognise it; describe shows all). */
const STATEMENT_WIDTH_OFF_TERMINAL = 60;
const MIN_STATEMENT_WIDTH = 20;

/** Whether a reviewer can still decide it: Pending, and its deadline not passed. */
export function isReviewable(request: AccessRequest, now: Date): boolean {
  return request.status?.phase === 'Pending' && Date.parse(request.spec.expiresAt) > now.getTime();
}

/** The requester as a person reads them: the display name, else the stable id. */
export function requesterName(request: AccessRequest): string {
  const { displayName, id } = request.spec.requester;
  return displayName !== undefined && displayName.trim() !== '' ? displayName : id;
}

/** "orders/payments as app": target, database and database user. */
export function targetText(request: AccessRequest): string {
  const t = request.spec.target;
  return `${t.name}${t.database === undefined ? '' : `/${t.database}`}${t.user === undefined ? '' : ` as ${t.user}`}`;
}

function byAge(a: AccessRequest, b: AccessRequest): number {
  const at = (r: AccessRequest): number => Date.parse(r.metadata.creationTimestamp ?? '') || 0;
  return at(a) - at(b)
    || (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '')
    || a.metadata.name.localeCompare(b.metadata.name);
}

/** The requests the inbox lists, in its order. */
export function inboxRequests(requests: readonly AccessRequest[], view: InboxView): AccessRequest[] {
  return requests.filter((r) => view.allPhases || isReviewable(r, view.now)).sort(byAge);
}

/** What an empty inbox says (kubectl's "No resources found in X namespace.", in the inbox's terms). */
export function emptyInboxMessage(view: InboxView): string {
  const what = view.allPhases ? 'access requests' : 'pending access requests';
  return view.namespace === undefined ? `No ${what} in any namespace.\n` : `No ${what} in namespace ${view.namespace}.\n`;
}

/** The inbox table (the requests already chosen and ordered by `inboxRequests`). */
export function inboxTable(requests: readonly AccessRequest[], view: InboxView): string {
  const header = [
    'NAME', ...(view.namespace === undefined ? ['NAMESPACE'] : []), ...(view.allPhases ? ['PHASE'] : []),
    'AGE', 'REQUESTER', 'TARGET', 'RULE', 'STATEMENT', 'EXPIRES',
  ];
  const statementColumn = header.indexOf('STATEMENT');
  const rows = requests.map((r) => [
    oneLine(r.metadata.name, 80),
    ...(view.namespace === undefined ? [oneLine(r.metadata.namespace ?? '', 63)] : []),
    ...(view.allPhases ? [r.status?.phase ?? '<none>'] : []),
    age(r.metadata.creationTimestamp, view.now),
    oneLine(requesterName(r), 40),
    oneLine(targetText(r), 40),
    oneLine(r.spec.policyRef.rule ?? r.spec.policyRef.name, 30),
    oneLine(r.spec.command ?? '<no command>', Number.MAX_SAFE_INTEGER),
    untilExpiry(r.spec.expiresAt, view.now),
  ]);
  // The statement takes what the other columns (and its own padding) leave of the terminal's width.
  const last = header.length - 1;
  const others = columnWidths([header, ...rows]).reduce((sum, w, i) => (i === statementColumn || i === last ? sum : sum + w), 0)
    + Math.max(...[header, ...rows].map((row) => width(row[last] ?? '')));
  const statementWidth = view.columns === undefined
    ? STATEMENT_WIDTH_OFF_TERMINAL
    : Math.max(MIN_STATEMENT_WIDTH, view.columns - others - 3);
  for (const row of rows) row[statementColumn] = cut(row[statementColumn] ?? '', statementWidth);
  return table([header, ...rows]);
}

/** Lists the inbox of one namespace (or all) to stdout; an empty inbox says so on stderr, as kubectl does. */
export async function runRequests(cluster: Cluster, namespace: string | undefined, allPhases: boolean, io: PluginIo): Promise<number> {
  const view: InboxView = { namespace, allPhases, now: io.now(), columns: io.columns };
  const requests = inboxRequests(await cluster.listAccessRequests(namespace), view);
  if (requests.length === 0) io.stderr(emptyInboxMessage(view));
  else io.stdout(inboxTable(requests, view));
  return 0;
}
