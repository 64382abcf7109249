/**
 * Two dispatchers that share nothing, each with its own Maglev balancer and session table, route the
 * same keys and flows to the same backends, and re-pin a dead backend's sessions to the same
 * backends (issue 20: sessions across dispatchers).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../balance/index.js';
import { createBalancer } from '../balance/balancer.js';
import { ADMIT_ALL } from '../admission/admission-controller.js';
import { FakeClock } from '../core/clock.js';
import { Backend } from '../core/backend.js';
import { flowHash } from '../core/key-hash.js';
import { NO_FLOW } from '../sessions/flow-table.js';
import { SessionRouter } from '../sessions/session-router.js';
import { SessionTable } from '../sessions/session-table.js';
import { Router, type RouteDecision } from './router.js';

function dispatcher(balancerName = 'maglev') {
  const clock = new FakeClock();
  const backends = ['sip-a', 'sip-b', 'sip-c', 'sip-d'].map((id, i) => {
    const b = new Backend('svc', id, '127.0.0.1', 5060 + i, 1, i);
    b.state = 'up';
    return b;
  });
  const balancer = createBalancer<Backend>(balancerName, { maglevTableSize: 4099 });
  const rebuild = () => balancer.update(backends.filter((b) => b.eligible));
  rebuild();
  const table = new SessionTable({ service: 'svc', maxSessions: 10_000, timeoutMs: 60_000, clock });
  const sessions = new SessionRouter('svc', table, backends, balancer);
  const failures = { reportFailure: () => {}, reportSuccess: () => {} };
  const router = new Router({ backends, balancer, sessions, admission: ADMIT_ALL, failures, flows: { session: () => -1 } });
  const down = (id: string) => {
    const b = backends.find((x) => x.id === id)!;
    b.state = 'down';
    rebuild();
    sessions.backendDown(b);
  };
  return { router, backends, down, table };
}

const idOf = (d: RouteDecision): string => (d.type === 'forward' ? d.backend.id : `(${d.type})`);
const callIds = Array.from({ length: 300 }, (_, i) => `${i}a84b4c76e66710@pc33.atlanta.com`);

test('maglev: two dispatchers open the same Call-IDs on the same backends, and re-pin them alike', () => {
  const one = dispatcher();
  const two = dispatcher();
  assert.equal(one.router.hashesKeys, true);
  const first = callIds.map((k) => idOf(one.router.route(NO_FLOW, { via: 'key', key: k, open: true })));
  const second = callIds.map((k) => idOf(two.router.route(NO_FLOW, { via: 'key', key: k, open: true })));
  assert.deepEqual(second, first);
  assert.equal(new Set(first).size, 4, 'every backend got calls');
  // sip-b dies: both move its calls, to the same backends, and no other call moves.
  one.down('sip-b');
  two.down('sip-b');
  const after1 = callIds.map((k) => idOf(one.router.route(NO_FLOW, { via: 'key', key: k, open: true })));
  const after2 = callIds.map((k) => idOf(two.router.route(NO_FLOW, { via: 'key', key: k, open: true })));
  assert.deepEqual(after2, after1);
  for (let i = 0; i < callIds.length; i++) {
    assert.notEqual(after1[i], 'sip-b');
    if (first[i] !== 'sip-b') assert.equal(after1[i], first[i], 'a call on a live backend moved');
  }
  // A third dispatcher that never saw the calls (the one ECMP now sends them to) agrees on every
  // call of the dead backend. The few calls whose table slot changed owner between live backends
  // (Maglev is near-minimal: §3.4) keep their pin where it exists and map anew where it does not.
  const three = dispatcher();
  three.down('sip-b');
  const fresh = callIds.map((k) => idOf(three.router.route(NO_FLOW, { via: 'key', key: k, open: true })));
  let differ = 0;
  for (let i = 0; i < callIds.length; i++) {
    if (first[i] === 'sip-b') assert.equal(fresh[i], after1[i], 'a re-pinned call maps elsewhere on a fresh dispatcher');
    else if (fresh[i] !== after1[i]) differ++;
  }
  assert.ok(differ / callIds.length < 0.03, `${differ} of ${callIds.length} calls map differently on a dispatcher without their pin`);
});

test('maglev: a new flow with no key is placed by its client address and port, alike on every dispatcher', () => {
  const one = dispatcher();
  const two = dispatcher();
  const flows = Array.from({ length: 100 }, (_, i) => flowHash(`10.0.${i >> 4}.${i & 15}`, 40000 + i));
  const a = flows.map((hash) => idOf(one.router.route(NO_FLOW, { via: 'key', key: null, open: true, hash })));
  const b = flows.map((hash) => idOf(two.router.route(NO_FLOW, { via: 'balancer', hash })));
  assert.deepEqual(b, a);
});

test('maglev: a unit that must avoid its backend gets the same second choice on every dispatcher', () => {
  const one = dispatcher();
  const two = dispatcher();
  for (const k of callIds.slice(0, 50)) {
    const hash = flowHash(k, 5060);
    const at = one.router.route(NO_FLOW, { via: 'balancer', hash });
    assert.equal(at.type, 'forward');
    if (at.type !== 'forward') continue;
    const avoid1 = at.backend;
    const avoid2 = two.backends.find((b) => b.id === avoid1.id)!;
    const r1 = one.router.route(NO_FLOW, { via: 'balancer', hash, avoid: avoid1 });
    const r2 = two.router.route(NO_FLOW, { via: 'balancer', hash, avoid: avoid2 });
    assert.notEqual(idOf(r1), avoid1.id);
    assert.equal(idOf(r1), idOf(r2));
  }
});

test('round-robin ignores hashes: the router says so, and hints with one still work', () => {
  const one = dispatcher('round-robin');
  assert.equal(one.router.hashesKeys, false);
  const seen = new Set(Array.from({ length: 8 }, () => idOf(one.router.route(NO_FLOW, { via: 'balancer', hash: 7 }))));
  assert.equal(seen.size, 4);
});
