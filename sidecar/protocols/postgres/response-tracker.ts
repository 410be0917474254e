// Tracks which server responses answer which forwarded client messages, so the proxy can
//  - swallow the replies to messages it injected itself (the Parse/Bind of a substituted statement),
//  - replace the server's error for a substituted (blocked) statement with the proxy's own,
//  - attribute every result (rows, command tag, SQLSTATE) to the audited execution it belongs to.
//
// The PostgreSQL protocol answers in order: every Query and every Sync yields exactly one
// ReadyForQuery; inside an extended-protocol batch, each Parse/Bind/Describe/Execute/Close yields its
// own completion, and after an error the server discards everything up to the Sync
// (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY).
// The tracker mirrors that with a FIFO of batches, each a FIFO of expected responses. Pure: no I/O.

export type Expectation = 'parse' | 'bind' | 'describe-statement' | 'describe-portal' | 'execute' | 'close' | 'query';

/** An audited execution whose outcome the tracker reports when the server finishes it. */
export interface TrackedExecution {
  readonly id: string;
  readonly startedAt: number;
  rows: number;
  commandTags: string[];
}

export interface PendingResponse {
  readonly expect: Expectation;
  /** The proxy sent this message itself: its completion must not reach the client. */
  readonly injected: boolean;
  /** Replaces the server's ErrorResponse for a blocked statement (the proxy's own denial). */
  readonly denial?: Buffer;
  readonly execution?: TrackedExecution;
  /** What the session needs to interpret this entry's results (e.g. its masking analysis). */
  readonly context?: unknown;
}

interface Batch {
  readonly entries: PendingResponse[];
  /** Sync or Query sent: a ReadyForQuery will close this batch. */
  sealed: boolean;
  /** The server reported an error and discards the rest of the batch. */
  failed: boolean;
  /** Executions of this batch never run by the server because an earlier message failed. */
  readonly skipped: TrackedExecution[];
}

/** What to do with one backend message. */
export type ResponseVerdict =
  | { readonly kind: 'forward' }
  | { readonly kind: 'swallow' }
  | { readonly kind: 'replace'; readonly bytes: Buffer };

/** An execution finished (or never ran); reported to the audit log as a result event. */
export interface ExecutionOutcome {
  readonly execution: TrackedExecution;
  readonly status: 'success' | 'failure' | 'skipped';
  readonly sqlstate?: string;
}

export type TransactionStatus = 'I' | 'T' | 'E';

export class ResponseTracker {
  readonly #batches: Batch[] = [];
  #status: TransactionStatus = 'I';
  readonly #outcomes: ExecutionOutcome[] = [];

  /** Transaction status from the server's last ReadyForQuery. */
  get transactionStatus(): TransactionStatus {
    return this.#status;
  }

  /** Batches sent whose ReadyForQuery has not arrived yet. */
  get outstanding(): number {
    return this.#batches.length;
  }

  /** The entry the next response belongs to (ignoring asynchronous messages). */
  head(): PendingResponse | undefined {
    return this.#batches[0]?.entries[0];
  }

  /** Batches ended by a Sync or a Query whose ReadyForQuery has not arrived: the server will answer them. */
  get awaitingReadyForQuery(): number {
    return this.#batches.filter((b) => b.sealed).length;
  }

  /** Records a forwarded (or injected) message that the server will answer. */
  expect(response: PendingResponse): void {
    const batch = this.#openBatch();
    if (batch.failed) {
      // The server has already failed this batch and discards the message without answering.
      if (response.execution) batch.skipped.push(response.execution);
      return;
    }
    batch.entries.push(response);
    if (response.expect === 'query') batch.sealed = true;
  }

  /** A Sync was forwarded: the open batch ends with the next ReadyForQuery. */
  sync(): void {
    this.#openBatch().sealed = true;
  }

  /** Outcomes collected since the last call, in order. */
  takeOutcomes(): ExecutionOutcome[] {
    return this.#outcomes.splice(0);
  }

  /**
   * Decides what happens to one backend message (other than ReadyForQuery), by its type byte.
   * `sqlstate` is read by the caller from ErrorResponse messages only; `commandTag` from
   * CommandComplete.
   */
  onBackendMessage(type: number, details: { sqlstate?: string; commandTag?: string } = {}): ResponseVerdict {
    const batch = this.#batches[0];
    const head = batch?.entries[0];
    switch (type) {
      case 0x31: // '1' ParseComplete
        return this.#complete(batch, 'parse');
      case 0x32: // '2' BindComplete
        return this.#complete(batch, 'bind');
      case 0x33: // '3' CloseComplete
        return this.#complete(batch, 'close');
      case 0x54: // 'T' RowDescription
      case 0x6e: // 'n' NoData
        if (head !== undefined && (head.expect === 'describe-statement' || head.expect === 'describe-portal')) {
          return this.#complete(batch, head.expect);
        }
        return { kind: 'forward' };
      case 0x44: // 'D' DataRow
        if (head?.execution) head.execution.rows++;
        return { kind: 'forward' };
      case 0x43: // 'C' CommandComplete
        if (head?.execution && details.commandTag !== undefined) head.execution.commandTags.push(details.commandTag);
        if (head?.expect === 'execute') return this.#complete(batch, 'execute');
        return { kind: 'forward' };
      case 0x49: // 'I' EmptyQueryResponse
      case 0x73: // 's' PortalSuspended
        if (head?.expect === 'execute') return this.#complete(batch, 'execute');
        return { kind: 'forward' };
      case 0x45: // 'E' ErrorResponse
        return this.#error(batch, details.sqlstate);
      default:
        // ParameterDescription, NoticeResponse, NotificationResponse, ParameterStatus and COPY
        // traffic need no bookkeeping. ReadyForQuery goes through onReadyForQuery.
        return { kind: 'forward' };
    }
  }

  /** ReadyForQuery carries the transaction status; the caller passes it as `status`. */
  onReadyForQuery(status: TransactionStatus): ResponseVerdict {
    return this.#ready(status);
  }

  #openBatch(): Batch {
    const last = this.#batches.at(-1);
    if (last !== undefined && !last.sealed) return last;
    const batch: Batch = { entries: [], sealed: false, failed: false, skipped: [] };
    this.#batches.push(batch);
    return batch;
  }

  #complete(batch: Batch | undefined, expect: Expectation): ResponseVerdict {
    const head = batch?.entries[0];
    if (batch === undefined || head === undefined || head.expect !== expect) {
      // Out of step with the server: nothing to attribute; forward so the client sees the truth.
      return { kind: 'forward' };
    }
    batch.entries.shift();
    if (head.execution) this.#outcomes.push({ execution: head.execution, status: 'success' });
    return head.injected ? { kind: 'swallow' } : { kind: 'forward' };
  }

  #error(batch: Batch | undefined, sqlstate: string | undefined): ResponseVerdict {
    if (batch === undefined) return { kind: 'forward' };
    const head = batch.entries[0];
    if (head?.expect === 'query') {
      // A simple Query stops at its first error; the rest of its statements never run.
      batch.entries.shift();
      if (head.execution) this.#outcomes.push({ execution: head.execution, status: 'failure', ...(sqlstate !== undefined ? { sqlstate } : {}) });
      return this.#denialOr(head, sqlstate);
    }
    // Extended protocol: the failing message is the head; the server skips the rest until Sync.
    batch.failed = true;
    const failed = batch.entries.shift();
    for (const rest of batch.entries.splice(0)) if (rest.execution) batch.skipped.push(rest.execution);
    if (failed?.execution) this.#outcomes.push({ execution: failed.execution, status: 'failure', ...(sqlstate !== undefined ? { sqlstate } : {}) });
    return failed === undefined ? { kind: 'forward' } : this.#denialOr(failed, sqlstate);
  }

  #denialOr(entry: PendingResponse, sqlstate: string | undefined): ResponseVerdict {
    // The substitute statement failed as intended: the client sees the proxy's clean denial. Any
    // other error (e.g. 25P02 in an aborted transaction) is the server's truth and passes through.
    if (entry.denial !== undefined && (sqlstate === undefined || PROXY_SQLSTATES.has(sqlstate))) {
      return { kind: 'replace', bytes: entry.denial };
    }
    return { kind: 'forward' };
  }

  #ready(status: TransactionStatus): ResponseVerdict {
    const batch = this.#batches.shift();
    this.#status = status;
    if (batch !== undefined) {
      for (const rest of batch.entries) {
        if (rest.execution === undefined) continue;
        // A simple Query ends at ReadyForQuery; any other entry still waiting was never run.
        if (rest.expect === 'query') this.#outcomes.push({ execution: rest.execution, status: 'success' });
        else batch.skipped.push(rest.execution);
      }
      for (const execution of batch.skipped) this.#outcomes.push({ execution, status: 'skipped' });
    }
    return { kind: 'forward' };
  }
}

/** SQLSTATEs the proxy raises through substitute statements. */
const PROXY_SQLSTATES = new Set(['42501', '57014', '53000', '0A000', '42601']);
