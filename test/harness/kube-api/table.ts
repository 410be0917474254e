// meta.k8s.io/v1 Table responses (what `kubectl get` asks for with
// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): a CRD's additionalPrinterColumns
// evaluated with the JSONPath subset kubectl users write, and default columns for built-ins.
import { isObject, type JsonObject, type KubeObject } from './types.ts';
import type { ResourceType } from './resources.ts';

export interface PrinterColumn {
  readonly name: string;
  readonly type: string;
  readonly format?: string;
  readonly description?: string;
  readonly priority?: number;
  readonly jsonPath: string;
}

type Step = { readonly field: string } | { readonly index: number } | { readonly all: true } | { readonly filter: { path: string[]; value: string } };

/** Parses `.spec.x`, `.a[0].b`, `.a[*].b`, `.status.conditions[?(@.type=="Ready")].status`. */
export function parseJsonPath(path: string): Step[] {
  const steps: Step[] = [];
  let rest = path.trim().replace(/^\{(.*)\}$/, '$1').replace(/^\$/, '');
  while (rest !== '') {
    let m: RegExpExecArray | null;
    if ((m = /^\.([^.[\]]+)/.exec(rest)) !== null) steps.push({ field: m[1] ?? '' });
    else if ((m = /^\[(\d+)\]/.exec(rest)) !== null) steps.push({ index: Number(m[1]) });
    else if ((m = /^\[\*\]/.exec(rest)) !== null) steps.push({ all: true });
    else if ((m = /^\[\?\(@((?:\.[^.=!\s)]+)+)\s*==\s*(?:"([^"]*)"|'([^']*)')\)\]/.exec(rest)) !== null) {
      steps.push({ filter: { path: (m[1] ?? '').slice(1).split('.'), value: m[2] ?? m[3] ?? '' } });
    } else if ((m = /^\['([^']+)'\]/.exec(rest)) !== null) steps.push({ field: m[1] ?? '' });
    else throw new Error(`unsupported JSONPath ${path} at ${rest}`);
    rest = rest.slice(m[0].length);
  }
  return steps;
}

export function evaluateJsonPath(object: unknown, path: string): unknown[] {
  let current: unknown[] = [object];
  for (const step of parseJsonPath(path)) {
    const next: unknown[] = [];
    for (const value of current) {
      if ('field' in step) { if (isObject(value) && value[step.field] !== undefined) next.push(value[step.field]); }
      else if ('index' in step) { if (Array.isArray(value) && step.index < value.length) next.push(value[step.index]); }
      else if ('all' in step) { if (Array.isArray(value)) next.push(...(value as unknown[])); else if (isObject(value)) next.push(...Object.values(value)); }
      else if (Array.isArray(value)) {
        for (const item of value) {
          let v: unknown = item;
          for (const f of step.filter.path) v = isObject(v) ? v[f] : undefined;
          if ((typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') && String(v) === step.filter.value) next.push(item);
        }
      }
    }
    current = next;
  }
  return current;
}

/** `5s`, `3m2s`, `4h`, `12d`: duration.HumanDuration as kubectl prints ages. */
export function humanDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (days < 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (days < 365 * 2) return `${days}d`;
  return `${Math.floor(days / 365)}y`;
}

function age(object: KubeObject, now: number): string {
  const created = object.metadata.creationTimestamp;
  return created === undefined ? '<unknown>' : humanDuration(now - Date.parse(created));
}

function cellFor(column: PrinterColumn, object: KubeObject, now: number): unknown {
  let results: unknown[];
  try {
    results = evaluateJsonPath(object, column.jsonPath);
  } catch {
    return null;
  }
  const value = results[0];
  if (value === undefined || value === null) return null;
  switch (column.type) {
    case 'date': return typeof value === 'string' ? humanDuration(now - Date.parse(value)) : null;
    case 'integer': return typeof value === 'number' ? Math.trunc(value) : null;
    case 'number': return typeof value === 'number' ? value : null;
    case 'boolean': return typeof value === 'boolean' ? value : null;
    default: return typeof value === 'string' ? value : JSON.stringify(value);
  }
}

const NAME_COLUMN = { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names', priority: 0 };
const AGE_COLUMN = { name: 'Age', type: 'string', format: '', description: 'CreationTimestamp is a timestamp representing the server time when this object was created.', priority: 0 };

interface BuiltInColumns {
  readonly columns: ReadonlyArray<{ name: string; type: string; priority?: number }>;
  readonly cells: (o: KubeObject) => unknown[];
  /** Kinds whose table has no Age column (CustomResourceDefinition shows Created At). */
  readonly noAge?: boolean;
}

function count(v: unknown): number {
  return isObject(v) ? Object.keys(v).length : 0;
}

type JsonList = JsonObject[];

function objects(v: unknown): JsonList {
  return Array.isArray(v) ? v.filter(isObject) : [];
}

function stateOf(s: JsonObject, which: 'waiting' | 'running' | 'terminated'): JsonObject | undefined {
  const state = isObject(s.state) ? s.state : {};
  const value = state[which];
  return isObject(value) ? value : undefined;
}

/**
 * The Ready, Status and Restarts cells of `kubectl get pods`, as the API server's printer
 * computes them (pkg/printers/internalversion/printers.go printPod): native sidecars count as
 * containers, an init container in progress shows Init:N/M or Init:<reason>, a terminated
 * container its reason (Completed, Error) or ExitCode:N, a waiting one its reason
 * (ContainerCreating, CrashLoopBackOff), and a pod being deleted Terminating.
 */
function podCells(o: KubeObject): unknown[] {
  const spec = isObject(o.spec) ? o.spec : {};
  const status = isObject(o.status) ? o.status : {};
  const initSpecs = objects(spec.initContainers);
  const isSidecar = (name: unknown): boolean => initSpecs.some((c) => c.name === name && c.restartPolicy === 'Always');
  const total = objects(spec.containers).length + initSpecs.filter((c) => c.restartPolicy === 'Always').length;
  let reason = typeof status.reason === 'string' && status.reason !== '' ? status.reason : typeof status.phase === 'string' ? status.phase : 'Pending';
  let ready = 0;
  let restarts = 0;
  let sidecarRestarts = 0;
  let initializing = false;
  const initStatuses = objects(status.initContainerStatuses);
  for (const [i, c] of initStatuses.entries()) {
    const count = typeof c.restartCount === 'number' ? c.restartCount : 0;
    restarts += count;
    if (isSidecar(c.name)) sidecarRestarts += count;
    const terminated = stateOf(c, 'terminated');
    const waiting = stateOf(c, 'waiting');
    if (terminated !== undefined && terminated.exitCode === 0) continue;
    if (isSidecar(c.name) && c.started === true) {
      if (c.ready === true) ready += 1;
      continue;
    }
    if (terminated !== undefined) {
      const r = typeof terminated.reason === 'string' ? terminated.reason : '';
      if (r !== '') reason = `Init:${r}`;
      else if (typeof terminated.signal === 'number' && terminated.signal !== 0) reason = `Init:Signal:${terminated.signal}`;
      else reason = `Init:ExitCode:${String(terminated.exitCode)}`;
    } else if (waiting !== undefined && typeof waiting.reason === 'string' && waiting.reason !== '' && waiting.reason !== 'PodInitializing') {
      reason = `Init:${waiting.reason}`;
    } else {
      reason = `Init:${i}/${initSpecs.length}`;
    }
    initializing = true;
    break;
  }
  const initialized = objects(status.conditions).some((c) => c.type === 'Initialized' && c.status === 'True');
  if (!initializing || initialized) {
    restarts = sidecarRestarts;
    let hasRunning = false;
    const statuses = objects(status.containerStatuses);
    for (let i = statuses.length - 1; i >= 0; i -= 1) {
      const c = statuses[i] ?? {};
      restarts += typeof c.restartCount === 'number' ? c.restartCount : 0;
      const waiting = stateOf(c, 'waiting');
      const terminated = stateOf(c, 'terminated');
      if (waiting !== undefined && typeof waiting.reason === 'string' && waiting.reason !== '') reason = waiting.reason;
      else if (terminated !== undefined && typeof terminated.reason === 'string' && terminated.reason !== '') reason = terminated.reason;
      else if (terminated !== undefined) {
        reason = typeof terminated.signal === 'number' && terminated.signal !== 0 ? `Signal:${terminated.signal}` : `ExitCode:${String(terminated.exitCode)}`;
      } else if (c.ready === true && stateOf(c, 'running') !== undefined) {
        hasRunning = true;
        ready += 1;
      }
    }
    if (reason === 'Completed' && hasRunning) {
      reason = objects(status.conditions).some((c) => c.type === 'Ready' && c.status === 'True') ? 'Running' : 'NotReady';
    }
  }
  const terminal = status.phase === 'Succeeded' || status.phase === 'Failed';
  if (o.metadata.deletionTimestamp !== undefined && !terminal) reason = 'Terminating';
  return [`${ready}/${total}`, reason, restarts];
}

/** Columns between Name and Age for the built-ins kubectl users look at most. */
const BUILT_IN_COLUMNS: Readonly<Record<string, BuiltInColumns>> = {
  Namespace: { columns: [{ name: 'Status', type: 'string' }], cells: (o) => [isObject(o.status) ? o.status.phase ?? 'Active' : 'Active'] },
  ConfigMap: { columns: [{ name: 'Data', type: 'integer' }], cells: (o) => [count(o.data) + count(o.binaryData)] },
  Secret: { columns: [{ name: 'Type', type: 'string' }, { name: 'Data', type: 'integer' }], cells: (o) => [o.type ?? 'Opaque', count(o.data)] },
  Pod: { columns: [{ name: 'Ready', type: 'string' }, { name: 'Status', type: 'string' }, { name: 'Restarts', type: 'string' }], cells: podCells },
  ServiceAccount: { columns: [{ name: 'Secrets', type: 'string' }], cells: (o) => [Array.isArray(o.secrets) ? o.secrets.length : 0] },
  CustomResourceDefinition: { columns: [{ name: 'Created At', type: 'date' }], cells: (o) => [o.metadata.creationTimestamp], noAge: true },
  Lease: { columns: [{ name: 'Holder', type: 'string' }], cells: (o) => [isObject(o.spec) ? o.spec.holderIdentity ?? '' : ''] },
};

export interface TableOptions {
  /** `None`, `Object` or `PartialObjectMetadata` (default), from ?includeObject=. */
  readonly includeObject?: string;
  readonly now?: number;
  readonly noHeaders?: boolean;
}

function rowObject(object: KubeObject, include: string): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return object;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: object.metadata };
}

/** A Table of `objects` of type `type`; `resourceVersion` becomes the list's. */
export function toTable(type: ResourceType, objects: readonly KubeObject[], resourceVersion: string, options: TableOptions = {}): JsonObject {
  const now = options.now ?? Date.now();
  const include = options.includeObject ?? 'PartialObjectMetadata';
  let columnDefinitions: unknown[];
  let cells: (o: KubeObject) => unknown[];
  if (type.crd !== undefined) {
    const columns = type.crd.printerColumns;
    if (columns.length === 0) {
      columnDefinitions = [NAME_COLUMN, AGE_COLUMN];
      cells = (o) => [o.metadata.name, age(o, now)];
    } else {
      columnDefinitions = [NAME_COLUMN, ...columns.map((c) => ({ name: c.name, type: c.type, format: c.format ?? '', description: c.description ?? '', priority: c.priority ?? 0 }))];
      cells = (o) => [o.metadata.name, ...columns.map((c) => cellFor(c, o, now))];
    }
  } else {
    const extra = BUILT_IN_COLUMNS[type.kind];
    const ageColumn = extra?.noAge === true ? [] : [AGE_COLUMN];
    columnDefinitions = [NAME_COLUMN, ...(extra?.columns ?? []).map((c) => ({ format: '', description: '', priority: 0, ...c })), ...ageColumn];
    cells = (o) => [o.metadata.name, ...(extra?.cells(o) ?? []), ...(extra?.noAge === true ? [] : [age(o, now)])];
  }
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: options.noHeaders === true ? [] : columnDefinitions,
    rows: objects.map((o) => {
      const obj = rowObject(o, include);
      return { cells: cells(o), ...(obj === undefined ? {} : { object: obj }) };
    }),
  };
}
