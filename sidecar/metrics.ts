// Prometheus metrics of the data path (`custos_<noun>_total`, `custos_<noun>_seconds`). One registry
// per sidecar so tests can run several in one process.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface SidecarMetrics {
  readonly registry: Registry;
  readonly decisions: Counter<'action' | 'rule' | 'target'>;
  readonly statementSeconds: Histogram<'target' | 'outcome'>;
  readonly connections: Gauge<'target'>;
  readonly connectionsTotal: Counter<'target' | 'result'>;
  readonly authnFailures: Counter<'reason'>;
  readonly spoolBytes: Gauge;
  readonly spoolFull: Gauge;
  readonly auditAppends: Counter<'type'>;
  readonly shippedEvents: Counter;
  readonly redisUp: Gauge;
  readonly policyReloads: Counter<'result'>;
  /** Operator announcements on Redis (sidecar/policy-announcements.ts), by what was done with them. */
  readonly policyAnnouncements: Counter<'result'>;
  readonly policyAnnouncementsApplied: Counter;
  readonly policyAnnouncementsUnconfirmed: Counter;
  readonly protocolErrors: Counter<'code'>;
  /** 1 when SO_ORIGINAL_DST can be read (transparent interception verified), 0 in explicit mode only. */
  readonly originalDestinationAvailable: Gauge;
  /** Connections refused by where they were going (sidecar/destination-placement.ts). */
  readonly destinationRefusals: Counter<'target' | 'reason'>;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): SidecarMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'custos_' });
  const registers = [registry];
  return {
    registry,
    decisions: new Counter({ name: 'custos_decisions_total', help: 'Policy decisions by action and deciding rule.', labelNames: ['action', 'rule', 'target'], registers }),
    statementSeconds: new Histogram({
      name: 'custos_statement_duration_seconds',
      help: 'Time from forwarding a statement to its completion, as seen by the sidecar.',
      labelNames: ['target', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    }),
    connections: new Gauge({ name: 'custos_connections', help: 'Open client connections.', labelNames: ['target'], registers }),
    connectionsTotal: new Counter({ name: 'custos_connections_total', help: 'Client connections by result.', labelNames: ['target', 'result'], registers }),
    authnFailures: new Counter({ name: 'custos_authn_failures_total', help: 'Refused authentications by reason.', labelNames: ['reason'], registers }),
    spoolBytes: new Gauge({ name: 'custos_audit_spool_bytes', help: 'Bytes of audit events in the local spool not yet shipped.', registers }),
    spoolFull: new Gauge({ name: 'custos_audit_spool_full', help: '1 while the spool is full and new statements are refused.', registers }),
    auditAppends: new Counter({ name: 'custos_audit_events_total', help: 'Audit events appended to the spool by type.', labelNames: ['type'], registers }),
    shippedEvents: new Counter({ name: 'custos_audit_shipped_events_total', help: 'Audit events shipped to the Redis stream.', registers }),
    redisUp: new Gauge({ name: 'custos_redis_up', help: '1 while the audit shipper is connected to Redis.', registers }),
    policyReloads: new Counter({ name: 'custos_policy_reloads_total', help: 'Policy file (re)loads by result.', labelNames: ['result'], registers }),
    policyAnnouncements: new Counter({
      name: 'custos_policy_announcements_received_total',
      help: 'Policy announcements received on Redis: tracked (file re-read until it matches), current, foreign or malformed.',
      labelNames: ['result'],
      registers,
    }),
    policyAnnouncementsApplied: new Counter({ name: 'custos_policy_announcements_applied_total', help: 'Announced policy digests that the mounted policy file then carried and that took effect.', registers }),
    policyAnnouncementsUnconfirmed: new Counter({
      name: 'custos_policy_announcements_unconfirmed_total',
      help: 'Announced policy digests the mounted file never carried within the fast-poll window (nothing changed).',
      registers,
    }),
    protocolErrors: new Counter({ name: 'custos_protocol_errors_total', help: 'Connections closed for protocol violations, by error code.', labelNames: ['code'], registers }),
    originalDestinationAvailable: new Gauge({
      name: 'custos_original_destination_available',
      help: '1 when the SO_ORIGINAL_DST addon is loaded; 0: explicit mode only, redirected connections are placed by listener port without verification.',
      registers,
    }),
    destinationRefusals: new Counter({
      name: 'custos_destination_refusals_total',
      help: 'Connections refused because of their original destination (another target, no target, unreadable), by listener target.',
      labelNames: ['target', 'reason'],
      registers,
    }),
  };
}
