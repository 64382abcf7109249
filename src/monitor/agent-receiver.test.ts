import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import diagnostics_channel from 'node:diagnostics_channel';
import { randomBytes } from 'node:crypto';
import type { HostPort } from '../core/address.js';
import { FakeClock } from '../core/clock.js';
import type { WireDropEvent } from '../core/diagnostics.js';
import { ClosedError, ListenError } from '../core/errors.js';
import { encodeAvailability } from '../wire/availability.js';
import type { Availability } from '../wire/availability.js';
import { MessageType, WIRE_VERSION, seal } from '../wire/envelope.js';
import { encodeLoadVector } from '../wire/load-vector.js';
import type { LoadVector } from '../wire/load-vector.js';
import { wireTimestamp } from '../wire/timestamp.js';
import { handSeal } from '../wire/wire.fixtures.js';
import { AgentReceiver, MAX_DATAGRAM_BYTES } from './agent-receiver.js';
import type { ReceiverStats } from './agent-receiver.js';

/** Wall clock of the receiver (FakeClock: wallNow() = now() = START, frozen). */
const START = 1_700_000_000_000;
const KNOWN_HOSTS = new Set([7, 8]);
/** How long a test waits for datagrams on loopback before failing: generous, it is not a timing claim. */
const ARRIVAL_TIMEOUT_MS = 3000;

interface Harness {
  receiver: AgentReceiver;
  key: Buffer;
  address: HostPort;
  availability: Array<{ host: number; a: Availability; now: number }>;
  loads: Array<{ host: number; v: LoadVector; now: number }>;
  drops: WireDropEvent[];
  send(msg: Buffer): Promise<void>;
  sender: HostPort;
  /** Resolves once the receiver has counted `total` datagrams (accepted or dropped). */
  processed(total: number): Promise<ReceiverStats>;
}

async function harness(t: import('node:test').TestContext): Promise<Harness> {
  const key = randomBytes(32);
  const clock = new FakeClock(START);
  const availability: Harness['availability'] = [];
  const loads: Harness['loads'] = [];
  const drops: WireDropEvent[] = [];
  const receiver = new AgentReceiver({ host: '127.0.0.1', port: 0 }, key, clock, {
    availability: (host, a, now) => availability.push({ host, a, now }),
    load: (host, v, now) => loads.push({ host, v, now }),
    knownHost: (host) => KNOWN_HOSTS.has(host),
  });
  const address = await receiver.start();
  const onDrop = (m: unknown): void => void drops.push(m as WireDropEvent);
  diagnostics_channel.subscribe('holdfast:wire:drop', onDrop);
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  t.after(async () => {
    diagnostics_channel.unsubscribe('holdfast:wire:drop', onDrop);
    socket.close();
    await receiver.close();
  });
  const send = (msg: Buffer): Promise<void> =>
    new Promise((resolve, reject) => socket.send(msg, address.port, address.host, (err) => (err ? reject(err) : resolve())));
  const processed = async (total: number): Promise<ReceiverStats> => {
    const deadline = Date.now() + ARRIVAL_TIMEOUT_MS;
    for (;;) {
      const stats = receiver.stats();
      const seen = Object.values(stats).reduce((s, n) => s + n, 0);
      if (seen >= total) return stats;
      if (Date.now() > deadline) assert.fail(`only ${seen} of ${total} datagrams processed: ${JSON.stringify(stats)}`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  };
  const bound = socket.address();
  return { receiver, key, address, availability, loads, drops, send, sender: { host: bound.address, port: bound.port }, processed };
}

const availability = (over: Partial<Availability> = {}): Availability => ({
  host: 7,
  seq: 1,
  flag: 'available',
  timestamp: wireTimestamp(START),
  ...over,
});

const loadVector = (over: Partial<LoadVector> = {}): LoadVector => ({
  host: 8,
  seq: 1,
  timestamp: wireTimestamp(START),
  cpu: 0,
  memory: 1,
  network: 0.5,
  io: 0.25,
  backlog: 0.75,
  load: 0.2,
  ...over,
});

const zero: ReceiverStats = { accepted: 0, truncated: 0, 'bad-mac': 0, version: 0, type: 0, malformed: 0, replay: 0, stale: 0, 'unknown-host': 0 };

test('real availability and load messages over UDP are delivered, with the receive time', async (t) => {
  const h = await harness(t);
  assert.equal(h.address.host, '127.0.0.1');
  assert.ok(h.address.port > 0);
  await h.send(seal(MessageType.Availability, encodeAvailability(availability({ seq: 41, flag: 'app-unavailable', viaSibling: true })), h.key));
  await h.send(seal(MessageType.LoadVector, encodeLoadVector(loadVector({ seq: 9 })), h.key));
  // A planned failure an hour ahead: its timestamp is the failure time, so freshness uses receipt.
  const inAnHour = wireTimestamp(START + 3_600_000);
  await h.send(seal(MessageType.Availability, encodeAvailability(availability({ seq: 42, flag: 'planned-failure', timestamp: inAnHour })), h.key));
  const stats = await h.processed(3);
  assert.deepEqual(stats, { ...zero, accepted: 3 });
  assert.deepEqual(h.availability, [
    { host: 7, a: { host: 7, seq: 41, flag: 'app-unavailable', timestamp: wireTimestamp(START), viaSibling: true }, now: START },
    { host: 7, a: { host: 7, seq: 42, flag: 'planned-failure', timestamp: inAnHour }, now: START },
  ]);
  assert.equal(h.loads.length, 1);
  assert.equal(h.loads[0]!.host, 8);
  assert.equal(h.loads[0]!.v.seq, 9);
  assert.equal(h.loads[0]!.v.memory, 1);
  assert.ok(Math.abs(h.loads[0]!.v.load - 0.2) < 1e-4);
  assert.deepEqual(h.drops, []);
});

test('forged, replayed, truncated, oversized, unknown-host, stale and garbage datagrams: counted, never delivered', async (t) => {
  const h = await harness(t);
  const good = seal(MessageType.Availability, encodeAvailability(availability({ seq: 5 })), h.key);
  const tampered = Buffer.from(good);
  tampered[3]! ^= 0x01; // seq changed after sealing
  const otherKey = seal(MessageType.Availability, encodeAvailability(availability({ seq: 6 })), randomBytes(32));
  const oversized = seal(MessageType.LoadVector, randomBytes(MAX_DATAGRAM_BYTES), h.key); // MAC valid, too long
  const cases: Array<[keyof ReceiverStats, Buffer]> = [
    ['accepted', good],
    ['replay', good],
    ['bad-mac', tampered],
    ['bad-mac', otherKey],
    ['bad-mac', randomBytes(28)], // garbage of the right size
    ['truncated', good.subarray(0, 16)],
    ['truncated', Buffer.alloc(0)],
    ['malformed', oversized],
    ['malformed', seal(MessageType.Availability, encodeAvailability(availability()).subarray(0, 10), h.key)],
    ['malformed', seal(MessageType.Availability, Buffer.from('0007000000070000000000', 'hex'), h.key)], // flag 0
    ['version', handSeal(((WIRE_VERSION + 1) << 4) | MessageType.Availability, encodeAvailability(availability({ seq: 7 })), h.key)],
    ['type', handSeal((WIRE_VERSION << 4) | 9, encodeAvailability(availability({ seq: 8 })), h.key)],
    // A sibling's HANet message is authentic but not for the dispatcher: dropped, never decoded as load.
    ['type', seal(MessageType.TransmissionAgent, Buffer.alloc(22, 1), h.key)],
    ['unknown-host', seal(MessageType.Availability, encodeAvailability(availability({ host: 99, seq: 1 })), h.key)],
    ['stale', seal(MessageType.Availability, encodeAvailability(availability({ seq: 10, timestamp: wireTimestamp(START - 60_000) })), h.key)],
    ['stale', seal(MessageType.LoadVector, encodeLoadVector(loadVector({ seq: 2, timestamp: wireTimestamp(START + 60_000) })), h.key)],
  ];
  for (const [, msg] of cases) await h.send(msg);
  const stats = await h.processed(cases.length);
  const expected: ReceiverStats = { ...zero };
  for (const [reason] of cases) expected[reason]++;
  assert.deepEqual(stats, expected);
  assert.equal(h.availability.length, 1, 'only the first copy of the good message');
  assert.equal(h.availability[0]!.a.seq, 5);
  assert.deepEqual(h.loads, []);
  // Every drop was published with its reason and the sender's address (loopback keeps order).
  const from = `${h.sender.host}:${h.sender.port}`;
  assert.deepEqual(
    h.drops,
    cases.filter(([r]) => r !== 'accepted').map(([reason]) => ({ source: 'monitor', reason, from })),
  );
});

test('random datagrams of every size: each one counted, none accepted, the receiver keeps working', async (t) => {
  const h = await harness(t);
  const COUNT = 400;
  let seed = 12345;
  const random = (): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed;
  };
  for (let i = 0; i < COUNT; i++) {
    const msg = randomBytes(random() % 700);
    // Also well-formed-looking envelopes: valid version byte in the right place, random tag.
    if (msg.length >= 28 && i % 2 === 0) msg[11] = (WIRE_VERSION << 4) | MessageType.Availability;
    await h.send(msg);
    // In batches: the socket's receive buffer holds ~100 datagrams, and this test is about
    // handling each one, not about the kernel dropping a burst.
    if (i % 25 === 24) await h.processed(i + 1);
  }
  await h.send(seal(MessageType.Availability, encodeAvailability(availability({ seq: 1 })), h.key));
  const stats = await h.processed(COUNT + 1);
  assert.equal(stats.accepted, 1, 'the real message after the noise got through');
  assert.equal(h.availability.length, 1);
  assert.equal(Object.values(stats).reduce((s, n) => s + n, 0), COUNT + 1);
});

test('lifecycle: start is idempotent, close is idempotent, start after close is refused, a taken port is a ListenError', async (t) => {
  const h = await harness(t);
  assert.deepEqual(await h.receiver.start(), h.address);
  const second = new AgentReceiver(h.address, h.key, new FakeClock(START), { availability() {}, load() {}, knownHost: () => true });
  await assert.rejects(second.start(), (err: unknown) => err instanceof ListenError && err.code === 'HF_ERR_LISTEN');
  await second.close();
  await h.receiver.close();
  await h.receiver.close();
  await assert.rejects(h.receiver.start(), ClosedError);
});
