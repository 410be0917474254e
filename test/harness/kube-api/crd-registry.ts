// CustomResourceDefinitions: validation of the CRD itself (the checks kubectl users hit), the
// status the apiextensions controllers would write (NamesAccepted, Established, storedVersions),
// and the resource types its served versions add to discovery and routing.
import { fieldErrors, type FieldError } from './errors.ts';
import { CrdSchema } from './schema.ts';
import { STANDARD_VERBS, type ResourceType } from './resources.ts';
import type { PrinterColumn } from './table.ts';
import { isObject, nowTimestamp, type JsonObject, type KubeObject } from './types.ts';

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

export function validateCrd(crd: KubeObject): FieldError[] {
  const errors: FieldError[] = [];
  const spec = isObject(crd.spec) ? crd.spec : {};
  const names = isObject(spec.names) ? spec.names : {};
  const group = str(spec.group);
  const plural = str(names.plural);
  if (group === '') errors.push(fieldErrors.required('spec.group'));
  else if (!group.includes('.')) errors.push(fieldErrors.invalid('spec.group', group, 'should be a domain with at least one dot'));
  if (plural === '') errors.push(fieldErrors.required('spec.names.plural'));
  if (str(names.kind) === '') errors.push(fieldErrors.required('spec.names.kind'));
  if (str(names.listKind) === '' && str(names.kind) === '') errors.push(fieldErrors.required('spec.names.listKind'));
  if (group !== '' && plural !== '' && crd.metadata.name !== `${plural}.${group}`) {
    errors.push(fieldErrors.invalid('metadata.name', crd.metadata.name ?? '', 'must be spec.names.plural+"."+spec.group'));
  }
  const scope = spec.scope;
  if (scope !== 'Namespaced' && scope !== 'Cluster') errors.push(fieldErrors.notSupported('spec.scope', scope ?? '', ['Cluster', 'Namespaced']));
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isObject) : [];
  if (versions.length === 0) errors.push(fieldErrors.invalid('spec.versions', versions, 'must have exactly one version marked as storage version'));
  else if (versions.filter((v) => v.storage === true).length !== 1) {
    errors.push(fieldErrors.invalid('spec.versions', versions, 'must have exactly one version marked as storage version'));
  }
  versions.forEach((v, i) => {
    const schema = isObject(v.schema) ? v.schema.openAPIV3Schema : undefined;
    if (!isObject(schema)) errors.push(fieldErrors.required(`spec.versions[${i}].schema.openAPIV3Schema`, 'schemas are required'));
    else {
      try {
        new CrdSchema(schema);
      } catch (e: unknown) {
        errors.push(fieldErrors.invalid(`spec.versions[${i}].schema.openAPIV3Schema`, '', e instanceof Error ? e.message : String(e)));
      }
    }
  });
  return errors;
}

/** The status the NamesAccepted/Established controllers write at once. */
export function crdStatus(crd: KubeObject, clock: () => number): JsonObject {
  const spec = isObject(crd.spec) ? crd.spec : {};
  const names = isObject(spec.names) ? spec.names : {};
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isObject) : [];
  const storage = versions.find((v) => v.storage === true);
  const previous = isObject(crd.status) ? strings(crd.status.storedVersions) : [];
  const stored = storage === undefined ? previous : [...new Set([...previous, str(storage.name)])];
  const now = nowTimestamp(clock);
  const kind = str(names.kind);
  return {
    acceptedNames: {
      plural: str(names.plural), singular: str(names.singular) === '' ? kind.toLowerCase() : str(names.singular), kind,
      listKind: str(names.listKind) === '' ? `${kind}List` : str(names.listKind),
      ...(strings(names.shortNames).length > 0 ? { shortNames: strings(names.shortNames) } : {}),
      ...(strings(names.categories).length > 0 ? { categories: strings(names.categories) } : {}),
    },
    conditions: [
      { type: 'NamesAccepted', status: 'True', lastTransitionTime: now, reason: 'NoConflicts', message: 'no conflicts found' },
      { type: 'Established', status: 'True', lastTransitionTime: now, reason: 'InitialNamesAccepted', message: 'the initial names have been accepted' },
    ],
    storedVersions: stored,
  };
}

/** Resource types of a CRD's served versions. */
export function typesFromCrd(crd: KubeObject): ResourceType[] {
  const spec = isObject(crd.spec) ? crd.spec : {};
  const names = isObject(spec.names) ? spec.names : {};
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isObject) : [];
  const storageVersion = str(versions.find((v) => v.storage === true)?.name);
  const kind = str(names.kind);
  return versions.filter((v) => v.served === true).map((v) => {
    const subresources = isObject(v.subresources) ? v.subresources : {};
    const openAPIV3Schema = isObject(v.schema) && isObject(v.schema.openAPIV3Schema) ? v.schema.openAPIV3Schema : undefined;
    const printerColumns: PrinterColumn[] = (Array.isArray(v.additionalPrinterColumns) ? v.additionalPrinterColumns.filter(isObject) : []).map((c) => ({
      name: str(c.name), type: str(c.type), jsonPath: str(c.jsonPath),
      ...(typeof c.format === 'string' ? { format: c.format } : {}),
      ...(typeof c.description === 'string' ? { description: c.description } : {}),
      ...(typeof c.priority === 'number' ? { priority: c.priority } : {}),
    }));
    // Without printer columns the API server shows Name and Age; with them, Age is one of them.
    return {
      group: str(spec.group), version: str(v.name), resource: str(names.plural),
      singular: str(names.singular) === '' ? kind.toLowerCase() : str(names.singular), kind,
      listKind: str(names.listKind) === '' ? `${kind}List` : str(names.listKind),
      namespaced: spec.scope === 'Namespaced', shortNames: strings(names.shortNames), categories: strings(names.categories),
      verbs: STANDARD_VERBS, subresources: 'status' in subresources ? ['status'] : [], generation: true, virtual: false, strategicMerge: false,
      crd: {
        name: crd.metadata.name ?? '',
        schema: openAPIV3Schema === undefined ? undefined : new CrdSchema(openAPIV3Schema),
        printerColumns,
        storageVersion,
      },
    };
  });
}
