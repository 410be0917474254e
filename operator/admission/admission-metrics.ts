// Admission metrics (reference/kubernetes.md §3, §12): how long each review took, by outcome, and
// what the injector decided, by the builder's stable reason (the reasons double as label values, so
// the label set stays bounded). Registered on the registry the caller passes; a second webhook
// server on the same registry reuses them instead of failing on a duplicate name.
import { Counter, Histogram, type Registry } from 'prom-client';

/** `patch | skip | reject` are decisions; `invalid` is a refused request (4xx), `error` a failed one (5xx). */
export type AdmissionOutcome = 'patch' | 'skip' | 'reject' | 'invalid' | 'error';

export interface AdmissionMetrics {
  readonly duration: Histogram<'result'>;
  readonly injections: Counter<'result' | 'reason'>;
}

const DURATION = 'custos_admission_duration_seconds';
const INJECTIONS = 'custos_injections_total';

export function admissionMetrics(registry: Registry): AdmissionMetrics {
  const registers = [registry];
  const duration = (registry.getSingleMetric(DURATION) as Histogram<'result'> | undefined) ?? new Histogram({
    name: DURATION,
    help: 'Time to answer an AdmissionReview, by result (patch, skip, reject, invalid, error).',
    labelNames: ['result'],
    // The API server waits up to timeoutSeconds (10); the handler's budget is p99 < 200 ms.
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const injections = (registry.getSingleMetric(INJECTIONS) as Counter<'result' | 'reason'> | undefined) ?? new Counter({
    name: INJECTIONS,
    help: 'Injection decisions by result (patch, skip, reject) and the injector\'s reason.',
    labelNames: ['result', 'reason'],
    registers,
  });
  return { duration, injections };
}
