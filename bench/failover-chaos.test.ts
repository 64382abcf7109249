/**
 * @module Tests of the failover chaos benchmark's pure parts: the kill schedule, the verdict on the
 * issue's targets, the table, the environment knobs, and the two proxies' configurations (holdfast's
 * through the real config schema, HAProxy's through `haproxy -c` when it is installed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { configSchema } from '../src/config/schema.js';
import {
  HAPROXY_BACKEND_LINES,
  HAPROXY_SERVER_PARAMS,
  HOLD_REPLY_BYTES,
  formatTable,
  holdfastConfig,
  killSchedule,
  optionsFromEnv,
  percentile,
  verdict,
  type ChaosReport,
  type ClassResult,
  type TargetResult,
} from './failover-chaos.js';
import { CLASSES, type RequestClass } from './lib/chaos-client.js';
import { haproxyConfig } from './lib/haproxy.js';
import { makeTempDir, removeTempDir, runProcess, which } from './lib/procs.js';

test('killSchedule: every interval, strictly before the end', () => {
  assert.deepEqual(killSchedule(6, 3000), [3000]);
  assert.deepEqual(killSchedule(30, 3000), [3000, 6000, 9000, 12000, 15000, 18000, 21000, 24000, 27000]);
  assert.deepEqual(killSchedule(3, 3000), []);
  assert.deepEqual(killSchedule(7, 3000), [3000, 6000]);
});

test('percentile: nearest rank', () => {
  assert.equal(percentile([], 50), null);
  assert.equal(percentile([5], 99), 5);
  assert.equal(percentile([4, 1, 3, 2], 50), 2);
  assert.equal(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 99), 99);
});

function classes(failures: Partial<Record<RequestClass, number>>): ClassResult[] {
  return CLASSES.map((cls) => {
    const f = failures[cls] ?? 0;
    return {
      cls,
      requests: 100,
      failures: f,
      failurePct: f,
      reasons: { connection: 0, status: 0, truncated: f, mismatch: 0, timeout: 0 },
      p50Ms: 1,
      p99Ms: 20,
      maxMs: 30,
    };
  });
}

function target(t: 'haproxy' | 'holdfast', failures: Partial<Record<RequestClass, number>>, extra: Partial<TargetResult> = {}): TargetResult {
  return {
    target: t,
    seconds: 6,
    classes: classes(failures),
    kills: [{ origin: 0, port: 1, killAtMs: 3000, inFlightAtKill: 16, backAtMs: 4200 }],
    failures: [],
    failover: null,
    preflightProblems: [],
    proxyExited: null,
    ...extra,
  };
}

const settings: ChaosReport['settings'] = { seconds: 6, targets: ['haproxy', 'holdfast'], connections: 16, killEveryMs: 3000, restartAfterMs: 1000, seed: 1, requestTimeoutMs: 15000 };

test('verdict: zero failures outside rand-large, and fewer than HAProxy over all classes', () => {
  const good: ChaosReport = { settings, results: [target('haproxy', { static: 5, det: 2 }), target('holdfast', { 'rand-large': 3 })] };
  assert.deepEqual(verdict(good), { holdfastNothingLost: true, fewerThanHaproxy: true });
  const lost: ChaosReport = { settings, results: [target('haproxy', { static: 5 }), target('holdfast', { echo: 1 })] };
  assert.deepEqual(verdict(lost), { holdfastNothingLost: false, fewerThanHaproxy: true });
  const notFewer: ChaosReport = { settings, results: [target('haproxy', { 'rand-large': 2 }), target('holdfast', { 'rand-large': 2 })] };
  assert.deepEqual(verdict(notFewer), { holdfastNothingLost: true, fewerThanHaproxy: false });
  // Fewer failures from far fewer requests (a proxy that stalls) is a higher rate, not fewer.
  const stalled = target('holdfast', { 'rand-large': 1 });
  const fewRequests: ChaosReport = {
    settings,
    results: [target('haproxy', { 'rand-large': 2 }), { ...stalled, classes: stalled.classes.map((c) => ({ ...c, requests: 2 })) }],
  };
  assert.equal(verdict(fewRequests).fewerThanHaproxy, false);
  assert.deepEqual(verdict({ settings, results: [target('haproxy', {})] }), { holdfastNothingLost: null, fewerThanHaproxy: null });
});

test('formatTable: a row per target × class, totals, failover counts and recovery, the verdict', () => {
  const report: ChaosReport = {
    settings,
    results: [
      target('haproxy', { static: 5 }),
      target('holdfast', { 'rand-large': 1 }, {
        failover: {
          failovers: [
            { strategy: 'range', result: 'ok', count: 4 },
            { strategy: 'none', result: 'failed', count: 1 },
          ],
          recovery: { count: 5, p50Ms: 1.5, p99Ms: 12.3 },
          logOverflows: 0,
        },
        preflightProblems: ['GET /x: status (status 502, 0 body bytes)'],
      }),
    ],
  };
  const text = formatTable(report);
  assert.match(text, /\| haproxy \| static \| 100 \| 5 \| 5\.00 % \| 5 truncated \| 20 \|/);
  assert.match(text, /\| holdfast \| rand-large \| 100 \| 1 \| 1\.00 % \| 1 truncated \| 20 \|/);
  assert.match(text, /\| haproxy \| \*\*all\*\* \| 500 \| 5 \| 1\.00 % \| 1 kills \| \|/);
  assert.match(text, /\| range \| ok \| 4 \|/);
  assert.match(text, /p50 1\.50 ms, p99 12 ms/);
  assert.match(text, /holdfast failed before any kill \(preflight, all origins up\): GET \/x/);
  assert.match(text, /zero failures outside rand-large \(non-deterministic > 64 KiB\): met; holdfast fails a smaller share of requests than HAProxy: met/);
  // Without failover metrics the table says so instead of inventing zeros.
  assert.match(formatTable({ settings, results: [target('holdfast', {})] }), /holdfast exposes no failover metrics/);
});

test('optionsFromEnv: BENCH_CHAOS_* knobs, checked', () => {
  assert.deepEqual(optionsFromEnv({}), {});
  assert.deepEqual(
    optionsFromEnv({ BENCH_CHAOS_SECONDS: '6', BENCH_CHAOS_TARGETS: 'holdfast', BENCH_CHAOS_CONNECTIONS: '8', BENCH_CHAOS_SEED: '0', BENCH_CHAOS_KILL_EVERY_MS: '2000', BENCH_CHAOS_RESTART_AFTER_MS: '500' }),
    { seconds: 6, targets: ['holdfast'], connections: 8, seed: 0, killEveryMs: 2000, restartAfterMs: 500 },
  );
  assert.throws(() => optionsFromEnv({ BENCH_CHAOS_SECONDS: '0' }), /BENCH_CHAOS_SECONDS: expected an integer >= 1, received "0"/);
  assert.throws(() => optionsFromEnv({ BENCH_CHAOS_TARGETS: 'nginx' }), /BENCH_CHAOS_TARGETS: expected haproxy, holdfast, received "nginx"/);
  assert.deepEqual(optionsFromEnv({ BENCH_CHAOS_FAULT: 'stop' }), { fault: 'stop' });
  assert.throws(() => optionsFromEnv({ BENCH_CHAOS_FAULT: 'freeze' }), /BENCH_CHAOS_FAULT: expected kill or stop, received "freeze"/);
  assert.deepEqual(optionsFromEnv({ BENCH_CHAOS_H2_STREAMS: '8', BENCH_CHAOS_PROXY_LOG: '/tmp/hf.log' }), { http2Streams: 8, proxyLog: '/tmp/hf.log' });
  assert.throws(() => optionsFromEnv({ BENCH_CHAOS_H2_STREAMS: '0' }), /BENCH_CHAOS_H2_STREAMS: expected an integer >= 1, received "0"/);
});

test('holdfastConfig for SIGSTOP (fault stop): the pull detector with HTTP hellos finds a hung origin', () => {
  const svc = configSchema.parse(parseYaml(holdfastConfig(18080, 18081, [1001, 1002, 1003], null, 'stop'))).services[0]!;
  assert.deepEqual([svc.health.detector.type, svc.health.probe.type, svc.health.probe.path], ['pull', 'http', '/static/1']);
  assert.equal(configSchema.parse(parseYaml(holdfastConfig(18080, 18081, [1001]))).services[0]!.health.detector.type, 'passive');
});

test('holdfastConfig: valid for the real schema; probes every 100 ms; failover at its defaults', () => {
  const cfg = configSchema.parse(parseYaml(holdfastConfig(18080, 18081, [1001, 1002, 1003])));
  const svc = cfg.services[0]!;
  assert.equal(svc.protocol, 'http');
  assert.equal(svc.listen, '127.0.0.1:18080');
  assert.equal(cfg.admin.listen, '127.0.0.1:18081');
  assert.deepEqual(svc.backends.map((b) => b.address), ['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003']);
  assert.equal(svc.health.probe.intervalMs, 100);
  assert.equal(svc.http.failover.enabled, true);
  assert.equal(svc.http.failover.holdReplyBytes, HOLD_REPLY_BYTES);
});

test('HAProxy chaos config: three servers with checks, L7 retries and redispatch; haproxy -c accepts it', async () => {
  const text = haproxyConfig([
    {
      name: 'chaos',
      listenPort: 18080,
      origin: { host: '127.0.0.1', port: 1001 },
      moreOrigins: [{ host: '127.0.0.1', port: 1002 }, { host: '127.0.0.1', port: 1003 }],
      serverParams: HAPROXY_SERVER_PARAMS,
      backendLines: HAPROXY_BACKEND_LINES,
    },
  ]);
  for (const line of [
    '    retry-on all-retryable-errors',
    '    option redispatch 1',
    '    retries 3',
    '    server origin 127.0.0.1:1001 check inter 100ms fall 1 rise 1',
    '    server origin-1 127.0.0.1:1002 check inter 100ms fall 1 rise 1',
    '    server origin-2 127.0.0.1:1003 check inter 100ms fall 1 rise 1',
    '    nbthread 1',
  ]) {
    assert.ok(text.split('\n').includes(line), `missing "${line}" in:\n${text}`);
  }
  // The one-server form the http-proxy benchmark uses is unchanged.
  assert.ok(haproxyConfig([{ name: 'a', listenPort: 1, origin: { host: '127.0.0.1', port: 2 } }]).includes('\n    server origin 127.0.0.1:2\n'));

  const haproxy = which('haproxy');
  if (haproxy === null) return; // the config check needs the peer; the text checks above still ran
  const dir = makeTempDir('chaos-haproxy-cfg');
  try {
    const file = path.join(dir, 'haproxy.cfg');
    writeFileSync(file, text);
    const r = await runProcess(haproxy, ['-c', '-f', file], 10_000);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  } finally {
    removeTempDir(dir);
  }
});
