// The operator's reconciler against the Kubernetes API double, driven and inspected with the real
// kubectl 1.35: what a platform engineer sees with `kubectl get/describe`, and that the ConfigMap
// it writes is loaded by the sidecar's own policy and config loaders.
//
// The snapshot comes from LIST calls with @kubernetes/client-node (the operator's wiring puts
// informer caches there); ConfigMaps are listed by the managed-by label, as the operator's informer
// watches them, so a same-named ConfigMap someone else created is invisible until a create meets it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';
import type { AccessPolicy } from '../crds/generated/access-policy.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../operator/webhook/injection-settings.ts';
import { POLICY_FILE } from '../operator/webhook/sidecar-config.ts';
import type { ReconcileAction } from '../operator/reconcile/actions.ts';
import { ACCESS_POLICY_API, KubeActionExecutor } from '../operator/reconcile/executor.ts';
import type { ObservedState } from '../operator/reconcile/observed.ts';
import { planPolicies } from '../operator/reconcile/plan.ts';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../operator/reconcile/policy-configmap.ts';
import { Reconciler, type ReconcileRun } from '../operator/reconcile/reconciler.ts';
import { loadSidecarConfig } from '../sidecar/config.ts';
import { loadPolicyFile } from '../sidecar/policy-store.ts';
import { waitFor } from './harness/processes.ts';
import { kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';

const ADMIN_TOKEN = 'admin-token-for-reconcile-tests';
const OPERATOR_TOKEN = 'operator-token-for-reconcile-tests-7f3a91';
/** Appears in the policy (so in ConfigMap data); must never appear in the operator's logs. */
const POLICY_CANARY = 'canary-3b1f-ask-the-billing-dba-team';

function policyYaml(name: string, options: { defaultAction?: string; extraRules?: string; selector?: string } = {}): string {
  return `apiVersion: custos.io/v1alpha1
kind: AccessPolicy
metadata:
  name: ${name}
  namespace: payments
spec:
  selector:
    matchLabels: ${options.selector ?? `{ app: ${name} }`}
  targets:
    - { name: billing, protocol: postgres, host: db.payments.svc, port: 5432 }
  rules:
    - name: no-ddl
      action: deny
      message: ${POLICY_CANARY}
      match: { sql: { statements: [ddl] } }
${options.extraRules ?? ''}  defaultAction: ${options.defaultAction ?? 'allow'}
`;
}

function podYaml(name: string, labels: Record<string, string>): string {
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: payments
  labels: ${JSON.stringify(labels)}
spec:
  containers:
    - { name: app, image: registry.example/app:1.0 }
`;
}

/** The operator's view of the cluster, from LIST calls (in place of the informer caches). */
function listSnapshot(kubeConfig: KubeConfig): () => Promise<ObservedState> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  return async () => {
    const [policies, configMaps, pods, namespaces] = await Promise.all([
      custom.listClusterCustomObject({ ...ACCESS_POLICY_API }) as Promise<{ items: AccessPolicy[] }>,
      core.listConfigMapForAllNamespaces({ labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}` }),
      core.listPodForAllNamespaces(),
      core.listNamespace(),
    ]);
    return { policies: policies.items, configMaps: configMaps.items, pods: pods.items, namespaces: namespaces.items };
  };
}

function summary(run: ReconcileRun): string[] {
  return run.outcomes.map((o) => `${o.action.kind} ${o.action.namespace}/${o.action.name}: ${o.result} (${o.detail})`);
}

describe('operator reconciler against the API double and kubectl', () => {
  let api: KubeApi;
  let k: Kubectl;
  let dir: string;
  let kubeConfig: KubeConfig;
  let executor: KubeActionExecutor;
  let reconciler: Reconciler;
  const logLines: string[] = [];

  before(async () => {
    api = await startKubeApi({
      tokens: {
        [ADMIN_TOKEN]: { username: 'admin', groups: ['system:masters'] },
        [OPERATOR_TOKEN]: { username: 'system:serviceaccount:custos-system:custos-operator', groups: ['system:serviceaccounts'] },
      },
    });
    k = await kubectlFor(await api.kubeconfig('admin'));
    dir = await mkdtemp(join(tmpdir(), 'custos-reconcile-test-'));
    await k.ok(['apply', '-f', 'crds/']);
    await k.ok(['create', 'namespace', 'payments']);
    await k.ok(['label', 'namespace', 'payments', 'custos.io/injection=enabled']);
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(await api.kubeconfig('system:serviceaccount:custos-system:custos-operator'));
    const logger = pino({ level: 'debug' }, new Writable({
      write(chunk: Buffer, _encoding, done) {
        logLines.push(chunk.toString());
        done();
      },
    }));
    executor = new KubeActionExecutor({ kubeConfig, logger });
    reconciler = new Reconciler({ observe: listSnapshot(kubeConfig), settings: DEFAULT_INJECTION_SETTINGS, executor, logger, debounceMs: 60_000 });
  });

  after(async () => {
    await reconciler.close();
    await api.stop();
  });

  it('writes nothing while not the leader', async () => {
    await k.ok(['apply', '-f', '-'], { input: policyYaml('billing') });
    const run = await reconciler.runOnce();
    assert.equal(run.notLeader, true);
    assert.equal(await k.ok(['get', 'configmaps', '-n', 'payments', '-l', `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`, '-o', 'name']), '');
    assert.equal(await k.ok(['get', 'accesspolicy', 'billing', '-n', 'payments', '-o', 'jsonpath={.status}']), '');
  });

  it('as leader, writes the ConfigMap and status: kubectl get accesspolicies shows Ready True and the pod count', async () => {
    for (const [name, labels] of [['billing-api-1', { app: 'billing' }], ['billing-api-2', { app: 'billing' }], ['billing-batch', { app: 'billing' }], ['ledger-1', { app: 'ledger' }]] as const) {
      await k.ok(['apply', '-f', '-'], { input: podYaml(name, labels) });
    }
    // A finished Job pod no longer counts.
    await k.ok(['patch', 'pod', 'billing-batch', '-n', 'payments', '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Succeeded"}}']);
    reconciler.setEnabled(true);
    const run = await reconciler.runOnce();
    assert.deepEqual(summary(run), [
      'apply-configmap payments/custos-policy-billing: applied (created)',
      'update-status payments/billing: applied (status updated)',
    ]);
    const table = await k.ok(['get', 'accesspolicies', '-n', 'payments']);
    assert.match(table, /^NAME\s+READY\s+PODS\s+DEFAULT\s+AGE\nbilling\s+True\s+2\s+allow\s+\S+\n$/);
    assert.equal(
      await k.ok(['get', 'ap', 'billing', '-n', 'payments', '-o', 'jsonpath={.status.observedGeneration} {.status.conditions[0].reason} {.status.conditions[0].message}']),
      '1 ConfigMapReady ConfigMap custos-policy-billing holds generation 1',
    );
  });

  it('writes a ConfigMap whose policy.yaml and sidecar.yaml the sidecar\'s own loaders accept', async () => {
    const cm = parseYaml(await k.ok(['get', 'configmap', 'custos-policy-billing', '-n', 'payments', '-o', 'yaml'])) as {
      metadata: { labels: Record<string, string>; annotations: Record<string, string>; ownerReferences: Array<Record<string, unknown>> };
      data: Record<string, string>;
    };
    assert.deepEqual(Object.keys(cm.data).sort(), ['policy.yaml', 'sidecar.yaml']);
    assert.equal(cm.metadata.labels['app.kubernetes.io/managed-by'], 'custos-operator');
    assert.equal(cm.metadata.labels['custos.io/policy'], 'billing');
    const uid = await k.ok(['get', 'ap', 'billing', '-n', 'payments', '-o', 'jsonpath={.metadata.uid}']);
    assert.deepEqual(cm.metadata.ownerReferences, [{ apiVersion: 'custos.io/v1alpha1', kind: 'AccessPolicy', name: 'billing', uid, controller: true }]);

    const policyFile = join(dir, 'policy.yaml');
    const configFile = join(dir, 'config.yaml');
    await writeFile(policyFile, cm.data['policy.yaml'] ?? '');
    await writeFile(configFile, cm.data['sidecar.yaml'] ?? '');
    const loaded = await loadPolicyFile(policyFile);
    assert.equal(loaded.policy.name, 'billing');
    assert.equal(loaded.policy.namespace, 'payments');
    assert.equal(loaded.policy.defaultAction, 'allow');
    assert.equal(loaded.policy.rules[0]?.message, POLICY_CANARY);
    assert.equal(loaded.digest, cm.metadata.annotations['custos.io/policy-digest'], 'the annotation is the digest the sidecar computes');
    const config = await loadSidecarConfig(configFile, {});
    assert.equal(config.policyFile, POLICY_FILE);
    assert.deepEqual(config.listen.ports, { billing: DEFAULT_INJECTION_SETTINGS.ports.firstTargetListener });
  });

  it('writes nothing on a second run: the status the API server stored is the status planned', async () => {
    const before = await k.ok(['get', 'cm,ap', '-n', 'payments', '-o', 'jsonpath={range .items[*]}{.metadata.resourceVersion} {end}']);
    const run = await reconciler.runOnce();
    assert.deepEqual(run.actions, []);
    assert.equal(await k.ok(['get', 'cm,ap', '-n', 'payments', '-o', 'jsonpath={range .items[*]}{.metadata.resourceVersion} {end}']), before);
  });

  it('rewrites the ConfigMap when the policy changes, and reports generation 2', async () => {
    assert.equal(await k.ok(['apply', '-f', '-'], { input: policyYaml('billing', { defaultAction: 'deny' }) }), 'accesspolicy.custos.io/billing configured\n');
    const run = await reconciler.runOnce();
    assert.deepEqual(summary(run), [
      'apply-configmap payments/custos-policy-billing: applied (updated)',
      'update-status payments/billing: applied (status updated)',
    ]);
    const data = await k.ok(['get', 'configmap', 'custos-policy-billing', '-n', 'payments', '-o', 'jsonpath={.data.policy\\.yaml}']);
    assert.match(data, /\n {2}defaultAction: deny\n/);
    assert.equal(await k.ok(['get', 'configmap', 'custos-policy-billing', '-n', 'payments', '-o', 'jsonpath={.metadata.annotations.custos\\.io/policy-generation}']), '2');
    assert.match(await k.ok(['get', 'ap', '-n', 'payments']), /\nbilling\s+True\s+2\s+deny\s/);
    assert.equal(await k.ok(['get', 'ap', 'billing', '-n', 'payments', '-o', 'jsonpath={.status.observedGeneration}']), '2');
  });

  it('keeps the last good ConfigMap for a policy that passes the schema but not compile, and says why in kubectl describe', async () => {
    const cmBefore = await k.ok(['get', 'configmap', 'custos-policy-billing', '-n', 'payments', '-o', 'yaml']);
    const broken = policyYaml('billing', { defaultAction: 'deny', extraRules: '    - { name: writes, action: allow, targets: [billng] }\n' });
    assert.equal(await k.ok(['apply', '-f', '-'], { input: broken }), 'accesspolicy.custos.io/billing configured\n', 'the CRD schema accepts it');
    const run = await reconciler.runOnce();
    assert.deepEqual(summary(run), ['update-status payments/billing: applied (status updated)']);
    assert.equal(await k.ok(['get', 'configmap', 'custos-policy-billing', '-n', 'payments', '-o', 'yaml']), cmBefore, 'ConfigMap untouched');
    assert.match(await k.ok(['get', 'ap', '-n', 'payments']), /\nbilling\s+False\s+2\s+deny\s/);
    const described = await k.ok(['describe', 'accesspolicy', 'billing', '-n', 'payments']);
    assert.match(described, /Observed Generation:\s+3/);
    assert.match(described, /Reason:\s+InvalidPolicy/);
    assert.match(described, /Status:\s+False/);
    assert.match(described, /Message:\s+spec\.rules\[1\]\.targets\[0\]: unknown target "billng"; sidecars keep enforcing generation 2 \(ConfigMap custos-policy-billing is unchanged\)/);
    assert.deepEqual((await reconciler.runOnce()).actions, [], 'and stays quiet');
  });

  it('recovers when the policy is fixed', async () => {
    await k.ok(['apply', '-f', '-'], { input: policyYaml('billing', { defaultAction: 'deny', extraRules: '    - { name: writes, action: allow, targets: [billing] }\n' }) });
    const run = await reconciler.runOnce();
    assert.deepEqual(run.outcomes.map((o) => o.result), ['applied', 'applied']);
    assert.match(await k.ok(['get', 'ap', '-n', 'payments']), /\nbilling\s+True\s+2\s+deny\s/);
    assert.equal(await k.ok(['get', 'configmap', 'custos-policy-billing', '-n', 'payments', '-o', 'jsonpath={.metadata.annotations.custos\\.io/policy-generation}']), '4');
  });

  it('marks two policies selecting the same pod AmbiguousSelection, and clears it when one narrows its selector', async () => {
    await k.ok(['apply', '-f', '-'], { input: policyYaml('ledger', { selector: '{ }' }) });
    await reconciler.runOnce();
    const table = await k.ok(['get', 'ap', '-n', 'payments']);
    assert.match(table, /\nbilling\s+False\s+2\s/);
    assert.match(table, /\nledger\s+False\s+3\s/);
    assert.match(
      await k.ok(['get', 'ap', 'billing', '-n', 'payments', '-o', 'jsonpath={.status.conditions[0].reason}: {.status.conditions[0].message}']),
      /^AmbiguousSelection: pods billing-api-1, billing-api-2 are also selected by AccessPolicy ledger;/,
    );
    await k.ok(['apply', '-f', '-'], { input: policyYaml('ledger') });
    await reconciler.runOnce();
    const after = await k.ok(['get', 'ap', '-n', 'payments']);
    assert.match(after, /\nbilling\s+True\s+2\s/);
    assert.match(after, /\nledger\s+True\s+1\s/);
  });

  it('deletes the ConfigMap when its policy is deleted: the garbage collector through the owner reference, the reconciler when orphaned', async () => {
    // Background cascading (what kubectl delete does): the garbage collector takes the ConfigMap.
    await k.ok(['delete', 'accesspolicy', 'ledger', '-n', 'payments']);
    await waitFor('the garbage collector to delete the ConfigMap', async () => (await k.run(['get', 'configmap', 'custos-policy-ledger', '-n', 'payments'])).code === 1);
    const quiet = await reconciler.runOnce();
    assert.ok(!summary(quiet).some((line) => /: (failed|conflict)/.test(line)), summary(quiet).join('\n'));
    // --cascade=orphan leaves a managed ConfigMap without an owner: the reconciler deletes it.
    await k.ok(['apply', '-f', '-'], { input: policyYaml('ledger') });
    await reconciler.runOnce();
    await k.ok(['delete', 'accesspolicy', 'ledger', '-n', 'payments', '--cascade=orphan']);
    assert.equal((await k.run(['get', 'configmap', 'custos-policy-ledger', '-n', 'payments'])).code, 0, 'orphaned, not collected');
    const run = await reconciler.runOnce();
    assert.deepEqual(summary(run), ['delete-configmap payments/custos-policy-ledger: applied (deleted)']);
    const gone = await k.run(['get', 'configmap', 'custos-policy-ledger', '-n', 'payments']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /configmaps "custos-policy-ledger" not found/);
    assert.equal(await k.ok(['get', 'configmap', 'custos-policy-billing', '-n', 'payments', '-o', 'name']), 'configmap/custos-policy-billing\n');
  });

  it('takes over a same-named ConfigMap it could not see (create meets AlreadyExists)', async () => {
    await k.ok(['create', 'configmap', 'custos-policy-audit', '-n', 'payments', '--from-literal=policy.yaml=allow-everything', '--from-literal=notes=keep-me-not']);
    await k.ok(['label', 'configmap', 'custos-policy-audit', '-n', 'payments', 'team=payments']);
    await k.ok(['apply', '-f', '-'], { input: policyYaml('audit') });
    const run = await reconciler.runOnce();
    assert.deepEqual(summary(run), [
      'apply-configmap payments/custos-policy-audit: applied (updated)',
      'update-status payments/audit: applied (status updated)',
    ]);
    const cm = parseYaml(await k.ok(['get', 'configmap', 'custos-policy-audit', '-n', 'payments', '-o', 'yaml'])) as { metadata: { labels: Record<string, string> }; data: Record<string, string> };
    assert.deepEqual(Object.keys(cm.data).sort(), ['policy.yaml', 'sidecar.yaml'], 'only our keys');
    assert.match(cm.data['policy.yaml'] ?? '', /name: audit/);
    assert.equal(cm.metadata.labels['team'], 'payments', 'foreign labels kept');
    assert.equal(cm.metadata.labels['app.kubernetes.io/managed-by'], 'custos-operator');
    assert.deepEqual((await reconciler.runOnce()).actions, []);
  });

  it('reverts a hand edit of the ConfigMap', async () => {
    await k.ok(['patch', 'configmap', 'custos-policy-audit', '-n', 'payments', '--type=merge', '-p', '{"data":{"policy.yaml":"edited by hand"}}']);
    const run = await reconciler.runOnce();
    assert.deepEqual(summary(run), ['apply-configmap payments/custos-policy-audit: applied (updated)']);
    assert.match(await k.ok(['get', 'configmap', 'custos-policy-audit', '-n', 'payments', '-o', 'jsonpath={.data.policy\\.yaml}']), /name: audit/);
  });

  describe('executor answers from the API server', () => {
    it('reports a conflict for a ConfigMap replaced at a stale resourceVersion, and the next reconcile converges', async () => {
      // Plan from the current state, then change the ConfigMap behind the plan's back.
      await k.ok(['patch', 'configmap', 'custos-policy-audit', '-n', 'payments', '--type=merge', '-p', '{"data":{"policy.yaml":"edited again"}}']);
      const planned = planPolicies({ ...(await listSnapshot(kubeConfig)()), settings: DEFAULT_INJECTION_SETTINGS, now: new Date() });
      assert.deepEqual(planned.map((a) => a.kind), ['apply-configmap']);
      await k.ok(['annotate', 'configmap', 'custos-policy-audit', '-n', 'payments', 'someone=else']);
      const [outcome] = await executor.execute(planned);
      assert.ok(outcome);
      assert.equal(outcome.result, 'conflict');
      assert.match(outcome.detail, /^HTTP 409 Conflict: Operation cannot be fulfilled on configmaps "custos-policy-audit"/);
      const run = await reconciler.runOnce();
      assert.deepEqual(summary(run), ['apply-configmap payments/custos-policy-audit: applied (updated)']);
      assert.equal(await k.ok(['get', 'configmap', 'custos-policy-audit', '-n', 'payments', '-o', 'jsonpath={.metadata.annotations.someone}']), 'else');
    });

    it('skips the status of a policy whose ConfigMap write failed, and still runs the other actions', async () => {
      const snapshot = await listSnapshot(kubeConfig)();
      const billing = snapshot.policies.find((p) => p.metadata.name === 'billing');
      assert.ok(billing);
      const actions: ReconcileAction[] = [
        {
          kind: 'apply-configmap', namespace: 'payments', name: 'custos-policy-billing', reason: 'out-of-date', policyDigest: 'x',
          policy: { namespace: 'payments', name: 'billing' },
          configMap: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'custos-policy-billing', namespace: 'payments', resourceVersion: '1', labels: {}, annotations: {} }, data: {} },
        },
        { kind: 'update-status', namespace: 'payments', name: 'billing', status: { selectedPods: 99 } },
        { kind: 'delete-configmap', namespace: 'payments', name: 'custos-policy-nothing', policy: 'nothing', preconditions: {} },
        { kind: 'update-status', namespace: 'payments', name: 'no-such-policy', status: { selectedPods: 1 } },
      ];
      const outcomes = await executor.execute(actions);
      assert.deepEqual(outcomes.map((o) => `${o.result}: ${o.detail}`), [
        'conflict: HTTP 409 Conflict: Operation cannot be fulfilled on configmaps "custos-policy-billing": the object has been modified; please apply your changes to the latest version and try again',
        'skipped: its ConfigMap was not written',
        'applied: already deleted',
        'gone: AccessPolicy payments/no-such-policy no longer exists',
      ]);
      assert.match(await k.ok(['get', 'ap', '-n', 'payments']), /\nbilling\s+True\s+2\s/, 'status untouched');
    });

    it('refuses to delete a ConfigMap that changed since it was observed (preconditions)', async () => {
      const uid = await k.ok(['get', 'configmap', 'custos-policy-audit', '-n', 'payments', '-o', 'jsonpath={.metadata.uid}']);
      const [outcome] = await executor.execute([
        { kind: 'delete-configmap', namespace: 'payments', name: 'custos-policy-audit', policy: 'audit', preconditions: { uid, resourceVersion: '1' } },
      ]);
      assert.ok(outcome);
      assert.equal(outcome.result, 'conflict');
      assert.match(outcome.detail, /Precondition failed: ResourceVersion in precondition: 1/);
      assert.equal(await k.ok(['get', 'configmap', 'custos-policy-audit', '-n', 'payments', '-o', 'name']), 'configmap/custos-policy-audit\n');
    });

    it('refuses a status computed from a stale policy (resourceVersion precondition on /status)', async () => {
      const [outcome] = await executor.execute([{ kind: 'update-status', namespace: 'payments', name: 'billing', resourceVersion: '1', status: { selectedPods: 7 } }]);
      assert.ok(outcome);
      assert.equal(outcome.result, 'conflict');
      assert.match(outcome.detail, /^HTTP 409 Conflict: Operation cannot be fulfilled on accesspolicies\.custos\.io "billing"/);
      assert.match(await k.ok(['get', 'ap', '-n', 'payments']), /\nbilling\s+True\s+2\s/);
    });

    it('skips everything once the signal aborts (leadership lost)', async () => {
      const controller = new AbortController();
      controller.abort();
      const outcomes = await executor.execute([{ kind: 'update-status', namespace: 'payments', name: 'billing', status: { selectedPods: 42 } }], { signal: controller.signal });
      assert.deepEqual(outcomes.map((o) => [o.result, o.detail]), [['skipped', 'not the leader any more']]);
      assert.match(await k.ok(['get', 'ap', '-n', 'payments']), /\nbilling\s+True\s+2\s/);
    });
  });

  it('logs what it did without the operator\'s token or any ConfigMap data', () => {
    const logs = logLines.join('');
    assert.match(logs, /"msg":"apply ConfigMap payments\/custos-policy-billing: applied"/);
    assert.match(logs, /"policyDigest":"[0-9a-f]{64}"/);
    assert.doesNotMatch(logs, new RegExp(OPERATOR_TOKEN));
    assert.doesNotMatch(logs, new RegExp(POLICY_CANARY));
    assert.doesNotMatch(logs, /allow-everything|edited by hand|db\.payments\.svc/);
  });
});
