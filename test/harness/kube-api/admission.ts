// Admission webhooks called as the API server calls them (k8s.io/apiserver
// pkg/admission/plugin/webhook): matching by rules, namespaceSelector and objectSelector;
// AdmissionReview v1 over HTTPS verified against the webhook's caBundle (and, for a service
// reference, against the name <service>.<namespace>.svc); the response's uid checked; base64
// JSONPatch responses applied; failurePolicy Fail/Ignore; timeoutSeconds; mutating webhooks in
// order with `reinvocationPolicy: IfNeeded` reinvoked once when a later webhook changed the
// object; validating webhooks in parallel. matchConditions (CEL) are not evaluated.
import { randomUUID } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { badRequest, internalError, KubeApiError, type Status } from './errors.ts';
import { applyJsonPatch } from './patch.ts';
import { matchesLabelSelector } from './selectors.ts';
import { deepClone, deepEqual, isObject, type JsonObject, type KubeObject, type UserInfo } from './types.ts';
import type { ResourceType } from './resources.ts';
import type { ObjectStore } from './store.ts';

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';

export interface AdmissionAttributes {
  readonly operation: Operation;
  readonly type: ResourceType;
  readonly subresource: string;
  readonly namespace: string;
  readonly name: string;
  readonly object: KubeObject | undefined;
  readonly oldObject: KubeObject | undefined;
  readonly user: UserInfo;
  readonly dryRun: boolean;
  readonly options: JsonObject;
}

export interface ServiceReference {
  readonly name: string;
  readonly namespace: string;
  readonly port: number;
  readonly path: string;
}

export interface AdmissionOptions {
  /** Where a `clientConfig.service` webhook really listens (its certificate is still checked for <name>.<namespace>.svc). */
  readonly serviceUrl?: (service: ServiceReference) => string | undefined;
}

/** One webhook call, as recorded for tests. */
export interface AdmissionCall {
  readonly webhook: string;
  readonly configuration: string;
  readonly kind: 'mutating' | 'validating';
  readonly operation: Operation;
  readonly resource: string;
  readonly name: string;
  readonly namespace: string;
  readonly outcome: 'allowed' | 'denied' | 'error';
  readonly error?: string;
  readonly reinvocation: boolean;
}

interface Webhook {
  readonly configuration: string;
  readonly spec: JsonObject;
  readonly name: string;
}

class WebhookCallError extends Error {}

function stringList(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

function ruleMatches(rule: JsonObject, a: AdmissionAttributes): boolean {
  const operations = stringList(rule.operations);
  if (!operations.includes('*') && !operations.includes(a.operation)) return false;
  const groups = stringList(rule.apiGroups);
  if (!groups.includes('*') && !groups.includes(a.type.group)) return false;
  const versions = stringList(rule.apiVersions);
  if (!versions.includes('*') && !versions.includes(a.type.version)) return false;
  const scope = typeof rule.scope === 'string' ? rule.scope : '*';
  if (scope === 'Cluster' && a.type.namespaced) return false;
  if (scope === 'Namespaced' && !a.type.namespaced) return false;
  return stringList(rule.resources).some((r) => {
    const [res = '', sub] = r.split('/');
    const resourceOk = res === '*' || res === a.type.resource;
    if (sub === undefined) return resourceOk && a.subresource === '';
    return resourceOk && (sub === '*' || sub === a.subresource);
  });
}

export class AdmissionChain {
  readonly calls: AdmissionCall[] = [];
  readonly #store: ObjectStore;
  readonly #options: AdmissionOptions;

  constructor(store: ObjectStore, options: AdmissionOptions = {}) {
    this.#store = store;
    this.#options = options;
  }

  #webhooks(resource: string): Webhook[] {
    return this.#store.list('admissionregistration.k8s.io', resource)
      .sort((x, y) => (x.metadata.name ?? '').localeCompare(y.metadata.name ?? ''))
      .flatMap((config) => (Array.isArray(config.webhooks) ? config.webhooks : []).filter(isObject).map((spec) => ({
        configuration: config.metadata.name ?? '', spec, name: String(spec.name),
      })));
  }

  #matches(webhook: Webhook, a: AdmissionAttributes): boolean {
    const rules = Array.isArray(webhook.spec.rules) ? webhook.spec.rules.filter(isObject) : [];
    if (!rules.some((r) => ruleMatches(r, a))) return false;
    // namespaceSelector: a Namespace is matched on its own labels, other cluster-scoped objects always match.
    let namespaceLabels: Record<string, string> | undefined;
    if (a.type.group === '' && a.type.resource === 'namespaces') namespaceLabels = (a.object ?? a.oldObject)?.metadata.labels;
    else if (a.type.namespaced) namespaceLabels = this.#store.get('', 'namespaces', '', a.namespace)?.metadata.labels;
    if ((a.type.namespaced || a.type.resource === 'namespaces') && !matchesLabelSelector(webhook.spec.namespaceSelector ?? {}, namespaceLabels ?? {})) return false;
    const objectSelector = webhook.spec.objectSelector ?? {};
    const matchesNew = a.object !== undefined && matchesLabelSelector(objectSelector, a.object.metadata.labels ?? {});
    const matchesOld = a.oldObject !== undefined && matchesLabelSelector(objectSelector, a.oldObject.metadata.labels ?? {});
    return matchesNew || matchesOld;
  }

  /** Runs the mutating webhooks; returns the (possibly patched) object and the warnings they sent. */
  async mutate(a: AdmissionAttributes): Promise<{ object: KubeObject | undefined; warnings: string[] }> {
    const warnings: string[] = [];
    let object = a.object === undefined ? undefined : deepClone(a.object);
    const hooks = this.#webhooks('mutatingwebhookconfigurations').filter((w) => this.#matches(w, a));
    const seenBy = new Map<number, KubeObject | undefined>();
    for (const [i, hook] of hooks.entries()) {
      object = await this.#mutateOnce(hook, { ...a, object }, warnings, false);
      if (hook.spec.reinvocationPolicy === 'IfNeeded') seenBy.set(i, deepClone(object));
    }
    // Reinvoke, once, each IfNeeded webhook whose output a later webhook changed.
    for (const [i, hook] of hooks.entries()) {
      if (!seenBy.has(i) || deepEqual(seenBy.get(i), object)) continue;
      object = await this.#mutateOnce(hook, { ...a, object }, warnings, true);
    }
    return { object, warnings };
  }

  async #mutateOnce(hook: Webhook, a: AdmissionAttributes, warnings: string[], reinvocation: boolean): Promise<KubeObject | undefined> {
    const response = await this.#call(hook, a, 'mutating', reinvocation);
    if (response === undefined) return a.object;
    warnings.push(...stringList(response.warnings));
    if (response.allowed !== true) throw this.#denied(hook, response, a, 'mutating', reinvocation);
    this.#record(hook, a, 'mutating', 'allowed', reinvocation);
    if (response.patch === undefined || response.patch === null) return a.object;
    if (response.patchType !== 'JSONPatch') throw internalError(`mutating webhook "${hook.name}" returned an unsupported patchType ${JSON.stringify(response.patchType)}`);
    let operations: unknown;
    try {
      operations = JSON.parse(Buffer.from(typeof response.patch === 'string' ? response.patch : '', 'base64').toString('utf8'));
    } catch (e: unknown) {
      throw internalError(`mutating webhook "${hook.name}" returned a patch that is not JSON: ${String(e)}`);
    }
    try {
      return applyJsonPatch(a.object, operations) as KubeObject;
    } catch (e: unknown) {
      throw internalError(e instanceof KubeApiError ? e.status.message : String(e));
    }
  }

  /** Runs the validating webhooks in parallel; the first denial (in order) rejects. */
  async validate(a: AdmissionAttributes): Promise<string[]> {
    const hooks = this.#webhooks('validatingwebhookconfigurations').filter((w) => this.#matches(w, a));
    const results = await Promise.allSettled(hooks.map(async (hook) => {
      const response = await this.#call(hook, a, 'validating', false);
      if (response === undefined) return [];
      if (response.allowed !== true) throw this.#denied(hook, response, a, 'validating', false);
      this.#record(hook, a, 'validating', 'allowed', false);
      return stringList(response.warnings);
    }));
    const warnings: string[] = [];
    for (const r of results) {
      if (r.status === 'rejected') throw r.reason;
      warnings.push(...r.value);
    }
    return warnings;
  }

  #record(hook: Webhook, a: AdmissionAttributes, kind: 'mutating' | 'validating', outcome: AdmissionCall['outcome'], reinvocation: boolean, error?: string): void {
    this.calls.push({
      webhook: hook.name, configuration: hook.configuration, kind, operation: a.operation, resource: a.type.resource,
      name: a.name, namespace: a.namespace, outcome, reinvocation, ...(error === undefined ? {} : { error }),
    });
  }

  #denied(hook: Webhook, response: JsonObject, a: AdmissionAttributes, kind: 'mutating' | 'validating', reinvocation: boolean): KubeApiError {
    this.#record(hook, a, kind, 'denied', reinvocation);
    // webhookerrors.ToStatusErr
    const result = isObject(response.status) ? response.status : {};
    const deniedBy = `admission webhook "${hook.name}" denied the request`;
    const message = typeof result.message === 'string' && result.message !== '' ? `${deniedBy}: ${result.message}`
      : typeof result.reason === 'string' && result.reason !== '' ? `${deniedBy}: ${result.reason}` : `${deniedBy} without explanation`;
    const code = typeof result.code === 'number' && result.code >= 400 ? result.code : 400;
    const status: Status = {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message,
      reason: typeof result.reason === 'string' ? result.reason : '', code,
      ...(isObject(result.details) ? { details: result.details } : {}),
    };
    return new KubeApiError(status);
  }

  /** Calls one webhook; `undefined` when it failed and its failurePolicy is Ignore. */
  async #call(hook: Webhook, a: AdmissionAttributes, kind: 'mutating' | 'validating', reinvocation: boolean): Promise<JsonObject | undefined> {
    const sideEffects = hook.spec.sideEffects;
    if (a.dryRun && sideEffects !== 'None' && sideEffects !== 'NoneOnDryRun') {
      throw badRequest(`admission webhook "${hook.name}" does not support dry run`);
    }
    const uid = randomUUID();
    try {
      const review = await this.#post(hook, {
        kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1',
        request: {
          uid,
          kind: { group: a.type.group, version: a.type.version, kind: a.type.kind },
          resource: { group: a.type.group, version: a.type.version, resource: a.type.resource },
          ...(a.subresource === '' ? {} : { subResource: a.subresource }),
          requestKind: { group: a.type.group, version: a.type.version, kind: a.type.kind },
          requestResource: { group: a.type.group, version: a.type.version, resource: a.type.resource },
          ...(a.subresource === '' ? {} : { requestSubResource: a.subresource }),
          ...(a.name === '' ? {} : { name: a.name }),
          ...(a.namespace === '' ? {} : { namespace: a.namespace }),
          operation: a.operation,
          userInfo: { username: a.user.username, ...(a.user.uid === undefined ? {} : { uid: a.user.uid }), groups: a.user.groups, ...(a.user.extra === undefined ? {} : { extra: a.user.extra }) },
          object: a.object ?? null,
          oldObject: a.oldObject ?? null,
          dryRun: a.dryRun,
          options: a.options,
        },
      });
      if (review.apiVersion !== 'admission.k8s.io/v1' || review.kind !== 'AdmissionReview') {
        throw new WebhookCallError(`received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got ${String(review.apiVersion)}, Kind=${String(review.kind)}`);
      }
      const response = isObject(review.response) ? review.response : undefined;
      if (response === undefined) throw new WebhookCallError('received invalid webhook response: webhook response was absent');
      if (response.uid !== uid) throw new WebhookCallError(`received invalid webhook response: expected response.uid="${uid}", got "${String(response.uid)}"`);
      return response;
    } catch (e: unknown) {
      if (!(e instanceof WebhookCallError)) throw e;
      const message = `failed calling webhook "${hook.name}": ${e.message}`;
      this.#record(hook, a, kind, 'error', reinvocation, message);
      if (hook.spec.failurePolicy === 'Ignore') return undefined;
      throw internalError(message);
    }
  }

  async #post(hook: Webhook, body: JsonObject): Promise<JsonObject> {
    const clientConfig = isObject(hook.spec.clientConfig) ? hook.spec.clientConfig : {};
    const timeoutSeconds = typeof hook.spec.timeoutSeconds === 'number' ? hook.spec.timeoutSeconds : 10;
    let url: URL;
    let verifyName: string | undefined;
    if (typeof clientConfig.url === 'string') url = new URL(clientConfig.url);
    else if (isObject(clientConfig.service)) {
      const s = clientConfig.service;
      const service: ServiceReference = { name: String(s.name), namespace: String(s.namespace), port: typeof s.port === 'number' ? s.port : 443, path: typeof s.path === 'string' ? s.path : '' };
      verifyName = `${service.name}.${service.namespace}.svc`;
      url = new URL(this.#options.serviceUrl?.(service) ?? `https://${verifyName}:${service.port}${service.path}`);
    } else throw new WebhookCallError('failed to call webhook: no clientConfig.url or clientConfig.service');
    url.searchParams.set('timeout', `${timeoutSeconds}s`);
    const shown = `Post "${url.toString()}"`;
    const ca = typeof clientConfig.caBundle === 'string' && clientConfig.caBundle !== '' ? Buffer.from(clientConfig.caBundle, 'base64') : undefined;
    const payload = JSON.stringify(body);
    return new Promise<JsonObject>((resolve, reject) => {
      const fail = (detail: string): void => { reject(new WebhookCallError(`failed to call webhook: ${shown}: ${detail}`)); };
      const req = httpsRequest(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(payload) },
        ...(ca === undefined ? {} : { ca }),
        ...(verifyName === undefined ? {} : {
          servername: verifyName,
          checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(verifyName, cert),
        }),
        agent: false,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) > 299) {
            fail(`an error on the server ("${text.slice(0, 200)}") has prevented the request from succeeding`);
            return;
          }
          try {
            const parsed: unknown = JSON.parse(text);
            if (!isObject(parsed)) throw new Error('not an object');
            resolve(parsed);
          } catch {
            reject(new WebhookCallError(`received invalid webhook response: couldn't get version/kind; json parse error: ${text.slice(0, 100)}`));
          }
        });
        res.on('error', (e) => { fail(e.message); });
      });
      const timer = setTimeout(() => {
        req.destroy();
        fail('context deadline exceeded');
      }, timeoutSeconds * 1000);
      req.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        fail(describeNetworkError(e, url));
      });
      req.end(payload);
    });
  }
}

/** Node's TLS and socket errors, worded as Go's net/http and crypto/tls word them. */
function describeNetworkError(e: NodeJS.ErrnoException, url: URL): string {
  const address = `${url.hostname}:${url.port === '' ? '443' : url.port}`;
  switch (e.code) {
    case 'ECONNREFUSED': return `dial tcp ${address}: connect: connection refused`;
    case 'ECONNRESET': return 'read: connection reset by peer';
    case 'ENOTFOUND': case 'EAI_AGAIN': return `dial tcp: lookup ${url.hostname}: no such host`;
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE': case 'SELF_SIGNED_CERT_IN_CHAIN': case 'DEPTH_ZERO_SELF_SIGNED_CERT': case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return 'tls: failed to verify certificate: x509: certificate signed by unknown authority';
    case 'CERT_HAS_EXPIRED': return 'tls: failed to verify certificate: x509: certificate has expired or is not yet valid';
    case 'ERR_TLS_CERT_ALTNAME_INVALID': return `tls: failed to verify certificate: x509: ${e.message}`;
    default: return e.message;
  }
}
