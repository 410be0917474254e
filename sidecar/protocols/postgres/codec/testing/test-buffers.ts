// Frame builders for tests (after pg-protocol's testing/test-buffers.ts): backend messages the
// proxy only reads, and raw/hand-broken frames. Frontend messages are built with
// frontend-serializer.ts, server answers the proxy writes with backend-serializer.ts.
import { BufferWriter } from '../buffer-writer.ts';
import { AUTH_CODE, BACKEND } from '../constants.ts';
import type { FieldDescription } from '../backend-messages.ts';

/** Any typed message: type byte (char or number) + length + body, with no validation. */
export function typed(type: string | number, body: Uint8Array = Buffer.alloc(0)): Buffer {
  const t = typeof type === 'number' ? type : type.charCodeAt(0);
  const out = Buffer.alloc(5 + body.length);
  out[0] = t;
  out.writeInt32BE(4 + body.length, 1);
  out.set(body, 5);
  return out;
}

/** A typed header that declares `length` regardless of what follows (for bounds tests). */
export function header(type: string, length: number): Buffer {
  const out = Buffer.alloc(5);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(length, 1);
  return out;
}

/** An untyped startup-phase packet with the given code and body. */
export function startupPacket(code: number, body: Uint8Array = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(8 + body.length, 0);
  out.writeInt32BE(code, 4);
  out.set(body, 8);
  return out;
}

/** A NUL-terminated name/value list body for a StartupMessage (`terminate: false` drops the final NUL). */
export function startupParameters(pairs: readonly (readonly [string, string])[], terminate = true): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of pairs) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  if (terminate) parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

const auth = (code: number): BufferWriter => new BufferWriter(BACKEND.Authentication).int32(code);

export const buffers = {
  authenticationOk: (): Buffer => auth(AUTH_CODE.Ok).finish(),
  authenticationCleartextPassword: (): Buffer => auth(AUTH_CODE.CleartextPassword).finish(),
  authenticationMD5Password: (salt: Uint8Array): Buffer => auth(AUTH_CODE.MD5Password).bytes(salt).finish(),
  authenticationSASL: (mechanisms: readonly string[]): Buffer => {
    const w = auth(AUTH_CODE.SASL);
    for (const m of mechanisms) w.cstring(m);
    return w.byte(0).finish();
  },
  authenticationSASLContinue: (data: Uint8Array): Buffer => auth(AUTH_CODE.SASLContinue).bytes(data).finish(),
  authenticationSASLFinal: (data: Uint8Array): Buffer => auth(AUTH_CODE.SASLFinal).bytes(data).finish(),
  authenticationGSS: (): Buffer => auth(AUTH_CODE.GSS).finish(),
  rowDescription: (fields: readonly FieldDescription[]): Buffer => {
    const w = new BufferWriter(BACKEND.RowDescription).int16(fields.length);
    for (const f of fields) {
      w.cstring(f.name).int32(f.tableOid).int16(f.attributeNumber).int32(f.typeOid).int16(f.typeSize).int32(f.typeModifier).int16(f.format);
    }
    return w.finish();
  },
  dataRow: (values: readonly (Uint8Array | null)[]): Buffer => {
    const w = new BufferWriter(BACKEND.DataRow).int16(values.length);
    for (const v of values) {
      if (v === null) w.int32(-1);
      else w.int32(v.length).bytes(v);
    }
    return w.finish();
  },
  parameterDescription: (oids: readonly number[]): Buffer => {
    const w = new BufferWriter(BACKEND.ParameterDescription).int16(oids.length);
    for (const o of oids) w.int32(o);
    return w.finish();
  },
  notification: (pid: number, channel: string, payload: string): Buffer =>
    new BufferWriter(BACKEND.NotificationResponse).int32(pid).cstring(channel).cstring(payload).finish(),
  copyResponse: (type: 'G' | 'H' | 'W', format: number, columnFormats: readonly number[]): Buffer => {
    const w = new BufferWriter(type.charCodeAt(0)).byte(format).int16(columnFormats.length);
    for (const f of columnFormats) w.int16(f);
    return w.finish();
  },
  copyData: (data: Uint8Array): Buffer => typed('d', data),
  copyDone: (): Buffer => typed('c'),
  parseComplete: (): Buffer => typed('1'),
  bindComplete: (): Buffer => typed('2'),
  closeComplete: (): Buffer => typed('3'),
  noData: (): Buffer => typed('n'),
  portalSuspended: (): Buffer => typed('s'),
  functionCallResponse: (value: Uint8Array | null): Buffer => {
    const w = new BufferWriter(BACKEND.FunctionCallResponse);
    if (value === null) return w.int32(-1).finish();
    return w.int32(value.length).bytes(value).finish();
  },
  /** ErrorResponse / NoticeResponse with fields in the given order. */
  errorOrNotice: (type: 'E' | 'N', fields: readonly (readonly [string, string])[]): Buffer => {
    const w = new BufferWriter(type.charCodeAt(0));
    for (const [k, v] of fields) w.byte(k.charCodeAt(0)).cstring(v);
    return w.byte(0).finish();
  },
} as const;
