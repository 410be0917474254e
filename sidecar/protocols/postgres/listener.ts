// A PostgreSQL listener for one target (explicit mode: a local port per target). Owns its sessions
// so the sidecar can drain them on SIGTERM.
import { createServer, type Server, type Socket } from 'node:net';
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

export async function startPostgresListener(options: { target: string; host: string; port: number; environment: SessionEnvironment }): Promise<PostgresListener> {
  const sessions = new Set<PostgresSession>();
  // allowHalfOpen: a client may send its last messages and half-close; like PostgreSQL, the session
  // still answers them before closing.
  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, (socket: Socket) => {
    const session = new PostgresSession(socket, options.environment);
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
