// SET / RESET as facts, and the settings that would make later analysis wrong.
//
// The parser lexes with standard_conforming_strings = on and reads UTF-8. A session that turns the
// former off makes the server read `'a\'...'` differently from the policy (a string literal that
// swallows, or releases, a `; DROP ...`); a non-UTF-8 client_encoding does the same with bytes.
// Such a SET is opaque: after it, the text no longer tells what the server will run.
import type { SettingChange } from '../types.ts';
import { type AstObject, constantValue, listField, nodeOf, stringField } from './ast.ts';

const TRUE_WORDS = new Set(['on', 'true', 'yes', '1', 't', 'y']);
/** Encodings whose names PostgreSQL cleans (non-alphanumerics dropped, case folded) to UTF-8. */
const UTF8_NAMES = new Set(['utf8', 'unicode']);

/** Settings whose value decides how later text is read or names are resolved. */
export const ANALYSIS_SETTINGS: ReadonlySet<string> = new Set(['standard_conforming_strings', 'client_encoding', 'search_path', 'backslash_quote']);

export function settingOfVariableSet(node: AstObject): { change: SettingChange; opaque: boolean } {
  const kind = stringField(node, 'kind');
  const local = node['is_local'] === true;
  if (kind === 'VAR_RESET_ALL') return { change: { name: 'all', value: null, local }, opaque: false };
  const name = (stringField(node, 'name') ?? '').toLowerCase();
  if (kind !== 'VAR_SET_VALUE') return { change: { name, value: null, local }, opaque: false };
  // Each argument is one value exactly as written (identifiers already case-folded by the parser);
  // for list settings such as search_path the server quotes each one as an identifier.
  const value = listField(node, 'args').map((arg) => {
    const c = nodeOf(arg, 'A_Const');
    const v = c === undefined ? undefined : constantValue(c);
    return v === undefined || v === null ? '' : String(v);
  });
  return { change: { name, value, local }, opaque: breaksAnalysis(name, value) };
}

function breaksAnalysis(name: string, value: readonly string[]): boolean {
  switch (name) {
    case 'standard_conforming_strings':
      return !(value.length === 1 && TRUE_WORDS.has((value[0] ?? '').toLowerCase()));
    case 'client_encoding':
      return !(value.length === 1 && UTF8_NAMES.has((value[0] ?? '').toLowerCase().replace(/[^a-z0-9]/g, '')));
    default:
      return false;
  }
}
