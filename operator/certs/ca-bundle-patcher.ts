// Leader-only: keeps `caBundle` of every webhook in the MutatingWebhookConfiguration
// (CUSTOS_WEBHOOK_CONFIGURATION) equal to the webhook CA bundle (reference/kubernetes.md §11, after
// vault-k8s certWatcher and istio pkg/webhooks/webhookpatch.go). It patches when the bundle changes
// (CA created or rotated), when the configuration drifts (a `helm upgrade` re-renders caBundle
// blank, and with failurePolicy Fail that blocks pod creation in every enforced namespace), and on
// an hourly resync in case a watch event was missed. It stops as soon as `signal` aborts
// (leadership lost), so two replicas never fight over the field.
//
// RBAC (charts/custos/templates/rbac.yaml): get/patch by resourceNames, list/watch.
import { AdmissionregistrationV1Api, ApiException, Watch, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { CustosError } from '../../lib/errors.ts';
import { encodeCaBundle, planCaBundlePatch } from './ca-bundle-patch.ts';
import { sleep, systemClock, type Clock } from './clock.ts';

export interface CaBundleSource {
  /** PEM of every CA the API server must trust. */
  current(): string;
  onChange(listener: (bundlePem: string) => void): () => void;
}

export interface CaBundlePatcherOptions {
  readonly kubeConfig: KubeConfig;
  readonly configurationName: string;
  readonly bundle: CaBundleSource;
  /** Aborted when leadership is lost or the operator stops. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** Re-check even without events (default 1 h, as vault-k8s). */
  readonly resyncIntervalMs?: number;
  /** Backoff after a failed patch or a broken watch: doubling from initialMs to maxMs (default 1 s → 30 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly clock?: Clock;
}

function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  return e === null || e === undefined ? 'closed by the server' : 'unknown error';
}

const MUTATING_CONFIGURATIONS_PATH = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';

/** Runs until `signal` aborts; never rejects (failures are logged and retried with backoff). */
export async function runCaBundlePatcher(options: CaBundlePatcherOptions): Promise<void> {
  const { signal, logger: log, configurationName: name } = options;
  const clock = options.clock ?? systemClock;
  const resyncMs = options.resyncIntervalMs ?? 60 * 60 * 1000;
  const backoff = options.backoff ?? { initialMs: 1000, maxMs: 30_000 };
  const delay = (failures: number): number => Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, failures - 1));
  const api = options.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  const stopped = (): boolean => signal.aborted;

  let dirty = true;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  const waitForPoke = (ms: number): Promise<void> => new Promise<void>((resolve) => {
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      cancel();
      signal.removeEventListener('abort', done);
      wake = undefined;
      resolve();
    };
    const cancel = clock.setTimer(ms, () => { dirty = true; done(); });
    signal.addEventListener('abort', done, { once: true });
    wake = done;
  });

  let missingLogged = false;
  const ensure = async (): Promise<void> => {
    for (let attempt = 0; attempt < 5; attempt++) {
      let configuration;
      try {
        configuration = await api.readMutatingWebhookConfiguration({ name });
      } catch (e: unknown) {
        if (e instanceof ApiException && e.code === 404) {
          if (!missingLogged) log.warn({ configuration: name }, 'webhook configuration not found; caBundle will be patched when it appears');
          missingLogged = true;
          return;
        }
        throw e;
      }
      missingLogged = false;
      const bundle = options.bundle.current();
      const ops = planCaBundlePatch(configuration, encodeCaBundle(bundle));
      if (ops.length === 0) return;
      try {
        await api.patchMutatingWebhookConfiguration({ name, body: ops, fieldManager: 'custos-operator' });
        log.info({ configuration: name, webhooks: ops.filter((o) => o.op === 'add').length }, 'caBundle patched');
        return;
      } catch (e: unknown) {
        // 422: a `test` failed (the configuration changed since it was read); 409: conflict. Re-read.
        if (e instanceof ApiException && (e.code === 422 || e.code === 409)) continue;
        throw e;
      }
    }
    throw new CustosError('ERR_CA_BUNDLE_CONFLICT', `webhook configuration ${name} kept changing while caBundle was being patched`);
  };

  // The watch only says "look again": ensure() reads the configuration itself.
  let watch: AbortController | undefined;
  let watchFailures = 0;
  const startWatch = async (): Promise<void> => {
    if (signal.aborted) return;
    try {
      watch = await new Watch(options.kubeConfig).watch(
        MUTATING_CONFIGURATIONS_PATH,
        { fieldSelector: `metadata.name=${name}`, allowWatchBookmarks: true },
        (type: string) => {
          if (type === 'BOOKMARK') return;
          watchFailures = 0;
          poke();
        },
        (err: unknown) => { restartWatch(err); },
      );
      if (stopped()) watch.abort(); // aborted while connecting
    } catch (e: unknown) {
      restartWatch(e);
    }
  };
  const restartWatch = (err: unknown): void => {
    if (signal.aborted) return;
    watchFailures++;
    log.warn({ configuration: name, err: describeError(err) }, 'webhook configuration watch ended; restarting');
    // Whatever happened while the watch was down is caught by the re-check.
    void sleep(clock, delay(watchFailures), signal).then(() => {
      poke();
      return startWatch();
    });
  };

  const unsubscribe = options.bundle.onChange(poke);
  void startWatch();
  let failures = 0;
  try {
    while (!signal.aborted) {
      if (dirty) {
        dirty = false;
        try {
          await ensure();
          failures = 0;
        } catch (e: unknown) {
          failures++;
          dirty = true;
          log.warn({ configuration: name, err: describeError(e), failures }, 'caBundle patch failed; retrying');
          await sleep(clock, delay(failures), signal);
        }
        continue;
      }
      await waitForPoke(resyncMs);
    }
  } finally {
    unsubscribe();
    watch?.abort();
    log.info({ configuration: name }, 'caBundle patcher stopped');
  }
}
