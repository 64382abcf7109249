/**
 * @module Replication cost on the data path (issue 7: "under 5 %"): the same master dispatcher with
 * a backup attached and replicating, against the same master with replication off, in one run.
 *
 * Two loopback-VIP clusters of two `holdfast dispatcher` processes each (bench/lib/ha-cluster.ts)
 * run side by side, configured identically but for `groups[].replicateState`: `backup` (true: the
 * master streams every session change to its running backup over TCP) and `off` (false: the backup
 * runs and hears adverts, nothing is streamed). Both VIPs carry the same two services, in front of
 * the same backends: `web` (http, `sessions.header: X-Session`) over two origins (bench/lib/backend.ts)
 * and `sip` (udp) over three sipp uas (uas-481.xml). The arms alternate within every round (ABBA), so
 * drift on the shared machine falls on both.
 *
 * - HTTP: `wrk -t1 -c32` keep-alive through the VIP, `sessions` (a wrk Lua script sends a new
 *   X-Session value every BENCH_REPLCOST_REQS_PER_SESSION requests: in header mode every new value
 *   opens a session, replicated; the session timeout closes them, replicated too) and `plain` (no
 *   header). req/s, and the master's CPU per request (/proc, its process tree) — the steadier
 *   figure on a shared machine. Medians over BENCH_REPLCOST_ROUNDS.
 * - SIP: sipp's built-in uac (INVITE, 180, 200, ACK, BYE, 200: each call opens and closes a session)
 *   through the VIP at rising rates, the arms alternating per rate; each arm's ladder stops at its
 *   first step with a failed or unfinished call or below 90 % of the asked rate (bench/sip.ts's rule)
 *   in each of BENCH_REPLCOST_SIP_TRIES attempts. Then the master's CPU per call at the fixed
 *   BENCH_REPLCOST_SIP_CPU_RATE.
 * - Every run counts mastership changes (a master starved of CPU misses adverts; without preemption
 *   the roles then stay swapped): CPU goes to the roles at the run's end, and runs with a change are
 *   left out of the medians.
 *
 *   node dist/bench/replication-cost.js   (or: node dist/bench/run.js replication-cost)
 *   knobs: BENCH_REPLCOST_PARTS=http,sip  BENCH_REPLCOST_SECONDS=5  BENCH_REPLCOST_ROUNDS=3
 *     BENCH_REPLCOST_CONNECTIONS=32  BENCH_REPLCOST_REQS_PER_SESSION=1  BENCH_REPLCOST_SESSION_TIMEOUT_MS=1000
 *     BENCH_REPLCOST_WARMUP_SECONDS=2  BENCH_REPLCOST_SIP_RATES=1600,2400,2800,3200,3600
 *     BENCH_REPLCOST_SIP_STEP_SECONDS=2  BENCH_REPLCOST_SIP_TRIES=2  BENCH_REPLCOST_SIP_CPU_RATE=400  BENCH_REPLCOST_SIP_CPU_SECONDS=3
 *     BENCH_REPLCOST_ADVERT_MS=100  BENCH_REPLCOST_PIN=1 (masters on CPU 0, backups on CPU 1, with taskset)
 *     BENCH_REPLCOST_FLUSH_MS (the replicating arm's groups[].replicationFlushMs; default: the product's, 0 = end of turn)
 *     BENCH_REPLCOST_PACE_MS=0 (> 0: each wrk connection pauses that long before each request: equal rates)
 *     BENCH_REPLCOST_NETNS=1 (both backups in a network namespace, reached over a veth pair instead of the
 *       host's loopback: root and `ip`; the backups' admin API is then off, so "backup holds" reads -1)
 *   BENCH_QUICK=1: 2 s x 2 rounds, no SIP ladder (the CPU per call at the fixed rate stays), under 50 s.
 * Ends with `TARGET replication-cost: met|not met — <figure>`: the master's added CPU per HTTP
 * session request and per SIP call, each against the plain-HTTP arm pair's own difference (nothing
 * is replicated there, so that difference is the run's noise).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freeSipPort, startUac, startUas, type SippUas } from '../test/helpers/sipp.js';
import { startOrigin, type Origin } from './lib/backend.js';
import { foreignCores, sampleCpu, treeCpuMs, treeSystemCpuMs } from './lib/cpu.js';
import { envInt } from './lib/env.js';
import { haConfig, startHaDispatcher, type HaDispatcher } from './lib/ha-cluster.js';
import { runIfMain } from './lib/main.js';
import { makeVethNamespace, type VethNamespace } from './lib/netns-lan.js';
import { freePort, makeTempDir, removeTempDir, requirePeers, runProcess } from './lib/procs.js';
import { ERROR_RATIO_MAX, parseWrkOutput } from './lib/wrk.js';
import { KEEP_RATE_SHARE, UAS_SCENARIO, creationSpanMs } from './sip.js';

export const ARMS = ['backup', 'off'] as const;
export type Arm = (typeof ARMS)[number];
export const PARTS = ['http', 'sip'] as const;
export type Part = (typeof PARTS)[number];
export const HTTP_MODES = ['sessions', 'plain'] as const;
export type HttpMode = (typeof HTTP_MODES)[number];

/** The issue's target: replication may cost the data path less than this share. */
export const TARGET_COST = 0.05;
/** The header whose value names an HTTP session in the `web` service. */
export const SESSION_HEADER = 'X-Session';
const ORIGINS = 2;
const UAS_COUNT = 3;
const BODY_BYTES = 1024;
/** Beyond a step's calling time, how long its calls may take before sipp gives up (unfinished). */
const STEP_GRACE_S = 10;
const WRK_SLACK_MS = 15_000;
const READY_WAIT_MS = 15_000;

export interface Options {
  parts: Part[];
  seconds: number;
  rounds: number;
  connections: number;
  reqsPerSession: number;
  sessionTimeoutMs: number;
  warmupSeconds: number;
  sipRates: number[];
  sipStepSeconds: number;
  sipCpuRate: number;
  sipCpuSeconds: number;
  /**
   * The group's advert interval. Above the product's 20 ms default: at 20 ms a master saturated by
   * wrk on two shared cores misses adverts and the backup takes over mid-run (counted as takeovers).
   */
  advertIntervalMs: number;
  /** Attempts per ladder step: a step fails when every attempt had a failed call (shared-machine noise). */
  sipTries: number;
  /** Masters pinned to CPU 0 and backups to CPU 1 (taskset): the backup's work off the master's core. */
  pin: boolean;
  /** `groups[].replicationFlushMs` of the replicating arm; null: the product's default (2 ms). */
  flushMs: number | null;
  /** > 0: every wrk connection pauses this long before each request (both arms at about one rate). */
  paceMs: number;
  /** The backups in a network namespace over veth (the replication stream then leaves the host's loopback). */
  netns: boolean;
}

export const DEFAULTS: Options = {
  parts: [...PARTS],
  seconds: 5,
  rounds: 3,
  connections: 32,
  reqsPerSession: 1,
  sessionTimeoutMs: 1_000,
  warmupSeconds: 2,
  sipRates: [1600, 2400, 2800, 3200, 3600],
  sipStepSeconds: 2,
  sipCpuRate: 400,
  sipCpuSeconds: 3,
  advertIntervalMs: 100,
  sipTries: 2,
  pin: false,
  flushMs: null,
  paceMs: 0,
  netns: false,
};

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): Options {
  const o: Options = { ...DEFAULTS, parts: [...DEFAULTS.parts], sipRates: [...DEFAULTS.sipRates] };
  const parts = env['BENCH_REPLCOST_PARTS'];
  if (parts !== undefined && parts.trim() !== '') {
    o.parts = parts.split(',').map((x) => {
      const v = x.trim();
      if (!(PARTS as readonly string[]).includes(v)) throw new Error(`BENCH_REPLCOST_PARTS: expected a list of ${PARTS.join(', ')}, received "${v}"`);
      return v as Part;
    });
  }
  const rates = env['BENCH_REPLCOST_SIP_RATES'];
  if (rates !== undefined && rates.trim() !== '') {
    o.sipRates = rates.split(',').map((x) => {
      const n = Number(x.trim());
      if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_REPLCOST_SIP_RATES: expected integers >= 1, received "${x}"`);
      return n;
    });
  }
  o.seconds = envInt(env, 'BENCH_REPLCOST_SECONDS', 1) ?? o.seconds;
  o.rounds = envInt(env, 'BENCH_REPLCOST_ROUNDS', 1) ?? o.rounds;
  o.connections = envInt(env, 'BENCH_REPLCOST_CONNECTIONS', 1) ?? o.connections;
  o.reqsPerSession = envInt(env, 'BENCH_REPLCOST_REQS_PER_SESSION', 1) ?? o.reqsPerSession;
  o.sessionTimeoutMs = envInt(env, 'BENCH_REPLCOST_SESSION_TIMEOUT_MS', 100) ?? o.sessionTimeoutMs;
  o.warmupSeconds = envInt(env, 'BENCH_REPLCOST_WARMUP_SECONDS', 0) ?? o.warmupSeconds;
  o.sipStepSeconds = envInt(env, 'BENCH_REPLCOST_SIP_STEP_SECONDS', 1) ?? o.sipStepSeconds;
  o.sipCpuRate = envInt(env, 'BENCH_REPLCOST_SIP_CPU_RATE', 1) ?? o.sipCpuRate;
  o.sipCpuSeconds = envInt(env, 'BENCH_REPLCOST_SIP_CPU_SECONDS', 1) ?? o.sipCpuSeconds;
  o.advertIntervalMs = envInt(env, 'BENCH_REPLCOST_ADVERT_MS', 5) ?? o.advertIntervalMs;
  o.sipTries = envInt(env, 'BENCH_REPLCOST_SIP_TRIES', 1) ?? o.sipTries;
  o.pin = env['BENCH_REPLCOST_PIN'] === '1';
  o.flushMs = envInt(env, 'BENCH_REPLCOST_FLUSH_MS', 0) ?? o.flushMs;
  o.paceMs = envInt(env, 'BENCH_REPLCOST_PACE_MS', 0) ?? o.paceMs;
  o.netns = env['BENCH_REPLCOST_NETNS'] === '1';
  if (env['BENCH_QUICK'] === '1') {
    if (env['BENCH_REPLCOST_SECONDS'] === undefined) o.seconds = 2;
    if (env['BENCH_REPLCOST_SIP_CPU_SECONDS'] === undefined) o.sipCpuSeconds = 2;
    if (env['BENCH_REPLCOST_ROUNDS'] === undefined) o.rounds = 2;
    if (env['BENCH_REPLCOST_SIP_RATES'] === undefined) o.sipRates = [];
    if (env['BENCH_REPLCOST_WARMUP_SECONDS'] === undefined) o.warmupSeconds = 1;
  }
  return o;
}

/**
 * The wrk script of the `sessions` mode: a new X-Session value every `per` requests (args: prefix,
 * per). The prefix is fresh per run, so no value of an earlier run is still pinned.
 */
export const SESSION_SCRIPT = `-- Written by bench/replication-cost.ts.
local prefix, per, n = "s", 1, 0
function init(args)
  prefix = args[1] or prefix
  per = tonumber(args[2]) or per
end
function request()
  local v = prefix .. "-" .. math.floor(n / per)
  n = n + 1
  return wrk.format("GET", "/", { ["${SESSION_HEADER}"] = v })
end
`;

/**
 * BENCH_REPLCOST_PACE_MS > 0: the same requests, each connection pausing that long before each of
 * its requests (wrk's `delay()`; args: prefix, per, "plain" for no header), so that both arms carry
 * about the same request rate — CPU per request depends on the rate (fewer requests per event-loop
 * turn cost more each), and a closed-loop wrk gives the slower arm a lower rate.
 */
export const PACED_SCRIPT = `${SESSION_SCRIPT.replace('function request()', 'function request()\n  if plain then return wrk.format("GET", "/") end')}
function delay()
  return pace
end
`.replace('local prefix, per, n = "s", 1, 0', 'local prefix, per, n, pace, plain = "s", 1, 0, 0, false').replace('  per = tonumber(args[2]) or per\n', '  per = tonumber(args[2]) or per\n  pace = tonumber(args[3]) or pace\n  plain = args[4] == "plain"\n');

export interface HttpSample {
  arm: Arm;
  mode: HttpMode;
  round: number;
  requestsPerSec: number;
  requests: number;
  errors: number;
  /** Master (backup) process tree CPU per completed request, µs. */
  masterCpuUs: number;
  /** The kernel-mode part of masterCpuUs (syscalls, and the loopback receive work done in them). */
  masterSysUs: number;
  backupCpuUs: number;
  /** `web` sessions the backup held right after the run (replicated ones; 0 with replication off). */
  backupSessions: number;
  /** Mastership changes during the run (the figures are then attributed by the roles at its end). */
  takeovers: number;
  othersCores: number | null;
}

export interface SipStep {
  arm: Arm;
  rate: number;
  calls: number;
  created: number;
  successful: number;
  failed: number;
  unfinished: number;
  achievedRate: number;
  clean: boolean;
  keptRate: boolean;
  masterCpuUs: number | null;
  /** Attempts made at this rate (the last one is reported). */
  attempts: number;
  takeovers: number;
}

export interface SipCpuSample {
  arm: Arm;
  round: number;
  rate: number;
  created: number;
  successful: number;
  masterCpuUs: number;
  masterSysUs: number;
  backupCpuUs: number;
  takeovers: number;
  othersCores: number | null;
}

export interface Report {
  settings: Options;
  http: HttpSample[];
  sipSteps: SipStep[];
  /** Highest clean rate per arm; `limited` false when it passed every rate asked (a floor). */
  sipMax: Record<Arm, { rate: number | null; limited: boolean }>;
  sipCpu: SipCpuSample[];
  loadBefore: number[];
  loadAfter: number[];
}

interface Cluster {
  arm: Arm;
  vip: string;
  httpPort: number;
  sipPort: number;
  /** Started as master (priority 200) and as backup; roles() says who is what now. */
  nodes: [HaDispatcher, HaDispatcher];
}

/** The current master and backup by their latest logged state (no preemption: roles can swap). */
function roles(c: Cluster): { master: HaDispatcher; backup: HaDispatcher } {
  const [a, b] = c.nodes;
  return b.state() === 'master' && a.state() !== 'master' ? { master: b, backup: a } : { master: a, backup: b };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function randomVip(): string {
  return `127.${randomInt(64, 250)}.${randomInt(1, 250)}.${randomInt(2, 250)}`;
}

/** One dispatcher's configuration for `arm`: the services on the VIP, replicateState per arm. */
export function clusterConfig(o: {
  arm: Arm;
  id: 1 | 2;
  vip: string;
  httpPort: number;
  sipPort: number;
  election: readonly [number, number];
  origins: readonly number[];
  uas: readonly number[];
  sessionTimeoutMs: number;
  advertIntervalMs: number;
  flushMs?: number | null;
  /** The two dispatchers' election (and replication) hosts; default both 127.0.0.1. */
  hosts?: readonly [string, string];
}): string {
  const hosts = o.hosts ?? ['127.0.0.1', '127.0.0.1'];
  const c = JSON.parse(
    haConfig({
      id: o.id,
      priority: o.id === 1 ? 200 : 100,
      preempt: false,
      advertIntervalMs: o.advertIntervalMs,
      listen: `${hosts[o.id - 1]}:${o.election[o.id - 1]}`,
      peers: [`${hosts[2 - o.id]}:${o.election[2 - o.id]}`],
      vip: o.vip,
      level: 'info',
      services: [
        {
          name: 'web',
          protocol: 'http',
          listen: `${o.vip}:${o.httpPort}`,
          sessions: { header: SESSION_HEADER, sessionTimeoutMs: o.sessionTimeoutMs },
          backends: o.origins.map((p, i) => ({ id: `origin${i}`, address: `127.0.0.1:${p}` })),
        },
        {
          name: 'sip',
          protocol: 'sip',
          listen: `${o.vip}:${o.sipPort}`,
          sip: { transports: ['udp'] },
          health: { probe: { type: 'udp' } },
          backends: o.uas.map((p, i) => ({ id: `uas${i}`, address: `127.0.0.1:${p}` })),
        },
      ],
    }),
  ) as { groups: Record<string, unknown>[]; admin: unknown };
  // haConfig turns the admin API off away from 127/8; the bench reads the master's status through it.
  if (!hosts[o.id - 1]!.startsWith('127.')) c.admin = o.id === 1 ? { enabled: true, listen: '127.0.0.1:0' } : { enabled: false };
  c.groups[0]!['replicateState'] = o.arm === 'backup';
  if (o.arm === 'backup' && o.flushMs != null) c.groups[0]!['replicationFlushMs'] = o.flushMs;
  return JSON.stringify(c);
}

async function startCluster(arm: Arm, dir: string, origins: readonly Origin[], uas: readonly SippUas[], o: Options, veth: VethNamespace | null): Promise<Cluster> {
  const vip = randomVip();
  const httpPort = await freePort(vip);
  let sipPort = await freeSipPort(vip);
  while (sipPort === httpPort) sipPort = await freeSipPort(vip);
  // With `veth`, the backup listens in its namespace (any port is free there) and the master on the pair's host side.
  const hosts = veth === null ? (['127.0.0.1', '127.0.0.1'] as const) : ([veth.hostIp, veth.nsIp] as const);
  const election = [await freePort(hosts[0]), await freePort('127.0.0.1')] as const;
  const key = randomBytes(32);
  const config = (id: 1 | 2): string =>
    clusterConfig({ arm, id, vip, httpPort, sipPort, election, hosts, origins: origins.map((x) => x.port), uas: uas.map((u) => u.port), sessionTimeoutMs: o.sessionTimeoutMs, advertIntervalMs: o.advertIntervalMs, flushMs: o.flushMs });
  const pin = (cpu: string): { cpus?: string } => (o.pin ? { cpus: cpu } : {});
  const master = await startHaDispatcher({ name: `${arm}-master`, id: 1, dir, key, config: config(1), ...pin('0') });
  let backup: HaDispatcher | null = null;
  try {
    await master.waitFor('taken', 0, READY_WAIT_MS);
    backup = await startHaDispatcher({ name: `${arm}-backup`, id: 2, dir, key, config: config(2), ...pin('1'), ...(veth ? { netns: veth.ns } : {}) });
    await backup.waitFor('backup', 0, READY_WAIT_MS);
    const until = Date.now() + READY_WAIT_MS;
    for (;;) {
      const s = await master.status().catch(() => null);
      const backends = s?.services.flatMap((x) => x.backends) ?? [];
      if (backends.length === ORIGINS + UAS_COUNT && backends.every((b) => b.state === 'up')) break;
      if (Date.now() > until) throw new Error(`${arm}: backends not all up: ${JSON.stringify(backends)}\n${master.proc.output()}`);
      await sleep(50);
    }
    return { arm, vip, httpPort, sipPort, nodes: [master, backup] };
  } catch (err) {
    await Promise.all([master.proc.stop(), backup?.proc.stop()]);
    throw err;
  }
}

async function backupSessions(c: Cluster): Promise<number> {
  const s = await roles(c).backup.status().catch(() => null);
  return s?.services.find((x) => x.name === 'web')?.sessions.active ?? -1;
}

interface CpuWindow {
  end(): { masterMs: number; masterSysMs: number; backupMs: number; takeovers: number; othersCores: number | null };
}

/** CPU of the master and the backup (by their roles at the end) and mastership changes over a run. */
function cpuWindow(c: Cluster): CpuWindow {
  const from = c.nodes.map((n) => n.events.length);
  const before = sampleCpu();
  return {
    end() {
      const after = sampleCpu();
      const takeovers = c.nodes.reduce((sum, n, i) => sum + n.events.slice(from[i]).filter((e) => e.what === 'master').length, 0);
      if (!before || !after) return { masterMs: NaN, masterSysMs: NaN, backupMs: NaN, takeovers, othersCores: null };
      const { master, backup } = roles(c);
      return {
        masterMs: treeCpuMs(after, master.proc.pid) - treeCpuMs(before, master.proc.pid),
        masterSysMs: treeSystemCpuMs(after, master.proc.pid) - treeSystemCpuMs(before, master.proc.pid),
        backupMs: treeCpuMs(after, backup.proc.pid) - treeCpuMs(before, backup.proc.pid),
        takeovers,
        othersCores: foreignCores(before, after),
      };
    },
  };
}

async function wrk(c: Cluster, mode: HttpMode, seconds: number, o: Options, script: string): Promise<{ rps: number; requests: number; errors: number }> {
  const url = `http://${c.vip}:${c.httpPort}/`;
  const args = [`-t1`, `-c${o.connections}`, `-d${seconds}s`, '--latency'];
  if (o.paceMs > 0) args.push('-s', `${script}.paced`, url, '--', `${c.arm}${randomBytes(4).toString('hex')}`, String(o.reqsPerSession), String(o.paceMs), mode);
  else if (mode === 'sessions') args.push('-s', script, url, '--', `${c.arm}${randomBytes(4).toString('hex')}`, String(o.reqsPerSession));
  else args.push(url);
  const run = await runProcess('wrk', args, seconds * 1000 + WRK_SLACK_MS);
  if (run.code !== 0) throw new Error(`wrk ${args.join(' ')}: exit code ${run.code}\n${run.stdout}${run.stderr}`);
  const r = parseWrkOutput(run.stdout);
  if (r.errorRatio > ERROR_RATIO_MAX) throw new Error(`wrk ${url} (${c.arm}, ${mode}): ${(r.errorRatio * 100).toFixed(3)} % of requests failed\n${run.stdout}`);
  const s = r.socketErrors;
  return { rps: r.requestsPerSec, requests: r.requests, errors: r.non2xx + s.connect + s.read + s.write + s.timeout };
}

/** ABBA: the arm order of round `round`. */
function armOrder(round: number): Arm[] {
  return round % 2 === 0 ? ['backup', 'off'] : ['off', 'backup'];
}

async function runHttp(clusters: Record<Arm, Cluster>, o: Options, dir: string, log: (l: string) => void): Promise<HttpSample[]> {
  const script = path.join(dir, 'sessions.lua');
  writeFileSync(script, SESSION_SCRIPT);
  writeFileSync(`${script}.paced`, PACED_SCRIPT);
  if (o.warmupSeconds > 0) for (const arm of ARMS) for (const mode of HTTP_MODES) await wrk(clusters[arm], mode, o.warmupSeconds, o, script);
  const samples: HttpSample[] = [];
  for (let round = 0; round < o.rounds; round++) {
    for (const mode of HTTP_MODES) {
      for (const arm of armOrder(round)) {
        const c = clusters[arm];
        // The previous sessions run's sessions time out (their replicated closes) before any run starts.
        await sleep(o.sessionTimeoutMs + 500);
        const w = cpuWindow(c);
        const r = await wrk(c, mode, o.seconds, o, script);
        const cpu = w.end();
        const held = await backupSessions(c);
        const sample: HttpSample = {
          arm,
          mode,
          round,
          requestsPerSec: r.rps,
          requests: r.requests,
          errors: r.errors,
          masterCpuUs: (cpu.masterMs * 1000) / r.requests,
          masterSysUs: (cpu.masterSysMs * 1000) / r.requests,
          backupCpuUs: (cpu.backupMs * 1000) / r.requests,
          backupSessions: held,
          takeovers: cpu.takeovers,
          othersCores: cpu.othersCores,
        };
        samples.push(sample);
        log(
          `replication-cost http ${mode} ${arm} round ${round + 1}/${o.rounds}: ${r.rps.toFixed(0)} req/s, master ${sample.masterCpuUs.toFixed(1)} µs/req (system ${sample.masterSysUs.toFixed(1)}), ` +
            `backup ${sample.backupCpuUs.toFixed(1)} µs/req, backup holds ${held} sessions, ${cpu.takeovers} takeovers, others ${cpu.othersCores?.toFixed(2) ?? '?'} cores`,
        );
      }
    }
  }
  return samples;
}

async function sipRun(c: Cluster, rate: number, seconds: number) {
  const calls = rate * seconds;
  const w = cpuWindow(c);
  const r = await (await startUac({ target: `${c.vip}:${c.sipPort}`, transport: 'udp', calls, rate, statPeriodMs: 100, timeoutS: seconds + STEP_GRACE_S })).done;
  const cpu = w.end();
  const spanMs = creationSpanMs(r.rows, r.created);
  const achievedRate = spanMs !== null && spanMs > 0 ? (r.created - 1) / (spanMs / 1000) : r.callRate;
  return { calls, r, cpu, achievedRate };
}

function isClean(t: { calls: number; r: { failed: number; unfinished: number; created: number; successful: number } }): boolean {
  return t.r.failed === 0 && t.r.unfinished === 0 && t.r.created === t.calls && t.r.successful === t.calls;
}

async function runSipLadder(clusters: Record<Arm, Cluster>, o: Options, log: (l: string) => void): Promise<SipStep[]> {
  const steps: SipStep[] = [];
  const stopped = new Set<Arm>();
  for (let i = 0; i < o.sipRates.length && stopped.size < ARMS.length; i++) {
    const rate = o.sipRates[i]!;
    for (const arm of armOrder(i)) {
      if (stopped.has(arm)) continue;
      let attempts = 0;
      let t: Awaited<ReturnType<typeof sipRun>>;
      do {
        attempts++;
        t = await sipRun(clusters[arm], rate, o.sipStepSeconds);
      } while (attempts < o.sipTries && !(isClean(t) && t.achievedRate >= KEEP_RATE_SHARE * rate));
      const { calls, r, cpu, achievedRate } = t;
      const step: SipStep = {
        arm,
        rate,
        calls,
        created: r.created,
        successful: r.successful,
        failed: r.failed,
        unfinished: r.unfinished,
        achievedRate,
        clean: isClean(t),
        keptRate: achievedRate >= KEEP_RATE_SHARE * rate,
        masterCpuUs: r.created > 0 ? (cpu.masterMs * 1000) / r.created : null,
        attempts,
        takeovers: cpu.takeovers,
      };
      steps.push(step);
      if (!step.clean || !step.keptRate) stopped.add(arm);
      log(
        `replication-cost sip ${rate} calls/s ${arm}: ${r.successful}/${calls} ok, ${r.failed} failed, ${r.unfinished} unfinished, ` +
          `${achievedRate.toFixed(0)} calls/s started, attempt ${attempts}, ${cpu.takeovers} takeovers${step.clean && step.keptRate ? '' : ' (ladder stops)'}`,
      );
    }
  }
  return steps;
}

/** Highest clean, rate-keeping rate of an arm before its first failing step (bench/sip.ts's rule). */
export function maxZeroFailure(steps: readonly SipStep[], arm: Arm): { rate: number | null; limited: boolean } {
  let best: number | null = null;
  for (const s of steps.filter((x) => x.arm === arm).sort((a, b) => a.rate - b.rate)) {
    if (!s.clean || !s.keptRate) return { rate: best, limited: true };
    best = s.rate;
  }
  return { rate: best, limited: false };
}

async function runSipCpu(clusters: Record<Arm, Cluster>, o: Options, log: (l: string) => void): Promise<SipCpuSample[]> {
  const out: SipCpuSample[] = [];
  for (let round = 0; round < o.rounds; round++) {
    for (const arm of armOrder(round)) {
      const { r, cpu } = await sipRun(clusters[arm], o.sipCpuRate, o.sipCpuSeconds);
      const s: SipCpuSample = {
        arm,
        round,
        rate: o.sipCpuRate,
        created: r.created,
        successful: r.successful,
        masterCpuUs: (cpu.masterMs * 1000) / Math.max(1, r.created),
        masterSysUs: (cpu.masterSysMs * 1000) / Math.max(1, r.created),
        backupCpuUs: (cpu.backupMs * 1000) / Math.max(1, r.created),
        takeovers: cpu.takeovers,
        othersCores: cpu.othersCores,
      };
      out.push(s);
      log(
        `replication-cost sip cpu ${o.sipCpuRate} calls/s ${arm} round ${round + 1}/${o.rounds}: ${r.successful}/${r.created} ok, ` +
          `master ${s.masterCpuUs.toFixed(0)} µs/call (system ${s.masterSysUs.toFixed(0)}), backup ${s.backupCpuUs.toFixed(0)} µs/call, ${cpu.takeovers} takeovers`,
      );
    }
  }
  return out;
}

export async function run(o: Options, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<Report> {
  if (o.parts.includes('http')) requirePeers({ wrk: 'wrk' });
  if (o.parts.includes('sip')) requirePeers({ sipp: 'sip-tester' });
  const loadBefore = os.loadavg();
  const dir = makeTempDir('holdfast-bench-replcost');
  const origins: Origin[] = [];
  const uas: SippUas[] = [];
  const clusters: Partial<Record<Arm, Cluster>> = {};
  let veth: VethNamespace | null = null;
  try {
    if (o.netns) veth = await makeVethNamespace();
    for (let i = 0; i < ORIGINS; i++) origins.push(await startOrigin({ size: BODY_BYTES }));
    for (let i = 0; i < UAS_COUNT; i++) uas.push(await startUas({ transport: 'udp', scenario: UAS_SCENARIO }));
    const started = await Promise.all(ARMS.map((arm) => startCluster(arm, dir, origins, uas, o, veth)));
    for (const c of started) clusters[c.arm] = c;
    const all = clusters as Record<Arm, Cluster>;
    // The backup has connected and taken the snapshot (a few adverts in).
    await sleep(500);
    const http = o.parts.includes('http') ? await runHttp(all, o, dir, log) : [];
    // JIT and sipp's first-run costs land on a warm-up, not on the ladder's first step.
    if (o.parts.includes('sip') && o.warmupSeconds > 0) for (const arm of ARMS) await sipRun(all[arm], Math.min(o.sipCpuRate, o.sipRates[0] ?? o.sipCpuRate), o.warmupSeconds);
    const sipSteps = o.parts.includes('sip') ? await runSipLadder(all, o, log) : [];
    const sipCpu = o.parts.includes('sip') ? await runSipCpu(all, o, log) : [];
    return {
      settings: o,
      http,
      sipSteps,
      sipMax: { backup: maxZeroFailure(sipSteps, 'backup'), off: maxZeroFailure(sipSteps, 'off') },
      sipCpu,
      loadBefore,
      loadAfter: os.loadavg(),
    };
  } finally {
    await Promise.all(Object.values(clusters).flatMap((c) => c.nodes.map((n) => n.proc.stop())));
    await Promise.all(uas.map((u) => u.kill('SIGKILL')));
    await Promise.all(origins.map((x) => x.close()));
    await veth?.close();
    removeTempDir(dir);
  }
}

export function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** One table row: the two arms, with/without, and the cost (throughput lost or CPU added). */
export interface CostRow {
  what: string;
  backup: number | null;
  off: number | null;
  /** backup / off. */
  ratio: number | null;
  /** Share lost (higher is better: 1 - ratio) or added (lower is better: ratio - 1). */
  cost: number | null;
}

export function costRow(what: string, backup: number | null, off: number | null, higherIsBetter: boolean): CostRow {
  const ok = backup !== null && off !== null && Number.isFinite(backup) && Number.isFinite(off) && off > 0;
  const ratio = ok ? backup / off : null;
  return { what, backup, off, ratio, cost: ratio === null ? null : higherIsBetter ? 1 - ratio : ratio - 1 };
}

/** The samples without a mastership change, or all of them when every one had one. */
export function steady<T extends { takeovers: number }>(xs: readonly T[]): T[] {
  const calm = xs.filter((x) => x.takeovers === 0);
  return calm.length > 0 ? calm : [...xs];
}

export function costRows(r: Report): CostRow[] {
  const rows: CostRow[] = [];
  const by = (mode: HttpMode, arm: Arm) => steady(r.http.filter((s) => s.mode === mode && s.arm === arm));
  for (const mode of HTTP_MODES) {
    if (by(mode, 'backup').length === 0) continue;
    const label = mode === 'sessions' ? `HTTP, new ${SESSION_HEADER} every ${r.settings.reqsPerSession} req` : 'HTTP, plain';
    const m = (arm: Arm, f: (s: HttpSample) => number) => median(by(mode, arm).map(f));
    rows.push(costRow(`${label}: req/s`, m('backup', (s) => s.requestsPerSec), m('off', (s) => s.requestsPerSec), true));
    rows.push(costRow(`${label}: master CPU µs/req`, m('backup', (s) => s.masterCpuUs), m('off', (s) => s.masterCpuUs), false));
  }
  if (r.sipSteps.length > 0) rows.push(costRow('SIP: highest zero-failure calls/s', r.sipMax.backup.rate, r.sipMax.off.rate, true));
  if (r.sipCpu.length > 0) {
    const m = (arm: Arm) => median(steady(r.sipCpu.filter((s) => s.arm === arm)).map((s) => s.masterCpuUs));
    rows.push(costRow(`SIP at ${r.settings.sipCpuRate} calls/s: master CPU µs/call`, m('backup'), m('off'), false));
  }
  return rows;
}

function num(x: number | null, digits: number): string {
  return x === null || !Number.isFinite(x) ? '–' : x.toFixed(digits);
}

export function formatTable(r: Report): string {
  const rows = costRows(r);
  const lines = [
    '| measure | backup attached, replicating | replication off | ratio with/without | cost |',
    '|---|---:|---:|---:|---:|',
    ...rows.map((x) => {
      const digits = x.what.includes('µs') ? 1 : 0;
      const cost = x.cost === null ? '–' : `${(x.cost * 100).toFixed(1)} %`;
      return `| ${x.what} | ${num(x.backup, digits)} | ${num(x.off, digits)} | ${num(x.ratio, 3)} | ${cost} |`;
    }),
  ];
  const notes: string[] = [];
  const held = r.http.filter((s) => s.mode === 'sessions');
  if (held.length > 0) {
    const h = (arm: Arm) => held.filter((s) => s.arm === arm).map((s) => s.backupSessions);
    const bu = (arm: Arm, f: (s: HttpSample) => number) => median(r.http.filter((s) => s.arm === arm && s.mode === 'sessions').map(f));
    notes.push(
      `Backup's \`web\` sessions right after each sessions run: with replication ${h('backup').join(', ')}; off ${h('off').join(', ')} ` +
        `(backup CPU µs/req: ${num(bu('backup', (s) => s.backupCpuUs), 1)} vs ${num(bu('off', (s) => s.backupCpuUs), 1)}).`,
    );
  }
  if (r.http.length > 0) {
    // Per round, the two arms ran back to back (ABBA): the ratio of each round's pair cancels the
    // machine's drift between rounds better than the ratio of the medians.
    const paired = (mode: HttpMode): string => {
      const ratios: number[] = [];
      for (let round = 0; round < r.settings.rounds; round++) {
        const one = (arm: Arm) => r.http.find((s) => s.mode === mode && s.arm === arm && s.round === round && s.takeovers === 0);
        const b = one('backup');
        const f = one('off');
        if (b && f && f.masterCpuUs > 0) ratios.push(b.masterCpuUs / f.masterCpuUs);
      }
      const m = median(ratios);
      return Number.isFinite(m) ? `${m >= 1 ? '+' : ''}${((m - 1) * 100).toFixed(1)} % (${ratios.map((x) => x.toFixed(2)).join(', ')})` : '–';
    };
    notes.push(`Master CPU per request with/without replication, median of the per-round pairs: sessions ${paired('sessions')}; plain ${paired('plain')}.`);
    const sys = (mode: HttpMode, arm: Arm) => num(median(steady(r.http.filter((s) => s.mode === mode && s.arm === arm)).map((s) => s.masterSysUs)), 1);
    notes.push(
      `Master's kernel-mode (system) CPU µs/req, medians: sessions ${sys('sessions', 'backup')} with replication vs ${sys('sessions', 'off')} off; ` +
        `plain ${sys('plain', 'backup')} vs ${sys('plain', 'off')}. Backups ${r.settings.netns ? 'in a network namespace, reached over veth' : 'on the host loopback'}` +
        `${r.settings.pin ? '; masters on CPU 0, backups on CPU 1' : ''}.`,
    );
  }
  if (r.sipSteps.length > 0) {
    const desc = (arm: Arm) => {
      const m = r.sipMax[arm];
      return `${m.rate ?? 'none'}${m.limited ? '' : ' (passed every rate asked: a floor)'}`;
    };
    notes.push(
      `SIP ladder (${r.settings.sipRates.join(', ')} calls/s, ${r.settings.sipStepSeconds} s each, arms alternating): with replication ${desc('backup')}, off ${desc('off')}. ` +
        r.sipSteps.map((s) => `${s.rate}/${s.arm}: ${s.successful}/${s.calls}${s.clean && s.keptRate ? '' : ' ✗'}${s.attempts > 1 ? ` (attempt ${s.attempts})` : ''}`).join('; ') +
        ` (up to ${r.settings.sipTries} attempts per step).`,
    );
  }
  const changes = (arm: Arm) => [...r.http, ...r.sipSteps, ...r.sipCpu].filter((x) => x.arm === arm).reduce((a, x) => a + x.takeovers, 0);
  notes.push(
    `Mastership changes during the measured runs (${r.settings.advertIntervalMs} ms adverts, no preemption; runs with one are left out of the medians): ` +
      `with replication ${changes('backup')}, off ${changes('off')}.`,
  );
  const others = [...r.http.map((s) => s.othersCores), ...r.sipCpu.map((s) => s.othersCores)].filter((x): x is number => x !== null);
  const costs = rows.map((x) => x.cost).filter((x): x is number => x !== null);
  const worst = costs.length > 0 ? Math.max(...costs) : null;
  notes.push(
    `Worst cost ${worst === null ? '–' : `${(worst * 100).toFixed(1)} %`} (target < ${TARGET_COST * 100} %: ${worst === null ? '–' : worst < TARGET_COST ? 'met' : 'not met'}). ` +
      `wrk -t1 -c${r.settings.connections} keep-alive, ${r.settings.seconds} s × ${r.settings.rounds} rounds (medians, ABBA order), ${BODY_BYTES}-byte bodies; replicating arm's flush ${r.settings.flushMs === null ? 'the product default (end of the event-loop turn)' : r.settings.flushMs === 0 ? 'at the end of each event-loop turn' : `window ${r.settings.flushMs} ms`}; ${r.settings.paceMs > 0 ? `paced: ${r.settings.paceMs} ms before each request per connection; ` : ''}` +
      `load average ${r.loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${r.loadAfter.map((x) => x.toFixed(2)).join(' ')} after; ` +
      `other programs used ${others.length > 0 ? `${median(others).toFixed(2)} cores (median), ${Math.max(...others).toFixed(2)} max` : '?'} during the runs.`,
  );
  return `${lines.join('\n')}\n\n${notes.join('\n\n')}\n\n${costTarget(rows, r.settings.pin)}\n`;
}

/**
 * Issue 17's verdict: the master's added CPU per HTTP-session request and per SIP call, both under
 * TARGET_COST, and the noise of the run (the plain-HTTP pair, where nothing is replicated) beside them.
 */
export function costTarget(rows: readonly CostRow[], pinned: boolean): string {
  const find = (prefix: string): CostRow | undefined => rows.find((x) => x.what.startsWith(prefix) && x.what.includes('CPU'));
  const sessions = find('HTTP, new');
  const sip = find('SIP at');
  const plain = find('HTTP, plain');
  const pct = (x: CostRow | undefined): string => (x?.cost == null ? '–' : `${x.cost >= 0 ? '+' : ''}${(x.cost * 100).toFixed(1)} %`);
  const measured = [sessions, sip].filter((x): x is CostRow => x?.cost != null);
  const met = measured.length > 0 && measured.every((x) => x.cost! < TARGET_COST);
  return (
    `TARGET replication-cost: ${met ? 'met' : 'not met'} — master CPU per HTTP-session request ${pct(sessions)}, per SIP call ${pct(sip)} ` +
    `(target < ${TARGET_COST * 100} %; noise: plain HTTP, nothing replicated, ${pct(plain)}${pinned ? '; masters on CPU 0, backups on CPU 1' : ''})`
  );
}

runIfMain(import.meta.url, async () => {
  process.stdout.write(formatTable(await run(optionsFromEnv())));
});
