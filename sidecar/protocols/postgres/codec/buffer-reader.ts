// Cursor over one message payload (after pg-protocol's BufferReader). Every read checks bounds
// first and throws ERR_PG_MALFORMED instead of reading past the end, so decoders built on it are
// total: a byte sequence yields a message or a CustosError, never a RangeError.
import { isUtf8 } from 'node:buffer';
import { CustosError } from '../../../../lib/errors.ts';
import { CODEC_ERROR } from './constants.ts';

export type TextMode = 'strict' | 'lenient';

export class BufferReader {
  readonly #buf: Buffer;
  readonly #end: number;
  readonly #text: TextMode;
  #offset: number;

  /**
   * `text: 'strict'` rejects invalid UTF-8 in strings (frontend: the policy must analyse exactly the
   * bytes the server will see); `'lenient'` substitutes U+FFFD (backend text shown or logged).
   */
  constructor(buf: Buffer, options: { text?: TextMode; start?: number; end?: number } = {}) {
    this.#buf = buf;
    this.#offset = options.start ?? 0;
    this.#end = options.end ?? buf.length;
    this.#text = options.text ?? 'strict';
  }

  get offset(): number {
    return this.#offset;
  }

  get remaining(): number {
    return this.#end - this.#offset;
  }

  #need(n: number, what: string): void {
    if (n < 0 || this.#offset + n > this.#end) {
      throw new CustosError(CODEC_ERROR.Malformed, `malformed message: ${what} needs ${n} bytes, ${this.#end - this.#offset} left`);
    }
  }

  byte(): number {
    this.#need(1, 'byte');
    const v = this.#buf[this.#offset] ?? 0;
    this.#offset += 1;
    return v;
  }

  int16(): number {
    this.#need(2, 'Int16');
    const v = this.#buf.readInt16BE(this.#offset);
    this.#offset += 2;
    return v;
  }

  uint16(): number {
    this.#need(2, 'Int16');
    const v = this.#buf.readUInt16BE(this.#offset);
    this.#offset += 2;
    return v;
  }

  int32(): number {
    this.#need(4, 'Int32');
    const v = this.#buf.readInt32BE(this.#offset);
    this.#offset += 4;
    return v;
  }

  uint32(): number {
    this.#need(4, 'Int32');
    const v = this.#buf.readUInt32BE(this.#offset);
    this.#offset += 4;
    return v;
  }

  /** `n` raw bytes as a subarray (no copy). */
  bytes(n: number): Buffer {
    this.#need(n, 'byte string');
    const v = this.#buf.subarray(this.#offset, this.#offset + n);
    this.#offset += n;
    return v;
  }

  /** Everything up to the end of the payload. */
  rest(): Buffer {
    return this.bytes(this.#end - this.#offset);
  }

  /** A NUL-terminated string; a missing terminator is malformed. */
  cstring(): string {
    const nul = this.#buf.indexOf(0, this.#offset);
    if (nul === -1 || nul >= this.#end) {
      throw new CustosError(CODEC_ERROR.Malformed, 'malformed message: string is not NUL-terminated');
    }
    const s = this.#decode(this.#offset, nul);
    this.#offset = nul + 1;
    return s;
  }

  /** `n` bytes decoded as text. */
  string(n: number): string {
    this.#need(n, 'string');
    const s = this.#decode(this.#offset, this.#offset + n);
    this.#offset += n;
    return s;
  }

  #decode(start: number, end: number): string {
    if (this.#text === 'strict' && !isUtf8(this.#buf.subarray(start, end))) {
      throw new CustosError(CODEC_ERROR.Malformed, 'malformed message: string is not valid UTF-8');
    }
    return this.#buf.toString('utf8', start, end);
  }

  /** PostgreSQL's pq_getmsgend: trailing bytes mean the message is malformed. */
  end(what: string): void {
    if (this.#offset !== this.#end) {
      throw new CustosError(CODEC_ERROR.Malformed, `malformed ${what}: ${this.#end - this.#offset} unexpected trailing bytes`);
    }
  }
}
