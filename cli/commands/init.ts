// `custos init`: the entry point of the injected init container `custos-init` (ADR 0006). The
// webhook (operator/webhook/build-patch.ts) runs it as `args: [init]` with one environment variable,
// CUSTOS_INTERCEPTION: the JSON of `interceptionSpec` (operator/webhook/sidecar-config.ts). It
// installs the transparent interception rules for both address families and exits:
//
//   parse and validate the whole spec (exit 2 naming the field)
//   → resolve target host names (exit 1 when one does not resolve: the kubelet retries)
//   → build both families' documents first, so an invalid one stops everything before any rule
//     is installed
//   → apply each family with operator/interception/apply-rules.ts (iptables-restore --noflush -w,
//     read back and verified), print one summary line, exit 0.
//
// Re-running it (a pod restart re-runs init containers) yields the same rules: the builder replaces
// its chain and keeps a single OUTPUT jump. `--dry-run` prints the restore documents instead (for a
// fresh network namespace) and needs no privileges.
//
// Host names are resolved here, once, because iptables matches addresses: a target's Service
// ClusterIP is stable for the Service's life, but a name whose addresses change later (an external
// database behind DNS) is intercepted at the addresses it had when the pod started.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import type { AccessPolicyTarget } from '../../crds/generated/access-policy.ts';
import { CustosError, isCustosError } from '../../lib/errors.ts';
import { applyInterceptionRules, type CommandRunner } from '../../operator/interception/apply-rules.ts';
import { buildInterceptionRules, type AddressFamily, type InterceptionInput, type InterceptionTarget } from '../../operator/interception/iptables-rules.ts';
import type { InterceptionSpec } from '../../operator/webhook/sidecar-config.ts';
import { isRecord } from '../../lib/is-record.ts';

export const INTERCEPTION_ENV = 'CUSTOS_INTERCEPTION';

/** The CRD's `spec.targets[].protocol` values (crds/accesspolicy.yaml). */
const PROTOCOLS = ['postgres'] as const satisfies ReadonlyArray<AccessPolicyTarget['protocol']>;
// Fails to type-check when the CRD gains a protocol this list lacks.
const _protocolsComplete: [Exclude<AccessPolicyTarget['protocol'], (typeof PROTOCOLS)[number]>] extends [never] ? true : never = true;

const SPEC_FIELDS = ['proxyUid', 'proxyGid', 'excludeOutboundCIDRs', 'redirects'] as const;
const REDIRECT_FIELDS = ['target', 'protocol', 'host', 'port', 'listenPort'] as const;
const TARGET_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_NAME = /^(?=.{1,253}\.?$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\.?$/i;
const MAX_ID = 4_294_967_294;
/** Far more than any policy has; bounds the work a malformed variable can cause. */
const MAX_ENTRIES = 256;

const USAGE = `usage: custos init [--dry-run]

Installs the transparent interception rules described by the ${INTERCEPTION_ENV} environment
variable (JSON, set by the Custos webhook) in the current network namespace, for IPv4 and IPv6.
  --dry-run   print the iptables-restore documents instead of applying them
Exit codes: 0 installed, 1 could not install (retryable), 2 invalid ${INTERCEPTION_ENV} or usage.
`;

function invalid(field: string, problem: string): never {
  throw new CustosError('ERR_INIT_SPEC_INVALID', `${field}: ${problem}`);
}


function checkFields(field: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) if (!allowed.includes(key)) invalid(`${field}.${key}`, 'field not declared in schema');
  for (const key of allowed) if (!Object.hasOwn(value, key)) invalid(`${field}.${key}`, 'Required value');
}

function integer(field: string, value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) invalid(field, `${JSON.stringify(value)} is not ${what} (an integer from ${min} to ${max})`);
  return value;
}

function list(field: string, value: unknown): unknown[] {
  if (!Array.isArray(value)) invalid(field, 'must be an array');
  if (value.length > MAX_ENTRIES) invalid(field, `more than ${MAX_ENTRIES} entries`);
  return value as unknown[];
}

/**
 * Parses and validates CUSTOS_INTERCEPTION. Throws CustosError ERR_INIT_SPEC_INVALID naming the
 * field (`CUSTOS_INTERCEPTION.redirects[0].port: ...`). Addresses and CIDRs are checked later by
 * the rule builder, whose errors are reported under the same field names.
 */
export function parseInterceptionSpec(text: string | undefined): InterceptionSpec {
  const root = INTERCEPTION_ENV;
  if (text === undefined || text.trim() === '') invalid(root, 'Required value (the JSON the Custos webhook sets on the custos-init container)');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e: unknown) {
    invalid(root, `not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!isRecord(value)) invalid(root, 'must be a JSON object');
  checkFields(root, value, SPEC_FIELDS);
  const proxyUid = integer(`${root}.proxyUid`, value['proxyUid'], 1, MAX_ID, 'a non-root UID');
  const proxyGid = integer(`${root}.proxyGid`, value['proxyGid'], 1, MAX_ID, 'a non-root GID');
  const excludeOutboundCIDRs = list(`${root}.excludeOutboundCIDRs`, value['excludeOutboundCIDRs']).map((cidr, i) => {
    if (typeof cidr !== 'string' || cidr === '') invalid(`${root}.excludeOutboundCIDRs[${i}]`, 'must be an IP address or CIDR string');
    return cidr;
  });
  const redirects = list(`${root}.redirects`, value['redirects']).map((r, i) => {
    const field = `${root}.redirects[${i}]`;
    if (!isRecord(r)) invalid(field, 'must be an object');
    checkFields(field, r, REDIRECT_FIELDS);
    const { target, protocol, host } = r;
    if (typeof target !== 'string' || target.length > 63 || !TARGET_NAME.test(target)) {
      invalid(`${field}.target`, `${JSON.stringify(target)} is not a target name (lower-case letters, digits and '-', at most 63)`);
    }
    if (typeof protocol !== 'string' || !(PROTOCOLS as readonly string[]).includes(protocol)) {
      invalid(`${field}.protocol`, `Unsupported value: ${JSON.stringify(protocol)}: supported values: ${PROTOCOLS.map((p) => `"${p}"`).join(', ')}`);
    }
    if (typeof host !== 'string' || host === '') invalid(`${field}.host`, 'must be an IP address, CIDR or DNS name');
    if (!host.includes('/') && isIP(host) === 0 && !DNS_NAME.test(host)) invalid(`${field}.host`, `${JSON.stringify(host)} is not an IP address, CIDR or DNS name`);
    return {
      target,
      protocol,
      host,
      port: integer(`${field}.port`, r['port'], 1, 65535, 'a TCP port'),
      listenPort: integer(`${field}.listenPort`, r['listenPort'], 1, 65535, 'a TCP port'),
    };
  });
  return { proxyUid, proxyGid, excludeOutboundCIDRs, redirects };
}

/** Addresses of a host name, as the pod's resolver (getaddrinfo: /etc/hosts, then DNS) answers. */
export type HostResolver = (host: string) => Promise<readonly string[]>;

export const systemResolver: HostResolver = async (host) => (await lookup(host, { all: true, order: 'verbatim' })).map((a) => a.address);

/** One rule-builder target, with the redirect it came from (for error messages and the summary). */
interface PlannedTarget {
  readonly target: InterceptionTarget;
  readonly redirect: number;
  /** The DNS name the address was resolved from. */
  readonly resolvedFrom?: string;
}

/** Resolves the DNS names among the redirect hosts; IP addresses and CIDRs pass through. */
export async function planTargets(spec: InterceptionSpec, resolve: HostResolver): Promise<PlannedTarget[]> {
  const planned: PlannedTarget[] = [];
  for (const [i, r] of spec.redirects.entries()) {
    const base = { name: r.target, port: r.port, redirectTo: r.listenPort };
    if (r.host.includes('/') || isIP(r.host) !== 0) {
      planned.push({ target: { ...base, host: r.host }, redirect: i });
      continue;
    }
    let addresses: readonly string[];
    try {
      addresses = await resolve(r.host);
    } catch (e: unknown) {
      const code = (e as { code?: unknown }).code;
      throw new CustosError('ERR_INIT_RESOLVE', `${INTERCEPTION_ENV}.redirects[${i}].host: ${r.host} does not resolve (${typeof code === 'string' ? code : e instanceof Error ? e.message : String(e)})`, { cause: e });
    }
    // Sorted (IPv4 first), so the rules and the summary do not depend on the resolver's order.
    const unique = [...new Set(addresses)].sort((a, b) => isIP(a) - isIP(b) || a.localeCompare(b));
    if (unique.length === 0) throw new CustosError('ERR_INIT_RESOLVE', `${INTERCEPTION_ENV}.redirects[${i}].host: ${r.host} resolves to no address`);
    for (const address of unique) planned.push({ target: { ...base, host: address }, redirect: i, resolvedFrom: r.host });
  }
  return planned;
}

function ruleInput(spec: InterceptionSpec, planned: readonly PlannedTarget[], family: AddressFamily): Omit<InterceptionInput, 'currentNatTable'> {
  return { family, proxyUid: spec.proxyUid, proxyGid: spec.proxyGid, excludeCidrs: spec.excludeOutboundCIDRs, targets: planned.map((p) => p.target) };
}

/** Rewrites a rule-builder error (`targets[3].host: ...`) into the CUSTOS_INTERCEPTION field it came from. */
function specError(e: CustosError, planned: readonly PlannedTarget[]): CustosError {
  const m = /^invalid interception input: (targets\[(\d+)\](\.\w+)?|excludeCidrs(\[\d+\])|(proxyUid|proxyGid)): (.*)$/s.exec(e.message);
  if (m === null) return new CustosError('ERR_INIT_SPEC_INVALID', `${INTERCEPTION_ENV}: ${e.message}`, { cause: e });
  let field: string;
  let problem = m[6] ?? '';
  if (m[2] !== undefined) {
    const p = planned[Number(m[2])];
    field = `${INTERCEPTION_ENV}.redirects[${p?.redirect ?? '?'}]${m[3] ?? ''}`;
    if (p?.resolvedFrom !== undefined) problem += ` (resolved from ${p.resolvedFrom})`;
  } else if (m[4] !== undefined) {
    field = `${INTERCEPTION_ENV}.excludeOutboundCIDRs${m[4]}`;
  } else {
    field = `${INTERCEPTION_ENV}.${m[5] ?? ''}`;
  }
  return new CustosError('ERR_INIT_SPEC_INVALID', `${field}: ${problem}`, { cause: e });
}

/** Both families' documents for a fresh network namespace; throws ERR_INIT_SPEC_INVALID for invalid input. */
function buildDocuments(spec: InterceptionSpec, planned: readonly PlannedTarget[]): Record<AddressFamily, string> {
  try {
    return {
      ipv4: buildInterceptionRules({ ...ruleInput(spec, planned, 'ipv4'), currentNatTable: '' }),
      ipv6: buildInterceptionRules({ ...ruleInput(spec, planned, 'ipv6'), currentNatTable: '' }),
    };
  } catch (e: unknown) {
    if (isCustosError(e, 'ERR_INTERCEPTION_INVALID')) throw specError(e, planned);
    throw e;
  }
}

function summary(spec: InterceptionSpec, planned: readonly PlannedTarget[]): string {
  const redirects = spec.redirects.map((r, i) => {
    const addresses = planned.filter((p) => p.redirect === i).map((p) => p.target.host ?? '*');
    const shown = addresses.length === 1 && addresses[0] === r.host ? r.host : `${r.host} [${addresses.join(', ')}]`;
    return `${r.target} ${shown}:${r.port} → ${r.listenPort}`;
  });
  const cidrs = spec.excludeOutboundCIDRs.length;
  return `custos init: ipv4 and ipv6 interception installed and verified: ${redirects.length > 0 ? redirects.join(', ') : 'no targets'}; uid ${spec.proxyUid} and gid ${spec.proxyGid} exempt; ${cidrs} excluded CIDR${cidrs === 1 ? '' : 's'}`;
}

export interface InitDependencies {
  readonly env?: NodeJS.ProcessEnv;
  readonly resolve?: HostResolver;
  /** Runs iptables-save/-restore (default: spawn them directly). */
  readonly run?: CommandRunner;
  readonly stdout?: (text: string) => void;
  readonly stderr?: (text: string) => void;
}

/** Exit code: 0 installed (or printed), 1 could not install (retryable), 2 invalid input or usage. */
export async function runInit(args: string[], deps: InitDependencies = {}): Promise<number> {
  const out = deps.stdout ?? ((text: string) => { process.stdout.write(text); });
  const err = deps.stderr ?? ((text: string) => { process.stderr.write(text); });
  let dryRun: boolean;
  try {
    const { values } = parseArgs({ args, options: { 'dry-run': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
    if (values.help === true) {
      out(USAGE);
      return 0;
    }
    dryRun = values['dry-run'] === true;
  } catch (e: unknown) {
    err(`custos init: ${e instanceof Error ? e.message : String(e)}\n\n${USAGE}`);
    return 2;
  }
  const nothingInstalled = 'no interception rules were installed';
  try {
    const spec = parseInterceptionSpec((deps.env ?? process.env)[INTERCEPTION_ENV]);
    const planned = await planTargets(spec, deps.resolve ?? systemResolver);
    const documents = buildDocuments(spec, planned);
    if (dryRun) {
      out(`# custos init --dry-run: the documents for a fresh network namespace (an existing OUTPUT jump changes the last lines)\n${documents.ipv4}${documents.ipv6}`);
      return 0;
    }
    const options = deps.run !== undefined ? { run: deps.run } : {};
    for (const family of ['ipv4', 'ipv6'] as const) {
      try {
        await applyInterceptionRules(ruleInput(spec, planned, family), options);
      } catch (e: unknown) {
        // IPv4 may already be in place when IPv6 fails; the pod does not start either way (this
        // container failed), and the retry replaces the chain.
        const state = family === 'ipv6' ? 'ipv4 rules are installed, ipv6 rules are not' : nothingInstalled;
        err(`custos init: ${e instanceof Error ? e.message : String(e)} (${state}; the pod does not start until custos-init succeeds)\n`);
        return 1;
      }
    }
    out(`${summary(spec, planned)}\n`);
    return 0;
  } catch (e: unknown) {
    if (isCustosError(e, 'ERR_INIT_SPEC_INVALID')) {
      err(`custos init: invalid ${e.message}; ${nothingInstalled}\n`);
      return 2;
    }
    err(`custos init: ${e instanceof Error ? e.message : String(e)}; ${nothingInstalled}\n`);
    return 1;
  }
}
