// The proxy's own client connection to the real PostgreSQL server (I/O adapter): TCP, optional TLS
// via SSLRequest, authentication with credentials the workload never sees (SCRAM-SHA-256, MD5,
// cleartext only over TLS), then ParameterStatus/BackendKeyData until ReadyForQuery.
// Reference state machine: pgbouncer src/proto.c answer_authreq(); reference/postgres-protocol.md §1.2, §2.3.
import net from 'node:net';
import tls from 'node:tls';
import { CustosError, isCustosError } from '../../../lib/errors.ts';
import { decodeBackendMessage, errorFieldsSummary } from './codec/backend-messages.ts';
import { SSL_RESPONSE, type TransactionStatus } from './codec/constants.ts';
import { BackendFramer } from './codec/framer.ts';
import * as fe from './codec/frontend-serializer.ts';
import { md5PasswordHash, SCRAM_SHA_256, ScramSha256Client, type ScramOptions } from './scram-client.ts';

export type UpstreamTlsMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface UpstreamTlsOptions {
  /**
   * As libpq's sslmode: `prefer` uses TLS when offered, without verification; `require` insists on
   * TLS without verification; `verify-ca` checks the chain against `ca` (or the system roots);
   * `verify-full` also checks that the certificate names `serverName` (default: `host`).
   */
  readonly mode: UpstreamTlsMode;
  readonly ca?: Buffer | string;
  readonly serverName?: string;
}

export interface UpstreamOptions {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
  readonly tls: UpstreamTlsOptions;
  readonly applicationName?: string;
  /** More startup parameters (already allow-listed by the caller); `user`, `database` and `replication` are refused. */
  readonly extraParameters?: Readonly<Record<string, string>>;
  /** Bound on the whole connect + TLS + authentication sequence (default 10 s). */
  readonly connectTimeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Send a cleartext password over an unencrypted connection when the server asks (default false). */
  readonly allowCleartextWithoutTls?: boolean;
  readonly scram?: ScramOptions;
}

export interface UpstreamConnection {
  /**
   * Handed over with no listeners attached and no data consumed beyond `buffered`: attach 'data'
   * (the stream then flows), 'error' and 'close' right away.
   */
  readonly socket: net.Socket | tls.TLSSocket;
  /** ParameterStatus values reported during startup. */
  readonly parameters: Map<string, string>;
  readonly backendKey: { readonly pid: number; readonly secret: Buffer };
  /** Bytes received after ReadyForQuery in the same read (normally empty): process them first. */
  readonly buffered: Buffer;
  readonly transactionStatus: TransactionStatus;
  /** Whether the connection is TLS-encrypted. */
  readonly encrypted: boolean;
  /** The authentication the server asked for. */
  readonly authMethod: 'trust' | 'scram-sha-256' | 'md5' | 'password';
  /** The database and role this connection logged in to (what its statements really run in, and as). */
  readonly database: string;
  readonly user: string;
}

/** An ErrorResponse from the server during startup (wrong password, unknown database, too many connections…). */
export class UpstreamError extends CustosError {
  readonly sqlstate: string;
  readonly severity: string;
  readonly serverMessage: string;

  constructor(sqlstate: string, severity: string, serverMessage: string) {
    super('ERR_PG_UPSTREAM', `upstream PostgreSQL refused the connection: ${severity} ${sqlstate} ${serverMessage}`);
    this.name = 'UpstreamError';
    this.sqlstate = sqlstate;
    this.severity = severity;
    this.serverMessage = serverMessage;
  }
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Startup-phase messages are small; a hostile server must not make us buffer 64 MiB. */
const MAX_STARTUP_MESSAGE_LENGTH = 1 << 20;

/**
 * Reads a socket in paused mode ('readable' + read()) so that, once detached, the stream is left
 * unconsumed and starts flowing as soon as the next owner attaches a 'data' listener.
 */
class HandshakeReader {
  readonly #socket: net.Socket;
  #waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  #error: Error | undefined;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('readable', this.#onReadable);
    socket.on('error', this.#onError);
    socket.on('end', this.#onClose);
    socket.on('close', this.#onClose);
  }

  next(): Promise<Buffer> {
    if (this.#error) return Promise.reject(this.#error);
    const chunk = this.#socket.read() as Buffer | null;
    if (chunk !== null) return Promise.resolve(chunk);
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  fail(e: Error): void {
    this.#error ??= e;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(this.#error);
  }

  detach(): void {
    this.#socket.off('readable', this.#onReadable);
    this.#socket.off('error', this.#onError);
    this.#socket.off('end', this.#onClose);
    this.#socket.off('close', this.#onClose);
  }

  readonly #onReadable = (): void => {
    if (!this.#waiter) return;
    const chunk = this.#socket.read() as Buffer | null;
    if (chunk === null) return;
    const w = this.#waiter;
    this.#waiter = undefined;
    w.resolve(chunk);
  };

  readonly #onError = (e: Error): void => {
    this.fail(new CustosError('ERR_PG_UPSTREAM_CONNECT', `upstream connection failed: ${e.message}`, { cause: e }));
  };

  readonly #onClose = (): void => {
    this.fail(new CustosError('ERR_PG_UPSTREAM_CLOSED', 'upstream closed the connection during startup'));
  };
}

interface Channel {
  socket: net.Socket;
  reader: HandshakeReader;
  encrypted: boolean;
}

/**
 * SSLRequest → 'S' → TLS handshake, or 'N' → plaintext if `prefer`. Any byte after the 'S' before
 * the handshake was injected on the path and aborts the connection (CVE-2021-23222, as libpq).
 */
async function negotiateTls(channel: Channel, host: string, options: UpstreamTlsOptions): Promise<Channel> {
  if (options.mode === 'disable') return channel;
  channel.socket.write(fe.sslRequest());
  const answer = await channel.reader.next();
  if (answer.length > 1 || channel.socket.readableLength > 0) {
    throw new CustosError('ERR_PG_UPSTREAM_TLS', 'upstream sent unencrypted data after the SSL response (possible man-in-the-middle); connection aborted');
  }
  if (answer[0] === SSL_RESPONSE.Refuse) {
    if (options.mode === 'prefer') return channel;
    throw new CustosError('ERR_PG_UPSTREAM_TLS', `upstream does not support TLS but tls.mode is ${options.mode}`);
  }
  if (answer[0] !== SSL_RESPONSE.Accept) {
    // An ErrorResponse here must not be shown (CVE-2024-10977): it came before any authentication.
    throw new CustosError('ERR_PG_UPSTREAM_TLS', `upstream answered the SSLRequest with unexpected byte 0x${(answer[0] ?? 0).toString(16)}`);
  }
  channel.reader.detach();
  const name = options.serverName ?? host;
  const connectOptions: tls.ConnectionOptions = {
    socket: channel.socket,
    minVersion: 'TLSv1.2',
    // SNI must be a host name, never an IP address (RFC 6066 §3).
    ...(net.isIP(name) === 0 ? { servername: name } : {}),
    ...(options.ca !== undefined ? { ca: options.ca } : {}),
  };
  switch (options.mode) {
    case 'prefer':
    case 'require':
      connectOptions.rejectUnauthorized = false;
      break;
    case 'verify-ca':
      connectOptions.rejectUnauthorized = true;
      connectOptions.checkServerIdentity = () => undefined;
      break;
    case 'verify-full':
      connectOptions.rejectUnauthorized = true;
      connectOptions.checkServerIdentity = (_host, cert) => tls.checkServerIdentity(name, cert);
      break;
  }
  const secure = tls.connect(connectOptions);
  return { socket: secure, reader: new HandshakeReader(secure), encrypted: true };
}

function validateOptions(o: UpstreamOptions): void {
  const bad = (field: string, why: string): CustosError => new CustosError('ERR_PG_UPSTREAM_CONFIG', `upstream option ${field} ${why}`);
  if (o.host === '') throw bad('host', 'is empty');
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw bad('port', `is not a TCP port: ${o.port}`);
  if (o.user === '') throw bad('user', 'is empty');
  if (o.database === '') throw bad('database', 'is empty');
  for (const k of Object.keys(o.extraParameters ?? {})) {
    if (k === 'user' || k === 'database' || k === 'replication' || k === '' || k === 'application_name') {
      throw bad(`extraParameters.${k}`, 'is not allowed here');
    }
  }
}

function scrub(text: string, secret: string): string {
  // A server should never echo the password, but a proxy must not be the one that leaks it.
  return secret.length >= 4 ? text.split(secret).join('***') : text;
}

/** Opens and authenticates an upstream connection; rejects with a CustosError, never leaking the password. */
export async function connectUpstream(options: UpstreamOptions): Promise<UpstreamConnection> {
  validateOptions(options);
  const raw = net.connect({ host: options.host, port: options.port });
  raw.setNoDelay(true);
  let channel: Channel = { socket: raw, reader: new HandshakeReader(raw), encrypted: false };
  let failure: CustosError | undefined;
  const fail = (e: CustosError): void => {
    failure ??= e;
    channel.reader.fail(e);
    channel.socket.destroy();
    raw.destroy();
  };
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const timer = setTimeout(() => {
    fail(new CustosError('ERR_PG_UPSTREAM_TIMEOUT', `upstream ${options.host}:${options.port} did not complete startup within ${timeoutMs} ms`));
  }, timeoutMs);
  const onAbort = (): void => {
    fail(new CustosError('ERR_PG_UPSTREAM_ABORTED', 'upstream connection attempt aborted', { cause: options.signal?.reason }));
  };
  if (options.signal?.aborted === true) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    channel = await negotiateTls(channel, options.host, options.tls);
    if (failure) throw failure;
    const result = await startup(channel, options, () => failure);
    channel.reader.detach();
    return result;
  } catch (e: unknown) {
    channel.reader.detach();
    channel.socket.destroy();
    raw.destroy();
    if (isCustosError(e)) {
      if (e instanceof UpstreamError) throw e;
      throw new CustosError(e.code, scrub(e.message, options.password), { cause: e.cause });
    }
    throw new CustosError('ERR_PG_UPSTREAM_CONNECT', scrub(`upstream connection failed: ${String(e)}`, options.password), { cause: e });
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

async function startup(channel: Channel, o: UpstreamOptions, failed: () => CustosError | undefined): Promise<UpstreamConnection> {
  const { socket, reader } = channel;
  const params: Record<string, string> = { user: o.user, database: o.database };
  if (o.applicationName !== undefined) params['application_name'] = o.applicationName;
  Object.assign(params, o.extraParameters ?? {});
  socket.write(fe.startupMessage(params));

  const framer = new BackendFramer({ maxMessageLength: MAX_STARTUP_MESSAGE_LENGTH });
  const parameters = new Map<string, string>();
  let backendKey: { pid: number; secret: Buffer } | undefined;
  let authenticated = false;
  let authMethod: UpstreamConnection['authMethod'] = 'trust';
  let scram: ScramSha256Client | undefined;
  const protocolError = (why: string): CustosError => new CustosError('ERR_PG_UPSTREAM_PROTOCOL', `upstream protocol violation during startup: ${why}`);

  for (;;) {
    const frames = framer.push(await reader.next());
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i];
      if (frame === undefined) continue;
      const msg = decodeBackendMessage(frame);
      switch (msg.type) {
        case 'ErrorResponse': {
          const { severity, sqlstate, message } = errorFieldsSummary(msg.fields);
          throw new UpstreamError(sqlstate, severity, scrub(message, o.password));
        }
        case 'NoticeResponse':
        case 'NegotiateProtocolVersion':
          break;
        case 'AuthenticationOk':
          if (authenticated) throw protocolError('second AuthenticationOk');
          // As libpq: a SCRAM exchange that did not end with a verified server signature means the
          // server never proved it knows the password.
          if (scram !== undefined && !scram.verified) throw new CustosError('ERR_PG_AUTH', 'upstream sent AuthenticationOk before completing SCRAM authentication');
          authenticated = true;
          break;
        case 'AuthenticationCleartextPassword':
          if (authenticated || scram) throw protocolError('unexpected password request');
          if (!channel.encrypted && o.allowCleartextWithoutTls !== true) {
            throw new CustosError('ERR_PG_AUTH', 'upstream asked for a cleartext password over an unencrypted connection; refusing to send it (use TLS upstream, or set allowCleartextWithoutTls)');
          }
          authMethod = 'password';
          socket.write(fe.passwordMessage(o.password));
          break;
        case 'AuthenticationMD5Password':
          if (authenticated || scram) throw protocolError('unexpected password request');
          authMethod = 'md5';
          socket.write(fe.passwordMessage(md5PasswordHash(o.user, o.password, msg.salt)));
          break;
        case 'AuthenticationSASL':
          if (authenticated || scram) throw protocolError('unexpected SASL request');
          // Never select SCRAM-SHA-256-PLUS: channel binding would bind our own TLS hop only.
          if (!msg.mechanisms.includes(SCRAM_SHA_256)) {
            throw new CustosError('ERR_PG_AUTH', `upstream offers no supported SASL mechanism (${msg.mechanisms.join(', ')})`);
          }
          authMethod = 'scram-sha-256';
          scram = new ScramSha256Client(o.password, o.scram ?? {});
          socket.write(fe.saslInitialResponse(SCRAM_SHA_256, scram.clientFirstMessage()));
          break;
        case 'AuthenticationSASLContinue': {
          if (!scram) throw protocolError('SASLContinue without SASL');
          const final = await scram.clientFinalMessage(msg.data);
          const f = failed();
          if (f) throw f;
          socket.write(fe.saslResponse(final));
          break;
        }
        case 'AuthenticationSASLFinal':
          if (!scram) throw protocolError('SASLFinal without SASL');
          scram.verifyServerFinal(msg.data);
          break;
        case 'AuthenticationUnsupported':
          throw new CustosError('ERR_PG_AUTH', `upstream requested an unsupported authentication method (code ${msg.code})`);
        case 'ParameterStatus':
          if (!authenticated) throw protocolError('ParameterStatus before authentication');
          parameters.set(msg.name, msg.value);
          break;
        case 'BackendKeyData':
          if (!authenticated) throw protocolError('BackendKeyData before authentication');
          backendKey = { pid: msg.pid, secret: Buffer.from(msg.secret) };
          break;
        case 'ReadyForQuery': {
          if (!authenticated) throw protocolError('ReadyForQuery before authentication');
          if (!backendKey) throw protocolError('no BackendKeyData before ReadyForQuery');
          const rest = frames.slice(i + 1).map((f) => f.raw);
          rest.push(framer.takeRemainder());
          return {
            socket,
            parameters,
            backendKey,
            buffered: Buffer.concat(rest),
            transactionStatus: msg.status,
            encrypted: channel.encrypted,
            authMethod,
            database: o.database,
            user: o.user,
          };
        }
        default:
          throw protocolError(`unexpected ${msg.type}`);
      }
    }
  }
}

export interface CancelOptions {
  readonly timeoutMs?: number;
}

/**
 * Sends a CancelRequest on a new connection (optionally after SSLRequest) and waits for the server
 * to close it. The server never answers, so success means "delivered", not "cancelled".
 */
export async function sendCancelRequest(host: string, port: number, pid: number, secret: Buffer, tlsOptions?: UpstreamTlsOptions, options: CancelOptions = {}): Promise<void> {
  const raw = net.connect({ host, port });
  let channel: Channel = { socket: raw, reader: new HandshakeReader(raw), encrypted: false };
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const timer = setTimeout(() => {
    channel.reader.fail(new CustosError('ERR_PG_UPSTREAM_TIMEOUT', `cancel request to ${host}:${port} timed out after ${timeoutMs} ms`));
    channel.socket.destroy();
  }, timeoutMs);
  try {
    channel = await negotiateTls(channel, host, tlsOptions ?? { mode: 'disable' });
    channel.socket.write(fe.cancelRequest(pid, secret));
    // The server reads the packet and closes; anything it sends is unexpected but harmless.
    for (;;) await channel.reader.next();
  } catch (e: unknown) {
    if (isCustosError(e, 'ERR_PG_UPSTREAM_CLOSED')) return;
    throw e;
  } finally {
    clearTimeout(timer);
    channel.reader.detach();
    channel.socket.destroy();
    raw.destroy();
  }
}
