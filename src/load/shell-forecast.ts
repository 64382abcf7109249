/**
 * @module The shell forecast of one backend's load (SARA III.C, eq. 6-8): a forward linear
 * regression over the load history, the error of the previous forecast, and the damped estimate the
 * `shell` balancer compares (eq. 9 lives in balance/balancer-shell.ts).
 */
import { LoadHistory } from './load-history.js';

/** Clamp to [0, 1]; NaN becomes 0 (a load sample or forecast outside [0, 1] means nothing). */
export function clamp01(x: number): number {
  return x >= 1 ? 1 : x > 0 ? x : 0;
}

/**
 * SARA eq. 6, reading chosen: l^_j(i+1) = phi(L_j), where phi is "a simple forward linear
 * regression": the least-squares line through the points (x, L_j[x]) for x = 0..n-1 (oldest sample
 * at x = 0), evaluated one step ahead at x = n. The OCR'd right-hand side (a sum of alpha_j^k * l_j^k
 * "± err_i") is what such a regression is once written out: the forecast is a fixed linear
 * combination of the samples; the "± err_i" is applied by eq. 8 (`dampedEstimate`), not here.
 *
 * With x̄ = (n-1)/2 and ȳ the mean, slope b = Σ(x - x̄)(y - ȳ) / Σ(x - x̄)², forecast = ȳ + b(n - x̄).
 * E.g. [0.1, 0.2, 0.3, 0.4] → 0.5; a flat series → its value; [0.5, 0.3] → 0.1.
 * With fewer than 2 samples there is no line: the forecast is the last sample (0 with none).
 * The result is clamped to [0, 1], as loads are.
 *
 * Reads `count` samples of `values` starting at index `first` and wrapping around its end, so that
 * it runs on a plain array (`linearForecast([0.1, 0.2])`) and in place on a LoadHistory ring
 * without allocating.
 */
export function linearForecast(values: ArrayLike<number>, count: number = values.length, first = 0): number {
  const size = values.length;
  if (count <= 0 || size === 0) return 0;
  if (count === 1) return clamp01(values[first % size]!);
  const xMean = (count - 1) / 2;
  let yMean = 0;
  for (let k = 0; k < count; k++) yMean += values[(first + k) % size]!;
  yMean /= count;
  let sxy = 0;
  let sxx = 0;
  for (let k = 0; k < count; k++) {
    const dx = k - xMean;
    sxy += dx * (values[(first + k) % size]! - yMean);
    sxx += dx * dx;
  }
  return clamp01(yMean + (sxy / sxx) * (count - xMean));
}

/**
 * SARA eq. 7, reading chosen: err_i = |(l^_j(i) - l_j(i)) / l_j(i)|, the relative step between the
 * forecast made one sample earlier for this sample and the sample measured. Clamped to [0, 1] so
 * that it can weight eq. 8 (a forecast off by more than 100% is simply not trusted). When the
 * measurement is 0 the ratio is undefined: err = 0 if the forecast was 0 too (exact), else 1.
 */
export function forecastError(forecast: number, measured: number): number {
  if (measured === 0) return forecast === 0 ? 0 : 1;
  const err = Math.abs((forecast - measured) / measured);
  return err <= 1 ? err : 1; // also maps NaN to 1
}

/**
 * SARA eq. 8, reading chosen: l~_j = (1 - err_i) * l^_j(i+1) + err_i * l_j(i). The error of the last
 * forecast damps the next one towards the measurement: err = 0 trusts the regression fully, err = 1
 * is purely measurement based ("exclusively measurement based session aware load balancing").
 */
export function dampedEstimate(forecastNext: number, measured: number, err: number): number {
  return (1 - err) * forecastNext + err * measured;
}

/**
 * eq. 5-8 for one backend, one sample at a time. After `sample(l_j(i))`:
 * - `lastError` = err_i (eq. 7) of the forecast made at the previous sample against l_j(i); 1 when
 *   there was no previous forecast (first sample, or after `reset`): with no model yet, trust the
 *   measurement;
 * - `predicted` = l^_j(i+1) (eq. 6), the raw regression over the history including l_j(i); it is
 *   the forecast the next sample's error is computed against;
 * - `forecast` = l~_j (eq. 8), the damped estimate the shell balancer compares.
 * Samples are clamped to [0, 1] first.
 */
export class ShellForecaster {
  readonly history: LoadHistory;
  private next = 0;
  private estimate = 0;
  private error = 1;

  /** `history` = T, the number of samples the regression runs over (config `load.history`). */
  constructor(history: number) {
    this.history = new LoadHistory(history);
  }

  sample(l: number): void {
    const measured = clamp01(l);
    const history = this.history;
    this.error = history.length === 0 ? 1 : forecastError(this.next, measured);
    history.push(measured);
    this.next = linearForecast(history.values, history.length, history.first);
    this.estimate = dampedEstimate(this.next, measured, this.error);
  }

  /** l~_j (eq. 8), in [0, 1]; 0 before any sample. */
  get forecast(): number {
    return this.estimate;
  }

  /** l^_j(i+1) (eq. 6), in [0, 1]; 0 before any sample. */
  get predicted(): number {
    return this.next;
  }

  /** err_i (eq. 7) of the latest sample, in [0, 1]. */
  get lastError(): number {
    return this.error;
  }

  /** Forget the history (the samples no longer lie on one time axis, e.g. after a silence). */
  reset(): void {
    this.history.clear();
    this.next = 0;
    this.estimate = 0;
    this.error = 1;
  }
}
