// The README walk-through "Try the operator locally: `npm run cluster`", run as written: the
// command npm runs (test/harness/cluster-command.ts) is started as its own process, and the
// kubectl commands are read from the README's code block and run with the real kubectl against the
// kubeconfig the process prints. A README edit that no longer works, or a cluster that no longer
// does what the README says, fails here. Ctrl-C (SIGINT) must stop everything and exit 0.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { kubeTools, kubectlFor, type Kubectl } from './harness/kube-tools.ts';
import { spawnManaged, stopProcess, waitFor } from './harness/processes.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLUSTER_COMMAND = join(REPO_ROOT, 'test', 'harness', 'cluster-command.ts');

interface ShellLine {
  readonly argv: readonly string[];
  /** The text after an unquoted `#`, trimmed (the README's "this prints …" notes). */
  readonly comment: string | undefined;
}

/** Splits one line of the README's `sh` blocks into words: blanks, single quotes and `#` comments only. */
function shellLine(line: string): ShellLine {
  const argv: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line.charAt(i);
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated quote in ${JSON.stringify(line)}`);
      word = (word ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (c === ' ' || c === '\t') {
      if (word !== undefined) argv.push(word);
      word = undefined;
    } else if (c === '#' && word === undefined) {
      return { argv, comment: line.slice(i + 1).trim() };
    } else if (c === '"' || c === '\\' || c === '$') {
      throw new Error(`this test's word splitter does not handle ${c} (in ${JSON.stringify(line)}); extend it`);
    } else {
      word = (word ?? '') + c;
    }
  }
  if (word !== undefined) argv.push(word);
  return { argv, comment: undefined };
}

/** The kubectl lines of the first `sh` block under the README heading "Try the operator locally". */
async function readmeWalkthrough(): Promise<ShellLine[]> {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Try the operator locally'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block !== undefined, 'the README section "Try the operator locally" has an sh block');
  return block.split('\n').map(shellLine).filter((l) => l.argv[0] === 'kubectl');
}

describe('npm run cluster and the README walk-through', { timeout: 240_000 }, () => {
  let dir: string;
  let child: ChildProcess;
  let output = '';
  let kubectl: Kubectl;
  let walkthrough: ShellLine[];

  /** The README's command `i` without its leading `kubectl`; file paths are relative to the repository. */
  const readmeArgs = (i: number): string[] => {
    const argv = walkthrough[i]?.argv ?? assert.fail(`the README has no kubectl command #${i}`);
    return argv.slice(1).map((a, j) => (argv[j] === '-f' ? join(REPO_ROOT, a) : a));
  };
  const runReadme = async (i: number): Promise<string> => {
    const args = readmeArgs(i);
    const r = await kubectl.run(args);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')} exited with ${r.code}: ${r.stderr}\n--- npm run cluster output ---\n${output.slice(-4000)}`);
    return r.stdout;
  };

  before(async () => {
    walkthrough = await readmeWalkthrough();
    dir = await mkdtemp(join(tmpdir(), 'custos-cluster-command-'));
    child = spawnManaged(process.execPath, [CLUSTER_COMMAND, '--port', '0', '--dir', dir], { cwd: REPO_ROOT });
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  });
  after(async () => {
    // Ctrl-C first, so that a failed test still lets it stop the operators it started.
    await stopProcess(child, 'SIGINT', 30_000);
    await rm(dir, { recursive: true, force: true });
  });

  it('the README lists the walk-through this test runs', () => {
    assert.deepEqual(walkthrough.map((l) => l.argv.join(' ')), [
      'kubectl create namespace payments',
      'kubectl label namespace payments custos.io/injection=enabled',
      'kubectl apply -f examples/policy.yaml',
      'kubectl get accesspolicies -n payments',
      'kubectl run billing -n payments --image=ghcr.io/acme/billing:1 --labels=custos.io/policy=billing',
      'kubectl get pod billing -n payments -o jsonpath={.spec.initContainers[*].name}',
      'kubectl get configmap custos-policy-billing -n payments -o yaml',
    ]);
  });

  it('prints the kubeconfig to export, the kubectl 1.35 the tests use, and commands from the README', async () => {
    await waitFor('npm run cluster to print export KUBECONFIG=…', () => {
      if (child.exitCode !== null) return Promise.reject(new Error(`npm run cluster exited with ${child.exitCode}:\n${output}`));
      return Promise.resolve(/^\s*export KUBECONFIG=\S+$/m.test(output) && output.includes('Ctrl-C stops the cluster.'));
    }, 120_000, 100).catch((e: unknown) => {
      throw new Error(`${String(e)}\n--- npm run cluster output ---\n${output}`);
    });
    const kubeconfig = /^\s*export KUBECONFIG=(\S+)$/m.exec(output)?.[1];
    assert.equal(kubeconfig, join(dir, 'kubeconfig'), 'the kubeconfig lives in --dir');
    kubectl = await kubectlFor(kubeconfig);

    const alias = /^\s*alias kubectl=(\S+)/m.exec(output)?.[1];
    assert.equal(alias, (await kubeTools()).kubectl);
    const version = await kubectl.run(['version', '--client']);
    assert.match(version.stdout, /Client Version: v1\.35\./);

    // The hints it prints are the README's commands, in the README's order.
    const printed = output.split('\n').filter((l) => /^\s*kubectl /.test(l)).map(shellLine);
    assert.ok(printed.length > 0, 'it prints commands to try');
    assert.deepEqual(printed.map((l) => l.argv), walkthrough.slice(0, printed.length).map((l) => l.argv));
  });

  it('creates and labels the namespace, applies the example policy, and shows it READY True', async () => {
    assert.match(await runReadme(0), /^namespace\/payments created$/m);
    assert.match(await runReadme(1), /^namespace\/payments labeled$/m);
    assert.match(await runReadme(2), /^accesspolicy\.custos\.io\/billing created$/m);
    let table = '';
    await waitFor('kubectl get accesspolicies to show READY True', async () => {
      table = await runReadme(3);
      return /^billing\s+True\s/m.test(table);
    }, 30_000, 200).catch((e: unknown) => {
      throw new Error(`${String(e)}\n--- last table ---\n${table}\n--- npm run cluster output ---\n${output.slice(-4000)}`);
    });
    assert.match(table, /^NAME\s+READY\s+PODS\s/);
  });

  it('injects the pod kubectl run creates, as the README comment says', async () => {
    assert.match(await runReadme(4), /^pod\/billing created$/m);
    const expected = walkthrough[5]?.comment;
    assert.equal(expected, 'custos-init custos-sidecar', 'the README says what the jsonpath query prints');
    assert.equal(await runReadme(5), expected);
  });

  it('shows the policy ConfigMap with policy.yaml and sidecar.yaml', async () => {
    const configMap = parse(await runReadme(6)) as { kind?: string; data?: Partial<Record<string, string>> };
    assert.equal(configMap.kind, 'ConfigMap');
    const policyYaml = configMap.data?.['policy.yaml'];
    assert.ok(policyYaml !== undefined, 'the ConfigMap has policy.yaml');
    const policy = parse(policyYaml) as { kind?: string; metadata?: { name?: string; namespace?: string }; spec?: { rules?: Array<{ name: string }> } };
    assert.equal(policy.kind, 'AccessPolicy');
    assert.deepEqual(policy.metadata, { name: 'billing', namespace: 'payments' });
    assert.ok(policy.spec?.rules?.some((r) => r.name === 'deny-ddl'), 'it is the example policy');
    const sidecarYaml = configMap.data?.['sidecar.yaml'];
    assert.ok(sidecarYaml !== undefined, 'the ConfigMap has sidecar.yaml');
    assert.equal((parse(sidecarYaml) as { policyFile?: string }).policyFile, '/etc/custos/policy/policy.yaml');
  });

  it('stops everything on Ctrl-C (SIGINT) and exits 0', async () => {
    // The operator processes it started, so we can check they went with it.
    const children = (await readFile(`/proc/${String(child.pid)}/task/${String(child.pid)}/children`, 'utf8')).split(' ').filter((p) => p !== '').map(Number);
    assert.ok(children.length > 0, 'the operator runs as a child process');
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (code, signal) => { resolve([code, signal]); }));
    child.kill('SIGINT');
    const [code, signal] = await exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, output.slice(-4000));
    assert.match(output, /^stopping/m);
    const alive = children.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    assert.deepEqual(alive, [], 'no operator outlives npm run cluster');
    const r = await kubectl.run(['get', 'namespaces', '--request-timeout=5s']);
    assert.notEqual(r.code, 0, 'the API server is gone');
    assert.match(r.stderr, /refused/);
  });
});
