import { test } from 'node:test';
import assert from 'node:assert/strict';
import { candidates, pickIds, picked, runBalancerSuite } from './balancer.common-suite.js';
import { RoundRobinBalancer } from './balancer-round-robin.js';
import type { TestCandidate } from './balancer.common-suite.js';

runBalancerSuite('round-robin');

test('round-robin: exact order, wrapping around', () => {
  const balancer = new RoundRobinBalancer<TestCandidate>();
  balancer.update(candidates(3));
  assert.deepEqual(pickIds(balancer, 7), ['b0', 'b1', 'b2', 'b0', 'b1', 'b2', 'b0']);
});

test('round-robin: ignores weight and load', () => {
  const balancer = new RoundRobinBalancer<TestCandidate>();
  const pool = candidates(3);
  pool[0]!.weight = 10;
  pool[1]!.active = 100;
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 6), ['b0', 'b1', 'b2', 'b0', 'b1', 'b2']);
});

test('round-robin: weight-0 candidates are never picked', () => {
  const balancer = new RoundRobinBalancer<TestCandidate>();
  const pool = candidates(3);
  pool[1]!.weight = 0;
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 4), ['b0', 'b2', 'b0', 'b2']);
});

test('round-robin: the cursor survives an update with the same list', () => {
  const balancer = new RoundRobinBalancer<TestCandidate>();
  const pool = candidates(3);
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 2), ['b0', 'b1']);
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 2), ['b2', 'b0']);
});

test('round-robin: a shrunken snapshot keeps the cursor in range', () => {
  const balancer = new RoundRobinBalancer<TestCandidate>();
  const pool = candidates(5);
  balancer.update(pool);
  pickIds(balancer, 4); // cursor now at index 4
  balancer.update([pool[0]!, pool[2]!]);
  assert.deepEqual(pickIds(balancer, 3), ['b0', 'b2', 'b0']);
});

test('round-robin: a pick of the same backend returns the same result object (no allocation)', () => {
  const balancer = new RoundRobinBalancer<TestCandidate>();
  balancer.update(candidates(2));
  const first = balancer.pick();
  balancer.pick();
  assert.equal(balancer.pick(), first);
  assert.equal(picked(first).id, 'b0');
});
