// Acceptance: `custos init`, the injected custos-init container, run for real as root in a network
// namespace (test/harness/netns.ts) with exactly the arguments and environment the webhook gives
// it (taken from buildInjectionPatch's output, not retyped), installs rules that send the app's
// connections to the sidecar's listeners, for IPv4 and IPv6, with target host names resolved
// through the pod's resolver; re-running it changes nothing; an invalid CUSTOS_INTERCEPTION exits 2
// naming the field and installs nothing, not even the family that was valid.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AccessPolicy } from '../crds/generated/access-policy.ts';
import { parseInterceptionSpec } from '../cli/commands/init.ts';
import { buildInjectionPatch, INIT_CONTAINER_NAME } from '../operator/webhook/build-patch.ts';
import { DEFAULT_INJECTION_SETTINGS, type InjectionSettings } from '../operator/webhook/injection-settings.ts';
import type { ContainerLike, PodLike } from '../operator/webhook/pod-types.ts';
import { CUSTOS_CLI, NODE, REPO_ROOT } from './harness/custos-stack.ts';
import { createPodAndDb, outputJumps, type PodAndDb } from './harness/netns.ts';
import { runCommand, type CommandResult } from './harness/processes.ts';

const PROXY = 17337;
const APP = 1000;
const DB_NAME = 'orders-db.payments.svc';

const SETTINGS: InjectionSettings = {
  ...DEFAULT_INJECTION_SETTINGS,
  interception: { excludeOutboundCIDRs: ['169.254.169.254/32', '10.231.9.0/24', 'fd00:231:9::/64'] },
};

// Two targets: one by DNS name (resolved through the pod's /etc/hosts to 10.231.0.2 and
// fd00:231::2), one by address; the webhook assigns them listener ports 17100 and 17101.
const POLICY: AccessPolicy = {
  apiVersion: 'custos.io/v1alpha1',
  kind: 'AccessPolicy',
  metadata: { name: 'orders', namespace: 'payments' },
  spec: {
    selector: { matchLabels: { app: 'orders' } },
    targets: [
      { name: 'orders', protocol: 'postgres', host: DB_NAME, port: 5432 },
      { name: 'ledger', protocol: 'postgres', host: '10.231.0.3', port: 6432 },
    ],
    rules: [{ name: 'reads', action: 'allow' }],
  },
};

const POD: PodLike = {
  metadata: { name: 'orders-api', namespace: 'payments', labels: { app: 'orders' } },
  spec: { containers: [{ name: 'api', image: 'registry.example/orders:1', securityContext: { runAsUser: APP } }] },
};

/** The custos-init container exactly as the webhook injects it. */
function injectedInitContainer(): ContainerLike {
  const result = buildInjectionPatch({
    pod: POD,
    namespace: { name: 'payments', labels: { 'custos.io/injection': 'enabled' } },
    policies: [POLICY],
    settings: SETTINGS,
  });
  assert.equal(result.kind, 'patch');
  const op = result.patch.find((o) => o.path === '/spec/initContainers');
  const containers = (op !== undefined && 'value' in op ? op.value : []) as ContainerLike[];
  const init = containers.find((c) => c.name === INIT_CONTAINER_NAME);
  assert.ok(init, 'the patch adds custos-init');
  return init;
}

let net: PodAndDb;

/** Runs `custos <args>` in the pod's network namespace with only `env` (and PATH), as the container would. */
function runInPod(args: readonly string[], env: Readonly<Record<string, string>>): Promise<CommandResult> {
  return runCommand('ip', ['netns', 'exec', net.pod, NODE, CUSTOS_CLI, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...env },
  });
}

function argsOf(container: ContainerLike): string[] {
  const args = container['args'];
  assert.ok(Array.isArray(args) && args.every((a) => typeof a === 'string'), 'custos-init has string args');
  return args;
}

function envOf(container: ContainerLike): Record<string, string> {
  return Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']));
}

async function tables(): Promise<string> {
  return `${await net.natTable('ipv4')}\n${await net.natTable('ipv6')}`;
}

before(async () => {
  net = await createPodAndDb('init');
  await net.setPodHosts(`127.0.0.1 localhost\n::1 localhost\n10.231.0.2 ${DB_NAME}\nfd00:231::2 ${DB_NAME}\n`);
  await net.startListeners(net.db, 0, ['db@::@5432', 'db@::@6432']);
  // The sidecar stand-in on the listener ports the webhook assigned (REDIRECT lands on loopback).
  await net.startListeners(net.pod, PROXY, ['sidecar@127.0.0.1@17100', 'sidecar@::1@17100', 'sidecar@127.0.0.1@17101', 'sidecar@::1@17101']);
});

after(async () => {
  await net.destroy();
});

describe('the custos-init container the webhook injects', () => {
  it('runs `custos init` with CUSTOS_INTERCEPTION and nothing else', () => {
    const init = injectedInitContainer();
    assert.equal(init['command'], undefined, 'the image entrypoint is the custos command');
    assert.deepEqual(argsOf(init), ['init']);
    assert.deepEqual((init.env ?? []).map((e) => e.name), ['CUSTOS_INTERCEPTION']);
  });

  it('accepts the CUSTOS_INTERCEPTION of every golden patch unchanged', () => {
    const dir = join(REPO_ROOT, 'operator', 'webhook', 'testdata');
    const values = readdirSync(dir)
      .filter((f) => f.endsWith('.patch.json'))
      .flatMap((f) => [...readFileSync(join(dir, f), 'utf8').matchAll(/"name": "CUSTOS_INTERCEPTION",\s*"value": ("(?:[^"\\]|\\.)*")/g)].map((m) => JSON.parse(m[1] ?? '""') as string));
    assert.ok(values.length >= 3, `found ${values.length} golden CUSTOS_INTERCEPTION values`);
    for (const value of values) assert.deepEqual(parseInterceptionSpec(value), JSON.parse(value));
  });
});

describe('custos init in a network namespace', () => {
  const good = (): Record<string, string> => envOf(injectedInitContainer());
  const spec = (): Record<string, unknown> => JSON.parse(good()['CUSTOS_INTERCEPTION'] ?? '{}') as Record<string, unknown>;
  const redirect = (i: number, edit: Record<string, unknown>): Record<string, unknown> => {
    const s = spec();
    const redirects = s['redirects'] as Array<Record<string, unknown>>;
    redirects[i] = { ...redirects[i], ...edit };
    return s;
  };

  // Each is refused before any rule is written: exit 2, the field named.
  const invalid: Array<[string, string | undefined, RegExp]> = [
    ['no CUSTOS_INTERCEPTION', undefined, /CUSTOS_INTERCEPTION: Required value/],
    ['not JSON', '{"proxyUid": 17337,', /CUSTOS_INTERCEPTION: not valid JSON/],
    ['a JSON array', '[]', /CUSTOS_INTERCEPTION: must be a JSON object/],
    ['an unknown field', JSON.stringify({ ...spec(), mode: 'permissive' }), /CUSTOS_INTERCEPTION\.mode: field not declared/],
    ['an unknown redirect field', JSON.stringify(redirect(0, { tls: true })), /CUSTOS_INTERCEPTION\.redirects\[0\]\.tls: field not declared/],
    ['a missing listenPort', JSON.stringify(redirect(1, { listenPort: undefined })), /CUSTOS_INTERCEPTION\.redirects\[1\]\.listenPort: Required value/],
    ['port 0', JSON.stringify(redirect(0, { port: 0 })), /CUSTOS_INTERCEPTION\.redirects\[0\]\.port: 0 is not a TCP port/],
    ['a port as a string', JSON.stringify(redirect(0, { port: '5432' })), /CUSTOS_INTERCEPTION\.redirects\[0\]\.port: "5432" is not a TCP port/],
    ['proxy UID 0 (every root process would escape)', JSON.stringify({ ...spec(), proxyUid: 0 }), /CUSTOS_INTERCEPTION\.proxyUid: 0 is not a non-root UID/],
    ['an unknown protocol', JSON.stringify(redirect(0, { protocol: 'mysql' })), /CUSTOS_INTERCEPTION\.redirects\[0\]\.protocol: Unsupported value: "mysql"/],
    ['a target name that would inject into the rule text', JSON.stringify(redirect(0, { target: 'x" -j ACCEPT #' })), /CUSTOS_INTERCEPTION\.redirects\[0\]\.target: .* is not a target name/],
    ['a host that is no address or name', JSON.stringify(redirect(0, { host: 'db; iptables -F' })), /CUSTOS_INTERCEPTION\.redirects\[0\]\.host: .* is not an IP address, CIDR or DNS name/],
    ['an excluded CIDR with host bits', JSON.stringify({ ...spec(), excludeOutboundCIDRs: ['10.231.9.1/24'] }), /CUSTOS_INTERCEPTION\.excludeOutboundCIDRs\[0\]: "10\.231\.9\.1\/24" has host bits set/],
    ['an excluded CIDR of 0.0.0.0/0 (interception off)', JSON.stringify({ ...spec(), excludeOutboundCIDRs: ['0.0.0.0/0'] }), /CUSTOS_INTERCEPTION\.excludeOutboundCIDRs\[0\]: .*turns interception off/],
    // Valid for IPv4; only the IPv6 document is invalid. Nothing is installed for either family.
    ['an IPv6 target inside an excluded IPv6 CIDR', JSON.stringify(redirect(1, { host: 'fd00:231:9::5' })), /CUSTOS_INTERCEPTION\.redirects\[1\]\.host: fd00:231:9::5 lies inside excluded CIDR fd00:231:9::\/64/],
  ];

  for (const [what, value, message] of invalid) {
    it(`exits 2 naming the field and installs nothing for ${what}`, async () => {
      const before = await tables();
      const outcome = await runInPod(['init'], value === undefined ? {} : { CUSTOS_INTERCEPTION: value });
      assert.equal(outcome.code, 2, outcome.stderr);
      assert.match(outcome.stderr, message);
      assert.match(outcome.stderr, /no interception rules were installed/);
      assert.equal(outcome.stdout, '');
      const after = await tables();
      assert.equal(after, before);
      assert.ok(!after.includes('CUSTOS_OUTPUT'), after);
    });
  }

  it('exits 1 and installs nothing when a target host name does not resolve (the kubelet retries)', async () => {
    const outcome = await runInPod(['init'], { CUSTOS_INTERCEPTION: JSON.stringify(redirect(0, { host: 'orders-db.unknown.invalid' })) });
    assert.equal(outcome.code, 1, outcome.stderr);
    assert.match(outcome.stderr, /CUSTOS_INTERCEPTION\.redirects\[0\]\.host: orders-db\.unknown\.invalid does not resolve/);
    assert.ok(!(await tables()).includes('CUSTOS_OUTPUT'));
  });

  it('--dry-run prints both restore documents, with the name resolved, and installs nothing', async () => {
    const outcome = await runInPod(['init', '--dry-run'], good());
    assert.equal(outcome.code, 0, outcome.stderr);
    assert.match(outcome.stdout, /^\*nat$/m);
    assert.match(outcome.stdout, /-A CUSTOS_OUTPUT -p tcp -d 10\.231\.0\.2\/32 --dport 5432 -m comment --comment "custos\/target:orders" -j REDIRECT --to-ports 17100/);
    assert.match(outcome.stdout, /-A CUSTOS_OUTPUT -p tcp -d fd00:231::2\/128 --dport 5432 -m comment --comment "custos\/target:orders" -j REDIRECT --to-ports 17100/);
    assert.match(outcome.stdout, /-A CUSTOS_OUTPUT -p tcp -d 10\.231\.0\.3\/32 --dport 6432 -m comment --comment "custos\/target:ledger" -j REDIRECT --to-ports 17101/);
    assert.ok(!(await tables()).includes('CUSTOS_OUTPUT'));
  });

  it('installs the rules the webhook asked for, verified, and prints one summary line', async () => {
    const init = injectedInitContainer();
    const outcome = await runInPod(argsOf(init), envOf(init));
    assert.equal(outcome.code, 0, outcome.stderr);
    assert.equal(outcome.stderr, '');
    const lines = outcome.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1, outcome.stdout);
    assert.match(lines[0] ?? '', /^custos init: ipv4 and ipv6 interception installed and verified: orders orders-db\.payments\.svc \[10\.231\.0\.2, fd00:231::2\]:5432 → 17100, ledger 10\.231\.0\.3:6432 → 17101; uid 17337 and gid 17337 exempt; 3 excluded CIDRs$/);
  });

  const landings: Array<[string, number, number, string, number, string]> = [
    ['the app → the target by name (IPv4) lands at the sidecar', APP, APP, '10.231.0.2', 5432, 'sidecar 127.0.0.1:17100'],
    ['the app → the target by name (IPv6) lands at the sidecar', APP, APP, 'fd00:231::2', 5432, 'sidecar ::1:17100'],
    ['the app → the target by address lands at its own listener', APP, APP, '10.231.0.3', 6432, 'sidecar 127.0.0.1:17101'],
    ['the sidecar (proxy UID/GID) reaches the real database', PROXY, PROXY, '10.231.0.2', 5432, 'db 10.231.0.2:5432'],
    ['the sidecar reaches the real database over IPv6', PROXY, PROXY, 'fd00:231::2', 5432, 'db fd00:231::2:5432'],
    ['another host on the target port is not intercepted', APP, APP, '10.231.0.3', 5432, 'db 10.231.0.3:5432'],
  ];
  for (const [what, uid, gid, host, port, lands] of landings) {
    it(`${what} (uid ${uid} → ${host} port ${port})`, async () => {
      assert.equal(await net.connect(uid, gid, host, port), lands);
    });
  }

  it('is idempotent: a re-run (pod restart) leaves the same tables and one OUTPUT jump per family', async () => {
    const first = await tables();
    const init = injectedInitContainer();
    const outcome = await runInPod(argsOf(init), envOf(init));
    assert.equal(outcome.code, 0, outcome.stderr);
    assert.equal(await tables(), first);
    assert.equal(outputJumps(await net.natTable('ipv4')).length, 1);
    assert.equal(outputJumps(await net.natTable('ipv6')).length, 1);
  });

  it('leaves installed rules untouched when re-run with an invalid CUSTOS_INTERCEPTION', async () => {
    const installed = await tables();
    const outcome = await runInPod(['init'], { CUSTOS_INTERCEPTION: JSON.stringify(redirect(1, { host: 'fd00:231:9::5' })) });
    assert.equal(outcome.code, 2, outcome.stderr);
    assert.equal(await tables(), installed);
    assert.equal(await net.connect(APP, APP, '10.231.0.2', 5432), 'sidecar 127.0.0.1:17100');
  });

  it('refuses unknown options with exit 2 and the usage', async () => {
    const outcome = await runInPod(['init', '--mode=permissive'], good());
    assert.equal(outcome.code, 2);
    assert.match(outcome.stderr, /usage: custos init \[--dry-run\]/);
  });
});
