// Keeps what masking needs for one target current: the compiled masking rules of the policy in
// force, the HMAC key (from a file mounted into the sidecar only), and the provenance map read from
// the upstream catalog through the sidecar's own connection — refreshed on a timer, when the policy
// changes, and soon after a session runs DDL. Until the first catalog read succeeds the service is
// not ready and sessions refuse statements rather than return unmasked data.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { CompiledPolicy } from '../policy/compile.ts';
import type { CompiledMasking } from '../policy/masking/compile-masking.ts';
import { viewColumnDerivations } from '../policy/masking/derivation.ts';
import type { UpstreamConnection } from './protocols/postgres/upstream-client.ts';
import { readCatalog } from './masking-catalog.ts';
import { ProvenanceMap } from './masking/provenance.ts';
import type { MaskingContext } from './masking/result-masker.ts';

export interface ActiveMasking {
  readonly rules: CompiledMasking;
  readonly context: MaskingContext;
}

export class MaskingService {
  readonly #policy: () => CompiledPolicy;
  readonly #connect: () => Promise<UpstreamConnection>;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  #connection: UpstreamConnection | undefined;
  #active: ActiveMasking | undefined;
  #rulesOf: CompiledMasking | undefined;
  #timer: NodeJS.Timeout | undefined;
  #soon: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;
  #lastError: string | undefined;

  constructor(options: { policy: () => CompiledPolicy; connect: () => Promise<UpstreamConnection>; logger: Logger; refreshIntervalMs?: number }) {
    this.#policy = options.policy;
    this.#connect = options.connect;
    this.#logger = options.logger;
    this.#intervalMs = options.refreshIntervalMs ?? 30_000;
  }

  /** Loads once (errors are reported by `lastError`, not thrown) and keeps refreshing. */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => { void this.refresh(); }, this.#intervalMs);
    this.#timer.unref();
  }

  /** The policy has masking rules. */
  get configured(): boolean {
    return this.#policy().masking !== null;
  }

  /** Masking can be applied: rules, key and provenance for the rules in force are loaded. */
  get ready(): boolean {
    const rules = this.#policy().masking;
    return rules === null || (this.#active !== undefined && this.#rulesOf === rules);
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** What sessions mask with now; undefined when the policy has no masking rules. */
  current(): ActiveMasking | undefined {
    return this.#policy().masking === null ? undefined : this.#active;
  }

  /** A session ran DDL: the catalog may have changed (new views, renamed columns). */
  refreshSoon(): void {
    if (this.#soon !== undefined || !this.configured) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      void this.refresh();
    }, 50);
    this.#soon.unref();
  }

  async refresh(): Promise<void> {
    this.#refreshing ??= this.#load().finally(() => { this.#refreshing = undefined; });
    return this.#refreshing;
  }

  async #load(): Promise<void> {
    const rules = this.#policy().masking;
    if (rules === null) {
      this.#active = undefined;
      this.#rulesOf = undefined;
      return;
    }
    try {
      const hmacKey = rules.hmacKeyFile !== undefined ? await readFile(rules.hmacKeyFile) : undefined;
      this.#connection ??= await this.#connect();
      const { columns, views, functions } = await readCatalog(this.#connection);
      const provenance = new ProvenanceMap(rules.columns, columns, views, viewColumnDerivations, Date.now(), functions);
      this.#active = { rules, context: { provenance, detectors: rules.detectors, hmacKey } };
      this.#rulesOf = rules;
      this.#lastError = undefined;
    } catch (e: unknown) {
      this.#lastError = e instanceof Error ? e.message : 'masking metadata could not be loaded';
      this.#logger.error({ err: this.#lastError }, 'masking: catalog or key refresh failed');
      this.#connection?.socket.destroy();
      this.#connection = undefined;
    }
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#soon) clearTimeout(this.#soon);
    this.#connection?.socket.destroy();
  }
}
