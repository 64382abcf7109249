/**
 * @module Tests of bench/hanet.ts: its targets and percentile arithmetic, its knobs, and the table's
 * verdict lines from a hand-made report. The real run (namespaces) is the bench itself and
 * test/e2e/hanet-netns.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ARMS, formatTable, optionsFromEnv, percentile, targetMs, type Report } from './hanet.js';

test('targets: carrier 2 periods + 10 ms, ARP and ping (misses + 1) periods + 10 ms', () => {
  assert.equal(targetMs({ monitor: 'carrier', fault: 'link-down', periodMs: 100, timeoutMs: 100, misses: 1 }), 210);
  assert.equal(targetMs({ monitor: 'arp', fault: 'nft-drop', periodMs: 200, timeoutMs: 100, misses: 2 }), 610);
  assert.equal(targetMs({ monitor: 'ping', fault: 'nft-drop', periodMs: 100, timeoutMs: 40, misses: 2 }), 310);
  assert.deepEqual(ARMS.map((a) => a.monitor), ['carrier', 'arp', 'ping']);
});

test('percentile is nearest-rank', () => {
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(xs, 50), 50);
  assert.equal(percentile(xs, 99), 99);
  assert.equal(percentile([3, 1, 2], 99), 3);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test('BENCH_QUICK: fewer trials and smaller downloads, same arms', () => {
  const quick = optionsFromEnv({ BENCH_QUICK: '1' });
  const full = optionsFromEnv({});
  assert.equal(quick.trials, 5);
  assert.equal(full.trials, 30);
  assert.ok(quick.downloadBytes < 100 << 20);
  assert.equal(full.downloadBytes, 100 << 20);
  assert.equal(optionsFromEnv({ BENCH_HANET_TRIALS: '7' }).trials, 7);
});

test('the table ends with the three verdict lines', () => {
  const r: Report = {
    settings: optionsFromEnv({ BENCH_QUICK: '1' }),
    arms: ARMS.map((a) => ({ ...a, failoverMs: [100, 120], targetMs: targetMs(a), requestsOk: 10, requestsFailed: 0, errors: [], downloads: 2, downloadsComplete: 2, failbacks: 5 })),
    overhead: {
      publicBytesPerSec: 100,
      siblingBytesPerSec: 99,
      publicLatencyMs: 0.1,
      siblingLatencyMs: 0.12,
      publicLoadedMs: 2,
      siblingLoadedMs: 2.02,
      throughputRatio: 0.99,
      loadedRatio: 1.01,
      idleRatio: 1.2,
      rounds: 3,
    },
    skipped: null,
  };
  const lines = formatTable(r).trim().split('\n');
  assert.match(lines.at(-3)!, /^TARGET failover-time: met — carrier p99 120 ms \(target 210\)/);
  assert.match(lines.at(-2)!, /^TARGET lost-requests: met — 0 of 30 requests failed, 6 of 6 downloads complete byte for byte$/);
  assert.match(lines.at(-1)!, /^TARGET overhead: met — .*throughput −1\.0 %, latency under load \+1\.0 %/);
  r.arms[0]!.requestsFailed = 1;
  r.arms[1]!.failoverMs = [700];
  const worse = formatTable(r);
  assert.match(worse, /TARGET failover-time: not met/);
  assert.match(worse, /TARGET lost-requests: not met — 1 of 31/);
  assert.equal(formatTable({ ...r, skipped: 'needs root' }), 'HANet bench skipped: needs root\n');
});
