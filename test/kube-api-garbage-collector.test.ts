// The API double's garbage collector, driven with the real kubectl: dependents go with their owner
// (background cascading, as kube-controller-manager does), and stay with --cascade=orphan.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';
import { waitFor } from './harness/processes.ts';

describe('API double: garbage collection of dependents (real kubectl 1.35)', () => {
  let api: KubeApi;
  let k: Kubectl;
  before(async () => {
    api = await startKubeApi();
    k = await kubectlFor(await api.kubeconfig());
  });
  after(async () => { await api.stop(); });

  const ownedBy = async (owner: string, dependent: string): Promise<void> => {
    await k.ok(['create', 'configmap', owner]);
    const uid = (await k.ok(['get', 'configmap', owner, '-o', 'jsonpath={.metadata.uid}'])).trim();
    await k.ok(['apply', '-f', '-'], { input: JSON.stringify({
      apiVersion: 'v1', kind: 'ConfigMap',
      metadata: { name: dependent, namespace: 'default', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: owner, uid, controller: true }] },
      data: { k: 'v' },
    }) });
  };
  const exists = async (name: string): Promise<boolean> => (await k.run(['get', 'configmap', name])).code === 0;

  it('deletes a dependent, and its dependents, after the owner is deleted', async () => {
    await ownedBy('owner', 'dependent');
    const uid = (await k.ok(['get', 'configmap', 'dependent', '-o', 'jsonpath={.metadata.uid}'])).trim();
    await k.ok(['apply', '-f', '-'], { input: JSON.stringify({
      apiVersion: 'v1', kind: 'ConfigMap',
      metadata: { name: 'grandchild', namespace: 'default', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'dependent', uid }] },
    }) });
    await k.ok(['delete', 'configmap', 'owner']);
    await waitFor('dependents collected', async () => !(await exists('dependent')) && !(await exists('grandchild')));
  });

  it('keeps a dependent that still has a live owner', async () => {
    await ownedBy('first', 'shared');
    await k.ok(['create', 'configmap', 'second']);
    const second = (await k.ok(['get', 'configmap', 'second', '-o', 'jsonpath={.metadata.uid}'])).trim();
    await k.ok(['patch', 'configmap', 'shared', '--type=json', '-p', JSON.stringify([{ op: 'add', path: '/metadata/ownerReferences/-', value: { apiVersion: 'v1', kind: 'ConfigMap', name: 'second', uid: second } }])]);
    await k.ok(['delete', 'configmap', 'first']);
    await k.ok(['create', 'configmap', 'marker']);
    await k.ok(['delete', 'configmap', 'marker']);
    assert.ok(await exists('shared'));
  });

  it('orphans dependents with --cascade=orphan', async () => {
    await ownedBy('parent', 'orphan');
    await k.ok(['delete', 'configmap', 'parent', '--cascade=orphan']);
    assert.ok(await exists('orphan'));
    assert.equal((await k.ok(['get', 'configmap', 'orphan', '-o', 'jsonpath={.metadata.ownerReferences}'])).trim(), '');
  });
});
