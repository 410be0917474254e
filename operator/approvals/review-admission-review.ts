// The AdmissionReview v1 wire format of the AccessReview webhook, pure: what the API server sends
// for `accessreviews` (CREATE, UPDATE, DELETE) and what it expects back. The decision itself is
// `admitReview` (review-admission.ts). The pod injector has its own codec
// (operator/admission/admission-review.ts): different kind, operations and object.
import { ADMISSION_API_VERSION, ADMISSION_KIND, decodeEnvelope, decodeUserInfo, type AdmissionReviewResponse } from '../admission/admission-review.ts';
import type { AdmissionOperation, AdmissionUserInfo, ReviewAdmission } from './review-admission.ts';
import { ACCESS_REVIEW_API } from './access-request-manifest.ts';
import { isRecord } from '../../lib/is-record.ts';

export interface ReviewAdmissionRequest {
  readonly uid: string;
  readonly operation: AdmissionOperation;
  readonly namespace: string;
  /** The review as submitted (CREATE, UPDATE) or as stored (DELETE: the oldObject). */
  readonly review: unknown;
  readonly userInfo: AdmissionUserInfo;
}

export type ReviewDecodeResult =
  | { readonly ok: true; readonly request: ReviewAdmissionRequest }
  | { readonly ok: false; readonly message: string; readonly uid?: string };

const OPERATIONS: readonly string[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'];


export function decodeReviewAdmission(body: unknown): ReviewDecodeResult {
  const envelope = decodeEnvelope(body);
  if (!envelope.ok) return envelope;
  const { uid, request } = envelope;
  const fail = (message: string): ReviewDecodeResult => ({ ok: false, message, uid });
  const kind = request.kind;
  if (!isRecord(kind) || kind.group !== ACCESS_REVIEW_API.group || kind.kind !== ACCESS_REVIEW_API.kind) {
    return fail(`request.kind: this webhook admits ${ACCESS_REVIEW_API.kind}.${ACCESS_REVIEW_API.group} only`);
  }
  if (typeof request.subResource === 'string' && request.subResource !== '') {
    return fail(`request.subResource: the ${request.subResource} subresource is written by the controller, not admitted here`);
  }
  const operation = request.operation;
  if (typeof operation !== 'string' || !OPERATIONS.includes(operation)) return fail(`request.operation: expected one of ${OPERATIONS.join(', ')}`);
  const namespace = request.namespace;
  if (typeof namespace !== 'string' || namespace === '') return fail('request.namespace: AccessReviews are namespaced, but the request names no namespace');
  const userInfo = decodeUserInfo(request);
  if (typeof userInfo === 'string') return fail(userInfo);
  return {
    ok: true,
    request: {
      uid,
      operation: operation as AdmissionOperation,
      namespace,
      review: operation === 'DELETE' ? request.oldObject : request.object,
      userInfo,
    },
  };
}

export function encodeReviewAdmission(uid: string, decision: ReviewAdmission): AdmissionReviewResponse {
  const response = decision.allowed
    ? { uid, allowed: true, patchType: 'JSONPatch' as const, patch: Buffer.from(JSON.stringify(decision.patch), 'utf8').toString('base64') }
    // 403 Forbidden: kubectl prints the message as `admission webhook "…" denied the request: …`.
    : { uid, allowed: false, status: { metadata: {}, status: 'Failure' as const, code: 403, reason: 'Forbidden', message: decision.message } };
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, response };
}
