// The command line of `kubectl custos`, pure: the subcommand, kubectl's usual flags (-n, -A,
// --kubeconfig, --context) and each subcommand's own. kubectl hands a plugin every argument after
// its name untouched, so these are parsed here exactly as a kubectl user types them.
import { parseArgs } from 'node:util';
import { width } from './format.ts';

export const USAGE = `kubectl custos: review Custos access requests (AccessRequests) as the API server authenticates you.

usage:
  kubectl custos requests [-n NAMESPACE | -A] [--all]
  kubectl custos describe NAME [-n NAMESPACE]
  kubectl custos approve NAME --reason TEXT [-n NAMESPACE]
  kubectl custos deny NAME --reason TEXT [-n NAMESPACE]
  kubectl custos help

commands:
  requests    the inbox: pending requests, oldest first (--all: every phase)
  describe    what a request asks, who may review it, and the reviews it has
  approve     approve a pending request; the API server records you as its reviewer
  deny        deny a pending request; one counted denial ends it

flags:
  -n, --namespace NAMESPACE   the requests' namespace (default: the context's, else "default")
  -A, --all-namespaces        requests: every namespace
      --all                   requests: every phase, not only the pending ones
      --reason TEXT           approve, deny: why you decide so (required, at most 1024 characters;
                              recorded in the audit trail)
      --kubeconfig FILE       the kubeconfig file (default: KUBECONFIG, else ~/.kube/config)
      --context NAME          the kubeconfig context
  -h, --help                  this help

Exit codes: 0 done, 1 refused or failed (the message says why), 2 usage.
`;

export const MAX_REASON_LENGTH = 1024;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Connection {
  readonly kubeconfig: string | undefined;
  readonly context: string | undefined;
  /** -n/--namespace as given; undefined means the context's namespace. */
  readonly namespace: string | undefined;
}

export type Invocation =
  | { readonly command: 'help' }
  | { readonly command: 'requests'; readonly connection: Connection; readonly allNamespaces: boolean; readonly allPhases: boolean }
  | { readonly command: 'describe'; readonly connection: Connection; readonly name: string }
  | { readonly command: 'approve' | 'deny'; readonly connection: Connection; readonly name: string; readonly reason: string };

const OPTIONS = {
  namespace: { type: 'string', short: 'n' },
  'all-namespaces': { type: 'boolean', short: 'A' },
  all: { type: 'boolean' },
  reason: { type: 'string' },
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Forms kubectl accepts for one object: NAME, or TYPE/NAME with any name of the AccessRequest kind. */
const REQUEST_TYPES = new Set(['ar', 'accessrequest', 'accessrequests', 'accessrequest.custos.io', 'accessrequests.custos.io']);

function requestName(positionals: readonly string[], command: string): string {
  const [given, ...extra] = positionals;
  if (given === undefined) throw new UsageError(`${command} needs the name of an AccessRequest (see kubectl custos requests)`);
  if (extra.length > 0) throw new UsageError(`${command} takes one AccessRequest name, not also ${JSON.stringify(extra.join(' '))}`);
  const slash = given.indexOf('/');
  const name = slash === -1 ? given : given.slice(slash + 1);
  if (slash !== -1 && !REQUEST_TYPES.has(given.slice(0, slash).toLowerCase())) {
    throw new UsageError(`${JSON.stringify(given)} does not name an AccessRequest (use NAME or ar/NAME)`);
  }
  if (name === '') throw new UsageError(`${command} needs the name of an AccessRequest`);
  return name;
}

/** The invocation `args` (everything after `kubectl custos`) asks for; throws UsageError. */
export function parseInvocation(args: readonly string[]): Invocation {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e: unknown) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help === true || command === undefined || command === 'help') {
    if (command === undefined && values.help !== true) throw new UsageError('missing command');
    return { command: 'help' };
  }
  const connection: Connection = { kubeconfig: values.kubeconfig, context: values.context, namespace: values.namespace };
  if (connection.namespace === '') throw new UsageError('-n/--namespace needs a namespace');
  const onlyFor = (flag: string, set: boolean, commands: string): void => {
    if (set) throw new UsageError(`${flag} applies to ${commands} only, not to ${command}`);
  };
  switch (command) {
    case 'requests':
      if (rest.length > 0) throw new UsageError(`requests takes no arguments, not ${JSON.stringify(rest.join(' '))}`);
      onlyFor('--reason', values.reason !== undefined, 'approve and deny');
      return { command, connection, allNamespaces: values['all-namespaces'] === true, allPhases: values.all === true };
    case 'describe':
      onlyFor('--reason', values.reason !== undefined, 'approve and deny');
      onlyFor('-A/--all-namespaces', values['all-namespaces'] !== undefined, 'requests');
      onlyFor('--all', values.all !== undefined, 'requests');
      return { command, connection, name: requestName(rest, command) };
    case 'approve':
    case 'deny': {
      onlyFor('-A/--all-namespaces', values['all-namespaces'] !== undefined, 'requests');
      onlyFor('--all', values.all !== undefined, 'requests');
      const name = requestName(rest, command);
      const reason = values.reason?.trim() ?? '';
      if (reason === '') throw new UsageError(`${command} needs --reason TEXT: say why you ${command} (it is recorded in the audit trail)`);
      if (width(reason) > MAX_REASON_LENGTH) throw new UsageError(`--reason is ${width(reason)} characters long; at most ${MAX_REASON_LENGTH}`);
      return { command, connection, name, reason };
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}
