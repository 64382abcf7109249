import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageType } from './envelope.js';
import { REPLAY_BITMAP_SEQS, REPLAY_WINDOW_MS, ReplayGuard } from './replay-guard.js';

const A = MessageType.Availability;
const L = MessageType.LoadVector;
const NOW = 1_700_000_000_000;

test('defaults: 5000 ms window, 64 seqs', () => {
  assert.equal(REPLAY_WINDOW_MS, 5000);
  assert.equal(REPLAY_BITMAP_SEQS, 64);
});

test('in order: every new seq is ok', () => {
  const g = new ReplayGuard();
  for (let seq = 0; seq < 300; seq++) assert.equal(g.check(1, A, seq, NOW + seq, NOW + seq), 'ok', `seq ${seq}`);
});

test('a duplicate is replay, whether it is the newest or an older seq', () => {
  const g = new ReplayGuard();
  assert.equal(g.check(1, A, 10, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, 10, NOW, NOW), 'replay');
  assert.equal(g.check(1, A, 11, NOW + 5, NOW + 5), 'ok');
  assert.equal(g.check(1, A, 12, NOW + 10, NOW + 10), 'ok');
  assert.equal(g.check(1, A, 11, NOW + 5, NOW + 20), 'replay');
  assert.equal(g.check(1, A, 10, NOW, NOW + 20), 'replay');
  assert.equal(g.check(1, A, 12, NOW + 10, NOW + 20), 'replay');
});

test('reordered within the last 64 seqs: ok once, then replay', () => {
  const g = new ReplayGuard();
  assert.equal(g.check(1, A, 100, NOW, NOW), 'ok');
  // 37 = 100 - 63, the oldest seq the bitmap still covers.
  for (const seq of [99, 50, 37]) {
    assert.equal(g.check(1, A, seq, NOW - 1, NOW), 'ok', `seq ${seq} first`);
    assert.equal(g.check(1, A, seq, NOW - 1, NOW), 'replay', `seq ${seq} again`);
  }
  // Gaps left unseen stay acceptable once.
  assert.equal(g.check(1, A, 98, NOW - 1, NOW), 'ok');
});

test('older than the bitmap: replay, even if never seen', () => {
  const g = new ReplayGuard();
  assert.equal(g.check(1, A, 100, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, 36, NOW - 1, NOW), 'replay'); // 100 - 64
  assert.equal(g.check(1, A, 0, NOW - 1, NOW), 'replay');
  // After a jump the window slides: what it covered before is now too old.
  assert.equal(g.check(1, A, 1000, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, 937, NOW - 1, NOW), 'ok'); // 1000 - 63
  assert.equal(g.check(1, A, 936, NOW - 1, NOW), 'replay'); // 1000 - 64
  assert.equal(g.check(1, A, 99, NOW - 1, NOW), 'replay');
});

test('the window slides by small steps without forgetting what it still covers', () => {
  const g = new ReplayGuard();
  for (let seq = 0; seq < 200; seq += 2) assert.equal(g.check(1, A, seq, NOW, NOW), 'ok');
  // Highest is 198: odd seqs 135..197 were never seen and are still covered; even ones were seen.
  for (let seq = 135; seq < 198; seq++) {
    assert.equal(g.check(1, A, seq, NOW, NOW), seq % 2 === 1 ? 'ok' : 'replay', `seq ${seq}`);
  }
  assert.equal(g.check(1, A, 133, NOW, NOW), 'replay'); // 198 - 65
});

test('a custom bitmap size', () => {
  const g = new ReplayGuard({ bitmap: 100 });
  assert.equal(g.check(1, A, 1000, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, 901, NOW, NOW), 'ok'); // 1000 - 99
  assert.equal(g.check(1, A, 900, NOW, NOW), 'replay');
  assert.throws(() => new ReplayGuard({ bitmap: 0 }), RangeError);
  assert.throws(() => new ReplayGuard({ bitmap: 1.5 }), RangeError);
  assert.throws(() => new ReplayGuard({ windowMs: -1 }), RangeError);
});

test('timestamp outside the window either side is stale and leaves no trace', () => {
  const g = new ReplayGuard();
  assert.equal(g.check(1, A, 5, NOW - 5001, NOW), 'stale');
  assert.equal(g.check(1, A, 5, NOW + 5001, NOW), 'stale');
  assert.equal(g.check(1, A, 5, NaN, NOW), 'stale');
  assert.equal(g.size, 0);
  assert.equal(g.check(1, A, 5, NOW - 5000, NOW), 'ok');
  assert.equal(g.check(1, A, 6, NOW + 5000, NOW), 'ok');
  const narrow = new ReplayGuard({ windowMs: 100 });
  assert.equal(narrow.check(1, A, 1, NOW - 101, NOW), 'stale');
  assert.equal(narrow.check(1, A, 1, NOW - 100, NOW), 'ok');
});

test('agent restart: seq back to 0 with a newer timestamp is ok, and the stream starts over', () => {
  const g = new ReplayGuard();
  for (let seq = 0; seq < 500; seq++) g.check(1, A, seq, NOW + seq, NOW + seq);
  const t = NOW + 2000;
  assert.equal(g.check(1, A, 0, t, t), 'ok');
  assert.equal(g.check(1, A, 1, t + 5, t + 5), 'ok');
  assert.equal(g.check(1, A, 2, t + 10, t + 10), 'ok');
  // The restarted stream is guarded like any other.
  assert.equal(g.check(1, A, 1, t + 5, t + 12), 'replay');
  // A captured pre-restart message is not newer than what was accepted: replay.
  assert.equal(g.check(1, A, 0, NOW, t + 12), 'replay');
});

test('agent restart soon after start: seq 0 already in the bitmap, newer timestamp → ok', () => {
  const g = new ReplayGuard();
  for (let seq = 0; seq <= 10; seq++) assert.equal(g.check(1, A, seq, NOW + seq * 1000, NOW + seq * 1000), 'ok');
  const t = NOW + 10_500;
  assert.equal(g.check(1, A, 0, t, t), 'ok');
  assert.equal(g.check(1, A, 1, t + 1000, t + 1000), 'ok');
  assert.equal(g.check(1, A, 0, t, t + 1000), 'replay');
});

test('agent restart with its first messages reordered: the old stream leaves nothing behind', () => {
  const g = new ReplayGuard();
  // Old stream up to 511: every slot of the bitmap holds one of seqs 448..511.
  for (let seq = 0; seq < 512; seq++) g.check(1, A, seq, NOW + seq, NOW + seq);
  const t = NOW + 3000;
  assert.equal(g.check(1, A, 2, t + 10, t + 10), 'ok'); // the restarted agent's seq 2 arrives first
  assert.equal(g.check(1, A, 0, t, t + 10), 'ok');
  assert.equal(g.check(1, A, 1, t + 5, t + 10), 'ok');
  assert.equal(g.check(1, A, 1, t + 5, t + 10), 'replay');
});

test('an old seq with a timestamp equal to the newest accepted is a replay, not a restart', () => {
  const g = new ReplayGuard();
  assert.equal(g.check(1, A, 100, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, 0, NOW, NOW), 'replay');
  assert.equal(g.check(1, A, 100, NOW, NOW), 'replay');
});

test('sequence numbers wrap at 2^32', () => {
  const g = new ReplayGuard();
  const top = 2 ** 32 - 2;
  assert.equal(g.check(1, A, top, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, top + 1, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, 0, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, 1, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, top + 1, NOW, NOW), 'replay');
  assert.equal(g.check(1, A, 2 ** 32 - 10, NOW, NOW), 'ok'); // reordered across the wrap, within 64
  assert.equal(g.check(1, A, 2 ** 32 - 10, NOW, NOW), 'replay');
  assert.equal(g.check(1, A, 2 ** 32 - 63, NOW, NOW), 'replay'); // 1 - 64 mod 2^32: too old
});

test('hosts and types are independent streams', () => {
  const g = new ReplayGuard();
  assert.equal(g.check(1, A, 7, NOW, NOW), 'ok');
  assert.equal(g.check(2, A, 7, NOW, NOW), 'ok');
  assert.equal(g.check(1, L, 7, NOW, NOW), 'ok');
  assert.equal(g.check(2, L, 7, NOW, NOW), 'ok');
  assert.equal(g.check(1, A, 7, NOW, NOW), 'replay');
  assert.equal(g.check(2, L, 7, NOW, NOW), 'replay');
  // Far ahead on one stream does not make the others' seqs old.
  assert.equal(g.check(1, A, 10_000, NOW, NOW), 'ok');
  assert.equal(g.check(1, L, 8, NOW, NOW), 'ok');
  assert.equal(g.check(2, A, 8, NOW, NOW), 'ok');
  assert.equal(g.check(65535, A, 8, NOW, NOW), 'ok');
  assert.equal(g.size, 5);
});

test('memory is one state per (host, type), however many messages', () => {
  const g = new ReplayGuard();
  for (let seq = 0; seq < 20_000; seq++) {
    for (const host of [1, 2, 3]) {
      g.check(host, A, seq, NOW, NOW);
      g.check(host, L, seq, NOW, NOW);
    }
  }
  assert.equal(g.size, 6);
  g.forget(2);
  assert.equal(g.size, 4);
  assert.equal(g.check(2, A, 0, NOW, NOW), 'ok'); // forgotten: a fresh stream
  assert.equal(g.check(1, A, 0, NOW, NOW), 'replay'); // host 1 untouched
});
