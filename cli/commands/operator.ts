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
  let operator;
  try {
    operator = await startOperator(config, logger);
  } catch (e: unknown) {
    // startOperator has already undone what it started; exit rather than linger half-started
    // (a restart by the kubelet is the recovery).
    logger.fatal({ err: e instanceof Error ? e.message : String(e) }, 'custos operator failed to start');
    process.exit(1);
  }
  await runUntilSignal(logger, () => operator.stop());
  return 0;
}
