// The REST verbs on one resource type, as the generic registry (k8s.io/apiserver
// pkg/registry/generic/registry/store.go) and the request handlers run them: decoding (with
// pruning and ?fieldValidation= for custom resources), defaulting, mutating admission,
// validation, validating admission, optimistic concurrency, generation, the status subresource,
// finalizers, dry run, and the review kinds that are answered rather than stored.
import { randomUUID } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { orphanDependents } from './garbage-collector.ts';
import type { AdmissionChain, Operation } from './admission.ts';
import { admitServiceAccount, namespaceDefaults, prepareForCreate, randomSuffix } from './controllers.ts';
import { crdStatus, typesFromCrd, validateCrd } from './crd-registry.ts';
import {
  alreadyExists, badRequest, conflict, fieldErrors, forbidden, invalid, KubeApiError, notFound, unsupportedMediaType, type FieldError,
} from './errors.ts';
import { applyConfiguration, applyJsonPatch, applyMergePatch, applyStrategicMergePatch, PATCH_TYPES } from './patch.ts';
import type { ResourceRegistry, ResourceType } from './resources.ts';
import { checkFieldSelector, matchesFields, matchesRequirements, parseFieldSelector, parseLabelSelector } from './selectors.ts';
import type { ObjectStore } from './store.ts';
import { boundPodName, type TokenIssuer } from './tokens.ts';
import { apiVersionOf, deepClone, deepEqual, isObject, nowTimestamp, type JsonObject, type KubeObject, type UserInfo } from './types.ts';
import type { StaticTokenUser } from './authn.ts';

export interface RequestContext {
  readonly user: UserInfo;
  readonly query: URLSearchParams;
  /** Warning headers to send (`Warning: 299 - "<text>"`). */
  readonly warnings: string[];
}

export interface HandlerDeps {
  readonly store: ObjectStore;
  readonly registry: ResourceRegistry;
  readonly admission: AdmissionChain;
  readonly issuer: TokenIssuer;
  readonly caCert: string;
  readonly tokens: Readonly<Record<string, StaticTokenUser>>;
  readonly clock: () => number;
  /** Pods are deleted gracefully: they stay, Terminating, until their kubelet deletes them with grace period 0. */
  readonly gracefulPodDeletion?: boolean;
}

export interface Reply {
  readonly code: number;
  readonly body: unknown;
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN_MESSAGE = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MESSAGE = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

function stripVolatile(o: KubeObject): KubeObject {
  const c = deepClone(o);
  delete c.metadata.resourceVersion;
  delete c.metadata.managedFields;
  return c;
}

/** Everything but metadata (and status when it is a subresource): what bumps generation. */
function specPart(o: KubeObject, statusIsSubresource: boolean): JsonObject {
  const { metadata: _m, ...rest } = o;
  if (statusIsSubresource) delete rest.status;
  return rest;
}

export class ResourceHandlers {
  readonly #d: HandlerDeps;
  #nextIp = 10;

  constructor(deps: HandlerDeps) {
    this.#d = deps;
  }

  // ---- reads ----

  get(type: ResourceType, namespace: string, name: string): KubeObject {
    const found = this.#d.store.get(type.group, type.resource, namespace, name);
    if (found === undefined) throw notFound(type.group, type.resource, name);
    return this.#view(type, found);
  }

  /** A predicate for ?labelSelector= and ?fieldSelector= (shared by list and watch). */
  selector(type: ResourceType, query: URLSearchParams): (o: KubeObject) => boolean {
    const labels = parseLabelSelector(query.get('labelSelector') ?? '');
    const fields = parseFieldSelector(query.get('fieldSelector') ?? '');
    checkFieldSelector(type.kind, fields);
    return (o) => matchesRequirements(labels, o.metadata.labels) && matchesFields(fields, o);
  }

  list(type: ResourceType, namespace: string | undefined, query: URLSearchParams): { items: KubeObject[]; resourceVersion: string } {
    const keep = this.selector(type, query);
    const items = this.#d.store.list(type.group, type.resource, namespace).filter(keep).map((o) => this.#view(type, o));
    return { items, resourceVersion: String(this.#d.store.revision) };
  }

  /** An object as served in `type`'s version (custom resources stored in another version). */
  #view(type: ResourceType, o: KubeObject): KubeObject {
    o.apiVersion = apiVersionOf(type.group, type.version);
    o.kind = type.kind;
    return o;
  }

  // ---- writes ----

  #dryRun(ctx: RequestContext): boolean {
    const values = ctx.query.getAll('dryRun');
    for (const v of values) if (v !== 'All') throw badRequest(`dryRun: Unsupported value: "${v}": supported values: "All"`);
    return values.length > 0;
  }

  #bodyObject(type: ResourceType, namespace: string, body: unknown): KubeObject {
    if (!isObject(body)) throw badRequest('the object provided is unrecognized (must be of type ' + type.kind + ')');
    const apiVersion = typeof body.apiVersion === 'string' ? body.apiVersion : undefined;
    const kind = typeof body.kind === 'string' ? body.kind : undefined;
    const object = deepClone(body) as KubeObject;
    const expected = apiVersionOf(type.group, type.version);
    if (apiVersion !== undefined && apiVersion !== expected) {
      // A body in another version of the same group is converted (no conversion webhooks here).
      const [group] = apiVersion.includes('/') ? apiVersion.split('/') : [''];
      if (group !== type.group || kind !== type.kind) {
        throw badRequest(`the API version in the data (${apiVersion}) does not match the expected API version (${expected})`);
      }
    }
    if (kind !== undefined && kind !== type.kind) {
      throw badRequest(`${kind} in version "${type.version}" cannot be handled as a ${type.kind}: no kind "${kind}" is registered for version "${expected}"`);
    }
    object.apiVersion = expected;
    object.kind = type.kind;
    object.metadata = isObject(object.metadata) ? object.metadata : {};
    if (type.group === 'coordination.k8s.io' && type.resource === 'leases') decodeLeaseTimes(type, object);
    if (type.namespaced) {
      if (object.metadata.namespace !== undefined && object.metadata.namespace !== '' && object.metadata.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      object.metadata.namespace = namespace;
    } else delete object.metadata.namespace;
    return object;
  }

  /** Pruning and strict field validation of a custom resource body (the CRD's structural schema). */
  #decodeCustom(type: ResourceType, object: KubeObject, ctx: RequestContext | undefined, verb: 'create' | 'update' | 'patch'): void {
    const schema = type.crd?.schema;
    if (schema === undefined) return;
    const unknown = schema.prune(object);
    schema.applyDefaults(object);
    if (unknown.length === 0 || ctx === undefined) return;
    const directive = ctx.query.get('fieldValidation') ?? 'Warn';
    const fields = unknown.map((u) => `unknown field "${u}"`);
    if (directive === 'Strict') {
      const strict = `strict decoding error: ${fields.join(', ')}`;
      throw badRequest(verb === 'patch' ? strict : `${type.kind} in version "${type.version}" cannot be handled as a ${type.kind}: ${strict}`);
    }
    if (directive === 'Warn') ctx.warnings.push(...fields);
  }

  #validate(type: ResourceType, object: KubeObject, old: KubeObject | undefined): void {
    const errors: FieldError[] = [];
    const name = object.metadata.name ?? '';
    if (old === undefined) {
      const isNamespace = type.group === '' && type.resource === 'namespaces';
      if (!(isNamespace ? DNS1123_LABEL : DNS1123_SUBDOMAIN).test(name) || name.length > (isNamespace ? 63 : 253)) {
        errors.push(fieldErrors.invalid('metadata.name', name, isNamespace ? LABEL_MESSAGE : SUBDOMAIN_MESSAGE));
      }
    } else if (old.metadata.name !== name) errors.push(fieldErrors.invalid('metadata.name', name, 'field is immutable'));
    if (type.crd?.schema !== undefined) errors.push(...type.crd.schema.validate(object));
    if (type.group === 'apiextensions.k8s.io') errors.push(...validateCrd(object));
    if (type.group === 'admissionregistration.k8s.io' && type.resource.endsWith('webhookconfigurations')) errors.push(...validateWebhooks(object));
    if (type.group === 'coordination.k8s.io' && type.resource === 'leases') errors.push(...validateLeaseSpec(object));
    if (type.group === '' && type.resource === 'configmaps' && isObject(object.data)) {
      for (const [k, v] of Object.entries(object.data)) if (typeof v !== 'string') errors.push(fieldErrors.typeInvalid(`data.${k}`, v, 'must be a string'));
    }
    if (errors.length > 0) throw invalid(type.group, type.kind, name, errors);
  }

  #attrs(operation: Operation, type: ResourceType, subresource: string, object: KubeObject | undefined, old: KubeObject | undefined, ctx: RequestContext) {
    const meta = (object ?? old)?.metadata ?? {};
    const optionsKind = operation === 'CREATE' ? 'CreateOptions' : operation === 'UPDATE' ? 'UpdateOptions' : 'DeleteOptions';
    const fieldManager = ctx.query.get('fieldManager');
    return {
      operation, type, subresource, namespace: type.namespaced ? meta.namespace ?? '' : '', name: meta.name ?? '',
      object, oldObject: old, user: ctx.user, dryRun: ctx.query.has('dryRun'),
      options: { kind: optionsKind, apiVersion: 'meta.k8s.io/v1', ...(fieldManager === null ? {} : { fieldManager }) },
    };
  }

  async create(type: ResourceType, namespace: string, body: unknown, ctx: RequestContext): Promise<Reply> {
    if (type.virtual) return this.#review(type, body, ctx);
    const dryRun = this.#dryRun(ctx);
    let object = this.#bodyObject(type, namespace, body);
    this.#decodeCustom(type, object, ctx, 'create');
    if (type.namespaced) {
      const ns = this.#d.store.get('', 'namespaces', '', namespace);
      if (ns === undefined) throw notFound('', 'namespaces', namespace);
      if (ns.metadata.deletionTimestamp !== undefined) {
        throw forbidden(`${type.resource} "${object.metadata.name ?? ''}" is forbidden: unable to create new content in namespace ${namespace} because it is being terminated`);
      }
    }
    const meta = object.metadata;
    if ((meta.name ?? '') === '') {
      if ((meta.generateName ?? '') === '') throw invalid(type.group, type.kind, '', [fieldErrors.required('metadata.name', 'name or generateName is required')]);
      meta.name = `${meta.generateName ?? ''}${randomSuffix()}`;
    }
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== '') throw badRequest('resourceVersion should not be set on objects to be created');
    meta.uid = randomUUID();
    meta.creationTimestamp = nowTimestamp(this.#d.clock);
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    delete meta.resourceVersion;
    delete meta.managedFields;
    if (type.generation) meta.generation = 1;
    else delete meta.generation;
    if (type.crd !== undefined && type.subresources.includes('status')) delete object.status;
    prepareForCreate(type.group, type.resource, object, { nextClusterIp: () => `10.96.${Math.floor(this.#nextIp / 250)}.${(this.#nextIp++ % 250) + 1}` });
    if (type.group === 'apiextensions.k8s.io' && type.resource === 'customresourcedefinitions') object.status = crdStatus(object, this.#d.clock);
    if (type.group === '' && type.resource === 'pods') admitServiceAccount(object, this.#d.store);

    const mutated = await this.#d.admission.mutate(this.#attrs('CREATE', type, '', object, undefined, ctx));
    ctx.warnings.push(...mutated.warnings);
    object = mutated.object ?? object;
    this.#decodeCustom(type, object, undefined, 'create');
    this.#validate(type, object, undefined);
    ctx.warnings.push(...await this.#d.admission.validate(this.#attrs('CREATE', type, '', object, undefined, ctx)));
    if (this.#d.store.get(type.group, type.resource, object.metadata.namespace ?? '', object.metadata.name ?? '') !== undefined) {
      throw alreadyExists(type.group, type.resource, object.metadata.name ?? '');
    }
    if (dryRun) return { code: 201, body: object };
    const stored = this.#d.store.put(type.group, type.resource, object, 'ADDED');
    this.#afterWrite(type, stored);
    return { code: 201, body: this.#view(type, stored) };
  }

  async update(type: ResourceType, namespace: string, name: string, subresource: string, body: unknown, ctx: RequestContext): Promise<Reply> {
    const existing = this.#d.store.get(type.group, type.resource, namespace, name);
    if (existing === undefined) throw notFound(type.group, type.resource, name);
    const object = this.#bodyObject(type, namespace, body);
    if ((object.metadata.name ?? '') !== name) {
      throw badRequest(`the name of the object (${object.metadata.name ?? ''}) does not match the name on the URL (${name})`);
    }
    const rv = object.metadata.resourceVersion;
    if (rv === undefined || rv === '') {
      // Custom resources refuse unconditional updates (customResourceStrategy.AllowUnconditionalUpdate).
      if (type.crd !== undefined) throw invalid(type.group, type.kind, name, [fieldErrors.invalid('metadata.resourceVersion', 0, 'must be specified for an update')]);
    } else if (rv !== existing.metadata.resourceVersion) throw conflict(type.group, type.resource, name);
    this.#decodeCustom(type, object, ctx, 'update');
    return this.#applyUpdate(type, existing, object, subresource, ctx);
  }

  async patch(type: ResourceType, namespace: string, name: string, subresource: string, contentType: string, raw: string, ctx: RequestContext): Promise<Reply> {
    const mediaType = (contentType.split(';')[0] ?? '').trim();
    const accepted = type.strategicMerge
      ? [PATCH_TYPES.json, PATCH_TYPES.merge, PATCH_TYPES.strategic, PATCH_TYPES.apply]
      : [PATCH_TYPES.json, PATCH_TYPES.merge, PATCH_TYPES.apply];
    if (!(accepted as string[]).includes(mediaType)) throw unsupportedMediaType(mediaType, accepted);
    let patch: unknown;
    try {
      patch = mediaType === PATCH_TYPES.apply ? parseYaml(raw) : JSON.parse(raw);
    } catch (e: unknown) {
      throw badRequest(`error decoding patch: ${e instanceof Error ? e.message : String(e)}`);
    }
    const existing = this.#d.store.get(type.group, type.resource, namespace, name);
    if (mediaType === PATCH_TYPES.apply) {
      if (!isObject(patch)) throw badRequest('error decoding YAML: the applied configuration is not an object');
      if (ctx.query.get('fieldManager') === null) throw badRequest('PATCH, application/apply-patch+yaml requires fieldManager to be set');
      if (existing === undefined) return this.create(type, namespace, { ...patch, metadata: { ...(isObject(patch.metadata) ? patch.metadata : {}), name } }, ctx);
    }
    if (existing === undefined) throw notFound(type.group, type.resource, name);
    let patched: unknown;
    switch (mediaType) {
      case PATCH_TYPES.json: patched = applyJsonPatch(existing, patch); break;
      case PATCH_TYPES.merge: patched = applyMergePatch(existing, patch); break;
      case PATCH_TYPES.strategic: patched = applyStrategicMergePatch(existing, patch); break;
      default: patched = applyConfiguration(existing, patch as JsonObject);
    }
    if (!isObject(patched)) throw badRequest('the patch did not produce an object');
    const object = this.#bodyObject(type, namespace, patched);
    const rv = object.metadata.resourceVersion;
    if (rv !== undefined && rv !== existing.metadata.resourceVersion) throw conflict(type.group, type.resource, name);
    object.metadata.resourceVersion = existing.metadata.resourceVersion ?? '';
    this.#decodeCustom(type, object, ctx, 'patch');
    return this.#applyUpdate(type, existing, object, subresource, ctx);
  }

  async #applyUpdate(type: ResourceType, existing: KubeObject, incoming: KubeObject, subresource: string, ctx: RequestContext): Promise<Reply> {
    const dryRun = this.#dryRun(ctx);
    const statusSub = type.subresources.includes('status');
    let object: KubeObject;
    if (subresource === 'status') {
      // The status strategy keeps everything of the stored object but its status.
      object = deepClone(existing);
      if (incoming.status === undefined) delete object.status;
      else object.status = incoming.status;
    } else {
      object = incoming;
      if (statusSub) {
        if (existing.status === undefined) delete object.status;
        else object.status = deepClone(existing.status);
      }
    }
    const keep = ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation', 'namespace', 'resourceVersion'] as const;
    for (const k of keep) {
      if (existing.metadata[k] === undefined) Reflect.deleteProperty(object.metadata, k);
      else (object.metadata as Record<string, unknown>)[k] = existing.metadata[k];
    }
    if (object.metadata.deletionTimestamp !== undefined && Array.isArray(object.metadata.finalizers)) {
      // A deleting object can only lose finalizers, never gain them.
      const before = existing.metadata.finalizers ?? [];
      if (object.metadata.finalizers.some((f) => !before.includes(f))) {
        throw invalid(type.group, type.kind, existing.metadata.name ?? '', [fieldErrors.forbidden('metadata.finalizers', 'no new finalizers can be added if the object is being deleted')]);
      }
    }
    if (type.group === '' && type.resource === 'namespaces') {
      object.metadata.labels = { ...object.metadata.labels, 'kubernetes.io/metadata.name': existing.metadata.name ?? '' };
    }
    if (type.group === 'apiextensions.k8s.io' && type.resource === 'customresourcedefinitions' && subresource === '') object.status = crdStatus(object, this.#d.clock);

    const mutated = await this.#d.admission.mutate(this.#attrs('UPDATE', type, subresource, object, existing, ctx));
    ctx.warnings.push(...mutated.warnings);
    object = mutated.object ?? object;
    this.#decodeCustom(type, object, undefined, 'update');
    if (type.generation && !deepEqual(specPart(existing, statusSub), specPart(object, statusSub))) {
      object.metadata.generation = (existing.metadata.generation ?? 0) + 1;
    }
    this.#validate(type, object, existing);
    ctx.warnings.push(...await this.#d.admission.validate(this.#attrs('UPDATE', type, subresource, object, existing, ctx)));
    if (deepEqual(stripVolatile(existing), stripVolatile(object))) return { code: 200, body: this.#view(type, existing) };
    if (dryRun) return { code: 200, body: object };
    // Removed by an update only once nothing holds it: no finalizers and no grace period left
    // (a gracefully deleted pod stays until its kubelet deletes it; store.go ShouldDeleteDuringUpdate).
    if (object.metadata.deletionTimestamp !== undefined && (object.metadata.finalizers ?? []).length === 0 && (object.metadata.deletionGracePeriodSeconds ?? 0) === 0) {
      const removed = this.#remove(type, object);
      return { code: 200, body: removed };
    }
    const stored = this.#d.store.put(type.group, type.resource, object, 'MODIFIED');
    this.#afterWrite(type, stored);
    return { code: 200, body: this.#view(type, stored) };
  }

  async delete(type: ResourceType, namespace: string, name: string, body: unknown, ctx: RequestContext): Promise<Reply> {
    const dryRun = this.#dryRun(ctx);
    const existing = this.#d.store.get(type.group, type.resource, namespace, name);
    if (existing === undefined) throw notFound(type.group, type.resource, name);
    const options = isObject(body) ? body : {};
    const pre = isObject(options.preconditions) ? options.preconditions : {};
    if (typeof pre.uid === 'string' && pre.uid !== existing.metadata.uid) {
      throw conflict(type.group, type.resource, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${existing.metadata.uid ?? ''}`);
    }
    if (typeof pre.resourceVersion === 'string' && pre.resourceVersion !== existing.metadata.resourceVersion) {
      throw conflict(type.group, type.resource, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${existing.metadata.resourceVersion ?? ''}`);
    }
    await this.#d.admission.validate(this.#attrs('DELETE', type, '', undefined, existing, ctx));
    if (dryRun) return { code: 200, body: this.#view(type, existing) };
    if (type.group === '' && type.resource === 'pods' && this.#d.gracefulPodDeletion === true) {
      const graceful = this.#gracefulPodDelete(type, existing, options);
      if (graceful !== undefined) return graceful;
    }
    const finalizers = existing.metadata.finalizers ?? [];
    const isNamespace = type.group === '' && type.resource === 'namespaces';
    if (finalizers.length > 0 && !isNamespace) {
      if (existing.metadata.deletionTimestamp !== undefined) return { code: 200, body: this.#view(type, existing) };
      const deleting = deepClone(existing);
      deleting.metadata.deletionTimestamp = nowTimestamp(this.#d.clock);
      deleting.metadata.deletionGracePeriodSeconds = 0;
      if (type.generation) deleting.metadata.generation = (existing.metadata.generation ?? 0) + 1;
      const stored = this.#d.store.put(type.group, type.resource, deleting, 'MODIFIED');
      return { code: 200, body: this.#view(type, stored) };
    }
    const removed = this.#remove(type, existing);
    if (options.propagationPolicy === 'Orphan' && typeof existing.metadata.uid === 'string') orphanDependents(this.#d.store, existing.metadata.uid);
    if (isNamespace || (type.group === '' && type.resource === 'pods')) {
      if (isNamespace) {
        removed.metadata.deletionTimestamp = nowTimestamp(this.#d.clock);
        removed.status = { phase: 'Terminating' };
      }
      return { code: 200, body: removed };
    }
    return {
      code: 200,
      body: {
        kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success',
        details: { name, ...(type.group === '' ? {} : { group: type.group }), kind: type.resource, uid: existing.metadata.uid },
      },
    };
  }

  /**
   * The pod strategy's graceful deletion (pkg/registry/core/pod/strategy.go CheckGracefulDelete):
   * a running pod gets deletionTimestamp = now + grace and deletionGracePeriodSeconds (the
   * request's gracePeriodSeconds, else spec.terminationGracePeriodSeconds) and stays until its
   * kubelet, having stopped it, deletes it with grace 0; a later delete may only shorten the
   * grace. A pod that has finished, or a grace of 0, is deleted at once (undefined here).
   */
  #gracefulPodDelete(type: ResourceType, existing: KubeObject, options: JsonObject): Reply | undefined {
    const spec = isObject(existing.spec) ? existing.spec : {};
    const status = isObject(existing.status) ? existing.status : {};
    if (status.phase === 'Succeeded' || status.phase === 'Failed') return undefined;
    const requested = typeof options.gracePeriodSeconds === 'number' ? options.gracePeriodSeconds : undefined;
    const current = existing.metadata.deletionGracePeriodSeconds;
    const grace = requested ?? current ?? (typeof spec.terminationGracePeriodSeconds === 'number' ? spec.terminationGracePeriodSeconds : 30);
    if (grace <= 0) return undefined;
    if (existing.metadata.deletionTimestamp !== undefined && current !== undefined && grace >= current) return { code: 200, body: this.#view(type, existing) };
    const deleting = deepClone(existing);
    deleting.metadata.deletionTimestamp = nowTimestamp(() => this.#d.clock() + grace * 1000);
    deleting.metadata.deletionGracePeriodSeconds = grace;
    const stored = this.#d.store.put(type.group, type.resource, deleting, 'MODIFIED');
    return { code: 200, body: this.#view(type, stored) };
  }

  async deleteCollection(type: ResourceType, namespace: string | undefined, body: unknown, ctx: RequestContext): Promise<Reply> {
    const { items, resourceVersion } = this.list(type, namespace, ctx.query);
    for (const item of items) await this.delete(type, item.metadata.namespace ?? '', item.metadata.name ?? '', body, ctx);
    return { code: 200, body: { kind: type.listKind, apiVersion: apiVersionOf(type.group, type.version), metadata: { resourceVersion }, items } };
  }

  /** Removes an object and what the controllers would remove with it (namespace contents, a CRD's resources). */
  #remove(type: ResourceType, object: KubeObject): KubeObject {
    const { store, registry } = this.#d;
    if (type.group === '' && type.resource === 'namespaces') {
      for (const t of registry.all().filter((x) => x.namespaced && !x.virtual)) {
        for (const o of store.list(t.group, t.resource, object.metadata.name ?? '')) store.remove(t.group, t.resource, o.metadata.namespace ?? '', o.metadata.name ?? '');
      }
    }
    if (type.group === 'apiextensions.k8s.io' && type.resource === 'customresourcedefinitions') {
      const types = typesFromCrd(object);
      for (const t of types.slice(0, 1)) for (const o of store.list(t.group, t.resource)) store.remove(t.group, t.resource, o.metadata.namespace ?? '', o.metadata.name ?? '');
      registry.setCustom(object.metadata.name ?? '', []);
    }
    const removed = store.remove(type.group, type.resource, object.metadata.namespace ?? '', object.metadata.name ?? '') ?? object;
    return this.#view(type, removed);
  }

  #afterWrite(type: ResourceType, stored: KubeObject): void {
    const { store, registry } = this.#d;
    if (type.group === '' && type.resource === 'namespaces') {
      const namespace = stored.metadata.name ?? '';
      for (const { resource, object } of namespaceDefaults(namespace, this.#d.caCert, this.#d.clock)) {
        if (store.get('', resource, namespace, object.metadata.name ?? '') === undefined) store.put('', resource, object, 'ADDED');
      }
    }
    if (type.group === 'apiextensions.k8s.io' && type.resource === 'customresourcedefinitions') {
      registry.setCustom(stored.metadata.name ?? '', typesFromCrd(stored));
    }
  }

  // ---- subresources and reviews ----

  /** POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token */
  async tokenRequest(namespace: string, name: string, body: unknown): Promise<Reply> {
    const sa = this.#d.store.get('', 'serviceaccounts', namespace, name);
    if (sa === undefined) throw notFound('', 'serviceaccounts', name);
    const bound = boundPodName(body);
    let pod: KubeObject | undefined;
    if (bound !== undefined) {
      pod = this.#d.store.get('', 'pods', namespace, bound.name);
      if (pod === undefined) throw notFound('', 'pods', bound.name);
      if (bound.uid !== undefined && bound.uid !== pod.metadata.uid) {
        throw conflict('', 'pods', bound.name, `the UID in the bound object reference (${bound.uid}) does not match the UID in record. The object might have been deleted and then recreated`);
      }
    }
    return { code: 201, body: await this.#d.issuer.tokenRequest(sa, body, pod, this.#d.clock) };
  }

  async #review(type: ResourceType, body: unknown, ctx: RequestContext): Promise<Reply> {
    const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
    const base = { kind: type.kind, apiVersion: apiVersionOf(type.group, type.version), metadata: { creationTimestamp: null } };
    const userInfo = (u: UserInfo): JsonObject => ({
      username: u.username, ...(u.uid === undefined ? {} : { uid: u.uid }), groups: u.groups, ...(u.extra === undefined ? {} : { extra: u.extra }),
    });
    switch (type.kind) {
      case 'SelfSubjectReview':
        return { code: 201, body: { ...base, status: { userInfo: userInfo(ctx.user) } } };
      case 'TokenReview': {
        const token = typeof spec.token === 'string' ? spec.token : '';
        const audiences = Array.isArray(spec.audiences) && spec.audiences.length > 0 ? spec.audiences.map(String) : [this.#d.issuer.issuer];
        const staticUser = Object.hasOwn(this.#d.tokens, token) ? this.#d.tokens[token] : undefined;
        if (staticUser !== undefined && audiences.includes(this.#d.issuer.issuer)) {
          return { code: 201, body: { ...base, spec, status: { authenticated: true, user: { username: staticUser.username, groups: [...(staticUser.groups ?? []), 'system:authenticated'] }, audiences } } };
        }
        const claims = await this.#d.issuer.verify(token, audiences);
        const k = claims?.['kubernetes.io'];
        if (claims === undefined || !isObject(k) || !isObject(k.serviceaccount)) {
          return { code: 201, body: { ...base, spec, status: { user: {}, error: '[invalid bearer token, token lookup failed]' } } };
        }
        const namespace = String(k.namespace);
        const extra: Record<string, string[]> = {};
        if (isObject(k.pod)) {
          extra['authentication.kubernetes.io/pod-name'] = [String(k.pod.name)];
          extra['authentication.kubernetes.io/pod-uid'] = [String(k.pod.uid)];
        }
        if (typeof claims.jti === 'string') extra['authentication.kubernetes.io/credential-id'] = [`JTI=${claims.jti}`];
        const aud = Array.isArray(claims.aud) ? claims.aud : [String(claims.aud)];
        return {
          code: 201,
          body: {
            ...base, spec,
            status: {
              authenticated: true,
              user: { username: String(claims.sub), uid: String(k.serviceaccount.uid), groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'], extra },
              audiences: audiences.filter((a) => aud.includes(a)),
            },
          },
        };
      }
      case 'SelfSubjectAccessReview':
        return { code: 201, body: { ...base, spec, status: { allowed: true, reason: 'the Kubernetes API double authorizes every authenticated request' } } };
      case 'SelfSubjectRulesReview':
        return {
          code: 201,
          body: { ...base, spec, status: { resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }], nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }], incomplete: false } },
        };
      default:
        throw new KubeApiError({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `${type.kind} is not served`, reason: 'NotFound', code: 404 });
    }
  }
}

const RFC3339_MICRO = '2006-01-02T15:04:05.000000Z07:00';

/**
 * Lease times are metav1.MicroTime, decoded with time.Parse(RFC3339Micro): exactly six fraction
 * digits, so a JavaScript Date's millisecond ISO string is refused (client-node's V1MicroTime
 * exists for this). The API server fails the decode, before admission, with a 400.
 */
function decodeLeaseTimes(type: ResourceType, object: KubeObject): void {
  const spec = object.spec;
  if (!isObject(spec)) return;
  for (const field of ['acquireTime', 'renewTime']) {
    const value = spec[field];
    if (value === undefined || value === null) continue;
    if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/.test(value)) continue;
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    // time.ParseError names the unparsed rest of the value and the layout element it failed on.
    const rest = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/.test(text) ? [text.slice(19), '.000000'] : [text, '2006'];
    throw badRequest(`${type.kind} in version "${type.version}" cannot be handled as a ${type.kind}: parsing time ${JSON.stringify(text)} as ${JSON.stringify(RFC3339_MICRO)}: cannot parse ${JSON.stringify(rest[0])} as ${JSON.stringify(rest[1])}`);
  }
}

/** pkg/apis/coordination/validation ValidateLeaseSpec. */
function validateLeaseSpec(lease: KubeObject): FieldError[] {
  const spec = isObject(lease.spec) ? lease.spec : {};
  const errors: FieldError[] = [];
  if (typeof spec.leaseDurationSeconds === 'number' && spec.leaseDurationSeconds <= 0) {
    errors.push(fieldErrors.invalid('spec.leaseDurationSeconds', spec.leaseDurationSeconds, 'must be greater than 0'));
  }
  if (typeof spec.leaseTransitions === 'number' && spec.leaseTransitions < 0) {
    errors.push(fieldErrors.invalid('spec.leaseTransitions', spec.leaseTransitions, 'must be greater than or equal to 0'));
  }
  return errors;
}

/** The admissionregistration validation clients most often trip over. */
function validateWebhooks(config: KubeObject): FieldError[] {
  const errors: FieldError[] = [];
  const hooks = Array.isArray(config.webhooks) ? config.webhooks : [];
  const names = new Set<string>();
  hooks.forEach((h, i) => {
    const p = `webhooks[${i}]`;
    if (!isObject(h)) return;
    if (typeof h.name !== 'string' || h.name === '') errors.push(fieldErrors.required(`${p}.name`));
    else if (names.has(h.name)) errors.push(fieldErrors.duplicate(`${p}.name`, h.name));
    else names.add(h.name);
    if (!Array.isArray(h.admissionReviewVersions) || h.admissionReviewVersions.length === 0) {
      errors.push(fieldErrors.required(`${p}.admissionReviewVersions`, 'must specify one of v1, v1beta1'));
    }
    if (h.sideEffects === undefined) errors.push(fieldErrors.required(`${p}.sideEffects`, 'must specify one of None, NoneOnDryRun'));
    else if (h.sideEffects !== 'None' && h.sideEffects !== 'NoneOnDryRun') errors.push(fieldErrors.notSupported(`${p}.sideEffects`, h.sideEffects, ['None', 'NoneOnDryRun']));
    const cc = isObject(h.clientConfig) ? h.clientConfig : {};
    if ((cc.url === undefined) === (cc.service === undefined)) errors.push(fieldErrors.required(`${p}.clientConfig`, 'exactly one of url or service is required'));
    if (h.failurePolicy !== undefined && h.failurePolicy !== 'Fail' && h.failurePolicy !== 'Ignore') errors.push(fieldErrors.notSupported(`${p}.failurePolicy`, h.failurePolicy, ['Fail', 'Ignore']));
    if (typeof h.timeoutSeconds === 'number' && (h.timeoutSeconds < 1 || h.timeoutSeconds > 30)) errors.push(fieldErrors.invalid(`${p}.timeoutSeconds`, h.timeoutSeconds, 'the timeout value must be between 1 and 30 seconds'));
  });
  return errors;
}
