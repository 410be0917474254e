// What the webhook injects, as one typed object: images, the proxy UID, ports, resources, the spool
// and the workload token. The defaults below are the values of reference/kubernetes.md §6–§7; the
// chart fills the same object from values.yaml (DESIGN §5), and `validateInjectionSettings` refuses
// combinations that would break pods at runtime instead of at admission.
import { CustosError } from '../../lib/errors.ts';

export interface ResourceSettings {
  readonly requests: { readonly cpu: string; readonly memory: string };
  readonly limits: { readonly cpu?: string; readonly memory: string };
}

export interface InjectionSettings {
  /** Custos release; part of the status annotation, so an upgrade re-injects on reinvocation. */
  readonly version: string;
  readonly images: {
    /** custos-init: iptables-legacy + iptables-nft, applies the interception rules and exits. */
    readonly init: string;
    readonly sidecar: string;
    readonly pullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  };
  /** UID and GID of the sidecar; iptables RETURNs their traffic, so no app may use them. */
  readonly proxyUid: number;
  readonly proxyGid: number;
  readonly ports: {
    /** /healthz, /readyz, /metrics (bound on the pod IP: the kubelet probes it there). */
    readonly admin: number;
    /** Targets without `listenPort` get the lowest free port from here on, in target order. */
    readonly firstTargetListener: number;
  };
  readonly resources: { readonly init: ResourceSettings; readonly sidecar: ResourceSettings };
  readonly startupProbe: { readonly periodSeconds: number; readonly failureThreshold: number };
  readonly spool: {
    /** The sidecar's own limit; it stops accepting audited work before the volume is full. */
    readonly maxBytes: number;
    /** emptyDir sizeLimit: larger than maxBytes, or the kubelet evicts the pod first. */
    readonly sizeLimit: string;
  };
  readonly serviceAccountToken: { readonly audience: string; readonly expirationSeconds: number };
  /** Passed to custos-init: destinations never redirected (cloud metadata, node-local DNS). */
  readonly interception: { readonly excludeOutboundCIDRs: readonly string[] };
  /** How the sidecar verifies its own projected token (the cluster's service-account issuer). */
  readonly workloadIdentity?: {
    readonly issuer: string;
    readonly jwksUri: string;
    /** How often the sidecar asks the API server whether the pod's service account still exists; unset: the sidecar's default. */
    readonly serviceAccountCheckSeconds?: number;
  };
  readonly redisUrl?: string;
  /**
   * The operator's relay of Kubernetes reviews (ADR 0011): its issuer and public JWKS, written into
   * every policy ConfigMap (`reviewers.jwks.json`) and the sidecar config. Set at operator start-up
   * from the review signing key when approvals have Redis.
   */
  readonly reviewRelay?: { readonly issuer: string; readonly jwks: string };
}

export const DEFAULT_INJECTION_SETTINGS: InjectionSettings = {
  version: '0.1.0',
  images: {
    init: 'ghcr.io/custos-io/custos-init:0.1.0',
    sidecar: 'ghcr.io/custos-io/custos:0.1.0',
    pullPolicy: 'IfNotPresent',
  },
  proxyUid: 17337,
  proxyGid: 17337,
  ports: { admin: 17020, firstTargetListener: 17100 },
  resources: {
    init: { requests: { cpu: '10m', memory: '16Mi' }, limits: { cpu: '100m', memory: '64Mi' } },
    // No CPU limit on the data path: throttling adds query latency (requests still reserve it).
    sidecar: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
  },
  startupProbe: { periodSeconds: 1, failureThreshold: 120 },
  spool: { maxBytes: 256 * 1024 * 1024, sizeLimit: '320Mi' },
  serviceAccountToken: { audience: 'custos', expirationSeconds: 3600 },
  interception: { excludeOutboundCIDRs: ['169.254.169.254/32'] },
};

/** UIDs that other proxies and root use; the proxy UID must differ from all of them (§7). */
const FORBIDDEN_PROXY_IDS = new Set([0, 1337, 2102]);

const BINARY_SUFFIX: Readonly<Record<string, number>> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const DECIMAL_SUFFIX: Readonly<Record<string, number>> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** Bytes of a Kubernetes memory quantity (`320Mi`, `1G`, `1048576`); undefined when not one. */
export function parseByteQuantity(quantity: string): number | undefined {
  const m = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  if (m === null) return undefined;
  const suffix = m[2] ?? '';
  const factor = BINARY_SUFFIX[suffix] ?? DECIMAL_SUFFIX[suffix];
  return factor === undefined ? undefined : Number(m[1]) * factor;
}

/** Throws ERR_INJECTION_SETTINGS_INVALID naming the field; returns the settings unchanged. */
export function validateInjectionSettings(settings: InjectionSettings): InjectionSettings {
  const fail = (field: string, problem: string): never => {
    throw new CustosError('ERR_INJECTION_SETTINGS_INVALID', `invalid injection settings: ${field}: ${problem}`);
  };
  for (const field of ['proxyUid', 'proxyGid'] as const) {
    const id = settings[field];
    if (!Number.isInteger(id) || id < 1 || id > 2 ** 31 - 1) fail(field, `${id} is not a valid non-root id`);
    if (FORBIDDEN_PROXY_IDS.has(id)) fail(field, `${id} is root or another proxy's id (istio-proxy 1337, linkerd-proxy 2102)`);
  }
  for (const field of ['admin', 'firstTargetListener'] as const) {
    const port = settings.ports[field];
    if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`ports.${field}`, `${port} is not a TCP port`);
  }
  if (settings.ports.admin >= settings.ports.firstTargetListener && settings.ports.admin < settings.ports.firstTargetListener + 256) {
    fail('ports.admin', `${settings.ports.admin} falls in the target listener range starting at ${settings.ports.firstTargetListener}`);
  }
  const sizeLimit = parseByteQuantity(settings.spool.sizeLimit);
  if (sizeLimit === undefined) fail('spool.sizeLimit', `${JSON.stringify(settings.spool.sizeLimit)} is not a memory quantity`);
  else if (sizeLimit <= settings.spool.maxBytes) {
    fail('spool.sizeLimit', `${settings.spool.sizeLimit} must exceed spool.maxBytes (${settings.spool.maxBytes}), or the kubelet evicts the pod before the sidecar stops spooling`);
  }
  const { expirationSeconds } = settings.serviceAccountToken;
  if (!Number.isInteger(expirationSeconds) || expirationSeconds < 600) {
    fail('serviceAccountToken.expirationSeconds', `${expirationSeconds} is below the API server's minimum of 600`);
  }
  if (settings.serviceAccountToken.audience === '') fail('serviceAccountToken.audience', 'must not be empty');
  return settings;
}
