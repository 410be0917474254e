// The in-process serving certificate (reference/kubernetes.md §11, vault-k8s GenSource): a leaf for
// the webhook Service's names, signed by the webhook CA, re-issued when about 10 % of its lifetime
// remains and whenever the CA changes. Every replica issues its own leaf from the shared CA; the
// private key never leaves the process. Listeners (the HTTPS server) swap their TLS context on change.
import type { Logger } from 'pino';
import { CustosError } from '../../lib/errors.ts';
import { DAY_MS, issueServingCertificate, type CertificateAuthority } from './certificate-builder.ts';
import { Listeners, type CertificateListener, type CertificateSource, type ServingCertificate } from './certificate-source.ts';
import { systemClock, type Clock } from './clock.ts';

/** Where the signing CA comes from (ca-store.ts, or a fixed CA in tests). */
export interface AuthoritySource {
  current(): CertificateAuthority;
  onChange(listener: (authority: CertificateAuthority) => void): () => void;
}

export interface RotatingServingCertificateOptions {
  readonly authority: AuthoritySource;
  /** SANs: webhookServiceNames(service, namespace) plus any extra names or IPs. */
  readonly names: readonly string[];
  /** Default 24 h (reference §11: 24–72 h). */
  readonly lifetimeMs?: number;
  /** Re-issue when this fraction of the lifetime remains (default 0.1). */
  readonly renewFraction?: number;
  /**
   * After a CA rotation, wait this long before signing with the new CA (default 60 s), so the
   * leader has patched the new CA into caBundle before any replica presents a leaf it signed. The
   * old leaf stays valid meanwhile: its CA remains in the bundle.
   */
  readonly caChangeDelayMs?: number;
  readonly clock?: Clock;
  readonly logger: Logger;
}

const RETRY_MS = 10_000;

export class RotatingServingCertificate implements CertificateSource {
  readonly #options: RotatingServingCertificateOptions;
  readonly #clock: Clock;
  readonly #lifetimeMs: number;
  readonly #renewFraction: number;
  readonly #listeners: Listeners<ServingCertificate>;
  #current: ServingCertificate | undefined;
  #cancelTimer: (() => void) | undefined;
  #unsubscribe: (() => void) | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(options: RotatingServingCertificateOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#lifetimeMs = options.lifetimeMs ?? DAY_MS;
    this.#renewFraction = options.renewFraction ?? 0.1;
    if (!(this.#lifetimeMs > 0)) throw new CustosError('ERR_CERT_INVALID_OPTIONS', `leaf lifetime must be positive, got ${this.#lifetimeMs} ms`);
    if (!(this.#renewFraction > 0 && this.#renewFraction < 1)) throw new CustosError('ERR_CERT_INVALID_OPTIONS', `renewFraction must be in (0, 1), got ${this.#renewFraction}`);
    this.#listeners = new Listeners((e) => { options.logger.error({ err: e instanceof Error ? e.message : String(e) }, 'serving certificate listener failed'); });
  }

  /** Issues the first leaf and schedules its renewal. */
  static async start(options: RotatingServingCertificateOptions): Promise<RotatingServingCertificate> {
    const source = new RotatingServingCertificate(options);
    await source.rotate('initial');
    const delay = options.caChangeDelayMs ?? 60_000;
    source.#unsubscribe = options.authority.onChange(() => {
      if (delay <= 0) {
        void source.rotate('ca-changed');
        return;
      }
      source.#schedule(delay, 'ca-changed');
    });
    return source;
  }

  current(): ServingCertificate {
    if (this.#current === undefined) throw new CustosError('ERR_CERT_NOT_READY', 'no serving certificate has been issued yet');
    return this.#current;
  }

  onChange(listener: CertificateListener): () => void {
    return this.#listeners.add(listener);
  }

  /**
   * Issues a new leaf now (serialised with scheduled renewals) and tells the listeners. Never
   * rejects after start: a failure is logged and retried.
   */
  rotate(reason: string): Promise<ServingCertificate> {
    const run = this.#queue.then(() => this.#issue(reason));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.#closed = true;
    this.#cancelTimer?.();
    this.#unsubscribe?.();
  }

  async #issue(reason: string): Promise<ServingCertificate> {
    const log = this.#options.logger;
    const first = this.#current === undefined;
    let issued: ServingCertificate;
    try {
      const authority = this.#options.authority.current();
      issued = await issueServingCertificate(authority, { names: this.#options.names, now: new Date(this.#clock.now()), lifetimeMs: this.#lifetimeMs });
    } catch (e: unknown) {
      if (first) throw e;
      log.error({ reason, err: e instanceof Error ? e.message : String(e) }, 'serving certificate renewal failed; retrying');
      this.#schedule(RETRY_MS, 'retry');
      return this.current();
    }
    this.#current = issued;
    // Renew at (1 - renewFraction) of the validity actually granted (a leaf is cut short by its CA's expiry).
    const issuedAt = this.#clock.now();
    const validity = issued.notAfter.getTime() - issuedAt;
    this.#schedule(Math.max(0, validity * (1 - this.#renewFraction)), 'renewal');
    log.info({ reason, serial: issued.serialNumber, notAfter: issued.notAfter.toISOString() }, 'serving certificate issued');
    if (!first) this.#listeners.emit(issued);
    return issued;
  }

  #schedule(ms: number, reason: string): void {
    if (this.#closed) return;
    this.#cancelTimer?.();
    this.#cancelTimer = this.#clock.setTimer(ms, () => {
      this.#cancelTimer = undefined;
      void this.rotate(reason);
    });
  }
}
