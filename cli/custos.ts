#!/usr/bin/env node
// The `custos` command. Subcommands live in cli/commands/; this file only dispatches.
import { runApprovals } from './commands/approvals.ts';
import { runAuditTail } from './commands/audit-tail.ts';
import { runAuditVerify } from './commands/audit-verify.ts';
import { runDemo } from './commands/demo.ts';
import { runInit } from './commands/init.ts';
import { runOperator } from './commands/operator.ts';
import { runPolicyCheck } from './commands/policy-check.ts';
import { runSidecar } from './commands/sidecar.ts';
import { isCustosError } from '../lib/errors.ts';

const USAGE = `usage: custos <command> [options]

commands:
  sidecar --config FILE                 run the data-path sidecar
  operator                              run the control plane (controller + mutating webhook),
                                        configured by CUSTOS_* environment variables (the chart)
  init [--dry-run]                      install the interception rules of CUSTOS_INTERCEPTION (the
                                        custos-init container); --dry-run prints them instead
  policy check --policy FILE [--identity JSON] [--target NAME] [--search-path a,b] [--sql TEXT]
                                        print the decision for a statement as JSON; without --sql,
                                        read JSON lines {"sql","identity","target"} on stdin
  audit tail [--spool DIR | --redis URL [--pod UID]] [--follow] [--json] [-n N]
                                        show audit events from the local spool or the Redis stream
  audit verify [--spool DIR | --redis URL --pod UID]
                                        check sequence numbers and hash chains
  approvals list|describe ID|approve ID|deny ID --redis URL [--reason TEXT] [--token-file FILE]
                                        review just-in-time approval requests (local mode); the
                                        reviewer token may also come from CUSTOS_REVIEWER_TOKEN
  demo [--walkthrough-only]             run the embedded demo (PGlite behind a Custos sidecar)
`;

async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  switch (command) {
    case 'sidecar':
      return runSidecar(argv.slice(1));
    case 'operator':
      return runOperator(argv.slice(1));
    case 'init':
      return runInit(argv.slice(1));
    case 'policy':
      if (sub === 'check') return runPolicyCheck(rest);
      break;
    case 'audit':
      if (sub === 'tail') return runAuditTail(rest);
      if (sub === 'verify') return runAuditVerify(rest);
      break;
    case 'approvals':
      return runApprovals(argv.slice(1));
    case 'demo':
      return runDemo(argv.slice(1));
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      break;
  }
  process.stderr.write(`custos: unknown command "${argv.join(' ')}"\n\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    process.stderr.write(`custos: ${isCustosError(e) ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
