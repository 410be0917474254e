// Images → local programs. A container runtime would pull the image and run its ENTRYPOINT/CMD;
// the pod runner looks the image up in a table the test supplies instead. The command line then
// follows Kubernetes' rules (https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/#notes):
// `command` replaces the entrypoint, `args` replace the image's cmd, and $(VAR) in either expands
// from the container's environment.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expandReferences } from './env.ts';
import type { Container } from './pod-spec.ts';

export interface ImageFixture {
  /** The image's ENTRYPOINT, e.g. [node, 'cli/custos.ts']. */
  readonly entrypoint?: readonly string[];
  /** The image's CMD. */
  readonly cmd?: readonly string[];
  /** The image's WORKDIR (default: /). */
  readonly workingDir?: string;
  /** The image's ENV, under the container's own. */
  readonly env?: Readonly<Record<string, string>>;
}

export type ImageTable = Readonly<Record<string, ImageFixture>>;

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The Custos image: the project's own `custos` entry point on the Node that runs the tests. */
export function custosImage(): ImageFixture {
  return { entrypoint: [process.execPath, join(REPO_ROOT, 'cli', 'custos.ts')], workingDir: REPO_ROOT };
}

/** The fixture for `image`: an exact match first, then the repository without its tag or digest. */
export function findImage(images: ImageTable, image: string): ImageFixture | undefined {
  if (Object.hasOwn(images, image)) return images[image];
  const repository = image.replace(/@.*$/, '').replace(/:[^/:]+$/, '');
  return Object.hasOwn(images, repository) ? images[repository] : undefined;
}

export function commandLine(container: Container, image: ImageFixture, env: ReadonlyMap<string, string>): string[] {
  const entrypoint = container.command ?? image.entrypoint ?? [];
  const args = container.command !== undefined ? container.args ?? [] : container.args ?? image.cmd ?? [];
  const argv = [...entrypoint, ...args].map((a) => expandReferences(a, env));
  if (argv.length === 0) throw new Error(`container ${container.name}: no command specified (the image has no entrypoint and the container gives none)`);
  return argv;
}
