// Request bodies in application/vnd.kubernetes.protobuf. Since 1.33 client-go's typed clients
// prefer protobuf for built-in kinds, so kubectl 1.35 sends `kubectl create namespace|configmap|
// secret|serviceaccount|token` and `kubectl auth whoami|can-i` bodies as protobuf (responses may
// be JSON: the client accepts `application/vnd.kubernetes.protobuf,application/json`).
// The envelope is the magic `k8s\0` and a runtime.Unknown message (k8s.io/apimachinery
// pkg/runtime/generated.proto); the messages below carry the field numbers of the generated.proto
// files of k8s.io/api and apimachinery for the kinds kubectl creates this way. Unknown field
// numbers are skipped.
import { badRequest } from './errors.ts';
import type { JsonObject } from './types.ts';

export const PROTOBUF = 'application/vnd.kubernetes.protobuf';
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

type FieldType = 'string' | 'bytes' | 'int64' | 'int32' | 'bool' | 'time' | 'map<string,string>' | 'map<string,bytes>' | { message: string };
interface Field { readonly name: string; readonly type: FieldType; readonly repeated?: boolean }
type Message = Readonly<Record<number, Field>>;

const text = (v: unknown): string => (typeof v === 'string' ? v : '');
const s = (name: string): Field => ({ name, type: 'string' });
const m = (name: string, message: string, repeated = false): Field => ({ name, type: { message }, repeated });

const MESSAGES: Readonly<Record<string, Message>> = {
  Unknown: { 1: m('typeMeta', 'TypeMeta'), 2: { name: 'raw', type: 'bytes' }, 3: s('contentEncoding'), 4: s('contentType') },
  TypeMeta: { 1: s('apiVersion'), 2: s('kind') },
  ObjectMeta: {
    1: s('name'), 2: s('generateName'), 3: s('namespace'), 4: s('selfLink'), 5: s('uid'), 6: s('resourceVersion'),
    7: { name: 'generation', type: 'int64' }, 8: { name: 'creationTimestamp', type: 'time' }, 9: { name: 'deletionTimestamp', type: 'time' },
    10: { name: 'deletionGracePeriodSeconds', type: 'int64' }, 11: { name: 'labels', type: 'map<string,string>' },
    12: { name: 'annotations', type: 'map<string,string>' }, 13: m('ownerReferences', 'OwnerReference', true),
    14: { name: 'finalizers', type: 'string', repeated: true },
  },
  OwnerReference: { 1: s('kind'), 3: s('name'), 4: s('uid'), 5: s('apiVersion'), 6: { name: 'controller', type: 'bool' }, 7: { name: 'blockOwnerDeletion', type: 'bool' } },
  ObjectReference: { 1: s('kind'), 2: s('namespace'), 3: s('name'), 4: s('uid'), 5: s('apiVersion'), 6: s('resourceVersion'), 7: s('fieldPath') },
  LocalObjectReference: { 1: s('name') },
  Namespace: { 1: m('metadata', 'ObjectMeta'), 2: m('spec', 'NamespaceSpec'), 3: m('status', 'NamespaceStatus') },
  NamespaceSpec: { 1: { name: 'finalizers', type: 'string', repeated: true } },
  NamespaceStatus: { 1: s('phase') },
  ConfigMap: { 1: m('metadata', 'ObjectMeta'), 2: { name: 'data', type: 'map<string,string>' }, 3: { name: 'binaryData', type: 'map<string,bytes>' }, 4: { name: 'immutable', type: 'bool' } },
  Secret: {
    1: m('metadata', 'ObjectMeta'), 2: { name: 'data', type: 'map<string,bytes>' }, 3: s('type'),
    4: { name: 'stringData', type: 'map<string,string>' }, 5: { name: 'immutable', type: 'bool' },
  },
  ServiceAccount: {
    1: m('metadata', 'ObjectMeta'), 2: m('secrets', 'ObjectReference', true), 3: m('imagePullSecrets', 'LocalObjectReference', true),
    4: { name: 'automountServiceAccountToken', type: 'bool' },
  },
  TokenRequest: { 1: m('metadata', 'ObjectMeta'), 2: m('spec', 'TokenRequestSpec'), 3: m('status', 'TokenRequestStatus') },
  TokenRequestSpec: { 1: { name: 'audiences', type: 'string', repeated: true }, 3: m('boundObjectRef', 'BoundObjectReference'), 4: { name: 'expirationSeconds', type: 'int64' } },
  TokenRequestStatus: { 1: s('token'), 2: { name: 'expirationTimestamp', type: 'time' } },
  BoundObjectReference: { 1: s('kind'), 2: s('apiVersion'), 3: s('name'), 4: s('uid') },
  SelfSubjectReview: { 1: m('metadata', 'ObjectMeta') },
  SelfSubjectAccessReview: { 1: m('metadata', 'ObjectMeta'), 2: m('spec', 'SelfSubjectAccessReviewSpec') },
  SelfSubjectAccessReviewSpec: { 1: m('resourceAttributes', 'ResourceAttributes'), 2: m('nonResourceAttributes', 'NonResourceAttributes') },
  ResourceAttributes: { 1: s('namespace'), 2: s('verb'), 3: s('group'), 4: s('version'), 5: s('resource'), 6: s('subresource'), 7: s('name') },
  NonResourceAttributes: { 1: s('path'), 2: s('verb') },
  SelfSubjectRulesReview: { 1: m('metadata', 'ObjectMeta'), 2: m('spec', 'SelfSubjectRulesReviewSpec') },
  SelfSubjectRulesReviewSpec: { 1: s('namespace') },
  DeleteOptions: {
    1: { name: 'gracePeriodSeconds', type: 'int64' }, 2: m('preconditions', 'Preconditions'), 3: { name: 'orphanDependents', type: 'bool' },
    4: s('propagationPolicy'), 5: { name: 'dryRun', type: 'string', repeated: true },
  },
  Preconditions: { 1: s('uid'), 2: s('resourceVersion') },
  Time: { 1: { name: 'seconds', type: 'int64' }, 2: { name: 'nanos', type: 'int32' } },
  MapEntry: { 1: s('key'), 2: { name: 'value', type: 'bytes' } },
};

class Reader {
  readonly #buf: Buffer;
  #pos = 0;
  constructor(buf: Buffer) { this.#buf = buf; }
  get done(): boolean { return this.#pos >= this.#buf.length; }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.#pos >= this.#buf.length) throw badRequest('protobuf: truncated varint');
      const byte = this.#buf[this.#pos++] ?? 0;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw badRequest('protobuf: varint too long');
    }
  }
  bytes(): Buffer {
    const length = Number(this.varint());
    if (length < 0 || this.#pos + length > this.#buf.length) throw badRequest('protobuf: length out of bounds');
    const out = this.#buf.subarray(this.#pos, this.#pos + length);
    this.#pos += length;
    return out;
  }
  skip(wireType: number): void {
    switch (wireType) {
      case 0: this.varint(); break;
      case 1: this.#pos += 8; break;
      case 2: this.bytes(); break;
      case 5: this.#pos += 4; break;
      default: throw badRequest(`protobuf: unsupported wire type ${wireType}`);
    }
  }
}

function decodeMessage(buf: Buffer, name: string): JsonObject {
  const schema = MESSAGES[name];
  if (schema === undefined) throw badRequest(`protobuf: no schema for ${name}`);
  const out: JsonObject = {};
  const reader = new Reader(buf);
  while (!reader.done) {
    const tag = Number(reader.varint());
    const number = tag >>> 3;
    const wireType = tag & 7;
    const field = schema[number];
    if (field === undefined) {
      reader.skip(wireType);
      continue;
    }
    let value: unknown;
    const type = field.type;
    if (typeof type === 'object') value = decodeMessage(reader.bytes(), type.message);
    else if (type === 'string') value = reader.bytes().toString('utf8');
    else if (type === 'bytes') value = reader.bytes().toString('base64');
    else if (type === 'int64' || type === 'int32') value = Number(BigInt.asIntN(64, reader.varint()));
    else if (type === 'bool') value = reader.varint() !== 0n;
    else if (type === 'time') {
      const t = decodeMessage(reader.bytes(), 'Time');
      value = new Date(Number(t.seconds ?? 0) * 1000).toISOString().replace('.000Z', 'Z');
    } else {
      const entry = decodeMessage(reader.bytes(), 'MapEntry');
      const map = (out[field.name] ?? {}) as JsonObject;
      const raw = Buffer.from(text(entry.value), 'base64');
      map[text(entry.key)] = type === 'map<string,bytes>' ? raw.toString('base64') : raw.toString('utf8');
      out[field.name] = map;
      continue;
    }
    // Go marshals empty strings of omitempty fields as absent in JSON; do the same.
    if (value === '' && field.repeated !== true) continue;
    if (field.repeated === true) {
      const list = (out[field.name] ?? []) as unknown[];
      list.push(value);
      out[field.name] = list;
    } else out[field.name] = value;
  }
  return out;
}

/** Decodes a `k8s\0`-prefixed protobuf body into the JSON object it stands for. */
export function decodeProtobuf(body: Buffer): JsonObject {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) throw badRequest('provided protobuf data does not start with the "k8s\\0" prefix');
  const unknown = decodeMessage(body.subarray(4), 'Unknown');
  const typeMeta = (unknown.typeMeta ?? {}) as JsonObject;
  const kind = text(typeMeta.kind);
  if (MESSAGES[kind] === undefined || kind === 'Unknown' || kind === 'Time' || kind === 'MapEntry') {
    throw badRequest(`the Kubernetes API double cannot decode protobuf ${kind}: send JSON`);
  }
  const object = decodeMessage(Buffer.from(text(unknown.raw), 'base64'), kind);
  return { apiVersion: typeMeta.apiVersion, kind, ...object };
}
