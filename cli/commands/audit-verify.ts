// `custos audit verify`: checks seq contiguity per boot and the hash chain of every session.
import { parseArgs } from 'node:util';
import { verifyEvents } from '../../audit/chain/verify.ts';
import type { AuditEvent } from '../../audit/event.ts';
import { auditEvents } from './audit-source.ts';

export async function runAuditVerify(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { spool: { type: 'string' }, redis: { type: 'string' }, pod: { type: 'string' } }, strict: true });
  const events: AuditEvent[] = [];
  const problems: string[] = [];
  const source = {
    ...(values.spool !== undefined ? { spool: values.spool } : {}),
    ...(values.redis !== undefined ? { redis: values.redis } : {}),
    ...(values.pod !== undefined ? { pod: values.pod } : {}),
  };
  for await (const e of auditEvents(source, (m) => problems.push(m))) events.push(e);
  const report = verifyEvents(events);
  process.stdout.write(`${JSON.stringify({ ...report, problems }, null, 2)}\n`);
  return report.ok && problems.length === 0 ? 0 : 1;
}
