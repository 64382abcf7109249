import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectorConfig, runDetectorSuite } from './detector.common-suite.js';
import { createDetector } from './detector-registry.js';
import { PushDetector } from './detector-push.js';

runDetectorSuite('push');
runDetectorSuite('push', { intervalMs: 10, n: 3 });
runDetectorSuite('push', { intervalMs: 5, n: 2 });
runDetectorSuite('push', { intervalMs: 1000, n: 5 });

test('push, intervalMs 10, n 3: heartbeats at 0, 10, 20 then silence: suspect at 35, down at 50', () => {
  const d = createDetector(detectorConfig('push', { intervalMs: 10, n: 3 }), 0);
  assert.ok(d instanceof PushDetector);
  for (const t of [0, 10, 20]) d.heartbeat(t);
  // One late heartbeat is tolerated: up while now - 20 < 1.5 x 10.
  assert.equal(d.nextDeadline(20), 35);
  assert.equal(d.verdict(34.999), 'up');
  assert.equal(d.verdict(35), 'suspect');
  // Down once now - 20 reaches n x intervalMs = 30.
  assert.equal(d.nextDeadline(35), 50);
  assert.equal(d.verdict(49.999), 'suspect');
  assert.equal(d.verdict(50), 'down');
  assert.equal(d.nextDeadline(50), Infinity);
});

test('push with n 1: no suspect phase, down one interval after the last heartbeat', () => {
  const d = createDetector(detectorConfig('push', { intervalMs: 10, n: 1 }), 0);
  d.heartbeat(100);
  assert.equal(d.nextDeadline(100), 110);
  assert.equal(d.verdict(109.9), 'up');
  assert.equal(d.verdict(110), 'down');
});

test('push: a heartbeat older than the latest one is ignored', () => {
  const d = createDetector(detectorConfig('push', { intervalMs: 10, n: 3 }), 0);
  d.heartbeat(100);
  d.heartbeat(90);
  assert.equal(d.nextDeadline(100), 115);
});

test('push stall memory: a heartbeat ending a 50 ms stall widens the down timeout to 75 ms for stallMemoryMs', () => {
  const d = createDetector(detectorConfig('push', { intervalMs: 10, n: 3, stallMemoryMs: 1000 }), 0);
  d.heartbeat(0);
  d.heartbeat(50); // alive through 50 ms of silence: a stall (2 x 10 <= 50 <= 10 x 10)
  assert.equal(d.nextDeadline(50), 65, 'suspect as before: 1.5 x 10 after the heartbeat');
  assert.equal(d.nextDeadline(65), 125, 'down at 1.5 x 50 = 75 after it, not 3 x 10 = 30');
  // Regular heartbeats keep the memory until it expires 1000 ms after the stall ended.
  for (let t = 60; t <= 1040; t += 10) d.heartbeat(t);
  assert.equal(d.nextDeadline(1040 + 15), 1040 + 75);
  d.heartbeat(1050); // 1000 ms after the stall: forgotten
  assert.equal(d.nextDeadline(1050 + 15), 1050 + 30);
});

test('push stall memory: the longest stall counts; outages (over 10 intervals) and stallMemoryMs 0 teach nothing', () => {
  const d = createDetector(detectorConfig('push', { intervalMs: 10, n: 3, stallMemoryMs: 10_000 }), 0);
  d.heartbeat(0);
  d.heartbeat(40); // 40 ms stall: 60 ms timeout
  d.heartbeat(65); // 25 ms: shorter, the 40 stands
  assert.equal(d.nextDeadline(65 + 15), 65 + 60);
  d.heartbeat(365); // 300 ms: an outage, not a stall
  assert.equal(d.nextDeadline(365 + 15), 365 + 60, 'still the 40 ms stall');
  d.heartbeat(375);
  const off = createDetector(detectorConfig('push', { intervalMs: 10, n: 3 }), 0); // the default: 0, off
  off.heartbeat(0);
  off.heartbeat(50);
  assert.equal(off.nextDeadline(65), 80);
  // reset() forgets the stall too.
  d.reset(400);
  d.heartbeat(400);
  assert.equal(d.nextDeadline(415), 430);
});
