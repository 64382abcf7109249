/**
 * @module Least connections: the backend with the least in-flight work per unit of weight.
 */
import type { Balancer, Candidate, PickResult } from './balancer.js';

const NONE: PickResult<never> = Object.freeze({ type: 'none' });

/**
 * Picks the least `active / weight` (compared by cross-multiplication, so integer loads compare
 * exactly). The scan starts one past the previous winner and a later candidate must be strictly
 * less loaded to win, so ties go round robin: with equal loads every backend gets its turn, and a
 * burst of picks before `active` moves (the forwarder bumps it only once connected) spreads out
 * instead of landing on index 0. O(n) per pick, no allocation. Weight-0 backends are left out.
 */
export class LeastConnectionsBalancer<T extends Candidate> implements Balancer<T> {
  readonly name = 'least-connections';
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
    let bestActive = backends[i]!.active;
    let bestWeight = backends[i]!.weight;
    for (let step = 1; step < n; step++) {
      i = i + 1 === n ? 0 : i + 1;
      const b = backends[i]!;
      // b.active / b.weight < bestActive / bestWeight, without division.
      if (b.active * bestWeight < bestActive * b.weight) {
        best = i;
        bestActive = b.active;
        bestWeight = b.weight;
      }
    }
    this.cursor = best + 1 === n ? 0 : best + 1;
    return this.picks[best]!;
  }
}
