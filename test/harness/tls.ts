// Throwaway certificate authority and server certificates for TLS tests, made with the openssl
// command-line tool (Debian package `openssl`).
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './processes.ts';

export interface TestCertificates {
  readonly dir: string;
  readonly caCertPath: string;
  readonly certPath: string;
  readonly keyPath: string;
  readonly caCert: string;
  readonly cert: string;
  readonly key: string;
}

/** A CA and a server certificate for `names` (DNS names and IP addresses). */
export async function makeCertificates(names: readonly string[] = ['localhost', '127.0.0.1'], dir?: string): Promise<TestCertificates> {
  const base = dir ?? (await mkdtemp(join(tmpdir(), 'custos-tls-')));
  await mkdir(base, { recursive: true });
  const p = (f: string): string => join(base, f);
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=custos-test-ca', '-keyout', p('ca.key'), '-out', p('ca.crt')]);
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', `/CN=${names[0] ?? 'localhost'}`, '-keyout', p('server.key'), '-out', p('server.csr')]);
  const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  await writeFile(p('ext.cnf'), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  await run('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', p('ext.cnf'), '-out', p('server.crt')]);
  return {
    dir: base,
    caCertPath: p('ca.crt'),
    certPath: p('server.crt'),
    keyPath: p('server.key'),
    caCert: await readFile(p('ca.crt'), 'utf8'),
    cert: await readFile(p('server.crt'), 'utf8'),
    key: await readFile(p('server.key'), 'utf8'),
  };
}
