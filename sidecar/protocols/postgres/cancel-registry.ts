// Cancel-key mapping (reference/postgres-protocol.md §3): every client gets the proxy's own
// (pid, secret); a CancelRequest carrying them is forwarded, with the upstream's key, on a new
// upstream connection. Keys never leave the process, and the secret is compared in constant time.
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

export interface UpstreamCancelTarget {
  readonly pid: number;
  readonly secret: Buffer;
  send(): Promise<void>;
}

interface Entry {
  readonly secret: Buffer;
  readonly target: UpstreamCancelTarget;
}

export class CancelRegistry {
  readonly #entries = new Map<number, Entry>();

  /** Issues a fresh client-visible key for a session. The pid is positive (pg_basebackup rejects negative pids). */
  issue(target: UpstreamCancelTarget): { pid: number; secret: Buffer } {
    let pid: number;
    do pid = randomInt(1, 0x7fffffff);
    while (this.#entries.has(pid));
    const secret = randomBytes(4);
    this.#entries.set(pid, { secret, target });
    return { pid, secret };
  }

  release(pid: number): void {
    this.#entries.delete(pid);
  }

  /** The upstream to cancel for a client CancelRequest, or undefined (never answered either way). */
  lookup(pid: number, secret: Buffer): UpstreamCancelTarget | undefined {
    const entry = this.#entries.get(pid);
    if (entry === undefined || entry.secret.length !== secret.length) return undefined;
    return timingSafeEqual(entry.secret, secret) ? entry.target : undefined;
  }

  get size(): number {
    return this.#entries.size;
  }
}
