// The placement of a connection by its original destination (destination-placement.ts), as a
// table: what the lookup said, what each target currently stands for, and what the listener does.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DESTINATION_REFUSED_SQLSTATE, placeConnection, type Placement, type TargetDestination } from './destination-placement.ts';
import type { OriginalDestinationLookup } from './original-destination.ts';

const BILLING: TargetDestination = { name: 'billing', host: 'billing-db.payments.svc', port: 5432, addresses: ['10.96.0.12', 'fd00:10::c'] };
const ORDERS: TargetDestination = { name: 'orders', host: '10.96.0.13', port: 5432, addresses: ['10.96.0.13'] };
/** A whole subnet on 6432 (a pgbouncer pool), with one host of it a target of its own. */
const POOL: TargetDestination = { name: 'pool', host: '10.20.0.0/16', port: 6432, addresses: ['10.20.0.0/16'] };
const POOL_PRIMARY: TargetDestination = { name: 'pool-primary', host: '10.20.0.7', port: 6432, addresses: ['10.20.0.7'] };
const TARGETS = [BILLING, ORDERS, POOL, POOL_PRIMARY];

function to(address: string, port: number): OriginalDestinationLookup {
  return { destination: { address, port, family: address.includes(':') ? 6 : 4 } };
}

function failed(code: string, reason = `lookup failed: ${code}`): OriginalDestinationLookup {
  return { destination: undefined, code, reason };
}

function place(listenerTarget: string, lookup: OriginalDestinationLookup, targets: readonly TargetDestination[] = TARGETS): Placement {
  return placeConnection({ listenerTarget, lookup, targets });
}

function refusal(p: Placement): Extract<Placement, { kind: 'refuse' }> {
  if (p.kind !== 'refuse') assert.fail(`expected a refusal, got ${JSON.stringify(p)}`);
  return p;
}

describe('placeConnection', () => {
  describe('serves the listener\'s target', () => {
    const cases: [string, string, OriginalDestinationLookup, Placement][] = [
      ['when the original destination is one of its IPv4 addresses', 'billing', to('10.96.0.12', 5432), { kind: 'serve', target: 'billing', via: 'original-destination', destination: '10.96.0.12:5432' }],
      ['when the original destination is its IPv6 address spelled differently', 'billing', to('fd00:10:0:0:0:0:0:c', 5432), { kind: 'serve', target: 'billing', via: 'original-destination', destination: '[fd00:10:0:0:0:0:0:c]:5432' }],
      ['when the original destination lies in its CIDR', 'pool', to('10.20.3.4', 6432), { kind: 'serve', target: 'pool', via: 'original-destination', destination: '10.20.3.4:6432' }],
      ['when the connection was not redirected (ENOENT: explicit mode, the client dialled the listener)', 'orders', failed('ENOENT'), { kind: 'serve', target: 'orders', via: 'direct' }],
      ['unverified when the addon is not loaded (explicit mode, warned at start-up)', 'orders', failed('ERR_ORIG_DST_UNAVAILABLE'), { kind: 'serve', target: 'orders', via: 'unverified' }],
    ];
    for (const [what, listener, lookup, expected] of cases) {
      it(what, () => {
        assert.deepEqual(place(listener, lookup), expected);
      });
    }
  });

  it('refuses a destination that belongs to another target, naming both, with 08004', () => {
    const r = refusal(place('billing', to('10.96.0.13', 5432)));
    assert.equal(r.reason, 'other-target');
    assert.equal(r.sqlstate, DESTINATION_REFUSED_SQLSTATE);
    assert.equal(r.sqlstate, '08004');
    assert.equal(r.owner, 'orders');
    assert.equal(r.destination, '10.96.0.13:5432');
    assert.equal(r.message, 'Custos refuses this connection: 10.96.0.13:5432 is the address of target "orders", but the connection was redirected to the listener of target "billing"');
    assert.match(r.detail ?? '', /this listener serves target "billing" \(billing-db\.payments\.svc:5432, currently 10\.96\.0\.12, fd00:10::c\)/);
    assert.match(r.hint ?? '', /restart the pod/);
  });

  it('refuses a destination that belongs to no target (no passthrough setting exists in the policy)', () => {
    for (const lookup of [to('10.96.0.99', 5432), to('fd00:10::d', 5432), to('192.0.2.1', 5432)]) {
      const r = refusal(place('billing', lookup));
      assert.equal(r.reason, 'unknown-destination');
      assert.equal(r.sqlstate, '08004');
      assert.equal(r.owner, undefined);
      assert.ok(r.destination !== undefined && r.message.includes(r.destination), r.message);
      assert.match(r.message, /is not the address of any target in the policy \(unknown destinations are refused\)$/);
    }
  });

  it('matches the port too: the target\'s address on another port is no target', () => {
    const r = refusal(place('billing', to('10.96.0.12', 6432)));
    assert.equal(r.reason, 'unknown-destination');
    assert.equal(r.destination, '10.96.0.12:6432');
  });

  it('gives an address to the most specific target, as the interception rules do', () => {
    // The primary's address is inside the pool's CIDR: it is the primary's, from either listener.
    assert.deepEqual(place('pool-primary', to('10.20.0.7', 6432)), { kind: 'serve', target: 'pool-primary', via: 'original-destination', destination: '10.20.0.7:6432' });
    const r = refusal(place('pool', to('10.20.0.7', 6432)));
    assert.equal(r.reason, 'other-target');
    assert.equal(r.owner, 'pool-primary');
    // The rest of the CIDR is the pool's.
    assert.equal(refusal(place('pool-primary', to('10.20.0.8', 6432))).owner, 'pool');
  });

  it('serves a destination two targets share exactly at either target\'s listener', () => {
    const replica: TargetDestination = { name: 'billing-readonly', host: 'billing-db.payments.svc', port: 5432, addresses: ['10.96.0.12'] };
    for (const listener of ['billing', 'billing-readonly']) {
      assert.deepEqual(place(listener, to('10.96.0.12', 5432), [BILLING, replica]), { kind: 'serve', target: listener, via: 'original-destination', destination: '10.96.0.12:5432' });
    }
  });

  it('refuses, fail closed, when the destination cannot be read', () => {
    for (const code of ['ERR_ORIG_DST_NO_FD', 'EBADF', 'ENOPROTOOPT', 'EUNKNOWN']) {
      const r = refusal(place('billing', failed(code, `getsockopt said ${code}`)));
      assert.equal(r.reason, 'unreadable-destination');
      assert.equal(r.sqlstate, '08004');
      assert.equal(r.message, `Custos refuses this connection: it cannot tell where the connection was going (${code})`);
      assert.equal(r.detail, `getsockopt said ${code}`);
    }
  });

  it('refuses while the listener\'s target has no known address, and says why', () => {
    const unresolved: TargetDestination = { ...BILLING, addresses: [], resolutionError: 'billing-db.payments.svc does not resolve (ENOTFOUND)' };
    const r = refusal(place('billing', to('10.96.0.12', 5432), [unresolved, ORDERS]));
    assert.equal(r.reason, 'unknown-destination');
    assert.match(r.detail ?? '', /whose addresses are not known\) \(last resolution failed: billing-db\.payments\.svc does not resolve \(ENOTFOUND\)\)/);
  });

  it('refuses at the listener of a target the policy no longer has', () => {
    const r = refusal(place('gone', to('10.96.0.12', 5432)));
    assert.equal(r.reason, 'other-target');
    assert.equal(r.owner, 'billing');
    assert.match(r.detail ?? '', /target "gone" is not in the current policy/);
    assert.equal(refusal(place('gone', to('10.96.0.200', 5432))).reason, 'unknown-destination');
  });

  it('ignores address entries that are not addresses, and never matches across families', () => {
    const odd: TargetDestination = { name: 'odd', host: 'x', port: 5432, addresses: ['not-an-ip', '10.0.0.0/40', '::/-1', '10.0.0.1/x'] };
    assert.equal(refusal(place('odd', to('10.0.0.1', 5432), [odd])).reason, 'unknown-destination');
    const v6only: TargetDestination = { name: 'v6', host: 'x', port: 5432, addresses: ['::/0'] };
    assert.equal(refusal(place('v6', to('10.0.0.1', 5432), [v6only])).reason, 'unknown-destination');
    assert.equal(place('v6', to('fd00::1', 5432), [v6only]).kind, 'serve');
  });
});
