// Thin adapter used by `custos init`: reads the nat table, applies the document built by
// iptables-rules.ts in one atomic `iptables-restore --noflush` (or ip6tables-restore) call, reads
// the table back and fails when it is not what was generated (reference/kubernetes.md §7, "Verify").
// All decisions live in the pure module; this file only runs the binaries.
import { spawn } from 'node:child_process';
import { CustosError } from '../../lib/errors.ts';
import { buildInterceptionRules, verifyInstalledRules, type AddressFamily, type InterceptionInput } from './iptables-rules.ts';

/** Runs a command with `stdin`, resolves its stdout, rejects when it exits non-zero. */
export type CommandRunner = (command: string, args: readonly string[], stdin?: string) => Promise<string>;

export interface ApplyOptions {
  /** Default: spawn the binaries directly. Tests wrap them, e.g. in `ip netns exec NS`. */
  readonly run?: CommandRunner;
  /** Default per family: iptables-save/-restore or ip6tables-save/-restore (the backend's alternatives). */
  readonly commands?: { readonly save: string; readonly restore: string };
  /** `-w`: seconds to wait for the xtables lock (default 5). */
  readonly waitSeconds?: number;
}

export interface ApplyResult {
  /** The restore document that was applied. */
  readonly document: string;
  /** The nat table as read back after applying. */
  readonly natTable: string;
}

export function defaultCommands(family: AddressFamily): { save: string; restore: string } {
  return family === 'ipv4' ? { save: 'iptables-save', restore: 'iptables-restore' } : { save: 'ip6tables-save', restore: 'ip6tables-restore' };
}

export const spawnRunner: CommandRunner = (command, args, stdin) =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.stdin.on('error', () => undefined); // EPIPE when the binary exits without reading
    child.once('close', (code, signal) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal ?? 'unknown'}: ${stderr.trim()}`));
    });
    child.stdin.end(stdin ?? '');
  });

/**
 * Installs the interception rules for one family. Safe to run again: the chain is replaced and the
 * OUTPUT jump is installed once (see iptables-rules.ts). Throws CustosError ERR_INTERCEPTION_INVALID
 * (input), ERR_INTERCEPTION_APPLY (a binary failed) or ERR_INTERCEPTION_VERIFY (read-back mismatch).
 */
export async function applyInterceptionRules(input: Omit<InterceptionInput, 'currentNatTable'>, options: ApplyOptions = {}): Promise<ApplyResult> {
  const run = options.run ?? spawnRunner;
  const { save, restore } = options.commands ?? defaultCommands(input.family);
  const wait = String(options.waitSeconds ?? 5);
  const attempt = async (command: string, args: readonly string[], stdin?: string): Promise<string> => {
    try {
      return await run(command, args, stdin);
    } catch (e) {
      throw new CustosError('ERR_INTERCEPTION_APPLY', `${input.family} interception: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  };
  const before = await attempt(save, ['-t', 'nat']);
  const document = buildInterceptionRules({ ...input, currentNatTable: before });
  await attempt(restore, ['--noflush', '-w', wait], document);
  const natTable = await attempt(save, ['-t', 'nat']);
  const problems = verifyInstalledRules(input, natTable);
  if (problems.length > 0) {
    throw new CustosError('ERR_INTERCEPTION_VERIFY', `${input.family} interception rules read back from ${save} differ from what was applied: ${problems.join('; ')}`);
  }
  return { document, natTable };
}
