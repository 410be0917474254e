// Where approval state lives in Redis (local mode, docs/adr/0009). Everything about one request
// shares the hash tag `{<id>}`, so the request, its reviews and its claim sit in one cluster slot
// and a MULTI over them stays valid on Redis Cluster. The digest index, the inbox ZSET and window
// grants are looked up by other keys and live outside the tag.
import { isRequestId } from '../../policy/approvals/request-id.ts';

const PREFIX = 'custos:approval';

/**
 * How long a request's records outlive its expiry: `describe` still shows what happened, an approval
 * decided just before expiry can still be claimed by the resent statement (return mode), and a
 * spent approval still answers `consumed`.
 */
export const RECORD_RETENTION_SECONDS = 86_400;

/** The inbox: pending request ids scored by their expiry (ms since the epoch). */
export const PENDING_INBOX_KEY = 'custos:approvals:pending';

function tagged(id: string): string {
  // The id goes into key names and channels: refuse anything else rather than build odd keys.
  if (!isRequestId(id)) throw new RangeError(`not an approval request id: ${JSON.stringify(id.slice(0, 40))}`);
  return `${PREFIX}:{${id}}`;
}

/** The request as filed (JSON of ApprovalRequest); immutable. */
export function requestKey(id: string): string {
  return `${tagged(id)}:request`;
}

/** LIST of review records (JSON), in the order they were recorded: the order that decides races. */
export function reviewsKey(id: string): string {
  return `${tagged(id)}:reviews`;
}

/** Single-use claim of an approval (`SET NX`): whoever sets it executes the statement. */
export function claimKey(id: string): string {
  return `${tagged(id)}:claim`;
}

/** Published on every review so a held statement wakes at once instead of at its next poll. */
export function reviewChannel(id: string): string {
  return tagged(id);
}

/** `sha256:<hex>` of the exact statement context → the id of the request filed for it. */
export function digestIndexKey(commandDigest: string): string {
  return `${PREFIX}:digest:${commandDigest}`;
}

/** A window grant (JSON of the approving request and its status), expiring with the window. */
export function windowGrantKey(windowDigest: string): string {
  return `${PREFIX}:window:${windowDigest}`;
}

/** SET of the AccessReview UIDs the operator has relayed into the review list (relay once, ADR 0011). */
export function relayedKey(id: string): string {
  return `${tagged(id)}:relayed`;
}
