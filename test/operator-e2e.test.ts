// Issue 4 end to end, with real processes: the Kubernetes API double, the chart rendered by the real
// helm and applied by the real kubectl, and `custos operator` (controller + webhook) started with the
// environment the chart gives it. Everything is observed the way a platform team would: kubectl.
// Resilience: dropped watches, an API server restart with its watch history compacted (410 Gone),
// and a leader that dies without releasing its Lease.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startLocalCluster, type LocalCluster } from './harness/local-cluster.ts';
import { billingPolicy, denyWritesRule } from './harness/operator-fixtures.ts';
import { waitFor } from './harness/processes.ts';

const NS = 'payments';

const POLICY = (extraRules = ''): string => billingPolicy(NS, extraRules);

const POD = (name: string, extra = ''): string => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${NS}
  labels:
    app: billing
spec:
  containers:
    - name: app
      image: ghcr.io/acme/billing:1.4.2
${extra}`;

interface PodView {
  metadata: { annotations?: Partial<Record<string, string>> };
  spec: {
    initContainers?: Array<{ name: string; restartPolicy?: string; image: string }>;
    containers: Array<{ name: string }>;
    volumes?: Array<{ name: string; configMap?: { name: string } }>;
  };
}

describe('operator end to end: chart + API double + custos operator, driven with the real kubectl', { timeout: 240_000 }, () => {
  let cluster: LocalCluster;

  const k = (args: readonly string[], input?: string): Promise<string> => cluster.kubectl.ok(args, input === undefined ? {} : { input });
  const ready = async (): Promise<string> => (await cluster.kubectl.run(['get', 'accesspolicy', 'billing', '-n', NS, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])).stdout;
  const configMapPolicy = async (): Promise<string | undefined> => {
    const r = await cluster.kubectl.run(['get', 'configmap', 'custos-policy-billing', '-n', NS, '-o', 'jsonpath={.data.policy\\.yaml}']);
    return r.code === 0 ? r.stdout : undefined;
  };
  /** Sum of a metric's samples (matching `labels`) over the running operators' /metrics. */
  const metricSum = async (name: string, labels = ''): Promise<number> => {
    let sum = 0;
    for (const o of cluster.operators.filter((op) => op.child.exitCode === null && op.child.signalCode === null)) {
      const text = await (await fetch(`http://127.0.0.1:${o.metricsPort}/metrics`)).text();
      for (const line of text.split('\n')) {
        if (line.startsWith(`${name}{`) && line.includes(labels)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    }
    return sum;
  };
  const eventually = (what: string, probe: () => Promise<boolean>): Promise<void> =>
    waitFor(what, probe, 30_000, 200).catch((e: unknown) => {
      throw new Error(`${String(e)}\n--- operator output ---\n${cluster.operators.map((o) => `[${o.name}]\n${o.logs().slice(-4000)}`).join('\n')}`);
    });

  before(async () => {
    cluster = await startLocalCluster({
      operators: 2,
      api: { bookmarkIntervalMs: 1000 },
      operatorEnv: { CUSTOS_LEASE_DURATION_SECONDS: '4', CUSTOS_LEASE_RENEW_DEADLINE_SECONDS: '3', CUSTOS_LEASE_RETRY_PERIOD_SECONDS: '1' },
    });
    await k(['create', 'namespace', NS]);
    await k(['label', 'namespace', NS, 'custos.io/injection=enabled']);
  });
  after(async () => {
    await cluster.stop();
  });

  it('elects exactly one leader among two operators', async () => {
    await eventually('a leader', async () => (await cluster.leader()) !== undefined);
    const leader = await cluster.leader();
    assert.ok(cluster.operators.some((o) => o.name === leader), `lease held by ${String(leader)}`);
  });

  it('patches caBundle so the API server trusts the webhook, then injects a selected pod', async () => {
    await eventually('caBundle patched', async () => (await cluster.kubectl.run(['get', 'mutatingwebhookconfiguration', 'custos-sidecar-injector', '-o', 'jsonpath={.webhooks[0].clientConfig.caBundle}'])).stdout.length > 100);
    await k(['apply', '-f', '-'], POLICY());
    await eventually('policy Ready', async () => (await ready()) === 'True');
    await k(['apply', '-f', '-'], POD('billing-1'));
    const pod = JSON.parse(await k(['get', 'pod', 'billing-1', '-n', NS, '-o', 'json'])) as PodView;
    assert.deepEqual(pod.spec.initContainers?.map((c) => c.name), ['custos-init', 'custos-sidecar']);
    assert.equal(pod.spec.initContainers.find((c) => c.name === 'custos-sidecar')?.restartPolicy, 'Always', 'the sidecar is a native sidecar');
    assert.deepEqual(pod.spec.containers.map((c) => c.name), ['app']);
    assert.equal(pod.metadata.annotations?.['kubectl.kubernetes.io/default-container'], 'app');
    assert.ok(pod.spec.volumes?.some((v) => v.configMap?.name === 'custos-policy-billing'), 'the policy ConfigMap is mounted');
    assert.match(pod.metadata.annotations['custos.io/status'] ?? '', /"policy":"billing"/);
  });

  it('shows Ready and the number of selected pods in kubectl get accesspolicies', async () => {
    await eventually('Pods = 1', async () => /billing\s+True\s+1\s+/.test(await k(['get', 'accesspolicies', '-n', NS])));
    const configMap = await configMapPolicy();
    assert.ok(configMap?.includes('name: reads'), 'the ConfigMap holds the policy');
  });

  it('refuses a pod that adds NET_ADMIN, with a message kubectl prints', async () => {
    const r = await cluster.kubectl.run(['apply', '-f', '-'], { input: POD('sneaky', `      securityContext:
        capabilities:
          add: [NET_ADMIN]
`) });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /admission webhook "[^"]+" denied the request: .*NET_ADMIN/);
    assert.equal((await cluster.kubectl.run(['get', 'pod', 'sneaky', '-n', NS])).code, 1);
  });

  it('refuses an opted-out pod that reads the credentials Secret, and admits one that does not', async () => {
    const optedOut = (name: string, extra = ''): string => POD(name, extra).replace('    app: billing\n', "    app: billing\n    custos.io/inject: 'false'\n");
    const r = await cluster.kubectl.run(['apply', '-f', '-'], { input: optedOut('reads-secret', `      env:
        - name: PGPASSWORD
          valueFrom:
            secretKeyRef: { name: billing-db, key: password }
`) });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /denied the request: .*reads Secret billing-db, the upstream credentials of AccessPolicy billing/);
    await k(['apply', '-f', '-'], optedOut('opted-out'));
    const pod = JSON.parse(await k(['get', 'pod', 'opted-out', '-n', NS, '-o', 'json'])) as PodView;
    assert.equal(pod.spec.initContainers, undefined);
  });

  it('leaves pods of namespaces without the label alone', async () => {
    await k(['create', 'namespace', 'plain']);
    await k(['apply', '-f', '-'], POD('billing-1').replace(`namespace: ${NS}`, 'namespace: plain'));
    const pod = JSON.parse(await k(['get', 'pod', 'billing-1', '-n', 'plain', '-o', 'json'])) as PodView;
    assert.equal(pod.spec.initContainers, undefined);
  });

  it('rewrites the ConfigMap when the policy changes, and keeps the last good one when it becomes invalid', async () => {
    await k(['apply', '-f', '-'], POLICY(`    - name: no-drops
      match:
        sql:
          statements: [ddl]
      action: deny
`));
    await eventually('ConfigMap updated', async () => (await configMapPolicy())?.includes('no-drops') === true);
    await eventually('observedGeneration caught up', async () => {
      const [generation, observed] = (await k(['get', 'accesspolicy', 'billing', '-n', NS, '-o', 'jsonpath={.metadata.generation} {.status.observedGeneration}'])).split(' ');
      return generation === observed;
    });
    // Valid for the CRD schema, refused by the compiler: a rule naming a target that does not exist.
    await k(['apply', '-f', '-'], POLICY(`    - name: elsewhere
      targets: [warehouse]
      match:
        sql:
          statements: [read]
      action: allow
`));
    await eventually('Ready False', async () => (await ready()) === 'False');
    const described = await k(['describe', 'accesspolicy', 'billing', '-n', NS]);
    assert.match(described, /warehouse/, 'the message names the problem');
    assert.ok((await configMapPolicy())?.includes('no-drops'), 'the last good policy keeps serving');
    await k(['apply', '-f', '-'], POLICY());
    await eventually('Ready again', async () => (await ready()) === 'True');
  });

  it('keeps reconciling through dropped watches', async () => {
    const restartsBefore = await metricSum('custos_informer_restarts_total');
    cluster.api.dropWatches();
    await k(['apply', '-f', '-'], POLICY(denyWritesRule('after-drop')));
    await eventually('ConfigMap updated after the drop', async () => (await configMapPolicy())?.includes('after-drop') === true);
    assert.ok((await metricSum('custos_informer_restarts_total')) > restartsBefore, 'the informers restarted their watches');
  });

  it('relists after 410 Gone when the API server comes back with its history compacted, and keeps injecting', async () => {
    const expiredBefore = await metricSum('custos_informer_relists_total', 'reason="expired"');
    await cluster.restartApi((store) => {
      // A write the watches never see, then a compaction: every resumed watch is answered 410.
      store.put('', 'configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'written-while-down', namespace: 'plain', uid: crypto.randomUUID() }, data: {} }, 'ADDED');
      store.compact();
    });
    await k(['apply', '-f', '-'], POLICY(denyWritesRule('after-restart')));
    await eventually('ConfigMap updated after the restart', async () => (await configMapPolicy())?.includes('after-restart') === true);
    assert.ok((await metricSum('custos_informer_relists_total', 'reason="expired"')) > expiredBefore, 'the informers relisted after 410 Gone');
    await k(['apply', '-f', '-'], POD('billing-2'));
    const pod = JSON.parse(await k(['get', 'pod', 'billing-2', '-n', NS, '-o', 'json'])) as PodView;
    assert.deepEqual(pod.spec.initContainers?.map((c) => c.name), ['custos-init', 'custos-sidecar']);
  });

  it('fails over when the leader dies without releasing the Lease', async () => {
    const leader = await cluster.leader();
    const leading = cluster.operators.find((o) => o.name === leader);
    assert.ok(leading, `a running operator holds the lease (${String(leader)})`);
    await leading.kill();
    await eventually('another leader', async () => {
      const now = await cluster.leader();
      return now !== undefined && now !== leader;
    });
    await k(['apply', '-f', '-'], POLICY(denyWritesRule('after-failover')));
    await eventually('ConfigMap updated by the new leader', async () => (await configMapPolicy())?.includes('after-failover') === true);
  });

  it('deletes the ConfigMap with the policy, and stops injecting', async () => {
    await k(['delete', 'accesspolicy', 'billing', '-n', NS]);
    await eventually('ConfigMap gone', async () => (await configMapPolicy()) === undefined);
    await k(['apply', '-f', '-'], POD('billing-3'));
    const pod = JSON.parse(await k(['get', 'pod', 'billing-3', '-n', NS, '-o', 'json'])) as PodView;
    assert.equal(pod.spec.initContainers, undefined);
  });
});
