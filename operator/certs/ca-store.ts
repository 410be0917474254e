// The webhook CA, kept in a Secret of the release namespace (CUSTOS_WEBHOOK_CA_SECRET, reference/
// kubernetes.md §11). Only the leader writes it: it creates the CA when the Secret is absent and
// rotates it when a fifth of its validity remains; followers read it and poll for changes. All
// replicas sign their own serving leaf with it (serving-cert.ts), and the leader patches the bundle
// into the webhook configuration (ca-bundle-patcher.ts).
//
// Races are settled by the API server: a create that answers 409 means another replica created it
// first (read theirs); an update carries the resourceVersion it read, and a 409 means re-read.
// RBAC needed (charts/custos/templates/rbac.yaml): secrets create, and get/update by name.
//
// Secret layout (type Opaque): `ca.crt` and `ca.key` (PKCS#8) of the signing CA; after a rotation
// `previous-ca.crt`, kept in the bundle until it expires so leaves it signed keep verifying.
import { ApiException, V1ObjectMeta, V1Secret, type CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { CustosError } from '../../lib/errors.ts';
import { createCertificateAuthority, describeCertificate, loadCertificateAuthority, YEAR_MS, type CertificateAuthority } from './certificate-builder.ts';
import { Listeners } from './certificate-source.ts';
import { sleep, systemClock, type Clock } from './clock.ts';
import type { AuthoritySource } from './serving-cert.ts';

export const CA_SECRET_KEYS = { cert: 'ca.crt', key: 'ca.key', previous: 'previous-ca.crt' } as const;

export interface CaStoreOptions {
  /** `kubeConfig.makeApiClient(CoreV1Api)`. */
  readonly core: CoreV1Api;
  readonly namespace: string;
  readonly secretName: string;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Default 10 years (reference §11: 5–10 years). */
  readonly validityMs?: number;
  /** The leader rotates the CA when this fraction of its validity remains (default 0.2). */
  readonly rotateFraction?: number;
  readonly commonName?: string;
}

export interface CaState {
  readonly authority: CertificateAuthority;
  /** PEM of the CAs the API server must trust: the signing CA, then the previous one until it expires. */
  readonly bundlePem: string;
  readonly resourceVersion: string;
}

export interface LeadershipView {
  /** Whether this replica may write the Secret now. */
  isLeader(): boolean;
}

function decode(secret: V1Secret, key: string): string | undefined {
  const value = secret.data?.[key];
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

function encode(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

function statusOf(e: unknown): number | undefined {
  return e instanceof ApiException ? e.code : undefined;
}

export class CaStore implements AuthoritySource {
  readonly #o: CaStoreOptions;
  readonly #clock: Clock;
  readonly #validityMs: number;
  readonly #rotateFraction: number;
  readonly #listeners: Listeners<CaState>;
  readonly #bundleListeners: Listeners<string>;
  #state: CaState | undefined;

  constructor(options: CaStoreOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#validityMs = options.validityMs ?? 10 * YEAR_MS;
    this.#rotateFraction = options.rotateFraction ?? 0.2;
    const onError = (e: unknown): void => { options.logger.error({ err: e instanceof Error ? e.message : String(e) }, 'CA listener failed'); };
    this.#listeners = new Listeners(onError);
    this.#bundleListeners = new Listeners(onError);
  }

  /** The signing CA; throws ERR_CERT_NOT_READY before load() resolved. */
  current(): CertificateAuthority {
    return this.state().authority;
  }

  state(): CaState {
    if (this.#state === undefined) throw new CustosError('ERR_CERT_NOT_READY', `webhook CA not loaded yet from Secret ${this.#o.namespace}/${this.#o.secretName}`);
    return this.#state;
  }

  /** Called with the new signing CA after a rotation (or after a follower saw one). */
  onChange(listener: (authority: CertificateAuthority) => void): () => void {
    return this.#listeners.add((s) => { listener(s.authority); });
  }

  /** The trust bundle as a source for ca-bundle-patcher.ts. */
  readonly bundle = {
    current: (): string => this.state().bundlePem,
    onChange: (listener: (bundlePem: string) => void): (() => void) => this.#bundleListeners.add(listener),
  };

  /**
   * Resolves with the CA once it is known. The leader creates it when the Secret is absent; a
   * follower (or a leader whose create lost the race) polls until the leader has stored it.
   */
  async load(leadership: LeadershipView, options: { signal?: AbortSignal; pollIntervalMs?: number } = {}): Promise<CertificateAuthority> {
    const pollMs = options.pollIntervalMs ?? 2000;
    let waitingLogged = false;
    for (;;) {
      if (options.signal?.aborted === true) throw new CustosError('ERR_CERT_ABORTED', 'stopped while waiting for the webhook CA');
      if (await this.sync(leadership)) return this.current();
      if (!waitingLogged) {
        this.#o.logger.info({ secret: `${this.#o.namespace}/${this.#o.secretName}` }, 'waiting for the leader to store the webhook CA');
        waitingLogged = true;
      }
      await sleep(this.#clock, pollMs, options.signal);
    }
  }

  /**
   * One pass: read the Secret; as leader create it when absent, replace it when unusable and
   * rotate it when due. Returns whether a CA is known afterwards. API errors other than the
   * expected 404/409 are thrown.
   */
  async sync(leadership: LeadershipView): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const secret = await this.#read();
      if (secret === undefined) {
        if (!leadership.isLeader()) return this.#state !== undefined;
        if (await this.#create()) return true;
        continue; // 409: another replica created it; read theirs
      }
      const state = await this.#parse(secret);
      if (state === undefined) {
        if (!leadership.isLeader()) return this.#state !== undefined;
        if (await this.#replace(secret, undefined)) return true;
        continue;
      }
      if (leadership.isLeader() && this.#rotationDue(state.authority)) {
        if (await this.#replace(secret, state.authority)) return true;
        continue;
      }
      this.#adopt(state);
      return true;
    }
    throw new CustosError('ERR_CERT_CA_CONFLICT', `Secret ${this.#o.namespace}/${this.#o.secretName} kept changing while it was being written`);
  }

  /** Re-syncs every `intervalMs` until `signal` aborts (followers see rotations, the leader performs them). */
  async run(leadership: LeadershipView, options: { signal: AbortSignal; intervalMs?: number }): Promise<void> {
    const intervalMs = options.intervalMs ?? 60_000;
    const stopped = (): boolean => options.signal.aborted;
    while (!stopped()) {
      await sleep(this.#clock, intervalMs, options.signal);
      if (stopped()) return;
      try {
        await this.sync(leadership);
      } catch (e: unknown) {
        this.#o.logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'webhook CA sync failed; keeping the current CA');
      }
    }
  }

  #rotationDue(authority: CertificateAuthority): boolean {
    const validity = authority.notAfter.getTime() - authority.notBefore.getTime();
    return this.#clock.now() >= authority.notAfter.getTime() - validity * this.#rotateFraction;
  }

  async #read(): Promise<V1Secret | undefined> {
    try {
      return await this.#o.core.readNamespacedSecret({ name: this.#o.secretName, namespace: this.#o.namespace });
    } catch (e: unknown) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
  }

  async #parse(secret: V1Secret): Promise<CaState | undefined> {
    const certPem = decode(secret, CA_SECRET_KEYS.cert);
    const keyPem = decode(secret, CA_SECRET_KEYS.key);
    const where = `${this.#o.namespace}/${this.#o.secretName}`;
    if (certPem === undefined || keyPem === undefined) {
      this.#o.logger.warn({ secret: where }, `webhook CA Secret lacks ${CA_SECRET_KEYS.cert} or ${CA_SECRET_KEYS.key}`);
      return undefined;
    }
    let authority: CertificateAuthority;
    try {
      authority = this.#state?.authority.certPem === certPem && this.#state.authority.keyPem === keyPem
        ? this.#state.authority
        : await loadCertificateAuthority({ certPem, keyPem });
    } catch (e: unknown) {
      this.#o.logger.warn({ secret: where, err: e instanceof Error ? e.message : String(e) }, 'webhook CA Secret holds an unusable CA');
      return undefined;
    }
    if (authority.notAfter.getTime() <= this.#clock.now()) {
      this.#o.logger.warn({ secret: where, notAfter: authority.notAfter.toISOString() }, 'webhook CA has expired');
      return undefined;
    }
    const bundle = [authority.certPem.trim()];
    const previous = decode(secret, CA_SECRET_KEYS.previous);
    if (previous !== undefined) {
      try {
        if (describeCertificate(previous).notAfter.getTime() > this.#clock.now()) bundle.push(previous.trim());
      } catch {
        this.#o.logger.warn({ secret: where }, `ignoring unreadable ${CA_SECRET_KEYS.previous}`);
      }
    }
    return { authority, bundlePem: bundle.join('\n') + '\n', resourceVersion: secret.metadata?.resourceVersion ?? '' };
  }

  #adopt(state: CaState): void {
    const before = this.#state;
    this.#state = state;
    if (before === undefined) return;
    if (before.authority.certPem !== state.authority.certPem) this.#listeners.emit(state);
    if (before.bundlePem !== state.bundlePem) this.#bundleListeners.emit(state.bundlePem);
  }

  #secretBody(authority: CertificateAuthority, previous: CertificateAuthority | undefined, resourceVersion?: string): V1Secret {
    const metadata = new V1ObjectMeta();
    metadata.name = this.#o.secretName;
    metadata.namespace = this.#o.namespace;
    metadata.labels = { 'app.kubernetes.io/part-of': 'custos', 'app.kubernetes.io/component': 'webhook-ca' };
    if (resourceVersion !== undefined) metadata.resourceVersion = resourceVersion;
    const secret = new V1Secret();
    secret.apiVersion = 'v1';
    secret.kind = 'Secret';
    secret.type = 'Opaque';
    secret.metadata = metadata;
    secret.data = {
      [CA_SECRET_KEYS.cert]: encode(authority.certPem),
      [CA_SECRET_KEYS.key]: encode(authority.keyPem),
      ...(previous === undefined ? {} : { [CA_SECRET_KEYS.previous]: encode(previous.certPem) }),
    };
    return secret;
  }

  async #newAuthority(): Promise<CertificateAuthority> {
    return createCertificateAuthority({ commonName: this.#o.commonName ?? 'custos-webhook-ca', now: new Date(this.#clock.now()), validityMs: this.#validityMs });
  }

  /** true when stored; false when another replica created it first (409). */
  async #create(): Promise<boolean> {
    const authority = await this.#newAuthority();
    try {
      const created = await this.#o.core.createNamespacedSecret({ namespace: this.#o.namespace, body: this.#secretBody(authority, undefined) });
      this.#o.logger.info({ secret: `${this.#o.namespace}/${this.#o.secretName}`, notAfter: authority.notAfter.toISOString() }, 'webhook CA created');
      this.#adopt({ authority, bundlePem: authority.certPem.trim() + '\n', resourceVersion: created.metadata?.resourceVersion ?? '' });
      return true;
    } catch (e: unknown) {
      if (statusOf(e) === 409) return false;
      throw e;
    }
  }

  /** Replaces an unusable or expiring CA (keeping `previous` in the bundle); false on a 409 conflict. */
  async #replace(secret: V1Secret, previous: CertificateAuthority | undefined): Promise<boolean> {
    const authority = await this.#newAuthority();
    const body = this.#secretBody(authority, previous, secret.metadata?.resourceVersion);
    try {
      const stored = await this.#o.core.replaceNamespacedSecret({ name: this.#o.secretName, namespace: this.#o.namespace, body });
      this.#o.logger.info({
        secret: `${this.#o.namespace}/${this.#o.secretName}`, reason: previous === undefined ? 'unusable' : 'rotation', notAfter: authority.notAfter.toISOString(),
      }, 'webhook CA replaced');
      const bundlePem = [authority.certPem.trim(), ...(previous === undefined ? [] : [previous.certPem.trim()])].join('\n') + '\n';
      this.#adopt({ authority, bundlePem, resourceVersion: stored.metadata?.resourceVersion ?? '' });
      return true;
    } catch (e: unknown) {
      if (statusOf(e) === 409) return false;
      throw e;
    }
  }
}
