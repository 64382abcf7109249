/**
 * @module The shared scan of the "least something" balancers (least-connections, least-loaded,
 * shell): the eligible backend with the lowest score, ties rotating.
 */
import type { Balancer, Candidate, PickResult } from './balancer.js';

const NONE: PickResult<never> = Object.freeze({ type: 'none' });

/**
 * Picks the lowest `score`, read live at pick time. The scan starts one past the previous winner and
 * a later candidate must be strictly lower to win, so ties go round robin: with equal scores every
 * backend gets its turn, and a burst of picks before the score moves spreads out instead of landing
 * on the first backend. O(n) per pick, no allocation (pick results are built in `update`).
 * Weight-0 backends take no new work under any balancer.
 */
export abstract class LeastScoreBalancer<T extends Candidate> implements Balancer<T> {
  abstract readonly name: string;
  private picks: PickResult<T>[] = [];
  private backends: T[] = [];
  private cursor = 0;

  protected abstract score(backend: T): number;

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
    let bestScore = this.score(backends[i]!);
    for (let step = 1; step < n; step++) {
      i = i + 1 === n ? 0 : i + 1;
      const s = this.score(backends[i]!);
      if (s < bestScore) {
        best = i;
        bestScore = s;
      }
    }
    this.cursor = best + 1 === n ? 0 : best + 1;
    return this.picks[best]!;
  }
}
