import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { isCustosError } from '../../lib/errors.ts';
import {
  DAY_MS, HOUR_MS, YEAR_MS, createCertificateAuthority, describeCertificate, issueServingCertificate, loadCertificateAuthority,
  splitPemCertificates, webhookServiceNames,
} from './certificate-builder.ts';

const NOW = new Date('2030-01-01T00:00:00Z');

describe('webhook certificates', () => {
  it('makes a CA that node:crypto sees as a CA, with the requested validity', async () => {
    const ca = await createCertificateAuthority({ commonName: 'custos-webhook-ca', now: NOW, validityMs: 10 * YEAR_MS });
    const x = new X509Certificate(ca.certPem);
    assert.equal(x.ca, true);
    assert.equal(x.subject, 'CN=custos-webhook-ca');
    assert.equal(new Date(x.validTo).getTime(), NOW.getTime() + 10 * YEAR_MS);
    assert.ok(new Date(x.validFrom).getTime() <= NOW.getTime());
    assert.ok(x.checkPrivateKey(createPrivateKey(ca.keyPem)));
    assert.equal(x.publicKey.asymmetricKeyType, 'ec');
    assert.deepEqual(x.publicKey.asymmetricKeyDetails, { namedCurve: 'prime256v1' });
  });

  it('issues a serving leaf for the Service names and IPs, signed by the CA, not a CA itself', async () => {
    const ca = await createCertificateAuthority({ commonName: 'ca', now: NOW, validityMs: YEAR_MS });
    const names = [...webhookServiceNames('custos-webhook', 'custos-system'), '127.0.0.1', '::1'];
    const leaf = await issueServingCertificate(ca, { names, now: NOW, lifetimeMs: DAY_MS });
    const x = new X509Certificate(leaf.certPem);
    assert.equal(x.ca, false);
    assert.ok(x.checkIssued(new X509Certificate(ca.certPem)));
    assert.ok(x.verify(new X509Certificate(ca.certPem).publicKey));
    assert.equal(x.subjectAltName, 'DNS:custos-webhook.custos-system.svc, DNS:custos-webhook.custos-system.svc.cluster.local, DNS:custos-webhook.custos-system, DNS:custos-webhook, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    assert.equal(x.checkHost('custos-webhook.custos-system.svc'), 'custos-webhook.custos-system.svc');
    assert.equal(x.checkHost('custos-webhook.other.svc'), undefined);
    assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.equal(new Date(x.validTo).getTime(), NOW.getTime() + DAY_MS);
    assert.equal(leaf.serialNumber, x.serialNumber.toUpperCase());
    assert.ok(x.checkPrivateKey(createPrivateKey(leaf.keyPem)));
  });

  it('gives every certificate a distinct positive 16-byte serial', async () => {
    const ca = await createCertificateAuthority({ commonName: 'ca', now: NOW, validityMs: YEAR_MS });
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) serials.add((await issueServingCertificate(ca, { names: ['a'], now: NOW, lifetimeMs: HOUR_MS })).serialNumber);
    assert.equal(serials.size, 20);
    for (const s of serials) assert.match(s, /^[1-7][0-9A-F]{31}$/);
  });

  it('never lets a leaf outlive its CA, and refuses to sign with an expired CA', async () => {
    const ca = await createCertificateAuthority({ commonName: 'ca', now: NOW, validityMs: 2 * HOUR_MS });
    const leaf = await issueServingCertificate(ca, { names: ['a'], now: new Date(NOW.getTime() + HOUR_MS), lifetimeMs: DAY_MS });
    assert.equal(leaf.notAfter.getTime(), ca.notAfter.getTime());
    await assert.rejects(issueServingCertificate(ca, { names: ['a'], now: new Date(NOW.getTime() + 3 * HOUR_MS), lifetimeMs: DAY_MS }),
      (e: unknown) => isCustosError(e, 'ERR_CERT_CA_EXPIRED'));
  });

  it('reloads a stored CA that still signs leaves the old CA certificate verifies', async () => {
    const ca = await createCertificateAuthority({ commonName: 'ca', now: NOW, validityMs: YEAR_MS });
    const loaded = await loadCertificateAuthority({ certPem: ca.certPem, keyPem: ca.keyPem });
    const leaf = await issueServingCertificate(loaded, { names: ['a'], now: NOW, lifetimeMs: HOUR_MS });
    assert.ok(new X509Certificate(leaf.certPem).verify(new X509Certificate(ca.certPem).publicKey));
  });

  it('refuses a stored CA whose key is not its own, a leaf posing as a CA, and garbage', async () => {
    const ca = await createCertificateAuthority({ commonName: 'ca', now: NOW, validityMs: YEAR_MS });
    const other = await createCertificateAuthority({ commonName: 'other', now: NOW, validityMs: YEAR_MS });
    const leaf = await issueServingCertificate(ca, { names: ['a'], now: NOW, lifetimeMs: HOUR_MS });
    const cases: Array<[{ certPem: string; keyPem: string }, RegExp]> = [
      [{ certPem: ca.certPem, keyPem: other.keyPem }, /the private key does not belong to certificate CN=ca/],
      [{ certPem: leaf.certPem, keyPem: leaf.keyPem }, /is not a CA/],
      [{ certPem: 'not pem', keyPem: ca.keyPem }, /not a PEM X\.509 certificate/],
      [{ certPem: ca.certPem, keyPem: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' }, /not a PKCS#8 PEM ECDSA P-256 key/],
    ];
    for (const [material, message] of cases) {
      await assert.rejects(loadCertificateAuthority(material), (e: unknown) => isCustosError(e, 'ERR_CERT_CA_INVALID') && message.test(e.message));
    }
  });

  it('refuses nonsensical options', async () => {
    const ca = await createCertificateAuthority({ commonName: 'ca', now: NOW, validityMs: YEAR_MS });
    await assert.rejects(issueServingCertificate(ca, { names: [], now: NOW, lifetimeMs: HOUR_MS }), /at least one name/);
    await assert.rejects(issueServingCertificate(ca, { names: ['a'], now: NOW, lifetimeMs: 0 }), /lifetime must be positive/);
    await assert.rejects(createCertificateAuthority({ commonName: 'ca', now: NOW, validityMs: -1 }), /validity must be positive/);
  });

  it('describes and splits PEM bundles', async () => {
    const a = await createCertificateAuthority({ commonName: 'a', now: NOW, validityMs: YEAR_MS });
    const b = await createCertificateAuthority({ commonName: 'b', now: NOW, validityMs: YEAR_MS });
    const parts = splitPemCertificates(`${a.certPem}\n${a.keyPem}\n${b.certPem}`);
    assert.deepEqual(parts.map((p) => describeCertificate(p).subject), ['CN=a', 'CN=b']);
    assert.equal(describeCertificate(a.certPem).isCa, true);
    assert.throws(() => describeCertificate('nope'), /not a PEM X\.509 certificate/);
  });
});
