import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ObservedPod } from './reconcile/observed.ts';
import { podSelectionChanged } from './watched-resources.ts';

const pod = (patch: { labels?: Record<string, string>; phase?: string; ready?: boolean; deleting?: boolean; hostNetwork?: boolean }): ObservedPod & { status: { conditions: unknown[] } } => ({
  metadata: { name: 'p', namespace: 'n', labels: patch.labels ?? { app: 'billing' }, ...(patch.deleting === true ? { deletionTimestamp: '1970-01-01T00:00:00Z' } : {}) },
  spec: { ...(patch.hostNetwork === true ? { hostNetwork: true } : {}) },
  status: { phase: patch.phase ?? 'Running', conditions: [{ type: 'Ready', status: patch.ready === false ? 'False' : 'True' }] },
});

describe('podSelectionChanged', () => {
  it('ignores status churn the planner does not read', () => {
    assert.equal(podSelectionChanged(pod({ ready: false }), pod({ ready: true })), false);
  });
  it('sees label, phase, deletion and hostNetwork changes', () => {
    assert.equal(podSelectionChanged(pod({ labels: { app: 'other' } }), pod({})), true);
    assert.equal(podSelectionChanged(pod({ phase: 'Succeeded' }), pod({})), true);
    assert.equal(podSelectionChanged(pod({ deleting: true }), pod({})), true);
    assert.equal(podSelectionChanged(pod({ hostNetwork: true }), pod({})), true);
  });
});
