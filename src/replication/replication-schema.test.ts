import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseYaml } from '../config/load.js';
import { ConfigInvalidError } from '../core/errors.js';
import { parseCidr, replicationIssues, replicationSchema, vipOf, type ReplicationConfig } from './replication-schema.js';

function parse(text: string): ReplicationConfig {
  return parseYaml(replicationSchema, text, '<test>');
}

function issuesOf(text: string): readonly string[] {
  try {
    parse(text);
  } catch (err) {
    assert.ok(err instanceof ConfigInvalidError, String(err));
    return err.issues;
  }
  assert.fail('accepted');
}

const MINIMAL = `dispatcher: { id: 1 }
groups:
  - name: front
    id: 10
    vip: 127.0.0.10
    listen: 127.0.0.1:7701
    peers: [127.0.0.1:7702]
    services: [sip]
`;

test('a minimal group gets every default', () => {
  const c = parse(MINIMAL);
  assert.deepEqual(c, {
    dispatcher: { id: 1, workers: 1, drainTimeoutMs: 5000 },
    groups: [
      {
        name: 'front',
        id: 10,
        vip: '127.0.0.10',
        takeover: 'loopback',
        priority: 100,
        advertIntervalMs: 20,
        preempt: true,
        listen: '127.0.0.1:7701',
        peers: ['127.0.0.1:7702'],
        services: ['sip'],
        replicateState: true,
        replicationFlushMs: 0,
        garpCount: 5,
        garpDelayMs: 5000,
        garp: 'auto',
      },
    ],
  });
  assert.deepEqual(vipOf(c.groups[0]!), { address: '127.0.0.10', prefix: 32 });
  assert.deepEqual(parse('{}'), { groups: [] });
});

test('a linux group with multicast', () => {
  const c = parse(`dispatcher: { id: 2 }
groups:
  - { name: lan, id: 3, vip: 192.0.2.10/24, takeover: linux, interface: eth0, priority: 255, advertIntervalMs: 5,
      preempt: false, listen: 0.0.0.0:7701, multicast: { group: 239.1.2.3:7700, interface: 192.0.2.2 }, services: [web],
      garpCount: 3, garpDelayMs: 0 }
`);
  const g = c.groups[0]!;
  assert.equal(g.takeover, 'linux');
  assert.deepEqual(g.peers, []);
  assert.deepEqual(g.multicast, { group: '239.1.2.3:7700', interface: '192.0.2.2' });
  assert.deepEqual(vipOf(g), { address: '192.0.2.10', prefix: 24 });
});

test('every problem is reported with its path, what was expected and what was found', () => {
  const issues = issuesOf(`dispatcher: { id: 70000 }
groups:
  - name: "bad name"
    id: 0
    vip: 10.0.0.1
    interface: eth0
    priority: 0
    advertIntervalMs: 2
    listen: nowhere
    peers: []
    services: []
  - name: l
    id: 2
    vip: 10.0.0.1
    takeover: linux
    listen: 127.0.0.1:1
    peers: [127.0.0.1:1]
    multicast: { group: 10.1.1.1:7 }
    services: [a, a]
    oops: 1
`);
  const expected = [
    'dispatcher.id: expected at most 65535, received 70000',
    'groups[0].name: expected a name of letters, digits, "_", "." or "-", received "bad name"',
    'groups[0].id: expected at least 1, received 0',
    'groups[0].priority: expected at least 1, received 0',
    'groups[0].advertIntervalMs: expected at least 5, received 2',
    'groups[0].listen: expected host:port, received "nowhere"',
    'groups[0].services: expected at least 1 item, received 0 items',
    'groups[1].multicast.group: expected a multicast group 224.0.0.0/4:port, received "10.1.1.1:7"',
    'groups[1].oops: unknown key',
  ];
  for (const e of expected) assert.ok(issues.some((i) => i.startsWith(e)), `missing "${e}" in:\n${issues.join('\n')}`);
  // Cross-field checks of a group run once its fields parse.
  const cross = issuesOf(`groups:
  - { name: a, id: 1, vip: 10.0.0.1, interface: eth0, listen: 127.0.0.1:1, peers: [], services: [s] }
  - { name: b, id: 2, vip: 10.0.0.1, takeover: linux, listen: 127.0.0.1:1, peers: [127.0.0.1:1], services: [s, s] }
`);
  const crossExpected = [
    'groups[0].vip: expected an IPv4 address in 127.0.0.0/8 (takeover: loopback)',
    'groups[0].interface: expected no interface with takeover: loopback',
    'groups[0].peers: expected at least one peer (or a multicast group)',
    'groups[1].vip: expected an IPv4 address with its prefix, like 192.0.2.10/24 (takeover: linux)',
    'groups[1].interface: expected an interface name (takeover: linux needs one)',
    'groups[1].peers: expected the other dispatchers',
    'groups[1].services[1]: expected each service once, "s" is listed twice',
  ];
  for (const e of crossExpected) assert.ok(cross.some((i) => i.startsWith(e)), `missing "${e}" in:\n${cross.join('\n')}`);
});

test('replicationIssues: identity, uniqueness, services that exist, in one group, listening on a loopback VIP', () => {
  const c = parse(`groups:
  - { name: a, id: 1, vip: 127.0.0.10, listen: 127.0.0.1:1, peers: [127.0.0.1:2], services: [sip, nope] }
  - { name: a, id: 1, vip: 127.0.0.10, listen: 127.0.0.1:1, peers: [127.0.0.1:2], services: [sip, web] }
  - { name: c, id: 3, vip: 192.0.2.1/24, takeover: linux, interface: eth0, listen: 127.0.0.1:1, peers: [127.0.0.1:2], services: [api] }
`);
  const services = [
    { name: 'sip', listen: '127.0.0.10:5060' },
    { name: 'web', listen: '127.0.0.1:8080' },
    { name: 'api', listen: '0.0.0.0:80' },
  ];
  assert.deepEqual(replicationIssues(c, services), [
    'dispatcher: required, expected { id } when groups are configured',
    'groups[0].services[1]: expected the name of a service, received "nope"',
    `groups[1].name: expected a unique name, "a" is also groups[0]'s`,
    `groups[1].id: expected a unique id, 1 is also groups[0]'s`,
    `groups[1].vip: expected a unique vip, "127.0.0.10" is also groups[0]'s`,
    'groups[1].services[0]: expected a service in one group only, "sip" is also in a',
    'groups[1].services[1]: expected service "web" to listen on the VIP 127.0.0.10, it listens on 127.0.0.1:8080',
  ]);
  assert.deepEqual(replicationIssues(parse(MINIMAL), [{ name: 'sip', listen: '127.0.0.10:5060' }]), []);
});

test('parseCidr', () => {
  assert.deepEqual(parseCidr('10.1.2.3/8'), { address: '10.1.2.3', prefix: 8 });
  assert.deepEqual(parseCidr('10.1.2.3/32'), { address: '10.1.2.3', prefix: 32 });
  assert.equal(parseCidr('10.1.2.3/33'), null);
  assert.equal(parseCidr('10.1.2.3'), null);
  assert.equal(parseCidr('10.1.2/24'), null);
  assert.equal(parseCidr('fd00::1/64'), null);
});

test('replicationFlushMs: an integer in [0, 1000] ms (0, the default: end of the event-loop turn)', () => {
  assert.equal(parse(MINIMAL.replace('services: [sip]', 'services: [sip]\n    replicationFlushMs: 10')).groups[0]!.replicationFlushMs, 10);
  assert.equal(parse(MINIMAL.replace('services: [sip]', 'services: [sip]\n    replicationFlushMs: 0')).groups[0]!.replicationFlushMs, 0);
  for (const bad of ['-1', '1001', '2.5', '"2"']) {
    const issues = issuesOf(MINIMAL.replace('services: [sip]', `services: [sip]\n    replicationFlushMs: ${bad}`));
    assert.ok(issues.some((x) => x.includes('replicationFlushMs')), issues.join('\n'));
  }
});
