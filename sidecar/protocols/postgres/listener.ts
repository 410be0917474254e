// A PostgreSQL listener for one target (a local port per target: dialled directly in explicit mode,
// or reached through the pod's nat REDIRECT in transparent mode). Owns its sessions so the sidecar
// can drain them on SIGTERM. Each accepted connection is first placed by where it was going
// (`place`, sidecar/destination-placement.ts); one that is not for this listener's target is
// refused in protocol terms (refuse-connection.ts) and never becomes a session.
import { createServer, type Server, type Socket } from 'node:net';
import type { Placement } from '../../destination-placement.ts';
import { refuseConnection } from './refuse-connection.ts';
import { PostgresSession, type SessionEnvironment } from './session.ts';

export interface PostgresListener {
  readonly target: string;
  readonly port: number;
  /** The addresses actually listened on (`host`, then each of `alsoHosts` that could be bound). */
  readonly hosts: readonly string[];
  readonly sessions: ReadonlySet<PostgresSession>;
  /** Stops accepting; existing sessions continue. */
  stopAccepting(): Promise<void>;
  /** Ends every session with FATAL 57P01. */
  terminateSessions(): void;
}

export interface PostgresListenerOptions {
  readonly target: string;
  readonly host: string;
  /**
   * Further addresses on the same port, bound when the machine has them: `::1` next to
   * `127.0.0.1`, because custos-init REDIRECTs IPv6 connections to the IPv6 loopback. One that
   * cannot be bound (no IPv6 in the pod) is skipped and reported, never fatal.
   */
  readonly alsoHosts?: readonly string[];
  readonly onSkippedHost?: (host: string, error: Error) => void;
  readonly port: number;
  readonly environment: SessionEnvironment;
  /**
   * Decides whether an accepted connection is for this listener's target; called synchronously
   * before any byte is read (SO_ORIGINAL_DST). Required: a listener that served everything would
   * silently skip the destination check.
   */
  readonly place: (socket: Socket) => Placement;
}

export async function startPostgresListener(options: PostgresListenerOptions): Promise<PostgresListener> {
  const sessions = new Set<PostgresSession>();
  const accept = (socket: Socket): void => {
    const placement = options.place(socket);
    if (placement.kind === 'refuse') {
      refuseConnection(socket, options.target, placement, options.environment);
      return;
    }
    // Only the pod's own OUTPUT chain redirects to this loopback listener (PREROUTING cannot reach
    // 127.0.0.1 without route_localnet), so a placed redirect is a local client.
    const session = new PostgresSession(socket, options.environment, { redirectedInPod: placement.via === 'original-destination' });
    sessions.add(session);
    socket.once('close', () => sessions.delete(session));
  };
  const listen = (host: string, port: number): Promise<Server> => new Promise<Server>((resolve, reject) => {
    // allowHalfOpen: a client may send its last messages and half-close; like PostgreSQL, the
    // session still answers them before closing.
    const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, accept);
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
  const first = await listen(options.host, options.port);
  const address = first.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  const servers = [first];
  const hosts = [options.host];
  for (const host of options.alsoHosts ?? []) {
    try {
      servers.push(await listen(host, port));
      hosts.push(host);
    } catch (e: unknown) {
      options.onSkippedHost?.(host, e instanceof Error ? e : new Error(String(e)));
    }
  }
  return {
    target: options.target,
    port,
    hosts,
    sessions,
    stopAccepting: async () => {
      await Promise.all(servers.map((server) => new Promise<void>((resolve) => { server.close(() => { resolve(); }); })));
    },
    terminateSessions() {
      for (const s of sessions) s.shutdown();
    },
  };
}
