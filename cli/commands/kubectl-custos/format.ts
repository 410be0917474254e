// How `kubectl custos` prints, pure: kubectl's own conventions (its tabwriter columns and its
// AGE durations) so the plugin's tables read like `kubectl get`, and every piece of text a
// requester controls passed through `printable` (cli/commands/approvals.ts) on one line.
import { printable } from '../approvals.ts';

/**
 * A duration as kubectl prints AGE (k8s.io/apimachinery/pkg/util/duration.HumanDuration):
 * "45s", "3m12s", "25m", "4h30m", "2d3h", "1y20d".
 */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.trunc(hours / 24);
  if (hours < 24 * 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.trunc(days / 365);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

/** Time since an RFC 3339 timestamp, as kubectl's AGE column; "<unknown>" without one. */
export function age(timestamp: string | undefined, now: Date): string {
  const at = timestamp === undefined ? Number.NaN : Date.parse(timestamp);
  return Number.isNaN(at) ? '<unknown>' : humanDuration(now.getTime() - at);
}

/** A deadline relative to now: "in 14m", or "expired 2m ago" once past. */
export function untilExpiry(expiresAt: string, now: Date): string {
  const at = Date.parse(expiresAt);
  if (Number.isNaN(at)) return '<invalid>';
  const left = at - now.getTime();
  return left > 0 ? `in ${humanDuration(left)}` : `expired ${humanDuration(-left)} ago`;
}

/**
 * Requester-controlled text on one line of a reviewer's terminal: control, line-separator and
 * bidi characters replaced (so a command cannot recolour, reorder or forge the lines around
 * it), whitespace runs collapsed, and cut to `max` characters with "…".
 */
export function oneLine(text: string, max = 200): string {
  const clean = printable(text, Number.MAX_SAFE_INTEGER).replace(/\s+/gu, ' ').trim();
  return cut(clean, max);
}

/**
 * Length in code points: how the API server counts maxLength, and the width a terminal gives the
 * text Custos prints (barring wide glyphs). Iterating a string walks its code points.
 */
export function width(text: string): number {
  let length = 0;
  for (const _ of text) length++;
  return length;
}

/** Cuts to `max` code points, marking the cut with "…". */
export function cut(text: string, max: number): string {
  if (width(text) <= max) return text;
  let kept = '';
  let count = 0;
  for (const point of text) {
    if (++count > max - 1) break;
    kept += point;
  }
  return `${kept}…`;
}

/**
 * Columns as kubectl aligns them (its tabwriter: minimum width 10, padding 3); the last column
 * is not padded, so lines carry no trailing blanks.
 */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = columnWidths(rows);
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell + ' '.repeat((widths[column] ?? 0) - width(cell)))).join('')).join('\n') + '\n';
}

/** The width the widest cell of each column takes in `table`, including its padding. */
export function columnWidths(rows: readonly (readonly string[])[]): number[] {
  return (rows[0] ?? []).map((_, column) => Math.max(10, ...rows.map((row) => width(row[column] ?? '') + 3)));
}
