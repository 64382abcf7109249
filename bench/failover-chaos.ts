/**
 * @module Macro benchmark of failover under chaos (issue 4, "Measure"): three origin processes behind
 * a proxy, one SIGKILLed every 3 s and restarted 1 s later on the same port, while a client sends a
 * mix of reply classes on 16 keep-alive connections and checks every body byte for byte. HAProxy and
 * holdfast run one after the other in the same run, with the same schedule and the same request mix,
 * and the table gives failures per class for each.
 *
 *   client (16 conns, no retries) ──► HAProxy 2.6 | holdfast ──► origin 0, 1, 2 (SIGKILL, restart)
 *
 * DESIGN.md's failure table says what holdfast must hide: every class here except non-deterministic
 * replies larger than holdReplyBytes (`rand-large`) must see zero failures, and `rand-large` fewer than
 * HAProxy. HAProxy runs at its best for this: `retry-on all-retryable-errors`, `option redispatch 1`,
 * `retries 3`, health checks every 100 ms with fall 1 / rise 1 — which saves requests whose reply has
 * not started, and nothing after that.
 *
 *   node dist/bench/failover-chaos.js      (or: node dist/bench/run.js failover-chaos)
 *   BENCH_CHAOS_SECONDS=9 BENCH_CHAOS_TARGETS=holdfast node dist/bench/failover-chaos.js
 *   BENCH_CHAOS_FAULT=stop node dist/bench/failover-chaos.js     (SIGSTOP / SIGCONT instead of SIGKILL / restart)
 *   BENCH_CHAOS_TARGETS=holdfast BENCH_CHAOS_H2_STREAMS=8 BENCH_CHAOS_PROXY_LOG=/tmp/hf.log node dist/bench/failover-chaos.js
 *     (HTTP/2 clients, 8 streams per connection; holdfast's info-level log kept in the file)
 */
import { runIfMain } from './lib/main.js';
import { envInt } from './lib/env.js';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import {
  CLASSES,
  ChaosClient,
  FAILURE_REASONS,
  REQUEST_TIMEOUT_MS,
  RequestMix,
  chaosAgent,
  execute,
  failoverMetrics,
  judge,
  type FailoverMetrics,
  type FailureReason,
  type RequestClass,
  type RequestFailure,
} from './lib/chaos-client.js';
import { makeCertKit, type PemPair } from './lib/certs.js';
import { H2ChaosClient } from './lib/h2-chaos-client.js';
import { startHaproxy } from './lib/haproxy.js';
import {
  freePort,
  makeTempDir,
  removeTempDir,
  requirePeers,
  runProcess,
  startProcess,
  waitForPort,
  type Proc,
} from './lib/procs.js';
export type Target = 'haproxy' | 'holdfast';
export const TARGETS: readonly Target[] = ['haproxy', 'holdfast'];

/** Seconds of load per target (kills happen every killEveryMs while it runs). */
export const DEFAULT_SECONDS = 30;
export const DEFAULT_CONNECTIONS = 16;
export const DEFAULT_KILL_EVERY_MS = 3_000;
export const DEFAULT_RESTART_AFTER_MS = 1_000;
export const DEFAULT_SEED = 1;
export const ORIGINS = 3;
/** holdfast's default failover.holdReplyBytes: the limit the table's verdict line refers to. */
export const HOLD_REPLY_BYTES = 65_536;
/** The class the failure table allows to fail (non-deterministic, larger than holdReplyBytes). */
export const MAY_FAIL: RequestClass = 'rand-large';
/** Health checks of both proxies: HAProxy `check inter`, holdfast `health.probe.intervalMs`. */
export const HEALTH_INTERVAL_MS = 100;

export const DEFAULT_OUT = fileURLToPath(new URL('../../bench/results/failover-chaos.json', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ORIGIN_SERVER = fileURLToPath(new URL('./chaos-origin-server.js', import.meta.url));
const HOLDFAST_BIN = path.join(REPO_ROOT, 'bin', 'holdfast.js');
const HOLDFAST_READY_TIMEOUT_MS = 15_000;
/** A restarted origin that cannot bind its port yet (the kernel still tearing down) tries again. */
const RESTART_RETRIES = 40;
const RESTART_RETRY_MS = 50;
/** Failures listed per target in the JSON report. */
const FAILURES_IN_REPORT = 200;

/** HAProxy backend settings for the chaos leg (the issue's configuration). */
export const HAPROXY_BACKEND_LINES: readonly string[] = [
  'balance roundrobin',
  'retry-on all-retryable-errors',
  'option redispatch 1',
  'retries 3',
  'timeout connect 1s',
];
export const HAPROXY_SERVER_PARAMS = `check inter ${HEALTH_INTERVAL_MS}ms fall 1 rise 1`;

export interface ChaosOptions {
  /** Seconds of load per target. */
  readonly seconds?: number;
  readonly targets?: readonly Target[];
  readonly connections?: number;
  readonly killEveryMs?: number;
  readonly restartAfterMs?: number;
  /** Seed of the request mix (the same for every target). */
  readonly seed?: number;
  /** A request without a complete reply after this long fails as `timeout` (default REQUEST_TIMEOUT_MS). */
  readonly requestTimeoutMs?: number;
  /** JSON report path; null writes none. Default DEFAULT_OUT. */
  readonly out?: string | null;
  /** Progress lines (default: stderr). */
  readonly log?: (line: string) => void;
  /** Clients speak HTTPS to the proxy, which terminates TLS (holdfast only; issue 13's chaos-over-tls). */
  readonly tls?: boolean;
  /**
   * The fault (issue 18): `kill` (default) SIGKILLs the origin and starts it again; `stop` SIGSTOPs
   * it (a hung server: its kernel still accepts connections, nothing answers) and SIGCONTs it at the
   * restart time. With `stop` holdfast runs the pull detector (100 ms, n = 4, GET /static/1), which
   * is what finds a hung server; HAProxy keeps its checks.
   */
  readonly fault?: Fault;
  /**
   * Clients speak HTTP/2 (prior-knowledge h2c) with `http2Streams` streams on each connection
   * (holdfast only, with http.http2 on; issue 19's chaos-over-h2).
   */
  readonly http2Streams?: number;
  /** holdfast's log (level info: backend states, failovers) is written to this file (BENCH_CHAOS_PROXY_LOG). */
  readonly proxyLog?: string;
}

export type Fault = 'kill' | 'stop';

/** One SIGKILL of the schedule, in ms since the target's load started. */
export interface KillEvent {
  readonly origin: number;
  readonly port: number;
  readonly killAtMs: number;
  /** Client requests in flight (on all origins) when the kill landed. */
  readonly inFlightAtKill: number;
  /** When the restarted origin accepted again; null if it did not come back. */
  readonly backAtMs: number | null;
}

export interface ClassResult {
  readonly cls: RequestClass;
  readonly requests: number;
  readonly failures: number;
  /** failures / requests × 100 (0 without requests). */
  readonly failurePct: number;
  readonly reasons: Readonly<Record<FailureReason, number>>;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
}

export interface TargetResult {
  readonly target: Target;
  /** Measured wall seconds, from the first request to the last one ending. */
  readonly seconds: number;
  readonly classes: readonly ClassResult[];
  readonly kills: readonly KillEvent[];
  /** The first failures, with what and when (ms since the load started). */
  readonly failures: readonly RequestFailure[];
  /** holdfast's failover metrics after the run; null for HAProxy or when holdfast has none. */
  readonly failover: FailoverMetrics | null;
  /** Requests (one per class, before the chaos) that failed with every origin up. */
  readonly preflightProblems: readonly string[];
  /** Set when the proxy process died during the run: how, and the end of its output. */
  readonly proxyExited: string | null;
}

export interface ChaosReport {
  readonly settings: {
    readonly seconds: number;
    readonly targets: readonly Target[];
    readonly connections: number;
    readonly killEveryMs: number;
    readonly restartAfterMs: number;
    readonly seed: number;
    readonly requestTimeoutMs: number;
    /** The fault applied (absent in reports written before issue 18: kill). */
    readonly fault?: Fault;
  };
  readonly results: readonly TargetResult[];
}

export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** Kill times (ms after the load starts) for a run of `seconds`: every killEveryMs, strictly before the end. */
export function killSchedule(seconds: number, killEveryMs: number): number[] {
  const out: number[] = [];
  for (let at = killEveryMs; at < seconds * 1000; at += killEveryMs) out.push(at);
  return out;
}

export interface Verdict {
  /** holdfast had zero failures in every class but MAY_FAIL (null without a holdfast leg). */
  readonly holdfastNothingLost: boolean | null;
  /**
   * holdfast's failure rate over all classes < HAProxy's (null unless both legs ran). Rates, not
   * counts: the legs send as many requests as their proxy lets through, and a proxy that stalls
   * would otherwise win by sending fewer.
   */
  readonly fewerThanHaproxy: boolean | null;
}

/** The issue's targets, checked on a report. */
export function verdict(report: ChaosReport): Verdict {
  const of = (t: Target): TargetResult | undefined => report.results.find((r) => r.target === t);
  const h = of('holdfast');
  const a = of('haproxy');
  const rate = (r: TargetResult): number => {
    const requests = r.classes.reduce((s, c) => s + c.requests, 0);
    return requests > 0 ? r.classes.reduce((s, c) => s + c.failures, 0) / requests : 1;
  };
  return {
    holdfastNothingLost: h ? h.classes.every((c) => c.cls === MAY_FAIL || c.failures === 0) : null,
    fewerThanHaproxy: h && a ? rate(h) < rate(a) : null,
  };
}

const fmtMs = (x: number | null | undefined): string => (x === null || x === undefined ? '–' : x < 10 ? x.toFixed(2) : x.toFixed(0));

function reasonsText(reasons: Readonly<Record<FailureReason, number>>): string {
  const parts = FAILURE_REASONS.filter((r) => reasons[r] > 0).map((r) => `${reasons[r]} ${r}`);
  return parts.length > 0 ? parts.join(', ') : '–';
}

/** The markdown the README quotes: failures per target × class, holdfast's failovers, the verdict. */
export function formatTable(report: ChaosReport): string {
  const rows = [
    '| target | class | requests | failures | failure % | why | p99 ms |',
    '|---|---|---:|---:|---:|---|---:|',
  ];
  for (const r of report.results) {
    for (const c of r.classes) {
      rows.push(
        `| ${r.target} | ${c.cls} | ${c.requests} | ${c.failures} | ${c.failurePct.toFixed(2)} % | ${reasonsText(c.reasons)} | ${fmtMs(c.p99Ms)} |`,
      );
    }
    const requests = r.classes.reduce((s, c) => s + c.requests, 0);
    const failures = r.classes.reduce((s, c) => s + c.failures, 0);
    rows.push(`| ${r.target} | **all** | ${requests} | ${failures} | ${requests > 0 ? ((failures / requests) * 100).toFixed(2) : '0.00'} % | ${r.kills.length} kills | |`);
  }
  const lines = [rows.join('\n')];
  for (const r of report.results) {
    if (r.preflightProblems.length > 0) {
      lines.push(`${r.target} failed before any kill (preflight, all origins up): ${r.preflightProblems.join('; ')}.`);
    }
    if (r.proxyExited !== null) lines.push(`${r.target} died during the run (${r.proxyExited.split('\n')[0]}).`);
  }

  for (const r of report.results) {
    if (r.target !== 'holdfast') continue;
    if (r.failover === null) {
      lines.push('holdfast exposes no failover metrics (holdfast_failover_total): failover not built in yet.');
      continue;
    }
    const f = r.failover;
    lines.push(
      [
        '| holdfast failover strategy | result | count |',
        '|---|---|---:|',
        ...(f.failovers.length > 0 ? f.failovers.map((x) => `| ${x.strategy} | ${x.result} | ${x.count} |`) : ['| – | – | 0 |']),
      ].join('\n'),
    );
    const rec = f.recovery;
    lines.push(
      rec === null
        ? 'Recovery time: holdfast exposes no holdfast_failover_recovery_seconds.'
        : `Recovery time (failure → first byte from the new backend, holdfast_failover_recovery_seconds, ${rec.count} failovers): ` +
            `p50 ${fmtMs(rec.p50Ms)} ms, p99 ${fmtMs(rec.p99Ms)} ms` +
            (f.logOverflows !== null ? `; request log overflows: ${f.logOverflows}` : ''),
    );
  }

  const v = verdict(report);
  const yes = (b: boolean | null): string => (b === null ? 'n/a' : b ? 'met' : 'NOT met');
  lines.push(
    `Targets: holdfast zero failures outside ${MAY_FAIL} (non-deterministic > ${HOLD_REPLY_BYTES / 1024} KiB): ${yes(v.holdfastNothingLost)}; ` +
      `holdfast fails a smaller share of requests than HAProxy: ${yes(v.fewerThanHaproxy)}.`,
  );
  return lines.join('\n\n');
}

/** BENCH_CHAOS_FAULT (kill | stop), BENCH_CHAOS_SECONDS, BENCH_CHAOS_TARGETS (comma list), BENCH_CHAOS_CONNECTIONS, BENCH_CHAOS_KILL_EVERY_MS, BENCH_CHAOS_RESTART_AFTER_MS, BENCH_CHAOS_SEED, BENCH_CHAOS_H2_STREAMS, BENCH_CHAOS_PROXY_LOG. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): ChaosOptions {
  const int = (name: string, min: number): number | undefined => envInt(env, name, min);
  const opts: { -readonly [K in keyof ChaosOptions]: ChaosOptions[K] } = {};
  const seconds = int('BENCH_CHAOS_SECONDS', 1);
  const connections = int('BENCH_CHAOS_CONNECTIONS', 1);
  const killEveryMs = int('BENCH_CHAOS_KILL_EVERY_MS', 100);
  const restartAfterMs = int('BENCH_CHAOS_RESTART_AFTER_MS', 0);
  const seed = int('BENCH_CHAOS_SEED', 0);
  if (seconds !== undefined) opts.seconds = seconds;
  if (connections !== undefined) opts.connections = connections;
  if (killEveryMs !== undefined) opts.killEveryMs = killEveryMs;
  if (restartAfterMs !== undefined) opts.restartAfterMs = restartAfterMs;
  if (seed !== undefined) opts.seed = seed;
  const fault = env['BENCH_CHAOS_FAULT'];
  if (fault !== undefined && fault !== '') {
    if (fault !== 'kill' && fault !== 'stop') throw new Error(`BENCH_CHAOS_FAULT: expected kill or stop, received "${fault}"`);
    opts.fault = fault;
  }
  const proxyLog = env['BENCH_CHAOS_PROXY_LOG'];
  if (proxyLog !== undefined && proxyLog !== '') opts.proxyLog = proxyLog;
  const h2 = int('BENCH_CHAOS_H2_STREAMS', 1);
  if (h2 !== undefined) opts.http2Streams = h2;
  const targets = env.BENCH_CHAOS_TARGETS;
  if (targets) {
    opts.targets = targets
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map((s) => {
        if (!(TARGETS as readonly string[]).includes(s)) throw new Error(`BENCH_CHAOS_TARGETS: expected ${TARGETS.join(', ')}, received "${s}"`);
        return s as Target;
      });
  }
  return opts;
}

/** One http service over the origins; health probes every HEALTH_INTERVAL_MS; failover at its defaults. */
export function holdfastConfig(listenPort: number, adminPort: number, originPorts: readonly number[], tls: PemPair | null = null, fault: Fault = 'kill', http2 = false, logLevel = 'warn'): string {
  return [
    '# Written by bench/failover-chaos.ts: failover at its defaults (holdReplyBytes 65536).',
    'version: 1',
    'logging:',
    `  level: ${logLevel}`,
    'admin:',
    '  enabled: true',
    `  listen: '127.0.0.1:${adminPort}'`,
    'services:',
    '  - name: chaos',
    '    protocol: http',
    `    listen: '127.0.0.1:${listenPort}'`,
    ...(tls ? [`    tls: { certificates: [{ cert: ${JSON.stringify(tls.cert)}, key: ${JSON.stringify(tls.key)} }] }`] : []),
    ...(http2 ? ['    http: { http2: true }'] : []),
    '    health:',
    ...(fault === 'stop' ? ['      detector: { type: pull, intervalMs: 100, n: 4 }'] : []),
    '      probe:',
    `        intervalMs: ${HEALTH_INTERVAL_MS}`,
    ...(fault === 'stop' ? ['        type: http', '        path: /static/1'] : []),
    '    backends:',
    ...originPorts.flatMap((p, i) => [`      - id: origin-${i}`, `        address: '127.0.0.1:${p}'`]),
    '',
  ].join('\n');
}

/** The three origin processes, killable (or stoppable) and restartable on their ports. */
class OriginSet {
  readonly ports: number[] = [];
  private readonly procs: (Proc | null)[] = [];
  /** Origins stopped with SIGSTOP (fault 'stop'): restart() continues them. */
  private readonly stopped = new Map<number, Proc>();

  constructor(private readonly fault: Fault = 'kill') {}

  async start(): Promise<void> {
    const started = await Promise.all(Array.from({ length: ORIGINS }, (_, i) => this.spawn(i, 0)));
    for (const p of started) {
      this.procs.push(p);
      this.ports.push(Number(p.readyMatch![1]));
    }
  }

  private spawn(i: number, port: number): Promise<Proc> {
    return startProcess({
      name: `origin-${i}`,
      command: process.execPath,
      args: [ORIGIN_SERVER, '--port', String(port)],
      readyLine: /^listening (\d+)$/,
    });
  }

  isUp(i: number): boolean {
    return this.procs[i] !== null && this.procs[i] !== undefined;
  }

  /** SIGKILL: no chance to finish replies or close sockets cleanly. Resolves once it is gone. */
  async kill(i: number): Promise<void> {
    const p = this.procs[i];
    if (!p) return;
    this.procs[i] = null;
    if (this.fault === 'stop') {
      p.child.kill('SIGSTOP');
      this.stopped.set(i, p);
      return;
    }
    p.child.kill('SIGKILL');
    await p.exited;
  }

  /** Starts origin i again on its old port (retrying while the port is not free yet). */
  async restart(i: number): Promise<void> {
    if (this.isUp(i)) return;
    const stopped = this.stopped.get(i);
    if (stopped) {
      this.stopped.delete(i);
      stopped.child.kill('SIGCONT');
      this.procs[i] = stopped;
      return;
    }
    let last: unknown;
    for (let attempt = 0; attempt < RESTART_RETRIES; attempt++) {
      try {
        this.procs[i] = await this.spawn(i, this.ports[i]!);
        return;
      } catch (err) {
        last = err;
        await sleep(RESTART_RETRY_MS);
      }
    }
    throw last;
  }

  async ensureAllUp(): Promise<void> {
    for (let i = 0; i < ORIGINS; i++) await this.restart(i);
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => p?.stop()));
    this.procs.fill(null);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/**
 * One request of every class through the proxy before any chaos: each should succeed. Returns what
 * did not, so the table can say that failures under chaos were not all chaos's doing (a proxy that
 * cannot serve a class at all is a finding, not a harness error, so the run goes on).
 */
async function preflight(port: number, seed: number, timeoutMs: number, tls: boolean): Promise<string[]> {
  const mix = new RequestMix(seed + 7919);
  const agent = chaosAgent(tls, { keepAlive: false });
  const problems: string[] = [];
  try {
    for (const cls of CLASSES) {
      const p = mix.make(cls);
      const obs = await execute(agent, '127.0.0.1', port, p, timeoutMs);
      const reason = judge(p.expect, obs);
      if (reason !== null) {
        problems.push(`${p.method} ${p.path}: ${reason} (status ${obs.status}, ${obs.bodyBytes} body bytes${obs.error ? `, ${obs.error}` : ''})`);
      }
    }
  } finally {
    agent.destroy();
  }
  return problems;
}

async function scrape(adminPort: number): Promise<string | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
    return res.ok ? await res.text() : null;
  } catch {
    return null;
  }
}

function classResults(client: Pick<ChaosClient, 'stats'>): ClassResult[] {
  return CLASSES.map((cls) => {
    const s = client.stats.get(cls)!;
    return {
      cls,
      requests: s.requests,
      failures: s.failures,
      failurePct: s.requests > 0 ? (s.failures / s.requests) * 100 : 0,
      reasons: { ...s.reasons },
      p50Ms: percentile(s.durationsMs, 50),
      p99Ms: percentile(s.durationsMs, 99),
      maxMs: s.durationsMs.length > 0 ? Math.max(...s.durationsMs) : null,
    };
  });
}

/** Load + chaos against a proxy already listening on `port`. */
async function chaosRound(
  target: Target,
  port: number,
  origins: OriginSet,
  settings: ChaosReport['settings'],
  log: (line: string) => void,
  tls: boolean,
  http2Streams = 0,
): Promise<Omit<TargetResult, 'failover' | 'preflightProblems' | 'proxyExited'>> {
  const t0 = performance.now();
  const now = (): number => performance.now() - t0;
  const common = { host: '127.0.0.1', port, connections: settings.connections, mix: new RequestMix(settings.seed), requestTimeoutMs: settings.requestTimeoutMs, now };
  const client = http2Streams > 0 ? new H2ChaosClient({ ...common, streams: http2Streams }) : new ChaosClient({ ...common, tls });
  client.start();
  const kills: KillEvent[] = [];
  const restarts: Promise<void>[] = [];
  try {
    const pending = new Set<Promise<void>>();
    for (const [k, at] of killSchedule(settings.seconds, settings.killEveryMs).entries()) {
      await sleep(at - now());
      const i = k % ORIGINS;
      if (pending.size > 0) {
        // On a loaded machine a restart can take longer than killEveryMs: killing now could leave
        // no origin up, and the proxy would rightly answer 503 (no backend). Wait for the restarts,
        // then for the proxies' health checks to see them.
        const waitFrom = now();
        await Promise.allSettled([...pending]);
        await sleep(3 * HEALTH_INTERVAL_MS);
        log(`${target}: kill ${k + 1} delayed ${Math.round(now() - waitFrom)} ms: an origin was still restarting`);
      }
      if (now() >= settings.seconds * 1000) break;
      const inFlightAtKill = client.inFlight;
      const killAtMs = now();
      await origins.kill(i);
      const event: { -readonly [K in keyof KillEvent]: KillEvent[K] } = { origin: i, port: origins.ports[i]!, killAtMs, inFlightAtKill, backAtMs: null };
      kills.push(event);
      log(`${target}: t=${(killAtMs / 1000).toFixed(1)} s ${settings.fault === 'stop' ? 'SIGSTOP' : 'SIGKILL'} origin-${i} (${inFlightAtKill} requests in flight)`);
      const back = (async () => {
        await sleep(killAtMs + settings.restartAfterMs - now());
        await origins.restart(i);
        event.backAtMs = now();
      })();
      pending.add(back);
      void back.finally(() => pending.delete(back)).catch(() => {});
      restarts.push(back);
    }
    await sleep(settings.seconds * 1000 - now());
  } finally {
    await client.stop();
    await Promise.allSettled(restarts);
  }
  const seconds = now() / 1000;
  const classes = classResults(client);
  const failures = client.failures.slice(0, FAILURES_IN_REPORT);
  log(
    `${target}: ${classes.reduce((s, c) => s + c.requests, 0)} requests, ` +
      `${classes.reduce((s, c) => s + c.failures, 0)} failed (${classes.map((c) => `${c.cls} ${c.failures}/${c.requests}`).join(', ')})`,
  );
  return { target, seconds, classes, kills, failures };
}

async function peerVersion(command: string, args: string[]): Promise<string> {
  try {
    const r = await runProcess(command, args, 5_000);
    return (r.stdout + r.stderr).split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

/** Runs the benchmark: every target in order, with the same chaos schedule and request mix. */
export async function run(opts: ChaosOptions = {}): Promise<ChaosReport> {
  const settings: ChaosReport['settings'] = {
    seconds: opts.seconds ?? DEFAULT_SECONDS,
    targets: opts.targets ?? TARGETS,
    connections: opts.connections ?? DEFAULT_CONNECTIONS,
    killEveryMs: opts.killEveryMs ?? DEFAULT_KILL_EVERY_MS,
    restartAfterMs: opts.restartAfterMs ?? DEFAULT_RESTART_AFTER_MS,
    seed: opts.seed ?? DEFAULT_SEED,
    requestTimeoutMs: opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
    fault: opts.fault ?? 'kill',
  };
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (settings.targets.length === 0) throw new Error('failover-chaos: no targets');
  if (settings.restartAfterMs >= settings.killEveryMs) {
    throw new Error(`failover-chaos: restartAfterMs (${settings.restartAfterMs}) must be below killEveryMs (${settings.killEveryMs})`);
  }
  const peers = settings.targets.includes('haproxy') ? requirePeers({ haproxy: 'haproxy' }) : null;
  const load1 = os.loadavg()[0]!;
  if (load1 > 1) log(`warning: 1-minute load average is ${load1.toFixed(2)}; a busy machine slows failover and replies`);

  const tls = opts.tls ?? false;
  if (tls && settings.targets.includes('haproxy')) throw new Error('failover-chaos: tls runs holdfast only');
  const http2Streams = opts.http2Streams ?? 0;
  if (http2Streams > 0 && settings.targets.includes('haproxy')) throw new Error('failover-chaos: http2 runs holdfast only');
  const dir = makeTempDir('holdfast-bench-chaos');
  const certs = tls ? makeCertKit() : null;
  const pair = certs ? certs.leaf('chaos', ['localhost', '127.0.0.1']) : null;
  const fault = settings.fault ?? 'kill';
  const origins = new OriginSet(fault);
  const results: TargetResult[] = [];
  try {
    await origins.start();
    for (const target of settings.targets) {
      await origins.ensureAllUp();
      const listenPort = await freePort();
      let proxy: Proc;
      let adminPort: number | null = null;
      if (target === 'haproxy') {
        proxy = await startHaproxy({
          dir,
          haproxy: peers!.haproxy,
          routes: [
            {
              name: 'chaos',
              listenPort,
              origin: { host: '127.0.0.1', port: origins.ports[0]! },
              moreOrigins: origins.ports.slice(1).map((port) => ({ host: '127.0.0.1', port })),
              serverParams: HAPROXY_SERVER_PARAMS,
              backendLines: HAPROXY_BACKEND_LINES,
            },
          ],
        });
      } else {
        adminPort = await freePort();
        const cfg = path.join(dir, 'holdfast.yaml');
        writeFileSync(cfg, holdfastConfig(listenPort, adminPort, origins.ports, pair, fault, http2Streams > 0, opts.proxyLog ? 'info' : 'warn'));
        proxy = await startProcess({
          name: 'holdfast',
          command: process.execPath,
          args: [HOLDFAST_BIN, 'dispatcher', '--config', cfg],
          cwd: REPO_ROOT,
          readyPort: { host: '127.0.0.1', port: listenPort },
          readyTimeoutMs: HOLDFAST_READY_TIMEOUT_MS,
        });
        await waitForPort('127.0.0.1', adminPort);
        if (opts.proxyLog) {
          const file = opts.proxyLog;
          writeFileSync(file, '');
          const save = (b: Buffer): void => appendFileSync(file, b);
          proxy.child.stdout?.on('data', save);
          proxy.child.stderr?.on('data', save);
        }
      }
      try {
        const preflightProblems = await preflight(listenPort, settings.seed, settings.requestTimeoutMs, tls);
        for (const p of preflightProblems) log(`${target}: preflight (no chaos yet) failed: ${p}`);
        log(`${target}: ${settings.seconds} s of load on ${settings.connections} connections, ${fault === 'stop' ? 'SIGSTOP' : 'SIGKILL'} every ${settings.killEveryMs} ms`);
        const round = await chaosRound(target, listenPort, origins, settings, log, tls, http2Streams);
        const gone = proxy.child.exitCode !== null || proxy.child.signalCode !== null;
        const proxyExited = gone
          ? `exit code ${proxy.child.exitCode}, signal ${proxy.child.signalCode}; output:\n${proxy.output().slice(-2000)}`
          : null;
        if (proxyExited !== null) log(`${target} died during the run: ${proxyExited}`);
        let failover: FailoverMetrics | null = null;
        if (adminPort !== null && !gone) {
          const text = await scrape(adminPort);
          failover = text === null ? null : failoverMetrics(text);
        }
        results.push({ ...round, failover, preflightProblems, proxyExited });
      } finally {
        // SIGKILL, not stop(): its figures are taken, and a graceful shutdown would only wait for
        // exchanges a broken proxy may never finish.
        proxy.child.kill('SIGKILL');
        await proxy.exited;
      }
    }

    const report: ChaosReport = { settings, results };
    // A SIGSTOP run keeps its own file: the README's SIGKILL figures come from DEFAULT_OUT.
    const out = opts.out === undefined ? (fault === 'stop' ? DEFAULT_OUT.replace(/\.json$/, '-stop.json') : DEFAULT_OUT) : opts.out;
    if (out !== null) {
      mkdirSync(path.dirname(out), { recursive: true });
      const json = {
        benchmark: 'failover-chaos',
        date: new Date().toISOString(),
        settings: { ...settings, holdReplyBytes: HOLD_REPLY_BYTES, healthIntervalMs: HEALTH_INTERVAL_MS, haproxyBackend: HAPROXY_BACKEND_LINES, haproxyServer: HAPROXY_SERVER_PARAMS },
        machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', loadAvg1AtStart: load1 },
        versions: { node: process.version, haproxy: peers ? await peerVersion(peers.haproxy, ['-v']) : null },
        verdict: verdict(report),
        results,
      };
      writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);
      log(`results written to ${out}`);
    }
    return report;
  } finally {
    await origins.stop();
    removeTempDir(dir);
    certs?.remove();
  }
}

async function main(): Promise<void> {
  const report = await run(optionsFromEnv());
  process.stdout.write(`${formatTable(report)}\n`);
}

runIfMain(import.meta.url, main);
