/**
 * @module SA2C, the session-aware admission control of SARA III.B, as pure functions: the drop
 * probability p(l, l_c) (eq. 2), the threshold moves (eq. 4) and the rejection timing (eq. 3). No
 * state and no clock here; admission-controller.ts holds the thresholds and runs them on time.
 *
 * The seed's OCR of eq. 2 and eq. 4 is damaged. Each function states the reading implemented and
 * why; the README's design notes repeat them.
 *
 * Every load and threshold is a fraction of capacity in [0, 1]. `x` below is always
 * max(l, l_c): the worse of the dispatcher's own load l and the (estimated) cluster load l_c, as
 * every row of eq. 2 and both lines of eq. 4 are evaluated at max(l^i, l^i_c).
 */
import type { AdmissionBand } from '../core/diagnostics.js';

/** T1 < T2 < T3 < C (SARA Fig. 4): fractions of capacity. */
export interface Thresholds {
  readonly t1: number;
  readonly t2: number;
  readonly t3: number;
  readonly c: number;
}

/**
 * The five load bands of eq. 2, in rising order; a "threshold crossing" is a change of band.
 * below-t1: x <= T1, everything admitted. t1-t2: T1 < x <= T2, new sessions dropped with f(x).
 * t2-t3: T2 < x <= T3, only established sessions admitted. t3-c: T3 < x < C, established traffic
 * degraded. at-c: x >= C, everything refused.
 */
export const BANDS = ['below-t1', 't1-t2', 't2-t3', 't3-c', 'at-c'] as const satisfies readonly AdmissionBand[];
export type { AdmissionBand };

export const BAND_BELOW_T1 = 0;
export const BAND_T1_T2 = 1;
export const BAND_T2_T3 = 2;
export const BAND_T3_C = 3;
export const BAND_AT_C = 4;

/** What eq. 2 tells apart: traffic opening a session, and traffic of a session already admitted. */
export type SessionKind = 'new' | 'established';

/** Parameters of the moves of eq. 4 (config `admission`). */
export interface MoveParams {
  /** k2: T2 <- T2 - k2 * excess over T2. SARA's equation is k2 = 1; 0 never moves T2. */
  readonly t2Gain: number;
  /** k3: T3 <- T3 * (1 - k3 * excess over T3). SARA's equation is k3 = 1; 0 never moves T3. */
  readonly t3Gain: number;
  /** Smallest distance kept between T1 and T2 and between T2 and T3 by the moves. */
  readonly minGap: number;
}

/** Throws a RangeError unless 0 <= t1 < t2 < t3 < c <= 1 (the config schema checks the same). */
export function checkThresholds(th: Thresholds): void {
  const { t1, t2, t3, c } = th;
  if (!(t1 >= 0 && t1 < t2 && t2 < t3 && t3 < c && c <= 1)) {
    throw new RangeError(`expected 0 <= t1 < t2 < t3 < c <= 1, got t1 ${t1}, t2 ${t2}, t3 ${t3}, c ${c}`);
  }
}

/** x = max(l, l_c), the load every decision is taken on. NaN in either gives NaN (callers ignore it). */
export function decisionLoad(dispatcher: number, cluster: number): number {
  if (Number.isNaN(dispatcher) || Number.isNaN(cluster)) return Number.NaN;
  return dispatcher > cluster ? dispatcher : cluster;
}

/** The band of eq. 2 that `x` lies in (an index into BANDS). */
export function bandOf(x: number, th: Thresholds): number {
  if (x <= th.t1) return BAND_BELOW_T1;
  if (x <= th.t2) return BAND_T1_T2;
  if (x <= th.t3) return BAND_T2_T3;
  if (x < th.c) return BAND_T3_C;
  return BAND_AT_C;
}

/**
 * SARA eq. 2 for traffic opening a new session, reading chosen:
 *   p = 0 if x <= T1;  p = f(x) = (x - T1) / (T2 - T1) if T1 < x <= T2;  p = 1 if x > T2.
 * The OCR's first row reads "max(l, l_c) ≠ T_l": "≤ T1" (the second row's condition starts at
 * "T1 < max(l, l_c)", so the first must end at T1 included). The second row reads
 * "1 - f(max(l, l_c)) ≠ f(x) = |(x - T1)/(T2 - T1)|": taken literally, p would fall from 1 just above
 * T1 to 0 at T2, dropping more new sessions at lower load, and jump from 0 to 1 at both ends. The
 * absolute value only means something if the numerator can be negative in the band, i.e. if it is
 * x - T2 (the OCR confuses subscripts: T1 is also read "T_l"): f(x) = |(x - T2)/(T2 - T1)| is the
 * admitted fraction, 1 at T1 and 0 at T2, and p = 1 - f(x) = (x - T1)/(T2 - T1), the drop
 * probability rising linearly from 0 at T1 to 1 at T2, continuous with the rows around it, as the
 * prose says ("between T1 and T2 new sessions are dropped with the linear probability").
 * Above T2 new sessions are refused ("only the traffic pertaining to the already established
 * sessions is admitted"), up to and beyond C.
 */
export function newSessionDrop(x: number, th: Thresholds): number {
  if (x <= th.t1) return 0;
  if (x >= th.t2) return 1;
  return (x - th.t1) / (th.t2 - th.t1);
}

/**
 * SARA eq. 2 for traffic of an established session, reading chosen:
 *   p = 0 if x <= T3;  p = g(x) = (x - T3) / (C - T3) if T3 < x < C;  p = 1 if x >= C.
 * Established sessions are never dropped below T3 (the prose: between T1 and T3 only new sessions
 * are shed). The OCR's last row reads "1 & max(p^u, 1 - p^u), where p^u = 1 - g(max(l, l_c)) =
 * |(x - T3)/(C - T3)|, otherwise". Read by the same structure as the second row, g is the admitted
 * fraction |(x - C)/(C - T3)| and p^u = 1 - g(x) = (x - T3)/(C - T3), rising linearly from 0 at T3
 * to 1 at C. The literal max(p^u, 1 - p^u) is not implemented: it is at least 1/2 everywhere above
 * T3, nearly 1 just above T3, and falls as the load rises towards (T3 + C)/2. That would cut the
 * established sessions off at T3, the very interruption the prose says SA2C avoids ("rather than
 * interrupting the already established sessions ... degrade their QoS"), and a drop rate that falls
 * as load rises is a positive feedback loop. So the "max" is taken to be the max(l^i, l^i_c) the
 * row is evaluated at (garbled with the rest of that line), and the "maximised probability" of the
 * prose to mean that it is the highest drop established traffic ever gets, reached at C. The stray
 * "1" opening the OCR row is the separate row for x >= C ("when the cluster runs close to its edge
 * capacity C, all the incoming traffic is rejected").
 */
export function establishedDrop(x: number, th: Thresholds): number {
  if (x <= th.t3) return 0;
  if (x >= th.c) return 1;
  return (x - th.t3) / (th.c - th.t3);
}

/** SARA eq. 2: p(l, l_c) for one kind of traffic at x = max(l, l_c). */
export function dropProbability(x: number, th: Thresholds, kind: SessionKind): number {
  return kind === 'new' ? newSessionDrop(x, th) : establishedDrop(x, th);
}

/**
 * SARA eq. 4, one move, reading chosen:
 *   T2 <- max(T2 - k2 * Δ2, floor2),        Δ2 = max(0, x - T2)
 *   T3 <- max(T3 * (1 - k3 * Δ3), floor3),  Δ3 = max(0, x - T3)
 * with k2 = k3 = 1 in SARA (`MoveParams` gains), floor2 = min(T2, T1 + minGap) and
 * floor3 = min(T3, T2' + minGap) (T2' the moved T2), so the moves never raise a threshold, never
 * take T2 to T1 or below, and keep T1 < T2 < T3 < C.
 *
 * The OCR reads T2 - Δ(T2, x) and T3 * Δ(T3, x) with Δ(T, x) = |T - x|. The prose calls Δ "the load
 * excess computed respectively against T2 and T3", so Δ is the part of x above the threshold, and
 * 0 when x is under it: the literal |T2 - x| with x under T2 would snap T2 down to x and refuse
 * every new session at any load above T1, leaving eq. 2's linear band no room. The multiplicative
 * move cannot multiply by the excess itself: loads are fractions, T3 * |T3 - x| with T3 = 0.85 and
 * x = 0.9 would put T3 at 0.04, below T1. Decreasing T3 "multiplicatively" by the excess is
 * multiplying it by (1 - Δ3): T3 = 0.85, x = 0.9 gives 0.85 * 0.95 = 0.8075.
 *
 * Only T2 and T3 move (SARA: "two moving thresholds"); T1 and C are the operator's. The reset below
 * T1 to the operator's values is the controller's (it needs the initial values, not a move).
 */
export function moveThresholds(x: number, th: Thresholds, params: MoveParams): Thresholds {
  const excess2 = x > th.t2 ? x - th.t2 : 0;
  const floor2 = Math.min(th.t2, th.t1 + params.minGap);
  const t2 = Math.max(th.t2 - params.t2Gain * excess2, floor2);
  const excess3 = x > th.t3 ? x - th.t3 : 0;
  const floor3 = Math.min(th.t3, t2 + params.minGap);
  const t3 = Math.max(th.t3 * (1 - params.t3Gain * excess3), floor3);
  return { t1: th.t1, t2, t3, c: th.c };
}

/**
 * SARA eq. 3, reading chosen: T_{i+1} = max((1 - p) * T_i, minIntervalMs), where T_i is the period
 * of the admission control loop (the time between two moves of eq. 4) and p the drop probability of
 * new sessions in force during T_i (eq. 2's larger one: p_new >= p_established at every load).
 *
 * "The rejection of the incoming traffic is triggered each time interval T_i": read as the period at
 * which the rejection policy is recomputed, not as one rejection per T_i (that would make the drop
 * rate follow the arrival rate instead of eq. 2's p). The next paragraph says what it is for: "it
 * fastens the rejection of the new incoming sessions when the cluster experiences a high load
 * condition": the more new sessions are being dropped, the shorter the period, so the faster T2 and
 * T3 move down under persistent overload. With p = 1 the equation gives 0: the floor keeps a period.
 * p = 0 leaves T_i as it is; the controller resets it to T_0 with the thresholds, below T1.
 */
export function nextInterval(intervalMs: number, p: number, minIntervalMs: number): number {
  const next = (1 - p) * intervalMs;
  return next > minIntervalMs ? next : minIntervalMs;
}
