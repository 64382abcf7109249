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
 * SARA Fig. 7 ("After n*d return Crashed"): `up` until LATE_FACTOR x intervalMs after the last
 * heartbeat, `suspect` until n x intervalMs, then `down`. With n = 1 there is no suspect phase (the
 * down time comes first). The boundaries belong to the worse verdict (see DeadlineDetector).
 */
export class PushDetector extends DeadlineDetector {
  private readonly suspectAfterMs: number;
  private readonly downAfterMs: number;

  constructor(cfg: Pick<DetectorConfig, 'intervalMs' | 'n'>, now: number) {
    super(cfg, now);
    this.downAfterMs = cfg.n * cfg.intervalMs;
    this.suspectAfterMs = Math.min(LATE_FACTOR * cfg.intervalMs, this.downAfterMs);
  }

  protected arrived(): { suspectAfterMs: number; downAfterMs: number } {
    return { suspectAfterMs: this.suspectAfterMs, downAfterMs: this.downAfterMs };
  }
}
