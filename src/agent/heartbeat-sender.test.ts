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
