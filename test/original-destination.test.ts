// The SO_ORIGINAL_DST addon (sidecar/native/original-dst, issue 6 scope 1) and its sidecar-side
// lookup (sidecar/original-destination.ts), for real: the interception rules from
// operator/interception are applied in network namespace "pod" (topology in test/harness/netns.ts)
// with the adapter custos-init uses; a Node 24 server in the pod, listening on the sidecar port,
// answers every connection with what originalDestination(socket) returned; clients connect as the
// app UID to target addresses that the nat OUTPUT rules REDIRECT to that server.
//
// Needs root and `ip netns` (CI runs as root): without them the test fails, it does not skip. It
// also fails when `npm ci` could not build the addon: CI machines have the toolchain, so a missing
// addon there is a defect, not an environment to tolerate.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect as tcpConnect, Socket, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { applyInterceptionRules } from '../operator/interception/apply-rules.ts';
import type { InterceptionInput } from '../operator/interception/iptables-rules.ts';
import {
  loadOriginalDestinationReader,
  originalDestination,
  originalDestinationAvailable,
  ORIGINAL_DST_ADDON_PATH,
  socketFd,
  type OriginalDestinationLookup,
} from '../sidecar/original-destination.ts';
import { createPodAndDb, type PodAndDb } from './harness/netns.ts';
import { spawnManaged, stopProcess, waitForOutput } from './harness/processes.ts';

const PROXY = 17337;
const APP = 1000;
const SIDECAR = 15432;
/** A dual-stack listener (`::`, not IPv6-only): IPv4 connections arrive IPv4-mapped. */
const SIDECAR_DUAL = 15433;
/** Not a target port: connections to the upstream on it are not redirected. */
const UPSTREAM = 6000;

const RULES: Omit<InterceptionInput, 'currentNatTable' | 'family'> = {
  proxyUid: PROXY,
  proxyGid: PROXY,
  targets: [
    { name: 'orders-db', host: '10.231.0.2', port: 5432, redirectTo: SIDECAR },
    { name: 'orders-db-v6', host: 'fd00:231::2', port: 5432, redirectTo: SIDECAR },
    { name: 'any-pgbouncer', port: 6432, redirectTo: SIDECAR },
    { name: 'dual', host: '10.231.0.3', port: 7000, redirectTo: SIDECAR_DUAL },
  ],
  excludeCidrs: [],
};

// The sidecar stand-in: Node 24 with the real module, one listener per `host@port` argument;
// answers every connection with one JSON line {version, local, lookup} and closes.
const SERVER = `
const { originalDestination } = await import(process.argv[1]);
const net = await import('node:net');
const specs = process.argv.slice(2);
let pending = specs.length;
for (const spec of specs) {
  const [host, port] = spec.split('@');
  const server = net.createServer((socket) => {
    const lookup = originalDestination(socket);
    const local = socket.localAddress + ':' + socket.localPort;
    socket.end(JSON.stringify({ version: process.version, local, lookup }) + '\\n');
  });
  server.on('error', (e) => { console.error(spec + ': ' + e.message); process.exit(1); });
  server.listen({ host, port: Number(port), ipv6Only: host !== '::' }, () => { if (--pending === 0) console.log('ready'); });
}
`;

interface Answer {
  readonly version: string;
  readonly local: string;
  readonly lookup: OriginalDestinationLookup;
}

let net: PodAndDb;
const servers: ChildProcess[] = [];

async function ask(host: string, port: number, uid = APP): Promise<Answer> {
  const text = await net.connect(uid, uid, host, port);
  try {
    return JSON.parse(text) as Answer;
  } catch {
    throw new Error(`the connection to ${host} port ${port} did not reach the sidecar stand-in: ${text}`);
  }
}

async function startServer(ns: string, specs: readonly string[]): Promise<void> {
  const child = spawnManaged('ip', [
    'netns', 'exec', ns, process.execPath, '--input-type=module', '-e', SERVER,
    pathToFileURL(join(import.meta.dirname, '..', 'sidecar', 'original-destination.ts')).href,
    ...specs,
  ]);
  servers.push(child);
  await waitForOutput(child, 'ready', `the server in ${ns}`);
}

before(async () => {
  net = await createPodAndDb('origdst');
  // The sidecar stand-in in the pod (REDIRECT sends to 127.0.0.1 / ::1), and the same server as
  // the upstream in "db", a namespace with no rules, so with no NAT and possibly no conntrack.
  await startServer(net.pod, [`127.0.0.1@${SIDECAR}`, `::1@${SIDECAR}`, `::@${SIDECAR_DUAL}`]);
  await startServer(net.db, [`::@${UPSTREAM}`]);
  await applyInterceptionRules({ ...RULES, family: 'ipv4' }, { run: net.podRunner });
  await applyInterceptionRules({ ...RULES, family: 'ipv6' }, { run: net.podRunner });
});

after(async () => {
  for (const child of servers) await stopProcess(child, 'SIGKILL', 2_000);
  await net.destroy();
});

describe('the SO_ORIGINAL_DST addon', () => {
  it('is built and loads in the pinned Node 24', () => {
    assert.ok(process.version.startsWith('v24.'), `tests run on Node 24 (npm scripts put node_modules/.bin/node first), got ${process.version}`);
    assert.ok(existsSync(ORIGINAL_DST_ADDON_PATH), `npm ci builds ${ORIGINAL_DST_ADDON_PATH}; see its install output`);
    assert.deepEqual(originalDestinationAvailable(), { available: true });
  });

  it('throws errors coded with the errno name, as Node system errors are', () => {
    const addon = createRequire(import.meta.url)(ORIGINAL_DST_ADDON_PATH) as { originalDestination(fd: unknown): unknown };
    assert.throws(() => addon.originalDestination(0x7fff_fff0), { code: 'EBADF', syscall: 'getsockname', errno: -9 });
    const file = openSync(process.execPath, 'r');
    try {
      assert.throws(() => addon.originalDestination(file), { code: 'ENOTSOCK', syscall: 'getsockname' });
    } finally {
      closeSync(file);
    }
    for (const bad of [-1, 1.5, '3', undefined, 2 ** 40]) {
      assert.throws(() => addon.originalDestination(bad), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }, String(bad));
    }
  });

  it('reads the fd of an accepted socket through the internal handle (pinned by this test on every Node upgrade)', async () => {
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
    const client = tcpConnect((listener.address() as AddressInfo).port, '127.0.0.1');
    const socket = await accepted;
    try {
      assert.equal(socketFd(new Socket()), -1, 'a socket without a handle has no fd');
      const fd = socketFd(socket);
      assert.ok(Number.isInteger(fd) && fd > 2, `an accepted TCP socket has a real fd, got ${fd}`);
      // Each side has its own descriptor.
      assert.notEqual(socketFd(client), fd);
    } finally {
      client.destroy();
      socket.destroy();
      listener.close();
    }
    assert.equal(socketFd(socket), -1, 'a destroyed socket has no fd');
    assert.equal(originalDestination(socket).code, 'ERR_ORIG_DST_NO_FD');
  });
});

describe('originalDestination(socket) behind the real interception rules', () => {
  const cases = [
    { what: 'IPv4 target host:port', host: '10.231.0.2', port: 5432, family: 4, local: `127.0.0.1:${SIDECAR}` },
    { what: 'IPv6 target host:port', host: 'fd00:231::2', port: 5432, family: 6, local: `::1:${SIDECAR}` },
    { what: 'IPv4 port-wide target, any host', host: '10.231.0.3', port: 6432, family: 4, local: `127.0.0.1:${SIDECAR}` },
    { what: 'IPv6 port-wide target, any host', host: 'fd00:231::3', port: 6432, family: 6, local: `::1:${SIDECAR}` },
    { what: 'IPv4 redirected to a dual-stack listener (IPv4-mapped socket)', host: '10.231.0.3', port: 7000, family: 4, local: `::ffff:127.0.0.1:${SIDECAR_DUAL}` },
  ] as const;
  for (const c of cases) {
    it(`returns the address the app dialled: ${c.what} (${c.host} port ${c.port})`, async () => {
      const answer = await ask(c.host, c.port);
      assert.ok(answer.version.startsWith('v24.'), `the sidecar stand-in runs Node 24, got ${answer.version}`);
      assert.equal(answer.local, c.local, 'the connection was redirected to the sidecar listener');
      assert.deepEqual(answer.lookup, { destination: { address: c.host, port: c.port, family: c.family } });
    });
  }

  // Not redirected. In the pod, conntrack is active (the nat rules need it), so the kernel finds
  // the connection's entry and returns its un-NATed destination, the listener itself; the lookup
  // reports that as ENOENT. In "db" no rule needs conntrack (registered per namespace on demand),
  // so the kernel has no entry and getsockopt itself fails with ENOENT.
  const itself = /no NAT mapping \(the original destination is the listener itself/;
  const kernel = /not redirected \(no NAT mapping\): getsockopt\(SOL_IP(V6)?, (IP6T_)?SO_ORIGINAL_DST\) ENOENT/;
  const direct = [
    { what: 'a direct connection to the sidecar listener (IPv4)', host: '127.0.0.1', port: SIDECAR, reason: itself },
    { what: 'a direct connection to the sidecar listener (IPv6)', host: '::1', port: SIDECAR, reason: itself },
    { what: 'a connection to a port that is not a target, at the upstream (IPv4)', host: '10.231.0.2', port: UPSTREAM, reason: kernel },
    { what: 'a connection to a port that is not a target, at the upstream (IPv6)', host: 'fd00:231::2', port: UPSTREAM, reason: kernel },
  ] as const;
  for (const c of direct) {
    it(`returns undefined with ENOENT for ${c.what}`, async () => {
      const answer = await ask(c.host, c.port);
      assert.equal(answer.local.replace(/^::ffff:/, ''), `${c.host}:${c.port}`, 'the connection landed where it was addressed');
      assert.equal(answer.lookup.destination, undefined, JSON.stringify(answer.lookup));
      assert.equal(answer.lookup.code, 'ENOENT', JSON.stringify(answer.lookup));
      assert.match(answer.lookup.reason, c.reason);
    });
  }
});

describe('loadOriginalDestinationReader', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'custos-origdst-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reports unavailable, naming the file, when the .node file is missing', () => {
    const missing = join(dir, 'missing', 'original_dst.node');
    const reader = loadOriginalDestinationReader(missing);
    const availability = reader.originalDestinationAvailable();
    assert.equal(availability.available, false);
    assert.match(availability.reason, /is missing/);
    assert.ok(availability.reason.includes(missing), availability.reason);
    const lookup = reader.originalDestination(new Socket());
    assert.equal(lookup.destination, undefined);
    assert.equal(lookup.code, 'ERR_ORIG_DST_UNAVAILABLE');
    assert.ok(lookup.reason.includes(missing), lookup.reason);
  });

  it('reports unavailable when the .node file is not a loadable addon', async () => {
    const broken = join(dir, 'broken.node');
    await writeFile(broken, 'not an ELF shared object');
    const availability = loadOriginalDestinationReader(broken).originalDestinationAvailable();
    assert.equal(availability.available, false);
    assert.match(availability.reason, /does not load in Node v24\./);
  });
});
