/**
 * @module The standing queueing delay of a service, measured by the dispatcher from the latencies of
 * the exchanges it forwards: what SA2C's default decision load is taken on besides utilisation
 * (issue 17: utilisation alone cannot tell a cluster at capacity that keeps up from one twice over
 * it, both read 1).
 */

/**
 * Standing queue delay, CoDel's reading of a queue (Nichols and Jacobson, "Controlling Queue Delay",
 * 2012): the minimum latency over an interval is what even the luckiest request waited, so a
 * minimum above the service's baseline is a queue that did not drain during that interval — a burst
 * raises the mean and the tail but not the minimum. The baseline is the lowest interval minimum of
 * the last `windowIntervals` intervals (the service time with no queue in front of it, including the
 * network and the reply's transfer); the standing delay is the interval minimum less that baseline.
 *
 * `record` takes one latency (ms); `sample` closes the interval and returns its standing delay (ms),
 * or NaN when nothing completed in it (no evidence either way: the caller keeps its estimate).
 * Constant memory: one number per interval of the window.
 */
export class StandingDelay {
  private min = Infinity;
  private readonly mins: Float64Array;
  private next = 0;
  private filled = 0;

  constructor(windowIntervals: number) {
    if (!(windowIntervals >= 1)) throw new RangeError(`windowIntervals: expected at least 1, received ${windowIntervals}`);
    this.mins = new Float64Array(Math.floor(windowIntervals));
  }

  record(latencyMs: number): void {
    if (latencyMs >= 0 && latencyMs < this.min) this.min = latencyMs;
  }

  sample(): number {
    const m = this.min;
    this.min = Infinity;
    if (m === Infinity) return Number.NaN;
    this.mins[this.next] = m;
    this.next = (this.next + 1) % this.mins.length;
    if (this.filled < this.mins.length) this.filled++;
    let base = Infinity;
    for (let i = 0; i < this.filled; i++) if (this.mins[i]! < base) base = this.mins[i]!;
    return m - base;
  }
}

/**
 * The delay as a fraction of capacity, comparable with SA2C's thresholds, piecewise linear: 0 at no
 * standing delay, T1 at `targetMs` (the delay a service tolerates before it sheds new sessions),
 * C at `capacityMs` (the delay at which it refuses everything), clamped to [0, 1]. NaN stays NaN.
 * Why two segments: a queue integrates the excess load, and the sessions admitted now load the
 * cluster for their whole life, so the delay answers a refusal late; a band T1..T2 only a few
 * milliseconds of delay wide is a gain that makes the loop swing between admitting everything and
 * refusing everything (measured in bench/overload). Spread over target..capacity it is gentle.
 *   delayLoad(10, 20, 1000, 0.6, 0.95) = 0.3;  delayLoad(510, 20, 1000, 0.6, 0.95) = 0.775
 */
export function delayLoad(standingMs: number, targetMs: number, capacityMs: number, t1: number, c: number): number {
  if (Number.isNaN(standingMs)) return Number.NaN;
  if (!(standingMs > 0)) return 0;
  if (standingMs <= targetMs) return (t1 * standingMs) / targetMs;
  if (standingMs >= capacityMs) {
    // Beyond C up to 1 at twice capacityMs (everything is refused from C on either way).
    const over = (standingMs - capacityMs) / capacityMs;
    return over >= 1 ? 1 : c + (1 - c) * over;
  }
  return t1 + ((c - t1) * (standingMs - targetMs)) / (capacityMs - targetMs);
}

/**
 * The cluster load SA2C decides on when the service has a delay signal: min(l_c, l_q). Utilisation
 * l_c near 1 with no standing queue is a cluster at capacity that keeps up (refusing there only loses
 * sessions); a standing queue with low utilisation is a slow backend, not overload (refusing does not
 * shorten it). Only both together are overload, and the smaller says how far. Without a delay
 * signal (NaN: no exchange completed, or a protocol without replies to time) l_c alone decides.
 */
export function clusterDecisionLoad(utilisation: number, delay: number): number {
  if (Number.isNaN(delay)) return utilisation;
  if (Number.isNaN(utilisation)) return delay;
  return utilisation < delay ? utilisation : delay;
}
