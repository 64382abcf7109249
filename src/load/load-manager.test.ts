import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import type { LoadMonitorEvent, LoadSampleEvent } from '../core/diagnostics.js';
import type { LoadConfig } from '../config/schema.js';
import { Backend } from '../core/backend.js';
import type { LoadVector } from '../wire/load-vector.js';
import { LoadManager } from './load-manager.js';

const EPS = 1e-12;
/** delta_load of these tests; the monitor fails after 3 x this. */
const INTERVAL_MS = 100;
const CFG: LoadConfig = { intervalMs: INTERVAL_MS, history: 4, alpha: 0.5 };

function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < EPS, `${what}: expected ${expected}, got ${actual}`);
}

let seq = 0;
function vector(host: number, load: number): LoadVector {
  seq++;
  return { host, seq, timestamp: 0, cpu: load, memory: 0, network: 0, io: 0, backlog: 0, load };
}

/** Backends a, b, c with agents 1, 2, 3 (and `extra` without agents), in a service of its own. */
function setup(t: TestContext, service: string, extra = 0) {
  const backends = ['a', 'b', 'c'].map((id, index) => new Backend(service, id, '127.0.0.1', 9000 + index, 1, index, index + 1));
  for (let i = 0; i < extra; i++) backends.push(new Backend(service, `x${i}`, '127.0.0.1', 9100 + i, 1, 3 + i, null));
  const clock = new FakeClock(1_000);
  const manager = new LoadManager(service, backends, CFG, clock);
  const monitor: LoadMonitorEvent[] = [];
  const samples: LoadSampleEvent[] = [];
  const onMonitor = (m: unknown): void => {
    if ((m as LoadMonitorEvent).service === service) monitor.push(m as LoadMonitorEvent);
  };
  const onSample = (m: unknown): void => {
    if ((m as LoadSampleEvent).service === service) samples.push(m as LoadSampleEvent);
  };
  channels.loadMonitor.subscribe(onMonitor);
  channels.loadSample.subscribe(onSample);
  t.after(() => {
    manager.close();
    channels.loadMonitor.unsubscribe(onMonitor);
    channels.loadSample.unsubscribe(onSample);
  });
  const [a, b, c] = backends as [Backend, Backend, Backend];
  return { a, b, c, backends, clock, manager, monitor, samples };
}

test('onVector writes the sample to load and the damped estimate (eq. 8) to forecast', (t) => {
  const { a, manager, samples } = setup(t, 'svc-vector');
  manager.start();
  manager.onVector(a, vector(1, 0.2));
  // First sample: no earlier forecast, err 1, l~ = 0.2.
  assert.equal(a.load, 0.2);
  near(a.forecast, 0.2, 'l~ 1');
  manager.onVector(a, vector(1, 0.4));
  // err = |(0.2 - 0.4) / 0.4| = 0.5; regression on [0.2, 0.4] → 0.6; l~ = 0.5*0.6 + 0.5*0.4 = 0.5.
  assert.equal(a.load, 0.4);
  near(a.forecast, 0.5, 'l~ 2');
  assert.equal(samples.length, 2);
  assert.equal(samples[1]!.backend, 'a');
  assert.equal(samples[1]!.load, 0.4);
  near(samples[1]!.forecast, 0.5, 'published forecast');
  // Only a has reported: eq. 1 over [0.4] = 0.5 * 0.4 + 0.5 * 0 = 0.2.
  near(samples[1]!.clusterLoad, 0.2, 'published l_c');
});

test('clusterLoad is eq. 1 over the backends that reported', (t) => {
  const { a, b, c, manager } = setup(t, 'svc-cluster', 2);
  assert.equal(manager.clusterLoad(), 0);
  manager.onVector(a, vector(1, 0.2));
  manager.onVector(b, vector(2, 0.4));
  manager.onVector(c, vector(3, 0.6));
  // [0.2, 0.4, 0.6], alpha 0.5: 0.2 + 0.5 * 0.08 / 3 = 0.21333… (the agentless x0, x1 do not count).
  near(manager.clusterLoad(), 0.2 + 0.04 / 3, 'l_c');
});

test('clusterForecast is eq. 1 over the shell forecasts of the backends that reported', (t) => {
  const { a, b, c, manager } = setup(t, 'svc-cluster-forecast', 1);
  assert.equal(manager.clusterForecast(), 0);
  manager.onVector(a, vector(1, 0.2));
  manager.onVector(a, vector(1, 0.4));
  manager.onVector(b, vector(2, 0.4));
  manager.onVector(c, vector(3, 0.6));
  // l~: a 0.5 (see the first test), b 0.4 and c 0.6 (first samples, err 1: the sample itself).
  // [0.5, 0.4, 0.6], alpha 0.5: mean 0.5, variance 0.02 / 3, l_c = 0.25 + 0.01 / 3.
  near(manager.clusterForecast(), 0.25 + 0.01 / 3, 'forecast l_c');
  // On the samples [0.4, 0.4, 0.6] instead: mean 1.4 / 3, deviations -0.2/3, -0.2/3, 0.4/3,
  // variance (0.04 + 0.04 + 0.16) / 9 / 3 = 0.08 / 9.
  near(manager.clusterLoad(), 0.7 / 3 + 0.04 / 9, 'sampled l_c');
});

test('a silent load monitor fails after exactly 3 x delta_load, once, and is held at the alive mean', (t) => {
  const { a, b, c, clock, manager, monitor } = setup(t, 'svc-fail', 1);
  manager.start();
  manager.onVector(a, vector(1, 0.2));
  manager.onVector(b, vector(2, 0.6));
  manager.onVector(c, vector(3, 0.9));
  // a and b keep reporting every delta; c goes silent after its vector at t = 1000.
  for (let i = 0; i < 2; i++) {
    clock.advance(INTERVAL_MS);
    manager.onVector(a, vector(1, 0.2));
    manager.onVector(b, vector(2, 0.6));
  }
  // t = 1200. c has been silent 200 ms. Up to 1 ms short of 300 ms: still alive.
  clock.advance(INTERVAL_MS - 1);
  assert.equal(manager.monitorFailed(c), false);
  assert.equal(monitor.length, 0);
  assert.equal(c.load, 0.9);
  clock.advance(1); // t = 1300: 3 x 100 ms of silence.
  assert.equal(manager.monitorFailed(c), true);
  assert.equal(monitor.length, 1);
  assert.deepEqual(monitor[0], { service: 'svc-fail', backend: 'c', state: 'failed', at: 1300 });
  // a and b (alive) had flat series: a = 0.2/0.2, b = 0.6/0.6 (load/forecast); their means are 0.4.
  near(c.load, 0.4, 'c load = mean(0.2, 0.6)');
  near(c.forecast, 0.4, 'c forecast = mean(0.2, 0.6)');
  // a and b went silent too at 1200 and fail at 1500; nothing else fails or repeats before then.
  clock.advance(150);
  assert.equal(monitor.length, 1, 'the failure is published once');
  // The mean follows the alive backends: a now reports 0.4, so loads are a 0.4, b 0.6 → 0.5.
  manager.onVector(a, vector(1, 0.4));
  near(c.load, 0.5, 'c follows the alive mean');
  // a's history [0.2, 0.2, 0.2, 0.4]: err = |(0.2 - 0.4) / 0.4| = 0.5 (the flat series forecast 0.2);
  // regression x̄ = 1.5, ȳ = 0.25, Σ(x-x̄)(y-ȳ) = (-1.5)(-0.05) + (-0.5)(-0.05) + (0.5)(-0.05) + (1.5)(0.15)
  // = 0.075 + 0.025 - 0.025 + 0.225 = 0.3, Σ(x-x̄)² = 5, slope 0.06, l^ = 0.25 + 0.06 * 2.5 = 0.4;
  // l~ = 0.5 * 0.4 + 0.5 * 0.4 = 0.4. Mean forecast of a and b: (0.4 + 0.6) / 2 = 0.5.
  near(a.forecast, 0.4, 'a forecast');
  near(c.forecast, 0.5, 'c forecast follows the alive mean');
  // The agentless x0 is never watched.
  assert.ok(monitor.every((e) => e.backend !== 'x0'));
});

test('silence is counted from the last vector, not from start', (t) => {
  const { a, b, c, clock, manager, monitor } = setup(t, 'svc-refresh');
  manager.start();
  clock.advance(250);
  manager.onVector(a, vector(1, 0.5)); // t = 1250: a is due at 1550; b and c at 1300.
  clock.advance(50);
  assert.deepEqual(monitor.map((e) => e.backend).sort(), ['b', 'c']);
  assert.equal(manager.monitorFailed(b), true);
  // No alive monitor besides a: b and c (never reported) sit at a's load.
  assert.equal(b.load, 0.5);
  assert.equal(c.forecast, 0.5);
  clock.advance(249);
  assert.equal(manager.monitorFailed(a), false);
  clock.advance(1);
  assert.equal(manager.monitorFailed(a), true);
  assert.equal(monitor.length, 3);
});

test('a vector after the failure recovers the monitor with a fresh history', (t) => {
  const { a, b, c, clock, manager, monitor } = setup(t, 'svc-recover');
  manager.start();
  manager.onVector(a, vector(1, 0.3));
  manager.onVector(b, vector(2, 0.5));
  manager.onVector(c, vector(3, 0.1));
  manager.onVector(c, vector(3, 0.2));
  for (let i = 0; i < 3; i++) {
    clock.advance(INTERVAL_MS);
    manager.onVector(a, vector(1, 0.3));
    manager.onVector(b, vector(2, 0.5));
  }
  assert.deepEqual(monitor.map((e) => `${e.backend}:${e.state}`), ['c:failed']);
  near(c.load, 0.4, 'held at mean(0.3, 0.5)');
  clock.advance(20);
  manager.onVector(c, vector(3, 0.8));
  assert.deepEqual(monitor.map((e) => `${e.backend}:${e.state}`), ['c:failed', 'c:recovered']);
  assert.equal(monitor[1]!.at, 1320);
  assert.equal(manager.monitorFailed(c), false);
  assert.equal(c.load, 0.8);
  // The old history [0.1, 0.2] is gone: one sample, err 1, l~ = 0.8 (with it, the ramp would say 1).
  assert.equal(c.forecast, 0.8);
  // The other backends' vectors no longer move c.
  manager.onVector(a, vector(1, 0.3));
  assert.equal(c.load, 0.8);
  // And it is watched again: silent from 1320, it fails again at 1620 (a and b keep reporting).
  for (const step of [99, 100, 100]) {
    clock.advance(step);
    manager.onVector(a, vector(1, 0.3));
    manager.onVector(b, vector(2, 0.5));
  }
  assert.equal(monitor.length, 2, 'still alive at 1619');
  clock.advance(1);
  assert.equal(monitor.length, 3);
  assert.equal(monitor[2]!.state, 'failed');
});

test('without start no monitor is watched; close stops the timers and ignores later vectors', (t) => {
  const { a, clock, manager, monitor } = setup(t, 'svc-close');
  manager.onVector(a, vector(1, 0.3));
  clock.advance(10 * INTERVAL_MS);
  assert.deepEqual(monitor, [], 'not started');
  manager.start();
  manager.start();
  clock.advance(2 * INTERVAL_MS);
  manager.close();
  clock.advance(10 * INTERVAL_MS);
  assert.deepEqual(monitor, [], 'closed before the timeout');
  manager.onVector(a, vector(1, 0.9));
  assert.equal(a.load, 0.3);
  manager.close();
});

test('a backend of another service is refused', (t) => {
  const { manager } = setup(t, 'svc-other');
  const stranger = new Backend('elsewhere', 'z', '127.0.0.1', 9999, 1, 0, 9);
  assert.throws(() => manager.onVector(stranger, vector(9, 0.1)), RangeError);
});
