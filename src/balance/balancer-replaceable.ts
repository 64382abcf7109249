/**
 * @module A balancer whose algorithm can be replaced while it serves (a reload that changes
 * `services[].balancer`): the service's router and session router hold this one object, and the
 * algorithm behind it changes under them.
 */
import type { Balancer, BalancerOptions, Candidate, PickResult } from './balancer.js';
import { createBalancer } from './balancer.js';

/**
 * Delegates to one registered balancer. `replace(name)` builds the new one (throwing
 * UnknownBalancerError before anything changes), gives it the last snapshot, then swaps it in: the
 * next pick is the new algorithm's. Its state (a round-robin cursor, smooth weights) starts afresh.
 */
export class ReplaceableBalancer<T extends Candidate> implements Balancer<T> {
  private inner: Balancer<T>;
  private snapshot: readonly T[] = [];

  constructor(
    name: string,
    private options: BalancerOptions = {},
  ) {
    this.inner = createBalancer<T>(name, options);
  }

  get name(): string {
    return this.inner.name;
  }

  /** Whether the algorithm in force maps equal key hashes to equal backends (Maglev). */
  get hashesKeys(): boolean {
    return this.inner.hashesKeys === true;
  }

  /** `options`: the service's balancer options in the new configuration (Maglev's table size). */
  replace(name: string, options: BalancerOptions = this.options): void {
    const next = createBalancer<T>(name, options);
    this.options = options;
    next.update(this.snapshot);
    this.inner = next;
  }

  update(eligible: readonly T[]): void {
    this.snapshot = eligible;
    this.inner.update(eligible);
  }

  pick(hash?: number): PickResult<T> {
    return this.inner.pick(hash);
  }
}
