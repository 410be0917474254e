import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AccessPolicyMasking } from '../../crds/generated/access-policy.ts';
import { PolicyValidationError } from '../policy-validation-error.ts';
import type { CompiledSubject } from '../subjects.ts';
import { compileMasking, parseColumnName } from './compile-masking.ts';

const AUDITOR: CompiledSubject = { name: 'auditor', type: 'serviceAccount', namespace: 'payments', serviceAccount: 'auditor' };
const SUBJECTS: ReadonlyMap<string, CompiledSubject> = new Map([['auditor', AUDITOR]]);

function base(): AccessPolicyMasking {
  return {
    hmacKeyFile: '/var/run/custos/masking/hmac.key',
    exemptSubjects: ['auditor'],
    columns: [
      { column: 'public.customers.email', strategy: 'partial', keepFirst: 1 },
      { column: 'public.customers.ssn', strategy: 'hmac' },
      { column: 'billing."Card.Number".pan', strategy: 'null' },
    ],
    detectors: [{ type: 'email' }, { type: 'custom', name: 'employee-id', pattern: 'EMP-\\d{6}', strategy: 'hmac' }],
  };
}

interface InvalidCase {
  readonly name: string;
  readonly edit: (m: AccessPolicyMasking) => void;
  readonly field: string;
  readonly message: RegExp;
}

/* eslint-disable @typescript-eslint/no-non-null-assertion -- base() has these entries */
const INVALID: readonly InvalidCase[] = [
  { name: 'a column has two parts', edit: (m) => { m.columns![0]!.column = 'customers.email'; }, field: 'spec.masking.columns[0].column', message: /must be schema\.table\.column/ },
  { name: 'a column has four parts', edit: (m) => { m.columns![0]!.column = 'db.public.customers.email'; }, field: 'spec.masking.columns[0].column', message: /must be schema\.table\.column/ },
  { name: 'a column has an empty part', edit: (m) => { m.columns![0]!.column = 'public..email'; }, field: 'spec.masking.columns[0].column', message: /must be schema\.table\.column/ },
  { name: 'a quoted part is not closed', edit: (m) => { m.columns![0]!.column = 'public."customers.email'; }, field: 'spec.masking.columns[0].column', message: /must be schema\.table\.column/ },
  { name: 'a part is longer than 63 bytes', edit: (m) => { m.columns![0]!.column = `public.${'é'.repeat(32)}.email`; }, field: 'spec.masking.columns[0].column', message: /63-byte identifier limit/ },
  {
    name: 'a column is listed twice',
    edit: (m) => { m.columns!.push({ column: 'public."customers".email', strategy: 'redact' }); },
    field: 'spec.masking.columns[3].column',
    message: /^duplicate column "public\."customers"\.email" \(also spec\.masking\.columns\[0\]\)$/,
  },
  { name: 'an exempt subject is unknown', edit: (m) => { m.exemptSubjects = ['auditor', 'auditors']; }, field: 'spec.masking.exemptSubjects[1]', message: /^unknown subject "auditors"$/ },
  { name: 'hmac is used without a key file', edit: (m) => { delete m.hmacKeyFile; m.detectors![1]!.strategy = 'redact'; }, field: 'spec.masking.columns[1].strategy', message: /hmac needs spec\.masking\.hmacKeyFile/ },
  { name: 'keepFirst is given with redact', edit: (m) => { m.columns![1] = { column: 'public.customers.ssn', strategy: 'redact', keepFirst: 1 }; }, field: 'spec.masking.columns[1].keepFirst', message: /only applies to the partial strategy, not redact/ },
  { name: 'keepLast is given with hmac', edit: (m) => { m.columns![1]!.keepLast = 2; }, field: 'spec.masking.columns[1].keepLast', message: /only applies to the partial strategy, not hmac/ },
  { name: 'a custom detector has no pattern', edit: (m) => { delete m.detectors![1]!.pattern; }, field: 'spec.masking.detectors[1].pattern', message: /needs a pattern/ },
  { name: 'a custom pattern does not compile', edit: (m) => { m.detectors![1]!.pattern = 'EMP-(\\d'; }, field: 'spec.masking.detectors[1].pattern', message: /does not compile/ },
  { name: 'a custom pattern matches the empty string', edit: (m) => { m.detectors![1]!.pattern = '\\d*'; }, field: 'spec.masking.detectors[1].pattern', message: /matches the empty string/ },
  { name: 'a custom detector has no name', edit: (m) => { delete m.detectors![1]!.name; }, field: 'spec.masking.detectors[1].name', message: /custom detector needs a name/ },
  { name: 'a built-in detector has a pattern', edit: (m) => { m.detectors![0]!.pattern = 'x+'; }, field: 'spec.masking.detectors[0].pattern', message: /only custom detectors take a pattern/ },
  { name: 'two detectors share a name', edit: (m) => { m.detectors!.push({ type: 'email', strategy: 'partial' }); }, field: 'spec.masking.detectors[2].type', message: /duplicate detector name "email"/ },
  { name: 'a detector uses hmac without a key file', edit: (m) => { delete m.hmacKeyFile; m.columns!.splice(1, 1); }, field: 'spec.masking.detectors[1].strategy', message: /hmac needs spec\.masking\.hmacKeyFile/ },
];
/* eslint-enable @typescript-eslint/no-non-null-assertion */

describe('compileMasking', () => {
  it('compiles columns, detectors, exemptions and defaults when the masking is valid', () => {
    const compiled = compileMasking(base(), SUBJECTS);
    assert.ok(compiled !== null);
    assert.deepEqual(compiled.columns, [
      { schema: 'public', table: 'customers', column: 'email', strategy: { kind: 'partial', keepFirst: 1, keepLast: 4 } },
      { schema: 'public', table: 'customers', column: 'ssn', strategy: { kind: 'hmac', keepFirst: 0, keepLast: 0 } },
      { schema: 'billing', table: 'Card.Number', column: 'pan', strategy: { kind: 'null', keepFirst: 0, keepLast: 0 } },
    ]);
    assert.deepEqual(compiled.detectors.map((d) => [d.name, d.type, d.strategy.kind]), [['email', 'email', 'redact'], ['employee-id', 'custom', 'hmac']]);
    assert.deepEqual(compiled.detectors.at(1)?.find('x EMP-123456 y'), [{ start: 2, end: 12 }]);
    assert.deepEqual(compiled.exemptSubjects, [AUDITOR]);
    assert.equal(compiled.onUnresolvable, 'mask');
    assert.equal(compiled.predicates, 'deny');
    assert.equal(compiled.hmacKeyFile, '/var/run/custos/masking/hmac.key');
  });

  it('keeps onUnresolvable and predicates when they are given', () => {
    const compiled = compileMasking({ ...base(), onUnresolvable: 'deny', predicates: 'require-approval' }, SUBJECTS);
    assert.ok(compiled !== null);
    assert.equal(compiled.onUnresolvable, 'deny');
    assert.equal(compiled.predicates, 'require-approval');
  });

  it('returns null when masking is absent or masks nothing', () => {
    assert.equal(compileMasking(undefined, SUBJECTS), null);
    assert.equal(compileMasking({}, SUBJECTS), null);
    assert.equal(compileMasking({ exemptSubjects: ['auditor'], columns: [], detectors: [] }, SUBJECTS), null);
  });

  it('does not report an exempt subject again when it is declared but failed to compile', () => {
    assert.doesNotThrow(() => compileMasking({ exemptSubjects: ['broken'] }, SUBJECTS, 'spec.masking', new Set(['auditor', 'broken'])));
  });

  describe('semantic errors', () => {
    for (const c of INVALID) {
      it(`names ${c.field} when ${c.name}`, () => {
        const masking = base();
        c.edit(masking);
        assert.throws(() => compileMasking(masking, SUBJECTS), (e: unknown) => {
          assert.ok(e instanceof PolicyValidationError, String(e));
          assert.equal(e.code, 'ERR_POLICY_INVALID');
          assert.deepEqual(e.issues.map((i) => i.field), [c.field]);
          assert.match(e.issues[0]?.message ?? '', c.message);
          return true;
        });
      });
    }

    it('reports every problem when there are several', () => {
      const masking = base();
      masking.columns = [{ column: 'email', strategy: 'redact' }, { column: 'a.b.c', strategy: 'redact', keepLast: 1 }];
      masking.exemptSubjects = ['nobody'];
      assert.throws(() => compileMasking(masking, SUBJECTS), (e: unknown) => {
        assert.ok(e instanceof PolicyValidationError);
        assert.deepEqual(e.issues.map((i) => i.field), ['spec.masking.columns[0].column', 'spec.masking.columns[1].keepLast', 'spec.masking.exemptSubjects[0]']);
        return true;
      });
    });
  });
});

describe('parseColumnName', () => {
  const valid: ReadonlyArray<[string, [string, string, string]]> = [
    ['public.customers.email', ['public', 'customers', 'email']],
    ['"My Schema"."Customers".Email', ['My Schema', 'Customers', 'Email']],
    ['s."a.b"."say ""hi"""', ['s', 'a.b', 'say "hi"']],
    ['público.clientes.correo', ['público', 'clientes', 'correo']],
  ];
  for (const [text, parts] of valid) {
    it(`splits ${text} when it is well formed`, () => {
      assert.deepEqual(parseColumnName(text), parts);
    });
  }
  for (const text of ['', 'a.b', 'a.b.c.d', 'a.b.', '.a.b', 'a."b.c', 'a.b"x".c', 'a. b.c', 'a."b"x.c']) {
    it(`refuses ${JSON.stringify(text)} when it is not three names`, () => {
      assert.equal(typeof parseColumnName(text), 'string');
    });
  }
});
