// Sidecar configuration: where the policy, credentials and spool live, what to listen on. Read from
// a YAML file (`custos sidecar --config FILE`) with a few environment overrides for the values
// Kubernetes injects (downward API, REDIS_URL). Invalid configuration fails fast naming the field.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { CustosError } from '../lib/errors.ts';
import { RELAY_AUDIENCE } from '../policy/approvals/relay-claims.ts';

export interface SidecarConfig {
  /** AccessPolicy YAML (a mounted ConfigMap in Kubernetes); reloaded when it changes. */
  readonly policyFile: string;
  readonly policyReload: {
    /** How often the policy file is re-read. */
    readonly pollIntervalMs: number;
    /**
     * The policy whose operator announcements to follow on Redis (`custos:policy:<namespace>/<name>`)
     * for a fast re-read of the file; only with `redisUrl`. See sidecar/policy-announcements.ts.
     */
    readonly announcements?: { readonly namespace: string; readonly name: string };
  };
  readonly listen: { readonly host: string; readonly ports: Readonly<Record<string, number>> };
  readonly http: { readonly host: string; readonly port: number };
  /** Directory holding one folder per credentials Secret, one file per key (Secret volume layout). */
  readonly credentialsDir: string;
  /** Downstream TLS: offered to clients that send SSLRequest. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  readonly spool: { readonly dir: string; readonly maxBytes: number };
  readonly redisUrl?: string;
  readonly gateway: { readonly id: string; readonly podUid: string; readonly podName?: string; readonly namespace?: string };
  readonly workloadIdentity?: {
    readonly tokenFile: string;
    readonly issuer: string;
    readonly audience: string;
    readonly jwksFile?: string;
    readonly jwksUri?: string;
    /**
     * Asking the API server whether the pod's service account still exists (SelfSubjectReview with
     * the in-cluster API token); `apiServer` undefined when the pod has no KUBERNETES_SERVICE_HOST.
     */
    readonly liveness: { readonly intervalMs: number; readonly tokenFile: string; readonly caFile: string; readonly apiServer?: string };
  };
  /**
   * Kubernetes reviews (ADR 0011): the operator's issuer of relay tokens and its public keys (the
   * `reviewers.jwks.json` key of the policy ConfigMap). Rendered by the operator; absent locally.
   */
  readonly kubernetesReviews?: { readonly issuer: string; readonly audience: string; readonly jwksFile: string };
  /** Local runs only: reach a target somewhere other than the policy says (e.g. a demo port). */
  readonly targetOverrides: Readonly<Record<string, { readonly host?: string; readonly port?: number; readonly database?: string }>>;
  readonly shutdownGraceSeconds: number;
  readonly logLevel: string;
}

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['policyFile'],
  properties: {
    policyFile: { type: 'string', minLength: 1 },
    policyReload: {
      type: 'object',
      additionalProperties: false,
      properties: {
        pollIntervalMs: { type: 'integer', minimum: 100, maximum: 3_600_000 },
        announcements: {
          type: 'object',
          additionalProperties: false,
          required: ['namespace', 'name'],
          properties: {
            namespace: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63 },
            name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$', maxLength: 253 },
          },
        },
      },
    },
    listen: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: { type: 'string' },
        ports: { type: 'object', additionalProperties: { type: 'integer', minimum: 0, maximum: 65535 } },
      },
    },
    http: {
      type: 'object',
      additionalProperties: false,
      properties: { host: { type: 'string' }, port: { type: 'integer', minimum: 0, maximum: 65535 } },
    },
    credentialsDir: { type: 'string' },
    tls: {
      type: 'object',
      additionalProperties: false,
      required: ['certFile', 'keyFile'],
      properties: { certFile: { type: 'string' }, keyFile: { type: 'string' } },
    },
    spool: {
      type: 'object',
      additionalProperties: false,
      properties: { dir: { type: 'string' }, maxBytes: { type: 'integer', minimum: 65536 } },
    },
    redisUrl: { type: 'string', pattern: '^rediss?://' },
    gateway: {
      type: 'object',
      additionalProperties: false,
      properties: { id: { type: 'string' }, podUid: { type: 'string' }, podName: { type: 'string' }, namespace: { type: 'string' } },
    },
    workloadIdentity: {
      type: 'object',
      additionalProperties: false,
      required: ['tokenFile', 'issuer'],
      properties: {
        tokenFile: { type: 'string' },
        issuer: { type: 'string' },
        audience: { type: 'string' },
        jwksFile: { type: 'string' },
        jwksUri: { type: 'string' },
        liveness: {
          type: 'object',
          additionalProperties: false,
          properties: {
            intervalSeconds: { type: 'number', minimum: 0.1, maximum: 3600 },
            tokenFile: { type: 'string', minLength: 1 },
            caFile: { type: 'string', minLength: 1 },
            apiServer: { type: 'string', pattern: '^https://.+' },
          },
        },
      },
    },
    kubernetesReviews: {
      type: 'object',
      additionalProperties: false,
      required: ['issuer', 'jwksFile'],
      properties: { issuer: { type: 'string', minLength: 1 }, audience: { type: 'string', minLength: 1 }, jwksFile: { type: 'string', minLength: 1 } },
    },
    targetOverrides: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: { host: { type: 'string' }, port: { type: 'integer', minimum: 1, maximum: 65535 }, database: { type: 'string' } },
      },
    },
    shutdownGraceSeconds: { type: 'integer', minimum: 0, maximum: 3600 },
    logLevel: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
  },
} as const;

const validate = new Ajv({ allErrors: true }).compile(schema);

/** `field: problem` for the first validation error, in kubectl's path style. */
export function describeSchemaError(error: ErrorObject, root: string): string {
  const path = error.instancePath
    .split('/')
    .slice(1)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p.replace(/~1/g, '/').replace(/~0/g, '~')}`))
    .join('');
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'additionalProperties') return `${root}${path}.${String(params['additionalProperty'])}: field not declared in schema`;
  if (error.keyword === 'required') return `${root}${path}.${String(params['missingProperty'])}: Required value`;
  return `${root}${path}: ${error.message ?? 'invalid'}`;
}

/** Validates a parsed config document and fills defaults; relative paths resolve against `baseDir`. */
export function resolveSidecarConfig(doc: unknown, baseDir: string, env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  if (!validate(doc)) {
    const first = validate.errors?.[0];
    throw new CustosError('ERR_CONFIG_INVALID', `invalid sidecar config: ${first ? describeSchemaError(first, 'config') : 'not an object'}`);
  }
  const c = doc as Record<string, unknown> & {
    policyFile: string;
    policyReload?: { pollIntervalMs?: number; announcements?: { namespace: string; name: string } };
    listen?: { host?: string; ports?: Record<string, number> };
    http?: { host?: string; port?: number };
    credentialsDir?: string;
    tls?: { certFile: string; keyFile: string };
    spool?: { dir?: string; maxBytes?: number };
    redisUrl?: string;
    gateway?: { id?: string; podUid?: string; podName?: string; namespace?: string };
    workloadIdentity?: {
      tokenFile: string; issuer: string; audience?: string; jwksFile?: string; jwksUri?: string;
      liveness?: { intervalSeconds?: number; tokenFile?: string; caFile?: string; apiServer?: string };
    };
    kubernetesReviews?: { issuer: string; audience?: string; jwksFile: string };
    targetOverrides?: Record<string, { host?: string; port?: number; database?: string }>;
    shutdownGraceSeconds?: number;
    logLevel?: string;
  };
  const path = (p: string): string => resolve(baseDir, p);
  const podUid = env['CUSTOS_POD_UID'] ?? c.gateway?.podUid ?? 'local';
  const podName = env['CUSTOS_POD_NAME'] ?? c.gateway?.podName;
  const namespace = env['CUSTOS_POD_NAMESPACE'] ?? c.gateway?.namespace;
  const redisUrl = env['REDIS_URL'] ?? c.redisUrl;
  const wi = c.workloadIdentity;
  return {
    policyFile: path(c.policyFile),
    policyReload: {
      pollIntervalMs: c.policyReload?.pollIntervalMs ?? 1000,
      ...(c.policyReload?.announcements !== undefined ? { announcements: { namespace: c.policyReload.announcements.namespace, name: c.policyReload.announcements.name } } : {}),
    },
    listen: { host: c.listen?.host ?? '127.0.0.1', ports: c.listen?.ports ?? {} },
    http: { host: c.http?.host ?? '127.0.0.1', port: c.http?.port ?? 9187 },
    credentialsDir: path(c.credentialsDir ?? '/var/run/custos/credentials'),
    ...(c.tls ? { tls: { certFile: path(c.tls.certFile), keyFile: path(c.tls.keyFile) } } : {}),
    spool: { dir: path(c.spool?.dir ?? '/var/lib/custos/spool'), maxBytes: c.spool?.maxBytes ?? 256 * 1024 * 1024 },
    ...(redisUrl !== undefined && redisUrl !== '' ? { redisUrl } : {}),
    gateway: {
      id: c.gateway?.id ?? env['HOSTNAME'] ?? 'custos-local',
      podUid,
      ...(podName !== undefined ? { podName } : {}),
      ...(namespace !== undefined ? { namespace } : {}),
    },
    ...(wi
      ? {
          workloadIdentity: {
            tokenFile: path(wi.tokenFile),
            issuer: wi.issuer,
            audience: wi.audience ?? 'custos',
            ...(wi.jwksFile !== undefined ? { jwksFile: path(wi.jwksFile) } : {}),
            ...(wi.jwksUri !== undefined ? { jwksUri: wi.jwksUri } : {}),
            liveness: livenessOf(wi.liveness, path, env),
          },
        }
      : {}),
    ...(c.kubernetesReviews
      ? { kubernetesReviews: { issuer: c.kubernetesReviews.issuer, audience: c.kubernetesReviews.audience ?? RELAY_AUDIENCE, jwksFile: path(c.kubernetesReviews.jwksFile) } }
      : {}),
    targetOverrides: c.targetOverrides ?? {},
    shutdownGraceSeconds: c.shutdownGraceSeconds ?? 25,
    logLevel: env['CUSTOS_LOG_LEVEL'] ?? c.logLevel ?? 'info',
  };
}

const IN_CLUSTER_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Where the in-cluster API token, its CA and the API server are: the kubelet's defaults unless the file says. */
function livenessOf(
  l: { intervalSeconds?: number; tokenFile?: string; caFile?: string; apiServer?: string } | undefined,
  path: (p: string) => string, env: NodeJS.ProcessEnv,
): NonNullable<SidecarConfig['workloadIdentity']>['liveness'] {
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
  const fromEnv = host !== undefined && host !== '' ? `https://${host.includes(':') ? `[${host}]` : host}:${port}` : undefined;
  const apiServer = l?.apiServer ?? fromEnv;
  return {
    intervalMs: Math.round((l?.intervalSeconds ?? 30) * 1000),
    tokenFile: path(l?.tokenFile ?? `${IN_CLUSTER_ACCOUNT_DIR}/token`),
    caFile: path(l?.caFile ?? `${IN_CLUSTER_ACCOUNT_DIR}/ca.crt`),
    ...(apiServer !== undefined ? { apiServer } : {}),
  };
}

export async function loadSidecarConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<SidecarConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e: unknown) {
    throw new CustosError('ERR_CONFIG_INVALID', `cannot read sidecar config ${file}`, { cause: e });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e: unknown) {
    throw new CustosError('ERR_CONFIG_INVALID', `sidecar config ${file} is not valid YAML: ${(e as Error).message}`, { cause: e });
  }
  return resolveSidecarConfig(doc, dirname(resolve(file)), env);
}
