// The pod's own identity: the projected service-account token (audience `custos`) that the kubelet
// writes into the sidecar and rotates at 80 % of its TTL (reference/identity-and-audit.md §1.1).
// The file is read on every `current()` call — a few hundred bytes — so rotation is never missed;
// verification is skipped only while the bytes are unchanged, the token is unexpired and the last
// verification is recent (key removal or a closed key set is noticed within `reverifyAfterMs`).
import { readFile as fsReadFile } from 'node:fs/promises';
import type { Principal } from '../../policy/types.ts';
import {
  ERR_AUTH_TOKEN_REJECTED, MAX_TOKEN_BYTES, TokenVerificationError, type TokenRejectReason, type TokenVerifier,
} from './token-verifier.ts';

export const DEFAULT_WORKLOAD_TOKEN_PATH = '/var/run/secrets/custos/token';

export interface WorkloadIdentityOptions {
  readonly verifier: TokenVerifier;
  readonly path?: string;
  /** Milliseconds since the epoch. */
  readonly clock?: () => number;
  /** Re-verify an unchanged token at least this often (default 60 s). */
  readonly reverifyAfterMs?: number;
  readonly readFile?: (path: string) => Promise<Uint8Array>;
  /**
   * Why the API server says the pod's service account is gone (service-account-liveness.ts), if
   * it does: a deleted service account's token still verifies offline until it expires.
   */
  readonly revoked?: () => string | undefined;
}

interface Cached {
  readonly raw: string;
  readonly principal: Principal;
  readonly verifiedAt: number;
}

export class WorkloadIdentity {
  readonly path: string;
  readonly #verifier: TokenVerifier;
  readonly #clock: () => number;
  readonly #reverifyAfterMs: number;
  readonly #readFile: (path: string) => Promise<Uint8Array>;
  readonly #revoked: () => string | undefined;
  #cached: Cached | undefined;
  #subject: string | undefined;
  #lastError: TokenVerificationError | undefined;

  constructor(options: WorkloadIdentityOptions) {
    this.path = options.path ?? DEFAULT_WORKLOAD_TOKEN_PATH;
    this.#verifier = options.verifier;
    this.#clock = options.clock ?? Date.now;
    this.#reverifyAfterMs = options.reverifyAfterMs ?? 60_000;
    this.#readFile = options.readFile ?? fsReadFile;
    this.#revoked = options.revoked ?? (() => undefined);
  }

  /** The `sub` of the last token that verified (the pod's service account), kept across failures. */
  get subject(): string | undefined {
    return this.#subject;
  }

  /** True when the last `current()` succeeded, that token has not expired since, and the service account was not revoked. */
  get ready(): boolean {
    const cached = this.#cached;
    return cached !== undefined && !this.#expired(cached.principal) && this.#revoked() === undefined;
  }

  /** Why the last `current()` failed (for /readyz and the audit event), if it did. */
  get lastError(): TokenVerificationError | undefined {
    return this.#lastError;
  }

  /** The verified workload principal; rejects with ERR_AUTH_TOKEN_REJECTED (with a `reason`). */
  async current(): Promise<Principal> {
    const revoked = this.#revoked();
    if (revoked !== undefined) {
      this.#lastError = new TokenVerificationError(ERR_AUTH_TOKEN_REJECTED, 'service-account-revoked', revoked);
      throw this.#lastError;
    }
    try {
      const raw = await this.#readToken();
      const cached = this.#cached;
      if (cached !== undefined && cached.raw === raw && !this.#expired(cached.principal)
        && this.#clock() - cached.verifiedAt < this.#reverifyAfterMs) {
        return cached.principal;
      }
      this.#cached = undefined;
      const principal = await this.#verifier.verify(raw, 'workload');
      // The verifier allows clock skew against the issuer; our own token past `exp` is simply
      // one the kubelet failed to rotate, and `ready` must not flap inside the tolerance window.
      if (this.#expired(principal)) throw new TokenVerificationError(ERR_AUTH_TOKEN_REJECTED, 'expired', 'workload token expired');
      this.#cached = { raw, principal, verifiedAt: this.#clock() };
      this.#subject = principal.subject;
      this.#lastError = undefined;
      return principal;
    } catch (error: unknown) {
      this.#cached = undefined;
      const reason: TokenRejectReason = error instanceof TokenVerificationError ? error.reason : 'verification-failed';
      const rejected = new TokenVerificationError(
        ERR_AUTH_TOKEN_REJECTED, reason, `workload identity unavailable: ${reason}`, { cause: error },
      );
      this.#lastError = rejected;
      throw rejected;
    }
  }

  #expired(principal: Principal): boolean {
    return principal.expiresAt === undefined || principal.expiresAt * 1000 <= this.#clock();
  }

  async #readToken(): Promise<string> {
    let bytes: Uint8Array;
    try {
      bytes = await this.#readFile(this.path);
    } catch (error: unknown) {
      const code = (error as { code?: unknown }).code;
      throw new TokenVerificationError(
        ERR_AUTH_TOKEN_REJECTED, 'missing-token',
        `cannot read workload token file ${this.path}: ${typeof code === 'string' ? code : 'read failed'}`,
      );
    }
    if (bytes.byteLength > 2 * MAX_TOKEN_BYTES) {
      throw new TokenVerificationError(ERR_AUTH_TOKEN_REJECTED, 'too-large', `workload token file ${this.path} is too large`);
    }
    const raw = Buffer.from(bytes).toString('latin1').trim();
    if (raw.length === 0) throw new TokenVerificationError(ERR_AUTH_TOKEN_REJECTED, 'missing-token', `workload token file ${this.path} is empty`);
    return raw;
  }
}
