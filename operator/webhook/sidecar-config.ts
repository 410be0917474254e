// The contract between the injected pod and the per-policy ConfigMap: where things are mounted,
// which ConfigMap keys hold what, which local port serves which target, and the sidecar config
// file (sidecar/config.ts schema) for a policy. The webhook (mounts, init container arguments) and
// the operator (ConfigMap contents) both derive from these functions, so they cannot disagree.
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import type { InjectionSettings } from './injection-settings.ts';

export const MOUNT_PATHS = {
  policyDir: '/etc/custos/policy',
  sidecarConfigDir: '/etc/custos/sidecar',
  credentialsDir: '/var/run/custos/credentials',
  tokenDir: '/var/run/secrets/custos',
  spoolDir: '/var/lib/custos/spool',
  reviewerKeysDir: '/etc/custos/reviewers',
} as const;

/** Keys of the per-policy ConfigMap the operator maintains. */
export const POLICY_CONFIGMAP_KEYS = { policy: 'policy.yaml', sidecarConfig: 'sidecar.yaml', reviewerKeys: 'reviewers.jwks.json' } as const;

/** Where the sidecar finds the operator's public keys for relayed Kubernetes reviews. */
export const REVIEWER_KEYS_FILE = `${MOUNT_PATHS.reviewerKeysDir}/jwks.json`;

export const SIDECAR_CONFIG_FILE = `${MOUNT_PATHS.sidecarConfigDir}/config.yaml`;
export const POLICY_FILE = `${MOUNT_PATHS.policyDir}/${POLICY_CONFIGMAP_KEYS.policy}`;
export const TOKEN_FILE = `${MOUNT_PATHS.tokenDir}/token`;

export function policyConfigMapName(policyName: string): string {
  return `custos-policy-${policyName}`;
}

/**
 * Local listener port per target name: `listenPort` when the policy sets one, else the lowest port
 * from `ports.firstTargetListener` that no other target uses, in target order (deterministic).
 */
export function assignListenPorts(policy: AccessPolicy, settings: InjectionSettings): ReadonlyMap<string, number> {
  const taken = new Set<number>([settings.ports.admin]);
  for (const t of policy.spec.targets) if (t.listenPort !== undefined) taken.add(t.listenPort);
  const ports = new Map<string, number>();
  let next = settings.ports.firstTargetListener;
  for (const t of policy.spec.targets) {
    if (t.listenPort !== undefined) {
      ports.set(t.name, t.listenPort);
      continue;
    }
    while (taken.has(next)) next++;
    ports.set(t.name, next);
    taken.add(next);
  }
  return ports;
}

/** What custos-init needs to program iptables (passed as the CUSTOS_INTERCEPTION JSON env var). */
export interface InterceptionSpec {
  readonly proxyUid: number;
  readonly proxyGid: number;
  readonly excludeOutboundCIDRs: readonly string[];
  readonly redirects: ReadonlyArray<{ readonly target: string; readonly protocol: string; readonly host: string; readonly port: number; readonly listenPort: number }>;
}

export function interceptionSpec(policy: AccessPolicy, settings: InjectionSettings): InterceptionSpec {
  const ports = assignListenPorts(policy, settings);
  return {
    proxyUid: settings.proxyUid,
    proxyGid: settings.proxyGid,
    excludeOutboundCIDRs: [...settings.interception.excludeOutboundCIDRs],
    redirects: policy.spec.targets.map((t) => ({ target: t.name, protocol: t.protocol, host: t.host, port: t.port, listenPort: ports.get(t.name) ?? t.port })),
  };
}

/**
 * The sidecar config file for `policy` (key `sidecar.yaml` of the policy ConfigMap, mounted as
 * /etc/custos/sidecar/config.yaml). Pod identity is not in it: the sidecar reads CUSTOS_POD_UID,
 * CUSTOS_POD_NAME and CUSTOS_POD_NAMESPACE from the downward API, so one file serves every pod.
 */
export function renderSidecarConfig(policy: AccessPolicy, settings: InjectionSettings): Record<string, unknown> {
  const wi = settings.workloadIdentity;
  return {
    policyFile: POLICY_FILE,
    listen: { host: '127.0.0.1', ports: Object.fromEntries(assignListenPorts(policy, settings)) },
    // The kubelet probes the pod IP, so the admin port cannot bind loopback only.
    http: { host: '0.0.0.0', port: settings.ports.admin },
    credentialsDir: MOUNT_PATHS.credentialsDir,
    spool: { dir: MOUNT_PATHS.spoolDir, maxBytes: settings.spool.maxBytes },
    ...(settings.redisUrl !== undefined ? { redisUrl: settings.redisUrl } : {}),
    // With Redis, follow the operator's announcements of this policy: the kubelet refreshes the
    // mounted file only every minute or so (operator/announce/policy-announcement.ts).
    ...(settings.redisUrl !== undefined && policy.metadata.namespace !== undefined
      ? { policyReload: { announcements: { namespace: policy.metadata.namespace, name: policy.metadata.name } } }
      : {}),
    ...(settings.redisUrl !== undefined && settings.reviewRelay !== undefined
      ? { kubernetesReviews: { issuer: settings.reviewRelay.issuer, jwksFile: REVIEWER_KEYS_FILE } }
      : {}),
    ...(wi !== undefined
      ? {
          workloadIdentity: {
            tokenFile: TOKEN_FILE, issuer: wi.issuer, audience: settings.serviceAccountToken.audience, jwksUri: wi.jwksUri,
            // The in-cluster API token, CA and KUBERNETES_SERVICE_HOST are the sidecar's defaults.
            ...(wi.serviceAccountCheckSeconds !== undefined ? { liveness: { intervalSeconds: wi.serviceAccountCheckSeconds } } : {}),
          },
        }
      : {}),
  };
}
