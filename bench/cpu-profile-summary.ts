// Summarises a V8 .cpuprofile (node --cpu-prof) as text: self time by function, self time by
// source (repository file, npm package, Node internals, GC), and inclusive time of the repository's
// own functions. Used to attribute the sidecar's cost per transaction in docs/benchmarks.md.
//
//   node bench/cpu-profile-summary.ts FILE.cpuprofile [--top 25]
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../test/harness/custos-stack.ts';

interface CallFrame { readonly functionName: string; readonly url: string; readonly lineNumber: number }
interface ProfileNode { readonly id: number; readonly callFrame: CallFrame; readonly children?: readonly number[] }
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

function sourceOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0] ?? ''}`;
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    return `npm:${rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? '')}`;
  }
  return path.startsWith(REPO_ROOT) ? path.slice(REPO_ROOT.length) : path;
}

function label(frame: CallFrame): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  return frame.url === '' ? name : `${name} ${sourceOf(frame.url, name)}:${frame.lineNumber + 1}`;
}

function top(map: ReadonlyMap<string, number>, n: number, totalUs: number): string[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, us]) => `${((us / totalUs) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { top: { type: 'string' } } });
  const file = positionals[0];
  if (file === undefined) {
    process.stderr.write('usage: node bench/cpu-profile-summary.ts FILE.cpuprofile [--top N]\n');
    return 2;
  }
  const n = Number(values.top ?? 25);
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const c of node.children ?? []) parent.set(c, node.id);

  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => { selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)); });
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const idleUs = [...selfUs.entries()].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, us]) => a + us, 0);
  const busyUs = totalUs - idleUs;

  const selfByFunction = new Map<string, number>();
  const selfBySource = new Map<string, number>();
  const inclusiveRepo = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined || node.callFrame.functionName === '(idle)') continue;
    const key = label(node.callFrame);
    selfByFunction.set(key, (selfByFunction.get(key) ?? 0) + us);
    const src = sourceOf(node.callFrame.url, node.callFrame.functionName);
    selfBySource.set(src, (selfBySource.get(src) ?? 0) + us);
    // Inclusive: charge every distinct repository function on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur)?.callFrame;
      if (frame === undefined) continue;
      const path = frame.url.replace(/^file:\/\//, '');
      if (!path.startsWith(REPO_ROOT) || path.includes('/node_modules/')) continue;
      const k = label(frame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusiveRepo.set(k, (inclusiveRepo.get(k) ?? 0) + us);
    }
  }

  const wall = (profile.endTime - profile.startTime) / 1e6;
  process.stdout.write([
    `profile ${file}: ${wall.toFixed(1)} s wall, ${(busyUs / 1e6).toFixed(2)} s on the main thread (${((busyUs / totalUs) * 100).toFixed(0)} % busy); percentages of busy time`,
    '',
    'self time by source:',
    ...top(selfBySource, n, busyUs),
    '',
    'self time by function:',
    ...top(selfByFunction, n, busyUs),
    '',
    'inclusive time of repository functions:',
    ...top(inclusiveRepo, n, busyUs),
    '',
  ].join('\n'));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    process.stderr.write(`cpu-profile-summary: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
