import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { FakeClock } from '../core/clock.js';
import type { BackendStateEvent, HeartbeatLostEvent } from '../core/diagnostics.js';
import { healthSchema } from '../config/schema.js';
import type { DetectorConfig } from '../config/schema.js';
import type { Availability, AvailabilityFlag } from '../wire/availability.js';
import { wireTimestamp } from '../wire/timestamp.js';
import { Backend } from '../core/backend.js';
import { HealthMonitor } from './health.js';
import type { ProbeConfig } from './health.js';

/** Wall-clock start (FakeClock's now() and wallNow() are the same number). 2023-11-14T22:13:20Z. */
const START = 1_700_000_000_000;
const INTERVAL_MS = 10;
const N = 3;

/** Let promise callbacks (probe results) run. */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

class FakeProber {
  readonly calls: Array<{ id: string; at: number; cfg: ProbeConfig }> = [];
  answer = true;
  constructor(private readonly clock: FakeClock) {}
  readonly probe = (backend: Backend, cfg: ProbeConfig): Promise<boolean> => {
    this.calls.push({ id: backend.id, at: this.clock.now() - START, cfg });
    return Promise.resolve(this.answer);
  };
}

function setup(t: import('node:test').TestContext, detector: Partial<DetectorConfig>, agents: Array<number | null> = [7, 8]) {
  const clock = new FakeClock(START);
  const backends = agents.map((agent, index) => new Backend('web', String.fromCharCode(97 + index), '127.0.0.1', 10_000 + index, 1, index, agent));
  const prober = new FakeProber(clock);
  const config = healthSchema.parse({ detector: { intervalMs: INTERVAL_MS, n: N, ...detector }, probe: { intervalMs: 100, timeoutMs: 50 } });
  const monitor = new HealthMonitor('web', backends, config, clock, prober.probe);
  const events: BackendStateEvent[] = [];
  const lost: HeartbeatLostEvent[] = [];
  const onEvent = (m: unknown): void => void events.push(m as BackendStateEvent);
  const onLost = (m: unknown): void => void lost.push(m as HeartbeatLostEvent);
  diagnostics_channel.subscribe('holdfast:backend:state', onEvent);
  diagnostics_channel.subscribe('holdfast:heartbeat:lost', onLost);
  t.after(() => {
    diagnostics_channel.unsubscribe('holdfast:backend:state', onEvent);
    diagnostics_channel.unsubscribe('holdfast:heartbeat:lost', onLost);
    monitor.close();
  });
  /** Advance the fake clock to START + ms. */
  const to = (ms: number): void => clock.advance(START + ms - clock.now());
  let seq = 0;
  /** An announcement from `backend`'s agent received now; seq increments unless given. */
  const announce = (backend: Backend, flag: AvailabilityFlag = 'available', over: Partial<Availability> = {}): void => {
    const a: Availability = { host: backend.agent ?? 0, seq: over.seq ?? ++seq, flag, timestamp: wireTimestamp(clock.wallNow()), ...over };
    monitor.onAvailability(backend, a, clock.now());
  };
  const trail = (id = 'a'): Array<[number, string, string]> => events.filter((e) => e.backend === id).map((e) => [e.at - START, e.to, e.reason]);
  return { clock, backends: backends as [Backend, Backend, ...Backend[]], prober, monitor, events, lost, to, announce, trail };
}

test('push, intervalMs 10, n 3: heartbeats at 0, 10, 20 then silence: suspect at 35, down at exactly 50', (t) => {
  const { backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a] = backends;
  monitor.start();
  for (const at of [0, 10, 20]) {
    to(at);
    announce(a);
  }
  assert.equal(a.state, 'up');
  to(34.9);
  assert.equal(a.state, 'up', 'one late heartbeat is tolerated');
  to(35); // 20 + 1.5 x 10
  assert.equal(a.state, 'suspect');
  assert.equal(a.eligible, true, 'suspect still takes work');
  to(49.9);
  assert.equal(a.state, 'suspect');
  to(50); // 20 + 3 x 10
  assert.equal(a.state, 'down');
  assert.equal(a.eligible, false);
  assert.equal(a.since, START + 50);
  to(5000);
  assert.deepEqual(trail(), [
    [0, 'up', 'heartbeat'],
    [35, 'suspect', 'heartbeat late'],
    [50, 'down', 'no heartbeat for 30 ms'],
  ]);
});

test('push: a steady stream keeps the backend up; a late heartbeat takes a suspect one back up', (t) => {
  const { backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a] = backends;
  monitor.start();
  for (let at = 0; at <= 1000; at += INTERVAL_MS) {
    to(at);
    announce(a);
  }
  to(1000 + 16); // 16 ms of silence: suspect since 1015
  assert.equal(a.state, 'suspect');
  announce(a);
  assert.equal(a.state, 'up');
  to(1016 + 44); // 44 ms after the last: down at 1016 + 30
  assert.deepEqual(trail(), [
    [0, 'up', 'heartbeat'],
    [1015, 'suspect', 'heartbeat late'],
    [1016, 'up', 'heartbeat'],
    [1031, 'suspect', 'heartbeat late'],
    [1046, 'down', 'no heartbeat for 30 ms'],
  ]);
});

test('push: a backend never heard stays unknown, then is down n x intervalMs after start', (t) => {
  const { backends, monitor, prober, to, trail } = setup(t, { type: 'push' });
  const [a, b] = backends;
  to(100);
  monitor.start();
  to(129.9);
  assert.equal(a.state, 'unknown', 'not suspect: it was never heard, so it is not late');
  to(130);
  assert.equal(a.state, 'down');
  assert.equal(b.state, 'down');
  assert.deepEqual(trail(), [[130, 'down', 'no heartbeat for 30 ms']]);
  assert.deepEqual(prober.calls, [], 'push mode never probes');
});

test('push: heartbeats before start() count; start() does not reset them', (t) => {
  const { backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a] = backends;
  to(5);
  announce(a);
  to(20);
  monitor.start();
  to(35);
  assert.deepEqual(trail(), [
    [5, 'up', 'heartbeat'],
    [20, 'suspect', 'heartbeat late'],
    [35, 'down', 'no heartbeat for 30 ms'],
  ]);
});

test('sequence gaps: a jump of 3 counts 2 lost; late and restarted seqs are not losses', (t) => {
  const { backends, monitor, lost, announce, to } = setup(t, { type: 'push' });
  const [a, b] = backends;
  monitor.start();
  let at = 0;
  const send = (seq: number, over: Partial<Availability> = {}): void => {
    to((at += INTERVAL_MS));
    announce(a, 'available', { seq, ...over });
  };
  send(1);
  send(2);
  assert.equal(monitor.lostHeartbeats(a), 0);
  send(5); // 3 and 4 lost
  assert.equal(monitor.lostHeartbeats(a), 2);
  assert.deepEqual(lost, [{ service: 'web', backend: 'a', lost: 2 }]);
  send(6);
  send(8); // 7 lost...
  assert.equal(monitor.lostHeartbeats(a), 3);
  send(7, { timestamp: wireTimestamp(START + at - INTERVAL_MS) }); // ...until it arrives, late (sent before 8)
  assert.equal(monitor.lostHeartbeats(a), 2);
  send(0); // the agent restarted: seq 0, sent after everything else
  send(1);
  send(2);
  assert.equal(monitor.lostHeartbeats(a), 2);
  send(0xffff_fffe);
  send(1); // across the u32 wrap: 0xffffffff and 0 lost
  assert.equal(monitor.lostHeartbeats(a), 4);
  assert.equal(lost.length, 3);
  assert.equal(monitor.lostHeartbeats(b), 0, 'counted per backend');
});

test('app-unavailable: the node is alive but the backend goes down; available brings it up', (t) => {
  const { backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a] = backends;
  monitor.start();
  announce(a);
  to(10);
  announce(a, 'app-unavailable');
  assert.equal(a.state, 'down');
  assert.equal(a.reason, 'application unavailable');
  for (const at of [20, 30, 40, 50]) {
    to(at);
    announce(a, 'app-unavailable');
  }
  to(60);
  announce(a);
  assert.equal(a.state, 'up');
  assert.deepEqual(trail(), [
    [0, 'up', 'heartbeat'],
    [10, 'down', 'application unavailable'],
    [60, 'up', 'heartbeat'],
  ]);
});

test('planned failure: draining (not eligible) until an available heartbeat; silence then is down', (t) => {
  const { backends, monitor, to, announce, trail, clock } = setup(t, { type: 'push' });
  const [a] = backends;
  monitor.start();
  announce(a);
  to(10);
  // The agent announces its failure for START + 60 000 ms = 2023-11-14T22:14:20.000Z.
  const failureAt = wireTimestamp(START + 60_000);
  announce(a, 'planned-failure', { timestamp: failureAt });
  assert.equal(a.state, 'draining');
  assert.equal(a.eligible, false);
  assert.equal(a.reason, 'planned failure at 2023-11-14T22:14:20.000Z');
  monitor.reportFailure(a, 'refused');
  for (const at of [20, 30, 40]) {
    to(at);
    announce(a, 'planned-failure', { timestamp: failureAt });
  }
  assert.equal(a.state, 'draining', 'stays draining while it announces');
  announce(a);
  assert.equal(a.state, 'up', 'the drain was called off');
  to(50);
  announce(a, 'planned-failure', { timestamp: failureAt });
  to(50 + 30);
  assert.equal(a.state, 'down', 'the drained node went away');
  assert.equal(clock.now(), START + 80);
  assert.deepEqual(trail(), [
    [0, 'up', 'heartbeat'],
    [10, 'draining', 'planned failure at 2023-11-14T22:14:20.000Z'],
    [40, 'up', 'heartbeat'],
    [50, 'draining', 'planned failure at 2023-11-14T22:14:20.000Z'],
    [80, 'down', 'no heartbeat for 30 ms'],
  ]);
});

test("an operator's drain is moved by no heartbeat and no silence", (t) => {
  const { backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a] = backends;
  monitor.start();
  a.state = 'draining';
  announce(a);
  announce(a, 'app-unavailable');
  to(500);
  assert.equal(a.state, 'draining');
  assert.deepEqual(trail(), []);
});

test('push: a passive report takes the backend down at once; heartbeats bring it back only after holdDownMs', (t) => {
  const { backends, monitor, prober, to, announce, trail } = setup(t, { type: 'push', holdDownMs: 50 });
  const [a] = backends;
  monitor.start();
  announce(a);
  to(3);
  monitor.reportFailure(a, 'refused');
  assert.equal(a.state, 'down');
  to(9);
  assert.deepEqual(prober.calls, [], 'no probing in push mode');
  // Heartbeats at 10..50 say 'available' but fall within the hold-down (3 + 50 = 53): ignored, so
  // an application refusing connections while its watchdog still passes does not flap.
  for (const at of [10, 20, 30, 40, 50]) {
    to(at);
    announce(a);
    assert.equal(a.state, 'down', `still down at ${at}`);
  }
  to(60);
  announce(a);
  assert.deepEqual(trail(), [
    [0, 'up', 'heartbeat'],
    [3, 'down', 'refused'],
    [60, 'up', 'heartbeat'],
  ]);
});

test('push: a backend without an agent is watched passively (probed), heartbeats are not for it', async (t) => {
  const { backends, monitor, prober, announce } = setup(t, { type: 'push' }, [null, 8]);
  const [a, b] = backends;
  monitor.start();
  assert.deepEqual(
    prober.calls.map((c) => c.id),
    ['a'],
  );
  await flush();
  assert.equal(a.state, 'up');
  assert.equal(a.reason, 'probe ok');
  announce(a, 'app-unavailable');
  assert.equal(a.state, 'up', 'ignored');
  assert.equal(b.state, 'unknown');
});

test('passive mode ignores announcements and keeps its probing', async (t) => {
  const { backends, monitor, prober, to, announce } = setup(t, { type: 'passive' });
  const [a] = backends;
  prober.answer = false;
  monitor.start();
  await flush();
  assert.equal(a.state, 'down');
  announce(a);
  assert.equal(a.state, 'down');
  assert.equal(monitor.lostHeartbeats(a), 0);
  prober.answer = true;
  to(100);
  await flush();
  assert.equal(a.state, 'up');
  assert.equal(a.reason, 'probe ok');
});

test('phi-accrual: regular heartbeats every 10 ms, then silence: suspect at phi 4, down at phi 8', (t) => {
  const { backends, monitor, to, announce, events } = setup(t, { type: 'phi-accrual', phiThreshold: 8 });
  const [a] = backends;
  monitor.start();
  for (let at = 0; at <= 500; at += INTERVAL_MS) {
    to(at);
    announce(a);
  }
  // Window: mean 10, stdDev 0 floored to max(1, 10 / 10) = 1 ms.
  // Suspect (phi 4, y = 3.63811): 500 + 10 + 3.63811 = 513.638; down (phi 8, y = 5.22599): 515.226.
  to(600);
  const trail = events.filter((e) => e.backend === 'a').map((e) => [e.at - START, e.to] as const);
  assert.equal(trail.length, 3);
  assert.deepEqual(trail[0], [0, 'up']);
  assert.equal(trail[1]![1], 'suspect');
  assert.ok(Math.abs(trail[1]![0] - 513.638) < 1e-3, String(trail[1]![0]));
  assert.equal(trail[2]![1], 'down');
  assert.ok(Math.abs(trail[2]![0] - 515.226) < 1e-3, String(trail[2]![0]));
  assert.equal(a.reason, 'no heartbeat for 15.2 ms');
});

test('pull: replies are heartbeats; no reply for n x intervalMs is down; a reply brings it back', async (t) => {
  const { backends, monitor, prober, to, trail } = setup(t, { type: 'pull' }, [null]);
  const [a] = backends;
  // Advance in 1 ms steps, letting probe results resolve at the time they were sent (fake prober).
  let lastAt = 0;
  const go = async (until: number): Promise<void> => {
    while (lastAt < until) {
      lastAt += 1;
      to(lastAt);
      await flush();
    }
  };
  monitor.start();
  await flush();
  assert.equal(a.state, 'up');
  assert.equal(a.reason, 'pull reply');
  await go(20);
  assert.deepEqual(
    prober.calls.map((c) => c.at),
    [0, 10, 20],
    'a hello every intervalMs from start',
  );
  assert.equal(prober.calls[0]!.cfg.timeoutMs, INTERVAL_MS * N, 'hello timeout n x intervalMs');
  assert.equal(prober.calls[0]!.cfg.type, 'tcp');
  prober.answer = false; // the reply at 20 was the last
  await go(34);
  assert.equal(a.state, 'up');
  await go(35);
  assert.equal(a.state, 'suspect');
  await go(49);
  assert.equal(a.state, 'suspect');
  await go(50);
  assert.equal(a.state, 'down');
  prober.answer = true;
  await go(60);
  assert.deepEqual(trail(), [
    [0, 'up', 'pull reply'],
    [35, 'suspect', 'reply late'],
    [50, 'down', 'no reply for 30 ms'],
    [60, 'up', 'pull reply'],
  ]);
  monitor.reportFailure(a, 'reset');
  assert.equal(a.state, 'down', 'passive reports still count in pull mode');
  await go(70);
  assert.equal(a.state, 'up');
});

test('close() cancels the deadline timers and ignores later heartbeats', (t) => {
  const { backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a] = backends;
  monitor.start();
  announce(a);
  monitor.close();
  to(1000);
  assert.equal(a.state, 'up');
  a.state = 'suspect';
  announce(a);
  assert.equal(a.state, 'suspect');
  assert.deepEqual(trail(), [[0, 'up', 'heartbeat']]);
});

test('stall compensation: a deadline timer firing a stall late postpones the deadlines by the stall; a dead backend still goes down', (t) => {
  const { clock, backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a, b] = backends;
  monitor.start();
  to(0);
  announce(a);
  announce(b);
  // The dispatcher (and, on a saturated machine, the agents) did not run from 5 to 45 ms. Without
  // compensation the timer due at 15 would find both 45 ms silent (> n x delta = 30): down.
  to(5);
  clock.stall(40);
  clock.advance(0); // the suspect timer due at 15 fires 30 ms late: deadlines move to 45 (suspect) and 60 (down)
  assert.equal(a.state, 'suspect');
  assert.equal(monitor.stallsCompensated, 2);
  assert.equal(monitor.stallMsCompensated, 60);
  announce(a); // a's agent runs again: its heartbeat takes it back up
  assert.equal(a.state, 'up');
  to(59.9);
  assert.equal(b.state, 'suspect');
  to(60); // b never speaks again: down 30 ms of the dispatcher's running time after its last heartbeat
  assert.equal(b.state, 'down');
  assert.deepEqual(trail('b'), [
    [0, 'up', 'heartbeat'],
    [45, 'suspect', 'heartbeat late'],
    [60, 'down', 'no heartbeat for 60 ms'],
  ]);
});

test('stall compensation: lateness under half an interval is not compensated (a quiet machine keeps n x delta)', (t) => {
  const { clock, backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a] = backends;
  monitor.start();
  to(0);
  announce(a);
  to(14);
  clock.stall(4); // the timer due at 15 runs at 18: 3 ms late, below 5
  clock.advance(0);
  assert.equal(monitor.stallsCompensated, 0);
  to(30);
  assert.equal(a.state, 'down');
  assert.deepEqual(trail(), [
    [0, 'up', 'heartbeat'],
    [18, 'suspect', 'heartbeat late'],
    [30, 'down', 'no heartbeat for 30 ms'],
  ]);
});

test('drain before deciding: a deadline on time is not a miss while a heartbeat waits unread; a silent backend still goes down one loop turn later', (t) => {
  const { clock, backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a, b] = backends;
  clock.holdImmediates = true;
  monitor.start();
  to(0);
  announce(a);
  announce(b);
  clock.runImmediates();
  // Both deadlines (down at 30) fire on time. a's agent sent at 29 but the datagram waits unread
  // (libuv runs due timers before it polls): the poll phase reads it before the check phase.
  to(30);
  assert.equal(a.state, 'suspect', 'not judged down before the socket was read');
  assert.equal(b.state, 'suspect');
  announce(a); // the poll phase: a's waiting heartbeat
  clock.runImmediates(); // the check phase: a was re-armed by it, b is judged
  assert.equal(a.state, 'up');
  assert.equal(b.state, 'down');
  assert.equal(monitor.downsDeferred, 2);
  assert.equal(monitor.downsAverted, 1);
  assert.deepEqual(trail('a'), [
    [0, 'up', 'heartbeat'],
    [15, 'suspect', 'heartbeat late'],
    [30, 'up', 'heartbeat'],
  ]);
  assert.deepEqual(trail('b'), [
    [0, 'up', 'heartbeat'],
    [15, 'suspect', 'heartbeat late'],
    [30, 'down', 'no heartbeat for 30 ms'],
  ]);
});

test('starvation memory through the monitor: after a heartbeat flagged starved ending a 60 ms silence, a backend goes down 90 ms after its last heartbeat, not 30', (t) => {
  const { backends, monitor, to, announce, trail } = setup(t, { type: 'push' });
  const [a] = backends;
  monitor.start();
  to(0);
  announce(a);
  to(29);
  announce(a); // on time enough
  to(89); // 60 ms of silence: down at 59 already (the agent was starved, the dispatcher could not know)
  assert.equal(a.state, 'down');
  announce(a, 'available', { starved: true }); // back, saying it waited for a CPU meanwhile
  assert.equal(a.state, 'up');
  assert.equal(monitor.starvedHeartbeats, 1);
  to(99);
  announce(a);
  to(99 + 89);
  assert.equal(a.state, 'suspect', 'the next starvation of up to 90 ms is tolerated');
  to(99 + 90);
  assert.equal(a.state, 'down');
  assert.deepEqual(trail(), [
    [0, 'up', 'heartbeat'],
    [15, 'suspect', 'heartbeat late'],
    [29, 'up', 'heartbeat'],
    [44, 'suspect', 'heartbeat late'],
    [59, 'down', 'no heartbeat for 30 ms'],
    [89, 'up', 'heartbeat'],
    [114, 'suspect', 'heartbeat late'],
    [189, 'down', 'no heartbeat for 90 ms (starved agent: silences of 60 ms tolerated)'],
  ]);
});
