// The review record the operator relays into Redis for an admitted AccessReview is one the sidecar
// reads and counts with no Kubernetes-specific code: the local-mode record shape, and a token its
// ReviewerVerifier (kind kubernetes-relay) accepts as of the review's creation time, naming the
// reviewer the API server authenticated. The same record moved to another request or statement is
// refused, and a review that never went through an API server is never signed.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import {
  calculateJwkThumbprint, createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type JSONWebKeySet,
} from 'jose';
import type { AccessReview, AccessReviewReviewer } from '../../crds/generated/access-review.ts';
import type { ReviewerAuthentication } from '../../policy/approvals/approval-types.ts';
import { reasonDigest, RELAY_AUDIENCE, RELAY_TOKEN_LIFETIME_SECONDS } from '../../policy/approvals/relay-claims.ts';
import { parseReviewRecord } from '../../sidecar/approvals/approval-records.ts';
import { ReviewerVerifier } from '../../sidecar/approvals/reviewer-verifier.ts';
import { relayRecord, type RelaySigner } from './relay-record.ts';

const ISSUER = 'https://custos-operator.custos-system.svc/reviews';
const REQUEST = 'ar-7k2mq4x6c3ha';
const DIGEST_A = `sha256:${'a'.repeat(64)}`;
const DIGEST_B = `sha256:${'b'.repeat(64)}`;
const CREATED = '2026-11-29T10:10:07Z';
const CREATED_MS = Date.parse(CREATED);
const ALICE: AccessReviewReviewer = { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], uid: 'alice-uid' };

function accessReview(reviewer: AccessReviewReviewer = ALICE, metadata: Partial<AccessReview['metadata']> = {}): AccessReview {
  return {
    apiVersion: 'custos.io/v1alpha1',
    kind: 'AccessReview',
    metadata: { name: `${REQUEST}-x8d2k`, namespace: 'payments', uid: '5b0e8c1e-7d0a-4f57-9d0c-3a1f6b2e4c90', creationTimestamp: CREATED, ...metadata },
    spec: { requestName: REQUEST, decision: 'approve', reason: 'ticket OPS-42: purge of test invoices', commandDigest: DIGEST_A, reviewer },
  };
}

function authentication(): ReviewerAuthentication {
  return {
    kind: 'kubernetes-relay', issuer: ISSUER, audience: RELAY_AUDIENCE, jwksFile: '/unused',
    usernameClaim: 'username', groupsClaim: 'groups', maxTokenAgeSeconds: 600,
  };
}

let signer: RelaySigner;
let verifier: ReviewerVerifier;

/** An ES256 signing key, its kid the RFC 7638 thumbprint, as review-signing-key.ts makes one. */
async function newSigner(): Promise<{ signer: RelaySigner; jwks: JSONWebKeySet }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { signer: { issuer: ISSUER, kid, privateKey, publicKey }, jwks: { keys: [{ ...jwk, kid, alg: 'ES256', use: 'sig' }] } };
}

before(async () => {
  const made = await newSigner();
  signer = made.signer;
  verifier = new ReviewerVerifier(authentication(), { keys: { issuer: ISSUER, getKey: createLocalJWKSet(made.jwks) } });
});

const REASON = 'ticket OPS-42: purge of test invoices';

describe('relayRecord', () => {
  it('writes the local-mode review record: decision, reason, digest, and the API server\'s admission time', async () => {
    const record = parseReviewRecord(await relayRecord(accessReview(), signer));
    assert.equal(record.decision, 'approve');
    assert.equal(record.reason, 'ticket OPS-42: purge of test invoices');
    assert.equal(record.commandDigest, DIGEST_A);
    assert.equal(record.at, CREATED);
    assert.ok(record.token.length > 0);
  });

  it('carries a deny as a deny', async () => {
    const review = accessReview();
    const record = parseReviewRecord(await relayRecord({ ...review, spec: { ...review.spec, decision: 'deny' } }, signer));
    assert.equal(record.decision, 'deny');
  });

  it('signs a token the sidecar verifies as of the review time, naming the reviewer the API server authenticated', async () => {
    const record = parseReviewRecord(await relayRecord(accessReview(), signer));
    const reviewer = await verifier.verify(record.token, new Date(record.at), { request: REQUEST, commandDigest: record.commandDigest, decision: 'approve', reason: REASON });
    assert.deepEqual(reviewer, { username: 'alice@example.com', groups: ['dba', 'system:authenticated'], id: 'alice-uid', via: 'kubernetes' });
  });

  it('names a reviewer without a uid without an id', async () => {
    const record = parseReviewRecord(await relayRecord(accessReview({ username: 'erin@example.com', groups: [] }), signer));
    const reviewer = await verifier.verify(record.token, new Date(record.at), { request: REQUEST, commandDigest: DIGEST_A, decision: 'approve', reason: REASON });
    assert.deepEqual(reviewer, { username: 'erin@example.com', groups: [], via: 'kubernetes' });
  });

  it('binds the token to this AccessReview (jti = its uid), issuer, audience and a short life from the admission time', async () => {
    const record = parseReviewRecord(await relayRecord(accessReview(), signer));
    const header = decodeProtectedHeader(record.token);
    assert.deepEqual(header, { alg: 'ES256', kid: signer.kid, typ: 'JWT' });
    const claims = decodeJwt(record.token);
    assert.equal(claims.jti, '5b0e8c1e-7d0a-4f57-9d0c-3a1f6b2e4c90');
    assert.equal(claims.iss, ISSUER);
    assert.equal(claims.aud, RELAY_AUDIENCE);
    assert.equal(claims.sub, 'alice@example.com');
    assert.equal(claims.iat, CREATED_MS / 1000);
    assert.equal(claims.exp, CREATED_MS / 1000 + RELAY_TOKEN_LIFETIME_SECONDS);
    assert.equal(claims['custos.io/request'], REQUEST);
    assert.equal(claims['custos.io/commandDigest'], DIGEST_A);
    assert.equal(claims['custos.io/decision'], 'approve');
    assert.equal(claims['custos.io/reasonDigest'], reasonDigest(REASON));
  });

  it('is verified as of the review time: the same token checked an hour later has expired', async () => {
    const record = parseReviewRecord(await relayRecord(accessReview(), signer));
    await assert.rejects(verifier.verify(record.token, new Date(CREATED_MS + 3600_000), { request: REQUEST, commandDigest: DIGEST_A, decision: 'approve', reason: REASON }), { reason: 'expired' });
  });

  it('is refused when presented for another request', async () => {
    const record = parseReviewRecord(await relayRecord(accessReview(), signer));
    await assert.rejects(verifier.verify(record.token, new Date(record.at), { request: 'ar-zzzzzzzzzzzz', commandDigest: DIGEST_A, decision: 'approve', reason: REASON }), /issued for another request/);
  });

  it('is refused when presented for another statement (digest)', async () => {
    const record = parseReviewRecord(await relayRecord(accessReview(), signer));
    await assert.rejects(verifier.verify(record.token, new Date(record.at), { request: REQUEST, commandDigest: DIGEST_B, decision: 'approve', reason: REASON }), /issued for another statement/);
  });

  it('is refused when the record beside it is flipped to the other decision, reworded, or moved in time', async () => {
    const record = parseReviewRecord(await relayRecord(accessReview(), signer));
    const at = new Date(record.at);
    await assert.rejects(verifier.verify(record.token, at, { request: REQUEST, commandDigest: DIGEST_A, decision: 'deny', reason: REASON }), /issued for another decision/);
    await assert.rejects(verifier.verify(record.token, at, { request: REQUEST, commandDigest: DIGEST_A, decision: 'approve', reason: 'fine by me' }), /issued for another reason/);
    await assert.rejects(verifier.verify(record.token, new Date(CREATED_MS + 60_000), { request: REQUEST, commandDigest: DIGEST_A, decision: 'approve', reason: REASON }), /issued for another review time/);
  });

  it('is refused when signed by a key the sidecar does not trust', async () => {
    const stranger = await newSigner();
    const record = parseReviewRecord(await relayRecord(accessReview(), { ...stranger.signer, kid: signer.kid }));
    await assert.rejects(verifier.verify(record.token, new Date(record.at), { request: REQUEST, commandDigest: DIGEST_A, decision: 'approve', reason: REASON }), { reason: 'bad-signature' });
  });

  it('refuses to sign a review without a creation time or uid (not admitted by an API server)', async () => {
    const review = accessReview();
    const { creationTimestamp: _created, ...withoutTime } = review.metadata;
    const { uid: _uid, ...withoutUid } = review.metadata;
    await assert.rejects(relayRecord({ ...review, metadata: withoutTime }, signer), /without creationTimestamp or uid was not admitted by an API server/);
    await assert.rejects(relayRecord({ ...review, metadata: withoutUid }, signer), /without creationTimestamp or uid/);
  });
});
