import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { FakeClock } from '../core/clock.js';
import type { BackendStateEvent } from '../core/diagnostics.js';
import { healthSchema } from '../config/schema.js';
import { Backend } from '../core/backend.js';
import { HealthMonitor } from './health.js';
import type { ProbeConfig } from './health.js';

const INTERVAL_MS = 100;
const START_MS = 1_700_000_000_000;

/** A prober whose answers the test controls: `auto` answers at once, otherwise the test resolves. */
class FakeProber {
  readonly calls: string[] = [];
  readonly pending: Array<{ id: string; resolve: (up: boolean) => void; reject: (e: Error) => void }> = [];
  readonly answers = new Map<string, boolean>();
  auto = true;
  configs: ProbeConfig[] = [];

  readonly probe = (backend: Backend, cfg: ProbeConfig): Promise<boolean> => {
    this.calls.push(backend.id);
    this.configs.push(cfg);
    if (this.auto) return Promise.resolve(this.answers.get(backend.id) ?? false);
    return new Promise((resolve, reject) => this.pending.push({ id: backend.id, resolve, reject }));
  };

  count(id: string): number {
    return this.calls.filter((c) => c === id).length;
  }
}

/** Let promise callbacks (probe results) run. */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function setup(t: import('node:test').TestContext, ids = ['a', 'b']) {
  const clock = new FakeClock(START_MS);
  const backends = ids.map((id, index) => new Backend('web', id, '127.0.0.1', 10_000 + index, 1, index));
  const prober = new FakeProber();
  const config = healthSchema.parse({ probe: { intervalMs: INTERVAL_MS, timeoutMs: 50 } });
  const monitor = new HealthMonitor('web', backends, config, clock, prober.probe);
  const events: BackendStateEvent[] = [];
  const onEvent = (message: unknown): void => {
    events.push(message as BackendStateEvent);
  };
  diagnostics_channel.subscribe('holdfast:backend:state', onEvent);
  t.after(() => {
    diagnostics_channel.unsubscribe('holdfast:backend:state', onEvent);
    monitor.close();
  });
  return { clock, backends: backends as [Backend, Backend, ...Backend[]], prober, monitor, events };
}

test('a failure takes the backend down at once, with its reason, and publishes the change', (t) => {
  const { clock, backends, monitor, events } = setup(t);
  const [a, b] = backends;
  clock.advance(250);
  monitor.reportFailure(a, 'refused');
  assert.equal(a.state, 'down');
  assert.equal(a.reason, 'refused');
  assert.equal(a.since, START_MS + 250);
  assert.equal(a.eligible, false);
  assert.equal(b.state, 'unknown', 'other backends untouched');
  assert.deepEqual(events, [{ service: 'web', backend: 'a', from: 'unknown', to: 'down', reason: 'refused', at: START_MS + 250 }]);

  monitor.reportFailure(a, 'reset');
  assert.equal(a.reason, 'refused', 'a second failure of a down backend changes nothing');
  assert.equal(events.length, 1);
});

test('an up backend goes down on failure too', (t) => {
  const { backends, monitor, events } = setup(t);
  const [a] = backends;
  monitor.reportSuccess(a);
  monitor.reportFailure(a, 'timeout');
  assert.equal(a.state, 'down');
  assert.deepEqual(
    events.map((e) => [e.from, e.to, e.reason]),
    [
      ['unknown', 'up', 'ok'],
      ['up', 'down', 'timeout'],
    ],
  );
});

test('listeners run synchronously inside reportFailure, after the state is set; unsubscribe works', (t) => {
  const { backends, monitor } = setup(t);
  const [a, b] = backends;
  const seen: string[] = [];
  const unsubscribe = monitor.onChange((backend) => seen.push(`${backend.id}:${backend.state}:${backend.reason}`));
  monitor.reportFailure(a, 'reset');
  assert.deepEqual(seen, ['a:down:reset']);
  unsubscribe();
  monitor.reportFailure(b, 'reset');
  assert.deepEqual(seen, ['a:down:reset']);
});

test('a down backend is probed every intervalMs, and only it', async (t) => {
  const { clock, backends, prober, monitor } = setup(t);
  const [a] = backends;
  monitor.reportFailure(a, 'refused');
  clock.advance(INTERVAL_MS - 1);
  assert.deepEqual(prober.calls, []);
  clock.advance(1);
  assert.deepEqual(prober.calls, ['a']);
  await flush();
  for (let i = 0; i < 4; i++) {
    clock.advance(INTERVAL_MS);
    await flush();
  }
  assert.deepEqual(prober.calls, ['a', 'a', 'a', 'a', 'a']);
  assert.equal(a.state, 'down');
  assert.equal(a.reason, 'refused', 'failed probes keep the original reason');
  assert.equal(prober.configs[0]!.intervalMs, INTERVAL_MS);
});

test('a successful probe brings the backend back up and stops probing', async (t) => {
  const { clock, backends, prober, monitor, events } = setup(t);
  const [a] = backends;
  const seen: string[] = [];
  monitor.onChange((backend) => seen.push(`${backend.id}:${backend.state}`));
  monitor.reportFailure(a, 'refused');
  for (let i = 0; i < 3; i++) {
    clock.advance(INTERVAL_MS);
    await flush();
  }
  assert.equal(a.state, 'down');
  prober.answers.set('a', true);
  clock.advance(INTERVAL_MS);
  await flush();
  assert.equal(a.state, 'up');
  assert.equal(a.reason, 'probe ok');
  assert.equal(a.since, START_MS + 4 * INTERVAL_MS);
  assert.deepEqual(seen, ['a:down', 'a:up']);
  assert.deepEqual(events.at(-1), { service: 'web', backend: 'a', from: 'down', to: 'up', reason: 'probe ok', at: START_MS + 4 * INTERVAL_MS });
  clock.advance(10 * INTERVAL_MS);
  await flush();
  assert.equal(prober.count('a'), 4, 'no probe once up');

  // Down again: probing resumes.
  monitor.reportFailure(a, 'reset');
  prober.answers.set('a', false);
  for (let i = 0; i < 2; i++) {
    clock.advance(INTERVAL_MS);
    await flush();
  }
  assert.equal(prober.count('a'), 6);
});

test('probes of one backend never overlap', async (t) => {
  const { clock, backends, prober, monitor } = setup(t);
  const [a] = backends;
  prober.auto = false;
  monitor.reportFailure(a, 'refused');
  for (let i = 0; i < 5; i++) {
    clock.advance(INTERVAL_MS);
    await flush();
  }
  assert.equal(prober.count('a'), 1, 'a slow probe is not stacked on');
  prober.pending.shift()!.resolve(false);
  await flush();
  clock.advance(INTERVAL_MS);
  assert.equal(prober.count('a'), 2);
  prober.pending.shift()!.resolve(true);
  await flush();
  assert.equal(a.state, 'up');
});

test('a probe that rejects or throws counts as down', async (t) => {
  const { clock, backends, prober, monitor } = setup(t);
  const [a] = backends;
  prober.auto = false;
  monitor.reportFailure(a, 'refused');
  clock.advance(INTERVAL_MS);
  prober.pending.shift()!.reject(new Error('boom'));
  await flush();
  assert.equal(a.state, 'down');
  clock.advance(INTERVAL_MS);
  assert.equal(prober.count('a'), 2, 'probing goes on after a rejected probe');
});

test('reportSuccess: unknown and suspect go up; up, down and draining stay', async (t) => {
  const { clock, backends, monitor, events } = setup(t, ['a', 'b', 'c', 'd']);
  const [a, b, c, d] = backends as [Backend, Backend, Backend, Backend];
  const seen: string[] = [];
  monitor.onChange((backend) => seen.push(`${backend.id}:${backend.state}`));

  monitor.reportSuccess(a);
  assert.equal(a.state, 'up');
  assert.equal(a.reason, 'ok');
  const since = a.since;
  clock.advance(50);
  monitor.reportSuccess(a);
  assert.equal(a.since, since, 'already up: no-op');
  assert.deepEqual(seen, ['a:up']);
  assert.equal(events.length, 1);

  b.state = 'suspect';
  monitor.reportSuccess(b);
  assert.equal(b.state, 'up');

  c.state = 'draining';
  monitor.reportSuccess(c);
  monitor.reportFailure(c, 'reset');
  assert.equal(c.state, 'draining');

  monitor.reportFailure(d, 'refused');
  monitor.reportSuccess(d);
  assert.equal(d.state, 'down', 'only a probe brings a down backend back');
  assert.deepEqual(seen, ['a:up', 'b:up', 'd:down']);
});

test('start() probes every backend once: unknown resolves to up or down', async (t) => {
  const { clock, backends, prober, monitor } = setup(t, ['a', 'b', 'c']);
  const [a, b, c] = backends as [Backend, Backend, Backend];
  c.state = 'draining';
  prober.answers.set('a', true);
  monitor.start();
  monitor.start();
  assert.deepEqual(prober.calls, ['a', 'b']);
  await flush();
  assert.equal(a.state, 'up');
  assert.equal(a.reason, 'probe ok');
  assert.equal(b.state, 'down');
  assert.equal(b.reason, 'probe failed');
  assert.equal(c.state, 'draining');
  clock.advance(INTERVAL_MS);
  assert.deepEqual(prober.calls, ['a', 'b', 'b'], 'the backend found down is probed on');
});

test('a probe result is dropped when a report changed the state meanwhile', async (t) => {
  const { backends, prober, monitor } = setup(t);
  const [a, b] = backends;
  prober.auto = false;
  monitor.start();
  monitor.reportFailure(a, 'refused'); // during a's start probe
  monitor.reportSuccess(b); // during b's start probe
  prober.pending.find((p) => p.id === 'a')!.resolve(true);
  prober.pending.find((p) => p.id === 'b')!.resolve(false);
  await flush();
  assert.equal(a.state, 'down', 'a stale "up" does not undo a fresher failure');
  assert.equal(b.state, 'up', 'a stale "down" does not undo a fresher success');
});

test('close() cancels every timer and drops probes in flight', async (t) => {
  const { clock, backends, prober, monitor } = setup(t);
  const [a, b] = backends;
  monitor.reportFailure(a, 'refused');
  monitor.reportFailure(b, 'refused');
  prober.auto = false;
  clock.advance(INTERVAL_MS);
  assert.equal(prober.calls.length, 2);
  const seen: string[] = [];
  monitor.onChange((backend) => seen.push(backend.id));
  monitor.close();
  for (const p of prober.pending) p.resolve(true);
  await flush();
  clock.advance(100 * INTERVAL_MS);
  await flush();
  assert.equal(prober.calls.length, 2, 'no probe after close');
  assert.equal(a.state, 'down', 'a probe in flight at close is not counted');
  assert.deepEqual(seen, []);
  monitor.start();
  assert.equal(prober.calls.length, 2, 'start after close does nothing');
});
