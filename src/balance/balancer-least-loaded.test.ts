import { test } from 'node:test';
import assert from 'node:assert/strict';
import { candidates, pickIds, picked, runBalancerSuite } from './balancer.common-suite.js';
import { LeastLoadedBalancer } from './balancer-least-loaded.js';
import type { TestCandidate } from './balancer.common-suite.js';

runBalancerSuite('least-loaded');

test('least-loaded: picks the least load sample, ignoring the forecast and active', () => {
  const balancer = new LeastLoadedBalancer<TestCandidate>();
  const pool = candidates(3);
  pool[0]!.load = 0.2;
  pool[0]!.forecast = 0.7;
  pool[0]!.active = 50;
  pool[1]!.load = 0.5;
  pool[1]!.forecast = 0.1;
  pool[2]!.load = 0.6;
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 3), ['b0', 'b0', 'b0']);
});

test('least-loaded: reads load live, without an update', () => {
  const balancer = new LeastLoadedBalancer<TestCandidate>();
  const pool = candidates(3);
  pool[0]!.load = 0.1;
  pool[1]!.load = 0.2;
  pool[2]!.load = 0.3;
  balancer.update(pool);
  assert.equal(picked(balancer.pick()).id, 'b0');
  pool[0]!.load = 0.9;
  assert.equal(picked(balancer.pick()).id, 'b1');
});

test('least-loaded: ties rotate, also among a subset around a busier backend', () => {
  const balancer = new LeastLoadedBalancer<TestCandidate>();
  const pool = candidates(3);
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 6), ['b0', 'b1', 'b2', 'b0', 'b1', 'b2']);
  pool[2]!.load = 0.8;
  assert.deepEqual(pickIds(balancer, 4), ['b0', 'b1', 'b0', 'b1']);
});

test('least-loaded: weight does not scale the load; weight 0 is never picked', () => {
  const balancer = new LeastLoadedBalancer<TestCandidate>();
  const pool = candidates(3);
  pool[0]!.weight = 10;
  pool[0]!.load = 0.5;
  pool[1]!.load = 0.4;
  pool[2]!.weight = 0;
  pool[2]!.load = 0;
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 3), ['b1', 'b1', 'b1']);
});
