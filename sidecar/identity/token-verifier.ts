// Verifies caller and workload JWTs into a Principal (reference/identity-and-audit.md §2.1, §3).
//
// Order matters: cheap structural checks before jose (size, 3-segment JWS only — no JWE, see
// CVE-2024-28176), then the unverified payload's `iss` is read ONLY to pick the configured issuer
// (each issuer has its own key set, so a token signed by a shared key still fails on `iss`), then
// jose verifies signature and claims with every option pinned, then the Kubernetes consistency
// checks jose cannot know. The Principal is built from jose's payload, never a second decoding.
import { errors, jwtVerify, type FlattenedJWSInput, type JWSHeaderParameters, type JWTPayload, type CryptoKey } from 'jose';
import { CustosError } from '../../lib/errors.ts';
import type { KubernetesIdentity, Principal } from '../../policy/types.ts';
import { ERR_JWKS_UNAVAILABLE } from './issuer-keys.ts';

/** Bad signature, expired, malformed, too large: PostgreSQL `invalid_password`. */
export const ERR_AUTH_TOKEN_INVALID = 'ERR_AUTH_TOKEN_INVALID';
/** Wrong audience, unknown issuer, missing token, not acceptable here: `invalid_authorization_specification`. */
export const ERR_AUTH_TOKEN_REJECTED = 'ERR_AUTH_TOKEN_REJECTED';

export const AUTH_ERROR_SQLSTATE = {
  [ERR_AUTH_TOKEN_INVALID]: '28P01',
  [ERR_AUTH_TOKEN_REJECTED]: '28000',
} as const;

export type TokenErrorCode = typeof ERR_AUTH_TOKEN_INVALID | typeof ERR_AUTH_TOKEN_REJECTED;

export type TokenRejectReason =
  | 'missing-token' | 'too-large' | 'wrong-type' | 'malformed' | 'unknown-issuer' | 'wrong-issuer' | 'wrong-audience'
  | 'alg-not-allowed' | 'bad-signature' | 'unknown-kid' | 'ambiguous-key' | 'unusable-key' | 'keys-unavailable'
  | 'unsupported-header' | 'expired' | 'not-yet-valid' | 'issued-in-future' | 'too-old' | 'missing-claim'
  | 'invalid-claim' | 'sub-mismatch' | 'extended-token' | 'not-a-workload-token' | 'verification-failed'
  /** The API server no longer accepts the pod's service account (service-account-liveness.ts). */
  | 'service-account-revoked';

export const MAX_TOKEN_BYTES = 8192;
export const DEFAULT_ALGORITHMS = ['RS256', 'ES256'] as const;
export const DEFAULT_MAX_TOKEN_AGE_SECONDS = 3600;
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30;
/** The only algorithms an issuer may be configured with (crds/accesspolicy.yaml): asymmetric. */
export const ALLOWED_ALGORITHMS: ReadonlySet<string> = new Set([
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
]);

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
// DNS-1123 label (namespace) and subdomain (service account): rules out `:` in either, which would
// make `system:serviceaccount:<ns>:<name>` ambiguous.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export class TokenVerificationError extends CustosError {
  /** Short machine-readable reason for the audit event and metrics. */
  readonly reason: TokenRejectReason;

  constructor(code: TokenErrorCode, reason: TokenRejectReason, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'TokenVerificationError';
    this.reason = reason;
  }
}

/** Printable ASCII only, at most 64 characters: safe to put an attacker's `kid` in a log line. */
export function sanitizeForLog(value: unknown, max = 64): string {
  const text = typeof value === 'string' ? value : ((JSON.stringify(value) as string | undefined) ?? String(value));
  let out = '';
  for (const char of text) {
    if (out.length >= max) return `${out}…`;
    const code = char.codePointAt(0) ?? 0;
    out += code >= 0x20 && code <= 0x7e ? char : '?';
  }
  return out;
}

/** What the verifier needs from a key holder (IssuerKeys satisfies it). */
export interface TokenKeySource {
  readonly issuer: string;
  getKey(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey>;
}

export interface IssuerVerification {
  readonly issuer: string;
  readonly audience: string;
  readonly algorithms?: readonly string[];
  readonly maxTokenAgeSeconds?: number;
  readonly clockToleranceSeconds?: number;
  /** Required JOSE `typ`, e.g. `at+jwt` (RFC 9068) so an IdP's ID token is not taken as an access token. */
  readonly typ?: string;
  readonly keys: TokenKeySource;
}

export interface TokenVerifierOptions {
  readonly issuers: readonly IssuerVerification[];
  /** Milliseconds since the epoch. */
  readonly clock?: () => number;
}

export type TokenKind = 'caller' | 'workload';

export interface TokenVerifier {
  verify(raw: string, kind: TokenKind): Promise<Principal>;
}

interface ResolvedIssuer {
  readonly issuer: string;
  readonly audience: string;
  readonly algorithms: string[];
  readonly maxTokenAge: number;
  readonly clockTolerance: number;
  readonly typ: string | undefined;
  readonly keys: TokenKeySource;
}

function invalid(reason: TokenRejectReason, detail?: string, cause?: unknown): TokenVerificationError {
  return new TokenVerificationError(ERR_AUTH_TOKEN_INVALID, reason, `token invalid: ${reason}${detail === undefined ? '' : ` (${detail})`}`, cause === undefined ? undefined : { cause });
}

function rejected(reason: TokenRejectReason, detail?: string, cause?: unknown): TokenVerificationError {
  return new TokenVerificationError(ERR_AUTH_TOKEN_REJECTED, reason, `token rejected: ${reason}${detail === undefined ? '' : ` (${detail})`}`, cause === undefined ? undefined : { cause });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === null || prototype === Object.prototype;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The unverified `iss`, used only as a lookup key into the configured issuers. */
function peekIssuer(encodedPayload: string): unknown {
  // base64url without padding never has length ≡ 1 (mod 4); Buffer would silently drop the bits.
  if (encodedPayload.length % 4 === 1) throw invalid('malformed', 'payload is not base64url');
  let payload: unknown;
  try {
    payload = JSON.parse(STRICT_UTF8.decode(Buffer.from(encodedPayload, 'base64url')));
  } catch {
    throw invalid('malformed', 'payload is not a JSON object');
  }
  if (!isPlainObject(payload)) throw invalid('malformed', 'payload is not a JSON object');
  return payload['iss'];
}

function resolveIssuer(config: IssuerVerification): ResolvedIssuer {
  const algorithms = [...(config.algorithms ?? DEFAULT_ALGORITHMS)];
  if (algorithms.length === 0 || algorithms.some((alg) => !ALLOWED_ALGORITHMS.has(alg))) {
    throw new CustosError('ERR_CONFIG_INVALID', `issuer ${config.issuer}: algorithms must be a non-empty subset of ${[...ALLOWED_ALGORITHMS].join(', ')}`);
  }
  if (config.keys.issuer !== config.issuer) {
    throw new CustosError('ERR_CONFIG_INVALID', `issuer ${config.issuer}: key set belongs to ${config.keys.issuer} (one key set per issuer)`);
  }
  const maxTokenAge = config.maxTokenAgeSeconds ?? DEFAULT_MAX_TOKEN_AGE_SECONDS;
  const clockTolerance = config.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
  if (!Number.isInteger(maxTokenAge) || maxTokenAge <= 0 || !Number.isInteger(clockTolerance) || clockTolerance < 0) {
    throw new CustosError('ERR_CONFIG_INVALID', `issuer ${config.issuer}: maxTokenAgeSeconds and clockToleranceSeconds must be non-negative integers`);
  }
  if (config.audience.length === 0) throw new CustosError('ERR_CONFIG_INVALID', `issuer ${config.issuer}: audience is empty`);
  return { issuer: config.issuer, audience: config.audience, algorithms, maxTokenAge, clockTolerance, typ: config.typ, keys: config.keys };
}

/** Maps a jose (or key holder) failure to a reason; never copies token content into the message. */
function mapVerifyError(error: unknown, kid: unknown): TokenVerificationError {
  // Keep only the class and code as the cause: jose claim errors carry the whole payload.
  const cause = error instanceof Error ? { name: error.name, code: (error as { code?: unknown }).code } : undefined;
  if (error instanceof CustosError && error.code === ERR_JWKS_UNAVAILABLE) return rejected('keys-unavailable', undefined, cause);
  if (error instanceof errors.JOSEAlgNotAllowed) return invalid('alg-not-allowed', undefined, cause);
  if (error instanceof errors.JWSSignatureVerificationFailed) return invalid('bad-signature', undefined, cause);
  if (error instanceof errors.JWKSNoMatchingKey) {
    return invalid('unknown-kid', kid === undefined ? 'no kid' : `kid ${JSON.stringify(sanitizeForLog(kid))}`, cause);
  }
  if (error instanceof errors.JWKSMultipleMatchingKeys) return invalid('ambiguous-key', undefined, cause);
  if (error instanceof errors.JWTExpired) return invalid(error.claim === 'iat' ? 'too-old' : 'expired', undefined, cause);
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'aud') return rejected('wrong-audience', undefined, cause);
    if (error.claim === 'iss') return rejected('wrong-issuer', undefined, cause);
    if (error.claim === 'typ') return rejected('wrong-type', undefined, cause);
    if (error.reason === 'missing') return invalid('missing-claim', `"${sanitizeForLog(error.claim)}"`, cause);
    if (error.reason === 'invalid') return invalid('invalid-claim', `"${sanitizeForLog(error.claim)}"`, cause);
    if (error.claim === 'nbf') return invalid('not-yet-valid', undefined, cause);
    if (error.claim === 'iat') return invalid('issued-in-future', undefined, cause);
    return invalid('invalid-claim', `"${sanitizeForLog(error.claim)}"`, cause);
  }
  if (error instanceof errors.JOSENotSupported) return invalid('unsupported-header', undefined, cause);
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return invalid('malformed', undefined, cause);
  if (error instanceof errors.JWKInvalid || error instanceof errors.JWKSInvalid || error instanceof TypeError) {
    // e.g. an RSA key under 2048 bits reaching verification.
    return invalid('unusable-key', undefined, cause);
  }
  return invalid('verification-failed', undefined, cause);
}

// NumericDate (RFC 7519 §2) sanity beyond jose: jose accepts `exp: 1e308` (never expires).
const MAX_NUMERIC_DATE = 253_402_300_799; // 9999-12-31T23:59:59Z

function checkNumericDates(payload: JWTPayload): void {
  for (const claim of ['exp', 'iat', 'nbf'] as const) {
    const value: unknown = payload[claim];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_NUMERIC_DATE) {
      throw invalid('invalid-claim', `"${claim}"`);
    }
  }
}

function optionalString(value: unknown, claim: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > 253) throw invalid('invalid-claim', `"${claim}"`);
  return value;
}

function optionalName(value: unknown, claim: string): string | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) throw invalid('invalid-claim', `"${claim}"`);
  return optionalString(value['name'], `${claim}.name`);
}

function optionalUid(value: unknown, claim: string): string | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) throw invalid('invalid-claim', `"${claim}"`);
  return optionalString(value['uid'], `${claim}.uid`);
}

/** Kubernetes projected-token consistency (reference §1.1): sub, names, warnafter. */
function readKubernetesIdentity(payload: JWTPayload, subject: string, nowSeconds: number): KubernetesIdentity {
  const k8s = payload['kubernetes.io'];
  if (!isPlainObject(k8s)) throw invalid('invalid-claim', '"kubernetes.io"');
  const namespace = k8s['namespace'];
  const serviceaccount = k8s['serviceaccount'];
  if (typeof namespace !== 'string' || !DNS_LABEL.test(namespace) || namespace.length > 63) {
    throw invalid('invalid-claim', '"kubernetes.io.namespace"');
  }
  if (!isPlainObject(serviceaccount)) throw invalid('invalid-claim', '"kubernetes.io.serviceaccount"');
  const name = serviceaccount['name'];
  if (typeof name !== 'string' || !DNS_SUBDOMAIN.test(name) || name.length > 253) {
    throw invalid('invalid-claim', '"kubernetes.io.serviceaccount.name"');
  }
  if (subject !== `system:serviceaccount:${namespace}:${name}`) throw invalid('sub-mismatch');
  const warnafter = k8s['warnafter'];
  if (warnafter !== undefined) {
    if (typeof warnafter !== 'number' || !Number.isFinite(warnafter)) throw invalid('invalid-claim', '"kubernetes.io.warnafter"');
    // Present only on the extended (one-year) default token; past it, the API server itself warns.
    if (nowSeconds > warnafter) throw rejected('extended-token');
  }
  const serviceAccountUid = optionalString(serviceaccount['uid'], 'kubernetes.io.serviceaccount.uid');
  const podName = optionalName(k8s['pod'], 'kubernetes.io.pod');
  const podUid = optionalUid(k8s['pod'], 'kubernetes.io.pod');
  const nodeName = optionalName(k8s['node'], 'kubernetes.io.node');
  return {
    namespace,
    serviceAccount: name,
    ...(serviceAccountUid === undefined ? {} : { serviceAccountUid }),
    ...(podName === undefined ? {} : { podName }),
    ...(podUid === undefined ? {} : { podUid }),
    ...(nodeName === undefined ? {} : { nodeName }),
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const member of Object.values(value)) deepFreeze(member);
    Object.freeze(value);
  }
  return value;
}

export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const clock = options.clock ?? Date.now;
  const issuers = new Map<string, ResolvedIssuer>();
  for (const config of options.issuers) {
    if (issuers.has(config.issuer)) throw new CustosError('ERR_CONFIG_INVALID', `issuer ${config.issuer} configured twice`);
    issuers.set(config.issuer, resolveIssuer(config));
  }

  async function verify(raw: string, kind: TokenKind): Promise<Principal> {
    if (typeof raw !== 'string' || raw.length === 0) throw rejected('missing-token');
    if (raw.length > MAX_TOKEN_BYTES) throw invalid('too-large', `over ${MAX_TOKEN_BYTES} bytes`);
    if (!COMPACT_JWS.test(raw)) throw invalid('malformed', 'not a compact JWS');
    const claimedIssuer = peekIssuer(raw.slice(raw.indexOf('.') + 1, raw.lastIndexOf('.')));
    const config = typeof claimedIssuer === 'string' ? issuers.get(claimedIssuer) : undefined;
    if (config === undefined) {
      throw rejected('unknown-issuer', typeof claimedIssuer === 'string' ? `iss ${JSON.stringify(sanitizeForLog(claimedIssuer))}` : 'no iss');
    }

    const now = clock();
    let kid: unknown;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(raw, (header: JWSHeaderParameters, token: FlattenedJWSInput) => {
        kid = header.kid;
        return config.keys.getKey(header, token);
      }, {
        algorithms: config.algorithms,
        issuer: config.issuer,
        audience: config.audience,
        requiredClaims: ['exp', 'iat', 'sub'],
        maxTokenAge: config.maxTokenAge,
        clockTolerance: config.clockTolerance,
        currentDate: new Date(now),
        ...(config.typ === undefined ? {} : { typ: config.typ }),
      }));
    } catch (error: unknown) {
      throw mapVerifyError(error, kid);
    }

    checkNumericDates(payload);
    const aud = payload.aud;
    if (typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((member) => typeof member === 'string'))) {
      throw rejected('wrong-audience', 'aud must be a string or an array of strings');
    }
    const subject = payload.sub;
    if (typeof subject !== 'string' || subject.length === 0) throw invalid('invalid-claim', '"sub"');

    const isKubernetes = Object.hasOwn(payload, 'kubernetes.io');
    if (kind === 'workload' && !isKubernetes) throw rejected('not-a-workload-token');
    const kubernetes = isKubernetes ? readKubernetesIdentity(payload, subject, Math.floor(now / 1000)) : undefined;

    return {
      kind,
      authMethod: isKubernetes ? 'k8s-sa' : 'oidc',
      issuer: config.issuer,
      subject,
      claims: deepFreeze(payload),
      ...(kubernetes === undefined ? {} : { kubernetes }),
      ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp } : {}),
    };
  }

  return { verify };
}
