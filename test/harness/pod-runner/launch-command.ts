// The argv that starts one container: `ip netns exec` (the pod's network namespace, a private
// mount namespace, /etc/netns/<ns>/hosts over /etc/hosts), then a shell that bind-mounts the
// container's volumes at their mountPaths, applies readOnlyRootFilesystem, and execs setpriv,
// which drops to the container's UID/GID/groups and capability bounding set before exec'ing the
// command. Every step execs, so the process the runner holds is the container's own process; the
// shell reports on fd 3 once the mounts are in place, which is when the container counts as running.
import type { Container, PodSecurityContext, SecurityContext } from './pod-spec.ts';

export interface BindMount {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
  /** A directory (else a file, e.g. a subPath into a ConfigMap volume). */
  readonly directory: boolean;
}

export interface ProcessIdentity {
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
  /** Capability bounding set (lower-case names without the cap_ prefix); undefined: all (privileged). */
  readonly capabilities: readonly string[] | undefined;
  readonly noNewPrivileges: boolean;
}

/** containerd's default capability set for a container that asks for nothing more or less. */
export const DEFAULT_CAPABILITIES = [
  'chown', 'dac_override', 'fsetid', 'fowner', 'mknod', 'net_raw', 'setgid', 'setuid', 'setfcap', 'setpcap', 'net_bind_service', 'sys_chroot', 'kill', 'audit_write',
] as const;

export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** Container securityContext over the pod's, as the kubelet merges them (uid 0 and gid 0 when neither says). */
export function processIdentity(container: Container, pod: PodSecurityContext | undefined): ProcessIdentity {
  const sc: SecurityContext = container.securityContext ?? {};
  const uid = sc.runAsUser ?? pod?.runAsUser ?? 0;
  const gid = sc.runAsGroup ?? pod?.runAsGroup ?? 0;
  const groups = [...new Set([...(pod?.fsGroup === undefined ? [] : [pod.fsGroup]), ...(pod?.supplementalGroups ?? [])])];
  let capabilities: string[] | undefined;
  if (sc.privileged !== true) {
    const norm = (c: string): string => c.toLowerCase().replace(/^cap_/, '');
    const drop = (sc.capabilities?.drop ?? []).map(norm);
    const add = (sc.capabilities?.add ?? []).map(norm);
    const base: string[] = drop.includes('all') ? [] : DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c));
    capabilities = [...new Set([...base, ...add.filter((c) => c !== 'all')])];
    if (add.includes('all')) capabilities = undefined;
  }
  return { uid, gid, groups, capabilities, noNewPrivileges: sc.allowPrivilegeEscalation === false };
}

/** The runAsNonRoot check the kubelet makes before starting a container (CreateContainerConfigError). */
export function nonRootViolation(container: Container, pod: PodSecurityContext | undefined, uid: number, podLabel: string): string | undefined {
  const nonRoot = container.securityContext?.runAsNonRoot ?? pod?.runAsNonRoot;
  if (nonRoot === true && uid === 0) return `container has runAsNonRoot and image will run as root (pod: "${podLabel}", container: ${container.name})`;
  return undefined;
}

export function setprivArgs(identity: ProcessIdentity): string[] {
  const args = [`--reuid=${identity.uid}`, `--regid=${identity.gid}`];
  args.push(identity.groups.length === 0 ? '--clear-groups' : `--groups=${identity.groups.join(',')}`);
  if (identity.capabilities !== undefined) {
    args.push(`--bounding-set=-all${identity.capabilities.map((c) => `,+${c}`).join('')}`);
    // Nothing inheritable either: a non-root program cannot pick capabilities back up.
    args.push('--inh-caps=-all');
  }
  if (identity.noNewPrivileges) args.push('--no-new-privs');
  return args;
}

export interface LaunchSpec {
  readonly sh: string;
  readonly setpriv: string;
  readonly mounts: readonly BindMount[];
  readonly readOnlyRootFilesystem: boolean;
  readonly workingDir: string;
  readonly identity: ProcessIdentity;
  readonly argv: readonly string[];
}

/** The script run inside the pod's namespaces; mounts are made parents first (as runc sorts them). */
export function launchScript(spec: LaunchSpec): string {
  const lines = ['set -e'];
  const mounts = [...spec.mounts].sort((a, b) => a.target.split('/').length - b.target.split('/').length);
  for (const m of mounts) {
    // The mount point is made where the earlier mounts put it (as runc does inside the rootfs): an
    // emptyDir at /run makes /var/run/secrets/... a path inside that emptyDir. Containers share
    // the host's root filesystem, so a mount point outside every volume (/etc/custos/policy) is
    // created on the host and stays there, empty, after the pod is gone.
    const t = shellQuote(m.target);
    if (m.directory) lines.push(`mkdir -p -- ${t}`);
    else lines.push(`mkdir -p -- "$(dirname -- ${t})"`, `[ -e ${t} ] || : > ${t}`);
    lines.push(`mount --bind -- ${shellQuote(m.source)} ${t}`);
    if (m.readOnly) lines.push(`mount -o remount,bind,ro -- ${shellQuote(m.target)}`);
  }
  // Only this mount namespace's copy of / becomes read-only; the volumes are mounts of their own.
  if (spec.readOnlyRootFilesystem) lines.push('mount -o remount,bind,ro -- /');
  lines.push(`cd -- ${shellQuote(spec.workingDir)}`);
  // Tell the runner the container is set up (fd 3), and close that pipe in what runs next.
  lines.push('echo started >&3', 'exec 3>&-');
  lines.push(`exec ${shellQuote(spec.setpriv)} ${setprivArgs(spec.identity).map(shellQuote).join(' ')} -- "$@"`);
  return lines.join('\n');
}

/** argv for spawn: ip netns exec NS sh -c SCRIPT container ARGV... */
export function launchArgv(netns: string, spec: LaunchSpec): string[] {
  return ['netns', 'exec', netns, spec.sh, '-c', launchScript(spec), 'container', ...spec.argv];
}
