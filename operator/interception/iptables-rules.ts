// Transparent interception rules for custos-init (DESIGN §3 "Interception", reference/kubernetes.md
// §7): pure text generation of one `iptables-restore --noflush` document for the nat table, per
// address family, plus a pure check of what `iptables-save -t nat` reports after applying it.
// operator/interception/apply-rules.ts runs the binaries; nothing here touches the system.
//
// Rule order in CUSTOS_OUTPUT (first match wins):
//   1. RETURN for the proxy's UID and GID: the sidecar's own upstream connections are never
//      captured (loop prevention).
//   2. REDIRECT for targets whose host is a loopback address (127.0.0.0/8, ::1): they must come
//      before the loopback RETURN or they could never match.
//   3. RETURN for traffic leaving through `lo`: pod-local services (anything on 127.0.0.1 or the
//      pod's own IP) are not upstreams, even on a target port.
//   4. RETURN for excluded CIDRs (cloud metadata, node-local DNS, ...).
//   5. REDIRECT per target, most specific first: longest host prefix first, targets without a host
//      (any destination on that port) last, so a host-specific target wins over a port-wide one.
//
// Idempotency. `:CUSTOS_OUTPUT - [0:0]` under `--noflush` creates the chain or flushes only that
// chain, so re-applying replaces its rules atomically. The jump from OUTPUT cannot be made
// idempotent inside the document: `-I` adds a second copy on every run, and a `-D` of a rule that
// is absent fails the whole restore. So the caller passes the current nat table (`iptables-save -t
// nat`, read just before applying) and the builder decides: when exactly one jump exists, it is
// ours and it is the first OUTPUT rule, the document leaves OUTPUT alone; otherwise it deletes every
// existing jump to CUSTOS_OUTPUT by its exact `iptables-save` spelling (so the `-D`s are known to
// match) and inserts the canonical one at position 1, in the same atomic restore. This heals
// duplicates and jumps written by older versions, and needs no separate `iptables -C` round-trip
// with its exit-code ambiguity (1 = rule absent, 2 = chain absent or other error). The window
// between the read and the restore is not a concern: only custos-init writes this jump, once per
// pod network namespace, and a concurrent writer would make the post-apply check fail loudly.
// The jump goes first in OUTPUT so another mesh's chain cannot take the packet before Custos does.
import { CustosError } from '../../lib/errors.ts';

export type AddressFamily = 'ipv4' | 'ipv6';

export interface InterceptionTarget {
  /** Policy target name (AccessPolicy spec.targets[].name); used in the rule comment. */
  readonly name: string;
  /**
   * One IP address or CIDR, already resolved by the caller (a Service's ClusterIP, a database IP).
   * Omitted: any destination on `port`. A host of the other family is skipped for this family.
   */
  readonly host?: string;
  /** Destination port the workload connects to. */
  readonly port: number;
  /** Sidecar listener port the connection is redirected to. */
  readonly redirectTo: number;
}

export interface InterceptionInput {
  readonly targets: readonly InterceptionTarget[];
  /** UID of the sidecar (17337): its traffic is never redirected. */
  readonly proxyUid: number;
  /** GID of the sidecar (17337): its traffic is never redirected. */
  readonly proxyGid: number;
  /** Destinations never redirected; may mix families, entries of the other family are skipped. */
  readonly excludeCidrs?: readonly string[];
  readonly family: AddressFamily;
  /**
   * The nat table as `iptables-save -t nat` (or `ip6tables-save`) prints it right now, '' for a
   * fresh network namespace. Decides whether the OUTPUT jump is (re)installed; see the header.
   */
  readonly currentNatTable: string;
}

export const CHAIN = 'CUSTOS_OUTPUT';
export const JUMP_COMMENT = 'custos/install';
/** The OUTPUT → CUSTOS_OUTPUT jump, without the `-A/-I OUTPUT` prefix. */
export const JUMP_SPEC = `-p tcp -m comment --comment "${JUMP_COMMENT}" -j ${CHAIN}`;

const TARGET_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const MAX_ID = 4_294_967_294; // (uid_t)-1 means "unchanged" to the kernel

function invalid(field: string, problem: string): never {
  throw new CustosError('ERR_INTERCEPTION_INVALID', `invalid interception input: ${field}: ${problem}`);
}

// ---------------------------------------------------------------------------------------------
// Addresses (node:net is off limits here; the parsing is small and strict)

interface Network {
  readonly family: AddressFamily;
  /** Network address as an unsigned integer (32 or 128 bits). */
  readonly address: bigint;
  readonly prefix: number;
}

function bits(family: AddressFamily): number {
  return family === 'ipv4' ? 32 : 128;
}

function parseIPv4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // No leading zeros: inet_aton would read "010" as octal 8.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIPv6(text: string): bigint | undefined {
  if (text.includes('%')) return undefined; // zone IDs have no meaning in a rule
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (s: string): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    const pieces = s.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i] ?? '';
      if (i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseIPv4(piece);
        if (v4 === undefined) return undefined;
        out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) {
        out.push(parseInt(piece, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groupsOf(halves[0] ?? '');
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  if (head === undefined || tail === undefined) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

function formatAddress(family: AddressFamily, address: bigint): string {
  if (family === 'ipv4') {
    return [24n, 16n, 8n, 0n].map((shift) => String((address >> shift) & 0xffn)).join('.');
  }
  // RFC 5952: lower case, no leading zeros, the longest run (≥ 2) of zero groups becomes "::".
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => Number((address >> shift) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Parses an IP address or CIDR of either family; host bits must be zero. */
function parseNetwork(field: string, text: string): Network {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  const v4 = parseIPv4(addressText);
  const family: AddressFamily | undefined = v4 !== undefined ? 'ipv4' : parseIPv6(addressText) !== undefined ? 'ipv6' : undefined;
  if (family === undefined) invalid(field, `${JSON.stringify(text)} is not an IPv4 or IPv6 address or CIDR`);
  const address = v4 ?? parseIPv6(addressText) ?? 0n;
  const max = bits(family);
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > max) {
      invalid(field, `${JSON.stringify(text)} has an invalid ${family} prefix length (0-${max})`);
    }
    prefix = Number(prefixText);
  }
  const hostMask = (1n << BigInt(max - prefix)) - 1n;
  if ((address & hostMask) !== 0n) {
    invalid(field, `${JSON.stringify(text)} has host bits set; did you mean ${formatAddress(family, address & ~hostMask)}/${prefix}?`);
  }
  return { family, address, prefix };
}

function formatNetwork(n: Network): string {
  return `${formatAddress(n.family, n.address)}/${n.prefix}`;
}

/** True when every address of `inner` lies inside `outer` (same family). */
function contains(outer: Network, inner: Network): boolean {
  if (inner.prefix < outer.prefix) return false;
  const shift = BigInt(bits(outer.family) - outer.prefix);
  return inner.address >> shift === outer.address >> shift;
}

const LOOPBACK: Record<AddressFamily, Network> = {
  ipv4: { family: 'ipv4', address: 127n << 24n, prefix: 8 },
  ipv6: { family: 'ipv6', address: 1n, prefix: 128 },
};

// ---------------------------------------------------------------------------------------------
// Validation

function checkPort(field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    invalid(field, `${JSON.stringify(value)} is not a port (an integer from 1 to 65535)`);
  }
}

function checkId(field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_ID) {
    invalid(field, `${JSON.stringify(value)} is not a numeric ID (0-${MAX_ID})`);
  }
  if (value === 0) invalid(field, 'must not be 0: every root process (the init container included) would escape interception');
}

/** Array.isArray without its narrowing to any[]. */
function isList(value: unknown): boolean {
  return Array.isArray(value);
}

interface PlannedTarget {
  readonly index: number;
  readonly name: string;
  readonly network: Network | undefined;
  readonly port: number;
  readonly redirectTo: number;
}

interface Plan {
  readonly family: AddressFamily;
  readonly proxyUid: number;
  readonly proxyGid: number;
  readonly loopbackTargets: readonly PlannedTarget[];
  readonly excludes: readonly Network[];
  readonly targets: readonly PlannedTarget[];
}

function plan(input: InterceptionInput): Plan {
  const { family } = input;
  // Runtime checks too: custos init reads these from a config file, not only from typed code.
  if (!['ipv4', 'ipv6'].includes(family)) invalid('family', `${JSON.stringify(family)} is neither "ipv4" nor "ipv6"`);
  checkId('proxyUid', input.proxyUid);
  checkId('proxyGid', input.proxyGid);
  const targets: readonly InterceptionTarget[] = input.targets;
  if (!isList(targets)) invalid('targets', 'must be an array');
  if (typeof input.currentNatTable !== 'string') invalid('currentNatTable', "must be the output of iptables-save -t nat ('' for a fresh network namespace)");

  const excludes: Network[] = [];
  (input.excludeCidrs ?? []).forEach((cidr, i) => {
    const field = `excludeCidrs[${i}]`;
    if (typeof cidr !== 'string') invalid(field, 'must be a string');
    const n = parseNetwork(field, cidr.trim());
    if (n.prefix === 0) invalid(field, `${cidr} excludes every destination, which turns interception off; remove it`);
    if (n.family === family && !excludes.some((e) => e.address === n.address && e.prefix === n.prefix)) excludes.push(n);
  });

  const planned: PlannedTarget[] = [];
  targets.forEach((t, i) => {
    const field = `targets[${i}]`;
    if (typeof t.name !== 'string' || t.name.length > 63 || !TARGET_NAME.test(t.name)) {
      invalid(`${field}.name`, `${JSON.stringify(t.name)} is not a target name (lower-case letters, digits and '-', at most 63)`);
    }
    checkPort(`${field}.port`, t.port);
    checkPort(`${field}.redirectTo`, t.redirectTo);
    let network: Network | undefined;
    if (t.host !== undefined) {
      if (typeof t.host !== 'string') invalid(`${field}.host`, 'must be a string');
      network = parseNetwork(`${field}.host`, t.host.trim());
      if (network.prefix === 0) invalid(`${field}.host`, `${t.host} matches every destination; omit host instead`);
      if (network.family !== family) return; // programmed by the other family's document
      const hidden = excludes.find((e) => contains(e, network as Network));
      if (hidden !== undefined) {
        invalid(`${field}.host`, `${t.host} lies inside excluded CIDR ${formatNetwork(hidden)}, so it would never be intercepted`);
      }
    }
    const same = planned.find((p) => p.port === t.port && (p.network === undefined ? network === undefined : network !== undefined && p.network.address === network.address && p.network.prefix === network.prefix));
    if (same !== undefined) {
      if (same.redirectTo !== t.redirectTo) {
        invalid(field, `same destination as targets[${same.index}] (${network === undefined ? 'any host' : formatNetwork(network)}, port ${t.port}) but a different redirectTo (${t.redirectTo} vs ${same.redirectTo})`);
      }
      return; // an exact duplicate adds nothing
    }
    planned.push({ index: i, name: t.name, network, port: t.port, redirectTo: t.redirectTo });
  });

  // Most specific first; Array.prototype.sort is stable, so input order breaks ties.
  const ordered = [...planned].sort((a, b) => (b.network?.prefix ?? -1) - (a.network?.prefix ?? -1));
  const loopback = LOOPBACK[family];
  const isLoopback = (p: PlannedTarget): boolean => p.network !== undefined && contains(loopback, p.network);
  return {
    family,
    proxyUid: input.proxyUid,
    proxyGid: input.proxyGid,
    loopbackTargets: ordered.filter(isLoopback),
    excludes,
    targets: ordered.filter((p) => !isLoopback(p)),
  };
}

// ---------------------------------------------------------------------------------------------
// Rendering

function chainRules(p: Plan): Array<{ spec: string; comment: string }> {
  const rules: Array<{ spec: string; comment: string }> = [];
  const add = (spec: string, comment: string, action: string): void => {
    rules.push({ spec: `${spec} -m comment --comment "${comment}" ${action}`.trim(), comment });
  };
  const redirect = (t: PlannedTarget): void => {
    const dest = t.network === undefined ? '' : `-d ${formatNetwork(t.network)} `;
    add(`-p tcp ${dest}--dport ${t.port}`, `custos/target:${t.name}`, `-j REDIRECT --to-ports ${t.redirectTo}`);
  };
  add(`-m owner --uid-owner ${p.proxyUid}`, 'custos/ignore-proxy-uid', '-j RETURN');
  add(`-m owner --gid-owner ${p.proxyGid}`, 'custos/ignore-proxy-gid', '-j RETURN');
  p.loopbackTargets.forEach(redirect);
  add('-o lo', 'custos/ignore-loopback', '-j RETURN');
  for (const e of p.excludes) add(`-d ${formatNetwork(e)}`, 'custos/exclude-cidr', '-j RETURN');
  p.targets.forEach(redirect);
  return rules;
}

/**
 * The `iptables-restore --noflush` document (nat table) for one family. Throws CustosError
 * ERR_INTERCEPTION_INVALID naming the field for invalid input.
 */
export function buildInterceptionRules(input: InterceptionInput): string {
  const p = plan(input);
  const restore = p.family === 'ipv4' ? 'iptables-restore' : 'ip6tables-restore';
  const lines = [
    `# Custos interception rules (${p.family}, nat table); apply with: ${restore} --noflush -w 5`,
    '*nat',
    `:${CHAIN} - [0:0]`,
    ...chainRules(p).map((r) => `-A ${CHAIN} ${r.spec}`),
  ];
  const jumps = outputJumps(input.currentNatTable);
  const keep = jumps.length === 1 && jumps[0]?.first === true && isCanonicalJump(jumps[0].tokens);
  if (!keep) {
    for (const jump of jumps) lines.push(`-D OUTPUT ${jump.spec}`);
    lines.push(`-I OUTPUT 1 ${JUMP_SPEC}`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Reading iptables-save output

/** Splits a rule line like the iptables-restore parser: whitespace, double quotes group. */
function tokenize(line: string): string[] {
  const tokens: string[] = [];
  for (const m of line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) tokens.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? ''));
  return tokens;
}

/** The `-A` lines of the nat table (all lines when the text carries no table markers, as `iptables -S`). */
function natRuleLines(natTable: string): string[] {
  const lines = natTable.split('\n').map((l) => l.trim());
  const hasTables = lines.some((l) => l.startsWith('*'));
  let inNat = !hasTables;
  const out: string[] = [];
  for (const line of lines) {
    if (line.startsWith('*')) inNat = line === '*nat';
    else if (line === 'COMMIT') inNat = !hasTables && inNat;
    else if (inNat && line.startsWith('-A ')) out.push(line);
  }
  return out;
}

function jumpsTo(tokens: readonly string[], chain: string): boolean {
  return tokens.some((t, i) => (t === '-j' || t === '--jump' || t === '-g' || t === '--goto') && tokens[i + 1] === chain);
}

interface ExistingJump {
  /** The rule as iptables-save spelled it, minus `-A OUTPUT`: valid for `-D OUTPUT <spec>`. */
  readonly spec: string;
  readonly tokens: readonly string[];
  /** The first rule of OUTPUT. */
  readonly first: boolean;
}

function outputJumps(natTable: string): ExistingJump[] {
  const output = natRuleLines(natTable).filter((l) => tokenize(l)[1] === 'OUTPUT');
  return output.flatMap((line, i) => {
    const tokens = tokenize(line);
    return jumpsTo(tokens, CHAIN) ? [{ spec: line.replace(/^-A\s+OUTPUT\s+/, ''), tokens: tokens.slice(2), first: i === 0 }] : [];
  });
}

function isCanonicalJump(tokens: readonly string[]): boolean {
  // iptables-save prints the canonical jump as `-p tcp -m comment --comment "custos/install" -j
  // CUSTOS_OUTPUT` (nft) or without the quotes (legacy); compare tokens, not text.
  return tokens.join(' ') === tokenize(JUMP_SPEC).join(' ');
}

/** What identifies a rule across re-spellings by iptables-save: comment, matches that carry values, target port. */
function signature(tokens: readonly string[]): string {
  const value = (...flags: string[]): string => {
    const i = tokens.findIndex((t) => flags.includes(t));
    return i < 0 ? '-' : (tokens[i + 1] ?? '-');
  };
  return [value('--comment'), value('-o', '--out-interface'), value('-d', '--destination'), value('--dport', '--destination-port'), value('--uid-owner'), value('--gid-owner'), value('-j', '--jump'), value('--to-ports')].join(' ');
}

/**
 * Compares the nat table read back after applying with what `input` asks for: exactly one OUTPUT
 * jump, canonical and first; CUSTOS_OUTPUT holding the generated rules in order (compared by comment,
 * interface, destination, port, owner and target values, since iptables-save re-spells rules, e.g.
 * `-d X -p tcp -m tcp --dport`).
 * Returns the problems found, [] when the table is as intended.
 */
export function verifyInstalledRules(input: Omit<InterceptionInput, 'currentNatTable'>, natTableAfter: string): string[] {
  const p = plan({ ...input, currentNatTable: '' });
  const problems: string[] = [];
  const jumps = outputJumps(natTableAfter);
  if (jumps.length !== 1) problems.push(`expected exactly one OUTPUT jump to ${CHAIN}, found ${jumps.length}`);
  else if (!isCanonicalJump(jumps[0]?.tokens ?? [])) problems.push(`the OUTPUT jump is not the expected one: ${jumps[0]?.spec ?? ''}`);
  else if (jumps[0]?.first !== true) problems.push(`the OUTPUT jump to ${CHAIN} is not the first OUTPUT rule`);
  const expected = chainRules(p).map((r) => signature(tokenize(r.spec)));
  const actual = natRuleLines(natTableAfter)
    .map(tokenize)
    .filter((t) => t[1] === CHAIN)
    .map(signature);
  if (expected.join('\n') !== actual.join('\n')) {
    problems.push(`${CHAIN} holds [${actual.join('; ')}], expected [${expected.join('; ')}]`);
  }
  return problems;
}
