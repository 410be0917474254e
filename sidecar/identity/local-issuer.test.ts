import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { validateJwks } from './issuer-keys.ts';
import { createLocalIssuer, mintKubernetesToken } from './local-issuer.ts';

const ISS = 'https://kubernetes.default.svc.cluster.local';
const NOW = 1_717_671_355;

describe('createLocalIssuer', () => {
  for (const alg of ['RS256', 'ES256'] as const) {
    it(`publishes only public ${alg} key material when asked for its JWKS`, async () => {
      const issuer = await createLocalIssuer({ issuer: ISS, alg, kid: 'k1' });
      const [key] = issuer.jwks().keys;
      assert.deepEqual([key?.kid, key?.alg, key?.use, key?.d], ['k1', alg, 'sig', undefined]);
      assert.equal(validateJwks(issuer.jwks()).ok, true);
    });
  }

  it('mints a projected token shaped like the API server\'s when asked for a Kubernetes token', async () => {
    const issuer = await createLocalIssuer({ issuer: ISS, kid: 'k1', clock: () => NOW * 1000 });
    const raw = await mintKubernetesToken(issuer, { namespace: 'payments', serviceAccount: 'reporter', podName: 'reporter-7c9f' });
    assert.deepEqual(decodeProtectedHeader(raw), { alg: 'RS256', kid: 'k1' });
    const claims = decodeJwt(raw);
    assert.deepEqual(
      { iss: claims.iss, aud: claims.aud, sub: claims.sub, iat: claims.iat, nbf: claims.nbf, exp: claims.exp },
      { iss: ISS, aud: ['custos'], sub: 'system:serviceaccount:payments:reporter', iat: NOW, nbf: NOW, exp: NOW + 3600 },
    );
    const k8s = claims['kubernetes.io'] as Record<string, Record<string, unknown>>;
    assert.equal(k8s['pod']?.['name'], 'reporter-7c9f');
    assert.equal(typeof claims.jti, 'string');
  });

  it('mints the one-year extended token with warnafter = iat + 3607 when extended is set', async () => {
    const issuer = await createLocalIssuer({ issuer: ISS, clock: () => NOW * 1000 });
    const claims = decodeJwt(await mintKubernetesToken(issuer, { namespace: 'a', serviceAccount: 'b', extended: true }));
    assert.equal((claims.exp ?? 0) - (claims.iat ?? 0), 31_536_000);
    assert.equal((claims['kubernetes.io'] as { warnafter: number }).warnafter, NOW + 3607);
  });
});
