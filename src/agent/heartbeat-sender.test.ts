import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FakeClock } from '../core/clock.js';
import { ClosedError } from '../core/errors.js';
import { decodeAvailability, encodeAvailability, type Availability } from '../wire/availability.js';
import { MessageType, open } from '../wire/envelope.js';
import { wireTimestamp } from '../wire/timestamp.js';
import { HeartbeatSender } from './heartbeat-sender.js';

const KEY = randomBytes(32);

/** A sink that opens and decodes what it is given, as a dispatcher would. */
function collector(key = KEY) {
  const raw: Buffer[] = [];
  return {
    raw,
    send(msg: Buffer) {
      raw.push(msg);
    },
    get decoded(): Availability[] {
      return raw.map((msg) => {
        const opened = open(msg, key);
        assert.ok(opened.ok, 'the message opens with the cluster key');
        assert.equal(opened.type, MessageType.Availability);
        const a = decodeAvailability(opened.body);
        assert.ok(a);
        return a;
      });
    },
  };
}

test('one announcement at start, then one per interval, seq +1 each, timestamp = send time', () => {
  const clock = new FakeClock(1_700_000_000_000);
  const sink = collector();
  const hb = new HeartbeatSender({ host: 513, intervalMs: 20, key: KEY, sink, clock });
  hb.setAppAvailable(true);
  hb.start();
  assert.equal(sink.raw.length, 1);
  clock.advance(19);
  assert.equal(sink.raw.length, 1);
  clock.advance(1);
  assert.equal(sink.raw.length, 2);
  clock.advance(60);
  const got = sink.decoded;
  assert.equal(got.length, 5);
  assert.deepEqual(
    got.map((a) => a.seq),
    [0, 1, 2, 3, 4],
  );
  assert.ok(got.every((a) => a.host === 513 && a.flag === 'available'));
  assert.deepEqual(
    got.map((a) => a.timestamp),
    [0, 20, 40, 60, 80].map((dt) => wireTimestamp(1_700_000_000_000 + dt)),
  );
  assert.ok(sink.raw.every((m) => m.length === 28), '11 + 1 + 16 bytes');
  assert.equal(hb.sent, 5);
  hb.close();
  clock.advance(100);
  assert.equal(sink.raw.length, 5, 'no more after close');
});

test('the body written in place is exactly what the wire codec encodes', () => {
  const clock = new FakeClock(2 ** 32 + 12345); // the timestamp wraps
  const sink = collector();
  const hb = new HeartbeatSender({ host: 65535, intervalMs: 10, key: KEY, sink, clock, firstSeq: 2 ** 32 - 1 });
  hb.setAppAvailable(false);
  hb.sendNow();
  hb.sendNow();
  const opened = sink.raw.map((m) => open(m, KEY));
  assert.ok(opened[0]!.ok && opened[1]!.ok);
  assert.deepEqual(opened[0]!.body, encodeAvailability({ host: 65535, seq: 2 ** 32 - 1, flag: 'app-unavailable', timestamp: 12345 }));
  assert.equal(sink.decoded[1]!.seq, 0, 'seq wraps at 2^32');
});

test('the flag follows the watchdog verdict until a planned failure, which sticks', () => {
  const clock = new FakeClock(1_000_000);
  const sink = collector();
  const hb = new HeartbeatSender({ host: 1, intervalMs: 10, key: KEY, sink, clock });
  assert.equal(hb.flag, 'app-unavailable', 'not seen healthy yet');
  hb.start();
  hb.setAppAvailable(true);
  clock.advance(10);
  hb.setAppAvailable(false);
  clock.advance(10);
  hb.setAppAvailable(true);
  clock.advance(5);
  hb.announcePlannedFailure(1_000_025); // sends at once, off schedule
  hb.announcePlannedFailure(9_999_999); // a second drain keeps the first time
  hb.setAppAvailable(false);
  clock.advance(5);
  clock.advance(10);
  const got = sink.decoded;
  assert.deepEqual(
    got.map((a) => a.flag),
    ['app-unavailable', 'available', 'app-unavailable', 'planned-failure', 'planned-failure', 'planned-failure'],
  );
  assert.deepEqual(
    got.slice(3).map((a) => a.timestamp),
    [1_000_025, 1_000_025, 1_000_025],
    'the planned failure time, not the send time',
  );
  assert.deepEqual(
    got.map((a) => a.seq),
    [0, 1, 2, 3, 4, 5],
  );
});

test('a wrong key does not open the announcements', () => {
  const sink = collector();
  const hb = new HeartbeatSender({ host: 1, intervalMs: 10, key: KEY, sink, clock: new FakeClock() });
  hb.sendNow();
  assert.deepEqual(open(sink.raw[0]!, randomBytes(32)), { ok: false, reason: 'bad-mac' });
});

test('after close, sending is an error', () => {
  const hb = new HeartbeatSender({ host: 1, intervalMs: 10, key: KEY, sink: collector(), clock: new FakeClock() });
  hb.close();
  assert.throws(() => hb.sendNow(), ClosedError);
  assert.throws(() => hb.announcePlannedFailure(0), ClosedError);
});

test('HANet: while relayed through a sibling, announcements carry flag bit 7; the flag itself is unchanged', () => {
  const clock = new FakeClock(1_700_000_000_000);
  const sink = collector();
  const hb = new HeartbeatSender({ host: 2, intervalMs: 20, key: KEY, sink, clock });
  hb.setAppAvailable(true);
  hb.sendNow();
  hb.setViaSibling(true);
  assert.equal(hb.viaSibling, true);
  hb.sendNow();
  hb.setAppAvailable(false);
  hb.sendNow();
  hb.setViaSibling(false);
  hb.sendNow();
  const d = sink.decoded;
  assert.deepEqual(
    d.map((a) => [a.flag, a.viaSibling === true]),
    [
      ['available', false],
      ['available', true],
      ['app-unavailable', true],
      ['app-unavailable', false],
    ],
  );
  assert.equal(sink.raw[1]![6], 0x81);
  hb.close();
});

test('a tick one interval late or more after waiting for a CPU (run queue or steal) carries the starved bit; a stop does not', () => {
  const clock = new FakeClock(1_700_000_000_000);
  const sink = collector();
  let waitMs = 100;
  const hb = new HeartbeatSender({ host: 1, intervalMs: 10, key: KEY, sink, clock, starvationMs: () => waitMs });
  hb.setAppAvailable(true);
  hb.start(); // seq 0 at 0
  clock.advance(10); // seq 1 on time
  // Starved: the tick due at 20 runs at 45 (25 ms late), 20 of them spent waiting for a CPU.
  clock.advance(5);
  clock.stall(40);
  waitMs += 20;
  clock.advance(0); // seq 2 at 45 (starved), then the fake schedule catches up: seq 3 at 45 (not late)
  clock.advance(5); // seq 4 at 50
  // Stopped (SIGSTOP): 40 ms late, no run-queue wait.
  clock.advance(5);
  clock.stall(40);
  clock.advance(0); // seq 5 at 95 (not starved), seq 6-8 catching up
  // Late by less than one interval, all of it waiting: a scheduling hiccup, not a starvation.
  clock.advance(1);
  clock.stall(8);
  waitMs += 8;
  clock.advance(0);
  const got = sink.decoded;
  assert.deepEqual(
    got.filter((a) => a.starved === true).map((a) => a.seq),
    [2],
  );
  assert.equal(hb.starvedSent, 1);
  hb.close();
});

test('starved bit: never without a run-queue reading (no /proc), and not on an unscheduled send', () => {
  const clock = new FakeClock(1_700_000_000_000);
  const sink = collector();
  const hb = new HeartbeatSender({ host: 1, intervalMs: 10, key: KEY, sink, clock, starvationMs: () => null });
  hb.setAppAvailable(true);
  hb.start();
  clock.advance(5);
  clock.stall(50);
  clock.advance(0);
  hb.announcePlannedFailure(1_700_000_001_000);
  assert.ok(sink.decoded.every((a) => a.starved === undefined));
  hb.close();
});

test('RunQueueMeter: reads this thread\'s run-queue wait, never decreasing; null for a missing file', async () => {
  const { RunQueueMeter } = await import('../core/scheduling.js');
  const { existsSync } = await import('node:fs');
  const meter = new RunQueueMeter();
  const a = meter.read();
  if (!existsSync('/proc/thread-self/schedstat')) assert.equal(a, null);
  else {
    assert.equal(typeof a, 'number');
    const b = meter.read()!;
    assert.ok(b >= a!, `${b} >= ${a}`);
  }
  meter.close();
  const missing = new RunQueueMeter('/nonexistent/schedstat');
  assert.equal(missing.read(), null);
  assert.equal(missing.read(), null);
});

test('StealMeter: the steal column of /proc/stat in ms, cached for 100 ms unless fresh; null for a missing file', async () => {
  const { StealMeter, STEAL_REFRESH_MS } = await import('../core/scheduling.js');
  const { existsSync, mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const dir = mkdtempSync(path.join(tmpdir(), 'hf-steal-'));
  try {
    const file = path.join(dir, 'stat');
    let t = 0;
    const write = (steal: number): void => writeFileSync(file, `cpu  10 0 20 300 4 0 5 ${steal} 0 0\ncpu0 10 0 20 300 4 0 5 ${steal} 0 0\n`);
    write(7);
    const meter = new StealMeter(() => t, file);
    assert.equal(meter.read(), 70);
    write(9);
    t = STEAL_REFRESH_MS - 1;
    assert.equal(meter.read(), 70, 'cached');
    assert.equal(meter.read(true), 90, 'fresh when asked');
    write(12);
    t += STEAL_REFRESH_MS;
    assert.equal(meter.read(), 120, 'refreshed after 100 ms');
    meter.close();
    writeFileSync(file, 'garbage\n');
    assert.equal(new StealMeter(() => 0, file).read(), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(new StealMeter(() => 0, '/nonexistent/stat').read(), null);
  if (existsSync('/proc/stat')) assert.equal(typeof new StealMeter().read(), 'number');
});
