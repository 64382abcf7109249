import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import { HanetInterfaceError } from '../core/errors.js';
import { FakeHostSystem } from './host-system.fake.js';
import { PeriodicLinkMonitor, probeBackstopMs } from './link-monitor.js';
import { anyOf, carrierProbe, createMonitor } from './link-monitor-probes.js';

/** Advances fake time 1 ms at a time, letting probe promises settle in between. */
async function step(clock: FakeClock, ms: number): Promise<void> {
  for (let i = 0; i < ms; i++) {
    clock.advance(1);
    for (let j = 0; j < 4; j++) await Promise.resolve();
  }
}

test('carrier: one probe per period; misses consecutive failures clear GOOD, one success sets it', async () => {
  const clock = new FakeClock();
  const sys = new FakeHostSystem(['eth0']);
  const m = new PeriodicLinkMonitor('carrier', 'eth0', carrierProbe(sys, 'eth0'), { periodMs: 10, timeoutMs: 10, misses: 3 }, clock);
  const changes: string[] = [];
  m.onChange((good, at) => changes.push(`${at}:${good}`));
  assert.equal(await m.start(), true);
  sys.carrier.set('eth0', false);
  await step(clock, 25);
  assert.equal(m.good, true, 'two misses are not enough');
  await step(clock, 5);
  assert.equal(m.good, false);
  assert.deepEqual(changes, ['30:false']);
  sys.carrier.set('eth0', true);
  await step(clock, 10);
  assert.deepEqual(changes, ['30:false', '40:true']);
  m.close();
});

test('carrier fault detected within misses periods of the fault (the bonding driver\'s miimon)', async () => {
  for (const faultAt of [1, 5, 9, 10]) {
    const clock = new FakeClock();
    const sys = new FakeHostSystem(['eth0']);
    const m = new PeriodicLinkMonitor('carrier', 'eth0', carrierProbe(sys, 'eth0'), { periodMs: 10, timeoutMs: 10, misses: 1 }, clock);
    let detected = -1;
    m.onChange((good, at) => {
      if (!good) detected = at;
    });
    await m.start();
    await step(clock, faultAt);
    sys.carrier.set('eth0', false);
    await step(clock, 30);
    assert.ok(detected - faultAt <= 10 && detected > faultAt - 1, `fault at ${faultAt}, detected at ${detected}`);
    m.close();
  }
});

test('a probe that never answers fails at the backstop; one still running is not doubled', async () => {
  const clock = new FakeClock();
  let started = 0;
  const hang = () => {
    started++;
    return new Promise<boolean>(() => {});
  };
  const m = new PeriodicLinkMonitor('arp', 'eth0', hang, { periodMs: 100, timeoutMs: 50, misses: 2 }, clock);
  const first = m.start();
  await step(clock, probeBackstopMs(50));
  assert.equal(started, 1);
  await step(clock, 100 + probeBackstopMs(50));
  assert.equal(await first, false, 'two hung probes at start: not GOOD');
  assert.equal(probeBackstopMs(50), 150);
  m.close();
});

test('a probe slower than the period does not skip periods: one starts every period, two at most at once', async () => {
  const clock = new FakeClock();
  const answers: { at: number; resolve: (ok: boolean) => void }[] = [];
  let up = true;
  const slow = () =>
    new Promise<boolean>((resolve) => {
      const good = up;
      answers.push({ at: clock.now(), resolve });
      clock.setTimeout(() => resolve(good), 150);
    });
  const m = new PeriodicLinkMonitor('arp', 'eth0', slow, { periodMs: 100, timeoutMs: 100, misses: 2 }, clock);
  const first = m.start();
  await step(clock, 150);
  assert.equal(await first, true);
  up = false;
  let downAt = -1;
  m.onChange((good, at) => {
    if (!good) downAt = at;
  });
  await step(clock, 600);
  // Probes start at 250, 350, 450...: the first two failures answer at 400 and 500.
  assert.equal(downAt, 500);
  assert.ok(answers.length >= 6);
  m.close();
});

test('ARP and ping: GOOD while any target answers; timing from the configuration', async () => {
  const clock = new FakeClock();
  const sys = new FakeHostSystem(['eth0']);
  sys.answers.set('eth0 10.0.0.1', false);
  const arp = createMonitor('eth0', { type: 'arp', targets: ['10.0.0.1', '10.0.0.2'], periodMs: 100, timeoutMs: 50, misses: 2 }, sys, clock);
  assert.equal(await arp.start(), true, 'one of two targets answers');
  sys.answers.set('eth0 10.0.0.2', false);
  await step(clock, 150);
  assert.equal(arp.good, true, 'one miss');
  await step(clock, 100);
  assert.equal(arp.good, false, 'misses + 1 periods after the fault at most');
  arp.close();
  const ping = createMonitor('eth0', { type: 'ping', hosts: ['192.0.2.1'], periodMs: 100, timeoutMs: 50, misses: 1 }, sys, clock);
  assert.equal(await ping.start(), true);
  ping.close();
  assert.equal(await anyOf([], async () => true)(10), false);
});

test('a bad timing is a RangeError; HanetInterfaceError names the interface', () => {
  const clock = new FakeClock();
  assert.throws(() => new PeriodicLinkMonitor('carrier', 'x', async () => true, { periodMs: 10, timeoutMs: 20, misses: 1 }, clock), RangeError);
  assert.throws(() => new PeriodicLinkMonitor('carrier', 'x', async () => true, { periodMs: 10, timeoutMs: 5, misses: 0 }, clock), RangeError);
  const e = new HanetInterfaceError('eth9', 'no such interface');
  assert.equal(e.code, 'HF_ERR_HANET_INTERFACE');
  assert.match(e.message, /eth9/);
});

test('poke: a probe at once, outside the schedule (a link event); nothing before start', async () => {
  const clock = new FakeClock();
  const sys = new FakeHostSystem(['eth0']);
  const m = new PeriodicLinkMonitor('carrier', 'eth0', carrierProbe(sys, 'eth0'), { periodMs: 100, timeoutMs: 100, misses: 1 }, clock);
  m.poke();
  await m.start();
  sys.carrier.set('eth0', false);
  let at = -1;
  m.onChange((good, when) => {
    if (!good) at = when;
  });
  await step(clock, 3);
  m.poke();
  for (let i = 0; i < 8; i++) await Promise.resolve();
  assert.equal(at, 3, 'at the event, not at the next period (100)');
  m.close();
});
