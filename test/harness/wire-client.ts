// A raw PostgreSQL wire client for acceptance tests that must send what no driver sends (a
// FunctionCall, a truncated frame, bytes after SSLRequest) and see exactly what comes back.
import { createConnection, type Socket } from 'node:net';
import { decodeBackendMessage, type BackendMessage } from '../../sidecar/protocols/postgres/codec/backend-messages.ts';
import { BackendFramer } from '../../sidecar/protocols/postgres/codec/framer.ts';
import * as fe from '../../sidecar/protocols/postgres/codec/frontend-serializer.ts';

export type Message = BackendMessage;

/** What a pg driver error carries that a user sees: SQLSTATE and message. */
export function sqlstateOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The SQLSTATE and message of an ErrorResponse. */
export function errorOf(m: Message | undefined): { sqlstate: string; message: string; severity: string } | undefined {
  if (m?.type !== 'ErrorResponse') return undefined;
  return { sqlstate: m.fields.get('C') ?? '', message: m.fields.get('M') ?? '', severity: m.fields.get('V') ?? m.fields.get('S') ?? '' };
}

export class WireClient {
  readonly socket: Socket;
  readonly #framer = new BackendFramer();
  readonly #queue: Message[] = [];
  #waiters: Array<() => void> = [];
  #closed = false;
  #raw: Buffer[] = [];
  #typed = true;

  private constructor(socket: Socket, typed: boolean) {
    this.socket = socket;
    this.#typed = typed;
    socket.on('data', (chunk: Buffer) => {
      this.#raw.push(chunk);
      if (this.#typed) {
        try {
          for (const frame of this.#framer.push(chunk)) this.#queue.push(decodeBackendMessage(frame));
        } catch {
          // a malformed answer: tests assert on what they expected, this just stops framing
          this.#typed = false;
        }
      }
      this.#wake();
    });
    socket.on('error', () => { this.#closed = true; this.#wake(); });
    socket.on('close', () => { this.#closed = true; this.#wake(); });
  }

  /** Opens a socket; `typed: false` keeps only raw bytes (for SSL answers and garbage tests). */
  static async open(port: number, options: { typed?: boolean } = {}): Promise<WireClient> {
    const socket = createConnection({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new WireClient(socket, options.typed ?? true);
  }

  /** Starts a session: StartupMessage, then the token as the cleartext password. */
  static async login(port: number, password: string, parameters: Record<string, string> = {}): Promise<{ client: WireClient; messages: Message[] }> {
    const client = await WireClient.open(port);
    client.send(fe.startupMessage({ user: 'ci-bot', database: 'app', application_name: 'custos-wire-tests', ...parameters }));
    const first = await client.until((m) => m.type === 'AuthenticationCleartextPassword' || m.type === 'ErrorResponse');
    if (first.at(-1)?.type !== 'AuthenticationCleartextPassword') return { client, messages: first };
    client.send(fe.passwordMessage(password));
    const rest = await client.until((m) => m.type === 'ReadyForQuery' || m.type === 'ErrorResponse');
    return { client, messages: [...first, ...rest] };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Every byte received so far. */
  get received(): Buffer {
    return Buffer.concat(this.#raw);
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  async #waitForChange(deadline: number): Promise<boolean> {
    if (Date.now() >= deadline) return false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, deadline - Date.now());
      this.#waiters.push(() => { clearTimeout(timer); resolve(); });
    });
    return true;
  }

  /** Messages up to and including the first that satisfies `done`; throws on close or timeout. */
  async until(done: (m: Message) => boolean, timeoutMs = 5000): Promise<Message[]> {
    const deadline = Date.now() + timeoutMs;
    const out: Message[] = [];
    for (;;) {
      while (this.#queue.length > 0) {
        const m = this.#queue.shift() as Message;
        out.push(m);
        if (done(m)) return out;
      }
      if (this.#closed) throw new Error(`connection closed before the expected message; got ${out.map((m) => m.type).join(', ')}`);
      if (!(await this.#waitForChange(deadline))) throw new Error(`timed out; got ${out.map((m) => m.type).join(', ')}`);
    }
  }

  /** Everything until the server closes the connection (or the timeout). */
  async untilClosed(timeoutMs = 5000): Promise<{ messages: Message[]; closed: boolean }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      if (!(await this.#waitForChange(deadline))) break;
    }
    return { messages: this.#queue.splice(0), closed: this.#closed };
  }

  /** A simple Query: messages up to its ReadyForQuery. */
  async query(sql: string): Promise<Message[]> {
    this.send(fe.query(sql));
    return this.until((m) => m.type === 'ReadyForQuery');
  }

  end(): void {
    this.socket.destroy();
  }
}
