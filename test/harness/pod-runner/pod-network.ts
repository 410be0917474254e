// Pod networking as a CNI bridge plugin sets it up: one Linux bridge per runner (the "node") with
// the gateway address of a private /24, and per pod a network namespace whose eth0 is one end of a
// veth pair, the other end on the bridge. The pod gets the next free address and a default route
// via the gateway, so the pod reaches the host at the gateway address and the host reaches the
// pod at its IP. /etc/netns/<ns>/hosts and resolv.conf are what `ip netns exec` bind-mounts over
// /etc/hosts and /etc/resolv.conf: cluster DNS names of test Services resolve from the hosts file,
// and every other name fails at once (the resolver on the pod's loopback refuses) rather than
// reaching the host's DNS.
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { run } from '../processes.ts';

/** A Service name the pods resolve: `name.namespace.svc(.cluster.local)`, and `name` in its own namespace. */
export interface ServiceAddress {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
}

export interface PodNetwork {
  readonly netns: string;
  readonly podIP: string;
  /** Rewrites the pod's hosts file in place (processes that have it open see the new text). */
  writeHosts(services: readonly ServiceAddress[], extraHosts: Readonly<Record<string, string>>): Promise<void>;
  destroy(): Promise<void>;
}

export interface NodeNetwork {
  readonly bridge: string;
  /** The host side: the pods' gateway; listen here for something pods must reach on the host. */
  readonly gateway: string;
  readonly cidr: string;
  createPod(namespace: string, name: string, hostname: string): Promise<PodNetwork>;
  destroy(): Promise<void>;
}

const BASE = '10.188';

export function hostsFile(podIP: string, hostname: string, podNamespace: string, services: readonly ServiceAddress[], extraHosts: Readonly<Record<string, string>>): string {
  const lines = [
    '# Kubernetes-managed hosts file (custos pod runner).',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    `${podIP}\t${hostname}`,
  ];
  for (const s of services) {
    const names = [`${s.name}.${s.namespace}.svc.cluster.local`, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}`];
    if (s.namespace === podNamespace) names.push(s.name);
    lines.push(`${s.address}\t${names.join(' ')}`);
  }
  for (const [name, address] of Object.entries(extraHosts)) lines.push(`${address}\t${name}`);
  return `${lines.join('\n')}\n`;
}

async function ip(args: readonly string[]): Promise<string> {
  return run('ip', args);
}

const ALIAS = 'custos-pod-runner:';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e: unknown) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes what runners that died without stopping left behind (their bridge carries the owner's
 * PID as its alias; their pods' namespaces are named after the bridge), so reruns after a crash
 * do not accumulate bridges and namespaces.
 */
async function sweepDeadRunners(): Promise<void> {
  const links = await ip(['-o', 'link', 'show', 'type', 'bridge']);
  const dead = [...links.matchAll(/^\d+: (cpr\d+)[:@].*alias custos-pod-runner:(\d+)/gm)].filter((m) => !alive(Number(m[2]))).map((m) => m[1] ?? '');
  if (dead.length === 0) return;
  const namespaces = (await ip(['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '');
  const etc = await readdir('/etc/netns').catch(() => [] as string[]);
  for (const bridge of dead) {
    for (const ns of namespaces.filter((n) => n.startsWith(`${bridge}-`))) await ip(['netns', 'del', ns]).catch(() => undefined);
    for (const dir of etc.filter((n) => n.startsWith(`${bridge}-`))) await rm(`/etc/netns/${dir}`, { recursive: true, force: true });
    await ip(['link', 'del', bridge]).catch(() => undefined);
  }
}

export async function createNodeNetwork(): Promise<NodeNetwork> {
  if (process.getuid?.() !== 0) throw new Error('the pod runner must run as root (CI does): it creates network namespaces, veth pairs and a bridge, mounts volumes and switches UIDs');
  await sweepDeadRunners();
  const used = await ip(['-4', '-o', 'addr', 'show']);
  let third = 0;
  let bridge = '';
  for (let attempt = 0; attempt < 50 && bridge === ''; attempt += 1) {
    const candidate = 1 + Math.floor(Math.random() * 253);
    if (used.includes(`${BASE}.${candidate}.`)) continue;
    try {
      // The bridge name carries the subnet: a second runner that picked the same one fails here.
      await ip(['link', 'add', `cpr${candidate}`, 'type', 'bridge']);
      third = candidate;
      bridge = `cpr${candidate}`;
    } catch {
      // Taken by a concurrent runner; pick another.
    }
  }
  if (bridge === '') throw new Error(`no free /24 in ${BASE}.0.0/16 for the pod runner's bridge`);
  const gateway = `${BASE}.${third}.1`;
  await ip(['link', 'set', bridge, 'alias', `${ALIAS}${process.pid}`]);
  await ip(['addr', 'add', `${gateway}/24`, 'dev', bridge]);
  await ip(['link', 'set', bridge, 'up']);

  const free = new Set<number>();
  for (let i = 2; i < 255; i += 1) free.add(i);
  const pods = new Set<PodNetwork>();
  let serial = 0;

  return {
    bridge,
    gateway,
    cidr: `${BASE}.${third}.0/24`,
    async createPod(namespace, name, hostname): Promise<PodNetwork> {
      const host = free.values().next().value;
      if (host === undefined) throw new Error(`the pod runner's /24 is full (${BASE}.${third}.0/24)`);
      free.delete(host);
      serial += 1;
      const netns = `cpr${third}-${serial}-${namespace}-${name}`.slice(0, 200);
      const veth = `cpr${third}p${serial}`;
      const podIP = `${BASE}.${third}.${host}`;
      const etcDir = `/etc/netns/${netns}`;
      let created = false;
      let destroyed: Promise<void> | undefined;
      const destroy = (): Promise<void> => (destroyed ??= (async () => {
        pods.delete(network);
        if (created) await ip(['netns', 'del', netns]).catch((e: unknown) => { console.error(`pod runner cleanup: ${String(e)}`); });
        await ip(['link', 'del', veth]).catch(() => undefined);
        await rm(etcDir, { recursive: true, force: true });
        free.add(host);
      })());
      const network: PodNetwork = {
        netns,
        podIP,
        async writeHosts(services, extraHosts) {
          if (destroyed !== undefined) return;
          await writeFile(`${etcDir}/hosts`, hostsFile(podIP, hostname, namespace, services, extraHosts));
        },
        destroy,
      };
      try {
        await ip(['netns', 'add', netns]);
        created = true;
        await ip(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
        await ip(['link', 'set', veth, 'master', bridge, 'up']);
        await ip(['-n', netns, 'link', 'set', 'lo', 'up']);
        await ip(['-n', netns, 'addr', 'add', `${podIP}/24`, 'dev', 'eth0']);
        await ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
        await ip(['-n', netns, 'route', 'add', 'default', 'via', gateway]);
        await mkdir(etcDir, { recursive: true });
        await writeFile(`${etcDir}/resolv.conf`, `# custos pod runner: no cluster DNS; Service names resolve from /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n`);
        await network.writeHosts([], {});
      } catch (e: unknown) {
        await destroy();
        throw e;
      }
      pods.add(network);
      return network;
    },
    async destroy(): Promise<void> {
      for (const p of [...pods]) await p.destroy();
      await ip(['link', 'del', bridge]).catch((e: unknown) => { console.error(`pod runner cleanup: ${String(e)}`); });
    },
  };
}
