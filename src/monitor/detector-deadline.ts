/**
 * @module The base of every detector here: after each heartbeat it fixes two absolute clock times,
 * `suspectAt` and `downAt`, and the verdict is read off them. Subclasses only say how far after a
 * heartbeat those times lie (fixed for push/pull, from the inter-arrival statistics for phi-accrual).
 */
import type { DetectorConfig } from '../config/schema.js';
import type { Detector, Verdict } from './detector.js';

/** A starved heartbeat teaches a gap of at least this many intervals (a shorter one is a late heartbeat). */
export const STARVED_GAP_INTERVALS = 2;
/** The longest starved gap remembered, in intervals: the tolerance never exceeds 1.5x this. */
export const STARVED_MAX_INTERVALS = 100;
/** While a starved gap is remembered, the down timeout is at least this many times it. */
export const STARVED_TOLERANCE = 1.5;

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
  private readonly starvedMinGapMs: number;
  private readonly starvedMaxGapMs: number;
  private readonly starvationMemoryMs: number;
  /** The longest starved gap remembered and when the latest starved heartbeat came; 0: none. */
  private starvedGap = 0;
  private starvedAt = -Infinity;

  constructor(cfg: Pick<DetectorConfig, 'intervalMs' | 'n'> & Partial<Pick<DetectorConfig, 'starvationMemoryMs'>>, now: number) {
    this.startupGraceMs = cfg.n * cfg.intervalMs;
    this.starvedMinGapMs = STARVED_GAP_INTERVALS * cfg.intervalMs;
    this.starvedMaxGapMs = STARVED_MAX_INTERVALS * cfg.intervalMs;
    this.starvationMemoryMs = cfg.starvationMemoryMs ?? 0;
    // Not reset(): a subclass's fields do not exist yet while this constructor runs.
    this.downAt = now + this.startupGraceMs;
  }

  heartbeat(now: number, starved = false): void {
    // A monotonic clock does not go back; if a caller's `now` does, the newer heartbeat stands.
    if (this.last !== null && now < this.last) return;
    const { suspectAfterMs, downAfterMs } = this.arrived(now, this.last);
    const tolerated = this.starvation(now, starved);
    this.last = now;
    this.suspectAt = now + suspectAfterMs;
    this.downAt = now + (tolerated > downAfterMs ? tolerated : downAfterMs);
  }

  /**
   * Starvation memory (issue 17, the automatic "raise n when stalls are seen" fallback): a heartbeat
   * its agent flags as starved, ending a gap of STARVED_GAP_INTERVALS intervals or more, proves the
   * backend lived through that silence and that the silence was CPU starvation (the agent waited on
   * the run queue), not a stop or a cut. For `starvationMemoryMs` after the latest such heartbeat
   * the down timeout is at least STARVED_TOLERANCE x the longest such gap (capped at
   * STARVED_MAX_INTERVALS intervals): a machine that starves its agent once does so again. A stopped
   * agent or a cut link never sends the flag, so their detection keeps the detector's own timeout;
   * the memory expires, and a quiet machine's detection is n x delta again.
   *   intervalMs 10, n 3: a starved heartbeat ending a 60 ms gap: down 90 ms after each heartbeat.
   * Returns the down timeout the memory asks for (0: none).
   */
  private starvation(now: number, starved: boolean): number {
    if (this.starvationMemoryMs <= 0) return 0;
    if (now - this.starvedAt >= this.starvationMemoryMs) this.starvedGap = 0;
    const gap = this.last === null ? 0 : now - this.last;
    if (starved && gap >= this.starvedMinGapMs) {
      const capped = gap < this.starvedMaxGapMs ? gap : this.starvedMaxGapMs;
      if (capped > this.starvedGap) this.starvedGap = capped;
      this.starvedAt = now;
    }
    return STARVED_TOLERANCE * this.starvedGap;
  }

  /** The starved gap the down timeout currently tolerates, ms (0: none). */
  starvationGapMs(): number {
    return this.starvedGap;
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
    this.starvedGap = 0;
    this.starvedAt = -Infinity;
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
