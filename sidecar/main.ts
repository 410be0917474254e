// Wires the sidecar: policy store, audit spool and shipper, identities, one PostgreSQL listener per
// target, and the operations endpoints. Only wiring lives here; behaviour lives in the modules.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { RedisShipper } from '../audit/shipper/redis-shipper.ts';
import { SpoolWriter } from '../audit/spool/spool-writer.ts';
import { CustosError } from '../lib/errors.ts';
import type { CompiledPolicy } from '../policy/compile.ts';
import { evaluate } from '../policy/evaluate.ts';
import type { ReviewerAuthentication } from '../policy/approvals/approval-types.ts';
import { RELAY_CLAIMS, RELAY_TOKEN_LIFETIME_SECONDS } from '../policy/approvals/relay-claims.ts';
import { analyseSql, loadSqlParser } from '../policy/sql/parser.ts';
import { RedisApprovalService } from './approvals/redis-approval-service.ts';
import { CallerIdentity } from './caller-identity.ts';
import { ConnectionPlacement } from './connection-placement.ts';
import type { SidecarConfig } from './config.ts';
import { startOpsServer, type OpsServer, type ReadinessCheck } from './http-server.ts';
import { IssuerKeys } from './identity/issuer-keys.ts';
import { createTokenVerifier } from './identity/token-verifier.ts';
import { ServiceAccountLiveness } from './identity/service-account-liveness.ts';
import { WorkloadIdentity } from './identity/workload-identity.ts';
import { createMetrics, type SidecarMetrics } from './metrics.ts';
import { PolicyAnnouncementListener } from './policy-announcements.ts';
import { PolicyStore } from './policy-store.ts';
import { MaskingService } from './masking-service.ts';
import { CancelRegistry } from './protocols/postgres/cancel-registry.ts';
import { startPostgresListener, type PostgresListener } from './protocols/postgres/listener.ts';
import type { ResolvedTarget, SessionEnvironment, SessionPolicy } from './protocols/postgres/session.ts';
import { connectUpstream, sendCancelRequest } from './protocols/postgres/upstream-client.ts';

export interface Sidecar {
  readonly listeners: ReadonlyMap<string, PostgresListener>;
  readonly ops: OpsServer;
  readonly metrics: SidecarMetrics;
  readonly policy: PolicyStore;
  readonly spool: SpoolWriter;
  /** Stops accepting, lets sessions finish within the grace period, ships what it can, closes. */
  drain(): Promise<void>;
}

export async function startSidecar(config: SidecarConfig, logger: Logger, options: { metrics?: SidecarMetrics } = {}): Promise<Sidecar> {
  const metrics = options.metrics ?? createMetrics();
  await loadSqlParser();
  const policy = await PolicyStore.open(config.policyFile, { logger, metrics, pollIntervalMs: config.policyReload.pollIntervalMs });

  const spool = await SpoolWriter.open({
    dir: config.spool.dir,
    gatewayId: config.gateway.id,
    maxBytes: config.spool.maxBytes,
    // Commit as soon as the previous datasync finishes: statements wait for one write + datasync,
    // and concurrent statements share it (group commit).
    commitIntervalMs: 0,
    logger,
    onUsage: (bytes) => {
      metrics.spoolBytes.set(bytes);
    },
  });
  let shipper: RedisShipper | undefined;
  if (config.redisUrl !== undefined) {
    shipper = new RedisShipper({
      spoolDir: config.spool.dir,
      podUid: config.gateway.podUid,
      redis: { url: config.redisUrl },
      logger,
      onFreed: () => { void spool.refreshUsage(); },
      metrics: {
        shipped: (n: number) => { metrics.shippedEvents.inc(n); },
        redisUp: (up: boolean) => { metrics.redisUp.set(up ? 1 : 0); },
      },
    });
    shipper.start();
  }

  const callers = new CallerIdentity(logger);
  await callers.configure(policy.current.spec.issuers ?? []);
  policy.onChange((p) => {
    callers.configure(p.spec.issuers ?? []).catch((e: unknown) => { logger.error({ err: String(e) }, 'issuer reconfiguration failed'); });
  });

  let workload: WorkloadIdentity | undefined;
  let workloadKeys: IssuerKeys | undefined;
  let liveness: ServiceAccountLiveness | undefined;
  if (config.workloadIdentity !== undefined) {
    const wi = config.workloadIdentity;
    workloadKeys = new IssuerKeys({
      issuer: wi.issuer,
      source: wi.jwksFile !== undefined ? { kind: 'file', path: wi.jwksFile } : { kind: 'url', url: wi.jwksUri ?? '' },
    });
    await workloadKeys.start();
    workload = new WorkloadIdentity({
      path: wi.tokenFile,
      verifier: createTokenVerifier({ issuers: [{ issuer: wi.issuer, audience: wi.audience, keys: workloadKeys }] }),
      revoked: () => liveness?.revoked,
    });
    const identity = workload;
    await identity.current().catch((e: unknown) => { logger.error({ err: (e as Error).message }, 'workload identity not verifiable yet'); });
    if (wi.liveness.apiServer === undefined) {
      logger.info('no KUBERNETES_SERVICE_HOST: a deleted service account is noticed only when its projected token expires');
    } else {
      liveness = await ServiceAccountLiveness.start({
        apiServer: wi.liveness.apiServer, tokenFile: wi.liveness.tokenFile, caFile: wi.liveness.caFile, intervalMs: wi.liveness.intervalMs,
        expectedUsername: () => identity.subject,
        logger: logger.child({ component: 'service-account-liveness' }),
      });
    }
  }

  const downstreamTls: SecureContext | undefined = config.tls
    ? createSecureContext({ cert: await readFile(config.tls.certFile), key: await readFile(config.tls.keyFile) })
    : undefined;

  // Just-in-time approvals live in Redis (local mode); without it require-approval is a refusal.
  let approvals: RedisApprovalService | undefined;
  if (config.redisUrl !== undefined) {
    const service = new RedisApprovalService({
      redisUrl: config.redisUrl,
      gateway: {
        id: config.gateway.id,
        podUid: config.gateway.podUid,
        ...(config.gateway.podName !== undefined ? { pod: config.gateway.podName } : {}),
        ...(config.gateway.namespace !== undefined ? { namespace: config.gateway.namespace } : {}),
      },
      reviewerAuthentication: reviewerAuthenticationOf(policy.current),
      ...(config.kubernetesReviews === undefined ? {} : { kubernetesReviews: relayAuthentication(config.kubernetesReviews) }),
      logger: logger.child({ component: 'approvals' }),
    });
    policy.onChange((p) => { service.configureReviewers(reviewerAuthenticationOf(p)); });
    approvals = service;
  }

  const cancelKeys = new CancelRegistry();
  let draining = false;
  const sessionPolicies = new WeakMap<CompiledPolicy, SessionPolicy>();
  const sessionPolicy = (): SessionPolicy => {
    const current = policy.current;
    let view = sessionPolicies.get(current);
    if (view === undefined) {
      view = {
        name: current.namespace !== undefined ? `${current.namespace}/${current.name}` : current.name,
        version: current.version,
        analyse: analyseSql,
        decide: (input) => evaluate(current, input),
      };
      sessionPolicies.set(current, view);
    }
    return view;
  };

  // Where intercepted connections were going (SO_ORIGINAL_DST) and what each target resolves to.
  const placement = await ConnectionPlacement.start({
    targets: () => policy.current.spec.targets,
    onTargetsChange: (listener) => { policy.onChange(listener); },
    logger,
    metrics,
  });
  const listeners = new Map<string, PostgresListener>();
  const maskingServices = new Map<string, MaskingService>();
  for (const [index, target] of policy.current.spec.targets.entries()) {
    const port = config.listen.ports[target.name] ?? target.listenPort;
    if (port === undefined) {
      throw new CustosError('ERR_CONFIG_INVALID', `spec.targets[${index}].listenPort: Required value (explicit mode needs a local port for target "${target.name}", or listen.ports.${target.name} in the sidecar config)`);
    }
    const masking = new MaskingService({
      policy: () => policy.current,
      connect: () => {
        const resolved = resolveTarget(policy.current, target.name, config);
        return resolved.connect({ database: resolved.database ?? 'postgres', applicationName: 'custos-masking-catalog', parameters: {} });
      },
      logger: logger.child({ target: target.name, component: 'masking' }),
    });
    await masking.start();
    policy.onChange(() => { void masking.refresh(); });
    maskingServices.set(target.name, masking);
    const environment: SessionEnvironment = {
      masking,
      target: () => resolveTarget(policy.current, target.name, config),
      policy: sessionPolicy,
      verifyCallerToken: (token) => callers.verify(token),
      workloadIdentity: async () => (workload ? workload.current() : undefined),
      audit: spool,
      cancelKeys,
      metrics,
      logger: logger.child({ target: target.name }),
      ...(downstreamTls !== undefined ? { downstreamTls } : {}),
      now: Date.now,
      draining: () => draining,
      ...(approvals !== undefined ? { approvals } : {}),
    };
    const listener = await startPostgresListener({
      target: target.name, host: config.listen.host, port, environment, place: (socket) => placement.place(target.name, socket),
      // custos-init REDIRECTs IPv6 connections to ::1: listen there too when the pod has IPv6.
      alsoHosts: config.listen.host === '127.0.0.1' ? ['::1'] : [],
      onSkippedHost: (host, e) => { logger.info({ target: target.name, host, err: e.message }, 'not listening on this address (IPv6 connections cannot be intercepted)'); },
    });
    listeners.set(target.name, listener);
    logger.info({ target: target.name, hosts: listener.hosts, port: listener.port }, 'listening');
  }

  const checks: ReadinessCheck[] = [
    { name: 'draining', check: () => (draining ? 'the sidecar is shutting down' : null) },
    { name: 'audit-spool', check: () => (spool.failed ? 'the audit spool failed' : spool.full ? 'the audit spool is full' : null) },
    { name: 'caller-issuers', check: () => { const n = callers.notReady(); return n.length > 0 ? `no keys yet for ${n.join(', ')}` : null; } },
    {
      name: 'workload-identity',
      check: () => (liveness?.revoked !== undefined ? liveness.revoked : workload !== undefined && !workload.ready ? 'the workload token is not verifiable' : null),
    },
    {
      name: 'masking',
      check: () => {
        const pending = [...maskingServices.entries()].filter(([, m]) => !m.ready).map(([name, m]) => `${name}${m.lastError !== undefined ? ` (${m.lastError})` : ''}`);
        return pending.length > 0 ? `masking metadata not loaded for ${pending.join(', ')}` : null;
      },
    },
  ];
  const ops = await startOpsServer({ host: config.http.host, port: config.http.port, registry: metrics.registry, checks });
  metrics.spoolFull.set(0);
  const spoolGauge = setInterval(() => { metrics.spoolFull.set(spool.full ? 1 : 0); }, 1000);
  spoolGauge.unref();
  // Optional fast path for policy changes, started once everything else is up (a failed start-up
  // leaves no Redis connection behind); it never waits for Redis, nor fails without it.
  const announced = config.policyReload.announcements;
  const announcements = config.redisUrl !== undefined && announced !== undefined
    ? new PolicyAnnouncementListener({ redisUrl: config.redisUrl, policy: announced, store: policy, logger, metrics })
    : undefined;
  announcements?.start();

  return {
    listeners,
    ops,
    metrics,
    policy,
    spool,
    async drain() {
      if (draining) return;
      draining = true;
      logger.info('draining: no new sessions');
      await Promise.all([...listeners.values()].map((l) => l.stopAccepting()));
      const deadline = Date.now() + config.shutdownGraceSeconds * 1000;
      while (Date.now() < deadline && [...listeners.values()].some((l) => l.sessions.size > 0)) {
        await new Promise((r) => setTimeout(r, 100));
      }
      for (const l of listeners.values()) l.terminateSessions();
      await new Promise((r) => setTimeout(r, 50));
      clearInterval(spoolGauge);
      await spool.close();
      if (shipper) await shipper.stop();
      await announcements?.close();
      await approvals?.close();
      policy.close();
      placement.close();
      callers.close();
      for (const m of maskingServices.values()) m.close();
      workloadKeys?.stop();
      liveness?.stop();
      await ops.close();
      logger.info('drained');
    },
  };
}

/** The operator's relay tokens for Kubernetes reviews: fixed claims, bound to a request (relay-claims.ts). */
function relayAuthentication(relay: NonNullable<SidecarConfig['kubernetesReviews']>): ReviewerAuthentication {
  return {
    kind: 'kubernetes-relay', issuer: relay.issuer, audience: relay.audience, jwksFile: relay.jwksFile,
    usernameClaim: RELAY_CLAIMS.username, groupsClaim: RELAY_CLAIMS.groups, maxTokenAgeSeconds: RELAY_TOKEN_LIFETIME_SECONDS,
  };
}

/** How reviewers authenticate, as the compiled policy declares it (`spec.reviewerAuthentication`). */
function reviewerAuthenticationOf(policy: CompiledPolicy): ReviewerAuthentication | undefined {
  return policy.reviewerAuthentication ?? undefined;
}

/** The target as sessions reach it: policy entry, local overrides, credentials read per connection. */
function resolveTarget(policy: CompiledPolicy, name: string, config: SidecarConfig): ResolvedTarget {
  const index = policy.spec.targets.findIndex((t) => t.name === name);
  const target = policy.spec.targets[index];
  if (target === undefined) throw new CustosError('ERR_TARGET_UNKNOWN', `target "${name}" is no longer in the policy`);
  const override = config.targetOverrides[name] ?? {};
  const host = override.host ?? target.host;
  const port = override.port ?? target.port;
  const database = override.database ?? target.database;
  const tls = target.tls ?? {};
  const tlsMode = tls.mode ?? 'prefer';
  const readSecret = async (secret: string, key: string): Promise<string> => {
    try {
      return (await readFile(join(config.credentialsDir, secret, key), 'utf8')).replace(/\r?\n$/, '');
    } catch (e: unknown) {
      throw new CustosError('ERR_CREDENTIALS', `credentials for target "${name}" are not readable (${secret}/${key})`, { cause: e });
    }
  };
  return {
    name,
    host,
    port,
    database: target.database,
    clientAuthentication: target.clientAuthentication ?? 'workload',
    async connect({ database: requested, applicationName, parameters }) {
      const credentials = target.credentials;
      const user = credentials ? await readSecret(credentials.secretName, credentials.usernameKey ?? 'username') : 'postgres';
      const password = credentials ? await readSecret(credentials.secretName, credentials.passwordKey ?? 'password') : '';
      const ca = tls.caSecretName !== undefined ? await readSecret(tls.caSecretName, 'ca.crt') : undefined;
      return connectUpstream({
        host,
        port,
        database: database ?? requested,
        user,
        password,
        tls: { mode: tlsMode, ...(ca !== undefined ? { ca } : {}), ...(tls.serverName !== undefined ? { serverName: tls.serverName } : {}) },
        ...(applicationName !== undefined ? { applicationName } : {}),
        extraParameters: parameters,
        connectTimeoutMs: 5000,
      });
    },
    cancel: (pid, secret) => sendCancelRequest(host, port, pid, secret),
  };
}
