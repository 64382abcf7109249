import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QueueController, QueueDelay, median3, StandingDelay, clusterDecisionLoad, delayLoad, littleDelay, minDelay } from './admission-delay.js';

const near = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

test('StandingDelay: interval minimum less the lowest minimum of the window; NaN for an empty interval', () => {
  const d = new StandingDelay(3);
  assert.ok(Number.isNaN(d.sample()), 'nothing recorded');
  for (const ms of [40, 26, 90]) d.record(ms);
  assert.equal(d.sample(), 0); // the first minimum is the baseline: 26 - 26
  for (const ms of [300, 126, 500]) d.record(ms);
  assert.equal(d.sample(), 100); // a burst raises the mean; the minimum 126 says 100 ms stood in the queue
  d.record(76);
  assert.equal(d.sample(), 50); // window [26, 126, 76]
  d.record(80);
  assert.equal(d.sample(), 4); // 26 left the window: [126, 76, 80], baseline 76
  d.record(-5); // a negative latency is ignored
  assert.ok(Number.isNaN(d.sample()));
  assert.equal(d.baseline, 76, 'the baseline of the last sample taken');
  assert.ok(Number.isNaN(new StandingDelay(2).baseline));
  assert.throws(() => new StandingDelay(0), RangeError);
});

test('delayLoad: 0 -> 0, target -> T1, capacity -> C, linear between, 1 at twice capacity', () => {
  // T1 0.6, C 0.95, target 20 ms, capacity 1000 ms.
  assert.equal(delayLoad(0, 20, 1000, 0.6, 0.95), 0);
  assert.equal(delayLoad(-3, 20, 1000, 0.6, 0.95), 0);
  near(delayLoad(10, 20, 1000, 0.6, 0.95), 0.3); // 0.6 x 10 / 20
  near(delayLoad(20, 20, 1000, 0.6, 0.95), 0.6);
  near(delayLoad(510, 20, 1000, 0.6, 0.95), 0.775); // 0.6 + 0.35 x 490 / 980
  near(delayLoad(1000, 20, 1000, 0.6, 0.95), 0.95);
  near(delayLoad(1500, 20, 1000, 0.6, 0.95), 0.975); // 0.95 + 0.05 x 0.5
  assert.equal(delayLoad(2000, 20, 1000, 0.6, 0.95), 1);
  assert.equal(delayLoad(9000, 20, 1000, 0.6, 0.95), 1);
  assert.ok(Number.isNaN(delayLoad(Number.NaN, 20, 1000, 0.6, 0.95)));
});

test('clusterDecisionLoad: min of utilisation and delay; either alone when the other is unknown', () => {
  assert.equal(clusterDecisionLoad(1, 0.1), 0.1); // at capacity and keeping up: no refusal
  assert.equal(clusterDecisionLoad(0.2, 0.9), 0.2); // a slow backend, not overload
  assert.equal(clusterDecisionLoad(0.97, 0.8), 0.8);
  assert.equal(clusterDecisionLoad(0.7, Number.NaN), 0.7);
  assert.equal(clusterDecisionLoad(Number.NaN, 0.4), 0.4);
});

test("littleDelay: in flight over the completion rate, in ms; nothing in flight is 0, no completion counts as one", () => {
  assert.equal(littleDelay(30, 24, 100), 125); // 30 / 240 per s
  assert.equal(littleDelay(6, 24, 100), 25); // six workers busy, no queue: the service time
  assert.equal(littleDelay(0, 24, 100), 0);
  assert.equal(littleDelay(12, 0, 100), 1200);
});

test('QueueDelay: the larger of the standing delay and Little\'s law, less the baseline; Little alone before any completion', () => {
  const q = new QueueDelay(3, 100);
  assert.equal(q.sample(0), 0, 'idle: nothing in flight, nothing completed');
  assert.equal(q.sample(2), 200, 'in flight, no completion, no baseline: Little alone, 2 x 100 / 1');
  q.record(20);
  q.record(30);
  assert.equal(q.sample(0), 0); // baseline 20: 20 - 20; Little 0 - 20 < 0
  // SIP at twice capacity: 12 INVITEs unanswered, 2 answered in 100 ms (20 per s): 600 ms of queue,
  // where the fastest answer says only 30 ms so far.
  q.record(50);
  q.record(60);
  assert.equal(q.sample(12), 580); // max(50 - 20, 12 x 100 / 2 - 20)
  // Nothing answered, 3 outstanding: Little's law alone, no completion counting as one.
  assert.equal(q.sample(3), 280); // 3 x 100 / 1 - 20
  assert.equal(q.sample(0), 0);
  // Below capacity: one in service, 4 answered in 100 ms (40 per s): Little says 25 ms, the fastest 21.
  for (const ms of [22, 21, 25, 30]) q.record(ms);
  assert.equal(q.sample(1), 5); // max(21 - 20, 1 x 100 / 4 - 20)
});

test('QueueDelay: an interval that lasted longer (the timer ran late) divides by the time passed and takes the lateness off the fastest', () => {
  const q = new QueueDelay(3, 100);
  q.record(20);
  assert.equal(q.sample(0), 0); // baseline 20
  // The dispatcher stalled: the interval lasted 700 ms, 6 in flight, 24 completed, the fastest in 650 ms.
  // Fastest: 650 - 600 (lateness) - 20 = 30. Little: 6 x 700 / 24 - 20 = 155.
  for (let i = 0; i < 23; i++) q.record(900);
  q.record(650);
  assert.equal(q.sample(6, 700), 155);
  // The same with 100 ms assumed would have read 630 (650 - 20).
  q.record(300);
  assert.equal(q.sample(0, 400), 0, 'lateness larger than the fastest: no queue');
});

test('minDelay: the smallest known delay of the backends', () => {
  assert.equal(minDelay([300, 0, Number.NaN]), 0);
  assert.equal(minDelay([Number.NaN, 250, 120]), 120);
  assert.ok(Number.isNaN(minDelay([Number.NaN])));
  assert.ok(Number.isNaN(minDelay([])));
});

const PARAMS = { targetMs: 100, holdMs: 200, kp: 0.2, ki: 0.5, slopeMs: 0 };

test('median3: the middle of three, the smaller of two known, the newest alone', () => {
  assert.equal(median3(Number.NaN, Number.NaN, 900), 900);
  assert.equal(median3(Number.NaN, 100, 900), 100);
  assert.equal(median3(100, Number.NaN, 90), 90);
  assert.equal(median3(100, 9000, 120), 120);
  assert.equal(median3(300, 90, 300), 300);
  assert.equal(median3(5, 1, 3), 3);
});

test('QueueController: nothing refused until the delay has stayed above the target for the hold time', () => {
  const q = new QueueController(PARAMS);
  assert.equal(q.next(300, true, 100), 0); // over for 100 ms
  assert.equal(q.next(90, true, 100), 0); // median(300, 90) = 90: back under, the hold restarts
  assert.equal(q.next(300, true, 100), 0); // median(300, 90, 300) = 300, over for 100 ms
  // median(90, 300, 300) = 300, held 200 ms: e = 2, I = 0.5 x min(2, 1) x 0.1 = 0.05, p = 0.05 + 0.2 x 2.
  near(q.next(300, true, 100), 0.45);
  near(q.integralTerm, 0.05);
  // Not falling (slopeMs 0: the smoothed delay is the delay): I = 0.1, p = 0.5.
  near(q.next(300, true, 100), 0.5);
  // One sample spanning a 500 ms stall is one observation: the hold also wants two samples.
  const r = new QueueController(PARAMS);
  assert.equal(r.next(300, true, 500), 0);
  near(r.next(300, true, 100), 0.45);
  // 600 ms is 1 + 1/kp = 6 targets: no hold. e = 5: I = 0.5 x 1 x 0.1 = 0.05, p = min(1, 0.05 + 1).
  const fast = new QueueController(PARAMS);
  assert.equal(fast.next(600, true, 100), 1);
  near(fast.integralTerm, 0.05);
});

test('QueueController: one reading far off moves nothing (median of three)', () => {
  const q = new QueueController({ ...PARAMS, holdMs: 0 });
  assert.equal(q.next(50, true, 100), 0);
  assert.equal(q.next(60, true, 100), 0);
  assert.equal(q.next(9000, true, 100), 0); // median(50, 60, 9000) = 60
  assert.equal(q.next(40, true, 100), 0); // median(60, 9000, 40) = 60
  assert.equal(q.integralTerm, 0);
});

test('QueueController: the integral settles the queue at the target; it unwinds under the target, then stops refusing', () => {
  const q = new QueueController({ ...PARAMS, holdMs: 0 });
  const steps: [number, number, number][] = [
    // [delay, p, I]: e of the median; I += 0.5 x min(e, 1) x 0.1; p = I + 0.2 e.
    [200, 0.25, 0.05], // e = 1
    [200, 0.3, 0.1],
    [100, 0.35, 0.15], // median(200, 200, 100) = 200
    [100, 0.15, 0.15], // median(200, 100, 100) = 100: at the target the drop is I alone
    [50, 0.15, 0.15], // median(100, 100, 50) = 100
    [50, 0.025, 0.125], // median 50: e = -0.5, I = 0.15 - 0.025, p = 0.125 - 0.1
    [0, 0, 0.1], // median(50, 50, 0) = 50: p = 0.1 - 0.1
    [0, 0, 0.05], // median 0: e = -1 (its floor), I falls 0.05 per 100 ms
    [0, 0, 0], // I at 0 with the queue under the target: idle
    [150, 0, 0], // median(0, 0, 150) = 0: nothing over the target yet
    [150, 0.125, 0.025], // median(0, 150, 150) = 150: e = 0.5, I = 0.025, p = 0.025 + 0.1
  ];
  for (const [delay, p, i] of steps) {
    near(q.next(delay, true, 100), p);
    near(q.integralTerm, i);
  }
});

test('QueueController: e capped at 1 / kp for p (all refused from 6 targets on); the integral rises at most ki per s, and holds while the queue falls', () => {
  const q = new QueueController({ ...PARAMS, holdMs: 0, slopeMs: 100 });
  // 2000 ms is e = 19: p = min(1, I + 0.2 x 5) = 1; I = 0.5 x 1 x 0.1 = 0.05.
  assert.equal(q.next(2000, true, 100), 1);
  near(q.integralTerm, 0.05);
  // median(2000, 1500) = 1500, falling: I stays 0.05 though e > 0.
  assert.equal(q.next(1500, true, 100), 1);
  assert.equal(q.next(200, true, 100), 1); // median(2000, 1500, 200) = 1500
  near(q.integralTerm, 0.05);
  // median(1500, 200, 200) = 200, still falling: e = 1, p = 0.05 + 0.2, I unchanged.
  near(q.next(200, true, 100), 0.25);
  near(q.integralTerm, 0.05);
});

test('QueueController: gate closed counts as an empty queue; NaN keeps the drop; a bad target is refused', () => {
  const q = new QueueController({ ...PARAMS, holdMs: 0 });
  assert.equal(q.next(900, false, 100), 0, 'a slow backend with low utilisation is not refused');
  near(q.next(200, true, 100), 0.25); // median(900, 200) = 200 (the gated reading is in the history): e = 1, I = 0.05
  near(q.next(200, true, 100), 0.3); // median(900, 200, 200) = 200: I = 0.1
  near(q.next(Number.NaN, true, 100), 0.3);
  // Gate closed while refusing: e = -1 at once, I = 0.1 - 0.05, p = 0.05 - 0.2 -> 0; then I = 0: idle.
  assert.equal(q.next(900, false, 100), 0);
  near(q.integralTerm, 0.05);
  assert.equal(q.next(900, false, 100), 0);
  assert.equal(q.integralTerm, 0);
  assert.throws(() => new QueueController({ ...PARAMS, targetMs: 0 }), RangeError);
});
