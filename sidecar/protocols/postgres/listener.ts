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
  readonly sessions: ReadonlySet<PostgresSession>;
  /** Stops accepting; existing sessions continue. */
  stopAccepting(): Promise<void>;
  /** Ends every session with FATAL 57P01. */
  terminateSessions(): void;
}

export interface PostgresListenerOptions {
  readonly target: string;
  readonly host: string;
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
  // allowHalfOpen: a client may send its last messages and half-close; like PostgreSQL, the session
  // still answers them before closing.
  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, (socket: Socket) => {
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
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  return {
    target: options.target,
    port,
    sessions,
    stopAccepting: () => new Promise<void>((resolve) => { server.close(() => { resolve(); }); }),
    terminateSessions() {
      for (const s of sessions) s.shutdown();
    },
  };
}
