// The operator's configuration, read from the environment the chart sets (charts/custos/templates/
// deployment.yaml is the other half of this contract; test/operator-config.test.ts renders the
// chart and feeds its env through this parser). Pure: takes the environment as a record, so the
// wiring (operator/main.ts) and the tests share one parser. Every problem names the variable.
import { CustosError } from '../lib/errors.ts';
import { DEFAULT_INJECTION_SETTINGS, validateInjectionSettings, type InjectionSettings } from './webhook/injection-settings.ts';

export type CertMode = 'in-process' | 'cert-manager';

export interface OperatorConfig {
  /** The release namespace: the Lease and the webhook CA Secret live here. */
  readonly namespace: string;
  /** Leader-election identity (the pod name under Kubernetes). */
  readonly identity: string;
  readonly logLevel: string;
  readonly leaseName: string;
  /** Leader election timings (controller-runtime defaults: 15 s, 10 s, 2 s). */
  readonly lease: { readonly durationSeconds: number; readonly renewDeadlineSeconds: number; readonly retryPeriodSeconds: number };
  readonly webhook: {
    readonly configurationName: string;
    readonly serviceName: string;
    readonly host: string;
    readonly port: number;
    readonly certMode: CertMode;
    /** cert-manager mode: the mounted Secret (tls.crt, tls.key, ca.crt). */
    readonly certDir?: string;
    /** in-process mode: the Secret holding the CA the leader generated. */
    readonly caSecretName: string;
    /** Extra subject alternative names for the serving certificate (local clusters: 127.0.0.1). */
    readonly extraNames: readonly string[];
  };
  readonly metrics: { readonly host: string; readonly port: number };
  /** On SIGTERM: seconds between failing readiness and closing the webhook (endpoint withdrawal). */
  readonly shutdownDelaySeconds: number;
  readonly redisUrl?: string;
  /** Approvals (with Redis): the Secret holding the key relayed Kubernetes reviews are signed with. */
  readonly approvals: { readonly signingKeySecretName: string };
  /** A kubeconfig file; absent in a pod, where the in-cluster service account is used. */
  readonly kubeconfig?: string;
  readonly injection: InjectionSettings;
}

type Env = Readonly<Record<string, string | undefined>>;

function fail(variable: string, problem: string): never {
  throw new CustosError('ERR_OPERATOR_CONFIG_INVALID', `invalid operator configuration: ${variable}: ${problem}`);
}

function text(env: Env, variable: string, fallback?: string): string {
  const value = env[variable];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return fallback;
  return fail(variable, 'required but not set');
}

function port(env: Env, variable: string, fallback: number): number {
  const value = env[variable];
  if (value === undefined || value === '') return fallback;
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65535) fail(variable, `${JSON.stringify(value)} is not a TCP port`);
  return Number(value);
}

/** Kubernetes object names (RFC 1123 subdomain, which Leases, Secrets and configurations use). */
function seconds(env: Env, variable: string, fallback: number, min = 1): number {
  const value = env[variable];
  if (value === undefined || value === '') return fallback;
  if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > 3600) fail(variable, `${JSON.stringify(value)} is not a whole number of seconds between ${min} and 3600`);
  return Number(value);
}

function objectName(env: Env, variable: string, fallback?: string): string {
  const value = text(env, variable, fallback);
  if (value.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(value)) {
    fail(variable, `${JSON.stringify(value)} is not a valid Kubernetes name (lowercase RFC 1123 subdomain)`);
  }
  return value;
}

function certMode(env: Env): CertMode {
  const value = text(env, 'CUSTOS_WEBHOOK_CERT_MODE', 'in-process');
  if (value !== 'in-process' && value !== 'cert-manager') fail('CUSTOS_WEBHOOK_CERT_MODE', `${JSON.stringify(value)} is not one of in-process, cert-manager`);
  return value;
}

/**
 * The cluster's service-account token issuer (`iss` and JWKS URL of `kubectl get --raw
 * /.well-known/openid-configuration`), rendered into every sidecar config so the sidecar can verify
 * its projected token. Without it sidecars have no workload identity and refuse workload-authenticated
 * connections, so both variables or neither.
 */
function workloadIdentity(env: Env): { workloadIdentity?: { issuer: string; jwksUri: string; serviceAccountCheckSeconds?: number } } {
  const issuer = env.CUSTOS_WORKLOAD_ISSUER ?? '';
  const jwksUri = env.CUSTOS_WORKLOAD_JWKS_URI ?? '';
  if (issuer === '' && jwksUri === '') return {};
  if (issuer === '') fail('CUSTOS_WORKLOAD_ISSUER', 'required when CUSTOS_WORKLOAD_JWKS_URI is set');
  if (jwksUri === '') fail('CUSTOS_WORKLOAD_JWKS_URI', 'required when CUSTOS_WORKLOAD_ISSUER is set');
  if (!URL.canParse(jwksUri) || new URL(jwksUri).protocol !== 'https:') fail('CUSTOS_WORKLOAD_JWKS_URI', `${JSON.stringify(jwksUri)} is not an https URL`);
  // How often sidecars ask the API server whether their service account still exists (sidecar default 30 s).
  const check = env.CUSTOS_WORKLOAD_SA_CHECK_SECONDS;
  return { workloadIdentity: { issuer, jwksUri, ...(check !== undefined && check !== '' ? { serviceAccountCheckSeconds: seconds(env, 'CUSTOS_WORKLOAD_SA_CHECK_SECONDS', 30) } : {}) } };
}

/** Parses the operator's environment; throws ERR_OPERATOR_CONFIG_INVALID naming the variable. */
export function readOperatorConfig(env: Env, defaults: { hostname: string }): OperatorConfig {
  const mode = certMode(env);
  const certDir = env.CUSTOS_WEBHOOK_CERT_DIR;
  if (mode === 'cert-manager' && (certDir === undefined || certDir === '')) {
    fail('CUSTOS_WEBHOOK_CERT_DIR', 'required when CUSTOS_WEBHOOK_CERT_MODE is cert-manager');
  }
  const redisUrl = env.CUSTOS_REDIS_URL !== undefined && env.CUSTOS_REDIS_URL !== '' ? env.CUSTOS_REDIS_URL : undefined;
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) fail('CUSTOS_REDIS_URL', 'must start with redis:// or rediss://');
  // The URL is rendered into every policy ConfigMap (the sidecar's config), and ConfigMaps are not
  // secret: a password in it would be readable by anyone who can read ConfigMaps in any enforced
  // namespace. Refuse it rather than spread it.
  // ioredis also takes the password from the query string (`?password=`).
  if (redisUrl !== undefined && URL.canParse(redisUrl) && (new URL(redisUrl).password !== '' || new URL(redisUrl).searchParams.has('password'))) {
    fail('CUSTOS_REDIS_URL', 'carries a password, which would be copied into every policy ConfigMap; use a Redis reachable without one only from the cluster network (a NetworkPolicy), until Secret-based Redis credentials land');
  }
  const injection: InjectionSettings = {
    ...DEFAULT_INJECTION_SETTINGS,
    images: {
      ...DEFAULT_INJECTION_SETTINGS.images,
      sidecar: text(env, 'CUSTOS_SIDECAR_IMAGE', DEFAULT_INJECTION_SETTINGS.images.sidecar),
      init: text(env, 'CUSTOS_INIT_IMAGE', DEFAULT_INJECTION_SETTINGS.images.init),
    },
    ...(redisUrl === undefined ? {} : { redisUrl }),
    ...workloadIdentity(env),
  };
  const lease = {
    durationSeconds: seconds(env, 'CUSTOS_LEASE_DURATION_SECONDS', 15),
    renewDeadlineSeconds: seconds(env, 'CUSTOS_LEASE_RENEW_DEADLINE_SECONDS', 10),
    retryPeriodSeconds: seconds(env, 'CUSTOS_LEASE_RETRY_PERIOD_SECONDS', 2),
  };
  // client-go's own checks (leaderelection.NewLeaderElector): otherwise two leaders can overlap.
  if (lease.renewDeadlineSeconds >= lease.durationSeconds) fail('CUSTOS_LEASE_RENEW_DEADLINE_SECONDS', `${lease.renewDeadlineSeconds} must be less than the lease duration (${lease.durationSeconds})`);
  if (lease.retryPeriodSeconds >= lease.renewDeadlineSeconds) fail('CUSTOS_LEASE_RETRY_PERIOD_SECONDS', `${lease.retryPeriodSeconds} must be less than the renew deadline (${lease.renewDeadlineSeconds})`);
  const kubeconfig = env.KUBECONFIG !== undefined && env.KUBECONFIG !== '' ? env.KUBECONFIG : undefined;
  return {
    namespace: objectName(env, 'CUSTOS_NAMESPACE'),
    identity: text(env, 'CUSTOS_POD_NAME', defaults.hostname),
    logLevel: text(env, 'CUSTOS_LOG_LEVEL', 'info'),
    leaseName: objectName(env, 'CUSTOS_LEASE_NAME', 'custos-operator'),
    lease,
    webhook: {
      configurationName: objectName(env, 'CUSTOS_WEBHOOK_CONFIGURATION', 'custos-sidecar-injector'),
      serviceName: objectName(env, 'CUSTOS_WEBHOOK_SERVICE', 'custos-webhook'),
      host: text(env, 'CUSTOS_WEBHOOK_HOST', '0.0.0.0'),
      port: port(env, 'CUSTOS_WEBHOOK_PORT', 9443),
      certMode: mode,
      ...(mode === 'cert-manager' && certDir !== undefined ? { certDir } : {}),
      caSecretName: objectName(env, 'CUSTOS_WEBHOOK_CA_SECRET', 'custos-webhook-ca'),
      extraNames: (env.CUSTOS_WEBHOOK_EXTRA_NAMES ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''),
    },
    metrics: { host: text(env, 'CUSTOS_METRICS_HOST', '0.0.0.0'), port: port(env, 'CUSTOS_METRICS_PORT', 9090) },
    shutdownDelaySeconds: seconds(env, 'CUSTOS_SHUTDOWN_DELAY_SECONDS', 5, 0),
    approvals: { signingKeySecretName: objectName(env, 'CUSTOS_REVIEW_SIGNING_KEY_SECRET', 'custos-review-signing-key') },
    ...(redisUrl === undefined ? {} : { redisUrl }),
    ...(kubeconfig === undefined ? {} : { kubeconfig }),
    injection: validateInjectionSettings(injection),
  };
}
