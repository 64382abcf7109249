/**
 * @module Least loaded: the backend whose latest load sample is the lowest. The instantaneous
 * baseline the `shell` balancer is compared with (issue 3, bench/balance).
 */
import type { Balancer, Candidate, PickResult } from './balancer.js';

const NONE: PickResult<never> = Object.freeze({ type: 'none' });

/**
 * Picks the least `load` (the agent's latest sample, written by load/load-manager.ts and read live,
 * so no `update` is needed when a sample arrives). Weight only excludes (weight 0 = no new work):
 * the load is already a fraction of the backend's own capacity, so dividing it by a weight would
 * count capacity twice. The scan starts one past the previous winner and a later candidate must be
 * strictly less loaded to win, so ties go round robin: before any sample (all 0), or when samples
 * are equal, every backend gets its turn. O(n) per pick, no allocation.
 */
export class LeastLoadedBalancer<T extends Candidate> implements Balancer<T> {
  readonly name = 'least-loaded';
  private picks: PickResult<T>[] = [];
  private backends: T[] = [];
  private cursor = 0;

  update(eligible: readonly T[]): void {
    const picks: PickResult<T>[] = [];
    const backends: T[] = [];
    for (const backend of eligible) {
      if (!(backend.weight > 0)) continue;
      picks.push(Object.freeze({ type: 'pick', backend }));
      backends.push(backend);
    }
    this.picks = picks;
    this.backends = backends;
    this.cursor = backends.length === 0 ? 0 : this.cursor % backends.length;
  }

  pick(): PickResult<T> {
    const backends = this.backends;
    const n = backends.length;
    if (n === 0) return NONE;
    let i = this.cursor;
    let best = i;
    let bestLoad = backends[i]!.load;
    for (let step = 1; step < n; step++) {
      i = i + 1 === n ? 0 : i + 1;
      const load = backends[i]!.load;
      if (load < bestLoad) {
        best = i;
        bestLoad = load;
      }
    }
    this.cursor = best + 1 === n ? 0 : best + 1;
    return this.picks[best]!;
  }
}
