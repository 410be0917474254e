// The files a sidecar process needs, as the test stack and the benchmarks lay them out: the example
// policy pointed at a local issuer and a given PostgreSQL (then edited by the caller), the upstream
// credentials in a Secret-style folder, and the sidecar config on free ports.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import type { LocalIssuer } from '../../sidecar/identity/local-issuer.ts';
import { freePort } from './free-port.ts';
import type { PostgresInstance } from './postgres.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const ISSUER = 'https://issuer.custos.test';
export const POD_UID = 'pod-uid-0001';

export type PolicyDocument = ReturnType<typeof parseDocument>;

export interface SidecarFilesOptions {
  readonly dir: string;
  readonly postgres: PostgresInstance;
  readonly issuer: LocalIssuer;
  /** Edits the policy document (examples/policy.yaml, already pointed at the issuer and PostgreSQL). */
  readonly editPolicy?: (doc: PolicyDocument) => void;
  readonly spoolDir?: string;
  readonly spoolMaxBytes: number;
  readonly gatewayId: string;
  readonly logLevel: string;
  readonly extraConfig?: Record<string, unknown>;
}

export interface SidecarFiles {
  readonly policyFile: string;
  readonly configFile: string;
  readonly spoolDir: string;
  readonly port: number;
  readonly httpPort: number;
}

export async function writeSidecarFiles(options: SidecarFilesOptions): Promise<SidecarFiles> {
  const { dir, postgres } = options;
  const jwksFile = join(dir, 'jwks.json');
  await options.issuer.writeJwksFile(jwksFile);

  const policyDoc = parseDocument(await readFile(join(REPO_ROOT, 'examples', 'policy.yaml'), 'utf8'));
  policyDoc.setIn(['spec', 'issuers', 0, 'issuer'], ISSUER);
  policyDoc.setIn(['spec', 'issuers', 0, 'jwksFile'], jwksFile);
  policyDoc.setIn(['spec', 'subjects', 1, 'oidc', 'issuer'], ISSUER);
  policyDoc.setIn(['spec', 'targets', 0, 'host'], postgres.host);
  policyDoc.setIn(['spec', 'targets', 0, 'port'], postgres.port);
  policyDoc.setIn(['spec', 'targets', 0, 'database'], postgres.database);
  if (postgres.caCertPath !== undefined) {
    policyDoc.setIn(['spec', 'targets', 0, 'tls'], { mode: 'verify-full', caSecretName: 'billing-ca', serverName: 'localhost' });
  }
  options.editPolicy?.(policyDoc);
  const policyFile = join(dir, 'policy.yaml');
  await writeFile(policyFile, policyDoc.toString());

  const credentials = join(dir, 'credentials');
  await mkdir(join(credentials, 'billing-db'), { recursive: true });
  await writeFile(join(credentials, 'billing-db', 'username'), postgres.user);
  await writeFile(join(credentials, 'billing-db', 'password'), postgres.password, { mode: 0o600 });
  if (postgres.caCertPath !== undefined) {
    await mkdir(join(credentials, 'billing-ca'), { recursive: true });
    await writeFile(join(credentials, 'billing-ca', 'ca.crt'), await readFile(postgres.caCertPath));
  }

  const port = await freePort();
  const httpPort = await freePort();
  const spoolDir = options.spoolDir ?? join(dir, 'spool');
  const configFile = join(dir, 'sidecar.yaml');
  await writeFile(configFile, JSON.stringify({
    policyFile,
    listen: { host: '127.0.0.1', ports: { billing: port } },
    http: { host: '127.0.0.1', port: httpPort },
    credentialsDir: credentials,
    spool: { dir: spoolDir, maxBytes: options.spoolMaxBytes },
    gateway: { id: options.gatewayId, podUid: POD_UID },
    shutdownGraceSeconds: 2,
    logLevel: options.logLevel,
    ...options.extraConfig,
  }));
  return { policyFile, configFile, spoolDir, port, httpPort };
}
