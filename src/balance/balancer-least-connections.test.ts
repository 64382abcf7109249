import { test } from 'node:test';
import assert from 'node:assert/strict';
import { candidates, pickIds, picked, runBalancerSuite } from './balancer.common-suite.js';
import { LeastConnectionsBalancer } from './balancer-least-connections.js';
import type { TestCandidate } from './balancer.common-suite.js';

runBalancerSuite('least-connections');

test('least-connections: picks the least loaded', () => {
  const balancer = new LeastConnectionsBalancer<TestCandidate>();
  const pool = candidates(4);
  pool[0]!.active = 5;
  pool[1]!.active = 3;
  pool[2]!.active = 1;
  pool[3]!.active = 4;
  balancer.update(pool);
  assert.equal(picked(balancer.pick()).id, 'b2');
  assert.equal(picked(balancer.pick()).id, 'b2', 'a lone minimum stays the pick');
});

test('least-connections: reads active live, without an update', () => {
  const balancer = new LeastConnectionsBalancer<TestCandidate>();
  const pool = candidates(3);
  balancer.update(pool);
  // The forwarder bumps active on each pick: the load evens out.
  for (let i = 0; i < 30; i++) picked(balancer.pick()).active++;
  assert.deepEqual(pool.map((b) => b.active), [10, 10, 10]);
  pool[1]!.active = 0;
  assert.equal(picked(balancer.pick()).id, 'b1');
});

test('least-connections: respects weight (active / weight)', () => {
  const balancer = new LeastConnectionsBalancer<TestCandidate>();
  const pool = candidates(2);
  pool[0]!.weight = 3;
  pool[0]!.active = 5; // 5/3 ≈ 1.67
  pool[1]!.weight = 1;
  pool[1]!.active = 2; // 2/1 = 2
  balancer.update(pool);
  assert.equal(picked(balancer.pick()).id, 'b0');
  // With picks bumping active, a weight-3 backend ends up with 3 times the load of a weight-1 one.
  pool[0]!.active = 0;
  pool[1]!.active = 0;
  for (let i = 0; i < 400; i++) picked(balancer.pick()).active++;
  assert.deepEqual(pool.map((b) => b.active), [300, 100]);
});

test('least-connections: ties rotate', () => {
  const balancer = new LeastConnectionsBalancer<TestCandidate>();
  balancer.update(candidates(3));
  assert.deepEqual(pickIds(balancer, 6), ['b0', 'b1', 'b2', 'b0', 'b1', 'b2']);
});

test('least-connections: ties among a subset rotate evenly around a loaded backend', () => {
  const balancer = new LeastConnectionsBalancer<TestCandidate>();
  const pool = candidates(3);
  pool[1]!.active = 9;
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 6), ['b0', 'b2', 'b0', 'b2', 'b0', 'b2']);
});

test('least-connections: weight 0 is never picked', () => {
  const balancer = new LeastConnectionsBalancer<TestCandidate>();
  const pool = candidates(2);
  pool[0]!.weight = 0;
  pool[1]!.active = 1000;
  balancer.update(pool);
  assert.deepEqual(pickIds(balancer, 3), ['b1', 'b1', 'b1']);
});
