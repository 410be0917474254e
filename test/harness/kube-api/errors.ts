// metav1.Status errors exactly as the API server shapes them (k8s.io/apimachinery
// pkg/api/errors/errors.go), and field errors as pkg/util/validation/field/errors.go prints them.
// kubectl prints these verbatim: `Error from server (<reason>): <message>`, or for 422 Invalid
// `The <kind> "<name>" is invalid: <field>: <message>`.

export interface StatusCause {
  readonly reason: string;
  readonly message: string;
  readonly field: string;
}

export interface StatusDetails {
  readonly name?: string;
  readonly group?: string;
  readonly kind?: string;
  readonly uid?: string;
  readonly causes?: readonly StatusCause[];
  readonly retryAfterSeconds?: number;
}

export interface Status {
  readonly kind: 'Status';
  readonly apiVersion: 'v1';
  readonly metadata: Record<string, never>;
  readonly status: 'Failure' | 'Success';
  readonly message: string;
  readonly reason: string;
  readonly details?: StatusDetails;
  readonly code: number;
}

export class KubeApiError extends Error {
  readonly status: Status;
  constructor(status: Status) {
    super(status.message);
    this.name = 'KubeApiError';
    this.status = status;
  }
}

function status(code: number, reason: string, message: string, details?: StatusDetails): Status {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details === undefined ? {} : { details }), code };
}

/** `configmaps "x"`, `accesspolicies.custos.io "x"`: a group resource as String() prints it. */
export function qualifiedResource(group: string, resource: string): string {
  return group === '' ? resource : `${resource}.${group}`;
}

function resourceDetails(group: string, resource: string, name: string): StatusDetails {
  return { name, ...(group === '' ? {} : { group }), kind: resource };
}

export function notFound(group: string, resource: string, name: string): KubeApiError {
  return new KubeApiError(status(404, 'NotFound', `${qualifiedResource(group, resource)} "${name}" not found`, resourceDetails(group, resource, name)));
}

export function alreadyExists(group: string, resource: string, name: string): KubeApiError {
  return new KubeApiError(status(409, 'AlreadyExists', `${qualifiedResource(group, resource)} "${name}" already exists`, resourceDetails(group, resource, name)));
}

export function conflict(group: string, resource: string, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again'): KubeApiError {
  return new KubeApiError(status(409, 'Conflict', `Operation cannot be fulfilled on ${qualifiedResource(group, resource)} "${name}": ${why}`, resourceDetails(group, resource, name)));
}

export function badRequest(message: string): KubeApiError {
  return new KubeApiError(status(400, 'BadRequest', message));
}

export function unauthorized(): KubeApiError {
  return new KubeApiError(status(401, 'Unauthorized', 'Unauthorized'));
}

export function forbidden(message: string, details?: StatusDetails): KubeApiError {
  return new KubeApiError(status(403, 'Forbidden', message, details));
}

export function methodNotSupported(group: string, resource: string, verb: string): KubeApiError {
  return new KubeApiError(status(405, 'MethodNotAllowed', `${verb} is not supported on resources of kind "${qualifiedResource(group, resource)}"`, { group, kind: resource }));
}

export function notAcceptable(message: string): KubeApiError {
  return new KubeApiError(status(406, 'NotAcceptable', message));
}

export function unsupportedMediaType(contentType: string, accepted: readonly string[]): KubeApiError {
  return new KubeApiError(status(415, 'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`, { kind: contentType }));
}

/** 410 Gone with reason Expired: a watch or list from a compacted resourceVersion. */
export function expired(message: string): KubeApiError {
  return new KubeApiError(status(410, 'Expired', message));
}

export function internalError(message: string): KubeApiError {
  return new KubeApiError(status(500, 'InternalError', `Internal error occurred: ${message}`, { causes: [{ reason: '', message, field: '' }] }));
}

export function timeoutError(message: string): KubeApiError {
  return new KubeApiError(status(504, 'Timeout', message));
}

export function pageNotFound(): KubeApiError {
  return new KubeApiError(status(404, 'NotFound', 'the server could not find the requested resource', {}));
}

// ---- field errors (k8s.io/apimachinery/pkg/util/validation/field) ----

export type FieldErrorType =
  | 'FieldValueRequired' | 'FieldValueNotSupported' | 'FieldValueInvalid' | 'FieldValueTypeInvalid'
  | 'FieldValueTooLong' | 'FieldValueTooMany' | 'FieldValueForbidden' | 'FieldValueDuplicate';

export interface FieldError {
  readonly type: FieldErrorType;
  readonly field: string;
  readonly body: string;
}

/** How field.Error formats a bad value: strings quoted, numbers and booleans bare. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return Array.isArray(value) ? '"array"' : '"object"';
}

export const fieldErrors = {
  required: (field: string, detail = ''): FieldError => ({ type: 'FieldValueRequired', field, body: detail === '' ? 'Required value' : `Required value: ${detail}` }),
  notSupported: (field: string, value: unknown, supported: readonly unknown[]): FieldError => ({
    type: 'FieldValueNotSupported', field,
    body: `Unsupported value: ${formatValue(value)}${supported.length > 0 ? `: supported values: ${supported.map((v) => JSON.stringify(String(v))).join(', ')}` : ''}`,
  }),
  invalid: (field: string, value: unknown, detail: string): FieldError => ({ type: 'FieldValueInvalid', field, body: `Invalid value: ${formatValue(value)}${detail === '' ? '' : `: ${detail}`}` }),
  typeInvalid: (field: string, value: unknown, detail: string): FieldError => ({ type: 'FieldValueTypeInvalid', field, body: `Invalid value: ${formatValue(value)}: ${detail}` }),
  tooLong: (field: string, max: number): FieldError => ({ type: 'FieldValueTooLong', field, body: `Too long: may not be more than ${max} bytes` }),
  tooMany: (field: string, actual: number, max: number): FieldError => ({ type: 'FieldValueTooMany', field, body: `Too many: ${actual}: must have at most ${max} items` }),
  forbidden: (field: string, detail: string): FieldError => ({ type: 'FieldValueForbidden', field, body: `Forbidden: ${detail}` }),
  duplicate: (field: string, value: unknown): FieldError => ({ type: 'FieldValueDuplicate', field, body: `Duplicate value: ${formatValue(value)}` }),
};

/** 422 Invalid, as errors.NewInvalid builds it from a field.ErrorList. */
export function invalid(group: string, kind: string, name: string, errors: readonly FieldError[]): KubeApiError {
  const lines = errors.map((e) => `${e.field}: ${e.body}`);
  const aggregate = lines.length === 1 ? (lines[0] ?? '') : `[${lines.join(', ')}]`;
  const qualifiedKind = group === '' ? kind : `${kind}.${group}`;
  return new KubeApiError(status(422, 'Invalid', `${qualifiedKind} "${name}" is invalid: ${aggregate}`, {
    name, ...(group === '' ? {} : { group }), kind,
    causes: errors.map((e) => ({ reason: e.type, message: e.body, field: e.field })),
  }));
}
