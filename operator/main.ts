// `custos operator`: wiring only (ADR 0007). Every replica runs the informers and the mutating
// webhook; the holder of the Lease also runs the reconciler (policy ConfigMaps and status), the
// webhook CA and the caBundle patcher, announces new policies on Redis, and runs the approvals
// controller (AccessRequests from Redis, AccessReviews relayed back; ADR 0011).
//
// Start-up order matters: the caches must have listed once before this replica may lead, or its
// first plan would see no policies and delete every policy ConfigMap as an orphan; the elector must
// run before the certificates load, because in-process mode waits for the leader to store the CA.
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { startOpsServer, type OpsServer } from '../sidecar/http-server.ts';
import { CoreV1Api } from '@kubernetes/client-node';
import { ApprovalsController } from './approvals/approvals-controller.ts';
import type { RelaySigner } from './approvals/relay-record.ts';
import { loadReviewSigningKey } from './approvals/review-signing-key.ts';
import { ADMIT_REVIEWS_PATH, apiAccessRequestReader, reviewAdmissionRoute } from './approvals/review-webhook.ts';
import { createApiAdmissionContext } from './admission/api-admission-context.ts';
import { createCachedAdmissionContext } from './admission/cached-admission-context.ts';
import { startWebhookServer, type WebhookServer } from './admission/webhook-server.ts';
import { PolicyAnnouncer } from './announce/policy-announcer.ts';
import { runCaBundlePatcher, type CaBundleSource } from './certs/ca-bundle-patcher.ts';
import { startWebhookCertificates } from './certs/webhook-certificates.ts';
import { loadKubeConfig } from './kube/kube-config.ts';
import { LeaderElector } from './kube/leader-election.ts';
import type { OperatorConfig } from './operator-config.ts';
import { KubeActionExecutor } from './reconcile/executor.ts';
import { POLICY_CONFIGMAP_KEYS } from './webhook/sidecar-config.ts';
import { Reconciler, type ReconcileRun } from './reconcile/reconciler.ts';
import { createWatchedResources } from './watched-resources.ts';

export interface RunningOperator {
  readonly webhook: WebhookServer;
  readonly ops: OpsServer;
  /** Fails readiness, drains admission, stops reconciling, releases the Lease, stops watching. */
  stop(): Promise<void>;
}

export async function startOperator(config: OperatorConfig, logger: Logger): Promise<RunningOperator> {
  const { kubeConfig, origin, server } = loadKubeConfig({ kubeconfigPath: config.kubeconfig });
  logger.info({ server, origin, identity: config.identity, namespace: config.namespace }, 'starting custos operator');
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const stopping = new AbortController();
  // Undone in reverse order, on stop() and when start-up fails half-way: a replica that cannot
  // serve must not keep renewing the Lease (it would block the CA and caBundle for everyone).
  const cleanups: Array<() => Promise<void>> = [];
  const cleanUp = async (): Promise<void> => {
    for (const undo of cleanups.reverse()) await undo().catch((e: unknown) => { logger.error({ err: String(e) }, 'shutdown step failed'); });
  };

  // Liveness from the start; readiness once the caches are synced and the webhook serves.
  let serving = false;
  const resources = createWatchedResources({ kubeConfig, logger, registry });
  const ops = await startOpsServer({
    host: config.metrics.host,
    port: config.metrics.port,
    registry,
    checks: [
      { name: 'informers', check: () => (resources.synced() ? null : 'caches not synced') },
      { name: 'webhook', check: () => (serving ? null : 'webhook not serving') },
    ],
  });
  cleanups.push(() => ops.close());
  try {

    const announcer = config.redisUrl === undefined ? undefined : new PolicyAnnouncer({ redisUrl: config.redisUrl, logger, registry });
    if (announcer !== undefined) cleanups.push(() => announcer.close());
    const announceWritten = (run: ReconcileRun): void => {
      if (announcer === undefined) return;
      for (const outcome of run.outcomes) {
        const { action } = outcome;
        if (action.kind !== 'apply-configmap' || outcome.result !== 'applied') continue;
        const policyYaml = action.configMap.data[POLICY_CONFIGMAP_KEYS.policy];
        if (policyYaml === undefined) continue;
        void announcer.announce({ namespace: action.policy.namespace, name: action.policy.name, generation: action.policy.generation ?? 0, policyYaml });
      }
    };
    // Approvals (ADR 0011): every replica loads the review signing key, so the policy ConfigMaps
    // any leader writes carry the same public keys, and watches AccessRequests and AccessReviews;
    // the leader materialises, relays and decides.
    let settings = config.injection;
    let approvals: ApprovalsController | undefined;
    let relaySigner: RelaySigner | undefined;
    if (config.redisUrl !== undefined) {
      const key = await loadReviewSigningKey({ core: kubeConfig.makeApiClient(CoreV1Api), namespace: config.namespace, secretName: config.approvals.signingKeySecretName, logger });
      const issuer = `https://${config.webhook.serviceName}.${config.namespace}.svc/reviews`;
      settings = { ...config.injection, reviewRelay: { issuer, jwks: key.jwks } };
      relaySigner = { issuer, kid: key.kid, privateKey: key.privateKey, publicKey: key.publicKey };
      const controller = new ApprovalsController({ kubeConfig, redisUrl: config.redisUrl, signer: relaySigner, logger, registry });
      cleanups.push(() => controller.stop());
      approvals = controller;
    }
    const reconciler = new Reconciler({
      observe: () => resources.observe(),
      settings,
      executor: new KubeActionExecutor({ kubeConfig, logger }),
      logger,
      onRun: announceWritten,
    });
    resources.onChange(() => { reconciler.trigger(); });
    cleanups.push(() => resources.stop());
    await Promise.all([resources.start(), approvals?.start()]);
    logger.info('informer caches synced');

    // Known once the certificates have loaded, which in-process mode does only after an election.
    const caBundleReady = Promise.withResolvers<CaBundleSource | undefined>();
    const elector = new LeaderElector({
      kubeConfig,
      namespace: config.namespace,
      leaseName: config.leaseName,
      identity: config.identity,
      logger,
      registry,
      leaseDurationSeconds: config.lease.durationSeconds,
      renewDeadlineSeconds: config.lease.renewDeadlineSeconds,
      retryPeriodSeconds: config.lease.retryPeriodSeconds,
      onStartedLeading: async (signal) => {
        reconciler.setEnabled(true);
        reconciler.trigger();
        if (approvals !== undefined) void approvals.lead(signal);
        signal.addEventListener('abort', () => { reconciler.setEnabled(false); }, { once: true });
        const bundle = await caBundleReady.promise;
        if (bundle !== undefined && !signal.aborted) {
          await runCaBundlePatcher({ kubeConfig, configurationName: config.webhook.configurationName, bundle, signal, logger });
        }
      },
      onStoppedLeading: () => { reconciler.setEnabled(false); },
    });
    elector.start();
    cleanups.push(() => elector.stop());
    // Runs before the Lease is released: no status or ConfigMap write after a successor may lead.
    cleanups.push(() => reconciler.close());
    cleanups.push(() => { stopping.abort(); return Promise.resolve(); });

    const certificates = await startWebhookCertificates({
      mode: config.webhook.certMode,
      kubeConfig,
      namespace: config.namespace,
      serviceName: config.webhook.serviceName,
      caSecretName: config.webhook.caSecretName,
      ...(config.webhook.certDir === undefined ? {} : { certDir: config.webhook.certDir }),
      extraNames: config.webhook.extraNames,
      leadership: { isLeader: () => elector.isLeader },
      signal: stopping.signal,
      logger,
      registry,
    });
    caBundleReady.resolve(certificates.caBundle);

    const { policies, namespaces } = resources;
    const context = createCachedAdmissionContext({
      synced: resources.synced,
      namespace: (name) => {
        const ns = namespaces.get('', name);
        return ns === undefined ? undefined : { name, labels: ns.metadata?.labels ?? {} };
      },
      policies: (namespace) => policies.list().filter((p) => p.metadata.namespace === namespace),
    }, createApiAdmissionContext(kubeConfig));
    const webhook = await startWebhookServer({
      host: config.webhook.host,
      port: config.webhook.port,
      certificates: certificates.source,
      context,
      settings,
      routes: { [ADMIT_REVIEWS_PATH]: reviewAdmissionRoute({ readAccessRequest: apiAccessRequestReader(kubeConfig), logger, ...(relaySigner === undefined ? {} : { stampSigner: relaySigner }) }) },
      registry,
      logger,
    });
    cleanups.push(async () => {
      // Fail readiness first and keep serving while the endpoint is withdrawn, so the API server
      // does not send a review to a closed port (with failurePolicy Fail, that refuses the pod).
      serving = false;
      await new Promise((resolve) => setTimeout(resolve, config.shutdownDelaySeconds * 1000));
      await webhook.close();
    });
    serving = true;
    logger.info({ webhook: webhook.port, metrics: ops.port }, 'custos operator ready');
    return { webhook, ops, stop: cleanUp };
  } catch (e: unknown) {
    await cleanUp();
    throw e;
  }
}
