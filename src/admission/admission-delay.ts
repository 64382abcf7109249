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
 * The queue ahead of a request (HTTP) or an initial INVITE (SIP) sent now to one backend, in ms: the
 * larger of what the fastest one completed in the interval waited (StandingDelay) and what Little's
 * law says of those in flight (the first lags by the delay itself), both less the no-queue baseline.
 * `record` takes each completion's latency; `sample(inflight, elapsedMs)` closes the interval, which
 * lasted `elapsedMs` (the feed's timer runs late when the dispatcher is starved of CPU: Little's law
 * divides by the time that actually passed, and the timer's lateness past `intervalMs`, which every
 * latency timed in that interval may include, is taken off the fastest one's). An idle backend
 * (nothing in flight, nothing completed) has no queue: 0. Before any completion (no baseline yet)
 * Little's law alone, with a baseline of 0: a backend that answers nothing while work piles up is the
 * worst queue of all (bench/overload traced SA2C admitting everything for a second at 3x because this
 * was NaN, "no evidence"). Constant memory.
 *
 * Little's law alone was tried (the sojourn time lags a draining queue: every request served then
 * arrived into a longer queue than the one before): it under-read the queue at 3x, where clients give
 * up on their requests and the count in flight with them (bench/overload: 321 of 385 sessions
 * admitted, 13 % of them completed). The larger of the two is kept; the controller's integral does not
 * rise while the smoothed reading falls, which bounds what the lag costs.
 *   record(20), record(30), sample(0, 100) = 0 (baseline 20);
 *   record(50), record(60), sample(12, 100) = max(50 - 20, 12 x 100 / 2 - 20) = 580
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

  sample(inflight: number, elapsedMs: number = this.intervalMs): number {
    const idle = this.completed === 0 && !(inflight > 0);
    const lag = elapsedMs > this.intervalMs ? elapsedMs - this.intervalMs : 0;
    const waited = this.standing.sample() - lag;
    const base = this.standing.baseline;
    const little = littleDelay(inflight, this.completed, elapsedMs > 0 ? elapsedMs : this.intervalMs) - (Number.isNaN(base) ? 0 : base);
    this.completed = 0;
    if (idle) return 0;
    if (Number.isNaN(waited)) return Math.max(0, little);
    const d = little > waited ? little : waited;
    return d > 0 ? d : 0;
  }
}

/**
 * The standing delay of the cluster for a new session: the smallest of its backends' (NaN ones,
 * unknown, left out; NaN when all are). A new session goes to the least loaded backend, so a queue
 * standing on one backend that holds its pinned sessions (the others idle) is no reason to refuse
 * one: bench/overload traced SA2C refusing every new session for 2 s while two of three backends
 * were idle, because the cluster-wide Little's law read the one backend's queue.
 *   minDelay([300, 0, NaN]) = 0;  minDelay([NaN]) = NaN
 */
export function minDelay(delays: readonly number[]): number {
  let m = Number.NaN;
  for (const d of delays) if (!Number.isNaN(d) && !(d >= m)) m = d;
  return m;
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

/** The queue controller's parameters (config `admission`: delayTargetMs, delayHoldMs). */
export interface QueueControlParams {
  /** The standing delay (ms) the controller holds the queue at. */
  readonly targetMs: number;
  /** How long (ms) the delay must stay above the target before the first refusal. */
  readonly holdMs: number;
  /** Proportional gain: drop probability per target's worth of delay above the target. */
  readonly kp: number;
  /** Integral gain: drop probability per second per target's worth of delay above the target. */
  readonly ki: number;
  /** Time constant (ms) of the smoothed delay whose slope gates the integral's rise. */
  readonly slopeMs: number;
}

/**
 * The median of three delay samples, the oldest ones possibly NaN (not yet taken): with one of them,
 * the smaller of the two known; with none, the newest. A single reading far off (a backend or the
 * dispatcher starved of CPU for a moment: 2-9 s read once in bench/overload) moves nothing.
 *   median3(NaN, NaN, 900) = 900;  median3(NaN, 100, 900) = 100;  median3(100, 9000, 120) = 120
 */
export function median3(a: number, b: number, c: number): number {
  if (Number.isNaN(a)) return Number.isNaN(b) ? c : b < c ? b : c;
  if (Number.isNaN(b)) return a < c ? a : c;
  return Math.max(Math.min(a, b), Math.min(Math.max(a, b), c));
}

/** The gains bench/overload was run with (README, "SA2C admission control"). */
export const QUEUE_GAINS = { kp: 0.3, ki: 0.5, slopeMs: 200 } as const;

/**
 * The drop probability of new sessions that holds the standing queue at `targetMs` (issue 17): a
 * proportional-integral controller on the error e = (d - target) / target, d the standing delay of
 * QueueDelay, instead of eq. 2's proportional band on the delay. A proportional band needs a larger
 * error to drop more, so the further past capacity the longer the queue it settles at (300-500 ms at
 * 2x in bench/overload, and 5-step sessions then crossed their 1 s deadline); the integral term
 * settles where the admitted load matches what the backends complete, whatever the overload, with the
 * queue at the target.
 *
 *   p = clamp(I + kp * e, 0, 1),  e = clamp((d - target) / target, -1, 1 / kp)
 *   I <- clamp(I + ki * min(e, 1) * dt, 0, 1)   (dt in s)
 *
 * d is the median of the last three samples (median3), so one reading far off moves nothing, and the
 * integral rises at most ki per second: a long queue is drained by the proportional term, which
 * refuses everything from 1 + 1/kp targets of delay on, and undoes itself as the queue goes.
 *
 * Three rules around that law:
 * - Hold: nothing is refused until d has stayed above the target for `holdMs`, and for two samples
 *   at least (a queue at exactly capacity is a random walk, its short excursions past the target are
 *   not overload; and one sample taken after the dispatcher was starved of CPU for longer than the
 *   hold is one observation, not a standing queue). A median delay of 1 + 1/kp targets or more
 *   (where the proportional term alone refuses everything) skips the hold: no random walk at capacity
 *   gets there, and at 3x the calls admitted during the hold were a second of queue that timed out
 *   (bench/overload, SIP). Once refusing,
 *   the controller runs until I is back at 0 with d at or under the target (hysteresis).
 * - The integral rises only while the smoothed delay is not falling: once the queue shrinks, the
 *   admitted rate is already under what the backends complete, and a larger I would only refuse, after
 *   the queue has drained, sessions the backends could complete (the integral wound up while a 3x
 *   queue drained is what refused almost everything in bench/overload). The proportional term drains
 *   the queue; I keeps the admitted rate at the backends' throughput.
 * - `gate` false (the cluster's utilisation is under T1: a slow backend, not overload) counts as an
 *   empty queue (e = -1) and never starts refusing; the reading still enters the median's history
 *   (at 3x the first readings come while the utilisation estimate climbs to T1).
 * An unknown delay (NaN) leaves the drop probability as it is.
 *
 * With target 100 ms, hold 200 ms, kp 0.2, ki 0.5 (the defaults are kp 0.3, ki 0.5), steps of 100 ms: d = 300 ms three times:
 * 0 (held 100 ms), then (held 200 ms) e = 2, I = 0.5 x 1 x 0.1 = 0.05, p = 0.05 + 0.2 x 2 = 0.45;
 * then I = 0.1, p = 0.5.
 */
export class QueueController {
  private integral = 0;
  private overMs = 0;
  private overSamples = 0;
  private active = false;
  private p = 0;
  private smooth = Number.NaN;

  constructor(private readonly params: QueueControlParams) {
    if (!(params.targetMs > 0)) throw new RangeError(`targetMs: expected more than 0, received ${params.targetMs}`);
  }

  /** One interval of `elapsedMs` ending with standing delay `delayMs`: the drop probability for new sessions. */
  next(delayMs: number, gate: boolean, elapsedMs: number): number {
    if (Number.isNaN(delayMs)) return this.p;
    const { targetMs, holdMs, kp, ki, slopeMs } = this.params;
    const dt = elapsedMs > 0 ? elapsedMs : 0;
    const d = gate ? median3(this.prev2, this.prev1, delayMs) : 0;
    this.prev2 = this.prev1;
    this.prev1 = delayMs;
    const before = this.smooth;
    if (Number.isNaN(before) || !(slopeMs > 0)) this.smooth = d;
    else this.smooth += (1 - Math.exp(-dt / slopeMs)) * (d - before);
    const falling = this.smooth < before;
    let e = (d - targetMs) / targetMs;
    if (e < -1) e = -1;
    else if (kp > 0 && e > 1 / kp) e = 1 / kp;
    this.overMs = e > 0 ? this.overMs + dt : 0;
    this.overSamples = e > 0 ? this.overSamples + 1 : 0;
    if (!this.active) {
      const held = holdMs <= 0 || e >= 1 / kp || (this.overMs >= holdMs && this.overSamples >= 2);
      if (!(e > 0 && held)) return (this.p = 0);
      this.active = true;
    }
    if (e < 0 || !falling) {
      const i = this.integral + (ki * (e > 1 ? 1 : e) * dt) / 1000;
      this.integral = i > 1 ? 1 : i > 0 ? i : 0;
    }
    if (this.integral === 0 && e <= 0) {
      this.active = false;
      return (this.p = 0);
    }
    const p = this.integral + kp * e;
    return (this.p = p > 1 ? 1 : p > 0 ? p : 0);
  }

  private prev1 = Number.NaN;
  private prev2 = Number.NaN;

  /** The integral term (diagnosis). */
  get integralTerm(): number {
    return this.integral;
  }
}
