// What the plugin's commands touch besides the API server, passed in (the real process's by
// default) so that the commands themselves are plain functions over their inputs.
export interface PluginIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly now: () => Date;
  /** The terminal's width when stdout is a terminal; undefined when it is a pipe or a file. */
  readonly columns: number | undefined;
}

export const processIo: PluginIo = {
  stdout: (text) => { process.stdout.write(text); },
  stderr: (text) => { process.stderr.write(text); },
  now: () => new Date(),
  columns: process.stdout.isTTY ? process.stdout.columns : undefined,
};
