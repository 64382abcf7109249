import { test } from 'node:test';
import assert from 'node:assert/strict';
import { candidates, pickIds } from './balancer.common-suite.js';
import type { TestCandidate } from './balancer.common-suite.js';
import { ReplaceableBalancer } from './balancer-replaceable.js';
import { UnknownBalancerError } from '../core/errors.js';

test('replaceable: delegates, and a replacement picks from the last snapshot at once', () => {
  const balancer = new ReplaceableBalancer<TestCandidate>('round-robin');
  const pool = candidates(3);
  pool[0]!.weight = 5;
  balancer.update(pool);
  assert.equal(balancer.name, 'round-robin');
  assert.deepEqual(pickIds(balancer, 3), ['b0', 'b1', 'b2']);
  balancer.replace('weighted-round-robin');
  assert.equal(balancer.name, 'weighted-round-robin');
  // nginx's smooth weights 5,1,1: a a b a c a a.
  assert.deepEqual(pickIds(balancer, 7), ['b0', 'b0', 'b1', 'b0', 'b2', 'b0', 'b0']);
  balancer.update(pool.slice(1));
  assert.deepEqual(pickIds(balancer, 2).sort(), ['b1', 'b2']);
});

test('replaceable: an unknown name throws and keeps the running algorithm', () => {
  const balancer = new ReplaceableBalancer<TestCandidate>('round-robin');
  balancer.update(candidates(2));
  assert.throws(() => balancer.replace('nope'), UnknownBalancerError);
  assert.equal(balancer.name, 'round-robin');
  assert.deepEqual(pickIds(balancer, 2), ['b0', 'b1']);
});
