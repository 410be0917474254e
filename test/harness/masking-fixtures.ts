// Shared fixture for the masking acceptance tests (test/sidecar-masking-*.test.ts): a customers
// table with realistic personal data (emails, valid-format SSNs, Luhn-valid card numbers), two
// views over it, a clean newsletter table, and the policy that masks it. Everything a test needs to
// prove, as an attacker would try, that none of those values (or their obvious encodings) ever
// reaches a client, the logs or the audit trail.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { parseDocument } from 'yaml';
import { ISSUER, type CustosStack } from './custos-stack.ts';
import { runCommand, type CommandResult } from './fixtures.ts';

export interface Customer {
  readonly id: number;
  readonly name: string;
  readonly email: string;
  readonly ssn: string;
  readonly card: string;
}

/** Appends the Luhn check digit to a digit string (ISO/IEC 7812-1). */
export function luhnComplete(partial: string): string {
  let sum = 0;
  for (let i = partial.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = partial.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return partial + String((10 - (sum % 10)) % 10);
}

const NAMES = [
  'Alice Johnson', 'Bob Smith', 'Carol White', 'David Brown', 'Erin Davis', 'Frank Miller', 'Grace Wilson',
  'Henry Moore', 'Irene Taylor', 'Jack Anderson', 'Karen Thomas', 'Liam Jackson', 'Mia Harris', 'Noah Martin',
  'Olivia Thompson', 'Paul Garcia', 'Quinn Martinez', 'Rita Robinson', 'Sam Clark', 'Tina Lewis',
];
const DOMAINS = ['example.com', 'mailbox.org', 'corp-mail.net', 'example.co.uk'];
// Valid format: area not 000/666/9xx, group not 00, serial not 0000. Areas below 214 so that the
// digit-only form fits an int4 (some attacks cast it).
const SSNS = [
  '123-45-6789', '132-54-7698', '145-23-8876', '156-78-1234', '167-89-2345', '178-90-3456', '189-01-4567',
  '190-12-5678', '201-23-6789', '212-34-7890', '111-22-3333', '122-33-4444', '133-44-5555', '144-55-6666',
  '155-66-7777', '166-77-8888', '177-88-9999', '188-99-1111', '199-11-2222', '210-22-3344',
];
const CARD_PREFIXES = [
  '411111111111111', '550000555555555', '401288888888188', '510510510510510', '424242424242424', '555555555555444',
  '601111111111111', '400005665566555', '520082828282821', '453914880343670', '491617842612345', '542523343010990',
  '601100099013942', '402400715376123', '530125003612498', '455673758216012', '516731063417392', '471620184376583',
  '222300004845671',
];

/** 20 customers; customers 1 and 20 share a card (a household), to check that hmac is deterministic. */
export const CUSTOMERS: readonly Customer[] = NAMES.map((name, i) => {
  const [first = 'x', last = 'y'] = name.toLowerCase().split(' ');
  const card = luhnComplete(CARD_PREFIXES[i % CARD_PREFIXES.length] ?? '411111111111111');
  return {
    id: i + 1,
    name,
    email: `${first}.${last}${i % 3 === 0 ? '' : String(i)}@${DOMAINS[i % DOMAINS.length] ?? 'example.com'}`,
    ssn: SSNS[i] ?? '123-45-6789',
    // Some cards are stored in print form (groups of four), as real applications often do.
    card: i % 4 === 1 ? card.replace(/(\d{4})(?=\d)/g, '$1 ') : card,
  };
});

/** A clean table with other people's emails (no masking rule): must come back unchanged. */
export const NEWSLETTER = ['reader.one@news.example', 'reader.two@news.example', 'reader.three@news.example'];

export const HMAC_KEY = 'custos-masking-test-key-0123456789abcdef';
export const REDACTED = '[REDACTED]';

export const MASKED_TABLE_SQL = [
  'DROP FUNCTION IF EXISTS customer_tax_id(int), active_customers(), check_customer(int)',
  'DROP MATERIALIZED VIEW IF EXISTS customer_mv',
  'DROP VIEW IF EXISTS customer_directory, customer_contacts, customer_upper',
  'DROP TABLE IF EXISTS customers, newsletter',
  'DROP SEQUENCE IF EXISTS ticket_seq',
  'CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text, card text)',
  'CREATE UNIQUE INDEX customers_email_key ON customers (email)',
  'CREATE TABLE newsletter (email text)',
  'CREATE SEQUENCE ticket_seq',
];

/** Creates the fixture upstream (as superuser), owned by the app role. Restart the sidecar after it so the catalog snapshot has it. */
export async function createMaskingSchema(stack: CustosStack): Promise<void> {
  const owner = stack.postgres.user;
  const quote = (s: string): string => `'${s.replace(/'/g, "''")}'`;
  const rows = CUSTOMERS.map((c) => `(${c.id}, ${quote(c.name)}, ${quote(c.email)}, ${quote(c.ssn)}, ${quote(c.card)})`);
  await stack.postgres.psql([
    ...MASKED_TABLE_SQL,
    `INSERT INTO customers VALUES ${rows.join(', ')}`,
    `INSERT INTO newsletter VALUES ${NEWSLETTER.map((e) => `(${quote(e)})`).join(', ')}`,
    'CREATE VIEW customer_contacts AS SELECT id, name, email FROM customers',
    'CREATE VIEW customer_upper AS SELECT id, upper(email) AS e FROM customers',
    // A view over a view, renaming the masked column.
    'CREATE VIEW customer_directory AS SELECT id AS customer_id, email AS contact FROM customer_contacts',
    'CREATE MATERIALIZED VIEW customer_mv AS SELECT id, email, ssn FROM customers',
    // Application helpers that read the protected columns inside their bodies (the statement
    // calling them names no masked table).
    "CREATE FUNCTION customer_tax_id(int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT translate(ssn, '-', '') FROM customers WHERE id = $1 $$",
    'CREATE FUNCTION active_customers() RETURNS SETOF customers LANGUAGE sql STABLE AS $$ SELECT * FROM customers $$',
    "CREATE FUNCTION check_customer(int) RETURNS void LANGUAGE plpgsql AS $$ DECLARE s text; BEGIN SELECT ssn INTO s FROM customers WHERE id = $1; RAISE NOTICE 'checked customer %: tax id %', $1, translate(s, '-', ''); END $$",
    `ALTER TABLE customers OWNER TO ${owner}`,
    `ALTER MATERIALIZED VIEW customer_mv OWNER TO ${owner}`,
    `ALTER VIEW customer_directory OWNER TO ${owner}`,
    `ALTER FUNCTION customer_tax_id(int) OWNER TO ${owner}`,
    `ALTER FUNCTION active_customers() OWNER TO ${owner}`,
    `ALTER FUNCTION check_customer(int) OWNER TO ${owner}`,
    `ALTER TABLE newsletter OWNER TO ${owner}`,
    `ALTER VIEW customer_contacts OWNER TO ${owner}`,
    `ALTER VIEW customer_upper OWNER TO ${owner}`,
    `ALTER SEQUENCE ticket_seq OWNER TO ${owner}`,
    // Autovacuum would do it soon anyway: planner statistics of the table exist.
    'ANALYZE customers',
  ].join('; '));
}

/** A directory holding the HMAC key file (mounted into the sidecar only). */
export async function writeHmacKey(): Promise<{ dir: string; file: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'custos-mask-key-'));
  const file = join(dir, 'hmac.key');
  await writeFile(file, HMAC_KEY, { mode: 0o600 });
  return { dir, file, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * The masking policy of the brief, on top of examples/policy.yaml: subject `auditor` (claim
 * role = auditor) is exempt; email partial (first 1, last 4), ssn redact, card hmac; detectors for
 * emails, cards and SSNs; predicates on masked columns denied. Reads are allowed as the read group
 * (select, show, declare/fetch, COPY TO STDOUT, explain) plus LISTEN and CLOSE, so that masking, not
 * the statement policy, is what every attack here is up against; `ci` may also write customers
 * and newsletter (so laundering through writes is reachable).
 */
export function maskingPolicy(keyFile: string, extra: { columns?: ReadonlyArray<Record<string, unknown>> } = {}): (doc: ReturnType<typeof parseDocument>) => void {
  return (doc) => {
    doc.addIn(['spec', 'subjects'], doc.createNode({ name: 'auditor', oidc: { issuer: ISSUER, claims: [{ claim: 'role', equals: 'auditor' }] } }));
    const rules = doc.getIn(['spec', 'rules']) as { items: Array<{ get(k: string): unknown }> };
    const index = rules.items.findIndex((r) => r.get('name') === 'allow-reads');
    if (index < 0) throw new Error('examples/policy.yaml has no allow-reads rule');
    doc.setIn(['spec', 'rules', index, 'match', 'sql', 'statements'], doc.createNode(['read', 'show', 'set', 'transaction', 'explain', 'listen', 'close']));
    doc.addIn(['spec', 'rules'], doc.createNode({
      name: 'allow-writes-customers',
      subjects: ['ci'],
      match: { sql: { statements: ['insert', 'update', 'delete', 'merge'], objects: ['public.customers', 'public.newsletter'] } },
      action: 'allow',
    }));
    doc.setIn(['spec', 'masking'], doc.createNode({
      hmacKeyFile: keyFile,
      predicates: 'deny',
      exemptSubjects: ['auditor'],
      columns: [
        { column: 'public.customers.email', strategy: 'partial', keepFirst: 1, keepLast: 4 },
        { column: 'public.customers.ssn', strategy: 'redact' },
        { column: 'public.customers.card', strategy: 'hmac' },
        ...(extra.columns ?? []),
      ],
      detectors: [{ type: 'email' }, { type: 'payment-card' }, { type: 'us-ssn' }],
    }));
  };
}

// ─── what must never leak ──────────────────────────────────────────────────────────────────────

/** Every protected value in the forms an attacker could coax out: [label, bytes]. */
export function protectedForms(): Array<[string, Buffer]> {
  const out = new Map<string, Buffer>();
  const add = (label: string, value: string): void => {
    if (value.length < 6) return;
    out.set(label, Buffer.from(value));
  };
  for (const c of CUSTOMERS) {
    for (const [field, value] of [['email', c.email], ['ssn', c.ssn], ['card', c.card]] as const) {
      const base = `${field} of customer ${c.id}`;
      const digits = value.replace(/\D/g, '');
      const variants: Array<[string, string]> = [['raw', value], ['upper', value.toUpperCase()], ['reversed', Array.from(value).reverse().join('')]];
      if (field !== 'email') variants.push(['digits', digits], ['digits reversed', Array.from(digits).reverse().join('')]);
      for (const [kind, v] of variants) {
        add(`${base} (${kind})`, v);
        add(`${base} (${kind}, hex)`, Buffer.from(v).toString('hex'));
        add(`${base} (${kind}, base64)`, Buffer.from(v).toString('base64').replace(/=+$/, ''));
      }
      add(`${base} (md5)`, createHash('md5').update(value).digest('hex'));
      add(`${base} (sha256)`, createHash('sha256').update(value).digest('hex'));
      if (field === 'email') add(`${base} (local part)`, value.slice(0, value.indexOf('@')));
    }
  }
  // Local parts like "alice.johnson" are also names: keep only the ones with a digit or that are not the name itself.
  for (const c of CUSTOMERS) {
    const label = `email of customer ${c.id} (local part)`;
    const local = out.get(label)?.toString();
    if (local !== undefined && !/\d/.test(local)) out.delete(label);
  }
  return [...out.entries()];
}

/** Labels of every protected form found in `haystack`. */
export function leaksIn(haystack: Buffer | string, forms: ReadonlyArray<[string, Buffer]>): string[] {
  const bytes = typeof haystack === 'string' ? Buffer.from(haystack) : haystack;
  return forms.filter(([, needle]) => bytes.includes(needle)).map(([label]) => label);
}

/**
 * A one-line account of what leaked (undefined when clean): how many forms, of which kinds, and the
 * bytes around the first hit, so a failure shows the channel (DataRow, ErrorResponse, …) at a glance.
 */
export function leakReport(haystack: Buffer | string, forms: ReadonlyArray<[string, Buffer]>): string | undefined {
  const bytes = typeof haystack === 'string' ? Buffer.from(haystack) : haystack;
  const hits = forms.filter(([, needle]) => bytes.includes(needle));
  const first = hits[0];
  if (first === undefined) return undefined;
  const kinds = [...new Set(hits.map(([label]) => label.replace(/ of customer \d+/, '')))];
  const at = bytes.indexOf(first[1]);
  const context = bytes.subarray(Math.max(0, at - 60), at + first[1].length + 30).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  return `${hits.length} protected forms leaked (${kinds.join(', ')}); first: ${first[0]} in "${context}"`;
}

/** Fails with a leak report when `haystack` holds any protected form. */
export function assertNoProtectedValue(haystack: Buffer | string, forms: ReadonlyArray<[string, Buffer]>, what: string): void {
  const report = leakReport(haystack, forms);
  if (report !== undefined) throw new assert.AssertionError({ message: `${what}: ${report}` });
}

// ─── the masked forms a client should see ──────────────────────────────────────────────────────

/** partial keepFirst 1 keepLast 4, one `*` per hidden code point. */
export function expectedPartialEmail(email: string): string {
  const points = Array.from(email);
  return `${points[0] ?? ''}${'*'.repeat(points.length - 5)}${points.slice(-4).join('')}`;
}

export function isHmacToken(value: unknown): boolean {
  return typeof value === 'string' && /^hmac:[0-9a-f]{8,64}$/.test(value);
}

// ─── clients ───────────────────────────────────────────────────────────────────────────────────

/** A client straight to PostgreSQL as the app role: the clear answer to compare against. */
export async function directClient(stack: CustosStack): Promise<pg.Client> {
  const client = new pg.Client({ host: stack.postgres.host, port: stack.postgres.port, user: stack.postgres.user, password: stack.postgres.password, database: stack.postgres.database });
  await client.connect();
  return client;
}

/** psql through `port` (the sidecar or a tap in front of it) with the token as the password. */
export async function psqlVia(port: number, stack: CustosStack, token: string, args: readonly string[], options: { applicationName?: string; input?: string } = {}): Promise<CommandResult> {
  const conninfo = `host=127.0.0.1 port=${port} dbname=${stack.postgres.database} user=x sslmode=disable application_name=${options.applicationName ?? 'custos-psql-masking'}`;
  return runCommand('psql', ['-X', '-w', '-v', 'ON_ERROR_STOP=1', conninfo, ...args], {
    env: { PGPASSWORD: token, PGCONNECT_TIMEOUT: '10' },
    ...(options.input !== undefined ? { input: options.input } : {}),
  });
}
