// Caller-token verification configured by the policy's `spec.issuers`. Key holders are kept per
// (issuer, JWKS source) across policy reloads, so a reload neither drops warm keys nor refetches.
import type { Logger } from 'pino';
import type { AccessPolicyIssuer } from '../crds/generated/access-policy.ts';
import type { Principal } from '../policy/types.ts';
import { IssuerKeys } from './identity/issuer-keys.ts';
import { createTokenVerifier, type TokenVerifier } from './identity/token-verifier.ts';

export class CallerIdentity {
  readonly #logger: Logger;
  readonly #holders = new Map<string, IssuerKeys>();
  #verifier: TokenVerifier = createTokenVerifier({ issuers: [] });

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** Installs the issuers of a (re)loaded policy; waits for first key loads of new issuers. */
  async configure(issuers: readonly AccessPolicyIssuer[]): Promise<void> {
    const wanted = new Map<string, AccessPolicyIssuer>();
    for (const i of issuers) wanted.set(holderKey(i), i);
    for (const [key, holder] of this.#holders) {
      if (!wanted.has(key)) {
        holder.stop();
        this.#holders.delete(key);
      }
    }
    const starting: Array<Promise<unknown>> = [];
    for (const [key, issuer] of wanted) {
      if (this.#holders.has(key)) continue;
      const holder = new IssuerKeys({
        issuer: issuer.issuer,
        source: issuer.jwksFile !== undefined ? { kind: 'file', path: issuer.jwksFile } : { kind: 'url', url: issuer.jwksUri ?? '' },
        onRefresh: (event) => {
          if (!event.ok) this.#logger.warn({ issuer: event.issuer, result: event.result, detail: event.detail }, 'JWKS refresh failed');
        },
      });
      this.#holders.set(key, holder);
      starting.push(holder.start());
    }
    await Promise.all(starting);
    this.#verifier = createTokenVerifier({
      issuers: issuers.map((i) => ({
        issuer: i.issuer,
        audience: i.audience,
        ...(i.algorithms !== undefined ? { algorithms: i.algorithms } : {}),
        ...(i.maxTokenAgeSeconds !== undefined ? { maxTokenAgeSeconds: i.maxTokenAgeSeconds } : {}),
        ...(i.clockToleranceSeconds !== undefined ? { clockToleranceSeconds: i.clockToleranceSeconds } : {}),
        keys: this.#holders.get(holderKey(i)) as IssuerKeys,
      })),
    });
  }

  verify(token: string): Promise<Principal> {
    return this.#verifier.verify(token, 'caller');
  }

  /** Issuers whose keys have not loaded yet (for /readyz). */
  notReady(): string[] {
    return [...this.#holders.values()].filter((h) => !h.ready).map((h) => h.issuer);
  }

  close(): void {
    for (const h of this.#holders.values()) h.stop();
  }
}

function holderKey(i: AccessPolicyIssuer): string {
  return `${i.issuer}\n${i.jwksFile ?? ''}\n${i.jwksUri ?? ''}`;
}
