// A connection the sidecar will not serve because of where it was going (sidecar/
// destination-placement.ts): the client still gets its answer in PostgreSQL's terms, a FATAL
// ErrorResponse, so psql and drivers print why instead of "server closed the connection
// unexpectedly". PostgreSQL only reads an ErrorResponse after its StartupMessage, so the startup
// phase is played honestly: SSLRequest and GSSENCRequest are answered 'N' (no TLS: nothing secret
// is said, and the refusal is the same for everyone), a CancelRequest is dropped (it belongs to no
// session of this listener), and the StartupMessage is answered with the refusal. The refusal is
// logged, counted and audited at accept time, before any byte is read: a client that sends nothing
// is refused and recorded all the same, and nothing is ever forwarded upstream.
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { AuditLog } from '../../../audit/event.ts';
import { isCustosError } from '../../../lib/errors.ts';
import type { Principal } from '../../../policy/types.ts';
import { auditActor } from '../../audit-actor.ts';
import type { Placement } from '../../destination-placement.ts';
import type { SidecarMetrics } from '../../metrics.ts';
import * as be from './codec/backend-serializer.ts';
import { FrontendFramer } from './codec/framer.ts';
import { decodeStartupPacket } from './codec/frontend-messages.ts';

export type DestinationRefusal = Extract<Placement, { kind: 'refuse' }>;

/** What a refusal needs from the sidecar (a subset of the session environment). */
export interface RefusalEnvironment {
  readonly audit: AuditLog;
  readonly metrics: SidecarMetrics;
  readonly logger: Logger;
  readonly now: () => number;
  readonly workloadIdentity: () => Promise<Principal | undefined>;
}

/** A StartupMessage is small; anything larger is not a client worth reading further. */
const MAX_STARTUP_PACKET = 16 * 1024;
/** A client that never sends its StartupMessage is dropped after this long. */
const STARTUP_TIMEOUT_MS = 10_000;

export function refuseConnection(socket: Socket, listenerTarget: string, refusal: DestinationRefusal, env: RefusalEnvironment): void {
  const client = { ...(socket.remoteAddress !== undefined ? { ip: socket.remoteAddress } : {}), ...(socket.remotePort !== undefined ? { port: socket.remotePort } : {}) };
  env.metrics.destinationRefusals.inc({ target: listenerTarget, reason: refusal.reason });
  env.metrics.connectionsTotal.inc({ target: listenerTarget, result: 'refused' });
  env.logger.warn(
    { target: listenerTarget, reason: refusal.reason, destination: refusal.destination, owner: refusal.owner, client: client.ip, detail: refusal.detail },
    `connection refused: ${refusal.message}`,
  );
  void audit(listenerTarget, refusal, client, env);

  const errorResponse = be.errorResponse({
    severity: 'FATAL',
    code: refusal.sqlstate,
    message: refusal.message,
    ...(refusal.detail !== undefined ? { detail: refusal.detail } : {}),
    ...(refusal.hint !== undefined ? { hint: refusal.hint } : {}),
  });
  const framer = new FrontendFramer({ maxMessageLength: MAX_STARTUP_PACKET });
  let done = false;
  const finish = (answer?: Buffer): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.removeAllListeners('data');
    if (answer !== undefined) socket.end(answer);
    else socket.end();
    socket.destroySoon();
  };
  const timer = setTimeout(() => { finish(); }, STARTUP_TIMEOUT_MS);
  timer.unref();
  socket.setNoDelay(true);
  socket.on('error', (e: Error) => { env.logger.debug({ err: e.message }, 'refused client socket error'); });
  socket.on('close', () => { done = true; clearTimeout(timer); });
  socket.on('end', () => { finish(); });
  socket.on('data', (chunk: Buffer) => {
    try {
      for (const frame of framer.push(chunk)) {
        const packet = decodeStartupPacket(frame);
        switch (packet.type) {
          case 'SSLRequest':
          case 'GSSENCRequest':
            socket.write(be.sslRefuse());
            break;
          case 'CancelRequest':
            finish();
            return;
          case 'StartupMessage':
            finish(errorResponse);
            return;
          default: {
            const exhaustive: never = packet;
            return exhaustive;
          }
        }
      }
    } catch (e: unknown) {
      // Not PostgreSQL's startup: answer with the refusal anyway, it is the truth about this
      // connection, and close.
      env.logger.debug({ err: isCustosError(e) ? e.message : String(e) }, 'refused client sent a malformed startup packet');
      finish(errorResponse);
    }
  });
}

/** Best effort: the refusal stands whether or not it can be recorded (it grants nothing). */
async function audit(listenerTarget: string, refusal: DestinationRefusal, src: { ip?: string; port?: number }, env: RefusalEnvironment): Promise<void> {
  const workload = await env.workloadIdentity().catch(() => undefined);
  try {
    await env.audit.append({
      event_type: 'session.start',
      time: new Date(env.now()).toISOString(),
      actor: auditActor(workload !== undefined ? { workload } : {}),
      target: { kind: 'postgres', name: listenerTarget },
      src,
      outcome: 'failure',
      result: { sqlstate: refusal.sqlstate },
      message: `destination refused (${refusal.reason}): ${refusal.message}`,
    });
    env.metrics.auditAppends.inc({ type: 'session.start' });
  } catch (e: unknown) {
    env.logger.error({ err: isCustosError(e) ? e.code : String(e), event: 'session.start' }, 'audit append failed');
  }
}
