// Value detectors (pure): find sensitive values in free text, the backstop for everything that
// column provenance cannot see (expressions, notices, errors, notifications, reported parameters;
// reference §11, §15.2). A bare pattern is weak evidence, so each detector validates its
// candidates beyond the regular expression (Luhn, IBAN mod-97, SSN exclusions, JWT header, octet
// ranges), as Presidio's recognizers do, to keep false positives low. Spans are UTF-16 offsets
// into the scanned string, sorted and non-overlapping per detector.
import { CustosError } from '../../lib/errors.ts';

export interface Span {
  readonly start: number;
  readonly end: number;
}

export type BuiltinDetectorType =
  | 'email' | 'payment-card' | 'us-ssn' | 'iban' | 'phone' | 'jwt' | 'cloud-access-key'
  | 'generic-secret' | 'ipv4' | 'ipv6';

export type DetectorType = BuiltinDetectorType | 'custom';

export const DETECTOR_TYPES: readonly DetectorType[] = [
  'email', 'payment-card', 'us-ssn', 'iban', 'phone', 'jwt', 'cloud-access-key', 'generic-secret', 'ipv4', 'ipv6', 'custom',
];

/** A compiled finder; compile-masking.ts adds the name and the strategy. */
export interface ValueFinder {
  readonly type: DetectorType;
  find(text: string): Span[];
}

/** A custom pattern that cannot be used (does not compile, or matches the empty string). */
export class DetectorPatternError extends CustosError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_MASKING_DETECTOR_PATTERN', message, options);
    this.name = 'DetectorPatternError';
  }
}

/** Creates a finder; `pattern` is required for (and only used by) `custom`. */
export function createDetector(type: DetectorType, options: { readonly pattern?: string } = {}): ValueFinder {
  if (type === 'custom') return customFinder(options.pattern);
  const find = BUILTIN[type];
  return { type, find };
}

// ---------------------------------------------------------------------------------------------
// Candidate scanning

/** A candidate regex (global; with `d` when a group marks the sensitive part) and its validator. */
interface Rule {
  readonly re: RegExp;
  /** Returns the span to mask for a match, or null to reject it. Default: the whole match. */
  readonly accept?: (m: RegExpExecArray) => Span | null;
}

function scan(text: string, rules: readonly Rule[]): Span[] {
  const spans: Span[] = [];
  for (const rule of rules) {
    // A fresh lastIndex per call: finders are shared between sessions.
    const re = new RegExp(rule.re.source, rule.re.flags);
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m[0] === '') {
        re.lastIndex++;
        continue;
      }
      const span = rule.accept === undefined ? { start: m.index, end: m.index + m[0].length } : rule.accept(m);
      if (span !== null && span.end > span.start) spans.push(span);
    }
  }
  return normalise(spans);
}

/** Sorts spans and merges overlapping or touching ones. */
export function normalise(spans: readonly Span[]): Span[] {
  const sorted = [...spans].sort((a, b) => a.start - b.start || b.end - a.end);
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && s.start <= last.end) {
      if (s.end > last.end) out[out.length - 1] = { start: last.start, end: s.end };
    } else {
      out.push(s);
    }
  }
  return out;
}

function whole(m: RegExpExecArray): Span {
  return { start: m.index, end: m.index + m[0].length };
}

/** The span of the first capture group that took part in the match (needs the `d` flag). */
function firstGroup(m: RegExpExecArray): Span | null {
  const indices = m.indices;
  if (indices === undefined) return null;
  for (let i = 1; i < indices.length; i++) {
    const range = indices[i];
    if (range !== undefined) return { start: range[0], end: range[1] };
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// email: local@domain.tld (RFC 5322 dot-atom subset as Presidio accepts it; Unicode letters for
// internationalised addresses). Limits from RFC 5321 §4.5.3.1: local part 64, domain 255.

const EMAIL: Rule = {
  re: /(?<![\p{L}\p{N}._%+-])[\p{L}\p{N}_%+-]+(?:\.[\p{L}\p{N}_%+-]+)*@(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?\.)+\p{L}{2,63}(?![\p{L}\p{N}_-]|\.[\p{L}\p{N}])/gu,
  accept: (m) => {
    const at = m[0].lastIndexOf('@');
    return at <= 64 && m[0].length - at - 1 <= 253 ? whole(m) : null;
  },
};

// ---------------------------------------------------------------------------------------------
// payment card: 13–19 digits, groups separated by one space or dash, Luhn-valid, issuer
// identification number starting 2–6 (Mastercard, Amex/Diners/JCB, Visa, Mastercard/Maestro,
// Discover/UnionPay). A run of grouped digits may hold a card among other numbers, so every
// sequence of whole groups is tried, longest first.

const DIGIT_RUN = /(?<![\p{L}\p{N}_])\d+(?:[ -]\d+)*/gu;

function findCards(text: string): Span[] {
  const spans: Span[] = [];
  for (const m of text.matchAll(DIGIT_RUN)) {
    const groups: Array<{ start: number; digits: string }> = [];
    const re = /\d+/g;
    for (let g = re.exec(m[0]); g !== null; g = re.exec(m[0])) groups.push({ start: m.index + g.index, digits: g[0] });
    for (let i = 0; i < groups.length;) {
      let found = -1;
      let digits = '';
      for (let j = i; j < groups.length; j++) {
        digits += groups[j]?.digits ?? '';
        if (digits.length > 19) break;
        if (digits.length >= 13 && isCardNumber(digits) && sameSeparators(text, groups, i, j)) found = j;
      }
      const first = groups[i];
      const last = groups[found];
      if (found >= 0 && first !== undefined && last !== undefined) {
        spans.push({ start: first.start, end: last.start + last.digits.length });
        i = found + 1;
      } else {
        i++;
      }
    }
  }
  return spans;
}

function sameSeparators(text: string, groups: ReadonlyArray<{ start: number; digits: string }>, i: number, j: number): boolean {
  let separator: string | undefined;
  for (let k = i; k < j; k++) {
    const g = groups[k];
    if (g === undefined) return false;
    const s = text.charAt(g.start + g.digits.length);
    if (separator !== undefined && s !== separator) return false;
    separator = s;
  }
  return true;
}

function isCardNumber(digits: string): boolean {
  const first = digits.charCodeAt(0) - 48;
  if (first < 2 || first > 6) return false;
  if (/^(\d)\1+$/.test(digits)) return false;
  return luhn(digits);
}

/** Luhn (ISO/IEC 7812-1 annex B): doubling every second digit from the right, sum ≡ 0 mod 10. */
export function luhn(digits: string): boolean {
  let sum = 0;
  for (let i = digits.length - 1, double = false; i >= 0; i--, double = !double) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

// ---------------------------------------------------------------------------------------------
// US SSN: AAA-GG-SSSS with one consistent separator (dash, space or dot); bare nine-digit numbers
// are too often other identifiers (Presidio scores them 0.05). SSA never issues area 000, 666 or
// 900–999, group 00 or serial 0000.

const SSN: Rule = {
  re: /(?<![\p{L}\p{N}_])(\d{3})([ .-])(\d{2})\2(\d{4})(?![\p{L}\p{N}_])/gu,
  accept: (m) => {
    const [text, area = '', separator = '', group = '', serial = ''] = m;
    if (area === '000' || area === '666' || area.startsWith('9') || group === '00' || serial === '0000') return null;
    // Part of a longer run with the same separator (555-123-45-6789): another number.
    const end = m.index + text.length;
    if (m.input.charAt(m.index - 1) === separator && /\d/.test(m.input.charAt(m.index - 2))) return null;
    if (m.input.charAt(end) === separator && /\d/.test(m.input.charAt(end + 1))) return null;
    return whole(m);
  },
};

// ---------------------------------------------------------------------------------------------
// IBAN (ISO 13616): country code, two check digits, BBAN; the length is fixed per country, and
// the whole number ≡ 1 mod 97 (ISO 7064 MOD 97-10). Print form groups of four are accepted.

/** IBAN lengths per country (SWIFT IBAN registry). Unknown countries are not matched. */
const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28, CH: 21,
  CR: 22, CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FK: 18, FO: 18,
  FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26,
  IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20, LV: 21, LY: 25, MC: 27, MD: 24,
  ME: 22, MK: 19, MN: 20, MR: 27, MT: 31, MU: 30, NI: 28, NL: 18, NO: 15, OM: 23, PK: 24, PL: 28, PS: 29,
  PT: 25, QA: 29, RO: 24, RS: 22, RU: 33, SA: 24, SC: 31, SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23,
  ST: 25, SV: 28, TL: 23, TN: 24, TR: 26, UA: 29, VA: 22, VG: 24, XK: 20,
};

const IBAN_CANDIDATE = /(?<![\p{L}\p{N}_])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}/gu;

function findIbans(text: string): Span[] {
  const spans: Span[] = [];
  const re = new RegExp(IBAN_CANDIDATE.source, IBAN_CANDIDATE.flags);
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    // The candidate may run on into the next IBAN: resume right after what is used of it.
    re.lastIndex = m.index + 1;
    const length = IBAN_LENGTHS[m[0].slice(0, 2)];
    if (length === undefined) continue;
    // Take exactly the country's length of characters: a following word is not part of it.
    let taken = 0;
    let end = 0;
    while (end < m[0].length && taken < length) {
      if (m[0].charAt(end) !== ' ') taken++;
      end++;
    }
    if (taken !== length) continue;
    const after = text.charAt(m.index + end);
    if (/[\p{L}\p{N}_]/u.test(after)) continue;
    const iban = m[0].slice(0, end).replace(/ /g, '');
    if (ibanChecksum(iban)) {
      spans.push({ start: m.index, end: m.index + end });
      re.lastIndex = m.index + end;
    }
  }
  return spans;
}

/** ISO 7064 MOD 97-10 over the rearranged IBAN (letters as 10–35). */
export function ibanChecksum(iban: string): boolean {
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    const value = code >= 65 && code <= 90 ? code - 55 : code - 48;
    if (value < 0 || value > 35) return false;
    remainder = value > 9 ? (remainder * 100 + value) % 97 : (remainder * 10 + value) % 97;
  }
  return remainder === 1;
}

// ---------------------------------------------------------------------------------------------
// phone: E.164 (`+`, country code, up to 15 digits in all) with optional separators, and national
// formats with an area code in parentheses or at least three separated groups. 10–15 digits.
// Dates (8 digits), times, amounts with thousands grouping (1 234 567 890, 1.234.567.890) and
// IPv4 addresses (groups of 3 after a short first group) are rejected.

const PHONE: Rule = {
  re: /(?<![\p{L}\p{N}_+]|\d[ .-])(?:\+[1-9](?:[ .-]?(?:\(\d{1,4}\)|\d)){6,20}|\(\d{2,5}\)[ .-]?\d{2,4}(?:[ .-]\d{2,4}){1,3}|\d{2,5}(?:[ .-]\d{2,4}){2,4})(?![\p{L}\p{N}_]|[ .-]?\d)/gu,
  accept: (m) => {
    const text = m[0];
    const digits = text.replace(/\D/g, '');
    if (digits.length < 10 || digits.length > 15) return null;
    if (!text.startsWith('+')) {
      const groups = text.split(/[ .()-]+/).filter((g) => g !== '');
      const [first = '', ...rest] = groups;
      if (first.length <= 3 && rest.every((g) => g.length === 3)) return null;
      if (!/[ .()-]/.test(text)) return null;
    }
    return whole(m);
  },
};

// ---------------------------------------------------------------------------------------------
// JWT (RFC 7519 / JWS compact serialisation, RFC 7515 §7.1): three base64url segments whose first
// decodes to a JSON object with an `alg`. The signature may be empty (`alg: none`).

const JWT: Rule = {
  re: /(?<![A-Za-z0-9_.+/=-])[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?![A-Za-z0-9_+/=-]|\.[A-Za-z0-9_-])/gu,
  accept: (m) => (jwtHeaderHasAlg(m[0].slice(0, m[0].indexOf('.'))) ? whole(m) : null),
};

function jwtHeaderHasAlg(segment: string): boolean {
  try {
    const header: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && !Array.isArray(header) && typeof (header as Record<string, unknown>)['alg'] === 'string';
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// cloud access keys: AWS access key IDs (AKIA long-term, ASIA temporary, ABIA/ACCA), Google API
// keys (AIza + 35), Azure storage account keys (88 base64 characters after AccountKey=).

const CLOUD_KEYS: readonly Rule[] = [
  { re: /(?<![A-Za-z0-9_])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9_])/gu },
  { re: /(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])/gu },
  { re: /AccountKey=([A-Za-z0-9+/]{86}==)/dgu, accept: firstGroup },
];

// ---------------------------------------------------------------------------------------------
// generic secrets: a value after a secret-looking key (`password=…`, `"secret": "…"`,
// `api_key …`), credentials in a URI, bearer tokens, PEM private keys, GitHub and Slack tokens.
// Only the value is masked (so JSON stays JSON and the key still says what was there).

const SECRET_KEY = String.raw`(?<![A-Za-z0-9])[A-Za-z0-9_.-]{0,40}?(?:password|passwd|pwd|passphrase|secret|api[_-]?key|access[_-]?key|token|credentials?)(?:[_-](?:key|token|value|hash))?`;
const SECRET_VALUE = String.raw`(?:"([^"\\\n]*(?:\\.[^"\\\n]*)*)"|'([^'\n]*)'|([^\s"'\x60,;&<>()\[\]{}]+))`;

const GENERIC_SECRETS: readonly Rule[] = [
  // key = value, key: value, "key": "value"
  { re: new RegExp(`${SECRET_KEY}["']?[ \\t]*[:=][ \\t]*${SECRET_VALUE}`, 'dgiu'), accept: firstGroup },
  // `api_key 3f9a…`: a bare space is a separator only for API keys, and only before a key-like value.
  {
    re: /(?<![A-Za-z0-9])api[_-]?key[ \t]+([A-Za-z0-9_\-+/=.]{8,})/dgiu,
    accept: (m) => (/\d/.test(m[1] ?? '') && /[A-Za-z]/.test(m[1] ?? '') ? firstGroup(m) : null),
  },
  { re: /\bbearer[ \t]+([A-Za-z0-9._~+/-]{8,}=*)/dgiu, accept: firstGroup },
  // scheme://user:password@host
  { re: /(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}:\/\/[^\s:/@]{1,256}:([^\s@/]{1,256})@/dgu, accept: firstGroup },
  { re: /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]{0,65536}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[A-Za-z0-9+/=\s]*)/gu },
  { re: /(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])/gu },
  { re: /(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,255}(?![A-Za-z0-9_])/gu },
  { re: /(?<![A-Za-z0-9_])xox[abposr]-[A-Za-z0-9-]{10,255}(?![A-Za-z0-9_-])/gu },
];

// ---------------------------------------------------------------------------------------------
// IPv4: dotted quad, each octet 0–255 without leading zeros; not part of a longer dotted number
// (OIDs, version strings with five parts).

const IPV4: Rule = {
  re: /(?<![\p{L}\p{N}_.]|\d\.)(?:\d{1,3}\.){3}\d{1,3}(?![\p{L}\p{N}_]|\.\d)/gu,
  accept: (m) => (m[0].split('.').every(isOctet) ? whole(m) : null),
};

function isOctet(part: string): boolean {
  return part.length > 0 && (part === '0' || !part.startsWith('0')) && Number(part) <= 255;
}

// ---------------------------------------------------------------------------------------------
// IPv6 (RFC 4291 §2.2): eight groups of 1–4 hex digits, one `::` for a run of zero groups, an
// optional dotted IPv4 tail counting as two groups. Times (12:30:45) and MAC addresses fail it.

const IPV6_CANDIDATE = /(?<![\p{L}\p{N}_:.])[0-9A-Fa-f:][0-9A-Fa-f:.]*(?![\p{L}\p{N}_:])/gu;

function findIpv6(text: string): Span[] {
  const spans: Span[] = [];
  for (const m of text.matchAll(IPV6_CANDIDATE)) {
    const candidate = m[0].replace(/\.+$/, '');
    if (isIpv6(candidate)) spans.push({ start: m.index, end: m.index + candidate.length });
  }
  return spans;
}

export function isIpv6(s: string): boolean {
  if (s.length < 3 || s.length > 45) return false;
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const parse = (half: string): string[] | null => (half === '' ? [] : half.split(':'));
  const head = parse(halves[0] ?? '');
  const tail = halves.length === 2 ? parse(halves[1] ?? '') : [];
  if (head === null || tail === null) return false;
  const groups = [...head, ...tail];
  let count = 0;
  for (const [i, g] of groups.entries()) {
    if (i === groups.length - 1 && g.includes('.')) {
      const octets = g.split('.');
      if (octets.length !== 4 || !octets.every((o) => /^\d{1,3}$/.test(o) && isOctet(o))) return false;
      count += 2;
    } else if (/^[0-9A-Fa-f]{1,4}$/.test(g)) {
      count++;
    } else {
      return false;
    }
  }
  if (halves.length === 2) return count <= 7 && count >= 1;
  return count === 8;
}

// ---------------------------------------------------------------------------------------------

const BUILTIN: Readonly<Record<BuiltinDetectorType, (text: string) => Span[]>> = {
  'email': (t) => scan(t, [EMAIL]),
  'payment-card': (t) => normalise(findCards(t)),
  'us-ssn': (t) => scan(t, [SSN]),
  'iban': (t) => normalise(findIbans(t)),
  'phone': (t) => scan(t, [PHONE]),
  'jwt': (t) => scan(t, [JWT]),
  'cloud-access-key': (t) => scan(t, CLOUD_KEYS),
  'generic-secret': (t) => scan(t, GENERIC_SECRETS),
  'ipv4': (t) => scan(t, [IPV4]),
  'ipv6': (t) => normalise(findIpv6(t)),
};

/** Probes on which a usable pattern must not produce an empty match. */
const EMPTY_PROBES = ['', ' ', 'a', 'A', '0', '-', 'a b', '\n'];

function customFinder(pattern: string | undefined): ValueFinder {
  if (pattern === undefined || pattern === '') throw new DetectorPatternError('a custom detector needs a pattern');
  let re: RegExp;
  try {
    re = new RegExp(pattern, 'gu');
  } catch (e: unknown) {
    throw new DetectorPatternError(`pattern does not compile: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  for (const probe of EMPTY_PROBES) {
    const probeRe = new RegExp(re.source, 'gu');
    for (let m = probeRe.exec(probe); m !== null; m = probeRe.exec(probe)) {
      if (m[0] === '') throw new DetectorPatternError('pattern matches the empty string');
    }
  }
  return { type: 'custom', find: (t) => scan(t, [{ re }]) };
}
