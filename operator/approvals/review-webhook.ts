// The AccessReview admission endpoint (docs/adr/0011-kubernetes-approvals.md): decodes the
// AdmissionReview, reads the AccessRequest the review names live from the API server (not from a
// cache: a decision made a moment ago must already be seen), asks `admitReview` and encodes its
// answer. A malformed review is refused in admission terms (403 with the reason), an unreadable
// AccessRequest is an error (503), so the webhook's failurePolicy Fail applies.
import { ApiException, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { AccessRequest } from '../../crds/generated/access-request.ts';
import type { AdmissionRoute } from '../admission/webhook-server.ts';
import { ACCESS_REQUEST_API } from './access-request-manifest.ts';
import { ADMISSION_STAMP_ANNOTATION, signAdmissionStamp } from './admission-stamp.ts';
import type { RelaySigner } from './relay-record.ts';
import { admitReview } from './review-admission.ts';
import { decodeReviewAdmission, encodeReviewAdmission } from './review-admission-review.ts';
import { isRecord } from '../../lib/is-record.ts';

/** clientConfig.service.path of the AccessReview webhook in the chart. */
export const ADMIT_REVIEWS_PATH = '/admit/accessreviews';

export type AccessRequestReader = (namespace: string, name: string) => Promise<AccessRequest | undefined>;

export function apiAccessRequestReader(kubeConfig: KubeConfig): AccessRequestReader {
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  return async (namespace, name) => {
    try {
      const { group, version, plural } = ACCESS_REQUEST_API;
      return (await custom.getNamespacedCustomObject({ group, version, plural, namespace, name })) as AccessRequest;
    } catch (e: unknown) {
      if (e instanceof ApiException && e.code === 404) return undefined;
      throw e;
    }
  };
}

export interface ReviewAdmissionRouteOptions {
  readonly readAccessRequest: AccessRequestReader;
  readonly logger: Logger;
  /** With approvals on (Redis): admitted reviews get an admission stamp the relay requires. */
  readonly stampSigner?: RelaySigner;
  readonly clock?: () => number;
}

export function reviewAdmissionRoute(options: ReviewAdmissionRouteOptions): AdmissionRoute {
  const clock = options.clock ?? Date.now;
  return async (body) => {
    const decoded = decodeReviewAdmission(body);
    if (!decoded.ok) throw new Error(`malformed AdmissionReview: ${decoded.message}`);
    const { request } = decoded;
    const spec = isRecord(request.review) && isRecord(request.review.spec) ? request.review.spec : undefined;
    const requestName = typeof spec?.requestName === 'string' && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(spec.requestName) ? spec.requestName : undefined;
    const accessRequest = requestName === undefined ? undefined : await options.readAccessRequest(request.namespace, requestName);
    const decision = admitReview({ operation: request.operation, review: request.review, userInfo: request.userInfo, accessRequest, now: new Date(clock()) });
    const log = options.logger.child({ uid: request.uid, namespace: request.namespace, approvalRequest: requestName, user: request.userInfo.username, operation: request.operation });
    if (!decision.allowed) {
      log.info({ refusal: decision.refusal }, 'access review refused');
      return { response: encodeReviewAdmission(request.uid, decision), outcome: 'reject' };
    }
    log.info({ decision: decision.review.decision }, 'access review admitted');
    const signer = options.stampSigner;
    if (signer === undefined || requestName === undefined) return { response: encodeReviewAdmission(request.uid, decision), outcome: 'patch' };
    const stamp = await signAdmissionStamp({
      namespace: request.namespace, requestName, decision: decision.review.decision, commandDigest: decision.review.commandDigest,
      reason: decision.review.reason, reviewer: request.userInfo,
    }, signer, new Date(clock()));
    const metadata = isRecord(request.review) && isRecord(request.review.metadata) ? request.review.metadata : {};
    const stampOp = isRecord(metadata.annotations)
      ? { op: 'add' as const, path: `/metadata/annotations/${ADMISSION_STAMP_ANNOTATION.replaceAll('~', '~0').replaceAll('/', '~1')}`, value: stamp }
      : { op: 'add' as const, path: '/metadata/annotations', value: { [ADMISSION_STAMP_ANNOTATION]: stamp } };
    return { response: encodeReviewAdmission(request.uid, { ...decision, patch: [...decision.patch, stampOp] }), outcome: 'patch' };
  };
}

