import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigInvalidError } from '../core/errors.js';
import { formatConfig, loadConfigFile, parseConfig, withSharedServices } from './load.js';

const EXAMPLES_DIR = fileURLToPath(new URL('../../../examples/', import.meta.url));

/** One valid http service; `extra` lines are appended to the service mapping. */
function oneService(extra = ''): string {
  return `services:
  - name: web
    protocol: http
    listen: 127.0.0.1:8080
    backends:
      - { id: a, address: "127.0.0.1:9001" }
${extra}`;
}

function issuesOf(text: string, source?: string): readonly string[] {
  try {
    parseConfig(text, source);
  } catch (err) {
    assert.ok(err instanceof ConfigInvalidError, `expected ConfigInvalidError, got ${String(err)}`);
    assert.equal(err.code, 'HF_ERR_CONFIG_INVALID');
    return err.issues;
  }
  assert.fail('configuration was accepted');
}

test('a minimal configuration gets every default', () => {
  const config = parseConfig(oneService());
  assert.equal(config.version, 1);
  assert.deepEqual(config.logging, { level: 'info', format: 'json' });
  assert.deepEqual(config.admin, { enabled: true, listen: '127.0.0.1:9900' });
  const service = config.services[0]!;
  assert.equal(service.balancer, 'round-robin');
  assert.deepEqual(service.backends, [{ id: 'a', address: '127.0.0.1:9001', weight: 1 }]);
  assert.equal(service.health.connectTimeoutMs, 2000);
  assert.deepEqual(service.health.probe, { type: 'tcp', path: '/', intervalMs: 1000, timeoutMs: 1000 });
  assert.equal(service.http.maxHeaderBytes, 16 * 1024);
  assert.equal(service.tcp.idleTimeoutMs, 0);
});

test('the result is deeply frozen', () => {
  const config = parseConfig(oneService());
  assert.ok(Object.isFrozen(config));
  assert.throws(() => {
    config.services[0]!.name = 'other';
  }, TypeError);
  assert.throws(() => {
    config.services[0]!.backends.push({ id: 'b', address: '127.0.0.1:9002', weight: 1 });
  }, TypeError);
  assert.throws(() => {
    config.services[0]!.http.maxHeaderBytes = 1;
  }, TypeError);
  assert.equal(config.services[0]!.name, 'web');
});

test('type mismatch', () => {
  assert.deepEqual(issuesOf(oneService('    http: { forwardedHeaders: "yes", maxHeaderBytes: 16k }')), [
    'services[0].http.maxHeaderBytes: expected a number, received "16k"',
    'services[0].http.forwardedHeaders: expected true or false, received "yes"',
  ]);
  assert.deepEqual(issuesOf('services: { name: web }'), ['services: expected an array, received a mapping']);
  assert.deepEqual(issuesOf('- one\n- two\n', 'cfg.yaml'), ['cfg.yaml: expected a mapping, received an array of 2 items']);
});

test('a number where a string is expected suggests quoting', () => {
  assert.deepEqual(issuesOf(oneService().replace('{ id: a,', '{ id: 1,')), [
    'services[0].backends[0].id: expected a string, received 1 (quote it: "1")',
  ]);
});

test('bad host:port', () => {
  assert.deepEqual(issuesOf(oneService().replace('listen: 127.0.0.1:8080', 'listen: "8080"')), [
    'services[0].listen: expected host:port, received "8080"',
  ]);
  assert.deepEqual(issuesOf(oneService().replace('"127.0.0.1:9001"', '"127.0.0.1:70000"')), [
    'services[0].backends[0].address: expected a port from 1 to 65535, received "127.0.0.1:70000"',
  ]);
});

test('numbers out of range', () => {
  assert.deepEqual(issuesOf(oneService('    health: { connectTimeoutMs: 0 }\n    http: { maxHeaderBytes: 10 }')), [
    'services[0].health.connectTimeoutMs: expected more than 0, received 0',
    'services[0].http.maxHeaderBytes: expected at least 1024, received 10',
  ]);
});

test('missing required keys', () => {
  assert.deepEqual(issuesOf('logging: { level: info }'), ['services: required, expected an array']);
  assert.deepEqual(issuesOf(oneService().replace('    listen: 127.0.0.1:8080\n', '')), [
    'services[0].listen: required, expected host:port',
  ]);
});

test('too few items', () => {
  assert.deepEqual(issuesOf('services:\n  - { name: web, protocol: tcp, listen: "127.0.0.1:1", backends: [] }'), [
    'services[0].backends: expected at least 1 item, received 0 items',
  ]);
  assert.deepEqual(issuesOf('services: []'), ['services: expected at least 1 item, received 0 items']);
});

test('enum values', () => {
  assert.deepEqual(issuesOf(oneService().replace('protocol: http', 'protocol: ftp')), [
    'services[0].protocol: expected one of "http", "tcp", "udp", "sip", "rtsp", received "ftp"',
  ]);
  assert.deepEqual(issuesOf(oneService().replace('protocol: http', 'protocol: htp')), [
    'services[0].protocol: expected one of "http", "tcp", "udp", "sip", "rtsp", received "htp"',
  ]);
  assert.deepEqual(issuesOf(oneService() + 'logging: { level: loud }'), [
    'logging.level: expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent", received "loud"',
  ]);
});

test('unknown key with a suggestion by edit distance', () => {
  assert.deepEqual(issuesOf(oneService().replace('backends:', 'bakends:')), [
    'services[0].backends: required, expected an array',
    'services[0].bakends: unknown key (did you mean "backends"?)',
  ]);
  assert.deepEqual(issuesOf(oneService('    balacner: round-robin')), [
    'services[0].balacner: unknown key (did you mean "balancer"?)',
  ]);
});

test('unknown key without a near match lists the known keys', () => {
  assert.deepEqual(issuesOf(oneService() + 'logging: { colour: true }'), [
    'logging.colour: unknown key, expected one of "level", "format", "file"',
  ]);
});

test('renamed and foreign keys get a hint (and no redundant "required")', () => {
  assert.deepEqual(issuesOf(oneService().replace('backends:', 'servers:')), ['services[0].servers: renamed, use "backends"']);
  assert.deepEqual(issuesOf(oneService('    algorithm: least-connections')), ['services[0].algorithm: renamed, use "balancer"']);
  assert.deepEqual(issuesOf(oneService().replace('{ id: a, address:', '{ name: a, host:')), [
    'services[0].backends[0].name: renamed, use "id"',
    'services[0].backends[0].host: renamed, use "address"',
  ]);
  assert.deepEqual(issuesOf(oneService().replace('listen:', 'bind:')), ['services[0].bind: renamed, use "listen"']);
  assert.deepEqual(issuesOf(oneService('    timeout: 5000')), [
    'services[0].timeout: renamed, use one of "http.responseTimeoutMs", "health.connectTimeoutMs", "tcp.idleTimeoutMs"',
  ]);
  assert.deepEqual(issuesOf(oneService('    health: { timeout: 500, probe: { interval: 100 } }')), [
    'services[0].health.probe.interval: renamed, use "intervalMs"',
    'services[0].health.timeout: renamed, use "connectTimeoutMs"',
  ]);
});

test('snake_case, kebab-case and unit-less keys point at the camelCase key', () => {
  assert.deepEqual(issuesOf(oneService('    health: { connect_timeout: 500 }\n    http: { max-header-bytes: 2048, idleTimeout: 5 }')), [
    'services[0].health.connect_timeout: renamed, use "connectTimeoutMs"',
    'services[0].http.max-header-bytes: renamed, use "maxHeaderBytes"',
    'services[0].http.idleTimeout: renamed, use "idleTimeoutMs"',
  ]);
  assert.deepEqual(issuesOf(oneService('    connect_timeout_ms: 500\n    maxHeaderBytes: 2048')), [
    'services[0].connect_timeout_ms: renamed, use "health.connectTimeoutMs"',
    'services[0].maxHeaderBytes: misplaced, use "http.maxHeaderBytes"',
  ]);
});

test('duplicate service names, backend ids and listen addresses', () => {
  const text = `services:
  - name: web
    protocol: http
    listen: 127.0.0.1:8080
    backends: [{ id: a, address: "127.0.0.1:9001" }, { id: b, address: "127.0.0.1:9002" }, { id: a, address: "127.0.0.1:9003" }]
  - name: web
    protocol: tcp
    listen: 127.0.0.1:8080
    backends: [{ id: a, address: "127.0.0.1:9001" }]
  - name: api
    protocol: tcp
    listen: 0.0.0.0:8080
    backends: [{ id: a, address: "127.0.0.1:9001" }]
admin: { listen: "127.0.0.1:8080" }
`;
  assert.deepEqual(issuesOf(text), [
    'services[0].backends[2].id: duplicate backend id "a", already used by services[0].backends[0]',
    'services[1].name: duplicate service name "web", already used by services[0]',
    'services[1].listen: 127.0.0.1:8080 is already used by services[0].listen',
    'services[2].listen: 0.0.0.0:8080 is already used by services[0].listen (127.0.0.1:8080)',
    'admin.listen: 127.0.0.1:8080 is already used by services[0].listen',
  ]);
});

test('the default admin address counts as taken; port 0 never collides; a disabled admin takes nothing', () => {
  assert.deepEqual(issuesOf(oneService().replace('127.0.0.1:8080', '127.0.0.1:9900')), [
    'admin.listen: 127.0.0.1:9900 is already used by services[0].listen',
  ]);
  parseConfig(oneService().replace('127.0.0.1:8080', '127.0.0.1:9900') + 'admin: { enabled: false }');
  const twoOnPortZero = oneService().replace('8080', '0') + oneService().replace('services:\n', '').replace('web', 'web2').replace('8080', '0');
  assert.equal(parseConfig(twoOnPortZero + 'admin: { listen: "127.0.0.1:0" }').services.length, 2);
});

test('unknown balancer', () => {
  assert.deepEqual(issuesOf(oneService('    balancer: fastest')), [
    'services[0].balancer: expected one of "least-connections", "least-loaded", "maglev", "round-robin", "shell", "weighted-round-robin", received "fastest"',
  ]);
  assert.deepEqual(issuesOf(oneService('    balancer: roundrobin')), [
    'services[0].balancer: expected one of "least-connections", "least-loaded", "maglev", "round-robin", "shell", "weighted-round-robin", received "roundrobin" (did you mean "round-robin"?)',
  ]);
});

test('YAML syntax errors carry source:line:col', () => {
  assert.deepEqual(issuesOf('services:\n  - name: web\n    listen: [1, 2\n', 'my.yaml'), [
    'my.yaml:4:1: Flow sequence in block collection must be sufficiently indented and end with a ]',
  ]);
  assert.deepEqual(issuesOf('services: 1\nservices: 2\n'), ['<config>:2:1: Map keys must be unique']);
  assert.deepEqual(issuesOf('a: 1\n---\nb: 2\n'), ['<config>:2:1: expected one YAML document, found several']);
});

test('an empty file or one with only comments', () => {
  const expected = ['cfg.yaml: empty file, expected a mapping with a "services" list'];
  assert.deepEqual(issuesOf('', 'cfg.yaml'), expected);
  assert.deepEqual(issuesOf('# nothing here\n\n', 'cfg.yaml'), expected);
});

test('every problem is reported at once, schema and cross-field alike', () => {
  const text = `version: 2
services:
  - name: web
    protocol: ftp
    listen: "8080"
    servers: [{ host: "127.0.0.1:9001" }]
  - name: web
    protocol: http
    listen: 127.0.0.1:8081
    balancer: fastest
    backends: [{ id: a, address: "127.0.0.1:9001", weight: -1 }, { id: a, address: nowhere }]
`;
  assert.deepEqual(issuesOf(text), [
    'version: expected 1, received 2',
    'services[0].protocol: expected one of "http", "tcp", "udp", "sip", "rtsp", received "ftp"',
    'services[0].listen: expected host:port, received "8080"',
    'services[1].backends[0].weight: expected at least 0, received -1',
    'services[1].backends[1].address: expected host:port, received "nowhere"',
    'services[0].servers: renamed, use "backends"',
    'services[1].name: duplicate service name "web", already used by services[0]',
    'services[1].balancer: expected one of "least-connections", "least-loaded", "maglev", "round-robin", "shell", "weighted-round-robin", received "fastest"',
    'services[1].backends[1].id: duplicate backend id "a", already used by services[1].backends[0]',
  ]);
});

test('ConfigInvalidError message lists every issue', () => {
  assert.throws(() => parseConfig('services: []\nfoo: 1'), (err: unknown) => {
    assert.ok(err instanceof ConfigInvalidError);
    assert.equal(
      err.message,
      'invalid configuration:\n  services: expected at least 1 item, received 0 items\n  foo: unknown key, expected one of "version", "scheduling", "logging", "admin", "cluster", "monitor", "services", "dispatcher", "groups"',
    );
    return true;
  });
});

test('loadConfigFile reads a file and reports an unreadable one', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.yaml');
  writeFileSync(good, oneService());
  assert.equal(loadConfigFile(good).services[0]!.name, 'web');

  const missing = join(dir, 'missing.yaml');
  assert.throws(() => loadConfigFile(missing), (err: unknown) => {
    assert.ok(err instanceof ConfigInvalidError);
    assert.deepEqual(err.issues, [`${missing}: cannot read file (ENOENT)`]);
    return true;
  });
  assert.throws(() => loadConfigFile(dir), (err: unknown) => {
    assert.ok(err instanceof ConfigInvalidError);
    assert.deepEqual(err.issues, [`${dir}: cannot read file (EISDIR)`]);
    return true;
  });

  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'services: [\n');
  assert.throws(() => loadConfigFile(bad), (err: unknown) => {
    assert.ok(err instanceof ConfigInvalidError);
    assert.match(err.issues[0]!, new RegExp(`^${bad.replace(/[.]/g, '\\.')}:2:1: `));
    return true;
  });
});

test('formatConfig prints the resolved configuration, which parses back to the same value', () => {
  const config = parseConfig(oneService());
  const text = formatConfig(config);
  assert.match(text, /^ {4}balancer: round-robin$/m);
  assert.match(text, /^ {6}maxHeaderBytes: 16384$/m);
  assert.deepEqual(parseConfig(text), config);
});

test('every example parses', () => {
  // agent*.yaml are agent configurations (agent-schema.test.ts parses them).
  const files = readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.yaml') && !f.startsWith('agent'));
  for (const required of ['http.yaml', 'minimal.yaml', 'tcp.yaml']) assert.ok(files.includes(required), required);
  for (const file of files) {
    const config = loadConfigFile(join(EXAMPLES_DIR, file));
    assert.ok(config.services.length > 0, file);
    for (const s of config.services) assert.match(s.listen, /^127\.\d+\.\d+\.\d+:/, file);
  }
});

test('examples/http.yaml writes every option at its default value', () => {
  const full = loadConfigFile(join(EXAMPLES_DIR, 'http.yaml'));
  const bare = parseConfig(`services:
  - name: web
    protocol: http
    listen: 127.0.0.1:8080
    backends: [{ id: app-1, address: "127.0.0.1:9001" }, { id: app-2, address: "127.0.0.1:9002" }]
`);
  assert.deepEqual(full, bare);
});

test('the probe follows the protocol unless named, and must be one the backends can answer', () => {
  const two = `services:
  - { name: voice, protocol: sip, listen: "127.0.0.1:5060", backends: [{ id: a, address: "127.0.0.1:5070" }] }
  - { name: video, protocol: rtsp, listen: "127.0.0.1:554", backends: [{ id: a, address: "127.0.0.1:8554" }] }
  - { name: dns, protocol: udp, listen: "127.0.0.1:53", backends: [{ id: a, address: "127.0.0.1:5353" }] }
`;
  assert.deepEqual(
    parseConfig(two).services.map((s) => s.health.probe.type),
    ['udp', 'tcp', 'udp'],
    'sip over udp and udp get the udp probe, rtsp (tcp) the tcp one',
  );
  const named = two.replace('address: "127.0.0.1:5070" }]', 'address: "127.0.0.1:5070" }], health: { probe: { type: sip } }');
  assert.equal(parseConfig(named).services[0]!.health.probe.type, 'sip');
  assert.deepEqual(issuesOf(two.replace('address: "127.0.0.1:5353" }]', 'address: "127.0.0.1:5353" }], health: { probe: { type: http } }')), [
    'services[2].health.probe.type: expected a probe a udp backend answers (udp, sip), received "http"',
  ]);
  assert.deepEqual(issuesOf(two.replace('address: "127.0.0.1:8554" }]', 'address: "127.0.0.1:8554" }], health: { probe: { type: sip } }')), [
    'services[1].health.probe.type: expected a probe a rtsp backend answers (tcp, http), received "sip"',
  ]);
});

test('replication groups: cross-checked against the services', () => {
  const text = `dispatcher: { id: 1 }
groups:
  - { name: front, id: 10, vip: 127.0.0.10, listen: "127.0.0.1:7701", peers: ["127.0.0.1:7702"], services: [web, nope] }
${oneService()}`;
  assert.deepEqual(issuesOf(text), [
    'groups[0].services[0]: expected service "web" to listen on the VIP 127.0.0.10, it listens on 127.0.0.1:8080',
    'groups[0].services[1]: expected the name of a service, received "nope"',
  ]);
});

test('tls and limits: defaults filled in, wrong places and values named', () => {
  const config = parseConfig(oneService('    tls: { certificates: [{ cert: /c.pem, key: /k.pem }] }'));
  const tls = config.services[0]!.tls!;
  assert.deepEqual(
    [tls.minVersion, tls.alpn, tls.strictSni, tls.sessionTickets, tls.handshakeTimeoutMs, tls.watchFiles],
    ['TLSv1.2', ['http/1.1'], false, true, 10_000, true],
  );
  assert.deepEqual(config.services[0]!.limits, { maxConnections: 0, maxConnectionsPerAddress: 1024, connectionsPerSecond: 0, requestsPerSecond: 0, maxAddresses: 65_536 });
  assert.deepEqual(issuesOf(oneService('    tls: { certificates: [], minVersion: TLSv1.0 }')), [
    'services[0].tls.certificates: expected at least 1 item, received 0 items',
    'services[0].tls.minVersion: expected one of "TLSv1.2", "TLSv1.3", received "TLSv1.0"',
  ]);
  assert.deepEqual(issuesOf(oneService('    tls: { certificates: [{ cert: /c.pem }] }')), ['services[0].tls.certificates[0].key: required, expected a file path']);
  assert.deepEqual(
    issuesOf(oneService('    tls: { certificates: [{ cert: /c.pem, key: /k.pem }] }').replace('protocol: http', 'protocol: udp')),
    ['services[0].tls: expected only on an http or tcp service, received a udp service'],
  );
  assert.deepEqual(issuesOf(oneService('    limits: { requestsPerSecond: -1 }')), ['services[0].limits.requestsPerSecond: expected at least 0, received -1']);
});

test('tlsPassthrough: tcp only, not with tls; backends may name the servers they take', () => {
  const tcp = oneService('    tlsPassthrough: {}').replace('protocol: http', 'protocol: tcp').replace('{ id: a, address: "127.0.0.1:9001" }', '{ id: a, address: "127.0.0.1:9001", serverNames: ["a.test", "*.w.test"] }');
  const config = parseConfig(tcp);
  assert.deepEqual([config.services[0]!.tlsPassthrough, config.services[0]!.backends[0]!.serverNames], [{ clientHelloTimeoutMs: 10_000 }, ['a.test', '*.w.test']]);
  assert.deepEqual(issuesOf(oneService('    tlsPassthrough: {}')), ['services[0].tlsPassthrough: expected only on a tcp service, received a http service']);
  assert.deepEqual(issuesOf(tcp.replace('    tlsPassthrough: {}', '    tlsPassthrough: {}\n    tls: { certificates: [{ cert: /c, key: /k }] }')), [
    'services[0].tlsPassthrough: expected either tls (terminate) or tlsPassthrough (route by name), received both',
  ]);
});

test('maglev.tableSize: a prime, with the path in the error', () => {
  assert.deepEqual(issuesOf(oneService('    balancer: maglev\n    maglev:\n      tableSize: 65536')), [
    'services[0].maglev.tableSize: expected a prime number (e.g. 65537, 655373), received 65536',
  ]);
  assert.equal(parseConfig(oneService('    balancer: maglev\n    maglev:\n      tableSize: 655373')).services[0]!.maglev.tableSize, 655373);
});

test('cluster.membership etcd: needs an etcd section; shared services replace the local ones', () => {
  assert.deepEqual(issuesOf(`cluster: { membership: etcd }\n${oneService()}`), ['cluster.etcd: expected an etcd section when membership is "etcd", received nothing']);
  const local = parseConfig(`cluster:\n  membership: etcd\n  etcd: { endpoints: ["127.0.0.1:2379"], id: d1 }\n${oneService()}`);
  assert.equal(local.cluster.etcd!.prefix, '/holdfast/');
  assert.equal(local.cluster.etcd!.leaseTtlS, 5);
  const shared = 'services:\n  - name: sip\n    protocol: sip\n    listen: 127.0.0.1:5060\n    balancer: maglev\n    backends:\n      - { id: s1, address: "127.0.0.1:5070" }\n';
  const merged = withSharedServices(local, shared, 'etcd:/holdfast/config');
  assert.deepEqual(merged.services.map((s) => s.name), ['sip']);
  assert.equal(merged.services[0]!.balancer, 'maglev');
  assert.equal(merged.cluster.etcd!.id, 'd1');
  assert.deepEqual(issuesOf(`cluster:\n  membership: etcd\n  etcd: { endpoints: ["127.0.0.1:2379"], id: d1, passwordFile: /x }\n${oneService()}`), [
    'cluster.etcd.username: expected a username with passwordFile, received nothing',
  ]);
  assert.throws(() => withSharedServices(local, 'admin: {}\n', 'etcd:/holdfast/config'), /etcd:\/holdfast\/config: expected a mapping with one key, "services", received keys admin/);
  assert.throws(() => withSharedServices(local, 'services:\n  - name: x\n', 'etcd:/holdfast/config'), (err: unknown) => {
    assert.ok(err instanceof ConfigInvalidError);
    assert.ok(err.issues.some((i) => i.startsWith('services[0].protocol')), err.issues.join('; '));
    return true;
  });
});
