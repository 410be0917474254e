// Growable writer that builds one message: `Byte1 type` (or none for startup packets) +
// `Int32 length` patched in by `finish()` + body. The length counts itself and the body, not the
// type byte (protocol.html, "Message Formats").
import { CustosError } from '../../../../lib/errors.ts';
import { CODEC_ERROR } from './constants.ts';

export class BufferWriter {
  #buf: Buffer;
  #offset: number;
  readonly #lengthAt: number;

  /** `type` null starts an untyped startup-phase packet. */
  constructor(type: number | null, sizeHint = 64) {
    this.#buf = Buffer.allocUnsafe(Math.max(sizeHint, 16));
    if (type === null) {
      this.#lengthAt = 0;
    } else {
      this.#buf[0] = type;
      this.#lengthAt = 1;
    }
    this.#offset = this.#lengthAt + 4;
  }

  #ensure(n: number): void {
    if (this.#offset + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#offset + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.#buf.copy(next, 0, 0, this.#offset);
    this.#buf = next;
  }

  byte(v: number): this {
    checkInt(v, 0, 0xff, 'Byte1');
    this.#ensure(1);
    this.#buf[this.#offset] = v;
    this.#offset += 1;
    return this;
  }

  int16(v: number): this {
    checkInt(v, -0x8000, 0xffff, 'Int16');
    this.#ensure(2);
    if (v < 0) this.#buf.writeInt16BE(v, this.#offset);
    else this.#buf.writeUInt16BE(v, this.#offset);
    this.#offset += 2;
    return this;
  }

  int32(v: number): this {
    checkInt(v, -0x80000000, 0xffffffff, 'Int32');
    this.#ensure(4);
    if (v < 0) this.#buf.writeInt32BE(v, this.#offset);
    else this.#buf.writeUInt32BE(v, this.#offset);
    this.#offset += 4;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.#ensure(b.length);
    this.#buf.set(b, this.#offset);
    this.#offset += b.length;
    return this;
  }

  /** A NUL-terminated UTF-8 string; an embedded NUL cannot be represented and is refused. */
  cstring(s: string): this {
    if (s.includes('\0')) throw new CustosError(CODEC_ERROR.Encode, 'cannot encode a string containing NUL as a C string');
    const n = Buffer.byteLength(s, 'utf8');
    this.#ensure(n + 1);
    this.#buf.write(s, this.#offset, 'utf8');
    this.#offset += n;
    this.#buf[this.#offset] = 0;
    this.#offset += 1;
    return this;
  }

  /** UTF-8 bytes without a terminator. */
  string(s: string): this {
    const n = Buffer.byteLength(s, 'utf8');
    this.#ensure(n);
    this.#buf.write(s, this.#offset, 'utf8');
    this.#offset += n;
    return this;
  }

  /** Patches the length and returns the message (a view of the writer's buffer; do not reuse the writer). */
  finish(): Buffer {
    const length = this.#offset - this.#lengthAt;
    if (length > 0x7fffffff) throw new CustosError(CODEC_ERROR.Encode, 'message too large to encode');
    this.#buf.writeInt32BE(length, this.#lengthAt);
    return this.#buf.subarray(0, this.#offset);
  }
}

function checkInt(v: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new CustosError(CODEC_ERROR.Encode, `${what} out of range: ${v}`);
  }
}
