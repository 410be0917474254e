// The contract between whoever holds the webhook's serving certificate (the in-process rotating
// source in serving-cert.ts, or the cert-manager file source in file-certificate-source.ts) and the
// HTTPS server that presents it (operator/admission/webhook-server.ts): the current certificate
// and a change notification, on which the server swaps its TLS context without a restart.

export interface ServingCertificate {
  /** PEM: the leaf first, then any intermediates. */
  readonly certPem: string;
  /** PEM, PKCS#8 or SEC1. */
  readonly keyPem: string;
  /** Upper-case hex, as node:tls `getPeerCertificate().serialNumber` prints it. */
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export type CertificateListener = (certificate: ServingCertificate) => void;

export interface CertificateSource {
  /** The certificate to present now. */
  current(): ServingCertificate;
  /** Called after every change; returns the unsubscribe function. */
  onChange(listener: CertificateListener): () => void;
}

/** A set of listeners, each called in a try/catch so one faulty subscriber cannot stop the others. */
export class Listeners<T> {
  readonly #listeners = new Set<(value: T) => void>();
  readonly #onError: (e: unknown) => void;

  constructor(onError: (e: unknown) => void) {
    this.#onError = onError;
  }

  add(listener: (value: T) => void): () => void {
    this.#listeners.add(listener);
    return () => { this.#listeners.delete(listener); };
  }

  emit(value: T): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(value);
      } catch (e: unknown) {
        this.#onError(e);
      }
    }
  }
}
