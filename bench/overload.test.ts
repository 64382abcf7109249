/**
 * @module Tests of the overload benchmark: its configuration through the real schema, the load the
 * capacity backend reports, the table, and one tiny real run of every arm (backends, holdfast
 * processes, the session driver).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../src/config/schema.js';
import { reportedLoad } from './lib/capacity-backend.js';
import { ARMS, SA2C_SETTINGS, formatTable, holdfastConfig, optionsFromEnv, run, targetLines, type OverloadReport } from './overload.js';

test('holdfastConfig: each arm passes the real schema; sa2c runs the product defaults, tuned its settings', () => {
  const defaults = configSchema.parse({ services: [{ name: 'x', protocol: 'http', listen: '127.0.0.1:1', backends: [{ id: 'a', address: '127.0.0.1:2' }] }] })
    .services[0]!.admission;
  for (const arm of ARMS) {
    const c = configSchema.parse(holdfastConfig(arm, 1, 2, 3, '/tmp/k', [4, 5, 6]));
    const svc = c.services[0]!;
    assert.equal(svc.admission.enabled, arm === 'sa2c' || arm === 'tuned');
    if (arm === 'sa2c') assert.deepEqual({ ...svc.admission, enabled: false }, defaults, 'nothing but enabled overridden');
    if (arm === 'tuned') assert.deepEqual([svc.admission.t1, svc.admission.t2, svc.admission.delayCapacityMs], [SA2C_SETTINGS.t1, SA2C_SETTINGS.t2, 0]);
    assert.equal(svc.balancer, 'shell');
    assert.deepEqual(svc.backends.map((b) => b.agent), [1, 2, 3]);
    assert.equal(svc.sessions.cookie, 'SID');
    assert.equal(svc.load.intervalMs, 100);
  }
});

test('reportedLoad: work done plus work waiting over the work the workers could do, capped at 1, scaled', () => {
  // 2 workers over 100 ms can do 200 worker-ms: 100 busy worker-ms is half the capacity.
  assert.equal(reportedLoad(100, 100, 2, 0, 25, 1), 0.5);
  // A mean of 2 requests of 25 ms waiting is 50 worker-ms of work: (100 + 50) / 200.
  assert.equal(reportedLoad(100, 100, 2, 2, 25, 1), 0.75);
  // Half a request waiting on average is 12.5 worker-ms, not a worker's whole window.
  assert.equal(reportedLoad(100, 100, 2, 0.5, 25, 1), 0.5625);
  assert.equal(reportedLoad(200, 100, 2, 3, 25, 1), 1);
  assert.equal(reportedLoad(200, 100, 2, 3, 25, 0.6), 0.6);
  assert.equal(reportedLoad(0, 0, 2, 0, 25, 1), 0);
});

test('optionsFromEnv: knobs parsed, bad factors and arms refused', () => {
  assert.deepEqual(optionsFromEnv({ BENCH_OVERLOAD_FACTORS: '1,2', BENCH_OVERLOAD_SECONDS: '3' }), { factors: [1, 2], seconds: 3 });
  assert.throws(() => optionsFromEnv({ BENCH_OVERLOAD_FACTORS: '1,x' }), /BENCH_OVERLOAD_FACTORS/);
  assert.deepEqual(optionsFromEnv({ BENCH_OVERLOAD_ARMS: 'plain,sa2c' }), { arms: ['sa2c', 'plain'] });
  assert.throws(() => optionsFromEnv({ BENCH_OVERLOAD_ARMS: 'sa2c,fast' }), /BENCH_OVERLOAD_ARMS/);
  assert.deepEqual(optionsFromEnv({ BENCH_QUICK: '1' }), { factors: [1, 2, 3], seconds: 3, warmupS: 1, settleMs: 500, arms: ['sa2c', 'plain'] });
  assert.deepEqual(optionsFromEnv({ BENCH_QUICK: '1', BENCH_OVERLOAD_FACTORS: '2', BENCH_OVERLOAD_ARMS: 'sa2c' }).factors, [2]);
});

test('targetLines: one per protocol and load, 0.95x under capacity, 1.5x and 95 % over it', () => {
  const http = (factor: number, arm: 'sa2c' | 'plain', perSec: number, share: number) => ({
    factor, arm, offeredPerSec: 0, started: 100, admitted: 90, completed: 0, completedPerSec: perSec, completedShare: 0, admittedCompletedShare: share,
    requests: 0, refusedRequests: 0, droppedRequests: 0, dropP: 0, failures: {}, othersCores: null,
  });
  const sip = (factor: number, arm: 'sa2c' | 'plain', perSec: number, share: number) => ({
    factor, arm, offeredPerSec: 0, created: 100, refused: 4, successful: 0, completedPerSec: perSec, admittedCompletedShare: share, failedBy: {},
  });
  const report = {
    capacityRps: 240,
    capacitySessionsPerSec: 48,
    settings: { factors: [1, 2, 3] },
    results: [http(1, 'sa2c', 47, 1), http(1, 'plain', 48, 1), http(2, 'sa2c', 45, 0.99), http(2, 'plain', 20, 1), http(3, 'sa2c', 40, 1), http(3, 'plain', 0, 0)],
    sip: [sip(1, 'sa2c', 200, 1), sip(1, 'plain', 220, 1), sip(2, 'sa2c', 200, 0.9), sip(2, 'plain', 50, 0.5)],
  } as unknown as OverloadReport;
  assert.deepEqual(targetLines(report), [
    "TARGET overload-http-1x: met — 0.98x plain's completed sessions/s (47.0 against 48.0), 100.0 % of admitted completed, 10 refused (target >= 0.95x)",
    "TARGET overload-http-2x: met — 2.25x plain's completed sessions/s (45.0 against 20.0), 99.0 % of admitted completed, 10 refused (target >= 1.5x and >= 95 %)",
    "TARGET overload-http-3x: met — ∞x plain's completed sessions/s (40.0 against 0.0), 100.0 % of admitted completed, 10 refused (target >= 1.5x and >= 95 %)",
    "TARGET overload-sip-1x: not met — 0.91x plain's completed calls/s (200.0 against 220.0), 100.0 % of admitted completed, 4 refused (target >= 0.95x)",
    "TARGET overload-sip-2x: not met — 4.00x plain's completed calls/s (200.0 against 50.0), 90.0 % of admitted completed, 4 refused (target >= 1.5x and >= 95 %)",
  ]);
});

test('a tiny real run: every arm drives sessions through holdfast and accounts for each one', { timeout: 20_000 }, async () => {
  const report = await run({ factors: [2], seconds: 1, warmupS: 0, backends: 2, workers: 1, serviceMs: 20, steps: 2, thinkMs: 20, deadlineMs: 800, sip: false, log: () => {} });
  assert.equal(report.capacityRps, 100);
  assert.equal(report.capacitySessionsPerSec, 50);
  assert.deepEqual(report.results.map((r) => r.arm), [...ARMS]);
  for (const r of report.results) {
    assert.ok(r.started > 0, `${r.arm}: started ${r.started}`);
    const failed = Object.values(r.failures).reduce((a, b) => a + b, 0);
    assert.equal(r.completed + failed, r.started, `${r.arm}: every session completed or failed: ${JSON.stringify(r)}`);
    assert.ok(r.completed > 0, `${r.arm}: some sessions completed`);
    assert.ok(r.admitted <= r.started && r.completed <= r.admitted);
  }
  const random = report.results.find((r) => r.arm === 'random')!;
  const sa2c = report.results.find((r) => r.arm === 'sa2c')!;
  assert.equal(random.dropP, sa2c.requests > 0 ? sa2c.refusedRequests / sa2c.requests : 0);
  assert.match(formatTable(report), /At 2x: SA2C completes/);
  assert.match(formatTable(report), /Tuned thresholds .* at 2x: /);
});

test('a tiny real SIP run: sipp calls through holdfast to capacity SIP servers, refused calls told apart', { timeout: 60_000 }, async () => {
  const report = await run({ factors: [1], seconds: 1, warmupS: 0, backends: 2, workers: 1, serviceMs: 20, steps: 2, thinkMs: 20, deadlineMs: 800, arms: ['sa2c', 'plain'], log: () => {} });
  assert.deepEqual(report.sip.map((r) => r.arm), ['sa2c', 'plain']);
  for (const r of report.sip) {
    assert.ok(r.created > 0 && r.successful > 0, JSON.stringify(r));
    assert.ok(r.refused + r.successful <= r.created);
    if (r.arm === 'plain') assert.equal(r.refused, 0, 'no admission control, no 503');
  }
  assert.match(formatTable(report), /^SIP at 1x: SA2C completes [\d.∞]+x the calls\/s of plain balancing/m);
});
