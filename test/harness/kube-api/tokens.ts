// The service-account token issuer: TokenRequest (POST .../serviceaccounts/<sa>/token) signs
// RS256 JWTs with the claims of a projected token (reference/identity-and-audit.md §1.1), and the
// OIDC discovery document and JWKS (/.well-known/openid-configuration, /openid/v1/jwks) publish
// the key under the issuer, the double's own https URL.
import { randomBytes, randomUUID } from 'node:crypto';
import { jwtVerify, type JWTPayload } from 'jose';
import { createLocalIssuer, type LocalIssuer } from '../../../sidecar/identity/local-issuer.ts';
import { badRequest, invalid, fieldErrors } from './errors.ts';
import { isObject, nowTimestamp, type JsonObject, type KubeObject } from './types.ts';

export const JWKS_PATH = '/openid/v1/jwks';
export const OIDC_PATH = '/.well-known/openid-configuration';

export interface TokenIssuer {
  readonly issuer: string;
  readonly local: LocalIssuer;
  openidConfiguration(): JsonObject;
  jwks(): JsonObject;
  /** Answers a TokenRequest for `serviceAccount`, bound to `pod` when the request names one. */
  tokenRequest(serviceAccount: KubeObject, body: unknown, pod: KubeObject | undefined, clock?: () => number): Promise<JsonObject>;
  /** Verifies a token this issuer signed for one of `audiences`; undefined when it is not valid. */
  verify(token: string, audiences: readonly string[]): Promise<JWTPayload | undefined>;
}

export async function createTokenIssuer(issuer: string): Promise<TokenIssuer> {
  // The API server's kid is a hash of the public key; any stable opaque value behaves the same.
  const local = await createLocalIssuer({ issuer, alg: 'RS256', kid: randomBytes(32).toString('base64url') });
  return {
    issuer,
    local,
    openidConfiguration: () => ({
      issuer,
      jwks_uri: `${issuer}${JWKS_PATH}`,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
    }),
    jwks: () => ({ keys: local.jwks().keys.map((k) => ({ use: 'sig', kty: k.kty, kid: k.kid, alg: 'RS256', n: k.n, e: k.e })) }),
    async tokenRequest(serviceAccount, body, pod, clock = Date.now): Promise<JsonObject> {
      const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
      const name = serviceAccount.metadata.name ?? '';
      const namespace = serviceAccount.metadata.namespace ?? '';
      const audiences = Array.isArray(spec.audiences) && spec.audiences.length > 0 ? spec.audiences.map(String) : [issuer];
      const expirationSeconds = typeof spec.expirationSeconds === 'number' ? spec.expirationSeconds : 3600;
      if (expirationSeconds < 600) {
        throw invalid('authentication.k8s.io', 'TokenRequest', name, [fieldErrors.invalid('spec.expirationSeconds', expirationSeconds, 'may not specify a duration less than 10 minutes')]);
      }
      if (expirationSeconds > 2 ** 32) {
        throw invalid('authentication.k8s.io', 'TokenRequest', name, [fieldErrors.invalid('spec.expirationSeconds', expirationSeconds, 'may not specify a duration larger than 2^32 seconds')]);
      }
      const iat = Math.floor(clock() / 1000);
      const exp = iat + expirationSeconds;
      const kubernetes: JsonObject = {
        namespace,
        serviceaccount: { name, uid: serviceAccount.metadata.uid },
      };
      if (pod !== undefined) {
        kubernetes.pod = { name: pod.metadata.name, uid: pod.metadata.uid };
        const nodeName = isObject(pod.spec) && typeof pod.spec.nodeName === 'string' ? pod.spec.nodeName : undefined;
        if (nodeName !== undefined) kubernetes.node = { name: nodeName };
      }
      const token = await local.mint({
        aud: audiences, sub: `system:serviceaccount:${namespace}:${name}`, iat, nbf: iat, exp, jti: randomUUID(), 'kubernetes.io': kubernetes,
      }, { issuedAt: iat, expiresInSeconds: expirationSeconds });
      return {
        kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1',
        metadata: { name, namespace, creationTimestamp: nowTimestamp(clock) },
        spec: { audiences, expirationSeconds, boundObjectRef: spec.boundObjectRef ?? null },
        status: { token, expirationTimestamp: new Date(exp * 1000).toISOString().replace('.000Z', 'Z') },
      };
    },
    async verify(token, audiences): Promise<JWTPayload | undefined> {
      try {
        const { payload } = await jwtVerify(token, local.publicKey, { issuer, audience: [...audiences], algorithms: ['RS256'] });
        return payload;
      } catch {
        return undefined;
      }
    },
  };
}

/** The bound object a TokenRequest names: only Pods are supported (Secrets and Nodes are not). */
export function boundPodName(body: unknown): { name: string; uid?: string } | undefined {
  const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
  const ref = spec.boundObjectRef;
  if (!isObject(ref)) return undefined;
  if (ref.kind !== 'Pod') throw badRequest(`cannot bind token to object of type ${String(ref.kind)}: only Pod is supported by this API double`);
  return { name: String(ref.name), ...(typeof ref.uid === 'string' ? { uid: ref.uid } : {}) };
}
