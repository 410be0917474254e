// Incremental framers: push(chunk) → whole frames, keeping the remainder. Never emits a partial
// message; checks every declared length against a maximum before buffering anything for it
// (reference/postgres-protocol.md §1.1). Frames are subarrays of the pushed chunk when a chunk
// holds whole messages (no copy); a message spanning chunks is assembled with one concat.
// The framer keeps references to pushed chunks: callers must not reuse a chunk's memory.
import { CustosError } from '../../../../lib/errors.ts';
import {
  CODEC_ERROR,
  DEFAULT_MAX_BACKEND_MESSAGE_LENGTH,
  DEFAULT_MAX_FRONTEND_MESSAGE_LENGTH,
  MAX_STARTUP_PACKET_LENGTH,
  PROTOCOL_CODE,
  STARTUP_PACKET_TYPE,
} from './constants.ts';

export interface Frame {
  /** The message type byte, or STARTUP_PACKET_TYPE (0) for an untyped startup-phase packet. */
  readonly type: number;
  /** The body after the length (for startup packets it starts with the Int32 code). */
  readonly payload: Buffer;
  /** The whole message as received, to forward without re-encoding. */
  readonly raw: Buffer;
}

export type FramerMode = 'startup' | 'typed';

export interface FramerOptions {
  /** Largest accepted declared length of a typed message (the Int32, which counts itself). */
  readonly maxMessageLength?: number;
}

class Framer {
  #mode: FramerMode;
  readonly #maxTyped: number;
  /** Pieces of the incomplete message at the front of the stream. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Total size of the incomplete message once its header has been read, else -1. */
  #pendingTotal = -1;
  #failed: CustosError | undefined;

  constructor(mode: FramerMode, maxTyped: number) {
    this.#mode = mode;
    this.#maxTyped = maxTyped;
  }

  get mode(): FramerMode {
    return this.#mode;
  }

  /** Bytes held back because they do not yet form a whole message. */
  get bufferedBytes(): number {
    return this.#pendingBytes;
  }

  protected setMode(mode: FramerMode): void {
    this.#mode = mode;
  }

  /** Removes and returns the incomplete bytes held back (e.g. to hand a stream over to another reader). */
  takeRemainder(): Buffer {
    const out = this.#pending.length === 1 ? (this.#pending[0] ?? Buffer.alloc(0)) : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#pendingTotal = -1;
    return out;
  }

  push(chunk: Buffer): Frame[] {
    if (this.#failed) throw this.#failed;
    try {
      return this.#push(chunk);
    } catch (e: unknown) {
      // Framing is lost for good: the stream can only be closed.
      if (e instanceof CustosError) this.#failed = e;
      throw e;
    }
  }

  #headerSize(): number {
    // Typed: Byte1 type + Int32 length. Startup: Int32 length + Int32 code (the code decides the
    // mode switch, so we wait for it before emitting, which a valid packet always has).
    return this.#mode === 'typed' ? 5 : 4;
  }

  /** Validates the declared length in `header` (at least headerSize bytes) and returns the total size. */
  #total(header: Buffer, at: number): number {
    if (this.#mode === 'typed') {
      const length = header.readInt32BE(at + 1);
      if (length < 4) throw new CustosError(CODEC_ERROR.Malformed, `malformed message: length ${length} < 4 (type 0x${(header[at] ?? 0).toString(16)})`);
      if (length > this.#maxTyped) {
        throw new CustosError(CODEC_ERROR.FrameTooLarge, `message of ${length} bytes exceeds the ${this.#maxTyped}-byte limit (type 0x${(header[at] ?? 0).toString(16)})`);
      }
      return length + 1;
    }
    const length = header.readInt32BE(at);
    if (length < 8) throw new CustosError(CODEC_ERROR.Malformed, `malformed startup packet: length ${length} < 8`);
    if (length > MAX_STARTUP_PACKET_LENGTH) {
      throw new CustosError(CODEC_ERROR.FrameTooLarge, `startup packet of ${length} bytes exceeds the ${MAX_STARTUP_PACKET_LENGTH}-byte limit`);
    }
    return length;
  }

  #frame(raw: Buffer): Frame {
    if (this.#mode === 'typed') return { type: raw[0] ?? 0, payload: raw.subarray(5), raw };
    const frame = { type: STARTUP_PACKET_TYPE, payload: raw.subarray(4), raw };
    // After a StartupMessage every further frontend message is typed; SSLRequest and
    // GSSENCRequest are followed by another untyped packet, CancelRequest by nothing.
    const code = raw.readInt32BE(4);
    if (code !== PROTOCOL_CODE.SSLRequest && code !== PROTOCOL_CODE.GSSENCRequest && code !== PROTOCOL_CODE.CancelRequest) {
      this.#mode = 'typed';
    }
    return frame;
  }

  #push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let off = 0;
    const len = chunk.length;

    // Complete the message left over from earlier chunks.
    if (this.#pendingBytes > 0) {
      if (this.#pendingTotal === -1) {
        const header = this.#headerSize();
        const take = Math.min(header - this.#pendingBytes, len);
        this.#pending.push(chunk.subarray(0, take));
        this.#pendingBytes += take;
        off = take;
        if (this.#pendingBytes < header) return frames;
        const head = Buffer.concat(this.#pending, this.#pendingBytes);
        this.#pending = [head];
        this.#pendingTotal = this.#total(head, 0);
      }
      const take = Math.min(this.#pendingTotal - this.#pendingBytes, len - off);
      if (take > 0) {
        this.#pending.push(chunk.subarray(off, off + take));
        this.#pendingBytes += take;
        off += take;
      }
      if (this.#pendingBytes < this.#pendingTotal) return frames;
      const raw = Buffer.concat(this.#pending, this.#pendingBytes);
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#pendingTotal = -1;
      frames.push(this.#frame(raw));
    }

    // Fast path: whole messages inside this chunk are subarrays.
    while (off < len) {
      if (len - off < this.#headerSize()) {
        this.#pending = [chunk.subarray(off)];
        this.#pendingBytes = len - off;
        this.#pendingTotal = -1;
        return frames;
      }
      const total = this.#total(chunk, off);
      if (off + total > len) {
        this.#pending = [chunk.subarray(off)];
        this.#pendingBytes = len - off;
        this.#pendingTotal = total;
        return frames;
      }
      frames.push(this.#frame(chunk.subarray(off, off + total)));
      off += total;
    }
    return frames;
  }
}

/**
 * Frames what a client sends. Starts in startup mode (untyped `Int32 len + Int32 code` packets:
 * StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) and switches itself to typed mode right
 * after a StartupMessage, so typed messages pipelined behind it in the same chunk frame correctly.
 * `startTypedMode()` lets a caller switch explicitly (idempotent).
 */
export class FrontendFramer extends Framer {
  constructor(options: FramerOptions = {}) {
    super('startup', options.maxMessageLength ?? DEFAULT_MAX_FRONTEND_MESSAGE_LENGTH);
  }

  startTypedMode(): void {
    if (this.bufferedBytes > 0 && this.mode === 'startup') {
      throw new CustosError(CODEC_ERROR.Malformed, 'cannot switch framing mode with a partial startup packet buffered');
    }
    this.setMode('typed');
  }
}

/** Frames what a server sends. The single-byte SSL answer is read by the caller before framing. */
export class BackendFramer extends Framer {
  constructor(options: FramerOptions = {}) {
    super('typed', options.maxMessageLength ?? DEFAULT_MAX_BACKEND_MESSAGE_LENGTH);
  }
}
