// A minimal simple-protocol client on an upstream connection the sidecar owns (catalog lookups for
// masking provenance). Text results only; one query at a time.
import { BackendFramer } from './codec/framer.ts';
import { decodeBackendMessage } from './codec/backend-messages.ts';
import * as fe from './codec/frontend-serializer.ts';
import { CustosError } from '../../../lib/errors.ts';
import type { UpstreamConnection } from './upstream-client.ts';

export type TextRow = readonly (string | null)[];

export async function sideQuery(connection: UpstreamConnection, sql: string, timeoutMs = 10_000): Promise<TextRow[]> {
  const socket = connection.socket;
  const framer = new BackendFramer();
  const rows: TextRow[] = [];
  return new Promise<TextRow[]>((resolve, reject) => {
    let failure: CustosError | undefined;
    const timer = setTimeout(() => { finish(new CustosError('ERR_PG_SIDE_QUERY', 'catalog query timed out')); }, timeoutMs);
    const finish = (error?: CustosError): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (error) reject(error);
      else resolve(rows);
    };
    const onClose = (): void => { finish(new CustosError('ERR_PG_SIDE_QUERY', 'catalog connection closed')); };
    const onData = (chunk: Buffer): void => {
      try {
        for (const frame of framer.push(chunk)) {
          const message = decodeBackendMessage(frame);
          if (message.type === 'DataRow') rows.push(message.values.map((v) => (v === null ? null : v.toString('utf8'))));
          else if (message.type === 'ErrorResponse') failure = new CustosError('ERR_PG_SIDE_QUERY', `catalog query failed: ${message.fields.get('M') ?? 'error'}`);
          else if (message.type === 'ReadyForQuery') {
            finish(failure);
            return;
          }
        }
      } catch (e: unknown) {
        finish(new CustosError('ERR_PG_SIDE_QUERY', 'malformed reply to a catalog query', { cause: e }));
      }
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.write(fe.query(sql));
  });
}
