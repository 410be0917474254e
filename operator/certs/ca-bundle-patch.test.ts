import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyJsonPatch } from '../webhook/json-patch.ts';
import { encodeCaBundle, planCaBundlePatch, type WebhookConfigurationLike } from './ca-bundle-patch.ts';

const BUNDLE = encodeCaBundle('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');

function configuration(...caBundles: Array<string | undefined>): WebhookConfigurationLike {
  return {
    webhooks: caBundles.map((caBundle, i) => ({
      name: `hook-${i}.custos.io`,
      clientConfig: caBundle === undefined ? {} : { caBundle },
    })),
  };
}

describe('planCaBundlePatch', () => {
  it('writes the bundle into every webhook, guarded by the webhook name and the old value', () => {
    const ops = planCaBundlePatch(configuration('', 'b2xk'), BUNDLE);
    assert.deepEqual(ops, [
      { op: 'test', path: '/webhooks/0/name', value: 'hook-0.custos.io' },
      { op: 'test', path: '/webhooks/0/clientConfig/caBundle', value: '' },
      { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: BUNDLE },
      { op: 'test', path: '/webhooks/1/name', value: 'hook-1.custos.io' },
      { op: 'test', path: '/webhooks/1/clientConfig/caBundle', value: 'b2xk' },
      { op: 'add', path: '/webhooks/1/clientConfig/caBundle', value: BUNDLE },
    ]);
    const patched = applyJsonPatch(configuration('', 'b2xk'), ops);
    assert.deepEqual(patched.webhooks?.map((w) => w.clientConfig?.caBundle), [BUNDLE, BUNDLE]);
  });

  it('adds the field when the API server omitted an empty caBundle (no test on a missing value)', () => {
    const ops = planCaBundlePatch(configuration(undefined), BUNDLE);
    assert.deepEqual(ops, [
      { op: 'test', path: '/webhooks/0/name', value: 'hook-0.custos.io' },
      { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: BUNDLE },
    ]);
  });

  it('plans nothing when every webhook already carries the bundle', () => {
    assert.deepEqual(planCaBundlePatch(configuration(BUNDLE, BUNDLE), BUNDLE), []);
    assert.deepEqual(planCaBundlePatch({}, BUNDLE), []);
  });

  it('touches only the webhooks that differ', () => {
    const ops = planCaBundlePatch(configuration(BUNDLE, ''), BUNDLE);
    assert.deepEqual(ops.map((o) => o.path), ['/webhooks/1/name', '/webhooks/1/clientConfig/caBundle', '/webhooks/1/clientConfig/caBundle']);
  });

  it('fails as a whole when the configuration changed after it was read', () => {
    const ops = planCaBundlePatch(configuration(''), BUNDLE);
    // helm upgrade reordered the webhooks in between: the name test refuses the patch.
    const reordered = { webhooks: [{ name: 'other.custos.io', clientConfig: { caBundle: '' } }] };
    assert.throws(() => applyJsonPatch(reordered, ops), /test failed at \/webhooks\/0\/name/);
    // Someone else wrote a bundle in between: the value test refuses it.
    const rewritten = { webhooks: [{ name: 'hook-0.custos.io', clientConfig: { caBundle: 'dGhlaXJz' } }] };
    assert.throws(() => applyJsonPatch(rewritten, ops), /test failed at \/webhooks\/0\/clientConfig\/caBundle/);
  });

  it('leaves a webhook without clientConfig for the API server to refuse', () => {
    assert.deepEqual(planCaBundlePatch({ webhooks: [{ name: 'broken' }] }, BUNDLE), []);
  });
});
