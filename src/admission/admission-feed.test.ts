import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import type { AdmissionControl, LoadEstimate } from './admission-controller.js';
import { ADMIT_ALL } from './admission-controller.js';
import { EventLoopLoad, LoadSmoother, dispatcherLoad, startAdmissionFeed } from './admission-feed.js';

const near = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

test('the feed hands (l, l_c) to the controller every interval until cancelled; the first l (start-up) is discarded', () => {
  const clock = new FakeClock();
  const seen: LoadEstimate[] = [];
  const control: AdmissionControl = { ...ADMIT_ALL, update: (e) => void seen.push(e) };
  let i = 0;
  const timer = startAdmissionFeed(control, { cluster: () => 0.1 * ++i, dispatcher: () => 0.05 }, clock, 100);
  clock.advance(99);
  assert.equal(seen.length, 0);
  clock.advance(201);
  assert.equal(seen.length, 3);
  assert.deepEqual(
    seen.map((e) => [Math.round(e.cluster * 10) / 10, e.dispatcher]),
    [
      [0.1, 0],
      [0.2, 0.05],
      [0.3, 0.05],
    ],
  );
  timer.cancel();
  clock.advance(1000);
  assert.equal(seen.length, 3);
});

test('EventLoopLoad: a loop kept busy since the last sample reads above 0, at most 1', () => {
  const load = new EventLoopLoad();
  load.sample();
  // Synchronous work only: the event loop is active the whole time; the CPU share depends on what
  // else the machine runs (dispatcherLoad's numbers are tested below).
  const until = performance.now() + 30;
  while (performance.now() < until);
  const busy = load.sample();
  assert.ok(busy > 0 && busy <= 1, `load ${busy}`);
});

test('dispatcherLoad: min of utilisation and CPU share, clamped', () => {
  near(dispatcherLoad(0.95, 12, 100), 0.12); // descheduled mid-callback: the CPU it got says 0.12
  near(dispatcherLoad(0.4, 90, 100), 0.4); // helper threads' CPU does not raise the loop's load
  assert.equal(dispatcherLoad(1, 130, 100), 1);
  assert.equal(dispatcherLoad(0.3, 5, 0), 0.3);
  assert.equal(dispatcherLoad(-0.1, 5, 100), 0);
});

test('EventLoopLoad: a sample after waiting on I/O is a fraction in [0, 1]', async () => {
  const load = new EventLoopLoad();
  await new Promise((resolve) => setTimeout(resolve, 20));
  const x = load.sample();
  assert.ok(x >= 0 && x <= 1, `utilisation ${x}`);
});

test('LoadSmoother: exponential weights by elapsed time, first sample as is, NaN skipped, 0 = no smoothing', () => {
  const s = new LoadSmoother(100);
  assert.equal(s.next(0.4, 50), 0.4);
  // w = 1 - e^-1 = 0.6321205588: 0.4 + 0.6321205588 x (0.9 - 0.4) = 0.7160602794.
  assert.ok(Math.abs(s.next(0.9, 100) - 0.7160602794) < 1e-9);
  assert.ok(Math.abs(s.next(Number.NaN, 100) - 0.7160602794) < 1e-9);
  // Two samples 50 ms apart weigh as one 100 ms apart: 1 - (e^-0.5)^2 = 1 - e^-1.
  const a = new LoadSmoother(100);
  a.next(0, 1);
  a.next(1, 50);
  assert.ok(Math.abs(a.next(1, 50) - (1 - Math.exp(-1))) < 1e-12);
  const raw = new LoadSmoother(0);
  raw.next(0.2, 100);
  assert.equal(raw.next(0.9, 100), 0.9);
});

test('the feed smooths l and l_c with time constant smoothingMs', () => {
  const clock = new FakeClock();
  const seen: LoadEstimate[] = [];
  const control: AdmissionControl = { ...ADMIT_ALL, update: (e) => void seen.push(e) };
  const cluster = [0.2, 1, 1];
  const dispatcher = [0.9, 0.1, 0.5];
  let i = 0;
  startAdmissionFeed(control, { cluster: () => cluster[i]!, dispatcher: () => dispatcher[i++]! }, clock, 100, 200);
  clock.advance(300);
  const w = 1 - Math.exp(-0.5); // 100 ms over a 200 ms time constant: 0.3934693403
  // l_c: 0.2, then 0.2 + w x 0.8 = 0.5147754722, then + w x (1 - 0.5147754722) = 0.7056...
  const lc1 = 0.2 + w * 0.8;
  const lc2 = lc1 + w * (1 - lc1);
  assert.ok(Math.abs(seen[1]!.cluster - 0.5147754722) < 1e-9);
  assert.ok(Math.abs(seen[2]!.cluster - lc2) < 1e-12);
  // l: the start-up sample 0.9 is discarded (0 fed), then 0.1 taken as is, then 0.1 + w x 0.4.
  assert.deepEqual(seen.map((e) => e.dispatcher).slice(0, 2), [0, 0.1]);
  assert.ok(Math.abs(seen[2]!.dispatcher - (0.1 + w * 0.4)) < 1e-12);
});

test('LoadSmoother: riseMs follows a rise faster than smoothingMs lets it fall', () => {
  const s = new LoadSmoother(500, 100);
  s.next(0, 100);
  // Rising: w = 1 - e^(-100/100) = 0.6321205588.
  near(s.next(1, 100), 1 - Math.exp(-1));
  // Falling from there: w = 1 - e^(-100/500) = 0.1812692469.
  const up = 1 - Math.exp(-1);
  near(s.next(0, 100), up - (1 - Math.exp(-0.2)) * up);
  const instant = new LoadSmoother(500, 0);
  instant.next(0.1, 100);
  assert.equal(instant.next(0.8, 100), 0.8);
  assert.ok(instant.next(0, 100) > 0.6);
});

test('the feed hands min(l_c, l_q) once the delay signal exists, l_c alone before; the queue controller\'s drop as newDrop', () => {
  const clock = new FakeClock();
  const seen: LoadEstimate[] = [];
  const control: AdmissionControl = { ...ADMIT_ALL, update: (e) => void seen.push(e) };
  // Target 100 ms -> T1 0.6, capacity 1000 ms -> C 0.95: 50 ms reads 0.3, 600 ms reads 0.6 + 0.35 x 500 / 900.
  const delays = [Number.NaN, 50, Number.NaN, 600, 600];
  let i = 0;
  const delay = { targetMs: 100, capacityMs: 1000, t1: 0.6, c: 0.95, holdMs: 0, kp: 0.2, ki: 0.5 };
  startAdmissionFeed(control, { cluster: () => 0.97, dispatcher: () => 0, delayMs: () => delays[i++]! }, clock, 100, 0, delay);
  clock.advance(500);
  const lq = 0.6 + (0.35 * 500) / 900;
  assert.deepEqual(
    seen.map((e) => e.cluster),
    [0.97, 0.3, 0.3, 0.3, lq], // NaN keeps the last delay estimate; l_q reads the median of three: median(50, 600) = 50
  );
  // The controller's median: 50, then median(50, 600) = 50, then median(50, 600, 600) = 600: e = 5 =
  // 1 / kp, no hold: p = I + 0.2 x 5 -> 1.
  assert.deepEqual(
    seen.map((e) => e.newDrop),
    [0, 0, 0, 0, 1],
  );
  assert.deepEqual(seen.map((e) => e.utilisation), [0.97, 0.97, 0.97, 0.97, 0.97]);
});

test('the feed never refuses for the delay while the utilisation is under T1 (a slow backend, not overload)', () => {
  const clock = new FakeClock();
  const seen: LoadEstimate[] = [];
  const control: AdmissionControl = { ...ADMIT_ALL, update: (e) => void seen.push(e) };
  const delay = { targetMs: 100, capacityMs: 1000, t1: 0.6, c: 0.95, holdMs: 0 };
  startAdmissionFeed(control, { cluster: () => 0.3, dispatcher: () => 0, delayMs: () => 900 }, clock, 100, 0, delay);
  clock.advance(500);
  assert.deepEqual(seen.map((e) => e.newDrop), [0, 0, 0, 0, 0]);
  assert.deepEqual(seen.map((e) => e.cluster), [0.3, 0.3, 0.3, 0.3, 0.3], 'min(l_c, l_q)');
});

test('without a delay source the feed hands no newDrop (eq. 2 alone decides)', () => {
  const clock = new FakeClock();
  const seen: LoadEstimate[] = [];
  const control: AdmissionControl = { ...ADMIT_ALL, update: (e) => void seen.push(e) };
  startAdmissionFeed(control, { cluster: () => 0.7, dispatcher: () => 0 }, clock, 100, 0, { targetMs: 100, capacityMs: 1000, t1: 0.6, c: 0.95, holdMs: 0 });
  clock.advance(100);
  assert.equal(seen[0]!.newDrop, undefined);
  assert.equal(seen[0]!.cluster, 0.7);
});
