import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { boundedReason, MAX_REASON_LENGTH, reasonStatement } from './caller-reason.ts';

describe('caller reason', () => {
  it('reads SET custos.reason in its spellings', () => {
    assert.deepEqual(reasonStatement("SET custos.reason = 'INC-42 cleanup'"), { reason: 'INC-42 cleanup' });
    assert.deepEqual(reasonStatement("set session CUSTOS.REASON to 'it''s INC-7';"), { reason: "it's INC-7" });
    assert.deepEqual(reasonStatement('SET custos.reason TO DEFAULT'), { reason: undefined });
    assert.deepEqual(reasonStatement('RESET custos.reason'), { reason: undefined });
    assert.deepEqual(reasonStatement("SET custos.reason = ''"), { reason: undefined });
  });

  it('leaves every other statement to policy (SET LOCAL, a second statement, another setting, a function)', () => {
    for (const sql of [
      "SET LOCAL custos.reason = 'x'",
      "SET custos.reason = 'x'; DELETE FROM invoices",
      "SET custos.reason = 'x'' ; DELETE FROM invoices; --'",
      "SET custos.reasons = 'x'",
      "SET search_path = 'x'",
      "SELECT set_config('custos.reason', 'x', false)",
      "SET custos.reason = E'x'",
    ]) {
      const parsed = reasonStatement(sql);
      // The escaped-quote case is one literal and therefore a reason statement: nothing else runs.
      if (sql.includes("x'' ;")) assert.deepEqual(parsed, { reason: "x' ; DELETE FROM invoices; --" });
      else assert.equal(parsed, undefined, sql);
    }
  });

  it('keeps reasons printable and bounded', () => {
    assert.equal(boundedReason('  a\nb\u0000c\u00e9  '), 'a?b?c?');
    assert.equal(boundedReason('x'.repeat(5000))?.length, MAX_REASON_LENGTH);
    assert.equal(boundedReason('   '), undefined);
  });
});
