// The policy the sidecar enforces: read from a file (a mounted ConfigMap in Kubernetes), validated
// against the CRD schema, compiled, and hot-reloaded when the file changes. A policy that fails to
// load never replaces the last good one; the failure is logged and counted.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { parsePolicyYaml } from '../crds/validate-document.ts';
import { compilePolicy, type CompiledPolicy } from '../policy/compile.ts';
import { CustosError } from '../lib/errors.ts';
import type { SidecarMetrics } from './metrics.ts';

/** Reads, validates and compiles a policy file; throws a CustosError naming the field on failure. */
export async function loadPolicyFile(file: string): Promise<{ policy: CompiledPolicy; digest: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e: unknown) {
    throw new CustosError('ERR_POLICY_INVALID', `cannot read policy file ${file}: ${(e as Error).message}`, { cause: e });
  }
  const digest = createHash('sha256').update(text).digest('hex');
  const document = parsePolicyYaml(text, file);
  return { policy: compilePolicy(document, { version: digest.slice(0, 12) }), digest };
}

export class PolicyStore {
  readonly #file: string;
  readonly #logger: Logger;
  readonly #metrics: SidecarMetrics | undefined;
  #current: CompiledPolicy;
  /** SHA-256 of the file text last read, valid or not (so a broken file is not recompiled every poll). */
  #digest: string;
  /** SHA-256 of the file text the policy in force was compiled from. */
  #currentDigest: string;
  /** The reload in progress: reloads run one at a time (see reload). */
  #reloading: Promise<boolean> = Promise.resolve(false);
  #timer: NodeJS.Timeout | undefined;
  #lastError: string | undefined;
  readonly #listeners: Array<(policy: CompiledPolicy) => void> = [];

  private constructor(file: string, loaded: { policy: CompiledPolicy; digest: string }, logger: Logger, metrics: SidecarMetrics | undefined) {
    this.#file = file;
    this.#current = loaded.policy;
    this.#digest = loaded.digest;
    this.#currentDigest = loaded.digest;
    this.#logger = logger;
    this.#metrics = metrics;
  }

  /** Loads the policy (failing fast when it is invalid) and polls the file for changes. */
  static async open(file: string, options: { logger: Logger; metrics?: SidecarMetrics; pollIntervalMs?: number | undefined }): Promise<PolicyStore> {
    const loaded = await loadPolicyFile(file);
    const store = new PolicyStore(file, loaded, options.logger, options.metrics);
    options.metrics?.policyReloads.inc({ result: 'loaded' });
    // Polling rather than fs.watch: ConfigMap volumes swap a symlink, which watchers miss.
    store.#timer = setInterval(() => { void store.reload(); }, options.pollIntervalMs ?? 1000);
    store.#timer.unref();
    return store;
  }

  get current(): CompiledPolicy {
    return this.#current;
  }

  /** SHA-256 (hex) of the policy file text in force; what policy announcements name. */
  get digest(): string {
    return this.#currentDigest;
  }

  /** The message of the last failed reload, until a reload succeeds. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  onChange(listener: (policy: CompiledPolicy) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Re-reads the file; swaps the policy if it changed and is valid. Calls are queued, one at a time:
   * the poll timer and policy announcements both reload, and an overlapping read that started
   * earlier could otherwise finish later and put an older file's policy back in force.
   */
  reload(): Promise<boolean> {
    const next = this.#reloading.then(() => this.#reloadOnce());
    this.#reloading = next.catch(() => false); // a throwing listener must not stop later reloads
    return next;
  }

  async #reloadOnce(): Promise<boolean> {
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (e: unknown) {
      this.#fail(`cannot read policy file: ${(e as Error).message}`);
      return false;
    }
    const digest = createHash('sha256').update(text).digest('hex');
    if (digest === this.#digest) return false;
    try {
      const policy = compilePolicy(parsePolicyYaml(text, this.#file), { version: digest.slice(0, 12) });
      this.#current = policy;
      this.#digest = digest;
      this.#currentDigest = digest;
      this.#lastError = undefined;
      this.#metrics?.policyReloads.inc({ result: 'reloaded' });
      this.#logger.info({ policy: policy.name, version: policy.version }, 'policy reloaded');
      for (const l of this.#listeners) l(policy);
      return true;
    } catch (e: unknown) {
      this.#digest = digest; // do not retry the same broken content every second
      this.#fail((e as Error).message);
      return false;
    }
  }

  #fail(message: string): void {
    this.#lastError = message;
    this.#metrics?.policyReloads.inc({ result: 'error' });
    this.#logger.error({ file: this.#file, error: message }, 'policy reload failed: keeping the last good policy');
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}
