// `kubectl custos …` from arguments to exit code: parses, connects as kubectl would, runs the
// command, and turns every failure into one `error: …` line on stderr. Exit codes: 0 done,
// 1 refused or failed, 2 usage (the usage follows the error).
import { printable } from '../approvals.ts';
import { parseInvocation, USAGE, UsageError } from './arguments.ts';
import type { Cluster, ClusterOptions } from './cluster.ts';
import { runDescribe } from './describe.ts';
import { runRequests } from './inbox.ts';
import { ApiServerError, ConnectionError, LocalRefusal } from './errors.ts';
import { processIo, type PluginIo } from './io.ts';
import { runReview } from './review.ts';

/** client-node takes seconds to load: help and usage errors answer without it. */
async function connectWithClientNode(options: ClusterOptions): Promise<Cluster> {
  const { connect } = await import('./cluster.ts');
  return connect(options);
}

export async function runKubectlCustos(
  args: readonly string[], io: PluginIo = processIo, connectTo: (options: ClusterOptions) => Cluster | Promise<Cluster> = connectWithClientNode,
): Promise<number> {
  try {
    const invocation = parseInvocation(args);
    if (invocation.command === 'help') {
      io.stdout(USAGE);
      return 0;
    }
    const { connection } = invocation;
    const cluster = await connectTo({ kubeconfig: connection.kubeconfig, context: connection.context });
    const namespace = connection.namespace ?? cluster.defaultNamespace;
    switch (invocation.command) {
      case 'requests':
        return await runRequests(cluster, invocation.allNamespaces ? undefined : namespace, invocation.allPhases, io);
      case 'describe':
        return await runDescribe(cluster, namespace, invocation.name, io);
      case 'approve':
      case 'deny':
        return await runReview(cluster, {
          namespace, namespaceGiven: connection.namespace !== undefined, name: invocation.name, decision: invocation.command, reason: invocation.reason,
        }, io);
    }
  } catch (e: unknown) {
    if (e instanceof UsageError) {
      io.stderr(`error: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    // The API server's Status message as it sent it (the review webhook explains its refusals
    // there), only with control and bidi characters made harmless.
    if (e instanceof ApiServerError || e instanceof LocalRefusal || e instanceof ConnectionError) {
      io.stderr(`error: ${printable(e.message, Number.MAX_SAFE_INTEGER)}\n`);
      return 1;
    }
    io.stderr(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
