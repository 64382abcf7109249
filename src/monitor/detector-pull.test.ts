import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectorConfig, runDetectorSuite } from './detector.common-suite.js';
import { createDetector } from './detector-registry.js';
import { PullDetector } from './detector-pull.js';

runDetectorSuite('pull');
runDetectorSuite('pull', { intervalMs: 10, n: 3 });
runDetectorSuite('pull', { intervalMs: 250, n: 2 });

test('pull, intervalMs 10, n 3: replies at 3, 13, 24 then none: suspect at 39, down at 54', () => {
  const d = createDetector(detectorConfig('pull', { intervalMs: 10, n: 3 }), 0);
  assert.ok(d instanceof PullDetector);
  assert.equal(d.verdict(0), 'suspect', 'no reply yet');
  for (const t of [3, 13, 24]) d.heartbeat(t);
  assert.equal(d.verdict(38.9), 'up');
  assert.equal(d.verdict(39), 'suspect'); // 24 + 1.5 x 10
  assert.equal(d.verdict(53.9), 'suspect');
  assert.equal(d.verdict(54), 'down'); // 24 + 3 x 10
});
