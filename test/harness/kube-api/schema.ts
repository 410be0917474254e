// A CRD version's openAPIV3Schema as the apiextensions-apiserver applies it to a custom resource:
// defaulting, pruning of unknown fields (reported for ?fieldValidation=Strict/Warn), and
// validation with errors in the shape kube-openapi's validator yields after
// apiextensions-apiserver pkg/apiserver/validation converts them to field errors.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { fieldErrors, type FieldError } from './errors.ts';
import { isObject, type JsonObject } from './types.ts';

type Schema = JsonObject;

/** `/spec/rules/0/action` → `spec.rules[0].action`. */
export function fieldPath(instancePath: string): string {
  let out = '';
  for (const raw of instancePath.split('/').slice(1)) {
    const part = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (/^\d+$/.test(part)) out += `[${part}]`;
    else out += out === '' ? part : `.${part}`;
  }
  return out;
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function schemaOf(value: unknown): Schema | undefined {
  return isObject(value) ? value : undefined;
}

/** Ajv options: kube-openapi ignores unknown keywords (x-kubernetes-*) and does not check formats we do not know. */
const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false, verbose: true });

export class CrdSchema {
  readonly #schema: Schema;
  readonly #validate: ValidateFunction;

  constructor(openAPIV3Schema: Schema) {
    this.#schema = openAPIV3Schema;
    this.#validate = ajv.compile(stripForAjv(openAPIV3Schema) as Schema);
  }

  /** Applies `default`s where a field is absent (structural defaulting). */
  applyDefaults(object: JsonObject): void {
    defaults(object, this.#schema);
  }

  /** Removes unknown fields; returns their paths (`spec.rulez`) in document order. */
  prune(object: JsonObject): string[] {
    const unknown: string[] = [];
    // apiVersion, kind and metadata are never pruned at the root (metadata is validated apart).
    const properties = schemaOf(this.#schema.properties) ?? {};
    for (const [key, value] of Object.entries(object)) {
      if (key === 'apiVersion' || key === 'kind' || key === 'metadata') continue;
      const sub = schemaOf(properties[key]);
      if (sub === undefined) {
        if (this.#schema['x-kubernetes-preserve-unknown-fields'] !== true) {
          unknown.push(key);
          Reflect.deleteProperty(object, key);
        }
      } else pruneValue(value, sub, key, unknown);
    }
    return unknown;
  }

  /** The schema as published in OpenAPI v3 (for `kubectl explain`). */
  openApi(): JsonObject {
    return structuredClone(this.#schema);
  }

  validate(object: JsonObject): FieldError[] {
    if (this.#validate(object)) return [];
    return convertErrors(this.#validate.errors ?? []);
  }
}

function stripForAjv(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(stripForAjv);
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(schema)) {
    // metadata is checked by the API server itself, not by the CRD schema.
    if (k === 'nullable' || k.startsWith('x-kubernetes-')) continue;
    out[k] = k === 'properties' && isObject(v) ? Object.fromEntries(Object.entries(v).map(([pk, pv]) => [pk, stripForAjv(pv)])) : stripForAjv(v);
  }
  // `nullable: true` admits null alongside the declared type.
  if (isObject(schema) && schema.nullable === true && typeof out.type === 'string') out.type = [out.type, 'null'];
  return out;
}

function defaults(value: unknown, schema: Schema): void {
  if (isObject(value)) {
    const properties = schemaOf(schema.properties) ?? {};
    for (const [key, sub] of Object.entries(properties)) {
      const s = schemaOf(sub);
      if (s === undefined) continue;
      if (value[key] === undefined && s.default !== undefined) value[key] = structuredClone(s.default);
      if (value[key] !== undefined) defaults(value[key], s);
    }
    const additional = schemaOf(schema.additionalProperties);
    if (additional !== undefined) for (const v of Object.values(value)) defaults(v, additional);
  } else if (Array.isArray(value)) {
    const items = schemaOf(schema.items);
    if (items !== undefined) for (const v of value) defaults(v, items);
  }
}

function pruneValue(value: unknown, schema: Schema, path: string, unknown: string[]): void {
  if (schema['x-kubernetes-preserve-unknown-fields'] === true && schema.properties === undefined) return;
  if (isObject(value)) {
    const properties = schemaOf(schema.properties);
    const additional = schema.additionalProperties;
    if (properties === undefined && additional === undefined) {
      // `type: object` with no properties: keeps nothing unless it preserves unknown fields.
      if (schema['x-kubernetes-preserve-unknown-fields'] === true || schema['x-kubernetes-embedded-resource'] === true) return;
      for (const key of Object.keys(value)) {
        unknown.push(join(path, key));
        Reflect.deleteProperty(value, key);
      }
      return;
    }
    for (const [key, v] of Object.entries(value)) {
      const sub = schemaOf(properties?.[key]);
      if (sub !== undefined) pruneValue(v, sub, join(path, key), unknown);
      else if (isObject(additional)) pruneValue(v, additional, join(path, key), unknown);
      else if (additional === true || schema['x-kubernetes-preserve-unknown-fields'] === true) continue;
      else {
        unknown.push(join(path, key));
        Reflect.deleteProperty(value, key);
      }
    }
  } else if (Array.isArray(value)) {
    const items = schemaOf(schema.items);
    if (items !== undefined) value.forEach((v, i) => { pruneValue(v, items, `${path}[${i}]`, unknown); });
  }
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function convertErrors(errors: readonly ErrorObject[]): FieldError[] {
  const out: FieldError[] = [];
  // Failures inside oneOf/anyOf/not branches are summarised by the combinator's own error.
  const branch = /\/(oneOf|anyOf|not)\/\d*/;
  for (const e of errors) {
    if (branch.test(e.schemaPath) && !/\/(oneOf|anyOf|not)$/.test(e.schemaPath)) continue;
    const path = fieldPath(e.instancePath);
    const inBody = path === '' ? 'body' : `${path} in body`;
    const params = e.params as Record<string, unknown>;
    const n = (k: string): string => String(params[k]);
    switch (e.keyword) {
      case 'required': out.push(fieldErrors.required(join(path, n('missingProperty')))); break;
      case 'enum': out.push(fieldErrors.notSupported(path, e.data, Array.isArray(params.allowedValues) ? params.allowedValues : [])); break;
      case 'type': out.push(fieldErrors.typeInvalid(path, e.data, `${inBody} must be of type ${Array.isArray(params.type) ? params.type.join(',') : n('type')}: "${typeOf(e.data)}"`)); break;
      case 'minimum': out.push(fieldErrors.invalid(path, e.data, `${inBody} should be greater than or equal to ${n('limit')}`)); break;
      case 'maximum': out.push(fieldErrors.invalid(path, e.data, `${inBody} should be less than or equal to ${n('limit')}`)); break;
      case 'exclusiveMinimum': out.push(fieldErrors.invalid(path, e.data, `${inBody} should be greater than ${n('limit')}`)); break;
      case 'exclusiveMaximum': out.push(fieldErrors.invalid(path, e.data, `${inBody} should be less than ${n('limit')}`)); break;
      case 'pattern': out.push(fieldErrors.invalid(path, e.data, `${inBody} should match '${n('pattern')}'`)); break;
      case 'minLength': out.push(fieldErrors.invalid(path, e.data, `${inBody} should be at least ${n('limit')} chars long`)); break;
      case 'maxLength': out.push(fieldErrors.tooLong(path, Number(params.limit))); break;
      case 'minItems': out.push(fieldErrors.invalid(path, Array.isArray(e.data) ? e.data.length : e.data, `${inBody} should have at least ${n('limit')} items`)); break;
      case 'maxItems': out.push(fieldErrors.tooMany(path, Array.isArray(e.data) ? e.data.length : 0, Number(params.limit))); break;
      case 'minProperties': out.push(fieldErrors.invalid(path, e.data, `${inBody} should have at least ${n('limit')} properties`)); break;
      case 'maxProperties': out.push(fieldErrors.invalid(path, e.data, `${inBody} should have at most ${n('limit')} properties`)); break;
      case 'uniqueItems': out.push(fieldErrors.duplicate(`${path}[${n('j')}]`, Array.isArray(e.data) ? e.data[Number(params.j)] : e.data)); break;
      case 'oneOf':
        out.push(fieldErrors.invalid(path, e.data, `${inBody} must validate one and only one schema (oneOf). ${params.passingSchemas === null ? 'Found none valid' : 'Found 2 valid alternatives'}`));
        break;
      case 'anyOf': out.push(fieldErrors.invalid(path, e.data, `${inBody} must validate at least one schema (anyOf)`)); break;
      case 'not': out.push(fieldErrors.invalid(path, e.data, `${inBody} must not validate the schema (not)`)); break;
      default: out.push(fieldErrors.invalid(path, e.data, `${inBody} ${e.message ?? 'is invalid'}`));
    }
  }
  return out;
}
