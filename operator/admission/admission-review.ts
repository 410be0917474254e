// The AdmissionReview v1 wire format of the pod-injection webhook, pure: decode and validate what
// the API server sends (k8s.io/api admission/v1 types.go), encode what it expects back. The HTTP
// transport (webhook-server.ts) maps a decode failure to HTTP 400, which the API server reports as
// a failed webhook call and answers with the webhook's failurePolicy.
//
// Response rules the API server enforces (k8s.io/apiserver pkg/admission/plugin/webhook/request):
// apiVersion/kind must be admission.k8s.io/v1 AdmissionReview, `response.uid` must echo
// `request.uid`, and a patch must be base64 JSON with `patchType: JSONPatch`.
import type { InjectionResult } from '../webhook/build-patch.ts';
import type { PodLike } from '../webhook/pod-types.ts';
import { isRecord } from '../../lib/is-record.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const ADMISSION_KIND = 'AdmissionReview';

export type AdmissionOperation = 'CREATE' | 'UPDATE';
const OPERATIONS: readonly string[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'];

/** The fields of AdmissionRequest the injector uses (the rest is ignored, not rejected). */
export interface PodAdmissionRequest {
  readonly uid: string;
  readonly operation: AdmissionOperation;
  readonly namespace: string;
  /** Empty on CREATE with generateName. */
  readonly name: string;
  readonly pod: PodLike;
  readonly userInfo: { readonly username: string; readonly groups: readonly string[] };
  readonly dryRun: boolean;
}

export type DecodeResult =
  | { readonly ok: true; readonly request: PodAdmissionRequest }
  | { readonly ok: false; readonly message: string; /** Echoed when it could be read, for logs. */ readonly uid?: string };

export interface DecodeOptions {
  /** Operations this webhook is registered for (the chart registers CREATE only). */
  readonly operations: readonly AdmissionOperation[];
}

/** metav1.Status as AdmissionResponse.result carries it. */
export interface ResponseStatus {
  readonly metadata: Record<string, never>;
  readonly status: 'Failure';
  readonly code: number;
  readonly reason: string;
  readonly message: string;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly patchType?: 'JSONPatch';
  /** base64 of the JSON Patch document. */
  readonly patch?: string;
  readonly status?: ResponseStatus;
  readonly warnings?: readonly string[];
}

export interface AdmissionReviewResponse {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: typeof ADMISSION_KIND;
  readonly response: AdmissionResponse;
}

/** Longest uid accepted: the API server sends a UUID (36 characters); anything far longer is not one. */
const MAX_UID_LENGTH = 128;


function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The AdmissionReview envelope every webhook of ours reads first: apiVersion, kind, request, uid. */
export type EnvelopeResult =
  | { readonly ok: true; readonly uid: string; readonly request: Readonly<Record<string, unknown>> }
  | { readonly ok: false; readonly message: string };

export function decodeEnvelope(body: unknown): EnvelopeResult {
  if (!isRecord(body)) return { ok: false, message: `expected an ${ADMISSION_KIND} object, got ${describe(body)}` };
  if (body.apiVersion !== ADMISSION_API_VERSION || body.kind !== ADMISSION_KIND) {
    return { ok: false, message: `expected apiVersion ${ADMISSION_API_VERSION} and kind ${ADMISSION_KIND}, got apiVersion ${describe(body.apiVersion)} and kind ${describe(body.kind)}` };
  }
  const request = body.request;
  if (!isRecord(request)) return { ok: false, message: 'request: required object is missing' };
  const uid = request.uid;
  if (typeof uid !== 'string' || uid === '' || uid.length > MAX_UID_LENGTH || !/^[\x21-\x7e]+$/.test(uid)) {
    return { ok: false, message: `request.uid: expected a non-empty printable string of at most ${MAX_UID_LENGTH} characters, got ${describe(uid)}` };
  }
  return { ok: true, uid, request };
}

/** request.userInfo (who the API server authenticated), or the problem with it. */
export function decodeUserInfo(request: Readonly<Record<string, unknown>>): { readonly username: string; readonly groups: readonly string[]; readonly uid?: string } | string {
  const userInfo = request.userInfo;
  if (!isRecord(userInfo) || typeof userInfo.username !== 'string') return 'request.userInfo.username: required string is missing';
  const groups = userInfo.groups ?? [];
  if (!Array.isArray(groups) || !groups.every((g): g is string => typeof g === 'string')) return 'request.userInfo.groups: expected a list of strings';
  const uid = userInfo.uid;
  if (uid !== undefined && typeof uid !== 'string') return 'request.userInfo.uid: expected a string';
  return { username: userInfo.username, groups, ...(uid === undefined || uid === '' ? {} : { uid }) };
}

/** Decodes a parsed AdmissionReview body; every failure names the field and what was expected. */
export function decodeAdmissionReview(body: unknown, options: DecodeOptions): DecodeResult {
  const envelope = decodeEnvelope(body);
  if (!envelope.ok) return envelope;
  const { uid, request } = envelope;
  const fail = (message: string): DecodeResult => ({ ok: false, message, uid });

  const kind = request.kind;
  if (!isRecord(kind) || kind.group !== '' || kind.version !== 'v1' || kind.kind !== 'Pod') {
    return fail(`request.kind: this webhook admits core/v1 Pod only, got ${describe(kind)}`);
  }
  if (typeof request.subResource === 'string' && request.subResource !== '') {
    return fail(`request.subResource: this webhook admits pods, not the pods/${request.subResource} subresource`);
  }
  const operation = request.operation;
  if (typeof operation !== 'string' || !OPERATIONS.includes(operation)) return fail(`request.operation: expected one of ${OPERATIONS.join(', ')}, got ${describe(operation)}`);
  if (!(options.operations as readonly string[]).includes(operation)) {
    return fail(`request.operation: this webhook is registered for ${options.operations.join(', ')}, got ${operation}`);
  }
  const namespace = request.namespace;
  if (typeof namespace !== 'string' || namespace === '') return fail('request.namespace: pods are namespaced, but the request names no namespace');
  const name = request.name ?? '';
  if (typeof name !== 'string') return fail(`request.name: expected a string, got ${describe(name)}`);

  const pod = request.object;
  if (!isRecord(pod)) return fail('request.object: the pod is missing');
  if (pod.kind !== undefined && pod.kind !== 'Pod') return fail(`request.object.kind: expected Pod, got ${describe(pod.kind)}`);
  if (pod.metadata !== undefined && !isRecord(pod.metadata)) return fail('request.object.metadata: expected an object');
  if (pod.spec !== undefined && !isRecord(pod.spec)) return fail('request.object.spec: expected an object');
  const podNamespace = isRecord(pod.metadata) ? pod.metadata.namespace : undefined;
  if (podNamespace !== undefined && podNamespace !== '' && podNamespace !== namespace) {
    return fail(`request.object.metadata.namespace ${describe(podNamespace)} differs from request.namespace ${describe(namespace)}`);
  }

  const userInfo = decodeUserInfo(request);
  if (typeof userInfo === 'string') return fail(userInfo);
  const dryRun = request.dryRun ?? false;
  if (typeof dryRun !== 'boolean') return fail(`request.dryRun: expected a boolean, got ${describe(dryRun)}`);

  return {
    ok: true,
    request: {
      uid,
      operation: operation as AdmissionOperation,
      namespace,
      name,
      pod,
      userInfo: { username: userInfo.username, groups: userInfo.groups },
      dryRun,
    },
  };
}

/** The API server shows at most this many warnings usefully; the rest would be noise in kubectl. */
const MAX_WARNINGS = 10;
/** Kubernetes recommends short warnings; longer ones are cut rather than dropped. */
const MAX_WARNING_LENGTH = 256;

/**
 * Warnings travel to the client as HTTP `Warning` headers. They may quote names written by other
 * users (policy selectors), so control characters are replaced and each one is bounded.
 */
export function sanitizeWarnings(warnings: readonly string[]): string[] {
  return warnings
    .map((w) => w.replace(/\p{Cc}+/gu, ' ').trim())
    .filter((w) => w !== '')
    .slice(0, MAX_WARNINGS)
    .map((w) => (w.length > MAX_WARNING_LENGTH ? `${w.slice(0, MAX_WARNING_LENGTH - 3)}...` : w));
}

/** The AdmissionReview answering `uid` with the injection decision. */
export function encodeAdmissionResponse(uid: string, result: InjectionResult): AdmissionReviewResponse {
  let response: AdmissionResponse;
  switch (result.kind) {
    case 'patch': {
      const warnings = sanitizeWarnings(result.warnings);
      response = {
        uid,
        allowed: true,
        patchType: 'JSONPatch',
        patch: Buffer.from(JSON.stringify(result.patch), 'utf8').toString('base64'),
        ...(warnings.length > 0 ? { warnings } : {}),
      };
      break;
    }
    case 'skip': {
      const warnings = sanitizeWarnings(result.warnings);
      response = { uid, allowed: true, ...(warnings.length > 0 ? { warnings } : {}) };
      break;
    }
    case 'reject':
      // 403 Forbidden: the request is understood and refused; the message says what to change.
      response = { uid, allowed: false, status: { metadata: {}, status: 'Failure', code: 403, reason: 'Forbidden', message: result.message } };
      break;
    default: {
      const unknown: never = result;
      throw new Error(`unknown injection result ${JSON.stringify(unknown)}`);
    }
  }
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, response };
}
