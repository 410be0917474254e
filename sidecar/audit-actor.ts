// Who an audit event is about, denormalised onto every event (reference/identity-and-audit.md §5):
// the caller's token identity when present, with the pod's workload identity beside it.
import type { AuditActor } from '../audit/event.ts';
import type { Principal, RequestIdentity } from '../policy/types.ts';

/** Caller claims worth recording because they explain why (CI run, ticket, agent task). */
const EXPLAINING_CLAIMS = ['jti', 'azp', 'client_id', 'repository', 'workflow', 'run_id', 'ref', 'job_workflow_ref', 'pipeline_id', 'ticket', 'task', 'agent'];

function principalId(p: Principal): string {
  return `${p.issuer} ${p.subject}`;
}

function k8sOf(p: Principal): AuditActor['k8s'] {
  const k = p.kubernetes;
  if (k === undefined) return undefined;
  return {
    namespace: k.namespace,
    serviceaccount: k.serviceAccount,
    ...(k.serviceAccountUid !== undefined ? { sa_uid: k.serviceAccountUid } : {}),
    ...(k.podName !== undefined ? { pod: k.podName } : {}),
    ...(k.podUid !== undefined ? { pod_uid: k.podUid } : {}),
    ...(k.nodeName !== undefined ? { node: k.nodeName } : {}),
  };
}

function explainingClaims(p: Principal): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const name of EXPLAINING_CLAIMS) {
    const v = p.claims[name];
    if (typeof v === 'string' || typeof v === 'number') out[name] = String(v).slice(0, 256);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

export function auditActor(identity: RequestIdentity): AuditActor {
  const main = identity.caller ?? identity.workload;
  if (main === undefined) return { type: 'unknown', auth: { method: 'none' } };
  const k8s = k8sOf(identity.workload ?? main);
  const claims = explainingClaims(main);
  const expiresAt = main.expiresAt !== undefined ? new Date(main.expiresAt * 1000).toISOString() : undefined;
  const jti = typeof main.claims['jti'] === 'string' ? main.claims['jti'] : undefined;
  return {
    type: main.kind === 'workload' ? 'workload' : 'bot',
    id: principalId(main),
    auth: {
      method: main.authMethod,
      issuer: main.issuer,
      ...(jti !== undefined ? { jti } : {}),
      ...(expiresAt !== undefined ? { expires_at: expiresAt } : {}),
    },
    ...(k8s !== undefined ? { k8s } : {}),
    ...(claims !== undefined ? { claims } : {}),
    ...(identity.caller !== undefined && identity.workload !== undefined ? { workload_id: principalId(identity.workload) } : {}),
  };
}
