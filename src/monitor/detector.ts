/**
 * @module The failure-detector contract. A detector turns a stream of heartbeats (agent
 * announcements, or pull replies) into a verdict on one backend, and says when that verdict would
 * next worsen so that HealthMonitor can set one timer per backend instead of polling. The detectors
 * implement it; detector-registry.ts names them (this file imports none of them).
 */
import type { DetectorConfig } from '../config/schema.js';

/** `suspect` is still eligible (one late heartbeat must not move traffic); `down` is not. */
export type Verdict = 'up' | 'suspect' | 'down';

/**
 * One backend's detector. Times are the monotonic clock's milliseconds (`Clock.now()`); the
 * detector holds no timer and never reads the clock itself, so it is a pure function of the
 * heartbeat times it was given.
 */
export interface Detector {
  /**
   * A proof of life arrived at `now`. `starved`: its agent says the silence it ends was its own
   * starvation (flag bit 6: it waited for a CPU), not a stop or a cut — evidence the detector may
   * use to tolerate the next such silence for a while (DeadlineDetector's starvation memory).
   */
  heartbeat(now: number, starved?: boolean): void;
  verdict(now: number): Verdict;
  /**
   * Clock time at which the verdict would next worsen without a heartbeat; `Infinity` once `down`.
   * Always > `now`, and `verdict` is the same for every time in [now, nextDeadline(now)). At the
   * deadline itself the worse verdict holds, so a timer set for it sees the transition.
   */
  nextDeadline(now: number): number;
  /**
   * Forget every heartbeat: the detector behaves as if created at `now` (suspect, then down
   * n x intervalMs later). Takes `now` because the start-up grace period is measured from it.
   */
  reset(now: number): void;
  /**
   * The detector's own process was stalled for `ms` (its deadline timer fired that late): push the
   * pending deadlines back by as much. Time the watcher did not run is not evidence against the
   * watched (issue 17: on a saturated machine the dispatcher and the agent starve together).
   * A heartbeat afterwards sets the deadlines afresh, as always.
   */
  postpone(ms: number): void;
  /** The starved silence the down timeout currently tolerates (starvation memory), ms; 0: none. */
  starvationGapMs(): number;
}

/** The detectors that have a heartbeat stream; `passive` has none (HealthMonitor keeps its rules). */
export type DetectorType = Exclude<DetectorConfig['type'], 'passive'>;

export type HeartbeatDetectorConfig = DetectorConfig & { readonly type: DetectorType };
