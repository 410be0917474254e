// `custos approvals` as a reviewer runs it (the real command in a child process) against a real
// Redis holding requests filed by the RedisApprovalService: the inbox, describe, approve and deny,
// the immediate refusals (self-review, outsider, decided, duplicate, expired token, no reason) and
// the exit codes 0/1/2. The reviewer's token must never appear in any output.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { ApprovalSettings, ReviewerAuthentication } from '../policy/approvals/approval-types.ts';
import type { ApprovalAnswer, ApprovalAsk } from '../sidecar/approvals/approval-service.ts';
import { RedisApprovalService } from '../sidecar/approvals/redis-approval-service.ts';
import { createLocalIssuer, type LocalIssuer } from '../sidecar/identity/local-issuer.ts';
import { CUSTOS_CLI, NODE } from './harness/custos-stack.ts';
import { startRedis, type RedisInstance } from './harness/redis.ts';
import { approvalAsk, approvalSettings } from './harness/approval-fixtures.ts';
import { runCommand, type CommandResult } from './harness/processes.ts';

const REVIEWER_ISSUER = 'https://reviewers.example';
const AUDIENCE = 'custos-reviewers';

let redis: RedisInstance;
let admin: Redis;
let issuer: LocalIssuer;
let dir: string;
let svc: RedisApprovalService;

before(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
  issuer = await createLocalIssuer({ issuer: REVIEWER_ISSUER, alg: 'ES256' });
  dir = await mkdtemp(join(tmpdir(), 'custos-approvals-cli-'));
  await issuer.writeJwksFile(join(dir, 'reviewers.jwks'));
  const auth: ReviewerAuthentication = {
    issuer: REVIEWER_ISSUER, audience: AUDIENCE, jwksFile: join(dir, 'reviewers.jwks'),
    usernameClaim: 'email', groupsClaim: 'groups', maxTokenAgeSeconds: 600,
  };
  svc = new RedisApprovalService({ redisUrl: redis.url, gateway: { id: 'gw', namespace: 'payments', pod: 'billing-0' }, reviewerAuthentication: auth });
});

after(async () => {
  await svc.close();
  admin.disconnect();
  await redis.destroy();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  await admin.flushall();
});

function custos(args: readonly string[], env: Record<string, string> = {}): Promise<CommandResult> {
  return runCommand(NODE, [CUSTOS_CLI, ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env } });
}

const settings = (overrides: Partial<ApprovalSettings> = {}): ApprovalSettings =>
  approvalSettings({ reviewers: { groups: ['dba'], users: ['carol@example.com'] }, ...overrides });

const ask = (overrides: Partial<ApprovalAsk> = {}): ApprovalAsk =>
  approvalAsk({ requester: { id: `${REVIEWER_ISSUER}#rita`, kind: 'OIDC' }, fingerprint: 'fp', settings: settings(), ...overrides });

async function file(question = ask()): Promise<string> {
  const answer: ApprovalAnswer = await svc.ask(question);
  if (answer.outcome !== 'pending') assert.fail(`expected pending, got ${answer.outcome}`);
  return answer.request.id;
}

async function tokenFile(name: string, claims: Record<string, unknown>, options: { expiresInSeconds?: number; issuedAt?: number } = {}): Promise<{ path: string; token: string }> {
  const token = await issuer.mint(claims, { audience: AUDIENCE, subject: name, ...options });
  const path = join(dir, `${name}.jwt`);
  await writeFile(path, `${token}\n`);
  return { path, token };
}

function reviewer(name: string, groups: string[] = ['dba']): Promise<{ path: string; token: string }> {
  return tokenFile(name, { email: `${name}@example.com`, groups });
}

function assertNoToken(result: CommandResult, token: string): void {
  const signature = token.split('.')[2] ?? token;
  assert.ok(!result.stdout.includes(signature) && !result.stderr.includes(signature), 'the token was printed');
}

describe('custos approvals', () => {
  it('lists pending requests with age, requester, target, rule, command, reason and expiry', async () => {
    const empty = await custos(['approvals', 'list', '--redis', redis.url]);
    assert.equal(empty.code, 0);
    assert.match(empty.stdout, /no pending approval requests/);
    const id = await file();
    const list = await custos(['approvals', 'list', '--redis', redis.url]);
    assert.equal(list.code, 0, list.stderr);
    const [header, row, ...more] = list.stdout.trimEnd().split('\n');
    assert.deepEqual(more, []);
    assert.match(header ?? '', /^ID\s+AGE\s+REQUESTER\s+TARGET\s+RULE\s+APPROVALS\s+EXPIRES IN\s+COMMAND\s+REASON$/);
    assert.match(row ?? '', new RegExp(`^${id}\\s+\\d+s\\s+https://reviewers.example#rita\\s+invoices-db/app as app\\s+unbounded-deletes\\s+0/1\\s+59m\\s+DELETE FROM invoices\\s+JIRA-42 purge$`));
    const json = await custos(['approvals', 'list', '--json'], { CUSTOS_REDIS_URL: redis.url });
    assert.deepEqual((JSON.parse(json.stdout) as { id: string }[]).map((r) => r.id), [id]);
  });

  it('keeps requester-controlled text from driving the reviewer terminal', async () => {
    await file(ask({ command: 'DELETE FROM invoices\u001b[2J\u001b[1;1H', reason: 'ok\napproved by security\u202e', sql: 'x' }));
    const list = await custos(['approvals', 'list', '--redis', redis.url]);
    assert.equal(list.code, 0);
    assert.ok(!list.stdout.includes('\u001b') && !list.stdout.includes('\u202e'));
    assert.equal(list.stdout.trimEnd().split('\n').length, 2, 'a newline in the reason made a second row');
  });

  it('approves with a token file, says what happens next, and never prints the token', async () => {
    const id = await file();
    const dana = await reviewer('dana');
    const approved = await custos(['approvals', 'approve', id, '--reason', 'checked JIRA-42', '--token-file', dana.path, '--redis', redis.url]);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, new RegExp(`approved ${id} as dana@example.com; request ${id} is now Approved: the statement may run once`));
    assertNoToken(approved, dana.token);
    const described = await custos(['approvals', 'describe', id, '--redis', redis.url]);
    assert.equal(described.code, 0);
    assert.match(described.stdout, /^Phase:\s+Approved/m);
    assert.match(described.stdout, /approve\s+dana@example.com\s+"checked JIRA-42"/);
    assertNoToken(described, dana.token);
    const asJson = await custos(['approvals', 'describe', id, '--json', '--redis', redis.url]);
    assertNoToken(asJson, dana.token);
    assert.equal((JSON.parse(asJson.stdout) as { status: { phase: string } }).status.phase, 'Approved');
    // The sidecar agrees (it verified the token), and the execution shows in describe.
    assert.equal((await svc.ask(ask())).outcome, 'approved');
    assert.match((await custos(['approvals', 'describe', id, '--redis', redis.url])).stdout, /^Phase:\s+Approved .*, executed$/m);
    // Executed requests leave the inbox.
    assert.match((await custos(['approvals', 'list', '--redis', redis.url])).stdout, /no pending approval requests/);
  });

  it('denies with the token from CUSTOS_REVIEWER_TOKEN', async () => {
    const id = await file();
    const dana = await reviewer('dana');
    const denied = await custos(['approvals', 'deny', id, '--reason', 'no ticket', '--redis', redis.url], { CUSTOS_REVIEWER_TOKEN: dana.token });
    assert.equal(denied.code, 0, denied.stderr);
    assert.match(denied.stdout, /is now Denied: the statement will not run/);
    assert.equal((await svc.ask(ask())).outcome, 'denied');
  });

  it('refuses at once, with exit 1, what the sidecar would not count', async () => {
    const id = await file(ask({ settings: settings({ minApprovals: 2 }) }));
    const cases: [string, { path: string; token: string }, RegExp][] = [
      ['the requester', await reviewer('rita'), /cannot review your own request/],
      ['an outsider', await reviewer('mallory', ['dev']), /not an allowed reviewer/],
      ['a service account', await tokenFile('sa', { sub: 'system:serviceaccount:custos:operator', 'kubernetes.io': { namespace: 'custos' }, groups: ['dba'] }), /service accounts cannot review/],
      ['an expired token', await tokenFile('old', { email: 'olga@example.com', groups: ['dba'] }, { issuedAt: Math.floor(Date.now() / 1000) - 1200, expiresInSeconds: 600 }), /token has expired/],
    ];
    for (const [name, who, message] of cases) {
      const result = await custos(['approvals', 'approve', id, '--reason', 'ok', '--token-file', who.path, '--redis', redis.url]);
      assert.equal(result.code, 1, name);
      assert.match(result.stderr, message, name);
      assertNoToken(result, who.token);
    }
    const dana = await reviewer('dana');
    assert.equal((await custos(['approvals', 'approve', id, '--reason', 'ok', '--token-file', dana.path, '--redis', redis.url])).code, 0);
    const twice = await custos(['approvals', 'approve', id, '--reason', 'again', '--token-file', dana.path, '--redis', redis.url]);
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /already reviewed this request/);
    const carol = await reviewer('carol', []);
    assert.equal((await custos(['approvals', 'approve', id, '--reason', 'second pair of eyes', '--token-file', carol.path, '--redis', redis.url])).code, 0);
    const late = await custos(['approvals', 'deny', id, '--reason', 'too late', '--token-file', (await reviewer('erin')).path, '--redis', redis.url]);
    assert.equal(late.code, 1);
    assert.match(late.stderr, /already Approved .* cannot be changed/);
  });

  it('refuses at once a token the sidecar would ignore for its issuer or audience, from the request or from --issuer/--audience', async () => {
    const id = await file();
    const otherIssuer = await createLocalIssuer({ issuer: 'https://elsewhere.example', alg: 'ES256' });
    const elsewhere = join(dir, 'elsewhere.jwt');
    const elsewhereToken = await otherIssuer.mint({ email: 'dana@example.com', groups: ['dba'] }, { audience: AUDIENCE, subject: 'dana' });
    await writeFile(elsewhere, elsewhereToken);
    const wrongAudience = join(dir, 'wrong-audience.jwt');
    const wrongAudienceToken = await issuer.mint({ email: 'dana@example.com', groups: ['dba'] }, { audience: 'kubernetes', subject: 'dana' });
    await writeFile(wrongAudience, wrongAudienceToken);
    for (const [name, path, token, message] of [
      ['another issuer', elsewhere, elsewhereToken, /issuer "https:\/\/elsewhere.example".*https:\/\/reviewers.example/],
      ['another audience', wrongAudience, wrongAudienceToken, /audience.*custos-reviewers/],
    ] as const) {
      for (const decision of ['deny', 'approve']) {
        const result = await custos(['approvals', decision, id, '--reason', 'no', '--token-file', path, '--redis', redis.url]);
        assert.equal(result.code, 1, `${name} ${decision}: ${result.stdout}`);
        assert.match(result.stderr, message, name);
        assert.doesNotMatch(result.stdout, /Denied|Approved/, name);
        assertNoToken(result, token);
      }
    }
    assert.equal(await admin.llen(`custos:approval:{${id}}:reviews`), 0);

    // A request filed without reviewer authentication on record: the flags say what to expect.
    const bare = new RedisApprovalService({ redisUrl: redis.url, gateway: { id: 'gw2' } });
    try {
      const answer = await bare.ask(ask({ sql: 'DELETE FROM other' }));
      if (answer.outcome !== 'pending') assert.fail(answer.outcome);
      const flagged = await custos(['approvals', 'deny', answer.request.id, '--reason', 'no', '--token-file', wrongAudience, '--audience', AUDIENCE, '--issuer', REVIEWER_ISSUER, '--redis', redis.url]);
      assert.equal(flagged.code, 1);
      assert.match(flagged.stderr, /audience/);
      const dana = await reviewer('dana');
      const ok = await custos(['approvals', 'deny', answer.request.id, '--reason', 'no', '--token-file', dana.path, '--audience', AUDIENCE, '--issuer', REVIEWER_ISSUER, '--redis', redis.url]);
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      await bare.close();
    }
  });

  it('answers usage errors with exit 2 and unknown requests or an unreachable Redis with exit 1', async () => {
    const id = await file();
    const dana = await reviewer('dana');
    const usage: [string[], RegExp][] = [
      [['approvals', 'approve', id, '--token-file', dana.path, '--redis', redis.url], /reason is required/],
      [['approvals', 'approve', id, '--reason', '   ', '--token-file', dana.path, '--redis', redis.url], /reason is required/],
      [['approvals', 'approve', id, '--reason', 'ok', '--redis', redis.url], /no reviewer token/],
      [['approvals', 'approve', 'invoices', '--reason', 'ok', '--redis', redis.url], /not a request ID/],
      [['approvals', 'list'], /--redis URL is required/],
      [['approvals', 'frobnicate', '--redis', redis.url], /unknown subcommand/],
      [['approvals', 'list', '--redis', redis.url, '--bogus'], /Unknown option/],
    ];
    for (const [args, message] of usage) {
      const result = await custos(args);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, message, args.join(' '));
    }
    const unknown = await custos(['approvals', 'describe', 'ar-aaaaaaaaaaaa', '--redis', redis.url]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no approval request ar-aaaaaaaaaaaa/);
    const unreachable = await custos(['approvals', 'list', '--redis', 'redis://:hunter2@127.0.0.1:1']);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1/);
    assert.ok(!unreachable.stderr.includes('hunter2'));
  });
});
