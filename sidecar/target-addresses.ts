// The addresses each policy target's host stands for right now, as the placement of intercepted
// connections needs them (destination-placement.ts). A Service name resolves to its ClusterIP
// (kube-proxy DNAT happens on the node, after the pod's OUTPUT hook, so that is what
// SO_ORIGINAL_DST reports); an external database's name resolves to whatever its DNS says today,
// which changes on managed-database failover. So names are re-resolved periodically (30 s by
// default) and at every policy change; a failed resolution keeps the last good answer (a DNS blip
// must not refuse every connection), and is reported with it. IP addresses and CIDRs are taken as
// they are, with no DNS.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { TargetDestination } from './destination-placement.ts';

/** The addresses of a host name, as the pod's resolver answers (getaddrinfo: /etc/hosts, then DNS). */
export type HostResolver = (host: string) => Promise<readonly string[]>;

export const systemResolver: HostResolver = async (host) => (await lookup(host, { all: true, order: 'verbatim' })).map((a) => a.address);

/** What a target is dialled as (AccessPolicy spec.targets[]). */
export interface TargetEndpoint {
  readonly name: string;
  readonly host: string;
  readonly port: number;
}

export type Resolution = { readonly addresses: readonly string[] } | { readonly error: string };

/** An IP address or a CIDR: used as it is, never looked up. */
export function isLiteralHost(host: string): boolean {
  return isIP(host) !== 0 || (host.includes('/') && isIP(host.slice(0, host.indexOf('/'))) !== 0);
}

/**
 * The next state of one target after a resolution. Pure. The last good addresses survive a failed
 * or empty answer only while the target is still dialled as the same host: addresses of a host the
 * policy no longer names would place connections by a stale promise.
 */
export function nextDestination(previous: TargetDestination | undefined, endpoint: TargetEndpoint, resolution: Resolution): TargetDestination {
  const base = { name: endpoint.name, host: endpoint.host, port: endpoint.port };
  const kept = previous !== undefined && previous.host === endpoint.host ? previous.addresses : [];
  if ('error' in resolution) return { ...base, addresses: kept, resolutionError: resolution.error };
  // Sorted and deduplicated, so the state (and log lines about changes) do not depend on DNS order.
  const addresses = [...new Set(resolution.addresses)].sort();
  if (addresses.length === 0) return { ...base, addresses: kept, resolutionError: `${endpoint.host} resolved to no address` };
  return { ...base, addresses };
}

export interface TargetAddressBookOptions {
  /** The targets of the current policy (called at each refresh and lookup). */
  readonly targets: () => readonly TargetEndpoint[];
  readonly resolve?: HostResolver;
  /** How often names are re-resolved (default 30 s). */
  readonly refreshIntervalMs?: number;
  readonly logger: Logger;
}

function describe(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : e instanceof Error ? e.message : String(e);
}

export class TargetAddressBook {
  readonly #options: TargetAddressBookOptions;
  readonly #resolve: HostResolver;
  readonly #entries = new Map<string, TargetDestination>();
  #refreshing: Promise<void> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: TargetAddressBookOptions) {
    this.#options = options;
    this.#resolve = options.resolve ?? systemResolver;
  }

  /** Resolves every target once, then keeps refreshing in the background. */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => { void this.refresh(); }, this.#options.refreshIntervalMs ?? 30_000);
    this.#timer.unref();
  }

  /**
   * Re-resolves every target now. Never rejects. A call during a refresh runs one more refresh
   * after it (a policy change must not be answered with the resolution of the previous policy).
   */
  refresh(): Promise<void> {
    if (this.#refreshing !== undefined) {
      this.#again = true;
      return this.#refreshing;
    }
    const run = async (): Promise<void> => {
      let pending = true;
      while (pending) {
        this.#again = false;
        await this.#refreshOnce();
        pending = this.#again;
      }
    };
    this.#refreshing = run().finally(() => { this.#refreshing = undefined; });
    return this.#refreshing;
  }

  /** Each current target with its addresses; a target not resolved yet has none. */
  current(): TargetDestination[] {
    return this.#options.targets().map((t) => {
      const entry = this.#entries.get(t.name);
      if (entry !== undefined && entry.host === t.host && entry.port === t.port) return entry;
      // A literal needs no resolution; a name added by a policy change waits for its refresh.
      if (isLiteralHost(t.host)) return nextDestination(undefined, t, { addresses: [t.host] });
      return entry !== undefined ? nextDestination(entry, t, { error: 'not resolved yet' }) : { ...t, addresses: [], resolutionError: 'not resolved yet' };
    });
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #refreshOnce(): Promise<void> {
    const endpoints = this.#options.targets();
    const results = await Promise.all(endpoints.map(async (t): Promise<Resolution> => {
      if (isLiteralHost(t.host)) return { addresses: [t.host] };
      try {
        return { addresses: await this.#resolve(t.host) };
      } catch (e: unknown) {
        return { error: `${t.host} does not resolve (${describe(e)})` };
      }
    }));
    const names = new Set<string>();
    for (const [i, t] of endpoints.entries()) {
      const resolution = results[i];
      if (resolution === undefined) continue;
      names.add(t.name);
      const previous = this.#entries.get(t.name);
      const next = nextDestination(previous, t, resolution);
      this.#entries.set(t.name, next);
      this.#report(previous, next);
    }
    for (const name of [...this.#entries.keys()]) if (!names.has(name)) this.#entries.delete(name);
  }

  #report(previous: TargetDestination | undefined, next: TargetDestination): void {
    const log = this.#options.logger;
    const fields = { target: next.name, host: next.host, port: next.port, addresses: next.addresses };
    if (next.resolutionError !== undefined) {
      if (previous?.resolutionError !== next.resolutionError) {
        log.warn({ ...fields, err: next.resolutionError }, next.addresses.length > 0 ? 'target host does not resolve: keeping its last known addresses' : 'target host does not resolve: intercepted connections to it are refused until it does');
      }
      return;
    }
    if (previous === undefined || previous.addresses.join(',') !== next.addresses.join(',') || previous.host !== next.host || previous.port !== next.port) {
      log.info({ ...fields, previous: previous?.addresses }, 'target addresses');
    } else if (previous.resolutionError !== undefined) {
      log.info(fields, 'target host resolves again');
    }
  }
}
