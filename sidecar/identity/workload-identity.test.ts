import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCustosError } from '../../lib/errors.ts';
import type { Principal } from '../../policy/types.ts';
import { IssuerKeys } from './issuer-keys.ts';
import { createLocalIssuer, mintKubernetesToken, type LocalIssuer } from './local-issuer.ts';
import { createTokenVerifier, ERR_AUTH_TOKEN_REJECTED, TokenVerificationError, type TokenVerifier } from './token-verifier.ts';
import { WorkloadIdentity } from './workload-identity.ts';

const ISS = 'https://kubernetes.default.svc.cluster.local';
const T0 = Date.UTC(2025, 5, 6, 12, 0, 0);

describe('WorkloadIdentity', () => {
  let dir = '';
  let issuer: LocalIssuer;
  const clock = { now: T0 };
  let verifier: TokenVerifier;
  let verifications = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'custos-token-'));
    issuer = await createLocalIssuer({ issuer: ISS, kid: 'rsa-1', clock: () => clock.now });
    const jwksPath = join(dir, 'jwks.json');
    await issuer.writeJwksFile(jwksPath);
    const keys = new IssuerKeys({ issuer: ISS, source: { kind: 'file', path: jwksPath }, clock: () => clock.now });
    assert.equal(await keys.refresh('initial'), 'updated');
    const inner = createTokenVerifier({ clock: () => clock.now, issuers: [{ issuer: ISS, audience: 'custos', keys }] });
    verifier = { verify: (raw, kind) => { verifications += 1; return inner.verify(raw, kind); } };
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  /** Writes the token the way the kubelet's atomic writer does: new file, then rename. */
  async function project(path: string, content: string): Promise<void> {
    await writeFile(`${path}.tmp`, content);
    await rename(`${path}.tmp`, path);
  }

  async function failure(identity: WorkloadIdentity): Promise<TokenVerificationError> {
    try {
      await identity.current();
    } catch (error: unknown) {
      assert.ok(error instanceof TokenVerificationError);
      assert.ok(isCustosError(error, ERR_AUTH_TOKEN_REJECTED));
      return error;
    }
    assert.fail('expected current() to reject');
  }

  it('verifies the projected token and follows its rotation without caching the old one', async () => {
    clock.now = T0;
    const path = join(dir, 'rotating');
    await project(path, await mintKubernetesToken(issuer, { namespace: 'payments', serviceAccount: 'reporter', podUid: 'pod-a' }));
    const identity = new WorkloadIdentity({ verifier, path, clock: () => clock.now });
    assert.equal(identity.ready, false);
    const first: Principal = await identity.current();
    assert.deepEqual([first.kind, first.authMethod, first.kubernetes?.podUid], ['workload', 'k8s-sa', 'pod-a']);
    assert.equal(identity.ready, true);

    clock.now += 1_000; // well inside the re-verification interval: only the file changed
    await project(path, await mintKubernetesToken(issuer, { namespace: 'payments', serviceAccount: 'reporter', podUid: 'pod-a', serviceAccountUid: 'sa-rotated' }));
    const second = await identity.current();
    assert.equal(second.kubernetes?.serviceAccountUid, 'sa-rotated');
    assert.equal(second.expiresAt, Math.floor(clock.now / 1000) + 3600);
  });

  it('re-verifies an unchanged token only after reverifyAfterMs', async () => {
    clock.now = T0;
    const path = join(dir, 'cached');
    await project(path, `${await mintKubernetesToken(issuer, { namespace: 'payments', serviceAccount: 'reporter' })}\n`);
    const identity = new WorkloadIdentity({ verifier, path, clock: () => clock.now, reverifyAfterMs: 60_000 });
    const before = verifications;
    await identity.current();
    await identity.current();
    clock.now += 59_999;
    await identity.current();
    assert.equal(verifications - before, 1);
    clock.now += 1;
    await identity.current();
    assert.equal(verifications - before, 2);
  });

  it('rejects and turns not ready when the token has expired and was not rotated', async () => {
    clock.now = T0;
    const path = join(dir, 'expiring');
    await project(path, await mintKubernetesToken(issuer, { namespace: 'payments', serviceAccount: 'reporter', expiresInSeconds: 600 }));
    const identity = new WorkloadIdentity({ verifier, path, clock: () => clock.now });
    await identity.current();
    assert.equal(identity.ready, true);
    clock.now += 600_000;
    assert.equal(identity.ready, false);
    const error = await failure(identity);
    assert.equal(error.reason, 'expired');
    assert.equal(identity.lastError?.reason, 'expired');
    await project(path, await mintKubernetesToken(issuer, { namespace: 'payments', serviceAccount: 'reporter' }));
    assert.equal((await identity.current()).kind, 'workload');
    assert.equal(identity.ready, true);
    assert.equal(identity.lastError, undefined);
  });

  const broken: Array<[string, (path: string) => Promise<void>, string]> = [
    ['the file is missing', async () => { /* never written */ }, 'missing-token'],
    ['the file is empty', (path) => project(path, '\n'), 'missing-token'],
    ['the file holds garbage', (path) => project(path, 'not-a-token'), 'malformed'],
    ['the token has the API-server audience', async (path) => { await project(path, await mintKubernetesToken(issuer, { namespace: 'payments', serviceAccount: 'reporter', audience: [ISS] })); }, 'wrong-audience'],
    ['the token is not a Kubernetes token', async (path) => { await project(path, await issuer.mint({}, { audience: 'custos', subject: 'alice' })); }, 'not-a-workload-token'],
    ['the file is huge', (path) => project(path, 'a'.repeat(100_000)), 'too-large'],
  ];
  for (const [name, prepare, reason] of broken) {
    it(`rejects with ERR_AUTH_TOKEN_REJECTED (${reason}) when ${name}`, async () => {
      clock.now = T0;
      const path = join(dir, `broken-${reason}`);
      await prepare(path);
      const identity = new WorkloadIdentity({ verifier, path, clock: () => clock.now });
      assert.equal((await failure(identity)).reason, reason);
      assert.equal(identity.ready, false);
    });
  }

  it('rejects (service-account-revoked) and turns not ready while the API server says the service account is gone, though the token still verifies', async () => {
    clock.now = T0;
    const path = join(dir, 'revoked');
    await project(path, await mintKubernetesToken(issuer, { namespace: 'payments', serviceAccount: 'reporter' }));
    let revoked: string | undefined;
    const identity = new WorkloadIdentity({ verifier, path, clock: () => clock.now, revoked: () => revoked });
    assert.equal((await identity.current()).subject, 'system:serviceaccount:payments:reporter');
    assert.equal(identity.subject, 'system:serviceaccount:payments:reporter');
    revoked = 'the pod\'s service account is no longer valid (401)';
    assert.equal(identity.ready, false);
    const error = await failure(identity);
    assert.deepEqual([error.reason, error.message], ['service-account-revoked', revoked]);
    assert.equal(identity.lastError?.reason, 'service-account-revoked');
    // The subject stays known, so a later review can be compared with it.
    assert.equal(identity.subject, 'system:serviceaccount:payments:reporter');
    revoked = undefined;
    assert.equal((await identity.current()).kind, 'workload');
    assert.equal(identity.ready, true);
  });

  it('defaults to the dedicated projected token path', () => {
    assert.equal(new WorkloadIdentity({ verifier }).path, '/var/run/secrets/custos/token');
  });
});
