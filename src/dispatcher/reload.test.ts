/**
 * Live reload and the admin API's add / remove of a backend, on a real dispatcher with real HTTP
 * backends and steady keep-alive traffic: nothing is lost, a bad file changes nothing, a changed
 * listen address rebinds, added and removed backends keep every other backend's identity.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { parseConfig } from '../config/load.js';
import { startDemoBackend, type DemoBackend } from '../demo/demo-backend.js';
import { startDispatcher, type DispatcherHandle } from './dispatcher.js';

function yaml(listen: string, backends: readonly DemoBackend[], extra = ''): string {
  return `logging: { level: silent }
admin: { listen: 127.0.0.1:0 }
services:
  - name: web
    protocol: http
    listen: ${listen}
    balancer: round-robin
    health: { probe: { type: http, path: /health, intervalMs: 50 } }
${extra}    backends:
${backends.map((b) => `      - { id: ${b.id}, address: "127.0.0.1:${b.address.port}" }`).join('\n')}
`;
}

interface Rig {
  d: DispatcherHandle;
  api: string;
  backends: Record<string, DemoBackend>;
  /** The text the dispatcher's configuration source reads on the next reload. */
  file: { text: string };
}

async function rig(t: TestContext, ids: string[], initial: (b: Record<string, DemoBackend>) => string): Promise<Rig> {
  const list = await Promise.all(ids.map((id) => startDemoBackend(id)));
  t.after(() => Promise.all(list.map((b) => b.close())));
  const backends = Object.fromEntries(list.map((b) => [b.id, b]));
  const file = { text: initial(backends) };
  const d = await startDispatcher(parseConfig(file.text, 'holdfast.yaml'), { configSource: () => parseConfig(file.text, 'holdfast.yaml') });
  t.after(() => d.close());
  return { d, api: `http://127.0.0.1:${d.adminAddress!.port}/api/v1`, backends, file };
}

async function post(url: string, body?: unknown, method = 'POST'): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
  return { status: res.status, body: await res.json() };
}

/** One GET on a keep-alive agent: the backend that answered, or throws. */
function getVia(agent: http.Agent, url: string): Promise<{ backend: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => (text += s));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}: ${text}`));
        resolve({ backend: (JSON.parse(text) as { backend: string }).backend, localPort: req.socket?.localPort ?? -1 });
      });
    });
    req.on('error', reject);
  });
}

/** `clients` keep-alive loops of GETs until stop(): every reply and every error, with its start time. */
function steadyTraffic(url: () => string, clients: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const replies: { at: number; backend: string }[] = [];
  const errors: string[] = [];
  let running = true;
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      const at = Date.now();
      try {
        replies.push({ at, backend: (await getVia(agent, url())).backend });
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  });
  return {
    replies,
    errors,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, fn: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('reload under steady keep-alive traffic: c added, a removed, no request lost, b keeps its identity', { timeout: 30_000 }, async (t) => {
  const r = await rig(t, ['a', 'b', 'c'], (b) => yaml('127.0.0.1:0', [b['a']!, b['b']!]));
  const url = `http://127.0.0.1:${r.d.serviceAddress('web').port}/`;
  const traffic = steadyTraffic(() => url, 4);
  await until('traffic on a and b', () => new Set(traffic.replies.map((x) => x.backend)).size === 2);

  r.file.text = yaml('127.0.0.1:0', [r.backends['b']!, r.backends['c']!]);
  const reloaded = await post(`${r.api}/actions/reload`);
  const appliedAt = Date.now();
  assert.equal(reloaded.status, 200, JSON.stringify(reloaded.body));
  assert.deepEqual(reloaded.body.applied, [{ service: 'web', added: ['c'], removed: ['a'], reweighted: [] }]);
  assert.deepEqual(reloaded.body.restartRequired, []);
  assert.deepEqual(reloaded.body.errors, []);

  await until('traffic on c', () => traffic.replies.some((x) => x.backend === 'c'));
  await sleep(200);
  await traffic.stop();
  assert.deepEqual(traffic.errors, [], 'no request lost');
  const after = traffic.replies.filter((x) => x.at > appliedAt);
  assert.ok(after.length > 20, `traffic went on (${after.length} requests after the reload)`);
  assert.deepEqual(new Set(after.map((x) => x.backend)), new Set(['b', 'c']), 'nothing new reaches the removed backend');

  const status = r.d.status().services[0]!;
  assert.deepEqual(status.backends.map((b) => b.id), ['b', 'c']);
  // The same reload again changes nothing.
  const again = await post(`${r.api}/actions/reload`);
  assert.deepEqual(again.body.applied, []);
});

test('reload: a bad file changes nothing and answers 400 with every issue and its path', { timeout: 20_000 }, async (t) => {
  const r = await rig(t, ['a', 'b'], (b) => yaml('127.0.0.1:0', [b['a']!]));
  const shape = () => JSON.stringify(r.d.status().services.map((s) => ({ ...s, backends: s.backends.map(({ id, address, weight }) => ({ id, address, weight })) })));
  const before = shape();
  r.file.text = `services:
  - name: web
    protocol: http
    listen: "8080"
    balancer: fastest
    backends:
      - { id: b, address: "127.0.0.1:${r.backends['b']!.address.port}" }
`;
  const res = await post(`${r.api}/actions/reload`);
  assert.equal(res.status, 400);
  assert.equal(res.body.error, 'invalid configuration: nothing changed');
  assert.deepEqual(
    (res.body.issues as { path: string }[]).map((i) => i.path).sort(),
    ['services[0].balancer', 'services[0].listen'],
  );
  const outcome = await r.d.reload(parseConfig(yaml('127.0.0.1:0', [r.backends['a']!]), 'x'));
  assert.equal(outcome.type, 'applied');
  assert.equal(shape(), before);
  r.file.text = 'services: [';
  const syntax = await post(`${r.api}/actions/reload`);
  assert.equal(syntax.status, 400);
  assert.equal(syntax.body.issues[0].path, 'file');
});

test('reload: a changed listen address rebinds; a connection accepted on the old one keeps being served', { timeout: 20_000 }, async (t) => {
  const r = await rig(t, ['a'], (b) => yaml('127.0.0.1:0', [b['a']!]));
  const oldPort = r.d.serviceAddress('web').port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const first = await getVia(agent, `http://127.0.0.1:${oldPort}/`);

  const free = net.createServer();
  await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
  const newPort = (free.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => free.close(() => resolve()));

  r.file.text = yaml(`127.0.0.1:${newPort}`, [r.backends['a']!]);
  const res = await post(`${r.api}/actions/reload`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(res.body.applied, [{ service: 'web', added: [], removed: [], reweighted: [], listen: `127.0.0.1:${newPort}` }]);
  assert.equal(r.d.serviceAddress('web').port, newPort);
  assert.equal((await getVia(new http.Agent(), `http://127.0.0.1:${newPort}/`)).backend, 'a');
  const again = await getVia(agent, `http://127.0.0.1:${oldPort}/`);
  assert.equal(again.localPort, first.localPort, 'the same keep-alive connection still serves');
  await assert.rejects(getVia(new http.Agent(), `http://127.0.0.1:${oldPort}/`), /ECONNREFUSED/);

  // A listen address that cannot be bound: reported, and the service stays where it is.
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const taken = (blocker.address() as net.AddressInfo).port;
  r.file.text = yaml(`127.0.0.1:${taken}`, [r.backends['a']!]);
  const refused = await post(`${r.api}/actions/reload`);
  assert.equal(refused.status, 200);
  assert.equal(refused.body.errors[0].path, 'services[0].listen');
  assert.equal(r.d.serviceAddress('web').port, newPort);
  assert.equal((await getVia(new http.Agent(), `http://127.0.0.1:${newPort}/`)).backend, 'a');
});

test('reload: weights, balancer, detector and admission change live; other differences are named as needing a restart', { timeout: 20_000 }, async (t) => {
  const r = await rig(t, ['a', 'b'], (b) => yaml('127.0.0.1:0', [b['a']!, b['b']!], '    admission: { enabled: true }\n'));
  const [a, b] = [r.backends['a']!, r.backends['b']!];
  r.file.text = `logging: { level: silent }
admin: { listen: 127.0.0.1:0 }
services:
  - name: web
    protocol: http
    listen: 127.0.0.1:0
    balancer: weighted-round-robin
    http: { maxHeaderBytes: 4096 }
    health: { detector: { type: pull, intervalMs: 500 }, probe: { type: http, path: /health } }
    admission: { enabled: true, t1: 0.5 }
    backends:
      - { id: a, address: "127.0.0.1:${a.address.port}", weight: 3 }
      - { id: b, address: "127.0.0.1:${b.address.port}" }
`;
  const res = await post(`${r.api}/actions/reload`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(res.body.applied, [
    { service: 'web', added: [], removed: [], reweighted: [{ id: 'a', weight: 3 }], balancer: 'weighted-round-robin', health: true, admission: true },
  ]);
  assert.deepEqual(res.body.restartRequired.map((x: { path: string }) => x.path), ['services[0].http']);
  const s = r.d.status().services[0]!;
  assert.equal(s.balancer, 'weighted-round-robin');
  assert.deepEqual(s.backends.map((x) => x.weight), [3, 1]);
  const admission = (await (await fetch(`${r.api}/admission`)).json()) as { configured: { t1: number } }[];
  assert.equal(admission[0]!.configured.t1, 0.5);
  // Weighted 3:1 from now on.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const url = `http://127.0.0.1:${r.d.serviceAddress('web').port}/`;
  const seen: string[] = [];
  for (let i = 0; i < 8; i++) seen.push((await getVia(agent, url)).backend);
  assert.deepEqual([seen.filter((x) => x === 'a').length, seen.filter((x) => x === 'b').length], [6, 2]);
});

test('API: add and remove a backend (400 with paths, 404, 409), runtime only: a reload resets to the file', { timeout: 20_000 }, async (t) => {
  const r = await rig(t, ['a', 'b', 'c'], (b) => yaml('127.0.0.1:0', [b['a']!, b['b']!]));
  const [a, b, c] = ['a', 'b', 'c'].map((id) => r.backends[id]!) as [DemoBackend, DemoBackend, DemoBackend];

  const bad = await post(`${r.api}/services/web/backends`, { id: 'c c', address: '9003', weight: -1, extra: 1 });
  assert.equal(bad.status, 400);
  assert.deepEqual((bad.body.issues as { path: string }[]).map((i) => i.path).sort(), ['body', 'body.address', 'body.id', 'body.weight']);
  assert.equal((await post(`${r.api}/services/nope/backends`, { id: 'c', address: '127.0.0.1:1' })).status, 404);
  const exists = await post(`${r.api}/services/web/backends`, { id: 'a', address: '127.0.0.1:1' });
  assert.equal(exists.status, 409);
  assert.match(exists.body.error, /already exists/);
  const agentless = await post(`${r.api}/services/web/backends`, { id: 'x', address: '127.0.0.1:1', agent: 7 });
  assert.equal(agentless.status, 400);
  assert.equal(agentless.body.issues[0].path, 'body.agent');

  const added = await post(`${r.api}/services/web/backends`, { id: 'c', address: `127.0.0.1:${c.address.port}`, weight: 2 });
  assert.equal(added.status, 200, JSON.stringify(added.body));
  assert.deepEqual([added.body.added, added.body.runtimeOnly, added.body.backend.weight], ['c', true, 2]);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const url = `http://127.0.0.1:${r.d.serviceAddress('web').port}/`;
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add((await getVia(agent, url)).backend);
  assert.deepEqual(seen, new Set(['a', 'b', 'c']));

  assert.equal((await post(`${r.api}/services/web/backends/zz`, undefined, 'DELETE')).status, 404);
  assert.equal((await post(`${r.api}/services/nope/backends/a`, undefined, 'DELETE')).status, 404);
  const removed = await post(`${r.api}/services/web/backends/a`, undefined, 'DELETE');
  assert.deepEqual(removed, { status: 200, body: { removed: 'a', runtimeOnly: true, draining: true } });
  assert.equal((await post(`${r.api}/services/web/backends/a`, undefined, 'DELETE')).status, 404, 'gone from the API');
  assert.equal((await fetch(`${r.api}/services/web/backends/a`)).status, 404);
  assert.equal((await post(`${r.api}/services/web/backends/b`, undefined, 'DELETE')).status, 200);
  const last = await post(`${r.api}/services/web/backends/c`, undefined, 'DELETE');
  assert.equal(last.status, 409);
  assert.match(last.body.error, /last backend/);
  for (let i = 0; i < 4; i++) assert.equal((await getVia(agent, url)).backend, 'c');

  // A removed id can come back: a new backend under the old name (a new slot, a fresh state).
  assert.equal((await post(`${r.api}/services/web/backends`, { id: 'a', address: `127.0.0.1:${a.address.port}` })).status, 200);
  assert.deepEqual(r.d.status().services[0]!.backends.map((x) => x.id), ['c', 'a']);

  // The file still says a and b: a reload puts the service back as the file says.
  const reset = await post(`${r.api}/actions/reload`);
  assert.equal(reset.status, 200);
  assert.deepEqual(reset.body.applied, [{ service: 'web', added: ['b'], removed: ['c'], reweighted: [] }]);
  assert.deepEqual(r.d.status().services[0]!.backends.map((x) => x.id), ['a', 'b']);
  void b;
});

test('a removed backend keeps its sessions until it fails; then they re-pin and the request fails over', { timeout: 20_000 }, async (t) => {
  const r = await rig(t, ['a', 'b'], (b) => yaml('127.0.0.1:0', [b['a']!, b['b']!], '    sessions: { header: X-Session-Id }\n'));
  const url = `http://127.0.0.1:${r.d.serviceAddress('web').port}/`;
  const inSession = async (key: string): Promise<string> => {
    const res = await fetch(url, { headers: { 'x-session-id': key } });
    assert.equal(res.status, 200);
    return ((await res.json()) as { backend: string }).backend;
  };
  // Two sessions, one on each backend (round-robin).
  const first = await inSession('s1');
  const second = await inSession('s2');
  assert.notEqual(first, second);
  const onA = first === 'a' ? 's1' : 's2';

  assert.equal((await post(`${r.api}/services/web/backends/a`, undefined, 'DELETE')).status, 200);
  for (let i = 0; i < 3; i++) assert.equal(await inSession(onA), 'a', 'its session stays on the removed backend');
  for (let i = 0; i < 3; i++) assert.equal(await inSession(`new-${i}`), 'b', 'new sessions avoid it');
  const sessions = (await (await fetch(`${r.api}/sessions?backend=a`)).json()) as { sessions: { key: string }[] };
  assert.deepEqual(sessions.sessions.map((s) => s.key), [onA]);

  // The removed backend dies: its session moves, the request is served by b, and a never returns.
  await r.backends['a']!.close();
  assert.equal(await inSession(onA), 'b');
  assert.equal(await inSession(onA), 'b');
  const left = (await (await fetch(`${r.api}/sessions?backend=a`)).json()) as { sessions: unknown[] };
  assert.deepEqual(left.sessions, []);
  assert.deepEqual(r.d.status().services[0]!.backends.map((x) => x.id), ['b']);
});
