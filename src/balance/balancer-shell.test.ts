import { test } from 'node:test';
import assert from 'node:assert/strict';
import { candidates, pickIds, picked, runBalancerSuite } from './balancer.common-suite.js';
import { ShellBalancer } from './balancer-shell.js';
import type { TestCandidate } from './balancer.common-suite.js';
import { ShellForecaster } from '../load/shell-forecast.js';

runBalancerSuite('shell');

test('shell (eq. 9): picks the least forecast, not the least load', () => {
  const balancer = new ShellBalancer<TestCandidate>();
  const pool = candidates(3);
  // b0 measured low but rising fast; b1 measured higher but steady: the forecast decides.
  pool[0]!.load = 0.2;
  pool[0]!.forecast = 0.7;
  pool[1]!.load = 0.5;
  pool[1]!.forecast = 0.5;
  pool[2]!.load = 0.6;
  pool[2]!.forecast = 0.6;
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 3), ['b1', 'b1', 'b1'], 'a lone minimum stays the pick');
});

test('shell: reads forecast live, without an update', () => {
  const balancer = new ShellBalancer<TestCandidate>();
  const pool = candidates(3);
  pool[0]!.forecast = 0.1;
  pool[1]!.forecast = 0.2;
  pool[2]!.forecast = 0.3;
  balancer.update(pool);
  assert.equal(picked(balancer.pick()).id, 'b0');
  pool[0]!.forecast = 0.9;
  assert.equal(picked(balancer.pick()).id, 'b1');
  pool[2]!.forecast = 0.15;
  assert.equal(picked(balancer.pick()).id, 'b2');
});

test('shell: ties rotate, also among a subset around a busier backend', () => {
  const balancer = new ShellBalancer<TestCandidate>();
  const pool = candidates(3);
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 6), ['b0', 'b1', 'b2', 'b0', 'b1', 'b2']);
  pool[1]!.forecast = 0.4;
  pool[0]!.forecast = 0.25;
  pool[2]!.forecast = 0.25;
  assert.deepEqual(pickIds(balancer, 4), ['b0', 'b2', 'b0', 'b2']);
});

test('shell: weight 0 is never picked, whatever its forecast', () => {
  const balancer = new ShellBalancer<TestCandidate>();
  const pool = candidates(2);
  pool[0]!.weight = 0;
  pool[1]!.forecast = 1;
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 3), ['b1', 'b1', 'b1']);
});

test('shell end to end with eq. 6-8: the rising backend loses to the falling one at equal load', () => {
  // Both end at 0.5. a: [0.3, 0.4, 0.5] (a perfect ramp: err 0, l~ = l^ = 0.6);
  // b: [0.7, 0.6, 0.5] (err 0, l~ = 0.4). Least-loaded would tie; shell picks b.
  const a = new ShellForecaster(3);
  const b = new ShellForecaster(3);
  for (const x of [0.3, 0.4, 0.5]) a.sample(x);
  for (const x of [0.7, 0.6, 0.5]) b.sample(x);
  const pool = candidates(2);
  pool[0]!.load = 0.5;
  pool[0]!.forecast = a.forecast;
  pool[1]!.load = 0.5;
  pool[1]!.forecast = b.forecast;
  assert.ok(Math.abs(a.forecast - 0.6) < 1e-9 && Math.abs(b.forecast - 0.4) < 1e-9, `${a.forecast} ${b.forecast}`);
  const balancer = new ShellBalancer<TestCandidate>();
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 2), ['b1', 'b1']);
});
