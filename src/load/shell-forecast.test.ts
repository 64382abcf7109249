import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoadHistory } from './load-history.js';
import { clamp01, dampedEstimate, forecastError, linearForecast, ShellForecaster } from './shell-forecast.js';

const EPS = 1e-12;

function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < EPS, `${what}: expected ${expected}, got ${actual}`);
}

test('eq. 5: the history keeps the last T samples, oldest first', () => {
  const h = new LoadHistory(3);
  assert.equal(h.length, 0);
  assert.equal(h.last, 0);
  h.push(0.1);
  h.push(0.2);
  assert.deepEqual(h.toArray(), [0.1, 0.2]);
  assert.equal(h.first, 0);
  h.push(0.3);
  h.push(0.4); // overwrites 0.1
  h.push(0.5); // overwrites 0.2
  assert.equal(h.length, 3);
  assert.deepEqual(h.toArray(), [0.3, 0.4, 0.5]);
  assert.equal(h.last, 0.5);
  assert.equal(h.at(0), 0.3);
  assert.equal(h.first, 2, 'the oldest sample sits where the next one will be written');
  assert.throws(() => h.at(3), RangeError);
  h.clear();
  assert.deepEqual(h.toArray(), []);
  assert.throws(() => new LoadHistory(0), RangeError);
});

test('eq. 6: linear regression one step ahead, on numbers computed by hand', () => {
  // [0.1, 0.2, 0.3, 0.4]: x̄ = 1.5, ȳ = 0.25, Σ(x-x̄)(y-ȳ) = (-1.5)(-0.15)+(-0.5)(-0.05)+(0.5)(0.05)+(1.5)(0.15)
  // = 0.225+0.025+0.025+0.225 = 0.5, Σ(x-x̄)² = 2.25+0.25+0.25+2.25 = 5, slope 0.1,
  // forecast at x = 4: 0.25 + 0.1 * (4 - 1.5) = 0.5.
  near(linearForecast([0.1, 0.2, 0.3, 0.4]), 0.5, 'rising');
  // A flat series: slope 0, forecast = the value.
  near(linearForecast([0.37, 0.37, 0.37, 0.37, 0.37]), 0.37, 'flat');
  // [0.5, 0.3]: x̄ = 0.5, ȳ = 0.4, slope (-0.5)(0.1)+(0.5)(-0.1) / (0.25+0.25) = -0.2,
  // forecast at x = 2: 0.4 - 0.2 * 1.5 = 0.1.
  near(linearForecast([0.5, 0.3]), 0.1, 'falling');
  // [0.2, 0.6, 0.4]: x̄ = 1, ȳ = 0.4, Σ = (-1)(-0.2)+0+(1)(0) = 0.2, Σx² = 2, slope 0.1,
  // forecast at x = 3: 0.4 + 0.1 * 2 = 0.6 (noisy: the line, not the last step).
  near(linearForecast([0.2, 0.6, 0.4]), 0.6, 'noisy');
});

test('eq. 6: fewer than 2 samples give the last sample; the result is clamped to [0, 1]', () => {
  assert.equal(linearForecast([]), 0);
  assert.equal(linearForecast([0.42]), 0.42);
  // [0.6, 0.9]: slope 0.3, forecast 0.75 + 0.3 * 1.5 = 1.2 → 1.
  assert.equal(linearForecast([0.6, 0.9]), 1);
  // [0.3, 0.1]: slope -0.2, forecast 0.2 - 0.2 * 1.5 = -0.1 → 0.
  assert.equal(linearForecast([0.3, 0.1]), 0);
});

test('eq. 6: reads a wrapped ring in place, the same as the unrolled series', () => {
  // Ring [0.4, 0.1, 0.2, 0.3] with the oldest at index 1 is the series [0.1, 0.2, 0.3, 0.4].
  near(linearForecast([0.4, 0.1, 0.2, 0.3], 4, 1), 0.5, 'wrapped');
  const h = new LoadHistory(4);
  for (const x of [0.9, 0.9, 0.1, 0.2, 0.3, 0.4]) h.push(x);
  near(linearForecast(h.values, h.length, h.first), 0.5, 'history');
});

test('eq. 7: relative error of the previous forecast, clamped; measurement 0', () => {
  near(forecastError(0.5, 0.4), 0.25, '|0.1 / 0.4|'); // |(0.5 - 0.4) / 0.4| = 0.25
  near(forecastError(0.3, 0.4), 0.25, '|-0.1 / 0.4|'); // |(0.3 - 0.4) / 0.4| = 0.25
  assert.equal(forecastError(0.9, 0.3), 1); // |0.6 / 0.3| = 2 → 1
  assert.equal(forecastError(0.2, 0.2), 0);
  assert.equal(forecastError(0, 0), 0, 'exact forecast of an idle node');
  assert.equal(forecastError(0.1, 0), 1, 'any forecast of an idle node that was not 0');
  assert.equal(forecastError(Number.NaN, 0.5), 1);
});

test('eq. 8: damped estimate between the forecast and the measurement', () => {
  near(dampedEstimate(0.5, 0.4, 0.25), 0.475, '0.75*0.5 + 0.25*0.4'); // 0.375 + 0.1
  assert.equal(dampedEstimate(0.5, 0.4, 0), 0.5, 'err 0: the regression alone');
  assert.equal(dampedEstimate(0.5, 0.4, 1), 0.4, 'err 1: the measurement alone');
});

test('clamp01 maps NaN and out-of-range values into [0, 1]', () => {
  assert.equal(clamp01(-0.1), 0);
  assert.equal(clamp01(1.7), 1);
  assert.equal(clamp01(Number.NaN), 0);
  assert.equal(clamp01(0.3), 0.3);
});

test('eq. 5-8 step by step through ShellForecaster (T = 3)', () => {
  const f = new ShellForecaster(3);
  assert.equal(f.forecast, 0);

  // i = 1, l = 0.2. No earlier forecast: err = 1. History [0.2] → l^ = 0.2. l~ = 0.2.
  f.sample(0.2);
  assert.equal(f.lastError, 1);
  near(f.predicted, 0.2, 'l^(2)');
  near(f.forecast, 0.2, 'l~ after 1');

  // i = 2, l = 0.4. err = |(0.2 - 0.4) / 0.4| = 0.5. History [0.2, 0.4]: slope 0.2,
  // l^(3) = 0.3 + 0.2 * 1.5 = 0.6. l~ = 0.5 * 0.6 + 0.5 * 0.4 = 0.5.
  f.sample(0.4);
  near(f.lastError, 0.5, 'err 2');
  near(f.predicted, 0.6, 'l^(3)');
  near(f.forecast, 0.5, 'l~ after 2');

  // i = 3, l = 0.5. err = |(0.6 - 0.5) / 0.5| = 0.2. History [0.2, 0.4, 0.5]: x̄ = 1, ȳ = 11/30,
  // Σ(x-x̄)(y-ȳ) = (-1)(0.2 - 11/30) + (1)(0.5 - 11/30) = 0.3, Σx² = 2, slope 0.15,
  // l^(4) = 11/30 + 0.15 * 2 = 0.6666…; l~ = 0.8 * 2/3 + 0.2 * 0.5 = 0.5333… + 0.1 = 0.6333…
  f.sample(0.5);
  near(f.lastError, 0.2, 'err 3');
  near(f.predicted, 2 / 3, 'l^(4)');
  near(f.forecast, 0.8 * (2 / 3) + 0.1, 'l~ after 3');

  // i = 4, l = 0.5: the ring drops 0.2. err = |(2/3 - 0.5) / 0.5| = 1/3. History [0.4, 0.5, 0.5]:
  // ȳ = 1.4/3, Σ = (-1)(0.4 - ȳ) + (1)(0.5 - ȳ) = 0.1, slope 0.05, l^(5) = 1.4/3 + 0.1 = 0.5666…;
  // l~ = (2/3) * 0.5666… + (1/3) * 0.5 = 0.3777… + 0.1666… = 0.5444…
  f.sample(0.5);
  assert.deepEqual(f.history.toArray(), [0.4, 0.5, 0.5]);
  near(f.lastError, 1 / 3, 'err 4');
  near(f.predicted, 1.4 / 3 + 0.1, 'l^(5)');
  near(f.forecast, (2 / 3) * (1.4 / 3 + 0.1) + (1 / 3) * 0.5, 'l~ after 4');

  // i = 5, l = 0: the forecast 0.5666… of a now idle node gives err = 1, so the estimate is the
  // measurement alone: l~ = 0 * l^(6) + 1 * 0 = 0.
  f.sample(0);
  assert.equal(f.lastError, 1);
  assert.equal(f.forecast, 0);

  f.reset();
  assert.equal(f.history.length, 0);
  f.sample(0.3);
  assert.equal(f.lastError, 1, 'after reset there is no earlier forecast');
  near(f.forecast, 0.3, 'l~ after reset');
});

test('ShellForecaster: a perfectly predicted ramp has err 0 and forecasts the next step', () => {
  const f = new ShellForecaster(4);
  for (const x of [0.1, 0.2, 0.3]) f.sample(x);
  // After [0.1, 0.2, 0.3] the forecast of the 4th is 0.4; the 4th is 0.4: err 0, l~ = l^(5) = 0.5.
  f.sample(0.4);
  assert.ok(f.lastError < 1e-9, `err ${f.lastError}`);
  near(f.forecast, 0.5, 'l~');
});
