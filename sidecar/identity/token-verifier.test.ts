// The verifier checklist of reference/identity-and-audit.md §3, row by row (row numbers in names).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, createPublicKey, sign as nodeSign, constants, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportPKCS8, exportSPKI, type JWK } from 'jose';
import { isCustosError } from '../../lib/errors.ts';
import { IssuerKeys } from './issuer-keys.ts';
import { createLocalIssuer, encodeSegment, mintKubernetesToken, signCompact, type LocalIssuer } from './local-issuer.ts';
import {
  createTokenVerifier, ERR_AUTH_TOKEN_INVALID, ERR_AUTH_TOKEN_REJECTED, MAX_TOKEN_BYTES, TokenVerificationError,
  type TokenKind, type TokenVerifier,
} from './token-verifier.ts';

const ISS = 'https://kubernetes.default.svc.cluster.local';
const IDP = 'https://idp.example.com/tenant-a';
const T0 = Date.UTC(2025, 5, 6, 12, 0, 0);
const NOW = T0 / 1000;

interface Fixture {
  clock: { now: number };
  verifier: TokenVerifier;
  keys: IssuerKeys;
  fetches: () => number;
  /** Replace what the JWKS endpoint serves. */
  serve: (jwks: { keys: JWK[] }) => void;
}

let rsa: LocalIssuer;
let ec: LocalIssuer;
let attacker: LocalIssuer;
let idp: LocalIssuer;
let rotated: LocalIssuer;

function jsonResponse(body: unknown): Response {
  return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
}

async function makeFixture(options: { maxTokenAgeSeconds?: number; typ?: string } = {}): Promise<Fixture> {
  const clock = { now: T0 };
  let served: { keys: JWK[] } = { keys: [rsa.publicJwk, ec.publicJwk] };
  let fetches = 0;
  const keys = new IssuerKeys({
    issuer: ISS,
    source: { kind: 'url', url: 'https://kubernetes.default.svc/openid/v1/jwks' },
    clock: () => clock.now,
    fetch: () => { fetches += 1; return Promise.resolve(jsonResponse(served)); },
  });
  assert.equal(await keys.refresh('initial'), 'updated');
  const idpKeys = new IssuerKeys({
    issuer: IDP,
    source: { kind: 'url', url: 'https://idp.example.com/jwks' },
    clock: () => clock.now,
    fetch: () => Promise.resolve(jsonResponse(idp.jwks())),
  });
  await idpKeys.refresh('initial');
  const verifier = createTokenVerifier({
    clock: () => clock.now,
    issuers: [
      { issuer: ISS, audience: 'custos', keys, ...(options.maxTokenAgeSeconds === undefined ? {} : { maxTokenAgeSeconds: options.maxTokenAgeSeconds }) },
      { issuer: IDP, audience: 'custos-db', keys: idpKeys, ...(options.typ === undefined ? {} : { typ: options.typ }) },
    ],
  });
  return { clock, verifier, keys, fetches: () => fetches, serve: (jwks) => { served = jwks; } };
}

/** A valid projected-token payload at T0, for tests that forge around it. */
function k8sPayload(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: ISS, aud: ['custos'], sub: 'system:serviceaccount:payments:reporter',
    iat: NOW, nbf: NOW, exp: NOW + 3600, jti: randomUUID(),
    'kubernetes.io': {
      namespace: 'payments',
      serviceaccount: { name: 'reporter', uid: 'e6a8-sa' },
      pod: { name: 'reporter-7c9f', uid: '0d8b-pod' },
      node: { name: 'worker-3', uid: '517e-node' },
    },
    ...overrides,
  };
}

async function forge(issuer: LocalIssuer, header: Record<string, unknown>, payload: unknown): Promise<string> {
  return signCompact(encodeSegment({ alg: issuer.alg, kid: issuer.kid, ...header }), encodeSegment(payload), issuer.privateKey, issuer.alg);
}

async function expectReject(
  fixture: Fixture, raw: string, code: string, reason: string, kind: TokenKind = 'caller',
): Promise<TokenVerificationError> {
  let caught: unknown;
  try {
    await fixture.verifier.verify(raw, kind);
  } catch (error: unknown) {
    caught = error;
  }
  assert.ok(caught instanceof TokenVerificationError, `expected a TokenVerificationError, got ${String(caught)}`);
  assert.ok(isCustosError(caught, code), `expected ${code}/${reason}, got ${caught.code}/${caught.reason}: ${caught.message}`);
  assert.equal(caught.reason, reason, caught.message);
  // The message goes to logs and the client: never the token or any of its segments.
  for (const segment of raw.split('.').filter((part) => part.length > 8)) assert.ok(!caught.message.includes(segment));
  assert.match(caught.message, /^[\x20-\x7e…]*$/);
  assert.ok(caught.message.length < 200);
  return caught;
}

describe('createTokenVerifier', () => {
  let fixture: Fixture;

  before(async () => {
    [rsa, ec, attacker, idp, rotated] = await Promise.all([
      createLocalIssuer({ issuer: ISS, alg: 'RS256', kid: 'rsa-1', clock: () => T0 }),
      createLocalIssuer({ issuer: ISS, alg: 'ES256', kid: 'ec-1', clock: () => T0 }),
      createLocalIssuer({ issuer: ISS, alg: 'RS256', kid: 'attacker', clock: () => T0 }),
      createLocalIssuer({ issuer: IDP, alg: 'ES256', kid: 'idp-1', clock: () => T0 }),
      createLocalIssuer({ issuer: ISS, alg: 'RS256', kid: 'rsa-2', clock: () => T0 }),
    ]);
    fixture = await makeFixture();
  });

  describe('valid tokens', () => {
    it('returns a k8s-sa principal with the kubernetes attributes when a projected token verifies', async () => {
      const raw = await mintKubernetesToken(rsa, { namespace: 'payments', serviceAccount: 'reporter', serviceAccountUid: 'sa-uid', podName: 'reporter-1', podUid: 'pod-uid', nodeName: 'worker-9' });
      const principal = await fixture.verifier.verify(raw, 'workload');
      assert.deepEqual(
        { kind: principal.kind, authMethod: principal.authMethod, issuer: principal.issuer, subject: principal.subject, kubernetes: principal.kubernetes, expiresAt: principal.expiresAt },
        {
          kind: 'workload', authMethod: 'k8s-sa', issuer: ISS, subject: 'system:serviceaccount:payments:reporter',
          kubernetes: { namespace: 'payments', serviceAccount: 'reporter', serviceAccountUid: 'sa-uid', podName: 'reporter-1', podUid: 'pod-uid', nodeName: 'worker-9' },
          expiresAt: NOW + 3600,
        },
      );
      assert.ok(Object.isFrozen(principal.claims));
    });

    it('returns an oidc principal without kubernetes attributes when an IdP token verifies', async () => {
      const raw = await idp.mint({ ci_run: '42' }, { audience: 'custos-db', subject: 'repo:acme/app:ref:refs/heads/main' });
      const principal = await fixture.verifier.verify(raw, 'caller');
      assert.equal(principal.authMethod, 'oidc');
      assert.equal(principal.kind, 'caller');
      assert.equal(principal.kubernetes, undefined);
      assert.equal(principal.claims['ci_run'], '42');
    });

    it('accepts an ES256 token when its kid names the EC key', async () => {
      const raw = await mintKubernetesToken(ec, { namespace: 'payments', serviceAccount: 'reporter' });
      assert.equal((await fixture.verifier.verify(raw, 'caller')).authMethod, 'k8s-sa');
    });
  });

  describe('algorithm attacks (rows 1-4)', () => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      it(`rejects alg "${alg}" when the signature is empty (row 1-2)`, async () => {
        const raw = `${encodeSegment({ alg, typ: 'JWT' })}.${encodeSegment(k8sPayload())}.`;
        await expectReject(fixture, raw, ERR_AUTH_TOKEN_INVALID, 'malformed');
      });
      it(`rejects alg "${alg}" when a signature segment is present (row 1-2)`, async () => {
        const raw = `${encodeSegment({ alg, typ: 'JWT' })}.${encodeSegment(k8sPayload())}.AAAA`;
        await expectReject(fixture, raw, ERR_AUTH_TOKEN_INVALID, 'alg-not-allowed');
      });
    }

    it('rejects HS256 tokens keyed with the RSA public key as PEM, DER or JWK n (row 3)', async () => {
      const pem = await exportSPKI(rsa.publicKey);
      const der = createPublicKey(pem).export({ type: 'spki', format: 'der' });
      const n = Buffer.from(rsa.publicJwk.n ?? '', 'base64url');
      for (const secret of [Buffer.from(pem), Buffer.from(`${pem}\n`), der, n, Buffer.from(rsa.publicJwk.n ?? '')]) {
        const input = `${encodeSegment({ alg: 'HS256', kid: rsa.kid })}.${encodeSegment(k8sPayload())}`;
        const raw = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
        await expectReject(fixture, raw, ERR_AUTH_TOKEN_INVALID, 'alg-not-allowed');
      }
    });

    it('rejects ES256 with the RSA key\'s kid (row 4)', async () => {
      const raw = await forge(ec, { kid: rsa.kid }, k8sPayload());
      await expectReject(fixture, raw, ERR_AUTH_TOKEN_INVALID, 'unknown-kid');
    });

    it('rejects a PS256 token signed by the trusted RSA key when only RS256/ES256 are allowed (row 4)', async () => {
      const key = createPrivateKey(await exportPKCS8(rsa.privateKey));
      const input = `${encodeSegment({ alg: 'PS256', kid: rsa.kid })}.${encodeSegment(k8sPayload())}`;
      const signature = nodeSign('sha256', Buffer.from(input), { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
      await expectReject(fixture, `${input}.${signature.toString('base64url')}`, ERR_AUTH_TOKEN_INVALID, 'alg-not-allowed');
    });

    for (const algorithms of [['HS256'], ['RS256', 'none'], [], ['RS256', 'HS512']]) {
      it(`refuses an issuer configured with algorithms ${JSON.stringify(algorithms)}`, () => {
        assert.throws(
          () => createTokenVerifier({ issuers: [{ issuer: ISS, audience: 'custos', algorithms, keys: fixture.keys }] }),
          (error: unknown) => isCustosError(error, 'ERR_CONFIG_INVALID'),
        );
      });
    }

    it('refuses a key set that belongs to another issuer, and an issuer configured twice', () => {
      assert.throws(() => createTokenVerifier({ issuers: [{ issuer: IDP, audience: 'custos', keys: fixture.keys }] }), /one key set per issuer/);
      assert.throws(() => createTokenVerifier({ issuers: [{ issuer: ISS, audience: 'a', keys: fixture.keys }, { issuer: ISS, audience: 'b', keys: fixture.keys }] }), /twice/);
    });
  });

  describe('header-borne keys (rows 5-6)', () => {
    let server: Server;
    let attackerHits = 0;
    let attackerUrl = '';

    before(async () => {
      server = createServer((request, response) => {
        attackerHits += 1;
        request.resume();
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify(attacker.jwks()));
      });
      await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve); });
      attackerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => { server.closeAllConnections(); await new Promise((resolve) => { server.close(resolve); }); });

    const cases: Array<[string, (url: string) => Record<string, unknown>]> = [
      ['jku', (url) => ({ jku: `${url}/jwks.json` })],
      ['x5u', (url) => ({ x5u: `${url}/cert.pem` })],
      ['x5c', () => ({ x5c: [Buffer.from('attacker certificate').toString('base64')] })],
      ['embedded jwk', () => ({ jwk: attacker.publicJwk })],
      ['jku + embedded jwk + the trusted kid', (url) => ({ kid: rsa.kid, jku: `${url}/jwks.json`, jwk: attacker.publicJwk })],
    ];
    for (const [name, header] of cases) {
      it(`rejects an attacker-signed token carrying ${name} and never contacts the attacker`, async () => {
        const local = await makeFixture();
        const raw = await forge(attacker, header(attackerUrl), k8sPayload());
        const reason = name.includes('trusted kid') ? 'bad-signature' : 'unknown-kid';
        await expectReject(local, raw, ERR_AUTH_TOKEN_INVALID, reason);
        assert.equal(attackerHits, 0);
        // Only the configured JWKS may be fetched (one unknown-kid refresh at most).
        assert.ok(local.fetches() <= 2);
      });
    }

    it('rejects an attacker token re-using the trusted kid with a bad-signature reason (row 5)', async () => {
      const raw = await forge(attacker, { kid: rsa.kid }, k8sPayload());
      await expectReject(fixture, raw, ERR_AUTH_TOKEN_INVALID, 'bad-signature');
      assert.equal(attackerHits, 0);
    });
  });

  describe('hostile kids and floods (rows 7-8)', () => {
    const kids = ['../../../dev/null', "' OR 1=1--", 'line1\r\nINJECTED: yes', '\u001b[31mred\u001b[0m', 'é\u0000\u2028', 'k'.repeat(500)];
    for (const kid of kids) {
      it(`rejects kid ${JSON.stringify(kid.slice(0, 20))} and logs it escaped and truncated`, async () => {
        const local = await makeFixture();
        const raw = await forge(rsa, { kid }, k8sPayload());
        const error = await expectReject(local, raw, ERR_AUTH_TOKEN_INVALID, 'unknown-kid');
        assert.ok(!error.message.includes('\r') && !error.message.includes('\n') && !error.message.includes('\u001b'));
        assert.ok(!error.message.includes('k'.repeat(65)));
      });
    }

    it('rejects a 10 KB kid before jose as too large', async () => {
      await expectReject(fixture, await forge(rsa, { kid: 'k'.repeat(10_000) }, k8sPayload()), ERR_AUTH_TOKEN_INVALID, 'too-large');
    });

    it('refreshes the JWKS at most once per cooldown when flooded with random kids', async () => {
      const local = await makeFixture();
      const before = local.fetches();
      const tokens = await Promise.all(Array.from({ length: 50 }, () => forge(rsa, { kid: randomUUID() }, k8sPayload())));
      const results = await Promise.allSettled(tokens.map((raw) => local.verifier.verify(raw, 'caller')));
      assert.ok(results.every((result) => result.status === 'rejected'));
      for (const raw of tokens.slice(0, 10)) await expectReject(local, raw, ERR_AUTH_TOKEN_INVALID, 'unknown-kid');
      assert.equal(local.fetches() - before, 1);
      local.clock.now += 29_000;
      await expectReject(local, tokens[0] ?? '', ERR_AUTH_TOKEN_INVALID, 'unknown-kid');
      assert.equal(local.fetches() - before, 1);
      local.clock.now += 1_000;
      await expectReject(local, tokens[0] ?? '', ERR_AUTH_TOKEN_INVALID, 'unknown-kid');
      assert.equal(local.fetches() - before, 2);
    });
  });

  describe('time claims (rows 9-13)', () => {
    const table: Array<[string, Record<string, unknown>, string | null]> = [
      ['exp = now - tolerance - 1 s', { exp: NOW - 31 }, 'expired'],
      ['exp = now - tolerance', { exp: NOW - 30 }, 'expired'],
      ['exp = now - tolerance + 1 s', { exp: NOW - 29 }, null],
      ['nbf = now + tolerance + 1 s', { nbf: NOW + 31 }, 'not-yet-valid'],
      ['nbf = now + tolerance - 1 s', { nbf: NOW + 29 }, null],
      ['iat = now + 1 h', { iat: NOW + 3600 }, 'issued-in-future'],
      ['iat = now + tolerance + 1 s', { iat: NOW + 31 }, 'issued-in-future'],
      ['iat = now + tolerance - 1 s', { iat: NOW + 29 }, null],
      ['iat = now - maxTokenAge - tolerance - 1 s', { iat: NOW - 3631, exp: NOW + 60 }, 'too-old'],
      ['iat = now - maxTokenAge - tolerance + 1 s', { iat: NOW - 3629, exp: NOW + 60 }, null],
      ['exp missing', { exp: undefined }, 'missing-claim'],
      ['iat missing', { iat: undefined }, 'missing-claim'],
      ['sub missing', { sub: undefined, 'kubernetes.io': undefined }, 'missing-claim'],
      ['exp a string', { exp: String(NOW + 60) }, 'invalid-claim'],
      ['exp 1e308', { exp: 1e308 }, 'invalid-claim'],
      ['exp negative', { exp: -1 }, 'expired'],
      ['exp null', { exp: null }, 'invalid-claim'],
      ['exp an array', { exp: [NOW + 60] }, 'invalid-claim'],
      ['nbf a string', { nbf: String(NOW) }, 'invalid-claim'],
      ['nbf negative', { nbf: -5 }, 'invalid-claim'],
      ['iat a string', { iat: String(NOW) }, 'invalid-claim'],
      ['iat 1e308', { iat: 1e308 }, 'issued-in-future'],
      ['iat negative', { iat: -1 }, 'too-old'],
      ['iat null', { iat: null }, 'invalid-claim'],
    ];
    for (const [name, overrides, reason] of table) {
      it(`${reason === null ? 'accepts' : `rejects (${reason})`} when ${name}`, async () => {
        const raw = await forge(rsa, {}, k8sPayload(overrides));
        if (reason === null) {
          assert.equal((await fixture.verifier.verify(raw, 'caller')).subject, 'system:serviceaccount:payments:reporter');
        } else {
          await expectReject(fixture, raw, ERR_AUTH_TOKEN_INVALID, reason);
        }
      });
    }
  });

  describe('Kubernetes token types (rows 14-15, 19)', () => {
    it('rejects the one-year extended token on maxTokenAge once it is an hour old (row 14)', async () => {
      const raw = await mintKubernetesToken(rsa, { namespace: 'payments', serviceAccount: 'reporter', extended: true, issuedAt: NOW - 7200 });
      await expectReject(fixture, raw, ERR_AUTH_TOKEN_INVALID, 'too-old');
    });

    it('rejects the extended token on warnafter even when maxTokenAge would allow it (row 14)', async () => {
      const lenient = await makeFixture({ maxTokenAgeSeconds: 86_400 });
      const raw = await mintKubernetesToken(rsa, { namespace: 'payments', serviceAccount: 'reporter', extended: true, issuedAt: NOW - 3700 });
      await expectReject(lenient, raw, ERR_AUTH_TOKEN_REJECTED, 'extended-token');
      const young = await mintKubernetesToken(rsa, { namespace: 'payments', serviceAccount: 'reporter', extended: true, issuedAt: NOW - 3000 });
      assert.equal((await lenient.verifier.verify(young, 'workload')).kubernetes?.serviceAccount, 'reporter');
    });

    it('rejects a legacy Secret token (row 15)', async () => {
      const raw = await forge(rsa, {}, {
        iss: 'kubernetes/serviceaccount', sub: 'system:serviceaccount:payments:reporter',
        'kubernetes.io/serviceaccount/namespace': 'payments', 'kubernetes.io/serviceaccount/service-account.name': 'reporter',
      });
      await expectReject(fixture, raw, ERR_AUTH_TOKEN_REJECTED, 'unknown-issuer');
    });

    const subjects: Array<[string, Record<string, unknown>, string, string]> = [
      ['sub names another namespace', { sub: 'system:serviceaccount:kube-system:reporter' }, ERR_AUTH_TOKEN_INVALID, 'sub-mismatch'],
      ['sub names another service account', { sub: 'system:serviceaccount:payments:admin' }, ERR_AUTH_TOKEN_INVALID, 'sub-mismatch'],
      ['sub is a node identity', { sub: 'system:node:worker-3' }, ERR_AUTH_TOKEN_INVALID, 'sub-mismatch'],
      ['sub is missing', { sub: undefined }, ERR_AUTH_TOKEN_INVALID, 'missing-claim'],
      ['sub is a number', { sub: 7 }, ERR_AUTH_TOKEN_INVALID, 'invalid-claim'],
      ['namespace contains a colon', { sub: 'system:serviceaccount:a:b:reporter', 'kubernetes.io': { namespace: 'a:b', serviceaccount: { name: 'reporter' } } }, ERR_AUTH_TOKEN_INVALID, 'invalid-claim'],
      ['kubernetes.io is a string', { 'kubernetes.io': 'payments' }, ERR_AUTH_TOKEN_INVALID, 'invalid-claim'],
      ['serviceaccount is missing', { 'kubernetes.io': { namespace: 'payments' } }, ERR_AUTH_TOKEN_INVALID, 'invalid-claim'],
      ['pod uid is a number', { 'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'reporter' }, pod: { name: 'p', uid: 5 } } }, ERR_AUTH_TOKEN_INVALID, 'invalid-claim'],
      ['warnafter is a string', { 'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'reporter' }, warnafter: 'soon' } }, ERR_AUTH_TOKEN_INVALID, 'invalid-claim'],
    ];
    for (const [name, overrides, code, reason] of subjects) {
      it(`rejects (${reason}) when ${name} (row 19)`, async () => {
        await expectReject(fixture, await forge(rsa, {}, k8sPayload(overrides)), code, reason);
      });
    }

    it('rejects a non-Kubernetes token presented as the workload identity', async () => {
      const raw = await idp.mint({}, { audience: 'custos-db', subject: 'system:serviceaccount:payments:reporter' });
      await expectReject(fixture, raw, ERR_AUTH_TOKEN_REJECTED, 'not-a-workload-token', 'workload');
      assert.equal((await fixture.verifier.verify(raw, 'caller')).kubernetes, undefined);
    });
  });

  describe('issuer and audience (rows 16-18, 29-30)', () => {
    const issuers = [
      ['another cluster', 'https://kubernetes.default.svc.cluster.other'],
      ['trailing slash', `${ISS}/`],
      ['different case', ISS.toUpperCase()],
      ['http', ISS.replace('https:', 'http:')],
      ['a number', 42],
      ['missing', undefined],
    ] as const;
    for (const [name, iss] of issuers) {
      it(`rejects iss that is ${name} (row 16)`, async () => {
        await expectReject(fixture, await forge(rsa, {}, k8sPayload({ iss })), ERR_AUTH_TOKEN_REJECTED, 'unknown-issuer');
      });
    }

    it('rejects a token naming the IdP issuer but signed with the cluster key (row 16, 29)', async () => {
      await expectReject(fixture, await forge(rsa, {}, k8sPayload({ iss: IDP, aud: 'custos-db' })), ERR_AUTH_TOKEN_INVALID, 'unknown-kid');
    });

    it('rejects a token from another cluster that shares the signing key (row 29)', async () => {
      const raw = await forge(rsa, {}, k8sPayload({ iss: 'https://oidc.eks.eu-west-1.amazonaws.com/id/OTHER' }));
      await expectReject(fixture, raw, ERR_AUTH_TOKEN_REJECTED, 'unknown-issuer');
    });

    const audiences: Array<[string, unknown, string | null]> = [
      ['the API-server default', ['https://kubernetes.default.svc.cluster.local'], 'wrong-audience'],
      ['missing', undefined, 'wrong-audience'],
      ['an empty array', [], 'wrong-audience'],
      ['a number', 5, 'wrong-audience'],
      ['custos plus a number', ['custos', 5], 'wrong-audience'],
      ['a different case', 'Custos', 'wrong-audience'],
      ['custos as a string', 'custos', null],
      ['[custos, other] (multi-audience is left to policy)', ['custos', 'other'], null],
    ];
    for (const [name, aud, reason] of audiences) {
      it(`${reason === null ? 'accepts' : 'rejects'} aud ${name} (row 17-18)`, async () => {
        const raw = await forge(rsa, {}, k8sPayload({ aud }));
        if (reason === null) {
          assert.deepEqual((await fixture.verifier.verify(raw, 'caller')).claims['aud'], aud);
        } else {
          await expectReject(fixture, raw, ERR_AUTH_TOKEN_REJECTED, reason);
        }
      });
    }

    it('rejects an IdP ID token when an access-token typ is pinned (row 30)', async () => {
      const pinned = await makeFixture({ typ: 'at+jwt' });
      const idToken = await idp.mint({}, { audience: 'custos-db', subject: 'alice', header: { typ: 'JWT' } });
      await expectReject(pinned, idToken, ERR_AUTH_TOKEN_REJECTED, 'wrong-type');
      const accessToken = await idp.mint({}, { audience: 'custos-db', subject: 'alice', header: { typ: 'at+jwt' } });
      assert.equal((await pinned.verifier.verify(accessToken, 'caller')).subject, 'alice');
      const clientAudience = await idp.mint({}, { audience: 'ci-client-id', subject: 'alice', header: { typ: 'at+jwt' } });
      await expectReject(pinned, clientAudience, ERR_AUTH_TOKEN_REJECTED, 'wrong-audience');
    });
  });

  describe('header extensions (row 20)', () => {
    const table: Array<[string, Record<string, unknown>, string]> = [
      ['crit ["exp"]', { crit: ['exp'], exp: NOW + 60 }, 'unsupported-header'],
      ['crit ["x-unknown"]', { crit: ['x-unknown'], 'x-unknown': 1 }, 'unsupported-header'],
      ['crit []', { crit: [] }, 'malformed'],
      ['crit a string', { crit: 'b64' }, 'malformed'],
      ['b64 false with crit', { b64: false, crit: ['b64'] }, 'malformed'],
    ];
    for (const [name, header, reason] of table) {
      it(`rejects ${name}`, async () => {
        await expectReject(fixture, await forge(rsa, header, k8sPayload()), ERR_AUTH_TOKEN_INVALID, reason);
      });
    }
  });

  describe('structure before jose (rows 21-23)', () => {
    let valid = '';
    before(async () => { valid = await forge(rsa, {}, k8sPayload()); });

    it('rejects an empty or missing token as missing', async () => {
      await expectReject(fixture, '', ERR_AUTH_TOKEN_REJECTED, 'missing-token');
    });

    it('rejects 8 KiB + 1 and 1 MiB tokens as too large, and lets an 8 KiB token reach jose', async () => {
      await expectReject(fixture, valid + 'A'.repeat(MAX_TOKEN_BYTES + 1 - valid.length), ERR_AUTH_TOKEN_INVALID, 'too-large');
      await expectReject(fixture, valid + 'A'.repeat(1024 * 1024), ERR_AUTH_TOKEN_INVALID, 'too-large');
      await expectReject(fixture, valid + 'A'.repeat(MAX_TOKEN_BYTES - valid.length), ERR_AUTH_TOKEN_INVALID, 'bad-signature');
    });

    it('rejects a payload nested 10 000 deep as too large', async () => {
      const nested = `{"iss":"${ISS}","x":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
      await expectReject(fixture, await forge(rsa, {}, nested), ERR_AUTH_TOKEN_INVALID, 'too-large');
    });

    const shapes: Array<[string, (raw: string) => string]> = [
      ['4 segments', (raw) => `${raw}.AAAA`],
      ['5 segments (JWE)', (raw) => `${raw}.AAAA.BBBB`],
      ['2 segments', (raw) => raw.slice(0, raw.lastIndexOf('.'))],
      ['an empty header', (raw) => raw.slice(raw.indexOf('.'))],
      ['an empty payload', (raw) => raw.replace(/\.[^.]+\./, '..')],
      ['an empty signature', (raw) => raw.slice(0, raw.lastIndexOf('.') + 1)],
      ['= padding', (raw) => `${raw}==`],
      ['a + character', (raw) => raw.replace('-', '+').replace(/^([^.]*)/, '$1+')],
      ['a / character', (raw) => `${raw.slice(0, 10)}/${raw.slice(11)}`],
      ['a trailing newline', (raw) => `${raw}\n`],
      ['leading whitespace', (raw) => ` ${raw}`],
      ['a space inside', (raw) => `${raw.slice(0, 20)} ${raw.slice(20)}`],
      ['a non-ASCII character', (raw) => `${raw.slice(0, 20)}é${raw.slice(21)}`],
      ['a Bearer prefix', (raw) => `Bearer ${raw}`],
    ];
    for (const [name, mutate] of shapes) {
      it(`rejects a token with ${name} as malformed (row 21-22)`, async () => {
        await expectReject(fixture, mutate(valid), ERR_AUTH_TOKEN_INVALID, 'malformed');
      });
    }

    const payloads: Array<[string, string]> = [
      ['a JSON array', JSON.stringify([k8sPayload()])],
      ['a JSON string', JSON.stringify('hello')],
      ['null', 'null'],
      ['not JSON', '{"iss":'],
    ];
    for (const [name, payload] of payloads) {
      it(`rejects a signed payload that is ${name} (row 22)`, async () => {
        await expectReject(fixture, await forge(rsa, {}, payload), ERR_AUTH_TOKEN_INVALID, 'malformed');
      });
    }

    it('rejects a signed payload that is invalid UTF-8 (row 22)', async () => {
      const payload = Buffer.concat([Buffer.from(`{"iss":"${ISS}","x":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]).toString('base64url');
      const raw = await signCompact(encodeSegment({ alg: 'RS256', kid: rsa.kid }), payload, rsa.privateKey, 'RS256');
      await expectReject(fixture, raw, ERR_AUTH_TOKEN_INVALID, 'malformed');
    });

    it('rejects a payload segment whose length is impossible for base64url', async () => {
      const [h, p, s] = valid.split('.');
      const bad = `${h ?? ''}.${(p ?? '').slice(0, Math.floor((p ?? '').length / 4) * 4)}A.${s ?? ''}`;
      await expectReject(fixture, bad, ERR_AUTH_TOKEN_INVALID, 'malformed');
    });

    it('uses only the payload jose returns when members are duplicated (row 23)', async () => {
      const sub = 'system:serviceaccount:payments:reporter';
      const duplicated = `{"iss":"https://evil.example","sub":"system:serviceaccount:kube-system:admin","aud":"custos","iat":${NOW},"exp":${NOW + 60},"sub":"${sub}","iss":"${ISS}","kubernetes.io":{"namespace":"payments","serviceaccount":{"name":"reporter"}}}`;
      const principal = await fixture.verifier.verify(await forge(rsa, {}, duplicated), 'caller');
      assert.equal(principal.issuer, ISS);
      assert.equal(principal.subject, sub);
      assert.equal(principal.claims['sub'], sub);
      const reversed = duplicated.replace('"iss":"https://evil.example"', `"iss":"${ISS}"`).replace(`"iss":"${ISS}","kubernetes.io"`, '"iss":"https://evil.example","kubernetes.io"');
      await expectReject(fixture, await forge(rsa, {}, reversed), ERR_AUTH_TOKEN_REJECTED, 'unknown-issuer');
    });
  });

  describe('signatures and rotation (rows 24-25)', () => {
    it('rejects a token whose payload was altered after signing (row 24)', async () => {
      const raw = await forge(rsa, {}, k8sPayload());
      const [h, , s] = raw.split('.');
      const altered = `${h ?? ''}.${encodeSegment(k8sPayload({ exp: NOW + 7200 }))}.${s ?? ''}`;
      await expectReject(fixture, altered, ERR_AUTH_TOKEN_INVALID, 'bad-signature');
    });

    it('rejects a flipped signature bit and a truncated signature (row 24)', async () => {
      for (const issuer of [rsa, ec]) {
        const raw = await forge(issuer, {}, k8sPayload());
        const [h, p, s] = raw.split('.') as [string, string, string];
        const bytes = Buffer.from(s, 'base64url');
        bytes[5] = (bytes[5] ?? 0) ^ 0x01;
        await expectReject(fixture, `${h}.${p}.${bytes.toString('base64url')}`, ERR_AUTH_TOKEN_INVALID, 'bad-signature');
        await expectReject(fixture, `${h}.${p}.${s.slice(0, -4)}`, ERR_AUTH_TOKEN_INVALID, 'bad-signature');
      }
    });

    it('rejects ECDSA r = s = 0, a DER signature and a wrong-length signature (row 25)', async () => {
      const input = `${encodeSegment({ alg: 'ES256', kid: ec.kid })}.${encodeSegment(k8sPayload())}`;
      const raw = await signCompact(...(input.split('.') as [string, string]), ec.privateKey, 'ES256');
      const rs = Buffer.from(raw.split('.')[2] ?? '', 'base64url');
      const der = nodeSign('sha256', Buffer.from(input), createPrivateKey(await exportPKCS8(ec.privateKey)));
      for (const signature of [Buffer.alloc(64), der, Buffer.concat([rs, Buffer.from([0])]), rs.subarray(0, 63)]) {
        await expectReject(fixture, `${input}.${signature.toString('base64url')}`, ERR_AUTH_TOKEN_INVALID, 'bad-signature');
      }
    });

    it('accepts a newly rotated kid after exactly one refresh, and rejects a removed key after refresh (row 24)', async () => {
      const local = await makeFixture();
      const fromNewKey = await mintKubernetesToken(rotated, { namespace: 'payments', serviceAccount: 'reporter' });
      const fromOldKey = await mintKubernetesToken(rsa, { namespace: 'payments', serviceAccount: 'reporter' });
      const before = local.fetches();
      await expectReject(local, fromNewKey, ERR_AUTH_TOKEN_INVALID, 'unknown-kid');
      assert.equal(local.fetches() - before, 1);
      local.serve({ keys: [rsa.publicJwk, rotated.publicJwk] });
      local.clock.now += 30_000;
      assert.equal((await local.verifier.verify(fromNewKey, 'caller')).subject, 'system:serviceaccount:payments:reporter');
      assert.equal(local.fetches() - before, 2);
      assert.equal((await local.verifier.verify(fromOldKey, 'caller')).authMethod, 'k8s-sa');
      local.serve({ keys: [rotated.publicJwk] });
      assert.equal(await local.keys.refresh('background'), 'updated');
      await expectReject(local, fromOldKey, ERR_AUTH_TOKEN_INVALID, 'unknown-kid');
      assert.equal((await local.verifier.verify(fromNewKey, 'caller')).authMethod, 'k8s-sa');
    });
  });
});
