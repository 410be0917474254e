// `custos approvals list|describe|approve|deny`: the reviewer's side of local-mode approvals
// (docs/adr/0009), straight against Redis. A review stores the reviewer's own OIDC token; the
// sidecar verifies it before the review counts. What this command checks first (self-review,
// expiry, a decided request, a missing reason, group membership) reads the token's claims without
// verifying them: it exists to give a reviewer an immediate, clear refusal, not to decide.
//
// Exit codes: 0 done, 1 refused or failed (the message says why), 2 usage.
// The token is never printed or logged; requester-supplied text (statement, reason) is stripped of
// control characters before it reaches the reviewer's terminal.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import type { ApprovalRequest, ApprovalStatus, Review, ReviewRefusal, Reviewer } from '../../policy/approvals/approval-types.ts';
import { isRequestId } from '../../policy/approvals/request-id.ts';
import { tally } from '../../policy/approvals/tally.ts';
import { claimKey, PENDING_INBOX_KEY, requestKey, reviewChannel, reviewsKey } from '../../sidecar/approvals/approval-keys.ts';
import {
  finalPhase, MAX_REVIEW_REASON_LENGTH, MAX_REVIEW_TOKEN_LENGTH, parseRequest, parseReviewRecord, serializeReviewRecord, type ReviewRecord,
} from '../../sidecar/approvals/approval-records.ts';

export const APPROVALS_USAGE = `usage:
  custos approvals list --redis URL [--json]
  custos approvals describe ID --redis URL [--json]
  custos approvals approve ID --reason TEXT --redis URL [--token-file FILE] [--issuer URL --audience AUD]
  custos approvals deny ID --reason TEXT --redis URL [--token-file FILE] [--issuer URL --audience AUD]

The reviewer token (an OIDC token from the policy's reviewerAuthentication issuer) is read from
--token-file or CUSTOS_REVIEWER_TOKEN. --redis defaults to CUSTOS_REDIS_URL.
The token's iss and aud are checked against the reviewerAuthentication the request was filed
under, and against --issuer/--audience when given: a token the sidecar would ignore is refused.
--username-claim (default email, falling back to sub) and --groups-claim (default groups) must
match the policy for the pre-checks to be accurate; the sidecar's verification is what counts.
`;

export interface ApprovalsIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Milliseconds since the epoch. */
  readonly clock: () => number;
}

const defaultIo: ApprovalsIo = {
  stdout: (text) => { process.stdout.write(text); },
  stderr: (text) => { process.stderr.write(text); },
  env: process.env,
  clock: Date.now,
};

class UsageError extends Error {}
class Refusal extends Error {}

const REFUSAL_MESSAGES: Record<ReviewRefusal, string> = {
  'self-review': 'you cannot review your own request (four-eyes rule)',
  'service-account-reviewer': 'service accounts cannot review requests; use your personal token',
  'not-an-allowed-reviewer': 'you are not an allowed reviewer for this request (not in its reviewer groups or users)',
  'digest-mismatch': 'the review does not match the request\'s statement digest',
  'after-expiry': 'the request has expired; the requester must run the statement again to file a new one',
  'after-decision': 'the request is already decided and cannot be changed',
  'duplicate': 'you have already reviewed this request',
  'reason-required': 'a reason is required (--reason TEXT)',
};

export async function runApprovals(args: string[], io: ApprovalsIo = defaultIo): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case 'list':
        return await withRedis(rest, io, (redis, values) => listCommand(redis, values, io));
      case 'describe':
        return await withRedis(rest, io, (redis, values, id) => describeCommand(redis, requireId(id), values, io));
      case 'approve':
      case 'deny': {
        const decision = sub;
        return await withRedis(rest, io, (redis, values, id) => reviewCommand(redis, requireId(id), decision, values, io));
      }
      default:
        throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`);
    }
  } catch (e: unknown) {
    if (e instanceof UsageError) {
      io.stderr(`custos approvals: ${e.message}\n\n${APPROVALS_USAGE}`);
      return 2;
    }
    if (e instanceof Refusal) {
      io.stderr(`custos approvals: ${e.message}\n`);
      return 1;
    }
    io.stderr(`custos approvals: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

interface Values {
  readonly redis?: string | undefined;
  readonly json?: boolean | undefined;
  readonly reason?: string | undefined;
  readonly 'token-file'?: string | undefined;
  readonly 'username-claim'?: string | undefined;
  readonly 'groups-claim'?: string | undefined;
  readonly issuer?: string | undefined;
  readonly audience?: string | undefined;
}

async function withRedis(
  args: string[], io: ApprovalsIo, run: (redis: Redis, values: Values, id: string | undefined) => Promise<number>,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        redis: { type: 'string' }, json: { type: 'boolean' }, reason: { type: 'string' }, 'token-file': { type: 'string' },
        'username-claim': { type: 'string' }, 'groups-claim': { type: 'string' }, issuer: { type: 'string' }, audience: { type: 'string' },
      },
    });
  } catch (e: unknown) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  if (parsed.positionals.length > 1) throw new UsageError(`unexpected arguments: ${parsed.positionals.slice(1).join(' ')}`);
  const url = parsed.values.redis ?? io.env['CUSTOS_REDIS_URL'];
  if (url === undefined || url.length === 0) throw new UsageError('--redis URL is required (or set CUSTOS_REDIS_URL)');
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000, commandTimeout: 3000, retryStrategy: () => null });
  let redisError: unknown;
  redis.on('error', (e: unknown) => { redisError = e; });
  try {
    await redis.connect();
    return await run(redis, parsed.values, parsed.positionals[0]);
  } catch (e: unknown) {
    if (e instanceof UsageError || e instanceof Refusal) throw e;
    const cause = e instanceof Error ? e.message : String(redisError ?? e);
    throw new Error(`Redis at ${redactUrl(url)}: ${cause}`, { cause: e });
  } finally {
    redis.disconnect();
  }
}

function requireId(id: string | undefined): string {
  if (id === undefined) throw new UsageError('missing request ID (ar-…)');
  if (!isRequestId(id)) throw new UsageError(`"${printable(id, 40)}" is not a request ID (ar- followed by 12 characters)`);
  return id;
}

/** A Redis URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'the given URL';
  }
}

/** Requester-controlled text on a reviewer's terminal: no escape sequences, no line tricks. */
export function printable(text: string, max = 200): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, ' ');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

interface Stored {
  readonly request: ApprovalRequest;
  readonly records: readonly ReviewRecord[];
  readonly claimed: boolean;
}

async function loadStored(redis: Redis, id: string): Promise<Stored> {
  const [text, records, claim] = await Promise.all([redis.get(requestKey(id)), redis.lrange(reviewsKey(id), 0, -1), redis.get(claimKey(id))]);
  if (text === null) throw new Refusal(`no approval request ${id} (never filed, or removed after its retention)`);
  const parsed: ReviewRecord[] = [];
  for (const record of records) {
    try {
      parsed.push(parseReviewRecord(record));
    } catch {
      // Shown as a count only; the sidecar ignores such records too.
    }
  }
  // The claim key also records a request the sidecar saw end Denied or Expired: not an execution.
  return { request: parseRequest(text, id), records: parsed, claimed: claim !== null && finalPhase(claim) === undefined };
}

/** Unverified claims of a JWT payload; undefined when it is not a compact JWS with a JSON payload. */
export function decodeClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[1] === undefined) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? payload as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}

interface ClaimNames {
  readonly username: string;
  readonly groups: string;
}

/** The reviewer a token claims to be (as the sidecar will establish it, once verified). */
function claimedReviewer(claims: Record<string, unknown>, names: ClaimNames): Reviewer {
  const sub = typeof claims['sub'] === 'string' ? claims['sub'] : '';
  const iss = typeof claims['iss'] === 'string' ? claims['iss'] : '';
  const named = claims[names.username];
  const groups = claims[names.groups];
  const isWorkload = typeof claims['kubernetes.io'] === 'object';
  return {
    username: isWorkload ? sub : typeof named === 'string' && named.length > 0 ? named : sub,
    groups: !isWorkload && Array.isArray(groups) ? groups.filter((g): g is string => typeof g === 'string') : [],
    id: `${iss}#${sub}`,
    via: 'oidc',
  };
}

function claimNames(values: Values): ClaimNames {
  return { username: values['username-claim'] ?? 'email', groups: values['groups-claim'] ?? 'groups' };
}

function reviewsOf(records: readonly ReviewRecord[], names: ClaimNames): Review[] {
  return records.map((record) => ({
    reviewer: claimedReviewer(decodeClaims(record.token) ?? {}, names),
    decision: record.decision, reason: record.reason, at: record.at, commandDigest: record.commandDigest,
  }));
}

function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86_400)}d`;
}

function target(request: ApprovalRequest): string {
  const t = request.target;
  return `${t.name}${t.database === undefined ? '' : `/${t.database}`}${t.user === undefined ? '' : ` as ${t.user}`}`;
}

async function listCommand(redis: Redis, values: Values, io: ApprovalsIo): Promise<number> {
  const now = io.clock();
  const ids = await redis.zrangebyscore(PENDING_INBOX_KEY, `(${now}`, '+inf');
  const names = claimNames(values);
  const pending: { request: ApprovalRequest; status: ApprovalStatus }[] = [];
  for (const id of ids) {
    if (!isRequestId(id)) continue;
    let stored: Stored;
    try {
      stored = await loadStored(redis, id);
    } catch {
      continue; // removed meanwhile, or malformed: not reviewable
    }
    const status = tally(stored.request, reviewsOf(stored.records, names), new Date(now));
    if (status.phase === 'Pending') pending.push({ request: stored.request, status });
  }
  if (values.json === true) {
    io.stdout(`${JSON.stringify(pending.map(({ request, status }) => ({ ...request, approvals: status.counted.filter((r) => r.decision === 'approve').length })), null, 2)}\n`);
    return 0;
  }
  if (pending.length === 0) {
    io.stdout('no pending approval requests\n');
    return 0;
  }
  const rows = pending.map(({ request, status }) => [
    request.id,
    formatDuration(now - Date.parse(request.createdAt)),
    printable(request.requester.id, 60),
    printable(target(request), 40),
    printable(request.policy.rule, 30),
    `${status.counted.filter((r) => r.decision === 'approve').length}/${request.settings.minApprovals}`,
    formatDuration(Date.parse(request.expiresAt) - now),
    printable(request.command, 80),
    printable(request.reason ?? '-', 60),
  ]);
  const header = ['ID', 'AGE', 'REQUESTER', 'TARGET', 'RULE', 'APPROVALS', 'EXPIRES IN', 'COMMAND', 'REASON'];
  io.stdout(table([header, ...rows]));
  return 0;
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join('  ')).join('\n') + '\n';
}

async function describeCommand(redis: Redis, id: string, values: Values, io: ApprovalsIo): Promise<number> {
  const now = io.clock();
  const stored = await loadStored(redis, id);
  const reviews = reviewsOf(stored.records, claimNames(values));
  const status = tally(stored.request, reviews, new Date(now));
  const { request } = stored;
  if (values.json === true) {
    io.stdout(`${JSON.stringify({ request, reviews, status, executed: stored.claimed }, null, 2)}\n`);
    return 0;
  }
  const refusedBy = new Map(status.refused.map((r) => [r.review, r.why]));
  const lines = [
    `Request:     ${request.id}`,
    `Phase:       ${status.phase}${status.decidedAt === undefined ? '' : ` (since ${status.decidedAt})`}${stored.claimed ? ', executed' : ''}`,
    `Requester:   ${printable(request.requester.id)} (${request.requester.kind})`,
    `Gateway:     ${printable([request.gateway.namespace, request.gateway.pod ?? request.gateway.id].filter((p) => p !== undefined).join('/'))}`,
    `Target:      ${printable(target(request))}`,
    `Rule:        ${printable(request.policy.rule)} (policy ${printable(request.policy.name)} v${printable(request.policy.version)})`,
    `Command:     ${printable(request.command, 2000)}`,
    `Reason:      ${printable(request.reason ?? '-', 500)}`,
    `Digest:      ${request.commandDigest}`,
    `Created:     ${request.createdAt} (${formatDuration(now - Date.parse(request.createdAt))} ago)`,
    `Expires:     ${request.expiresAt}`,
    `Needs:       ${request.settings.minApprovals} approval(s) from groups [${request.settings.reviewers.groups.map((g) => printable(g)).join(', ')}] or users [${request.settings.reviewers.users.map((u) => printable(u)).join(', ')}]; grant ${request.settings.grant.scope === 'window' ? `window ${request.settings.grant.windowSeconds}s` : 'once'}, mode ${request.settings.mode}`,
    `Reviews:     ${reviews.length === 0 ? 'none' : ''}`,
    ...reviews.map((review) => {
      const why = refusedBy.get(review);
      return `  ${review.at}  ${review.decision.padEnd(7)} ${printable(review.reviewer.username, 80)}  "${printable(review.reason, 200)}"${why === undefined ? '' : `  (not counted: ${why})`}`;
    }),
    '(reviewers shown as their tokens claim; the sidecar verifies each token before a review counts)',
  ];
  io.stdout(`${lines.join('\n')}\n`);
  return 0;
}

async function readToken(values: Values, io: ApprovalsIo): Promise<string> {
  const file = values['token-file'];
  let token: string | undefined;
  if (file !== undefined) {
    try {
      token = (await readFile(file, 'utf8')).trim();
    } catch (e: unknown) {
      throw new Refusal(`cannot read the token file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  } else {
    token = io.env['CUSTOS_REVIEWER_TOKEN']?.trim();
  }
  if (token === undefined || token.length === 0) throw new UsageError('no reviewer token: pass --token-file FILE or set CUSTOS_REVIEWER_TOKEN');
  if (token.length > MAX_REVIEW_TOKEN_LENGTH) throw new Refusal('the reviewer token is too large');
  return token;
}

async function reviewCommand(redis: Redis, id: string, decision: 'approve' | 'deny', values: Values, io: ApprovalsIo): Promise<number> {
  const reason = values.reason?.trim() ?? '';
  if (reason.length === 0) throw new UsageError(REFUSAL_MESSAGES['reason-required']);
  if (reason.length > MAX_REVIEW_REASON_LENGTH) throw new UsageError(`the reason is longer than ${MAX_REVIEW_REASON_LENGTH} characters`);
  const token = await readToken(values, io);
  const claims = decodeClaims(token);
  if (claims === undefined) throw new Refusal('the reviewer token is not a JWT');
  const now = io.clock();
  const exp = claims['exp'];
  if (typeof exp !== 'number' || exp * 1000 <= now) throw new Refusal('your reviewer token has expired (or has no exp): get a fresh one');

  const names = claimNames(values);
  const stored = await loadStored(redis, id);
  const { request } = stored;
  const existing = reviewsOf(stored.records, names);
  const before = tally(request, existing, new Date(now));
  if (before.phase !== 'Pending') {
    throw new Refusal(`request ${id} is already ${before.phase}${before.phase === 'Expired' ? '' : ` (since ${before.decidedAt ?? '?'})`} and cannot be changed`);
  }
  // A review the sidecar will ignore must not be reported as done ("Denied") to the reviewer.
  const expected = [request.reviewerAuthentication, values.issuer === undefined && values.audience === undefined ? undefined : { issuer: values.issuer, audience: values.audience }];
  for (const wanted of expected) {
    if (wanted === undefined) continue;
    const iss = claims['iss'];
    if (wanted.issuer !== undefined && iss !== wanted.issuer) {
      throw new Refusal(`${decision} refused for ${id}: your token's issuer ${JSON.stringify(printable(typeof iss === 'string' ? iss : '-', 200))} is not the reviewer issuer ${JSON.stringify(printable(wanted.issuer, 200))}; the sidecar would ignore this review`);
    }
    const aud = claims['aud'];
    const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
    if (wanted.audience !== undefined && !audiences.includes(wanted.audience)) {
      throw new Refusal(`${decision} refused for ${id}: your token is not issued for the reviewer audience ${JSON.stringify(printable(wanted.audience, 200))} (it is for ${audiences.map((a) => JSON.stringify(printable(a, 100))).join(', ') || 'no audience'}); the sidecar would ignore this review`);
    }
  }
  const reviewer = claimedReviewer(claims, names);
  const record: ReviewRecord = { decision, reason, at: new Date(now).toISOString(), commandDigest: request.commandDigest, token };
  const candidate: Review = { reviewer, decision, reason, at: record.at, commandDigest: record.commandDigest };
  const after = tally(request, [...existing, candidate], new Date(now));
  const refused = after.refused.find((r) => r.review === candidate);
  if (refused !== undefined) throw new Refusal(`${decision} refused for ${id}: ${REFUSAL_MESSAGES[refused.why]}`);

  const result = await redis.multi().rpush(reviewsKey(id), serializeReviewRecord(record)).publish(reviewChannel(id), decision).exec();
  if (result === null || result.some(([error]) => error !== null)) throw new Error('storing the review failed');
  const verdict = after.phase === 'Pending'
    ? `request ${id} is still pending (${after.counted.filter((r) => r.decision === 'approve').length}/${request.settings.minApprovals} approvals)`
    : after.phase === 'Approved'
      ? `request ${id} is now Approved: ${request.settings.grant.scope === 'window' ? `statements of this shape may run for ${request.settings.grant.windowSeconds}s` : 'the statement may run once'}`
      : `request ${id} is now Denied: the statement will not run`;
  io.stdout(`${decision === 'approve' ? 'approved' : 'denied'} ${id} as ${printable(reviewer.username, 80)}; ${verdict} (the sidecar verifies your token before the review counts)\n`);
  return 0;
}
