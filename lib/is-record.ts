// The one check every decoder of untrusted JSON starts with (admission reviews, Redis records,
// API objects, environment JSON): a plain JSON object, not null, not an array.
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
