// SelfSubjectReview on the Kubernetes API double, as the sidecar's service-account liveness check
// uses it (sidecar/identity/service-account-liveness.ts), proven with the real kubectl
// (`kubectl auth whoami -o json` POSTs one) and with the sidecar's own adapter: a bound token
// authenticates while its service account and pod exist, and is 401 once either is deleted.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ServiceAccountLiveness } from '../sidecar/identity/service-account-liveness.ts';
import { kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';

const ADMIN_TOKEN = 'admin-token-for-selfsubjectreview-tests';
const NS = 'payments';

let api: KubeApi;
let k: Kubectl;
let dir: string;

interface Whoami { kind: string; apiVersion: string; status: { userInfo: { username: string; uid?: string; groups: string[]; extra?: Record<string, string[]> } } }

describe('SelfSubjectReview (kubectl auth whoami) on the API double', () => {
  before(async () => {
    api = await startKubeApi({ tokens: { [ADMIN_TOKEN]: { username: 'alice', groups: ['platform'], uid: 'alice-uid' } } });
    k = await kubectlFor(await api.kubeconfig('alice'));
    dir = await mkdtemp(join(tmpdir(), 'custos-ssr-test-'));
    await k.ok(['create', 'namespace', NS]);
  });
  after(async () => {
    await api.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('is listed in discovery as a create-only cluster-scoped resource', async () => {
    const resources = JSON.parse(await k.ok(['get', '--raw', '/apis/authentication.k8s.io/v1'])) as { resources: Array<{ name: string; kind: string; namespaced: boolean; verbs: string[] }> };
    const ssr = resources.resources.find((r) => r.name === 'selfsubjectreviews');
    assert.deepEqual([ssr?.kind, ssr?.namespaced, ssr?.verbs], ['SelfSubjectReview', false, ['create']]);
  });

  it('answers a bound service-account token with its userInfo, and 401 once the service account is deleted', async () => {
    await k.ok(['create', 'serviceaccount', 'billing-app', '-n', NS]);
    const saUid = await k.ok(['get', 'sa', 'billing-app', '-n', NS, '-o', 'jsonpath={.metadata.uid}']);
    await k.ok(['apply', '-f', '-'], { input: `apiVersion: v1\nkind: Pod\nmetadata: {name: billing, namespace: ${NS}}\nspec:\n  serviceAccountName: billing-app\n  containers: [{name: app, image: busybox:1.36}]\n` });
    const podUid = await k.ok(['get', 'pod', 'billing', '-n', NS, '-o', 'jsonpath={.metadata.uid}']);
    const token = (await k.ok(['create', 'token', 'billing-app', '-n', NS, '--bound-object-kind', 'Pod', '--bound-object-name', 'billing'])).trim();

    const whoami = JSON.parse(await k.ok(['auth', 'whoami', '-o', 'json', '--token', token])) as Whoami;
    assert.equal(whoami.kind, 'SelfSubjectReview');
    assert.equal(whoami.apiVersion, 'authentication.k8s.io/v1');
    assert.equal(whoami.status.userInfo.username, 'system:serviceaccount:payments:billing-app');
    assert.equal(whoami.status.userInfo.uid, saUid);
    assert.deepEqual(whoami.status.userInfo.groups, ['system:serviceaccounts', 'system:serviceaccounts:payments', 'system:authenticated']);
    assert.deepEqual(whoami.status.userInfo.extra?.['authentication.kubernetes.io/pod-uid'], [podUid]);

    // The sidecar's adapter, against the same API server with the same token: valid.
    const tokenFile = join(dir, 'token');
    const caFile = join(dir, 'ca.crt');
    await writeFile(tokenFile, token);
    await writeFile(caFile, api.caCert);
    const liveness = await ServiceAccountLiveness.start({
      apiServer: api.url, tokenFile, caFile, intervalMs: 3_600_000,
      expectedUsername: () => 'system:serviceaccount:payments:billing-app', logger: pino({ level: 'silent' }),
    });
    assert.ok(liveness !== undefined);
    try {
      assert.equal(liveness.revoked, undefined);

      await k.ok(['delete', 'serviceaccount', 'billing-app', '-n', NS]);
      const denied = await k.run(['auth', 'whoami', '-o', 'json', '--token', token]);
      assert.equal(denied.code, 1);
      assert.equal(denied.stderr.trim(), 'error: You must be logged in to the server (Unauthorized)');
      await liveness.check();
      assert.match(String(liveness.revoked), /^the pod's service account is no longer valid \(the API server no longer accepts its token: 401 Unauthorized\)$/);

      // Recreated under the same name it is a new object (new uid): the old token stays dead.
      await k.ok(['create', 'serviceaccount', 'billing-app', '-n', NS]);
      await liveness.check();
      assert.notEqual(liveness.revoked, undefined);

      // A new token for the new service account and pod: valid again.
      await writeFile(tokenFile, (await k.ok(['create', 'token', 'billing-app', '-n', NS])).trim());
      await liveness.check();
      assert.equal(liveness.revoked, undefined);
    } finally {
      liveness.stop();
    }
  });

  it('keeps the last answer when it cannot ask (the token file is gone)', async () => {
    const tokenFile = join(dir, 'token-unreachable');
    const caFile = join(dir, 'ca-unreachable.crt');
    await k.ok(['create', 'serviceaccount', 'reporter', '-n', NS]);
    await writeFile(tokenFile, (await k.ok(['create', 'token', 'reporter', '-n', NS])).trim());
    await writeFile(caFile, api.caCert);
    const liveness = await ServiceAccountLiveness.start({
      apiServer: api.url, tokenFile, caFile, intervalMs: 3_600_000,
      expectedUsername: () => 'system:serviceaccount:payments:reporter', logger: pino({ level: 'silent' }),
    });
    assert.ok(liveness !== undefined);
    try {
      await k.ok(['delete', 'serviceaccount', 'reporter', '-n', NS]);
      await liveness.check();
      assert.notEqual(liveness.revoked, undefined);
      // A token file that cannot be read is "cannot tell", not "valid".
      await rm(tokenFile);
      await liveness.check();
      assert.notEqual(liveness.revoked, undefined);
    } finally {
      liveness.stop();
    }
  });

  it('is off when the pod has no in-cluster API token', async () => {
    const liveness = await ServiceAccountLiveness.start({
      apiServer: api.url, tokenFile: join(dir, 'absent-token'), caFile: join(dir, 'absent-ca.crt'), intervalMs: 1000,
      expectedUsername: () => undefined, logger: pino({ level: 'silent' }),
    });
    assert.equal(liveness, undefined);
  });
});
