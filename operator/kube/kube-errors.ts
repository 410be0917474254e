// What went wrong in a call to the API server, in the two shapes client-node reports it: an
// ApiException (`code`, `body`) from the generated API classes, and a plain Error with
// `statusCode` from Watch when the watch request itself is refused. Network errors have neither.
import { ApiException } from '@kubernetes/client-node';

/** The HTTP status of a failed API call, or undefined when no response arrived (refused, reset, aborted). */
export function httpStatusOf(e: unknown): number | undefined {
  if (e instanceof ApiException) return e.code;
  if (typeof e !== 'object' || e === null) return undefined;
  const { statusCode } = e as { statusCode?: unknown };
  return typeof statusCode === 'number' ? statusCode : undefined;
}

/**
 * A one-line description for logs: status, reason and the server's message, never the response
 * headers or body that ApiException's own message carries.
 */
export function describeKubeError(e: unknown): string {
  if (e instanceof ApiException) {
    const status = statusBody(e.body);
    return status === undefined ? `HTTP ${e.code}` : `HTTP ${e.code} ${status.reason}: ${status.message}`;
  }
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const statusCode = httpStatusOf(e);
    const prefix = statusCode === undefined ? (typeof code === 'string' ? `${code} ` : '') : `HTTP ${statusCode} `;
    const cause = e.cause instanceof Error ? ` (${e.cause.message})` : '';
    return `${prefix}${e.name}: ${e.message}${cause}`;
  }
  return String(e);
}

function statusBody(body: unknown): { reason: string; message: string } | undefined {
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body) as unknown;
    } catch {
      return undefined;
    }
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { reason, message } = parsed as { reason?: unknown; message?: unknown };
  return { reason: typeof reason === 'string' ? reason : '', message: typeof message === 'string' ? message : '' };
}
