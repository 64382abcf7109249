/**
 * @module shell, "short-term forecasted least loaded server" (SARA III.C, eq. 9): the backend whose
 * damped load forecast is the lowest. The forecast itself (eq. 5-8) is computed per load vector by
 * load/shell-forecast.ts through load/load-manager.ts and written on the backend as `forecast`.
 */
import type { Candidate } from './balancer.js';
import { LeastScoreBalancer } from './balancer-least-score.js';

/**
 * SARA eq. 9, reading chosen: j = argmin_k l~_k, the node with the minimal damped estimate of eq. 8
 * (`forecast`). The OCR'd eq. 9 writes the minimum over l^ (the raw regression of eq. 6), but the
 * text says the node with "the minimal short term estimated load" is chosen after eq. 8 defines the
 * damped estimate as that estimate, and an undamped regression would make eq. 7-8 pointless.
 *
 * `forecast` is read live (the load manager rewrites it per vector; no `update` needed). Weight only
 * excludes (weight 0 = no new work), as for least-loaded. Ties rotate: the scan starts one past the
 * previous winner and a later candidate must be strictly lower to win, so with equal forecasts (all
 * 0 before the first vector) every backend gets its turn. O(n) per pick, no allocation.
 */
export class ShellBalancer<T extends Candidate> extends LeastScoreBalancer<T> {
  readonly name = 'shell';

  protected score(b: T): number {
    return b.forecast;
  }
}
