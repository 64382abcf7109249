import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterLoad } from './cluster-load.js';

const EPS = 1e-12;

function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < EPS, `${what}: expected ${expected}, got ${actual}`);
}

test('eq. 1 on numbers computed by hand', () => {
  // [0.2, 0.4, 0.6]: mean 0.4, variance (0.04 + 0 + 0.04) / 3 = 0.026666…,
  // alpha 0.5: 0.5 * 0.4 + 0.5 * 0.026666… = 0.2 + 0.013333… = 0.213333…
  near(clusterLoad([0.2, 0.4, 0.6], 0.5), 0.2 + 0.04 / 3, 'alpha 0.5');
  // alpha 1: the mean alone.
  near(clusterLoad([0.2, 0.4, 0.6], 1), 0.4, 'alpha 1');
  // alpha 0: the variance alone.
  near(clusterLoad([0.2, 0.4, 0.6], 0), 0.08 / 3, 'alpha 0');
  // [0, 1], alpha 0.8: mean 0.5, variance (0.25 + 0.25) / 2 = 0.25; 0.4 + 0.2 * 0.25 = 0.45.
  near(clusterLoad([0, 1], 0.8), 0.45, 'spread');
  // An even spread has no variance term: [0.5, 0.5], alpha 0.8 → 0.4.
  near(clusterLoad([0.5, 0.5], 0.8), 0.4, 'even');
});

test('eq. 1: the same mean scores higher when the load is uneven (alpha < 1)', () => {
  assert.ok(clusterLoad([0.1, 0.9], 0.5) > clusterLoad([0.5, 0.5], 0.5));
});

test('eq. 1: count limits the entries read; no loads → 0; alpha outside [0, 1] is refused', () => {
  // First two of [0.2, 0.4, 0.9]: mean 0.3, variance 0.01; alpha 0.5 → 0.15 + 0.005 = 0.155.
  near(clusterLoad(new Float64Array([0.2, 0.4, 0.9]), 0.5, 2), 0.155, 'count');
  assert.equal(clusterLoad([], 0.5), 0);
  assert.equal(clusterLoad([0.3], 0.5, 0), 0);
  assert.throws(() => clusterLoad([0.3], 1.5), RangeError);
  assert.throws(() => clusterLoad([0.3], Number.NaN), RangeError);
});
