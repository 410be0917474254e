// cert-manager mode (reference/kubernetes.md §11, Linkerd's FsCredsWatcher): cert-manager issues
// the serving certificate into a Secret mounted at CUSTOS_WEBHOOK_CERT_DIR and its cainjector
// writes caBundle, so the operator neither signs nor patches; it only reloads the files.
//
// The kubelet updates a mounted Secret by writing a new timestamped directory and swapping the
// `..data` symlink, so an inotify watch on the files themselves misses it. Polling the contents
// does not, and a read that catches a half-updated pair (new certificate, old key) is refused by
// the key check and retried on the next poll; the previous pair keeps serving meanwhile.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CustosError } from '../../lib/errors.ts';
import { Listeners, type CertificateListener, type CertificateSource, type ServingCertificate } from './certificate-source.ts';
import { systemClock, type Clock } from './clock.ts';

export const CERT_FILES = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } as const;

export interface FileCertificateSourceOptions {
  readonly dir: string;
  readonly logger: Logger;
  /** Default 10 s (the kubelet syncs mounted Secrets about once a minute). */
  readonly pollIntervalMs?: number;
  readonly clock?: Clock;
}

interface Loaded {
  readonly certificate: ServingCertificate;
  /** ca.crt when cert-manager wrote one (informational: the cainjector owns caBundle). */
  readonly caPem: string | undefined;
  readonly fingerprint: string;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Reads and checks the pair; throws ERR_CERT_FILES_INVALID saying what is wrong. */
async function load(dir: string): Promise<Loaded> {
  const invalid = (problem: string, cause?: unknown): never => {
    throw new CustosError('ERR_CERT_FILES_INVALID', `${dir}: ${problem}`, cause === undefined ? undefined : { cause });
  };
  const certPem = await readOptional(join(dir, CERT_FILES.cert));
  const keyPem = await readOptional(join(dir, CERT_FILES.key));
  const caPem = await readOptional(join(dir, CERT_FILES.ca));
  if (certPem === undefined || keyPem === undefined) return invalid(`${CERT_FILES.cert} and ${CERT_FILES.key} are required`);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (e: unknown) {
    return invalid(`${CERT_FILES.cert} is not a PEM certificate`, e);
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(keyPem));
  } catch (e: unknown) {
    return invalid(`${CERT_FILES.key} is not a PEM private key`, e);
  }
  if (!matches) invalid(`${CERT_FILES.key} does not belong to ${CERT_FILES.cert} (serial ${x509.serialNumber}); a rotation may be half-written`);
  return {
    certificate: { certPem, keyPem, serialNumber: x509.serialNumber.toUpperCase(), notBefore: new Date(x509.validFrom), notAfter: new Date(x509.validTo) },
    caPem,
    fingerprint: `${certPem}\u0000${keyPem}\u0000${caPem ?? ''}`,
  };
}

export class FileCertificateSource implements CertificateSource {
  readonly #options: FileCertificateSourceOptions;
  readonly #clock: Clock;
  readonly #listeners: Listeners<ServingCertificate>;
  #loaded: Loaded;
  #cancel: (() => void) | undefined;
  #closed = false;

  private constructor(options: FileCertificateSourceOptions, loaded: Loaded) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#loaded = loaded;
    this.#listeners = new Listeners((e) => { options.logger.error({ err: e instanceof Error ? e.message : String(e) }, 'serving certificate listener failed'); });
  }

  /** Loads the files (throws ERR_CERT_FILES_INVALID when they are missing or do not match) and starts polling. */
  static async start(options: FileCertificateSourceOptions): Promise<FileCertificateSource> {
    const source = new FileCertificateSource(options, await load(options.dir));
    options.logger.info({ dir: options.dir, serial: source.#loaded.certificate.serialNumber }, 'serving certificate loaded from files');
    source.#schedule();
    return source;
  }

  current(): ServingCertificate {
    return this.#loaded.certificate;
  }

  caPem(): string | undefined {
    return this.#loaded.caPem;
  }

  onChange(listener: CertificateListener): () => void {
    return this.#listeners.add(listener);
  }

  /** Reads the files now; returns whether the certificate changed. */
  async poll(): Promise<boolean> {
    let next: Loaded;
    try {
      next = await load(this.#options.dir);
    } catch (e: unknown) {
      this.#options.logger.warn({ dir: this.#options.dir, err: e instanceof Error ? e.message : String(e) }, 'serving certificate files unusable; keeping the current certificate');
      return false;
    }
    if (next.fingerprint === this.#loaded.fingerprint) return false;
    this.#loaded = next;
    this.#options.logger.info({ dir: this.#options.dir, serial: next.certificate.serialNumber, notAfter: next.certificate.notAfter.toISOString() }, 'serving certificate files changed');
    this.#listeners.emit(next.certificate);
    return true;
  }

  close(): void {
    this.#closed = true;
    this.#cancel?.();
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#cancel = this.#clock.setTimer(this.#options.pollIntervalMs ?? 10_000, () => {
      void this.poll().finally(() => { this.#schedule(); });
    });
  }
}
