// pino JSON logs with credentials redacted by path. Redaction is the second line of defence: the
// first is never putting a password, token or statement literal into a log object at all.
import { pino, type Logger } from 'pino';

export const REDACTED_PATHS = [
  'password', '*.password', 'token', '*.token', 'authorization', '*.authorization',
  'headers.authorization', 'secret', '*.secret', 'credentials', '*.credentials', 'jwt', '*.jwt',
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { component: 'custos' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
