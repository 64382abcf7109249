/**
 * @module Tests of the dispatcher-failover benchmark: the takeover modes' knob and table; of its SIP
 * ALG part (seed 004): the Call-ID and statistics-row arithmetic behind the loss ratio, the knobs, the
 * table, and one tiny real run (sipp through two real dispatcher processes, a SIGKILL) of the
 * no-standby and replicated cases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SippStats } from '../test/helpers/sipp.js';
import { which } from './lib/procs.js';
import { SIP_DEFAULTS, callNumber, countAtKill, formatSip, formatTakeover, linuxVerdict, optionsFromEnv, runSip, type SipOptions, type SipRow } from './dispatcher-failover.js';

function row(atMs: number, created: number, current: number, failed: number): SippStats {
  return {
    atMs,
    startMs: 0,
    totalCallCreated: created,
    incomingCalls: 0,
    outgoingCalls: created,
    currentCalls: current,
    successful: created - current - failed,
    failed,
    retransmissions: 0,
    outOfCallMsgs: 0,
    deadCallMsgs: 0,
    responseTimeMs: null,
    failedBy: {},
    raw: {},
  };
}

test('callNumber: the number in sipp\'s default Call-ID', () => {
  assert.equal(callNumber('17-4242@127.0.0.1'), 17);
  assert.equal(callNumber('abc@host'), null);
  assert.equal(callNumber('17@127.0.0.1'), null);
});

test('countAtKill: active calls from the last row at or before the kill, their failures by call number', () => {
  // Row at 1000: 30 created, 10 open, 2 failed already (numbers 3 and 5). Kill at 1040.
  const rows = [row(950, 28, 12, 1), row(1000, 30, 10, 2), row(1050, 31, 11, 2)];
  const failed = ['3-1@h', '5-1@h', '21-1@h', '29-1@h', '30-1@h', '31-1@h', '40-1@h', 'weird'];
  assert.deepEqual(countAtKill(rows, 1040, failed), { activeAtKill: 10, createdAtKill: 30, failedActive: 3, failedAfter: 2, unnumbered: 1 });
  // A kill before any row: nothing was active.
  assert.deepEqual(countAtKill(rows, 900, ['1-1@h']), { activeAtKill: 0, createdAtKill: 0, failedActive: 0, failedAfter: 1, unnumbered: 0 });
});

test('optionsFromEnv: parts, rates and cases, with clear errors', () => {
  const d = optionsFromEnv({});
  assert.deepEqual(d.parts, ['takeover', 'sip']);
  assert.deepEqual(d.sip, SIP_DEFAULTS);
  const o = optionsFromEnv({ BENCH_HA_PARTS: 'sip', BENCH_HA_SIP_RATES: '20, 40', BENCH_HA_SIP_CASES: 'none,replication', BENCH_HA_SIP_CALL_MS: '1000', BENCH_HA_SIP_NO_RETRANS: '1' });
  assert.deepEqual(o.parts, ['sip']);
  assert.deepEqual(o.sip.rates, [20, 40]);
  assert.deepEqual(o.sip.cases, ['none', 'replication']);
  assert.equal(o.sip.callMs, 1000);
  assert.equal(o.sip.noRetransmissions, true);
  assert.throws(() => optionsFromEnv({ BENCH_HA_SIP_CASES: 'standby' }), /BENCH_HA_SIP_CASES: expected a list of none, no-replication, replication, received "standby"/);
  assert.throws(() => optionsFromEnv({ BENCH_HA_SIP_RATES: '0' }), /BENCH_HA_SIP_RATES/);
  assert.throws(() => optionsFromEnv({ BENCH_HA_PARTS: 'all' }), /BENCH_HA_PARTS/);
});

test('takeover modes: both by default, a chosen list, a clear error; one table row per mode, the skip reason under it', () => {
  assert.deepEqual(optionsFromEnv({}).modes, ['loopback', 'linux']);
  assert.deepEqual(optionsFromEnv({ BENCH_HA_MODES: 'linux' }).modes, ['linux']);
  assert.throws(() => optionsFromEnv({ BENCH_HA_MODES: 'vrrp' }), /BENCH_HA_MODES: expected a list of loopback, linux, received "vrrp"/);
  const text = formatTakeover(
    [{ mode: 'loopback', intervalMs: 20, trials: 30, lost: 0, p50: 70, p99: 82.44, max: 82.44 }],
    ['linux mode skipped: needs root (ip netns, ip addr add, arping)'],
  );
  assert.match(text, /\| loopback \| 20 ms \| 30 \| 0 \| 70\.0 \| 82\.4 \| 82\.4 \|/);
  assert.match(text, /linux mode skipped: needs root/);
});

test('linux takeover arms: a row per gratuitous-ARP sender, the TARGET line from the packet socket with 20 ms adverts, arping beside it; BENCH_QUICK', () => {
  assert.deepEqual(optionsFromEnv({}).garps, ['arping', 'auto']);
  assert.deepEqual(optionsFromEnv({ BENCH_HA_GARP: 'auto' }).garps, ['auto']);
  assert.throws(() => optionsFromEnv({ BENCH_HA_GARP: 'raw' }), /BENCH_HA_GARP: expected a list of arping, auto, received "raw"/);
  const q = optionsFromEnv({ BENCH_QUICK: '1' });
  assert.deepEqual([q.parts, q.modes, q.intervalsMs, q.trials], [['takeover'], ['linux'], [20, 5], 5]);
  const rows = [
    { mode: 'linux' as const, garp: 'arping' as const, intervalMs: 20, trials: 5, lost: 0, p50: 140, p99: 170, max: 170 },
    { mode: 'linux' as const, garp: 'auto' as const, intervalMs: 20, trials: 5, lost: 0, p50: 66, p99: 85, max: 85 },
  ];
  const text = formatTakeover(rows);
  assert.match(text, /\| linux \(packet socket\) \| 20 ms \| 5 \| 0 \| 66\.0 \| 85\.0 \| 85\.0 \|/);
  assert.match(text, /\| linux \(arping\) \| 20 ms \|/);
  assert.match(text, /TARGET linux-takeover-p99: met — 20 ms adverts: packet socket p50 66\.0 \/ p99 85\.0 ms over 5 trials, arping p50 140\.0 \/ p99 170\.0 ms over 5 trials \(p99 0\.50x arping's\)/);
  assert.match(linuxVerdict([{ ...rows[1]!, p99: 120 }]), /TARGET linux-takeover-p99: not met — /);
  assert.match(linuxVerdict([{ ...rows[1]!, lost: 1 }]), /not met/, 'a trial with no reply is not a met target');
  assert.match(linuxVerdict([], ['linux mode skipped: needs root']), /^\nTARGET linux-takeover-p99: not met — not measured \(linux mode skipped: needs root\)/);
  assert.equal(linuxVerdict([]), '');
});

test('formatSip: one row per rate and case, the loss ratio and the target verdict over the replicated runs', () => {
  const base = { calls: 300, created: 300, failedBy: {}, createdAtKill: 175, unnumbered: 0, killAtMs: 3500 };
  const rows: SipRow[] = [
    { ...base, rate: 50, case: 'none', successful: 49, failed: 251, activeAtKill: 126, failedActive: 125, failedAfter: 126, lossRatio: 125 / 126, takeoverMs: null },
    { ...base, rate: 50, case: 'replication', successful: 299, failed: 1, activeAtKill: 125, failedActive: 1, failedAfter: 0, lossRatio: 1 / 125, takeoverMs: 74 },
    { ...base, rate: 100, case: 'replication', successful: 300, failed: 0, activeAtKill: 875, failedActive: 0, failedAfter: 0, lossRatio: 0, takeoverMs: 70 },
  ];
  const text = formatSip(rows, SIP_DEFAULTS);
  assert.match(text, /\| 50 \| no standby \| 300 \| 126 \| 125 \| 99\.21 % \| 126 \| 49 \/ 300 \| – \|/);
  assert.match(text, /\| 50 \| standby with state replication \| 300 \| 125 \| 1 \| 0\.80 % \| 0 \| 299 \/ 300 \| 74 \|/);
  // 1 of 1000 is 0.1 %: not under it.
  assert.match(text, /1 of 1000 active calls lost over 2 run\(s\), 0\.10 % \(target < 0\.1 %: not met/);
});

test('a tiny real run: no standby loses every active call; a replicated standby takes over', { skip: which('sipp') ? false : 'sipp is not installed', timeout: 60_000 }, async () => {
  const o: SipOptions = { ...SIP_DEFAULTS, rates: [20], cases: ['none', 'replication'], callMs: 800, seconds: 2, recvTimeoutMs: 2_000 };
  const [none, repl] = await runSip(o, () => {});
  assert.ok(none && repl);
  for (const r of [none, repl]) {
    assert.equal(r.created, 40, JSON.stringify(r));
    assert.equal(r.successful + r.failed, r.created, JSON.stringify(r));
    assert.ok(r.activeAtKill > 0, JSON.stringify(r));
    assert.equal(r.unnumbered, 0);
  }
  // Dead and alone: every call started after the row fails, and the active ones too but those
  // that ended between the row and the kill (≤ one 10 ms statistics period, at 20 calls/s ≤ 2).
  assert.equal(none.takeoverMs, null);
  assert.equal(none.failedAfter, none.created - none.createdAtKill, JSON.stringify(none));
  assert.ok(none.failedActive >= none.activeAtKill - 2 && none.failedActive <= none.activeAtKill, JSON.stringify(none));
  assert.ok(repl.takeoverMs !== null && repl.takeoverMs > 0 && repl.takeoverMs < 5_000, JSON.stringify(repl));
  assert.equal(repl.failedActive, 0, JSON.stringify(repl));
});
