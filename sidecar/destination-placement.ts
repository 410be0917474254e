// Which target a connection that reached a target's listener is for (DESIGN §3 "Interception",
// reference/kubernetes.md §8). custos-init REDIRECTs each target's host:port to that target's own
// listener, so in the normal case the listener already knows its target; the original destination
// (SO_ORIGINAL_DST, sidecar/original-destination.ts) is the check that the connection really was
// going to that target's current addresses. Everything else is refused, never forwarded to a
// default upstream:
//
//   - redirected, the destination is the listener's target          → serve
//   - redirected, the destination is another target's               → refuse (08004): stale or
//     overlapping interception rules must not let one target's traffic run under another's policy
//   - redirected, the destination is no target's                    → refuse (08004): the policy
//     has no audited-passthrough setting (crds/accesspolicy.yaml), so unknown means denied
//   - not redirected (ENOENT: the client dialled the listener)      → serve (explicit mode)
//   - the addon is not loaded (ERR_ORIG_DST_UNAVAILABLE)            → serve, unverified: redirected
//     and direct connections cannot be told apart, the sidecar said so loudly at start-up (ADR 0010)
//   - the destination could not be read for another reason          → refuse (fail closed)
//
// Pure: the caller passes the lookup and each target's current addresses (target-addresses.ts).
// node:net's BlockList and SocketAddress are used as value types only (no sockets): they compare
// addresses the way the kernel prints them, so '::ffff:a.b.c.d' or '0:0::1' spellings cannot slip by.
import { BlockList, SocketAddress } from 'node:net';
import type { OriginalDestination, OriginalDestinationLookup } from './original-destination.ts';

/** A target as interception sees it: the address the workload dials, and what it resolves to now. */
export interface TargetDestination {
  readonly name: string;
  /** As the policy spells it (DNS name, IP address or CIDR); for messages. */
  readonly host: string;
  readonly port: number;
  /** IP addresses or CIDRs `host` stands for (its last good resolution); empty: not known. */
  readonly addresses: readonly string[];
  /** Why the last resolution failed, when it did (the last good addresses stay in use). */
  readonly resolutionError?: string;
}

export interface PlacementInput {
  /** The target whose listener accepted the connection. */
  readonly listenerTarget: string;
  readonly lookup: OriginalDestinationLookup;
  readonly targets: readonly TargetDestination[];
}

/** How a served connection was placed (logged and counted). */
export type ServedVia =
  /** Redirected, and its original destination is one of the target's addresses. */
  | 'original-destination'
  /** Not redirected: the client connected to the listener itself (explicit mode). */
  | 'direct'
  /** The SO_ORIGINAL_DST addon is not loaded: placed by listener port alone (explicit mode). */
  | 'unverified';

export type RefusalReason = 'other-target' | 'unknown-destination' | 'unreadable-destination';

export type Placement =
  | { readonly kind: 'serve'; readonly target: string; readonly via: ServedVia; readonly destination?: string }
  | {
      readonly kind: 'refuse';
      readonly reason: RefusalReason;
      /** SQLSTATE for the ErrorResponse. */
      readonly sqlstate: string;
      /** ErrorResponse message, naming the destination. */
      readonly message: string;
      readonly detail?: string;
      readonly hint?: string;
      /** `address:port` the client dialled, when it could be read. */
      readonly destination?: string;
      /** The target that owns the destination (reason `other-target`). */
      readonly owner?: string;
    };

/** 08004: sqlserver_rejected_establishment_of_sqlconnection (PostgreSQL errcodes.txt, class 08). */
export const DESTINATION_REFUSED_SQLSTATE = '08004';

/** `10.96.0.12:5432`, `[fd00::c]:5432`. */
export function formatDestination(destination: OriginalDestination): string {
  return destination.family === 6 ? `[${destination.address}]:${destination.port}` : `${destination.address}:${destination.port}`;
}

interface AddressMatcher {
  /** BlockList would match IPv4 against IPv6 rules as IPv4-mapped (so '::/0' would take all). */
  readonly family: 'ipv4' | 'ipv6';
  readonly list: BlockList;
  /** Prefix length of the entry: 32/128 for a single address, so the most specific entry wins. */
  readonly prefix: number;
}

/** One BlockList per entry; an entry that is neither an IP nor a CIDR matches nothing. */
function matcherOf(entry: string): AddressMatcher | undefined {
  const slash = entry.indexOf('/');
  const text = slash === -1 ? entry : entry.slice(0, slash);
  for (const family of ['ipv4', 'ipv6'] as const) {
    let address: SocketAddress;
    try {
      address = new SocketAddress({ address: text, family });
    } catch {
      continue;
    }
    const bits = family === 'ipv4' ? 32 : 128;
    const list = new BlockList();
    if (slash === -1) {
      list.addAddress(address);
      return { family, list, prefix: bits };
    }
    const prefixText = entry.slice(slash + 1);
    const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (!(prefix >= 0 && prefix <= bits)) return undefined;
    list.addSubnet(address, prefix);
    return { family, list, prefix };
  }
  return undefined;
}

/**
 * How specifically `target` claims `destination`: the longest matching prefix, or -1. Like the
 * interception rules (most specific first), the most specific target owns an address.
 */
function claim(target: TargetDestination, destination: OriginalDestination): number {
  if (target.port !== destination.port) return -1;
  const family = destination.family === 4 ? 'ipv4' : 'ipv6';
  let best = -1;
  for (const entry of target.addresses) {
    const matcher = matcherOf(entry);
    if (matcher?.family === family && matcher.prefix > best && matcher.list.check(destination.address, family)) best = matcher.prefix;
  }
  return best;
}

/** What the listener's target stands for, for the detail of a refusal. */
function describeTarget(target: TargetDestination | undefined, name: string): string {
  if (target === undefined) return `target "${name}" is not in the current policy`;
  const spelled = target.host.includes(':') && !target.host.includes('/') ? `[${target.host}]` : target.host;
  const known = target.addresses.length > 0 ? `, currently ${target.addresses.join(', ')}` : ', whose addresses are not known';
  const failed = target.resolutionError !== undefined ? ` (last resolution failed: ${target.resolutionError})` : '';
  return `this listener serves target "${name}" (${spelled}:${target.port}${known})${failed}`;
}

export function placeConnection(input: PlacementInput): Placement {
  const { lookup, listenerTarget } = input;
  if (lookup.destination === undefined) {
    if (lookup.code === 'ENOENT') return { kind: 'serve', target: listenerTarget, via: 'direct' };
    if (lookup.code === 'ERR_ORIG_DST_UNAVAILABLE') return { kind: 'serve', target: listenerTarget, via: 'unverified' };
    return {
      kind: 'refuse',
      reason: 'unreadable-destination',
      sqlstate: DESTINATION_REFUSED_SQLSTATE,
      message: `Custos refuses this connection: it cannot tell where the connection was going (${lookup.code})`,
      detail: lookup.reason,
    };
  }

  const destination = lookup.destination;
  const at = formatDestination(destination);
  let owner: TargetDestination | undefined;
  let ownerClaim = -1;
  for (const target of input.targets) {
    const strength = claim(target, destination);
    // Ties go to the listener's own target: the rules sent the connection there.
    if (strength > ownerClaim || (strength >= 0 && strength === ownerClaim && target.name === listenerTarget)) {
      owner = target;
      ownerClaim = strength;
    }
  }
  if (owner?.name === listenerTarget) return { kind: 'serve', target: listenerTarget, via: 'original-destination', destination: at };

  const mine = input.targets.find((t) => t.name === listenerTarget);
  if (owner !== undefined) {
    return {
      kind: 'refuse',
      reason: 'other-target',
      sqlstate: DESTINATION_REFUSED_SQLSTATE,
      message: `Custos refuses this connection: ${at} is the address of target "${owner.name}", but the connection was redirected to the listener of target "${listenerTarget}"`,
      detail: describeTarget(mine, listenerTarget),
      hint: 'The pod\'s interception rules do not match the targets\' current addresses; restart the pod so custos-init reprograms them.',
      destination: at,
      owner: owner.name,
    };
  }
  return {
    kind: 'refuse',
    reason: 'unknown-destination',
    sqlstate: DESTINATION_REFUSED_SQLSTATE,
    message: `Custos refuses this connection: ${at} is not the address of any target in the policy (unknown destinations are refused)`,
    detail: describeTarget(mine, listenerTarget),
    destination: at,
  };
}
