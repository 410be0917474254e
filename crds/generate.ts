// Generates, for every CRD in crds/*.yaml, the TypeScript types and an ajv standalone validator
// from the storage version's openAPIV3Schema (the CRD is the single source of truth; see
// docs/adr/0002-crd-is-the-source-of-truth.md). `generateFromCrd` is pure so that
// crds/generated.test.ts can regenerate in memory and fail on drift; `main` only does the I/O.
//
//   npm run generate
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import standalone from 'ajv/dist/standalone/index.js';
import { parse as parseYaml } from 'yaml';

/** An OpenAPI v3 schema node as Kubernetes structural schemas use it (the subset we read). */
export interface SchemaNode {
  type?: string;
  description?: string;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  items?: SchemaNode;
  additionalProperties?: SchemaNode | boolean;
  enum?: unknown[];
  oneOf?: SchemaNode[];
  anyOf?: SchemaNode[];
  allOf?: SchemaNode[];
  not?: SchemaNode;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  [keyword: string]: unknown;
}

export interface CrdSource {
  /** Path relative to the repository root, e.g. `crds/accesspolicy.yaml`. */
  readonly path: string;
  readonly text: string;
}

export interface GeneratedFile {
  /** Path relative to the repository root, e.g. `crds/generated/access-policy.ts`. */
  readonly path: string;
  readonly content: string;
}

const GENERATED_DIR = 'crds/generated';

/**
 * Readable names for nested types where `Kind + singular(property)` would be vague. Keyed by
 * kind, then by the property path (`[]` marks an array's items).
 */
const TYPE_NAME_OVERRIDES: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  AccessPolicy: {
    'spec.selector': 'AccessPolicyPodSelector',
    'spec.selector.matchExpressions[]': 'AccessPolicyLabelSelectorRequirement',
    'spec.subjects[].serviceAccount': 'AccessPolicyServiceAccountMatch',
    'spec.subjects[].oidc': 'AccessPolicyOidcMatch',
    'spec.subjects[].oidc.claims[]': 'AccessPolicyClaimMatcher',
    'spec.targets[].credentials': 'AccessPolicyTargetCredentials',
    'spec.targets[].tls': 'AccessPolicyTargetTls',
    'spec.rules[].match': 'AccessPolicyRuleMatch',
    'spec.rules[].match.sql': 'AccessPolicySqlMatch',
    'spec.rules[].approval.reviewers': 'AccessPolicyApprovalReviewers',
    'spec.rules[].approval.grant': 'AccessPolicyApprovalGrant',
    'spec.defaultApproval.reviewers': 'AccessPolicyDefaultApprovalReviewers',
    'spec.defaultApproval.grant': 'AccessPolicyDefaultApprovalGrant',
    'spec.masking': 'AccessPolicyMasking',
    'spec.masking.columns[]': 'AccessPolicyMaskedColumn',
    'spec.masking.detectors[]': 'AccessPolicyDetector',
  },
};

/**
 * Kubernetes keywords that ajv must accept (ajv strict mode rejects unknown keywords). They are
 * API-server behaviour rather than validation, except the ones in UNSUPPORTED_KEYWORDS.
 */
const KUBERNETES_KEYWORDS = [
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-embedded-resource',
  'x-kubernetes-int-or-string',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
];

/** Keywords the API server enforces that a generated ajv validator could not mirror. */
// (list-type set/map make the API server reject duplicates; atomic, the default, needs no keyword.)
const UNSUPPORTED_KEYWORDS = ['x-kubernetes-validations', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys'];

/**
 * RFC 3339 date-time, as the API server's `strfmt` checks `format: date-time` (no ajv-formats:
 * a RegExp format is inlined into the standalone code, so the validator has no runtime import).
 */
const DATE_TIME =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/;

/**
 * ObjectMeta as the API server validates it on write (unknown fields rejected, as kubectl's
 * strict field validation does). The CRD itself only says `metadata: {type: object}`.
 */
const OBJECT_META_VALIDATION: SchemaNode = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 253 },
    generateName: { type: 'string' },
    namespace: { type: 'string', maxLength: 63 },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    annotations: { type: 'object', additionalProperties: { type: 'string' } },
    uid: { type: 'string' },
    resourceVersion: { type: 'string' },
    generation: { type: 'integer' },
    creationTimestamp: { type: 'string', format: 'date-time' },
    deletionTimestamp: { type: 'string', format: 'date-time' },
    deletionGracePeriodSeconds: { type: 'integer' },
    finalizers: { type: 'array', items: { type: 'string' } },
    ownerReferences: { type: 'array', items: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
    managedFields: { type: 'array', items: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
    selfLink: { type: 'string' },
  },
};

/** The typed subset of ObjectMeta that Custos code reads. */
const OBJECT_META_TYPE = `/** Standard Kubernetes object metadata (the fields Custos reads). */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  resourceVersion?: string;
  uid?: string;
  /** RFC 3339 date-time. */
  creationTimestamp?: string;
}
`;

interface CrdInfo {
  readonly group: string;
  readonly kind: string;
  readonly version: string;
  readonly schema: SchemaNode;
}

export class CrdGenerationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CrdGenerationError';
  }
}

/** Regenerates every file for the given CRDs; pure and deterministic. */
export function generateAll(sources: readonly CrdSource[]): GeneratedFile[] {
  return [...sources]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .flatMap((source) => generateFromCrd(source));
}

/** The files generated from one CRD: `<kebab-kind>.ts`, `.validate.js`, `.validate.d.ts`. */
export function generateFromCrd(source: CrdSource): GeneratedFile[] {
  const crd = readCrd(source);
  const base = `${GENERATED_DIR}/${kebabCase(crd.kind)}`;
  const header = `// generated by crds/generate.ts from ${source.path} — do not edit (npm run generate)\n`;
  return [
    { path: `${base}.ts`, content: header + generateTypes(crd) },
    { path: `${base}.validate.js`, content: header + generateValidatorCode(crd) },
    { path: `${base}.validate.d.ts`, content: header + generateValidatorDeclaration(crd) },
  ];
}

function readCrd(source: CrdSource): CrdInfo {
  const doc: unknown = parseYaml(source.text);
  const crd = asRecord(doc, `${source.path}: not a mapping`);
  if (crd['kind'] !== 'CustomResourceDefinition') {
    throw new CrdGenerationError(`${source.path}: kind is not CustomResourceDefinition`);
  }
  const spec = asRecord(crd['spec'], `${source.path}: spec missing`);
  const names = asRecord(spec['names'], `${source.path}: spec.names missing`);
  const group = spec['group'];
  const kind = names['kind'];
  if (typeof group !== 'string' || typeof kind !== 'string') {
    throw new CrdGenerationError(`${source.path}: spec.group and spec.names.kind are required`);
  }
  const versions = Array.isArray(spec['versions']) ? (spec['versions'] as unknown[]) : [];
  const storage = versions.map((v) => asRecord(v, `${source.path}: bad version`)).filter((v) => v['storage'] === true);
  const [version, ...others] = storage;
  if (version === undefined || others.length > 0) {
    throw new CrdGenerationError(`${source.path}: exactly one version must have storage: true`);
  }
  const schema = asRecord(asRecord(version['schema'], `${source.path}: storage version has no schema`)['openAPIV3Schema'],
    `${source.path}: storage version has no openAPIV3Schema`) as SchemaNode;
  const name = version['name'];
  if (typeof name !== 'string') throw new CrdGenerationError(`${source.path}: version without name`);
  for (const keyword of UNSUPPORTED_KEYWORDS) {
    const at = findKeyword(schema, keyword, '');
    if (at !== null) {
      throw new CrdGenerationError(
        `${source.path}: ${keyword} at ${at || '.'} is enforced by the API server but cannot be mirrored by the generated validator; extend crds/generate.ts first`);
    }
  }
  return { group, kind, version: name, schema };
}

function findKeyword(node: SchemaNode, keyword: string, path: string): string | null {
  if (keyword in node) return path;
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const found = findKeyword(child, keyword, `${path}.${name}`);
    if (found !== null) return found;
  }
  if (node.items) return findKeyword(node.items, keyword, `${path}[]`);
  if (typeof node.additionalProperties === 'object') return findKeyword(node.additionalProperties, keyword, `${path}[*]`);
  return null;
}

// ---------------------------------------------------------------------------------------------
// TypeScript types

interface TypeContext {
  readonly kind: string;
  readonly overrides: Readonly<Record<string, string>>;
  /** Interfaces in emission order (parents before children). */
  readonly blocks: string[];
  /** Type name → the schema path that claimed it, to catch two paths deriving the same name. */
  readonly names: Map<string, string>;
}

function generateTypes(crd: CrdInfo): string {
  const ctx: TypeContext = { kind: crd.kind, overrides: TYPE_NAME_OVERRIDES[crd.kind] ?? {}, blocks: [], names: new Map() };
  const root = crd.schema;
  const rootProps = { ...(root.properties ?? {}) };
  // apiVersion/kind/metadata are typed precisely rather than from the CRD's loose `string`/`object`.
  const special: Record<string, string> = {
    apiVersion: `typeof ${constantPrefix(crd.kind)}_API_VERSION`,
    kind: `typeof ${constantPrefix(crd.kind)}_KIND`,
    metadata: 'ObjectMeta',
  };
  const lines: string[] = [];
  if (root.description) lines.push(...jsDoc(root.description, ''));
  lines.push(`export interface ${crd.kind} {`);
  for (const [prop, schema] of Object.entries(rootProps)) {
    const specialType = special[prop];
    const required = specialType !== undefined || (root.required ?? []).includes(prop);
    const type = specialType ?? typeOf(schema, [prop], ctx);
    if (schema.description) lines.push(...jsDoc(schema.description, '  '));
    lines.push(`  ${propertyKey(prop)}${required ? '' : '?'}: ${type};`);
  }
  lines.push('}');
  const prefix = constantPrefix(crd.kind);
  const constants = [
    `export const ${prefix}_API_VERSION = '${crd.group}/${crd.version}';`,
    `export const ${prefix}_KIND = '${crd.kind}';`,
  ].join('\n') + '\n';
  // Every part ends with a newline; one blank line between parts.
  return ['', constants, OBJECT_META_TYPE, lines.join('\n') + '\n', ...ctx.blocks].join('\n');
}

function typeOf(schema: SchemaNode, path: readonly string[], ctx: TypeContext): string {
  if (schema['x-kubernetes-int-or-string'] === true) return 'number | string';
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v).replace(/^"(.*)"$/, "'$1'")).join(' | ');
  switch (schema.type) {
    case 'string':
      return 'string';
    case 'integer':
    case 'number':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'array': {
      if (!schema.items) return 'unknown[]';
      const item = typeOf(schema.items, [...path, '[]'], ctx);
      return /[ |&]/.test(item) ? `Array<${item}>` : `${item}[]`;
    }
    case 'object':
      return objectType(schema, path, ctx);
    case undefined:
      return 'unknown';
    default:
      throw new CrdGenerationError(`${pathString(path)}: unsupported type ${schema.type}`);
  }
}

function objectType(schema: SchemaNode, path: readonly string[], ctx: TypeContext): string {
  const props = schema.properties;
  if (props === undefined || Object.keys(props).length === 0) {
    if (typeof schema.additionalProperties === 'object') {
      return `Record<string, ${typeOf(schema.additionalProperties, [...path, '*'], ctx)}>`;
    }
    return 'Record<string, unknown>';
  }
  const name = typeName(path, ctx);
  const lines: string[] = [];
  if (schema.description) lines.push(...jsDoc(schema.description, ''));
  lines.push(`export interface ${name} {`);
  const index = ctx.blocks.length;
  ctx.blocks.push(''); // reserve the slot so parents come before children
  for (const [prop, child] of Object.entries(props)) {
    const required = (schema.required ?? []).includes(prop);
    const type = typeOf(child, [...path, prop], ctx);
    if (child.description) lines.push(...jsDoc(child.description, '  '));
    lines.push(`  ${propertyKey(prop)}${required ? '' : '?'}: ${type};`);
  }
  if (schema['x-kubernetes-preserve-unknown-fields'] === true) lines.push('  [field: string]: unknown;');
  lines.push('}');
  ctx.blocks[index] = lines.join('\n') + '\n';
  return name;
}

function typeName(path: readonly string[], ctx: TypeContext): string {
  const key = pathString(path);
  let name = ctx.overrides[key];
  if (name === undefined) {
    const last = path[path.length - 1];
    const prop = last === '[]' ? singular(path[path.length - 2] ?? '') : (last ?? '');
    name = ctx.kind + pascalCase(prop);
  }
  const claimed = ctx.names.get(name);
  if (claimed !== undefined && claimed !== key) {
    throw new CrdGenerationError(`type name ${name} derived for both ${claimed} and ${key}: add an entry to TYPE_NAME_OVERRIDES`);
  }
  ctx.names.set(name, key);
  return name;
}

function pathString(path: readonly string[]): string {
  return path.map((p, i) => (p === '[]' ? p : i === 0 ? p : `.${p}`)).join('');
}

function jsDoc(text: string, indent: string): string[] {
  const body = text.trim().replace(/\*\//g, '*\\/').split('\n');
  if (body.length === 1) return [`${indent}/** ${body[0] ?? ''} */`];
  return [`${indent}/**`, ...body.map((l) => `${indent} * ${l}`.trimEnd()), `${indent} */`];
}

function propertyKey(name: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? name : `'${name}'`;
}

function singular(word: string): string {
  if (word.endsWith('ies')) return word.slice(0, -3) + 'y';
  if (/(s|x|ch|sh)es$/.test(word)) return word.slice(0, -2);
  if (word.endsWith('s') && !word.endsWith('ss')) return word.slice(0, -1);
  return word;
}

function pascalCase(word: string): string {
  return word
    .split(/[-_\s]+/)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}

function kebabCase(word: string): string {
  return word.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

function constantPrefix(kind: string): string {
  return kebabCase(kind).replace(/-/g, '_').toUpperCase();
}

// ---------------------------------------------------------------------------------------------
// Validators

/**
 * The schema the validator enforces: the CRD schema plus what the API server and kubectl's
 * strict field validation add: apiVersion/kind fixed, ObjectMeta checked, and unknown fields
 * rejected wherever the schema declares properties (unless it preserves unknown fields).
 */
export function validationSchema(crd: { group: string; version: string; kind: string; schema: SchemaNode }): SchemaNode {
  const root = closeObjects(crd.schema);
  root.properties = {
    ...root.properties,
    apiVersion: { type: 'string', enum: [`${crd.group}/${crd.version}`] },
    kind: { type: 'string', enum: [crd.kind] },
    metadata: closeObjects(OBJECT_META_VALIDATION),
  };
  root.required = [...new Set(['apiVersion', 'kind', 'metadata', ...(root.required ?? [])])];
  return root;
}

function closeObjects(node: SchemaNode): SchemaNode {
  const out: SchemaNode = { ...node };
  if (node.properties) {
    out.properties = Object.fromEntries(Object.entries(node.properties).map(([k, v]) => [k, closeObjects(v)]));
    if (node['x-kubernetes-preserve-unknown-fields'] !== true && node.additionalProperties === undefined) {
      out.additionalProperties = false;
    }
  }
  if (node.items) out.items = closeObjects(node.items);
  if (typeof node.additionalProperties === 'object') out.additionalProperties = closeObjects(node.additionalProperties);
  for (const key of ['oneOf', 'anyOf', 'allOf'] as const) {
    const list = node[key];
    if (list) out[key] = list.map(closeObjects);
  }
  return out;
}

function generateValidatorCode(crd: CrdInfo): string {
  const ajv = new Ajv({
    allErrors: true,
    // messages and `data`/`schema` on each error: validate-document.ts builds kubectl-style text.
    verbose: true,
    strict: true,
    // Structural-schema oneOf/anyOf branches may only say `required` (the properties are declared
    // once, on the object), which ajv's strictRequired would reject.
    strictRequired: false,
    code: { source: true, esm: true, lines: true },
  });
  for (const keyword of KUBERNETES_KEYWORDS) ajv.addKeyword(keyword);
  ajv.addFormat('date-time', DATE_TIME);
  const validate = ajv.compile(validationSchema(crd));
  // A CommonJS module whose typings say `export default`: under nodenext the default import is
  // module.exports, which ajv also exposes as `.default`.
  let code = standalone.default(ajv, validate);
  // ajv emits `require()` for its runtime helpers even in ESM mode; maxLength/minLength count
  // code points as the API server does (unicode characters, not UTF-16 units).
  code = code.replace(/require\("ajv\/dist\/runtime\/ucs2length"\)\.default/g, 'ucs2length');
  if (/\brequire\(/.test(code)) {
    throw new CrdGenerationError(`${crd.kind}: the standalone validator needs an ajv runtime helper that generate.ts does not inline yet`);
  }
  if (code.includes('ucs2length')) {
    code += `
function ucs2length(str) {
  // Length in Unicode code points (surrogate pairs count once), as ajv/dist/runtime/ucs2length.
  let length = 0;
  for (const _ of str) length++;
  return length;
}
`;
  }
  return code.endsWith('\n') ? code : code + '\n';
}

function generateValidatorDeclaration(crd: CrdInfo): string {
  const file = `./${kebabCase(crd.kind)}.ts`;
  return `import type { ErrorObject } from 'ajv';
import type { ${crd.kind} } from '${file}';

/** ajv standalone validator for a whole ${crd.kind} document; errors are set after each call. */
export interface ${crd.kind}ValidateFunction {
  (data: unknown): data is ${crd.kind};
  errors?: ErrorObject[] | null;
}

export declare const validate: ${crd.kind}ValidateFunction;
export default validate;
`;
}

// ---------------------------------------------------------------------------------------------
// I/O

function asRecord(value: unknown, message: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CrdGenerationError(message);
  return value as Record<string, unknown>;
}

/** The repository root (this file lives in crds/). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Reads crds/*.yaml from the repository. */
export function readCrdSources(root: string = REPO_ROOT): CrdSource[] {
  const dir = join(root, 'crds');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => ({ path: relative(root, join(dir, f)).split('\\').join('/'), text: readFileSync(join(dir, f), 'utf8') }));
}

function main(): void {
  for (const file of generateAll(readCrdSources())) {
    const target = join(REPO_ROOT, file.path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, file.content);
    console.log(`wrote ${file.path}`);
  }
}

if (import.meta.main) main();
