// Approval store test fixtures: the approval a test asks for (a return-mode rule reviewed by group
// `dba`, an unfiltered DELETE by the billing workload's service account; tests override what they
// are about), and the bench of real pieces the store tests run against.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach } from 'node:test';
import { Redis } from 'ioredis';
import type { ApprovalRequest, ApprovalSettings, ReviewerAuthentication } from '../../policy/approvals/approval-types.ts';
import { loadSqlParser } from '../../policy/sql/parser.ts';
import type { ApprovalAsk } from '../../sidecar/approvals/approval-service.ts';
import { RedisApprovalService } from '../../sidecar/approvals/redis-approval-service.ts';
import { createLocalIssuer, type LocalIssuer } from '../../sidecar/identity/local-issuer.ts';
import { startRedis, type RedisInstance } from './redis.ts';

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

/**
 * A real Redis, a reviewer-token issuer (JWKS in a file) and RedisApprovalServices on a skewable
 * clock, for approval store tests: registers the suite's before/after/beforeEach hooks (Redis
 * flushed and the clock reset before each test) and hands out what they set up.
 */
export interface ApprovalStoreBench {
  readonly redis: RedisInstance;
  /** A plain client for reading and tampering with the store's keys. */
  readonly admin: Redis;
  readonly issuer: LocalIssuer;
  readonly auth: ReviewerAuthentication;
  /** Added to the real time by `clock` (tests advance it for expiry and windows). */
  skewMs: number;
  readonly clock: () => number;
  /** What the services logged at warn level. */
  readonly warnings: Record<string, unknown>[];
  service(options?: { gateway?: ApprovalRequest['gateway']; authentication?: ReviewerAuthentication }): RedisApprovalService;
}

export const REVIEWER_ISSUER = 'https://reviewers.example';
export const REVIEWER_AUDIENCE = 'custos-reviewers';
export const SIDECAR_GATEWAY = { id: 'billing-sidecar', namespace: 'payments', pod: 'billing-0', podUid: 'pod-uid-0' };

export function useApprovalStore(tmpPrefix: string): ApprovalStoreBench {
  let redis: RedisInstance | undefined;
  let admin: Redis | undefined;
  let issuer: LocalIssuer | undefined;
  let auth: ReviewerAuthentication | undefined;
  let dir = '';
  const services: RedisApprovalService[] = [];
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is set up in before()`);
    return value;
  };
  const bench: ApprovalStoreBench = {
    get redis() { return ready(redis, 'redis'); },
    get admin() { return ready(admin, 'admin'); },
    get issuer() { return ready(issuer, 'issuer'); },
    get auth() { return ready(auth, 'auth'); },
    skewMs: 0,
    clock: () => Date.now() + bench.skewMs,
    warnings: [],
    service(options = {}) {
      const created = new RedisApprovalService({
        redisUrl: bench.redis.url, gateway: options.gateway ?? SIDECAR_GATEWAY, reviewerAuthentication: options.authentication ?? bench.auth,
        clock: bench.clock, pollIntervalMs: 100,
        logger: { warn: (o: unknown) => { bench.warnings.push(o as Record<string, unknown>); }, info: () => undefined } as never,
      });
      services.push(created);
      return created;
    },
  };
  before(async () => {
    await loadSqlParser();
    redis = await startRedis();
    admin = new Redis(redis.url);
    admin.on('error', () => undefined); // outage tests stop Redis under it
    issuer = await createLocalIssuer({ issuer: REVIEWER_ISSUER, alg: 'ES256', clock: bench.clock });
    dir = await mkdtemp(join(tmpdir(), tmpPrefix));
    await issuer.writeJwksFile(join(dir, 'reviewers.jwks'));
    auth = {
      issuer: REVIEWER_ISSUER, audience: REVIEWER_AUDIENCE, jwksFile: join(dir, 'reviewers.jwks'),
      usernameClaim: 'email', groupsClaim: 'groups', maxTokenAgeSeconds: 600,
    };
  });
  after(async () => {
    await Promise.all(services.map((s) => s.close()));
    admin?.disconnect();
    await redis?.destroy();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    bench.skewMs = 0;
    bench.warnings.length = 0;
    await bench.admin.flushall();
  });
  return bench;
}

/** Index of `deny-unfiltered-writes` in examples/policy.yaml: the rule approval tests replace. */
export const UNFILTERED_WRITES_RULE = 3;

export interface ApprovalRuleOptions {
  readonly mode: 'hold' | 'return';
  readonly holdTimeoutSeconds?: number;
  readonly ttlSeconds?: number;
}

/** A rule's `approval` block: a `dba` reviews; hold 120 s and a 600 s TTL unless given. */
export function approvalBlock(options: ApprovalRuleOptions): Record<string, unknown> {
  return {
    reviewers: { groups: ['dba'] },
    mode: options.mode,
    ...(options.mode === 'hold' ? { holdTimeoutSeconds: options.holdTimeoutSeconds ?? 120 } : {}),
    ttlSeconds: options.ttlSeconds ?? 600,
  };
}
