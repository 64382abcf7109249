import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../../bench/lib/prng.js';
import { FakeClock } from '../core/clock.js';
import { NO_SESSION, SESSION_INITIAL_SLOTS, SessionTable, type SessionEndReason, type SessionHandle } from './session-table.js';

function table(maxSessions: number, timeoutMs = 1000): { sessions: SessionTable; clock: FakeClock } {
  const clock = new FakeClock(100);
  return { sessions: new SessionTable({ service: 't', maxSessions, timeoutMs, clock }), clock };
}

test('open, find, backend, key, repin; a key opens once', () => {
  const { sessions } = table(16);
  const a = sessions.open('call-a@host', 2);
  const anon = sessions.open(null, 0);
  assert.notEqual(a, NO_SESSION);
  assert.notEqual(anon, NO_SESSION);
  assert.notEqual(a, anon);
  assert.equal(sessions.size, 2);
  assert.equal(sessions.find('call-a@host'), a);
  assert.equal(sessions.find('call-b@host'), NO_SESSION);
  assert.deepEqual([sessions.backend(a), sessions.key(a), sessions.isOpen(a)], [2, 'call-a@host', true]);
  assert.deepEqual([sessions.backend(anon), sessions.key(anon)], [0, null]);
  assert.equal(sessions.open('call-a@host', 1), NO_SESSION);
  assert.equal(sessions.size, 2);
  sessions.repin(a, 5);
  assert.equal(sessions.backend(a), 5);
  assert.equal(sessions.find('call-a@host'), a);
});

test('a closed session\'s handle is stale for good, also after its slot is reused', () => {
  const { sessions } = table(16);
  const closes: [SessionHandle, SessionEndReason, number, boolean][] = [];
  sessions.onClose((h, reason, backend) => closes.push([h, reason, backend, sessions.isOpen(h)]));
  const old = sessions.open('k', 3);
  sessions.close(old, 'ended');
  assert.deepEqual(closes, [[old, 'ended', 3, false]]);
  assert.deepEqual([sessions.isOpen(old), sessions.backend(old), sessions.key(old), sessions.lastSeen(old), sessions.find('k'), sessions.size], [false, -1, null, -1, NO_SESSION, 0]);
  // The next open takes the same slot (free list) under a new generation.
  const reused = sessions.open('k', 1);
  assert.notEqual(reused, old);
  assert.equal(reused % 0x1000000, old % 0x1000000);
  sessions.repin(old, 9);
  sessions.close(old, 'removed');
  assert.deepEqual([sessions.isOpen(reused), sessions.backend(reused), sessions.find('k'), closes.length], [true, 1, reused, 1]);
  for (const bad of [NO_SESSION, 0, 7, 1.5, old + 1, Number.NaN, 2 ** 60]) assert.equal(sessions.isOpen(bad), false, String(bad));
});

test('a full table refuses, and opens again after a close', () => {
  const { sessions } = table(16);
  const hs: SessionHandle[] = [];
  for (let i = 0; i < 16; i++) hs.push(sessions.open(`s${i}`, i % 3));
  assert.ok(hs.every((h) => h !== NO_SESSION));
  assert.equal(new Set(hs).size, 16);
  assert.equal(sessions.open('s16', 0), NO_SESSION);
  assert.equal(sessions.open(null, 0), NO_SESSION);
  sessions.close(hs[7]!, 'ended');
  const h = sessions.open('s16', 0);
  assert.notEqual(h, NO_SESSION);
  assert.equal(sessions.open('s17', 0), NO_SESSION);
  assert.equal(sessions.capacity, 16);
  // 16 slots × (4 backend + 8 timestamp + 4 generation + 4 free link + 8 key pointer + 8 data pointer) bytes.
  assert.equal(sessions.bytes(), 16 * 36);
});

test('sweep closes sessions idle for exactly the timeout, not a millisecond before', () => {
  const { sessions, clock } = table(64, 1000);
  const closes: [SessionHandle, SessionEndReason, number][] = [];
  sessions.onClose((h, reason, backend) => closes.push([h, reason, backend]));
  const a = sessions.open('a', 1);
  const b = sessions.open('b', 2);
  clock.advance(500);
  sessions.touch(b);
  assert.equal(sessions.lastSeen(b), 600);
  clock.advance(499); // a idle 999
  assert.equal(sessions.sweep(), 0);
  clock.advance(1); // a idle 1000
  assert.equal(sessions.sweep(), 1);
  assert.deepEqual(closes, [[a, 'timeout', 1]]);
  clock.advance(499); // b idle 999
  assert.equal(sessions.sweep(), 0);
  clock.advance(1);
  assert.equal(sessions.sweep(), 1);
  assert.deepEqual(closes[1], [b, 'timeout', 2]);
  assert.equal(sessions.size, 0);
});

test('touchAhead: the session counts as seen that much later, never earlier than it already did', () => {
  const { sessions, clock } = table(64, 1000);
  assert.equal(sessions.timeoutMs, 1000);
  const a = sessions.open('a', 1);
  sessions.touchAhead(a, 500); // seen at 600: closes at 1600, not 1100
  assert.equal(sessions.lastSeen(a), 600);
  clock.advance(100);
  sessions.touchAhead(a, 100); // 300 < 600: kept
  assert.equal(sessions.lastSeen(a), 600);
  clock.advance(1399); // idle 999 from 600
  assert.equal(sessions.sweep(), 0);
  clock.advance(1);
  assert.equal(sessions.sweep(), 1);
  sessions.touchAhead(a, 100); // a stale handle: nothing
});

test('sweep visits at most `budget` slots per call, round robin', () => {
  const { sessions, clock } = table(64, 100);
  for (let i = 0; i < 10; i++) sessions.open(null, 0);
  clock.advance(100);
  assert.deepEqual([sessions.sweep(4), sessions.sweep(4), sessions.sweep(4), sessions.sweep(4)], [4, 4, 2, 0]);
});

test('pinnedTo lists exactly the open sessions of a backend', () => {
  const { sessions } = table(64);
  const on1 = [sessions.open('a', 1), sessions.open(null, 1), sessions.open('c', 1)];
  sessions.open('d', 2);
  const moved = sessions.open('e', 2);
  sessions.close(on1[1]!, 'ended');
  sessions.repin(moved, 1);
  assert.deepEqual(sessions.pinnedTo(1).sort(), [on1[0]!, on1[2]!, moved].sort());
  assert.deepEqual(sessions.pinnedTo(7), []);
});

test('grows lazily by doubling up to maxSessions; handles survive growth', () => {
  const { sessions } = table(5000);
  assert.equal(sessions.bytes(), 0);
  const first = sessions.open('first', 0);
  assert.equal(sessions.bytes(), SESSION_INITIAL_SLOTS * 36);
  const hs = [first];
  for (let i = 1; i < 5000; i++) hs.push(sessions.open(i % 2 ? `k${i}` : null, i % 7));
  assert.equal(sessions.open(null, 0), NO_SESSION);
  assert.equal(sessions.bytes(), 5000 * 36);
  hs.forEach((h, i) => {
    assert.equal(sessions.backend(h), i === 0 ? 0 : i % 7);
    if (i % 2) assert.equal(sessions.find(`k${i}`), h);
  });
  assert.throws(() => new SessionTable({ service: 't', maxSessions: 2 ** 24 + 1, timeoutMs: 1, clock: new FakeClock() }), RangeError);
});

test('randomized open/close/find against a Map model', () => {
  const rand = prng(7);
  const { sessions } = table(300);
  const model = new Map<string, { h: SessionHandle; backend: number }>();
  const stale: SessionHandle[] = [];
  for (let step = 0; step < 100_000; step++) {
    const key = `call-${Math.floor(rand() * 600)}`;
    const m = model.get(key);
    if (rand() < 0.5) {
      const backend = Math.floor(rand() * 4);
      const h = sessions.open(key, backend);
      if (m || model.size >= 300) assert.equal(h, NO_SESSION);
      else model.set(key, { h, backend });
    } else if (m) {
      sessions.close(m.h, 'ended');
      model.delete(key);
      stale.push(m.h);
    }
    assert.equal(sessions.size, model.size);
  }
  for (const [key, m] of model) {
    assert.equal(sessions.find(key), m.h);
    assert.equal(sessions.backend(m.h), m.backend);
  }
  const open = new Set([...model.values()].map((m) => m.h));
  for (const h of stale) {
    assert.equal(sessions.isOpen(h), false);
    assert.equal(open.has(h), false, 'a stale handle never names a later session');
  }
  assert.ok(stale.length > 10_000);
});

test('forEachFrom visits the open sessions in slot order, at most `max` per call, and resumes', () => {
  const { sessions } = table(64);
  const hs: SessionHandle[] = [];
  for (let i = 0; i < 10; i++) hs.push(sessions.open(`k${i}`, 0));
  sessions.close(hs[3]!, 'ended');
  const seen: SessionHandle[] = [];
  let from = 0;
  let calls = 0;
  do {
    from = sessions.forEachFrom(from, 4, (h) => seen.push(h));
    calls++;
  } while (from >= 0);
  assert.deepEqual(seen, hs.filter((_, i) => i !== 3));
  assert.equal(calls, 3, '9 open sessions, 4 per call');
  assert.equal(sessions.forEachFrom(0, 0, () => assert.fail('max 0 visits none')), 0);
});

test('reserve: room for n sessions at once (capped at maxSessions), never shrinking; handles survive', () => {
  const sessions = new SessionTable({ service: 's', maxSessions: 5000, timeoutMs: 1000, clock: new FakeClock() });
  const h = sessions.open('a', 1);
  sessions.setData(h, 'x');
  sessions.reserve(3000);
  assert.equal(sessions.bytes(), 3000 * 36);
  sessions.reserve(100);
  assert.equal(sessions.bytes(), 3000 * 36);
  sessions.reserve(1e9);
  assert.equal(sessions.bytes(), 5000 * 36);
  assert.equal(sessions.find('a'), h);
  assert.equal(sessions.backend(h), 1);
  assert.equal(sessions.data(h), 'x');
});
