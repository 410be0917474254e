// Acceptance of issue 5 on Kubernetes: the API double authenticating two reviewers in group `dba`
// (alice, bob), one outside it (mallory) and one who is the requester's own identity; the chart
// installed with real helm and kubectl; `custos operator` (materialising requests as
// AccessRequests, admitting AccessReviews, relaying them to Redis with its signed tokens); a real
// sidecar process with the operator's `kubernetesReviews` settings and public keys taken from the
// policy ConfigMap the operator wrote; real PostgreSQL and Redis. Reviews are made with the real
// kubectl and the `kubectl custos` plugin (bin/ on PATH). Every "never executes" is checked on the
// table itself.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { parse } from 'yaml';
import type { AuditEvent } from '../audit/event.ts';
import type { AccessRequest } from '../crds/generated/access-request.ts';
import type { AccessReview } from '../crds/generated/access-review.ts';
import { reviewsKey } from '../sidecar/approvals/approval-keys.ts';
import { approvalBlock, UNFILTERED_WRITES_RULE } from './harness/approval-fixtures.ts';
import { byReason, uniqueName, waitForEvents } from './harness/audit-events.ts';
import { REPO_ROOT, startCustosStack, type CustosStack } from './harness/custos-stack.ts';
import { createBillingSchema, runCommand, type CommandResult } from './harness/fixtures.ts';
import { kubeTools } from './harness/kube-tools.ts';
import { startLocalCluster, type LocalCluster } from './harness/local-cluster.ts';
import { billingPolicy } from './harness/operator-fixtures.ts';
import { waitFor } from './harness/processes.ts';
import { startRedis, type RedisInstance } from './harness/redis.ts';
import type { PolicyDocument } from './harness/sidecar-files.ts';

const NS = 'payments';
/** The requester: the CI token of the stack's example policy, as the sidecar names it. */
const REQUESTER = 'https://issuer.custos.test#repo:acme/billing:ref:refs/heads/main';
const USERS = {
  alice: { username: 'alice@example.com', groups: ['dba'], uid: 'uid-alice' },
  bob: { username: 'bob@example.com', groups: ['dba', 'oncall'], uid: 'uid-bob' },
  mallory: { username: 'mallory@example.com', groups: ['developers'], uid: 'uid-mallory' },
  // The requester's own identity, as an API server with the same OIDC issuer (no prefix) names it.
  self: { username: REQUESTER, groups: ['dba'], uid: 'uid-ci' },
} as const;
type User = keyof typeof USERS;

/**
 * DELETE without WHERE held for a dba; UPDATE without WHERE in return mode; customer wipes held
 * 4 s and reviewable for the shortest TTL the CRD allows (60 s).
 */
function kubernetesApprovalPolicy(doc: PolicyDocument): void {
  const rules = doc.getIn(['spec', 'rules']) as { items: unknown[] };
  rules.items.splice(UNFILTERED_WRITES_RULE, 1,
    doc.createNode({
      name: 'approve-customer-wipes',
      match: { sql: { statements: ['delete'], objects: ['public.customers'], where: 'missing-or-constant' } },
      action: 'require-approval',
      approval: approvalBlock({ mode: 'hold', holdTimeoutSeconds: 4, ttlSeconds: 60 }),
    }),
    doc.createNode({
      name: 'approve-unfiltered-updates',
      match: { sql: { statements: ['update'], where: 'missing-or-constant' } },
      action: 'require-approval',
      approval: approvalBlock({ mode: 'return' }),
    }),
    doc.createNode({
      name: 'approve-unfiltered-writes',
      match: { sql: { where: 'missing-or-constant' } },
      action: 'require-approval',
      message: 'a write without a WHERE clause needs a DBA',
      approval: approvalBlock({ mode: 'hold' }),
    }));
}

describe('approvals on Kubernetes, end to end (issue 5 acceptance)', { timeout: 600_000 }, () => {
  let redis: RedisInstance | undefined;
  let cluster: LocalCluster | undefined;
  let stack: CustosStack | undefined;
  let dir = '';
  const kubeconfigs = new Map<User, string>();
  let kubectlPath = '';
  let expiring: Promise<{ id: string; ended: Error & { code?: string }; customers: string }> | undefined;

  const c = (): LocalCluster => cluster ?? assert.fail('the cluster did not start');
  const s = (): CustosStack => stack ?? assert.fail('the sidecar did not start');
  const k = (args: readonly string[], input?: string): Promise<string> => c().kubectl.ok(args, input === undefined ? {} : { input });

  /** `kubectl custos …` as `user`, the plugin found on PATH through bin/ (which brings Node 24). */
  const plugin = (user: User, args: readonly string[]): Promise<CommandResult> => runCommand(kubectlPath, ['custos', ...args], {
    env: { PATH: [join(REPO_ROOT, 'bin'), '/usr/local/bin', '/usr/bin', '/bin'].join(':'), HOME: dir, KUBECONFIG: kubeconfigs.get(user) ?? '' },
    timeoutMs: 60_000,
  });
  /** The real kubectl as `user`. */
  const kubectlAs = (user: User, args: readonly string[], input?: string): Promise<CommandResult> => runCommand(kubectlPath, args, {
    env: { PATH: '/usr/bin:/bin', HOME: dir, KUBECONFIG: kubeconfigs.get(user) ?? '' },
    ...(input === undefined ? {} : { input }),
  });
  const accessRequest = async (id: string): Promise<AccessRequest | undefined> => {
    const r = await c().kubectl.run(['get', 'accessrequest', id, '-n', NS, '-o', 'json']);
    return r.code === 0 ? JSON.parse(r.stdout) as AccessRequest : undefined;
  };
  const reviewsOf = async (id: string): Promise<AccessReview[]> => {
    const list = JSON.parse(await k(['get', 'accessreviews', '-n', NS, '-o', 'json'])) as { items: AccessReview[] };
    return list.items.filter((r) => r.spec.requestName === id);
  };
  const eventually = (what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> =>
    waitFor(what, probe, timeoutMs, 200).catch((e: unknown) => {
      const logs = c().operators.map((o) => `[${o.name}]\n${o.logs().slice(-6000)}`).join('\n');
      throw new Error(`${String(e)}\n--- operator ---\n${logs}\n--- sidecar ---\n${s().logs().slice(-4000)}`);
    });
  const phaseOf = async (id: string): Promise<string | undefined> => (await accessRequest(id))?.status?.phase;
  const invoiceCount = async (): Promise<number> => Number((await s().postgres.psql('SELECT count(*) FROM invoices')).trim());
  const connectAs = async (name: string): Promise<pg.Client> => {
    const client = new pg.Client({ ...s().clientConfig(await s().token()), application_name: name });
    await client.connect();
    return client;
  };
  /** The request this session filed, from its approval.requested audit event. */
  const requestedId = async (name: string, except?: string): Promise<string> => {
    let id: string | undefined;
    await waitForEvents(s().spoolDir, (all) => {
      id = byReason(all, name).find((e) => e.event_type === 'approval.requested' && e.approval?.id !== except)?.approval?.id;
      return id !== undefined;
    }, 15_000);
    return id ?? assert.fail('no request filed');
  };
  const sessionEvents = async (name: string, ready: (mine: AuditEvent[]) => boolean): Promise<AuditEvent[]> =>
    byReason(await waitForEvents(s().spoolDir, (all) => ready(byReason(all, name)), 20_000), name);

  /** DELETE FROM customers, held 4 s (then 57014); its request stays reviewable until its TTL. */
  const startExpiringRequest = async (): Promise<{ id: string; ended: Error & { code?: string }; customers: string }> => {
    const name = uniqueName('k8s-expiry');
    const client = await connectAs(name);
    try {
      const customers = (await s().postgres.psql('SELECT count(*) FROM customers')).trim();
      const held = client.query('DELETE FROM customers').then(() => assert.fail('ran without approval'), (e: unknown) => e as Error & { code?: string });
      const id = await requestedId(name);
      return { id, ended: await held, customers };
    } finally {
      await client.end();
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'custos-approvals-k8s-'));
    kubectlPath = (await kubeTools()).kubectl;
    redis = await startRedis();
    cluster = await startLocalCluster({ chartValues: [`redis.url=${redis.url}`], users: Object.values(USERS) });
    for (const user of Object.keys(USERS) as User[]) kubeconfigs.set(user, await c().api.kubeconfig(USERS[user].username, { namespace: NS }));
    await k(['create', 'namespace', NS]);
    await k(['label', 'namespace', NS, 'custos.io/injection=enabled']);
    // As the README says: reviewers get the chart's reviewer role (the API double does not
    // authorize; a real API server would refuse the plugin's calls without it).
    await k(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'dba-review' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'custos-reviewer' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'dba' }],
    }));
    await k(['apply', '-f', '-'], billingPolicy(NS));
    // What the pod's sidecar would mount from custos-policy-billing: the operator's relay issuer
    // (sidecar.yaml) and its public keys (reviewers.jwks.json).
    let data: Record<string, string> = {};
    await eventually('the policy ConfigMap with the reviewer keys', async () => {
      const r = await c().kubectl.run(['get', 'configmap', 'custos-policy-billing', '-n', NS, '-o', 'json']);
      data = r.code === 0 ? (JSON.parse(r.stdout) as { data?: Record<string, string> }).data ?? {} : {};
      return data['reviewers.jwks.json'] !== undefined;
    });
    const sidecarYaml = parse(data['sidecar.yaml'] ?? '') as { kubernetesReviews?: { issuer: string } };
    const issuer = sidecarYaml.kubernetesReviews?.issuer ?? assert.fail('sidecar.yaml has no kubernetesReviews');
    const jwksFile = join(dir, 'reviewers.jwks.json');
    await writeFile(jwksFile, data['reviewers.jwks.json'] ?? '');
    stack = await startCustosStack({
      editPolicy: kubernetesApprovalPolicy,
      extraConfig: {
        redisUrl: redis.url,
        gateway: { id: 'billing-7d9f-abcde', podUid: 'uid-billing-7d9f-abcde', podName: 'billing-7d9f-abcde', namespace: NS },
        kubernetesReviews: { issuer, jwksFile },
      },
    });
    await createBillingSchema(s());
    // Filed first, checked last: its request expires after the minimum TTL while the rest runs.
    expiring = startExpiringRequest();
  });
  after(async () => {
    await stack?.stop();
    await cluster?.stop();
    await redis?.destroy();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('holds DELETE FROM invoices; outsiders and the requester cannot approve; a dba approves with kubectl custos; it runs once; the trail names the reviewer as the API server authenticated them', async () => {
    const name = uniqueName('k8s-hold');
    const client = await connectAs(name);
    try {
      const held = client.query('DELETE FROM invoices').then((r) => r, (e: unknown) => e as Error);
      const id = await requestedId(name);
      await eventually('the AccessRequest, Pending', async () => (await phaseOf(id)) === 'Pending');
      const request = await accessRequest(id) ?? assert.fail('no AccessRequest');
      assert.equal(request.spec.requester.id, REQUESTER);
      assert.equal(request.spec.requester.pod, 'billing-7d9f-abcde');
      assert.equal(request.spec.command, 'DELETE FROM invoices');
      assert.equal(request.spec.policyRef.rule, 'approve-unfiltered-writes');
      assert.equal(request.spec.reason, name, 'the caller’s application_name as its stated reason');
      assert.deepEqual(request.spec.reviewers, { groups: ['dba'] });

      // The inbox, as a reviewer sees it.
      const inbox = await plugin('alice', ['requests']);
      assert.equal(inbox.code, 0, inbox.stderr);
      assert.match(inbox.stdout, new RegExp(`${id}.*DELETE FROM invoices`));

      // Outside the group, and the requester's own identity (in the group, even): refused at admission.
      const outsider = await plugin('mallory', ['approve', id, '--reason', 'lgtm']);
      assert.equal(outsider.code, 1);
      assert.match(outsider.stderr, /denied the request: mallory@example\.com is not a reviewer of .*members of dba/);
      const self = await plugin('self', ['approve', id, '--reason', 'approving my own request']);
      assert.equal(self.code, 1);
      assert.match(self.stderr, /own request|self/i);
      // A client supplying spec.reviewer to pose as alice is refused as a forgery.
      const forged = await kubectlAs('mallory', ['create', '-f', '-'], JSON.stringify({
        apiVersion: 'custos.io/v1alpha1', kind: 'AccessReview', metadata: { generateName: `${id}-`, namespace: NS },
        spec: { requestName: id, decision: 'approve', reason: 'as alice', commandDigest: request.spec.commandDigest, reviewer: { username: USERS.alice.username, groups: ['dba'], uid: USERS.alice.uid } },
      }));
      assert.notEqual(forged.code, 0);
      assert.match(forged.stderr, /denied the request/);
      assert.equal(await invoiceCount(), 5, 'nothing ran while pending');
      assert.deepEqual(await reviewsOf(id), [], 'no refused review was stored');

      const approved = await plugin('alice', ['approve', id, '--reason', 'INC-42: duplicate import']);
      assert.equal(approved.code, 0, approved.stderr);
      const result = await held;
      if (result instanceof Error) assert.fail(`the held statement did not run: ${result.message}`);
      assert.equal(result.rowCount, 5);
      assert.equal(await invoiceCount(), 0);

      await eventually('the AccessRequest Executed', async () => (await phaseOf(id)) === 'Executed');
      const done = await accessRequest(id) ?? assert.fail('gone');
      assert.deepEqual(done.status?.approvals?.map((a) => [a.reviewer, a.decision, a.reason]), [[USERS.alice.username, 'approve', 'INC-42: duplicate import']]);
      const [review] = await reviewsOf(id);
      assert.deepEqual(review?.spec.reviewer, { username: USERS.alice.username, groups: ['dba', 'system:authenticated'], uid: USERS.alice.uid }, 'stamped from userInfo');
      await eventually('the review counted', async () => (await reviewsOf(id))[0]?.status?.counted === true);

      // A decided request cannot be changed: a late review, an edit of a review.
      const late = await plugin('bob', ['deny', id, '--reason', 'too late']);
      assert.equal(late.code, 1);
      assert.ok(review, 'the review is stored');
      const reviewName = review.metadata.name;
      const edit = await kubectlAs('alice', ['patch', 'accessreview', reviewName, '-n', NS, '--type=merge', '-p', '{"spec":{"decision":"deny"}}']);
      assert.notEqual(edit.code, 0);
      assert.match(edit.stderr, /denied the request/);
      // Deleting a review is for RBAC to refuse (reviewers have no delete; API servers send DELETE
      // to validating webhooks only): an admin's deletion removes the object, not the decision.
      await k(['delete', 'accessreview', reviewName, '-n', NS]);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(await phaseOf(id), 'Executed');

      const events = await sessionEvents(name, (mine) => mine.some((e) => e.event_type === 'approval.executed'));
      const executed = events.find((e) => e.event_type === 'approval.executed');
      assert.equal(executed?.approval?.id, id);
      assert.deepEqual(executed.approval.reviewers.map((r) => [r.username, r.decision, r.reason]), [[USERS.alice.username, 'approve', 'INC-42: duplicate import']]);
      assert.equal(executed.command?.text, 'DELETE FROM invoices');
      assert.ok(!JSON.stringify(events).includes('eyJ'), 'no token in the audit events');
    } finally {
      await client.end();
    }
  });

  it('an approval runs once and binds to its request: a second execution asks again, and a relayed review copied to another request does not count', async () => {
    await createBillingSchema(s());
    const name = uniqueName('k8s-once');
    const client = await connectAs(name);
    try {
      const first = client.query('DELETE FROM invoices').then((r) => r, (e: unknown) => e as Error);
      const id = await requestedId(name);
      await eventually('Pending', async () => (await phaseOf(id)) === 'Pending');
      assert.equal((await plugin('bob', ['approve', id, '--reason', 'cleanup ok'])).code, 0);
      assert.ok(!((await first) instanceof Error));
      await createBillingSchema(s());
      // The identical statement again: a new request, held, nothing runs on the spent approval.
      const second = client.query('DELETE FROM invoices').then((r) => r, (e: unknown) => e as Error);
      const id2 = await requestedId(name, id);
      assert.notEqual(id2, id);
      await eventually('the second AccessRequest', async () => (await phaseOf(id2)) === 'Pending');
      assert.equal(await invoiceCount(), 5);
      // Someone with Redis write access moves bob's relayed review onto the new request.
      const writer = new Redis((redis ?? assert.fail('no Redis')).url);
      try {
        const [record] = await writer.lrange(reviewsKey(id), 0, 0);
        assert.ok(record !== undefined, 'the relayed review is in Redis');
        await writer.rpush(reviewsKey(id2), record);
        await writer.publish(`custos:approval:{${id2}}`, 'approve');
      } finally {
        writer.disconnect();
      }
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal(await invoiceCount(), 5, 'a review bound to another request never approves this one');
      assert.match(s().logs(), /issued for another request/);
      // A real denial ends it.
      assert.equal((await plugin('alice', ['deny', id2, '--reason', 'once is enough'])).code, 0);
      const denied = await second;
      assert.ok(denied instanceof Error, 'the denied statement fails');
      assert.equal((denied as Error & { code?: string }).code, '57014');
      assert.match(denied.message, /denied/i);
      assert.equal(await invoiceCount(), 5, 'a denied statement never runs');
      await eventually('Denied', async () => (await phaseOf(id2)) === 'Denied');
    } finally {
      await client.end();
    }
  });

  it('return mode: the first attempt fails fast naming the request and the kubectl command; after approval the identical statement runs once', async () => {
    await createBillingSchema(s());
    const name = uniqueName('k8s-return');
    const client = await connectAs(name);
    try {
      const sql = 'UPDATE invoices SET amount = 0';
      const refused = await client.query(sql).then(() => assert.fail('ran without approval'), (e: unknown) => e as Error & { code?: string });
      assert.equal(refused.code, '57014');
      const id = /request (ar-[a-z2-7]{12})/.exec(refused.message)?.[1] ?? assert.fail(refused.message);
      assert.match(refused.message, new RegExp(`kubectl custos approve ${id} -n ${NS}`));
      await eventually('Pending', async () => (await phaseOf(id)) === 'Pending');
      assert.equal((await plugin('alice', ['approve', id, '--reason', 'reset approved'])).code, 0, 'approve');
      await eventually('Approved', async () => (await phaseOf(id)) === 'Approved');
      const ran = await client.query(sql);
      assert.equal(ran.rowCount, 5);
      const again = await client.query(sql).then(() => undefined, (e: unknown) => e as Error & { code?: string });
      assert.equal(again?.code, '57014', 'a second run needs a new request');
      await eventually('Executed', async () => (await phaseOf(id)) === 'Executed');
    } finally {
      await client.end();
    }
  });

  it('a sidecar restart while a request is pending runs nothing; the resent statement runs once after approval', async () => {
    await createBillingSchema(s());
    const name = uniqueName('k8s-restart');
    const client = await connectAs(name);
    client.on('error', () => undefined); // the restart ends this connection: expected
    // Not the statement of the earlier tests, whose requests are spent or denied for their lifetime.
    const sql = 'DELETE FROM invoices WHERE true';
    const held = client.query(sql).then(() => undefined, (e: unknown) => e as Error);
    const id = await requestedId(name);
    await eventually('Pending', async () => (await phaseOf(id)) === 'Pending');
    await s().restartSidecar();
    assert.ok((await held) instanceof Error, 'the held connection ended with the sidecar');
    await client.end().catch(() => undefined);
    assert.equal(await invoiceCount(), 5);
    assert.equal(await phaseOf(id), 'Pending', 'the request survives the restart');
    assert.equal((await plugin('bob', ['approve', id, '--reason', 'after the restart'])).code, 0);
    const again = await connectAs(name);
    try {
      const ran = await again.query(sql);
      assert.equal(ran.rowCount, 5, 'the identical statement finds its approved request and runs');
      assert.equal(await invoiceCount(), 0);
    } finally {
      await again.end();
    }
  });

  it('expiry: the held statement ended with 57014 at its hold timeout; at the TTL the AccessRequest shows Expired and refuses reviews; nothing ran', async () => {
    const { id, ended, customers } = await (expiring ?? assert.fail('no expiring request'));
    assert.equal(ended.code, '57014');
    await eventually('Expired', async () => (await phaseOf(id)) === 'Expired', 90_000);
    const late = await plugin('alice', ['approve', id, '--reason', 'too late']);
    assert.equal(late.code, 1);
    assert.match(late.stderr, /expired/i);
    assert.equal((await s().postgres.psql('SELECT count(*) FROM customers')).trim(), customers, 'never executed');
  });

  it('a Redis outage while pending executes nothing and loses nothing: a review made meanwhile is relayed once Redis is back', async () => {
    await createBillingSchema(s());
    const name = uniqueName('k8s-redis');
    const client = await connectAs(name);
    try {
      const sql = 'DELETE FROM invoices WHERE 1 = 1';
      const held = client.query(sql).then((r) => r, (e: unknown) => e as Error);
      const id = await requestedId(name);
      await eventually('Pending', async () => (await phaseOf(id)) === 'Pending');
      const store = redis ?? assert.fail('no Redis');
      await store.stop();
      // The review is admitted by the API server; the operator cannot relay it yet.
      assert.equal((await plugin('alice', ['approve', id, '--reason', 'during the outage'])).code, 0);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      assert.equal(await invoiceCount(), 5, 'nothing runs while Redis is down');
      await store.start();
      const result = await held;
      if (result instanceof Error) assert.fail(`the held statement did not run after the outage: ${result.message}`);
      assert.equal(result.rowCount, 5);
      await eventually('Executed', async () => (await phaseOf(id)) === 'Executed');
    } finally {
      await client.end();
    }
  });

  it('a Redis writer cannot flip a relayed deny into an approval, and a review that bypassed the webhook is never relayed', async () => {
    await createBillingSchema(s());
    const name = uniqueName('k8s-tamper');
    const client = await connectAs(name);
    try {
      const sql = 'UPDATE invoices SET amount = 1';
      const first = await client.query(sql).then(() => assert.fail('ran without approval'), (e: unknown) => e as Error & { code?: string });
      const id = /request (ar-[a-z2-7]{12})/.exec(first.message)?.[1] ?? assert.fail(first.message);
      await eventually('Pending', async () => (await phaseOf(id)) === 'Pending');

      // The webhook's entry is removed (an admin's mistake, an upgrade window) and mallory files a
      // review posing as alice: stored, but without the webhook's stamp, so never relayed.
      const configuration = await k(['get', 'mutatingwebhookconfiguration', 'custos-sidecar-injector', '-o', 'json']);
      const hooks = (JSON.parse(configuration) as { webhooks: Array<{ name: string }> }).webhooks;
      const index = hooks.findIndex((h) => h.name === 'admit.accessreviews.custos.io');
      await k(['patch', 'mutatingwebhookconfiguration', 'custos-sidecar-injector', '--type=json', '-p', JSON.stringify([{ op: 'remove', path: `/webhooks/${index}` }])]);
      try {
        const request = await accessRequest(id) ?? assert.fail('no AccessRequest');
        const forged = await kubectlAs('mallory', ['create', '-f', '-'], JSON.stringify({
          apiVersion: 'custos.io/v1alpha1', kind: 'AccessReview', metadata: { generateName: `${id}-`, namespace: NS },
          spec: { requestName: id, decision: 'approve', reason: 'as alice', commandDigest: request.spec.commandDigest, reviewer: { username: USERS.alice.username, groups: ['dba'], uid: USERS.alice.uid } },
        }));
        assert.equal(forged.code, 0, `without the webhook the API server stores it: ${forged.stderr}`);
      } finally {
        await k(['patch', 'mutatingwebhookconfiguration', 'custos-sidecar-injector', '--type=json', '-p', JSON.stringify([{ op: 'add', path: `/webhooks/${index}`, value: hooks[index] }])]);
      }
      await eventually('the operator to refuse relaying it', () => Promise.resolve(c().operators.some((o) => o.logs().includes('it did not pass the review webhook as stored'))));
      const writer = new Redis((redis ?? assert.fail('no Redis')).url);
      try {
        assert.equal(await writer.llen(reviewsKey(id)), 0, 'nothing relayed');
        await assert.rejects(client.query(sql), { code: '57014' }, 'still pending');

        // Bob denies; someone with Redis write access flips the relayed record to an approval.
        assert.equal((await plugin('bob', ['deny', id, '--reason', 'not this week'])).code, 0);
        await eventually('the deny relayed', async () => (await writer.llen(reviewsKey(id))) === 1);
        const [record] = await writer.lrange(reviewsKey(id), 0, 0);
        const flipped = JSON.stringify({ ...(JSON.parse(record ?? '{}') as object), decision: 'approve', reason: 'fine by me' });
        await writer.lset(reviewsKey(id), 0, flipped);
      } finally {
        writer.disconnect();
      }
      const again = await client.query(sql).then(() => undefined, (e: unknown) => e as Error & { code?: string });
      assert.equal(again?.code, '57014', 'the flipped record does not count: the statement is not run');
      assert.equal((await s().postgres.psql('SELECT count(*) FROM invoices WHERE amount = 1')).trim(), '0', 'never executed');
      assert.match(s().logs(), /issued for another decision/);
    } finally {
      await client.end();
    }
  });
});
