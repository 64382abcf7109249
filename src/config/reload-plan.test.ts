import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from './load.js';
import { planReload } from './reload-plan.js';

function config(service: string, more = ''): ReturnType<typeof parseConfig> {
  return parseConfig(`services:
  - name: web
    protocol: http
${service}
  - name: voice
    protocol: sip
    listen: 127.0.0.1:5060
    backends:
      - { id: s1, address: "127.0.0.1:5070" }
${more}`);
}

const WEB = `    listen: 127.0.0.1:8080
    backends:
      - { id: a, address: "127.0.0.1:9001" }
      - { id: b, address: "127.0.0.1:9002", weight: 2 }`;

test('reload plan: nothing changed, nothing to do', () => {
  const plan = planReload(config(WEB), config(WEB));
  assert.deepEqual(plan.services, []);
  assert.deepEqual(plan.restart, []);
});

test('reload plan: backends added, removed, re-weighted and re-addressed, by id whatever their order', () => {
  const next = `    listen: 127.0.0.1:8080
    backends:
      - { id: c, address: "127.0.0.1:9003" }
      - { id: a, address: "127.0.0.1:9101", weight: 3 }
      - { id: b, address: "127.0.0.1:9002", weight: 5 }`;
  const plan = planReload(config(WEB), config(next));
  assert.deepEqual(plan.restart, []);
  assert.equal(plan.services.length, 1);
  const web = plan.services[0]!;
  assert.equal(web.name, 'web');
  // a moved: a new backend under the same id (removed, then added).
  assert.deepEqual(web.remove, ['a']);
  assert.deepEqual(web.add.map((b) => b.id), ['c', 'a']);
  assert.deepEqual(web.reweight, [{ id: 'b', weight: 5 }]);
  assert.deepEqual(plan.effective.services[0]!.backends.map((b) => b.id), ['c', 'a', 'b']);
});

test('reload plan: balancer, detector, admission thresholds and a stream listen address change live', () => {
  const next = `    listen: 127.0.0.1:8181
    balancer: least-connections
    health: { detector: { type: pull, intervalMs: 100 } }
    admission: { enabled: false, t1: 0.5 }
    backends:
      - { id: a, address: "127.0.0.1:9001" }
      - { id: b, address: "127.0.0.1:9002", weight: 2 }`;
  const plan = planReload(config(WEB), config(next));
  assert.deepEqual(plan.restart, []);
  const web = plan.services[0]!;
  assert.equal(web.balancer, 'least-connections');
  assert.equal(web.listen, '127.0.0.1:8181');
  assert.equal(web.health?.detector.type, 'pull');
  // Admission off before and after: nothing runs that reads the thresholds.
  assert.equal(web.admission, null);
  assert.equal(plan.effective.services[0]!.admission.t1, 0.5);
});

test('reload plan: what cannot change live is named by its path in the new file, and keeps its running value', () => {
  const next = `    listen: 127.0.0.1:8080
    http: { maxHeaderBytes: 8192 }
    health: { connectTimeoutMs: 100 }
    admission: { enabled: true }
    backends:
      - { id: a, address: "127.0.0.1:9001" }
      - { id: b, address: "127.0.0.1:9002", weight: 2 }`;
  const more = `  - name: extra
    protocol: tcp
    listen: 127.0.0.1:7000
    backends:
      - { id: x, address: "127.0.0.1:7001" }
admin: { listen: 127.0.0.1:9999 }`;
  const running = config(WEB);
  const plan = planReload(running, config(next, more));
  assert.deepEqual(
    plan.restart.map((r) => r.path).sort(),
    ['admin', 'services[0].admission.enabled', 'services[0].health.connectTimeoutMs', 'services[0].http', 'services[2]'],
  );
  assert.deepEqual(plan.services, []);
  assert.equal(plan.effective.services[0]!.http.maxHeaderBytes, running.services[0]!.http.maxHeaderBytes);
  assert.equal(plan.effective.services.length, 2);
});

test('reload plan: a removed service, a SIP listen address and a grouped listen address need a restart', () => {
  const plan = planReload(config(WEB), parseConfig(`services:
  - name: voice
    protocol: sip
    listen: 127.0.0.1:5061
    backends:
      - { id: s1, address: "127.0.0.1:5070" }
`));
  assert.deepEqual(plan.restart.map((r) => r.path).sort(), ['services', 'services[0].listen']);
  assert.match(plan.restart.find((r) => r.path === 'services')!.reason, /"web" is not in the new file/);
  assert.deepEqual(plan.services, []);
});
