/**
 * @module Tests of bench/http-proxy.ts without running it: the verdict lines from hand-made results,
 * BENCH_QUICK, and the holdfast configuration each arm gets (workers). The real run is the bench.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTable, holdfastConfig, optionsFromEnv, TARGETS, verdicts, type Result, type Target } from './http-proxy.js';
import { haproxyConfig } from './lib/haproxy.js';
import { parseConfig } from '../src/config/load.js';

function result(size: number, target: Target, rps: number, p99: number, cpu: number | null): Result {
  return {
    size,
    target,
    requestsPerSec: rps,
    latencyP50Ms: p99 / 3,
    latencyP99Ms: p99,
    requestsPerSecSpread: 0,
    maxForeignCores: 0,
    proxyCpuUsPerRequest: cpu,
    rounds: [],
  };
}

const all = (holdfast1k: number, twoWorkers1k: number): Result[] => [
  result(1024, 'direct', 50_000, 2, null),
  result(1024, 'haproxy', 30_000, 3, 28),
  result(1024, 'holdfast', holdfast1k, 3.3, 40),
  result(1024, 'holdfast-nolog', holdfast1k, 3.3, 39),
  result(1024, 'haproxy-2t', 35_000, 3, 30),
  result(1024, 'holdfast-2w', twoWorkers1k, 3, 45),
  result(65536, 'direct', 25_000, 3, null),
  result(65536, 'haproxy', 12_000, 6, 70),
  result(65536, 'holdfast', 12_500, 6, 69),
  result(65536, 'holdfast-nolog', 12_600, 6, 68),
  result(65536, 'haproxy-2t', 14_000, 6, 72),
  result(65536, 'holdfast-2w', 15_000, 6, 70),
];

test('one verdict line per target, in order, with CPU per request beside each', () => {
  const lines = verdicts(all(24_000, 36_000));
  assert.deepEqual(
    lines.map((l) => l.split(':')[0]),
    ['TARGET 1k-vs-haproxy', 'TARGET 64k-vs-haproxy', 'TARGET p99', 'TARGET failover-cost', 'TARGET 2-workers-vs-haproxy'],
  );
  assert.match(lines[0]!, /^TARGET 1k-vs-haproxy: not met — 1 KiB: 0\.80× req\/s \(24000 vs 30000, target ≥ 1\.00\); CPU per request 40\.0 vs 28\.0 µs$/);
  assert.match(lines[1]!, /^TARGET 64k-vs-haproxy: met — 64 KiB: 1\.04× req\/s/);
  assert.match(lines[2]!, /^TARGET p99: met — 1 KiB 1\.10× .*64 KiB 1\.00×/);
  // 40 / 39 = +2.6 %, 69 / 68 = +1.5 %: under 5 %.
  assert.match(lines[3]!, /^TARGET failover-cost: met — 1 KiB CPU per request \+2\.6 % \(40\.0 vs 39\.0 µs\)/);
  assert.match(lines[4]!, /^TARGET 2-workers-vs-haproxy: met — 1 KiB 1\.03× req\/s \(36000 vs 35000; CPU per request 45\.0 vs 30\.0 µs\), 64 KiB 1\.07×/);
  // Every size must meet it.
  assert.match(verdicts(all(24_000, 30_000))[4]!, /^TARGET 2-workers-vs-haproxy: not met — 1 KiB 0\.86×/);
});

test('a target whose arms did not run is not met, and says so', () => {
  const only = all(31_000, 36_000).filter((r) => r.target === 'haproxy' || r.target === 'holdfast');
  const lines = verdicts(only);
  assert.match(lines[0]!, /^TARGET 1k-vs-haproxy: met/);
  assert.equal(lines[3], 'TARGET failover-cost: not met — not measured');
  assert.equal(lines[4], 'TARGET 2-workers-vs-haproxy: not met — not measured');
});

test('the table ends with the five verdict lines', () => {
  const lines = formatTable(all(24_000, 36_000)).split('\n');
  assert.equal(lines.filter((l) => l.startsWith('TARGET ')).length, 5);
  assert.match(lines.at(-1)!, /^TARGET 2-workers-vs-haproxy: /);
});

test('BENCH_QUICK: one round of 2 s, every arm', () => {
  const quick = optionsFromEnv({ BENCH_QUICK: '1' });
  assert.equal(quick.seconds, 2);
  assert.equal(quick.rounds, 1);
  assert.equal(quick.targets, undefined);
  assert.equal(optionsFromEnv({ BENCH_QUICK: '1', BENCH_SECONDS: '4' }).seconds, 4);
  assert.deepEqual(optionsFromEnv({}), {});
  assert.deepEqual(TARGETS, ['direct', 'haproxy', 'holdfast', 'holdfast-nolog', 'haproxy-2t', 'holdfast-2w']);
});

test('each arm gets its threads: holdfast workers in a valid config, HAProxy nbthread', () => {
  const routes = [{ size: 1024, listenPort: 8080, originPort: 9090 }];
  const two = parseConfig(holdfastConfig(routes, true, 2));
  assert.equal(two.dispatcher?.workers, 2);
  const one = parseConfig(holdfastConfig(routes, false, 1));
  assert.equal(one.dispatcher?.workers, 1);
  assert.equal(one.services[0]!.http.failover.enabled, false);
  const route = { name: '1024', listenPort: 8081, origin: { host: '127.0.0.1', port: 9090 } };
  assert.match(haproxyConfig([route], true, 100, 2), /^\s+nbthread 2$/m);
  assert.match(haproxyConfig([route]), /^\s+nbthread 1$/m);
});
