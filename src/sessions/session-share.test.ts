/**
 * @module One session table for a primary and its workers (issue 16), in one process: an authority
 * and two mirrors over their own tables and routers, the messages carried by hand in order (as the
 * IPC channel would). The processes themselves: test/e2e/dispatcher-workers.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../balance/index.js';
import { createBalancer } from '../balance/balancer.js';
import { FakeClock } from '../core/clock.js';
import { Backend } from '../core/backend.js';
import { SessionRouter } from './session-router.js';
import { NO_SESSION, SessionTable } from './session-table.js';
import { SessionAuthority, SessionMirror, touchFlushMs, type SessionShareDown, type SessionShareUp } from './session-share.js';

/** One process's view: three backends behind round-robin, a session table, its router. */
function side(clock: FakeClock, timeoutMs = 1000, maxSessions = 64) {
  const backends = ['b0', 'b1', 'b2'].map((id, i) => {
    const b = new Backend('svc', id, '127.0.0.1', 8000 + i, 1, i);
    b.state = 'up';
    return b;
  });
  const balancer = createBalancer<Backend>('round-robin');
  const rebuild = () => balancer.update(backends.filter((b) => b.eligible));
  rebuild();
  const table = new SessionTable({ service: 'svc', maxSessions, timeoutMs, clock });
  const router = new SessionRouter('svc', table, backends, balancer);
  const down = (id: string) => {
    backends.find((b) => b.id === id)!.state = 'down';
    rebuild();
  };
  const pinOf = (key: string) => {
    const h = table.find(key);
    return h === NO_SESSION ? null : backends[table.backend(h)]!.id;
  };
  return { backends, table, router, down, pinOf };
}

/** A primary and two workers; `pump()` delivers the queued messages in order, both ways. */
function rig(timeoutMs = 1000) {
  const clock = new FakeClock();
  const primary = side(clock, timeoutMs);
  const authority = new SessionAuthority(primary.router, primary.backends, timeoutMs);
  const up: [number, SessionShareUp][] = [];
  const downs: SessionShareDown[][] = [[], []];
  authority.connect((m) => downs.forEach((q) => q.push(m)));
  const workers = [0, 1].map((i) => {
    const w = side(clock, 2 ** 50);
    const mirror = new SessionMirror(w.router, w.backends, (m) => up.push([i, m]), () => clock.now());
    return { ...w, mirror };
  });
  const pump = () => {
    while (up.length > 0 || downs.some((q) => q.length > 0)) {
      for (const [i, m] of up.splice(0)) {
        const answer = authority.handle(m);
        if (answer) downs[i]!.push(answer);
      }
      downs.forEach((q, i) => {
        for (const m of q.splice(0)) workers[i]!.mirror.apply(m);
      });
    }
  };
  return { clock, primary, authority, workers, pump, up };
}

test('a pin made in one worker reaches the primary and every other worker', () => {
  const { primary, workers, pump } = rig();
  const [w0, w1] = workers as [ReturnType<typeof rig>['workers'][0], ReturnType<typeof rig>['workers'][0]];
  w0.router.pin('sid-1', w0.backends[2]!);
  pump();
  assert.equal(primary.pinOf('sid-1'), 'b2');
  assert.equal(w1.pinOf('sid-1'), 'b2');
  assert.equal(w1.mirror.known('sid-1'), true);
});

test('a key the replica does not know is asked once; "none" is remembered until the key opens', () => {
  const { primary, workers, pump, up } = rig();
  const w1 = workers[1]!;
  primary.router.pin('sid-2', primary.backends[1]!);
  // Not pumped yet: worker 1 has not heard of it, and asks.
  assert.equal(w1.mirror.known('sid-2'), false);
  let answered = false;
  w1.mirror.lookup('sid-2', false, () => (answered = true));
  pump();
  assert.equal(answered, true);
  assert.equal(w1.pinOf('sid-2'), 'b1');
  w1.mirror.lookup('made-up', false, () => {});
  pump();
  assert.equal(w1.mirror.known('made-up'), true, 'remembered as not open');
  assert.equal(w1.pinOf('made-up'), null);
  workers[0]!.router.pin('made-up', workers[0]!.backends[0]!);
  pump();
  assert.equal(w1.pinOf('made-up'), 'b0', 'opened elsewhere: the worker learns it');
  assert.equal(up.length, 0);
});

test('header sessions: a lookup with open opens the session at the primary, once for every worker', () => {
  const { primary, workers, pump } = rig();
  workers[0]!.mirror.lookup('hdr', true, () => {});
  workers[1]!.mirror.lookup('hdr', true, () => {});
  pump();
  const at = primary.pinOf('hdr');
  assert.notEqual(at, null);
  assert.deepEqual([workers[0]!.pinOf('hdr'), workers[1]!.pinOf('hdr')], [at, at]);
});

test('the pinned backend fails: the worker that sees it and the primary move the session to the same backend, once', () => {
  const { primary, workers, pump } = rig();
  const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
  for (const k of keys) workers[0]!.router.pin(k, workers[0]!.backends[0]!);
  pump();
  // Worker 0 sees b0 refuse (passive, down at once here) and follows each session: a re-pin of its own.
  workers[0]!.down('b0');
  const moved = keys.map((k) => {
    const r = workers[0]!.router.follow(workers[0]!.table.find(k));
    return r.type === 'repinned' ? r.backend.id : r.type;
  });
  // The primary's monitor takes b0 down too, and moves what is pinned there (before or after the worker's word).
  primary.down('b0');
  primary.router.backendDown(primary.backends[0]!);
  pump();
  workers[1]!.down('b0');
  for (const [i, k] of keys.entries()) {
    const want = moved[i];
    assert.notEqual(want, 'b0');
    assert.deepEqual([primary.pinOf(k), workers[0]!.pinOf(k), workers[1]!.pinOf(k)], [want, want, want], `${k} moved to one place`);
  }
  assert.ok(new Set(moved).size === 2, `rendezvous spreads them over both survivors: ${moved.join(',')}`);
});

test('a late re-pin of a worker is corrected to the primary\'s pin', () => {
  const { primary, workers, pump } = rig();
  workers[0]!.router.pin('s', workers[0]!.backends[0]!);
  pump();
  primary.router.pin('s', primary.backends[1]!); // e.g. a failover in another worker, already applied
  workers[0]!.router.pin('s', workers[0]!.backends[2]!); // worker 0 had not heard yet: from b0 to b2
  pump();
  assert.equal(primary.pinOf('s'), 'b1');
  assert.equal(workers[0]!.pinOf('s'), 'b1', 'told where it is');
});

test('an expired cookie in one worker ends the session everywhere; idle sessions end in the primary only after the workers\' reports', () => {
  const { clock, primary, workers, pump } = rig(1000);
  workers[0]!.router.pin('gone', workers[0]!.backends[0]!);
  workers[0]!.router.pin('busy', workers[0]!.backends[1]!);
  workers[0]!.router.pin('idle', workers[0]!.backends[2]!);
  pump();
  const h = workers[0]!.table.find('gone');
  workers[0]!.router.close(h, 'ended');
  pump();
  assert.deepEqual([primary.pinOf('gone'), workers[1]!.pinOf('gone')], [null, null]);
  // 'busy' has traffic in worker 1 only; the primary hears of it in the worker's report.
  for (let t = 0; t < 8; t++) {
    clock.advance(250);
    workers[1]!.table.touch(workers[1]!.table.find('busy'));
    workers[1]!.mirror.flushTouches();
    pump();
    primary.table.sweep();
    pump();
  }
  assert.equal(primary.pinOf('busy'), 'b1', 'kept alive by the worker\'s traffic');
  assert.equal(primary.pinOf('idle'), null, 'idle past the timeout (and the report grace): ended');
  assert.deepEqual([workers[0]!.pinOf('idle'), workers[1]!.pinOf('idle')], [null, null], 'and ended in every replica');
  assert.equal(touchFlushMs(1000), 125);
});

test('a worker that starts gets the whole table, in slices', () => {
  const clock = new FakeClock();
  const primary = side(clock, 1000, 8192);
  const authority = new SessionAuthority(primary.router, primary.backends, 1000);
  for (let i = 0; i < 5000; i++) primary.router.pin(`s${i}`, primary.backends[i % 3]!);
  assert.equal(authority.snapshot().length, 2);
  const fresh = side(clock, 2 ** 50, 8192);
  const mirror = new SessionMirror(fresh.router, fresh.backends, () => {}, () => 0);
  for (const m of authority.snapshot()) mirror.apply(m);
  assert.equal(fresh.table.size, 5000);
  assert.equal(fresh.pinOf('s4999'), primary.pinOf('s4999'));
});
