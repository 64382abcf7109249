import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import { chooseActive, compareInterfaces, InterfaceManager, type InterfaceView } from './interface-manager.js';
import { PeriodicLinkMonitor } from './link-monitor.js';

const view = (name: string, role: 'public' | 'private', speedMbps: number, goodSince: number | null): InterfaceView => ({
  name,
  role,
  speedMbps,
  good: goodSince !== null,
  goodSince,
});

test('ranking: public before private, then faster before slower, ties in configured order', () => {
  const ifaces = [view('usb0', 'private', 12, 0), view('eth1', 'public', 100, 0), view('eth2', 'public', 1000, 0), view('priv0', 'private', 1000, 0)];
  assert.deepEqual([...ifaces].sort(compareInterfaces).map((i) => i.name), ['eth2', 'eth1', 'priv0', 'usb0']);
  const tie = [view('a', 'public', 100, 0), view('b', 'public', 100, 0)];
  assert.deepEqual([...tie].sort(compareInterfaces).map((i) => i.name), ['a', 'b']);
});

test('initial: the best GOOD interface; none GOOD: none', () => {
  assert.deepEqual(chooseActive([view('pub', 'public', 100, 0), view('priv', 'private', 1000, 0)], null, 0, 1000), { kind: 'switch', to: 'pub', reason: 'initial' });
  assert.deepEqual(chooseActive([view('pub', 'public', 100, null), view('priv', 'private', 1000, 0)], null, 0, 1000), { kind: 'switch', to: 'priv', reason: 'initial' });
  assert.deepEqual(chooseActive([view('pub', 'public', 100, null)], null, 0, 1000), { kind: 'none' });
});

test('the active interface fails: the next best GOOD one at once (HANet §2.2.2: public, then faster)', () => {
  const ifaces = [view('eth0', 'public', 1000, null), view('eth1', 'public', 100, 5), view('usb0', 'private', 12, 5), view('priv0', 'private', 1000, 5)];
  assert.deepEqual(chooseActive(ifaces, 'eth0', 10, 1000), { kind: 'switch', to: 'eth1', reason: 'failed' });
  const noPublic = [view('eth0', 'public', 1000, null), view('eth1', 'public', 100, null), view('usb0', 'private', 12, 5), view('priv0', 'private', 1000, 5)];
  assert.deepEqual(chooseActive(noPublic, 'eth0', 10, 1000), { kind: 'switch', to: 'priv0', reason: 'failed' });
  assert.deepEqual(chooseActive([view('eth0', 'public', 1000, null)], 'eth0', 10, 1000), { kind: 'none' });
});

test('failback only after the better interface has been GOOD for the hold time', () => {
  const ifaces = (since: number | null) => [view('pub0', 'public', 1000, since), view('priv0', 'private', 1000, 0)];
  assert.deepEqual(chooseActive(ifaces(100), 'priv0', 100, 2000), { kind: 'stay', holdUntil: 2100 });
  assert.deepEqual(chooseActive(ifaces(100), 'priv0', 2099, 2000), { kind: 'stay', holdUntil: 2100 });
  assert.deepEqual(chooseActive(ifaces(100), 'priv0', 2100, 2000), { kind: 'switch', to: 'pub0', reason: 'failback' });
  // Never to a worse interface, and a GOOD active one with nothing better stays without a wake-up.
  assert.deepEqual(chooseActive([view('pub0', 'public', 1000, 0), view('pub1', 'public', 100, 0)], 'pub0', 5000, 0), { kind: 'stay', holdUntil: null });
  // A faster public interface back: failback to it from a slower public one too.
  assert.deepEqual(chooseActive([view('fast', 'public', 1000, 10), view('slow', 'public', 100, 0)], 'slow', 20, 5), { kind: 'switch', to: 'fast', reason: 'failback' });
});

test('a flapping link does not win the failback: its hold time restarts at every GOOD', () => {
  const clock = new FakeClock();
  let pubUp = true;
  const pubMon = new PeriodicLinkMonitor('carrier', 'pub0', async () => pubUp, { periodMs: 10, timeoutMs: 10, misses: 1 }, clock);
  const privMon = new PeriodicLinkMonitor('carrier', 'priv0', async () => true, { periodMs: 10, timeoutMs: 10, misses: 1 }, clock);
  let active: string | null = null;
  const decisions: string[] = [];
  const mgr: InterfaceManager = new InterfaceManager(
    [
      { name: 'pub0', role: 'public', speedMbps: 1000, monitors: [pubMon] },
      { name: 'priv0', role: 'private', speedMbps: 1000, monitors: [privMon] },
    ],
    clock,
    () => {
      const c = chooseActive(mgr.snapshot(), active, clock.now(), 100);
      if (c.kind === 'switch') {
        active = c.to;
        decisions.push(`${clock.now()} ${c.to} ${c.reason}`);
      } else if (c.kind === 'stay') mgr.wakeAt(c.holdUntil);
    },
  );
  return (async () => {
    await mgr.start();
    active = 'pub0';
    const step = async (ms: number) => {
      for (let i = 0; i < ms; i++) {
        clock.advance(1);
        await Promise.resolve();
        await Promise.resolve();
      }
    };
    pubUp = false;
    await step(20);
    assert.equal(active, 'priv0');
    // Up 50 ms, down 20 ms, up 50 ms...: never GOOD for 100 ms in a row.
    for (let i = 0; i < 4; i++) {
      pubUp = true;
      await step(50);
      pubUp = false;
      await step(20);
    }
    assert.equal(active, 'priv0', `decisions: ${decisions.join(', ')}`);
    pubUp = true;
    await step(130);
    assert.equal(active, 'pub0', `decisions: ${decisions.join(', ')}`);
    assert.equal(decisions.length, 2);
    assert.match(decisions[1]!, /pub0 failback/);
    mgr.close();
  })();
});
