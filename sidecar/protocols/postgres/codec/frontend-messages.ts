// Decoders for every message a client (frontend) sends, as a union tagged by the spec's names.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
// Decoding is total: any bytes yield a message or a CustosError (ERR_PG_MALFORMED). Strings must
// be valid UTF-8 and every message must be consumed exactly (PostgreSQL's pq_getmsgend), so the
// policy never sees a different statement than the server would.
import { CustosError } from '../../../../lib/errors.ts';
import { BufferReader } from './buffer-reader.ts';
import { CODEC_ERROR, FRONTEND, MAX_CANCEL_KEY_LENGTH, MAX_STARTUP_PARAMETERS, PROTOCOL_CODE, STARTUP_PACKET_TYPE } from './constants.ts';
import type { Frame } from './framer.ts';

export type PortalOrStatement = 'S' | 'P';

export type FrontendMessage =
  | { readonly type: 'Query'; readonly sql: string }
  | { readonly type: 'Parse'; readonly name: string; readonly sql: string; readonly paramTypes: readonly number[] }
  | {
      readonly type: 'Bind';
      readonly portal: string;
      readonly statement: string;
      readonly paramFormats: readonly number[];
      readonly params: readonly (Buffer | null)[];
      readonly resultFormats: readonly number[];
    }
  | { readonly type: 'Describe'; readonly kind: PortalOrStatement; readonly name: string }
  | { readonly type: 'Execute'; readonly portal: string; readonly maxRows: number }
  | { readonly type: 'Close'; readonly kind: PortalOrStatement; readonly name: string }
  | { readonly type: 'Sync' }
  | { readonly type: 'Flush' }
  | { readonly type: 'CopyData'; readonly data: Buffer }
  | { readonly type: 'CopyDone' }
  | { readonly type: 'CopyFail'; readonly message: string }
  | {
      readonly type: 'FunctionCall';
      readonly functionOid: number;
      readonly argFormats: readonly number[];
      readonly args: readonly (Buffer | null)[];
      readonly resultFormat: number;
    }
  | { readonly type: 'Terminate' }
  /** PasswordMessage / SASLInitialResponse / SASLResponse / GSSResponse: raw, interpreted by state. */
  | { readonly type: 'PasswordMessage'; readonly data: Buffer };

export type FrontendMessageType = FrontendMessage['type'];

export type StartupPacket =
  | { readonly type: 'StartupMessage'; readonly protocolVersion: number; readonly parameters: ReadonlyMap<string, string> }
  | { readonly type: 'SSLRequest' }
  | { readonly type: 'GSSENCRequest' }
  | { readonly type: 'CancelRequest'; readonly pid: number; readonly secret: Buffer };

function malformed(message: string): CustosError {
  return new CustosError(CODEC_ERROR.Malformed, message);
}

/** Decodes a typed frontend message. An unknown type byte is malformed (PostgreSQL: 08P01). */
export function decodeFrontendMessage(frame: Frame): FrontendMessage {
  const r = new BufferReader(frame.payload, { text: 'strict' });
  let msg: FrontendMessage;
  switch (frame.type) {
    case FRONTEND.Query:
      msg = { type: 'Query', sql: r.cstring() };
      break;
    case FRONTEND.Parse: {
      const name = r.cstring();
      const sql = r.cstring();
      const n = r.int16();
      if (n < 0) throw malformed('malformed Parse: negative parameter type count');
      const paramTypes: number[] = [];
      for (let i = 0; i < n; i++) paramTypes.push(r.uint32());
      msg = { type: 'Parse', name, sql, paramTypes };
      break;
    }
    case FRONTEND.Bind: {
      const portal = r.cstring();
      const statement = r.cstring();
      const paramFormats = readFormats(r, 'Bind parameter');
      const params = readValues(r, 'Bind');
      // PostgreSQL: the format count is 0 (all text), 1 (applies to all) or equal to the value count.
      if (paramFormats.length > 1 && paramFormats.length !== params.length) {
        throw malformed(`malformed Bind: ${paramFormats.length} parameter formats for ${params.length} parameters`);
      }
      const resultFormats = readFormats(r, 'Bind result');
      msg = { type: 'Bind', portal, statement, paramFormats, params, resultFormats };
      break;
    }
    case FRONTEND.Describe:
    case FRONTEND.Close: {
      const kind = r.byte();
      if (kind !== 0x53 && kind !== 0x50) throw malformed(`malformed ${frame.type === FRONTEND.Close ? 'Close' : 'Describe'}: kind 0x${kind.toString(16)} is neither 'S' nor 'P'`);
      const name = r.cstring();
      msg = { type: frame.type === FRONTEND.Close ? 'Close' : 'Describe', kind: kind === 0x53 ? 'S' : 'P', name };
      break;
    }
    case FRONTEND.Execute: {
      const portal = r.cstring();
      const maxRows = r.int32();
      // Negative is treated as 0 ("no limit") by PostgreSQL; keep the value, the caller decides.
      msg = { type: 'Execute', portal, maxRows };
      break;
    }
    case FRONTEND.Sync:
      msg = { type: 'Sync' };
      break;
    case FRONTEND.Flush:
      msg = { type: 'Flush' };
      break;
    case FRONTEND.CopyData:
      msg = { type: 'CopyData', data: r.rest() };
      break;
    case FRONTEND.CopyDone:
      msg = { type: 'CopyDone' };
      break;
    case FRONTEND.CopyFail:
      msg = { type: 'CopyFail', message: r.cstring() };
      break;
    case FRONTEND.FunctionCall: {
      const functionOid = r.uint32();
      const argFormats = readFormats(r, 'FunctionCall argument');
      const args = readValues(r, 'FunctionCall');
      const resultFormat = r.int16();
      msg = { type: 'FunctionCall', functionOid, argFormats, args, resultFormat };
      break;
    }
    case FRONTEND.Terminate:
      msg = { type: 'Terminate' };
      break;
    case FRONTEND.PasswordMessage:
      msg = { type: 'PasswordMessage', data: r.rest() };
      break;
    default:
      throw malformed(`invalid frontend message type 0x${frame.type.toString(16)}`);
  }
  r.end(msg.type);
  return msg;
}

function readFormats(r: BufferReader, what: string): number[] {
  const n = r.int16();
  if (n < 0) throw malformed(`malformed ${what} format count ${n}`);
  const formats: number[] = [];
  for (let i = 0; i < n; i++) {
    const f = r.int16();
    if (f !== 0 && f !== 1) throw malformed(`malformed ${what} format code ${f}`);
    formats.push(f);
  }
  return formats;
}

function readValues(r: BufferReader, what: string): (Buffer | null)[] {
  const n = r.int16();
  if (n < 0) throw malformed(`malformed ${what}: negative value count`);
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    if (len === -1) values.push(null);
    else if (len < 0) throw malformed(`malformed ${what}: value length ${len}`);
    else values.push(r.bytes(len));
  }
  return values;
}

/** Decodes an untyped startup-phase packet (a Frame with type STARTUP_PACKET_TYPE). */
export function decodeStartupPacket(frame: Frame): StartupPacket {
  if (frame.type !== STARTUP_PACKET_TYPE) throw malformed(`expected a startup packet, got type 0x${frame.type.toString(16)}`);
  const r = new BufferReader(frame.payload, { text: 'strict' });
  const code = r.int32();
  switch (code) {
    case PROTOCOL_CODE.SSLRequest:
      r.end('SSLRequest');
      return { type: 'SSLRequest' };
    case PROTOCOL_CODE.GSSENCRequest:
      r.end('GSSENCRequest');
      return { type: 'GSSENCRequest' };
    case PROTOCOL_CODE.CancelRequest: {
      const pid = r.int32();
      // 3.0: 4-byte secret; 3.2: variable, at most 256 bytes.
      const secret = r.rest();
      if (secret.length < 4 || secret.length > MAX_CANCEL_KEY_LENGTH) throw malformed(`malformed CancelRequest: secret of ${secret.length} bytes`);
      return { type: 'CancelRequest', pid, secret };
    }
    default:
      return decodeStartupMessage(r, code);
  }
}

function decodeStartupMessage(r: BufferReader, protocolVersion: number): StartupPacket {
  if (protocolVersion >>> 16 !== 3) throw malformed(`unsupported frontend protocol ${protocolVersion >>> 16}.${protocolVersion & 0xffff}`);
  const parameters = new Map<string, string>();
  // name\0value\0 ... \0 — the list must end with an empty name (a lone NUL).
  for (;;) {
    if (r.remaining === 0) throw malformed('malformed StartupMessage: parameter list is not NUL-terminated');
    const name = r.cstring();
    if (name === '') break;
    const value = r.cstring();
    if (parameters.has(name)) throw malformed(`malformed StartupMessage: duplicate parameter "${name}"`);
    if (parameters.size >= MAX_STARTUP_PARAMETERS) throw malformed(`malformed StartupMessage: more than ${MAX_STARTUP_PARAMETERS} parameters`);
    parameters.set(name, value);
  }
  r.end('StartupMessage');
  const user = parameters.get('user');
  if (user === undefined || user === '') throw malformed('malformed StartupMessage: no PostgreSQL user name specified');
  return { type: 'StartupMessage', protocolVersion, parameters };
}

// PasswordMessage interpretations: the 'p' payload means different things by authentication state.

/** A cleartext password (or a JWT sent as one): a single C string. */
export function decodeCleartextPassword(data: Buffer): string {
  const r = new BufferReader(data, { text: 'strict' });
  const password = r.cstring();
  r.end('PasswordMessage');
  return password;
}

/** SASLInitialResponse: mechanism name, Int32 length (-1 = none) and the initial response. */
export function decodeSASLInitialResponse(data: Buffer): { readonly mechanism: string; readonly response: Buffer | null } {
  const r = new BufferReader(data, { text: 'strict' });
  const mechanism = r.cstring();
  const len = r.int32();
  let response: Buffer | null = null;
  if (len !== -1) {
    if (len < 0) throw malformed(`malformed SASLInitialResponse: length ${len}`);
    response = r.bytes(len);
  }
  r.end('SASLInitialResponse');
  return { mechanism, response };
}
