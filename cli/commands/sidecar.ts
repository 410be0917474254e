// `custos sidecar --config FILE`: runs the data path until SIGTERM, then drains gracefully.
import { parseArgs } from 'node:util';
import { loadSidecarConfig } from '../../sidecar/config.ts';
import { createLogger } from '../../sidecar/logger.ts';
import { runUntilSignal } from '../run-until-signal.ts';
import { startSidecar } from '../../sidecar/main.ts';

export async function runSidecar(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  if (values.config === undefined) {
    process.stderr.write('custos sidecar: --config FILE is required\n');
    return 2;
  }
  const config = await loadSidecarConfig(values.config);
  const logger = createLogger(config.logLevel);
  const sidecar = await startSidecar(config, logger);
  logger.info({ http: sidecar.ops.port }, 'custos sidecar ready');
  await runUntilSignal(logger, () => sidecar.drain());
  return 0;
}
