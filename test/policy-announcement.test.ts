// Acceptance: policy announcements on Redis (operator/announce/, sidecar/policy-announcements.ts).
// The operator's publisher and a real sidecar process (test/harness/custos-stack.ts) against a real
// Redis and PostgreSQL. The sidecar polls its policy file only once an hour here, so a decision
// that changes within the test changed through the announcement path; the outcome is polled for,
// never timed. Redis carries no policy: an announcement whose digest the file never has changes
// nothing, whatever else the message holds, and with Redis down the sidecar serves and reloads
// from the file as before.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import pg from 'pg';
import { Registry } from 'prom-client';
import { parseDocument } from 'yaml';
import type { AccessPolicy } from '../crds/generated/access-policy.ts';
import { PolicyAnnouncer } from '../operator/announce/policy-announcer.ts';
import {
  MAX_ANNOUNCEMENT_BYTES,
  announcementChannel,
  encodeAnnouncement,
  parseAnnouncement,
  policyDigest,
  type PolicyAnnouncement,
} from '../operator/announce/policy-announcement.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../operator/webhook/injection-settings.ts';
import { renderSidecarConfig } from '../operator/webhook/sidecar-config.ts';
import { resolveSidecarConfig } from '../sidecar/config.ts';
import { createLogger } from '../sidecar/logger.ts';
import { AnnouncementTracker } from '../sidecar/policy-announcements.ts';
import { PolicyStore } from '../sidecar/policy-store.ts';
import { REPO_ROOT, startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { freePort } from './harness/free-port.ts';
import { waitFor } from './harness/processes.ts';
import { startRedis, type RedisInstance } from './harness/redis.ts';
import { metricSample } from './harness/metrics.ts';

const CHANNEL = 'custos:policy:payments/billing';
const HOUR_MS = 3_600_000;

function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: () => string } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { logger: createLogger('debug', sink), lines: () => text };
}

function announcement(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { namespace: 'payments', name: 'billing', generation: 3, digest: policyDigest('spec: {}\n'), at: '2025-01-02T03:04:05.678Z', ...overrides };
}

// ---------------------------------------------------------------------------------------------
// The message (pure)

describe('policy announcement message', () => {
  it('names the channel after the policy', () => {
    assert.equal(announcementChannel('payments', 'billing'), CHANNEL);
    assert.throws(() => announcementChannel('payments/x', 'billing'), /namespace/);
    assert.throws(() => announcementChannel('payments', 'Billing'), /name/);
  });

  it('uses the digest the sidecar computes for its policy file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'custos-announce-'));
    try {
      // Non-ASCII on purpose: the digest is over the UTF-8 bytes on both sides.
      const text = (await readFile(join(REPO_ROOT, 'examples', 'policy.yaml'), 'utf8')).replace('# The demo policy', '# Die Demo-Richtlinie (Zugriff für CI)');
      const file = join(dir, 'policy.yaml');
      await writeFile(file, text);
      const store = await PolicyStore.open(file, { logger: createLogger('silent'), pollIntervalMs: HOUR_MS });
      try {
        assert.equal(store.digest, policyDigest(text));
        const changed = text.replace('name: deny-ddl', 'name: deny-schema-changes');
        await writeFile(file, changed);
        assert.equal(await store.reload(), true);
        assert.equal(store.digest, policyDigest(changed));
        // A broken file is refused and the digest in force stays that of the policy in force.
        await writeFile(file, changed.replace('action: deny', 'action: permit'));
        assert.equal(await store.reload(), false);
        assert.equal(store.digest, policyDigest(changed));
      } finally {
        store.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('round-trips through encode and parse, ignoring fields it does not know', () => {
    const a = announcement() as unknown as PolicyAnnouncement;
    assert.deepEqual(parseAnnouncement(encodeAnnouncement(a)), { ok: true, announcement: a });
    assert.deepEqual(parseAnnouncement(JSON.stringify({ ...a, cluster: 'eu-1' })), { ok: true, announcement: a });
  });

  const malformed: Array<[string, string, RegExp]> = [
    ['not JSON', '{"namespace":', /not JSON/],
    ['an array', '[]', /not a JSON object/],
    ['a namespace with a slash (another channel)', JSON.stringify(announcement({ namespace: 'payments/billing' })), /namespace/],
    ['an upper-case name', JSON.stringify(announcement({ name: 'Billing' })), /name/],
    ['generation 0', JSON.stringify(announcement({ generation: 0 })), /generation/],
    ['a fractional generation', JSON.stringify(announcement({ generation: 1.5 })), /generation/],
    ['a generation as a string', JSON.stringify(announcement({ generation: '3' })), /generation/],
    ['an upper-case digest', JSON.stringify(announcement({ digest: policyDigest('x').toUpperCase() })), /digest/],
    ['a short digest', JSON.stringify(announcement({ digest: 'abc' })), /digest/],
    ['a time that is not RFC 3339', JSON.stringify(announcement({ at: 'yesterday' })), /at/],
    ['an oversized message', JSON.stringify(announcement({ padding: 'x'.repeat(MAX_ANNOUNCEMENT_BYTES) })), /larger than/],
  ];
  for (const [what, text, problem] of malformed) {
    it(`refuses ${what}`, () => {
      const parsed = parseAnnouncement(text);
      if (parsed.ok) assert.fail(`accepted: ${JSON.stringify(parsed.announcement)}`);
      assert.match(parsed.problem, problem);
    });
  }

  it('never encodes what receivers would refuse', () => {
    assert.throws(() => encodeAnnouncement(announcement({ generation: 0 }) as unknown as PolicyAnnouncement), /generation/);
  });
});

describe('AnnouncementTracker', () => {
  const a = (generation: number, text: string): PolicyAnnouncement => ({ namespace: 'payments', name: 'billing', generation, digest: policyDigest(text), at: '2025-01-02T03:04:05Z' });
  const CURRENT = policyDigest('current');

  it('ignores the digest in force and awaits another until it is in force', () => {
    const t = new AnnouncementTracker({ windowMs: 1000 });
    assert.equal(t.receive(a(1, 'current'), CURRENT, 0), 'current');
    assert.equal(t.size, 0);
    assert.equal(t.receive(a(2, 'next'), CURRENT, 0), 'tracked');
    assert.deepEqual(t.check(CURRENT, 500), { applied: undefined, expired: [] });
    assert.deepEqual(t.check(policyDigest('next'), 600), { applied: a(2, 'next'), expired: [] });
    assert.equal(t.size, 0);
  });

  it('gives up on a digest the file never carries when its window ends, and a replay does not extend it', () => {
    const t = new AnnouncementTracker({ windowMs: 1000 });
    t.receive(a(2, 'forged'), CURRENT, 0);
    t.receive(a(2, 'forged'), CURRENT, 900);
    assert.deepEqual(t.check(CURRENT, 999).expired, []);
    assert.deepEqual(t.check(CURRENT, 1000).expired, [a(2, 'forged')]);
    assert.equal(t.size, 0);
  });

  it('stops awaiting older generations once a newer one is in force (the kubelet skipped them)', () => {
    const t = new AnnouncementTracker({ windowMs: 1000 });
    t.receive(a(2, 'two'), CURRENT, 0);
    t.receive(a(3, 'three'), CURRENT, 0);
    t.receive(a(4, 'four'), CURRENT, 0);
    assert.equal(t.check(policyDigest('three'), 10).applied?.generation, 3);
    assert.equal(t.size, 1, 'generation 4 is still awaited');
  });

  it('awaits a bounded number of digests, so a flood of forged ones costs nothing more', () => {
    const t = new AnnouncementTracker({ windowMs: 1000, maxPending: 4 });
    for (let i = 0; i < 100; i++) t.receive(a(i + 1, `forged-${i}`), CURRENT, 0);
    assert.equal(t.size, 4);
    assert.equal(t.receive(a(200, 'real'), CURRENT, 0), 'tracked');
    assert.equal(t.check(policyDigest('real'), 1).applied?.generation, 200);
  });
});

describe('renderSidecarConfig and announcements', () => {
  const policy: AccessPolicy = {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'billing', namespace: 'payments' },
    spec: { targets: [{ name: 'billing', protocol: 'postgres', host: 'db.payments.svc', port: 5432 }], rules: [{ name: 'reads', action: 'allow' }] },
  };

  it('follows the policy’s announcements when the operator has a Redis URL', () => {
    const config = resolveSidecarConfig(renderSidecarConfig(policy, { ...DEFAULT_INJECTION_SETTINGS, redisUrl: 'redis://redis.custos:6379' }), '/', {});
    assert.deepEqual(config.policyReload.announcements, { namespace: 'payments', name: 'billing' });
    assert.equal(config.redisUrl, 'redis://redis.custos:6379');
  });

  it('does not without one', () => {
    const config = resolveSidecarConfig(renderSidecarConfig(policy, DEFAULT_INJECTION_SETTINGS), '/', {});
    assert.equal(config.policyReload.announcements, undefined);
    assert.equal(config.policyReload.pollIntervalMs, 1000);
  });

  it('refuses an announcements section naming no policy, and a too-fast poll', () => {
    assert.throws(() => resolveSidecarConfig({ policyFile: 'p', policyReload: { announcements: { namespace: 'payments' } } }, '/', {}), /config\.policyReload\.announcements\.name: Required value/);
    assert.throws(() => resolveSidecarConfig({ policyFile: 'p', policyReload: { pollIntervalMs: 5 } }, '/', {}), /config\.policyReload\.pollIntervalMs/);
  });
});

// ---------------------------------------------------------------------------------------------
// The publisher against a real Redis

describe('PolicyAnnouncer', () => {
  let redis: RedisInstance;
  before(async () => { redis = await startRedis(); });
  after(async () => { await redis.destroy(); });

  it('publishes the digest of the ConfigMap’s policy.yaml on the policy’s channel', async () => {
    const registry = new Registry();
    const { logger } = capturingLogger();
    const announcer = new PolicyAnnouncer({ redisUrl: redis.url, logger, registry, now: () => new Date('2025-06-01T12:00:00Z') });
    const subscriber = new Redis(redis.url);
    try {
      const received = new Promise<[string, string]>((resolve) => { subscriber.once('message', (channel: string, message: string) => { resolve([channel, message]); }); });
      await subscriber.subscribe(CHANNEL);
      await waitFor('the announcer to connect', async () => (await announcer.announce({ namespace: 'payments', name: 'billing', generation: 7, policyYaml: 'kind: AccessPolicy\n' })).result === 'published');
      const [channel, message] = await received;
      assert.equal(channel, CHANNEL);
      assert.deepEqual(JSON.parse(message), { namespace: 'payments', name: 'billing', generation: 7, digest: policyDigest('kind: AccessPolicy\n'), at: '2025-06-01T12:00:00.000Z' });
      assert.match(await registry.metrics(), /custos_policy_announcements_published_total\{result="published"\} [1-9]/);
    } finally {
      subscriber.disconnect();
      await announcer.close();
    }
  });

  it('never rejects or waits for Redis: with Redis down it reports the failure, counts and logs it without the URL’s password', async () => {
    const registry = new Registry();
    const { logger, lines } = capturingLogger();
    const announcer = new PolicyAnnouncer({ redisUrl: `redis://:hunter2-secret@127.0.0.1:${await freePort()}`, logger, registry });
    try {
      const outcome = await announcer.announce({ namespace: 'payments', name: 'billing', generation: 1, policyYaml: 'x' });
      assert.equal(outcome.result, 'failed');
      assert.equal(outcome.channel, CHANNEL);
      assert.deepEqual(announcer.counts, { published: 0, failed: 1 });
      assert.match(await registry.metrics(), /custos_policy_announcements_published_total\{result="failed"\} 1/);
      assert.match(lines(), /policy announcement failed; sidecars pick the policy up from the mounted file instead/);
      assert.ok(!lines().includes('hunter2'), 'the Redis password is never logged');
    } finally {
      await announcer.close();
    }
  });

  it('reports an invalid policy name as a failure instead of throwing', async () => {
    const { logger } = capturingLogger();
    const announcer = new PolicyAnnouncer({ redisUrl: redis.url, logger });
    try {
      const outcome = await announcer.announce({ namespace: 'Payments', name: 'billing', generation: 1, policyYaml: 'x' });
      assert.equal(outcome.result, 'failed');
    } finally {
      await announcer.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// A real sidecar following announcements

async function metricsText(stack: CustosStack): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${stack.httpPort}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

const sample = (text: string, name: string, labels: Record<string, string> = {}): number => metricSample(text, name, labels) ?? 0;

/** What the sidecar does with `SELECT 1` now: "allowed", or the SQLSTATE and message. */
async function decisionOnSelect(stack: CustosStack): Promise<string> {
  const client = new pg.Client(stack.clientConfig(await stack.token()));
  await client.connect();
  try {
    await client.query('SELECT 1');
    return 'allowed';
  } catch (e: unknown) {
    const err = e as { code?: string; message?: string };
    return `${err.code ?? '?'} ${err.message ?? ''}`;
  } finally {
    await client.end();
  }
}

/** The policy file with reads frozen (a deny rule ahead of allow-reads), or without that rule. */
function policyWithFrozenReads(original: string, frozen: boolean): string {
  if (!frozen) return original;
  const doc = parseDocument(original);
  const rules = doc.getIn(['spec', 'rules']) as { items: unknown[] };
  rules.items.unshift(doc.createNode({ name: 'freeze-reads', match: { sql: { statements: ['select'] } }, action: 'deny', message: 'reads are frozen' }));
  return doc.toString();
}

/** Replaces the policy file in one step, as the kubelet swaps a ConfigMap volume. */
async function replaceFile(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

async function subscribers(redisUrl: string): Promise<number> {
  const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const reply = (await client.call('PUBSUB', 'NUMSUB', CHANNEL)) as [string, number];
    return reply[1];
  } finally {
    client.disconnect();
  }
}

describe('a sidecar following policy announcements (file poll: once an hour)', () => {
  let stack: CustosStack;
  let redisUrl: string;
  let original: string;
  let announcer: PolicyAnnouncer;
  let generation = 1;
  const announce = async (policyYaml: string): Promise<void> => {
    const outcome = await announcer.announce({ namespace: 'payments', name: 'billing', generation: ++generation, policyYaml });
    assert.equal(outcome.result, 'published', outcome.result === 'failed' ? outcome.error : '');
  };

  before(async () => {
    stack = await startCustosStack({
      redis: true,
      extraConfig: { policyReload: { pollIntervalMs: HOUR_MS, announcements: { namespace: 'payments', name: 'billing' } } },
    });
    assert.ok(stack.redis);
    redisUrl = stack.redis.url;
    original = await readFile(stack.policyFile, 'utf8');
    announcer = new PolicyAnnouncer({ redisUrl, logger: createLogger('silent') });
    await waitFor('the sidecar to subscribe', async () => (await subscribers(redisUrl)) === 1);
    await waitFor('the announcer to connect', async () => (await announcer.announce({ namespace: 'payments', name: 'billing', generation: 1, policyYaml: original })).result === 'published');
  });
  after(async () => {
    await announcer.close();
    await stack.stop();
  });

  it('applies a rewritten policy file as soon as it is announced', async () => {
    assert.equal(await decisionOnSelect(stack), 'allowed');
    const frozen = policyWithFrozenReads(original, true);
    await replaceFile(stack.policyFile, frozen);
    await announce(frozen);
    await waitFor('SELECT to be refused by the announced policy', async () => /^42501 .*freeze-reads/.test(await decisionOnSelect(stack)), 20_000);
    const text = await metricsText(stack);
    assert.equal(sample(text, 'custos_policy_announcements_applied_total'), 1);
    assert.equal(sample(text, 'custos_policy_announcements_received_total', { result: 'tracked' }), 1);
    assert.match(stack.logs(), /announced policy in force/);
  });

  it('keeps polling the file after an announcement until the file catches up (the kubelet is slower)', async () => {
    const thawed = policyWithFrozenReads(original, false);
    await announce(thawed); // announced before the file changes, as it happens in a cluster
    await waitFor('the announcement to arrive', async () => sample(await metricsText(stack), 'custos_policy_announcements_received_total', { result: 'tracked' }) === 2);
    assert.match(await decisionOnSelect(stack), /^42501 .*freeze-reads/, 'nothing changes before the file does');
    await replaceFile(stack.policyFile, thawed);
    await waitFor('SELECT to be allowed again', async () => (await decisionOnSelect(stack)) === 'allowed', 20_000);
    assert.equal(sample(await metricsText(stack), 'custos_policy_announcements_applied_total'), 2);
  });

  it('serves through a Redis outage and follows announcements again once Redis is back', async () => {
    assert.ok(stack.redis);
    await stack.redis.stop();
    assert.equal(await decisionOnSelect(stack), 'allowed', 'still serving without Redis');
    assert.equal((await fetch(`http://127.0.0.1:${stack.httpPort}/readyz`)).status, 200);
    await stack.redis.start();
    await waitFor('the sidecar to subscribe again', async () => (await subscribers(redisUrl)) === 1, 30_000);
    const frozen = policyWithFrozenReads(original, true);
    await replaceFile(stack.policyFile, frozen);
    await waitFor('the announcer to reconnect and announce', async () => (await announcer.announce({ namespace: 'payments', name: 'billing', generation: ++generation, policyYaml: frozen })).result === 'published', 30_000);
    await waitFor('SELECT to be refused by the announced policy', async () => /^42501 .*freeze-reads/.test(await decisionOnSelect(stack)), 20_000);
    const text = await metricsText(stack);
    assert.equal(sample(text, 'custos_policy_announcements_received_total', { result: 'tracked' }), 3, 'the announcement arrived over the renewed subscription');
    assert.equal(sample(text, 'custos_policy_announcements_applied_total'), 3);
  });

  it('changes nothing for announcements the file never bears out, whatever they carry', async () => {
    const publisher = new Redis(redisUrl);
    try {
      // Small enough to pass the size limit: the policy text is ignored because Redis never carries policy.
      const permissive = 'spec: {rules: [{name: allow-all, action: allow}], defaultAction: allow}\n';
      const reloadsBefore = sample(await metricsText(stack), 'custos_policy_reloads_total', { result: 'reloaded' });
      const selectBefore = await decisionOnSelect(stack);
      assert.match(selectBefore, /^42501 .*freeze-reads/);
      const forged = [
        // A digest that never appears in the file, even with the policy text riding along.
        JSON.stringify({ ...announcement({ generation: 99, digest: policyDigest(permissive), at: new Date().toISOString() }), policy: permissive }),
        // Another policy's announcement on this channel.
        JSON.stringify(announcement({ name: 'other', generation: 100, digest: policyDigest('other'), at: new Date().toISOString() })),
        // Garbage carrying a marker that must not reach the logs.
        '{"namespace":"payments","name":"billing","digest":"MARKER-7f3a"}',
      ];
      for (const message of forged) await publisher.publish(CHANNEL, message);
      await waitFor('the forged announcements to arrive', async () => {
        const text = await metricsText(stack);
        return sample(text, 'custos_policy_announcements_received_total', { result: 'tracked' }) === 4 &&
          sample(text, 'custos_policy_announcements_received_total', { result: 'foreign' }) === 1 &&
          sample(text, 'custos_policy_announcements_received_total', { result: 'malformed' }) === 1;
      });
      // Not a timing assertion: the sidecar has re-read its file at once and keeps doing so every
      // 200 ms for the forged digest; give that a chance to go wrong before checking it did not.
      await new Promise((r) => setTimeout(r, 1000));
      const client = await stack.connect();
      try {
        await assert.rejects(client.query('DROP TABLE IF EXISTS nothing_here'), (e: { code?: string; message?: string }) => e.code === '42501' && /deny-ddl/.test(e.message ?? ''));
      } finally {
        await client.end();
      }
      assert.equal(await decisionOnSelect(stack), selectBefore);
      const text = await metricsText(stack);
      assert.equal(sample(text, 'custos_policy_reloads_total', { result: 'reloaded' }), reloadsBefore, 'the policy in force was not replaced');
      assert.equal(sample(text, 'custos_policy_announcements_applied_total'), 3);
      assert.ok(!stack.logs().includes('MARKER-7f3a'), 'untrusted message content is not logged');
    } finally {
      publisher.disconnect();
    }
  });
});

describe('a sidecar whose Redis is down from the start', () => {
  let stack: CustosStack;
  before(async () => {
    const deadRedis = `redis://127.0.0.1:${await freePort()}`;
    stack = await startCustosStack({
      extraConfig: { redisUrl: deadRedis, policyReload: { pollIntervalMs: 200, announcements: { namespace: 'payments', name: 'billing' } } },
    });
  });
  after(async () => { await stack.stop(); });

  it('starts, serves and still hot-reloads its policy from the file', async () => {
    assert.equal(await decisionOnSelect(stack), 'allowed');
    const original = await readFile(stack.policyFile, 'utf8');
    await replaceFile(stack.policyFile, policyWithFrozenReads(original, true));
    await waitFor('the file poll to apply the new policy', async () => /^42501 .*freeze-reads/.test(await decisionOnSelect(stack)), 20_000);
    assert.equal((await fetch(`http://127.0.0.1:${stack.httpPort}/readyz`)).status, 200);
    assert.equal(sample(await metricsText(stack), 'custos_redis_up'), 0);
  });
});
