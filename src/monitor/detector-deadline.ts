/**
 * @module The base of every detector here: after each heartbeat it fixes two absolute clock times,
 * `suspectAt` and `downAt`, and the verdict is read off them. Subclasses only say how far after a
 * heartbeat those times lie (fixed for push/pull, from the inter-arrival statistics for phi-accrual).
 */
import type { DetectorConfig } from '../config/schema.js';
import type { Detector, Verdict } from './detector.js';

/**
 * Why absolute times rather than comparing `now - last` with a threshold: `nextDeadline` returns
 * `last + threshold` and a timer fires at exactly that value; comparing `now >= last + threshold`
 * with the very same double makes the verdict at the deadline the worse one, whereas
 * `(last + threshold) - last` can round just below `threshold` and leave the timer re-arming at the
 * same instant forever.
 */
export abstract class DeadlineDetector implements Detector {
  /** Clock time of the latest heartbeat; null before the first one. */
  protected last: number | null = null;
  private suspectAt = -Infinity;
  private downAt = Infinity;
  /** n x intervalMs: how long a backend that never spoke is given before it is down. */
  private readonly startupGraceMs: number;

  constructor(cfg: Pick<DetectorConfig, 'intervalMs' | 'n'>, now: number) {
    this.startupGraceMs = cfg.n * cfg.intervalMs;
    // Not reset(): a subclass's fields do not exist yet while this constructor runs.
    this.downAt = now + this.startupGraceMs;
  }

  heartbeat(now: number): void {
    // A monotonic clock does not go back; if a caller's `now` does, the newer heartbeat stands.
    if (this.last !== null && now < this.last) return;
    const { suspectAfterMs, downAfterMs } = this.arrived(now, this.last);
    this.last = now;
    this.suspectAt = now + suspectAfterMs;
    this.downAt = now + downAfterMs;
  }

  verdict(now: number): Verdict {
    if (now >= this.downAt) return 'down';
    if (now >= this.suspectAt) return 'suspect';
    return 'up';
  }

  nextDeadline(now: number): number {
    if (now < this.suspectAt) return this.suspectAt;
    if (now < this.downAt) return this.downAt;
    return Infinity;
  }

  /** Before any heartbeat the backend is `suspect` (unproven) and `down` n x intervalMs later. */
  reset(now: number): void {
    this.last = null;
    this.suspectAt = -Infinity;
    this.downAt = now + this.startupGraceMs;
    this.forget();
  }

  postpone(ms: number): void {
    if (!(ms > 0)) return;
    if (this.suspectAt !== -Infinity) this.suspectAt += ms;
    if (this.downAt !== Infinity) this.downAt += ms;
  }

  /** Clock time of the latest heartbeat, or null. */
  lastHeartbeat(): number | null {
    return this.last;
  }

  /**
   * A heartbeat arrived at `now` (the previous one at `previous`, null for the first): how long
   * after it the verdict becomes suspect, and down. `suspectAfterMs <= downAfterMs`.
   */
  protected abstract arrived(now: number, previous: number | null): { suspectAfterMs: number; downAfterMs: number };

  /** Drop any statistics (reset). */
  protected forget(): void {}
}
