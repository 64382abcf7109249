import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BANDS,
  bandOf,
  checkThresholds,
  decisionLoad,
  dropProbability,
  establishedDrop,
  moveThresholds,
  newSessionDrop,
  nextInterval,
  type Thresholds,
} from './sa2c.js';

const EPS = 1e-12;
const TH: Thresholds = { t1: 0.5, t2: 0.7, t3: 0.8, c: 0.9 };
const SARA = { t2Gain: 1, t3Gain: 1, minGap: 0.01 };

function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < EPS, `${what}: expected ${expected}, got ${actual}`);
}

function nearTh(actual: Thresholds, expected: Thresholds, what: string): void {
  for (const k of ['t1', 't2', 't3', 'c'] as const) near(actual[k], expected[k], `${what} ${k}`);
}

test('eq. 2, new sessions: 0 up to T1, (x - T1) / (T2 - T1) up to T2, 1 above', () => {
  // [x, p] with T1 = 0.5, T2 = 0.7: f(x) = (x - 0.5) / 0.2.
  const points: [number, number][] = [
    [0, 0],
    [0.3, 0],
    [0.5, 0], // exactly T1: still the admit-all band
    [0.55, 0.25], // 0.05 / 0.2
    [0.6, 0.5], // 0.1 / 0.2
    [0.65, 0.75], // 0.15 / 0.2
    [0.7, 1], // exactly T2
    [0.75, 1],
    [0.8, 1], // exactly T3
    [0.85, 1],
    [0.9, 1], // exactly C
    [1, 1],
  ];
  for (const [x, p] of points) {
    near(newSessionDrop(x, TH), p, `p_new(${x})`);
    near(dropProbability(x, TH, 'new'), p, `p(${x}, new)`);
  }
  // Continuous at both ends of the linear band.
  assert.ok(newSessionDrop(0.5 + 1e-9, TH) < 1e-6);
  assert.ok(newSessionDrop(0.7 - 1e-9, TH) > 1 - 1e-6);
});

test('eq. 2, established sessions: 0 up to T3, (x - T3) / (C - T3) below C, 1 from C on', () => {
  // T3 = 0.8, C = 0.9: g(x) = (x - 0.8) / 0.1.
  const points: [number, number][] = [
    [0.3, 0],
    [0.5, 0], // T1
    [0.6, 0], // new sessions are half dropped here, established ones not at all
    [0.7, 0], // T2
    [0.75, 0], // only established admitted: all of them
    [0.8, 0], // exactly T3
    [0.82, 0.2], // 0.02 / 0.1
    [0.85, 0.5], // 0.05 / 0.1
    [0.88, 0.8], // 0.08 / 0.1
    [0.9, 1], // exactly C: everything refused
    [0.95, 1],
    [1, 1],
  ];
  for (const [x, p] of points) {
    near(establishedDrop(x, TH), p, `p_est(${x})`);
    near(dropProbability(x, TH, 'established'), p, `p(${x}, established)`);
  }
  assert.ok(establishedDrop(0.8 + 1e-9, TH) < 1e-6, 'continuous at T3 (no cut-off of established sessions)');
  assert.ok(establishedDrop(0.9 - 1e-9, TH) > 1 - 1e-6, 'continuous at C');
});

test('eq. 2 is non-decreasing in the load and never drops established traffic more than new', () => {
  let lastNew = 0;
  let lastEst = 0;
  for (let i = 0; i <= 1000; i++) {
    const x = i / 1000;
    const pn = newSessionDrop(x, TH);
    const pe = establishedDrop(x, TH);
    assert.ok(pn >= lastNew && pe >= lastEst, `monotone at ${x}`);
    assert.ok(pe <= pn, `established favoured at ${x}`);
    assert.ok(pn >= 0 && pn <= 1 && pe >= 0 && pe <= 1);
    lastNew = pn;
    lastEst = pe;
  }
});

test('bands: edges belong to the band below, C to at-c', () => {
  const at = (x: number): string => BANDS[bandOf(x, TH)]!;
  assert.equal(at(0), 'below-t1');
  assert.equal(at(0.5), 'below-t1');
  assert.equal(at(0.5000001), 't1-t2');
  assert.equal(at(0.7), 't1-t2');
  assert.equal(at(0.7000001), 't2-t3');
  assert.equal(at(0.8), 't2-t3');
  assert.equal(at(0.8000001), 't3-c');
  assert.equal(at(0.8999999), 't3-c');
  assert.equal(at(0.9), 'at-c');
  assert.equal(at(1), 'at-c');
});

test('decisionLoad is max(l, l_c); NaN stays NaN', () => {
  assert.equal(decisionLoad(0.3, 0.6), 0.6);
  assert.equal(decisionLoad(0.85, 0.3), 0.85);
  assert.ok(Number.isNaN(decisionLoad(Number.NaN, 0.3)));
  assert.ok(Number.isNaN(decisionLoad(0.3, Number.NaN)));
});

test('checkThresholds accepts 0 <= t1 < t2 < t3 < c <= 1 only', () => {
  checkThresholds(TH);
  checkThresholds({ t1: 0, t2: 0.1, t3: 0.2, c: 1 });
  assert.throws(() => checkThresholds({ t1: 0.5, t2: 0.5, t3: 0.8, c: 0.9 }), RangeError);
  assert.throws(() => checkThresholds({ t1: 0.5, t2: 0.7, t3: 0.95, c: 0.9 }), RangeError);
  assert.throws(() => checkThresholds({ t1: 0.5, t2: 0.7, t3: 0.8, c: 1.1 }), RangeError);
  assert.throws(() => checkThresholds({ t1: -0.1, t2: 0.7, t3: 0.8, c: 0.9 }), RangeError);
  assert.throws(() => checkThresholds({ t1: Number.NaN, t2: 0.7, t3: 0.8, c: 0.9 }), RangeError);
});

test('eq. 4: nothing moves while the load is under T2', () => {
  nearTh(moveThresholds(0.6, TH, SARA), TH, 'x 0.6');
  nearTh(moveThresholds(0.7, TH, SARA), TH, 'x = T2');
});

test('eq. 4: T2 is lowered linearly by its excess, down to T1 + minGap; T3 stays under it', () => {
  // x = 0.75 > T2 = 0.7, x < T3 = 0.8.
  let th = moveThresholds(0.75, TH, SARA);
  nearTh(th, { t1: 0.5, t2: 0.65, t3: 0.8, c: 0.9 }, 'tick 1'); // 0.7 - 0.05
  th = moveThresholds(0.75, th, SARA);
  nearTh(th, { t1: 0.5, t2: 0.55, t3: 0.8, c: 0.9 }, 'tick 2'); // 0.65 - 0.1
  th = moveThresholds(0.75, th, SARA);
  nearTh(th, { t1: 0.5, t2: 0.51, t3: 0.8, c: 0.9 }, 'tick 3'); // 0.55 - 0.2 = 0.35, floored at 0.5 + 0.01
  th = moveThresholds(0.75, th, SARA);
  nearTh(th, { t1: 0.5, t2: 0.51, t3: 0.8, c: 0.9 }, 'tick 4: never below T1');
});

test('eq. 4: T3 is lowered multiplicatively by (1 - excess), above T2 + minGap', () => {
  // x = 0.85: above T2 (0.7) and T3 (0.8).
  const ticks: Thresholds[] = [];
  let th = TH;
  for (let i = 0; i < 5; i++) ticks.push((th = moveThresholds(0.85, th, SARA)));
  // 1: T2 0.7 - 0.15 = 0.55; T3 0.8 * (1 - 0.05) = 0.76.
  nearTh(ticks[0]!, { t1: 0.5, t2: 0.55, t3: 0.76, c: 0.9 }, 'tick 1');
  // 2: T2 0.55 - 0.3 = 0.25 → 0.51; T3 0.76 * (1 - 0.09) = 0.6916.
  nearTh(ticks[1]!, { t1: 0.5, t2: 0.51, t3: 0.6916, c: 0.9 }, 'tick 2');
  // 3: T3 0.6916 * (1 - 0.1584) = 0.6916 * 0.8416 = 0.58205056.
  nearTh(ticks[2]!, { t1: 0.5, t2: 0.51, t3: 0.58205056, c: 0.9 }, 'tick 3');
  // 4: 0.58205056 * (1 - 0.26794944) = 0.4260... < T2 + minGap = 0.52 → 0.52.
  nearTh(ticks[3]!, { t1: 0.5, t2: 0.51, t3: 0.52, c: 0.9 }, 'tick 4');
  nearTh(ticks[4]!, { t1: 0.5, t2: 0.51, t3: 0.52, c: 0.9 }, 'tick 5: at the floors');
  for (const t of ticks) assert.ok(t.t1 < t.t2 && t.t2 < t.t3 && t.t3 < t.c, 'ordering kept');
});

test('eq. 4 gains scale the step; a gain of 0 never moves', () => {
  const half = { t2Gain: 0.5, t3Gain: 0.5, minGap: 0.01 };
  // T2 0.7 - 0.5 * 0.15 = 0.625; T3 0.8 * (1 - 0.5 * 0.05) = 0.78.
  nearTh(moveThresholds(0.85, TH, half), { t1: 0.5, t2: 0.625, t3: 0.78, c: 0.9 }, 'half gain');
  nearTh(moveThresholds(0.85, TH, { t2Gain: 0, t3Gain: 0, minGap: 0.01 }), TH, 'zero gain');
  // Even the largest excess (x = 1) keeps the ordering with gain 1.
  const worst = moveThresholds(1, TH, SARA);
  assert.ok(worst.t1 < worst.t2 && worst.t2 < worst.t3 && worst.t3 < worst.c);
});

test('eq. 4 never raises a threshold configured closer than minGap', () => {
  const tight: Thresholds = { t1: 0.5, t2: 0.505, t3: 0.51, c: 0.9 };
  nearTh(moveThresholds(0.9, tight, SARA), tight, 'no room to move');
});

test('eq. 3: T_{i+1} = (1 - p) * T_i, floored', () => {
  near(nextInterval(1000, 0.25, 50), 750, '0.75 * 1000');
  near(nextInterval(750, 0.25, 50), 562.5, '0.75 * 750');
  near(nextInterval(1000, 0.5, 50), 500, '0.5 * 1000');
  near(nextInterval(1000, 0, 50), 1000, 'p = 0 keeps the period');
  near(nextInterval(1000, 1, 50), 50, 'p = 1 gives 0: the floor');
  near(nextInterval(60, 0.5, 50), 50, '30 floored to 50');
});
