// IssuerKeys: the serve-stale state table of reference/identity-and-audit.md §2.3 and checklist
// rows 26-27 (hostile JWKS documents and endpoints), with an injected clock, fetch and timers.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JWK } from 'jose';
import { isCustosError } from '../../lib/errors.ts';
import {
  IssuerKeys, nextRefreshDelayMs, validateJwks, type JwksRefreshEvent, type TimerApi,
} from './issuer-keys.ts';
import { createLocalIssuer, mintKubernetesToken, type LocalIssuer } from './local-issuer.ts';
import { createTokenVerifier, ERR_AUTH_TOKEN_INVALID, ERR_AUTH_TOKEN_REJECTED, TokenVerificationError } from './token-verifier.ts';

const ISS = 'https://kubernetes.default.svc.cluster.local';
const URL_ = 'https://kubernetes.default.svc/openid/v1/jwks';
const T0 = Date.UTC(2025, 5, 6, 12, 0, 0);
const MINUTE = 60_000;

/** Timers that only run when the test fires them. */
class ManualTimers implements TimerApi {
  #next = 1;
  readonly pending = new Map<number, { callback: () => void; ms: number }>();
  set(callback: () => void, ms: number): unknown {
    const id = this.#next++;
    this.pending.set(id, { callback, ms });
    return id;
  }
  clear(handle: unknown): void { this.pending.delete(handle as number); }
  delays(): number[] { return [...this.pending.values()].map((timer) => timer.ms); }
  fire(ms: number): boolean {
    for (const [id, timer] of this.pending) {
      if (timer.ms === ms) { this.pending.delete(id); timer.callback(); return true; }
    }
    return false;
  }
}

function jsonResponse(body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Response {
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status: 200, headers });
}

async function ticks(count = 5): Promise<void> {
  for (let i = 0; i < count; i += 1) await new Promise((resolve) => { setImmediate(resolve); });
}

type Mode = (signal: AbortSignal) => Promise<Response>;

let trusted: LocalIssuer;
let rotated: LocalIssuer;

function rsaJwk(bits: number): JWK {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return { ...(publicKey.export({ format: 'jwk' }) as JWK), kid: `rsa-${bits}`, alg: 'RS256', use: 'sig' };
}

function harness(options: { timers?: ManualTimers } = {}) {
  const clock = { now: T0 };
  let fetches = 0;
  const good: Mode = () => Promise.resolve(jsonResponse(trusted.jwks()));
  let mode: Mode = good;
  const events: JwksRefreshEvent[] = [];
  const keys = new IssuerKeys({
    issuer: ISS,
    source: { kind: 'url', url: URL_ },
    clock: () => clock.now,
    fetch: (_input, init) => { fetches += 1; return mode(init?.signal ?? new AbortController().signal); },
    onRefresh: (event) => { events.push(event); },
    ...(options.timers === undefined ? {} : { timers: options.timers }),
  });
  const verifier = createTokenVerifier({ clock: () => clock.now, issuers: [{ issuer: ISS, audience: 'custos', keys }] });
  return {
    clock, keys, verifier, events,
    fetches: () => fetches,
    setMode: (next: Mode) => { mode = next; },
    restore: () => { mode = good; },
  };
}

async function rejection(promise: Promise<unknown>): Promise<TokenVerificationError> {
  try {
    await promise;
  } catch (error: unknown) {
    assert.ok(error instanceof TokenVerificationError);
    return error;
  }
  assert.fail('expected a rejection');
}

describe('IssuerKeys', () => {
  before(async () => {
    [trusted, rotated] = await Promise.all([
      createLocalIssuer({ issuer: ISS, kid: 'rsa-1', clock: () => T0 }),
      createLocalIssuer({ issuer: ISS, alg: 'ES256', kid: 'ec-2', clock: () => T0 }),
    ]);
  });

  describe('state table', () => {
    it('is closed and not ready before the first load, then fresh, grace and closed by age', async () => {
      const h = harness();
      assert.deepEqual([h.keys.ready, h.keys.state, h.keys.ageSeconds], [false, 'closed', undefined]);
      assert.equal(await h.keys.refresh('initial'), 'updated');
      assert.deepEqual([h.keys.ready, h.keys.state, h.keys.ageSeconds], [true, 'fresh', 0]);
      h.clock.now += 10 * MINUTE - 1;
      assert.equal(h.keys.state, 'fresh');
      h.clock.now += 1;
      assert.deepEqual([h.keys.state, h.keys.ageSeconds], ['grace', 600]);
      h.clock.now += 60 * MINUTE - 1;
      assert.equal(h.keys.state, 'grace');
      h.clock.now += 1;
      assert.equal(h.keys.state, 'closed');
      assert.equal(h.keys.ready, true);
    });

    it('rejects every token with keys-unavailable before keys are loaded, without fetching on the request path', async () => {
      const h = harness();
      const raw = await mintKubernetesToken(trusted, { namespace: 'payments', serviceAccount: 'reporter' });
      const error = await rejection(h.verifier.verify(raw, 'workload'));
      assert.deepEqual([error.code, error.reason], [ERR_AUTH_TOKEN_REJECTED, 'keys-unavailable']);
      assert.equal(h.fetches(), 0);
    });

    const failures: Array<[string, Mode, string]> = [
      ['a timeout', (signal) => new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(new DOMException('aborted', 'AbortError')); }); }), 'timeout'],
      ['HTTP 500', () => Promise.resolve(new Response('oops', { status: 500 })), 'http-status'],
      ['HTTP 302', () => Promise.resolve(new Response(null, { status: 302, headers: { location: 'https://attacker.example/jwks' } })), 'redirect'],
      ['an HTML body', () => Promise.resolve(jsonResponse('<html>login</html>', { 'content-type': 'text/html' })), 'content-type'],
      ['invalid JSON', () => Promise.resolve(jsonResponse('{"keys": [')), 'invalid-json'],
      ['keys not an array', () => Promise.resolve(jsonResponse({ keys: { kty: 'RSA' } })), 'invalid-jwks'],
      ['a connection error', () => Promise.reject(new TypeError('fetch failed')), 'network'],
    ];
    for (const [name, mode, result] of failures) {
      it(`serves known kids through grace and rejects after it when the endpoint fails with ${name} (row 27)`, async () => {
        const timers = new ManualTimers();
        const h = harness({ timers });
        await h.keys.refresh('initial');
        const known = await mintKubernetesToken(trusted, { namespace: 'payments', serviceAccount: 'reporter', issuedAt: (T0 + 65 * MINUTE) / 1000 });
        const unknown = await mintKubernetesToken(rotated, { namespace: 'payments', serviceAccount: 'reporter', issuedAt: (T0 + 65 * MINUTE) / 1000 });
        h.setMode(mode);
        h.clock.now += 10 * MINUTE;
        const refreshing = h.keys.refresh('background');
        await ticks();
        timers.fire(2_000); // the request timeout, relevant only to the hanging endpoint
        assert.equal(await refreshing, result);
        assert.equal(h.events.at(-1)?.result, result);
        assert.equal(h.events.at(-1)?.ok, false);

        h.clock.now += 55 * MINUTE; // grace, at T0 + 65 min
        assert.equal(h.keys.state, 'grace');
        assert.equal((await h.verifier.verify(known, 'workload')).subject, 'system:serviceaccount:payments:reporter');
        const before = h.fetches();
        const unknownError = await rejection(h.verifier.verify(unknown, 'workload'));
        assert.deepEqual([unknownError.code, unknownError.reason], [ERR_AUTH_TOKEN_INVALID, 'unknown-kid']);
        assert.equal(h.fetches(), before, 'no request-path refresh in grace');

        h.clock.now += 5 * MINUTE; // T0 + 70 min: past cacheMaxAge + grace
        assert.equal(h.keys.state, 'closed');
        const closedError = await rejection(h.verifier.verify(known, 'workload'));
        assert.deepEqual([closedError.code, closedError.reason], [ERR_AUTH_TOKEN_REJECTED, 'keys-unavailable']);

        h.restore();
        assert.equal(await h.keys.refresh('background'), 'unchanged');
        assert.equal(h.keys.state, 'fresh');
        assert.equal((await h.verifier.verify(known, 'workload')).authMethod, 'k8s-sa');
      });
    }

    it('keeps the last good keys when a refresh fails while fresh', async () => {
      const h = harness();
      await h.keys.refresh('initial');
      h.setMode(() => Promise.resolve(new Response('', { status: 503 })));
      h.clock.now += MINUTE;
      assert.equal(await h.keys.refresh('manual'), 'http-status');
      assert.equal(h.keys.state, 'fresh');
      assert.equal(h.keys.keys()?.keys[0]?.kid, 'rsa-1');
    });
  });

  describe('unknown kid', () => {
    it('waits at most the bound for a hanging refresh, then rejects; the refresh still lands later', async () => {
      const timers = new ManualTimers();
      const h = harness({ timers });
      await h.keys.refresh('initial');
      let release: (response: Response) => void = () => undefined;
      h.setMode(() => new Promise<Response>((resolve) => { release = resolve; }));
      const raw = await mintKubernetesToken(rotated, { namespace: 'payments', serviceAccount: 'reporter' });
      const verifying = rejection(h.verifier.verify(raw, 'caller'));
      await ticks();
      assert.ok(timers.delays().includes(2_000), 'a 2 s wait bound is armed');
      while (timers.fire(2_000)) { /* the wait bound and the request timeout are both 2 s */ }
      const error = await verifying;
      assert.equal(error.reason, 'unknown-kid');
      release(jsonResponse({ keys: [trusted.publicJwk, rotated.publicJwk] }));
      await ticks();
      // Aborted by the timeout: the late body is not installed, and the cooldown holds.
      assert.equal((await rejection(h.verifier.verify(raw, 'caller'))).reason, 'unknown-kid');
      assert.equal(h.fetches(), 2);
    });

    it('coalesces concurrent refreshes into one request', async () => {
      const h = harness();
      let release: (response: Response) => void = () => undefined;
      h.setMode(() => new Promise<Response>((resolve) => { release = resolve; }));
      const all = Promise.all([h.keys.refresh('manual'), h.keys.refresh('background'), h.keys.refresh('initial')]);
      await ticks();
      release(jsonResponse(trusted.jwks()));
      assert.deepEqual(await all, ['updated', 'updated', 'updated']);
      assert.equal(h.fetches(), 1);
    });
  });

  describe('hostile JWKS documents (row 26)', () => {
    const table: Array<[string, () => unknown, boolean]> = [
      ['a 2048-bit RSA key', () => ({ keys: [rsaJwk(2048)] }), true],
      ['an EC key', () => rotated.jwks(), true],
      ['a 1024-bit RSA key', () => ({ keys: [rsaJwk(1024)] }), false],
      ['a 2047-bit RSA key', () => ({ keys: [rsaJwk(2047)] }), false],
      ['a private RSA key (d)', () => {
        const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
        return { keys: [{ ...(privateKey.export({ format: 'jwk' }) as JWK), kid: 'leaked' }] };
      }, false],
      ['a private EC key (d)', () => ({ keys: [{ ...rotated.publicJwk, d: 'AAAA' }] }), false],
      ['an oct key', () => ({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'hmac' }] }), false],
      ['an oct key without k', () => ({ keys: [{ kty: 'oct', kid: 'hmac' }] }), false],
      ['a good key next to an oct key', () => ({ keys: [trusted.publicJwk, { kty: 'oct', k: 'c2VjcmV0' }] }), false],
      ['an empty keys array', () => ({ keys: [] }), false],
      ['keys as an object', () => ({ keys: {} }), false],
      ['a key that is a string', () => ({ keys: ['RSA'] }), false],
      ['a key without kty', () => ({ keys: [{ n: 'AQAB', e: 'AQAB' }] }), false],
      ['an RSA key without n', () => ({ keys: [{ kty: 'RSA', e: 'AQAB' }] }), false],
      ['a top-level array', () => [trusted.publicJwk], false],
    ];
    for (const [name, build, ok] of table) {
      it(`${ok ? 'accepts' : 'refuses'} a JWKS with ${name}`, async () => {
        const document = build();
        assert.equal(validateJwks(document).ok, ok);
        const h = harness();
        h.setMode(() => Promise.resolve(jsonResponse(document)));
        assert.equal(await h.keys.refresh('initial'), ok ? 'updated' : 'invalid-jwks');
        assert.equal(h.keys.ready, ok);
      });
    }

    it('keeps serving the previous keys when a refresh brings a private key', async () => {
      const h = harness();
      await h.keys.refresh('initial');
      h.setMode(() => Promise.resolve(jsonResponse({ keys: [{ ...trusted.publicJwk, d: 'AAAA' }] })));
      assert.equal(await h.keys.refresh('manual'), 'invalid-jwks');
      assert.match(h.events.at(-1)?.detail ?? '', /private member "d"/);
      const raw = await mintKubernetesToken(trusted, { namespace: 'payments', serviceAccount: 'reporter' });
      assert.equal((await h.verifier.verify(raw, 'caller')).authMethod, 'k8s-sa');
    });
  });

  describe('HTTP limits', () => {
    function padded(size: number): string {
      const base = JSON.stringify(trusted.jwks());
      return base.slice(0, -1) + ' '.repeat(size - base.length) + '}';
    }

    it('accepts a body of exactly 64 KiB and refuses 64 KiB + 1 with or without content-length', async () => {
      const h = harness();
      h.setMode(() => Promise.resolve(jsonResponse(padded(65_536))));
      assert.equal(await h.keys.refresh('manual'), 'updated');
      h.setMode(() => Promise.resolve(jsonResponse(padded(65_537), { 'content-type': 'application/json', 'content-length': '65537' })));
      assert.equal(await h.keys.refresh('manual'), 'too-large');
      const chunked = (): Response => {
        const body = Buffer.from(padded(70_000));
        let offset = 0;
        const stream = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (offset >= body.length) { controller.close(); return; }
            controller.enqueue(body.subarray(offset, offset + 4096));
            offset += 4096;
          },
        });
        return new Response(stream, { status: 200, headers: { 'content-type': 'application/jwk-set+json' } });
      };
      h.setMode(() => Promise.resolve(chunked()));
      assert.equal(await h.keys.refresh('manual'), 'too-large');
    });

    const mediaTypes: Array<[string | null, string]> = [
      ['application/json', 'updated'],
      ['application/json; charset=utf-8', 'updated'],
      ['application/jwk-set+json', 'updated'],
      ['text/html', 'content-type'],
      ['text/plain', 'content-type'],
      [null, 'content-type'],
    ];
    for (const [type, result] of mediaTypes) {
      it(`returns ${result} when the content-type is ${String(type)}`, async () => {
        const h = harness();
        h.setMode(() => Promise.resolve(new Response(JSON.stringify(trusted.jwks()), { status: 200, headers: type === null ? {} : { 'content-type': type } })));
        assert.equal(await h.keys.refresh('manual'), result);
      });
    }

    it('refuses a JWKS URL that is plain http to a non-loopback host', () => {
      for (const url of ['http://kubernetes.default.svc/openid/v1/jwks', 'ftp://example.com/jwks', 'file:///etc/jwks']) {
        assert.throws(() => new IssuerKeys({ issuer: ISS, source: { kind: 'url', url } }), (error: unknown) => isCustosError(error, 'ERR_CONFIG_INVALID'));
      }
      for (const url of ['https://example.com/jwks', 'http://127.0.0.1:8080/jwks', 'http://localhost/jwks', 'http://[::1]:1/jwks']) {
        assert.equal(new IssuerKeys({ issuer: ISS, source: { kind: 'url', url } }).ready, false);
      }
    });
  });

  describe('real HTTP endpoint', () => {
    let server: Server;
    let base = '';
    let targetHits = 0;
    before(async () => {
      server = createServer((request, response) => {
        request.resume();
        if (request.url === '/redirect') {
          response.writeHead(302, { location: `${base}/target` });
          response.end();
        } else if (request.url === '/target') {
          targetHits += 1;
          response.writeHead(200, { 'content-type': 'application/json' });
          response.end(JSON.stringify(trusted.jwks()));
        } else {
          response.writeHead(200, { 'content-type': 'application/jwk-set+json' });
          response.end(JSON.stringify(trusted.jwks()));
        }
      });
      await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve); });
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => { server.closeAllConnections(); await new Promise((resolve) => { server.close(resolve); }); });

    it('never follows a redirect (row 27)', async () => {
      const keys = new IssuerKeys({ issuer: ISS, source: { kind: 'url', url: `${base}/redirect` } });
      assert.equal(await keys.refresh('initial'), 'redirect');
      assert.equal(targetHits, 0);
      assert.equal(keys.ready, false);
    });

    it('loads keys over real HTTP and from the local issuer\'s JWKS server', async () => {
      const keys = new IssuerKeys({ issuer: ISS, source: { kind: 'url', url: `${base}/jwks` } });
      assert.equal(await keys.refresh('initial'), 'updated');
      assert.equal(await keys.refresh('manual'), 'unchanged');
      const served = await trusted.serveJwks();
      try {
        const fromIssuer = new IssuerKeys({ issuer: ISS, source: { kind: 'url', url: served.url } });
        assert.equal(await fromIssuer.refresh('initial'), 'updated');
        assert.equal(served.hits(), 1);
      } finally {
        await served.close();
      }
    });
  });

  describe('file source', () => {
    let dir = '';
    before(async () => { dir = await mkdtemp(join(tmpdir(), 'custos-jwks-')); });
    after(async () => { await rm(dir, { recursive: true, force: true }); });

    it('re-reads the file only when it changes and keeps the last good keys when it disappears', async () => {
      const path = join(dir, 'jwks.json');
      await trusted.writeJwksFile(path);
      const clock = { now: T0 };
      const keys = new IssuerKeys({ issuer: ISS, source: { kind: 'file', path }, clock: () => clock.now });
      assert.equal(await keys.refresh('initial'), 'updated');
      assert.equal(await keys.refresh('manual'), 'unchanged');
      // Same bytes, new mtime: read again, recognised as unchanged.
      await utimes(path, new Date(T0 + 1000), new Date(T0 + 1000));
      assert.equal(await keys.refresh('manual'), 'unchanged');
      await writeFile(path, JSON.stringify({ keys: [trusted.publicJwk, rotated.publicJwk] }));
      await utimes(path, new Date(T0 + 2000), new Date(T0 + 2000));
      assert.equal(await keys.refresh('manual'), 'updated');
      assert.deepEqual(keys.keys()?.keys.map((key) => key.kid), ['rsa-1', 'ec-2']);
      await rm(path);
      clock.now += 11 * MINUTE;
      assert.equal(await keys.refresh('manual'), 'unreadable');
      assert.equal(keys.state, 'grace');
      assert.equal(keys.keys()?.keys.length, 2);
    });

    it('refuses a file over 64 KiB', async () => {
      const path = join(dir, 'big.json');
      await writeFile(path, ' '.repeat(70_000));
      assert.equal(await new IssuerKeys({ issuer: ISS, source: { kind: 'file', path } }).refresh('initial'), 'too-large');
    });
  });

  describe('background refresh', () => {
    const delays: Array<[number, number, boolean, number, number]> = [
      [600_000, 30_000, true, 0, 270_000],
      [600_000, 30_000, true, 0.5, 300_000],
      [600_000, 30_000, true, 0.999_999, 330_000],
      [600_000, 30_000, false, 0.5, 30_000],
      [20_000, 30_000, false, 0.5, 10_000],
    ];
    for (const [maxAge, cooldown, ok, random, expected] of delays) {
      it(`waits ${expected} ms when cacheMaxAge=${maxAge}, ok=${ok}, random=${random}`, () => {
        assert.equal(nextRefreshDelayMs(maxAge, cooldown, ok, random), expected);
      });
    }

    it('schedules at cacheMaxAge/2 with jitter, retries at the cooldown after a failure, and stops', async () => {
      const timers = new ManualTimers();
      const h = harness({ timers });
      assert.equal(await h.keys.start(), 'updated');
      const [first] = timers.delays();
      assert.ok(first !== undefined && first >= 270_000 && first <= 330_000, String(first));
      h.setMode(() => Promise.resolve(new Response('', { status: 500 })));
      timers.fire(first);
      await ticks();
      assert.equal(h.events.at(-1)?.trigger, 'background');
      const [retry] = timers.delays();
      assert.ok(retry !== undefined && retry >= 27_000 && retry <= 33_000, String(retry));
      h.keys.stop();
      assert.deepEqual(timers.delays(), []);
    });
  });
});
