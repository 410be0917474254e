// Informer metrics (reference/kubernetes.md §12), one set per registry shared by every informer on
// it and told apart by the `informer` label. The last-event age is computed when scraped, from
// each live informer's own clock reading, so it keeps growing while a watch is silent.
import { Counter, Gauge, type Registry } from 'prom-client';

export type InformerEventType = 'add' | 'update' | 'delete';
export type RelistReason = 'initial' | 'expired' | 'periodic';

export interface InformerMetrics {
  /** Unplanned watch re-establishments (errors, stream ends, watchdog, 410); periodic relists and client-node's routine inactivity timeouts are not counted. */
  readonly restarts: Counter<'informer'>;
  readonly objects: Gauge<'informer'>;
  readonly relists: Counter<'informer' | 'reason'>;
  /** Changes a relist found that no watch event had delivered (after `initial`). */
  readonly relistChanges: Counter<'informer' | 'event'>;
  readonly handlerErrors: Counter<'informer' | 'event'>;
  /** Reports `informer`'s last-event age on scrape, until the returned function is called. */
  trackLastEvent(informer: string, ageSeconds: () => number | undefined): () => void;
}

const RESTARTS = 'custos_informer_restarts_total';
const AGE = 'custos_informer_last_event_age_seconds';
const OBJECTS = 'custos_informer_objects';
const RELISTS = 'custos_informer_relists_total';
const RELIST_CHANGES = 'custos_informer_relist_changes_total';
const HANDLER_ERRORS = 'custos_informer_handler_errors_total';

const byRegistry = new WeakMap<Registry, InformerMetrics>();

export function informerMetrics(registry: Registry): InformerMetrics {
  const existing = byRegistry.get(registry);
  if (existing !== undefined) return existing;
  const registers = [registry];
  const ages = new Map<string, () => number | undefined>();
  const age = new Gauge<'informer'>({
    name: AGE,
    help: 'Seconds since the informer last saw a watch event, a bookmark or a list.',
    labelNames: ['informer'],
    registers,
    collect() {
      for (const [informer, read] of ages) {
        const seconds = read();
        if (seconds !== undefined) this.set({ informer }, seconds);
      }
    },
  });
  const metrics: InformerMetrics = {
    restarts: new Counter({ name: RESTARTS, help: 'Watch restarts after an error, a closed stream, the watchdog or 410 Gone.', labelNames: ['informer'], registers }),
    objects: new Gauge({ name: OBJECTS, help: 'Objects in the informer cache.', labelNames: ['informer'], registers }),
    relists: new Counter({ name: RELISTS, help: 'Full lists by reason (initial, expired after 410 Gone, periodic).', labelNames: ['informer', 'reason'], registers }),
    relistChanges: new Counter({
      name: RELIST_CHANGES,
      help: 'Changes a relist found that the watch had not delivered (expected after 410 Gone; after a periodic relist, missed events).',
      labelNames: ['informer', 'event'],
      registers,
    }),
    handlerErrors: new Counter({ name: HANDLER_ERRORS, help: 'Event handlers that threw or rejected.', labelNames: ['informer', 'event'], registers }),
    trackLastEvent(informer, read) {
      ages.set(informer, read);
      return () => {
        if (ages.get(informer) === read) ages.delete(informer);
        age.remove({ informer });
      };
    },
  };
  byRegistry.set(registry, metrics);
  return metrics;
}
