import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import { parsePolicyYaml } from '../../crds/validate-document.ts';
import { billingPolicy } from '../../test/harness/operator-fixtures.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../webhook/injection-settings.ts';
import { decidePodAdmission, type AdmissionContext } from './admission-context.ts';
import type { PodAdmissionRequest } from './admission-review.ts';
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

  it('asks the API server for a namespace the cache has not seen, and names it authoritative', async () => {
    const server = api();
    const context = createCachedAdmissionContext(caches(true), server);
    assert.deepEqual(await context.namespace('new'), { name: 'new', labels: { from: 'api' } });
    assert.deepEqual(await context.policies('new'), []);
    assert.equal(context.authoritative, server);
    assert.deepEqual(server.calls, ['namespace new']);
  });

  it('asks the API server for everything until the caches have synced', async () => {
    const server = api();
    const context = createCachedAdmissionContext(caches(false), server);
    await context.namespace('known');
    await context.policies('known');
    assert.deepEqual(server.calls, ['namespace known', 'policies known']);
  });

  it('lets an API failure through (the webhook answers 503, never "not enabled")', async () => {
    const failing: AdmissionContext = { namespace: () => Promise.reject(new Error('connection refused')), policies: () => Promise.reject(new Error('connection refused')) };
    const context = createCachedAdmissionContext(caches(true), failing);
    await assert.rejects(context.namespace('new'), /connection refused/);
  });
});

describe('decidePodAdmission with a stale cache', () => {
  const settings = DEFAULT_INJECTION_SETTINGS;
  const selecting = (namespace: string): AccessPolicy => parsePolicyYaml(billingPolicy(namespace), 'policy.yaml');
  const request: PodAdmissionRequest = {
    uid: 'u1', operation: 'CREATE', namespace: 'payments', name: 'billing-1', dryRun: false,
    userInfo: { username: 'admin', groups: ['system:masters'] },
    pod: { metadata: { name: 'billing-1', namespace: 'payments', labels: { app: 'billing' } }, spec: { containers: [{ name: 'app', image: 'app:1' }] } },
  };
  const live: AdmissionContext = {
    namespace: (name) => Promise.resolve({ name, labels: { 'custos.io/injection': 'enabled' } }),
    policies: (ns) => Promise.resolve([selecting(ns)]),
  };

  it('injects when the cache has not seen the injection label yet', async () => {
    const stale = createCachedAdmissionContext({ synced: () => true, namespace: (name) => ({ name, labels: {} }), policies: (ns) => [selecting(ns)] }, live);
    assert.equal((await decidePodAdmission(request, stale, settings)).kind, 'patch');
  });

  it('injects when the cache has not seen the policy yet', async () => {
    const stale = createCachedAdmissionContext({ synced: () => true, namespace: (name) => ({ name, labels: { 'custos.io/injection': 'enabled' } }), policies: () => [] }, live);
    assert.equal((await decidePodAdmission(request, stale, settings)).kind, 'patch');
  });

  it('skips when the API server agrees', async () => {
    const notEnabled: AdmissionContext = { namespace: (name) => Promise.resolve({ name, labels: {} }), policies: () => Promise.resolve([]) };
    const result = await decidePodAdmission(request, createCachedAdmissionContext({ synced: () => true, namespace: (name) => ({ name, labels: {} }), policies: () => [] }, notEnabled), settings);
    assert.deepEqual(result.kind === 'skip' ? result.reason : result.kind, 'namespace-not-enabled');
  });
});
