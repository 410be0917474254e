// One client connection through the sidecar: both legs terminated (reference/postgres-protocol.md).
//
//   startup → [tls] → authenticate (caller JWT or workload identity) → connect upstream with the
//   sidecar's own credentials → proxy: every statement analysed, decided by policy, audited on disk
//   before it is forwarded; blocked statements are substituted by a failing one so transaction state
//   stays coherent; every result attributed to its audited execution.
//
// Protocol-level prepared statements are renamed upstream (`custos_<session>_<n>`), as pgbouncer
// does, so a client can never make the server execute a statement other than the one the policy
// saw: names cannot collide with leftovers, and a duplicate Parse fails on the server exactly as it
// would without the proxy.
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { AuditApproval, AuditEvent, AuditEventDraft, AuditLog, AuditTarget } from '../../../audit/event.ts';
import { CustosError, isCustosError } from '../../../lib/errors.ts';
import type { ApprovalSettings, Requester } from '../../../policy/approvals/approval-types.ts';
import type { Decision, Principal, RequestIdentity, SqlAnalysis, StatementFacts } from '../../../policy/types.ts';
import type { ApprovalService } from '../../approvals/approval-service.ts';
import { boundedReason, reasonStatement, REASON_STATEMENT_STAND_IN } from '../../approvals/caller-reason.ts';
import { auditActor } from '../../audit-actor.ts';
import { analyseMasking, type MaskingAnalysis } from '../../../policy/masking/derivation.ts';
import { subjectMatchesIdentity } from '../../../policy/subjects.ts';
import type { ActiveMasking } from '../../masking-service.ts';
import { maskDataRow, planResult, type ResultPlan } from '../../masking/result-masker.ts';
import { scrubText } from '../../masking/strategies.ts';
import { SERVICE_ACCOUNT_REVOKED_MESSAGE } from '../../identity/service-account-review.ts';
import { decodeBackendMessage } from './codec/backend-messages.ts';
import { BufferWriter } from './codec/buffer-writer.ts';
import type { SidecarMetrics } from '../../metrics.ts';
import { passApprovalGate, type ApprovalEvent } from './approval-gate.ts';
import type { CancelRegistry } from './cancel-registry.ts';
import * as be from './codec/backend-serializer.ts';
import { BACKEND, FRONTEND, PROTOCOL_CODE } from './codec/constants.ts';
import { FrontendFramer, BackendFramer, type Frame } from './codec/framer.ts';
import * as fe from './codec/frontend-serializer.ts';
import { decodeCleartextPassword, decodeFrontendMessage, decodeStartupPacket } from './codec/frontend-messages.ts';
import { BufferReader } from './codec/buffer-reader.ts';
import { ResponseTracker, type ExecutionOutcome, type TrackedExecution } from './response-tracker.ts';
import { checkStartupParameters, isUtf8Encoding, searchPathOf } from './startup-parameters.ts';
import { substituteSql, type Refusal } from './substitute-statement.ts';
import type { UpstreamConnection } from './upstream-client.ts';

/** How the session reaches its target, resolved from the current policy and local overrides. */
export interface ResolvedTarget {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly database: string | undefined;
  readonly clientAuthentication: 'workload' | 'caller-token';
  readonly connect: (options: { database: string; applicationName?: string; parameters: Record<string, string> }) => Promise<UpstreamConnection>;
  readonly cancel: (pid: number, secret: Buffer) => Promise<void>;
}

/** The policy as the session sees it: the current version, swapped on hot reload. */
export interface SessionPolicy {
  readonly name: string;
  readonly version: string;
  analyse(sql: string): SqlAnalysis;
  decide(input: { identity: RequestIdentity; target: string; sql: SqlAnalysis; searchPath: readonly string[] }): Decision;
}

export interface SessionEnvironment {
  readonly target: () => ResolvedTarget;
  readonly policy: () => SessionPolicy;
  readonly verifyCallerToken: (token: string) => Promise<Principal>;
  readonly workloadIdentity: () => Promise<Principal | undefined>;
  readonly audit: AuditLog;
  readonly cancelKeys: CancelRegistry;
  readonly metrics: SidecarMetrics;
  readonly logger: Logger;
  readonly downstreamTls?: SecureContext;
  readonly now: () => number;
  /** True while the sidecar drains: new statements still run, new sessions are refused. */
  readonly draining: () => boolean;
  /** Result masking for this target (absent: no masking configured). */
  readonly masking?: SessionMasking;
  /** Just-in-time approvals (absent without Redis: require-approval is then a plain refusal). */
  readonly approvals?: ApprovalService;
}

/** What the session needs from the masking service. */
export interface SessionMasking {
  readonly configured: boolean;
  readonly ready: boolean;
  current(): ActiveMasking | undefined;
  refreshSoon(): void;
}

/** Masking facts of one execution: how to mask its results, and what was masked (audited). */
interface MaskingExecution {
  readonly active: ActiveMasking;
  readonly derivation: MaskingAnalysis | undefined;
  /** The statement touches a relation with masked columns: its errors may quote masked values. */
  readonly touches: boolean;
  readonly counts: Map<string, number>;
}

type MaskingCheck =
  | { readonly kind: 'none' }
  | { readonly kind: 'exempt' }
  | { readonly kind: 'mask'; readonly execution: MaskingExecution }
  /** The masking policy asks for approval (a condition on a masked column); masked once approved. */
  | { readonly kind: 'approve'; readonly execution: MaskingExecution }
  | { readonly kind: 'refuse'; readonly refusal: Refusal };

const DDL_KINDS = new Set(['create', 'alter', 'drop', 'truncate', 'create-function']);

type Step = 'startup' | 'password' | 'connecting' | 'proxying' | 'closed';

/** Largest client message accepted before authentication (a JWT is ≤ 8 KiB). */
const MAX_PREAUTH_MESSAGE = 16 * 1024;
const MAX_TOKEN_BYTES = 8192;

interface PreparedStatement {
  readonly upstreamName: string;
  readonly sql: string;
  readonly analysis: SqlAnalysis;
  /** A `SET custos.reason` statement: prepared upstream as a stand-in, its value kept here. */
  readonly statedReason?: { readonly reason: string | undefined };
}

interface Execution extends TrackedExecution {
  readonly protocol: 'simple' | 'extended';
  readonly ddl: boolean;
  readonly masking?: MaskingExecution;
}

let sessionCounter = 0;

export class PostgresSession {
  readonly #env: SessionEnvironment;
  #client: Socket | TLSSocket;
  readonly #clientAddress: { ip?: string; port?: number };
  readonly #isLocalPeer: boolean;
  readonly #id: string;
  readonly #log: Logger;
  #step: Step = 'startup';
  #framer = new FrontendFramer({ maxMessageLength: MAX_PREAUTH_MESSAGE });
  #tls = false;
  /** Whether any audit event of this session was recorded (then its chain must be ended). */
  #audited = false;
  #startupParameters = new Map<string, string>();
  #forwardParameters: Record<string, string> = {};
  #identity: RequestIdentity = {};
  #target: ResolvedTarget | undefined;
  #upstream: UpstreamConnection | undefined;
  readonly #backendFramer = new BackendFramer();
  readonly #tracker = new ResponseTracker();
  #clientKey: { pid: number; secret: Buffer } | undefined;
  #searchPath: string[] = ['public'];
  readonly #statements = new Map<string, PreparedStatement>();
  readonly #portals = new Map<string, PreparedStatement>();
  #statementCounter = 0;
  #inbound: Buffer[] = [];
  #processing = false;
  /** The client half-closed: answer what it sent, then close. */
  #clientEnded = false;
  /** The client sent Terminate: let the server finish its answers, then close. */
  #terminating = false;
  #endedAt: number | undefined;
  #statementsRun = 0;
  /** The result set being streamed and its masking plan (RowDescription → CommandComplete). */
  #activePlan: { plan: ResultPlan; masking: MaskingExecution } | undefined;
  /** The last statement's masking applies to asynchronous messages (notices, notifications). */
  #scrubAsync: ActiveMasking | undefined;
  /** A cursor over masked data was declared: what FETCH returns is masked as unresolvable. */
  #maskedCursors = false;
  #sessionStarted = false;
  readonly #startedAt: number;
  /** The reason set with `SET custos.reason` (overrides application_name); null once cleared. */
  #statedReason: string | null | undefined;
  /** Bound parameter values per portal: an approval's digest covers them. */
  readonly #portalParameters = new Map<string, readonly (Buffer | null)[]>();
  /** Aborts the approval wait of a held statement ('cancel' or 'disconnect'). */
  #hold: AbortController | undefined;

  /**
   * `redirectedInPod`: the connection reached this loopback listener through the pod's own nat
   * OUTPUT REDIRECT (its original destination was read and placed), so the client is a process of
   * this pod even though its source address is the pod IP rather than loopback.
   */
  constructor(client: Socket, env: SessionEnvironment, options: { readonly redirectedInPod?: boolean } = {}) {
    this.#env = env;
    this.#client = client;
    this.#id = `${env.now().toString(36)}-${(++sessionCounter).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    this.#startedAt = env.now();
    this.#clientAddress = {
      ...(client.remoteAddress !== undefined ? { ip: client.remoteAddress } : {}),
      ...(client.remotePort !== undefined ? { port: client.remotePort } : {}),
    };
    // Pod-local callers (loopback, or the pod's own address after transparent redirection) may
    // send the caller token in cleartext; anything else must use TLS.
    this.#isLocalPeer = options.redirectedInPod === true || isLoopback(client.remoteAddress)
      || (client.remoteAddress !== undefined && client.remoteAddress === client.localAddress);
    this.#log = env.logger.child({ session: this.#id, client: client.remoteAddress });
    client.setNoDelay(true);
    this.#attachClient(client);
  }

  get id(): string {
    return this.#id;
  }

  get #closed(): boolean {
    return this.#step === 'closed';
  }

  /** Ends the session from the sidecar's side (drain deadline): FATAL 57P01 to the client. */
  shutdown(message = 'Custos sidecar is shutting down'): void {
    if (this.#step === 'closed') return;
    this.#fatal('57P01', message);
  }

  // ─── client side ──────────────────────────────────────────────────────────────────────────────

  #attachClient(socket: Socket | TLSSocket): void {
    socket.on('data', (chunk: Buffer) => { this.#onClientData(chunk); });
    socket.on('error', (e: Error) => { this.#log.debug({ err: e.message }, 'client socket error'); });
    socket.on('end', () => {
      this.#clientEnded = true;
      // A client gone while its statement waits for approval: nobody would read the result.
      this.#hold?.abort('disconnect');
      this.#finishIfDone();
    });
    socket.on('close', () => { this.#close('client closed the connection'); });
    socket.on('drain', () => { this.#upstream?.socket.resume(); });
  }

  #onClientData(chunk: Buffer): void {
    this.#inbound.push(chunk);
    if (this.#inbound.length > 64) this.#client.pause();
    if (!this.#processing) void this.#processInbound();
  }

  async #processInbound(): Promise<void> {
    this.#processing = true;
    try {
      while (this.#inbound.length > 0 && this.#step !== 'closed') {
        const chunk = this.#inbound.shift();
        if (chunk === undefined) break;
        let frames: Frame[];
        try {
          frames = this.#framer.push(chunk);
        } catch (e: unknown) {
          this.#protocolViolation(e);
          return;
        }
        const upstream = this.#upstream?.socket;
        upstream?.cork();
        try {
          for (const frame of frames) {
            if (this.#closed || this.#terminating) return;
            const pending = this.#handleClientFrame(frame, frames);
            if (pending !== undefined) await pending;
          }
        } finally {
          upstream?.uncork();
        }
      }
    } catch (e: unknown) {
      this.#protocolViolation(e);
    } finally {
      this.#processing = false;
      if (this.#step !== 'closed' && this.#client.isPaused() && this.#inbound.length === 0) this.#client.resume();
      this.#finishIfDone();
    }
  }

  #handleClientFrame(frame: Frame, batch: readonly Frame[]): Promise<void> | undefined {
    switch (this.#step) {
      case 'startup':
        return this.#onStartupPacket(frame, batch);
      case 'password':
        return this.#onPassword(frame);
      case 'connecting':
        // A client must wait for AuthenticationOk; anything else is a protocol violation.
        this.#fatal('08P01', 'unexpected message during authentication');
        return undefined;
      case 'proxying':
        return this.#onClientMessage(frame);
      case 'closed':
        return undefined;
      default: {
        const exhaustive: never = this.#step;
        return exhaustive;
      }
    }
  }

  // ─── startup and authentication ───────────────────────────────────────────────────────────────

  async #onStartupPacket(frame: Frame, batch: readonly Frame[]): Promise<void> {
    const packet = decodeStartupPacket(frame);
    switch (packet.type) {
      case 'SSLRequest': {
        if (this.#env.downstreamTls === undefined || this.#tls) {
          this.#client.write(be.sslRefuse());
          return;
        }
        // Bytes after the SSLRequest and before the handshake were injected by someone on the path
        // (CVE-2021-23214): refuse them, as pgbouncer does.
        if (batch.at(-1) !== frame || this.#framer.bufferedBytes > 0 || this.#inbound.length > 0) {
          this.#log.warn('unencrypted data after SSLRequest: closing');
          this.#close('unencrypted data after SSLRequest');
          return;
        }
        this.#client.write(be.sslAccept());
        this.#upgradeToTls();
        return;
      }
      case 'GSSENCRequest':
        this.#client.write(be.sslRefuse());
        return;
      case 'CancelRequest': {
        const target = this.#env.cancelKeys.lookup(packet.pid, packet.secret);
        this.#close('cancel request handled');
        if (target !== undefined) await target.send().catch((e: unknown) => { this.#log.warn({ err: String(e) }, 'cancel request upstream failed'); });
        return;
      }
      case 'StartupMessage':
        await this.#onStartupMessage(packet.protocolVersion, packet.parameters);
        return;
      default: {
        const exhaustive: never = packet;
        return exhaustive;
      }
    }
  }

  #upgradeToTls(): void {
    const plain = this.#client;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('drain');
    const secure = new TLSSocket(plain, { isServer: true, ...(this.#env.downstreamTls ? { secureContext: this.#env.downstreamTls } : {}) });
    secure.on('error', (e: Error) => {
      this.#log.debug({ err: e.message }, 'client TLS error');
      this.#close('client TLS error');
    });
    this.#client = secure;
    this.#tls = true;
    this.#framer = new FrontendFramer({ maxMessageLength: MAX_PREAUTH_MESSAGE });
    this.#attachClient(secure);
  }

  async #onStartupMessage(protocolVersion: number, parameters: ReadonlyMap<string, string>): Promise<void> {
    if (protocolVersion >>> 16 !== 3) {
      this.#fatal('0A000', `unsupported frontend protocol ${protocolVersion >>> 16}.${protocolVersion & 0xffff}: Custos speaks 3.0`);
      return;
    }
    if (this.#env.draining()) {
      this.#fatal('57P01', 'Custos sidecar is shutting down');
      return;
    }
    const check = checkStartupParameters(parameters);
    if (!check.ok) {
      this.#fatal(check.sqlstate, check.message);
      return;
    }
    this.#startupParameters = new Map(parameters);
    this.#forwardParameters = check.forward;
    this.#searchPath = searchPathOf(parameters.get('search_path'));
    if (protocolVersion !== PROTOCOL_CODE.V3_0 || check.protocolExtensions.length > 0) {
      // Newer minor versions and _pq_ options are negotiated per leg; this leg stays on 3.0.
      this.#client.write(be.negotiateProtocolVersion(0, check.protocolExtensions));
    }
    let target: ResolvedTarget;
    try {
      target = this.#env.target();
    } catch (e: unknown) {
      this.#fatal('08006', 'Custos has no usable target for this listener', e);
      return;
    }
    this.#target = target;
    const requested = parameters.get('database') ?? parameters.get('user');
    if (target.database !== undefined && requested !== undefined && requested !== target.database) {
      this.#fatal('3D000', `database "${printable(requested)}" is not reachable through this Custos listener (target "${target.name}" serves "${target.database}")`);
      return;
    }
    if (target.clientAuthentication === 'caller-token') {
      if (!this.#tls && !this.#isLocalPeer) {
        // Refuse the cleartext token over the network: clients must use TLS (sslmode=require).
        await this.#authFailure('28000', 'Custos requires TLS for token authentication from this address', 'tls-required');
        return;
      }
      this.#step = 'password';
      this.#client.write(be.authenticationCleartextPassword());
      return;
    }
    await this.#authenticated(undefined);
  }

  async #onPassword(frame: Frame): Promise<void> {
    if (frame.type !== FRONTEND.PasswordMessage) {
      this.#fatal('08P01', 'expected a password message');
      return;
    }
    if (frame.payload.length > MAX_TOKEN_BYTES + 1) {
      await this.#authFailure('28P01', 'token authentication failed', 'too-large');
      return;
    }
    let token: string;
    try {
      token = decodeCleartextPassword(frame.payload);
    } catch {
      await this.#authFailure('28P01', 'token authentication failed', 'malformed');
      return;
    }
    if (token === '') {
      await this.#authFailure('28000', 'Custos requires a token as the password', 'missing-token');
      return;
    }
    let caller: Principal;
    try {
      caller = await this.#env.verifyCallerToken(token);
    } catch (e: unknown) {
      const reason = (e as { reason?: unknown }).reason;
      const sqlstate = isCustosError(e, 'ERR_AUTH_TOKEN_REJECTED') ? '28000' : '28P01';
      await this.#authFailure(sqlstate, 'token authentication failed', typeof reason === 'string' ? reason : 'invalid');
      return;
    }
    await this.#authenticated(caller);
  }

  async #authenticated(caller: Principal | undefined): Promise<void> {
    let workload: Principal | undefined;
    try {
      workload = await this.#env.workloadIdentity();
    } catch (e: unknown) {
      // A revoked service account is said as such: retrying will not help, deleting it was deliberate.
      if ((e as { reason?: unknown }).reason === 'service-account-revoked') {
        await this.#authFailure('28000', `workload identity of this pod was revoked: ${SERVICE_ACCOUNT_REVOKED_MESSAGE}`, 'service-account-revoked');
        return;
      }
      await this.#authFailure('28000', 'workload identity of this pod could not be verified', 'workload-identity-unavailable');
      return;
    }
    if (caller === undefined && workload === undefined) {
      await this.#authFailure('28000', 'no identity: this target uses workload identity, which is not configured', 'no-identity');
      return;
    }
    this.#identity = { ...(caller !== undefined ? { caller } : {}), ...(workload !== undefined ? { workload } : {}) };
    const target = this.#requireTarget();
    this.#step = 'connecting';
    const applicationName = this.#startupParameters.get('application_name');
    let upstream: UpstreamConnection;
    try {
      upstream = await target.connect({
        database: target.database ?? this.#startupParameters.get('database') ?? this.#startupParameters.get('user') ?? 'postgres',
        ...(applicationName !== undefined ? { applicationName } : {}),
        // application_name travels as its own option (the upstream client refuses it twice).
        parameters: Object.fromEntries(Object.entries(this.#forwardParameters).filter(([name]) => name !== 'application_name')),
      });
    } catch (e: unknown) {
      this.#log.warn({ err: isCustosError(e) ? e.message : String(e) }, 'upstream connection failed');
      await this.#appendBestEffort({ event_type: 'session.start', outcome: 'failure', message: 'upstream connection failed' });
      this.#fatal('08006', `Custos could not connect to target "${target.name}"`);
      return;
    }
    if (this.#closed) {
      // The client went away while the upstream login ran.
      upstream.socket.destroy();
      return;
    }
    this.#upstream = upstream;
    this.#clientKey = this.#env.cancelKeys.issue({
      pid: upstream.backendKey.pid,
      secret: upstream.backendKey.secret,
      // A statement held for approval is not on the server yet: the cancel ends the wait instead.
      send: async () => {
        if (this.#hold !== undefined) {
          this.#hold.abort('cancel');
          return;
        }
        await target.cancel(upstream.backendKey.pid, upstream.backendKey.secret);
      },
    });
    try {
      await this.#env.audit.append(this.#draft({ event_type: 'session.start', outcome: 'success' }));
    } catch (e: unknown) {
      this.#fatal('53000', 'Custos cannot record an audit event: connection refused (no audit, no access)', e);
      return;
    }
    this.#sessionStarted = true;
    // Hand the stream over to a framer without the pre-authentication size cap.
    const remainder = this.#framer.takeRemainder();
    this.#framer = new FrontendFramer();
    this.#framer.startTypedMode();
    if (remainder.length > 0) this.#inbound.unshift(remainder);

    const out: Buffer[] = [be.authenticationOk()];
    for (const [name, value] of upstream.parameters) {
      if (name === 'session_authorization' || name === 'is_superuser') continue; // do not reveal the upstream role
      out.push(be.parameterStatus(name, value));
    }
    out.push(be.backendKeyData(this.#clientKey.pid, this.#clientKey.secret));
    out.push(be.readyForQuery(upstream.transactionStatus));
    this.#client.write(Buffer.concat(out));
    this.#step = 'proxying';
    this.#env.metrics.connections.inc({ target: target.name });
    this.#env.metrics.connectionsTotal.inc({ target: target.name, result: 'accepted' });
    this.#log.info({ target: target.name, actor: auditActor(this.#identity).id }, 'session started');

    upstream.socket.on('data', (chunk: Buffer) => { this.#onUpstreamData(chunk); });
    upstream.socket.on('error', (e: Error) => { this.#log.warn({ err: e.message }, 'upstream socket error'); });
    upstream.socket.on('close', () => {
      if (this.#terminating) this.#close('client terminated');
      else this.#fatalIfOpen('08006', 'the upstream connection was closed');
    });
    upstream.socket.on('drain', () => { this.#client.resume(); });
    if (upstream.buffered.length > 0) this.#onUpstreamData(upstream.buffered);
  }

  async #authFailure(sqlstate: string, message: string, reason: string): Promise<void> {
    this.#env.metrics.authnFailures.inc({ reason });
    this.#env.metrics.connectionsTotal.inc({ target: this.#target?.name ?? 'unknown', result: 'refused' });
    await this.#appendBestEffort({ event_type: 'authn.failure', outcome: 'failure', message: reason, result: { sqlstate } });
    this.#fatal(sqlstate, message);
  }

  // ─── proxying: client → upstream ──────────────────────────────────────────────────────────────

  #onClientMessage(frame: Frame): Promise<void> | undefined {
    const upstream = this.#upstream;
    if (upstream === undefined) return undefined;
    switch (frame.type) {
      case FRONTEND.Query:
        return this.#onQuery(frame);
      case FRONTEND.Parse:
        this.#onParse(frame);
        return undefined;
      case FRONTEND.Bind:
        this.#onBind(frame);
        return undefined;
      case FRONTEND.Describe:
        this.#onDescribe(frame);
        return undefined;
      case FRONTEND.Execute:
        return this.#onExecute(frame);
      case FRONTEND.Close:
        this.#onCloseMessage(frame);
        return undefined;
      case FRONTEND.Sync:
        this.#tracker.sync();
        this.#forward(frame.raw);
        return undefined;
      case FRONTEND.Flush:
      case FRONTEND.CopyData:
      case FRONTEND.CopyDone:
      case FRONTEND.CopyFail:
        this.#forward(frame.raw);
        return undefined;
      case FRONTEND.FunctionCall:
        // The legacy fast path calls any function by OID with no SQL to analyse: refuse it through
        // a substitute so the transaction aborts on the server too.
        return this.#refuseStandalone({ sqlstate: '0A000', message: 'the FunctionCall protocol message is not allowed through Custos' });
      case FRONTEND.Terminate:
        // The server answers everything sent before Terminate, then closes: relay that, then close.
        this.#terminating = true;
        this.#inbound.length = 0;
        this.#forward(frame.raw);
        setTimeout(() => { this.#close('client terminated'); }, 5000).unref();
        return undefined;
      default:
        this.#fatal('08P01', `invalid frontend message type ${frame.type}`);
        return undefined;
    }
  }

  #forward(bytes: Buffer): void {
    const upstream = this.#upstream?.socket;
    if (upstream === undefined) return;
    if (!upstream.write(bytes)) this.#client.pause();
  }

  async #onQuery(frame: Frame): Promise<void> {
    const message = decodeFrontendMessage(frame);
    if (message.type !== 'Query') return;
    const stated = reasonStatement(message.sql);
    if (stated !== undefined) {
      await this.#setReason(stated.reason, (refusal) => { this.#sendRefusal(refusal); }, () => {
        this.#tracker.expect({ expect: 'query', injected: false });
        this.#forward(fe.query(REASON_STATEMENT_STAND_IN));
      });
      return;
    }
    const analysis = this.#env.policy().analyse(message.sql);
    const admission = await this.#admit(message.sql, analysis, 'simple', undefined);
    if (admission === undefined) return;
    if (admission.kind === 'refuse') {
      this.#sendRefusal(admission.refusal);
      return;
    }
    const execution = admission.execution;
    this.#tracker.expect({ expect: 'query', injected: false, execution, ...(execution.masking ? { context: execution.masking } : {}) });
    this.#forward(frame.raw);
    this.#followSettings(analysis);
  }

  /**
   * The path every statement takes before it may run: policy decision, masking check, and the
   * attempt event on disk. Undefined when the session was ended instead (an expired caller).
   */
  async #admit(
    sql: string,
    analysis: SqlAnalysis,
    protocol: 'simple' | 'extended',
    statementName: string | undefined,
    parameters?: readonly (Buffer | null)[],
  ): Promise<{ kind: 'refuse'; refusal: Refusal } | { kind: 'run'; execution: Execution } | undefined> {
    const policy = this.#env.policy();
    const decision = this.#decide(policy, analysis);
    if (decision === undefined) return undefined;
    const approvable = decision.action === 'require-approval' && decision.reason !== 'unparseable';
    // An approvable statement is checked for masking first: asking a reviewer for a statement
    // masking would refuse anyway wastes their time.
    const masking = decision.action === 'allow' || approvable ? this.#maskingCheck(sql, analysis) : NO_MASKING;
    const approval = this.#approvalNeeded(decision, approvable, masking);
    const attempt = await this.#auditAttempt(policy, analysis, decision, sql, protocol, statementName, masking, approval);
    if (attempt === undefined) return { kind: 'refuse', refusal: spoolFullRefusal() };
    if (decision.action !== 'allow' && !approvable) return { kind: 'refuse', refusal: refusalFor(decision, policy.name) };
    if (masking.kind === 'refuse') return { kind: 'refuse', refusal: masking.refusal };
    if (approval !== undefined) {
      if (approval.kind === 'refuse') return { kind: 'refuse', refusal: approval.refusal };
      const verdict = await this.#askApproval(policy, analysis, sql, parameters, attempt, approval);
      if (this.#closed) return undefined;
      if (verdict.kind === 'refuse') return { kind: 'refuse', refusal: verdict.refusal };
    }
    return { kind: 'run', execution: this.#execution(attempt, protocol, analysis, masking) };
  }

  /**
   * Whether the statement waits for a reviewer, and under which settings (the rule's, or the
   * masking policy's for a condition on a masked column). A refusal when approvals cannot work here.
   */
  #approvalNeeded(
    decision: Decision,
    approvable: boolean,
    masking: MaskingCheck,
  ): ApprovalNeed | { kind: 'refuse'; refusal: Refusal } | undefined {
    if (!approvable && masking.kind !== 'approve') return undefined;
    if (masking.kind === 'refuse') return undefined;
    const rule = approvable ? (decision.rule ?? '(default)') : 'masking.predicates';
    if (this.#env.approvals === undefined) {
      return {
        kind: 'refuse',
        refusal: {
          sqlstate: '57014',
          message: `approval required by ${approvable ? `policy rule "${rule}"` : 'masking policy for a condition on a masked column'}: just-in-time approvals need Redis, which this sidecar is not configured with, so the statement was not run`,
          hint: 'configure redisUrl (REDIS_URL) for the sidecar to enable approvals',
        },
      };
    }
    const settings = approvable ? decision.approval : this.#env.masking?.current()?.rules.predicatesApproval;
    if (settings === undefined) {
      return {
        kind: 'refuse',
        refusal: { sqlstate: '57014', message: `approval required by ${approvable ? `policy rule "${rule}"` : 'masking policy'}, which names no reviewers (no approval settings), so the statement was not run` },
      };
    }
    return { kind: 'ask', rule, settings, source: approvable ? 'rule' : 'masking' };
  }

  /**
   * After a hold (up to an hour), the policy in force may no longer be the one that asked: the
   * statement runs only if the current policy still asks the same approval of it (same rule
   * source, same settings) or now allows it; otherwise it is refused with the new decision.
   */
  #redecide(analysis: SqlAnalysis, asked: ApprovalNeed): Refusal | undefined {
    const policy = this.#env.policy();
    const decision = policy.decide({ identity: this.#identity, target: this.#requireTarget().name, sql: analysis, searchPath: this.#searchPath });
    const changed = (now: string): Refusal => ({
      sqlstate: '57014',
      message: `the policy changed while the statement waited for approval (${now}), so the statement was not run: run it again to be decided under policy version ${policy.version}`,
    });
    if (decision.action === 'allow') {
      if (asked.source === 'rule') return undefined;
      const current = this.#env.masking?.current()?.rules.predicatesApproval;
      return current !== undefined && sameSettings(current, asked.settings) ? undefined : changed('the masking policy asks other approval settings');
    }
    if (decision.action === 'require-approval' && decision.reason !== 'unparseable') {
      if (asked.source === 'rule' && decision.approval !== undefined && sameSettings(decision.approval, asked.settings)) return undefined;
      return changed(`rule "${decision.rule ?? '(default)'}" now asks other approval settings`);
    }
    return refusalFor(decision, policy.name);
  }

  /** Files (or finds) the approval request and waits for it as the mode says; the pipeline waits too. */
  async #askApproval(
    policy: SessionPolicy,
    analysis: SqlAnalysis,
    sql: string,
    parameters: readonly (Buffer | null)[] | undefined,
    attempt: AuditEvent,
    approval: ApprovalNeed,
  ): Promise<{ kind: 'run'; approval: AuditApproval } | { kind: 'refuse'; refusal: Refusal }> {
    const service = this.#env.approvals;
    if (service === undefined) return { kind: 'refuse', refusal: { sqlstate: '57014', message: 'approval service unavailable: the statement was not run' } };
    const target = this.#requireTarget();
    const upstream = this.#upstream;
    if (upstream === undefined) return { kind: 'refuse', refusal: { sqlstate: '57014', message: 'the session has no upstream connection: the statement was not run' } };
    const slash = policy.name.indexOf('/');
    const reason = this.#reason();
    const hold = new AbortController();
    this.#hold = hold;
    try {
      return await passApprovalGate(service, {
        ask: {
          requester: requesterOf(this.#identity),
          // Bound into the digest: the database and role the statement really runs in and as (the
          // client may choose the database when the target does not pin one).
          target: {
            name: target.name,
            protocol: 'postgres',
            database: upstream.database,
            user: upstream.user,
          },
          policy: {
            name: slash < 0 ? policy.name : policy.name.slice(slash + 1),
            ...(slash < 0 ? {} : { namespace: policy.name.slice(0, slash) }),
            version: policy.version,
            rule: approval.rule,
          },
          sql,
          ...(parameters !== undefined ? { parameters } : {}),
          command: analysis.ok ? analysis.normalized : '(unparseable statement)',
          fingerprint: analysis.ok ? analysis.fingerprint : createHash('sha256').update(sql).digest('hex'),
          ...(reason !== undefined ? { reason } : {}),
          settings: approval.settings,
        },
        rule: approval.rule,
        signal: hold.signal,
        // An approved statement still needs an open session and a valid caller (a long hold may
        // outlast the caller's token), and the policy in force now must still decide the same.
        beforeRun: () => {
          if (this.#closed) return { sqlstate: '57014', message: 'the client disconnected while the statement waited for approval' };
          const caller = this.#identity.caller;
          if (caller?.expiresAt !== undefined && this.#env.now() / 1000 > caller.expiresAt) {
            return { sqlstate: '57014', message: 'the caller token expired while the statement waited for approval: reconnect with a fresh token and run it again' };
          }
          return this.#redecide(analysis, approval);
        },
        now: this.#env.now,
        record: (event) => this.#recordApproval(event, attempt),
      });
    } finally {
      this.#hold = undefined;
    }
  }

  /** An approval event, linked to the attempt and carrying its normalized command (never literals). */
  async #recordApproval(event: ApprovalEvent, attempt: AuditEvent): Promise<boolean> {
    try {
      await this.#env.audit.append(this.#draft({
        event_type: event.type,
        attempt_id: attempt.event_id,
        outcome: event.outcome,
        ...(attempt.command !== undefined ? { command: attempt.command } : {}),
        ...(attempt.policy !== undefined ? { policy: attempt.policy } : {}),
        ...(event.approval !== undefined ? { approval: event.approval } : {}),
        ...(event.message !== undefined ? { message: event.message } : {}),
      }));
      this.#env.metrics.auditAppends.inc({ type: event.type });
      return true;
    } catch (e: unknown) {
      this.#log.error({ err: isCustosError(e) ? e.code : String(e), event: event.type }, 'audit append failed');
      return false;
    }
  }

  /** `SET custos.reason`: recorded and audited here; the server runs a stand-in without the value. */
  async #setReason(reason: string | undefined, refuse: (refusal: Refusal) => void, runStandIn: () => void): Promise<void> {
    // In a failed transaction the server refuses the stand-in (25P02) as it would the real SET: the
    // reason stays as it was. (With answers outstanding the status is not known yet: it is taken.)
    if (this.#tracker.outstanding > 0 || this.#tracker.transactionStatus !== 'E') this.#statedReason = reason ?? null;
    try {
      await this.#env.audit.append(this.#draft({
        event_type: 'db.query.attempt',
        operation: 'SET',
        outcome: 'success',
        message: reason === undefined ? 'caller reason cleared (intercepted by Custos)' : 'caller reason set (intercepted by Custos, not sent to the server)',
      }));
    } catch {
      refuse(spoolFullRefusal());
      return;
    }
    runStandIn();
  }

  /** The caller's stated reason: `SET custos.reason` when given, else application_name. */
  #reason(): string | undefined {
    if (this.#statedReason !== undefined) return this.#statedReason ?? undefined;
    return boundedReason(this.#startupParameters.get('application_name') ?? '');
  }

  /**
   * Masking of an allowed statement: exempt callers see clear values (audited); a statement that
   * would launder masked data, infer it through a predicate, or whose outputs cannot be resolved
   * (when the policy says deny) is refused; otherwise its results are masked.
   */
  #maskingCheck(sql: string, analysis: SqlAnalysis): MaskingCheck {
    const service = this.#env.masking;
    if (service === undefined || !service.configured) {
      this.#scrubAsync = undefined;
      return NO_MASKING;
    }
    const active = service.current();
    if (!service.ready || active === undefined) {
      return { kind: 'refuse', refusal: { sqlstate: '55000', message: 'Custos has not loaded the masking metadata for this target yet: statement refused', hint: 'retry in a moment' } };
    }
    const rules = active.rules;
    if (rules.exemptSubjects.some((subject) => subjectMatchesIdentity(subject, this.#identity))) {
      this.#scrubAsync = undefined;
      return { kind: 'exempt' };
    }
    this.#scrubAsync = active;
    const provenance = active.context.provenance;
    const facts = analysis.ok ? analysis.statements : [];
    const refuse = (sqlstate: string, message: string): MaskingCheck => ({ kind: 'refuse', refusal: { sqlstate, message, detail: 'masking policy' } });
    // Planner statistics and lock tables hold copies of column values (histogram bounds, lock keys).
    if (facts.some((f) => f.relations.some((r) => VALUE_EXPOSING_CATALOGS.has(r.name) && (r.schema === null || r.schema === 'pg_catalog')))) {
      return refuse('42501', 'permission denied by masking policy: this system view exposes column values');
    }
    // Built-ins that read relations, cursors or queries named in a string: masking cannot follow.
    if (facts.some((f) => f.functions.some((fn) => (fn.schema === null || fn.schema === 'pg_catalog') && READS_BY_NAME.test(fn.name)))) {
      return refuse('42501', 'permission denied by masking policy: this function reads tables named in a string, which masking cannot follow');
    }
    const namesMasked = facts.some((f) => f.relations.some((r) => provenance.maskedColumns(r.schema, r.name).size > 0));
    // Function bodies and cursors are out of the statement's sight: their outputs are unresolvable.
    const opaqueReads = facts.some((f) => f.functions.some((fn) => provenance.isUserFunction(fn.schema, fn.name)))
      || (this.#maskedCursors && facts.some((f) => f.kinds.includes('fetch')));
    if (namesMasked && facts.some((f) => f.kinds.includes('declare'))) this.#maskedCursors = true;
    const touches = namesMasked || opaqueReads;
    let derivation: MaskingAnalysis | undefined;
    if (touches) {
      try {
        derivation = analyseMasking(sql, provenance);
        if (facts.length > 1) derivation = { ...derivation, outputs: null };
      } catch {
        derivation = { outputs: null, derivesMasked: true, predicateUse: false, launders: false, wholeRow: false };
      }
      if (opaqueReads) derivation = { ...derivation, outputs: null, derivesMasked: true };
      if (derivation.launders) return refuse('42501', 'permission denied by masking policy: the statement would copy masked data where masking cannot follow it');
      if (derivation.predicateUse && rules.predicates === 'deny') {
        return refuse('42501', 'permission denied by masking policy: a masked column is used in a condition, which would reveal its values');
      }
      const unresolved = derivation.outputs === null ? derivation.derivesMasked : derivation.outputs.includes('unknown');
      if (rules.onUnresolvable === 'deny' && unresolved) {
        return refuse('42501', 'permission denied by masking policy: Custos cannot tell which outputs derive from masked columns');
      }
    }
    const execution = { active, derivation, touches, counts: new Map<string, number>() };
    // A condition on a masked column reveals its values through which rows come back: a reviewer decides.
    return derivation?.predicateUse === true && rules.predicates === 'require-approval' ? { kind: 'approve', execution } : { kind: 'mask', execution };
  }

  /**
   * Follows SET search_path for the resolution of unqualified names. The path only grows (union of
   * old and new schemas): whether the SET succeeds, or a SET LOCAL reverts, is not known here, and
   * for allow rules every schema of the path must be covered, so a larger path is the safe side.
   */
  #followSettings(analysis: SqlAnalysis): void {
    if (!analysis.ok) return;
    for (const facts of analysis.statements) {
      for (const change of facts.settings ?? []) {
        if (change.name !== 'search_path' && change.name !== 'all') continue;
        const added = change.value ?? ['public'];
        this.#searchPath = [...new Set([...this.#searchPath, ...added])];
      }
    }
  }

  #onParse(frame: Frame): void {
    const message = decodeFrontendMessage(frame);
    if (message.type !== 'Parse') return;
    let statement: PreparedStatement;
    const existing = message.name === '' ? undefined : this.#statements.get(message.name);
    if (existing !== undefined) {
      // The server refuses to redefine a named statement (42P05): keep ours, and let it refuse.
      statement = existing;
    } else {
      const stated = reasonStatement(message.sql);
      statement = {
        upstreamName: message.name === '' ? '' : `custos_${this.#id}_${++this.#statementCounter}`,
        sql: message.sql,
        // Analysis is cached per prepared statement; the decision is taken at Execute, with the
        // policy in force then (hot reload) and the identity of the session.
        analysis: this.#env.policy().analyse(message.sql),
        ...(stated !== undefined ? { statedReason: stated } : {}),
      };
      this.#statements.set(message.name, statement);
    }
    this.#tracker.expect({ expect: 'parse', injected: false });
    if (statement.statedReason !== undefined) {
      // The reason's value stays in the sidecar: the server prepares the stand-in.
      this.#forward(fe.parse(statement.upstreamName, REASON_STATEMENT_STAND_IN, message.paramTypes));
      return;
    }
    this.#forward(message.name === '' ? frame.raw : fe.parse(statement.upstreamName, message.sql, message.paramTypes));
  }

  #onBind(frame: Frame): void {
    const { portal, statement, restOffset } = readBindNames(frame.payload);
    const prepared = this.#statements.get(statement);
    if (prepared === undefined) {
      this.#portals.delete(portal);
      this.#portalParameters.delete(portal);
    } else {
      this.#portals.set(portal, prepared);
      this.#portalParameters.set(portal, readBindParameters(frame.payload, restOffset));
    }
    this.#tracker.expect({ expect: 'bind', injected: false });
    if (statement === '' || prepared === undefined) {
      // Unknown names are forwarded under a name that cannot exist upstream, so the server answers
      // 26000 instead of binding a statement the policy never saw.
      this.#forward(statement === '' ? frame.raw : rewriteBind(portal, `custos_unknown_${this.#id}`, frame.payload, restOffset));
      return;
    }
    this.#forward(rewriteBind(portal, prepared.upstreamName, frame.payload, restOffset));
  }

  #onDescribe(frame: Frame): void {
    const message = decodeFrontendMessage(frame);
    if (message.type !== 'Describe') return;
    if (message.kind === 'P') {
      this.#tracker.expect({ expect: 'describe-portal', injected: false });
      this.#forward(frame.raw);
      return;
    }
    this.#tracker.expect({ expect: 'describe-statement', injected: false });
    this.#forward(message.name === '' ? frame.raw : fe.describe('S', this.#statements.get(message.name)?.upstreamName ?? `custos_unknown_${this.#id}`));
  }

  #onCloseMessage(frame: Frame): void {
    const message = decodeFrontendMessage(frame);
    if (message.type !== 'Close') return;
    this.#tracker.expect({ expect: 'close', injected: false });
    if (message.kind === 'P') {
      this.#portals.delete(message.name);
      this.#portalParameters.delete(message.name);
      this.#forward(frame.raw);
      return;
    }
    const statement = this.#statements.get(message.name);
    this.#statements.delete(message.name);
    this.#forward(message.name === '' ? frame.raw : fe.close('S', statement?.upstreamName ?? `custos_unknown_${this.#id}`));
  }

  async #onExecute(frame: Frame): Promise<void> {
    const message = decodeFrontendMessage(frame);
    if (message.type !== 'Execute') return;
    const prepared = this.#portals.get(message.portal);
    if (prepared === undefined) {
      // A portal Custos did not see bound (e.g. a SQL-level cursor): refuse rather than guess.
      this.#substituteExecute({ sqlstate: '42501', message: `permission denied: portal "${printable(message.portal)}" was not bound through Custos` });
      return;
    }
    if (prepared.statedReason !== undefined) {
      await this.#setReason(prepared.statedReason.reason, (refusal) => { this.#substituteExecute(refusal); }, () => {
        this.#tracker.expect({ expect: 'execute', injected: false });
        this.#forward(frame.raw);
      });
      return;
    }
    const admission = await this.#admit(prepared.sql, prepared.analysis, 'extended', prepared.upstreamName, this.#portalParameters.get(message.portal) ?? []);
    if (admission === undefined) return;
    if (admission.kind === 'refuse') {
      this.#substituteExecute(admission.refusal);
      return;
    }
    const execution = admission.execution;
    if (execution.masking !== undefined) {
      // Drivers may skip Describe (pgbench -M prepared): describe the portal ourselves so the
      // masking plan has the columns' origins and formats; the client never sees the answer.
      this.#tracker.expect({ expect: 'describe-portal', injected: true, context: execution.masking });
      this.#forward(fe.describe('P', message.portal));
    }
    this.#tracker.expect({ expect: 'execute', injected: false, execution, ...(execution.masking ? { context: execution.masking } : {}) });
    this.#forward(frame.raw);
    this.#followSettings(prepared.analysis);
  }

  /** Decides a statement; returns undefined when the session was ended instead (expired caller). */
  #decide(policy: SessionPolicy, analysis: SqlAnalysis): Decision | undefined {
    const caller = this.#identity.caller;
    if (caller?.expiresAt !== undefined && this.#env.now() / 1000 > caller.expiresAt) {
      this.#fatal('28P01', 'the caller token has expired: reconnect with a fresh token');
      return undefined;
    }
    const decision = policy.decide({ identity: this.#identity, target: this.#requireTarget().name, sql: analysis, searchPath: this.#searchPath });
    this.#env.metrics.decisions.inc({ action: decision.action, rule: decision.rule ?? '(default)', target: this.#requireTarget().name });
    return decision;
  }

  /** Records the attempt durably; undefined when the spool refused it (the caller refuses the statement). */
  async #auditAttempt(
    policy: SessionPolicy,
    analysis: SqlAnalysis,
    decision: Decision,
    sql: string,
    protocol: 'simple' | 'extended',
    statementName: string | undefined,
    masking: MaskingCheck,
    approval: { kind: 'ask' } | { kind: 'refuse'; refusal: Refusal } | undefined,
  ): Promise<AuditEvent | undefined> {
    const facts = analysis.ok ? analysis.statements : [];
    const draft = this.#draft({
      event_type: 'db.query.attempt',
      operation: operationOf(facts),
      command: {
        text: analysis.ok ? analysis.normalized : '(unparseable statement)',
        ...(analysis.ok ? { fingerprint: analysis.fingerprint } : {}),
        digest: createHash('sha256').update(sql).digest('hex'),
        protocol,
        ...(statementName !== undefined && statementName !== '' ? { statement_name: statementName } : {}),
        kinds: [...new Set(facts.flatMap((f) => f.kinds))],
        objects: [...new Set(facts.flatMap((f) => f.relations.map((r) => (r.schema === null ? r.name : `${r.schema}.${r.name}`))))],
      },
      policy: {
        name: policy.name,
        version: policy.version,
        rule: decision.rule,
        decision: decision.action === 'require-approval' ? 'require_approval' : decision.action,
        reason: decision.reason,
      },
      // Waiting for a reviewer: the outcome follows in approval.* events and the result event.
      outcome: masking.kind === 'refuse' || approval?.kind === 'refuse' || (decision.action !== 'allow' && approval === undefined) ? 'failure' : 'unknown',
      ...(masking.kind === 'refuse'
        ? { result: { sqlstate: masking.refusal.sqlstate }, message: masking.refusal.message }
        : approval?.kind === 'refuse'
          ? { result: { sqlstate: approval.refusal.sqlstate }, message: approval.refusal.message }
          : decision.action !== 'allow' && approval === undefined
            ? { result: { sqlstate: refusalFor(decision, policy.name).sqlstate } }
            : {}),
      ...(masking.kind === 'exempt' ? { masking: { exempt: true } } : {}),
    });
    try {
      const event = await this.#env.audit.append(draft);
      this.#env.metrics.auditAppends.inc({ type: 'db.query.attempt' });
      return event;
    } catch (e: unknown) {
      this.#log.error({ err: isCustosError(e) ? e.code : String(e) }, 'audit append failed: refusing the statement');
      return undefined;
    }
  }

  #execution(attempt: AuditEvent, protocol: 'simple' | 'extended', analysis: SqlAnalysis, masking: MaskingCheck): Execution {
    this.#statementsRun++;
    const ddl = analysis.ok && analysis.statements.some((f) => f.kinds.some((k) => DDL_KINDS.has(k)));
    return {
      id: attempt.event_id, startedAt: this.#env.now(), rows: 0, commandTags: [], protocol, ddl,
      ...(masking.kind === 'mask' || masking.kind === 'approve' ? { masking: masking.execution } : {}),
    };
  }

  /** Blocks a simple Query: the server runs the failing substitute instead. */
  #sendRefusal(refusal: Refusal): void {
    this.#tracker.expect({ expect: 'query', injected: false, denial: denialBytes(refusal) });
    this.#forward(fe.query(substituteSql(refusal)));
  }

  /** Refuses a standalone message (FunctionCall) the same way as a blocked simple Query. */
  async #refuseStandalone(refusal: Refusal): Promise<void> {
    await this.#appendBestEffort({ event_type: 'db.query.attempt', outcome: 'failure', operation: 'FUNCTION_CALL', message: refusal.message, result: { sqlstate: refusal.sqlstate } });
    this.#sendRefusal(refusal);
  }

  /** Blocks an Execute inside an extended-protocol batch: the server fails there and skips to Sync. */
  #substituteExecute(refusal: Refusal): void {
    const sql = substituteSql(refusal);
    this.#tracker.expect({ expect: 'parse', injected: true });
    this.#tracker.expect({ expect: 'bind', injected: true });
    this.#tracker.expect({ expect: 'execute', injected: false, denial: denialBytes(refusal) });
    // The unnamed statement and portal are replaced; the client's unnamed portal is consumed by
    // this Execute anyway, and a client re-Parses the unnamed statement before reusing it.
    this.#forward(Buffer.concat([fe.parse('', sql), fe.bind({ portal: '', statement: '' }), fe.execute('', 0)]));
  }

  // ─── proxying: upstream → client ──────────────────────────────────────────────────────────────

  #onUpstreamData(chunk: Buffer): void {
    let frames: Frame[];
    const wasBuffered = this.#backendFramer.bufferedBytes > 0;
    try {
      frames = this.#backendFramer.push(chunk);
    } catch (e: unknown) {
      this.#fatal('08P01', 'the upstream server sent a malformed message', e);
      return;
    }
    // Fast path: every frame forwarded unchanged and the chunk held whole messages → one write.
    let unchanged = !wasBuffered && this.#backendFramer.bufferedBytes === 0;
    const out: Buffer[] = [];
    for (const frame of frames) {
      const verdict = this.#onBackendFrame(frame);
      if (verdict === 'swallow') {
        unchanged = false;
      } else if (verdict === 'forward') {
        out.push(frame.raw);
      } else {
        unchanged = false;
        out.push(verdict);
      }
    }
    const client = this.#client;
    let ok: boolean;
    if (unchanged) {
      ok = client.write(chunk);
    } else {
      client.cork();
      ok = true;
      for (const b of out) ok = client.write(b) && ok;
      client.uncork();
    }
    if (!ok) this.#upstream?.socket.pause();
    this.#recordOutcomes(this.#tracker.takeOutcomes());
    this.#finishIfDone();
  }

  /** 'forward', 'swallow', or replacement bytes. */
  #onBackendFrame(frame: Frame): 'forward' | 'swallow' | Buffer {
    switch (frame.type) {
      case BACKEND.ReadyForQuery: {
        this.#endResultSet();
        const status = String.fromCharCode(frame.payload[0] ?? 0x49);
        this.#tracker.onReadyForQuery(status === 'T' || status === 'E' ? status : 'I');
        return 'forward';
      }
      case BACKEND.ErrorResponse: {
        const sqlstate = readErrorCode(frame.payload);
        const masking = this.#tracker.head()?.context as MaskingExecution | undefined;
        this.#endResultSet();
        const verdict = this.#tracker.onBackendMessage(frame.type, sqlstate !== undefined ? { sqlstate } : {});
        if (verdict.kind !== 'forward') return verdict.kind === 'replace' ? verdict.bytes : verdict.kind;
        // Errors echo values (a failed cast, a duplicate key): on masked data, keep only the SQLSTATE.
        if (masking?.touches === true) {
          return be.errorResponse({ severity: 'ERROR', code: sqlstate ?? 'XX000', message: 'the statement failed on masked data (details withheld by Custos)' });
        }
        return this.#scrubFields(frame);
      }
      case BACKEND.CommandComplete: {
        this.#endResultSet();
        const verdict = this.#tracker.onBackendMessage(frame.type, { commandTag: readCString(frame.payload) });
        return verdict.kind === 'replace' ? verdict.bytes : verdict.kind;
      }
      case BACKEND.RowDescription: {
        const masking = this.#tracker.head()?.context as MaskingExecution | undefined;
        if (masking !== undefined) this.#startResultSet(frame, masking);
        const verdict = this.#tracker.onBackendMessage(frame.type);
        return verdict.kind === 'replace' ? verdict.bytes : verdict.kind;
      }
      case BACKEND.DataRow: {
        this.#tracker.onBackendMessage(frame.type);
        const active = this.#activePlan;
        if (active === undefined) return 'forward';
        return maskDataRow(frame.payload, active.plan, active.masking.active.context) ?? 'forward';
      }
      case BACKEND.EmptyQueryResponse:
      case BACKEND.PortalSuspended: {
        this.#endResultSet();
        const verdict = this.#tracker.onBackendMessage(frame.type);
        return verdict.kind === 'replace' ? verdict.bytes : verdict.kind;
      }
      case BACKEND.NoticeResponse: {
        const masking = this.#tracker.head()?.context as MaskingExecution | undefined;
        // Notices raised while a statement reads masked data may quote it (RAISE in a function).
        return masking?.touches === true ? withheldNotice(frame) : this.#scrubFields(frame);
      }
      case BACKEND.NotificationResponse:
        return this.#translateNotification(frame);
      case BACKEND.ParameterStatus:
        return this.#onParameterStatus(frame);
      case BACKEND.CopyBothResponse:
        this.#fatal('08P01', 'replication streams are not allowed through Custos');
        return 'swallow';
      case BACKEND.Authentication:
      case BACKEND.BackendKeyData:
        this.#fatal('08P01', 'the upstream server sent an unexpected authentication message');
        return 'swallow';
      default: {
        const verdict = this.#tracker.onBackendMessage(frame.type);
        return verdict.kind === 'replace' ? verdict.bytes : verdict.kind;
      }
    }
  }

  /** A session whose client encoding leaves UTF-8 (SET client_encoding) could make the server read other statements than the policy did. */
  #onParameterStatus(frame: Frame): 'forward' | Buffer {
    const name = readCString(frame.payload);
    const value = readCString(frame.payload.subarray(Buffer.byteLength(name) + 1));
    if (name === 'client_encoding' && !isUtf8Encoding(value)) {
      this.#fatal('0A000', `client_encoding "${printable(value)}" is not supported through Custos: use UTF8`);
    }
    const active = this.#scrubAsync;
    if (active === undefined) return 'forward';
    // A reported parameter set from data (SET application_name = ...) would push the value back.
    const scrubbed = scrubText(value, active.context.detectors, active.context.hmacKey);
    return scrubbed.findings.length === 0 ? 'forward' : be.parameterStatus(name, scrubbed.text);
  }

  #startResultSet(frame: Frame, masking: MaskingExecution): void {
    const message = decodeBackendMessage(frame);
    if (message.type !== 'RowDescription') return;
    const plan = planResult(message.fields, masking.active.context, masking.derivation, masking.counts);
    this.#activePlan = plan === null ? undefined : { plan, masking };
  }

  #endResultSet(): void {
    this.#activePlan = undefined;
  }

  /** Runs the detectors over the text fields of a NoticeResponse/ErrorResponse (the backstop). */
  #scrubFields(frame: Frame): 'forward' | Buffer {
    const active = this.#scrubAsync;
    if (active === undefined || active.context.detectors.length === 0) return 'forward';
    const message = decodeBackendMessage(frame);
    if (message.type !== 'NoticeResponse' && message.type !== 'ErrorResponse') return 'forward';
    let changed = false;
    const w = new BufferWriter(frame.type);
    for (const [code, value] of message.fields) {
      let text = value;
      if ('MDHWq'.includes(code)) {
        const scrubbed = scrubText(value, active.context.detectors, active.context.hmacKey);
        if (scrubbed.findings.length > 0) {
          changed = true;
          text = scrubbed.text;
        }
      }
      w.byte(code.charCodeAt(0)).cstring(text);
    }
    return changed ? w.byte(0).finish() : 'forward';
  }

  /** Clients spot self-notifications by comparing the pid with their BackendKeyData: translate it. */
  #translateNotification(frame: Frame): 'forward' | Buffer {
    const upstreamPid = this.#upstream?.backendKey.pid;
    const clientPid = this.#clientKey?.pid;
    if (upstreamPid === undefined || clientPid === undefined || frame.payload.length < 4) return 'forward';
    const message = decodeBackendMessage(frame);
    if (message.type !== 'NotificationResponse') return 'forward';
    const active = this.#scrubAsync;
    const payload = active === undefined ? message.payload : scrubText(message.payload, active.context.detectors, active.context.hmacKey).text;
    const ownPid = message.pid === upstreamPid;
    if (!ownPid && payload === message.payload) return 'forward';
    return new BufferWriter(BACKEND.NotificationResponse).int32(ownPid ? clientPid : message.pid).cstring(message.channel).cstring(payload).finish();
  }

  #recordOutcomes(outcomes: readonly ExecutionOutcome[]): void {
    for (const o of outcomes) {
      const execution = o.execution as Execution;
      const durationMs = this.#env.now() - execution.startedAt;
      const outcome = o.status === 'success' ? 'success' : 'failure';
      this.#env.metrics.statementSeconds.observe({ target: this.#target?.name ?? 'unknown', outcome }, durationMs / 1000);
      const tag = execution.commandTags.at(-1);
      if (execution.ddl && o.status === 'success') this.#env.masking?.refreshSoon();
      const masked = execution.masking !== undefined && execution.masking.counts.size > 0 ? Object.fromEntries(execution.masking.counts) : undefined;
      void this.#appendBestEffort({
        event_type: 'db.query.result',
        attempt_id: execution.id,
        outcome,
        ...(masked !== undefined ? { masking: { masked } } : {}),
        result: {
          rows: Math.max(execution.rows, rowsOfTag(tag)),
          ...(tag !== undefined ? { command_tag: tag } : {}),
          ...(o.sqlstate !== undefined ? { sqlstate: o.sqlstate } : {}),
          duration_ms: Math.round(durationMs * 1000) / 1000,
        },
        ...(o.status === 'skipped' ? { message: 'not executed: an earlier message of the batch failed' } : {}),
      });
    }
  }

  // ─── audit helpers ────────────────────────────────────────────────────────────────────────────

  #draft(fields: Omit<AuditEventDraft, 'time' | 'session_id' | 'actor' | 'target' | 'src'>): AuditEventDraft {
    const target = this.#target;
    const auditTarget: AuditTarget | undefined = target
      ? { kind: 'postgres', name: target.name, host: target.host, port: target.port, ...(target.database !== undefined ? { database: target.database } : {}) }
      : undefined;
    const reason = this.#reason();
    return {
      time: new Date(this.#env.now()).toISOString(),
      session_id: this.#id,
      actor: auditActor(this.#identity),
      ...(auditTarget !== undefined ? { target: auditTarget } : {}),
      src: this.#clientAddress,
      ...(reason !== undefined && fields.reason === undefined ? { reason } : {}),
      ...fields,
    };
  }

  async #appendBestEffort(fields: Omit<AuditEventDraft, 'time' | 'session_id' | 'actor' | 'target' | 'src'>): Promise<void> {
    try {
      await this.#env.audit.append(this.#draft(fields));
      this.#audited = true;
      this.#env.metrics.auditAppends.inc({ type: fields.event_type });
    } catch (e: unknown) {
      this.#log.error({ err: isCustosError(e) ? e.code : String(e), event: fields.event_type }, 'audit append failed');
    }
  }

  // ─── ending ───────────────────────────────────────────────────────────────────────────────────

  #requireTarget(): ResolvedTarget {
    if (this.#target === undefined) throw new CustosError('ERR_PG_STATE', 'no target resolved');
    return this.#target;
  }

  #protocolViolation(e: unknown): void {
    const code = isCustosError(e) ? e.code : 'ERR_INTERNAL';
    this.#env.metrics.protocolErrors.inc({ code });
    if (isCustosError(e) && e.code.startsWith('ERR_PG_')) {
      this.#fatal('08P01', `protocol violation: ${e.message}`);
    } else {
      this.#log.error({ err: e instanceof Error ? e.stack : String(e) }, 'internal error in session');
      this.#fatal('XX000', 'internal error in Custos');
    }
  }

  /** After a client half-close: close once every message it sent has been answered. */
  #finishIfDone(): void {
    if (!this.#clientEnded || this.#processing || this.#inbound.length > 0 || this.#closed) return;
    // Messages after the last Sync get no answer until a Sync that will never come.
    if (this.#step === 'proxying' && this.#tracker.awaitingReadyForQuery > 0) return;
    this.#close('client closed the connection');
  }

  #fatalIfOpen(sqlstate: string, message: string): void {
    if (this.#step !== 'closed') this.#fatal(sqlstate, message);
  }

  #fatal(sqlstate: string, message: string, cause?: unknown): void {
    if (this.#step === 'closed') return;
    if (cause !== undefined) this.#log.debug({ err: cause instanceof Error ? cause.message : 'non-error cause' }, message);
    try {
      this.#client.end(be.errorResponse({ severity: 'FATAL', code: sqlstate, message }));
    } catch {
      // the socket is gone already
    }
    this.#close(message);
  }

  #close(reason: string): void {
    if (this.#step === 'closed') return;
    const wasProxying = this.#step === 'proxying';
    this.#step = 'closed';
    this.#hold?.abort('disconnect');
    this.#endedAt = this.#env.now();
    if (this.#clientKey) this.#env.cancelKeys.release(this.#clientKey.pid);
    const upstream = this.#upstream;
    if (upstream !== undefined) {
      if (!upstream.socket.destroyed) upstream.socket.end(fe.terminate());
      upstream.socket.destroySoon();
    }
    if (!this.#client.destroyed) this.#client.end();
    if (wasProxying && this.#target) this.#env.metrics.connections.dec({ target: this.#target.name });
    // Every session with events ends its chain, refused ones too: the audit log keeps a chain head
    // per open session, so a stream of failed logins must not leave one behind each.
    if (this.#sessionStarted || this.#audited) {
      void this.#appendBestEffort({
        event_type: 'session.end',
        outcome: this.#sessionStarted ? 'success' : 'failure',
        message: reason,
        result: { duration_ms: this.#endedAt - this.#startedAt, rows: this.#statementsRun },
      });
    }
    this.#log.info({ reason }, 'session ended');
  }
}

// ─── helpers ────────────────────────────────────────────────────────────────────────────────────

const NO_MASKING: MaskingCheck = { kind: 'none' };

/** table_to_xml, cursor_to_xml, query_to_xml, schema_/database_to_xml (and their xmlschema forms), ts_stat. */
const READS_BY_NAME = /^(table|cursor|query|schema|database)_to_xml(schema|_and_xmlschema)?$|^ts_stat$/;

/** System views whose rows are copies of column values (planner statistics, lock keys). */
const VALUE_EXPOSING_CATALOGS = new Set(['pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs', 'pg_statistic', 'pg_statistic_ext_data', 'pg_locks']);

/** A NoticeResponse keeping its severity and SQLSTATE, with the text withheld. */
function withheldNotice(frame: Frame): Buffer {
  const message = decodeBackendMessage(frame);
  const fields = message.type === 'NoticeResponse' ? message.fields : new Map<string, string>();
  const severity = fields.get('V') ?? fields.get('S') ?? 'NOTICE';
  return be.noticeResponse({
    severity: (['WARNING', 'NOTICE', 'DEBUG', 'INFO', 'LOG'].includes(severity) ? severity : 'NOTICE') as 'NOTICE',
    code: fields.get('C') ?? '00000',
    message: 'a notice raised on masked data (details withheld by Custos)',
  });
}

function isLoopback(address: string | undefined): boolean {
  return address !== undefined && (address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.'));
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 128);
}

function denialBytes(refusal: Refusal): Buffer {
  return be.errorResponse({
    severity: 'ERROR',
    code: refusal.sqlstate,
    message: refusal.message,
    ...(refusal.detail !== undefined ? { detail: refusal.detail } : {}),
    ...(refusal.hint !== undefined ? { hint: refusal.hint } : {}),
  });
}

function spoolFullRefusal(): Refusal {
  return {
    sqlstate: '53000',
    message: 'Custos cannot record this statement in its audit log (spool full or failing): statement refused',
    hint: 'no audit, no access: retry when the audit backlog has drained',
  };
}

/** Who asks for approval, as reviewers and the four-eyes checks see them (the caller, else the workload). */
function requesterOf(identity: RequestIdentity): Requester {
  const caller = identity.caller;
  if (caller !== undefined) {
    const name = caller.claims['email'] ?? caller.claims['preferred_username'];
    return { id: `${caller.issuer}#${caller.subject}`, kind: 'OIDC', displayName: typeof name === 'string' ? name.slice(0, 256) : caller.subject };
  }
  const workload = identity.workload;
  const k8s = workload?.kubernetes;
  if (k8s !== undefined) {
    const id = `system:serviceaccount:${k8s.namespace}:${k8s.serviceAccount}`;
    return { id, kind: 'ServiceAccount', displayName: id };
  }
  return { id: workload !== undefined ? `${workload.issuer}#${workload.subject}` : 'unknown', kind: 'OIDC' };
}

/** A statement waiting for a reviewer: the rule (or masking policy) that asked, and its settings. */
interface ApprovalNeed {
  readonly kind: 'ask';
  readonly rule: string;
  readonly settings: ApprovalSettings;
  /** A policy rule's require-approval decision, or the masking policy's (a condition on a masked column). */
  readonly source: 'rule' | 'masking';
}

function sameSettings(a: ApprovalSettings, b: ApprovalSettings): boolean {
  return isDeepStrictEqual(a, b);
}

/** The client-visible refusal for a decision other than allow. */
export function refusalFor(decision: Decision, policyName: string): Refusal {
  const kinds = [...new Set(decision.statements.flatMap((s) => s.facts?.kinds ?? []))].join(', ');
  const detail = `policy "${policyName}"${kinds !== '' ? `, statement kinds: ${kinds}` : ''}`;
  if (decision.reason === 'unparseable') {
    return { sqlstate: '42601', message: 'syntax error: Custos could not parse this statement, so it was not run', detail };
  }
  if (decision.action === 'require-approval') {
    return {
      sqlstate: '57014',
      message: `approval required by policy rule "${decision.rule ?? '(default)'}", so the statement was not run`,
      detail,
    };
  }
  const suffix = decision.message !== undefined && decision.message !== '' ? `: ${decision.message}` : '';
  const message = decision.rule !== null
    ? `permission denied by policy rule "${decision.rule}"${suffix}`
    : `permission denied by policy: no rule allows this statement (default action)${suffix}`;
  return { sqlstate: '42501', message, detail };
}

function operationOf(facts: readonly StatementFacts[]): string {
  const kinds = [...new Set(facts.flatMap((f) => f.kinds))];
  return kinds.length === 0 ? 'EMPTY' : kinds.map((k) => k.toUpperCase()).join(',');
}

/** Rows a command reports in its tag (`UPDATE 3`, `INSERT 0 2`, `COPY 10`); 0 when it reports none. */
function rowsOfTag(tag: string | undefined): number {
  const match = tag === undefined ? null : /^(?:INSERT \d+|UPDATE|DELETE|MERGE|SELECT|COPY|FETCH|MOVE) (\d+)$/.exec(tag);
  return match?.[1] !== undefined ? Number(match[1]) : 0;
}

function readCString(payload: Buffer): string {
  const end = payload.indexOf(0);
  return payload.toString('utf8', 0, end < 0 ? payload.length : end);
}

/** The SQLSTATE ('C' field) of an ErrorResponse payload, without decoding the other fields. */
function readErrorCode(payload: Buffer): string | undefined {
  let i = 0;
  while (i < payload.length) {
    const code = payload[i];
    if (code === 0) return undefined;
    const end = payload.indexOf(0, i + 1);
    if (end < 0) return undefined;
    if (code === 0x43) return payload.toString('latin1', i + 1, end);
    i = end + 1;
  }
  return undefined;
}

/** Portal and statement names of a Bind payload, and where the rest (formats, parameters) starts. */
function readBindNames(payload: Buffer): { portal: string; statement: string; restOffset: number } {
  const r = new BufferReader(payload, { text: 'strict' });
  const portal = r.cstring();
  const statement = r.cstring();
  return { portal, statement, restOffset: payload.length - r.remaining };
}

/** The parameter values of a Bind payload, as sent (null for SQL NULL); an approval's digest covers them. */
function readBindParameters(payload: Buffer, restOffset: number): (Buffer | null)[] {
  const r = new BufferReader(payload.subarray(restOffset), { text: 'strict' });
  const formats = r.uint16();
  for (let i = 0; i < formats; i++) r.uint16();
  const count = r.uint16();
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < count; i++) {
    const length = r.int32();
    values.push(length < 0 ? null : Buffer.from(r.bytes(length)));
  }
  return values;
}

/** A Bind with another statement name and the original formats and parameters, byte for byte. */
function rewriteBind(portal: string, statement: string, payload: Buffer, restOffset: number): Buffer {
  const portalBytes = Buffer.byteLength(portal);
  const statementBytes = Buffer.byteLength(statement);
  const rest = payload.length - restOffset;
  const length = 4 + portalBytes + 1 + statementBytes + 1 + rest;
  const out = Buffer.allocUnsafe(1 + length);
  out[0] = FRONTEND.Bind;
  out.writeInt32BE(length, 1);
  let o = 5;
  o += out.write(portal, o);
  out[o++] = 0;
  o += out.write(statement, o);
  out[o++] = 0;
  payload.copy(out, o, restOffset);
  return out;
}
