// Approval request ids: `ar-` + 12 lowercase base32 characters (60 random bits). Short enough to
// type into `custos approvals approve ar-…`, a valid Kubernetes object name (lowercase letters,
// digits, `-`) for the AccessRequest it becomes, and without 0/1/8/9 look-alikes (RFC 4648 §6).
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const ID_LENGTH = 12;

export const REQUEST_ID_PATTERN = /^ar-[a-z2-7]{12}$/;

/** `randomBytes` is injected (node:crypto's in production) so the core stays free of I/O. */
export function newRequestId(randomBytes: (size: number) => Uint8Array): string {
  const bytes = randomBytes(8);
  if (bytes.length < 8) throw new RangeError('newRequestId: randomBytes returned fewer than 8 bytes');
  let bits = 0n;
  for (const byte of bytes.subarray(0, 8)) bits = (bits << 8n) | BigInt(byte);
  let id = '';
  for (let i = 0; i < ID_LENGTH; i += 1) {
    id += BASE32.charAt(Number((bits >> BigInt(59 - 5 * i)) & 31n));
  }
  return `ar-${id}`;
}

export function isRequestId(value: string): boolean {
  return REQUEST_ID_PATTERN.test(value);
}
