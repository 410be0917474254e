// Per-issuer JWKS holder with a bounded serve-stale grace (reference/identity-and-audit.md §2.3).
//
// Why not jose's createRemoteJWKSet: after `cacheMaxAge` its next verification reloads on the
// request path and, if that reload fails, verification fails (no stale-if-error), and it does not
// cap the body size. Here the holder downloads (or re-reads) the JWKS itself, in the background,
// and verification runs against `createLocalJWKSet(current)`, swapped atomically on success.
// The only network I/O a request can cause is the unknown-`kid` refresh: one coalesced refresh
// per cooldown, awaited at most `unknownKidWaitMs`.
//
// | state  | age of last good set          | known kid | unknown kid                        |
// | fresh  | < cacheMaxAge                 | verify    | one coalesced refresh, then verify |
// | grace  | < cacheMaxAge + grace         | verify    | reject                             |
// | closed | ≥ cacheMaxAge + grace / never | reject    | reject                             |
import { readFile as fsReadFile, stat as fsStat } from 'node:fs/promises';
import { createLocalJWKSet, errors, type FlattenedJWSInput, type JSONWebKeySet, type JWSHeaderParameters, type CryptoKey } from 'jose';
import { CustosError } from '../../lib/errors.ts';

export const JWKS_DEFAULTS = {
  cacheMaxAgeMs: 600_000,
  graceMs: 3_600_000,
  cooldownMs: 30_000,
  timeoutMs: 2_000,
  unknownKidWaitMs: 2_000,
  maxBytes: 65_536,
  maxKeys: 100,
} as const;

/** Thrown by `getKey` when the holder has no usable key set (never loaded, or past grace). */
export const ERR_JWKS_UNAVAILABLE = 'ERR_JWKS_UNAVAILABLE';

export type IssuerKeysState = 'fresh' | 'grace' | 'closed';

export type JwksSource =
  | { readonly kind: 'url'; readonly url: string }
  | { readonly kind: 'file'; readonly path: string };

/** `updated`/`unchanged` are successes; the rest name why a refresh failed (metric label). */
export type JwksRefreshResult =
  | 'updated' | 'unchanged'
  | 'timeout' | 'redirect' | 'http-status' | 'content-type' | 'too-large' | 'invalid-json'
  | 'invalid-jwks' | 'network' | 'unreadable';

export type JwksRefreshTrigger = 'initial' | 'background' | 'unknown-kid' | 'manual';

export interface JwksRefreshEvent {
  readonly issuer: string;
  readonly trigger: JwksRefreshTrigger;
  readonly result: JwksRefreshResult;
  readonly ok: boolean;
  readonly durationMs: number;
  /** Short, safe explanation (never response bodies). */
  readonly detail?: string;
  readonly keyCount?: number;
}

export interface TimerApi {
  set(callback: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface FileApi {
  stat(path: string): Promise<{ mtimeMs: number; size: number }>;
  readFile(path: string): Promise<Uint8Array>;
}

export interface IssuerKeysOptions {
  readonly issuer: string;
  readonly source: JwksSource;
  readonly cacheMaxAgeMs?: number;
  readonly graceMs?: number;
  readonly cooldownMs?: number;
  readonly timeoutMs?: number;
  readonly unknownKidWaitMs?: number;
  readonly maxBytes?: number;
  /** Milliseconds since the epoch. */
  readonly clock?: () => number;
  readonly fetch?: typeof fetch;
  readonly files?: FileApi;
  readonly timers?: TimerApi;
  /** In [0, 1); jitter for the background schedule. */
  readonly random?: () => number;
  readonly onRefresh?: (event: JwksRefreshEvent) => void;
}

type JwksValidation = { readonly ok: true; readonly jwks: JSONWebKeySet } | { readonly ok: false; readonly detail: string };

// RFC 7518 §6.2.2, §6.3.2, §6.4 and RFC 8037 / draft AKP private members: a published set with
// any of them is a leaked private key or a misconfiguration; the whole document is refused.
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const;
const MIN_RSA_BITS = 2048;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === null || prototype === Object.prototype;
}

function rsaModulusBits(n: string): number {
  const bytes = Buffer.from(n, 'base64url');
  let start = 0;
  while (start < bytes.length && bytes[start] === 0) start += 1;
  if (start === bytes.length) return 0;
  return (bytes.length - start - 1) * 8 + (32 - Math.clz32(bytes[start] ?? 0));
}

/**
 * Pure check of a parsed JWKS document: an object with a non-empty `keys` array of public,
 * asymmetric keys. jose would refuse some of these only at verification time; refusing the
 * document keeps the last good set in place and makes the failure visible as a refresh result.
 */
export function validateJwks(document: unknown, maxKeys: number = JWKS_DEFAULTS.maxKeys): JwksValidation {
  if (!isPlainObject(document)) return { ok: false, detail: 'not a JSON object' };
  const keys = document['keys'];
  if (!Array.isArray(keys)) return { ok: false, detail: '"keys" is not an array' };
  if (keys.length === 0) return { ok: false, detail: '"keys" is empty' };
  if (keys.length > maxKeys) return { ok: false, detail: `more than ${maxKeys} keys` };
  for (const [index, key] of keys.entries()) {
    if (!isPlainObject(key)) return { ok: false, detail: `keys[${index}] is not an object` };
    const kty = key['kty'];
    if (typeof kty !== 'string') return { ok: false, detail: `keys[${index}] has no kty` };
    if (kty === 'oct') return { ok: false, detail: `keys[${index}] is a symmetric (oct) key` };
    for (const member of PRIVATE_MEMBERS) {
      if (Object.hasOwn(key, member)) return { ok: false, detail: `keys[${index}] has private member "${member}"` };
    }
    if (kty === 'RSA') {
      const n = key['n'];
      if (typeof n !== 'string' || !/^[A-Za-z0-9_-]+$/.test(n) || typeof key['e'] !== 'string') {
        return { ok: false, detail: `keys[${index}] is a malformed RSA key` };
      }
      const bits = rsaModulusBits(n);
      if (bits < MIN_RSA_BITS) return { ok: false, detail: `keys[${index}] is a ${bits}-bit RSA key` };
    }
  }
  try {
    createLocalJWKSet(document as unknown as JSONWebKeySet);
  } catch {
    return { ok: false, detail: 'rejected by jose' };
  }
  return { ok: true, jwks: document as unknown as JSONWebKeySet };
}

/** Background refresh delay: cacheMaxAge/2 ±10 % while healthy, the cooldown while failing. */
export function nextRefreshDelayMs(cacheMaxAgeMs: number, cooldownMs: number, lastOk: boolean, random: number): number {
  const base = lastOk ? cacheMaxAgeMs / 2 : Math.min(cooldownMs, cacheMaxAgeMs / 2);
  return Math.max(1, Math.round(base * (0.9 + 0.2 * random)));
}

class RefreshFailure extends Error {
  readonly result: JwksRefreshResult;
  constructor(result: JwksRefreshResult, detail: string) {
    super(detail);
    this.result = result;
  }
}

const DEFAULT_TIMERS: TimerApi = {
  set(callback, ms) {
    const handle = setTimeout(callback, ms);
    handle.unref();
    return handle;
  },
  clear(handle) { clearTimeout(handle as ReturnType<typeof setTimeout>); },
};

const DEFAULT_FILES: FileApi = { stat: fsStat, readFile: fsReadFile };

const JSON_MEDIA_TYPE = /^application\/(?:[a-z0-9.+-]+\+)?json$/;

type LocalSet = ReturnType<typeof createLocalJWKSet>;

export class IssuerKeys {
  readonly issuer: string;
  readonly source: JwksSource;
  readonly #cacheMaxAgeMs: number;
  readonly #graceMs: number;
  readonly #cooldownMs: number;
  readonly #timeoutMs: number;
  readonly #unknownKidWaitMs: number;
  readonly #maxBytes: number;
  readonly #clock: () => number;
  readonly #fetch: typeof fetch;
  readonly #files: FileApi;
  readonly #timers: TimerApi;
  readonly #random: () => number;
  readonly #onRefresh: ((event: JwksRefreshEvent) => void) | undefined;

  #set: LocalSet | undefined;
  #jwks: JSONWebKeySet | undefined;
  #lastSuccessAt: number | undefined;
  #lastBody: Buffer | undefined;
  #lastFileStamp: string | undefined;
  #inflight: Promise<JwksRefreshResult> | undefined;
  #lastUnknownKidRefreshAt: number | undefined;
  #timer: unknown;
  #stopped = false;

  constructor(options: IssuerKeysOptions) {
    this.issuer = options.issuer;
    this.source = options.source;
    this.#cacheMaxAgeMs = options.cacheMaxAgeMs ?? JWKS_DEFAULTS.cacheMaxAgeMs;
    this.#graceMs = options.graceMs ?? JWKS_DEFAULTS.graceMs;
    this.#cooldownMs = options.cooldownMs ?? JWKS_DEFAULTS.cooldownMs;
    this.#timeoutMs = options.timeoutMs ?? JWKS_DEFAULTS.timeoutMs;
    this.#unknownKidWaitMs = options.unknownKidWaitMs ?? JWKS_DEFAULTS.unknownKidWaitMs;
    this.#maxBytes = options.maxBytes ?? JWKS_DEFAULTS.maxBytes;
    this.#clock = options.clock ?? Date.now;
    this.#fetch = options.fetch ?? fetch;
    this.#files = options.files ?? DEFAULT_FILES;
    this.#timers = options.timers ?? DEFAULT_TIMERS;
    this.#random = options.random ?? Math.random;
    this.#onRefresh = options.onRefresh;
    if (options.source.kind === 'url') {
      const url = new URL(options.source.url);
      const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
      if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
        throw new CustosError('ERR_CONFIG_INVALID', `JWKS URL for issuer ${this.issuer} must be https (or loopback http)`);
      }
    }
  }

  /** True once a key set has been loaded (it may since have gone stale: see `state`). */
  get ready(): boolean {
    return this.#set !== undefined;
  }

  get state(): IssuerKeysState {
    const age = this.#ageMs();
    if (age === undefined) return 'closed';
    if (age < this.#cacheMaxAgeMs) return 'fresh';
    if (age < this.#cacheMaxAgeMs + this.#graceMs) return 'grace';
    return 'closed';
  }

  /** Seconds since the last successful refresh; undefined before the first. */
  get ageSeconds(): number | undefined {
    const age = this.#ageMs();
    return age === undefined ? undefined : age / 1000;
  }

  /** A copy of the current key set (public keys only). */
  keys(): JSONWebKeySet | undefined {
    return this.#jwks === undefined ? undefined : structuredClone(this.#jwks);
  }

  /** Loads the keys once, then keeps refreshing in the background until `stop()`. */
  async start(): Promise<JwksRefreshResult> {
    this.#stopped = false;
    const result = await this.refresh('initial');
    this.#schedule(isSuccess(result));
    return result;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#timers.clear(this.#timer);
    this.#timer = undefined;
  }

  /** Refreshes now; concurrent calls share one request. Never rejects. */
  refresh(trigger: JwksRefreshTrigger = 'manual'): Promise<JwksRefreshResult> {
    this.#inflight ??= this.#refreshOnce(trigger).finally(() => { this.#inflight = undefined; });
    return this.#inflight;
  }

  /**
   * jose key resolver (`JWTVerifyGetKey`). Nothing in the header is authenticated yet: `kid` and
   * `alg` only select among configured keys, never a location (no `jku`/`x5u`/`jwk`).
   */
  readonly getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> => {
    const state = this.state;
    const set = this.#set;
    if (set === undefined || state === 'closed') {
      throw new CustosError(ERR_JWKS_UNAVAILABLE, `no current keys for issuer ${this.issuer}`);
    }
    try {
      return await set(header, token);
    } catch (error: unknown) {
      if (!(error instanceof errors.JWKSNoMatchingKey) || state !== 'fresh') throw error;
      const next = await this.#refreshForUnknownKid(set);
      if (next === undefined) throw error;
      return next(header, token);
    }
  };

  #ageMs(): number | undefined {
    return this.#lastSuccessAt === undefined ? undefined : Math.max(0, this.#clock() - this.#lastSuccessAt);
  }

  /** Returns the new set if a refresh installed one within the wait bound. */
  async #refreshForUnknownKid(before: LocalSet): Promise<LocalSet | undefined> {
    let pending = this.#inflight;
    if (pending === undefined) {
      const now = this.#clock();
      if (this.#lastUnknownKidRefreshAt !== undefined && now - this.#lastUnknownKidRefreshAt < this.#cooldownMs) return undefined;
      this.#lastUnknownKidRefreshAt = now;
      pending = this.refresh('unknown-kid');
    }
    let handle: unknown;
    const waited = new Promise<void>((resolve) => { handle = this.#timers.set(resolve, this.#unknownKidWaitMs); });
    try {
      await Promise.race([pending, waited]);
    } finally {
      this.#timers.clear(handle);
    }
    return this.#set !== before ? this.#set : undefined;
  }

  #schedule(lastOk: boolean): void {
    if (this.#stopped) return;
    const delay = nextRefreshDelayMs(this.#cacheMaxAgeMs, this.#cooldownMs, lastOk, this.#random());
    this.#timer = this.#timers.set(() => {
      this.#timer = undefined;
      void this.refresh('background').then((result) => { this.#schedule(isSuccess(result)); });
    }, delay);
  }

  async #refreshOnce(trigger: JwksRefreshTrigger): Promise<JwksRefreshResult> {
    const started = this.#clock();
    let result: JwksRefreshResult;
    let detail: string | undefined;
    try {
      result = this.source.kind === 'url' ? await this.#loadUrl(this.source.url) : await this.#loadFile(this.source.path);
      this.#lastSuccessAt = this.#clock();
    } catch (error: unknown) {
      if (error instanceof RefreshFailure) {
        result = error.result;
        detail = error.message;
      } else {
        result = 'network';
        detail = error instanceof Error ? error.name : 'unknown error';
      }
    }
    this.#onRefresh?.({
      issuer: this.issuer,
      trigger,
      result,
      ok: isSuccess(result),
      durationMs: Math.max(0, this.#clock() - started),
      ...(detail === undefined ? {} : { detail }),
      ...(this.#jwks === undefined ? {} : { keyCount: this.#jwks.keys.length }),
    });
    return result;
  }

  #install(body: Buffer): JwksRefreshResult {
    if (this.#lastBody?.equals(body) === true && this.#set !== undefined) return 'unchanged';
    let document: unknown;
    try {
      document = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
    } catch {
      throw new RefreshFailure('invalid-json', 'body is not UTF-8 JSON');
    }
    const checked = validateJwks(document);
    if (!checked.ok) throw new RefreshFailure('invalid-jwks', checked.detail);
    // One assignment: a verification in flight keeps the set it started with.
    this.#set = createLocalJWKSet(checked.jwks);
    this.#jwks = checked.jwks;
    this.#lastBody = body;
    return 'updated';
  }

  async #loadFile(path: string): Promise<JwksRefreshResult> {
    let stamp: string;
    let body: Uint8Array;
    try {
      const info = await this.#files.stat(path);
      if (info.size > this.#maxBytes) throw new RefreshFailure('too-large', `file exceeds ${this.#maxBytes} bytes`);
      stamp = `${info.mtimeMs}:${info.size}`;
      if (stamp === this.#lastFileStamp && this.#set !== undefined) return 'unchanged';
      body = await this.#files.readFile(path);
    } catch (error: unknown) {
      if (error instanceof RefreshFailure) throw error;
      const code = (error as { code?: unknown }).code;
      throw new RefreshFailure('unreadable', typeof code === 'string' ? code : 'read failed');
    }
    if (body.byteLength > this.#maxBytes) throw new RefreshFailure('too-large', `file exceeds ${this.#maxBytes} bytes`);
    const result = this.#install(Buffer.from(body));
    this.#lastFileStamp = stamp;
    return result;
  }

  async #loadUrl(url: string): Promise<JwksRefreshResult> {
    const controller = new AbortController();
    const handle = this.#timers.set(() => { controller.abort(); }, this.#timeoutMs);
    try {
      const response = await this.#fetch(url, {
        redirect: 'manual',
        signal: controller.signal,
        headers: { accept: 'application/jwk-set+json, application/json' },
      });
      // An injected fetch may ignore the signal: a late answer is still a timeout.
      if (controller.signal.aborted) throw new RefreshFailure('timeout', `no response within ${this.#timeoutMs} ms`);
      if (response.type === 'opaqueredirect' || (response.status >= 300 && response.status < 400)) {
        await response.body?.cancel();
        throw new RefreshFailure('redirect', `HTTP ${response.status}: redirects are not followed`);
      }
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new RefreshFailure('http-status', `HTTP ${response.status}`);
      }
      const mediaType = (response.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
      if (!JSON_MEDIA_TYPE.test(mediaType)) {
        await response.body?.cancel();
        throw new RefreshFailure('content-type', `content-type ${JSON.stringify(mediaType.slice(0, 64))} is not JSON`);
      }
      const declared = Number(response.headers.get('content-length') ?? '0');
      if (declared > this.#maxBytes) {
        await response.body?.cancel();
        throw new RefreshFailure('too-large', `body exceeds ${this.#maxBytes} bytes`);
      }
      const body = await readCapped(response, this.#maxBytes);
      if (isAborted(controller)) throw new RefreshFailure('timeout', `no complete response within ${this.#timeoutMs} ms`);
      return this.#install(body);
    } catch (error: unknown) {
      if (error instanceof RefreshFailure) throw error;
      if (controller.signal.aborted) throw new RefreshFailure('timeout', `no complete response within ${this.#timeoutMs} ms`);
      throw new RefreshFailure('network', error instanceof Error ? error.name : 'fetch failed');
    } finally {
      this.#timers.clear(handle);
    }
  }
}

// A function, so the compiler does not narrow `aborted` across awaits.
function isAborted(controller: AbortController): boolean {
  return controller.signal.aborted;
}

function isSuccess(result: JwksRefreshResult): boolean {
  return result === 'updated' || result === 'unchanged';
}

async function readCapped(response: Response, maxBytes: number): Promise<Buffer> {
  if (response.body === null) return Buffer.alloc(0);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw new RefreshFailure('too-large', `body exceeds ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
