// The pod runner's connection to the API server: JSON requests and watch streams over HTTPS with
// the server's CA and a bearer token, as the kubelet talks to the API server (it never reads the
// double's store directly, so what it sees and writes is what any client sees).
import { request, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';

export interface KubeConnection {
  readonly url: string;
  readonly caCert: string;
  readonly token: string;
}

export interface KubeObjectLike {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface WatchEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: KubeObjectLike;
}

/** A non-2xx answer, with the Status the server sent. */
export class KubeRequestError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(method: string, path: string, code: number, body: string) {
    let message = body;
    let reason = '';
    try {
      const status = JSON.parse(body) as { message?: string; reason?: string };
      message = status.message ?? body;
      reason = status.reason ?? '';
    } catch {
      // Not a Status: keep the raw text.
    }
    super(`${method} ${path}: ${code} ${message}`);
    this.code = code;
    this.reason = reason;
  }
}

export interface KubeClient {
  json<T = KubeObjectLike>(method: string, path: string, body?: unknown, contentType?: string): Promise<T>;
  /** Opens a watch; `onEvent` sees every event; resolves when the stream ends (closed by either side). */
  watch(path: string, onEvent: (e: WatchEvent) => void, signal: AbortSignal): Promise<void>;
}

export function createKubeClient(connection: KubeConnection): KubeClient {
  const base = new URL(connection.url);
  const options = (method: string, path: string, headers: Record<string, string>): RequestOptions => ({
    method, hostname: base.hostname, port: base.port, path, ca: connection.caCert,
    headers: { authorization: `Bearer ${connection.token}`, accept: 'application/json', 'user-agent': 'custos-pod-runner (kubelet stand-in)', ...headers },
  });
  const collect = async (res: IncomingMessage): Promise<string> => {
    let text = '';
    for await (const chunk of res) text += (chunk as Buffer).toString();
    return text;
  };
  return {
    async json<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const headers: Record<string, string> = payload === undefined ? {} : { 'content-type': contentType, 'content-length': String(Buffer.byteLength(payload)) };
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = request(options(method, path, headers), resolve);
        req.on('error', reject);
        req.end(payload);
      });
      const text = await collect(res);
      const code = res.statusCode ?? 0;
      if (code < 200 || code > 299) throw new KubeRequestError(method, path, code, text);
      return JSON.parse(text) as T;
    },
    async watch(path, onEvent, signal): Promise<void> {
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = request({ ...options('GET', path, {}), signal }, resolve);
        req.on('error', reject);
        req.end();
      });
      const code = res.statusCode ?? 0;
      if (code !== 200) throw new KubeRequestError('GET', path, code, await collect(res));
      let buffered = '';
      try {
        for await (const chunk of res) {
          buffered += (chunk as Buffer).toString();
          let newline = buffered.indexOf('\n');
          while (newline >= 0) {
            const line = buffered.slice(0, newline).trim();
            buffered = buffered.slice(newline + 1);
            if (line !== '') onEvent(JSON.parse(line) as WatchEvent);
            newline = buffered.indexOf('\n');
          }
        }
      } catch (e: unknown) {
        if (!signal.aborted) throw e;
      }
    },
  };
}

export function isNotFound(e: unknown): boolean {
  return e instanceof KubeRequestError && e.code === 404;
}
