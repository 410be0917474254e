import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import type { AdmissionContext } from './admission-context.ts';
import { createCachedAdmissionContext, type AdmissionCaches } from './cached-admission-context.ts';

const policy = (name: string, namespace: string): AccessPolicy => ({ apiVersion: 'custos.io/v1alpha1', kind: 'AccessPolicy', metadata: { name, namespace }, spec: { targets: [], rules: [] } }) as unknown as AccessPolicy;

function api(): AdmissionContext & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    namespace: (name) => { calls.push(`namespace ${name}`); return Promise.resolve({ name, labels: { from: 'api' } }); },
    policies: (ns) => { calls.push(`policies ${ns}`); return Promise.resolve([policy('from-api', ns)]); },
  };
}

const caches = (synced: boolean): AdmissionCaches => ({
  synced: () => synced,
  namespace: (name) => (name === 'known' ? { name, labels: { from: 'cache' } } : undefined),
  policies: (ns) => (ns === 'known' ? [policy('cached', ns)] : []),
});

describe('createCachedAdmissionContext', () => {
  it('answers from the caches when they hold the answer', async () => {
    const server = api();
    const context = createCachedAdmissionContext(caches(true), server);
    assert.deepEqual(await context.namespace('known'), { name: 'known', labels: { from: 'cache' } });
    assert.deepEqual((await context.policies('known')).map((p) => p.metadata.name), ['cached']);
    assert.deepEqual(server.calls, []);
  });

  it('asks the API server for a namespace the cache has not seen, and for policies it does not hold', async () => {
    const server = api();
    const context = createCachedAdmissionContext(caches(true), server);
    assert.deepEqual(await context.namespace('new'), { name: 'new', labels: { from: 'api' } });
    assert.deepEqual((await context.policies('new')).map((p) => p.metadata.name), ['from-api']);
    assert.deepEqual(server.calls, ['namespace new', 'policies new']);
  });

  it('asks the API server for everything until the caches have synced', async () => {
    const server = api();
    const context = createCachedAdmissionContext(caches(false), server);
    await context.namespace('known');
    await context.policies('known');
    assert.deepEqual(server.calls, ['namespace known', 'policies known']);
  });

  it('lets an API failure through (the webhook answers 503, never "no policy")', async () => {
    const failing: AdmissionContext = { namespace: () => Promise.reject(new Error('connection refused')), policies: () => Promise.reject(new Error('connection refused')) };
    const context = createCachedAdmissionContext(caches(true), failing);
    await assert.rejects(context.policies('new'), /connection refused/);
  });
});
