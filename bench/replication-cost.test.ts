/**
 * @module Tests of the replication-cost benchmark: the knobs, the cost arithmetic, each arm's
 * configuration, and one tiny real run (two clusters of two dispatcher processes, wrk and sipp
 * through the VIPs) that checks the replicating arm's backup really received the sessions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { which } from './lib/procs.js';
import { DEFAULTS, PACED_SCRIPT, SESSION_SCRIPT, clusterConfig, costRow, costTarget, formatTable, maxZeroFailure, median, optionsFromEnv, run, type SipStep } from './replication-cost.js';

test('optionsFromEnv: defaults, knobs, and a clear error for an unknown part', () => {
  assert.deepEqual(optionsFromEnv({}), DEFAULTS);
  const o = optionsFromEnv({ BENCH_REPLCOST_PARTS: 'sip', BENCH_REPLCOST_SIP_RATES: '100, 200', BENCH_REPLCOST_ROUNDS: '2', BENCH_REPLCOST_REQS_PER_SESSION: '5' });
  assert.deepEqual(o.parts, ['sip']);
  assert.deepEqual(o.sipRates, [100, 200]);
  assert.equal(o.rounds, 2);
  assert.equal(o.reqsPerSession, 5);
  assert.throws(() => optionsFromEnv({ BENCH_REPLCOST_PARTS: 'http,ftp' }), /BENCH_REPLCOST_PARTS.*"ftp"/);
  assert.throws(() => optionsFromEnv({ BENCH_REPLCOST_SECONDS: '0' }), /BENCH_REPLCOST_SECONDS/);
  const q = optionsFromEnv({ BENCH_QUICK: '1', BENCH_REPLCOST_PIN: '1' });
  assert.deepEqual([q.seconds, q.rounds, q.sipRates, q.warmupSeconds, q.sipCpuSeconds, q.pin], [2, 2, [], 1, 2, true]);
  assert.equal(optionsFromEnv({ BENCH_QUICK: '1', BENCH_REPLCOST_ROUNDS: '4' }).rounds, 4);
  assert.equal(optionsFromEnv({ BENCH_REPLCOST_FLUSH_MS: '10' }).flushMs, 10);
  assert.equal(optionsFromEnv({ BENCH_REPLCOST_FLUSH_MS: '0' }).flushMs, 0, '0: the end-of-turn flush');
  assert.throws(() => optionsFromEnv({ BENCH_REPLCOST_FLUSH_MS: '-1' }), /BENCH_REPLCOST_FLUSH_MS/);
  assert.equal(optionsFromEnv({ BENCH_REPLCOST_NETNS: '1' }).netns, true);
});

test('clusterConfig: BENCH_REPLCOST_FLUSH_MS sets the replicating arm\'s replicationFlushMs only', () => {
  const base = { id: 1 as const, vip: '127.1.2.3', httpPort: 8080, sipPort: 5060, election: [7701, 7702] as const, origins: [9001], uas: [9101], sessionTimeoutMs: 1000, advertIntervalMs: 100 };
  const group = (arm: 'backup' | 'off', flushMs: number | null) => (JSON.parse(clusterConfig({ ...base, arm, flushMs })) as { groups: Record<string, unknown>[] }).groups[0]!;
  assert.equal(group('backup', 10)['replicationFlushMs'], 10);
  assert.equal(group('backup', null)['replicationFlushMs'], undefined);
  assert.equal(group('off', 10)['replicationFlushMs'], undefined);
  assert.equal(group('off', 10)['replicateState'], false);
  assert.equal(group('backup', 0)['replicationFlushMs'], 0);
  // The backups in a namespace: each dispatcher on its side of the veth pair; the master keeps its admin API on loopback.
  const veth = (id: 1 | 2) => JSON.parse(clusterConfig({ ...base, id, arm: 'backup', hosts: ['10.128.0.1', '10.128.0.2'] })) as { groups: { listen: string; peers: string[] }[]; admin: { enabled: boolean; listen?: string } };
  assert.deepEqual([veth(1).groups[0]!.listen, veth(1).groups[0]!.peers], ['10.128.0.1:7701', ['10.128.0.2:7702']]);
  assert.deepEqual([veth(2).groups[0]!.listen, veth(2).groups[0]!.peers], ['10.128.0.2:7702', ['10.128.0.1:7701']]);
  assert.deepEqual(veth(1).admin, { enabled: true, listen: '127.0.0.1:0' });
  assert.equal(veth(2).admin.enabled, false);
});

test('costTarget: met only when both replicated CPU costs are under 5 %, with the noise beside them', () => {
  const rows = [
    costRow('HTTP, new X-Session every 1 req: master CPU µs/req', 41, 40, false),
    costRow('HTTP, plain: master CPU µs/req', 39, 40, false),
    costRow('SIP at 400 calls/s: master CPU µs/call', 618, 600, false),
  ];
  assert.equal(
    costTarget(rows, false),
    'TARGET replication-cost: met — master CPU per HTTP-session request +2.5 %, per SIP call +3.0 % (target < 5 %; noise: plain HTTP, nothing replicated, -2.5 %)',
  );
  rows[2] = costRow('SIP at 400 calls/s: master CPU µs/call', 660, 600, false);
  assert.match(costTarget(rows, true), /^TARGET replication-cost: not met — .* per SIP call \+10\.0 % .*; masters on CPU 0, backups on CPU 1\)$/);
  assert.match(costTarget([], false), /^TARGET replication-cost: not met — /);
});

test('costRow: throughput lost and CPU added, as shares', () => {
  const t = costRow('req/s', 9_500, 10_000, true);
  assert.equal(t.ratio, 0.95);
  assert.ok(Math.abs(t.cost! - 0.05) < 1e-12);
  const c = costRow('µs', 42, 40, false);
  assert.equal(c.ratio, 1.05);
  assert.ok(Math.abs(c.cost! - 0.05) < 1e-12);
  assert.equal(costRow('x', null, 10, true).ratio, null);
  assert.equal(costRow('x', 5, 0, true).cost, null);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});

test('maxZeroFailure: the last clean rate before the first failing step, per arm', () => {
  const s = (arm: 'backup' | 'off', rate: number, ok: boolean): SipStep => ({
    arm, rate, calls: rate, created: rate, successful: ok ? rate : rate - 1, failed: ok ? 0 : 1, unfinished: 0,
    achievedRate: rate, clean: ok, keptRate: true, masterCpuUs: null, attempts: 1, takeovers: 0,
  });
  const steps = [s('backup', 100, true), s('off', 100, true), s('off', 200, true), s('backup', 200, false), s('off', 300, true)];
  assert.deepEqual(maxZeroFailure(steps, 'backup'), { rate: 100, limited: true });
  assert.deepEqual(maxZeroFailure(steps, 'off'), { rate: 300, limited: false });
});

test('clusterConfig: the arms differ only in replicateState; web names sessions by header', () => {
  const base = { id: 1 as const, vip: '127.9.9.9', httpPort: 8080, sipPort: 5060, election: [7001, 7002] as const, origins: [9001, 9002], uas: [6001, 6002, 6003], sessionTimeoutMs: 2000, advertIntervalMs: 100 };
  const a = JSON.parse(clusterConfig({ ...base, arm: 'backup' }));
  const b = JSON.parse(clusterConfig({ ...base, arm: 'off' }));
  assert.equal(a.groups[0].replicateState, true);
  assert.equal(b.groups[0].replicateState, false);
  b.groups[0].replicateState = true;
  assert.deepEqual(a, b);
  assert.deepEqual(a.groups[0].peers, ['127.0.0.1:7002']);
  assert.equal(a.groups[0].listen, '127.0.0.1:7001');
  assert.deepEqual(a.services[0].sessions, { header: 'X-Session', sessionTimeoutMs: 2000 });
  assert.equal(a.services[1].backends.length, 3);
});

const peers = which('wrk') !== null && which('sipp') !== null;

test('a tiny real run: the replicating backup holds the sessions, the other none; every row filled', { skip: peers ? false : 'wrk or sipp not installed', timeout: 60_000 }, async () => {
  const r = await run(
    { ...DEFAULTS, seconds: 1, rounds: 1, warmupSeconds: 0, sessionTimeoutMs: 1_000, sipRates: [50], sipStepSeconds: 1, sipCpuRate: 50, sipCpuSeconds: 1 },
    () => {},
  );
  const sessions = (arm: string) => r.http.find((s) => s.mode === 'sessions' && s.arm === arm)!;
  // wrk ran ~1 s with a new header value per request: the replicated backup must hold many of them.
  assert.ok(sessions('backup').requests > 100, `requests ${sessions('backup').requests}`);
  assert.ok(sessions('backup').backupSessions > 50, `backup sessions ${sessions('backup').backupSessions}`);
  assert.equal(sessions('off').backupSessions, 0);
  assert.equal(r.http.length, 4);
  assert.equal(r.sipSteps.length, 2);
  for (const s of r.sipSteps) assert.equal(s.successful, 50, JSON.stringify(s));
  assert.equal(r.sipCpu.length, 2);
  const table = formatTable(r);
  assert.match(table, /\| SIP: highest zero-failure calls\/s \| 50 \| 50 \| 1\.000 \| 0\.0 % \|/);
  assert.match(table, /HTTP, plain: req\/s/);
});

test('PACED_SCRIPT: the sessions script plus a per-request pause (wrk delay()) and a plain mode; BENCH_REPLCOST_PACE_MS sets it', () => {
  assert.match(PACED_SCRIPT, /function delay\(\)\n  return pace\nend/);
  assert.match(PACED_SCRIPT, /pace = tonumber\(args\[3\]\) or pace/);
  assert.match(PACED_SCRIPT, /plain = args\[4\] == "plain"/);
  assert.match(PACED_SCRIPT, /if plain then return wrk\.format\("GET", "\/"\) end/);
  assert.ok(!SESSION_SCRIPT.includes('delay'), 'the unpaced script keeps wrk closed-loop');
  assert.equal(optionsFromEnv({}).paceMs, 0);
  assert.equal(optionsFromEnv({ BENCH_REPLCOST_PACE_MS: '3' }).paceMs, 3);
});
