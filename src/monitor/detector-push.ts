/**
 * @module The push heartbeat detector (SARA Fig. 7): the agent announces itself every intervalMs;
 * silence for n x intervalMs is a crash.
 */
import type { DetectorConfig } from '../config/schema.js';
import { DeadlineDetector } from './detector-deadline.js';

/**
 * One heartbeat may be late without raising suspicion: the backend becomes `suspect` only once a
 * heartbeat is half an interval overdue, i.e. 1.5 x intervalMs after the last one.
 */
export const LATE_FACTOR = 1.5;

/**
 * A gap between two heartbeats of STALL_GAP_INTERVALS up to STALL_MAX_INTERVALS intervals is a stall
 * that ended; a longer one is an outage (a restart, a cut link healed), which teaches nothing about
 * the next silence: detection after it is as fast as before (the detector contract).
 */
export const STALL_GAP_INTERVALS = 2;
export const STALL_MAX_INTERVALS = 10;
/** While a stall is remembered, the down timeout is at least this many times its gap. */
export const STALL_TOLERANCE = 1.5;

/**
 * SARA Fig. 7 ("After n*d return Crashed"): `up` until LATE_FACTOR x intervalMs after the last
 * heartbeat, `suspect` until n x intervalMs, then `down`. With n = 1 there is no suspect phase (the
 * down time comes first). The boundaries belong to the worse verdict (see DeadlineDetector).
 *
 * Stall memory (issue 17, the "raise n when stalls are seen" fallback): a heartbeat that ends a
 * gap of STALL_GAP_INTERVALS to STALL_MAX_INTERVALS x intervalMs proves the backend was alive through a silence that
 * long — its agent or the path was starved (two saturated cores; a hypervisor taking the vCPU).
 * For `stallMemoryMs` after it the down timeout is max(n x intervalMs, STALL_TOLERANCE x the longest
 * such gap): a machine that stalls once stalls again, and a second stall of the same length is not
 * a crash. A quiet machine never has such a gap and keeps n x intervalMs exactly; the memory expires
 * so one bad minute does not slow detection for good.
 *   intervalMs 10, n 3: heartbeats at 0 and 50 (a 50 ms stall): down at 50 + 75, not 50 + 30.
 */
export class PushDetector extends DeadlineDetector {
  private readonly suspectAfterMs: number;
  private readonly downAfterMs: number;
  private readonly stallGapMs: number;
  private readonly stallMaxMs: number;
  private readonly stallMemoryMs: number;
  /** The longest stall gap remembered, and when it ended (clock ms); 0 / -Infinity: none. */
  private stallGap = 0;
  private stallAt = -Infinity;

  constructor(cfg: Pick<DetectorConfig, 'intervalMs' | 'n'> & Partial<Pick<DetectorConfig, 'stallMemoryMs' | 'starvationMemoryMs'>>, now: number) {
    super(cfg, now);
    this.downAfterMs = cfg.n * cfg.intervalMs;
    this.suspectAfterMs = Math.min(LATE_FACTOR * cfg.intervalMs, this.downAfterMs);
    this.stallGapMs = STALL_GAP_INTERVALS * cfg.intervalMs;
    this.stallMaxMs = STALL_MAX_INTERVALS * cfg.intervalMs;
    this.stallMemoryMs = cfg.stallMemoryMs ?? 0;
  }

  protected arrived(now: number, previous: number | null): { suspectAfterMs: number; downAfterMs: number } {
    if (this.stallMemoryMs > 0) {
      if (now - this.stallAt >= this.stallMemoryMs) this.stallGap = 0;
      const gap = previous === null ? 0 : now - previous;
      if (gap >= this.stallGapMs && gap <= this.stallMaxMs && gap >= this.stallGap) {
        this.stallGap = gap;
        this.stallAt = now;
      }
    }
    const tolerated = STALL_TOLERANCE * this.stallGap;
    return { suspectAfterMs: this.suspectAfterMs, downAfterMs: tolerated > this.downAfterMs ? tolerated : this.downAfterMs };
  }

  protected override forget(): void {
    this.stallGap = 0;
    this.stallAt = -Infinity;
  }
}
