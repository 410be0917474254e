// Why a watch stream ended, and what the informer does next. Pure: the informer classifies what
// client-node's Watch reports (its `done` callback, an ERROR event) and acts on the kind.
import { httpStatusOf } from './kube-errors.ts';

export type WatchEnd =
  /** stop() was called. */
  | { readonly kind: 'stopped' }
  /** The periodic relist is due (planned, not a restart). */
  | { readonly kind: 'relist' }
  /** No event or bookmark for watchdogSeconds: the stream is presumed stalled. */
  | { readonly kind: 'watchdog' }
  /** 410 Gone: the resourceVersion is too old (compacted); only a new list can continue. */
  | { readonly kind: 'expired'; readonly detail: string }
  /** client-node's own inactivity timeout (30 s without a byte); it already throttled us. */
  | { readonly kind: 'timeout' }
  /** The server ended the stream cleanly (timeoutSeconds, shutdown, a dropped watch). */
  | { readonly kind: 'closed' }
  /** Anything else: refused, reset, an ERROR event other than 410. */
  | { readonly kind: 'error'; readonly detail: string; readonly status?: number };

/** Classifies the error client-node's Watch passes to its `done` callback (null for a clean end). */
export function classifyWatchDone(err: unknown, describe: (e: unknown) => string): WatchEnd {
  if (err === null || err === undefined) return { kind: 'closed' };
  if (err instanceof Error && err.name === 'TimeoutError') return { kind: 'timeout' };
  const status = httpStatusOf(err);
  if (status === 410) return { kind: 'expired', detail: describe(err) };
  return { kind: 'error', detail: describe(err), ...(status === undefined ? {} : { status }) };
}

/** Classifies the metav1.Status of a watch ERROR event. */
export function classifyErrorEvent(status: unknown): WatchEnd {
  const { code, reason, message } = (typeof status === 'object' && status !== null ? status : {}) as { code?: unknown; reason?: unknown; message?: unknown };
  const detail = `ERROR event${typeof code === 'number' ? ` ${code}` : ''}${typeof reason === 'string' ? ` ${reason}` : ''}${typeof message === 'string' ? `: ${message}` : ''}`;
  if (code === 410) return { kind: 'expired', detail };
  return { kind: 'error', detail, ...(typeof code === 'number' ? { status: code } : {}) };
}

/** Restarts after these wait out the backoff; the others have waited already (timeout, watchdog) or are planned. */
export function needsBackoff(end: WatchEnd): boolean {
  return end.kind === 'expired' || end.kind === 'closed' || end.kind === 'error';
}
