import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { FakeClock } from '../core/clock.js';
import type { ElectionStateEvent } from '../core/diagnostics.js';
import type { AdvertFields } from '../wire/election-advert.js';
import { Election, masterDownMs, skewMs, type ElectionEvent } from './election.js';

/** One-way delay of the simulated network. */
const LATENCY_MS = 0.5;
const GROUP_ID = 7;

interface NodeSpec {
  id: number;
  priority: number;
  preempt?: boolean;
  intervalMs?: number;
}

/** Elections on one FakeClock joined by a simulated network that can lose whole links. */
class Net {
  readonly clock = new FakeClock(0);
  readonly nodes = new Map<number, Election>();
  readonly events: Array<ElectionEvent & { node: number; at: number }> = [];
  readonly sent: Array<AdvertFields & { at: number }> = [];
  /** "a>b" = adverts from a do not reach b. */
  readonly cut = new Set<string>();

  add(spec: NodeSpec): Election {
    const e = new Election({
      group: 'g',
      groupId: GROUP_ID,
      node: spec.id,
      priority: spec.priority,
      intervalMs: spec.intervalMs ?? 20,
      preempt: spec.preempt ?? true,
      clock: this.clock,
      send: (a) => this.deliver(spec.id, a),
    });
    e.on((ev) => this.events.push({ ...ev, node: spec.id, at: this.clock.now() }));
    this.nodes.set(spec.id, e);
    return e;
  }

  deliver(from: number, a: AdvertFields): void {
    this.sent.push({ ...a, at: this.clock.now() });
    for (const [id, e] of this.nodes) {
      if (id === from || this.cut.has(`${from}>${id}`)) continue;
      this.clock.setTimeout(() => e.receive(a), LATENCY_MS);
    }
  }

  /** Cuts (or restores) every link between the two sides. */
  partition(a: readonly number[], b: readonly number[], on = true): void {
    for (const x of a) {
      for (const y of b) {
        for (const k of [`${x}>${y}`, `${y}>${x}`]) {
          if (on) this.cut.add(k);
          else this.cut.delete(k);
        }
      }
    }
  }

  masters(): number[] {
    return [...this.nodes].filter(([, e]) => e.state === 'master').map(([id]) => id);
  }

  eventsOf(id: number): string[] {
    return this.events.filter((e) => e.node === id).map((e) => `${e.type}:${e.reason}:${e.epoch}`);
  }
}

test('Skew_Time and Master_Down_Interval as RFC 5798 §6.1 defines them', () => {
  // (256 - 100) * 20 / 256 = 12.1875; 3 * 20 + 12.1875 = 72.1875
  assert.equal(skewMs(100, 20), 12.1875);
  assert.equal(masterDownMs(100, 20), 72.1875);
  // priority 255: 1/256 of the interval; 5 ms adverts, priority 200: 15 + 56 * 5 / 256 = 16.09375
  assert.equal(skewMs(255, 256), 1);
  assert.equal(masterDownMs(200, 5), 16.09375);
});

test('a lone node: backup at start, master after exactly 3 x interval + skew, then one advert per interval', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 100 });
  a.start();
  assert.equal(a.state, 'backup');
  net.clock.advance(72.18);
  assert.equal(a.state, 'backup');
  assert.equal(net.sent.length, 0);
  net.clock.advance(0.01);
  assert.equal(a.state, 'master');
  assert.equal(a.epoch, 1);
  assert.equal(a.master, 1);
  assert.deepEqual(net.eventsOf(1), ['backup:startup:0', 'master:no-master:1']);
  net.clock.advance(100 - 72.19);
  // At 72.1875 (on taking over), then 92.1875: 100 ms in, two adverts.
  assert.deepEqual(
    net.sent.map((s) => s.at),
    [72.1875, 92.1875],
  );
  assert.deepEqual(net.sent[0], { group: GROUP_ID, sender: 1, priority: 100, preempt: true, intervalMs: 20, epoch: 1, at: 72.1875 });
});

test('two nodes: the shorter skew of the higher priority wins; the other stays backup and follows it', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 200 });
  const b = net.add({ id: 2, priority: 100 });
  a.start();
  b.start();
  // A: 60 + 56 * 20 / 256 = 64.375; its advert reaches B at 64.875, before B's 72.1875.
  net.clock.advance(64.375);
  assert.equal(a.state, 'master');
  net.clock.advance(1000);
  assert.deepEqual(net.masters(), [1]);
  assert.deepEqual(net.eventsOf(2), ['backup:startup:0']);
  assert.equal(b.master, 1);
  assert.equal(b.epoch, 1);
});

test('master crash: the backup takes over Master_Down_Interval after the last advert it heard, with epoch + 1', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 200 });
  const b = net.add({ id: 2, priority: 100 });
  a.start();
  b.start();
  net.clock.advance(500);
  const lastHeard = Math.max(...net.sent.filter((s) => s.sender === 1).map((s) => s.at)) + LATENCY_MS;
  a.destroy();
  net.nodes.delete(1);
  net.clock.advance(lastHeard + 72.1875 - 500 - 0.01);
  assert.equal(b.state, 'backup');
  net.clock.advance(0.02);
  assert.equal(b.state, 'master');
  const last = net.events.at(-1)!;
  assert.deepEqual({ node: last.node, type: last.type, reason: last.reason, epoch: last.epoch }, { node: 2, type: 'master', reason: 'master-down', epoch: 2 });
  // The crashed master reported that it no longer holds the VIP.
  assert.deepEqual(net.eventsOf(1), ['backup:startup:0', 'master:no-master:1', 'backup:stopped:1']);
});

test('priority 0: a resigning master is replaced after the backup’s skew, not a whole Master_Down_Interval', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 200 });
  const b = net.add({ id: 2, priority: 100 });
  a.start();
  b.start();
  net.clock.advance(500);
  assert.equal(a.resign(), true);
  assert.equal(a.state, 'backup');
  assert.equal(a.preempt, false);
  const resignAdvert = net.sent.at(-1)!;
  assert.equal(resignAdvert.priority, 0);
  assert.equal(resignAdvert.sender, 1);
  // B hears it at 500.5 and takes over after skew(100, 20) = 12.1875.
  net.clock.advance(LATENCY_MS + 12.1875 - 0.01);
  assert.equal(b.state, 'backup');
  net.clock.advance(0.02);
  assert.equal(b.state, 'master');
  assert.equal(b.epoch, 2);
  assert.deepEqual(net.eventsOf(2).at(-1), 'master:master-resigned:2');
  assert.deepEqual(net.eventsOf(1).at(-1), 'backup:resigned:1');
  // A, priority 200 but no longer preempting, stays backup.
  net.clock.advance(10_000);
  assert.deepEqual(net.masters(), [2]);
  // Re-enabling preemption gives the VIP back to the higher priority (epoch 3).
  a.setPreempt(true);
  net.clock.advance(1000);
  assert.deepEqual(net.masters(), [1]);
  assert.equal(a.epoch, 3);
  assert.deepEqual(net.eventsOf(1).at(-1), 'master:preempt:3');
});

test('resign with nobody to take over: the node becomes master again after a Master_Down_Interval', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 100 });
  a.start();
  net.clock.advance(100);
  a.resign();
  net.clock.advance(72.1875 - 0.01);
  assert.equal(a.state, 'backup');
  net.clock.advance(0.02);
  assert.equal(a.state, 'master');
  assert.equal(a.epoch, 2);
});

test('stop(): a master sends priority 0 and reports stopped; the backup takes over after its skew', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 200 });
  const b = net.add({ id: 2, priority: 100 });
  a.start();
  b.start();
  net.clock.advance(300);
  a.stop();
  assert.equal(a.state, 'initialize');
  assert.equal(net.sent.at(-1)!.priority, 0);
  net.clock.advance(LATENCY_MS + 12.1875 + 0.01);
  assert.equal(b.state, 'master');
  assert.deepEqual(net.eventsOf(1).at(-1), 'backup:stopped:1');
  // A stopped node ignores adverts and sends nothing.
  const sentBefore = net.sent.filter((s) => s.sender === 1).length;
  net.clock.advance(1000);
  assert.equal(net.sent.filter((s) => s.sender === 1).length, sentBefore);
  assert.equal(a.state, 'initialize');
});

test('preempt on: a higher-priority node joining later takes over (reason preempt), the old master steps down on the epoch', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 100 });
  a.start();
  net.clock.advance(200);
  const b = net.add({ id: 2, priority: 200, preempt: true });
  b.start();
  // B discards A's adverts (lower priority) and its timer runs out: 200 + 64.375.
  net.clock.advance(64.375 - 0.01);
  assert.equal(b.state, 'backup');
  net.clock.advance(0.02);
  assert.equal(b.state, 'master');
  net.clock.advance(LATENCY_MS);
  assert.deepEqual(net.masters(), [2]);
  assert.deepEqual(net.eventsOf(2), ['backup:startup:0', 'master:preempt:2']);
  assert.deepEqual(net.eventsOf(1), ['backup:startup:0', 'master:no-master:1', 'backup:higher-epoch:2']);
  net.clock.advance(10_000);
  assert.deepEqual(net.masters(), [2]);
});

test('preempt off: a higher-priority node joining later stays backup; the owner (255) preempts anyway', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 100 });
  a.start();
  net.clock.advance(200);
  const b = net.add({ id: 2, priority: 200, preempt: false });
  b.start();
  net.clock.advance(10_000);
  assert.deepEqual(net.masters(), [1]);
  assert.deepEqual(net.eventsOf(2), ['backup:startup:0']);
  assert.equal(b.master, 1);
  const owner = net.add({ id: 3, priority: 255, preempt: false });
  owner.start();
  net.clock.advance(1000);
  assert.deepEqual(net.masters(), [3]);
  assert.deepEqual(net.eventsOf(3).at(-1), 'master:preempt:2');
});

test('setPriority: a backup raised above the master takes over when it preempts', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 150 });
  const b = net.add({ id: 2, priority: 100 });
  a.start();
  b.start();
  net.clock.advance(500);
  assert.deepEqual(net.masters(), [1]);
  b.setPriority(160);
  net.clock.advance(500);
  assert.deepEqual(net.masters(), [2]);
  assert.throws(() => b.setPriority(0), RangeError);
  assert.throws(() => b.setPriority(256), RangeError);
});

test('equal priorities started together: both take over at once, the higher id keeps the VIP', () => {
  const net = new Net();
  net.add({ id: 4, priority: 100 }).start();
  net.add({ id: 9, priority: 100 }).start();
  net.clock.advance(72.1875);
  assert.deepEqual(net.masters().sort(), [4, 9]);
  net.clock.advance(LATENCY_MS);
  assert.deepEqual(net.masters(), [9]);
  assert.deepEqual(net.eventsOf(4), ['backup:startup:0', 'master:no-master:1', 'backup:higher-priority:1']);
  net.clock.advance(10_000);
  assert.deepEqual(net.masters(), [9]);
});

test('a master that hears a higher epoch steps down at once, even with a higher priority', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 250, preempt: false });
  a.start();
  net.clock.advance(100);
  assert.equal(a.state, 'master');
  a.receive({ group: GROUP_ID, sender: 2, priority: 10, preempt: false, intervalMs: 20, epoch: 5 });
  assert.equal(a.state, 'backup');
  assert.equal(a.epoch, 5);
  assert.equal(a.master, 2);
  assert.deepEqual(net.eventsOf(1).at(-1), 'backup:higher-epoch:5');
  // A lower epoch from a (stale) master does not move a master.
  const other = new Net();
  const c = other.add({ id: 3, priority: 10 });
  c.start();
  other.clock.advance(1000);
  assert.equal(c.state, 'master');
  const epoch = c.epoch;
  c.receive({ group: GROUP_ID, sender: 8, priority: 250, preempt: true, intervalMs: 20, epoch: epoch - 1 });
  assert.equal(c.state, 'master');
  // Other groups and its own id are ignored.
  c.receive({ group: GROUP_ID + 1, sender: 8, priority: 250, preempt: true, intervalMs: 20, epoch: epoch + 10 });
  c.receive({ group: GROUP_ID, sender: 3, priority: 250, preempt: true, intervalMs: 20, epoch: epoch + 10 });
  assert.equal(c.state, 'master');
  assert.equal(c.epoch, epoch);
});

test('a backup adopts the master’s advertised interval for its Master_Down_Interval', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 200, intervalMs: 100 });
  const b = net.add({ id: 2, priority: 100, intervalMs: 20 });
  a.start();
  net.clock.advance(400); // A master at 3 * 100 + 56 * 100 / 256 = 321.875
  b.start();
  net.clock.advance(1000);
  assert.equal(b.masterDownMs, masterDownMs(100, 100));
  const lastHeard = Math.max(...net.sent.filter((s) => s.sender === 1).map((s) => s.at)) + LATENCY_MS;
  const now = net.clock.now();
  a.destroy();
  net.nodes.delete(1);
  // 300 + 156 * 100 / 256 = 360.9375 after the last advert, not 72.1875.
  net.clock.advance(lastHeard + 360.9375 - now - 0.01);
  assert.equal(b.state, 'backup');
  net.clock.advance(0.02);
  assert.equal(b.state, 'master');
});

test('a stale master resigning does not hurry the backups of the current master', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 200 });
  const b = net.add({ id: 2, priority: 100 });
  a.start();
  b.start();
  net.clock.advance(200);
  assert.equal(b.epoch, 1);
  b.receive({ group: GROUP_ID, sender: 5, priority: 0, preempt: false, intervalMs: 20, epoch: 0 });
  net.clock.advance(1000);
  assert.deepEqual(net.masters(), [1]);
  assert.deepEqual(net.eventsOf(2), ['backup:startup:0']);
});

test('healed partition: two masters → one master within a few intervals, then no flapping', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 200 });
  const b = net.add({ id: 2, priority: 100 });
  a.start();
  b.start();
  net.clock.advance(500);
  net.partition([1], [2]);
  net.clock.advance(500);
  assert.deepEqual(net.masters().sort(), [1, 2], 'each side has a master');
  assert.equal(a.epoch, 1);
  assert.equal(b.epoch, 2);
  const healedAt = net.clock.now();
  const mark = net.events.length;
  net.partition([1], [2], false);
  // A hears epoch 2 within one interval + latency and steps down; B ignores A's epoch-1 adverts.
  net.clock.advance(20 + LATENCY_MS);
  assert.deepEqual(net.masters(), [2]);
  // A (priority 200, preempting) takes the VIP back within one Master_Down_Interval, epoch 3.
  net.clock.advance(masterDownMs(200, 20) + LATENCY_MS);
  assert.deepEqual(net.masters(), [1]);
  assert.equal(a.epoch, 3);
  const after = net.events.slice(mark).map((e) => `${e.node}:${e.type}:${e.reason}:${e.epoch}`);
  assert.deepEqual(after, ['1:backup:higher-epoch:2', '1:master:preempt:3', '2:backup:higher-epoch:3']);
  assert.ok(net.clock.now() - healedAt <= 5 * 20 + 2 * LATENCY_MS);
  net.clock.advance(60_000);
  assert.equal(net.events.length, mark + 3, 'no transition in the minute after');
});

/** mulberry32: deterministic, printed seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('random groups and partitions: one master within (N + 1) x 4 intervals of the heal, stable afterwards', () => {
  const SEED = 0xe1ec7;
  const rand = prng(SEED);
  const int = (below: number): number => Math.floor(rand() * below);
  for (let trial = 0; trial < 300; trial++) {
    const net = new Net();
    const n = 2 + int(4);
    const intervals = [5, 10, 20];
    const maxInterval = Math.max(...intervals);
    const ids = Array.from({ length: n }, (_, i) => 1 + i * 3 + int(3));
    const specs = ids.map((id) => ({ id, priority: 1 + int(255), preempt: rand() < 0.6, intervalMs: intervals[int(3)]! }));
    const label = `seed ${SEED} trial ${trial}: ${JSON.stringify(specs)}`;
    for (const s of specs) net.add(s).start();
    net.clock.advance(500);
    // A few random partitions of random length, some nodes restarted inside them.
    for (let p = 0; p < 1 + int(3); p++) {
      const side = ids.filter(() => rand() < 0.5);
      const other = ids.filter((id) => !side.includes(id));
      net.partition(side, other);
      net.clock.advance(50 + int(400));
      if (rand() < 0.3) {
        const victim = net.nodes.get(ids[int(n)]!)!;
        victim.destroy();
        victim.start();
      }
      net.partition(side, other, false);
      net.clock.advance(int(100));
    }
    const bound = (n + 1) * 4 * maxInterval + 10 * LATENCY_MS;
    net.clock.advance(bound);
    assert.equal(net.masters().length, 1, `${label}: masters ${JSON.stringify(net.masters())} ${bound} ms after the heal`);
    const mark = net.events.length;
    net.clock.advance(100 * maxInterval);
    assert.equal(net.events.length, mark, `${label}: flapped: ${JSON.stringify(net.events.slice(mark))}`);
    // Everybody agrees on who it is.
    const [master] = net.masters();
    for (const e of net.nodes.values()) assert.equal(e.master, master, label);
  }
});

test('state changes are published on holdfast:election:state with the node id', (t) => {
  const seen: ElectionStateEvent[] = [];
  const onState = (m: unknown): void => void seen.push(m as ElectionStateEvent);
  diagnostics_channel.subscribe('holdfast:election:state', onState);
  t.after(() => diagnostics_channel.unsubscribe('holdfast:election:state', onState));
  const net = new Net();
  net.add({ id: 42, priority: 100 }).start();
  net.clock.advance(100);
  assert.deepEqual(seen, [
    { type: 'backup', group: 'g', epoch: 0, reason: 'startup', master: null, node: 42 },
    { type: 'master', group: 'g', epoch: 1, reason: 'no-master', master: 42, node: 42 },
  ]);
});

test('constructor validates its numbers', () => {
  const base = { group: 'g', groupId: 1, node: 1, priority: 100, intervalMs: 20, preempt: true, clock: new FakeClock(), send: () => {} };
  assert.throws(() => new Election({ ...base, priority: 0 }), RangeError);
  assert.throws(() => new Election({ ...base, intervalMs: 0 }), RangeError);
  assert.throws(() => new Election({ ...base, node: 65536 }), RangeError);
  assert.throws(() => new Election({ ...base, groupId: -1 }), RangeError);
});

test('drain before deciding: a backup whose Master_Down_Timer fires while the master’s advert waits unread stays backup', () => {
  const net = new Net();
  const a = net.add({ id: 1, priority: 200 });
  const b = net.add({ id: 2, priority: 100 });
  a.start();
  b.start();
  net.clock.advance(500);
  assert.deepEqual(net.masters(), [1]);
  // b is starved: a's adverts reach its socket but b does not read them before its timer fires.
  net.cut.add('1>2');
  net.clock.holdImmediates = true;
  const lastHeard = Math.max(...net.sent.filter((s) => s.sender === 1).map((s) => s.at)) + LATENCY_MS;
  net.clock.advance(lastHeard + 72.1875 + 0.01 - 500);
  assert.equal(b.state, 'backup', 'not decided before the socket was read');
  // The poll phase: the advert that was waiting. Then the check phase.
  const advert = net.sent.filter((s) => s.sender === 1).at(-1)!;
  b.receive({ ...advert });
  net.clock.runImmediates();
  assert.equal(b.state, 'backup');
  assert.deepEqual(net.masters(), [1]);
  // A master that is really gone: nothing waits in the socket, and b takes over one loop turn later.
  a.destroy();
  net.nodes.delete(1);
  net.clock.advance(72.1875 + 1);
  assert.equal(b.state, 'backup');
  net.clock.runImmediates();
  assert.equal(b.state, 'master');
});
