// How a container's securityContext becomes setpriv arguments and its volumes bind mounts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CAPABILITIES, launchScript, nonRootViolation, processIdentity, setprivArgs } from './launch-command.ts';

describe('processIdentity', () => {
  it('takes the container securityContext over the pod one, with fsGroup and supplementalGroups as groups', () => {
    const id = processIdentity({ name: 'c', securityContext: { runAsUser: 17337 } }, { runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, supplementalGroups: [4000] });
    assert.deepEqual({ uid: id.uid, gid: id.gid, groups: id.groups }, { uid: 17337, gid: 3000, groups: [2000, 4000] });
    assert.deepEqual(id.capabilities, [...DEFAULT_CAPABILITIES]);
  });

  it('drops ALL and adds back what the container asks for (custos-init: NET_ADMIN, NET_RAW)', () => {
    const id = processIdentity({ name: 'init', securityContext: { runAsUser: 0, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] } } }, undefined);
    assert.deepEqual(setprivArgs(id), ['--reuid=0', '--regid=0', '--clear-groups', '--bounding-set=-all,+net_admin,+net_raw', '--inh-caps=-all', '--no-new-privs']);
  });

  it('gives a privileged container every capability', () => {
    assert.equal(processIdentity({ name: 'p', securityContext: { privileged: true } }, undefined).capabilities, undefined);
  });

  it('refuses root under runAsNonRoot', () => {
    assert.match(nonRootViolation({ name: 'c' }, { runAsNonRoot: true }, 0, 'web_payments(u)') ?? '', /container has runAsNonRoot and image will run as root \(pod: "web_payments\(u\)", container: c\)/);
    assert.equal(nonRootViolation({ name: 'c' }, { runAsNonRoot: true }, 17337, 'p'), undefined);
  });
});

describe('launchScript', () => {
  it('mounts parents first, makes mount points, remounts read-only, then execs setpriv', () => {
    const script = launchScript({
      sh: '/bin/sh', setpriv: '/usr/bin/setpriv', readOnlyRootFilesystem: true, workingDir: "/it's here", argv: ['x'],
      identity: { uid: 1, gid: 2, groups: [], capabilities: [], noNewPrivileges: false },
      mounts: [
        { source: '/v/token', target: '/var/run/secrets/custos', readOnly: true, directory: true },
        { source: '/v/lock', target: '/run', readOnly: false, directory: true },
        { source: '/v/cfg/app.yaml', target: '/etc/app.yaml', readOnly: true, directory: false },
      ],
    });
    assert.equal(script, [
      'set -e',
      "mkdir -p -- '/run'",
      "mount --bind -- '/v/lock' '/run'",
      "mkdir -p -- \"$(dirname -- '/etc/app.yaml')\"",
      "[ -e '/etc/app.yaml' ] || : > '/etc/app.yaml'",
      "mount --bind -- '/v/cfg/app.yaml' '/etc/app.yaml'",
      "mount -o remount,bind,ro -- '/etc/app.yaml'",
      "mkdir -p -- '/var/run/secrets/custos'",
      "mount --bind -- '/v/token' '/var/run/secrets/custos'",
      "mount -o remount,bind,ro -- '/var/run/secrets/custos'",
      'mount -o remount,bind,ro -- /',
      "cd -- '/it'\\''s here'",
      'echo started >&3',
      'exec 3>&-',
      "exec '/usr/bin/setpriv' '--reuid=1' '--regid=2' '--clear-groups' '--bounding-set=-all' '--inh-caps=-all' -- \"$@\"",
    ].join('\n'));
  });
});
