// Per-session hash chain (reference/identity-and-audit.md §6):
//   hash_n = hex SHA-256(hash_{n-1} ‖ JCS(event_n without `hash`)), hash_0 = genesis(session).
// The previous hash enters as its 64 ASCII hex characters, the event as UTF-8 JCS text.
// Hashing is computation, not I/O: node:crypto is allowed in this pure folder.
import { createHash } from 'node:crypto';
import { canonicalize } from './jcs.ts';

export const GENESIS_PREFIX = 'custos-genesis:';

/** The chain key of an event: its session, or the boot's gateway pseudo-session. */
export function chainKey(event: { readonly session_id?: string | undefined; readonly boot_id: string }): string {
  return event.session_id ?? `gateway:${event.boot_id}`;
}

/** The `prev_hash` of a session's first event: hex SHA-256("custos-genesis:" + session id). */
export function genesisHash(sessionId: string): string {
  return createHash('sha256').update(GENESIS_PREFIX + sessionId, 'utf8').digest('hex');
}

/** hex SHA-256(prevHash ‖ JCS(event without `hash`)); a `hash` member in the input is ignored. */
export function chainHash(prevHash: string, eventWithoutHash: object): string {
  const { hash: _ignored, ...rest } = eventWithoutHash as { hash?: unknown };
  return sealCanonical(prevHash, canonicalize(rest)).hash;
}

/**
 * Seals an event (given without `hash`) into the chain, and returns its JSON text with the hash:
 * the canonical form is computed once and reused for the record (the hot path of every statement).
 */
export function sealEvent(prevHash: string, eventWithoutHash: object): { hash: string; json: string } {
  return sealCanonical(prevHash, canonicalize(eventWithoutHash));
}

function sealCanonical(prevHash: string, canonical: string): { hash: string; json: string } {
  const hash = createHash('sha256').update(prevHash, 'utf8').update(canonical, 'utf8').digest('hex');
  // JCS of a non-empty object ends with '}'; the sealed record carries `hash` as its last member.
  const json = canonical === '{}' ? `{"hash":"${hash}"}` : `${canonical.slice(0, -1)},"hash":"${hash}"}`;
  return { hash, json };
}
