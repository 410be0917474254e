// `custos operator`: the control plane (controller + webhook), configured from the environment the
// chart sets (operator/operator-config.ts); runs until SIGTERM, then releases the Lease and drains.
import { hostname } from 'node:os';
import { readOperatorConfig } from '../../operator/operator-config.ts';
import { startOperator } from '../../operator/main.ts';
import { createLogger } from '../../sidecar/logger.ts';
import { runUntilSignal } from '../run-until-signal.ts';

export async function runOperator(args: string[]): Promise<number> {
  if (args.length > 0) {
    process.stderr.write(`custos operator: takes no arguments (configuration comes from CUSTOS_* environment variables), got "${args.join(' ')}"\n`);
    return 2;
  }
  const config = readOperatorConfig(process.env, { hostname: hostname() });
  const logger = createLogger(config.logLevel);
  const operator = await startOperator(config, logger);
  await runUntilSignal(logger, () => operator.stop());
  return 0;
}
