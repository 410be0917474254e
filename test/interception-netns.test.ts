// Acceptance (issue 4, scope 6): the interception rules do what they claim, for real, in network
// namespaces on this machine. Namespace "pod" is the workload pod: the rules from
// operator/interception are applied inside it with the adapter custos-init uses, a sidecar stand-in
// runs there as the proxy UID 17337, and clients connect as chosen UIDs/GIDs (setpriv). Namespace
// "db" is the upstream, reached over a veth pair; its server answers with the address it was reached
// on, so each connection reports where it landed. Only addresses on this veth (10.231.0.0/16,
// fd00:231::/48) are used: no packet leaves the machine.
//
//   pod  c0 10.231.0.1/24 fd00:231::1/64  ─── veth ───  c1 10.231.0.2, .3/24, 10.231.9.2/32   db
//        (routes 10.231.9.0/24, fd00:231:9::/64 via db)      fd00:231::2, ::3/64, fd00:231:9::2/128
//
// Needs root and `ip netns` (CI runs as root): without them the test fails, it does not skip.
// Node cannot read SO_ORIGINAL_DST (the sidecar uses a native addon for that), so a redirect is
// asserted by where the connection arrives: the sidecar listener's port instead of the upstream.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { applyInterceptionRules, type CommandRunner } from '../operator/interception/apply-rules.ts';
import type { AddressFamily, InterceptionInput } from '../operator/interception/iptables-rules.ts';
import { run, spawnManaged, stopProcess } from './harness/processes.ts';

const PROXY = 17337;
const APP = 1000;
const NODE = process.execPath;
const POD = `custos-t-${process.pid}-pod`;
const DB = `custos-t-${process.pid}-db`;
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

// Listener: `label@host@port` arguments; answers every connection with "<label> <local addr>:<port>"
// and closes. Prints "ready" once every listener is bound.
const SERVER = `
const net = require('node:net');
const specs = process.argv.slice(1);
let pending = specs.length;
for (const spec of specs) {
  const [label, host, port] = spec.split('@');
  const server = net.createServer((socket) => {
    const local = String(socket.localAddress).replace(/^::ffff:/, '');
    socket.end(label + ' ' + local + ':' + socket.localPort + '\\n');
  });
  server.on('error', (e) => { console.error(spec + ': ' + e.message); process.exit(1); });
  server.listen({ host, port: Number(port), ipv6Only: false }, () => { if (--pending === 0) console.log('ready'); });
}
`;

// Client: connects to argv host:port and prints what the server said, or "error <code>".
const CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const socket = net.connect({ host, port: Number(port) });
let data = '';
socket.setTimeout(4000, () => { console.log('error ETIMEDOUT'); process.exit(0); });
socket.on('data', (d) => (data += d));
socket.on('end', () => { console.log(data.trim()); process.exit(0); });
socket.on('error', (e) => { console.log('error ' + e.code); process.exit(0); });
`;

const children: ChildProcess[] = [];
const created: string[] = [];

async function sh(args: readonly string[], input?: string): Promise<string> {
  return run(args[0] ?? '', args.slice(1), input === undefined ? {} : { input });
}

function inPod(args: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', POD, ...args];
}

const podRunner: CommandRunner = (command, args, stdin) => sh(inPod([command, ...args]), stdin);

function asIds(uid: number, gid: number): string[] {
  return ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups'];
}

async function startListeners(ns: string, uid: number, specs: readonly string[]): Promise<void> {
  const child = spawnManaged('ip', ['netns', 'exec', ns, ...asIds(uid, uid), NODE, '-e', SERVER, ...specs]);
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => {
      reject(new Error(`listeners ${specs.join(' ')} in ${ns} exited with ${code}: ${err}`));
    });
  });
}

/** Connects from the pod as uid/gid; returns what answered, e.g. "sidecar 127.0.0.1:15432". */
async function connect(uid: number, gid: number, host: string, port: number): Promise<string> {
  return (await sh(inPod([...asIds(uid, gid), NODE, '-e', CLIENT, host, String(port)]))).trim();
}

async function natTable(family: AddressFamily): Promise<string> {
  const out = await sh(inPod([family === 'ipv4' ? 'iptables-save' : 'ip6tables-save', '-t', 'nat']));
  // Drop the timestamped header/footer and counters, keep every rule and chain.
  return out
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
    .join('\n');
}

function outputJumps(table: string): string[] {
  return table.split('\n').filter((l) => l.startsWith('-A OUTPUT') && /-j CUSTOS_OUTPUT\b/.test(l));
}

async function apply(family: AddressFamily, rules = RULES): Promise<string> {
  return (await applyInterceptionRules({ ...rules, family }, { run: podRunner })).document;
}

before(async () => {
  if (process.getuid?.() !== 0) {
    throw new Error('test/interception-netns.test.ts must run as root (CI does): it creates network namespaces, a veth pair and iptables rules. Run it with sudo.');
  }
  for (const ns of [POD, DB]) {
    try {
      await sh(['ip', 'netns', 'add', ns]);
    } catch (e) {
      throw new Error(`cannot create network namespace ${ns} with \`ip netns add\` (iproute2, see test/harness/install-debian-deps.sh): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    created.push(ns);
  }
  const setup: string[][] = [
    ['ip', '-n', POD, 'link', 'set', 'lo', 'up'],
    ['ip', '-n', DB, 'link', 'set', 'lo', 'up'],
    ['ip', '-n', POD, 'link', 'add', 'c0', 'type', 'veth', 'peer', 'name', 'c1', 'netns', DB],
    ['ip', '-n', POD, 'addr', 'add', '10.231.0.1/24', 'dev', 'c0'],
    ['ip', '-n', POD, 'addr', 'add', 'fd00:231::1/64', 'dev', 'c0', 'nodad'],
    ['ip', '-n', DB, 'addr', 'add', '10.231.0.2/24', 'dev', 'c1'],
    ['ip', '-n', DB, 'addr', 'add', '10.231.0.3/24', 'dev', 'c1'],
    ['ip', '-n', DB, 'addr', 'add', '10.231.9.2/32', 'dev', 'c1'],
    ['ip', '-n', DB, 'addr', 'add', 'fd00:231::2/64', 'dev', 'c1', 'nodad'],
    ['ip', '-n', DB, 'addr', 'add', 'fd00:231::3/64', 'dev', 'c1', 'nodad'],
    ['ip', '-n', DB, 'addr', 'add', 'fd00:231:9::2/128', 'dev', 'c1', 'nodad'],
    ['ip', '-n', POD, 'link', 'set', 'c0', 'up'],
    ['ip', '-n', DB, 'link', 'set', 'c1', 'up'],
    ['ip', '-n', POD, 'route', 'add', '10.231.9.0/24', 'via', '10.231.0.2'],
    ['ip', '-n', POD, '-6', 'route', 'add', 'fd00:231:9::/64', 'via', 'fd00:231::2'],
  ];
  for (const args of setup) await sh(args);
  for (const family of ['ipv4', 'ipv6'] as const) {
    const save = family === 'ipv4' ? 'iptables-save' : 'ip6tables-save';
    await sh(inPod([save, '-t', 'nat'])).catch((e: unknown) => {
      throw new Error(`${save} -t nat fails in a network namespace: this kernel has no ${family} nat table, so ${family} interception cannot be tested (${e instanceof Error ? e.message : String(e)})`, { cause: e });
    });
  }
  // Upstream (any UID: the db namespace has no rules), dual-stack on every port the cases use.
  await startListeners(DB, 0, ['db@::@5432', 'db@::@3306', 'db@::@6000']);
  // In the pod: the sidecar stand-in as the proxy UID on loopback (REDIRECT sends locally
  // generated connections to 127.0.0.1 / ::1), and a pod-local service on a target port.
  await startListeners(POD, PROXY, [
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
  // Processes first: a namespace with live processes outlives `ip netns del`.
  for (const child of children) await stopProcess(child, 'SIGKILL', 2_000);
  for (const ns of created) {
    await sh(['ip', 'netns', 'del', ns]).catch((e: unknown) => {
      console.error(`cleanup: ${String(e)}`);
    });
  }
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
      const first = await natTable(family);
      assert.equal(outputJumps(first).length, 1, first);
      const document = await apply(family);
      assert.ok(!/^-[ID] OUTPUT/m.test(document), `second run must leave OUTPUT alone:\n${document}`);
      assert.equal(await natTable(family), first);
      assert.ok(first.includes('custos/target:any-mysql') && first.includes('custos/exclude-cidr'), first);
    });

    it('re-applying changed rules replaces the chain (no leftovers) and heals a duplicated or displaced jump', async () => {
      const save = family === 'ipv4' ? 'iptables' : 'ip6tables';
      const reference = await natTable(family);
      // Someone appended a second jump and inserted a foreign rule ahead of ours.
      await sh(inPod([save, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'CUSTOS_OUTPUT']));
      await sh(inPod([save, '-t', 'nat', '-I', 'OUTPUT', '1', '-p', 'udp', '-j', 'RETURN']));
      assert.equal(outputJumps(await natTable(family)).length, 2);
      // A policy change: only the port-wide target remains.
      await apply(family, { ...RULES, targets: [{ name: 'any-mysql', port: 3306, redirectTo: SIDECAR_MYSQL }] });
      const changed = await natTable(family);
      assert.equal(outputJumps(changed).length, 1, changed);
      assert.match(changed, /^-A OUTPUT -p tcp -m comment --comment "?custos\/install"? -j CUSTOS_OUTPUT\n-A OUTPUT -p udp -j RETURN$/m, 'ours first, the foreign rule kept');
      assert.ok(!changed.includes('orders-db'), `the removed target's rule is gone:\n${changed}`);
      const target = family === 'ipv4' ? '10.231.0.2' : 'fd00:231::2';
      assert.equal(await connect(APP, APP, target, 5432), `db ${target}:5432`, 'the removed target is no longer intercepted');
      // Back to the original policy: the chain is exactly as before, plus the foreign rule.
      await apply(family);
      const restored = await natTable(family);
      assert.equal(restored.replace('-A OUTPUT -p udp -j RETURN\n', ''), reference);
      assert.equal(await connect(APP, APP, target, 5432), `sidecar ${family === 'ipv4' ? '127.0.0.1' : '::1'}:${SIDECAR_PG}`);
    });
  });
}
