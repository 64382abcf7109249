import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectorConfig, runDetectorSuite } from './detector.common-suite.js';
import { createDetector } from './detector-registry.js';
import { LOGISTIC_A, LOGISTIC_B, PhiAccrualDetector, phiOf, yForPhi } from './detector-phi-accrual.js';

runDetectorSuite('phi-accrual');
runDetectorSuite('phi-accrual', { intervalMs: 10, n: 3 });
runDetectorSuite('phi-accrual', { intervalMs: 50, n: 2, phiThreshold: 10, phiWindow: 16 });
runDetectorSuite('phi-accrual', { intervalMs: 500, n: 4, phiThreshold: 12, phiWindow: 1000 });

function phiDetector(over: Parameters<typeof detectorConfig>[1], now = 0): PhiAccrualDetector {
  const d = createDetector(detectorConfig('phi-accrual', over), now);
  assert.ok(d instanceof PhiAccrualDetector);
  return d;
}

test('phiOf by hand: mean 100, stdDev 20', () => {
  // elapsed 140: y = (140 - 100) / 20 = 2; y (A + B y^2) = 2 x (1.5976 + 0.070566 x 4) = 3.759728;
  // e = exp(-3.759728) = 0.0232901; 1 - F = e / (1 + e) = 0.0227600; phi = -log10(0.02276) = 1.64283.
  // (The exact normal tail 1 - Phi(2) = 0.02275 gives 1.6430: the approximation is close.)
  assert.ok(Math.abs(phiOf(140, 100, 20) - 1.64283) < 1e-5, String(phiOf(140, 100, 20)));
  // At the mean y = 0, F = 1/2, phi = -log10(0.5) = 0.30103.
  assert.ok(Math.abs(phiOf(100, 100, 20) - 0.30103) < 1e-5);
  // elapsed 120: y = 1; e = exp(-(1.5976 + 0.070566)) = exp(-1.668166) = 0.188593;
  // 1 - F = 0.188593 / 1.188593 = 0.158669; phi = 0.79951.
  assert.ok(Math.abs(phiOf(120, 100, 20) - 0.79951) < 1e-5, String(phiOf(120, 100, 20)));
  assert.ok(phiOf(60, 100, 20) < 0.30103, 'early heartbeats are below the median suspicion');
});

test('yForPhi inverts the approximation: A y + B y^3 = ln((1 - p) / p)', () => {
  // phi 8: p = 1e-8, L = ln(1e8) = 18.42068; y = 5.22599 since 1.5976 x 5.22599 + 0.070566 x
  // 5.22599^3 = 8.34904 + 10.07165 = 18.42069. phi 4: L = ln(9999) = 9.21024, y = 3.63811.
  assert.ok(Math.abs(yForPhi(8) - 5.22599) < 1e-5, String(yForPhi(8)));
  assert.ok(Math.abs(yForPhi(4) - 3.63811) < 1e-5, String(yForPhi(4)));
  for (const phi of [0.05, 0.5, 1, 3, 8, 16, 40]) {
    const y = yForPhi(phi);
    const p = 10 ** -phi;
    assert.ok(Math.abs(LOGISTIC_A * y + LOGISTIC_B * y ** 3 - Math.log((1 - p) / p)) < 1e-9);
    assert.ok(Math.abs(phiOf(100 + 10 * y, 100, 10) - phi) < 1e-9 * Math.max(1, phi), `phi ${phi}`);
  }
});

test('a window of [80, 120]: mean 100, population stdDev 20; suspect at phi 4, down at phi 8', () => {
  // intervalMs 50 (floor max(1, 5) = 5 ms, not reached), window 2: heartbeats at 0, 80, 200 leave
  // the samples 80 and 120 (the bootstrap sample of 50 has aged out).
  const d = phiDetector({ intervalMs: 50, n: 3, phiThreshold: 8, phiWindow: 2 });
  for (const t of [0, 80, 200]) d.heartbeat(t);
  assert.equal(d.mean(), 100);
  assert.equal(d.stdDev(), 20);
  assert.ok(Math.abs(d.phi(340)! - 1.64283) < 1e-5);
  // Suspect: 200 + 100 + 3.63811 x 20 = 372.762; down: 200 + 100 + 5.22599 x 20 = 404.520.
  const suspectAt = d.nextDeadline(200);
  assert.ok(Math.abs(suspectAt - 372.762) < 1e-3, String(suspectAt));
  const downAt = d.nextDeadline(suspectAt);
  assert.ok(Math.abs(downAt - 404.520) < 1e-3, String(downAt));
  assert.equal(d.verdict(372.7), 'up');
  assert.equal(d.verdict(suspectAt), 'suspect');
  assert.ok(Math.abs(d.phi(suspectAt)! - 4) < 1e-9);
  assert.equal(d.verdict(404.5), 'suspect');
  assert.equal(d.verdict(downAt), 'down');
  assert.ok(Math.abs(d.phi(downAt)! - 8) < 1e-9);
});

test('bootstrap: the first heartbeat already judges with mean intervalMs and the floored stdDev', () => {
  // intervalMs 20: the window is [20], stdDev 0 floored to max(1, 20 / 10) = 2 ms.
  // Down at 1000 + 20 + 5.22599 x 2 = 1030.452.
  const d = phiDetector({ intervalMs: 20, n: 3, phiThreshold: 8 }, 1000);
  assert.equal(d.phi(1000), null, 'no phi before the first heartbeat');
  d.heartbeat(1000);
  assert.equal(d.mean(), 20);
  assert.equal(d.stdDev(), 2);
  const suspectAt = d.nextDeadline(1000);
  assert.ok(Math.abs(d.nextDeadline(suspectAt) - 1030.452) < 1e-3);
});

test('a perfectly regular sender: the stdDev floor keeps one late millisecond harmless', () => {
  // 100 heartbeats exactly 20 ms apart: stdDev 0, floored to 2 ms. One ms late: y = 0.5,
  // y (A + B y^2) = 0.5 x (1.5976 + 0.070566 x 0.25) = 0.807621, e = exp(-0.807621) = 0.445929,
  // phi = -log10(0.445929 / 1.445929) = -log10(0.308403) = 0.51089. Without the floor y would be
  // infinite and phi too.
  const d = phiDetector({ intervalMs: 20, n: 3 });
  for (let i = 0; i < 100; i++) d.heartbeat(i * 20);
  assert.equal(d.stdDev(), 2);
  const last = 99 * 20;
  assert.ok(Math.abs(d.phi(last + 21)! - 0.51089) < 1e-5, String(d.phi(last + 21)));
  assert.equal(d.verdict(last + 21), 'up');
});

test('a gap longer than n x intervalMs is an outage, not a sample', () => {
  const d = phiDetector({ intervalMs: 10, n: 3 });
  for (let i = 0; i < 10; i++) d.heartbeat(i * 10);
  assert.equal(d.mean(), 10);
  d.heartbeat(90 + 500); // 500 ms outage
  assert.equal(d.mean(), 10, 'the outage is not in the window');
  d.heartbeat(590 + 30); // exactly n x intervalMs: a sample
  assert.equal(d.mean(), (10 * 10 + 30) / 11);
});

test('the window keeps only the last phiWindow samples and its sums do not drift', () => {
  const d = phiDetector({ intervalMs: 10, n: 3, phiWindow: 4 });
  let t = 0;
  d.heartbeat(t);
  for (const gap of [10, 11, 12, 13, 14, 15]) d.heartbeat((t += gap));
  // Window: 12, 13, 14, 15 -> mean 13.5, variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
  assert.equal(d.mean(), 13.5);
  assert.ok(Math.abs(d.stdDev() - Math.sqrt(1.25)) < 1e-12);
  for (let i = 0; i < 10_000; i++) d.heartbeat((t += 10.1 + (i % 3) * 0.3));
  // Last four gaps: i = 9996..9999 -> 10.1, 10.4, 10.7, 10.1 (i % 3 = 0, 1, 2, 0).
  assert.ok(Math.abs(d.mean() - (10.1 + 10.4 + 10.7 + 10.1) / 4) < 1e-9);
  d.reset(t);
  assert.equal(d.mean(), 10, 'reset re-bootstraps the window with intervalMs');
});
