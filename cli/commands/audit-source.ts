// Where `custos audit` commands read events from: the local spool directory, or the Redis stream of
// one pod (`custos:audit:{<pod-uid>}`), or every pod's stream when no pod is named.
import type { AuditEvent } from '../../audit/event.ts';
import { listAuditStreams, readStream } from '../../audit/redis-stream-reader.ts';
import { readSpool } from '../../audit/spool/spool-reader.ts';

export const DEFAULT_SPOOL_DIR = '.custos/spool';

export interface AuditSourceOptions {
  readonly spool?: string;
  readonly redis?: string;
  readonly pod?: string;
  readonly follow?: boolean;
  readonly signal?: AbortSignal;
}

/** Events in order; in follow mode, keeps waiting for new ones until the signal aborts. */
export async function* auditEvents(options: AuditSourceOptions, onProblem: (message: string) => void): AsyncGenerator<AuditEvent> {
  if (options.redis !== undefined) {
    const pods = options.pod !== undefined ? [options.pod] : await listAuditStreams(options.redis);
    if (pods.length > 1 && options.follow === true) throw new Error('--follow on Redis needs --pod UID (one stream)');
    for (const pod of pods) {
      yield* readStream(options.redis, pod, { follow: options.follow === true, ...(options.signal !== undefined ? { signal: options.signal } : {}) });
    }
    return;
  }
  const dir = options.spool ?? DEFAULT_SPOOL_DIR;
  let from: Parameters<typeof readSpool>[1];
  for (;;) {
    for await (const item of readSpool(dir, from)) {
      if (item.kind === 'event') {
        from = item.next;
        yield item.event;
      } else if (item.kind === 'corrupt') {
        from = item.next;
        onProblem(`corrupt record at ${item.at.boot}/${item.at.segment}:${item.at.offset} (${item.reason})`);
      }
    }
    if (options.follow !== true || options.signal?.aborted === true) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}
