// Decoders for what the proxy reads from the server. The proxy forwards most messages as raw bytes
// and decodes only the ones it must understand, on demand. Total like the frontend decoders: any
// bytes yield a message or a CustosError (ERR_PG_MALFORMED). Text is decoded leniently (invalid
// UTF-8 becomes U+FFFD): server text is shown or logged, never analysed as policy input.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import { CustosError } from '../../../../lib/errors.ts';
import { BufferReader } from './buffer-reader.ts';
import { AUTH_CODE, BACKEND, CODEC_ERROR, MAX_CANCEL_KEY_LENGTH, type TransactionStatus } from './constants.ts';
import type { Frame } from './framer.ts';

export interface FieldDescription {
  readonly name: string;
  /** 0 when the column is not a plain table column. */
  readonly tableOid: number;
  /** 0 when the column is not a plain table column. */
  readonly attributeNumber: number;
  readonly typeOid: number;
  readonly typeSize: number;
  readonly typeModifier: number;
  /** 0 text, 1 binary. */
  readonly format: number;
}

export type AuthenticationMessage =
  | { readonly type: 'AuthenticationOk' }
  | { readonly type: 'AuthenticationCleartextPassword' }
  | { readonly type: 'AuthenticationMD5Password'; readonly salt: Buffer }
  | { readonly type: 'AuthenticationSASL'; readonly mechanisms: readonly string[] }
  | { readonly type: 'AuthenticationSASLContinue'; readonly data: Buffer }
  | { readonly type: 'AuthenticationSASLFinal'; readonly data: Buffer }
  /** Kerberos, GSS, SSPI and anything newer: Custos does not support them. */
  | { readonly type: 'AuthenticationUnsupported'; readonly code: number };

export type BackendMessage =
  | AuthenticationMessage
  | { readonly type: 'ParameterStatus'; readonly name: string; readonly value: string }
  | { readonly type: 'BackendKeyData'; readonly pid: number; readonly secret: Buffer }
  | { readonly type: 'ReadyForQuery'; readonly status: TransactionStatus }
  | { readonly type: 'ErrorResponse'; readonly fields: ReadonlyMap<string, string> }
  | { readonly type: 'NoticeResponse'; readonly fields: ReadonlyMap<string, string> }
  | { readonly type: 'CommandComplete'; readonly tag: string }
  | { readonly type: 'RowDescription'; readonly fields: readonly FieldDescription[] }
  | { readonly type: 'DataRow'; readonly values: readonly (Buffer | null)[] }
  | { readonly type: 'ParameterDescription'; readonly typeOids: readonly number[] }
  | { readonly type: 'NotificationResponse'; readonly pid: number; readonly channel: string; readonly payload: string }
  | { readonly type: 'ParseComplete' }
  | { readonly type: 'BindComplete' }
  | { readonly type: 'CloseComplete' }
  | { readonly type: 'NoData' }
  | { readonly type: 'PortalSuspended' }
  | { readonly type: 'EmptyQueryResponse' }
  | { readonly type: 'CopyInResponse' | 'CopyOutResponse' | 'CopyBothResponse'; readonly format: number; readonly columnFormats: readonly number[] }
  | { readonly type: 'CopyData'; readonly data: Buffer }
  | { readonly type: 'CopyDone' }
  | { readonly type: 'FunctionCallResponse'; readonly value: Buffer | null }
  | { readonly type: 'NegotiateProtocolVersion'; readonly newestMinor: number; readonly unrecognizedOptions: readonly string[] };

export type BackendMessageType = BackendMessage['type'];

function malformed(message: string): CustosError {
  return new CustosError(CODEC_ERROR.Malformed, message);
}

export function decodeBackendMessage(frame: Frame): BackendMessage {
  const r = new BufferReader(frame.payload, { text: 'lenient' });
  let msg: BackendMessage;
  switch (frame.type) {
    case BACKEND.Authentication:
      msg = decodeAuthentication(r);
      break;
    case BACKEND.ParameterStatus:
      msg = { type: 'ParameterStatus', name: r.cstring(), value: r.cstring() };
      break;
    case BACKEND.BackendKeyData: {
      const pid = r.int32();
      const secret = r.rest();
      if (secret.length < 4 || secret.length > MAX_CANCEL_KEY_LENGTH) throw malformed(`malformed BackendKeyData: secret of ${secret.length} bytes`);
      msg = { type: 'BackendKeyData', pid, secret };
      break;
    }
    case BACKEND.ReadyForQuery: {
      const s = r.byte();
      if (s !== 0x49 && s !== 0x54 && s !== 0x45) throw malformed(`malformed ReadyForQuery: status 0x${s.toString(16)}`);
      msg = { type: 'ReadyForQuery', status: s === 0x49 ? 'I' : s === 0x54 ? 'T' : 'E' };
      break;
    }
    case BACKEND.ErrorResponse:
      msg = { type: 'ErrorResponse', fields: readErrorFields(r) };
      break;
    case BACKEND.NoticeResponse:
      msg = { type: 'NoticeResponse', fields: readErrorFields(r) };
      break;
    case BACKEND.CommandComplete:
      msg = { type: 'CommandComplete', tag: r.cstring() };
      break;
    case BACKEND.RowDescription: {
      const n = r.int16();
      if (n < 0) throw malformed('malformed RowDescription: negative field count');
      const fields: FieldDescription[] = [];
      for (let i = 0; i < n; i++) {
        fields.push({
          name: r.cstring(),
          tableOid: r.uint32(),
          attributeNumber: r.int16(),
          typeOid: r.uint32(),
          typeSize: r.int16(),
          typeModifier: r.int32(),
          format: r.int16(),
        });
      }
      msg = { type: 'RowDescription', fields };
      break;
    }
    case BACKEND.DataRow: {
      const n = r.int16();
      if (n < 0) throw malformed('malformed DataRow: negative column count');
      const values: (Buffer | null)[] = [];
      for (let i = 0; i < n; i++) values.push(readValue(r, 'DataRow'));
      msg = { type: 'DataRow', values };
      break;
    }
    case BACKEND.ParameterDescription: {
      const n = r.int16();
      if (n < 0) throw malformed('malformed ParameterDescription: negative count');
      const typeOids: number[] = [];
      for (let i = 0; i < n; i++) typeOids.push(r.uint32());
      msg = { type: 'ParameterDescription', typeOids };
      break;
    }
    case BACKEND.NotificationResponse:
      msg = { type: 'NotificationResponse', pid: r.int32(), channel: r.cstring(), payload: r.cstring() };
      break;
    case BACKEND.ParseComplete:
      msg = { type: 'ParseComplete' };
      break;
    case BACKEND.BindComplete:
      msg = { type: 'BindComplete' };
      break;
    case BACKEND.CloseComplete:
      msg = { type: 'CloseComplete' };
      break;
    case BACKEND.NoData:
      msg = { type: 'NoData' };
      break;
    case BACKEND.PortalSuspended:
      msg = { type: 'PortalSuspended' };
      break;
    case BACKEND.EmptyQueryResponse:
      msg = { type: 'EmptyQueryResponse' };
      break;
    case BACKEND.CopyInResponse:
    case BACKEND.CopyOutResponse:
    case BACKEND.CopyBothResponse: {
      const type = frame.type === BACKEND.CopyInResponse ? 'CopyInResponse' : frame.type === BACKEND.CopyOutResponse ? 'CopyOutResponse' : 'CopyBothResponse';
      const format = r.byte();
      if (format > 1) throw malformed(`malformed ${type}: format ${format}`);
      const n = r.int16();
      if (n < 0) throw malformed(`malformed ${type}: negative column count`);
      const columnFormats: number[] = [];
      for (let i = 0; i < n; i++) columnFormats.push(r.int16());
      msg = { type, format, columnFormats };
      break;
    }
    case BACKEND.CopyData:
      msg = { type: 'CopyData', data: r.rest() };
      break;
    case BACKEND.CopyDone:
      msg = { type: 'CopyDone' };
      break;
    case BACKEND.FunctionCallResponse:
      msg = { type: 'FunctionCallResponse', value: readValue(r, 'FunctionCallResponse') };
      break;
    case BACKEND.NegotiateProtocolVersion: {
      const newestMinor = r.int32();
      const n = r.int32();
      if (n < 0 || n > r.remaining) throw malformed(`malformed NegotiateProtocolVersion: ${n} options`);
      const unrecognizedOptions: string[] = [];
      for (let i = 0; i < n; i++) unrecognizedOptions.push(r.cstring());
      msg = { type: 'NegotiateProtocolVersion', newestMinor, unrecognizedOptions };
      break;
    }
    default:
      throw malformed(`invalid backend message type 0x${frame.type.toString(16)}`);
  }
  r.end(msg.type);
  return msg;
}

function decodeAuthentication(r: BufferReader): AuthenticationMessage {
  const code = r.int32();
  switch (code) {
    case AUTH_CODE.Ok:
      return { type: 'AuthenticationOk' };
    case AUTH_CODE.CleartextPassword:
      return { type: 'AuthenticationCleartextPassword' };
    case AUTH_CODE.MD5Password:
      return { type: 'AuthenticationMD5Password', salt: r.bytes(4) };
    case AUTH_CODE.SASL: {
      const mechanisms: string[] = [];
      for (;;) {
        const m = r.cstring();
        if (m === '') break;
        mechanisms.push(m);
      }
      return { type: 'AuthenticationSASL', mechanisms };
    }
    case AUTH_CODE.SASLContinue:
      return { type: 'AuthenticationSASLContinue', data: r.rest() };
    case AUTH_CODE.SASLFinal:
      return { type: 'AuthenticationSASLFinal', data: r.rest() };
    default:
      // GSS/SSPI carry data we do not interpret; consume it so the end check passes.
      r.rest();
      return { type: 'AuthenticationUnsupported', code };
  }
}

function readErrorFields(r: BufferReader): Map<string, string> {
  const fields = new Map<string, string>();
  for (;;) {
    const code = r.byte();
    if (code === 0) break;
    // Later duplicates win, as in libpq.
    fields.set(String.fromCharCode(code), r.cstring());
  }
  return fields;
}

function readValue(r: BufferReader, what: string): Buffer | null {
  const len = r.int32();
  if (len === -1) return null;
  if (len < 0) throw malformed(`malformed ${what}: value length ${len}`);
  return r.bytes(len);
}

/** Convenience accessors for ErrorResponse / NoticeResponse fields. */
export function errorFieldsSummary(fields: ReadonlyMap<string, string>): { severity: string; sqlstate: string; message: string } {
  return {
    severity: fields.get('V') ?? fields.get('S') ?? 'ERROR',
    sqlstate: fields.get('C') ?? '',
    message: fields.get('M') ?? '',
  };
}
