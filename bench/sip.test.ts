/**
 * @module Tests of the SIP benchmark: its pure parts (the zero-failure maximum, the creation rate,
 * what a backend's message log says it held, the knobs, holdfast's config through the real schema,
 * the table) and one tiny real run of both parts (sipp, a holdfast process, a SIGKILL).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import { configSchema } from '../src/config/schema.js';
import type { LoggedMessage, SippStats } from '../test/helpers/sipp.js';
import {
  activeAt,
  callsOf,
  creationSpanMs,
  formatTable,
  holdfastConfig,
  maxZeroFailure,
  optionsFromEnv,
  run,
  udpRcvbufErrors,
  type KillResult,
  type SipReport,
  type StepResult,
} from './sip.js';

function stepOf(leg: 'direct' | 'holdfast', rate: number, clean: boolean, keptRate = true): StepResult {
  return {
    leg,
    rate,
    calls: rate * 3,
    created: rate * 3,
    successful: clean ? rate * 3 : rate * 3 - 1,
    failed: clean ? 0 : 1,
    unfinished: 0,
    retransmissions: 0,
    failedBy: clean ? {} : { MaxUDPRetrans: 1 },
    achievedRate: keptRate ? rate : rate / 2,
    responseTimeMs: 1,
    code: clean ? 0 : 1,
    clean,
    keptRate,
    holdfastCpuUsPerCall: leg === 'holdfast' ? 500 : null,
    othersCores: 0,
    udpRcvbufDrops: 0,
  };
}

test('maxZeroFailure: the last clean rate before the first failing step', () => {
  const steps = [stepOf('direct', 50, true), stepOf('holdfast', 50, true), stepOf('direct', 100, true), stepOf('holdfast', 100, false), stepOf('direct', 200, false)];
  assert.deepEqual(maxZeroFailure(steps, 'direct'), { rate: 100, limited: true });
  assert.deepEqual(maxZeroFailure(steps, 'holdfast'), { rate: 50, limited: true });
  // A step that could not keep the rate ends the leg too; a leg that passed everything is a floor.
  assert.deepEqual(maxZeroFailure([stepOf('direct', 50, true, false)], 'direct'), { rate: null, limited: true });
  assert.deepEqual(maxZeroFailure([stepOf('direct', 50, true), stepOf('direct', 100, true)], 'direct'), { rate: 100, limited: false });
  assert.deepEqual(maxZeroFailure([], 'holdfast'), { rate: null, limited: false });
});

function row(atMs: number, created: number, current: number): SippStats {
  return {
    atMs: 1_000_000 + atMs,
    startMs: 1_000_000,
    totalCallCreated: created,
    incomingCalls: 0,
    outgoingCalls: created,
    currentCalls: current,
    successful: 0,
    failed: 0,
    retransmissions: 0,
    outOfCallMsgs: 0,
    deadCallMsgs: 0,
    responseTimeMs: null,
    failedBy: {},
    raw: {},
  };
}

test('creationSpanMs and activeAt read the statistics rows', () => {
  const rows = [row(100, 10, 10), row(200, 20, 15), row(300, 30, 12), row(400, 30, 0)];
  assert.equal(creationSpanMs(rows, 30), 300);
  assert.equal(creationSpanMs(rows, 31), null);
  assert.equal(activeAt(rows, 1_000_250), 15);
  assert.equal(activeAt(rows, 1_000_050), 0);
});

function msg(atMs: number, direction: 'sent' | 'received', firstLine: string, callId: string, cseq = ''): LoggedMessage {
  return { atMs, direction, transport: 'UDP', firstLine, callId, text: `${firstLine}\nCall-ID: ${callId}\n${cseq}\n` };
}

test('callsOf: a call is held from its INVITE until the answer to its BYE', () => {
  const log = [
    msg(10, 'received', 'INVITE sip:s@h SIP/2.0', 'a'),
    msg(11, 'sent', 'SIP/2.0 200 OK', 'a', 'CSeq: 1 INVITE'),
    msg(20, 'received', 'INVITE sip:s@h SIP/2.0', 'b'),
    msg(30, 'received', 'BYE sip:s@h SIP/2.0', 'a'),
    msg(31, 'sent', 'SIP/2.0 200 OK', 'a', 'CSeq: 2 BYE'),
    msg(40, 'received', 'INVITE sip:s@h SIP/2.0', 'c'),
  ];
  const at35 = callsOf(log, 35);
  assert.deepEqual([...at35.invited].sort(), ['a', 'b', 'c']);
  assert.deepEqual([...at35.heldAt], ['b']);
  // BYE received, not answered yet: still held.
  assert.deepEqual([...callsOf(log, 30.5).heldAt].sort(), ['a', 'b']);
  assert.deepEqual([...callsOf(log, 25).heldAt].sort(), ['a', 'b']);
});

test('optionsFromEnv: knobs parsed, bad values named', () => {
  assert.deepEqual(optionsFromEnv({}), {});
  assert.deepEqual(
    optionsFromEnv({ BENCH_SIP_RATES: '50, 200', BENCH_SIP_STEP_SECONDS: '2', BENCH_SIP_TRANSPORT: 'tcp', BENCH_SIP_PARTS: 'kill', BENCH_SIP_CALL_MS: '500' }),
    { rates: [50, 200], stepSeconds: 2, transport: 'tcp', parts: ['kill'], callMs: 500 },
  );
  assert.throws(() => optionsFromEnv({ BENCH_SIP_RATES: '50,x' }), /BENCH_SIP_RATES/);
  assert.throws(() => optionsFromEnv({ BENCH_SIP_TRANSPORT: 'sctp' }), /BENCH_SIP_TRANSPORT/);
  assert.throws(() => optionsFromEnv({ BENCH_SIP_PARTS: 'rates,chaos' }), /BENCH_SIP_PARTS/);
});

test('udpRcvbufErrors reads the Udp RcvbufErrors column of /proc/net/snmp', () => {
  const snmp = [
    'Icmp: InMsgs InErrors',
    'Icmp: 5 0',
    'Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
    'Udp: 25112246 19087 878481 26014157 878470 0 0 0 0',
    'UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
    'UdpLite: 0 0 0 0 7 0 0 0 0',
  ].join('\n');
  assert.equal(udpRcvbufErrors(snmp), 878470);
  assert.equal(udpRcvbufErrors('Ip: Forwarding\nIp: 1\n'), null);
});

test('holdfastConfig passes the real config schema', () => {
  const cfg = configSchema.parse(parseYaml(holdfastConfig(5070, 9901, [6001, 6002, 6003], 'udp')));
  const svc = cfg.services[0]!;
  assert.equal(svc.protocol, 'sip');
  assert.deepEqual(svc.sip.transports, ['udp']);
  assert.equal(svc.listen, '127.0.0.1:5070');
  assert.deepEqual(
    svc.backends.map((b) => [b.id, b.address]),
    [['b0', '127.0.0.1:6001'], ['b1', '127.0.0.1:6002'], ['b2', '127.0.0.1:6003']],
  );
  assert.equal(cfg.admin.listen, '127.0.0.1:9901');
});

test('formatTable: the maxima, their ratio and the loss ratio', () => {
  const kill: KillResult = {
    transport: 'udp',
    rate: 100,
    callMs: 2000,
    calls: 800,
    created: 800,
    successful: 734,
    failed: 66,
    failedBy: { UnexpectedMessage: 66 },
    retransmissions: 3,
    killAtMs: 4000,
    activeAtKill: 200,
    heldByKilled: 67,
    failedOnKilled: 66,
    failedElsewhere: 0,
    lossRatio: 0.33,
    lossRatioElsewhere: 0,
    detectionMs: 12,
    detectionReason: 'refused',
    backendCalls: [300, 200, 300],
    failedElsewhereTimelines: [],
    othersCores: 0,
  };
  const report: SipReport = {
    settings: { rates: [50, 100, 200], stepSeconds: 3, transport: 'udp', parts: ['rates', 'kill'], legs: ['direct', 'holdfast'], killRate: 100, callMs: 2000, killSeconds: 8, recvTimeoutMs: 4000 },
    steps: [stepOf('direct', 50, true), stepOf('holdfast', 50, true), stepOf('direct', 100, true), stepOf('holdfast', 100, false)],
    maxZeroFailure: { direct: 100, holdfast: 50 },
    limited: { direct: false, holdfast: true },
    kill,
  };
  const text = formatTable(report);
  assert.match(text, /direct 100\/s \(every rate passed: a floor\), holdfast 50\/s; holdfast\/direct 0\.50\./);
  assert.match(text, /\| 100 \| holdfast \| 299 \/ 300 \| 1 \| 0 \| 0 \| 0 \| 100 \| 1 \| 500 \| 0\.00 \|/);
  assert.match(text, /\| udp \| 100 \| 2000 \| 200 \| 67 \| 66 \| 66 \| 33\.0 % \| 0\.0 % \| 12 \| 300 \/ 200 \/ 300 \|/);
});

test('sip benchmark, tiny real run: both legs clean at 20 calls/s, a SIGKILLed backend detected and its calls counted', { timeout: 30_000 }, async () => {
  const report = await run({
    rates: [20],
    stepSeconds: 1,
    killRate: 50,
    callMs: 500,
    killSeconds: 2,
    recvTimeoutMs: 1500,
    out: null,
    log: () => {},
  });
  const lines = report.steps.map((s) => `${s.leg} ${s.rate}: ${s.successful}/${s.calls}, ${s.failed} failed, ${s.unfinished} unfinished, achieved ${s.achievedRate}`);
  assert.deepEqual(
    report.steps.map((s) => [s.leg, s.rate, s.clean]),
    [
      ['direct', 20, true],
      ['holdfast', 20, true],
    ],
    lines.join('\n'),
  );
  assert.deepEqual(report.maxZeroFailure, { direct: 20, holdfast: 20 });
  const k = report.kill!;
  const why = JSON.stringify({ ...k, failedElsewhereTimelines: k.failedElsewhereTimelines.slice(0, 2) });
  assert.equal(k.created, 100, why);
  assert.equal(k.successful + k.failed, k.created, why);
  assert.ok(k.activeAtKill > 0, why);
  assert.ok(k.heldByKilled > 0, why);
  assert.ok(k.detectionMs !== null, why);
  // Calls established on the killed backend fail (their BYE gets a 481 elsewhere).
  assert.ok(k.failedOnKilled > 0, why);
  assert.equal(k.lossRatio, k.failed / k.activeAtKill);
});
