// Long-running commands (sidecar, operator) run until SIGTERM or SIGINT, then stop gracefully once:
// a second signal during shutdown is ignored rather than cutting the drain short.
import type { Logger } from 'pino';

export async function runUntilSignal(logger: Logger, shutdown: () => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'shutting down');
      shutdown().then(resolve, (e: unknown) => {
        logger.error({ err: String(e) }, 'shutdown failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => { stop('SIGTERM'); });
    process.once('SIGINT', () => { stop('SIGINT'); });
  });
}
