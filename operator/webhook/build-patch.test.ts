// Golden tests for the injection patch builder, plus properties over generated pods.
//
// Each case in testdata/ is `<case>.pod.yaml` + `<case>.policy.yaml` (zero or more AccessPolicy
// documents; optional `<case>.namespace.yaml`, default: namespace `payments` labelled
// custos.io/injection=enabled) and exactly one expected result:
//   <case>.patch.json   the RFC 6902 patch the webhook returns
//   <case>.skip.json    {reason, message} of a skip (admitted unchanged)
//   <case>.reject.json  {reason, message} of a rejection
// The test builds every case in memory and compares. After an intended change, regenerate with
//
//   UPDATE_GOLDEN=1 node --test operator/webhook/build-patch.test.ts
//
// and review the diff. Two pod fixtures are derived from another case's output (the injected pod as
// the API server would store it, fed back in on reinvocation); UPDATE_GOLDEN rewrites them too.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse as parseYaml, parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import { resolveSidecarConfig } from '../../sidecar/config.ts';
import {
  ANNOTATION_DEFAULT_CONTAINER,
  ANNOTATION_STATUS,
  REJECT_REASONS,
  SKIP_REASONS,
  buildInjectionPatch,
  credentialsVolumeName,
  parseStatus,
  type InjectionInput,
  type InjectionResult,
} from './build-patch.ts';
import { DEFAULT_INJECTION_SETTINGS, validateInjectionSettings, type InjectionSettings } from './injection-settings.ts';
import { applyJsonPatch } from './json-patch.ts';
import type { ContainerLike, PodLike } from './pod-types.ts';
import { assignListenPorts, renderSidecarConfig } from './sidecar-config.ts';

const TESTDATA = join(import.meta.dirname, 'testdata');
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';
const SETTINGS = DEFAULT_INJECTION_SETTINGS;
const ENABLED = { name: 'payments', labels: { 'kubernetes.io/metadata.name': 'payments', 'custos.io/injection': 'enabled' } };

function readYaml(file: string): unknown {
  return parseYaml(readFileSync(join(TESTDATA, file), 'utf8'));
}

function readPolicies(file: string): AccessPolicy[] {
  return parseAllDocuments(readFileSync(join(TESTDATA, file), 'utf8'))
    .map((d) => d.toJS() as AccessPolicy | null)
    .filter((p): p is AccessPolicy => p !== null);
}

function loadCase(name: string): InjectionInput {
  const nsFile = `${name}.namespace.yaml`;
  const ns = existsSync(join(TESTDATA, nsFile)) ? (readYaml(nsFile) as { metadata: { name: string; labels?: Record<string, string> } }) : undefined;
  return {
    pod: readYaml(`${name}.pod.yaml`) as PodLike,
    namespace: ns ? { name: ns.metadata.name, labels: ns.metadata.labels ?? {} } : ENABLED,
    policies: readPolicies(`${name}.policy.yaml`),
    settings: SETTINGS,
  };
}

/** What the API server adds between our patch and the next webhook call (defaulting on decode). */
function simulateApiDefaults(pod: PodLike): PodLike {
  const out = structuredClone(pod);
  const spec = out.spec ?? {};
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    c['terminationMessagePath'] ??= '/dev/termination-log';
    c['terminationMessagePolicy'] ??= 'File';
    c['imagePullPolicy'] ??= 'IfNotPresent';
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const p = c[probe] as Record<string, unknown> | undefined;
      if (p !== undefined) {
        p['timeoutSeconds'] ??= 1;
        p['successThreshold'] ??= 1;
        p['periodSeconds'] ??= 10;
        p['failureThreshold'] ??= 3;
        (p['httpGet'] as Record<string, unknown>)['scheme'] ??= 'HTTP';
      }
    }
  }
  for (const v of spec.volumes ?? []) {
    for (const kind of ['configMap', 'secret', 'projected'] as const) {
      const source = v[kind] as Record<string, unknown> | undefined;
      if (source !== undefined) source['defaultMode'] ??= 420;
    }
  }
  spec['restartPolicy'] ??= 'Always';
  spec['dnsPolicy'] ??= 'ClusterFirst';
  return out;
}

function injected(input: InjectionInput): PodLike {
  const result = buildInjectionPatch(input);
  assert.equal(result.kind, 'patch', `expected a patch, got ${JSON.stringify(result)}`);
  return applyJsonPatch(input.pod, result.patch);
}

/** Pod fixtures produced from another case: the injected pod as the API server stores it, then changed. */
const DERIVED: Record<string, { from: string; header: string; derive: (pod: PodLike) => PodLike }> = {
  'already-injected': {
    from: 'basic',
    header: 'basic.pod.yaml after its patch and API-server defaulting, fed back in on reinvocation: nothing to do.',
    derive: (pod) => pod,
  },
  'reinvocation-sidecar-removed': {
    from: 'basic',
    header:
      'basic.pod.yaml injected, then a later webhook dropped custos-sidecar and its spool volume and added its own\n' +
      '# container; the status annotation is still there. Custos strips what is left of its injection and injects again.',
    derive: (pod) => {
      const spec = pod.spec ?? {};
      spec.initContainers = (spec.initContainers ?? []).filter((c) => c.name !== 'custos-sidecar');
      spec.volumes = (spec.volumes ?? []).filter((v) => v.name !== 'custos-spool');
      spec.containers = [...(spec.containers ?? []), { name: 'vault-agent', image: 'hashicorp/vault:1.17' }];
      return pod;
    },
  },
};

function derivedPod(name: string): { pod: PodLike; text: string } | undefined {
  const d = DERIVED[name];
  if (d === undefined) return undefined;
  const pod = d.derive(simulateApiDefaults(injected(loadCase(d.from))));
  return { pod, text: `# Derived (UPDATE_GOLDEN=1 regenerates it): ${d.header}\n${stringifyYaml(pod)}` };
}

function expectedFile(result: InjectionResult): { suffix: string; body: unknown } {
  if (result.kind === 'patch') return { suffix: 'patch.json', body: result.patch };
  return { suffix: `${result.kind}.json`, body: { reason: result.reason, message: result.message } };
}

const cases = readdirSync(TESTDATA).filter((f) => f.endsWith('.policy.yaml')).map((f) => f.slice(0, -'.policy.yaml'.length)).sort();

describe('buildInjectionPatch golden fixtures', () => {
  it('has the cases the design asks for', () => {
    for (const required of ['basic', 'existing-init-and-volumes', 'opted-out', 'host-network', 'runs-as-proxy-uid', 'adds-net-admin', 'already-injected', 'no-policy-selects-pod', 'two-policies', 'deployment-generate-name', 'reinvocation-sidecar-removed']) {
      assert.ok(cases.includes(required), `missing fixture ${required}`);
    }
  });

  for (const name of cases) {
    it(`matches the golden result for ${name}`, () => {
      const derived = derivedPod(name);
      if (derived !== undefined) {
        const file = join(TESTDATA, `${name}.pod.yaml`);
        if (UPDATE) writeFileSync(file, derived.text);
        assert.equal(readFileSync(file, 'utf8'), derived.text, `${name}.pod.yaml is stale: run UPDATE_GOLDEN=1`);
      }
      const result = buildInjectionPatch(loadCase(name));
      const { suffix, body } = expectedFile(result);
      const text = JSON.stringify(body, null, 2) + '\n';
      const golden = join(TESTDATA, `${name}.${suffix}`);
      if (UPDATE) {
        for (const other of ['patch.json', 'skip.json', 'reject.json']) {
          if (other !== suffix && existsSync(join(TESTDATA, `${name}.${other}`))) unlinkSync(join(TESTDATA, `${name}.${other}`));
        }
        writeFileSync(golden, text);
      }
      assert.ok(existsSync(golden), `${name}: expected ${name}.${suffix} (result ${result.kind}: ${'reason' in result ? result.reason : ''}); run UPDATE_GOLDEN=1`);
      assert.equal(text, readFileSync(golden, 'utf8'));
      // A patch must apply cleanly to the pod it was computed for.
      if (result.kind === 'patch') applyJsonPatch(loadCase(name).pod, result.patch);
    });
  }
});

const SIDECAR = 'custos-sidecar';
const initNames = (pod: PodLike): string[] => (pod.spec?.initContainers ?? []).map((c) => c.name);
const find = (pod: PodLike, name: string): ContainerLike | undefined => pod.spec?.initContainers?.find((c) => c.name === name);

describe('buildInjectionPatch', () => {
  it('injects custos-init, then the native sidecar, before the app init containers', () => {
    const pod = injected(loadCase('existing-init-and-volumes'));
    assert.deepEqual(initNames(pod), ['custos-init', SIDECAR, 'migrate']);
    assert.equal(find(pod, SIDECAR)?.restartPolicy, 'Always');
    assert.deepEqual(
      (pod.spec?.volumes ?? []).map((v) => v.name),
      ['scratch', 'app-config', 'kube-api-access-x7k2p', 'custos-policy', 'custos-sidecar-config', 'custos-token', 'custos-spool', 'custos-xtables-lock', 'custos-credentials-billing-db'],
    );
    // The app's own default-container choice wins.
    assert.equal(pod.metadata?.annotations?.[ANNOTATION_DEFAULT_CONTAINER], 'worker');
    assert.equal(pod.metadata.annotations['prometheus.io/scrape'], 'true');
  });

  it('points kubectl at the first app container and records the status', () => {
    const pod = injected(loadCase('basic'));
    assert.equal(pod.metadata?.annotations?.[ANNOTATION_DEFAULT_CONTAINER], 'api');
    assert.equal(pod.metadata.labels?.['custos.io/injected'], 'true');
    const status = parseStatus(pod.metadata.annotations[ANNOTATION_STATUS]);
    assert.equal(status?.policy, 'billing');
    assert.equal(status.version, SETTINGS.version);
    assert.deepEqual(status.initContainers, ['custos-init', SIDECAR]);
  });

  it('gives custos-init only NET_ADMIN and NET_RAW, root only for iptables, on a read-only root', () => {
    const init = find(injected(loadCase('basic')), 'custos-init');
    assert.deepEqual(init?.securityContext, {
      allowPrivilegeEscalation: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: false,
      runAsUser: 0,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const spec = JSON.parse((init.env ?? [])[0]?.value ?? '{}') as { proxyUid: number; redirects: unknown[] };
    assert.equal(spec.proxyUid, 17337);
    assert.deepEqual(spec.redirects, [{ target: 'billing', protocol: 'postgres', host: 'billing-db.payments.svc', port: 5432, listenPort: 17100 }]);
  });

  it('mounts a projected token with audience custos for 3600 s into the sidecar only', () => {
    const pod = injected(loadCase('basic'));
    const token = pod.spec?.volumes?.find((v) => v.name === 'custos-token');
    assert.deepEqual(token?.['projected'], { sources: [{ serviceAccountToken: { audience: 'custos', expirationSeconds: 3600, path: 'token' } }] });
    assert.deepEqual(pod.spec?.containers?.[0]?.volumeMounts, undefined);
    assert.ok(find(pod, SIDECAR)?.volumeMounts?.some((m) => m.name === 'custos-token'));
  });

  it('mounts one volume per credentials Secret, with a digest name when the Secret name cannot be a volume name', () => {
    const pod = injected(loadCase('multiple-targets'));
    const mounts = (find(pod, SIDECAR)?.volumeMounts ?? []).filter((m) => m.name.startsWith('custos-credentials-'));
    assert.deepEqual(mounts.map((m) => m.mountPath), ['/var/run/custos/credentials/reports-db', '/var/run/custos/credentials/warehouse.readonly.credentials-for-the-nightly-reports']);
    assert.equal(mounts[0]?.name, 'custos-credentials-reports-db');
    assert.match(mounts[1]?.name ?? '', /^custos-credentials-[0-9a-f]{16}$/);
    assert.equal(credentialsVolumeName('warehouse.readonly.credentials-for-the-nightly-reports'), mounts[1]?.name);
  });

  it('assigns listener ports around an explicit listenPort', () => {
    const policy = loadCase('multiple-targets').policies[0];
    assert.ok(policy);
    assert.deepEqual([...assignListenPorts(policy, SETTINGS)], [['billing', 17101], ['ledger', 17100], ['warehouse', 17102]]);
  });

  it('reports the patch as reinjected when it strips an earlier injection', () => {
    const result = buildInjectionPatch(loadCase('reinvocation-sidecar-removed'));
    assert.equal(result.kind, 'patch');
    assert.equal(result.reason, 'reinjected');
    const basic = buildInjectionPatch(loadCase('basic'));
    assert.equal(basic.kind === 'patch' ? basic.reason : undefined, 'injected');
  });

  it('re-injects when another webhook changed the sidecar it injected (never trusts a container by name)', () => {
    const pod = simulateApiDefaults(injected(loadCase('basic')));
    const sidecar = find(pod, SIDECAR);
    assert.ok(sidecar?.securityContext);
    sidecar.securityContext.runAsUser = 0;
    const input = { ...loadCase('basic'), pod };
    const result = buildInjectionPatch(input);
    assert.equal(result.kind, 'patch');
    const again = applyJsonPatch(pod, result.patch);
    assert.equal(find(again, SIDECAR)?.securityContext?.runAsUser, 17337);
    assert.equal(buildInjectionPatch({ ...input, pod: again }).reason, 'already-injected');
  });

  it('re-injects after an upgrade changes the settings (the status annotation carries the version)', () => {
    const pod = simulateApiDefaults(injected(loadCase('basic')));
    const upgraded: InjectionSettings = { ...SETTINGS, version: '0.2.0', images: { ...SETTINGS.images, sidecar: 'ghcr.io/custos-io/custos:0.2.0' } };
    const result = buildInjectionPatch({ ...loadCase('basic'), pod, settings: upgraded });
    assert.equal(result.kind === 'patch' ? result.reason : result.reason, 'reinjected');
    const after = applyJsonPatch(pod, result.kind === 'patch' ? result.patch : []);
    assert.deepEqual(initNames(after), ['custos-init', SIDECAR]);
    assert.equal(find(after, SIDECAR)?.image, 'ghcr.io/custos-io/custos:0.2.0');
  });

  it('does not trust a forged status annotation', () => {
    const pod = structuredClone(loadCase('basic').pod);
    pod.metadata = { ...pod.metadata, annotations: { [ANNOTATION_STATUS]: JSON.stringify({ version: SETTINGS.version, policy: 'billing', fingerprint: 'x', initContainers: [], containers: [], volumes: [] }) } };
    const result = buildInjectionPatch({ ...loadCase('basic'), pod });
    assert.equal(result.kind, 'patch');
  });

  it('skips pods created by kubelets', () => {
    const result = buildInjectionPatch({ ...loadCase('basic'), requestUser: { username: 'system:node:worker-1', groups: ['system:nodes'] } });
    assert.equal(result.reason, 'node-created');
  });

  it('skips Custos own pods', () => {
    const input = loadCase('basic');
    const pod = structuredClone(input.pod);
    pod.metadata = { ...pod.metadata, labels: { app: 'billing', 'app.kubernetes.io/part-of': 'custos' } };
    assert.equal(buildInjectionPatch({ ...input, pod }).reason, 'custos-component');
  });

  it('ignores a policy with a malformed selector, with a warning', () => {
    const input = loadCase('basic');
    const broken = structuredClone(input.policies[0]);
    assert.ok(broken);
    broken.metadata.name = 'broken';
    broken.spec.selector = { matchExpressions: [{ key: 'app', operator: 'In' }] };
    const result = buildInjectionPatch({ ...input, policies: [...input.policies, broken] });
    assert.equal(result.kind, 'patch');
    assert.deepEqual(result.warnings, [
      'AccessPolicy broken: spec.selector.matchExpressions[0].values: Required value (operator In needs at least one value); the policy selects no pods until it is fixed',
    ]);
  });

  it('ignores policies of other namespaces', () => {
    const input = loadCase('basic');
    const elsewhere = input.policies.map((p) => ({ ...p, metadata: { ...p.metadata, namespace: 'other' } }));
    assert.equal(buildInjectionPatch({ ...input, policies: elsewhere }).reason, 'no-policy-selects-pod');
  });

  it('refuses group and capability variants of the bypasses', () => {
    const table: Array<[string, (pod: PodLike) => void, string]> = [
      ['pod runAsGroup 17337', (p) => { p.spec = { ...p.spec, securityContext: { runAsGroup: 17337 } }; }, 'runs-as-proxy-uid'],
      ['pod runAsUser 17337', (p) => { p.spec = { ...p.spec, securityContext: { runAsUser: 17337 } }; }, 'runs-as-proxy-uid'],
      ['supplementalGroups 17337', (p) => { p.spec = { ...p.spec, securityContext: { supplementalGroups: [5, 17337] } }; }, 'runs-as-proxy-uid'],
      ['CAP_NET_RAW spelled with the prefix', (p) => { const c = p.spec?.containers?.[0]; if (c) c.securityContext = { capabilities: { add: ['cap_net_raw'] } }; }, 'adds-net-admin'],
      ['ALL capabilities', (p) => { const c = p.spec?.containers?.[0]; if (c) c.securityContext = { capabilities: { add: ['ALL'] } }; }, 'adds-net-admin'],
      ['envFrom the credentials Secret', (p) => { const c = p.spec?.containers?.[0]; if (c) c.envFrom = [{ secretRef: { name: 'billing-db' } }]; }, 'uses-credentials-secret'],
      ['a projected credentials Secret', (p) => { p.spec = { ...p.spec, volumes: [{ name: 'x', projected: { sources: [{ secret: { name: 'billing-db' } }] } }] }; }, 'uses-credentials-secret'],
      ['a volume with a reserved name', (p) => { p.spec = { ...p.spec, volumes: [{ name: 'custos-cache', emptyDir: {} }] }; }, 'reserved-name'],
    ];
    for (const [label, mutate, reason] of table) {
      const input = loadCase('basic');
      const pod = structuredClone(input.pod);
      mutate(pod);
      const result = buildInjectionPatch({ ...input, pod });
      assert.equal(result.kind, 'reject', label);
      assert.equal(result.reason, reason, label);
    }
  });

  it('refuses uninjected pods of an opted-in namespace that read a credentials Secret (a label is no way around the sidecar)', () => {
    const readsSecret = (p: PodLike): void => { const c = p.spec?.containers?.[0]; if (c) c.env = [{ name: 'PGPASSWORD', valueFrom: { secretKeyRef: { name: 'billing-db', key: 'password' } } }]; };
    const table: Array<[string, (pod: PodLike) => void, string]> = [
      ['opted out', (p) => { p.metadata = { ...p.metadata, labels: { app: 'billing', 'custos.io/inject': 'false' } }; }, 'pod-opted-out'],
      ['labelled as part of Custos', (p) => { p.metadata = { ...p.metadata, labels: { app: 'billing', 'app.kubernetes.io/part-of': 'custos' } }; }, 'custos-component'],
      ['on the host network', (p) => { p.spec = { ...p.spec, hostNetwork: true }; }, 'host-network'],
      ['selected by no policy', (p) => { p.metadata = { ...p.metadata, labels: { app: 'other' } }; }, 'no-policy-selects-pod'],
    ];
    for (const [label, uninjected, skipReason] of table) {
      const input = loadCase('basic');
      const pod = structuredClone(input.pod);
      uninjected(pod);
      assert.equal(buildInjectionPatch({ ...input, pod }).reason, skipReason, `${label}, without the Secret: skipped`);
      readsSecret(pod);
      const result = buildInjectionPatch({ ...input, pod });
      assert.equal(result.kind, 'reject', label);
      assert.equal(result.reason, 'uses-credentials-secret', label);
      assert.match(result.message, /reads Secret billing-db, the upstream credentials of AccessPolicy billing/, label);
    }
  });

  it('lists every violation in one message, the reason of the highest precedence first', () => {
    const input = loadCase('basic');
    const pod = structuredClone(input.pod);
    const c = pod.spec?.containers?.[0];
    assert.ok(c);
    c.securityContext = { privileged: true, runAsUser: 17337 };
    const result = buildInjectionPatch({ ...input, pod });
    assert.equal(result.reason, 'runs-as-proxy-uid');
    assert.match(result.message, /runAsUser 17337.*; container api \(spec\.containers\[0\]\) is privileged/);
  });

  it('has stable, distinct reason labels', () => {
    assert.equal(new Set([...SKIP_REASONS, ...REJECT_REASONS]).size, SKIP_REASONS.length + REJECT_REASONS.length);
    for (const r of [...SKIP_REASONS, ...REJECT_REASONS]) assert.match(r, /^[a-z]+(-[a-z]+)*$/);
  });
});

describe('renderSidecarConfig', () => {
  it('renders a config the sidecar accepts, pointing at the injected mounts', () => {
    const policy = loadCase('multiple-targets').policies[0];
    assert.ok(policy);
    const settings: InjectionSettings = { ...SETTINGS, workloadIdentity: { issuer: 'https://kubernetes.default.svc', jwksUri: 'https://kubernetes.default.svc/openid/v1/jwks' } };
    const config = resolveSidecarConfig(renderSidecarConfig(policy, settings), '/', {});
    assert.equal(config.policyFile, '/etc/custos/policy/policy.yaml');
    assert.deepEqual(config.listen.ports, { billing: 17101, ledger: 17100, warehouse: 17102 });
    assert.equal(config.http.port, 17020);
    assert.equal(config.credentialsDir, '/var/run/custos/credentials');
    assert.equal(config.workloadIdentity?.tokenFile, '/var/run/secrets/custos/token');
    assert.equal(config.workloadIdentity.audience, 'custos');
    assert.equal(config.spool.dir, '/var/lib/custos/spool');
  });
});

describe('validateInjectionSettings', () => {
  it('accepts the defaults', () => {
    assert.equal(validateInjectionSettings(SETTINGS), SETTINGS);
  });
  const invalid: Array<[string, InjectionSettings, RegExp]> = [
    ['the istio-proxy UID', { ...SETTINGS, proxyUid: 1337 }, /proxyUid: 1337 is root or another proxy's id/],
    ['root', { ...SETTINGS, proxyGid: 0 }, /proxyGid: 0 is not a valid non-root id/],
    ['a spool volume smaller than the spool', { ...SETTINGS, spool: { maxBytes: 512 * 1024 * 1024, sizeLimit: '256Mi' } }, /spool\.sizeLimit: 256Mi must exceed/],
    ['a token below 10 minutes', { ...SETTINGS, serviceAccountToken: { audience: 'custos', expirationSeconds: 60 } }, /expirationSeconds: 60/],
    ['an admin port among the listeners', { ...SETTINGS, ports: { admin: 17105, firstTargetListener: 17100 } }, /ports\.admin/],
  ];
  for (const [label, settings, message] of invalid) {
    it(`refuses ${label}, naming the field`, () => {
      assert.throws(() => validateInjectionSettings(settings), message);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Properties over generated pods

const dnsLabel = fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/);
const uid = fc.oneof(fc.constant(undefined), fc.integer({ min: 1, max: 65534 }).filter((n) => n !== 17337));

const containerArb = (volumes: string[]): fc.Arbitrary<Omit<ContainerLike, 'name'>> =>
  fc.record({
    image: fc.constant('registry.example/app:1'),
    runAsUser: uid,
    mounts: fc.subarray(volumes),
  }).map(({ image, runAsUser, mounts }) => ({
    image,
    ...(runAsUser !== undefined ? { securityContext: { runAsUser } } : {}),
    ...(mounts.length > 0 ? { volumeMounts: mounts.map((m) => ({ name: m, mountPath: `/mnt/${m}` })) } : {}),
  }));

const podArb: fc.Arbitrary<PodLike> = fc
  .record({
    names: fc.uniqueArray(dnsLabel.map((s) => `app-${s}`), { minLength: 1, maxLength: 6 }),
    initCount: fc.integer({ min: 0, max: 2 }),
    volumes: fc.option(fc.uniqueArray(dnsLabel.map((s) => `vol-${s}`), { maxLength: 4 }), { nil: undefined }),
    annotations: fc.option(fc.dictionary(dnsLabel, fc.string({ maxLength: 8 }), { maxKeys: 3 }), { nil: undefined }),
    extraLabels: fc.dictionary(dnsLabel.map((s) => `x-${s}`), dnsLabel, { maxKeys: 3 }),
    named: fc.boolean(),
  })
  .chain(({ names, initCount, volumes, annotations, extraLabels, named }) =>
    fc.tuple(fc.array(containerArb(volumes ?? []), { minLength: names.length, maxLength: names.length })).map(([bodies]) => {
      const containers = names.map((name, i) => ({ name, ...bodies[i] }));
      const init = containers.slice(0, Math.min(initCount, containers.length - 1));
      const apps = containers.slice(init.length);
      return {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          ...(named ? { name: 'p' } : { generateName: 'p-' }),
          namespace: 'payments',
          labels: { ...extraLabels, app: 'billing' },
          ...(annotations !== undefined ? { annotations } : {}),
        },
        spec: {
          ...(init.length > 0 ? { initContainers: init } : {}),
          containers: apps,
          ...(volumes !== undefined ? { volumes: volumes.map((name) => ({ name, emptyDir: {} })) } : {}),
        },
      } satisfies PodLike;
    }),
  );

const policyArb: fc.Arbitrary<AccessPolicy> = fc
  .uniqueArray(fc.record({ name: dnsLabel, secret: fc.option(fc.constantFrom('db-a', 'db-b', 'a.very.long.secret.name.that-cannot-be-a-volume-name-at-all'), { nil: undefined }) }), {
    minLength: 1,
    maxLength: 4,
    selector: (t) => t.name,
  })
  .map((targets) => ({
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'billing', namespace: 'payments' },
    spec: {
      selector: { matchLabels: { app: 'billing' } },
      targets: targets.map((t, i) => ({
        name: t.name,
        protocol: 'postgres' as const,
        host: `db${i}.payments.svc`,
        port: 5432,
        ...(t.secret !== undefined ? { credentials: { secretName: t.secret } } : {}),
      })),
      rules: [{ name: 'all', action: 'allow' as const }],
    },
  }));

describe('buildInjectionPatch properties', () => {
  it('injects every selectable pod safely and idempotently', () => {
    fc.assert(
      fc.property(podArb, policyArb, (pod, policy) => {
        const input: InjectionInput = { pod, namespace: ENABLED, policies: [policy], settings: SETTINGS };
        const result = buildInjectionPatch(input);
        assert.equal(result.kind, 'patch', JSON.stringify(result));
        const after = applyJsonPatch(pod, result.patch);
        const spec = after.spec ?? {};
        // Ordering: custos-init, the sidecar, then the app's init containers unchanged.
        assert.deepEqual(initNames(after), ['custos-init', SIDECAR, ...(pod.spec?.initContainers ?? []).map((c) => c.name)]);
        assert.deepEqual(spec.containers, pod.spec?.containers);
        // Credential brokering: no app container mounts a Custos volume.
        for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? []).slice(2)]) {
          for (const m of c.volumeMounts ?? []) assert.ok(!m.name.startsWith('custos-'), `${c.name} mounts ${m.name}`);
        }
        const secrets = new Set(policy.spec.targets.flatMap((t) => (t.credentials ? [t.credentials.secretName] : [])));
        const secretVolumes = (spec.volumes ?? []).filter((v) => v.secret !== undefined);
        assert.equal(secretVolumes.length, secrets.size);
        const sidecar = find(after, SIDECAR);
        for (const v of secretVolumes) assert.ok(sidecar?.volumeMounts?.some((m) => m.name === v.name));
        // The sidecar runs as the proxy UID and GID, never as root.
        assert.equal(sidecar?.securityContext?.runAsUser, 17337);
        assert.equal(sidecar.securityContext.runAsGroup, 17337);
        assert.equal(sidecar.securityContext.runAsNonRoot, true);
        // Existing metadata survives.
        for (const [k, v] of Object.entries(pod.metadata?.annotations ?? {})) assert.equal(after.metadata?.annotations?.[k], v);
        // Reinvocation, before and after API-server defaulting: nothing more to do.
        assert.equal(buildInjectionPatch({ ...input, pod: after }).reason, 'already-injected');
        assert.equal(buildInjectionPatch({ ...input, pod: simulateApiDefaults(after) }).reason, 'already-injected');
      }),
      { numRuns: 200 },
    );
  });

  it('converges to one injection whatever a later webhook removed', () => {
    fc.assert(
      fc.property(podArb, policyArb, fc.subarray(['custos-init', SIDECAR, 'custos-spool', 'custos-token', 'label'], { minLength: 1 }), (pod, policy, removed) => {
        const input: InjectionInput = { pod, namespace: ENABLED, policies: [policy], settings: SETTINGS };
        const first = buildInjectionPatch(input);
        const injectedPod = simulateApiDefaults(applyJsonPatch(pod, first.kind === 'patch' ? first.patch : []));
        const spec = injectedPod.spec ?? {};
        spec.initContainers = (spec.initContainers ?? []).filter((c) => !removed.includes(c.name));
        spec.volumes = (spec.volumes ?? []).filter((v) => !removed.includes(v.name));
        if (removed.includes('label')) delete injectedPod.metadata?.labels?.['custos.io/injected'];
        const second = buildInjectionPatch({ ...input, pod: injectedPod });
        assert.equal(second.kind, 'patch');
        const after = applyJsonPatch(injectedPod, second.patch);
        assert.deepEqual(initNames(after).slice(0, 2), ['custos-init', SIDECAR]);
        assert.equal(initNames(after).filter((n) => n.startsWith('custos-')).length, 2);
        const names = (after.spec?.volumes ?? []).map((v) => v.name);
        assert.equal(new Set(names).size, names.length, `duplicate volumes: ${names.join(', ')}`);
        assert.equal(buildInjectionPatch({ ...input, pod: simulateApiDefaults(after) }).reason, 'already-injected');
      }),
      { numRuns: 100 },
    );
  });
});
