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
