// The AccessReview webhook adapter: decode, read the named AccessRequest through the injected reader,
// `admitReview`, encode. An honest review is stamped with the authenticated user; refusals are 403s
// with the reviewer's message; what cannot be decided (a malformed AdmissionReview, an unreadable
// AccessRequest) throws, which the HTTPS server turns into a 503 so failurePolicy Fail applies.
// Then the same route served over HTTPS by startWebhookServer's `routes` option, next to the pod
// injector's path.
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import type { AccessRequest } from '../../crds/generated/access-request.ts';
import type { AdmissionReviewResponse } from '../admission/admission-review.ts';
import { MUTATE_PODS_PATH, startWebhookServer, type AdmissionRoute, type WebhookServer } from '../admission/webhook-server.ts';
import { createCertificateAuthority, DAY_MS, issueServingCertificate, type CertificateAuthority } from '../certs/certificate-builder.ts';
import type { CertificateSource } from '../certs/certificate-source.ts';
import { DEFAULT_INJECTION_SETTINGS } from '../webhook/injection-settings.ts';
import { ADMIT_REVIEWS_PATH, reviewAdmissionRoute, type AccessRequestReader } from './review-webhook.ts';

const REQUEST = 'ar-7k2mq4x6c3ha';
const DIGEST = `sha256:${'a'.repeat(64)}`;
const NOW = Date.parse('2026-11-29T10:30:00Z');
const EXPIRES = '2026-11-29T11:00:00Z';
const ALICE = { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'alice-uid' };
const MALLORY = { username: 'mallory@example.com', groups: ['developers', 'system:authenticated'], uid: 'mallory-uid' };

function capturingLogger(): { logger: Logger; text: () => string } {
  let out = '';
  const stream = new Writable({ write(chunk: Buffer, _enc, cb) { out += chunk.toString(); cb(); } });
  return { logger: pino({ level: 'debug' }, stream), text: () => out };
}

function accessRequest(): AccessRequest {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessRequest',
    metadata: { name: REQUEST, namespace: 'payments', creationTimestamp: '2026-11-29T10:00:00Z' },
    spec: {
      policyRef: { name: 'billing-approvals', rule: 'approve-unfiltered' },
      requester: { id: 'system:serviceaccount:payments:billing', kind: 'ServiceAccount' },
      target: { name: 'billing', protocol: 'postgres' },
      command: 'DELETE FROM invoices',
      commandDigest: DIGEST,
      reviewers: { groups: ['dba'] },
      approvalsRequired: 1,
      expiresAt: EXPIRES,
    },
    status: { phase: 'Pending' },
  };
}

function admission(uid: string, userInfo: Record<string, unknown>, spec: Record<string, unknown> = {}, request: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: 'custos.io', version: 'v1alpha1', kind: 'AccessReview' },
      resource: { group: 'custos.io', version: 'v1alpha1', resource: 'accessreviews' },
      namespace: 'payments',
      operation: 'CREATE',
      userInfo,
      object: {
        apiVersion: 'custos.io/v1alpha1',
        kind: 'AccessReview',
        metadata: { generateName: `${REQUEST}-`, namespace: 'payments' },
        spec: { requestName: REQUEST, decision: 'approve', reason: 'ticket OPS-42', commandDigest: DIGEST, ...spec },
      },
      oldObject: null,
      dryRun: false,
      ...request,
    },
  };
}

/** A reader over a fixed set of AccessRequests, recording what it was asked for. */
function readerOf(objects: readonly AccessRequest[]): { read: AccessRequestReader; asked: string[] } {
  const asked: string[] = [];
  const read: AccessRequestReader = (namespace, name) => {
    asked.push(`${namespace}/${name}`);
    return Promise.resolve(objects.find((o) => o.metadata.namespace === namespace && o.metadata.name === name));
  };
  return { read, asked };
}

function decodedPatch(answer: unknown): unknown {
  const { response } = answer as AdmissionReviewResponse;
  assert.equal(response.patchType, 'JSONPatch');
  assert.ok(response.patch !== undefined);
  return JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
}

describe('reviewAdmissionRoute', () => {
  it('admits a dba member\'s review of a Pending request, stamping spec.reviewer from userInfo', async () => {
    const reader = readerOf([accessRequest()]);
    const { logger, text } = capturingLogger();
    const route = reviewAdmissionRoute({ readAccessRequest: reader.read, logger, clock: () => NOW });
    const result = await route(admission('uid-1', ALICE));
    assert.equal(result.outcome, 'patch');
    const { response } = result.response as AdmissionReviewResponse;
    assert.equal(response.uid, 'uid-1');
    assert.equal(response.allowed, true);
    assert.deepEqual(decodedPatch(result.response), [{ op: 'add', path: '/spec/reviewer', value: ALICE }]);
    assert.deepEqual(reader.asked, [`payments/${REQUEST}`], 'the AccessRequest is read live, in the review\'s namespace');
    assert.match(text(), /access review admitted/);
  });

  it('accepts a client-supplied reviewer identical to the caller (groups in any order) and still stamps it', async () => {
    const route = reviewAdmissionRoute({ readAccessRequest: readerOf([accessRequest()]).read, logger: capturingLogger().logger, clock: () => NOW });
    const result = await route(admission('uid-2', ALICE, { reviewer: { username: ALICE.username, groups: [...ALICE.groups].reverse(), uid: ALICE.uid } }));
    assert.equal(result.outcome, 'patch');
    assert.deepEqual(decodedPatch(result.response), [{ op: 'add', path: '/spec/reviewer', value: ALICE }]);
  });

  it('refuses an outsider with a 403 naming who may review', async () => {
    const { logger, text } = capturingLogger();
    const route = reviewAdmissionRoute({ readAccessRequest: readerOf([accessRequest()]).read, logger, clock: () => NOW });
    const result = await route(admission('uid-3', MALLORY));
    assert.equal(result.outcome, 'reject');
    const { response } = result.response as AdmissionReviewResponse;
    assert.equal(response.uid, 'uid-3');
    assert.equal(response.allowed, false);
    assert.equal(response.patch, undefined);
    assert.equal(response.status?.code, 403);
    assert.equal(response.status.reason, 'Forbidden');
    assert.match(response.status.message, /^mallory@example\.com is not a reviewer of payments\/ar-7k2mq4x6c3ha: it may be reviewed by members of dba$/);
    assert.match(text(), /"refusal":"not-an-allowed-reviewer"/);
  });

  it('refuses a review of a request that does not exist', async () => {
    const route = reviewAdmissionRoute({ readAccessRequest: readerOf([]).read, logger: capturingLogger().logger, clock: () => NOW });
    const result = await route(admission('uid-4', ALICE));
    assert.equal(result.outcome, 'reject');
    const { response } = result.response as AdmissionReviewResponse;
    assert.equal(response.status?.code, 403);
    assert.match(response.status.message, /AccessRequest payments\/ar-7k2mq4x6c3ha does not exist/);
  });

  it('does not read anything for a requestName that is not an object name', async () => {
    const reader = readerOf([accessRequest()]);
    const route = reviewAdmissionRoute({ readAccessRequest: reader.read, logger: capturingLogger().logger, clock: () => NOW });
    for (const requestName of ['../secrets/x', 'AR-7K2MQ4X6C3HA', `${REQUEST}/status`]) {
      const result = await route(admission('uid-5', ALICE, { requestName }));
      assert.equal(result.outcome, 'reject', requestName);
    }
    assert.deepEqual(reader.asked, []);
  });

  it('judges expiry by its clock (the request is still Pending, but its time is up)', async () => {
    const route = reviewAdmissionRoute({ readAccessRequest: readerOf([accessRequest()]).read, logger: capturingLogger().logger, clock: () => Date.parse(EXPIRES) + 1000 });
    const result = await route(admission('uid-6', ALICE));
    assert.equal(result.outcome, 'reject');
    assert.match((result.response as AdmissionReviewResponse).response.status?.message ?? '', /expired at 2026-11-29T11:00:00Z/);
  });

  it('refuses DELETE of a stored review (judged on oldObject)', async () => {
    const reader = readerOf([accessRequest()]);
    const route = reviewAdmissionRoute({ readAccessRequest: reader.read, logger: capturingLogger().logger, clock: () => NOW });
    const stored = (admission('x', ALICE).request as Record<string, unknown>)['object'];
    const result = await route(admission('uid-7', ALICE, {}, { operation: 'DELETE', object: null, oldObject: stored }));
    assert.equal(result.outcome, 'reject');
    assert.match((result.response as AdmissionReviewResponse).response.status?.message ?? '', /cannot be deleted/);
  });

  it('throws on a malformed AdmissionReview (the server answers 503, failurePolicy Fail applies)', async () => {
    const reader = readerOf([accessRequest()]);
    const route = reviewAdmissionRoute({ readAccessRequest: reader.read, logger: capturingLogger().logger, clock: () => NOW });
    await assert.rejects(route({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'uid-8' } }), /^Error: malformed AdmissionReview: request\.kind: /);
    await assert.rejects(route('not a review'), /malformed AdmissionReview: expected an AdmissionReview object, got "not a review"/);
    assert.deepEqual(reader.asked, []);
  });

  it('throws when the AccessRequest cannot be read (never admits without it)', async () => {
    const failing: AccessRequestReader = () => Promise.reject(new Error('connect ECONNREFUSED 10.96.0.1:443'));
    const route = reviewAdmissionRoute({ readAccessRequest: failing, logger: capturingLogger().logger, clock: () => NOW });
    await assert.rejects(route(admission('uid-9', ALICE)), /ECONNREFUSED/);
  });
});

// ---- over HTTPS, next to the pod injector ------------------------------------------------------

const SERVER_NAME = 'custos-webhook.custos-system.svc';

interface RawResponse { readonly status: number; readonly body: string }

function post(server: WebhookServer, ca: string, path: string, body: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${server.url}${path}`, {
      method: 'POST', ca, servername: SERVER_NAME, agent: false, headers: { 'content-type': 'application/json' },
    }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: text }); });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('startWebhookServer with the AccessReview route', () => {
  let ca: CertificateAuthority;
  let server: WebhookServer;
  let registry: Registry;
  let logs: () => string;
  const BROKEN_PATH = '/admit/broken';
  const HANGING_PATH = '/admit/hanging';

  before(async () => {
    ca = await createCertificateAuthority({ commonName: 'custos-test-ca', now: new Date(), validityMs: DAY_MS });
    const leaf = await issueServingCertificate(ca, { names: [SERVER_NAME, '127.0.0.1'], now: new Date(), lifetimeMs: DAY_MS });
    const certificates: CertificateSource = { current: () => leaf, onChange: () => () => undefined };
    const captured = capturingLogger();
    logs = captured.text;
    registry = new Registry();
    const failing: AccessRequestReader = (_namespace, name) => (name === 'ar-unreadable000'
      ? Promise.reject(new Error('connect ECONNREFUSED 10.96.0.1:443'))
      : readerOf([accessRequest()]).read('payments', name));
    const broken: AdmissionRoute = () => Promise.reject(new Error('the route failed on purpose'));
    server = await startWebhookServer({
      host: '127.0.0.1', port: 0, certificates, registry, logger: captured.logger, settings: DEFAULT_INJECTION_SETTINGS,
      context: { namespace: () => Promise.resolve(undefined), policies: () => Promise.resolve([]) },
      routes: {
        [ADMIT_REVIEWS_PATH]: reviewAdmissionRoute({ readAccessRequest: failing, logger: captured.logger, clock: () => NOW }),
        [BROKEN_PATH]: broken,
        // A route that never answers (a hung API server read): the server must still answer in time.
        [HANGING_PATH]: () => new Promise(() => undefined),
      },
      decisionTimeoutMs: 1000,
    });
  });

  after(async () => {
    await server.close(100);
  });

  it('answers a POST to /admit/accessreviews with the route\'s AdmissionReview', async () => {
    const answer = await post(server, ca.certPem, ADMIT_REVIEWS_PATH, JSON.stringify(admission('uid-h1', ALICE)));
    assert.equal(answer.status, 200);
    const review = JSON.parse(answer.body) as AdmissionReviewResponse;
    assert.equal(review.apiVersion, 'admission.k8s.io/v1');
    assert.equal(review.kind, 'AdmissionReview');
    assert.equal(review.response.uid, 'uid-h1');
    assert.equal(review.response.allowed, true);
    assert.deepEqual(decodedPatch(review), [{ op: 'add', path: '/spec/reviewer', value: ALICE }]);

    const refused = await post(server, ca.certPem, ADMIT_REVIEWS_PATH, JSON.stringify(admission('uid-h2', MALLORY)));
    assert.equal(refused.status, 200, 'a refusal is an answer, not a failed call');
    const refusal = JSON.parse(refused.body) as AdmissionReviewResponse;
    assert.equal(refusal.response.allowed, false);
    assert.equal(refusal.response.status?.code, 403);
  });

  it('answers 404 on an unknown path, listing both served paths', async () => {
    const answer = await post(server, ca.certPem, '/admit/accessrequests', JSON.stringify(admission('uid-h3', ALICE)));
    assert.equal(answer.status, 404);
    const status = JSON.parse(answer.body) as { kind: string; code: number; reason: string; message: string };
    assert.deepEqual([status.kind, status.code, status.reason], ['Status', 404, 'NotFound']);
    assert.match(status.message, /^no handler for \/admit\/accessrequests; the webhook serves POST /);
    assert.ok(status.message.includes(MUTATE_PODS_PATH), status.message);
    assert.ok(status.message.includes(ADMIT_REVIEWS_PATH), status.message);
  });

  it('answers 503 with a Status body when a route throws', async () => {
    const answer = await post(server, ca.certPem, BROKEN_PATH, '{}');
    assert.equal(answer.status, 503);
    assert.deepEqual(JSON.parse(answer.body), {
      message: 'custos webhook cannot decide: the route failed on purpose',
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'ServiceUnavailable', code: 503,
    });
  });

  it('answers 504 within its decision budget when a route does not answer', async () => {
    const started = Date.now();
    const answer = await post(server, ca.certPem, HANGING_PATH, '{}');
    assert.equal(answer.status, 504);
    assert.match(answer.body, /no decision within 1000 ms/);
    assert.ok(Date.now() - started < 5000, 'answered well before the API server would give up');
  });

  it('answers 503 to a malformed AdmissionReview and when the AccessRequest cannot be read', async () => {
    const malformed = await post(server, ca.certPem, ADMIT_REVIEWS_PATH, JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }));
    assert.equal(malformed.status, 503);
    assert.match((JSON.parse(malformed.body) as { message: string }).message, /^custos webhook cannot decide: malformed AdmissionReview: request: required object is missing$/);
    const unreadable = await post(server, ca.certPem, ADMIT_REVIEWS_PATH, JSON.stringify(admission('uid-h4', ALICE, { requestName: 'ar-unreadable000' })));
    assert.equal(unreadable.status, 503);
    assert.match((JSON.parse(unreadable.body) as { message: string }).message, /ECONNREFUSED/);
    assert.match(logs(), /admission failed; the API server applies the failurePolicy/);
  });

  it('still serves the pod injector on its own path', async () => {
    const answer = await post(server, ca.certPem, MUTATE_PODS_PATH, JSON.stringify(admission('uid-h5', ALICE)));
    // An AccessReview sent to the pod path is not a pod review: refused by the pod codec, not routed.
    assert.equal(answer.status, 400);
    assert.match(answer.body, /this webhook admits core\/v1 Pod only/);
  });

  it('labels the route\'s outcomes in custos_admission_duration_seconds', async () => {
    const text = await registry.metrics();
    assert.match(text, /custos_admission_duration_seconds_count\{result="patch"\} [1-9]/);
    assert.match(text, /custos_admission_duration_seconds_count\{result="reject"\} [1-9]/);
    assert.match(text, /custos_admission_duration_seconds_count\{result="error"\} [1-9]/);
  });
});
