// The policy announcement, the one message the operator and the sidecars exchange about policy
// changes (DESIGN §4: "announced on Redis for fast pick-up"). The kubelet refreshes a mounted
// ConfigMap only every ~60–90 s, so after writing `custos-policy-<name>` the operator publishes
// "policy <namespace>/<name> now has digest D" on `custos:policy:<namespace>/<name>`, and each
// sidecar of that policy re-reads its mounted policy file at once and then often, until the file
// carries D.
//
// The message is a hint, never policy. It carries no policy content, and a sidecar enforces only
// what its mounted file says: Redis is not trusted with policy (anyone who can publish on it could
// otherwise rewrite every pod's rules). A forged, replayed or stale announcement can at most make a
// sidecar read its own file sooner and more often for a bounded time.
//
// Pure: shared by the publisher (operator/announce/policy-announcer.ts) and the subscriber
// (sidecar/policy-announcements.ts), so both sides spell the channel and the digest the same way.
import { createHash } from 'node:crypto';

export interface PolicyAnnouncement {
  /** AccessPolicy metadata.namespace. */
  readonly namespace: string;
  /** AccessPolicy metadata.name. */
  readonly name: string;
  /** AccessPolicy metadata.generation the ConfigMap was rendered from. */
  readonly generation: number;
  /** SHA-256 (hex) of the `policy.yaml` text the ConfigMap holds: what the sidecar's file will hash to. */
  readonly digest: string;
  /** When the operator announced it (RFC 3339). */
  readonly at: string;
}

export const ANNOUNCEMENT_CHANNEL_PREFIX = 'custos:policy:';

/** Larger messages are refused unparsed: a real announcement is about 200 bytes. */
export const MAX_ANNOUNCEMENT_BYTES = 1024;

const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/; // RFC 1123 label, at most 63
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/; // RFC 1123 subdomain, at most 253
const DIGEST = /^[0-9a-f]{64}$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** The problem with a namespace/name pair, or undefined when both are valid Kubernetes names. */
function nameProblem(namespace: unknown, name: unknown): string | undefined {
  if (typeof namespace !== 'string' || namespace.length > 63 || !NAMESPACE.test(namespace)) {
    return `namespace: ${JSON.stringify(namespace)} is not a Kubernetes namespace name`;
  }
  if (typeof name !== 'string' || name.length > 253 || !NAME.test(name)) return `name: ${JSON.stringify(name)} is not a Kubernetes object name`;
  return undefined;
}

/** `custos:policy:<namespace>/<name>`; throws on names Kubernetes would not accept. */
export function announcementChannel(namespace: string, name: string): string {
  const problem = nameProblem(namespace, name);
  if (problem !== undefined) throw new TypeError(`policy announcement channel: ${problem}`);
  return `${ANNOUNCEMENT_CHANNEL_PREFIX}${namespace}/${name}`;
}

/** The digest of a policy file's text, as the sidecar's policy store computes it (UTF-8, SHA-256, hex). */
export function policyDigest(policyYaml: string): string {
  return createHash('sha256').update(policyYaml, 'utf8').digest('hex');
}

export type ParsedAnnouncement = { readonly ok: true; readonly announcement: PolicyAnnouncement } | { readonly ok: false; readonly problem: string };

/**
 * Reads one message from the channel. Every field is checked, since anyone who can publish on the
 * Redis server can send anything; fields this version does not know are ignored (a newer operator
 * may add some before every sidecar is upgraded).
 */
export function parseAnnouncement(text: string): ParsedAnnouncement {
  const fail = (problem: string): ParsedAnnouncement => ({ ok: false, problem });
  if (Buffer.byteLength(text, 'utf8') > MAX_ANNOUNCEMENT_BYTES) return fail(`larger than ${MAX_ANNOUNCEMENT_BYTES} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return fail('not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('not a JSON object');
  const v = value as Record<string, unknown>;
  const names = nameProblem(v['namespace'], v['name']);
  if (names !== undefined) return fail(names);
  const { generation, digest, at } = v;
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 1) {
    return fail(`generation: ${JSON.stringify(generation)} is not a positive integer`);
  }
  if (typeof digest !== 'string' || !DIGEST.test(digest)) return fail('digest: not a lower-case hex SHA-256');
  if (typeof at !== 'string' || !RFC3339.test(at) || Number.isNaN(Date.parse(at))) return fail('at: not an RFC 3339 time');
  return { ok: true, announcement: { namespace: v['namespace'] as string, name: v['name'] as string, generation, digest, at } };
}

/** The message text; validates like `parseAnnouncement`, so the publisher never sends what receivers refuse. */
export function encodeAnnouncement(announcement: PolicyAnnouncement): string {
  const text = JSON.stringify({
    namespace: announcement.namespace,
    name: announcement.name,
    generation: announcement.generation,
    digest: announcement.digest,
    at: announcement.at,
  });
  const parsed = parseAnnouncement(text);
  if (!parsed.ok) throw new TypeError(`invalid policy announcement: ${parsed.problem}`);
  return text;
}
