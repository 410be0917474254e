import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cacheKey, remove, replaceAll, upsert, type CachedObject } from './cache-diff.ts';

const obj = (namespace: string, name: string, rv: string): CachedObject => ({ metadata: { namespace, name, resourceVersion: rv } });
const cacheOf = (...objects: CachedObject[]): Map<string, CachedObject> => new Map(objects.map((o) => [cacheKey(o) ?? '', o]));
const summary = (changes: ReturnType<typeof replaceAll>): string[] => changes.map((c) => `${c.type} ${cacheKey(c.object) ?? ''}@${c.object.metadata?.resourceVersion ?? ''}${c.type === 'update' ? ` (was ${c.previous.metadata?.resourceVersion ?? ''})` : ''}`);

describe('informer cache', () => {
  it('keys namespaced and cluster-scoped objects apart and ignores nameless ones', () => {
    assert.equal(cacheKey(obj('payments', 'billing', '1')), 'payments/billing');
    assert.equal(cacheKey({ metadata: { name: 'payments' } }), '/payments');
    assert.equal(cacheKey({ metadata: {} }), undefined);
    assert.equal(cacheKey({}), undefined);
  });

  it('reports add, then update with the previous version, and nothing for a version it already holds', () => {
    const cache = cacheOf();
    assert.deepEqual(upsert(cache, obj('a', 'x', '1')), { type: 'add', object: obj('a', 'x', '1') });
    assert.deepEqual(upsert(cache, obj('a', 'x', '2')), { type: 'update', object: obj('a', 'x', '2'), previous: obj('a', 'x', '1') });
    assert.equal(upsert(cache, obj('a', 'x', '2')), undefined);
    assert.equal(cache.size, 1);
  });

  it('reports a delete only for an object it holds', () => {
    const cache = cacheOf(obj('a', 'x', '1'));
    assert.equal(remove(cache, obj('a', 'y', '5')), undefined);
    assert.deepEqual(remove(cache, obj('a', 'x', '6')), { type: 'delete', object: obj('a', 'x', '6') });
    assert.equal(cache.size, 0);
  });

  it('turns a relist into the adds, updates and deletes the watch missed', () => {
    const cache = cacheOf(obj('a', 'kept', '1'), obj('a', 'changed', '2'), obj('a', 'gone', '3'), obj('b', 'gone-too', '4'));
    const changes = replaceAll(cache, [obj('a', 'kept', '1'), obj('a', 'changed', '9'), obj('a', 'new', '10')]);
    assert.deepEqual(summary(changes), ['update a/changed@9 (was 2)', 'add a/new@10', 'delete a/gone@3', 'delete b/gone-too@4']);
    assert.deepEqual([...cache.keys()].sort(), ['a/changed', 'a/kept', 'a/new']);
  });

  it('reports nothing when the list matches the cache', () => {
    const cache = cacheOf(obj('a', 'x', '1'), obj('', 'y', '2'));
    assert.deepEqual(replaceAll(cache, [obj('a', 'x', '1'), obj('', 'y', '2')]), []);
  });

  it('treats objects without a resourceVersion as changed every time (never equal by accident)', () => {
    const cache = cacheOf({ metadata: { name: 'x' } });
    assert.equal(upsert(cache, { metadata: { name: 'x' } })?.type, 'update');
  });
});
