#!/usr/bin/env node
// The `kubectl custos` plugin: kubectl runs the first `kubectl-custos` on PATH with the arguments
// that follow `kubectl custos`. The commands live in cli/commands/kubectl-custos/.
import { runKubectlCustos } from './commands/kubectl-custos/main.ts';

process.exitCode = await runKubectlCustos(process.argv.slice(2));
