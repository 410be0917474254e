// What the proxy sends upstream in the client's role.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import { CustosError } from '../../../../lib/errors.ts';
import { BufferWriter } from './buffer-writer.ts';
import { CODEC_ERROR, FRONTEND, PROTOCOL_CODE } from './constants.ts';

/**
 * StartupMessage: Int32 length, Int32 protocol (3.0 by default), name/value C strings, a final NUL.
 * `parameters` must include `user`.
 */
export function startupMessage(parameters: ReadonlyMap<string, string> | Readonly<Record<string, string>>, protocolVersion: number = PROTOCOL_CODE.V3_0): Buffer {
  const entries: (readonly [string, string])[] = isMap(parameters) ? [...parameters.entries()] : Object.entries(parameters);
  const w = new BufferWriter(null, 128).int32(protocolVersion);
  for (const [k, v] of entries) {
    if (k === '') throw new CustosError(CODEC_ERROR.Encode, 'startup parameter name must not be empty');
    w.cstring(k).cstring(v);
  }
  return w.byte(0).finish();
}

function isMap(p: ReadonlyMap<string, string> | Readonly<Record<string, string>>): p is ReadonlyMap<string, string> {
  return p instanceof Map;
}

export const sslRequest = (): Buffer => new BufferWriter(null, 8).int32(PROTOCOL_CODE.SSLRequest).finish();

export const gssEncRequest = (): Buffer => new BufferWriter(null, 8).int32(PROTOCOL_CODE.GSSENCRequest).finish();

/** `secret` is 4 bytes for protocol 3.0. */
export const cancelRequest = (pid: number, secret: Uint8Array): Buffer =>
  new BufferWriter(null, 12 + secret.length).int32(PROTOCOL_CODE.CancelRequest).int32(pid).bytes(secret).finish();

/** PasswordMessage with a cleartext password or an `md5…` hash (see scram-client.ts md5PasswordHash). */
export const passwordMessage = (password: string): Buffer => new BufferWriter(FRONTEND.PasswordMessage).cstring(password).finish();

/** SASLInitialResponse: mechanism, Int32 length of the initial response (-1 = none), the response. */
export function saslInitialResponse(mechanism: string, response: Uint8Array | null): Buffer {
  const w = new BufferWriter(FRONTEND.PasswordMessage).cstring(mechanism);
  if (response === null) return w.int32(-1).finish();
  return w.int32(response.length).bytes(response).finish();
}

/** SASLResponse: the mechanism-specific data, no length prefix beyond the message's own. */
export const saslResponse = (data: Uint8Array): Buffer => new BufferWriter(FRONTEND.PasswordMessage, 5 + data.length).bytes(data).finish();

export const query = (sql: string): Buffer => new BufferWriter(FRONTEND.Query, 6 + sql.length).cstring(sql).finish();

export function parse(name: string, sql: string, paramTypes: readonly number[] = []): Buffer {
  const w = new BufferWriter(FRONTEND.Parse, 16 + sql.length).cstring(name).cstring(sql).int16(checkCount(paramTypes.length));
  for (const oid of paramTypes) w.int32(oid);
  return w.finish();
}

export interface BindOptions {
  readonly portal?: string;
  readonly statement?: string;
  readonly paramFormats?: readonly number[];
  readonly params?: readonly (Uint8Array | null)[];
  readonly resultFormats?: readonly number[];
}

export function bind(o: BindOptions = {}): Buffer {
  const params = o.params ?? [];
  const w = new BufferWriter(FRONTEND.Bind, 64).cstring(o.portal ?? '').cstring(o.statement ?? '');
  writeFormats(w, o.paramFormats ?? []);
  w.int16(checkCount(params.length));
  for (const p of params) {
    if (p === null) w.int32(-1);
    else w.int32(p.length).bytes(p);
  }
  writeFormats(w, o.resultFormats ?? []);
  return w.finish();
}

function writeFormats(w: BufferWriter, formats: readonly number[]): void {
  w.int16(checkCount(formats.length));
  for (const f of formats) w.int16(f);
}

function checkCount(n: number): number {
  if (n > 0x7fff) throw new CustosError(CODEC_ERROR.Encode, `too many items for an Int16 count: ${n}`);
  return n;
}

export const describe = (kind: 'S' | 'P', name = ''): Buffer => new BufferWriter(FRONTEND.Describe).byte(kind.charCodeAt(0)).cstring(name).finish();

export const execute = (portal = '', maxRows = 0): Buffer => new BufferWriter(FRONTEND.Execute).cstring(portal).int32(maxRows).finish();

export const close = (kind: 'S' | 'P', name = ''): Buffer => new BufferWriter(FRONTEND.Close).byte(kind.charCodeAt(0)).cstring(name).finish();

const SYNC = Buffer.from([FRONTEND.Sync, 0, 0, 0, 4]);
const FLUSH = Buffer.from([FRONTEND.Flush, 0, 0, 0, 4]);
const TERMINATE = Buffer.from([FRONTEND.Terminate, 0, 0, 0, 4]);
const COPY_DONE = Buffer.from([FRONTEND.CopyDone, 0, 0, 0, 4]);

/** Shared constant buffers: callers must not mutate them. */
export const sync = (): Buffer => SYNC;
export const flush = (): Buffer => FLUSH;
export const terminate = (): Buffer => TERMINATE;
export const copyDone = (): Buffer => COPY_DONE;

export const copyData = (data: Uint8Array): Buffer => new BufferWriter(FRONTEND.CopyData, 5 + data.length).bytes(data).finish();

export const copyFail = (message: string): Buffer => new BufferWriter(FRONTEND.CopyFail).cstring(message).finish();

export interface FunctionCallOptions {
  readonly functionOid: number;
  readonly argFormats?: readonly number[];
  readonly args?: readonly (Uint8Array | null)[];
  readonly resultFormat?: number;
}

/** FunctionCall: Custos never sends it upstream; here for tests of the refusal path. */
export function functionCall(o: FunctionCallOptions): Buffer {
  const args = o.args ?? [];
  const w = new BufferWriter(FRONTEND.FunctionCall).int32(o.functionOid);
  writeFormats(w, o.argFormats ?? []);
  w.int16(checkCount(args.length));
  for (const a of args) {
    if (a === null) w.int32(-1);
    else w.int32(a.length).bytes(a);
  }
  return w.int16(o.resultFormat ?? 0).finish();
}
