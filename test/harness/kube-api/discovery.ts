// Discovery documents: /version, the legacy /api, /api/v1, /apis, /apis/<g>/<v> lists, the
// aggregated discovery (apidiscovery.k8s.io/v2, what kubectl 1.35 asks for first) and the
// OpenAPI v3 index and per-group-version documents kubectl reads before apply (to learn that the
// server supports ?fieldValidation=) and for explain.
import { createHash } from 'node:crypto';
import { apiVersionOf, type JsonObject } from './types.ts';
import type { ResourceRegistry, ResourceType } from './resources.ts';

export const SERVER_VERSION = {
  major: '1', minor: '35', emulationMajor: '1', emulationMinor: '35', minCompatibilityMajor: '1', minCompatibilityMinor: '34',
  gitVersion: 'v1.35.0+custos-double', gitCommit: '0000000000000000000000000000000000000000', gitTreeState: 'clean',
  buildDate: '2026-01-01T00:00:00Z', goVersion: 'go1.25.5', compiler: 'gc', platform: 'linux/amd64',
} as const;

export const AGGREGATED_V2 = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList';

const SUBRESOURCE_VERBS: Readonly<Record<string, readonly string[]>> = { status: ['get', 'patch', 'update'], token: ['create'] };

function subresourceKind(type: ResourceType, sub: string): { group: string; version: string; kind: string } {
  if (sub === 'token') return { group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest' };
  return { group: type.group, version: type.version, kind: type.kind };
}

export function apiVersions(serverAddress: string): JsonObject {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

export function apiGroupList(registry: ResourceRegistry): JsonObject {
  return {
    kind: 'APIGroupList', apiVersion: 'v1',
    groups: registry.groups().filter((g) => g.group !== '').map(({ group, versions }) => {
      const list = versions.map((version) => ({ groupVersion: `${group}/${version}`, version }));
      return { name: group, versions: list, preferredVersion: list[0] };
    }),
  };
}

export function apiGroup(registry: ResourceRegistry, group: string): JsonObject | undefined {
  const found = registry.groups().find((g) => g.group === group);
  if (found === undefined) return undefined;
  const list = found.versions.map((version) => ({ groupVersion: `${group}/${version}`, version }));
  return { kind: 'APIGroup', apiVersion: 'v1', name: group, versions: list, preferredVersion: list[0] };
}

export function apiResourceList(registry: ResourceRegistry, group: string, version: string): JsonObject | undefined {
  const types = registry.all().filter((t) => t.group === group && t.version === version);
  if (types.length === 0) return undefined;
  const resources: JsonObject[] = [];
  for (const t of types) {
    resources.push({
      name: t.resource, singularName: t.singular, namespaced: t.namespaced, kind: t.kind, verbs: t.verbs,
      ...(t.shortNames.length > 0 ? { shortNames: t.shortNames } : {}),
      ...(t.categories.length > 0 ? { categories: t.categories } : {}),
      ...(t.virtual ? {} : { storageVersionHash: createHash('sha256').update(`${t.group}/${t.version}/${t.kind}`).digest('base64').slice(0, 11) }),
    });
    for (const sub of t.subresources) {
      const k = subresourceKind(t, sub);
      resources.push({
        name: `${t.resource}/${sub}`, singularName: '', namespaced: t.namespaced, kind: k.kind, verbs: SUBRESOURCE_VERBS[sub] ?? ['get'],
        ...(k.group === t.group ? {} : { group: k.group, version: k.version }),
      });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: apiVersionOf(group, version), resources };
}

/** apidiscovery.k8s.io/v2 APIGroupDiscoveryList for /api (core) or /apis (every other group). */
export function aggregatedDiscovery(registry: ResourceRegistry, core: boolean): JsonObject {
  const items = registry.groups().filter((g) => (g.group === '') === core).map(({ group, versions }) => ({
    metadata: group === '' ? { creationTimestamp: null } : { name: group, creationTimestamp: null },
    versions: versions.map((version) => ({
      version,
      freshness: 'Current',
      resources: registry.all().filter((t) => t.group === group && t.version === version).map((t) => ({
        resource: t.resource,
        responseKind: { group: t.group, version: t.version, kind: t.kind },
        scope: t.namespaced ? 'Namespaced' : 'Cluster',
        singularResource: t.singular,
        verbs: t.verbs,
        ...(t.shortNames.length > 0 ? { shortNames: t.shortNames } : {}),
        ...(t.categories.length > 0 ? { categories: t.categories } : {}),
        ...(t.subresources.length > 0 ? {
          subresources: t.subresources.map((sub) => ({ subresource: sub, responseKind: subresourceKind(t, sub), verbs: SUBRESOURCE_VERBS[sub] ?? ['get'] })),
        } : {}),
      })),
    })),
  }));
  return { kind: 'APIGroupDiscoveryList', apiVersion: 'apidiscovery.k8s.io/v2', metadata: {}, items };
}

// ---- OpenAPI v3 ----

function gvPath(group: string, version: string): string {
  return group === '' ? `api/${version}` : `apis/${group}/${version}`;
}

/** The component name the API server gives a kind: reversed group + version + kind. */
function definitionName(t: ResourceType): string {
  const reversed = t.group === '' ? 'io.k8s.api.core' : t.group.split('.').reverse().join('.');
  return `${reversed}.${t.version}.${t.kind}`;
}

const QUERY = (name: string): JsonObject => ({ name, in: 'query', schema: { type: 'string', uniqueItems: true } });

export function openApiV3Document(registry: ResourceRegistry, group: string, version: string): JsonObject | undefined {
  const types = registry.all().filter((t) => t.group === group && t.version === version);
  if (types.length === 0) return undefined;
  const paths: JsonObject = {};
  const schemas: JsonObject = {};
  for (const t of types) {
    const gvk = { group: t.group, version: t.version, kind: t.kind };
    const base = `/${gvPath(group, version)}${t.namespaced ? '/namespaces/{namespace}' : ''}/${t.resource}`;
    const op = (action: string, params: string[]): JsonObject => ({
      'x-kubernetes-group-version-kind': gvk, 'x-kubernetes-action': action,
      parameters: params.map(QUERY), responses: { 200: { description: 'OK' } },
    });
    if (t.virtual) {
      paths[base] = { post: op('post', ['dryRun', 'fieldManager', 'fieldValidation']) };
      continue;
    }
    paths[base] = { get: op('list', ['labelSelector', 'fieldSelector', 'resourceVersion', 'watch']), post: op('post', ['dryRun', 'fieldManager', 'fieldValidation']) };
    paths[`${base}/{name}`] = {
      get: op('get', []), put: op('put', ['dryRun', 'fieldManager', 'fieldValidation']),
      patch: op('patch', ['dryRun', 'fieldManager', 'fieldValidation', 'force']), delete: op('delete', ['dryRun', 'gracePeriodSeconds', 'propagationPolicy']),
    };
    // Only custom resources get a component schema: for built-ins kubectl then computes strategic
    // merge patches from its compiled-in types (patchMergeKey tags), which this double's
    // schemas could not describe as faithfully.
    if (t.crd?.schema !== undefined) {
      schemas[definitionName(t)] = { ...t.crd.schema.openApi(), 'x-kubernetes-group-version-kind': [gvk] };
    }
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes', version: SERVER_VERSION.gitVersion }, paths, components: { schemas } };
}

export function openApiV3Index(registry: ResourceRegistry): JsonObject {
  const paths: JsonObject = {};
  for (const { group, versions } of registry.groups()) {
    for (const version of versions) {
      const doc = openApiV3Document(registry, group, version);
      const hash = createHash('sha512').update(JSON.stringify(doc)).digest('hex').slice(0, 128).toUpperCase();
      paths[gvPath(group, version)] = { serverRelativeURL: `/openapi/v3/${gvPath(group, version)}?hash=${hash}` };
    }
  }
  return { paths };
}
