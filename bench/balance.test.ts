import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTable, prng, run, simulate } from './balance.js';

test('prng: deterministic per seed, within [0, 1)', () => {
  const a = prng(7);
  const b = prng(7);
  const c = prng(8);
  const xs = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(xs, Array.from({ length: 1000 }, () => b()));
  assert.notEqual(xs[0], c());
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
});

test('simulate: deterministic, same requests for every balancer, round-robin ignores speed', () => {
  const once = simulate('shell', 10, 3, 20, []);
  const again = simulate('shell', 10, 3, 20, []);
  assert.deepEqual(once, again);
  const rr = simulate('round-robin', 10, 3, 20, []);
  const lc = simulate('least-connections', 10, 3, 20, []);
  // Common random numbers: the same arrivals (all drained) whatever the balancer.
  assert.equal(rr.requests, once.requests);
  assert.equal(lc.requests, once.requests);
  assert.ok(once.requests > 5000, `${once.requests} requests`);
  for (const s of rr.shares) assert.ok(Math.abs(s - 1 / 3) < 0.01, `round-robin share ${s}`);
  // The slow backend takes less than a third under a balancer that sees its queue.
  assert.ok(lc.shares[2]! < 0.25, `least-connections sends ${lc.shares[2]} to the slow backend`);
  assert.ok(lc.p99Ms < rr.p99Ms, `least-connections p99 ${lc.p99Ms} vs round-robin ${rr.p99Ms}`);
});

test('run: one summary per delta_load x balancer, and a table row for each', () => {
  const report = run({ seconds: 10, seeds: [1], intervalsMs: [20], out: null });
  assert.equal(report.summaries.length, 4);
  assert.equal(report.runs.length, 4);
  const table = formatTable(report).split('\n');
  assert.equal(table.length, 2 + 4);
  assert.match(table[2]!, /^\| 20 ms \| shell \|/);
});
