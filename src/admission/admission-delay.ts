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
    this.base = base;
    return m - base;
  }

  /** The no-queue latency of the window (ms) as of the last sample; NaN before the first. */
  get baseline(): number {
    return this.base;
  }

  private base = Number.NaN;
}

/**
 * The delay a request sent now will see, by Little's law: requests in flight at the backends over
 * the rate they complete (`completed` in the last `intervalMs`), in ms. The latency of completed
 * requests tells of a queue only once requests have waited through it — late by the delay itself,
 * so a queue growing at 1 s per second (twice capacity) reads 0.5 s after the fact and the sessions
 * admitted meanwhile miss their deadlines (measured in bench/overload); the count in flight grows
 * at once. No completion in the interval counts as one.
 *   littleDelay(30, 24, 100) = 125 ms (30 in flight, 240 completed/s)
 */
export function littleDelay(inflight: number, completed: number, intervalMs: number): number {
  if (!(inflight > 0)) return 0;
  return (inflight * intervalMs) / (completed > 1 ? completed : 1);
}

/**
 * The queue ahead of a request (HTTP) or an initial INVITE (SIP) sent now, in ms: the larger of what
 * the fastest one completed in the interval waited (StandingDelay) and what Little's law says of
 * those in flight (the first lags by the delay itself), both less the no-queue baseline.
 * `record` takes each completion's latency; `sample(inflight)` closes the interval of `intervalMs`.
 * NaN when nothing completed and no baseline is known yet. Constant memory.
 *   record(20), record(30), sample(0) = 0 (baseline 20);
 *   record(50), record(60), sample(12) = max(50 - 20, 12 x 100 / 2 - 20) = 580
 */
export class QueueDelay {
  private readonly standing: StandingDelay;
  private completed = 0;

  constructor(windowIntervals: number, private readonly intervalMs: number) {
    this.standing = new StandingDelay(windowIntervals);
  }

  record(latencyMs: number): void {
    this.standing.record(latencyMs);
    this.completed++;
  }

  sample(inflight: number): number {
    const waited = this.standing.sample();
    const little = littleDelay(inflight, this.completed, this.intervalMs) - this.standing.baseline;
    this.completed = 0;
    if (Number.isNaN(waited)) return Number.isNaN(little) ? Number.NaN : Math.max(0, little);
    return little > waited ? little : waited;
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
