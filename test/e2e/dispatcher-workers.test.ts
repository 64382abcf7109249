/**
 * @module End-to-end tests of `dispatcher.workers: 2` (issue 16): real worker processes (node:cluster)
 * forked by an in-process dispatcher (or by the `holdfast` CLI), real backends on loopback. Both
 * workers serve one listener; the primary's view of backend health reaches every worker (a drain) and
 * a worker's passive failure reaches the primary; metrics sum over the workers; a SIGKILLed worker is
 * replaced; close() and a SIGKILLed primary leave no worker behind; services that cannot be spread stay
 * in the primary; with replicated dispatchers, the VIP's service stays in the primary and moves with the
 * VIP. Which worker holds which backend connection is read from `ss -tnp` (iproute2).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import cluster from 'node:cluster';
import diagnostics_channel from 'node:diagnostics_channel';
import http from 'node:http';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import net, { type AddressInfo } from 'node:net';
import { configSchema } from '../../src/config/schema.js';
import { startDispatcher } from '../../src/dispatcher/dispatcher.js';
import type { HostPort } from '../../src/core/address.js';
import { haConfig, startHaDispatcher, type HaDispatcher } from '../../bench/lib/ha-cluster.js';
import { makeTempDir, removeTempDir } from '../../bench/lib/procs.js';
import { freeSipPort, freeSipPorts } from '../helpers/sipp.js';
import { newCluster, startBackend } from '../helpers/cluster-procs.js';
import { freePort } from '../../bench/lib/procs.js';

const HOLDFAST_BIN = fileURLToPath(new URL('../../../bin/holdfast.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Origin {
  readonly port: number;
  /** Requests it answered. */
  hits: number;
  close(): Promise<void>;
}

/** A keep-alive HTTP origin that answers its id (body and x-backend), on `port` (0: any). */
async function origin(t: TestContext, id: string, port = 0): Promise<Origin> {
  const sockets = new Set<import('node:net').Socket>();
  const o = { port: 0, hits: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    req.resume();
    o.hits++;
    res.writeHead(200, { 'content-length': Buffer.byteLength(id), 'x-backend': id });
    res.end(id);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  o.port = (server.address() as AddressInfo).port;
  let closed = false;
  o.close = async () => {
    if (closed) return;
    closed = true;
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.after(() => o.close());
  return o;
}

/** One GET on its own connection: status and x-backend. */
function get(at: HostPort, pathname = '/'): Promise<{ status: number; backend: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: at.host, port: at.port, path: pathname, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, backend: String(res.headers['x-backend'] ?? '') }));
    });
    req.on('error', reject);
  });
}

/** Pids holding established TCP connections to 127.0.0.1:port (ss -tnp). */
function pidsConnectedTo(port: number): Set<number> {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
  return new Set([...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(20);
  }
}

function twoWorkers(backends: readonly Origin[], extraServices: object[] = []) {
  return configSchema.parse({
    version: 1,
    logging: { level: 'silent' },
    admin: { enabled: true, listen: '127.0.0.1:0' },
    dispatcher: { workers: 2 },
    services: [
      {
        name: 'web',
        protocol: 'http',
        listen: '127.0.0.1:0',
        backends: backends.map((b, i) => ({ id: `b${i}`, address: `127.0.0.1:${b.port}` })),
      },
      ...extraServices,
    ],
  });
}

async function start(t: TestContext, config: ReturnType<typeof twoWorkers>) {
  const d = await startDispatcher(config, { closeGraceMs: 1000 });
  t.after(() => d.close());
  return d;
}

test('two workers share one listener, each with its own backend connections; metrics sum over them', { timeout: 60_000 }, async (t) => {
  const b0 = await origin(t, 'b0');
  const pinned = await origin(t, 'pinned');
  const d = await start(
    t,
    twoWorkers([b0], [{ name: 'pins', protocol: 'http', listen: '127.0.0.1:0', balancer: 'least-loaded', backends: [{ id: 'p0', address: `127.0.0.1:${pinned.port}` }] }]),
  );
  const workers = d.status().workers!;
  assert.equal(workers.count, 2);
  assert.equal(workers.alive, 2);
  assert.deepEqual(workers.services, ['web'], 'the service whose balancer reads load vectors stays in the primary');
  assert.equal(workers.pids.filter((p) => p > 0 && p !== process.pid).length, 2);

  const web = d.serviceAddress('web');
  const replies = await Promise.all(Array.from({ length: 16 }, () => get(web)));
  assert.deepEqual(new Set(replies.map((r) => `${r.status} ${r.backend}`)), new Set(['200 b0']));
  // Round-robin hands connections to both workers; each keeps its own pooled connection to b0.
  const holders = pidsConnectedTo(b0.port);
  for (const pid of workers.pids) assert.ok(holders.has(pid), `worker ${pid} holds a connection to b0 (holders: ${[...holders]})`);
  assert.ok(!holders.has(process.pid), 'the primary forwards nothing of a spread service');

  // The service that cannot be spread is served by the primary.
  assert.deepEqual(await get(d.serviceAddress('pins')), { status: 200, backend: 'pinned' });

  const metrics = await (await fetch(`http://127.0.0.1:${d.adminAddress!.port}/metrics`)).text();
  const m = /^holdfast_http_requests_total\{service="web",backend="b0",code="2xx"\} (\d+)$/m.exec(metrics);
  assert.equal(Number(m?.[1]), 16, `requests of both workers summed: ${m?.[0]}`);
});

test('one view of health: the primary\'s drain reaches every worker, a worker\'s refused connect reaches the primary', { timeout: 60_000 }, async (t) => {
  const b0 = await origin(t, 'b0');
  const b1 = await origin(t, 'b1');
  const d = await start(t, twoWorkers([b0, b1]));
  const web = d.serviceAddress('web');
  const state = (id: string) => d.status().services[0]!.backends.find((b) => b.id === id)!;
  await until('both backends up', () => state('b0').state === 'up' && state('b1').state === 'up');

  // Drained by the operator on the primary: no worker sends b0 anything.
  const admin = `http://127.0.0.1:${d.adminAddress!.port}`;
  const drained = await fetch(`${admin}/api/v1/services/web/backends/b0/drain`, { method: 'POST' });
  assert.equal(drained.status, 200, await drained.text());
  await sleep(200);
  const before = b0.hits;
  const replies = await Promise.all(Array.from({ length: 16 }, () => get(web)));
  assert.deepEqual(new Set(replies.map((r) => `${r.status} ${r.backend}`)), new Set(['200 b1']));
  assert.equal(b0.hits, before, 'a drained backend gets nothing from any worker');
  assert.equal((await fetch(`${admin}/api/v1/services/web/backends/b0/undrain`, { method: 'POST' })).status, 200);
  await until('b0 back up', () => state('b0').state === 'up');

  // b0 dies: the worker whose connect is refused replays on b1 and tells the primary.
  const errors: { service: string; backend: string; kind: string }[] = [];
  const onError = (m: unknown) => errors.push(m as (typeof errors)[number]);
  diagnostics_channel.subscribe('holdfast:backend:error', onError);
  t.after(() => diagnostics_channel.unsubscribe('holdfast:backend:error', onError));
  await b0.close();
  const after = await Promise.all(Array.from({ length: 16 }, () => get(web)));
  assert.deepEqual(new Set(after.map((r) => r.status)), new Set([200]), 'every request answered (failover)');
  await until('the primary sees b0 down', () => state('b0').state === 'down');
  assert.match(state('b0').reason, /refused|reset|closed/);
  // The worker's backend-error events are published again in the primary, and counted once.
  await until('the backend error relayed', () => errors.some((e) => e.service === 'web' && e.backend === 'b0'));
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  const counted = [...metrics.matchAll(/^holdfast_backend_errors_total\{service="web",backend="b0",kind="[a-z]+"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  assert.equal(counted, errors.filter((e) => e.backend === 'b0').length, 'each relayed error counted once');

  // Back on the same port: the primary's probe brings it up, and every worker uses it again.
  const again = await origin(t, 'b0', b0.port);
  await until('b0 up again', () => state('b0').state === 'up');
  await sleep(200);
  await Promise.all(Array.from({ length: 16 }, () => get(web)));
  const holders = pidsConnectedTo(again.port);
  for (const pid of d.status().workers!.pids) assert.ok(holders.has(pid), `worker ${pid} routes to b0 again (holders: ${[...holders]})`);
});

test('a SIGKILLed worker is replaced and new connections are served; close() stops every worker', { timeout: 60_000 }, async (t) => {
  const b0 = await origin(t, 'b0');
  const d = await startDispatcher(twoWorkers([b0]), { closeGraceMs: 1000 });
  let closed = false;
  t.after(async () => {
    if (!closed) await d.close();
  });
  const web = d.serviceAddress('web');
  const [victim, other] = d.status().workers!.pids as [number, number];
  process.kill(victim, 'SIGKILL');
  await until('the worker replaced', () => d.status().workers!.restarts === 1 && d.status().workers!.alive === 2);
  const pids = d.status().workers!.pids;
  assert.ok(!pids.includes(victim) && pids.includes(other), `new pids ${pids}`);
  const replies = await Promise.all(Array.from({ length: 16 }, () => get(web)));
  assert.deepEqual(new Set(replies.map((r) => r.status)), new Set([200]));

  await d.close();
  closed = true;
  for (const pid of pids) assert.equal(alive(pid), false, `worker ${pid} stopped by close()`);
});

/** A keep-alive connection with one request answered (held open), or null when it was closed unanswered. */
function hold(at: HostPort): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const socket = net.connect(at.port, at.host);
    socket.on('error', () => {});
    socket.once('connect', () => socket.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n'));
    socket.once('data', () => resolve(socket));
    socket.once('close', () => resolve(null));
  });
}

/** Pids holding the accepted side of connections to the listener on `port`. */
function acceptedBy(port: number): number[] {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return [...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
}

test('per-address limits hold for the whole dispatcher: the primary counts every worker\'s connections and a SIGKILLed worker frees its slots', { timeout: 60_000 }, async (t) => {
  const b0 = await origin(t, 'b0');
  const config = twoWorkers([b0]);
  const d = await start(t, configSchema.parse({ ...config, services: [{ ...config.services[0]!, limits: { maxConnectionsPerAddress: 3 } }] }));
  const web = d.serviceAddress('web');
  const held: net.Socket[] = [];
  t.after(() => held.forEach((s) => s.destroy()));
  for (let i = 0; i < 3; i++) {
    const s = await hold(web);
    assert.ok(s, `connection ${i + 1} of 3 is served`);
    held.push(s);
  }
  const pids = d.status().workers!.pids;
  const holders = acceptedBy(web.port);
  assert.ok(pids.every((p) => holders.includes(p)), `both workers hold some of the three (${holders})`);
  assert.equal(await hold(web), null, 'a fourth connection from the address is closed, whichever worker took it');
  assert.equal(await hold(web), null, 'and a fifth');
  assert.equal(d.status().services[0]!.edge!.refused['too-many-connections'], 2, 'counted once, by the primary');

  // The worker holding two of them dies: its slots are free, the address gets two connections again.
  const victim = pids.find((p) => holders.filter((h) => h === p).length === 2)!;
  process.kill(victim, 'SIGKILL');
  await until('the worker replaced', () => d.status().workers!.alive === 2 && d.status().workers!.restarts === 1);
  const more: (net.Socket | null)[] = [];
  for (let i = 0; i < 3; i++) more.push(await hold(web));
  held.push(...more.filter((s): s is net.Socket => s !== null));
  assert.deepEqual(more.map((s) => s !== null), [true, true, false], 'two slots freed, the bound still three');
});

/** One GET on its own connection with headers: status and x-backend, and the Set-Cookie value if any. */
function getWith(at: HostPort, headers: Record<string, string>): Promise<{ status: number; backend: string; cookie: string | null }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: at.host, port: at.port, path: '/', agent: false, headers }, (res) => {
      res.resume();
      const set = res.headers['set-cookie']?.[0] ?? null;
      res.on('end', () => resolve({ status: res.statusCode ?? 0, backend: String(res.headers['x-backend'] ?? ''), cookie: set === null ? null : set.split(';')[0]!.split('=')[1]! }));
    });
    req.on('error', reject);
  });
}

function sessionConfig(backends: readonly { port: number }[], sessions: object) {
  return configSchema.parse({
    version: 1,
    logging: { level: 'silent' },
    admin: { enabled: false },
    dispatcher: { workers: 2 },
    services: [{ name: 'web', protocol: 'http', listen: '127.0.0.1:0', sessions, backends: backends.map((b, i) => ({ id: `b${i}`, address: `127.0.0.1:${b.port}` })) }],
  });
}

test('cookie sessions in workers: a session pinned by one worker is followed by the other, over new connections', { timeout: 60_000 }, async (t) => {
  let n = 0;
  const origins: { port: number; hits: number }[] = [];
  for (const id of ['b0', 'b1', 'b2']) {
    const o = { port: 0, hits: 0 };
    const server = http.createServer((req, res) => {
      req.resume();
      o.hits++;
      const cookie = /SID=([^;]+)/.exec(req.headers.cookie ?? '');
      res.writeHead(200, { 'x-backend': id, 'content-length': id.length, ...(cookie ? {} : { 'set-cookie': `SID=${id}-${++n}; Path=/` }) });
      res.end(id);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    o.port = (server.address() as AddressInfo).port;
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    server.on('connection', (c) => t.after(() => c.destroy()));
    origins.push(o);
  }
  const d = await start(t, sessionConfig(origins, { cookie: 'SID' }));
  assert.deepEqual(d.status().workers!.services, ['web'], 'the cookie-pinned service is spread');
  const web = d.serviceAddress('web');
  const sids: { sid: string; backend: string }[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await getWith(web, {});
    assert.equal(r.status, 200);
    sids.push({ sid: r.cookie!, backend: r.backend });
  }
  // Every later request of a session, each on a new connection (round-robin over both workers), reaches its backend.
  for (let round = 0; round < 4; round++) {
    for (const { sid, backend } of sids) assert.equal((await getWith(web, { cookie: `SID=${sid}` })).backend, backend, `${sid} stays on ${backend}`);
  }
  // Both workers served sessions of every backend: each holds a pooled connection to all three.
  for (const o of origins) {
    const holders = pidsConnectedTo(o.port);
    for (const pid of d.status().workers!.pids) assert.ok(holders.has(pid), `worker ${pid} reached the backend on ${o.port}`);
  }
  // The primary's table holds every session (the sessions API's view).
  assert.equal(d.status().services[0]!.sessions.active, 6);
});

test('header sessions in workers: SIGKILL of the pinned backend re-pins each session once for every worker; SIGKILL of a worker loses no pin', { timeout: 90_000 }, async (t) => {
  const c = newCluster(t);
  const backends = [];
  for (const id of ['b0', 'b1', 'b2']) backends.push(await startBackend(t, c, { id, port: await freePort() }));
  const d = await start(t, sessionConfig(backends, { header: 'X-Session' }));
  const web = d.serviceAddress('web');
  const state = (id: string) => d.status().services[0]!.backends.find((b) => b.id === id)!.state;
  await until('backends up', () => ['b0', 'b1', 'b2'].every((id) => state(id) === 'up'));
  const keys = Array.from({ length: 12 }, (_, i) => `user-${i}`);
  const pins = new Map<string, string>();
  for (const k of keys) pins.set(k, (await getWith(web, { 'x-session': k })).backend);
  for (const k of keys) assert.equal((await getWith(web, { 'x-session': k })).backend, pins.get(k));
  const victim = pins.get(keys[0]!)!;
  const onVictim = keys.filter((k) => pins.get(k) === victim);

  const repins: { from: string; to: string | null }[] = [];
  const onRepin = (m: unknown) => repins.push(m as (typeof repins)[number]);
  diagnostics_channel.subscribe('holdfast:session:repin', onRepin);
  t.after(() => diagnostics_channel.unsubscribe('holdfast:session:repin', onRepin));
  process.kill(backends.find((b) => b.id === victim)!.proc.pid, 'SIGKILL');
  // Each session of the dead backend, asked four times over new connections (both workers): one new backend, answered.
  const after = new Map<string, Set<string>>();
  for (let round = 0; round < 4; round++) {
    for (const k of onVictim) {
      const r = await getWith(web, { 'x-session': k });
      assert.equal(r.status, 200, `${k} answered after its backend died`);
      after.set(k, (after.get(k) ?? new Set()).add(r.backend));
    }
  }
  for (const k of onVictim) {
    const to = [...after.get(k)!];
    assert.equal(to.length, 1, `${k} moved once, to one backend for every worker: ${to}`);
    assert.notEqual(to[0], victim);
    pins.set(k, to[0]!);
  }
  await until('the primary sees the backend down', () => state(victim) === 'down');
  assert.equal(repins.filter((r) => r.from === victim).length, onVictim.length, 'one re-pin per session, counted once (in the primary)');

  // A worker dies: its replacement starts from the primary's table; no session moves.
  const [w0] = d.status().workers!.pids as [number];
  process.kill(w0, 'SIGKILL');
  await until('the worker replaced', () => d.status().workers!.alive === 2 && d.status().workers!.restarts === 1);
  for (let round = 0; round < 2; round++) {
    for (const k of keys) assert.equal((await getWith(web, { 'x-session': k })).backend, pins.get(k), `${k} keeps its pin`);
  }
  assert.equal(repins.length, onVictim.length, 'no re-pin from the worker\'s death');
});

test('holdfast dispatcher with workers: 2 — SIGKILL of the primary takes the workers with it', { timeout: 60_000 }, async (t) => {
  const b0 = await origin(t, 'b0');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'holdfast-workers-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = path.join(dir, 'holdfast.yaml');
  writeFileSync(
    cfg,
    [
      'logging: { level: info }',
      "admin: { enabled: true, listen: '127.0.0.1:0' }",
      'dispatcher: { workers: 2 }',
      'services:',
      "  - { name: web, protocol: http, listen: '127.0.0.1:0', backends: [{ id: b0, address: '127.0.0.1:" + b0.port + "' }] }",
      '',
    ].join('\n'),
  );
  const child = spawn(process.execPath, [HOLDFAST_BIN, 'dispatcher', '--config', cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  await until('listening', () => /holdfast dispatcher listening/.test(out), 30_000);
  const line = JSON.parse(out.split('\n').find((l) => l.includes('holdfast dispatcher listening'))!) as { services: { web: string }; admin: string };
  const [host, port] = line.services.web.split(':');
  assert.deepEqual(await get({ host: host!, port: Number(port) }), { status: 200, backend: 'b0' });
  const status = (await (await fetch(`http://${line.admin}/api/v1/status`)).json()) as { workers: { pids: number[] } };
  assert.equal(status.workers.pids.length, 2);
  child.kill('SIGKILL');
  for (const pid of status.workers.pids) await until(`worker ${pid} gone after the primary's SIGKILL`, () => !alive(pid), 10_000);
});

test('replicated dispatchers with workers: 2 — the VIP service stays in the primary and moves on SIGKILL of the master; the spread service is served by each one\'s workers', { timeout: 90_000 }, async (t) => {
  const b0 = await origin(t, 'b0');
  const vip = `127.${randomInt(64, 250)}.${randomInt(1, 250)}.${randomInt(2, 250)}`;
  const vipPort = await freeSipPort(vip);
  const election = await freeSipPorts(2);
  const dir = makeTempDir('holdfast-workers-ha');
  const key = randomBytes(32);
  const procs: HaDispatcher[] = [];
  t.after(async () => {
    await Promise.all(procs.map((p) => p.proc.stop()));
    removeTempDir(dir);
  });
  const backends = [{ id: 'b0', address: `127.0.0.1:${b0.port}` }];
  const vipService = { name: 'vipweb', protocol: 'http', listen: `${vip}:${vipPort}`, backends };
  const local = { name: 'local', protocol: 'http', listen: '127.0.0.1:0', backends };
  const start = async (id: number, priority: number): Promise<HaDispatcher> => {
    const config = haConfig({
      id,
      priority,
      listen: `127.0.0.1:${election[id - 1]}`,
      peers: [`127.0.0.1:${election[2 - id]}`],
      vip,
      services: [vipService],
      extra: { dispatcher: { id, workers: 2 }, services: [vipService, local] },
    });
    const d = await startHaDispatcher({ name: `d${id}`, id, dir, key, config });
    procs.push(d);
    return d;
  };
  const d1 = await start(1, 200);
  await d1.waitFor('taken', 0, 10_000);
  const d2 = await start(2, 100);
  await d2.waitFor('backup', 0, 10_000);

  const s1 = await d1.status();
  assert.deepEqual(s1.workers?.services, ['local'], 'the grouped service is not spread');
  assert.deepEqual(await get({ host: vip, port: vipPort }), { status: 200, backend: 'b0' });
  const localOf = (s: typeof s1): HostPort => {
    const [host, port] = s.services.find((x) => x.name === 'local')!.listen.split(':');
    return { host: host!, port: Number(port) };
  };
  assert.deepEqual(await get(localOf(s1)), { status: 200, backend: 'b0' });

  const from = d2.events.length;
  await d1.kill('SIGKILL');
  await d2.waitFor('taken', from, 10_000);
  await until('the VIP answers through the new master', async () => (await get({ host: vip, port: vipPort }).catch(() => null))?.status === 200, 10_000);
  for (const pid of s1.workers!.pids) await until(`d1's worker ${pid} gone`, () => !alive(pid), 10_000);
  const s2 = await d2.status();
  assert.equal(s2.workers?.alive, 2);
  assert.deepEqual(await get(localOf(s2)), { status: 200, backend: 'b0' });
});

test('a worker that cannot listen fails the start with its reason, and no worker is left behind', { timeout: 60_000 }, async (t) => {
  const b0 = await origin(t, 'b0');
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve));
  t.after(() => taken.close());
  const port = (taken.address() as AddressInfo).port;
  const config = twoWorkers([b0]);
  const busy = { ...config, services: [{ ...config.services[0]!, listen: `127.0.0.1:${port}` }] };
  const before = new Set(Object.keys(cluster.workers ?? {}));
  await assert.rejects(startDispatcher(busy), (err: Error) => {
    assert.match(err.message, /^dispatcher worker 0: /);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    return true;
  });
  await until('no worker of this dispatcher left', () => Object.keys(cluster.workers ?? {}).filter((id) => !before.has(id)).length === 0, 10_000);
});
