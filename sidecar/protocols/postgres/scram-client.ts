// Client side of PostgreSQL's password authentication, pure (no sockets): SCRAM-SHA-256
// (RFC 5802, RFC 7677; PostgreSQL protocol.html "SASL Authentication") and the legacy MD5 hash.
// The nonce comes from an injected random source so tests can replay RFC vectors.
// Channel binding is never used: Custos terminates TLS, so `-PLUS` would bind the wrong hop
// (reference/postgres-protocol.md §2.3); the GS2 header is therefore "n,,".
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { CustosError } from '../../../lib/errors.ts';

const pbkdf2Async = promisify(pbkdf2);

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
/** GS2 header "n,," (no channel binding), base64 for the client-final `c=` attribute. */
const GS2_HEADER = 'n,,';
const GS2_HEADER_B64 = Buffer.from(GS2_HEADER).toString('base64');
const DEFAULT_MAX_ITERATIONS = 1_000_000;
const NONCE_BYTES = 18; // as libpq (SCRAM_RAW_NONCE_LEN)

export interface ScramOptions {
  /** Random source for the client nonce (default node:crypto randomBytes). */
  readonly random?: (size: number) => Uint8Array;
  /** Refuse a server-chosen iteration count above this (a hostile server could make us burn CPU). */
  readonly maxIterations?: number;
  /** SCRAM user name (default empty: PostgreSQL ignores it and uses the startup `user`). */
  readonly username?: string;
}

type Step = 'initial' | 'first-sent' | 'final-sent' | 'done';

function authError(message: string): CustosError {
  return new CustosError('ERR_PG_AUTH', message);
}

/**
 * One SCRAM-SHA-256 exchange: clientFirstMessage() → SASLInitialResponse,
 * clientFinalMessage(SASLContinue data) → SASLResponse, verifyServerFinal(SASLFinal data).
 */
export class ScramSha256Client {
  readonly mechanism = SCRAM_SHA_256;
  readonly #password: string;
  readonly #random: (size: number) => Uint8Array;
  readonly #maxIterations: number;
  readonly #username: string;
  #step: Step = 'initial';
  #clientNonce = '';
  #clientFirstBare = '';
  #expectedServerSignature: Buffer | undefined;
  #verified = false;

  constructor(password: string, options: ScramOptions = {}) {
    this.#password = password;
    this.#random = options.random ?? randomBytes;
    this.#maxIterations = options.maxIterations ?? DEFAULT_MAX_ITERATIONS;
    // RFC 5802 §5.1: ',' and '=' in the user name are escaped as =2C and =3D.
    this.#username = (options.username ?? '').replaceAll('=', '=3D').replaceAll(',', '=2C');
  }

  /** client-first-message. PostgreSQL ignores the SCRAM user name (it uses the startup `user`), so it is empty, as in libpq. */
  clientFirstMessage(): Buffer {
    if (this.#step !== 'initial') throw authError('SCRAM: client-first-message already sent');
    const raw = this.#random(NONCE_BYTES);
    if (raw.length === 0) throw authError('SCRAM: empty nonce from the random source');
    this.#clientNonce = Buffer.from(raw).toString('base64');
    this.#clientFirstBare = `n=${this.#username},r=${this.#clientNonce}`;
    this.#step = 'first-sent';
    return Buffer.from(GS2_HEADER + this.#clientFirstBare, 'utf8');
  }

  /** Checks server-first-message and returns client-final-message with the proof. */
  async clientFinalMessage(serverFirstMessage: Buffer): Promise<Buffer> {
    if (this.#step !== 'first-sent') throw authError('SCRAM: unexpected server-first-message');
    this.#step = 'final-sent';
    const serverFirst = serverFirstMessage.toString('utf8');
    // server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
    const m = /^r=([\x21-\x2b\x2d-\x7e]+),s=([A-Za-z0-9+/]+={0,2}),i=([1-9][0-9]{0,9})(?:,.*)?$/s.exec(serverFirst);
    if (serverFirst.startsWith('m=')) throw authError('SCRAM: server requires an unsupported mandatory extension');
    if (m === null) throw authError('SCRAM: malformed server-first-message');
    const [, nonce = '', saltB64 = '', iterText = ''] = m;
    if (!nonce.startsWith(this.#clientNonce) || nonce.length <= this.#clientNonce.length) {
      throw authError('SCRAM: server nonce does not extend the client nonce');
    }
    const salt = Buffer.from(saltB64, 'base64');
    if (salt.length === 0) throw authError('SCRAM: empty salt');
    const iterations = Number(iterText);
    if (iterations > this.#maxIterations) throw authError(`SCRAM: iteration count ${iterations} exceeds the limit ${this.#maxIterations}`);

    const saltedPassword = await pbkdf2Async(Buffer.from(saslprep(this.#password), 'utf8'), salt, iterations, 32, 'sha256');
    const clientKey = hmac(saltedPassword, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const clientFinalWithoutProof = `c=${GS2_HEADER_B64},r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = (clientKey[i] ?? 0) ^ (clientSignature[i] ?? 0);
    this.#expectedServerSignature = hmac(hmac(saltedPassword, 'Server Key'), authMessage);
    return Buffer.from(`${clientFinalWithoutProof},p=${proof.toString('base64')}`, 'utf8');
  }

  /** Verifies server-final-message: the server proves it knows the password too. Throws ERR_PG_AUTH otherwise. */
  verifyServerFinal(serverFinalMessage: Buffer): void {
    if (this.#step !== 'final-sent' || this.#expectedServerSignature === undefined) throw authError('SCRAM: unexpected server-final-message');
    this.#step = 'done';
    const text = serverFinalMessage.toString('utf8');
    const err = /^e=([^,]*)/.exec(text);
    if (err !== null) throw authError(`SCRAM: server reported error "${err[1] ?? ''}"`);
    const m = /^v=([A-Za-z0-9+/]+={0,2})(?:,.*)?$/s.exec(text);
    if (m === null) throw authError('SCRAM: malformed server-final-message');
    const signature = Buffer.from(m[1] ?? '', 'base64');
    if (signature.length !== this.#expectedServerSignature.length || !timingSafeEqual(signature, this.#expectedServerSignature)) {
      throw authError('SCRAM: server signature mismatch (the server does not know the password)');
    }
    this.#verified = true;
  }

  /** True once the server signature has been verified. */
  get verified(): boolean {
    return this.#verified;
  }
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

// SASLprep (RFC 4013) as PostgreSQL applies it (src/common/saslprep.c), simplified:
// - pure-ASCII passwords are used unchanged (PostgreSQL's fast path, control characters included);
// - non-ASCII spaces (RFC 3454 C.1.2) map to U+0020, "commonly mapped to nothing" (B.1) are removed,
//   then NFKC;
// - prohibited output (C.2–C.9) makes us use the raw password, which is what PostgreSQL does both
//   when it stores the secret and in libpq, so such passwords still authenticate;
// Simplifications: unassigned code points (A.1) are not checked (Node's Unicode tables are newer
// than RFC 3454's) and the bidirectional rule (RandALCat) is not applied. Passwords hitting either
// case may fail to authenticate; ASCII and ordinary Unicode passwords are exact.

// Code point ranges [first, last] from RFC 3454.
type Ranges = readonly (readonly [number, number])[];
const NON_ASCII_SPACE: Ranges = [[0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]]; // C.1.2
const MAPPED_TO_NOTHING: Ranges = [[0xad, 0xad], [0x34f, 0x34f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200b, 0x200d], [0x2060, 0x2060], [0xfe00, 0xfe0f], [0xfeff, 0xfeff]]; // B.1
const PROHIBITED: Ranges = [
  ...NON_ASCII_SPACE, // C.1.2
  [0x00, 0x1f], [0x7f, 0x7f], // C.2.1
  [0x80, 0x9f], [0x6dd, 0x6dd], [0x70f, 0x70f], [0x180e, 0x180e], [0x200c, 0x200d], [0x2028, 0x2029], [0x2060, 0x2063], [0x206a, 0x206f],
  [0xfeff, 0xfeff], [0xfff9, 0xfffc], [0x1d173, 0x1d17a], // C.2.2
  [0xe000, 0xf8ff], [0xf0000, 0xffffd], [0x100000, 0x10fffd], // C.3
  [0xfdd0, 0xfdef], // C.4 (plus U+xFFFE/U+xFFFF of every plane, below)
  [0xd800, 0xdfff], // C.5 (lone surrogates)
  [0xfff9, 0xfffd], // C.6
  [0x2ff0, 0x2ffb], // C.7
  [0x340, 0x341], [0x200e, 0x200f], [0x202a, 0x202e], // C.8
  [0xe0001, 0xe0001], [0xe0020, 0xe007f], // C.9
];

function inRanges(cp: number, ranges: Ranges): boolean {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true;
  return false;
}

/** The password bytes PostgreSQL feeds to PBKDF2 (see the comment above for the simplifications). */
export function saslprep(password: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  let mapped = '';
  for (const ch of password) {
    const cp = ch.codePointAt(0) ?? 0;
    if (inRanges(cp, NON_ASCII_SPACE)) mapped += ' ';
    else if (!inRanges(cp, MAPPED_TO_NOTHING)) mapped += ch;
  }
  const prepared = mapped.normalize('NFKC');
  for (const ch of prepared) {
    const cp = ch.codePointAt(0) ?? 0;
    if (inRanges(cp, PROHIBITED) || (cp & 0xfffe) === 0xfffe) return password;
  }
  return prepared === '' ? password : prepared;
}

/** MD5 PasswordMessage content: 'md5' + md5hex(md5hex(password + user) + salt) (protocol.html). */
export function md5PasswordHash(user: string, password: string, salt: Uint8Array): string {
  const inner = createHash('md5').update(password, 'utf8').update(user, 'utf8').digest('hex');
  return 'md5' + createHash('md5').update(inner, 'latin1').update(salt).digest('hex');
}
