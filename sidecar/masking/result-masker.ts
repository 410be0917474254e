// Masks one result set on the wire (pure). A plan is built once per RowDescription from three
// signals (reference §15.1): the field's origin (table OID, attnum) resolved against the masked
// columns, the statement's AST derivation for outputs PostgreSQL reports as 0/0, and value
// detectors as the backstop on origin-less text columns. DataRows of a result set without planned
// columns are forwarded untouched; a DataRow is rebuilt only when a value actually changes.
import type { CompiledDetector, MaskStrategy } from '../../policy/masking/compile-masking.ts';
import type { MaskingAnalysis } from '../../policy/masking/derivation.ts';
import type { FieldDescription } from '../protocols/postgres/codec/backend-messages.ts';
import { DERIVED_STRATEGY, type ProvenanceMap } from './provenance.ts';
import { maskValue, scrubText } from './strategies.ts';

/** Types whose text and binary representations are the same UTF-8 text. */
const TEXT_TYPES = new Set([25, 1043, 1042, 19, 705]);
/** Types whose text representation is worth scanning (json as text is valid JSON after scrubbing). */
const SCANNABLE_TEXT_FORMAT = new Set([25, 1043, 1042, 19, 705, 114, 3802, 142]);

interface PlannedColumn {
  readonly index: number;
  readonly typeOid: number;
  readonly format: 0 | 1;
  readonly label: string;
  /** Mask every value with this strategy, or scan it with the detectors when undefined. */
  readonly strategy?: MaskStrategy;
}

export interface ResultPlan {
  readonly columns: readonly PlannedColumn[];
  /** Values masked so far, by `column:<name>` or `detector:<name>`: audited, never the values. */
  readonly counts: Map<string, number>;
}

export interface MaskingContext {
  readonly provenance: ProvenanceMap;
  readonly detectors: readonly CompiledDetector[];
  readonly hmacKey: Buffer | undefined;
}

export function planResult(fields: readonly FieldDescription[], context: MaskingContext, derivation: MaskingAnalysis | undefined, counts: Map<string, number> = new Map()): ResultPlan | null {
  const outputs = derivation?.outputs !== null && derivation?.outputs !== undefined && derivation.outputs.length === fields.length ? derivation.outputs : null;
  const everyOriginlessIsMasked = derivation !== undefined && derivation.derivesMasked && outputs === null;
  const columns: PlannedColumn[] = [];
  fields.forEach((f, index) => {
    const format = f.format === 1 ? 1 : 0;
    const byOrigin = context.provenance.strategyFor(f.tableOid, f.attributeNumber);
    if (byOrigin !== undefined) {
      columns.push({ index, typeOid: f.typeOid, format, label: `column:${f.name}`, strategy: byOrigin });
      return;
    }
    if (f.tableOid !== 0) {
      // A physical column that is not masked, unless its relation is newer than the catalog
      // snapshot (created since): unresolvable until the refresh, so masked.
      if (!context.provenance.knows(f.tableOid)) columns.push({ index, typeOid: f.typeOid, format, label: `column:${f.name}`, strategy: DERIVED_STRATEGY });
      return;
    }
    const derived = outputs?.[index];
    if (derived === 'masked' || derived === 'unknown' || everyOriginlessIsMasked) {
      columns.push({ index, typeOid: f.typeOid, format, label: `column:${f.name}`, strategy: DERIVED_STRATEGY });
      return;
    }
    const scannable = format === 0 ? SCANNABLE_TEXT_FORMAT.has(f.typeOid) : TEXT_TYPES.has(f.typeOid);
    if (scannable && context.detectors.length > 0) columns.push({ index, typeOid: f.typeOid, format, label: 'detectors' });
  });
  return columns.length === 0 ? null : { columns, counts };
}

function count(plan: ResultPlan, label: string, n = 1): void {
  plan.counts.set(label, (plan.counts.get(label) ?? 0) + n);
}

/**
 * Masks a DataRow payload (`Int16 n`, then per column `Int32 len` + bytes). Returns the whole new
 * message, or undefined when nothing changed (forward the original bytes).
 */
export function maskDataRow(payload: Buffer, plan: ResultPlan, context: MaskingContext): Buffer | undefined {
  const n = payload.readInt16BE(0);
  const values: Array<Buffer | null> = new Array<Buffer | null>(n);
  let o = 2;
  for (let i = 0; i < n; i++) {
    const len = payload.readInt32BE(o);
    o += 4;
    if (len < 0) {
      values[i] = null;
    } else {
      values[i] = payload.subarray(o, o + len);
      o += len;
    }
  }
  let changed = false;
  for (const c of plan.columns) {
    if (c.index >= n) continue;
    const value = values[c.index] ?? null;
    if (value === null) continue;
    if (c.strategy !== undefined) {
      values[c.index] = maskValue(c.strategy, value, c.typeOid, c.format, context.hmacKey);
      count(plan, c.label);
      changed = true;
      continue;
    }
    const raw = c.format === 0 || TEXT_TYPES.has(c.typeOid) ? value.toString('utf8') : undefined;
    if (raw === undefined) continue;
    const scrubbed = scrubText(raw, context.detectors, context.hmacKey);
    if (scrubbed.findings.length === 0) continue;
    for (const f of scrubbed.findings) count(plan, `detector:${f.detector}`, f.count);
    values[c.index] = Buffer.from(scrubbed.text, 'utf8');
    changed = true;
  }
  if (!changed) return undefined;
  let size = 1 + 4 + 2;
  for (const v of values) size += 4 + (v?.length ?? 0);
  const out = Buffer.allocUnsafe(size);
  out[0] = 0x44;
  out.writeInt32BE(size - 1, 1);
  out.writeInt16BE(n, 5);
  let w = 7;
  for (const v of values) {
    if (v === null) {
      out.writeInt32BE(-1, w);
      w += 4;
    } else {
      out.writeInt32BE(v.length, w);
      w += 4;
      v.copy(out, w);
      w += v.length;
    }
  }
  return out;
}
