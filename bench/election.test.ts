import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTable, optionsFromEnv, percentile, run, type ElectionBenchResult } from './election.js';

test('percentile: nearest rank', () => {
  assert.equal(percentile([7, 3, 5], 0.5), 5);
  assert.equal(percentile([7, 3, 5], 0.99), 7);
  assert.equal(percentile(Array.from({ length: 30 }, (_, i) => i), 0.99), 29);
  assert.ok(Number.isNaN(percentile([], 0.5)));
});

test('optionsFromEnv: trials and intervals, with clear errors', () => {
  assert.deepEqual(optionsFromEnv({}), {});
  assert.deepEqual(optionsFromEnv({ BENCH_ELECTION_TRIALS: '40', BENCH_ELECTION_INTERVALS: '20, 5', BENCH_ELECTION_REALTIME: '1' }), {
    trials: 40,
    intervalsMs: [20, 5],
    realtime: true,
  });
  assert.throws(() => optionsFromEnv({ BENCH_ELECTION_INTERVALS: '2' }), /BENCH_ELECTION_INTERVALS: expected integers 5-1000, received "2"/);
  assert.throws(() => optionsFromEnv({ BENCH_ELECTION_TRIALS: '0' }), /BENCH_ELECTION_TRIALS/);
});

test('formatTable: the window from the RFC formula, the anchor, and the target verdict', () => {
  const r: ElectionBenchResult = {
    settings: { trials: 3, intervalsMs: [10, 5], priority: 100, realtime: false },
    results: [
      { intervalMs: 10, masterDownMs: 36.09375, trials: 3, missed: 0, unprovoked: 0, stateMs: [30, 28, 35], vipMs: [31, 29, 36], foreignCores: 0.1 },
      { intervalMs: 5, masterDownMs: 18.046875, trials: 3, missed: 0, unprovoked: 1, stateMs: [15, 17, 18], vipMs: [16, 18, 19], foreignCores: null },
    ],
    wallMs: 1,
  };
  const text = formatTable(r);
  assert.match(text, /\| 10 ms \| 36\.1 ms \| 26\.1–36\.1 ms \| 3 \| 30\.0 \| 35\.0 \| 35\.0 \| 28\.0 \| 31\.0 \| 36\.0 \| 0 \| 0 \| 0\.10 \|/);
  assert.match(text, /\| 5 ms \| 18\.0 ms \| 13\.0–18\.0 ms \| 3 \| 17\.0 \| 18\.0 \| 18\.0 \| 15\.0 \| 18\.0 \| 19\.0 \| 0 \| 1 \| – \|/);
  assert.match(text, /keepalived, VRRPv3 at 10 ms adverts .* \| 36 ms \|/);
  assert.match(text, /holdfast at 10 ms adverts, VIP answer \| 31\.0 ms \(0\.86 × keepalived\)/);
  assert.match(text, /met with adverts every 5 ms\./);
});

test('a short real run: every kill is followed by a takeover and a VIP answer from the new master', { timeout: 60_000 }, async () => {
  const r = await run({ trials: 2, intervalsMs: [20], out: null, log: () => {} });
  const [x] = r.results;
  assert.ok(x);
  assert.equal(x.missed, 0);
  assert.equal(x.stateMs.length, 2);
  assert.equal(x.vipMs.length, 2);
  for (const [i, s] of x.stateMs.entries()) {
    assert.ok(s > 0 && s < 5000, `state ${s}`);
    assert.ok(x.vipMs[i]! >= s - 1, `the VIP answers after the state change: ${x.vipMs[i]} vs ${s}`);
  }
});
