import { test } from 'node:test';
import assert from 'node:assert/strict';
import { candidates, pickIds, runBalancerSuite } from './balancer.common-suite.js';
import { WeightedRoundRobinBalancer } from './balancer-weighted-round-robin.js';
import type { TestCandidate } from './balancer.common-suite.js';

runBalancerSuite('weighted-round-robin');

function weighted(...weights: number[]): TestCandidate[] {
  return weights.map((weight, index) => ({ id: String.fromCharCode(97 + index), weight, index, active: 0, load: 0, forecast: 0 }));
}

test('weighted-round-robin: weights 5,1,1 give the smooth sequence a,a,b,a,c,a,a', () => {
  // By hand (current after adding weights → winner → current after subtracting 7):
  // 1: 5,1,1 → a → -2,1,1     2: 3,2,2 → a → -4,2,2     3: 1,3,3 → b → 1,-4,3
  // 4: 6,-3,4 → a → -1,-3,4   5: 4,-2,5 → c → 4,-2,-2   6: 9,-1,-1 → a → 2,-1,-1
  // 7: 7,0,0 → a → 0,0,0 (back to the start: the cycle repeats)
  const balancer = new WeightedRoundRobinBalancer<TestCandidate>();
  balancer.update(weighted(5, 1, 1));
  const cycle = ['a', 'a', 'b', 'a', 'c', 'a', 'a'];
  assert.deepEqual(pickIds(balancer, 14), [...cycle, ...cycle]);
});

test('weighted-round-robin: weights 2,1 give a,b,a', () => {
  // 1: 2,1 → a → -1,1   2: 1,2 → b → 1,-1   3: 3,0 → a → 0,0
  const balancer = new WeightedRoundRobinBalancer<TestCandidate>();
  balancer.update(weighted(2, 1));
  assert.deepEqual(pickIds(balancer, 6), ['a', 'b', 'a', 'a', 'b', 'a']);
});

test('weighted-round-robin: picks are proportional to weight', () => {
  const balancer = new WeightedRoundRobinBalancer<TestCandidate>();
  balancer.update(weighted(3, 7, 10));
  const counts = new Map<string, number>();
  for (const id of pickIds(balancer, 2000)) counts.set(id, (counts.get(id) ?? 0) + 1);
  assert.deepEqual(Object.fromEntries(counts), { a: 300, b: 700, c: 1000 });
});

test('weighted-round-robin: weight 0 is never picked', () => {
  const balancer = new WeightedRoundRobinBalancer<TestCandidate>();
  balancer.update(weighted(0, 2, 0, 1));
  const ids = pickIds(balancer, 30);
  assert.ok(!ids.includes('a') && !ids.includes('c'), ids.join(','));
  assert.equal(ids.filter((id) => id === 'b').length, 20);
});

test('weighted-round-robin: all weights 0 means none', () => {
  const balancer = new WeightedRoundRobinBalancer<TestCandidate>();
  balancer.update(weighted(0, 0));
  assert.deepEqual(balancer.pick(), { type: 'none' });
});

test('weighted-round-robin: frequent updates with the same list do not restart the cycle', () => {
  const balancer = new WeightedRoundRobinBalancer<TestCandidate>();
  const pool = weighted(5, 1, 1);
  balancer.update(pool);
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) {
    balancer.update([...pool]);
    ids.push(...pickIds(balancer, 1));
  }
  assert.deepEqual(ids, ['a', 'a', 'b', 'a', 'c', 'a', 'a']);
});

test('weighted-round-robin: equal weights behave as round robin', () => {
  const balancer = new WeightedRoundRobinBalancer<TestCandidate>();
  balancer.update(candidates(3, 4));
  assert.deepEqual(pickIds(balancer, 6), ['b0', 'b1', 'b2', 'b0', 'b1', 'b2']);
});
