import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isCustosError } from '../../../lib/errors.ts';
import { md5PasswordHash, saslprep, ScramSha256Client } from './scram-client.ts';

// RFC 7677 §3 test vector.
const RFC = {
  username: 'user',
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

const rfcClient = (): ScramSha256Client =>
  new ScramSha256Client(RFC.password, { username: RFC.username, random: () => Buffer.from(RFC.clientNonce, 'base64') });

async function throughFinal(client: ScramSha256Client): Promise<void> {
  client.clientFirstMessage();
  await client.clientFinalMessage(Buffer.from(RFC.serverFirst));
}

describe('ScramSha256Client', () => {
  it('produces the RFC 7677 client messages and accepts its server signature', async () => {
    const c = rfcClient();
    assert.equal(c.clientFirstMessage().toString(), RFC.clientFirst);
    assert.equal((await c.clientFinalMessage(Buffer.from(RFC.serverFirst))).toString(), RFC.clientFinal);
    assert.equal(c.verified, false);
    c.verifyServerFinal(Buffer.from(RFC.serverFinal));
    assert.equal(c.verified, true);
  });

  it('sends an empty user name and a fresh 18-byte nonce by default', () => {
    const first = new ScramSha256Client('pw').clientFirstMessage().toString();
    assert.match(first, /^n,,n=,r=[A-Za-z0-9+/]{24}$/);
    assert.notEqual(first, new ScramSha256Client('pw').clientFirstMessage().toString());
  });

  const badFinal: readonly { name: string; data: string; match: RegExp }[] = [
    { name: 'the server signature is wrong', data: 'v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=', match: /signature mismatch/ },
    { name: 'the server signature is truncated', data: 'v=6rriTRBi', match: /signature mismatch/ },
    { name: 'the server reports an error', data: 'e=invalid-proof', match: /invalid-proof/ },
    { name: 'the message is garbage', data: 'x=1', match: /malformed/ },
  ];
  for (const c of badFinal) {
    it(`throws ERR_PG_AUTH when ${c.name}`, async () => {
      const client = rfcClient();
      await throughFinal(client);
      assert.throws(() => { client.verifyServerFinal(Buffer.from(c.data)); }, (e: unknown) => isCustosError(e, 'ERR_PG_AUTH') && c.match.test(e.message));
      assert.equal(client.verified, false);
    });
  }

  const badFirst: readonly { name: string; data: string; match: RegExp; maxIterations?: number }[] = [
    { name: 'the server nonce does not extend ours', data: 'r=other%hvYD,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096', match: /nonce/ },
    { name: 'the server nonce equals ours', data: `r=${RFC.clientNonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, match: /nonce/ },
    { name: 'a mandatory extension is present', data: 'm=ext,r=rOprNGfwEbeRWgbNEkqOx,s=W22Z,i=1', match: /mandatory extension/ },
    { name: 'the iteration count is 0', data: 'r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0', match: /malformed/ },
    { name: 'the iteration count is above the limit', data: 'r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=5000', match: /exceeds the limit 4096/, maxIterations: 4096 },
    { name: 'the salt is missing', data: 'r=rOprNGfwEbeRWgbNEkqOx,i=4096', match: /malformed/ },
    { name: 'the attributes are out of order', data: 's=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOx,i=4096', match: /malformed/ },
  ];
  for (const c of badFirst) {
    it(`throws ERR_PG_AUTH when ${c.name}`, async () => {
      const client = new ScramSha256Client('pencil', { username: 'user', random: () => Buffer.from(RFC.clientNonce, 'base64'), ...(c.maxIterations !== undefined ? { maxIterations: c.maxIterations } : {}) });
      client.clientFirstMessage();
      await assert.rejects(client.clientFinalMessage(Buffer.from(c.data)), (e: unknown) => isCustosError(e, 'ERR_PG_AUTH') && c.match.test(e.message));
    });
  }

  it('refuses steps out of order', async () => {
    const c = rfcClient();
    await assert.rejects(c.clientFinalMessage(Buffer.from(RFC.serverFirst)), (e: unknown) => isCustosError(e, 'ERR_PG_AUTH'));
    assert.throws(() => { c.verifyServerFinal(Buffer.from(RFC.serverFinal)); }, (e: unknown) => isCustosError(e, 'ERR_PG_AUTH'));
    c.clientFirstMessage();
    assert.throws(() => c.clientFirstMessage(), (e: unknown) => isCustosError(e, 'ERR_PG_AUTH'));
  });
});

describe('saslprep', () => {
  const cases: readonly { name: string; input: string; output: string }[] = [
    { name: 'an ASCII password, unchanged', input: 'pencil', output: 'pencil' },
    { name: 'an ASCII password with a control character, unchanged as in PostgreSQL', input: 'a\tb', output: 'a\tb' },
    { name: 'a non-ASCII space, mapped to U+0020', input: 'a\u00A0b\u3000c', output: 'a b c' },
    { name: 'a soft hyphen, removed', input: 'pass\u00ADword', output: 'password' },
    { name: 'compatibility characters, NFKC-normalized', input: '\u2168\uFF21', output: 'IXA' },
    { name: 'a decomposed accent, composed', input: 'e\u0301', output: '\u00E9' },
    { name: 'a private-use character, left raw as PostgreSQL does', input: '\u00E9\uE000', output: '\u00E9\uE000' },
    { name: 'a non-ASCII control character, left raw', input: '\u00E9\u0085', output: '\u00E9\u0085' },
  ];
  for (const c of cases) {
    it(`returns the expected string for ${c.name}`, () => {
      assert.equal(saslprep(c.input), c.output);
    });
  }
});

describe('md5PasswordHash', () => {
  it("computes 'md5' + md5hex(md5hex(password + user) + salt)", () => {
    assert.equal(md5PasswordHash('alice', 'secret', Buffer.from([1, 2, 3, 4])), 'md598a0412b9c31436fc53776e863350083');
  });
});
