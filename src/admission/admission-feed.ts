/**
 * @module What feeds SA2C its loads: the dispatcher's own load l (the event loop's utilisation), the
 * smoothing of l and l_c into short-term estimates, and a periodic feed that hands the controller the
 * pair (l, l_c) on the clock.
 */
import { performance } from 'node:perf_hooks';
import type { EventLoopUtilization } from 'node:perf_hooks';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { AdmissionControl } from './admission-controller.js';
import { QUEUE_GAINS, QueueController, clusterDecisionLoad, delayLoad, median3 } from './admission-delay.js';

/**
 * l of SARA eq. 2, "the cluster head load", for a Node dispatcher: the share of time the event loop
 * spent running callbacks since the previous sample (performance.eventLoopUtilization), in [0, 1],
 * bounded by the CPU time the process actually got over the same wall time (dispatcherLoad). One
 * thread does all the forwarding, so a loop busy all the time is a dispatcher at capacity, whatever
 * the machine's CPU count says. The first sample covers the time since construction (the feed
 * discards it: it measures the dispatcher's start-up, not its forwarding).
 */
export class EventLoopLoad {
  private last: EventLoopUtilization = performance.eventLoopUtilization();
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();

  sample(): number {
    const now = performance.eventLoopUtilization();
    const utilization = performance.eventLoopUtilization(now, this.last).utilization;
    this.last = now;
    const cpu = process.cpuUsage();
    const at = performance.now();
    const cpuMs = (cpu.user - this.lastCpu.user + cpu.system - this.lastCpu.system) / 1000;
    const wallMs = at - this.lastAt;
    this.lastCpu = cpu;
    this.lastAt = at;
    return dispatcherLoad(utilization, cpuMs, wallMs);
  }
}

/**
 * min(event-loop utilisation, CPU time / wall time), clamped to [0, 1]. The utilisation alone counts
 * the time the process was descheduled in the middle of a callback as busy: on a machine shared with
 * other work it read 0.95 while the dispatcher used a few percent of a core (bench/overload, issue
 * 17), and SA2C degraded established sessions for a load that was not the dispatcher's. The CPU
 * time the process got cannot exceed the work it did; a saturated dispatcher reads near 1 in both.
 *   dispatcherLoad(0.95, 12, 100) = 0.12;  dispatcherLoad(0.4, 90, 100) = 0.4
 */
export function dispatcherLoad(utilization: number, cpuMs: number, wallMs: number): number {
  const share = wallMs > 0 ? cpuMs / wallMs : utilization;
  const x = share < utilization ? share : utilization;
  return x >= 0 && x <= 1 ? x : x > 1 ? 1 : 0;
}

/**
 * An exponentially weighted moving average over irregularly spaced samples with time constant
 * `smoothingMs`: each sample taken `elapsedMs` after the previous one moves the estimate by
 * w = 1 - exp(-elapsedMs / smoothingMs) of the way to it, so the weight of the past decays by e
 * every smoothingMs whatever the sampling period. The first sample is taken as it is; NaN samples
 * are skipped (the estimate stays); smoothingMs = 0 returns every sample unchanged.
 *
 * Why SA2C needs it: a load sample is a count over a short window (the agents' load.intervalMs), and
 * at moderate load its sampling noise is as wide as the whole T1..T2 band (a backend at half its
 * capacity reads anywhere from 0 to 1 over 100 ms windows; bench/overload's trace shows it). The
 * shell forecast (eq. 6-8) does not remove that noise: eq. 8 damps the regression towards the
 * measurement in proportion to the last forecast error, which is largest exactly when the series is
 * noisy. Fed raw, eq. 2 flips between "admit all" and "refuse all" from one sample to the next.
 */
export class LoadSmoother {
  private estimate = Number.NaN;

  /**
   * `riseMs` (default `smoothingMs`) is the time constant used while a sample is above the
   * estimate: shorter than `smoothingMs`, the estimate follows a rising load faster than a falling
   * one (issue 17: every new session admitted while the smoothed load climbs to T2 loads the cluster
   * for the rest of its life; a quick rise shrinks that cohort, a slow fall keeps refusing until
   * the admitted sessions have finished). 0 takes a rising sample as it is.
   */
  constructor(
    private readonly smoothingMs: number,
    private readonly riseMs: number = smoothingMs,
  ) {}

  next(sample: number, elapsedMs: number): number {
    if (Number.isNaN(sample)) return this.estimate;
    if (Number.isNaN(this.estimate)) return (this.estimate = sample);
    const tau = sample > this.estimate ? this.riseMs : this.smoothingMs;
    if (!(tau > 0)) return (this.estimate = sample);
    const w = 1 - Math.exp(-(elapsedMs > 0 ? elapsedMs : 0) / tau);
    return (this.estimate += w * (sample - this.estimate));
  }

  /** The current estimate (NaN before the first sample). */
  get value(): number {
    return this.estimate;
  }
}

/** Where the feed reads the loads from. */
export interface LoadSources {
  /** l_c: the short-term estimate of the cluster load (LoadManager.clusterForecast()). */
  cluster(): number;
  /** l: the dispatcher's own load (EventLoopLoad.sample()). */
  dispatcher(): number;
  /**
   * The standing queueing delay at the backends in ms (QueueDelay.sample()), NaN when unknown; absent
   * for a service without timed exchanges. Read once per interval.
   */
  delayMs?(): number;
}

/** How the feed smooths: time constants of the fall and of the rise (ms). */
export interface FeedSmoothing {
  readonly smoothingMs: number;
  readonly riseMs?: number;
}

/** What the feed does with the delay (config `admission`): its reading as a load, and its controller. */
export interface FeedDelay {
  /** Standing delay read as T1, and the queue controller's target. */
  readonly targetMs: number;
  /** Standing delay read as C. */
  readonly capacityMs: number;
  readonly t1: number;
  readonly c: number;
  /** QueueController's hold before the first refusal. */
  readonly holdMs: number;
  /** QueueController's gains (default QUEUE_GAINS). */
  readonly kp?: number;
  readonly ki?: number;
}

/**
 * Calls `control.update` every `intervalMs` (the load vectors' interval, `load.intervalMs`, is the
 * natural one: the estimate changes no faster) with l and l_c each smoothed by a LoadSmoother
 * (`admission.smoothingMs`; l_c rises with `admission.riseMs`). With a delay source and `delay`:
 * - l_q = delayLoad(median of the last three delays) smoothed as l_c, and the cluster load handed over is
 *   clusterDecisionLoad(l_c, l_q): min of the two once the delay signal exists, l_c alone before
 *   (what eq. 2's established row and the bands see);
 * - `newDrop`: the drop probability of new sessions of a QueueController on the raw delay, gated by
 *   the smoothed utilisation reaching T1 (it replaces eq. 2's new-session row on l_c).
 * The first dispatcher sample is read and discarded (it covers the dispatcher's start-up: up to
 * 0.6 measured in bench/overload), l counting as 0 in the first update. Returns the timer;
 * cancel() stops the feed.
 */
export function startAdmissionFeed(
  control: AdmissionControl,
  sources: LoadSources,
  clock: Clock,
  intervalMs: number,
  smoothing: number | FeedSmoothing = 0,
  delay?: FeedDelay,
): TimerHandle {
  const { smoothingMs, riseMs } = typeof smoothing === 'number' ? { smoothingMs: smoothing, riseMs: smoothing } : smoothing;
  // The dispatcher's own l keeps the symmetric smoothing: on a shared machine its event-loop
  // utilisation jumps whenever the process is descheduled mid-callback (bench/overload traced 1.0
  // for 200 ms at 3x), and a fast rise turned those jumps into drops of established traffic.
  const dispatcher = new LoadSmoother(smoothingMs);
  const cluster = new LoadSmoother(smoothingMs, riseMs);
  const delaySmoother = new LoadSmoother(smoothingMs, riseMs);
  const timed = sources.delayMs !== undefined && delay !== undefined;
  const queue = timed
    ? new QueueController({ targetMs: delay.targetMs, holdMs: delay.holdMs, kp: delay.kp ?? QUEUE_GAINS.kp, ki: delay.ki ?? QUEUE_GAINS.ki, slopeMs: QUEUE_GAINS.slopeMs })
    : null;
  let last = clock.now();
  let first = true;
  let d1 = Number.NaN;
  let d2 = Number.NaN;
  return clock.setInterval(() => {
    const now = clock.now();
    const elapsedMs = now - last;
    last = now;
    const lu = cluster.next(sources.cluster(), elapsedMs);
    let lc = lu;
    let newDrop: number | undefined;
    let delayMs = Number.NaN;
    if (queue !== null) {
      delayMs = sources.delayMs!();
      // l_q from the median of the last three readings, as the controller's: one reading far off (a
      // starved backend) took l_c past T3 for an interval and degraded established traffic.
      const med = Number.isNaN(delayMs) ? Number.NaN : median3(d2, d1, delayMs);
      if (!Number.isNaN(delayMs)) {
        d2 = d1;
        d1 = delayMs;
      }
      const lq = delaySmoother.next(delayLoad(med, delay!.targetMs, delay!.capacityMs, delay!.t1, delay!.c), elapsedMs);
      lc = clusterDecisionLoad(lu, lq);
      newDrop = queue.next(delayMs, !(lu < delay!.t1), elapsedMs);
    }
    const sample = sources.dispatcher();
    let l = 0;
    if (first) first = false;
    else l = dispatcher.next(sample, elapsedMs);
    const dispatcherLoadNow = Number.isNaN(l) ? 0 : l;
    control.update(
      newDrop === undefined
        ? { cluster: lc, dispatcher: dispatcherLoadNow }
        : { cluster: lc, dispatcher: dispatcherLoadNow, newDrop, utilisation: lu, delayMs },
    );
  }, intervalMs);
}
