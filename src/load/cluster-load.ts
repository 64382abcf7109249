/**
 * @module The cluster global load l_c (SARA eq. 1), the figure admission control compares with its
 * thresholds (issue 4) and the load manager publishes with every sample.
 */

/**
 * SARA eq. 1, reading chosen: l_c = alpha * mean(l_j) + (1 - alpha) * variance(l_j) over the N
 * nodes, with the population variance (divide by N; the OCR reads "σ(l_j)^2", and the text "the load
 * variance of the cluster nodes"). The variance term raises l_c when the load is unevenly spread
 * (one node saturated while the others idle is closer to trouble than the mean alone says); alpha in
 * [0, 1] trades one for the other. With loads in [0, 1] the variance is at most 0.25, so l_c stays
 * in [0, 1].
 *
 * E.g. loads [0.2, 0.4, 0.6], alpha 0.5: mean 0.4, variance (0.04 + 0 + 0.04) / 3 = 0.02666…,
 * l_c = 0.2 + 0.01333… = 0.21333…
 *
 * Reads the first `count` entries of `loads` (default all), so a caller can reuse one scratch
 * array. No loads → 0.
 */
export function clusterLoad(loads: ArrayLike<number>, alpha: number, count: number = loads.length): number {
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`alpha must be within [0, 1], got ${alpha}`);
  const n = Math.min(count, loads.length);
  if (n <= 0) return 0;
  let mean = 0;
  for (let j = 0; j < n; j++) mean += loads[j]!;
  mean /= n;
  let variance = 0;
  for (let j = 0; j < n; j++) {
    const d = loads[j]! - mean;
    variance += d * d;
  }
  variance /= n;
  return alpha * mean + (1 - alpha) * variance;
}
