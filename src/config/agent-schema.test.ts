import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigInvalidError } from '../core/errors.js';
import { loadAgentConfigFile, parseAgentConfig } from './load.js';

const EXAMPLES_DIR = fileURLToPath(new URL('../../../examples/', import.meta.url));

/** A valid agent file; `extra` is appended at the top level. */
function minimal(extra = ''): string {
  return `agent:
  id: 7
  dispatchers: ["127.0.0.1:7600"]
watchdog: { type: none }
${extra}`;
}

function issuesOf(text: string, source?: string): readonly string[] {
  try {
    parseAgentConfig(text, source);
  } catch (err) {
    assert.ok(err instanceof ConfigInvalidError, `expected ConfigInvalidError, got ${String(err)}`);
    return err.issues;
  }
  assert.fail('configuration was accepted');
}

test('a minimal agent file gets every default', () => {
  const c = parseAgentConfig(minimal());
  assert.equal(c.version, 1);
  assert.deepEqual(c.logging, { level: 'info', format: 'json' });
  assert.deepEqual(c.cluster, {});
  assert.deepEqual(c.agent, {
    id: 7,
    dispatchers: ['127.0.0.1:7600'],
    heartbeatIntervalMs: 20,
    loadIntervalMs: 1000,
    pidFile: '/tmp/holdfast-agent-7.pid',
  });
  assert.deepEqual(c.watchdog, { type: 'none', periodMs: 1000, timeoutMs: 500, failures: 1 });
  assert.equal(c.load.backlogCapacity, 100);
  assert.equal(c.load.statsUrl, undefined);
  assert.deepEqual(c.drain, { deadlineMs: 30_000 });
  assert.ok(Object.isFrozen(c.agent.dispatchers));
});

test('default weights are 0.4, 0.2, 0.2, 0.1, 0.1; given weights are normalised to sum 1', () => {
  const defaults = parseAgentConfig(minimal()).load.weights;
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);
  close(defaults.cpu, 0.4);
  close(defaults.memory, 0.2);
  close(defaults.network, 0.2);
  close(defaults.io, 0.1);
  close(defaults.backlog, 0.1);

  const w = parseAgentConfig(minimal('load: { weights: { cpu: 2, memory: 1, network: 1, io: 0, backlog: 0 } }')).load.weights;
  assert.deepEqual(w, { cpu: 0.5, memory: 0.25, network: 0.25, io: 0, backlog: 0 });
  // Unnamed weights keep their default before normalising: 0.4 + 0.2 + 0.2 + 0.1 + 0.1 + 1.0 extra cpu.
  const partial = parseAgentConfig(minimal('load: { weights: { cpu: 1.4 } }')).load.weights;
  close(partial.cpu, 1.4 / 2);
  close(partial.io, 0.1 / 2);
});

test('an explicit pidFile is kept', () => {
  assert.equal(parseAgentConfig(minimal().replace('id: 7', 'id: 7\n  pidFile: /run/a.pid')).agent.pidFile, '/run/a.pid');
});

test('each watchdog type with its field', () => {
  const http = parseAgentConfig(minimal().replace('{ type: none }', '{ type: http, url: "http://127.0.0.1:9001/health?x=1", failures: 3 }'));
  assert.equal(http.watchdog.url, 'http://127.0.0.1:9001/health?x=1');
  assert.equal(http.watchdog.failures, 3);
  assert.equal(parseAgentConfig(minimal().replace('{ type: none }', '{ type: tcp, address: "[::1]:80" }')).watchdog.address, '[::1]:80');
  assert.equal(parseAgentConfig(minimal().replace('{ type: none }', '{ type: pid, pid: 42 }')).watchdog.pid, 42);
  assert.equal(parseAgentConfig(minimal().replace('{ type: none }', '{ type: pid, pidFile: /run/app.pid }')).watchdog.pidFile, '/run/app.pid');
});

test('required sections and fields', () => {
  assert.deepEqual(issuesOf('logging: { level: info }'), ['agent: required, expected a mapping', 'watchdog: required, expected a mapping']);
  assert.deepEqual(issuesOf('agent: { dispatchers: [] }\nwatchdog: {}'), [
    'agent.id: required, expected a number',
    'agent.dispatchers: expected at least 1 item, received 0 items',
    'watchdog.type: required, expected one of "http", "tcp", "pid", "none"',
  ]);
});

test('the watchdog field its type needs, and none it does not', () => {
  const wd = (w: string) => issuesOf(minimal().replace('{ type: none }', w));
  assert.deepEqual(wd('{ type: http }'), ['watchdog.url: required when type is "http", expected an http:// URL']);
  assert.deepEqual(wd('{ type: tcp }'), ['watchdog.address: required when type is "tcp", expected host:port']);
  assert.deepEqual(wd('{ type: pid }'), ['watchdog.pid: required when type is "pid", expected a process id (or pidFile)']);
  assert.deepEqual(wd('{ type: pid, pid: 3, pidFile: /x }'), ['watchdog.pidFile: expected either pid or pidFile, received both']);
  assert.deepEqual(wd('{ type: tcp, address: "127.0.0.1:1", url: "http://a/" }'), [
    'watchdog.url: only used when type is "http", type is "tcp"',
  ]);
  assert.deepEqual(wd('{ type: http, url: "https://a/" }'), ['watchdog.url: expected an http:// URL, received "https://a/"']);
  assert.deepEqual(wd('{ type: http, url: "not a url" }'), ['watchdog.url: expected an http:// URL, received "not a url"']);
  assert.deepEqual(wd('{ type: tcp, address: "9001" }'), ['watchdog.address: expected host:port, received "9001"']);
  assert.deepEqual(wd('{ type: ping }'), ['watchdog.type: expected one of "http", "tcp", "pid", "none", received "ping"']);
  assert.deepEqual(wd('{ type: none, periodMs: 100, timeoutMs: 200 }'), [
    'watchdog.timeoutMs: expected at most periodMs (100), received 200 (one verdict per period)',
  ]);
  assert.deepEqual(wd('{ type: none, timeoutMs: 2000 }'), [
    'watchdog.timeoutMs: expected at most periodMs (1000), received 2000 (one verdict per period)',
  ]);
});

test('numbers out of range', () => {
  assert.deepEqual(issuesOf(minimal().replace('id: 7', 'id: 70000\n  heartbeatIntervalMs: 1')), [
    'agent.id: expected at most 65535, received 70000',
    'agent.heartbeatIntervalMs: expected at least 5, received 1',
  ]);
  assert.deepEqual(issuesOf(minimal('load: { weights: { cpu: -1 }, backlogCapacity: 0 }\ndrain: { port: 0 }')), [
    'load.weights.cpu: expected at least 0, received -1',
    'load.backlogCapacity: expected at least 1, received 0',
    'drain.port: expected at least 1, received 0',
  ]);
  assert.deepEqual(issuesOf(minimal('load: { weights: { cpu: 0, memory: 0, network: 0, io: 0, backlog: 0 } }')), [
    'load.weights: expected at least one weight above 0, received a mapping',
  ]);
});

test('bad dispatcher addresses and duplicates', () => {
  assert.deepEqual(issuesOf(minimal().replace('["127.0.0.1:7600"]', '["127.0.0.1:7600", "7601", "127.0.0.1:7600"]')), [
    'agent.dispatchers[1]: expected host:port, received "7601"',
    'agent.dispatchers[2]: duplicate of agent.dispatchers[0] (127.0.0.1:7600)',
  ]);
  assert.deepEqual(issuesOf(minimal().replace('["127.0.0.1:7600"]', '"127.0.0.1:7600"')), [
    'agent.dispatchers: expected an array, received "127.0.0.1:7600"',
  ]);
});

test('renamed, misplaced and mistyped keys get hints', () => {
  assert.deepEqual(issuesOf(minimal().replace('id: 7', 'hostId: 7')), ['agent.hostId: renamed, use "id"']);
  assert.deepEqual(issuesOf(minimal().replace('id: 7', 'id: 7\n  interval: 10')), ['agent.interval: renamed, use "heartbeatIntervalMs"']);
  assert.deepEqual(issuesOf(minimal().replace('{ type: none }', '{ type: none, interval: 10, retries: 3, timeout: 100 }')), [
    'watchdog.interval: renamed, use "periodMs"',
    'watchdog.retries: renamed, use "failures"',
    'watchdog.timeout: renamed, use "timeoutMs"',
  ]);
  assert.deepEqual(issuesOf(minimal('drain: { timeout: 5000, deadline: 5000 }')), [
    'drain.timeout: renamed, use "deadlineMs"',
    'drain.deadline: renamed, use "deadlineMs"',
  ]);
  assert.deepEqual(issuesOf(minimal().replace('watchdog:', 'healthcheck:')), ['healthcheck: renamed, use "watchdog"']);
  assert.deepEqual(issuesOf(minimal('heartbeatIntervalMs: 10')), ['heartbeatIntervalMs: misplaced, use "agent.heartbeatIntervalMs"']);
  assert.deepEqual(issuesOf(minimal('load: { weights: { mem: 1 }, statsurl: "http://a/" }')), [
    'load.weights.mem: renamed, use "memory"',
    'load.statsurl: unknown key (did you mean "statsUrl"?)',
  ]);
  assert.deepEqual(issuesOf(minimal('services: []')), [
    'services: unknown key, expected one of "version", "logging", "scheduling", "cluster", "agent", "watchdog", "load", "drain", "hanet"',
  ]);
});

test('an empty file says what it should hold', () => {
  assert.deepEqual(issuesOf('', 'agent.yaml'), ['agent.yaml: empty file, expected a mapping with an "agent" section']);
});

test('loadAgentConfigFile reads a file and reports an unreadable one', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-agent-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'agent.yaml');
  writeFileSync(good, minimal());
  assert.equal(loadAgentConfigFile(good).agent.id, 7);
  const missing = join(dir, 'missing.yaml');
  assert.throws(() => loadAgentConfigFile(missing), (err: unknown) => {
    assert.ok(err instanceof ConfigInvalidError);
    assert.deepEqual(err.issues, [`${missing}: cannot read file (ENOENT)`]);
    return true;
  });
});

test('examples/agent.yaml parses and writes the defaults it says it does', () => {
  const example = loadAgentConfigFile(join(EXAMPLES_DIR, 'agent.yaml'));
  assert.equal(example.watchdog.type, 'http');
  assert.equal(example.watchdog.url, 'http://127.0.0.1:9001/');
  const bare = parseAgentConfig(`agent: { id: 1, dispatchers: ["127.0.0.1:7600"] }
watchdog: { type: http, url: "http://127.0.0.1:9001/" }
`);
  assert.deepEqual(example, bare);
});

const HANET = `hanet:
  address: 10.0.0.21/24
  interfaces:
    - { name: eth0, role: public, speedMbps: 1000 }
    - { name: priv0, role: private, speedMbps: 100 }
  listen: 10.99.0.1:7400
  siblings: [{ id: 2, address: "10.99.0.2:7400", serviceAddress: 10.0.0.22, via: priv0, localAddress: 10.99.0.1 }]
`;

test('hanet: defaults filled in; carrier is the default monitor', () => {
  const c = parseAgentConfig(minimal(HANET));
  assert.ok(c.hanet);
  assert.equal(c.hanet.failbackHoldMs, 2000);
  assert.equal(c.hanet.routeTable, 218);
  assert.deepEqual(c.hanet.interfaces[0]!.monitors, [{ type: 'carrier', periodMs: 100, timeoutMs: 50, misses: 1 }]);
  assert.equal(parseAgentConfig(minimal()).hanet, undefined);
});

test('hanet: cross-field checks name the path', () => {
  const only = (yaml: string) => issuesOf(minimal(yaml)).join('\n');
  assert.match(only(HANET.replace('role: public', 'role: private')), /hanet\.interfaces: expected at least one interface with role "public"/);
  assert.match(only(HANET.replace('via: priv0', 'via: eth0')), /hanet\.siblings\[0\]\.via: expected a private interface, "eth0" is public/);
  assert.match(only(HANET.replace('via: priv0', 'via: eth9')), /hanet\.siblings\[0\]\.via: expected one of hanet\.interfaces, received "eth9"/);
  assert.match(only(HANET.replace('name: priv0', 'name: eth0')), /hanet\.interfaces\[1\]\.name: duplicate interface eth0/);
  assert.match(
    only(HANET.replace('speedMbps: 1000 }', 'speedMbps: 1000, monitors: [{ type: arp, targets: [10.0.0.1], periodMs: 100, timeoutMs: 200 }] }')),
    /hanet\.interfaces\[0\]\.monitors\[0\]\.timeoutMs: expected at most periodMs \(100\), received 200/,
  );
  assert.match(only(HANET.replace('address: 10.0.0.21/24', 'address: 10.0.0.21')), /hanet\.address/);
  assert.match(only(HANET.replace('address: 10.0.0.21/24', 'vip: 10.0.0.21/24')), /vip.*address/);
});

test('examples/agent-hanet.yaml parses', () => {
  const c = loadAgentConfigFile(join(EXAMPLES_DIR, 'agent-hanet.yaml'));
  assert.equal(c.hanet?.interfaces.length, 2);
  assert.deepEqual(c.hanet?.interfaces[0]!.monitors.map((m) => m.type), ['carrier', 'arp', 'ping']);
  assert.equal(c.hanet?.siblings[0]!.via, 'priv0');
});
