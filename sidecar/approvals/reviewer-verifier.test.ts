import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { createLocalJWKSet } from 'jose';
import type { ReviewerAuthentication } from '../../policy/approvals/approval-types.ts';
import { createLocalIssuer, mintKubernetesToken, type LocalIssuer } from '../identity/local-issuer.ts';
import type { TokenKeySource } from '../identity/token-verifier.ts';
import { ReviewerVerifier } from './reviewer-verifier.ts';

const ISSUER = 'https://reviewers.example';
const AUDIENCE = 'custos-reviewers';
const NOW = Date.parse('2026-01-01T10:00:00.000Z');
const NOW_S = NOW / 1000;

let issuer: LocalIssuer;
let verifier: ReviewerVerifier;

function auth(overrides: Partial<ReviewerAuthentication> = {}): ReviewerAuthentication {
  return { issuer: ISSUER, audience: AUDIENCE, jwksFile: '/unused', usernameClaim: 'email', groupsClaim: 'groups', maxTokenAgeSeconds: 600, ...overrides };
}

before(async () => {
  issuer = await createLocalIssuer({ issuer: ISSUER, alg: 'ES256', clock: () => NOW });
  const keys: TokenKeySource = { issuer: ISSUER, getKey: createLocalJWKSet(issuer.jwks()) };
  verifier = new ReviewerVerifier(auth(), { keys });
});

describe('ReviewerVerifier', () => {
  it('names the reviewer from the configured claims, with iss#sub as the stable id', async () => {
    const token = await issuer.mint({ email: 'dana@example.com', groups: ['dba', 7, 'ops'] }, { audience: AUDIENCE, subject: 'u-123' });
    assert.deepEqual(await verifier.verify(token, new Date(NOW + 60_000)), {
      username: 'dana@example.com', groups: ['dba', 'ops'], id: `${ISSUER}#u-123`, via: 'oidc',
    });
  });

  it('falls back to sub when the user-name claim is missing', async () => {
    const token = await issuer.mint({ groups: ['dba'] }, { audience: AUDIENCE, subject: 'u-9' });
    assert.equal((await verifier.verify(token, new Date(NOW))).username, 'u-9');
  });

  it('keeps a service-account token a service account, whatever claims it adds', async () => {
    const token = await mintKubernetesToken(issuer, { namespace: 'custos', serviceAccount: 'operator', audience: AUDIENCE, claims: { email: 'dba-lead@example.com', groups: ['dba'] } });
    const reviewer = await verifier.verify(token, new Date(NOW));
    assert.equal(reviewer.username, 'system:serviceaccount:custos:operator');
    assert.deepEqual(reviewer.groups, []);
  });

  it('verifies as of the review time: valid then, even if expired now', async () => {
    const token = await issuer.mint({ email: 'dana@example.com' }, { audience: AUDIENCE, subject: 'dana', expiresInSeconds: 300 });
    await verifier.verify(token, new Date(NOW + 120_000));
    await assert.rejects(verifier.verify(token, new Date(NOW + 400_000)), { reason: 'expired' });
  });

  const refusals: [string, () => Promise<string>, number, string][] = [
    ['a token older than the maximum age at review time', () => issuer.mint({}, { audience: AUDIENCE, subject: 's', issuedAt: NOW_S - 900, expiresInSeconds: 3600 }), NOW, 'too-old'],
    ['a token minted after the claimed review time (backdated review)', () => issuer.mint({}, { audience: AUDIENCE, subject: 's', issuedAt: NOW_S + 300 }), NOW, 'issued-in-future'],
    ['another audience', () => issuer.mint({}, { audience: 'custos', subject: 's' }), NOW, 'wrong-audience'],
    ['another issuer', async () => (await createLocalIssuer({ issuer: 'https://other.example', clock: () => NOW })).mint({}, { audience: AUDIENCE, subject: 's' }), NOW, 'unknown-issuer'],
    ['a key the issuer never published', async () => (await createLocalIssuer({ issuer: ISSUER, alg: 'ES256', kid: issuer.kid, clock: () => NOW })).mint({}, { audience: AUDIENCE, subject: 's' }), NOW, 'bad-signature'],
  ];
  for (const [name, mint, at, reason] of refusals) {
    it(`refuses ${name}`, async () => {
      await assert.rejects(verifier.verify(await mint(), new Date(at)), { reason });
    });
  }
});
