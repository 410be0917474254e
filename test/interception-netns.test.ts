// Acceptance (issue 4, scope 6): the interception rules do what they claim, for real, in network
// namespaces on this machine (topology in test/harness/netns.ts). The rules from
// operator/interception are applied inside namespace "pod" with the adapter custos-init uses, a
// sidecar stand-in runs there as the proxy UID 17337, and clients connect as chosen UIDs/GIDs
// (setpriv); namespace "db" is the upstream, whose server answers with the address it was reached
// on, so each connection reports where it landed.
//
// Needs root and `ip netns` (CI runs as root): without them the test fails, it does not skip.
// Node cannot read SO_ORIGINAL_DST (the sidecar uses a native addon for that), so a redirect is
// asserted by where the connection arrives: the sidecar listener's port instead of the upstream.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyInterceptionRules } from '../operator/interception/apply-rules.ts';
import type { AddressFamily, InterceptionInput } from '../operator/interception/iptables-rules.ts';
import { createPodAndDb, outputJumps, type PodAndDb } from './harness/netns.ts';

const PROXY = 17337;
const APP = 1000;
const SIDECAR_PG = 15432;
const SIDECAR_MYSQL = 15306;

// The rules under test: one host-specific target, one port-wide target, one excluded network per
// family. The same lists feed both families; each document takes the entries of its own family.
const RULES: Omit<InterceptionInput, 'currentNatTable' | 'family'> = {
  proxyUid: PROXY,
  proxyGid: PROXY,
  targets: [
    { name: 'orders-db', host: '10.231.0.2', port: 5432, redirectTo: SIDECAR_PG },
    { name: 'orders-db-v6', host: 'fd00:231::2', port: 5432, redirectTo: SIDECAR_PG },
    { name: 'any-mysql', port: 3306, redirectTo: SIDECAR_MYSQL },
  ],
  excludeCidrs: ['10.231.9.0/24', 'fd00:231:9::/64'],
};

let net: PodAndDb;

function connect(uid: number, gid: number, host: string, port: number): Promise<string> {
  return net.connect(uid, gid, host, port);
}

async function apply(family: AddressFamily, rules = RULES): Promise<string> {
  return (await applyInterceptionRules({ ...rules, family }, { run: net.podRunner })).document;
}

before(async () => {
  net = await createPodAndDb('interception');
  // Upstream (any UID: the db namespace has no rules), dual-stack on every port the cases use.
  await net.startListeners(net.db, 0, ['db@::@5432', 'db@::@3306', 'db@::@6000']);
  // In the pod: the sidecar stand-in as the proxy UID on loopback (REDIRECT sends locally
  // generated connections to 127.0.0.1 / ::1), and a pod-local service on a target port.
  await net.startListeners(net.pod, PROXY, [
    `sidecar@127.0.0.1@${SIDECAR_PG}`, `sidecar@::1@${SIDECAR_PG}`,
    `sidecar@127.0.0.1@${SIDECAR_MYSQL}`, `sidecar@::1@${SIDECAR_MYSQL}`,
    'local@127.0.0.1@3306', 'local@::1@3306',
  ]);
  // Baseline: with no rules every connection reaches the upstream as addressed.
  assert.equal(await connect(APP, APP, '10.231.0.2', 5432), 'db 10.231.0.2:5432');
  assert.equal(await connect(APP, APP, 'fd00:231::2', 5432), 'db fd00:231::2:5432');
  await apply('ipv4');
  await apply('ipv6');
});

after(async () => {
  await net.destroy();
});

interface Case {
  readonly what: string;
  readonly uid: number;
  readonly gid: number;
  readonly host: string;
  readonly port: number;
  readonly lands: string;
}

function cases(family: AddressFamily): Case[] {
  const v4 = family === 'ipv4';
  const target = v4 ? '10.231.0.2' : 'fd00:231::2';
  const other = v4 ? '10.231.0.3' : 'fd00:231::3';
  const excluded = v4 ? '10.231.9.2' : 'fd00:231:9::2';
  const loopback = v4 ? '127.0.0.1' : '::1';
  const at = (host: string, port: number): string => `${host}:${port}`;
  return [
    // (1) the app's connection to a target arrives at the sidecar listener
    { what: 'app UID → target host:port is redirected to the sidecar', uid: APP, gid: APP, host: target, port: 5432, lands: `sidecar ${at(loopback, SIDECAR_PG)}` },
    { what: 'root (UID 0) is not exempt', uid: 0, gid: 0, host: target, port: 5432, lands: `sidecar ${at(loopback, SIDECAR_PG)}` },
    { what: 'port-wide target: any host on 3306 is redirected', uid: APP, gid: APP, host: other, port: 3306, lands: `sidecar ${at(loopback, SIDECAR_MYSQL)}` },
    // (2) the proxy's own traffic reaches the real server
    { what: 'proxy UID+GID 17337 → target reaches the upstream', uid: PROXY, gid: PROXY, host: target, port: 5432, lands: `db ${at(target, 5432)}` },
    { what: 'proxy UID alone (GID 1000) reaches the upstream', uid: PROXY, gid: APP, host: target, port: 5432, lands: `db ${at(target, 5432)}` },
    { what: 'proxy GID alone (UID 1001) reaches the upstream', uid: 1001, gid: PROXY, host: target, port: 5432, lands: `db ${at(target, 5432)}` },
    // (3) excluded CIDR
    { what: 'excluded CIDR on a target port passes untouched', uid: APP, gid: APP, host: excluded, port: 3306, lands: `db ${at(excluded, 3306)}` },
    // (4) not a target
    { what: 'a port that is not a target passes untouched', uid: APP, gid: APP, host: target, port: 6000, lands: `db ${at(target, 6000)}` },
    { what: 'a host that is not the target host passes untouched on the target port', uid: APP, gid: APP, host: other, port: 5432, lands: `db ${at(other, 5432)}` },
    // loopback RETURN: a pod-local service on a target port is not captured
    { what: 'a pod-local service on loopback is not captured', uid: APP, gid: APP, host: loopback, port: 3306, lands: `local ${at(loopback, 3306)}` },
  ];
}

for (const family of ['ipv4', 'ipv6'] as const) {
  describe(`interception in a network namespace (${family})`, () => {
    for (const c of cases(family)) {
      it(`${c.what} (uid ${c.uid}, gid ${c.gid} → ${c.host} port ${c.port})`, async () => {
        assert.equal(await connect(c.uid, c.gid, c.host, c.port), c.lands);
      });
    }

    it('applying twice leaves one OUTPUT jump and the same CUSTOS_OUTPUT chain', async () => {
      const first = await net.natTable(family);
      assert.equal(outputJumps(first).length, 1, first);
      const document = await apply(family);
      assert.ok(!/^-[ID] OUTPUT/m.test(document), `second run must leave OUTPUT alone:\n${document}`);
      assert.equal(await net.natTable(family), first);
      assert.ok(first.includes('custos/target:any-mysql') && first.includes('custos/exclude-cidr'), first);
    });

    it('re-applying changed rules replaces the chain (no leftovers) and heals a duplicated or displaced jump', async () => {
      const save = family === 'ipv4' ? 'iptables' : 'ip6tables';
      const reference = await net.natTable(family);
      // Someone appended a second jump and inserted a foreign rule ahead of ours.
      await net.sh(net.inPod([save, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'CUSTOS_OUTPUT']));
      await net.sh(net.inPod([save, '-t', 'nat', '-I', 'OUTPUT', '1', '-p', 'udp', '-j', 'RETURN']));
      assert.equal(outputJumps(await net.natTable(family)).length, 2);
      // A policy change: only the port-wide target remains.
      await apply(family, { ...RULES, targets: [{ name: 'any-mysql', port: 3306, redirectTo: SIDECAR_MYSQL }] });
      const changed = await net.natTable(family);
      assert.equal(outputJumps(changed).length, 1, changed);
      assert.match(changed, /^-A OUTPUT -p tcp -m comment --comment "?custos\/install"? -j CUSTOS_OUTPUT\n-A OUTPUT -p udp -j RETURN$/m, 'ours first, the foreign rule kept');
      assert.ok(!changed.includes('orders-db'), `the removed target's rule is gone:\n${changed}`);
      const target = family === 'ipv4' ? '10.231.0.2' : 'fd00:231::2';
      assert.equal(await connect(APP, APP, target, 5432), `db ${target}:5432`, 'the removed target is no longer intercepted');
      // Back to the original policy: the chain is exactly as before, plus the foreign rule.
      await apply(family);
      const restored = await net.natTable(family);
      assert.equal(restored.replace('-A OUTPUT -p udp -j RETURN\n', ''), reference);
      assert.equal(await connect(APP, APP, target, 5432), `sidecar ${family === 'ipv4' ? '127.0.0.1' : '::1'}:${SIDECAR_PG}`);
    });
  });
}
