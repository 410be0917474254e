// Builds the SO_ORIGINAL_DST addon (original_dst.cc) with node-gyp; run by the root package's
// `install` script, so by every `npm ci` / `npm install` of this repository and by an image build
// (reference/kubernetes.md §8: build at install or image build time, never at sidecar start-up).
//
// It must never fail the install: a machine without a compiler, python3 or Node headers still gets
// a working checkout, and the sidecar then runs in explicit mode (originalDestinationAvailable()
// in sidecar/original-destination.ts reports why, loudly). So every failure here prints one
// warning block and exits 0. The package.json script adds `|| echo ...` for the one failure this
// file cannot catch itself: being run by a Node without type stripping.
//
// node-gyp: the project's own (devDependency) when installed, else the one npm ships and names in
// $npm_config_node_gyp (an `npm ci --omit=dev` image build). Headers: node-gyp reads
// $npm_config_nodedir when npm is configured with one; otherwise the first local Node header
// directory found is passed, because node-gyp would try to download headers, and no download
// happens here. Node-API is ABI-stable, so headers of another Node major build a binary that loads
// in Node 24 (checked below by loading it, and by test/original-destination.test.ts).
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..', '..');
const ADDON = join(HERE, 'build', 'Release', 'original_dst.node');
const BUILD_TIMEOUT_MS = 5 * 60_000;

function warn(reason: string): void {
  const bar = '!'.repeat(100);
  process.stderr.write(
    `\n${bar}\n` +
      `custos: WARNING: the SO_ORIGINAL_DST addon (sidecar/native/original-dst) was NOT built: ${reason}\n` +
      'custos: transparent interception cannot tell where a redirected connection was going, so the sidecar\n' +
      'custos: will run in EXPLICIT mode only (clients must address it directly). The install goes on.\n' +
      'custos: To fix: install python3, make and g++ and Node headers (npm config nodedir), then `npm rebuild` or\n' +
      `custos:   node ${join('sidecar', 'native', 'original-dst', 'build.ts')}\n` +
      `${bar}\n\n`,
  );
}

function findNodeGyp(): string | undefined {
  try {
    return createRequire(join(ROOT, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    const fromNpm = process.env['npm_config_node_gyp'];
    return fromNpm !== undefined && fromNpm !== '' && existsSync(fromNpm) ? fromNpm : undefined;
  }
}

/** A Node header directory to pass as --nodedir when npm has none configured. */
function findNodeDir(): string | undefined {
  const configured = process.env['npm_config_nodedir'];
  if (configured !== undefined && configured !== '') return undefined; // node-gyp reads it itself
  const candidates = [join(dirname(process.execPath), '..'), '/usr/local', '/usr'];
  return candidates.find((dir) => existsSync(join(dir, 'include', 'node', 'node_api.h')));
}

function build(): string | undefined {
  if (process.platform !== 'linux') return `SO_ORIGINAL_DST exists only on Linux (this is ${process.platform})`;
  const nodeGyp = findNodeGyp();
  if (nodeGyp === undefined) return 'node-gyp was not found (neither the node-gyp package nor $npm_config_node_gyp)';
  const nodeDir = findNodeDir();
  rmSync(ADDON, { force: true }); // a stale binary must not pass for a fresh build
  const args = [nodeGyp, 'rebuild', '--loglevel=warn', '--directory', HERE, ...(nodeDir === undefined ? [] : ['--nodedir', nodeDir])];
  const env = { ...process.env };
  if (env['npm_config_nodedir'] === '') delete env['npm_config_nodedir']; // node-gyp would take '' over --nodedir
  const result = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], timeout: BUILD_TIMEOUT_MS, env });
  if (result.error !== undefined) return `node-gyp could not run: ${result.error.message}`;
  if (result.status !== 0) return `node-gyp rebuild exited with ${result.status ?? result.signal ?? 'unknown'} (its output is above)`;
  if (!existsSync(ADDON)) return `node-gyp succeeded but ${ADDON} is missing`;
  try {
    const addon = createRequire(import.meta.url)(ADDON) as { originalDestination?: unknown };
    if (typeof addon.originalDestination !== 'function') return `${ADDON} does not export originalDestination`;
  } catch (e) {
    rmSync(ADDON, { force: true });
    return `the built addon does not load in Node ${process.version}: ${e instanceof Error ? e.message : String(e)}`;
  }
  return undefined;
}

let problem: string | undefined;
try {
  problem = build();
} catch (e) {
  problem = `unexpected error: ${e instanceof Error ? e.message : String(e)}`;
}
if (problem === undefined) {
  process.stdout.write(`custos: built ${ADDON} (Node ${process.version}, Node-API)\n`);
} else {
  warn(problem);
}
process.exitCode = 0;
