// One base error class with a stable, machine-readable code (after undici's lib/core/errors.js).
// Chain causes with `{ cause }`; catch as `unknown` and narrow with `isCustosError`.

export class CustosError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CustosError';
    this.code = code;
  }
}

export function isCustosError(e: unknown, code?: string): e is CustosError {
  return e instanceof CustosError && (code === undefined || e.code === code);
}
