// The key the operator signs relayed Kubernetes reviews with (docs/adr/0011-kubernetes-approvals.md),
// kept in a Secret of the release namespace so every replica — and the next leader — signs with
// the same key, and sidecars keep verifying reviews across operator restarts. Whoever holds it can
// mint reviews, so it is kept like the webhook's serving key: one Secret, read by name only.
//
// Every replica loads it at start-up: create when absent (a 409 means another replica won the race:
// read theirs). Secret layout (type Opaque): `signing-key.jwk`, the private ES256 JWK with its kid.
// Rotation is not built: a new key needs the old one kept in the JWKS until relayed tokens expire.
import { ApiException, V1ObjectMeta, V1Secret, type CoreV1Api } from '@kubernetes/client-node';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Logger } from 'pino';
import { CustosError } from '../../lib/errors.ts';

export const SIGNING_KEY_SECRET_KEY = 'signing-key.jwk';
const ALGORITHM = 'ES256';

export interface ReviewSigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  /** The public JWKS (JSON text) sidecars verify relayed reviews with. */
  readonly jwks: string;
}

export interface ReviewSigningKeyOptions {
  readonly core: CoreV1Api;
  readonly namespace: string;
  readonly secretName: string;
  readonly logger: Pick<Logger, 'info'>;
}

function statusOf(e: unknown): number | undefined {
  return e instanceof ApiException ? e.code : undefined;
}

export async function loadReviewSigningKey(options: ReviewSigningKeyOptions): Promise<ReviewSigningKey> {
  const { core, namespace, secretName: name } = options;
  for (let attempt = 0; attempt < 3; attempt++) {
    let secret: V1Secret | undefined;
    try {
      secret = await core.readNamespacedSecret({ namespace, name });
    } catch (e: unknown) {
      if (statusOf(e) !== 404) throw e;
    }
    if (secret !== undefined) return parseSigningKey(secret, `${namespace}/${name}`);
    const { privateKey } = await generateKeyPair(ALGORITHM, { extractable: true });
    const jwk = await exportJWK(privateKey);
    const kid = await calculateJwkThumbprint(jwk);
    try {
      const metadata = new V1ObjectMeta();
      metadata.name = name;
      metadata.namespace = namespace;
      metadata.labels = { 'app.kubernetes.io/part-of': 'custos', 'app.kubernetes.io/component': 'review-signing-key' };
      const body = new V1Secret();
      body.apiVersion = 'v1';
      body.kind = 'Secret';
      body.type = 'Opaque';
      body.metadata = metadata;
      body.data = { [SIGNING_KEY_SECRET_KEY]: Buffer.from(JSON.stringify({ ...jwk, kid, alg: ALGORITHM, use: 'sig' }), 'utf8').toString('base64') };
      await core.createNamespacedSecret({ namespace, body });
      options.logger.info({ secret: `${namespace}/${name}`, kid }, 'created the review signing key');
    } catch (e: unknown) {
      if (statusOf(e) !== 409) throw e;
    }
  }
  throw new CustosError('ERR_REVIEW_KEY', `review signing key Secret ${namespace}/${name} could not be created or read`);
}

async function parseSigningKey(secret: V1Secret, where: string): Promise<ReviewSigningKey> {
  const encoded = secret.data?.[SIGNING_KEY_SECRET_KEY];
  if (encoded === undefined) throw new CustosError('ERR_REVIEW_KEY', `Secret ${where} has no ${SIGNING_KEY_SECRET_KEY}`);
  let jwk: JWK;
  try {
    jwk = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) as JWK;
  } catch {
    throw new CustosError('ERR_REVIEW_KEY', `Secret ${where}: ${SIGNING_KEY_SECRET_KEY} is not JSON`);
  }
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string' || typeof jwk.kid !== 'string' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string') {
    throw new CustosError('ERR_REVIEW_KEY', `Secret ${where}: ${SIGNING_KEY_SECRET_KEY} is not a private P-256 key with a kid`);
  }
  const privateKey = await importJWK(jwk, ALGORITHM);
  if (privateKey instanceof Uint8Array) throw new CustosError('ERR_REVIEW_KEY', `Secret ${where}: not an asymmetric key`);
  const { kty, crv, x, y, kid } = jwk;
  const publicJwk = { kty, crv, x, y, kid, alg: ALGORITHM, use: 'sig' };
  const publicKey = await importJWK(publicJwk, ALGORITHM);
  if (publicKey instanceof Uint8Array) throw new CustosError('ERR_REVIEW_KEY', `Secret ${where}: not an asymmetric key`);
  return { kid, privateKey, publicKey, jwks: JSON.stringify({ keys: [publicJwk] }) };
}
