// Policy announcements end to end: the chart installed with `redis.url` (real helm and kubectl, the
// Kubernetes API double), `custos operator` started with the environment the chart gives it, and a
// throwaway Redis. A subscriber on the policy's channel sees what sidecars would: after each new
// policy.yaml the operator writes into `custos-policy-<name>`, one announcement carrying that text's
// digest and the policy's generation. The ConfigMap's sidecar.yaml points the sidecars at the same
// Redis and channel. With Redis gone the operator reconciles as before and counts the failed
// publish; once Redis is back it announces again.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { parse } from 'yaml';
import { announcementChannel, parseAnnouncement, policyDigest, type PolicyAnnouncement } from '../operator/announce/policy-announcement.ts';
import { resolveSidecarConfig } from '../sidecar/config.ts';
import { startLocalCluster, type LocalCluster } from './harness/local-cluster.ts';
import { billingPolicy, denyWritesRule } from './harness/operator-fixtures.ts';
import { waitFor } from './harness/processes.ts';
import { startRedis, type RedisInstance } from './harness/redis.ts';

const NS = 'payments';
const NAME = 'billing';
const CHANNEL = announcementChannel(NS, NAME);

/** The policy with `extraRules` (rule names) denying writes, so every variant has another digest. */
const POLICY = (...extraRules: string[]): string => billingPolicy(NS, extraRules.map(denyWritesRule).join(''));

interface Received {
  readonly channel: string;
  readonly message: string;
}

interface PolicyConfigMap {
  readonly policyYaml: string;
  readonly sidecarYaml: string;
  /** custos.io/policy-generation: the policy generation the data was rendered from. */
  readonly generation: number;
}

describe('operator policy announcements on Redis, end to end', { timeout: 240_000 }, () => {
  let redis: RedisInstance | undefined;
  let cluster: LocalCluster | undefined;
  let subscriber: Redis | undefined;
  const received: Received[] = [];

  const c = (): LocalCluster => cluster ?? assert.fail('the cluster did not start');
  const r = (): RedisInstance => redis ?? assert.fail('Redis did not start');
  const k = (args: readonly string[], input?: string): Promise<string> => c().kubectl.ok(args, input === undefined ? {} : { input });
  const announcements = (): PolicyAnnouncement[] => received.map(({ channel, message }) => {
    assert.equal(channel, CHANNEL);
    const parsed = parseAnnouncement(message);
    if (!parsed.ok) assert.fail(`the operator published a message sidecars refuse (${parsed.problem}): ${message}`);
    return parsed.announcement;
  });
  const configMap = async (): Promise<PolicyConfigMap | undefined> => {
    const result = await c().kubectl.run(['get', 'configmap', `custos-policy-${NAME}`, '-n', NS, '-o', 'json']);
    if (result.code !== 0) return undefined;
    const cm = JSON.parse(result.stdout) as { metadata: { annotations?: Partial<Record<string, string>> }; data?: Partial<Record<string, string>> };
    const policyYaml = cm.data?.['policy.yaml'];
    const sidecarYaml = cm.data?.['sidecar.yaml'];
    const generation = Number(cm.metadata.annotations?.['custos.io/policy-generation']);
    return policyYaml === undefined || sidecarYaml === undefined ? undefined : { policyYaml, sidecarYaml, generation };
  };
  const generation = async (): Promise<number> => Number(await k(['get', 'accesspolicy', NAME, '-n', NS, '-o', 'jsonpath={.metadata.generation}']));
  /** A sample of the operator's /metrics (0 when the series does not exist yet). */
  const metric = async (series: string): Promise<number> => {
    const operator = c().operators[0] ?? assert.fail('no operator');
    const text = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };
  const eventually = (what: string, probe: () => Promise<boolean>): Promise<void> =>
    waitFor(what, probe, 30_000, 200).catch((e: unknown) => {
      const logs = c().operators.map((o) => `[${o.name}]\n${o.logs().slice(-4000)}`).join('\n');
      throw new Error(`${String(e)}\n--- received on ${CHANNEL} ---\n${received.map((m) => m.message).join('\n')}\n--- operator output ---\n${logs}`);
    });
  /** The ConfigMap once it holds `generation` of the policy and the ConfigMap's text contains `marker`. */
  const configMapAt = async (policyGeneration: number, marker: string): Promise<PolicyConfigMap> => {
    let current: PolicyConfigMap | undefined;
    await eventually(`ConfigMap rendered from generation ${policyGeneration}`, async () => {
      current = await configMap();
      return current?.generation === policyGeneration && current.policyYaml.includes(marker);
    });
    return current ?? assert.fail('unreachable');
  };
  const subscribe = async (): Promise<void> => {
    const client = new Redis(r().url);
    client.on('message', (channel: string, message: string) => { received.push({ channel, message }); });
    await client.subscribe(CHANNEL);
    subscriber = client;
  };
  /** Applies the policy and returns its new generation. */
  const applyPolicy = async (...extraRules: string[]): Promise<number> => {
    await k(['apply', '-f', '-'], POLICY(...extraRules));
    return generation();
  };

  before(async () => {
    redis = await startRedis();
    cluster = await startLocalCluster({ chartValues: [`redis.url=${redis.url}`] });
    await k(['create', 'namespace', NS]);
    await k(['label', 'namespace', NS, 'custos.io/injection=enabled']);
    await subscribe();
  });
  after(async () => {
    subscriber?.disconnect();
    await cluster?.stop();
    await redis?.destroy();
  });

  let first: PolicyAnnouncement | undefined;

  it('announces a new policy with the digest of the ConfigMap’s policy.yaml and the policy’s generation', async () => {
    const policyGeneration = await applyPolicy();
    const cm = await configMapAt(policyGeneration, 'name: reads');
    const digest = policyDigest(cm.policyYaml);
    await eventually('the announcement', () => Promise.resolve(announcements().some((a) => a.digest === digest)));
    first = announcements().find((a) => a.digest === digest);
    assert.deepEqual({ ...first, at: undefined }, { namespace: NS, name: NAME, generation: policyGeneration, digest, at: undefined });
    assert.equal(first?.digest, (JSON.parse(await k(['get', 'configmap', `custos-policy-${NAME}`, '-n', NS, '-o', 'json'])) as { metadata: { annotations: Record<string, string> } }).metadata.annotations['custos.io/policy-digest'],
      'the digest the ConfigMap is annotated with');
    assert.ok((await metric('custos_policy_announcements_published_total{result="published"}')) >= 1);
  });

  it('announces a changed policy with its new digest and generation', async () => {
    const previous = first ?? assert.fail('no first announcement');
    const policyGeneration = await applyPolicy('no-writes');
    assert.ok(policyGeneration > previous.generation, `generation ${policyGeneration} after ${previous.generation}`);
    const cm = await configMapAt(policyGeneration, 'name: no-writes');
    const digest = policyDigest(cm.policyYaml);
    assert.notEqual(digest, previous.digest);
    await eventually('the second announcement', () => Promise.resolve(announcements().some((a) => a.digest === digest)));
    for (const a of announcements().filter((x) => x.digest === digest)) assert.equal(a.generation, policyGeneration, 'announced with the generation it was rendered from');
    // Nothing announced a digest the ConfigMap never held.
    assert.deepEqual(announcements().filter((a) => a.digest !== digest && a.digest !== previous.digest), []);
  });

  it('tells the sidecars in sidecar.yaml to follow this policy’s announcements on the same Redis', async () => {
    const cm = await configMap() ?? assert.fail('no ConfigMap');
    const config = resolveSidecarConfig(parse(cm.sidecarYaml), '/', {});
    assert.equal(config.redisUrl, r().url);
    const follows = config.policyReload.announcements ?? assert.fail(`sidecar.yaml follows no announcements:\n${cm.sidecarYaml}`);
    assert.deepEqual({ ...follows }, { namespace: NS, name: NAME });
    assert.equal(announcementChannel(follows.namespace, follows.name), CHANNEL, 'the channel the operator publishes on');
  });

  it('keeps reconciling with Redis down, and counts the failed publish', async () => {
    subscriber?.disconnect();
    subscriber = undefined;
    const failedBefore = await metric('custos_policy_announcements_published_total{result="failed"}');
    await r().stop();
    const policyGeneration = await applyPolicy('no-writes', 'while-redis-is-down');
    await configMapAt(policyGeneration, 'name: while-redis-is-down');
    await eventually('status to catch up', async () =>
      (await k(['get', 'accesspolicy', NAME, '-n', NS, '-o', 'jsonpath={.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].status}'])) === `${policyGeneration} True`);
    await eventually('a failed publish counted', async () => (await metric('custos_policy_announcements_published_total{result="failed"}')) > failedBefore);
  });

  it('announces again once Redis is back', async () => {
    const connectedLogs = (): number => (c().operators[0]?.logs() ?? '').split('policy announcer connected to Redis').length - 1;
    const connectedBefore = connectedLogs();
    await r().start();
    await subscribe();
    await eventually('the operator to reconnect to Redis', () => Promise.resolve(connectedLogs() > connectedBefore));
    const policyGeneration = await applyPolicy('no-writes', 'after-redis-is-back');
    const digest = policyDigest((await configMapAt(policyGeneration, 'name: after-redis-is-back')).policyYaml);
    await eventually('the announcement after the outage', () => Promise.resolve(announcements().some((a) => a.digest === digest && a.generation === policyGeneration)));
  });
});
