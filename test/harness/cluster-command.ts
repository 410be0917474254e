// `npm run cluster`: a local Custos "cluster" in the foreground, for trying Custos with kubectl
// without a real cluster — the Kubernetes API double, the chart applied with the real helm and
// kubectl, and the operator (controller + webhook). Prints a kubeconfig path and what to try.
// Ctrl-C stops everything. Options: --port N (API port, default 6443), --dir DIR (kubeconfig home).
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { kubeTools } from './kube-tools.ts';
import { RELEASE_NAMESPACE, startLocalCluster } from './local-cluster.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '6443' }, dir: { type: 'string', default: '.custos-cluster' } }, strict: true });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: ${values.port} is not a TCP port`);
  const dir = resolve(values.dir);
  await mkdir(dir, { recursive: true });
  process.stdout.write('starting the Kubernetes API double, installing the chart, starting the operator…\n');
  const cluster = await startLocalCluster({ dir, ...(port === 0 ? {} : { apiPort: port }) });
  const { kubectl } = await kubeTools();
  process.stdout.write(`
Custos local cluster is up: API ${cluster.api.url}, chart installed in ${RELEASE_NAMESPACE}, operator ${cluster.operators.map((o) => o.name).join(', ')}.

  export KUBECONFIG=${cluster.kubeconfig}
  alias kubectl=${kubectl}        # the kubectl 1.35 the tests use (any kubectl works)

Try (README "Try the operator locally"):
  kubectl create namespace payments
  kubectl label namespace payments custos.io/injection=enabled
  kubectl apply -f examples/policy.yaml
  kubectl get accesspolicies -n payments
  kubectl run billing -n payments --image=ghcr.io/acme/billing:1 --labels=custos.io/policy=billing
  kubectl get pod billing -n payments -o jsonpath='{.spec.initContainers[*].name}'

No kubelet runs here (issue 6 adds the pod runner): pods are stored, injected and counted, not started.
Ctrl-C stops the cluster.
`);
  await new Promise<void>((resolveStop) => {
    process.once('SIGINT', () => { resolveStop(); });
    process.once('SIGTERM', () => { resolveStop(); });
  });
  process.stdout.write('stopping…\n');
  await cluster.stop();
}

main().catch((e: unknown) => {
  process.stderr.write(`npm run cluster: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
