import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import '../balance/index.js';
import { createBalancer } from '../balance/balancer.js';
import { FakeClock } from '../core/clock.js';
import { channels, type SessionRefuseEvent, type SessionRepinEvent } from '../core/diagnostics.js';
import { Backend } from '../core/backend.js';
import { SessionRouter, type SessionChange } from './session-router.js';
import { SessionTable } from './session-table.js';

/** Three backends up behind round-robin, a table of `max` sessions with a 1 s idle timeout. */
function rig(max = 16) {
  const clock = new FakeClock();
  const backends = ['b0', 'b1', 'b2'].map((id, i) => {
    const b = new Backend('svc', id, '127.0.0.1', 5060 + i, 1, i);
    b.state = 'up';
    return b;
  });
  const balancer = createBalancer<Backend>('round-robin');
  const rebuild = () => balancer.update(backends.filter((b) => b.eligible));
  rebuild();
  const table = new SessionTable({ service: 'svc', maxSessions: max, timeoutMs: 1000, clock });
  const router = new SessionRouter('svc', table, backends, balancer);
  const changes: SessionChange[] = [];
  router.onChange((c) => changes.push(c));
  return { clock, backends, rebuild, table, router, changes };
}

function listen<T>(t: import('node:test').TestContext, channel: diagnostics_channel.Channel): T[] {
  const seen: T[] = [];
  const fn = (m: unknown) => seen.push(m as T);
  diagnostics_channel.subscribe(channel.name, fn);
  t.after(() => diagnostics_channel.unsubscribe(channel.name, fn));
  return seen;
}

test('the first unit of work opens a session on the balancer choice; later ones follow the pin', () => {
  const { router } = rig();
  const a = router.route('call-a');
  const b = router.route('call-b');
  assert.equal(a.type, 'opened');
  assert.equal(b.type, 'opened');
  if (a.type !== 'opened' || b.type !== 'opened') return;
  assert.deepEqual([a.backend.id, b.backend.id], ['b0', 'b1'], 'round-robin for new sessions');
  for (let i = 0; i < 5; i++) {
    const again = router.route('call-a');
    assert.equal(again.type, 'pinned');
    if (again.type === 'pinned') assert.equal(again.backend.id, 'b0');
  }
  assert.deepEqual(router.route('unknown', false), { type: 'refused', reason: 'no-backend' }, 'open=false never opens');
});

test('a draining backend keeps its sessions and gets no new ones; a down backend loses them (re-pin, counted)', (t) => {
  const { router, backends, rebuild, changes } = rig();
  const repins = listen<SessionRepinEvent>(t, channels.sessionRepin);
  router.route('on-b0');
  router.route('on-b1');
  backends[0]!.state = 'draining';
  rebuild();
  const kept = router.route('on-b0');
  assert.equal(kept.type, 'pinned');
  if (kept.type === 'pinned') assert.equal(kept.backend.id, 'b0');
  const fresh = router.route('new-one');
  assert.ok(fresh.type === 'opened' && fresh.backend.id !== 'b0', 'no new session on a draining backend');

  backends[1]!.state = 'down';
  rebuild();
  const moved = router.route('on-b1');
  assert.equal(moved.type, 'repinned');
  if (moved.type === 'repinned') {
    assert.equal(moved.from.id, 'b1');
    assert.equal(moved.backend.id, 'b2', 'the only eligible backend left');
  }
  assert.deepEqual(repins, [{ service: 'svc', from: 'b1', to: 'b2' }]);
  assert.deepEqual(
    changes.filter((c) => c.type === 'repin').map((c) => c.type === 'repin' && [c.from?.id, c.to.id]),
    [['b1', 'b2']],
  );
});

test('backendDown moves every session of the backend at once; with nothing eligible the pin stays (counted, to null)', (t) => {
  const { router, backends, rebuild, table } = rig();
  const repins = listen<SessionRepinEvent>(t, channels.sessionRepin);
  for (let i = 0; i < 6; i++) router.route(`s${i}`); // b0 b1 b2 b0 b1 b2
  backends[0]!.state = 'down';
  rebuild();
  assert.equal(router.backendDown(backends[0]!), 2);
  assert.deepEqual(table.pinnedTo(0), []);
  assert.equal(repins.length, 2);

  for (const b of backends) b.state = 'down';
  rebuild();
  assert.equal(router.backendDown(backends[1]!), 0, 'nowhere to go');
  assert.equal(table.pinnedTo(1).length, 3, 'the pins stay for a later retry');
  assert.ok(repins.slice(2).every((e) => e.to === null));
  assert.deepEqual(router.route('s1'), { type: 'refused', reason: 'no-backend' });
});

test('a full table refuses new sessions (counted) and serves the open ones; a closed handle is refused without an event', (t) => {
  const { router, table, changes } = rig(16);
  const refused = listen<SessionRefuseEvent>(t, channels.sessionRefuse);
  for (let i = 0; i < 16; i++) assert.equal(router.route(`k${i}`).type, 'opened');
  assert.deepEqual(router.route('k16'), { type: 'refused', reason: 'sessions-full' });
  assert.deepEqual(refused, [{ service: 'svc', reason: 'sessions-full' }]);
  assert.equal(router.route('k3').type, 'pinned');
  const h = table.find('k3');
  router.close(h, 'ended');
  assert.deepEqual(router.follow(h), { type: 'refused', reason: 'closed' });
  assert.equal(refused.length, 1, 'a stale handle is the caller\'s business, not a refusal');
  assert.deepEqual(changes.at(-1), { type: 'close', session: h, reason: 'ended', key: 'k3' });
  assert.equal(router.route('k16').type, 'opened', 'room again');
});

test('pin() opens a key on a given backend, or moves it there (a re-pin)', () => {
  const { router, backends } = rig();
  const opened = router.pin('cookie', backends[2]!);
  assert.ok(opened.type === 'opened' && opened.backend.id === 'b2');
  assert.equal(router.pin('cookie', backends[2]!).type, 'pinned');
  const moved = router.pin('cookie', backends[1]!);
  assert.ok(moved.type === 'repinned' && moved.from.id === 'b2' && moved.backend.id === 'b1');
  const next = router.route('cookie');
  assert.ok(next.type === 'pinned' && next.backend.id === 'b1');
});
