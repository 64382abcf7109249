/**
 * @module The phi-accrual failure detector (Hayashibara, Défago, Yared, Katayama, "The phi accrual
 * failure detector", SRDS 2004), as Akka and Cassandra run it: instead of a fixed timeout, the
 * suspicion level phi grows with the time since the last heartbeat, measured against the
 * distribution of recent inter-arrival times. Suited to jittery networks, where a fixed n x delta
 * either flaps or is slow.
 */
import type { DetectorConfig } from '../config/schema.js';
import { DeadlineDetector } from './detector-deadline.js';

/**
 * The logistic approximation of the standard normal CDF (Bowling, Khasawneh, Kaewkuekool, Cho,
 * "A logistic approximation to the cumulative normal distribution", JIEM 2009), the one Akka uses:
 * F(y) ~ 1 / (1 + exp(-y (LOGISTIC_A + LOGISTIC_B y^2))), maximum absolute error 1.4e-4. It has a
 * closed form, is strictly increasing in y, and its inverse is a cubic (see `yForPhi`), so the time
 * at which phi crosses a threshold is computed once per heartbeat instead of polled.
 */
export const LOGISTIC_A = 1.5976;
export const LOGISTIC_B = 0.070566;

/** The standard deviation is floored at max(MIN_STD_DEV_MS, intervalMs / STD_DEV_FLOOR_DIVISOR). */
export const MIN_STD_DEV_MS = 1;
export const STD_DEV_FLOOR_DIVISOR = 10;

/**
 * phi = -log10(1 - F((elapsed - mean) / stdDev)), F the logistic CDF above. Computed in the form
 * Akka uses, which keeps precision on both sides of the mean: with e = exp(-y (A + B y^2)),
 * 1 - F = e / (1 + e).
 */
export function phiOf(elapsedMs: number, meanMs: number, stdDevMs: number): number {
  const y = (elapsedMs - meanMs) / stdDevMs;
  const e = Math.exp(-y * (LOGISTIC_A + LOGISTIC_B * y * y));
  return elapsedMs > meanMs ? -Math.log10(e / (1 + e)) : -Math.log10(1 - 1 / (1 + e));
}

/**
 * The standardised time y at which phi reaches `phi`: 1 - F(y) = p = 10^-phi means
 * A y + B y^3 = L with L = ln((1 - p) / p). That cubic is strictly increasing (A, B > 0), so it
 * has one real root, given by Cardano's formula for y^3 + P y + Q = 0 (P = A/B, Q = -L/B), then
 * polished by one Newton step.
 */
export function yForPhi(phi: number): number {
  const p = 10 ** -phi;
  const L = phi * Math.LN10 + Math.log1p(-p);
  const P = LOGISTIC_A / LOGISTIC_B;
  const Q = -L / LOGISTIC_B;
  const root = Math.sqrt((Q / 2) ** 2 + (P / 3) ** 3);
  let y = Math.cbrt(-Q / 2 + root) + Math.cbrt(-Q / 2 - root);
  y -= (LOGISTIC_A * y + LOGISTIC_B * y ** 3 - L) / (LOGISTIC_A + 3 * LOGISTIC_B * y * y);
  return y;
}

/**
 * `suspect` when phi >= phiThreshold / 2, `down` when phi >= phiThreshold. Since phi is increasing
 * in the elapsed time, each threshold is a time: mean + y(threshold) x stdDev after the last
 * heartbeat, fixed at each heartbeat (the statistics only change then).
 *
 * - The window holds the last phiWindow inter-arrival times and starts with one sample of
 *   intervalMs, so the first heartbeat already gives a usable mean (the bootstrap sample ages out
 *   after phiWindow real ones).
 * - The standard deviation is floored at max(1 ms, intervalMs / 10): a perfectly regular sender has
 *   stdDev 0, and phi would jump from 0 to infinity the instant one heartbeat is a microsecond late.
 * - A gap longer than n x intervalMs is an outage, not a sample of the network's jitter (Cassandra
 *   drops such intervals too): counting it would make the detector blind for the next phiWindow
 *   heartbeats after every recovery.
 * - Before the first heartbeat the push rule holds: suspect, then down n x intervalMs after
 *   creation or reset (there is no last heartbeat to measure phi from).
 */
export class PhiAccrualDetector extends DeadlineDetector {
  private readonly samples: Float64Array;
  private count = 0;
  private head = 0;
  private sum = 0;
  private sumSquares = 0;
  private readonly intervalMs: number;
  private readonly maxSampleMs: number;
  private readonly minStdDevMs: number;
  private readonly ySuspect: number;
  private readonly yDown: number;

  constructor(cfg: Pick<DetectorConfig, 'intervalMs' | 'n' | 'phiThreshold' | 'phiWindow'> & Partial<Pick<DetectorConfig, 'starvationMemoryMs'>>, now: number) {
    super(cfg, now);
    this.samples = new Float64Array(cfg.phiWindow);
    this.intervalMs = cfg.intervalMs;
    this.maxSampleMs = cfg.n * cfg.intervalMs;
    this.minStdDevMs = Math.max(MIN_STD_DEV_MS, cfg.intervalMs / STD_DEV_FLOOR_DIVISOR);
    this.ySuspect = yForPhi(cfg.phiThreshold / 2);
    this.yDown = yForPhi(cfg.phiThreshold);
    this.add(this.intervalMs);
  }

  /** Mean inter-arrival time of the window, ms. */
  mean(): number {
    return this.sum / this.count;
  }

  /** Population standard deviation of the window, floored (see the class comment), ms. */
  stdDev(): number {
    const mean = this.mean();
    const variance = Math.max(0, this.sumSquares / this.count - mean * mean);
    return Math.max(Math.sqrt(variance), this.minStdDevMs);
  }

  /** The suspicion level at `now`; null before the first heartbeat. */
  phi(now: number): number | null {
    if (this.last === null) return null;
    return phiOf(now - this.last, this.mean(), this.stdDev());
  }

  protected arrived(now: number, previous: number | null): { suspectAfterMs: number; downAfterMs: number } {
    if (previous !== null && now - previous <= this.maxSampleMs) this.add(now - previous);
    const mean = this.mean();
    const stdDev = this.stdDev();
    return { suspectAfterMs: mean + this.ySuspect * stdDev, downAfterMs: mean + this.yDown * stdDev };
  }

  protected override forget(): void {
    this.count = 0;
    this.head = 0;
    this.sum = 0;
    this.sumSquares = 0;
    this.add(this.intervalMs);
  }

  private add(sampleMs: number): void {
    const capacity = this.samples.length;
    if (this.count === capacity) {
      const old = this.samples[this.head]!;
      this.sum -= old;
      this.sumSquares -= old * old;
    } else {
      this.count++;
    }
    this.samples[this.head] = sampleMs;
    this.sum += sampleMs;
    this.sumSquares += sampleMs * sampleMs;
    this.head = (this.head + 1) % capacity;
    // Running sums drift by rounding; rebuild them once per lap of the ring (amortised O(1)).
    if (this.head === 0) {
      this.sum = 0;
      this.sumSquares = 0;
      for (let i = 0; i < this.count; i++) {
        const x = this.samples[i]!;
        this.sum += x;
        this.sumSquares += x * x;
      }
    }
  }
}
