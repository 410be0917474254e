// `kubectl custos` as a reviewer runs it: the real kubectl 1.35 finds the plugin on PATH and runs
// it against the Kubernetes API double (CRDs from crds/, static-token users: bob in group dba,
// carol outside it). AccessRequests and AccessReviews are created as admin, with status through
// the status subresource, as the operator and the controller write them. Covered: the inbox
// (filtering, order, -A, --all, context namespace, --context, --kubeconfig, empty), describe
// with reviews, the AccessReview that approve/deny create (recorded by a mutating webhook: never
// spec.reviewer), the API server's own error messages, local refusals, usage errors, and
// requester text with control and bidi characters.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { AccessRequest } from '../crds/generated/access-request.ts';
import { humanDuration } from '../cli/commands/kubectl-custos/format.ts';
import { inboxTable } from '../cli/commands/kubectl-custos/inbox.ts';
import { admitReview, type AdmissionOperation, type AdmissionUserInfo } from '../operator/approvals/review-admission.ts';
import { freePort } from './harness/free-port.ts';
import { kubectlFor, kubeTools, writeKubeconfig, type Kubectl } from './harness/kube-tools.ts';
import { startKubeApi, type KubeApi } from './harness/kube-api/server.ts';
import { runCommand, type CommandResult } from './harness/processes.ts';
import { REPO_ROOT } from './harness/sidecar-files.ts';
import { makeCertificates, type TestCertificates } from './harness/tls.ts';

const ADMIN_TOKEN = 'admin-token-for-kubectl-custos-tests';
const BOB_TOKEN = 'bob-token-for-kubectl-custos-tests';
const CAROL_TOKEN = 'carol-token-for-kubectl-custos-tests';
const BOB: AdmissionUserInfo = { username: 'bob@example.com', groups: ['dba', 'system:authenticated'], uid: 'bob-uid' };
const DIGEST = `sha256:${'a'.repeat(64)}`;
const ESC = '\u001b';

interface RecordedAdmission {
  readonly path: string;
  readonly request: {
    readonly operation: AdmissionOperation;
    readonly namespace?: string;
    readonly userInfo: AdmissionUserInfo;
    readonly object: { metadata: Record<string, unknown>; spec: Record<string, unknown> };
  };
}

let api: KubeApi;
let admin: Kubectl;
let kubectl: string;
let dir: string;
let pluginPath: string;
let bobConfig: string;
let carolConfig: string;
let certs: TestCertificates;
let webhook: Server;
let webhookUrl: string;
const admissions: RecordedAdmission[] = [];

/**
 * The review webhook's stand-in: `/record` admits everything unchanged (no stamp, so the schema
 * then refuses the review), `/admit` decides with the real admitReview and stamps the reviewer.
 */
function answer(path: string, request: RecordedAdmission['request']): Record<string, unknown> {
  if (path !== '/admit') return { allowed: true };
  const name = request.object.spec.requestName;
  const accessRequest = typeof name === 'string' ? api.store.get('custos.io', 'accessrequests', request.namespace ?? '', name) : undefined;
  const admission = admitReview({
    operation: request.operation, review: request.object, userInfo: request.userInfo,
    accessRequest: accessRequest as AccessRequest | undefined, now: new Date(),
  });
  if (!admission.allowed) return { allowed: false, status: { code: 403, reason: 'Forbidden', message: admission.message } };
  return { allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(admission.patch)).toString('base64') };
}

async function withReviewWebhook<T>(path: '/record' | '/admit', body: () => Promise<T>): Promise<T> {
  const name = `custos-reviews${path.replace('/', '-')}`;
  await admin.ok(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name },
      webhooks: [{
        name: 'reviews.custos.test', admissionReviewVersions: ['v1'], sideEffects: 'None', failurePolicy: 'Fail', reinvocationPolicy: 'Never',
        clientConfig: { url: `${webhookUrl}${path}`, caBundle: Buffer.from(certs.caCert).toString('base64') },
        rules: [{ operations: ['CREATE', 'UPDATE', 'DELETE'], apiGroups: ['custos.io'], apiVersions: ['v1alpha1'], resources: ['accessreviews'], scope: 'Namespaced' }],
      }],
    }),
  });
  try {
    return await body();
  } finally {
    await admin.ok(['delete', 'mutatingwebhookconfiguration', name]);
  }
}

/** `kubectl custos ARGS` with bin/ on PATH (and no Node 24 on it), as bob unless another kubeconfig is given. */
async function custos(args: readonly string[], options: { kubeconfig?: string | null } = {}): Promise<CommandResult> {
  const kubeconfig = options.kubeconfig === undefined ? bobConfig : options.kubeconfig;
  return runCommand(kubectl, ['custos', ...args], {
    env: {
      PATH: [join(REPO_ROOT, 'bin'), '/usr/local/bin', '/usr/bin', '/bin'].join(':'),
      HOME: dir,
      ...(kubeconfig === null ? {} : { KUBECONFIG: kubeconfig }),
    },
  });
}

interface RequestFixture {
  readonly namespace?: string;
  readonly phase?: 'Pending' | 'Approved' | 'Denied' | 'Expired';
  /** Minutes from now; negative: already past. */
  readonly expiresInMinutes?: number;
  readonly command?: string;
  readonly displayName?: string;
  readonly reason?: string;
  readonly decidedAt?: string;
}

/** Creates an AccessRequest as the operator does, then its status as the controller does. */
async function fileRequest(name: string, fixture: RequestFixture = {}): Promise<void> {
  const namespace = fixture.namespace ?? 'payments';
  const request = {
    apiVersion: 'custos.io/v1alpha1', kind: 'AccessRequest', metadata: { name, namespace },
    spec: {
      policyRef: { name: 'payments-policy', rule: 'purge-needs-approval', generation: 3 },
      requester: {
        id: 'system:serviceaccount:payments:billing', kind: 'ServiceAccount', uid: 'billing-sa-uid', pod: 'billing-0',
        ...(fixture.displayName === undefined ? {} : { displayName: fixture.displayName }),
      },
      target: { name: 'orders', protocol: 'postgres', database: 'payments', user: 'app' },
      command: fixture.command ?? 'DELETE FROM invoices',
      commandDigest: DIGEST,
      mode: 'hold',
      risk: 'high',
      reason: fixture.reason ?? 'INC-42: purge test invoices',
      reviewers: { groups: ['dba'] },
      approvalsRequired: 1,
      expiresAt: new Date(Date.now() + (fixture.expiresInMinutes ?? 60) * 60_000).toISOString(),
    },
  };
  await admin.ok(['create', '-f', '-'], { input: JSON.stringify(request) });
  if (fixture.phase !== undefined) {
    const status = { phase: fixture.phase, ...(fixture.decidedAt === undefined ? {} : { decidedAt: fixture.decidedAt }) };
    await admin.ok(['patch', 'accessrequest', name, '-n', namespace, '--subresource', 'status', '--type', 'merge', '-p', JSON.stringify({ status })]);
  }
}

/** An AccessReview as it is stored once the webhook stamped it, with the controller's verdict. */
async function fileReview(name: string, requestName: string, reviewer: string, spec: { decision: 'approve' | 'deny'; reason: string }, status?: Record<string, unknown>): Promise<void> {
  await admin.ok(['create', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'custos.io/v1alpha1', kind: 'AccessReview', metadata: { name, namespace: 'payments' },
      spec: { requestName, ...spec, commandDigest: DIGEST, reviewer: { username: reviewer, groups: ['dba', 'system:authenticated'] } },
    }),
  });
  if (status !== undefined) {
    await admin.ok(['patch', 'accessreview', name, '-n', 'payments', '--subresource', 'status', '--type', 'merge', '-p', JSON.stringify({ status })]);
  }
}

/** Creation timestamps have one-second resolution: waiting past one orders two requests for sure. */
const nextSecond = (): Promise<void> => new Promise((r) => setTimeout(r, 1100));

/** The data rows of a table (header dropped), each split on kubectl's column gaps. */
function rows(table: string): string[][] {
  return table.trimEnd().split('\n').slice(1).map((line) => line.split(/ {3,}/u));
}

/** Requests POSTed to accessreviews since `mark` (an index into api.requests). */
const reviewPostsSince = (mark: number): number => api.requests.slice(mark).filter((r) => r.method === 'POST' && r.path.endsWith('/accessreviews')).length;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'custos-kubectl-plugin-'));
  // As the README installs it: the repository's bin/ on PATH (its wrapper brings Node 24 itself).
  pluginPath = join(REPO_ROOT, 'bin', 'kubectl-custos');
  kubectl = (await kubeTools()).kubectl;

  certs = await makeCertificates(['127.0.0.1']);
  webhook = createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      const review = JSON.parse(text) as { request: RecordedAdmission['request'] & { uid: string } };
      const path = new URL(req.url ?? '/', 'https://127.0.0.1').pathname;
      admissions.push({ path, request: review.request });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, ...answer(path, review.request) } }));
    });
  });
  await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
  webhookUrl = `https://127.0.0.1:${(webhook.address() as AddressInfo).port}`;

  api = await startKubeApi({
    tokens: {
      [ADMIN_TOKEN]: { username: 'admin', groups: ['system:masters'] },
      [BOB_TOKEN]: { username: BOB.username, groups: ['dba'], uid: 'bob-uid' },
      [CAROL_TOKEN]: { username: 'carol@example.com', groups: ['support'], uid: 'carol-uid' },
    },
  });
  admin = await kubectlFor(await api.kubeconfig('admin'));
  await admin.ok(['apply', '-f', join(REPO_ROOT, 'crds')]);
  for (const ns of ['payments', 'billing', 'quiet', 'tricks']) await admin.ok(['create', 'namespace', ns]);
  // Reviewers' kubeconfigs name payments as their context's namespace, as `kubectl config set-context --namespace` does.
  bobConfig = await api.kubeconfig(BOB.username, { namespace: 'payments' });
  carolConfig = await api.kubeconfig('carol@example.com', { namespace: 'payments' });

  // The inbox's contents, oldest first: ar-7k2mq4x6c3ha is filed a second before ar-2bq3ze5ydd7c,
  // whose name sorts first, so the order shown is the age order and not kubectl's name order.
  await fileRequest('ar-7k2mq4x6c3ha', { phase: 'Pending', displayName: 'billing-batch' });
  await nextSecond();
  await fileRequest('ar-2bq3ze5ydd7c', { phase: 'Pending', command: `UPDATE invoices SET status = $1 WHERE customer_id = $2 AND created_at < $3 ${'AND note <> $4 '.repeat(20)}` });
  await fileRequest('ar-approved0001', { phase: 'Approved', decidedAt: '2026-01-02T03:04:05Z' });
  await fileRequest('ar-denied000001', { phase: 'Denied', decidedAt: '2026-01-02T03:04:05Z' });
  await fileRequest('ar-expired00001', { phase: 'Expired', expiresInMinutes: -5 });
  await fileRequest('ar-lapsed000001', { phase: 'Pending', expiresInMinutes: -2 });
  await fileRequest('ar-unopened0001');
  await nextSecond();
  await fileRequest('ar-billing00001', { namespace: 'billing', phase: 'Pending', command: 'TRUNCATE ledger' });
});

after(async () => {
  await api.stop();
  webhook.closeAllConnections();
  await new Promise((r) => webhook.close(r));
  await rm(dir, { recursive: true, force: true });
});

describe('kubectl custos requests', () => {
  it('lists the pending requests of the context\'s namespace, oldest first, with age, requester, target, rule, statement and expiry', async () => {
    const r = await custos(['requests']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const [header] = r.stdout.split('\n');
    assert.match(header ?? '', /^NAME +AGE +REQUESTER +TARGET +RULE +STATEMENT +EXPIRES$/);
    const table = rows(r.stdout);
    assert.deepEqual(table.map((row) => row[0]), ['ar-7k2mq4x6c3ha', 'ar-2bq3ze5ydd7c']);
    const [name, age, requester, target, rule, statement, expires] = table[0] ?? [];
    assert.equal(name, 'ar-7k2mq4x6c3ha');
    assert.match(age ?? '', /^(\d+m)?\d+s$/u);
    assert.equal(requester, 'billing-batch');
    assert.equal(target, 'orders/payments as app');
    assert.equal(rule, 'purge-needs-approval');
    assert.equal(statement, 'DELETE FROM invoices');
    assert.match(expires ?? '', /^in 5\dm/u);
    // Without a display name the requester's id; a long statement is cut (describe shows it whole).
    const [, , secondRequester = '', , , secondStatement = ''] = table[1] ?? [];
    assert.equal(secondRequester, 'system:serviceaccount:payments:billing');
    assert.match(secondStatement, /^UPDATE invoices SET status = \$1 WHERE .{20,}…$/u);
    assert.ok(secondStatement.length <= 60);
  });

  it('lists another namespace with -n and --namespace', async () => {
    for (const flag of [['-n', 'billing'], ['--namespace=billing']]) {
      const r = await custos(['requests', ...flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(rows(r.stdout).map((row) => [row[0], row[5]]), [['ar-billing00001', 'TRUNCATE ledger']]);
    }
  });

  it('says so when a namespace has no pending request', async () => {
    const r = await custos(['requests', '-n', 'quiet']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'No pending access requests in namespace quiet.\n');
  });

  it('lists every namespace with -A, adding a NAMESPACE column, still oldest first', async () => {
    const r = await custos(['requests', '-A']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.split('\n')[0] ?? '', /^NAME +NAMESPACE +AGE +REQUESTER/);
    const listed = rows(r.stdout).map((row) => `${row[1] ?? ''}/${row[0] ?? ''}`);
    assert.deepEqual(listed.filter((n) => !n.startsWith('tricks/')), ['payments/ar-7k2mq4x6c3ha', 'payments/ar-2bq3ze5ydd7c', 'billing/ar-billing00001']);
  });

  it('lists every phase with --all, with a PHASE column, including the lapsed and the unopened', async () => {
    const r = await custos(['requests', '--all']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.split('\n')[0] ?? '', /^NAME +PHASE +AGE +REQUESTER/);
    const phases = new Map(rows(r.stdout).map((row) => [row[0], row[1]]));
    assert.deepEqual(Object.fromEntries(phases), {
      'ar-7k2mq4x6c3ha': 'Pending', 'ar-2bq3ze5ydd7c': 'Pending', 'ar-approved0001': 'Approved', 'ar-denied000001': 'Denied',
      'ar-expired00001': 'Expired', 'ar-lapsed000001': 'Pending', 'ar-unopened0001': '<none>',
    });
    assert.match(r.stdout, /ar-lapsed000001 .* expired \d+m(\d+s)? ago\n/u);
    assert.equal((await custos(['requests', '--all', '-n', 'quiet'])).stderr, 'No access requests in namespace quiet.\n');
  });

  it('follows --kubeconfig and --context as kubectl does', async () => {
    const config = join(dir, 'two-contexts');
    await writeFile(config, stringify({
      apiVersion: 'v1', kind: 'Config',
      clusters: [{ name: 'double', cluster: { server: api.url, 'certificate-authority': api.caCertPath } }],
      users: [{ name: 'bob', user: { token: BOB_TOKEN } }],
      contexts: [
        { name: 'payments', context: { cluster: 'double', user: 'bob', namespace: 'payments' } },
        { name: 'billing', context: { cluster: 'double', user: 'bob', namespace: 'billing' } },
      ],
      'current-context': 'payments',
    }), { mode: 0o600 });
    const current = await custos(['requests', '--kubeconfig', config], { kubeconfig: null });
    assert.equal(current.code, 0, current.stderr);
    assert.deepEqual(rows(current.stdout).map((row) => row[0]), ['ar-7k2mq4x6c3ha', 'ar-2bq3ze5ydd7c']);
    const billing = await custos(['requests', '--kubeconfig', config, '--context', 'billing'], { kubeconfig: null });
    assert.equal(billing.code, 0, billing.stderr);
    assert.deepEqual(rows(billing.stdout).map((row) => row[0]), ['ar-billing00001']);
    // A context without a namespace means "default", as for kubectl.
    const plain = await writeKubeconfig({ server: api.url, caCertPath: api.caCertPath, token: BOB_TOKEN, path: join(dir, 'no-namespace') });
    const fallback = await custos(['requests'], { kubeconfig: plain });
    assert.equal(fallback.code, 0, fallback.stderr);
    assert.equal(fallback.stderr, 'No pending access requests in namespace default.\n');
    const unknown = await custos(['requests', '--kubeconfig', config, '--context', 'nowhere'], { kubeconfig: null });
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr, 'error: context was not found for specified context: nowhere\n');
  });

  it('says which API server it cannot reach', async () => {
    const port = await freePort();
    const config = await writeKubeconfig({ server: `https://127.0.0.1:${port}`, caCertPath: api.caCertPath, token: BOB_TOKEN, path: join(dir, 'unreachable') });
    const r = await custos(['requests'], { kubeconfig: config });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^error: cannot reach the API server at https://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`, 'u'));
  });
});

describe('requester-controlled text on the reviewer\'s terminal', () => {
  const name = 'ar-tricks000001';
  before(async () => {
    await fileRequest(name, {
      namespace: 'tricks', phase: 'Pending',
      displayName: 'mallory\napproved by: dba-lead',
      command: `SELECT 1; ${ESC}[2J${ESC}[1;1H-- harmless \u202edrop table\u202c\u2066x\u2069 \u0007`,
      reason: `routine ${ESC}]0;owned\u0007 check\r\nReviews: approved`,
    });
  });

  it('strips control and bidi characters from the inbox and from describe', async () => {
    const inbox = await custos(['requests', '-n', 'tricks']);
    const described = await custos(['describe', name, '-n', 'tricks']);
    for (const r of [inbox, described]) {
      assert.equal(r.code, 0, r.stderr);
      // eslint-disable-next-line no-control-regex -- the very characters that must not get through
      assert.doesNotMatch(r.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u);
    }
    // One row in the inbox: the display name's line break did not start a line of its own.
    assert.equal(inbox.stdout.trimEnd().split('\n').length, 2);
    assert.match(inbox.stdout, /mallory approved by: dba-lead/u);
    assert.match(described.stdout, /^Reason given: +routine \]0;owned check Reviews: approved$/mu);
    assert.match(described.stdout, /^Command: +SELECT 1; \[2J \[1;1H-- harmless drop table x$/mu);
    assert.doesNotMatch(described.stdout, /^Reviews: approved/mu);
  });
});

describe('kubectl custos describe', () => {
  const name = 'ar-described001';
  before(async () => {
    await fileRequest(name, { phase: 'Pending', displayName: 'billing-batch' });
    await fileReview(`${name}-carol`, name, 'carol@example.com', { decision: 'approve', reason: 'looks fine' }, { counted: false, refusal: 'not-an-allowed-reviewer' });
    await nextSecond();
    await fileReview(`${name}-bob`, name, 'bob@example.com', { decision: 'approve', reason: 'OPS-42 checked' }, { counted: true });
    await fileReview(`${name}-dave`, name, 'dave@example.com', { decision: 'deny', reason: 'month-end close' });
    await fileReview('ar-7k2mq4x6c3ha-erin', 'ar-7k2mq4x6c3ha', 'erin@example.com', { decision: 'deny', reason: 'not this one' });
  });

  it('shows what the request asks, who may review it, and its reviews in creation order with their verdicts', async () => {
    const r = await custos(['describe', name]);
    assert.equal(r.code, 0, r.stderr);
    const fields = r.stdout;
    for (const [label, value] of [
      ['Name', name], ['Namespace', 'payments'], ['Phase', 'Pending'], ['Requester', 'billing-batch'],
      ['  ID', 'system:serviceaccount:payments:billing (ServiceAccount)'], ['  Pod', 'billing-0'],
      ['Target', 'orders/payments as app (postgres)'], ['  Database', 'payments'], ['  User', 'app'],
      ['Rule', 'purge-needs-approval (policy payments-policy, generation 3)'], ['Risk', 'high'], ['Mode', 'hold'],
      ['Reason given', 'INC-42: purge test invoices'], ['Command', 'DELETE FROM invoices'], ['Command digest', DIGEST],
      ['Reviewers allowed', 'groups dba'], ['Approvals required', '1 (0 counted so far)'], ['Decided at', '<none>'],
    ] as const) {
      assert.match(fields, new RegExp(`^${label}: +${value.replace(/[.*+?^${}()|[\]\\]/gu, '\\$&')}$`, 'mu'), `${label}\n${fields}`);
    }
    assert.match(fields, /^Expires: +\S+ \(in 5\dm\)$/mu);
    assert.match(fields, /^Created: +\S+ \((\d+m)?\d+s ago\)$/mu);
    const reviews = fields.slice(fields.indexOf('\nReviews:\n') + '\nReviews:\n'.length).trimEnd().split('\n');
    assert.match(reviews[0] ?? '', /^ {2}NAME +REVIEWER +DECISION +COUNTED +AGE +REASON$/u);
    assert.deepEqual(reviews.slice(1).map((line) => line.trim().split(/ {3,}/u).filter((_, i) => i !== 4)), [
      [`${name}-carol`, 'carol@example.com', 'approve', 'no: not-an-allowed-reviewer', 'looks fine'],
      [`${name}-bob`, 'bob@example.com', 'approve', 'yes', 'OPS-42 checked'],
      [`${name}-dave`, 'dave@example.com', 'deny', 'not yet tallied', 'month-end close'],
    ]);
  });

  it('says when a request has no reviews yet', async () => {
    const r = await custos(['describe', 'ar/ar-2bq3ze5ydd7c']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Reviews: +<none>$/mu);
  });

  it('prints the API server\'s NotFound message for an unknown request', async () => {
    const r = await custos(['describe', 'ar-nosuchthing1']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'error: accessrequests.custos.io "ar-nosuchthing1" not found\n');
    assert.equal(r.stdout, '');
  });
});

describe('kubectl custos approve and deny', () => {
  beforeEach(() => {
    admissions.length = 0;
  });

  it('creates an AccessReview with generateName NAME-, the request\'s digest and no spec.reviewer, and prints the API server\'s refusal when nothing stamps it', async () => {
    const r = await withReviewWebhook('/record', () => custos(['approve', 'ar-7k2mq4x6c3ha', '--reason', '  OPS-42: checked with the team  ']));
    assert.equal(r.code, 1, r.stdout);
    assert.equal(r.stdout, '');
    // The schema requires spec.reviewer, which only the review webhook sets: the API server's own words.
    assert.match(r.stderr, /^error: AccessReview\.custos\.io "ar-7k2mq4x6c3ha-[a-z0-9]{5}" is invalid: spec\.reviewer: Required value\n$/u);
    assert.equal(admissions.length, 1);
    const [seen] = admissions;
    assert.equal(seen?.request.operation, 'CREATE');
    assert.equal(seen.request.userInfo.username, BOB.username);
    assert.equal(seen.request.object.metadata.generateName, 'ar-7k2mq4x6c3ha-');
    assert.equal(seen.request.object.metadata.namespace, 'payments');
    assert.deepEqual(seen.request.object.spec, {
      requestName: 'ar-7k2mq4x6c3ha', decision: 'approve', reason: 'OPS-42: checked with the team', commandDigest: DIGEST,
    });
  });

  it('sends deny the same way, in the namespace given with -n', async () => {
    const r = await withReviewWebhook('/record', () => custos(['deny', 'ar-billing00001', '-n', 'billing', '--reason=not during month-end close']));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is invalid: spec\.reviewer: Required value/u);
    assert.deepEqual(admissions.map((a) => [a.request.namespace, a.request.object.metadata.generateName, a.request.object.spec]), [
      ['billing', 'ar-billing00001-', { requestName: 'ar-billing00001', decision: 'deny', reason: 'not during month-end close', commandDigest: DIGEST }],
    ]);
  });

  it('reports the created review once the webhook stamps the reviewer, who is the user the API server authenticated', async () => {
    await fileRequest('ar-approvable01', { phase: 'Pending' });
    const r = await withReviewWebhook('/admit', () => custos(['approve', 'ar-approvable01', '--reason', 'OPS-42 checked']));
    assert.equal(r.code, 0, r.stderr);
    const m = /^accessreview\/(ar-approvable01-[a-z0-9]{5}) created: approve for ar-approvable01 \(the operator counts it; see kubectl custos describe ar-approvable01\)\n$/u.exec(r.stdout);
    assert.ok(m?.[1] !== undefined, r.stdout);
    const stored = JSON.parse(await admin.ok(['get', 'accessreview', m[1], '-n', 'payments', '-o', 'json'])) as { spec: Record<string, unknown> };
    assert.deepEqual(stored.spec, {
      requestName: 'ar-approvable01', decision: 'approve', reason: 'OPS-42 checked', commandDigest: DIGEST,
      reviewer: { username: BOB.username, groups: ['dba', 'system:authenticated'], uid: 'bob-uid' },
    });
  });

  it('prints the webhook\'s refusal verbatim and exits 1 when the reviewer may not review', async () => {
    await fileRequest('ar-outsider0001', { phase: 'Pending' });
    const r = await withReviewWebhook('/admit', () => custos(['deny', 'ar-outsider0001', '--reason', 'I think not'], { kubeconfig: carolConfig }));
    assert.equal(r.code, 1, r.stdout);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr,
      'error: admission webhook "reviews.custos.test" denied the request: carol@example.com is not a reviewer of payments/ar-outsider0001: it may be reviewed by members of dba\n');
    assert.equal((await admin.ok(['get', 'accessreviews', '-n', 'payments', '-o', 'name'])).includes('ar-outsider0001-'), false);
  });

  const refusedLocally: ReadonlyArray<{ readonly name: string; readonly why: string; readonly error: RegExp }> = [
    { name: 'ar-approved0001', why: 'already approved', error: /^error: ar-approved0001 is already Approved \(decided at 2026-01-02T03:04:05Z\): a decided request cannot be reviewed again\n$/u },
    { name: 'ar-denied000001', why: 'already denied', error: /^error: ar-denied000001 is already Denied \(decided at 2026-01-02T03:04:05Z\): a decided request cannot be reviewed again\n$/u },
    { name: 'ar-expired00001', why: 'expired', error: /^error: ar-expired00001 expired at \S+, \d+m(\d+s)? ago, and will never run; the requester must run the statement again to file a new request\n$/u },
    { name: 'ar-lapsed000001', why: 'past its expiry though the controller still shows Pending', error: /^error: ar-lapsed000001 expired at \S+, \d+m(\d+s)? ago, and will never run/u },
    { name: 'ar-unopened0001', why: 'not opened by the operator yet', error: /^error: ar-unopened0001 is not open for review yet \(the operator has not set its phase\); try again in a moment\n$/u },
  ];
  for (const [i, c] of refusedLocally.entries()) {
    const decision = i % 2 === 0 ? 'approve' : 'deny';
    it(`refuses to ${decision}, sending nothing, a request that is ${c.why}`, async () => {
      const mark = api.requests.length;
      const r = await custos([decision, c.name, '--reason', 'checked']);
      assert.equal(r.code, 1, r.stdout);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, c.error);
      assert.equal(reviewPostsSince(mark), 0);
    });
  }

  it('prints the API server\'s NotFound message for an unknown request', async () => {
    const r = await custos(['approve', 'ar-nosuchthing1', '--reason', 'checked']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'error: accessrequests.custos.io "ar-nosuchthing1" not found\n');
  });

  const usage: ReadonlyArray<{ readonly args: readonly string[]; readonly error: string }> = [
    { args: ['approve', 'ar-7k2mq4x6c3ha'], error: 'error: approve needs --reason TEXT: say why you approve (it is recorded in the audit trail)\n' },
    { args: ['deny', 'ar-7k2mq4x6c3ha', '--reason', '   '], error: 'error: deny needs --reason TEXT: say why you deny (it is recorded in the audit trail)\n' },
    { args: ['approve', 'ar-7k2mq4x6c3ha', '--reason', 'x'.repeat(1025)], error: 'error: --reason is 1025 characters long; at most 1024\n' },
    { args: ['approve', '--reason', 'checked'], error: 'error: approve needs the name of an AccessRequest (see kubectl custos requests)\n' },
    { args: ['deny', 'pod/ar-7k2mq4x6c3ha', '--reason', 'checked'], error: 'error: "pod/ar-7k2mq4x6c3ha" does not name an AccessRequest (use NAME or ar/NAME)\n' },
    { args: ['requests', '--reason', 'checked'], error: 'error: --reason applies to approve and deny only, not to requests\n' },
    { args: ['describe', 'ar-7k2mq4x6c3ha', '-A'], error: 'error: -A/--all-namespaces applies to requests only, not to describe\n' },
    { args: ['approval', 'ar-7k2mq4x6c3ha'], error: 'error: unknown command "approval"\n' },
    { args: [], error: 'error: missing command\n' },
  ];
  for (const c of usage) {
    it(`exits 2 with the usage, sending nothing, for: kubectl custos ${c.args.join(' ').slice(0, 60)}`, async () => {
      const mark = api.requests.length;
      const r = await custos(c.args);
      assert.equal(r.code, 2, r.stdout);
      assert.ok(r.stderr.startsWith(`${c.error}\n`), r.stderr);
      assert.match(r.stderr, /\nusage:\n {2}kubectl custos requests/u);
      assert.equal(api.requests.length, mark);
    });
  }
});

describe('kubectl custos help', () => {
  it('prints the usage on stdout and exits 0 for help, --help and -h', async () => {
    for (const args of [['help'], ['--help'], ['approve', '-h']]) {
      const r = await custos(args);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^kubectl custos: review Custos access requests/u);
      assert.match(r.stdout, /kubectl custos approve NAME --reason TEXT/u);
      assert.equal(r.stderr, '');
    }
  });

  it('is found by kubectl plugin list', async () => {
    const r = await runCommand(kubectl, ['plugin', 'list'], { env: { PATH: `${join(REPO_ROOT, 'bin')}:/usr/bin:/bin`, HOME: dir } });
    assert.ok(r.stdout.split('\n').includes(pluginPath), r.stdout);
  });
});

describe('kubectl custos output on a terminal', () => {
  const request = (name: string, command: string): AccessRequest => ({
    apiVersion: 'custos.io/v1alpha1', kind: 'AccessRequest',
    metadata: { name, namespace: 'payments', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: {
      policyRef: { name: 'p', rule: 'purge' }, requester: { id: 'system:serviceaccount:payments:billing', kind: 'ServiceAccount' },
      target: { name: 'orders', protocol: 'postgres' }, command, commandDigest: DIGEST, reviewers: { groups: ['dba'] }, expiresAt: '2026-01-01T01:00:00Z',
    },
    status: { phase: 'Pending' },
  });

  it('cuts the statement so that each line fits the terminal\'s width', () => {
    const now = new Date('2026-01-01T00:10:00Z');
    for (const columns of [130, 160, 200]) {
      const out = inboxTable([request('ar-aaaaaaaaaaaa', `SELECT ${'x, '.repeat(200)}y FROM t`), request('ar-bbbbbbbbbbbb', 'DELETE FROM t')], { namespace: 'payments', allPhases: false, now, columns });
      const lines = out.trimEnd().split('\n');
      assert.ok(lines.every((line) => line.length <= columns), `${columns}:\n${out}`);
      assert.ok((lines[1]?.length ?? 0) >= columns - 3, `${columns}: the statement takes the room left\n${out}`);
      assert.match(lines[1] ?? '', /SELECT x, x, .*… +in 50m$/u);
      assert.match(lines[2] ?? '', /DELETE FROM t +in 50m$/u);
    }
  });

  it('prints ages as kubectl does', () => {
    const cases: ReadonlyArray<readonly [number, string]> = [
      [0, '0s'], [119, '119s'], [120, '2m'], [185, '3m5s'], [600, '10m'], [179 * 60, '179m'], [3 * 3600, '3h'], [3 * 3600 + 60, '3h1m'],
      [8 * 3600 + 59, '8h'], [47 * 3600, '47h'], [48 * 3600, '2d'], [50 * 3600, '2d2h'], [8 * 86_400, '8d'], [800 * 86_400, '2y70d'], [9 * 365 * 86_400, '9y'],
    ];
    assert.deepEqual(cases.map(([seconds]) => humanDuration(seconds * 1000)), cases.map(([, text]) => text));
  });
});
