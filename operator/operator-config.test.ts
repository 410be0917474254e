import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readOperatorConfig } from './operator-config.ts';

const BASE = { CUSTOS_NAMESPACE: 'custos-system' } as const;
const HOST = { hostname: 'operator-7d9f-abcde' };

describe('readOperatorConfig', () => {
  it('fills defaults that match the chart and the injection defaults', () => {
    const config = readOperatorConfig(BASE, HOST);
    assert.equal(config.namespace, 'custos-system');
    assert.equal(config.identity, 'operator-7d9f-abcde');
    assert.equal(config.webhook.port, 9443);
    assert.equal(config.webhook.certMode, 'in-process');
    assert.equal(config.metrics.port, 9090);
    assert.equal(config.redisUrl, undefined);
    assert.equal(config.injection.proxyUid, 17337);
    assert.deepEqual(config.lease, { durationSeconds: 15, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 });
    assert.equal(config.shutdownDelaySeconds, 5);
    assert.equal(readOperatorConfig({ ...BASE, CUSTOS_SHUTDOWN_DELAY_SECONDS: '0' }, HOST).shutdownDelaySeconds, 0);
  });

  it('takes images and Redis from the environment into the injection settings', () => {
    const config = readOperatorConfig({ ...BASE, CUSTOS_SIDECAR_IMAGE: 'reg/custos:1.2.3', CUSTOS_INIT_IMAGE: 'reg/custos-init:1.2.3', CUSTOS_REDIS_URL: 'redis://redis:6379/0' }, HOST);
    assert.equal(config.injection.images.sidecar, 'reg/custos:1.2.3');
    assert.equal(config.injection.images.init, 'reg/custos-init:1.2.3');
    assert.equal(config.injection.redisUrl, 'redis://redis:6379/0');
    assert.equal(config.redisUrl, 'redis://redis:6379/0');
  });

  it('takes the cluster\'s token issuer into the injection settings, for the sidecar\'s workload identity', () => {
    assert.equal(readOperatorConfig(BASE, HOST).injection.workloadIdentity, undefined);
    const config = readOperatorConfig({ ...BASE, CUSTOS_WORKLOAD_ISSUER: 'https://kubernetes.default.svc.cluster.local', CUSTOS_WORKLOAD_JWKS_URI: 'https://10.0.0.1:443/openid/v1/jwks' }, HOST);
    assert.deepEqual(config.injection.workloadIdentity, { issuer: 'https://kubernetes.default.svc.cluster.local', jwksUri: 'https://10.0.0.1:443/openid/v1/jwks' });
  });

  it('passes how often sidecars check their service account (CUSTOS_WORKLOAD_SA_CHECK_SECONDS) when set', () => {
    const wi = { CUSTOS_WORKLOAD_ISSUER: 'https://issuer', CUSTOS_WORKLOAD_JWKS_URI: 'https://issuer/jwks' };
    assert.equal(readOperatorConfig({ ...BASE, ...wi, CUSTOS_WORKLOAD_SA_CHECK_SECONDS: '5' }, HOST).injection.workloadIdentity?.serviceAccountCheckSeconds, 5);
    assert.equal(readOperatorConfig({ ...BASE, ...wi }, HOST).injection.workloadIdentity?.serviceAccountCheckSeconds, undefined);
    assert.throws(() => readOperatorConfig({ ...BASE, ...wi, CUSTOS_WORKLOAD_SA_CHECK_SECONDS: '0' }, HOST), /CUSTOS_WORKLOAD_SA_CHECK_SECONDS: "0" is not a whole number of seconds between 1 and 3600/);
  });

  it('splits extra certificate names', () => {
    assert.deepEqual(readOperatorConfig({ ...BASE, CUSTOS_WEBHOOK_EXTRA_NAMES: '127.0.0.1, localhost,' }, HOST).webhook.extraNames, ['127.0.0.1', 'localhost']);
  });

  for (const [env, message] of [
    [{}, /CUSTOS_NAMESPACE: required but not set/],
    [{ ...BASE, CUSTOS_WORKLOAD_ISSUER: 'https://issuer' }, /CUSTOS_WORKLOAD_JWKS_URI: required when CUSTOS_WORKLOAD_ISSUER is set/],
    [{ ...BASE, CUSTOS_WORKLOAD_JWKS_URI: 'https://issuer/jwks' }, /CUSTOS_WORKLOAD_ISSUER: required when CUSTOS_WORKLOAD_JWKS_URI is set/],
    [{ ...BASE, CUSTOS_WORKLOAD_ISSUER: 'https://issuer', CUSTOS_WORKLOAD_JWKS_URI: 'http://issuer/jwks' }, /CUSTOS_WORKLOAD_JWKS_URI: "http:\/\/issuer\/jwks" is not an https URL/],
    [{ CUSTOS_NAMESPACE: 'Custos_System' }, /CUSTOS_NAMESPACE: "Custos_System" is not a valid Kubernetes name/],
    [{ ...BASE, CUSTOS_WEBHOOK_PORT: '70000' }, /CUSTOS_WEBHOOK_PORT: "70000" is not a TCP port/],
    [{ ...BASE, CUSTOS_METRICS_PORT: '90x' }, /CUSTOS_METRICS_PORT: "90x" is not a TCP port/],
    [{ ...BASE, CUSTOS_WEBHOOK_CERT_MODE: 'self-signed' }, /CUSTOS_WEBHOOK_CERT_MODE: "self-signed" is not one of in-process, cert-manager/],
    [{ ...BASE, CUSTOS_WEBHOOK_CERT_MODE: 'cert-manager' }, /CUSTOS_WEBHOOK_CERT_DIR: required when CUSTOS_WEBHOOK_CERT_MODE is cert-manager/],
    [{ ...BASE, CUSTOS_REDIS_URL: 'redis://:s3cret@redis:6379/0' }, /CUSTOS_REDIS_URL: carries a password, which would be copied into every policy ConfigMap/],
    [{ ...BASE, CUSTOS_REDIS_URL: 'redis://redis:6379/0?password=s3cret' }, /CUSTOS_REDIS_URL: carries a password/],
    [{ ...BASE, CUSTOS_REDIS_URL: 'http://redis' }, /CUSTOS_REDIS_URL: must start with redis:\/\//],
    [{ ...BASE, CUSTOS_SHUTDOWN_DELAY_SECONDS: '-1' }, /CUSTOS_SHUTDOWN_DELAY_SECONDS: "-1" is not a whole number of seconds between 0 and 3600/],
    [{ ...BASE, CUSTOS_LEASE_DURATION_SECONDS: '0' }, /CUSTOS_LEASE_DURATION_SECONDS: "0" is not a whole number of seconds/],
    [{ ...BASE, CUSTOS_LEASE_DURATION_SECONDS: '10' }, /CUSTOS_LEASE_RENEW_DEADLINE_SECONDS: 10 must be less than the lease duration \(10\)/],
    [{ ...BASE, CUSTOS_LEASE_RENEW_DEADLINE_SECONDS: '2' }, /CUSTOS_LEASE_RETRY_PERIOD_SECONDS: 2 must be less than the renew deadline \(2\)/],
    [{ ...BASE, CUSTOS_LEASE_NAME: 'lease/x' }, /CUSTOS_LEASE_NAME: "lease\/x" is not a valid Kubernetes name/],
  ] as const) {
    it(`refuses ${JSON.stringify(env)}`, () => {
      assert.throws(() => readOperatorConfig(env, HOST), (e: unknown) => e instanceof Error && message.test(e.message) && (e as { code?: string }).code === 'ERR_OPERATOR_CONFIG_INVALID');
    });
  }
});
