// The container environment and command line the pod runner builds, against Kubernetes' rules.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { containerEnv, ContainerConfigError, expandReferences } from './env.ts';
import { commandLine, findImage } from './image-fixtures.ts';
import type { Container, Pod } from './pod-spec.ts';

const runtime = { podIP: '10.188.7.2', hostIP: '10.188.7.1', nodeName: 'node-a' };
const pod: Pod = {
  metadata: { name: 'web', namespace: 'payments', uid: 'u-1', labels: { b: '2', a: '1' } },
  spec: { serviceAccountName: 'reporter', containers: [] },
};
const lookups = {
  configMap: (name: string) => (name === 'settings' ? { metadata: { name }, data: { MODE: 'fast', LEVEL: 'debug' } } : undefined),
  secret: (name: string) => (name === 'creds' ? { metadata: { name }, data: { password: Buffer.from('s3cr3t').toString('base64') } } : undefined),
};

describe('containerEnv', () => {
  it('resolves fieldRef, secretKeyRef, configMapKeyRef and envFrom, later entries winning', () => {
    const c: Container = {
      name: 'app',
      envFrom: [{ configMapRef: { name: 'settings' }, prefix: 'CFG_' }],
      env: [
        { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
        { name: 'LABELS', valueFrom: { fieldRef: { fieldPath: 'metadata.labels' } } },
        { name: 'LABEL_A', valueFrom: { fieldRef: { fieldPath: "metadata.labels['a']" } } },
        { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } },
        { name: 'CFG_MODE', valueFrom: { configMapKeyRef: { name: 'settings', key: 'LEVEL' } } },
        { name: 'URL', value: 'http://$(IP):8080/$(UNDEFINED)/$$(IP)' },
      ],
    };
    assert.deepEqual(Object.fromEntries(containerEnv(pod, c, runtime, lookups)), {
      CFG_MODE: 'debug', CFG_LEVEL: 'debug', POD: 'web', IP: '10.188.7.2', LABELS: 'a="1"\nb="2"', LABEL_A: '1', PASSWORD: 's3cr3t',
      URL: 'http://10.188.7.2:8080/$(UNDEFINED)/$(IP)',
    });
  });

  it('refuses a missing Secret or key as CreateContainerConfigError, unless optional', () => {
    const env = (e: NonNullable<Container['env']>): Map<string, string> => containerEnv(pod, { name: 'app', env: e }, runtime, lookups);
    assert.throws(() => env([{ name: 'X', valueFrom: { secretKeyRef: { name: 'absent', key: 'k' } } }]), (e: unknown) => e instanceof ContainerConfigError && e.message === 'secret "absent" not found');
    assert.throws(() => env([{ name: 'X', valueFrom: { secretKeyRef: { name: 'creds', key: 'nope' } } }]), /couldn't find key nope in Secret payments\/creds/);
    assert.deepEqual([...env([{ name: 'X', valueFrom: { secretKeyRef: { name: 'absent', key: 'k', optional: true } } }])], []);
  });

  it('leaves unknown references as written', () => {
    assert.equal(expandReferences('$(A) $(B) $$ $', new Map([['A', 'x']])), 'x $(B) $ $');
  });
});

describe('commandLine', () => {
  const image = { entrypoint: ['/entry'], cmd: ['--default'] };
  const env = new Map([['PORT', '8080']]);
  const table: Array<[string, Partial<Container>, string[]]> = [
    ['image entrypoint and cmd when the container gives neither', {}, ['/entry', '--default']],
    ['args replace the cmd only', { args: ['--port', '$(PORT)'] }, ['/entry', '--port', '8080']],
    ['command replaces the entrypoint and drops the cmd', { command: ['/other'] }, ['/other']],
    ['command and args', { command: ['/other'], args: ['a'] }, ['/other', 'a']],
  ];
  for (const [what, container, expected] of table) {
    it(`uses ${what}`, () => {
      assert.deepEqual(commandLine({ name: 'c', ...container }, image, env), expected);
    });
  }

  it('finds an image by exact reference, then by repository without tag or digest', () => {
    const images = { 'registry/app': image, 'registry/app:2': { entrypoint: ['/two'] } };
    assert.equal(findImage(images, 'registry/app:2'), images['registry/app:2']);
    assert.equal(findImage(images, 'registry/app:1.0'), image);
    assert.equal(findImage(images, 'registry/app@sha256:abc'), image);
    assert.equal(findImage(images, 'registry:5000/app:1'), undefined);
  });
});
