// One call for the wiring (operator/main.ts): the serving certificate source for the configured
// mode (CUSTOS_WEBHOOK_CERT_MODE), its expiry metric, and in in-process mode the CA store that the
// leader's caBundle patcher reads:
//
//   const certs = await startWebhookCertificates({ mode, kubeConfig, namespace, ..., leadership, signal });
//   const server = await startWebhookServer({ certificates: certs.source, ... });
//   onLeadership((leaderSignal) => certs.caBundle && runCaBundlePatcher({ bundle: certs.caBundle, signal: leaderSignal, ... }));
//
// In cert-manager mode caBundle is cert-manager's cainjector's job, so there is no bundle to patch.
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { CustosError } from '../../lib/errors.ts';
import type { CaBundleSource } from './ca-bundle-patcher.ts';
import { CaStore, type LeadershipView } from './ca-store.ts';
import { registerCertExpiryMetric } from './cert-expiry-metric.ts';
import { webhookServiceNames } from './certificate-builder.ts';
import type { CertificateSource } from './certificate-source.ts';
import type { Clock } from './clock.ts';
import { FileCertificateSource } from './file-certificate-source.ts';
import { RotatingServingCertificate } from './serving-cert.ts';

export interface WebhookCertificatesOptions {
  readonly mode: 'in-process' | 'cert-manager';
  readonly kubeConfig: KubeConfig;
  /** Release namespace: the Service's and the CA Secret's. */
  readonly namespace: string;
  readonly serviceName: string;
  /** in-process: CUSTOS_WEBHOOK_CA_SECRET. */
  readonly caSecretName: string;
  /** cert-manager: CUSTOS_WEBHOOK_CERT_DIR. */
  readonly certDir?: string;
  /** More SANs for the serving leaf (local clusters: 127.0.0.1). */
  readonly extraNames?: readonly string[];
  readonly leadership: LeadershipView;
  /** Stops the CA store's sync loop and the renewal timers. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly leafLifetimeMs?: number;
  readonly caSyncIntervalMs?: number;
  readonly clock?: Clock;
}

export interface WebhookCertificates {
  readonly source: CertificateSource;
  /** in-process only: what the leader patches into caBundle. */
  readonly caBundle?: CaBundleSource;
  readonly caStore?: CaStore;
}

export async function startWebhookCertificates(options: WebhookCertificatesOptions): Promise<WebhookCertificates> {
  const log = options.logger.child({ component: 'webhook-certificates', mode: options.mode });
  if (options.mode === 'cert-manager') {
    if (options.certDir === undefined) throw new CustosError('ERR_CERT_INVALID_OPTIONS', 'cert-manager mode needs the certificate directory (CUSTOS_WEBHOOK_CERT_DIR)');
    const source = await FileCertificateSource.start({ dir: options.certDir, logger: log, ...(options.clock === undefined ? {} : { clock: options.clock }) });
    options.signal.addEventListener('abort', () => { source.close(); }, { once: true });
    registerCertExpiryMetric(options.registry, { serving: () => source.current().notAfter });
    return { source };
  }
  const clock = options.clock === undefined ? {} : { clock: options.clock };
  const caStore = new CaStore({ core: options.kubeConfig.makeApiClient(CoreV1Api), namespace: options.namespace, secretName: options.caSecretName, logger: log, ...clock });
  await caStore.load(options.leadership, { signal: options.signal });
  const source = await RotatingServingCertificate.start({
    authority: caStore,
    names: [...webhookServiceNames(options.serviceName, options.namespace), ...(options.extraNames ?? [])],
    logger: log,
    ...(options.leafLifetimeMs === undefined ? {} : { lifetimeMs: options.leafLifetimeMs }),
    ...clock,
  });
  options.signal.addEventListener('abort', () => { source.close(); }, { once: true });
  void caStore.run(options.leadership, { signal: options.signal, ...(options.caSyncIntervalMs === undefined ? {} : { intervalMs: options.caSyncIntervalMs }) });
  registerCertExpiryMetric(options.registry, { serving: () => source.current().notAfter, ca: () => caStore.current().notAfter });
  return { source, caBundle: caStore.bundle, caStore };
}
