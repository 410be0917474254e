// A workload pod and its upstream database as two network namespaces on this machine, for the
// interception tests (test/interception-netns.test.ts, test/init-command.test.ts). Namespace "pod"
// is the workload pod; namespace "db" is the upstream, reached over a veth pair. Only addresses on
// this veth (10.231.0.0/16, fd00:231::/48) are used: no packet leaves the machine.
//
//   pod  c0 10.231.0.1/24 fd00:231::1/64  ─── veth ───  c1 10.231.0.2, .3/24, 10.231.9.2/32   db
//        (routes 10.231.9.0/24, fd00:231:9::/64 via db)      fd00:231::2, ::3/64, fd00:231:9::2/128
//
// Listeners answer every connection with "<label> <local address>:<port>", so a client learns where
// its connection landed (Node cannot read SO_ORIGINAL_DST; a redirect shows as the sidecar's port).
// Needs root and `ip netns`: without them `createPodAndDb` throws, so the tests fail, never skip.
import type { ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import type { CommandRunner } from '../../operator/interception/apply-rules.ts';
import type { AddressFamily } from '../../operator/interception/iptables-rules.ts';
import { run, spawnManaged, stopProcess, waitForOutput } from './processes.ts';
import { letOtherUsersReachRepo } from './repo-access.ts';

export const NETNS_NODE = process.execPath;

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

export interface PodAndDb {
  /** Network namespace names. */
  readonly pod: string;
  readonly db: string;
  /** Runs a command to completion; rejects with its stderr when it exits non-zero. */
  sh(args: readonly string[], input?: string): Promise<string>;
  /** `args` prefixed to run inside the pod namespace (`ip netns exec POD ...`). */
  inPod(args: readonly string[]): string[];
  /** Runs iptables binaries inside the pod (for apply-rules.ts). */
  readonly podRunner: CommandRunner;
  /** Starts `label@host@port` listeners in `ns` as `uid`; resolves once all are bound. */
  startListeners(ns: string, uid: number, specs: readonly string[]): Promise<void>;
  /** Connects from the pod as uid/gid; returns what answered, e.g. "sidecar 127.0.0.1:15432". */
  connect(uid: number, gid: number, host: string, port: number): Promise<string>;
  /** The pod's nat table as iptables-save prints it, without the timestamped comments and counters. */
  natTable(family: AddressFamily): Promise<string>;
  /** /etc/hosts as processes started through `inPod` see it (`ip netns exec` bind-mounts /etc/netns/POD/hosts). */
  setPodHosts(text: string): Promise<void>;
  /** Stops the listeners, deletes both namespaces and the pod's /etc/netns folder. */
  destroy(): Promise<void>;
}

/** setpriv arguments that run the rest of the command as uid/gid with no supplementary groups. */
export function asIds(uid: number, gid: number): string[] {
  return ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups'];
}

/** The OUTPUT rules that jump to CUSTOS_OUTPUT in a table from `natTable`. */
export function outputJumps(table: string): string[] {
  return table.split('\n').filter((l) => l.startsWith('-A OUTPUT') && /-j CUSTOS_OUTPUT\b/.test(l));
}

/** Creates the two namespaces and the veth between them; `label` keeps concurrent test files apart. */
export async function createPodAndDb(label: string): Promise<PodAndDb> {
  if (process.getuid?.() !== 0) {
    throw new Error('the network-namespace tests must run as root (CI does): they create network namespaces, a veth pair and iptables rules. Run them with sudo.');
  }
  // Processes in the pod run as other UIDs and load the checkout's modules.
  await letOtherUsersReachRepo();
  const pod = `custos-t-${process.pid}-${label}-pod`;
  const db = `custos-t-${process.pid}-${label}-db`;
  const children: ChildProcess[] = [];
  const created: string[] = [];
  const sh = async (args: readonly string[], input?: string): Promise<string> => run(args[0] ?? '', args.slice(1), input === undefined ? {} : { input });
  const inPod = (args: readonly string[]): string[] => ['ip', 'netns', 'exec', pod, ...args];
  const etcDir = `/etc/netns/${pod}`;

  const destroy = async (): Promise<void> => {
    // Processes first: a namespace with live processes outlives `ip netns del`.
    for (const child of children) await stopProcess(child, 'SIGKILL', 2_000);
    for (const ns of created) {
      await sh(['ip', 'netns', 'del', ns]).catch((e: unknown) => {
        console.error(`cleanup: ${String(e)}`);
      });
    }
    await rm(etcDir, { recursive: true, force: true });
  };

  try {
    for (const ns of [pod, db]) {
      try {
        await sh(['ip', 'netns', 'add', ns]);
      } catch (e) {
        throw new Error(`cannot create network namespace ${ns} with \`ip netns add\` (iproute2, see test/harness/install-debian-deps.sh): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      created.push(ns);
    }
    const setup: string[][] = [
      ['ip', '-n', pod, 'link', 'set', 'lo', 'up'],
      ['ip', '-n', db, 'link', 'set', 'lo', 'up'],
      ['ip', '-n', pod, 'link', 'add', 'c0', 'type', 'veth', 'peer', 'name', 'c1', 'netns', db],
      ['ip', '-n', pod, 'addr', 'add', '10.231.0.1/24', 'dev', 'c0'],
      ['ip', '-n', pod, 'addr', 'add', 'fd00:231::1/64', 'dev', 'c0', 'nodad'],
      ['ip', '-n', db, 'addr', 'add', '10.231.0.2/24', 'dev', 'c1'],
      ['ip', '-n', db, 'addr', 'add', '10.231.0.3/24', 'dev', 'c1'],
      ['ip', '-n', db, 'addr', 'add', '10.231.9.2/32', 'dev', 'c1'],
      ['ip', '-n', db, 'addr', 'add', 'fd00:231::2/64', 'dev', 'c1', 'nodad'],
      ['ip', '-n', db, 'addr', 'add', 'fd00:231::3/64', 'dev', 'c1', 'nodad'],
      ['ip', '-n', db, 'addr', 'add', 'fd00:231:9::2/128', 'dev', 'c1', 'nodad'],
      ['ip', '-n', pod, 'link', 'set', 'c0', 'up'],
      ['ip', '-n', db, 'link', 'set', 'c1', 'up'],
      ['ip', '-n', pod, 'route', 'add', '10.231.9.0/24', 'via', '10.231.0.2'],
      ['ip', '-n', pod, '-6', 'route', 'add', 'fd00:231:9::/64', 'via', 'fd00:231::2'],
    ];
    for (const args of setup) await sh(args);
    for (const family of ['ipv4', 'ipv6'] as const) {
      const save = family === 'ipv4' ? 'iptables-save' : 'ip6tables-save';
      await sh(inPod([save, '-t', 'nat'])).catch((e: unknown) => {
        throw new Error(`${save} -t nat fails in a network namespace: this kernel has no ${family} nat table, so ${family} interception cannot be tested (${e instanceof Error ? e.message : String(e)})`, { cause: e });
      });
    }
  } catch (e) {
    await destroy();
    throw e;
  }

  return {
    pod,
    db,
    sh,
    inPod,
    podRunner: (command, args, stdin) => sh(inPod([command, ...args]), stdin),
    async startListeners(ns, uid, specs) {
      const child = spawnManaged('ip', ['netns', 'exec', ns, ...asIds(uid, uid), NETNS_NODE, '-e', SERVER, ...specs]);
      children.push(child);
      await waitForOutput(child, 'ready', `listeners ${specs.join(' ')} in ${ns}`);
    },
    async connect(uid, gid, host, port) {
      return (await sh(inPod([...asIds(uid, gid), NETNS_NODE, '-e', CLIENT, host, String(port)]))).trim();
    },
    async natTable(family) {
      const out = await sh(inPod([family === 'ipv4' ? 'iptables-save' : 'ip6tables-save', '-t', 'nat']));
      // Drop the timestamped header/footer and counters, keep every rule and chain.
      return out
        .split('\n')
        .filter((l) => !l.startsWith('#'))
        .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
        .join('\n');
    },
    async setPodHosts(text) {
      await mkdir(etcDir, { recursive: true });
      await writeFile(`${etcDir}/hosts`, text);
    },
    destroy,
  };
}
