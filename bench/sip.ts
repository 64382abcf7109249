/**
 * @module SIP interop benchmark (issue 5): sipp's built-in uac through holdfast to three sipp uas
 * backends at rising call rates, against sipp calling one uas directly in the same run; then a uas
 * backend SIGKILLed under load and the SIP ALG paper's loss ratio (seed 004: failed calls / active
 * calls).
 *
 *   rates:  sipp uac ──► direct:   uas b0
 *                    ──► holdfast: holdfast dispatcher ──► uas b0, b1, b2 (round robin per Call-ID)
 *   kill:   sipp uac (rate R, calls of L ms) ──► holdfast ──► b0, b1 (SIGKILL mid-run), b2
 *
 * - Backends: `startSipBackend` (test/helpers/sipp.ts): a uas on UDP and one on TCP at one port (the
 *   TCP leg of the bench needs the TCP one); a kill stops both. Their
 *   scenario is test/fixtures/sipp/uas-481.xml: sipp's built-in uas, plus a 481 to a BYE of a call it
 *   does not know (RFC 3261 12.2.2) — the built-in answers such a BYE 200 OK, which would make a call
 *   whose backend died look successful once holdfast re-pins its BYE to a live backend.
 * - holdfast: a real `holdfast dispatcher` process, one `sip` service on BENCH_SIP_TRANSPORT, the
 *   default passive detection (a dead UDP backend is taken down at the first ICMP port unreachable on
 *   holdfast's connected upstream socket; over TCP by the refused connect), probes every 100 ms.
 * - Rates: for each rate (BENCH_SIP_RATES), a fresh uac places rate × BENCH_SIP_STEP_SECONDS calls
 *   (INVITE, 180, 200, ACK, BYE, 200; no pause), direct then through holdfast. A leg stops at its
 *   first step with a failed or unfinished call, or where sipp could not start calls at 90 % of the
 *   asked rate. The figure is each leg's highest rate with zero failed calls, and their ratio.
 *   holdfast's CPU per call (its process, /proc) is the steadier figure on a shared machine; the
 *   kernel's UDP RcvbufErrors over the step (/proc/net/snmp, machine-wide) show where calls were lost.
 * - Kill: calls at BENCH_SIP_KILL_RATE with a pause of BENCH_SIP_CALL_MS (`-d`), statistics every
 *   100 ms; halfway through, b1 (both its processes) is SIGKILLed. Active calls = sipp's CurrentCall
 *   in the last row before the kill; failed = FailedCall + calls left open (every call ends within
 *   the uac's `-recv_timeout`). Calls established on b1 are lost by nature: their state died with it
 *   and their BYE, re-pinned to a live backend, gets a 481. The backends log their messages, so the
 *   table splits the failed calls by Call-ID into b1's (the uac's error file names every aborted
 *   call) and the others — what holdfast itself lost — and shows how many calls b1 held at the
 *   kill (INVITE received, BYE not answered yet).
 *
 *   node dist/bench/sip.js        (or: node dist/bench/run.js sip)
 *   BENCH_SIP_RATES=50,200 BENCH_SIP_STEP_SECONDS=2 BENCH_SIP_PARTS=rates node dist/bench/sip.js
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatusSnapshot } from '../src/admin/status.js';
import {
  fixture,
  freeSipPort,
  parseMessageLog,
  startSipBackend,
  startUac,
  type LoggedMessage,
  type SippBackend,
  type SippResult,
  type SippStats,
  type SippTransport,
} from '../test/helpers/sipp.js';
import { foreignCores, sampleCpu, treeCpuMs } from './lib/cpu.js';
import { envInt } from './lib/env.js';
import { runIfMain } from './lib/main.js';
import { freePort, makeTempDir, removeTempDir, runProcess, startProcess, waitForPort, type Proc } from './lib/procs.js';

export type Leg = 'direct' | 'holdfast';
export const LEGS: readonly Leg[] = ['direct', 'holdfast'];
export type Part = 'rates' | 'kill';
export const PARTS: readonly Part[] = ['rates', 'kill'];

export const DEFAULT_RATES: readonly number[] = [200, 400, 800, 1600, 2400, 3200, 4000, 4800, 6400, 8000];
export const DEFAULT_STEP_SECONDS = 3;
export const DEFAULT_KILL_RATE = 100;
export const DEFAULT_CALL_MS = 2_000;
/** Seconds of calls in the kill run; the kill lands halfway. */
export const DEFAULT_KILL_SECONDS = 8;
/** A call waiting this long for a response fails (the kill run's lost calls end in this time). */
export const DEFAULT_RECV_TIMEOUT_MS = 4_000;
export const BACKENDS = 3;
/** The backend the kill run SIGKILLs (b1). */
export const KILLED = 1;
/** A step keeps the rate when sipp started calls at this share of the asked rate. */
export const KEEP_RATE_SHARE = 0.9;
/** holdfast's probe interval (down backends only, in passive mode). */
export const PROBE_INTERVAL_MS = 100;
/** The kill run's statistics period: the resolution of "active at the kill". */
const STAT_PERIOD_MS = 100;
/** Beyond a step's calling time, how long its calls may take before sipp gives up (unfinished). */
const STEP_GRACE_S = 10;
const HOLDFAST_READY_TIMEOUT_MS = 15_000;
/** How long the kill run waits for holdfast to report the killed backend down. */
const DETECTION_WAIT_MS = 5_000;
/** Failed-elsewhere calls whose message timeline the JSON report keeps. */
const TIMELINES_KEPT = 10;

export const DEFAULT_OUT = fileURLToPath(new URL('../../bench/results/sip.json', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HOLDFAST_BIN = path.join(REPO_ROOT, 'bin', 'holdfast.js');

export interface SipBenchOptions {
  readonly rates?: readonly number[];
  readonly stepSeconds?: number;
  readonly transport?: SippTransport;
  readonly parts?: readonly Part[];
  readonly legs?: readonly Leg[];
  readonly killRate?: number;
  readonly callMs?: number;
  readonly killSeconds?: number;
  readonly recvTimeoutMs?: number;
  /** JSON report path; null writes none. Default DEFAULT_OUT. */
  readonly out?: string | null;
  readonly log?: (line: string) => void;
}

export interface StepResult {
  readonly leg: Leg;
  readonly rate: number;
  /** Calls asked for (rate × stepSeconds). */
  readonly calls: number;
  readonly created: number;
  readonly successful: number;
  readonly failed: number;
  readonly unfinished: number;
  readonly retransmissions: number;
  readonly failedBy: Readonly<Record<string, number>>;
  /** Calls started per second, as sipp managed. */
  readonly achievedRate: number;
  /** Mean INVITE → 200 time (sipp's response time 1), ms. */
  readonly responseTimeMs: number | null;
  readonly code: number | null;
  /** Zero failed and zero unfinished calls, all created. */
  readonly clean: boolean;
  readonly keptRate: boolean;
  /** holdfast process CPU per created call, µs (holdfast leg). */
  readonly holdfastCpuUsPerCall: number | null;
  /** Cores other programs used during the step. */
  readonly othersCores: number | null;
  /** Datagrams the kernel dropped on full socket receive buffers during the step (machine-wide). */
  readonly udpRcvbufDrops: number | null;
}

export interface KillResult {
  readonly transport: SippTransport;
  readonly rate: number;
  readonly callMs: number;
  readonly calls: number;
  readonly created: number;
  readonly successful: number;
  /** FailedCall + calls left open at the end. */
  readonly failed: number;
  readonly failedBy: Readonly<Record<string, number>>;
  readonly retransmissions: number;
  /** ms after the uac started. */
  readonly killAtMs: number;
  /** sipp's CurrentCall in the last statistics row before the kill. */
  readonly activeAtKill: number;
  /** Calls the killed backend held at the kill: INVITE received, BYE not answered yet (its message log). */
  readonly heldByKilled: number;
  /** Failed calls whose INVITE the killed backend had answered (their state died with it). */
  readonly failedOnKilled: number;
  /** Failed (or unfinished) calls that were not the killed backend's: what holdfast lost. */
  readonly failedElsewhere: number;
  /** failed / activeAtKill (seed 004). */
  readonly lossRatio: number | null;
  /** failedElsewhere / activeAtKill: the loss beyond the calls whose backend died. */
  readonly lossRatioElsewhere: number | null;
  /** Kill → holdfast's transition of the backend to down (its `since`), ms; null if not seen. */
  readonly detectionMs: number | null;
  readonly detectionReason: string | null;
  /** Calls each backend received (b0, b1, b2). */
  readonly backendCalls: readonly number[];
  /** The first calls that failed elsewhere, each message of theirs (uac and backends), ms from the kill. */
  readonly failedElsewhereTimelines: readonly { readonly callId: string; readonly events: readonly string[] }[];
  readonly othersCores: number | null;
}

export interface SipReport {
  readonly settings: {
    readonly rates: readonly number[];
    readonly stepSeconds: number;
    readonly transport: SippTransport;
    readonly parts: readonly Part[];
    readonly legs: readonly Leg[];
    readonly killRate: number;
    readonly callMs: number;
    readonly killSeconds: number;
    readonly recvTimeoutMs: number;
  };
  readonly steps: readonly StepResult[];
  /** Highest rate with zero failed calls per leg (null: none, or the leg did not run). */
  readonly maxZeroFailure: Readonly<Record<Leg, number | null>>;
  /** Whether the leg stopped by failing (false: it passed every rate asked, so the max is a floor). */
  readonly limited: Readonly<Record<Leg, boolean>>;
  readonly kill: KillResult | null;
}

/** Highest clean, rate-keeping rate of a leg before its first failing step. */
export function maxZeroFailure(steps: readonly StepResult[], leg: Leg): { rate: number | null; limited: boolean } {
  let best: number | null = null;
  for (const s of steps.filter((x) => x.leg === leg).sort((a, b) => a.rate - b.rate)) {
    if (!s.clean || !s.keptRate) return { rate: best, limited: true };
    best = s.rate;
  }
  return { rate: best, limited: false };
}

/**
 * What a backend's message log says about the calls it had: the Call-IDs of every INVITE it
 * received, and of those the ones it held at `atMs`: INVITE received by then, BYE not answered by
 * then. (A call whose BYE it received but did not answer before dying is still its call: the
 * caller's BYE is retransmitted, re-pinned, and answered 481.)
 */
export function callsOf(log: readonly LoggedMessage[], atMs: number): { invited: Set<string>; heldAt: Set<string> } {
  const invited = new Set<string>();
  const heldAt = new Set<string>();
  for (const m of log) {
    if (m.callId === null) continue;
    if (m.direction === 'received' && m.firstLine.startsWith('INVITE ')) {
      invited.add(m.callId);
      if (m.atMs <= atMs) heldAt.add(m.callId);
    } else if (m.direction === 'sent' && m.firstLine.startsWith('SIP/2.0 ') && m.atMs <= atMs && /^CSeq:\s*\d+\s+BYE\s*$/im.test(m.text)) {
      heldAt.delete(m.callId);
    }
  }
  return { invited, heldAt };
}

/**
 * When sipp had started all its calls: the first statistics row with TotalCallCreated = `created`,
 * ms after its start (within one statistics period after the real instant).
 */
export function creationSpanMs(rows: readonly SippStats[], created: number): number | null {
  const r = rows.find((x) => x.totalCallCreated >= created);
  return r ? r.atMs - r.startMs : null;
}

/** sipp's CurrentCall in the last row at or before `atMs`. */
export function activeAt(rows: readonly SippStats[], atMs: number): number {
  let n = 0;
  for (const r of rows) if (r.atMs <= atMs) n = r.currentCalls;
  return n;
}

function parseList<T extends string>(name: string, text: string | undefined, allowed: readonly T[]): T[] | undefined {
  if (!text) return undefined;
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      if (!(allowed as readonly string[]).includes(s)) throw new Error(`${name}: expected ${allowed.join(', ')}, received "${s}"`);
      return s as T;
    });
}

/** BENCH_SIP_RATES, _STEP_SECONDS, _TRANSPORT, _PARTS, _LEGS, _KILL_RATE, _CALL_MS, _KILL_SECONDS, _RECV_TIMEOUT_MS. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): SipBenchOptions {
  const opts: { -readonly [K in keyof SipBenchOptions]: SipBenchOptions[K] } = {};
  const rates = env.BENCH_SIP_RATES;
  if (rates) {
    opts.rates = rates.split(',').map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_SIP_RATES: expected integers >= 1, received "${s}"`);
      return n;
    });
  }
  const ints: [keyof SipBenchOptions, string, number][] = [
    ['stepSeconds', 'BENCH_SIP_STEP_SECONDS', 1],
    ['killRate', 'BENCH_SIP_KILL_RATE', 1],
    ['callMs', 'BENCH_SIP_CALL_MS', 0],
    ['killSeconds', 'BENCH_SIP_KILL_SECONDS', 2],
    ['recvTimeoutMs', 'BENCH_SIP_RECV_TIMEOUT_MS', 500],
  ];
  for (const [key, name, min] of ints) {
    const v = envInt(env, name, min);
    if (v !== undefined) (opts as Record<string, unknown>)[key] = v;
  }
  const transport = parseList('BENCH_SIP_TRANSPORT', env.BENCH_SIP_TRANSPORT, ['udp', 'tcp'] as const);
  if (transport) {
    if (transport.length !== 1) throw new Error('BENCH_SIP_TRANSPORT: expected one of udp, tcp');
    opts.transport = transport[0]!;
  }
  const parts = parseList('BENCH_SIP_PARTS', env.BENCH_SIP_PARTS, PARTS);
  if (parts) opts.parts = parts;
  const legs = parseList('BENCH_SIP_LEGS', env.BENCH_SIP_LEGS, LEGS);
  if (legs) opts.legs = legs;
  return opts;
}

/** One sip service on `transport` over the backends; passive detection, probes every PROBE_INTERVAL_MS. */
export function holdfastConfig(listenPort: number, adminPort: number, backendPorts: readonly number[], transport: SippTransport): string {
  return [
    '# Written by bench/sip.ts.',
    'version: 1',
    'logging:',
    '  level: warn',
    'admin:',
    '  enabled: true',
    `  listen: '127.0.0.1:${adminPort}'`,
    'services:',
    '  - name: sip',
    '    protocol: sip',
    `    listen: '127.0.0.1:${listenPort}'`,
    '    sip:',
    `      transports: [${transport}]`,
    '    health:',
    '      probe:',
    `        intervalMs: ${PROBE_INTERVAL_MS}`,
    '    backends:',
    ...backendPorts.flatMap((p, i) => [`      - id: b${i}`, `        address: '127.0.0.1:${p}'`]),
    '',
  ].join('\n');
}

interface Holdfast {
  readonly proc: Proc;
  readonly target: string;
  status(): Promise<StatusSnapshot | null>;
}

async function startHoldfast(dir: string, backendPorts: readonly number[], transport: SippTransport): Promise<Holdfast> {
  const listenPort = await freeSipPort();
  // Both ports were free when picked and released at once: the kernel may hand out the same one twice.
  let adminPort = await freePort();
  while (adminPort === listenPort) adminPort = await freePort();
  const cfg = path.join(dir, `holdfast-${listenPort}.yaml`);
  writeFileSync(cfg, holdfastConfig(listenPort, adminPort, backendPorts, transport));
  const proc = await startProcess({
    name: 'holdfast',
    command: process.execPath,
    args: [HOLDFAST_BIN, 'dispatcher', '--config', cfg],
    cwd: REPO_ROOT,
    // The admin API starts after every service is bound.
    readyPort: { host: '127.0.0.1', port: adminPort },
    readyTimeoutMs: HOLDFAST_READY_TIMEOUT_MS,
  });
  await waitForPort('127.0.0.1', adminPort);
  const status = async (): Promise<StatusSnapshot | null> => {
    try {
      const res = await fetch(`http://127.0.0.1:${adminPort}/api/v1/status`);
      return res.ok ? ((await res.json()) as StatusSnapshot) : null;
    } catch {
      return null;
    }
  };
  // Every backend probed up before any call (the start probe runs at once).
  const until = Date.now() + HOLDFAST_READY_TIMEOUT_MS;
  for (;;) {
    const s = await status();
    const backends = s?.services[0]?.backends ?? [];
    if (backends.length === backendPorts.length && backends.every((b) => b.state === 'up')) break;
    if (Date.now() > until) throw new Error(`holdfast backends not all up: ${JSON.stringify(backends)}\n${proc.output()}`);
    await sleep(50);
  }
  return { proc, target: `127.0.0.1:${listenPort}`, status };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** The backends' scenario: sipp's built-in uas that also answers 481 to a BYE of a call it does not know. */
export const UAS_SCENARIO = fixture('uas-481.xml');

function startBackends(traceMessages: boolean): Promise<SippBackend[]> {
  return Promise.all(Array.from({ length: BACKENDS }, () => startSipBackend({ scenario: UAS_SCENARIO, traceMessages })));
}

async function stopAll(backends: readonly SippBackend[], holdfast: Holdfast | null): Promise<void> {
  await holdfast?.proc.stop();
  await Promise.all(backends.map((b) => b.kill('SIGKILL')));
}

/**
 * UDP RcvbufErrors from /proc/net/snmp: datagrams dropped because a socket's receive buffer was full
 * (machine-wide; null off Linux). Where lost calls at high rates come from.
 */
export function udpRcvbufErrors(snmp: string | null = readSnmp()): number | null {
  if (snmp === null) return null;
  const lines = snmp.split('\n').filter((l) => l.startsWith('Udp: '));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const i = names.indexOf('RcvbufErrors');
  const v = i > 0 ? Number(values[i]) : NaN;
  return Number.isFinite(v) ? v : null;
}

function readSnmp(): string | null {
  try {
    return readFileSync('/proc/net/snmp', 'latin1');
  } catch {
    return null;
  }
}

async function step(leg: Leg, rate: number, settings: SipReport['settings'], target: string, holdfast: Holdfast | null): Promise<StepResult> {
  const calls = rate * settings.stepSeconds;
  const dropsBefore = udpRcvbufErrors();
  const before = sampleCpu();
  const r = await (
    await startUac({ target, transport: settings.transport, calls, rate, statPeriodMs: STAT_PERIOD_MS, timeoutS: settings.stepSeconds + STEP_GRACE_S })
  ).done;
  // Calls started per second until the last one started (not until the last one ended: a step whose
  // calls hang until the timeout did start them at the rate; its failure shows as unfinished).
  const spanMs = creationSpanMs(r.rows, r.created);
  const achievedRate = spanMs !== null && spanMs > 0 ? (r.created - 1) / (spanMs / 1000) : r.callRate;
  const after = sampleCpu();
  const dropsAfter = udpRcvbufErrors();
  const holdfastCpuUsPerCall =
    holdfast && before && after && r.created > 0 ? ((treeCpuMs(after, holdfast.proc.pid) - treeCpuMs(before, holdfast.proc.pid)) * 1000) / r.created : null;
  return {
    leg,
    rate,
    calls,
    created: r.created,
    successful: r.successful,
    failed: r.failed,
    unfinished: r.unfinished,
    retransmissions: r.retransmissions,
    failedBy: r.failedBy,
    achievedRate,
    responseTimeMs: r.rows.at(-1)?.responseTimeMs ?? null,
    code: r.code,
    clean: r.failed === 0 && r.unfinished === 0 && r.created === calls && r.successful === calls,
    keptRate: achievedRate >= KEEP_RATE_SHARE * rate,
    holdfastCpuUsPerCall,
    othersCores: before && after ? foreignCores(before, after) : null,
    udpRcvbufDrops: dropsBefore !== null && dropsAfter !== null ? dropsAfter - dropsBefore : null,
  };
}

async function ratesPart(settings: SipReport['settings'], dir: string, log: (line: string) => void): Promise<StepResult[]> {
  const backends = await startBackends(false);
  let holdfast: Holdfast | null = null;
  const steps: StepResult[] = [];
  try {
    if (settings.legs.includes('holdfast')) holdfast = await startHoldfast(dir, backends.map((b) => b.port), settings.transport);
    const running = new Set<Leg>(settings.legs);
    for (const rate of settings.rates) {
      for (const leg of settings.legs) {
        if (!running.has(leg)) continue;
        const target = leg === 'direct' ? `127.0.0.1:${backends[0]!.port}` : holdfast!.target;
        const s = await step(leg, rate, settings, target, leg === 'holdfast' ? holdfast : null);
        steps.push(s);
        log(
          `${leg} ${rate} calls/s: ${s.successful}/${s.calls} ok, ${s.failed} failed, ${s.unfinished} unfinished, ` +
            `${s.retransmissions} retransmissions, achieved ${s.achievedRate.toFixed(0)}/s` +
            (s.udpRcvbufDrops ? `, ${s.udpRcvbufDrops} UDP datagrams dropped on full receive buffers` : '') +
            (s.holdfastCpuUsPerCall !== null ? `, holdfast ${s.holdfastCpuUsPerCall.toFixed(0)} µs CPU/call` : '') +
            (s.othersCores !== null && s.othersCores > 0.1 ? ` (noisy: others used ${s.othersCores.toFixed(2)} cores)` : ''),
        );
        if (!s.clean || !s.keptRate) running.delete(leg);
      }
      if (running.size === 0) break;
      if (holdfast && (holdfast.proc.child.exitCode !== null || holdfast.proc.child.signalCode !== null)) {
        throw new Error(`holdfast died during the rates part:\n${holdfast.proc.output().slice(-2000)}`);
      }
    }
  } finally {
    await stopAll(backends, holdfast);
  }
  return steps;
}

async function killPart(settings: SipReport['settings'], dir: string, log: (line: string) => void): Promise<KillResult> {
  const backends = await startBackends(true);
  let holdfast: Holdfast | null = null;
  try {
    holdfast = await startHoldfast(dir, backends.map((b) => b.port), settings.transport);
    const calls = settings.killRate * settings.killSeconds;
    const timeoutS = settings.killSeconds + Math.ceil((settings.callMs + 2 * settings.recvTimeoutMs) / 1000) + STEP_GRACE_S;
    const before = sampleCpu();
    const uac = await startUac({
      target: holdfast.target,
      transport: settings.transport,
      calls,
      rate: settings.killRate,
      callLengthMs: settings.callMs,
      statPeriodMs: STAT_PERIOD_MS,
      timeoutS,
      extra: ['-recv_timeout', `${settings.recvTimeoutMs}ms`],
      traceMessages: true,
    });
    const startedAt = Date.now();
    // Halfway, and never before the first calls have lasted their whole length.
    const killAtMs = Math.max((settings.killSeconds * 1000) / 2, settings.callMs + 500);
    await sleep(startedAt + killAtMs - Date.now());
    const killed = backends[KILLED]!;
    const killWall = Date.now();
    await killed.kill('SIGKILL');
    log(`kill: t=${((killWall - startedAt) / 1000).toFixed(2)} s SIGKILL b${KILLED} (uas on UDP and TCP, port ${killed.port})`);
    let detectionMs: number | null = null;
    let detectionReason: string | null = null;
    const until = Date.now() + DETECTION_WAIT_MS;
    while (Date.now() < until) {
      const b = (await holdfast.status())?.services[0]?.backends.find((x) => x.id === `b${KILLED}`);
      if (b && b.state === 'down') {
        detectionMs = b.since - killWall;
        detectionReason = b.reason;
        break;
      }
      await sleep(20);
    }
    log(detectionMs === null ? `kill: b${KILLED} not down within ${DETECTION_WAIT_MS} ms` : `kill: b${KILLED} down after ${detectionMs} ms (${detectionReason})`);
    const r: SippResult = await uac.done;
    const after = sampleCpu();
    const activeAtKill = activeAt(r.rows, killWall);
    const { invited, heldAt } = callsOf((settings.transport === 'udp' ? killed.udp : killed.tcp).loggedMessages(), killWall);
    const failed = r.failed + r.unfinished;
    const failedOnKilled = r.failedCallIds.filter((id) => invited.has(id)).length;
    const failedElsewhere = failed - failedOnKilled;
    const logs: [string, LoggedMessage[]][] = [
      ['uac', parseMessageLog(r.messages)],
      ...backends.map((b, i): [string, LoggedMessage[]] => [`b${i}`, (settings.transport === 'udp' ? b.udp : b.tcp).loggedMessages()]),
    ];
    const failedElsewhereTimelines = r.failedCallIds
      .filter((id) => !invited.has(id))
      .slice(0, TIMELINES_KEPT)
      .map((callId) => ({
        callId,
        events: logs
          .flatMap(([who, log]) => log.filter((m) => m.callId === callId).map((m) => ({ at: m.atMs - killWall, line: `${who} ${m.direction} ${m.firstLine}` })))
          .sort((x, y) => x.at - y.at)
          .map((e) => `${e.at.toFixed(1)} ms ${e.line}`),
      }));
    const result: KillResult = {
      transport: settings.transport,
      rate: settings.killRate,
      callMs: settings.callMs,
      calls,
      created: r.created,
      successful: r.successful,
      failed,
      failedBy: r.failedBy,
      retransmissions: r.retransmissions,
      killAtMs: killWall - (r.rows[0]?.startMs ?? startedAt),
      activeAtKill,
      heldByKilled: heldAt.size,
      failedOnKilled,
      failedElsewhere,
      lossRatio: activeAtKill > 0 ? failed / activeAtKill : null,
      lossRatioElsewhere: activeAtKill > 0 ? failedElsewhere / activeAtKill : null,
      detectionMs,
      detectionReason,
      backendCalls: backends.map((b) => b.calls()),
      failedElsewhereTimelines,
      othersCores: before && after ? foreignCores(before, after) : null,
    };
    log(
      `kill: ${r.successful}/${r.created} ok, ${failed} failed of ${activeAtKill} active at the kill ` +
        `(b${KILLED} held ${result.heldByKilled}, ${failedOnKilled} of the failed were its calls); ` +
        `loss ratio ${pct(result.lossRatio)}, beyond the killed backend's calls ${pct(result.lossRatioElsewhere)}`,
    );
    return result;
  } finally {
    await stopAll(backends, holdfast);
  }
}

/** Runs the benchmark's parts in order. */
export async function run(opts: SipBenchOptions = {}): Promise<SipReport> {
  const settings: SipReport['settings'] = {
    rates: [...(opts.rates ?? DEFAULT_RATES)].sort((a, b) => a - b),
    stepSeconds: opts.stepSeconds ?? DEFAULT_STEP_SECONDS,
    transport: opts.transport ?? 'udp',
    parts: opts.parts ?? PARTS,
    legs: opts.legs ?? LEGS,
    killRate: opts.killRate ?? DEFAULT_KILL_RATE,
    callMs: opts.callMs ?? DEFAULT_CALL_MS,
    killSeconds: opts.killSeconds ?? DEFAULT_KILL_SECONDS,
    recvTimeoutMs: opts.recvTimeoutMs ?? DEFAULT_RECV_TIMEOUT_MS,
  };
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const load1 = os.loadavg()[0]!;
  if (load1 > 1) log(`warning: 1-minute load average is ${load1.toFixed(2)}; rates measured now are low`);
  const dir = makeTempDir('holdfast-bench-sip');
  try {
    const steps = settings.parts.includes('rates') ? await ratesPart(settings, dir, log) : [];
    const kill = settings.parts.includes('kill') ? await killPart(settings, dir, log) : null;
    const direct = maxZeroFailure(steps, 'direct');
    const hf = maxZeroFailure(steps, 'holdfast');
    const report: SipReport = {
      settings,
      steps,
      maxZeroFailure: { direct: direct.rate, holdfast: hf.rate },
      limited: { direct: direct.limited, holdfast: hf.limited },
      kill,
    };
    const out = opts.out === undefined ? DEFAULT_OUT : opts.out;
    if (out !== null) {
      mkdirSync(path.dirname(out), { recursive: true });
      const json = {
        benchmark: 'sip',
        date: new Date().toISOString(),
        machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', loadAvg1AtStart: load1 },
        versions: { node: process.version, sipp: await sippVersion() },
        ...report,
      };
      writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);
      log(`results written to ${out}`);
    }
    return report;
  } finally {
    removeTempDir(dir);
  }
}

async function sippVersion(): Promise<string> {
  try {
    const r = await runProcess('sipp', ['-v'], 5_000);
    return /SIPp v\S+/.exec(r.stdout + r.stderr)?.[0] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const fmt = (x: number | null | undefined, digits = 0): string => (x === null || x === undefined ? '–' : x.toFixed(digits));
const pct = (x: number | null): string => (x === null ? '–' : `${(x * 100).toFixed(1)} %`);

/** The markdown the README quotes: the rate steps, the zero-failure maxima and their ratio, the kill run. */
export function formatTable(report: SipReport): string {
  const lines: string[] = [];
  if (report.steps.length > 0) {
    const rows = [
      '| calls/s | leg | ok / calls | failed | unfinished | retrans | UDP rcvbuf drops | achieved/s | INVITE→200 ms | holdfast µs CPU/call | others\' CPU |',
      '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ];
    for (const s of report.steps) {
      rows.push(
        `| ${s.rate} | ${s.leg} | ${s.successful} / ${s.calls} | ${s.failed} | ${s.unfinished} | ${s.retransmissions} | ${fmt(s.udpRcvbufDrops)} | ${fmt(s.achievedRate)} | ` +
          `${fmt(s.responseTimeMs)} | ${fmt(s.holdfastCpuUsPerCall)} | ${fmt(s.othersCores, 2)} |`,
      );
    }
    lines.push(rows.join('\n'));
    const { direct, holdfast } = report.maxZeroFailure;
    const floor = (leg: Leg): string => (report.limited[leg] ? '' : ' (every rate passed: a floor)');
    lines.push(
      `Highest rate with zero failed calls (${report.settings.transport}, ${report.settings.stepSeconds} s steps): ` +
        `direct ${fmt(direct)}/s${floor('direct')}, holdfast ${fmt(holdfast)}/s${floor('holdfast')}; ` +
        `holdfast/direct ${direct && holdfast ? (holdfast / direct).toFixed(2) : '–'}.`,
    );
  }
  const k = report.kill;
  if (k) {
    lines.push(
      [
        '| transport | calls/s | call ms | active at kill | held by killed uas | failed | of which its calls | loss ratio | loss beyond its calls | detection ms | calls per backend |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
        `| ${k.transport} | ${k.rate} | ${k.callMs} | ${k.activeAtKill} | ${k.heldByKilled} | ${k.failed} | ${k.failedOnKilled} | ` +
          `${pct(k.lossRatio)} | ${pct(k.lossRatioElsewhere)} | ${fmt(k.detectionMs)} | ${k.backendCalls.join(' / ')} |`,
      ].join('\n'),
    );
    lines.push(
      `Kill run: ${k.successful}/${k.created} calls ok; ${k.failed} failed of ${k.activeAtKill} active at the kill ` +
        `(loss ratio = failed / active, seed 004; the SIP ALG paper lost 6.4 % of active calls to a failure of the ALG itself ` +
        `with active replication). ${k.failedOnKilled} of the failed calls were established on the killed uas, whose call ` +
        `state died with it (it held ${k.heldByKilled}); ${k.failedElsewhere} failed elsewhere.`,
    );
  }
  return lines.join('\n\n');
}

async function main(): Promise<void> {
  const report = await run(optionsFromEnv());
  process.stdout.write(`${formatTable(report)}\n`);
}

runIfMain(import.meta.url, main);
