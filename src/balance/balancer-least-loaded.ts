/**
 * @module Least loaded: the backend whose latest load sample is the lowest. The instantaneous
 * baseline the `shell` balancer is compared with (issue 3, bench/balance).
 */
import type { Candidate } from './balancer.js';
import { LeastScoreBalancer } from './balancer-least-score.js';

/**
 * Picks the least `load` (the agent's latest sample, written by load/load-manager.ts and read live,
 * so no `update` is needed when a sample arrives). Weight only excludes (weight 0 = no new work):
 * the load is already a fraction of the backend's own capacity, so dividing it by a weight would
 * count capacity twice. The scan starts one past the previous winner and a later candidate must be
 * strictly less loaded to win, so ties go round robin: before any sample (all 0), or when samples
 * are equal, every backend gets its turn. O(n) per pick, no allocation.
 */
export class LeastLoadedBalancer<T extends Candidate> extends LeastScoreBalancer<T> {
  readonly name = 'least-loaded';

  protected score(b: T): number {
    return b.load;
  }
}
