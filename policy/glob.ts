// Shell-style patterns compiled once to anchored regular expressions. Every other character is
// literal (escaped), so a pattern can never smuggle in regular-expression syntax.

const REGEXP_SPECIAL = /[\\^$.*+?()[\]{}|/]/g;

export interface GlobOptions {
  /** `?` matches exactly one character (claims); otherwise it is literal (object names). */
  readonly question: boolean;
}

/** A matcher for one pattern: exact comparison when it has no wildcard. */
export type StringMatcher = (value: string) => boolean;

export function compileGlob(pattern: string, options: GlobOptions): StringMatcher {
  const wild = options.question ? /[*?]/ : /\*/;
  if (!wild.test(pattern)) return (value) => value === pattern;
  let source = '^';
  for (const ch of pattern) {
    if (ch === '*') source += '[\\s\\S]*';
    else if (ch === '?' && options.question) source += '[\\s\\S]';
    else source += ch.replace(REGEXP_SPECIAL, '\\$&');
  }
  const re = new RegExp(`${source}$`, 'u');
  return (value) => re.test(value);
}
