import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { CompiledDetector, MaskStrategy } from '../../policy/masking/compile-masking.ts';
import type { FieldDescription } from '../protocols/postgres/codec/backend-messages.ts';
import { createDetector } from './detectors.ts';
import { ProvenanceMap, type CatalogColumn } from './provenance.ts';
import { maskDataRow, planResult, type MaskingContext } from './result-masker.ts';

const CUSTOMERS = 16500;
const VIEW = 16600;
const NEWER = 17000;
const partial: MaskStrategy = { kind: 'partial', keepFirst: 1, keepLast: 4 };
const redact: MaskStrategy = { kind: 'redact', keepFirst: 0, keepLast: 0 };

const columns: CatalogColumn[] = [
  { relid: CUSTOMERS, attnum: 1, schema: 'public', table: 'customers', column: 'id', relkind: 'r' },
  { relid: CUSTOMERS, attnum: 2, schema: 'public', table: 'customers', column: 'email', relkind: 'r' },
  { relid: CUSTOMERS, attnum: 3, schema: 'public', table: 'customers', column: 'ssn', relkind: 'r' },
  { relid: VIEW, attnum: 1, schema: 'public', table: 'contacts', column: 'id', relkind: 'v' },
  { relid: VIEW, attnum: 2, schema: 'public', table: 'contacts', column: 'e', relkind: 'v' },
];

function provenance(): ProvenanceMap {
  return new ProvenanceMap(
    [{ schema: 'public', table: 'customers', column: 'email', strategy: partial }, { schema: 'public', table: 'customers', column: 'ssn', strategy: redact }],
    columns,
    [{ relid: VIEW, definition: 'SELECT id, upper(email) AS e FROM customers' }],
    () => ['clean', 'masked'],
    0,
  );
}

function field(name: string, tableOid: number, attributeNumber: number, typeOid = 25, format = 0): FieldDescription {
  return { name, tableOid, attributeNumber, typeOid, typeSize: -1, typeModifier: -1, format };
}

function dataRow(values: Array<string | null>): Buffer {
  const parts = values.map((v) => {
    if (v === null) return Buffer.from([0xff, 0xff, 0xff, 0xff]);
    const b = Buffer.from(v);
    const len = Buffer.alloc(4);
    len.writeInt32BE(b.length);
    return Buffer.concat([len, b]);
  });
  const count = Buffer.alloc(2);
  count.writeInt16BE(values.length);
  return Buffer.concat([count, ...parts]);
}

function values(message: Buffer): Array<string | null> {
  const n = message.readInt16BE(5);
  const out: Array<string | null> = [];
  let o = 7;
  for (let i = 0; i < n; i++) {
    const len = message.readInt32BE(o);
    o += 4;
    if (len < 0) {
      out.push(null);
      continue;
    }
    out.push(message.toString('utf8', o, o + len));
    o += len;
  }
  return out;
}

const detectors: CompiledDetector[] = [
  { name: 'email', type: 'email', strategy: redact, find: (t) => createDetector('email', {}).find(t) },
];
const context = (): MaskingContext => ({ provenance: provenance(), detectors, hmacKey: undefined });

describe('result masker', () => {
  it('masks a column by its origin, under any output name, and leaves clean columns alone', () => {
    const ctx = context();
    const plan = planResult([field('id', CUSTOMERS, 1, 23), field('contact', CUSTOMERS, 2)], ctx, undefined);
    assert.ok(plan);
    const masked = maskDataRow(dataRow(['7', 'alice@example.com']), plan, ctx);
    assert.ok(masked);
    assert.deepEqual(values(masked), ['7', 'a************.com']);
    assert.equal(plan.counts.get('column:contact'), 1);
  });

  it('masks a whole-row reference (attnum 0) of a table with masked columns', () => {
    const ctx = context();
    const plan = planResult([field('c', CUSTOMERS, 0, 2249)], ctx, undefined);
    assert.ok(plan);
    const masked = maskDataRow(dataRow(['(7,alice@example.com,123-45-6789)']), plan, ctx);
    assert.deepEqual(values(masked ?? Buffer.alloc(0)), [null]);
  });

  it('masks view columns derived from masked columns (reported with the view oid)', () => {
    const ctx = context();
    const plan = planResult([field('id', VIEW, 1, 23), field('e', VIEW, 2)], ctx, undefined);
    assert.ok(plan);
    assert.deepEqual(values(maskDataRow(dataRow(['1', 'ALICE@EXAMPLE.COM']), plan, ctx) ?? Buffer.alloc(0)), ['1', '[REDACTED]']);
  });

  it('masks expressions the derivation marks, and every origin-less output when positions are unknown', () => {
    const ctx = context();
    const derived = planResult([field('id', CUSTOMERS, 1, 23), field('upper', 0, 0)], ctx, { outputs: ['clean', 'masked'], derivesMasked: true, predicateUse: false, launders: false, wholeRow: false });
    assert.deepEqual(derived?.columns.map((c) => c.index), [1]);
    const unknown = planResult([field('a', 0, 0), field('b', 0, 0)], ctx, { outputs: null, derivesMasked: true, predicateUse: false, launders: false, wholeRow: false });
    assert.deepEqual(unknown?.columns.map((c) => [c.index, c.strategy?.kind]), [[0, 'redact'], [1, 'redact']]);
  });

  it('masks columns of a relation newer than the catalog snapshot until it is refreshed', () => {
    const plan = planResult([field('x', NEWER, 1)], context(), undefined);
    assert.equal(plan?.columns[0]?.strategy?.kind, 'redact');
  });

  it('scans origin-less text with the detectors and rebuilds only rows that change', () => {
    const ctx = context();
    const plan = planResult([field('note', 0, 0)], ctx, undefined);
    assert.ok(plan);
    const clean = dataRow(['nothing to see']);
    assert.equal(maskDataRow(clean, plan, ctx), undefined, 'an unchanged row is not copied');
    const dirty = maskDataRow(dataRow(['write to bob@example.org today']), plan, ctx);
    assert.deepEqual(values(dirty ?? Buffer.alloc(0)), ['write to [REDACTED] today']);
    assert.equal(plan.counts.get('detector:email'), 1);
  });

  it('plans nothing for a result without masked or scannable columns', () => {
    assert.equal(planResult([field('id', CUSTOMERS, 1, 23), field('n', 0, 0, 23)], context(), undefined), null);
  });

  it('exposes masked column names for the AST analysis, qualified and not', () => {
    const p = provenance();
    assert.deepEqual([...p.maskedColumns('public', 'customers')].sort(), ['email', 'ssn']);
    assert.deepEqual([...p.maskedColumns(null, 'customers')].sort(), ['email', 'ssn']);
    assert.deepEqual([...p.maskedColumns(null, 'contacts')], ['e']);
    assert.equal(p.maskedColumns('other', 'customers').size, 0);
    assert.deepEqual(p.columnsOf('public', 'customers'), ['id', 'email', 'ssn']);
  });
});
