/**
 * The admin API v1 over a real admin listener, with a model of its own (a real session table, drain
 * actions recorded): routes, 404/405, 400 with paths, 413, session paging and filters, recent events,
 * the OpenAPI document, the SSE stream (Last-Event-ID resumption, a slow client dropped).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { FakeClock } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import { SessionTable } from '../sessions/session-table.js';
import { startAdminServer } from './admin-server.js';
import { configIssue, createApiV1, type AdminAction, type AdminServiceModel } from './api-v1.js';
import { OPENAPI_DOCUMENT } from './api-openapi.js';
import { EventRing } from './events-ring.js';
import { serveEventStream } from './events-stream.js';
import { LoadSeries } from './load-series.js';
import { AdmissionSeries } from './admission-series.js';
import { createMetrics } from './metrics.js';
import type { StatusSnapshot } from './status.js';

function snapshot(): StatusSnapshot {
  return {
    version: '0.1.0',
    pid: 1,
    startedAt: 0,
    services: ['web', 'voip'].map((name, i) => ({
      name,
      protocol: i === 0 ? ('http' as const) : ('sip' as const),
      listen: `127.0.0.1:${8080 + i}`,
      balancer: 'round-robin',
      clusterLoad: 0,
      sessions: { active: 0, max: 100 },
      flows: { active: 0, max: 100 },
      backends: [
        { id: 'a', address: '127.0.0.1:9001', weight: 1, state: 'up' as const, since: 5, reason: 'probe ok', active: 0 },
        { id: 'b', address: '127.0.0.1:9002', weight: 1, state: 'up' as const, since: 5, reason: 'probe ok', active: 0 },
      ],
    })),
    groups: [],
  };
}

async function start(t: TestContext, actions?: Map<string, AdminAction>) {
  const clock = new FakeClock();
  const tables = ['web', 'voip'].map((service) => new SessionTable({ service, maxSessions: 100, timeoutMs: 60_000, clock }));
  const calls: string[] = [];
  const models: AdminServiceModel[] = tables.map((table, i) => ({
    name: i === 0 ? 'web' : 'voip',
    protocol: i === 0 ? 'http' : 'sip',
    table,
    admission: { enabled: i === 0, t1: 0.6, t2: 0.75, t3: 0.85, c: 0.95 },
    backendId: (n) => ['a', 'b'][n],
    drain: (id, reason) => (['a', 'b'].includes(id) ? (calls.push(`drain ${id} ${reason ?? '-'}`), true) : null),
    undrain: (id) => (['a', 'b'].includes(id) ? (calls.push(`undrain ${id}`), true) : null),
    addBackend: (b) => (calls.push(`add ${b.id}`), { type: 'conflict', message: 'rig' }),
    removeBackend: (id) => (calls.push(`remove ${id}`), 'unknown'),
    sessionFlows: () => [],
  }));
  const events = new EventRing(clock, 5).subscribe();
  const loads = new LoadSeries(clock);
  const admission = new AdmissionSeries();
  const metrics = createMetrics(snapshot);
  const api = createApiV1({ status: snapshot, services: models, events, loads, admission, clock, ...(actions ? { actions } : {}) });
  const server = await startAdminServer({ host: '127.0.0.1', port: 0 }, { status: snapshot, registry: metrics.registry, extra: api });
  t.after(async () => {
    await server.close();
    metrics.close();
    events.close();
    loads.close();
    admission.close();
  });
  return { base: `http://127.0.0.1:${server.address.port}`, tables, calls, events, loads, clock, port: server.address.port };
}

test('services, backends, groups: JSON views of the status; unknown service or backend is 404 with its path', async (t) => {
  const { base } = await start(t);
  const services = (await (await fetch(`${base}/api/v1/services`)).json()) as { name: string; backends: string[] }[];
  assert.deepEqual(services.map((s) => [s.name, s.backends]), [['web', ['a', 'b']], ['voip', ['a', 'b']]]);
  const backends = (await (await fetch(`${base}/api/v1/backends?service=voip`)).json()) as { service: string; id: string; history: unknown[] }[];
  assert.deepEqual(backends.map((b) => `${b.service}/${b.id}`), ['voip/a', 'voip/b']);
  assert.deepEqual(backends[0]!.history, []);
  const one = await fetch(`${base}/api/v1/services/web/backends/b`);
  assert.equal(((await one.json()) as { state: string }).state, 'up');
  assert.deepEqual(await (await fetch(`${base}/api/v1/groups`)).json(), []);
  assert.deepEqual(await (await fetch(`${base}/api/v1/replication`)).json(), { transports: [], replicators: [] });
  // Not replicated: no group to switch over.
  assert.equal((await fetch(`${base}/api/v1/groups/g/switchover`, { method: 'POST' })).status, 404);

  const missing = await fetch(`${base}/api/v1/services/nope/backends/a`);
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), { error: 'no such service', issues: [{ path: 'path.service', message: 'no service "nope"' }] });
  const noBackend = await fetch(`${base}/api/v1/services/web/backends/zz`);
  assert.equal(noBackend.status, 404);
  assert.equal(((await noBackend.json()) as { issues: { path: string }[] }).issues[0]!.path, 'path.backend');
  assert.equal((await fetch(`${base}/api/v1/no-such-route`)).status, 404);
  assert.equal((await fetch(`${base}/nothing-here`)).status, 404);
});

test('load history: each load sample of a backend is kept beside its forecast', async (t) => {
  const { base } = await start(t);
  channels.loadSample.publish({ service: 'web', backend: 'a', load: 0.5, forecast: 0.4, clusterLoad: 0.2 });
  channels.loadSample.publish({ service: 'web', backend: 'a', load: 0.6, forecast: 0.55, clusterLoad: 0.3 });
  const b = (await (await fetch(`${base}/api/v1/services/web/backends/a`)).json()) as { history: { load: number; forecast: number }[] };
  assert.deepEqual(b.history.map((p) => [p.load, p.forecast]), [[0.5, 0.4], [0.6, 0.55]]);
});

test('admission: the configured thresholds, the last SA2C decision and its recent samples', async (t) => {
  const { base } = await start(t);
  const sample = { service: 'web', dispatcher: 0.2, cluster: 0.7, load: 0.7, band: 't1-t2' as const, t2: 0.74, t3: 0.85, pNew: 0.66, pEstablished: 0, at: 5 };
  channels.admissionSample.publish(sample);
  type Admission = { service: string; configured: { enabled: boolean; t1: number }; band?: string; load?: number; t2?: number; history: unknown[] }[];
  const [web, voip] = (await (await fetch(`${base}/api/v1/admission`)).json()) as Admission;
  assert.deepEqual([web!.service, web!.configured.enabled, web!.configured.t1, web!.band, web!.load, web!.t2, web!.history.length], ['web', true, 0.6, 't1-t2', 0.7, 0.74, 1]);
  assert.deepEqual([voip!.service, voip!.band, voip!.history], ['voip', undefined, []]);
});

test('drain and undrain call the model; bad bodies are 400 with the path, wrong method 405, big bodies 413', async (t) => {
  const { base, calls, port } = await start(t);
  const drained = await fetch(`${base}/api/v1/services/web/backends/a/drain`, { method: 'POST', body: JSON.stringify({ reason: 'maintenance' }) });
  assert.equal(drained.status, 200);
  assert.equal(((await drained.json()) as { changed: boolean }).changed, true);
  assert.equal((await fetch(`${base}/api/v1/services/web/backends/b/undrain`, { method: 'POST' })).status, 200);
  assert.deepEqual(calls, ['drain a maintenance', 'undrain b']);

  const unknownBackend = await fetch(`${base}/api/v1/services/web/backends/zz/drain`, { method: 'POST' });
  assert.equal(unknownBackend.status, 404);

  const badField = await fetch(`${base}/api/v1/services/web/backends/a/drain`, { method: 'POST', body: JSON.stringify({ reason: 7, extra: 1 }) });
  assert.equal(badField.status, 400);
  const issues = ((await badField.json()) as { issues: { path: string }[] }).issues.map((i) => i.path).sort();
  assert.deepEqual(issues, ['body', 'body.reason']);
  const notJson = await fetch(`${base}/api/v1/services/web/backends/a/drain`, { method: 'POST', body: '{nope' });
  assert.equal(notJson.status, 400);
  assert.equal(((await notJson.json()) as { issues: { path: string }[] }).issues[0]!.path, 'body');

  const get = await fetch(`${base}/api/v1/services/web/backends/a/drain`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');

  const big = await fetch(`${base}/api/v1/services/web/backends/a/drain`, { method: 'POST', body: 'x'.repeat(65 * 1024) });
  assert.equal(big.status, 413);
  // A chunked body without a length is cut at the bound too.
  const sock = net.connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.write('POST /api/v1/services/web/backends/a/drain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
  const chunk = 'y'.repeat(16 * 1024);
  for (let i = 0; i < 5; i++) sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
  let reply = '';
  sock.on('data', (d: Buffer) => (reply += d.toString()));
  await once(sock, 'close');
  assert.match(reply, /^HTTP\/1\.1 413 /);
  assert.equal(calls.length, 2);
});

test('sessions: paged with limit and cursor over every service, filtered by service and backend; bad query is 400 with paths', async (t) => {
  const { base, tables } = await start(t);
  for (let i = 0; i < 5; i++) tables[0]!.open(`web-${i}`, i % 2);
  for (let i = 0; i < 3; i++) tables[1]!.open(`call-${i}`, 1);
  type Page = { sessions: { service: string; key: string; backend: string }[]; nextCursor: string | null };
  const keys: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page = (await (await fetch(`${base}/api/v1/sessions?limit=3${cursor ? `&cursor=${cursor}` : ''}`)).json()) as Page;
    keys.push(...page.sessions.map((s) => s.key));
    cursor = page.nextCursor;
    pages++;
  } while (cursor !== null);
  assert.deepEqual(keys, ['web-0', 'web-1', 'web-2', 'web-3', 'web-4', 'call-0', 'call-1', 'call-2']);
  assert.equal(pages, 3);

  const onB = (await (await fetch(`${base}/api/v1/sessions?service=web&backend=b`)).json()) as Page;
  assert.deepEqual(onB.sessions.map((s) => s.key), ['web-1', 'web-3']);
  assert.equal(onB.nextCursor, null);

  const sip = (await (await fetch(`${base}/api/v1/sessions?protocol=sip&limit=2`)).json()) as Page;
  assert.deepEqual(sip.sessions.map((s) => s.key), ['call-0', 'call-1']);
  const one = (await (await fetch(`${base}/api/v1/sessions?key=call-2`)).json()) as Page;
  assert.deepEqual(one.sessions.map((s) => [s.service, s.key, s.backend]), [['voip', 'call-2', 'b']]);
  assert.deepEqual(((await (await fetch(`${base}/api/v1/sessions?key=none&protocol=http`)).json()) as Page).sessions, []);

  const bad = await fetch(`${base}/api/v1/sessions?limit=0&cursor=zz&colour=red`);
  assert.equal(bad.status, 400);
  const paths = ((await bad.json()) as { issues: { path: string }[] }).issues.map((i) => i.path).sort();
  assert.deepEqual(paths, ['query', 'query.cursor', 'query.limit']);
  const badProtocol = await fetch(`${base}/api/v1/sessions?protocol=ftp`);
  assert.equal(((await badProtocol.json()) as { issues: { path: string }[] }).issues[0]!.path, 'query.protocol');
  assert.equal((await fetch(`${base}/api/v1/sessions?service=nope`)).status, 404);
});

test('recent events come from the bounded ring with increasing ids', async (t) => {
  const { base } = await start(t);
  for (let i = 0; i < 7; i++) channels.backendState.publish({ service: 'web', backend: 'a', from: 'up', to: 'down', reason: `r${i}`, at: i });
  type Recent = { lastId: number; events: { id: number; type: string; data: { reason: string } }[] };
  const all = (await (await fetch(`${base}/api/v1/events/recent`)).json()) as Recent;
  assert.equal(all.events.length, 5); // the ring holds 5 in this test
  const ids = all.events.map((e) => e.id);
  assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
  assert.equal(all.events.at(-1)!.data.reason, 'r6');
  assert.equal(all.events.at(-1)!.type, 'backend:state');
  const after = (await (await fetch(`${base}/api/v1/events/recent?after=${all.lastId - 2}&limit=1`)).json()) as Recent;
  assert.deepEqual(after.events.map((e) => e.id), [all.lastId]);
  assert.equal((await fetch(`${base}/api/v1/events/recent?after=-1`)).status, 400);
});

test('the OpenAPI document is served and names every route', async (t) => {
  const { base } = await start(t);
  const doc = (await (await fetch(`${base}/api/v1/openapi.json`)).json()) as typeof OPENAPI_DOCUMENT;
  assert.equal(doc.openapi, '3.0.3');
  for (const p of [
    '/api/v1/services',
    '/api/v1/services/{service}',
    '/api/v1/backends',
    '/api/v1/services/{service}/backends/{backend}',
    '/api/v1/services/{service}/backends/{backend}/drain',
    '/api/v1/services/{service}/backends/{backend}/undrain',
    '/api/v1/sessions',
    '/api/v1/groups',
    '/api/v1/admission',
    '/api/v1/groups/{group}/switchover',
    '/api/v1/replication',
    '/api/v1/events',
    '/api/v1/events/recent',
    '/api/v1/actions',
    '/api/v1/actions/{action}',
    '/api/v1/actions/reload',
    '/api/v1/services/{service}/backends',
  ]) {
    assert.ok(p in doc.paths, p);
  }
  assert.ok('delete' in doc.paths['/api/v1/services/{service}/backends/{backend}']);
});

test('configIssue: a configuration issue as an API issue with its path', () => {
  assert.deepEqual(configIssue('/etc/hf.yaml: services[0].listen: expected host:port, received "8080"'), {
    path: 'services[0].listen',
    message: 'expected host:port, received "8080"',
  });
  assert.deepEqual(configIssue('services[1].backends[0].id: duplicate backend id "a"'), { path: 'services[1].backends[0].id', message: 'duplicate backend id "a"' });
  assert.deepEqual(configIssue('/etc/hf.yaml: cannot read file (ENOENT)'), { path: 'file', message: '/etc/hf.yaml: cannot read file (ENOENT)' });
});

test('reload, add and remove on the rig: 404 without a file, the model answers mapped to 400 / 409 / 404', async (t) => {
  const { base, calls } = await start(t);
  assert.equal((await fetch(`${base}/api/v1/actions/reload`, { method: 'POST' })).status, 404);
  const added = await fetch(`${base}/api/v1/services/web/backends`, { method: 'POST', body: JSON.stringify({ id: 'c', address: '127.0.0.1:9003' }) });
  assert.equal(added.status, 409);
  const bad = await fetch(`${base}/api/v1/services/web/backends`, { method: 'POST', body: JSON.stringify({ id: 'c' }) });
  assert.equal(bad.status, 400);
  assert.deepEqual(((await bad.json()) as { issues: { path: string }[] }).issues.map((i) => i.path), ['body.address']);
  assert.equal((await fetch(`${base}/api/v1/services/web/backends/a`, { method: 'DELETE' })).status, 404);
  assert.equal((await fetch(`${base}/api/v1/services/web/backends/a`, { method: 'PUT' })).status, 405);
  assert.deepEqual(calls.filter((c) => c.startsWith('add') || c.startsWith('remove')), ['add c', 'remove a']);
});

test('extra actions are listed and run with their body; an unknown one is 404', async (t) => {
  const ran: unknown[] = [];
  const actions = new Map<string, AdminAction>([['poke', { description: 'poke it', run: async (body) => (ran.push(body), { poked: true }) }]]);
  const { base } = await start(t, actions);
  assert.deepEqual(await (await fetch(`${base}/api/v1/actions`)).json(), [{ name: 'poke', description: 'poke it' }]);
  const res = await fetch(`${base}/api/v1/actions/poke`, { method: 'POST', body: '{"x":1}' });
  assert.deepEqual(await res.json(), { poked: true });
  assert.deepEqual(ran, [{ x: 1 }]);
  assert.equal((await fetch(`${base}/api/v1/actions/nope`, { method: 'POST' })).status, 404);
});

/** Reads an SSE stream until `count` events (id lines) arrived. */
function readEvents(port: number, headers: Record<string, string>, count: number): Promise<{ ids: number[]; types: string[]; text: string; req: http.ClientRequest }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api/v1/events', headers, agent: false }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
        if (ids.length >= count) {
          resolve({ ids, types: [...text.matchAll(/^event: (.+)$/gm)].map((m) => m[1]!), text, req });
          req.destroy();
        }
      });
    });
    req.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
    });
  });
}

test('SSE: live events with ids; Last-Event-ID replays what the client missed from the ring', async (t) => {
  const { port, events } = await start(t);
  const first = readEvents(port, {}, 2);
  await new Promise((r) => setTimeout(r, 50));
  channels.failover.publish({ service: 'web', backend: 'a', to: 'b', strategy: 'replay', result: 'ok', bytesSent: 0, recoveryMs: 3.5 });
  channels.electionState.publish({ group: 'g', node: 2, type: 'master', epoch: 4, reason: 'master-down', master: 2 });
  const live = await first;
  assert.deepEqual(live.types, ['failover', 'election:state']);
  assert.match(live.text, /"recoveryMs":3\.5/);
  const [a, b] = live.ids as [number, number];
  assert.equal(b, a + 1);

  // Missed one: resumes after `a`, so gets `b` first.
  const resumed = await readEvents(port, { 'last-event-id': String(a) }, 1);
  assert.deepEqual(resumed.ids, [b]);
  // Too old for the ring (capacity 5 here): a gap is announced before what is left.
  for (let i = 0; i < 6; i++) events.push('load:monitor', { i });
  const gap = await readEvents(port, { 'last-event-id': String(a) }, 5);
  assert.match(gap.text, /^event: gap$/m);
  // An id the ring never gave (the dispatcher restarted with a fresh ring): a gap, then all it holds.
  const fresh = await readEvents(port, { 'last-event-id': String(events.lastId + 100) }, 5);
  assert.match(fresh.text, /^event: gap$/m);
  assert.equal(fresh.ids[0], events.firstId);
  const bad = await fetch(`http://127.0.0.1:${port}/api/v1/events`, { headers: { 'last-event-id': 'x' } });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { issues: { path: string }[] }).issues[0]!.path, 'header.last-event-id');
});

test('SSE: a client that does not read is dropped once its unsent output passes the bound', async (t) => {
  const clock = new FakeClock();
  const ring = new EventRing(clock, 10);
  let closedByServer = false;
  const server = http.createServer((req, res) => {
    res.on('close', () => (closedByServer = true));
    serveEventStream(req, res, ring, { maxBufferBytes: 64 * 1024 });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  const sock = net.connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.write('GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n');
  sock.pause(); // never reads
  const big = 'z'.repeat(16 * 1024);
  for (let i = 0; i < 2000 && !closedByServer; i++) {
    ring.push('failover', { big });
    if (i % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(closedByServer, true);
  sock.destroy();
});
