// The patch formats of PATCH requests: JSON merge patch (RFC 7386), JSON patch (RFC 6902), the
// subset of strategic merge patch (k8s.io/apimachinery pkg/util/strategicpatch) that kubectl
// apply and kubectl patch send for the built-in kinds, and an approximation of server-side apply
// (merge of the applied configuration; fields dropped from a later apply are not removed).
import { badRequest, KubeApiError } from './errors.ts';
import { deepClone, deepEqual, isObject, type JsonObject } from './types.ts';

export const PATCH_TYPES = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

function patchInvalid(message: string): KubeApiError {
  // The patch handler answers jsonpatch application errors with a generic 422.
  return new KubeApiError({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Invalid', code: 422 });
}

// ---- RFC 7386 ----

export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return deepClone(patch);
  const result: JsonObject = isObject(target) ? deepClone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) Reflect.deleteProperty(result, key);
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}

// ---- RFC 6902 ----

function unescapePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw badRequest(`JSON pointer must start with '/': ${pointer}`);
  return pointer.slice(1).split('/').map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
}

interface Located { parent: unknown; key: string }

function locate(doc: unknown, path: string[], op: string, pointer: string): Located {
  let parent: unknown = doc;
  for (const part of path.slice(0, -1)) {
    if (Array.isArray(parent)) parent = parent[Number(part)];
    else if (isObject(parent)) parent = parent[part];
    else parent = undefined;
    if (parent === undefined || parent === null) throw patchInvalid(`${op} operation does not apply: doc is missing path: "${pointer}": missing value`);
  }
  return { parent, key: path[path.length - 1] ?? '' };
}

function getAt(doc: unknown, pointer: string, op: string): unknown {
  let current = doc;
  for (const part of unescapePointer(pointer)) {
    if (Array.isArray(current)) current = current[Number(part)];
    else if (isObject(current)) current = current[part];
    else current = undefined;
    if (current === undefined) throw patchInvalid(`${op} operation does not apply: doc is missing path: "${pointer}": missing value`);
  }
  return current;
}

function arrayIndex(array: unknown[], key: string, forInsert: boolean, op: string, pointer: string): number {
  if (forInsert && key === '-') return array.length;
  if (!/^\d+$/.test(key)) throw patchInvalid(`${op} operation does not apply: doc is missing path: "${pointer}": invalid index`);
  const index = Number(key);
  if (index > array.length || (!forInsert && index === array.length)) throw patchInvalid(`${op} operation does not apply: doc is missing path: "${pointer}": index out of bounds`);
  return index;
}

function addAt(doc: unknown, pointer: string, value: unknown, op: string): unknown {
  const path = unescapePointer(pointer);
  if (path.length === 0) return deepClone(value);
  const { parent, key } = locate(doc, path, op, pointer);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, true, op, pointer), 0, deepClone(value));
  else if (isObject(parent)) parent[key] = deepClone(value);
  else throw patchInvalid(`${op} operation does not apply: doc is missing path: "${pointer}": missing value`);
  return doc;
}

function removeAt(doc: unknown, pointer: string, op: string): unknown {
  const path = unescapePointer(pointer);
  const { parent, key } = locate(doc, path, op, pointer);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, false, op, pointer), 1);
  else if (isObject(parent) && Object.hasOwn(parent, key)) Reflect.deleteProperty(parent, key);
  else throw patchInvalid(`${op} operation does not apply: doc is missing path: "${pointer}": missing value`);
  return doc;
}

export function applyJsonPatch(target: unknown, patch: unknown): unknown {
  if (!Array.isArray(patch)) throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  let doc = deepClone(target);
  for (const operation of patch) {
    if (!isObject(operation) || typeof operation.op !== 'string' || typeof operation.path !== 'string') {
      throw badRequest('Unexpected kind: unknown operation');
    }
    const { op, path } = operation;
    const from = typeof operation.from === 'string' ? operation.from : '';
    switch (op) {
      case 'add': doc = addAt(doc, path, operation.value, op); break;
      case 'remove': doc = removeAt(doc, path, op); break;
      case 'replace': getAt(doc, path, op); doc = removeAt(doc, path, op); doc = addAt(doc, path, operation.value, op); break;
      case 'move': { const value = getAt(doc, from, op); doc = removeAt(doc, from, op); doc = addAt(doc, path, value, op); break; }
      case 'copy': doc = addAt(doc, path, getAt(doc, from, op), op); break;
      case 'test':
        if (!deepEqual(getAt(doc, path, op), operation.value)) throw patchInvalid(`testing value ${path} failed: test failed`);
        break;
      default: throw badRequest(`Unexpected kind: ${op}`);
    }
  }
  return doc;
}

// ---- strategic merge patch (subset) ----

/** patchMergeKey of list fields in the built-in Go types, by field name. */
const MERGE_KEYS: Readonly<Record<string, string | ((items: readonly unknown[]) => string)>> = {
  containers: 'name', initContainers: 'name', ephemeralContainers: 'name', volumes: 'name', env: 'name',
  imagePullSecrets: 'name', webhooks: 'name', secrets: 'name', resourceClaims: 'name', hostAliases: 'ip',
  conditions: 'type', ownerReferences: 'uid', volumeMounts: 'mountPath', volumeDevices: 'devicePath',
  topologySpreadConstraints: 'topologyKey',
  // Container ports merge on containerPort, Service ports on port.
  ports: (items) => (items.some((i) => isObject(i) && 'containerPort' in i) ? 'containerPort' : 'port'),
};
/** Primitive lists with patchStrategy merge. */
const MERGED_PRIMITIVE_LISTS = new Set(['finalizers']);

function mergeKeyFor(field: string, items: readonly unknown[]): string | undefined {
  const k = MERGE_KEYS[field];
  return typeof k === 'function' ? k(items) : k;
}

function stripDirectives(value: unknown): unknown {
  if (Array.isArray(value)) return value.filter((v) => !(isObject(v) && v.$patch === 'delete')).map(stripDirectives);
  if (!isObject(value)) return value;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    if (k.startsWith('$')) continue;
    out[k] = stripDirectives(v);
  }
  return out;
}

function orderBy(list: unknown[], order: readonly unknown[], mergeKey: string | undefined): unknown[] {
  const keyOf = (v: unknown): unknown => (mergeKey !== undefined && isObject(v) ? v[mergeKey] : v);
  const rank = (v: unknown): number => {
    const i = order.findIndex((o) => deepEqual(keyOf(o), keyOf(v)));
    return i < 0 ? order.length : i;
  };
  return list.map((v, i) => ({ v, i })).sort((a, b) => rank(a.v) - rank(b.v) || a.i - b.i).map(({ v }) => v);
}

function mergeList(original: unknown[], patch: unknown[], field: string, strategic: boolean): unknown[] {
  if (patch.some((p) => isObject(p) && p.$patch === 'replace')) {
    return patch.filter((p) => !(isObject(p) && p.$patch === 'replace')).map(stripDirectives);
  }
  if (MERGED_PRIMITIVE_LISTS.has(field) && patch.every((p) => !isObject(p))) {
    return [...original, ...patch.filter((p) => !original.some((o) => deepEqual(o, p)))];
  }
  const mergeKey = mergeKeyFor(field, [...original, ...patch]);
  if (mergeKey === undefined || !patch.every(isObject)) return patch.map(stripDirectives);
  const result = deepClone(original);
  for (const item of patch) {
    const key = item[mergeKey];
    const index = result.findIndex((o) => isObject(o) && deepEqual(o[mergeKey], key));
    if (strategic && item.$patch === 'delete') {
      if (index >= 0) result.splice(index, 1);
      continue;
    }
    if (index >= 0) result[index] = mergeObject(result[index], item, strategic);
    else result.push(mergeObject({}, item, strategic));
  }
  return result;
}

function mergeObject(original: unknown, patch: JsonObject, strategic: boolean): unknown {
  if (strategic && patch.$patch === 'replace') return stripDirectives(patch);
  const result: JsonObject = isObject(original) ? deepClone(original) : {};
  const orders: Array<[string, unknown[]]> = [];
  for (const [key, value] of Object.entries(patch)) {
    if (strategic && key.startsWith('$setElementOrder/')) {
      if (Array.isArray(value)) orders.push([key.slice('$setElementOrder/'.length), value]);
      continue;
    }
    if (strategic && key.startsWith('$deleteFromPrimitiveList/')) {
      const field = key.slice('$deleteFromPrimitiveList/'.length);
      const current = result[field];
      if (Array.isArray(current) && Array.isArray(value)) result[field] = current.filter((v) => !value.some((d) => deepEqual(d, v)));
      continue;
    }
    if (key.startsWith('$')) continue;
    if (value === null || (strategic && isObject(value) && value.$patch === 'delete')) {
      Reflect.deleteProperty(result, key);
      continue;
    }
    const current = result[key];
    if (isObject(value)) result[key] = mergeObject(current, value, strategic);
    else if (Array.isArray(value) && Array.isArray(current)) result[key] = mergeList(current, value, key, strategic);
    else result[key] = stripDirectives(value);
  }
  for (const [field, order] of orders) {
    const list = result[field];
    if (Array.isArray(list)) result[field] = orderBy(list, order, mergeKeyFor(field, list));
  }
  if (strategic && Array.isArray(patch.$retainKeys)) {
    const keep = new Set(patch.$retainKeys.map(String));
    for (const key of Object.keys(result)) if (!keep.has(key)) Reflect.deleteProperty(result, key);
  }
  return result;
}

export function applyStrategicMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) throw badRequest('unable to find api field in struct Unstructured for the json field "$patch"');
  return mergeObject(target, patch, true);
}

/** Server-side apply, approximated: the applied configuration merged over the live object. */
export function applyConfiguration(target: unknown, applied: JsonObject): unknown {
  return mergeObject(target, applied, false);
}
