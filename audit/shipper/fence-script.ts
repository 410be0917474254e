// The sequence fence (reference/identity-and-audit.md §7.2, option 1), for Redis ≥ 7.0 where
// XADD has no IDMP: one writer per stream, so a per-boot high-water mark in the meta hash makes
// a resent batch (lost reply, ioredis resend, shipper restart before its cursor was saved) a no-op.
// The script runs atomically, so the XADDs and the new mark land together or not at all.
//
//   KEYS[1] custos:audit:{<pod-uid>}          the stream
//   KEYS[2] custos:audit:{<pod-uid>}:meta     hash; field last_seq:<boot_id>
//   ARGV[1] boot_id
//   ARGV[2..] per event: seq, event_id, event_type, session_id, data  (ascending seq)
// Returns {added, last_seq}.
import { createHash } from 'node:crypto';

export const FENCE_SCRIPT = `
local field = 'last_seq:' .. ARGV[1]
local last = tonumber(redis.call('HGET', KEYS[2], field) or '0')
local added = 0
for i = 2, #ARGV, 5 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[i + 1], 'event_type', ARGV[i + 2],
      'session_id', ARGV[i + 3], 'seq', ARGV[i], 'data', ARGV[i + 4])
    last = seq
    added = added + 1
  end
end
if added > 0 then
  redis.call('HSET', KEYS[2], field, last)
end
return {added, last}
`;

export const FENCE_SCRIPT_SHA = createHash('sha1').update(FENCE_SCRIPT).digest('hex');

export function streamKey(podUid: string): string {
  return `custos:audit:{${podUid}}`;
}

export function metaKey(podUid: string): string {
  return `custos:audit:{${podUid}}:meta`;
}
