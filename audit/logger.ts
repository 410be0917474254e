// The slice of a pino logger the audit code uses, so callers pass a pino child logger and tests
// pass nothing. The audit path never writes to stdout itself.
export interface AuditLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const noop = (): void => undefined;

export const silentLogger: AuditLogger = { debug: noop, info: noop, warn: noop, error: noop };
