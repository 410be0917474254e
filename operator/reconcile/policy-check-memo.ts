// Memoised checkPolicyForSidecar. Rendering, re-parsing and compiling a policy costs about 2 ms,
// and the operator re-plans every policy whenever a pod comes or goes; on a replica that also
// answers admission requests, 500 policies would block the event loop for a second per run.
// A policy's check depends only on its name, namespace and spec, and the API server bumps
// metadata.generation on every spec change (uid fixes name and namespace), so uid + generation is
// a sound key. Objects without them (hand-built in tests) are checked every time.
import type { AccessPolicy } from '../../crds/generated/access-policy.ts';
import { checkPolicyForSidecar, type SidecarPolicyCheck } from './policy-document.ts';

export class PolicyCheckMemo {
  readonly #entries = new Map<string, { readonly generation: number; readonly check: SidecarPolicyCheck }>();

  check(policy: AccessPolicy): SidecarPolicyCheck {
    const { uid, generation } = policy.metadata;
    if (uid === undefined || generation === undefined) return checkPolicyForSidecar(policy);
    const cached = this.#entries.get(uid);
    if (cached?.generation === generation) return cached.check;
    const check = checkPolicyForSidecar(policy);
    this.#entries.set(uid, { generation, check });
    return check;
  }

  /** Forgets every policy not in `policies` (deleted ones), so the memo never outgrows the cluster. */
  retainOnly(policies: readonly AccessPolicy[]): void {
    const live = new Set(policies.map((p) => p.metadata.uid));
    for (const uid of this.#entries.keys()) if (!live.has(uid)) this.#entries.delete(uid);
  }

  get size(): number {
    return this.#entries.size;
  }
}
