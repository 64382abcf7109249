/**
 * @module Round robin: every eligible backend in turn, regardless of weight or load. The baseline
 * balancer and the default of a service (config `balancer: round-robin`).
 */
import type { Balancer, Candidate, PickResult } from './balancer.js';

const NONE: PickResult<never> = Object.freeze({ type: 'none' });

/**
 * Picks the snapshot's backends in order, one step per pick. The pick results are built once per
 * `update`, so `pick()` allocates nothing. The cursor survives an update (taken modulo the new size)
 * so that frequent health changes do not send every burst back to the first backend.
 * Weight-0 backends are left out of the snapshot: weight 0 means "no new work" for every balancer.
 */
export class RoundRobinBalancer<T extends Candidate> implements Balancer<T> {
  readonly name = 'round-robin';
  private picks: PickResult<T>[] = [];
  private cursor = 0;

  update(eligible: readonly T[]): void {
    const picks: PickResult<T>[] = [];
    for (const backend of eligible) if (backend.weight > 0) picks.push(Object.freeze({ type: 'pick', backend }));
    this.picks = picks;
    this.cursor = picks.length === 0 ? 0 : this.cursor % picks.length;
  }

  pick(): PickResult<T> {
    const picks = this.picks;
    const n = picks.length;
    if (n === 0) return NONE;
    const i = this.cursor;
    this.cursor = i + 1 === n ? 0 : i + 1;
    return picks[i]!;
  }
}
