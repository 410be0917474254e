// A small, real token issuer for the demo (`npm start`) and for tests: one asymmetric key pair,
// its public JWKS (as an object, a file or a loopback HTTP endpoint) and a minting function.
//
// `mint` signs with WebCrypto directly instead of jose's SignJWT so tests can forge the hostile
// inputs of the verifier checklist (reference/identity-and-audit.md §3): arbitrary headers (`jku`,
// `crit`, `b64`), claims of the wrong type, or a missing `exp`. Nothing here is used to verify.
import { writeFile, rename } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

export type LocalIssuerAlg = 'RS256' | 'ES256';

export interface LocalIssuerOptions {
  readonly issuer: string;
  readonly alg?: LocalIssuerAlg;
  readonly kid?: string;
  /** Milliseconds since the epoch; default Date.now. Used for default `iat`/`exp`. */
  readonly clock?: () => number;
}

export interface MintOptions {
  readonly audience?: string | readonly string[];
  /** Default 600. */
  readonly expiresInSeconds?: number;
  /** Seconds since the epoch; default now. */
  readonly issuedAt?: number;
  readonly subject?: string;
  /** Merged over `{alg, kid}`; a key set to `undefined` removes it. */
  readonly header?: Readonly<Record<string, unknown>>;
}

export interface JwksServer {
  readonly url: string;
  /** Requests received so far (any path). */
  readonly hits: () => number;
  close(): Promise<void>;
}

export interface LocalIssuer {
  readonly issuer: string;
  readonly alg: LocalIssuerAlg;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
  /** The issuer's clock, seconds since the epoch. */
  nowSeconds(): number;
  jwks(): { keys: JWK[] };
  writeJwksFile(path: string): Promise<void>;
  /** Claims override the defaults (`iss`, `sub`, `aud`, `iat`, `exp`); a claim set to undefined is omitted. */
  mint(claims: Readonly<Record<string, unknown>>, options?: MintOptions): Promise<string>;
  serveJwks(): Promise<JwksServer>;
}

const SIGN_PARAMS = {
  RS256: { name: 'RSASSA-PKCS1-v1_5' },
  ES256: { name: 'ECDSA', hash: 'SHA-256' },
} as const;

export function encodeSegment(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8').toString('base64url');
}

/** Signs `<header>.<payload>` as given (already encoded segments) with a WebCrypto private key. */
export async function signCompact(
  encodedHeader: string, encodedPayload: string, privateKey: CryptoKey, alg: LocalIssuerAlg,
): Promise<string> {
  const input = new TextEncoder().encode(`${encodedHeader}.${encodedPayload}`);
  const signature = await crypto.subtle.sign(SIGN_PARAMS[alg], privateKey, input);
  return `${encodedHeader}.${encodedPayload}.${Buffer.from(signature).toString('base64url')}`;
}

export async function createLocalIssuer(options: LocalIssuerOptions): Promise<LocalIssuer> {
  const alg = options.alg ?? 'RS256';
  const kid = options.kid ?? randomUUID();
  const clock = options.clock ?? Date.now;
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}) });
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  const jwks = (): { keys: JWK[] } => ({ keys: [{ ...publicJwk }] });

  return {
    issuer: options.issuer,
    alg,
    kid,
    privateKey,
    publicKey,
    publicJwk,
    nowSeconds: () => Math.floor(clock() / 1000),
    jwks,
    async writeJwksFile(path: string): Promise<void> {
      // Write-then-rename, as the kubelet's atomic writer does, so a reader never sees half a file.
      const temporary = `${path}.${randomUUID()}.tmp`;
      await writeFile(temporary, JSON.stringify(jwks()));
      await rename(temporary, path);
    },
    async mint(claims, mintOptions = {}): Promise<string> {
      const iat = mintOptions.issuedAt ?? Math.floor(clock() / 1000);
      const payload: Record<string, unknown> = {
        iss: options.issuer,
        ...(mintOptions.subject !== undefined ? { sub: mintOptions.subject } : {}),
        ...(mintOptions.audience !== undefined ? { aud: mintOptions.audience } : {}),
        iat,
        exp: iat + (mintOptions.expiresInSeconds ?? 600),
        ...claims,
      };
      const header = { alg, kid, ...mintOptions.header };
      return signCompact(encodeSegment(header), encodeSegment(payload), privateKey, alg);
    },
    async serveJwks(): Promise<JwksServer> {
      let hits = 0;
      const server = createServer((request, response) => {
        hits += 1;
        request.resume();
        response.writeHead(200, { 'content-type': 'application/jwk-set+json' });
        response.end(JSON.stringify(jwks()));
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => { resolve(); });
      });
      const { port } = server.address() as AddressInfo;
      return {
        url: `http://127.0.0.1:${port}/openid/v1/jwks`,
        hits: () => hits,
        close: () => new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => { resolve(); });
        }),
      };
    },
  };
}

export interface KubernetesTokenOptions {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly serviceAccountUid?: string;
  readonly podName?: string;
  readonly podUid?: string;
  readonly nodeName?: string;
  /** Default ['custos'] (the dedicated projection; reference §1.1). */
  readonly audience?: string | readonly string[];
  /** Default 3600 (the projection's expirationSeconds). */
  readonly expiresInSeconds?: number;
  readonly issuedAt?: number;
  /** Set to mint the one-year "extended" default token: `warnafter = iat + 3607`. */
  readonly extended?: boolean;
  /** Extra or overriding claims (e.g. a mismatched `sub`). */
  readonly claims?: Readonly<Record<string, unknown>>;
  readonly header?: Readonly<Record<string, unknown>>;
}

/** A projected service-account token payload as the API server's TokenRequest builds it. */
export async function mintKubernetesToken(issuer: LocalIssuer, options: KubernetesTokenOptions): Promise<string> {
  const iat = options.issuedAt ?? issuer.nowSeconds();
  const extended = options.extended === true;
  const kubernetes: Record<string, unknown> = {
    namespace: options.namespace,
    serviceaccount: { name: options.serviceAccount, uid: options.serviceAccountUid ?? randomUUID() },
    pod: { name: options.podName ?? `${options.serviceAccount}-7c9f`, uid: options.podUid ?? randomUUID() },
    node: { name: options.nodeName ?? 'worker-3', uid: randomUUID() },
    ...(extended ? { warnafter: iat + 3607 } : {}),
  };
  return issuer.mint(
    {
      sub: `system:serviceaccount:${options.namespace}:${options.serviceAccount}`,
      nbf: iat,
      jti: randomUUID(),
      'kubernetes.io': kubernetes,
      ...options.claims,
    },
    {
      audience: options.audience ?? ['custos'],
      // The extended default token lives a year (kubernetes/kubernetes#96273).
      expiresInSeconds: extended ? 31_536_000 : (options.expiresInSeconds ?? 3600),
      issuedAt: iat,
      ...(options.header === undefined ? {} : { header: options.header }),
    },
  );
}
