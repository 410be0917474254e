// What the proxy sends to the client in the server's role.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import { CustosError } from '../../../../lib/errors.ts';
import { BufferWriter } from './buffer-writer.ts';
import { AUTH_CODE, BACKEND, CODEC_ERROR, SSL_RESPONSE, type TransactionStatus } from './constants.ts';

export const authenticationOk = (): Buffer => new BufferWriter(BACKEND.Authentication, 9).int32(AUTH_CODE.Ok).finish();

export const authenticationCleartextPassword = (): Buffer =>
  new BufferWriter(BACKEND.Authentication, 9).int32(AUTH_CODE.CleartextPassword).finish();

export const parameterStatus = (name: string, value: string): Buffer =>
  new BufferWriter(BACKEND.ParameterStatus).cstring(name).cstring(value).finish();

/** `secret` is 4 bytes in protocol 3.0 (up to 256 in 3.2). */
export function backendKeyData(pid: number, secret: Uint8Array): Buffer {
  if (secret.length < 4 || secret.length > 256) throw new CustosError(CODEC_ERROR.Encode, `cancel secret must be 4..256 bytes, got ${secret.length}`);
  return new BufferWriter(BACKEND.BackendKeyData, 9 + secret.length).int32(pid).bytes(secret).finish();
}

const READY: Record<TransactionStatus, Buffer> = {
  I: Buffer.from([BACKEND.ReadyForQuery, 0, 0, 0, 5, 0x49]),
  T: Buffer.from([BACKEND.ReadyForQuery, 0, 0, 0, 5, 0x54]),
  E: Buffer.from([BACKEND.ReadyForQuery, 0, 0, 0, 5, 0x45]),
};

/** A shared constant buffer per status: callers must not mutate it. */
export const readyForQuery = (status: TransactionStatus): Buffer => READY[status];

export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';

export interface ErrorFields {
  readonly severity: Severity;
  /** SQLSTATE, five characters. */
  readonly code: string;
  readonly message: string;
  readonly detail?: string;
  readonly hint?: string;
  /** Any other field by its one-letter code (e.g. `W` context, `n` constraint). */
  readonly extra?: Readonly<Record<string, string>>;
}

function errorOrNotice(type: number, f: ErrorFields): Buffer {
  if (!/^[0-9A-Z]{5}$/.test(f.code)) throw new CustosError(CODEC_ERROR.Encode, `invalid SQLSTATE "${f.code}"`);
  const w = new BufferWriter(type, 64 + f.message.length);
  // S is localized in real servers; V (never localized) since 9.6. We send both identical.
  w.byte(0x53).cstring(f.severity).byte(0x56).cstring(f.severity).byte(0x43).cstring(f.code).byte(0x4d).cstring(f.message);
  if (f.detail !== undefined) w.byte(0x44).cstring(f.detail);
  if (f.hint !== undefined) w.byte(0x48).cstring(f.hint);
  for (const [k, v] of Object.entries(f.extra ?? {})) {
    if (!/^[\x21-\x7e]$/.test(k) || 'SVCMDH'.includes(k)) throw new CustosError(CODEC_ERROR.Encode, `invalid extra error field code "${k}"`);
    w.byte(k.charCodeAt(0)).cstring(v);
  }
  return w.byte(0).finish();
}

export const errorResponse = (fields: ErrorFields): Buffer => errorOrNotice(BACKEND.ErrorResponse, fields);
export const noticeResponse = (fields: ErrorFields): Buffer => errorOrNotice(BACKEND.NoticeResponse, fields);

export const commandComplete = (tag: string): Buffer => new BufferWriter(BACKEND.CommandComplete).cstring(tag).finish();

export const emptyQueryResponse = (): Buffer => Buffer.from([BACKEND.EmptyQueryResponse, 0, 0, 0, 4]);

/** Newest minor version the proxy supports plus the `_pq_.` options it did not recognise. */
export function negotiateProtocolVersion(newestMinor: number, unrecognizedOptions: readonly string[]): Buffer {
  const w = new BufferWriter(BACKEND.NegotiateProtocolVersion).int32(newestMinor).int32(unrecognizedOptions.length);
  for (const o of unrecognizedOptions) w.cstring(o);
  return w.finish();
}

/** The single-byte answers to SSLRequest / GSSENCRequest. */
export const sslAccept = (): Buffer => Buffer.from([SSL_RESPONSE.Accept]);
export const sslRefuse = (): Buffer => Buffer.from([SSL_RESPONSE.Refuse]);
