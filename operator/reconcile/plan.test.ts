// The reconcile planner on in-memory snapshots: which actions for which world, and that planning
// again on the world its actions produce yields nothing (level-based, no status churn).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import type { AccessPolicy, AccessPolicyCondition, AccessPolicySpec, AccessPolicyStatus } from '../../crds/generated/access-policy.ts';
import { parsePolicyYaml } from '../../crds/validate-document.ts';
import { compilePolicy } from '../../policy/compile.ts';
import { resolveSidecarConfig } from '../../sidecar/config.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../webhook/injection-settings.ts';
import { POLICY_FILE, renderSidecarConfig } from '../webhook/sidecar-config.ts';
import type { ApplyConfigMapAction, ReconcileAction, UpdateStatusAction } from './actions.ts';
import type { ObservedConfigMap, ObservedNamespace, ObservedPod, ObservedState } from './observed.ts';
import { planPolicies } from './plan.ts';
import { POLICY_CONFIGMAP_ANNOTATIONS, dataDigest } from './policy-configmap.ts';
import { sha256Hex } from './policy-document.ts';

const NOW = new Date('2025-03-01T12:00:00.123Z');
const LATER = new Date('2025-03-01T13:30:00.456Z');
const SETTINGS = DEFAULT_INJECTION_SETTINGS;

const BASE_SPEC: AccessPolicySpec = {
  selector: { matchLabels: { app: 'billing' } },
  targets: [{ name: 'billing', protocol: 'postgres', host: 'db.payments.svc', port: 5432 }],
  rules: [{ name: 'reads', targets: ['billing'], action: 'allow', match: { sql: { statements: ['read'] } } }],
  defaultAction: 'deny',
};

function policy(name: string, options: { spec?: AccessPolicySpec; generation?: number; namespace?: string; deleting?: boolean } = {}): AccessPolicy {
  const namespace = options.namespace ?? 'payments';
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessPolicy',
    metadata: {
      name, namespace, uid: `uid-${namespace}-${name}`, generation: options.generation ?? 1, resourceVersion: '10',
      ...(options.deleting === true ? { deletionTimestamp: '2025-03-01T11:00:00Z' } : {}),
    },
    spec: structuredClone(options.spec ?? BASE_SPEC),
  };
}

function namespace(name: string, labels: Record<string, string> = { 'custos.io/injection': 'enabled' }, phase = 'Active'): ObservedNamespace {
  return { metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } }, status: { phase } };
}

function pod(name: string, labels: Record<string, string>, options: { phase?: string; namespace?: string; hostNetwork?: boolean } = {}): ObservedPod {
  return {
    metadata: { name, namespace: options.namespace ?? 'payments', labels },
    ...(options.hostNetwork === undefined ? {} : { spec: { hostNetwork: options.hostNetwork } }),
    status: { phase: options.phase ?? 'Running' },
  };
}

function world(partial: Partial<ObservedState> = {}): ObservedState {
  return { policies: [], configMaps: [], pods: [], namespaces: [namespace('payments')], ...partial };
}

function plan(state: ObservedState, now = NOW): ReconcileAction[] {
  return planPolicies({ ...state, settings: SETTINGS, now });
}

let nextResourceVersion = 1000;

/** What the API server does with the actions (as far as the next plan can see), JSON round trip included. */
function applyActions(state: ObservedState, actions: readonly ReconcileAction[]): ObservedState {
  let configMaps = [...state.configMaps];
  let policies = [...state.policies];
  for (const action of actions) {
    const same = (cm: ObservedConfigMap): boolean => cm.metadata?.namespace === action.namespace && cm.metadata.name === action.name;
    switch (action.kind) {
      case 'apply-configmap': {
        const existing = configMaps.find(same);
        if (existing !== undefined) assert.equal(action.configMap.metadata.resourceVersion, existing.metadata?.resourceVersion, 'replaces the observed version');
        const written = structuredClone(action.configMap) as ObservedConfigMap;
        configMaps = [...configMaps.filter((cm) => !same(cm)), {
          ...written,
          metadata: { ...written.metadata, uid: existing?.metadata?.uid ?? `uid-cm-${action.name}`, resourceVersion: String(nextResourceVersion++) },
        }];
        break;
      }
      case 'delete-configmap':
        configMaps = configMaps.filter((cm) => !same(cm));
        break;
      case 'update-status':
        policies = policies.map((p) => (p.metadata.namespace === action.namespace && p.metadata.name === action.name
          ? { ...p, metadata: { ...p.metadata, resourceVersion: String(nextResourceVersion++) }, status: structuredClone(action.status) }
          : p));
        break;
    }
  }
  return { ...state, configMaps, policies };
}

/** Plans and applies until nothing is left to do; the world the operator converges to. */
function converge(state: ObservedState, now = NOW): ObservedState {
  return applyActions(state, plan(state, now));
}

function only<T>(items: readonly T[]): T {
  assert.equal(items.length, 1, `expected exactly one item, got ${items.length}`);
  return items[0] as T;
}

function applies(actions: readonly ReconcileAction[]): ApplyConfigMapAction[] {
  return actions.filter((a): a is ApplyConfigMapAction => a.kind === 'apply-configmap');
}

function statuses(actions: readonly ReconcileAction[]): UpdateStatusAction[] {
  return actions.filter((a): a is UpdateStatusAction => a.kind === 'update-status');
}

function ready(state: ObservedState, name: string): AccessPolicyCondition {
  const p = state.policies.find((x) => x.metadata.name === name);
  const c = p?.status?.conditions?.find((x) => x.type === 'Ready');
  assert.ok(c, `policy ${name} has a Ready condition`);
  return c;
}

describe('planPolicies', () => {
  describe('a new valid policy', () => {
    const state = world({ policies: [policy('billing')] });
    const actions = plan(state);

    it('applies its ConfigMap, then writes its status, in that order', () => {
      assert.deepEqual(actions.map((a) => `${a.kind} ${a.namespace}/${a.name}`), [
        'apply-configmap payments/custos-policy-billing',
        'update-status payments/billing',
      ]);
    });

    it('creates custos-policy-<policy> labelled, annotated with digests and owned by the policy', () => {
      const apply = only(applies(actions));
      assert.equal(apply.reason, 'missing');
      const cm = apply.configMap;
      assert.equal(cm.metadata.resourceVersion, undefined, 'a create carries no resourceVersion');
      assert.deepEqual(cm.metadata.labels, { 'app.kubernetes.io/managed-by': 'custos-operator', 'custos.io/policy': 'billing' });
      assert.deepEqual(cm.metadata.ownerReferences, [{ apiVersion: 'custos.io/v1alpha1', kind: 'AccessPolicy', name: 'billing', uid: 'uid-payments-billing', controller: true }]);
      assert.deepEqual(Object.keys(cm.data).sort(), ['policy.yaml', 'sidecar.yaml']);
      const policyYaml = cm.data['policy.yaml'] ?? '';
      assert.equal(cm.metadata.annotations[POLICY_CONFIGMAP_ANNOTATIONS.policyDigest], sha256Hex(policyYaml));
      assert.equal(apply.policyDigest, sha256Hex(policyYaml));
      assert.equal(cm.metadata.annotations[POLICY_CONFIGMAP_ANNOTATIONS.dataDigest], dataDigest(cm.data));
      assert.equal(cm.metadata.annotations[POLICY_CONFIGMAP_ANNOTATIONS.policyGeneration], '1');
      assert.deepEqual(apply.policy, { namespace: 'payments', name: 'billing', uid: 'uid-payments-billing', generation: 1 });
    });

    it('writes policy.yaml that the sidecar parses and compiles back to the same spec', () => {
      const policyYaml = only(applies(actions)).configMap.data['policy.yaml'] ?? '';
      const parsed = parsePolicyYaml(policyYaml, 'policy.yaml');
      assert.deepEqual(parsed, { apiVersion: 'custos.io/v1alpha1', kind: 'AccessPolicy', metadata: { name: 'billing', namespace: 'payments' }, spec: BASE_SPEC });
      assert.equal(compilePolicy(parsed).name, 'billing');
      assert.doesNotMatch(policyYaml, /resourceVersion|generation|uid|status/, 'nothing that changes without the spec changing');
    });

    it('writes sidecar.yaml that the sidecar config loader accepts', () => {
      const sidecarYaml = only(applies(actions)).configMap.data['sidecar.yaml'] ?? '';
      assert.deepEqual(parseYaml(sidecarYaml), renderSidecarConfig(policy('billing'), SETTINGS));
      assert.equal(resolveSidecarConfig(parseYaml(sidecarYaml), '/', {}).policyFile, POLICY_FILE);
    });

    it('reports Ready=True/ConfigMapReady with observedGeneration and a whole-second lastTransitionTime', () => {
      assert.deepEqual(only(statuses(actions)), {
        kind: 'update-status', namespace: 'payments', name: 'billing', resourceVersion: '10',
        status: {
          observedGeneration: 1,
          selectedPods: 0,
          conditions: [{
            type: 'Ready', status: 'True', observedGeneration: 1, lastTransitionTime: '2025-03-01T12:00:00Z',
            reason: 'ConfigMapReady', message: 'ConfigMap custos-policy-billing holds generation 1',
          }],
        },
      });
    });
  });

  describe('is idempotent: planning on the result of its own actions yields no action', () => {
    const cases: Array<[string, ObservedState]> = [
      ['a new policy', world({ policies: [policy('billing')] })],
      ['an invalid policy', world({ policies: [policy('billing', { spec: { ...BASE_SPEC, rules: [{ name: 'r', action: 'allow', targets: ['billng'] }] } })] })],
      ['two policies selecting one pod', world({
        policies: [policy('billing'), policy('ledger', { spec: { ...BASE_SPEC, selector: { matchLabels: { team: 'money' } } } })],
        pods: [pod('api-1', { app: 'billing', team: 'money' }), pod('api-2', { app: 'billing' })],
      })],
      ['an orphaned ConfigMap', world({
        configMaps: [{ metadata: { name: 'custos-policy-gone', namespace: 'payments', uid: 'u', resourceVersion: '5', labels: { 'app.kubernetes.io/managed-by': 'custos-operator', 'custos.io/policy': 'gone' } }, data: {} }],
      })],
      ['a namespace not opted in', world({ policies: [policy('billing')], namespaces: [namespace('payments', {})] })],
      ['pods in every phase', world({
        policies: [policy('billing')],
        pods: ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'].map((phase, i) => pod(`p${i}`, { app: 'billing' }, { phase })),
      })],
    ];
    for (const [label, state] of cases) {
      it(`for ${label}`, () => {
        const first = plan(state);
        assert.ok(first.length > 0, 'the first plan has work to do');
        const converged = applyActions(state, first);
        assert.deepEqual(plan(converged, LATER), []);
      });
    }
  });

  describe('a changed spec', () => {
    const before = converge(world({ policies: [policy('billing')], pods: [pod('api-1', { app: 'billing' })] }));
    const changedSpec: AccessPolicySpec = { ...BASE_SPEC, defaultAction: 'require-approval', defaultApproval: { reviewers: { groups: ['dba'] } } };
    const changed: ObservedState = {
      ...before,
      policies: before.policies.map((p) => ({ ...p, metadata: { ...p.metadata, generation: 2 }, spec: changedSpec })),
    };
    const actions = plan(changed, LATER);

    it('replaces the ConfigMap at its observed resourceVersion with the new policy', () => {
      const apply = only(applies(actions));
      const observed = only(before.configMaps);
      assert.equal(apply.reason, 'out-of-date');
      assert.equal(apply.configMap.metadata.resourceVersion, observed.metadata?.resourceVersion);
      assert.equal(parsePolicyYaml(apply.configMap.data['policy.yaml'] ?? '', 'policy.yaml').spec.defaultAction, 'require-approval');
      assert.notEqual(apply.policyDigest, observed.metadata?.annotations?.[POLICY_CONFIGMAP_ANNOTATIONS.policyDigest]);
      assert.equal(apply.configMap.metadata.annotations[POLICY_CONFIGMAP_ANNOTATIONS.policyGeneration], '2');
    });

    it('moves observedGeneration to 2 and keeps Ready\'s lastTransitionTime (still True)', () => {
      const status = only(statuses(actions)).status;
      assert.equal(status.observedGeneration, 2);
      assert.equal(status.selectedPods, 1);
      assert.deepEqual(status.conditions, [{
        type: 'Ready', status: 'True', observedGeneration: 2, lastTransitionTime: '2025-03-01T12:00:00Z',
        reason: 'ConfigMapReady', message: 'ConfigMap custos-policy-billing holds generation 2',
      }]);
    });
  });

  describe('an invalid policy', () => {
    const invalidCases: Array<{ label: string; spec?: AccessPolicySpec; name?: string; field: RegExp }> = [
      {
        label: 'a rule naming an unknown target (passes the CRD schema, fails compile)',
        spec: { ...BASE_SPEC, rules: [{ name: 'reads', targets: ['billng'], action: 'allow' }] },
        field: /spec\.rules\[0\]\.targets\[0\]: unknown target "billng"/,
      },
      {
        label: 'a schema violation that reached the cache (an action the CRD does not allow)',
        spec: { ...BASE_SPEC, rules: [{ name: 'reads', action: 'permit' as 'allow' }] },
        field: /spec\.rules\[0\]\.action: Unsupported value: "permit": supported values: "allow", "deny", "require-approval"/,
      },
      {
        label: 'a malformed selector (Exists with values)',
        spec: { ...BASE_SPEC, selector: { matchExpressions: [{ key: 'app', operator: 'Exists', values: ['x'] }] } },
        field: /spec\.selector\.matchExpressions\[0\]\.values: Forbidden \(operator Exists takes no values\)/,
      },
      {
        label: 'a name too long for the ConfigMap label',
        name: 'b'.repeat(64),
        field: /metadata\.name: Too long: must be no more than 63 characters/,
      },
    ];
    for (const c of invalidCases) {
      it(`leaves the last good ConfigMap alone and says Ready=False/InvalidPolicy naming the field, for ${c.label}`, () => {
        const name = c.name ?? 'billing';
        // Generation 1 valid (except for the too-long name, which never was), generation 2 broken.
        const good = converge(world({ policies: [policy(name)] }));
        const broken: ObservedState = {
          ...good,
          policies: good.policies.map((p) => ({ ...p, metadata: { ...p.metadata, generation: 2 }, spec: structuredClone(c.spec ?? BASE_SPEC) })),
        };
        const actions = plan(broken, LATER);
        assert.deepEqual(applies(actions), [], 'no ConfigMap write');
        const status = only(statuses(actions)).status;
        const condition = only(status.conditions ?? []);
        assert.equal(status.observedGeneration, 2);
        assert.equal(condition.status, 'False');
        assert.equal(condition.reason, 'InvalidPolicy');
        assert.match(condition.message ?? '', c.field);
        if (c.name === undefined) {
          assert.match(condition.message ?? '', /sidecars keep enforcing generation 1 \(ConfigMap custos-policy-billing is unchanged\)/);
          assert.equal(condition.lastTransitionTime, '2025-03-01T13:30:00Z', 'True → False is a transition');
        }
      });
    }

    it('writes no ConfigMap when the policy was never valid, and says so', () => {
      const actions = plan(world({ policies: [policy('billing', { spec: { ...BASE_SPEC, rules: [{ name: 'r', action: 'allow', subjects: ['nobody'] }] } })] }));
      assert.deepEqual(actions.map((a) => a.kind), ['update-status']);
      const condition = only(only(statuses(actions)).status.conditions ?? []);
      assert.equal(condition.message, 'spec.rules[0].subjects[0]: unknown subject "nobody"; ConfigMap custos-policy-billing is not written until the policy is valid');
    });

    it('reports every problem, not just the first', () => {
      const spec: AccessPolicySpec = { ...BASE_SPEC, rules: [{ name: 'a', action: 'allow', targets: ['x'] }, { name: 'a', action: 'deny', subjects: ['y'] }] };
      const condition = only(only(statuses(plan(world({ policies: [policy('billing', { spec })] })))).status.conditions ?? []);
      assert.match(condition.message ?? '', /spec\.rules\[0\]\.targets\[0\]: unknown target "x"/);
      assert.match(condition.message ?? '', /spec\.rules\[1\]\.name: duplicate rule name "a"/);
      assert.match(condition.message ?? '', /spec\.rules\[1\]\.subjects\[0\]: unknown subject "y"/);
    });

    it('becomes Ready again when fixed, with a new lastTransitionTime', () => {
      const broken = converge(world({ policies: [policy('billing', { spec: { ...BASE_SPEC, rules: [{ name: 'r', action: 'allow', targets: ['nope'] }] } })] }));
      assert.equal(ready(broken, 'billing').status, 'False');
      const fixed: ObservedState = { ...broken, policies: broken.policies.map((p) => ({ ...p, metadata: { ...p.metadata, generation: 2 }, spec: structuredClone(BASE_SPEC) })) };
      const after = converge(fixed, LATER);
      assert.equal(ready(after, 'billing').status, 'True');
      assert.equal(ready(after, 'billing').lastTransitionTime, '2025-03-01T13:30:00Z');
      assert.equal(only(after.configMaps).metadata?.annotations?.[POLICY_CONFIGMAP_ANNOTATIONS.policyGeneration], '2');
    });

    it('refuses a policy too large for a ConfigMap with Ready=False/PolicyTooLarge', () => {
      const rules = Array.from({ length: 2200 }, (_, i) => ({ name: `r${i}`, action: 'deny' as const, message: 'm'.repeat(500) }));
      const actions = plan(world({ policies: [policy('billing', { spec: { ...BASE_SPEC, rules } })] }));
      assert.deepEqual(applies(actions), []);
      const condition = only(only(statuses(actions)).status.conditions ?? []);
      assert.equal(condition.reason, 'PolicyTooLarge');
      assert.match(condition.message ?? '', /^spec: the policy renders to \d+ bytes, more than the 1048576 a ConfigMap holds/);
    });
  });

  describe('selected pods', () => {
    it('counts running and pending pods the selector matches, and none that terminated or that the webhook never governs', () => {
      const pods = [
        pod('running', { app: 'billing' }),
        pod('pending', { app: 'billing' }, { phase: 'Pending' }),
        pod('unknown', { app: 'billing' }, { phase: 'Unknown' }),
        pod('succeeded', { app: 'billing' }, { phase: 'Succeeded' }),
        pod('failed', { app: 'billing' }, { phase: 'Failed' }),
        pod('other-app', { app: 'ledger' }),
        pod('no-labels', {}),
        pod('other-namespace', { app: 'billing' }, { namespace: 'ledger' }),
        pod('opted-out', { app: 'billing', 'custos.io/inject': 'false' }),
        pod('custos-itself', { app: 'billing', 'app.kubernetes.io/part-of': 'custos' }),
        pod('host-network', { app: 'billing' }, { hostNetwork: true }),
      ];
      const status = only(statuses(plan(world({ policies: [policy('billing')], pods })))).status;
      assert.equal(status.selectedPods, 3);
    });

    it('counts every pod of the namespace for a policy without selector', () => {
      const spec: AccessPolicySpec = { targets: BASE_SPEC.targets, rules: BASE_SPEC.rules };
      const pods = [pod('a', {}), pod('b', { x: 'y' }), pod('c', {}, { namespace: 'elsewhere' })];
      assert.equal(only(statuses(plan(world({ policies: [policy('billing', { spec })], pods })))).status.selectedPods, 2);
    });

    it('updates the count, and only the count, when a pod terminates', () => {
      const running = converge(world({ policies: [policy('billing')], pods: [pod('a', { app: 'billing' }), pod('b', { app: 'billing' })] }));
      assert.equal(running.policies[0]?.status?.selectedPods, 2);
      const oneDone: ObservedState = { ...running, pods: [pod('a', { app: 'billing' }), pod('b', { app: 'billing' }, { phase: 'Succeeded' })] };
      const actions = plan(oneDone, LATER);
      const status = only(statuses(actions)).status;
      assert.equal(actions.length, 1);
      assert.equal(status.selectedPods, 1);
      assert.deepEqual(status.conditions, only(running.policies).status?.conditions, 'Ready untouched');
    });
  });

  describe('ambiguous selection', () => {
    const ledgerSpec: AccessPolicySpec = { ...BASE_SPEC, selector: { matchLabels: { team: 'money' } } };
    const state = world({
      policies: [policy('ledger', { spec: ledgerSpec }), policy('billing')],
      pods: [pod('api-1', { app: 'billing', team: 'money' }), pod('api-2', { app: 'billing', team: 'money' }), pod('api-3', { app: 'billing' }), pod('worker', { team: 'money' })],
    });
    const actions = plan(state);

    it('marks both policies Ready=False/AmbiguousSelection naming the pods and the other policy', () => {
      const byName = new Map(statuses(actions).map((a) => [a.name, only(a.status.conditions ?? [])]));
      assert.deepEqual({ ...byName.get('billing'), lastTransitionTime: undefined }, {
        type: 'Ready', status: 'False', reason: 'AmbiguousSelection', observedGeneration: 1, lastTransitionTime: undefined,
        message: 'pods api-1, api-2 are also selected by AccessPolicy ledger; the webhook refuses to create a pod that several policies select: narrow spec.selector so that one policy selects each pod',
      });
      assert.match(byName.get('ledger')?.message ?? '', /^pods api-1, api-2 are also selected by AccessPolicy billing;/);
    });

    it('still writes both ConfigMaps: pods selected by one policy only keep working', () => {
      assert.deepEqual(applies(actions).map((a) => a.name), ['custos-policy-billing', 'custos-policy-ledger']);
    });

    it('counts shared pods for both policies', () => {
      assert.deepEqual(statuses(actions).map((a) => [a.name, a.status.selectedPods]), [['billing', 3], ['ledger', 3]]);
    });

    it('names at most five pods and groups them by the other policies', () => {
      const pods = Array.from({ length: 7 }, (_, i) => pod(`p${i}`, { app: 'billing', team: 'money' }));
      const third = policy('third', { spec: { ...BASE_SPEC, selector: { matchLabels: { tier: 'x' } } } });
      const message = only(statuses(plan(world({
        policies: [policy('billing'), policy('ledger', { spec: ledgerSpec }), third],
        pods: [...pods, pod('q', { app: 'billing', team: 'money', tier: 'x' })],
      }))).filter((a) => a.name === 'billing')).status.conditions?.[0]?.message;
      assert.equal(message, 'pods p0, p1, p2, p3, p4 and 2 more are also selected by AccessPolicy ledger; pod q is also selected by AccessPolicies ledger, third; the webhook refuses to create a pod that several policies select: narrow spec.selector so that one policy selects each pod');
    });

    it('ignores pods the webhook skips before selecting (opted out)', () => {
      const quiet = world({ policies: state.policies, pods: [pod('api-1', { app: 'billing', team: 'money', 'custos.io/inject': 'false' })] });
      for (const a of statuses(plan(quiet))) assert.equal(a.status.conditions?.[0]?.reason, 'ConfigMapReady');
    });

    it('ranks an invalid policy above ambiguity', () => {
      const invalid = policy('ledger', { spec: { ...ledgerSpec, rules: [{ name: 'r', action: 'allow', targets: ['x'] }] } });
      const reasons = statuses(plan(world({ policies: [policy('billing'), invalid], pods: state.pods }))).map((a) => [a.name, a.status.conditions?.[0]?.reason]);
      // The invalid policy still selects the pod (the webhook sees every policy), so billing stays ambiguous.
      assert.deepEqual(reasons, [['billing', 'AmbiguousSelection'], ['ledger', 'InvalidPolicy']]);
    });
  });

  describe('ConfigMap drift', () => {
    const converged = converge(world({ policies: [policy('billing')] }));
    const observed = only(converged.configMaps);
    const drifted = (change: (cm: ObservedConfigMap) => ObservedConfigMap): ObservedState => ({ ...converged, configMaps: [change(structuredClone(observed))] });
    const table: Array<[string, (cm: ObservedConfigMap) => ObservedConfigMap]> = [
      ['policy.yaml edited by hand', (cm) => ({ ...cm, data: { ...cm.data, 'policy.yaml': 'spec: {}' } })],
      ['a key added (a file in the sidecar\'s policy directory)', (cm) => ({ ...cm, data: { ...cm.data, 'extra.yaml': 'x' } })],
      ['binaryData added', (cm) => ({ ...cm, binaryData: { blob: 'AAAA' } })],
      ['our label removed', (cm) => ({ ...cm, metadata: { ...cm.metadata, labels: { 'custos.io/policy': 'billing' } } })],
      ['the digest annotation changed', (cm) => ({ ...cm, metadata: { ...cm.metadata, annotations: { ...cm.metadata?.annotations, 'custos.io/data-digest': 'x' } } })],
      ['another controller owning it', (cm) => ({ ...cm, metadata: { ...cm.metadata, ownerReferences: [{ apiVersion: 'v1', kind: 'Secret', name: 's', uid: 'other', controller: true }] } })],
      ['an owner left over from a deleted policy of the same name', (cm) => ({ ...cm, metadata: { ...cm.metadata, ownerReferences: [{ apiVersion: 'custos.io/v1alpha1', kind: 'AccessPolicy', name: 'billing', uid: 'old-uid', controller: true }] } })],
    ];
    for (const [label, change] of table) {
      it(`rewrites the ConfigMap when ${label}`, () => {
        const state = drifted(change);
        const apply = only(plan(state, LATER));
        assert.equal(apply.kind, 'apply-configmap');
        assert.deepEqual(plan(applyActions(state, [apply]), LATER), []);
      });
    }

    it('keeps labels, annotations and non-controller owners that others put on it', () => {
      const state = drifted((cm) => ({
        ...cm,
        data: { 'policy.yaml': 'x' },
        metadata: {
          ...cm.metadata,
          labels: { ...cm.metadata?.labels, team: 'payments' },
          annotations: { ...cm.metadata?.annotations, note: 'hi' },
          ownerReferences: [...(cm.metadata?.ownerReferences ?? []), { apiVersion: 'v1', kind: 'Namespace', name: 'payments', uid: 'ns-uid' }],
        },
      }));
      const manifest = only(applies(plan(state, LATER))).configMap;
      assert.equal(manifest.metadata.labels['team'], 'payments');
      assert.equal(manifest.metadata.annotations['note'], 'hi');
      assert.deepEqual(manifest.metadata.ownerReferences?.map((o) => o.uid), ['ns-uid', 'uid-payments-billing']);
    });

    it('ignores changes to labels and annotations that are not ours', () => {
      const state = drifted((cm) => ({ ...cm, metadata: { ...cm.metadata, labels: { ...cm.metadata?.labels, team: 'x' }, annotations: { note: 'y', ...cm.metadata?.annotations } } }));
      assert.deepEqual(plan(state, LATER), []);
    });

    it('takes over a same-named ConfigMap that someone else created', () => {
      const squatter: ObservedConfigMap = { metadata: { name: 'custos-policy-billing', namespace: 'payments', uid: 'sq', resourceVersion: '3' }, data: { 'policy.yaml': 'permissive' } };
      const apply = only(applies(plan(world({ policies: [policy('billing')], configMaps: [squatter] }))));
      assert.equal(apply.configMap.metadata.resourceVersion, '3');
      assert.equal(apply.configMap.metadata.labels['app.kubernetes.io/managed-by'], 'custos-operator');
    });
  });

  describe('status without churn', () => {
    it('writes nothing when only the clock moved', () => {
      const converged = converge(world({ policies: [policy('billing')] }));
      assert.deepEqual(plan(converged, new Date('2030-01-01T00:00:00Z')), []);
    });

    it('keeps conditions of other types and other status fields', () => {
      const foreign: AccessPolicyCondition = { type: 'Audited', status: 'True', reason: 'X', message: 'm', lastTransitionTime: '2024-01-01T00:00:00Z' };
      const p: AccessPolicy = { ...policy('billing'), status: { conditions: [foreign], extra: 'kept' } as AccessPolicyStatus };
      const status = only(statuses(plan(world({ policies: [p] })))).status;
      assert.deepEqual(status.conditions?.map((c) => c.type), ['Audited', 'Ready']);
      assert.deepEqual(status.conditions[0], foreign);
      assert.equal((status as Record<string, unknown>)['extra'], 'kept');
    });

    it('keeps lastTransitionTime when reason and message change but status does not', () => {
      const ok = converge(world({ policies: [policy('billing')] }));
      const ambiguous: ObservedState = {
        ...ok,
        policies: [...ok.policies, policy('ledger', { spec: { ...BASE_SPEC, selector: {} } })],
        pods: [pod('a', { app: 'billing' })],
      };
      const first = converge(ambiguous, LATER);
      assert.equal(ready(first, 'billing').reason, 'AmbiguousSelection');
      assert.equal(ready(first, 'billing').lastTransitionTime, '2025-03-01T13:30:00Z');
      const namespaceOff = converge({ ...ok, namespaces: [namespace('payments', {})] }, LATER);
      assert.equal(ready(namespaceOff, 'billing').lastTransitionTime, '2025-03-01T12:00:00Z', 'True → True keeps the time');
      assert.match(ready(namespaceOff, 'billing').message ?? '', /namespace payments is not labelled custos\.io\/injection=enabled, so no pod gets the sidecar$/);
    });
  });

  describe('orphaned ConfigMaps', () => {
    const managed = (name: string, policyLabel: string | undefined, extra: Partial<ObservedConfigMap['metadata']> = {}): ObservedConfigMap => ({
      metadata: {
        name, namespace: 'payments', uid: `uid-${name}`, resourceVersion: '7',
        labels: { 'app.kubernetes.io/managed-by': 'custos-operator', ...(policyLabel === undefined ? {} : { 'custos.io/policy': policyLabel }) },
        ...extra,
      },
      data: {},
    });

    it('deletes a managed ConfigMap whose policy is gone, with uid and resourceVersion preconditions', () => {
      assert.deepEqual(plan(world({ configMaps: [managed('custos-policy-gone', 'gone')] })), [{
        kind: 'delete-configmap', namespace: 'payments', name: 'custos-policy-gone', policy: 'gone', preconditions: { uid: 'uid-custos-policy-gone', resourceVersion: '7' },
      }]);
    });

    const spared: Array<[string, ObservedState]> = [
      ['its policy exists', converge(world({ policies: [policy('billing')] }))],
      ['its policy exists but is being deleted (garbage collection removes it)', world({ policies: [policy('billing', { deleting: true })], configMaps: [managed('custos-policy-billing', 'billing')] })],
      ['it is not labelled managed-by custos-operator', world({ configMaps: [{ metadata: { name: 'custos-policy-gone', namespace: 'payments', labels: { 'custos.io/policy': 'gone' } } }] })],
      ['its name is not the one its label gives (a copied label)', world({ configMaps: [managed('app-settings', 'gone')] })],
      ['it has no policy label', world({ configMaps: [managed('custos-policy-gone', undefined)] })],
      ['it is being deleted already', world({ configMaps: [managed('custos-policy-gone', 'gone', { deletionTimestamp: '2025-01-01T00:00:00Z' })] })],
      ['its namespace is being deleted', world({ configMaps: [managed('custos-policy-gone', 'gone')], namespaces: [namespace('payments', {}, 'Terminating')] })],
    ];
    for (const [label, state] of spared) {
      it(`spares it when ${label}`, () => {
        assert.deepEqual(plan(state).filter((a) => a.kind === 'delete-configmap'), []);
      });
    }

    it('deletes it when a policy of that name exists in another namespace only', () => {
      const state = world({ policies: [policy('gone', { namespace: 'ledger' })], configMaps: [managed('custos-policy-gone', 'gone')] });
      assert.deepEqual(plan(state).filter((a) => a.kind === 'delete-configmap').map((a) => `${a.namespace}/${a.name}`), ['payments/custos-policy-gone']);
    });
  });

  describe('policies going away', () => {
    it('plans nothing for a policy being deleted', () => {
      assert.deepEqual(plan(world({ policies: [policy('billing', { deleting: true })] })), []);
    });

    it('plans nothing for a policy in a terminating namespace', () => {
      assert.deepEqual(plan(world({ policies: [policy('billing')], namespaces: [namespace('payments', {}, 'Terminating')] })), []);
    });
  });

  it('orders actions by namespace and name whatever the input order', () => {
    const policies = [policy('b'), policy('a'), policy('c', { namespace: 'alpha' }), policy('a', { namespace: 'zeta' })];
    const orphan: ObservedConfigMap = { metadata: { name: 'custos-policy-x', namespace: 'alpha', labels: { 'app.kubernetes.io/managed-by': 'custos-operator', 'custos.io/policy': 'x' } } };
    const expected = plan(world({ policies, configMaps: [orphan] }));
    assert.deepEqual(expected.map((a) => `${a.kind} ${a.namespace}/${a.name}`), [
      'apply-configmap alpha/custos-policy-c', 'update-status alpha/c',
      'apply-configmap payments/custos-policy-a', 'update-status payments/a',
      'apply-configmap payments/custos-policy-b', 'update-status payments/b',
      'apply-configmap zeta/custos-policy-a', 'update-status zeta/a',
      'delete-configmap alpha/custos-policy-x',
    ]);
    for (let shift = 1; shift < policies.length; shift++) {
      const rotated = [...policies.slice(shift), ...policies.slice(0, shift)];
      assert.deepEqual(plan(world({ policies: rotated, configMaps: [orphan] })), expected);
      assert.deepEqual(plan(world({ policies: rotated.reverse(), configMaps: [orphan] })), expected);
    }
  });
});
