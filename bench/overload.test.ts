/**
 * @module Tests of the overload benchmark: its configuration through the real schema, the load the
 * capacity backend reports, the table, and one tiny real run of every arm (backends, holdfast
 * processes, the session driver).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../src/config/schema.js';
import { reportedLoad } from './lib/capacity-backend.js';
import { ARMS, SA2C_SETTINGS, formatTable, holdfastConfig, optionsFromEnv, run } from './overload.js';

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
