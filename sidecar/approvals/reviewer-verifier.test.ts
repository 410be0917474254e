import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { createLocalJWKSet } from 'jose';
import type { ReviewerAuthentication } from '../../policy/approvals/approval-types.ts';
import { createLocalIssuer, mintKubernetesToken, type LocalIssuer } from '../identity/local-issuer.ts';
import type { TokenKeySource } from '../identity/token-verifier.ts';
import { reasonDigest } from '../../policy/approvals/relay-claims.ts';
import { ReviewerVerifier } from './reviewer-verifier.ts';

const ISSUER = 'https://reviewers.example';
const AUDIENCE = 'custos-reviewers';
const NOW = Date.parse('2026-01-01T10:00:00.000Z');
const NOW_S = NOW / 1000;
const BINDING = { request: 'ar-aaaaaaaaaaaa', commandDigest: `sha256:${'a'.repeat(64)}`, decision: 'approve', reason: 'INC-1' } as const;

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
    assert.deepEqual(await verifier.verify(token, new Date(NOW + 60_000), BINDING), {
      username: 'dana@example.com', groups: ['dba', 'ops'], id: `${ISSUER}#u-123`, via: 'oidc',
    });
  });

  it('falls back to sub when the user-name claim is missing', async () => {
    const token = await issuer.mint({ groups: ['dba'] }, { audience: AUDIENCE, subject: 'u-9' });
    assert.equal((await verifier.verify(token, new Date(NOW), BINDING)).username, 'u-9');
  });

  it('keeps a service-account token a service account, whatever claims it adds', async () => {
    const token = await mintKubernetesToken(issuer, { namespace: 'custos', serviceAccount: 'operator', audience: AUDIENCE, claims: { email: 'dba-lead@example.com', groups: ['dba'] } });
    const reviewer = await verifier.verify(token, new Date(NOW), BINDING);
    assert.equal(reviewer.username, 'system:serviceaccount:custos:operator');
    assert.deepEqual(reviewer.groups, []);
  });

  it('verifies as of the review time: valid then, even if expired now', async () => {
    const token = await issuer.mint({ email: 'dana@example.com' }, { audience: AUDIENCE, subject: 'dana', expiresInSeconds: 300 });
    await verifier.verify(token, new Date(NOW + 120_000), BINDING);
    await assert.rejects(verifier.verify(token, new Date(NOW + 400_000), BINDING), { reason: 'expired' });
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
      await assert.rejects(verifier.verify(await mint(), new Date(at), BINDING), { reason });
    });
  }

  it('holds an OIDC token that names a request or digest to them', async () => {
    const other = await issuer.mint({ email: 'dana@example.com', 'custos.io/request': 'ar-bbbbbbbbbbbb' }, { audience: AUDIENCE, subject: 'dana' });
    await assert.rejects(verifier.verify(other, new Date(NOW), BINDING), /issued for another request/);
    const same = await issuer.mint({ email: 'dana@example.com', 'custos.io/request': BINDING.request, 'custos.io/commandDigest': BINDING.commandDigest }, { audience: AUDIENCE, subject: 'dana' });
    assert.equal((await verifier.verify(same, new Date(NOW), BINDING)).username, 'dana@example.com');
  });
});

describe('ReviewerVerifier, kubernetes-relay (operator-signed reviews)', () => {
  let relay: ReviewerVerifier;
  let operator: LocalIssuer;
  const OPERATOR = 'https://custos-operator.custos-system.svc/reviews';
  before(async () => {
    operator = await createLocalIssuer({ issuer: OPERATOR, alg: 'ES256', clock: () => NOW });
    relay = new ReviewerVerifier(
      auth({ kind: 'kubernetes-relay', issuer: OPERATOR, audience: 'custos.io/reviews', usernameClaim: 'username' }),
      { keys: { issuer: OPERATOR, getKey: createLocalJWKSet(operator.jwks()) } },
    );
  });
  const relayed = (claims: Record<string, unknown>): Promise<string> => operator.mint(
    {
      username: 'alice', groups: ['dba', 'system:authenticated'], uid: 'u-alice', 'custos.io/request': BINDING.request, 'custos.io/commandDigest': BINDING.commandDigest,
      'custos.io/decision': BINDING.decision, 'custos.io/reasonDigest': reasonDigest(BINDING.reason), ...claims,
    },
    { audience: 'custos.io/reviews', subject: 'alice' },
  );

  it('names the reviewer the API server authenticated, as a Kubernetes reviewer with its uid', async () => {
    assert.deepEqual(await relay.verify(await relayed({}), new Date(NOW), BINDING), {
      username: 'alice', groups: ['dba', 'system:authenticated'], id: 'u-alice', via: 'kubernetes',
    });
  });

  const attacks: [string, Record<string, unknown>, RegExp][] = [
    ['moved to another request', { 'custos.io/request': 'ar-cccccccccccc' }, /another request/],
    ['moved to another statement', { 'custos.io/commandDigest': `sha256:${'b'.repeat(64)}` }, /another statement/],
    ['without the request binding', { 'custos.io/request': undefined }, /not bound to a request/],
    ['without the digest binding', { 'custos.io/commandDigest': undefined }, /not bound to a request/],
    ['without the decision binding', { 'custos.io/decision': undefined }, /not bound to a request/],
    ['signed for the other decision', { 'custos.io/decision': 'deny' }, /another decision/],
    ['signed for another reason', { 'custos.io/reasonDigest': reasonDigest('something else') }, /another reason/],
    ['without a reviewer', { username: undefined }, /without a reviewer/],
    ['with groups that are not strings', { groups: ['dba', 1] }, /without a reviewer/],
  ];
  for (const [name, claims, message] of attacks) {
    it(`refuses a relay token ${name}`, async () => {
      await assert.rejects(relay.verify(await relayed(claims), new Date(NOW), BINDING), message);
    });
  }
});
