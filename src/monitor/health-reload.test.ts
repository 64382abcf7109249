/**
 * The health monitor under live reload (issue 14): a backend added after start is watched at once, a
 * retired (removed) one drains for good but still goes down on a failure (its sessions re-pin), and
 * new detector settings apply to every backend without moving their states.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import { healthSchema } from '../config/schema.js';
import { Backend } from '../core/backend.js';
import { HealthMonitor } from './health.js';
import { wireTimestamp } from '../wire/timestamp.js';

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Advances fake time 10 ms at a time, letting probe results in between (as real time would). */
async function step(clock: FakeClock, ms: number): Promise<void> {
  for (let i = 0; i < ms; i += 10) {
    clock.advance(10);
    await flush();
  }
}

function setup(t: import('node:test').TestContext, detector: 'passive' | 'pull') {
  const clock = new FakeClock(1_700_000_000_000);
  const backends = [new Backend('web', 'a', '127.0.0.1', 10_000, 1, 0)];
  const up = new Map<string, boolean>();
  const probed: string[] = [];
  const probe = (b: { port: number }): Promise<boolean> => {
    const id = backends.find((x) => x.port === b.port)!.id;
    probed.push(id);
    return Promise.resolve(up.get(id) ?? true);
  };
  const config = healthSchema.parse({ probe: { intervalMs: 100, timeoutMs: 50 }, detector: { type: detector, intervalMs: 100, n: 3 } });
  const monitor = new HealthMonitor('web', backends, config, clock, probe);
  const changes: string[] = [];
  monitor.onChange((b) => changes.push(`${b.id}:${b.state}`));
  t.after(() => monitor.close());
  return { clock, backends, monitor, up, probed, changes };
}

test('add: a backend appended after start is probed at once (passive) and comes up', async (t) => {
  const { backends, monitor, probed } = setup(t, 'passive');
  monitor.start();
  await flush();
  const b = new Backend('web', 'b', '127.0.0.1', 10_001, 1, 1);
  backends.push(b);
  monitor.add(b);
  await flush();
  assert.deepEqual(probed, ['a', 'b']);
  assert.equal(b.state, 'up');
});

test('retire (passive): draining for good; a failure takes it down and nothing brings it back', async (t) => {
  const { clock, backends, monitor, probed, changes } = setup(t, 'passive');
  const a = backends[0]!;
  monitor.start();
  await flush();
  assert.equal(monitor.retire(a), true);
  assert.deepEqual([a.state, a.reason, a.eligible], ['draining', 'removed', false]);
  assert.equal(monitor.retire(a), false);
  assert.equal(monitor.undrain(a), false, 'an operator cannot undrain a removed backend');
  assert.equal(monitor.drain(a), false);
  monitor.reportSuccess(a);
  assert.equal(a.state, 'draining');
  monitor.reportFailure(a, 'refused');
  assert.equal(a.state, 'down', 'a failure still takes it down: its sessions re-pin');
  const before = probed.length;
  clock.advance(10_000);
  await flush();
  assert.equal(probed.length, before, 'a removed backend that went down is not probed');
  assert.equal(a.state, 'down');
  assert.deepEqual(changes, ['a:up', 'a:draining', 'a:down']);
});

test('retire (pull): the hellos go on while it drains; a silent one goes down and stays down', async (t) => {
  const { clock, backends, monitor, up } = setup(t, 'pull');
  const a = backends[0]!;
  monitor.start();
  await flush();
  assert.equal(a.state, 'up');
  monitor.retire(a);
  await step(clock, 1000);
  assert.equal(a.state, 'draining', 'replies keep it draining, not up');
  up.set('a', false);
  await step(clock, 1000);
  assert.equal(a.state, 'down');
  up.set('a', true);
  await step(clock, 1000);
  assert.equal(a.state, 'down', 'no reply brings a removed backend back');
});

test('reconfigure: passive to pull keeps states, starts the hellos; a drained backend stays drained', async (t) => {
  const { clock, backends, monitor, probed, up } = setup(t, 'passive');
  const b = new Backend('web', 'b', '127.0.0.1', 10_001, 1, 1);
  backends.push(b);
  monitor.add(b);
  monitor.start();
  await flush();
  monitor.drain(b);
  monitor.reconfigure(healthSchema.parse({ probe: { intervalMs: 100, timeoutMs: 50 }, detector: { type: 'pull', intervalMs: 50, n: 2 } }));
  assert.equal(monitor.detectorType, 'pull');
  assert.deepEqual([backends[0]!.state, b.state], ['up', 'draining']);
  const before = probed.filter((x) => x === 'a').length;
  await step(clock, 500);
  assert.ok(probed.filter((x) => x === 'a').length >= before + 10, 'hellos every 50 ms');
  up.set('a', false);
  await step(clock, 500);
  assert.equal(backends[0]!.state, 'down', 'the new detector decides');
  assert.equal(b.state, 'draining');
});

test('reconfigure: a hello in flight under the old settings cannot take the backend down afterwards', async (t) => {
  const { clock, backends, monitor } = setup(t, 'pull');
  const a = backends[0]!;
  monitor.start(); // the first hello is in flight (its reply comes after a turn of the loop)
  monitor.reconfigure(healthSchema.parse({ probe: { intervalMs: 100, timeoutMs: 50 }, detector: { type: 'pull', intervalMs: 1000, n: 3 } }));
  await step(clock, 500);
  assert.equal(a.state, 'up', 'the old watch (down after 300 ms of silence) is gone');
  await step(clock, 2000);
  assert.equal(a.state, 'up');
});

test('retire (push): heartbeats keep a removed backend draining; silence takes it down, and it stays down', async (t) => {
  const clock = new FakeClock(1_700_000_000_000);
  const a = new Backend('web', 'a', '127.0.0.1', 10_000, 1, 0, 7);
  const config = healthSchema.parse({ detector: { type: 'push', intervalMs: 10, n: 3 }, probe: { intervalMs: 100, timeoutMs: 50 } });
  const monitor = new HealthMonitor('web', [a], config, clock, () => Promise.resolve(true));
  t.after(() => monitor.close());
  let seq = 0;
  const beat = () => monitor.onAvailability(a, { host: 7, seq: ++seq, flag: 'available', timestamp: wireTimestamp(clock.wallNow()) }, clock.now());
  monitor.start();
  beat();
  assert.equal(a.state, 'up');
  monitor.retire(a);
  for (let i = 0; i < 20; i++) {
    clock.advance(10);
    beat();
  }
  assert.equal(a.state, 'draining', 'heartbeats on time: it drains, neither up nor down');
  clock.advance(100);
  assert.equal(a.state, 'down', 'silent for n x interval: down, its sessions re-pin');
  beat();
  clock.advance(10);
  beat();
  assert.equal(a.state, 'down', 'a removed backend never comes back');
});
