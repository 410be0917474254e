// The targets' current addresses (target-addresses.ts): DNS answers come from an injected resolver
// (a table the test edits, so "DNS changed" needs no hosts file), literals never reach it, failed
// answers keep the last good one, and placement follows the refresh.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { placeConnection, type TargetDestination } from './destination-placement.ts';
import { isLiteralHost, nextDestination, TargetAddressBook, type HostResolver, type TargetEndpoint } from './target-addresses.ts';

function capturedLogger(): { logger: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { out.push(chunk.toString()); done(); } });
  return { logger: pino({ level: 'debug' }, stream), lines: () => out.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** A resolver answering from a table the test edits; a missing name fails like getaddrinfo. */
function tableResolver(table: Map<string, string[]>): { resolve: HostResolver; asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    resolve: (host) => {
      asked.push(host);
      const answer = table.get(host);
      if (answer === undefined) return Promise.reject(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }));
      return Promise.resolve(answer);
    },
  };
}

const BILLING: TargetEndpoint = { name: 'billing', host: 'billing-db.payments.svc', port: 5432 };

describe('isLiteralHost', () => {
  it('takes IP addresses and CIDRs of both families as literals, names not', () => {
    for (const host of ['10.96.0.12', 'fd00:10::c', '10.20.0.0/16', 'fd00::/8']) assert.equal(isLiteralHost(host), true, host);
    for (const host of ['billing-db.payments.svc', 'localhost', 'db/16', '']) assert.equal(isLiteralHost(host), false, host);
  });
});

describe('nextDestination', () => {
  const good: TargetDestination = { ...BILLING, addresses: ['10.96.0.12'] };

  it('takes a new answer, sorted and without duplicates', () => {
    assert.deepEqual(nextDestination(good, BILLING, { addresses: ['10.96.0.14', '10.96.0.13', '10.96.0.14'] }), { ...BILLING, addresses: ['10.96.0.13', '10.96.0.14'] });
  });

  it('keeps the last good addresses when resolution fails or answers nothing, and says so', () => {
    assert.deepEqual(nextDestination(good, BILLING, { error: 'ENOTFOUND' }), { ...good, resolutionError: 'ENOTFOUND' });
    assert.deepEqual(nextDestination(good, BILLING, { addresses: [] }), { ...good, resolutionError: 'billing-db.payments.svc resolved to no address' });
  });

  it('drops the addresses of a host the policy no longer names', () => {
    const moved = { ...BILLING, host: 'billing-db.finance.svc' };
    assert.deepEqual(nextDestination(good, moved, { error: 'ENOTFOUND' }), { ...moved, addresses: [], resolutionError: 'ENOTFOUND' });
  });

  it('has nothing to keep the first time', () => {
    assert.deepEqual(nextDestination(undefined, BILLING, { error: 'EAI_AGAIN' }), { ...BILLING, addresses: [], resolutionError: 'EAI_AGAIN' });
  });
});

describe('TargetAddressBook', () => {
  it('resolves names at start, takes literals as they are, and picks up a changed DNS answer on refresh', async () => {
    const table = new Map([['billing-db.payments.svc', ['10.96.0.12']]]);
    const dns = tableResolver(table);
    const { logger, lines } = capturedLogger();
    const targets: TargetEndpoint[] = [BILLING, { name: 'orders', host: '10.96.0.13', port: 5432 }];
    const book = new TargetAddressBook({ targets: () => targets, resolve: dns.resolve, logger, refreshIntervalMs: 3_600_000 });
    await book.start();
    try {
      assert.deepEqual(book.current(), [{ ...BILLING, addresses: ['10.96.0.12'] }, { name: 'orders', host: '10.96.0.13', port: 5432, addresses: ['10.96.0.13'] }]);
      assert.deepEqual(dns.asked, ['billing-db.payments.svc'], 'a literal address is never looked up');
      const at = (address: string) => placeConnection({ listenerTarget: 'billing', lookup: { destination: { address, port: 5432, family: 4 } }, targets: book.current() }).kind;
      assert.equal(at('10.96.0.12'), 'serve');

      // Failover: the name now points elsewhere.
      table.set('billing-db.payments.svc', ['10.96.0.40']);
      assert.equal(at('10.96.0.40'), 'refuse', 'not before the refresh');
      await book.refresh();
      assert.deepEqual(book.current()[0]?.addresses, ['10.96.0.40']);
      assert.equal(at('10.96.0.40'), 'serve');
      assert.equal(at('10.96.0.12'), 'refuse', 'the old address is no longer the target');
      const changed = lines().filter((l) => l['msg'] === 'target addresses');
      assert.deepEqual(changed.at(-1)?.['addresses'], ['10.96.0.40']);
      assert.deepEqual(changed.at(-1)?.['previous'], ['10.96.0.12']);
    } finally {
      book.close();
    }
  });

  it('keeps the last good answer through a DNS failure, warning once, and recovers', async () => {
    const table = new Map([['billing-db.payments.svc', ['10.96.0.12']]]);
    const dns = tableResolver(table);
    const { logger, lines } = capturedLogger();
    const book = new TargetAddressBook({ targets: () => [BILLING], resolve: dns.resolve, logger });
    await book.start();
    try {
      table.delete('billing-db.payments.svc');
      await book.refresh();
      await book.refresh();
      assert.deepEqual(book.current(), [{ ...BILLING, addresses: ['10.96.0.12'], resolutionError: 'billing-db.payments.svc does not resolve (ENOTFOUND)' }]);
      const warnings = lines().filter((l) => l['level'] === 40);
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      assert.equal(warnings[0]?.['msg'], 'target host does not resolve: keeping its last known addresses');
      table.set('billing-db.payments.svc', ['10.96.0.12']);
      await book.refresh();
      assert.deepEqual(book.current(), [{ ...BILLING, addresses: ['10.96.0.12'] }]);
      assert.equal(lines().at(-1)?.['msg'], 'target host resolves again');
    } finally {
      book.close();
    }
  });

  it('starts even when a name does not resolve yet (its connections are refused until it does)', async () => {
    const dns = tableResolver(new Map());
    const { logger, lines } = capturedLogger();
    const book = new TargetAddressBook({ targets: () => [BILLING], resolve: dns.resolve, logger });
    await book.start();
    book.close();
    assert.deepEqual(book.current(), [{ ...BILLING, addresses: [], resolutionError: 'billing-db.payments.svc does not resolve (ENOTFOUND)' }]);
    assert.equal(lines()[0]?.['msg'], 'target host does not resolve: intercepted connections to it are refused until it does');
  });

  it('refreshes on its own every interval', async () => {
    const table = new Map([['billing-db.payments.svc', ['10.96.0.12']]]);
    const dns = tableResolver(table);
    const book = new TargetAddressBook({ targets: () => [BILLING], resolve: dns.resolve, logger: capturedLogger().logger, refreshIntervalMs: 20 });
    await book.start();
    try {
      table.set('billing-db.payments.svc', ['10.96.0.41']);
      const deadline = Date.now() + 2000;
      while (book.current()[0]?.addresses[0] !== '10.96.0.41' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(book.current()[0]?.addresses, ['10.96.0.41']);
    } finally {
      book.close();
    }
  });

  it('follows policy changes: new literals at once, new names after their refresh, removed targets gone', async () => {
    const table = new Map([['billing-db.payments.svc', ['10.96.0.12']], ['ledger-db.finance.svc', ['10.96.0.77']]]);
    const dns = tableResolver(table);
    let targets: TargetEndpoint[] = [BILLING];
    const book = new TargetAddressBook({ targets: () => targets, resolve: dns.resolve, logger: capturedLogger().logger, refreshIntervalMs: 3_600_000 });
    await book.start();
    try {
      targets = [{ name: 'orders', host: '10.96.0.13', port: 5432 }, { name: 'ledger', host: 'ledger-db.finance.svc', port: 5432 }];
      assert.deepEqual(book.current(), [
        { name: 'orders', host: '10.96.0.13', port: 5432, addresses: ['10.96.0.13'] },
        { name: 'ledger', host: 'ledger-db.finance.svc', port: 5432, addresses: [], resolutionError: 'not resolved yet' },
      ]);
      await book.refresh();
      assert.deepEqual(book.current()[1], { name: 'ledger', host: 'ledger-db.finance.svc', port: 5432, addresses: ['10.96.0.77'] });
      // The same name under a new host: the old host's addresses are not carried over.
      targets = [{ name: 'ledger', host: 'ledger-db.archive.svc', port: 5432 }];
      assert.deepEqual(book.current(), [{ name: 'ledger', host: 'ledger-db.archive.svc', port: 5432, addresses: [], resolutionError: 'not resolved yet' }]);
    } finally {
      book.close();
    }
  });

  it('runs one more refresh when asked during a refresh, so a policy change is never answered with the old targets', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => { release = r; });
    const asked: string[] = [];
    const resolve: HostResolver = async (host) => {
      asked.push(host);
      if (asked.length === 1) await gate;
      return ['10.96.0.12'];
    };
    let targets: TargetEndpoint[] = [BILLING];
    const book = new TargetAddressBook({ targets: () => targets, resolve, logger: capturedLogger().logger });
    const first = book.refresh();
    targets = [{ name: 'ledger', host: 'ledger-db.finance.svc', port: 5432 }];
    const second = book.refresh();
    release();
    await Promise.all([first, second]);
    assert.deepEqual(asked, ['billing-db.payments.svc', 'ledger-db.finance.svc']);
    assert.deepEqual(book.current(), [{ name: 'ledger', host: 'ledger-db.finance.svc', port: 5432, addresses: ['10.96.0.12'] }]);
  });
});
