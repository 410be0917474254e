// RFC 6902 JSON Patch: the operation type the webhook returns (AdmissionResponse patchType
// JSONPatch), RFC 6901 pointer escaping, and a small applier used by tests and by reinvocation
// checks. Only the operations the injector emits are applied: add, remove, replace, test.
import { CustosError } from '../../lib/errors.ts';
import { isRecord } from '../../lib/is-record.ts';

export type JsonPatchOperation =
  | { readonly op: 'add'; readonly path: string; readonly value: unknown }
  | { readonly op: 'replace'; readonly path: string; readonly value: unknown }
  | { readonly op: 'remove'; readonly path: string }
  | { readonly op: 'test'; readonly path: string; readonly value: unknown };

/** RFC 6901 §3: `~` → `~0`, then `/` → `~1` (order matters: `~1` must not become `~01`). */
export function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function pointer(...tokens: ReadonlyArray<string | number>): string {
  return tokens.map((t) => '/' + escapePointerToken(String(t))).join('');
}

function parsePointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new CustosError('ERR_JSON_PATCH_INVALID', `JSON pointer ${JSON.stringify(path)} does not start with "/"`);
  return path.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

type Container = Record<string, unknown> | unknown[];

function isContainer(v: unknown): v is Container {
  return typeof v === 'object' && v !== null;
}


function arrayIndex(arr: readonly unknown[], token: string, path: string, forAdd: boolean): number {
  if (forAdd && token === '-') return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new CustosError('ERR_JSON_PATCH_INVALID', `${path}: ${JSON.stringify(token)} is not an array index`);
  const index = Number(token);
  if (index > arr.length || (!forAdd && index === arr.length)) throw new CustosError('ERR_JSON_PATCH_INVALID', `${path}: index ${index} out of bounds (length ${arr.length})`);
  return index;
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (!isRecord(a) || !isRecord(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
}

/** Applies `ops` to a deep copy of `doc`; throws ERR_JSON_PATCH_INVALID as a real API server would refuse. */
export function applyJsonPatch<T>(doc: T, ops: readonly JsonPatchOperation[]): T {
  let root: unknown = structuredClone(doc);
  for (const op of ops) {
    const tokens = parsePointer(op.path);
    const last = tokens.pop();
    if (last === undefined) {
      if (op.op === 'remove') throw new CustosError('ERR_JSON_PATCH_INVALID', 'cannot remove the document root');
      if (op.op === 'test') {
        if (!deepEqual(root, op.value)) throw new CustosError('ERR_JSON_PATCH_INVALID', 'test failed at the root');
        continue;
      }
      root = structuredClone(op.value);
      continue;
    }
    let parent: unknown = root;
    for (const [depth, token] of tokens.entries()) {
      const here = '/' + tokens.slice(0, depth + 1).join('/');
      if (Array.isArray(parent)) parent = parent[arrayIndex(parent, token, here, false)];
      else if (isRecord(parent) && Object.hasOwn(parent, token)) parent = parent[token];
      else throw new CustosError('ERR_JSON_PATCH_INVALID', `${op.op} ${op.path}: ${here} does not exist`);
    }
    if (!isContainer(parent)) throw new CustosError('ERR_JSON_PATCH_INVALID', `${op.op} ${op.path}: parent is not an object or array`);
    if (Array.isArray(parent)) {
      const index = arrayIndex(parent, last, op.path, op.op === 'add');
      if (op.op === 'add') parent.splice(index, 0, structuredClone(op.value));
      else if (op.op === 'remove') parent.splice(index, 1);
      else if (op.op === 'replace') parent[index] = structuredClone(op.value);
      else if (!deepEqual(parent[index], op.value)) throw new CustosError('ERR_JSON_PATCH_INVALID', `test failed at ${op.path}`);
      continue;
    }
    const exists = Object.hasOwn(parent, last);
    if (op.op !== 'add' && !exists) throw new CustosError('ERR_JSON_PATCH_INVALID', `${op.op} ${op.path}: member does not exist`);
    if (op.op === 'add' || op.op === 'replace') parent[last] = structuredClone(op.value);
    else if (op.op === 'remove') Reflect.deleteProperty(parent, last);
    else if (!deepEqual(parent[last], op.value)) throw new CustosError('ERR_JSON_PATCH_INVALID', `test failed at ${op.path}`);
  }
  return root as T;
}
