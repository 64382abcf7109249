import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FakeClock } from '../core/clock.js';
import { MessageType, open } from '../wire/envelope.js';
import { decodeLoadVector, type LoadVector } from '../wire/load-vector.js';
import { wireTimestamp } from '../wire/timestamp.js';
import type { LoadSample } from './load-collector.js';
import { LoadSender, type LoadSource } from './load-sender.js';

const KEY = randomBytes(32);
const settle = () => new Promise<void>((r) => setImmediate(r));

function source(samples: LoadSample[], opts: { hang?: boolean } = {}) {
  const calls = { prime: 0, sample: 0 };
  let release: (() => void) | null = null;
  const s: LoadSource = {
    async prime() {
      calls.prime++;
    },
    async sample() {
      calls.sample++;
      if (opts.hang) await new Promise<void>((r) => (release = r));
      return samples.shift() ?? { cpu: 0, memory: 0, network: 0, io: 0, backlog: 0, load: 0, missing: [] };
    },
  };
  return { s, calls, release: () => release?.() };
}

function decode(msgs: Buffer[]): LoadVector[] {
  return msgs.map((m) => {
    const o = open(m, KEY);
    assert.ok(o.ok);
    assert.equal(o.type, MessageType.LoadVector);
    return decodeLoadVector(o.body)!;
  });
}

test('primes, then one sealed load vector per interval, seq +1, values as sampled', async () => {
  const clock = new FakeClock(1_700_000_000_000);
  const sent: Buffer[] = [];
  const { s, calls } = source([
    { cpu: 0.45, memory: 0.75, network: 0.8, io: 0.75, backlog: 0.25, load: 0.59, missing: [] },
    { cpu: 1, memory: 0, network: 0.5, io: 0, backlog: 0, load: 0.5, missing: ['backlog'] },
  ]);
  const sender = new LoadSender({ host: 9, intervalMs: 1000, key: KEY, sink: { send: (m) => sent.push(m) }, source: s, clock });
  await sender.start();
  assert.equal(calls.prime, 1);
  assert.equal(sent.length, 0, 'nothing before the first interval');
  clock.advance(1000);
  await settle();
  clock.advance(1000);
  await settle();
  const v = decode(sent);
  assert.equal(v.length, 2);
  assert.ok(sent.every((m) => m.length === 39), '22 + 1 + 16 bytes');
  assert.deepEqual([v[0]!.host, v[0]!.seq, v[1]!.seq], [9, 0, 1]);
  assert.deepEqual([v[0]!.timestamp, v[1]!.timestamp], [wireTimestamp(1_700_000_001_000), wireTimestamp(1_700_000_002_000)]);
  const near = (a: number, b: number) => assert.ok(Math.abs(a - b) <= 1 / 65535, `${a} vs ${b}`);
  near(v[0]!.cpu, 0.45);
  near(v[0]!.memory, 0.75);
  near(v[0]!.network, 0.8);
  near(v[0]!.io, 0.75);
  near(v[0]!.backlog, 0.25);
  near(v[0]!.load, 0.59);
  near(v[1]!.cpu, 1);
  assert.equal(sender.sent, 2);
  sender.close();
  clock.advance(5000);
  await settle();
  assert.equal(sent.length, 2);
});

test('a slow sample makes the next intervals skip instead of piling up', async () => {
  const clock = new FakeClock();
  const sent: Buffer[] = [];
  const { s, calls, release } = source([], { hang: true });
  const sender = new LoadSender({ host: 1, intervalMs: 100, key: KEY, sink: { send: (m) => sent.push(m) }, source: s, clock });
  await sender.start();
  clock.advance(100);
  clock.advance(100);
  clock.advance(100);
  await settle();
  assert.equal(calls.sample, 1);
  release();
  await settle();
  assert.equal(sent.length, 1);
  clock.advance(100);
  await settle();
  assert.equal(calls.sample, 2);
  sender.close();
  release();
});
