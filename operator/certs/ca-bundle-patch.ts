// Pure: the JSON Patch that puts the webhook CA bundle into every webhook of a webhook
// configuration, or nothing when each already carries it. Each write is guarded by `test`
// operations on what was read (the webhook's name at that index, and its old caBundle when it had
// one), so a configuration changed in between (a `helm upgrade`, another writer) makes the API
// server refuse the patch with 422 instead of writing the bundle into the wrong webhook; the
// patcher then reads again.
import { pointer, type JsonPatchOperation } from '../webhook/json-patch.ts';

/** The slice of a Mutating/ValidatingWebhookConfiguration this needs. */
export interface WebhookConfigurationLike {
  readonly webhooks?: ReadonlyArray<{ readonly name: string; readonly clientConfig?: { readonly caBundle?: string } }>;
}

/** `caBundle` is base64 of PEM in the API (a []byte field). */
export function encodeCaBundle(bundlePem: string): string {
  return Buffer.from(bundlePem, 'utf8').toString('base64');
}

export function planCaBundlePatch(configuration: WebhookConfigurationLike, caBundle: string): JsonPatchOperation[] {
  const ops: JsonPatchOperation[] = [];
  for (const [i, webhook] of (configuration.webhooks ?? []).entries()) {
    const current = webhook.clientConfig?.caBundle;
    if (current === caBundle) continue;
    ops.push({ op: 'test', path: pointer('webhooks', i, 'name'), value: webhook.name });
    if (webhook.clientConfig === undefined) {
      // clientConfig is required by the API; a configuration without one is left for the API server to refuse.
      continue;
    }
    // An empty caBundle is omitted by the real API server (omitempty []byte) but kept by some
    // clients; only a value that is there can be tested.
    if (current !== undefined) ops.push({ op: 'test', path: pointer('webhooks', i, 'clientConfig', 'caBundle'), value: current });
    ops.push({ op: 'add', path: pointer('webhooks', i, 'clientConfig', 'caBundle'), value: caBundle });
  }
  // Only tests left (webhooks without clientConfig): nothing to write.
  return ops.some((o) => o.op !== 'test') ? ops : [];
}
