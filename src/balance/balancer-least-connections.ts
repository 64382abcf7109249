/**
 * @module Least connections: the backend with the least in-flight work per unit of weight.
 */
import type { Candidate } from './balancer.js';
import { LeastScoreBalancer } from './balancer-least-score.js';

/**
 * Score `active / weight`: in-flight work is known the moment it starts, so this balancer never
 * acts on stale information (bench/balance shows it beating the load-sample balancers). Division
 * is exact enough: IEEE division is correctly rounded, so equal ratios (2/3, 4/6) tie.
 */
export class LeastConnectionsBalancer<T extends Candidate> extends LeastScoreBalancer<T> {
  readonly name = 'least-connections';

  protected score(b: T): number {
    return b.active / b.weight;
  }
}
