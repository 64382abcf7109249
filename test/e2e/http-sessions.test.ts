/**
 * @module End-to-end tests of HTTP virtual sessions (issue 5): a configured cookie (or header) pins a
 * client's session to one backend across connections; the reply that sets the cookie teaches the
 * dispatcher the pin; a failed backend's sessions are re-pinned (counted), a draining one keeps them;
 * an expired Set-Cookie ends the session; a full table serves extra sessions unpinned; malformed
 * Cookie fields name no session and break nothing.
 *
 * Backends are real node:http servers that behave like an application with a session cookie: on a
 * request without one they create a session and answer `Set-Cookie: JSESSIONID=<their id>-<random>;
 * Path=/`, so a test knows from a cookie's value which backend created it. Every request opens a new
 * client connection (`Connection: close`): a pin has to hold across connections. The dispatcher runs
 * in this process, so its diagnostics channels are subscribed to directly.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import diagnostics_channel from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDispatcher } from '../../src/dispatcher/dispatcher.js';
import type { SessionCloseEvent, SessionEvent, SessionRefuseEvent, SessionRepinEvent } from '../../src/core/diagnostics.js';
import { encodeAvailability, type AvailabilityFlag } from '../../src/wire/availability.js';
import { MessageType, seal } from '../../src/wire/envelope.js';
import { wireTimestamp } from '../../src/wire/timestamp.js';
import { connect, type Address, type RawResponse } from '../helpers/raw-client.js';
import { startHttpBackend, type HttpBackend } from '../helpers/scripted-backend.js';
import { startTestDispatcher, testConfig, type TestDispatcherOptions } from '../helpers/dispatcher.js';

const COOKIE = 'JSESSIONID';
/** Keeps a closed backend down for the whole test (probes every 10 s). */
const SLOW_PROBE: TestDispatcherOptions['health'] = { probe: { intervalMs: 10_000 } };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Application backends

interface AppOptions {
  /** Create a session (Set-Cookie) for a request without the cookie (default true). */
  setCookie?: boolean;
  /** A cookie value this backend did not create is replaced by a new session (an app without a shared store). */
  rotateUnknown?: boolean;
  /**
   * Replies are chunked (default: Content-Length). A GET's chunked reply is held until complete
   * (failover hold), so the cookie is learnt when the held reply is released rather than at its head.
   */
  chunked?: boolean;
}

interface App {
  readonly id: string;
  readonly http: HttpBackend;
  /** Session ids this backend created. */
  readonly created: Set<string>;
  /** Requests for /hang are never answered while true. */
  hang: boolean;
}

/** The test's own reading of a Cookie field (independent of the product's extractor). */
function cookieOf(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = new RegExp(`(?:^|;\\s*)${COOKIE}=([^;]*)`).exec(header);
  return m ? m[1]!.trim() : null;
}

async function startApp(t: TestContext, id: string, opts: AppOptions = {}): Promise<App> {
  const created = new Set<string>();
  const app: App = {
    id,
    created,
    hang: false,
    http: await startHttpBackend((req, res) => {
      if (req.url === '/hang' && app.hang) return;
      const headers: Record<string, string | string[]> = { 'content-type': 'text/plain', 'x-backend': id };
      const have = cookieOf(req.headers.cookie);
      if (req.url === '/logout') {
        headers['set-cookie'] = `${COOKIE}=; Max-Age=0; Path=/`;
      } else if (req.url === '/logout-expires') {
        headers['set-cookie'] = `${COOKIE}=deleted; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT`;
      } else if (req.url === '/adopt' && have !== null && have !== '') {
        // The application takes the client's value as its session id (a shared store, a restart).
        headers['set-cookie'] = `${COOKIE}=${have}; Path=/`;
      } else if (req.url === '/big-cookie') {
        headers['set-cookie'] = `${COOKIE}=${'v'.repeat(300)}; Path=/`;
      } else if (opts.setCookie !== false && (have === null || have === '' || (opts.rotateUnknown && !created.has(have)))) {
        const sid = `${id}-${randomBytes(6).toString('hex')}`;
        created.add(sid);
        headers['set-cookie'] = [`theme=dark; Path=/`, `${COOKIE}=${sid}; Path=/; HttpOnly`];
      }
      if (!opts.chunked) headers['content-length'] = String(Buffer.byteLength(id));
      res.writeHead(200, headers);
      res.end(id);
    }),
  };
  t.after(() => app.http.close());
  return app;
}

async function startApps(t: TestContext, opts: AppOptions = {}): Promise<App[]> {
  return [await startApp(t, 'b0', opts), await startApp(t, 'b1', opts), await startApp(t, 'b2', opts)];
}

// ---------------------------------------------------------------------------------------------
// Client and events

/** One request on a new connection; the backend's id is the body. */
async function get(at: Address, target = '/', fields: readonly string[] = []): Promise<RawResponse> {
  const c = await connect(at);
  try {
    c.write(`GET ${target} HTTP/1.1\r\nHost: test\r\n${fields.map((f) => `${f}\r\n`).join('')}Connection: close\r\n\r\n`);
    return await c.readResponse();
  } finally {
    c.destroy();
  }
}

/** The backend a request reached. */
async function hit(at: Address, target = '/', fields: readonly string[] = []): Promise<string> {
  const r = await get(at, target, fields);
  assert.equal(r.status, 200, `GET ${target}: ${r.status} ${r.body.toString()}`);
  return r.body.toString();
}

/** The session cookie a reply set, by the test's own reading of its Set-Cookie lines. */
function setCookie(r: RawResponse): string | null {
  for (const line of r.headers['set-cookie'] ?? []) {
    const m = new RegExp(`^${COOKIE}=([^;]*)`).exec(line);
    if (m) return m[1]!;
  }
  return null;
}

const withCookie = (sid: string): string[] => [`Cookie: lang=en; ${COOKIE}=${sid}; theme=dark`];

interface Events {
  open: SessionEvent[];
  close: SessionCloseEvent[];
  repin: SessionRepinEvent[];
  refuse: SessionRefuseEvent[];
}

/** Session events of service 'web' from now until the test ends. */
function sessionEvents(t: TestContext): Events {
  const ev: Events = { open: [], close: [], repin: [], refuse: [] };
  const sub = <T extends { service: string }>(name: string, into: T[]) => {
    const fn = (m: unknown) => {
      if ((m as T).service === 'web') into.push(m as T);
    };
    diagnostics_channel.subscribe(name, fn);
    t.after(() => diagnostics_channel.unsubscribe(name, fn));
  };
  sub('holdfast:session:open', ev.open);
  sub('holdfast:session:close', ev.close);
  sub('holdfast:session:repin', ev.repin);
  sub('holdfast:session:refuse', ev.refuse);
  return ev;
}

function count(ids: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const id of ids) out[id] = (out[id] ?? 0) + 1;
  return out;
}

// ---------------------------------------------------------------------------------------------

test('cookie pinning: every later request carrying the cookie reaches the backend that set it, on new connections; cookie-less requests go round-robin', async (t) => {
  const apps = await startApps(t);
  const ev = sessionEvents(t);
  const d = await startTestDispatcher(t, { backends: apps.map((a) => a.http.hostPort), sessions: { cookie: COOKIE } });
  for (const a of apps) await d.waitForState(a.id, 'up');

  const first = await get(d.address);
  assert.equal(first.status, 200);
  const owner = first.body.toString();
  const sid = setCookie(first);
  assert.ok(sid !== null && sid.startsWith(`${owner}-`), `the reply of ${owner} set ${sid}`);
  // The pin was learnt from the reply: one session, on the backend that answered.
  assert.deepEqual(ev.open, [{ service: 'web', backend: owner }]);

  const later: string[] = [];
  for (let i = 0; i < 20; i++) later.push(await hit(d.address, '/', withCookie(sid)));
  assert.deepEqual(count(later), { [owner]: 20 });
  // The cookie reached the application as the client sent it, and it did not have to create a session again.
  const seen = apps.find((a) => a.id === owner)!.http.requests.slice(-20);
  for (const r of seen) assert.equal(r.headers.cookie, `lang=en; ${COOKIE}=${sid}; theme=dark`);
  assert.equal(apps.find((a) => a.id === owner)!.created.size, 1);
  // The cookie on a second Cookie line (HTTP/1.1 clients may split them) names the same session.
  assert.equal(await hit(d.address, '/', ['Cookie: lang=en', `Cookie: ${COOKIE}=${sid}`]), owner);

  // Cookie-less requests are not pinned: round-robin over three backends, 30 → 10 each.
  const anonymous: string[] = [];
  for (let i = 0; i < 30; i++) anonymous.push(await hit(d.address));
  assert.deepEqual(count(anonymous), { b0: 10, b1: 10, b2: 10 });
  // Each of those replies created a session, learnt as its own pin: 1 + 30.
  const status = d.dispatcher.status().services[0]!.sessions;
  assert.equal(status.active, 31);
  assert.equal(ev.open.length, 31);
  assert.deepEqual(ev.repin, []);
});

test('header mode: X-Session-Id pins each named session to one backend; cookies the backends set are not learnt', async (t) => {
  const apps = await startApps(t);
  const ev = sessionEvents(t);
  const d = await startTestDispatcher(t, { backends: apps.map((a) => a.http.hostPort), sessions: { header: 'X-Session-Id' } });
  for (const a of apps) await d.waitForState(a.id, 'up');

  const owners = new Map<string, string>();
  for (const s of ['alpha', 'beta', 'gamma']) owners.set(s, await hit(d.address, '/', [`X-Session-Id: ${s}`]));
  // Three new sessions, opened on the round-robin's next three picks: three different backends.
  assert.equal(new Set(owners.values()).size, 3);
  for (let i = 0; i < 10; i++) {
    for (const [s, owner] of owners) {
      assert.equal(await hit(d.address, '/', [`X-Session-Id: ${s}`]), owner, `request ${i} of session ${s}`);
    }
  }
  // Field names are case-insensitive.
  assert.equal(await hit(d.address, '/', ['x-session-id: beta']), owners.get('beta'));
  assert.equal(d.dispatcher.status().services[0]!.sessions.active, 3);
  assert.equal(ev.open.length, 3);
  // Requests without the header are balanced as before.
  const anonymous: string[] = [];
  for (let i = 0; i < 6; i++) anonymous.push(await hit(d.address));
  assert.deepEqual(count(anonymous), { b0: 2, b1: 2, b2: 2 });
});

test('re-pin after backend failure: the pinned backend closes; the next request with the cookie succeeds elsewhere, later ones stay there, one re-pin counted', async (t) => {
  const apps = await startApps(t);
  const ev = sessionEvents(t);
  const d = await startTestDispatcher(t, { backends: apps.map((a) => a.http.hostPort), sessions: { cookie: COOKIE }, health: SLOW_PROBE });
  for (const a of apps) await d.waitForState(a.id, 'up');

  const first = await get(d.address);
  const owner = first.body.toString();
  const sid = setCookie(first)!;
  assert.equal(await hit(d.address, '/', withCookie(sid)), owner);

  await apps.find((a) => a.id === owner)!.http.close();
  const moved = await hit(d.address, '/', withCookie(sid));
  assert.notEqual(moved, owner);
  assert.equal(d.backend(owner).state, 'down');
  for (let i = 0; i < 10; i++) assert.equal(await hit(d.address, '/', withCookie(sid)), moved, `request ${i} after the re-pin`);
  assert.deepEqual(ev.repin, [{ service: 'web', from: owner, to: moved }]);
  assert.equal(d.dispatcher.status().services[0]!.sessions.active, 1);
});

test('a request of a pinned session that fails over (its backend times out, still up) re-pins the session to the backend that took over', async (t) => {
  const apps = await startApps(t);
  const ev = sessionEvents(t);
  const d = await startTestDispatcher(t, {
    backends: apps.map((a) => a.http.hostPort),
    sessions: { cookie: COOKIE },
    http: { responseTimeoutMs: 2000 },
  });
  for (const a of apps) await d.waitForState(a.id, 'up');

  const first = await get(d.address);
  const owner = first.body.toString();
  const sid = setCookie(first)!;
  apps.find((a) => a.id === owner)!.hang = true;
  const failovers: { result: string; backend: string | null; to: string | null }[] = [];
  const onFailover = (m: unknown) => failovers.push(m as (typeof failovers)[number]);
  diagnostics_channel.subscribe('holdfast:failover', onFailover);
  t.after(() => diagnostics_channel.unsubscribe('holdfast:failover', onFailover));

  const took = await hit(d.address, '/hang', withCookie(sid));
  assert.notEqual(took, owner);
  // A timeout does not mark the backend down: the session moved because its request did.
  assert.equal(d.backend(owner).state, 'up');
  assert.deepEqual(ev.repin, [{ service: 'web', from: owner, to: took }]);
  for (let i = 0; i < 10; i++) assert.equal(await hit(d.address, '/', withCookie(sid)), took, `request ${i} after the failover`);
  assert.equal(ev.repin.length, 1);
  assert.deepEqual(
    failovers.map((f) => [f.result, f.backend, f.to]),
    [['ok', owner, took]],
  );
});

test('an unknown cookie value opens no session (balanced as if cookie-less) until a backend sets it; Set-Cookie with Max-Age=0 or a past Expires ends the session', async (t) => {
  const apps = await startApps(t);
  const ev = sessionEvents(t);
  const d = await startTestDispatcher(t, { backends: apps.map((a) => a.http.hostPort), sessions: { cookie: COOKIE } });
  for (const a of apps) await d.waitForState(a.id, 'up');
  const active = () => d.dispatcher.status().services[0]!.sessions.active;

  // Values a client made up (the backends set no cookie for them): nothing is opened, nothing is
  // held, and their requests go round-robin like cookie-less ones: 30 → 10 each.
  const invented: string[] = [];
  for (let i = 0; i < 30; i++) invented.push(await hit(d.address, '/', withCookie(i % 2 === 0 ? 'made-up-1' : `made-up-${i}`)));
  assert.deepEqual(count(invented), { b0: 10, b1: 10, b2: 10 });
  assert.deepEqual(ev.open, []);
  assert.deepEqual(ev.refuse, []);
  assert.equal(active(), 0);

  // The application takes the value as its own (it restarted; its session store is shared): the
  // reply's Set-Cookie opens the session on the backend that sent it.
  const owner = await hit(d.address, '/adopt', withCookie('made-up-1'));
  assert.deepEqual(ev.open, [{ service: 'web', backend: owner }]);
  for (let i = 0; i < 5; i++) assert.equal(await hit(d.address, '/', withCookie('made-up-1')), owner);
  assert.equal(active(), 1);

  // Logout: the reply deletes the cookie (RFC 6265 §5.2.2: Max-Age 0), so the session ends.
  const out = await get(d.address, '/logout', withCookie('made-up-1'));
  assert.equal(out.body.toString(), owner);
  assert.deepEqual(ev.close, [{ service: 'web', backend: owner, reason: 'ended' }]);
  assert.equal(active(), 0);
  // The value is unknown again: served, not reopened.
  await hit(d.address, '/', withCookie('made-up-1'));
  assert.equal(ev.open.length, 1);
  assert.equal(active(), 0);

  // The PHP way: a placeholder value with an Expires in the past ends the session the request named.
  const second = await get(d.address);
  const sid = setCookie(second)!;
  const again = second.body.toString();
  assert.equal(ev.open.length, 2);
  assert.equal(await hit(d.address, '/logout-expires', withCookie(sid)), again);
  assert.deepEqual(ev.close.at(-1), { service: 'web', backend: again, reason: 'ended' });
  assert.equal(active(), 0);
  assert.deepEqual(ev.repin, []);
});

test('header mode still opens a session for an unknown header value on first sight', async (t) => {
  const apps = await startApps(t, { setCookie: false });
  const ev = sessionEvents(t);
  const d = await startTestDispatcher(t, { backends: apps.map((a) => a.http.hostPort), sessions: { header: 'X-Session-Id' } });
  for (const a of apps) await d.waitForState(a.id, 'up');
  const owner = await hit(d.address, '/', ['X-Session-Id: client-named']);
  assert.deepEqual(ev.open, [{ service: 'web', backend: owner }]);
  for (let i = 0; i < 5; i++) assert.equal(await hit(d.address, '/', ['X-Session-Id: client-named']), owner);
  assert.equal(d.dispatcher.status().services[0]!.sessions.active, 1);
});

test('a rotated session id (the backend does not know the cookie and sets a new one) is learnt on the backend that set it, from a held reply', async (t) => {
  const apps = await startApps(t, { rotateUnknown: true, chunked: true });
  const ev = sessionEvents(t);
  const d = await startTestDispatcher(t, { backends: apps.map((a) => a.http.hostPort), sessions: { cookie: COOKIE } });
  for (const a of apps) await d.waitForState(a.id, 'up');

  const r = await get(d.address, '/', withCookie('stale-value'));
  const owner = r.body.toString();
  const fresh = setCookie(r);
  assert.ok(fresh !== null && fresh.startsWith(`${owner}-`));
  // One session: the new value learnt from the reply; the stale value the client sent opened none.
  assert.deepEqual(ev.open, [{ service: 'web', backend: owner }]);
  assert.equal(d.dispatcher.status().services[0]!.sessions.active, 1);
  for (let i = 0; i < 6; i++) assert.equal(await hit(d.address, '/', withCookie(fresh)), owner);
  // No other backend had to create a session for it.
  assert.deepEqual(
    apps.map((a) => a.created.size),
    apps.map((a) => (a.id === owner ? 1 : 0)),
  );
});

test('a full session table: extra sessions are served unpinned and refusals counted; pinned ones keep their backend', async (t) => {
  const apps = await startApps(t);
  const ev = sessionEvents(t);
  const d = await startTestDispatcher(t, { backends: apps.map((a) => a.http.hostPort), sessions: { cookie: COOKIE, maxSessions: 16 } });
  for (const a of apps) await d.waitForState(a.id, 'up');

  const sids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await get(d.address);
    assert.equal(r.status, 200);
    sids.push(setCookie(r)!);
  }
  assert.equal(d.dispatcher.status().services[0]!.sessions.active, 16);
  assert.equal(ev.open.length, 16);
  assert.deepEqual(ev.refuse, Array.from({ length: 4 }, () => ({ service: 'web', reason: 'sessions-full' })));

  // The 17th session has no pin: its requests go round the backends. Its value is unknown, so no
  // session is tried for it (only a backend's Set-Cookie opens one): no refusal. (Six requests: with
  // dispatcher workers, each worker's round-robin turns on its own.)
  const extra = sids[16]!;
  const spread: string[] = [];
  for (let i = 0; i < 6; i++) spread.push(await hit(d.address, '/', withCookie(extra)));
  assert.equal(new Set(spread).size, 3, `unpinned: ${spread.join(', ')}`);
  assert.equal(ev.refuse.length, 4);
  // Every pinned session still reaches the backend that created it (named in its value).
  for (const sid of sids.slice(0, 16)) assert.equal(await hit(d.address, '/', withCookie(sid)), sid.slice(0, 2));
});

test('malformed, oversized and repeated Cookie fields never break a request and name no session', async (t) => {
  const apps = await startApps(t, { setCookie: false });
  // 300 repeated Cookie fields: over the default http.maxHeaderCount (100), raised here.
  const d = await startTestDispatcher(t, { backends: apps.map((a) => a.http.hostPort), sessions: { cookie: COOKIE }, http: { maxHeaderCount: 400 } });
  for (const a of apps) await d.waitForState(a.id, 'up');
  const active = () => d.dispatcher.status().services[0]!.sessions.active;

  const cases: string[][] = [
    [`Cookie: ${COOKIE}`],
    [`Cookie: ;;;=;= ;${COOKIE} ; ${COOKIE}`],
    [`Cookie: =${COOKIE}=1`],
    [`Cookie: x${COOKIE}=1`],
    [`Cookie: ${COOKIE}=`],
    [`Cookie: ${COOKIE}=   `],
    [`Cookie:`],
    [`Cookie: ${COOKIE}=${'k'.repeat(257)}`],
    [`Cookie: ${COOKIE}=${'y'.repeat(15_000)}`],
    Array.from({ length: 300 }, (_, i) => `Cookie: c${i}=${i}`),
  ];
  for (const fields of cases) {
    const r = await get(d.address, '/', fields);
    assert.equal(r.status, 200, `${fields[0]!.slice(0, 40)}…: ${r.status}`);
  }
  assert.equal(active(), 0);
  // The oversized value reached the backend untouched.
  const all = apps.flatMap((a) => a.http.requests);
  assert.ok(all.some((r) => r.headers.cookie === `${COOKIE}=${'y'.repeat(15_000)}`));
  // A head over maxHeaderBytes is refused as before.
  const big = await get(d.address, '/', [`Cookie: ${COOKIE}=${'z'.repeat(20_000)}`]);
  assert.equal(big.status, 431);
  // A Set-Cookie value over the key bound is not learnt.
  await hit(d.address, '/big-cookie');
  assert.equal(active(), 0);
  // Still serving, and pinning (from the backend's Set-Cookie).
  const owner = await hit(d.address, '/adopt', withCookie('fine'));
  assert.equal(await hit(d.address, '/', withCookie('fine')), owner);
  assert.equal(active(), 1);
});

test('a draining backend (agent planned failure) keeps its pinned sessions and gets no new ones', async (t) => {
  const apps = await startApps(t);
  const ev = sessionEvents(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'holdfast-sessions-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const key = randomBytes(32);
  const keyFile = path.join(dir, 'cluster.key');
  writeFileSync(keyFile, key, { mode: 0o600 });

  // Push detection with a 30 s deadline (one heartbeat each is enough for this test), agents 1-3.
  const config = testConfig({
    backends: apps.map((a) => a.http.hostPort),
    sessions: { cookie: COOKIE },
    health: { detector: { type: 'push', intervalMs: 1000, n: 30 } },
  });
  config.cluster.keyFile = keyFile;
  config.monitor.listen = '127.0.0.1:0';
  config.services[0]!.backends.forEach((b, i) => (b.agent = i + 1));
  const dispatcher = await startDispatcher(config);
  t.after(() => dispatcher.close());
  const at = dispatcher.serviceAddress('web');
  const monitor = dispatcher.monitorAddress!;
  const state = (id: string) => dispatcher.status().services[0]!.backends.find((b) => b.id === id)!.state;
  const waitState = async (id: string, want: string) => {
    for (let waited = 0; state(id) !== want; waited += 20) {
      assert.ok(waited < 5000, `${id} is ${state(id)}, not ${want}`);
      await sleep(20);
    }
  };

  const udp = dgram.createSocket('udp4');
  t.after(() => udp.close());
  const announce = (host: number, seq: number, flag: AvailabilityFlag) =>
    new Promise<void>((resolve, reject) => {
      const msg = seal(MessageType.Availability, encodeAvailability({ host, seq, flag, timestamp: wireTimestamp(Date.now()) }), key);
      udp.send(msg, monitor.port, monitor.host, (err) => (err ? reject(err) : resolve()));
    });
  for (let host = 1; host <= 3; host++) await announce(host, 1, 'available');
  for (const a of apps) await waitState(a.id, 'up');

  const first = await get(at);
  const owner = first.body.toString();
  const sid = setCookie(first)!;
  await announce(Number(owner.slice(1)) + 1, 2, 'planned-failure');
  await waitState(owner, 'draining');

  // Planned failure: its sessions stay (established work finishes) ...
  for (let i = 0; i < 10; i++) assert.equal(await hit(at, '/', withCookie(sid)), owner, `request ${i} while draining`);
  // ... and it gets no new sessions, neither learnt from replies nor opened for unknown values.
  const others: string[] = [];
  for (let i = 0; i < 12; i++) others.push(await hit(at));
  assert.deepEqual(count(others), Object.fromEntries(apps.filter((a) => a.id !== owner).map((a) => [a.id, 6])));
  assert.notEqual(await hit(at, '/', withCookie('never-seen')), owner);
  assert.ok(ev.open.every((e, i) => i === 0 || e.backend !== owner));
  assert.deepEqual(ev.repin, []);
});
