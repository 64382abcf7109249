/**
 * @module Smooth weighted round robin (nginx's upstream algorithm, ngx_http_upstream_get_peer):
 * backends are picked in proportion to their weight, interleaved rather than in bursts.
 */
import type { Balancer, Candidate, PickResult } from './balancer.js';

const NONE: PickResult<never> = Object.freeze({ type: 'none' });

/**
 * Each pick adds every backend's weight to its `current`, picks the largest `current` (the first one
 * on a tie) and subtracts the total weight from the winner. Weights 5,1,1 give a,a,b,a,c,a,a: over one
 * cycle of `total` picks each backend is chosen exactly `weight` times, and a heavy backend's picks
 * are spread out instead of arriving back to back (which would hit it with a burst).
 *
 * `current` is kept per backend id across `update`, so a health change elsewhere in the pool does not
 * restart the cycle (restarting would favour the first backends whenever updates come often).
 * Weight-0 backends are left out: they are never picked.
 */
export class WeightedRoundRobinBalancer<T extends Candidate> implements Balancer<T> {
  readonly name = 'weighted-round-robin';
  private picks: PickResult<T>[] = [];
  private ids: string[] = [];
  private weights = new Float64Array(0);
  private current = new Float64Array(0);
  private total = 0;

  update(eligible: readonly T[]): void {
    const previous = new Map<string, number>();
    for (let i = 0; i < this.ids.length; i++) previous.set(this.ids[i]!, this.current[i]!);
    const picks: PickResult<T>[] = [];
    const ids: string[] = [];
    const weights: number[] = [];
    for (const backend of eligible) {
      if (!(backend.weight > 0)) continue;
      picks.push(Object.freeze({ type: 'pick', backend }));
      ids.push(backend.id);
      weights.push(backend.weight);
    }
    this.picks = picks;
    this.ids = ids;
    this.weights = Float64Array.from(weights);
    this.current = Float64Array.from(ids, (id) => previous.get(id) ?? 0);
    this.total = weights.reduce((sum, w) => sum + w, 0);
  }

  pick(): PickResult<T> {
    const n = this.picks.length;
    if (n === 0) return NONE;
    const weights = this.weights;
    const current = this.current;
    let best = 0;
    let bestCurrent = -Infinity;
    for (let i = 0; i < n; i++) {
      const c = current[i]! + weights[i]!;
      current[i] = c;
      if (c > bestCurrent) {
        bestCurrent = c;
        best = i;
      }
    }
    current[best] = bestCurrent - this.total;
    return this.picks[best]!;
  }
}
