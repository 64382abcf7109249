import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import { ClientLimiter, type ClientLimitsConfig } from './client-limits.js';

const OFF: ClientLimitsConfig = { maxConnectionsPerAddress: 0, connectionsPerSecond: 0, requestsPerSecond: 0, maxAddresses: 4 };

test('concurrent connections per address: the (n+1)th is refused until one closes; other addresses are not affected', () => {
  const clock = new FakeClock(0);
  const l = new ClientLimiter({ ...OFF, maxConnectionsPerAddress: 2 }, clock);
  assert.equal(l.enabled, true);
  const a1 = l.connect('10.0.0.1');
  const a2 = l.connect('10.0.0.1');
  assert.deepEqual([a1.verdict, a2.verdict, l.connect('10.0.0.1').verdict], ['accept', 'accept', 'too-many-connections']);
  assert.equal(l.connect('10.0.0.2').verdict, 'accept');
  l.release(a1.entry);
  assert.equal(l.connect('10.0.0.1').verdict, 'accept');
  assert.equal(l.counts['too-many-connections'], 1);
});

test('new connections per second: a token bucket with one second of burst, refilled continuously', () => {
  const clock = new FakeClock(0);
  const l = new ClientLimiter({ ...OFF, connectionsPerSecond: 4 }, clock);
  const verdicts = () => Array.from({ length: 5 }, () => l.connect('a').verdict);
  assert.deepEqual(verdicts(), ['accept', 'accept', 'accept', 'accept', 'connection-rate']);
  clock.advance(250); // 4/s x 0.25 s = one token
  assert.deepEqual([l.connect('a').verdict, l.connect('a').verdict], ['accept', 'connection-rate']);
  clock.advance(10_000); // refilled to the burst (4), not beyond
  assert.deepEqual(verdicts(), ['accept', 'accept', 'accept', 'accept', 'connection-rate']);
});

test('requests per second with Retry-After from the deficit', () => {
  const clock = new FakeClock(0);
  const l = new ClientLimiter({ ...OFF, requestsPerSecond: 2 }, clock);
  const { entry } = l.connect('a');
  assert.deepEqual([l.request(entry), l.request(entry), l.request(entry)], [true, true, false]);
  assert.equal(l.retryAfterS(entry), 1);
  clock.advance(500);
  assert.equal(l.request(entry), true);
  assert.equal(l.counts['request-rate'], 1);
});

test('the address table is bounded: idle addresses are forgotten, active ones kept, overflow let through untracked and counted', () => {
  const clock = new FakeClock(0);
  const l = new ClientLimiter({ ...OFF, maxConnectionsPerAddress: 1, maxAddresses: 2 }, clock);
  const a = l.connect('a');
  const b = l.connect('b');
  assert.equal(l.trackedAddresses, 2);
  const c = l.connect('c');
  assert.deepEqual([c.verdict, c.entry, l.counts['table-full']], ['accept', null, 1], 'both tracked addresses are active');
  l.release(c.entry); // untracked: nothing to release
  l.release(a.entry);
  assert.equal(l.connect('c').verdict, 'accept', 'a was idle and forgotten to make room');
  assert.equal(l.trackedAddresses, 2);
  assert.equal(l.connect('b').verdict, 'too-many-connections', 'b is still tracked with its connection');
  void b;
});

test('with every limit off the limiter says so (the listener then skips it)', () => {
  assert.equal(new ClientLimiter(OFF, new FakeClock(0)).enabled, false);
});
