// `custos audit tail`: the audit trail as a human reads it (or as JSON lines with --json).
import { parseArgs } from 'node:util';
import type { AuditEvent } from '../../audit/event.ts';
import { auditEvents } from './audit-source.ts';

export function formatEvent(e: AuditEvent): string {
  const parts = [e.time, e.event_type.padEnd(17)];
  if (e.policy) parts.push(`${e.policy.decision}${e.policy.rule !== null ? `(${e.policy.rule})` : ''}`);
  if (e.outcome !== undefined) parts.push(e.outcome);
  if (e.actor?.id !== undefined) parts.push(`actor=${e.actor.id}`);
  if (e.actor?.k8s?.pod !== undefined) parts.push(`pod=${e.actor.k8s.namespace ?? ''}/${e.actor.k8s.pod}`);
  if (e.target) parts.push(`target=${e.target.name}`);
  if (e.command) parts.push(JSON.stringify(e.command.text));
  if (e.result?.sqlstate !== undefined) parts.push(`sqlstate=${e.result.sqlstate}`);
  if (e.result?.command_tag !== undefined) parts.push(`tag=${JSON.stringify(e.result.command_tag)}`);
  if (e.event_type === 'db.query.result' && e.result?.rows !== undefined) parts.push(`rows=${e.result.rows}`);
  if (e.approval !== undefined) {
    parts.push(`approval=${e.approval.id}`, `mode=${e.approval.mode}`, `phase=${e.approval.phase}`);
    for (const r of e.approval.reviewers) parts.push(`${r.decision}=${r.username}:${JSON.stringify(r.reason)}`);
  }
  if (e.message !== undefined) parts.push(`(${e.message})`);
  parts.push(`session=${e.session_id ?? '-'}#${e.session_seq}`);
  return parts.join(' ');
}

export async function runAuditTail(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      spool: { type: 'string' },
      redis: { type: 'string' },
      pod: { type: 'string' },
      follow: { type: 'boolean', short: 'f' },
      json: { type: 'boolean' },
      n: { type: 'string', short: 'n' },
    },
    strict: true,
  });
  const last = values.n !== undefined ? Number(values.n) : undefined;
  if (last !== undefined && (!Number.isInteger(last) || last < 0)) {
    process.stderr.write('custos audit tail: -n must be a non-negative integer\n');
    return 2;
  }
  const controller = new AbortController();
  process.once('SIGINT', () => { controller.abort(); });
  const print = (e: AuditEvent): void => {
    process.stdout.write(`${values.json === true ? JSON.stringify(e) : formatEvent(e)}\n`);
  };
  const redisUrl = values.redis ?? (values.spool === undefined ? process.env['REDIS_URL'] : undefined);
  const source = {
    ...(values.spool !== undefined ? { spool: values.spool } : {}),
    ...(redisUrl !== undefined ? { redis: redisUrl } : {}),
    ...(values.pod !== undefined ? { pod: values.pod } : {}),
    follow: values.follow === true,
    signal: controller.signal,
  };
  const window: AuditEvent[] = [];
  for await (const event of auditEvents(source, (m) => process.stderr.write(`warning: ${m}\n`))) {
    if (last === undefined || values.follow === true) {
      print(event);
    } else {
      window.push(event);
      if (window.length > last) window.shift();
    }
  }
  window.forEach(print);
  return 0;
}
