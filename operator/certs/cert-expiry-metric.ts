// custos_webhook_cert_expiry_seconds (reference/kubernetes.md §11, pain point 12: an expired webhook
// certificate silently breaks admission): the notAfter of each certificate as a Unix timestamp,
// read at scrape time, so an alert is `custos_webhook_cert_expiry_seconds - time() < 6 * 3600`.
import { Gauge, type Registry } from 'prom-client';

export const CERT_EXPIRY_METRIC = 'custos_webhook_cert_expiry_seconds';

/** `certificate` label → the current notAfter, or undefined while there is none. */
export type ExpirySources = Readonly<Record<string, () => Date | undefined>>;

export function registerCertExpiryMetric(registry: Registry, sources: ExpirySources): Gauge<'certificate'> {
  return new Gauge({
    name: CERT_EXPIRY_METRIC,
    help: 'Expiry (notAfter) of the webhook certificates as a Unix timestamp in seconds, by certificate (serving, ca).',
    labelNames: ['certificate'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [certificate, notAfter] of Object.entries(sources)) {
        let at: Date | undefined;
        try {
          at = notAfter();
        } catch {
          at = undefined; // not loaded yet: no sample rather than a wrong one
        }
        if (at !== undefined) this.set({ certificate }, Math.floor(at.getTime() / 1000));
      }
    },
  });
}
