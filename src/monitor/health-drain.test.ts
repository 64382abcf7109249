/**
 * An operator's drain (admin API, issue 14) on the health monitor: no detector moves a drained
 * backend, a planned-failure drain becomes an operator's one, undrain makes it eligible again and a
 * probe (passive) or the next hello (pull) brings it up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import { healthSchema } from '../config/schema.js';
import { Backend } from '../core/backend.js';
import { HealthMonitor } from './health.js';

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function setup(t: import('node:test').TestContext, detector: 'passive' | 'pull') {
  const clock = new FakeClock(1_700_000_000_000);
  const backend = new Backend('web', 'a', '127.0.0.1', 10_000, 1, 0);
  let up = true;
  let probes = 0;
  const probe = (): Promise<boolean> => {
    probes++;
    return Promise.resolve(up);
  };
  const config = healthSchema.parse({ probe: { intervalMs: 100, timeoutMs: 50 }, detector: { type: detector, intervalMs: 100, n: 3 } });
  const monitor = new HealthMonitor('web', [backend], config, clock, probe);
  t.after(() => monitor.close());
  return { clock, backend, monitor, setUp: (v: boolean) => (up = v), probes: () => probes };
}

test('passive: a drained backend stays drained through failures and probes; undrain probes it back up', async (t) => {
  const { clock, backend, monitor, setUp, probes } = setup(t, 'passive');
  monitor.start();
  await flush();
  assert.equal(backend.state, 'up');
  assert.equal(monitor.drain(backend, 'kernel upgrade'), true);
  assert.deepEqual([backend.state, backend.reason, backend.eligible], ['draining', 'kernel upgrade', false]);
  assert.equal(monitor.drain(backend), false);
  monitor.reportFailure(backend, 'refused');
  monitor.reportSuccess(backend);
  clock.advance(1000);
  await flush();
  assert.equal(backend.state, 'draining');

  setUp(true);
  const before = probes();
  assert.equal(monitor.undrain(backend), true);
  assert.equal(backend.state === 'unknown' || backend.state === 'up', true);
  assert.equal(backend.eligible, true);
  await flush();
  assert.equal(probes(), before + 1);
  assert.deepEqual([backend.state, backend.reason], ['up', 'probe ok']);
  assert.equal(monitor.undrain(backend), false);
});

test('pull: undrain restarts the hellos of a backend drained before start', async (t) => {
  const { clock, backend, monitor, probes } = setup(t, 'pull');
  monitor.drain(backend);
  monitor.start();
  clock.advance(500);
  await flush();
  assert.equal(probes(), 0);
  assert.equal(backend.state, 'draining');
  monitor.undrain(backend);
  await flush();
  assert.equal(backend.state, 'up');
  for (let i = 0; i < 3; i++) {
    clock.advance(100);
    await flush();
  }
  assert.equal(probes(), 4, 'the hello at undrain, then one every intervalMs');
  assert.equal(backend.state, 'up');
});
