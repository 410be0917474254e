import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { resolveSidecarConfig } from './config.ts';
import { CancelRegistry } from './protocols/postgres/cancel-registry.ts';

describe('resolveSidecarConfig', () => {
  it('fills defaults and resolves paths against the config file directory', () => {
    const c = resolveSidecarConfig({ policyFile: 'policy.yaml', spool: { dir: 'spool' } }, '/etc/custos', {});
    assert.equal(c.policyFile, '/etc/custos/policy.yaml');
    assert.equal(c.spool.dir, '/etc/custos/spool');
    assert.equal(c.spool.maxBytes, 256 * 1024 * 1024);
    assert.equal(c.listen.host, '127.0.0.1');
    assert.equal(c.credentialsDir, '/var/run/custos/credentials');
    assert.equal(c.redisUrl, undefined);
  });

  it('takes the pod identity and REDIS_URL from the environment (downward API)', () => {
    const c = resolveSidecarConfig({ policyFile: 'p.yaml' }, '/', { CUSTOS_POD_UID: 'uid-1', CUSTOS_POD_NAME: 'api-0', REDIS_URL: 'redis://r:6379' });
    assert.equal(c.gateway.podUid, 'uid-1');
    assert.equal(c.gateway.podName, 'api-0');
    assert.equal(c.redisUrl, 'redis://r:6379');
  });

  it('checks the service account with the in-cluster API token and KUBERNETES_SERVICE_HOST unless the file says otherwise', () => {
    const wi = { tokenFile: 't', issuer: 'https://issuer' };
    const inCluster = resolveSidecarConfig({ policyFile: 'p.yaml', workloadIdentity: wi }, '/', { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' });
    assert.deepEqual(inCluster.workloadIdentity?.liveness, {
      intervalMs: 30_000, tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token', caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', apiServer: 'https://[fd00::1]:443',
    });
    assert.equal(resolveSidecarConfig({ policyFile: 'p.yaml', workloadIdentity: wi }, '/', {}).workloadIdentity?.liveness.apiServer, undefined);
    const local = resolveSidecarConfig({ policyFile: 'p.yaml', workloadIdentity: { ...wi, liveness: { intervalSeconds: 1, tokenFile: 'api/token', caFile: 'api/ca.crt', apiServer: 'https://127.0.0.1:6443' } } }, '/etc/custos', {});
    assert.deepEqual(local.workloadIdentity?.liveness, { intervalMs: 1000, tokenFile: '/etc/custos/api/token', caFile: '/etc/custos/api/ca.crt', apiServer: 'https://127.0.0.1:6443' });
  });

  const invalid: Array<[string, unknown, RegExp]> = [
    ['a missing policyFile', {}, /config\.policyFile: Required value/],
    ['an unknown field (a typo must not be silently ignored)', { policyFile: 'p', spoool: {} }, /config\.spoool: field not declared in schema/],
    ['a port out of range', { policyFile: 'p', http: { port: 70000 } }, /config\.http\.port/],
    ['a non-Redis URL', { policyFile: 'p', redisUrl: 'http://x' }, /config\.redisUrl/],
    ['a tiny spool', { policyFile: 'p', spool: { maxBytes: 10 } }, /config\.spool\.maxBytes/],
    ['not an object', 'policyFile: x', /invalid sidecar config/],
  ];
  for (const [name, doc, message] of invalid) {
    it(`refuses ${name}, naming the field`, () => {
      assert.throws(() => resolveSidecarConfig(doc, '/', {}), (e: unknown) => (e as { code?: string }).code === 'ERR_CONFIG_INVALID' && message.test((e as Error).message));
    });
  }
});

describe('CancelRegistry', () => {
  const target = { pid: 42, secret: Buffer.from([1, 2, 3, 4]), send: () => Promise.resolve() };

  it('finds the upstream for the exact client key only', () => {
    const registry = new CancelRegistry();
    const key = registry.issue(target);
    assert.ok(key.pid > 0);
    assert.equal(registry.lookup(key.pid, key.secret), target);
    const wrong = Buffer.from(key.secret);
    wrong[0] = (wrong[0] ?? 0) ^ 1;
    assert.equal(registry.lookup(key.pid, wrong), undefined);
    assert.equal(registry.lookup(key.pid, Buffer.alloc(0)), undefined);
    assert.equal(registry.lookup(key.pid + 1, key.secret), undefined);
  });

  it('never hands out the upstream key itself, and forgets released keys', () => {
    const registry = new CancelRegistry();
    const key = registry.issue(target);
    assert.notDeepEqual(key.secret, target.secret);
    registry.release(key.pid);
    assert.equal(registry.lookup(key.pid, key.secret), undefined);
    assert.equal(registry.size, 0);
  });
});
