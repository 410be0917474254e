// Why a `kubectl custos` command failed, by who decided it: the API server (its Status message,
// verbatim), the plugin itself before sending anything, or no answer at all. Each is one
// `error: …` line and exit code 1 (cli/commands/kubectl-custos/main.ts).

/** The API server answered with an error: `message` is its Status message, verbatim. */
export class ApiServerError extends Error {
  readonly status: number;
  readonly reason: string;

  constructor(status: number, reason: string, message: string) {
    super(message);
    this.name = 'ApiServerError';
    this.status = status;
    this.reason = reason;
  }
}

/** No usable answer: no kubeconfig, an unknown context, the server unreachable. */
export class ConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConnectionError';
  }
}

/** A refusal decided before anything is sent (a decided or expired request): exit 1, no usage. */
export class LocalRefusal extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LocalRefusal';
  }
}
