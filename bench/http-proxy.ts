/**
 * @module Macro benchmark of HTTP/1.1 proxying: wrk → {nothing | HAProxy | holdfast} → origin, all on
 * loopback in one run, reported as holdfast's ratio to HAProxy (DESIGN.md target: req/s ≥ 1.0×,
 * p99 ≤ 1.2×) and to the origin served directly (the ceiling this machine allows).
 *
 * Rounds alternate the targets (direct → haproxy → holdfast, then again) instead of measuring each
 * target in one block, so a slow drift of the machine (thermal, another process) spreads over all
 * targets instead of landing on one; the reported figure is the median over rounds.
 *
 * Arms at equal threads (issue 16): holdfast with one worker against HAProxy `nbthread 1`, and
 * holdfast with `dispatcher.workers: 2` against HAProxy `nbthread 2`. The report ends with one verdict
 * line per target: `TARGET <name>: met|not met — <figure>`, CPU per request beside each.
 *
 *   node dist/bench/http-proxy.js        (or: node dist/bench/run.js http-proxy)
 *   BENCH_QUICK=1 node dist/bench/http-proxy.js     (one round of 2 s, every arm: under 90 s)
 *   BENCH_SECONDS=2 BENCH_ROUNDS=1 node dist/bench/http-proxy.js
 */
import { runIfMain } from './lib/main.js';
import { envInt } from './lib/env.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { foreignCores, sampleCpu, treeCpuMs, waitForQuiet } from './lib/cpu.js';
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
import { runWrk, type WrkResult } from './lib/wrk.js';

/**
 * holdfast-nolog: holdfast with failover (request log, reply hold) off, for its failure-free cost.
 * haproxy-2t: HAProxy `nbthread 2`; holdfast-2w: holdfast with `dispatcher.workers: 2` (failover on).
 */
export type Target = 'direct' | 'haproxy' | 'holdfast' | 'holdfast-nolog' | 'haproxy-2t' | 'holdfast-2w';
export const TARGETS: readonly Target[] = ['direct', 'haproxy', 'holdfast', 'holdfast-nolog', 'haproxy-2t', 'holdfast-2w'];
/** Threads (HAProxy) or workers (holdfast) of each proxied arm. */
const ARM_THREADS: Partial<Record<Target, number>> = { haproxy: 1, holdfast: 1, 'holdfast-nolog': 1, 'haproxy-2t': 2, 'holdfast-2w': 2 };
/** DESIGN.md / issue 16 targets. */
export const TARGET_RPS_RATIO = 1.0;
export const TARGET_P99_RATIO = 1.2;
/** Failover on costs under 5 % CPU per request against failover off. */
export const TARGET_FAILOVER_COST = 0.05;

export const DEFAULT_SECONDS = 5;
export const DEFAULT_ROUNDS = 3;
export const DEFAULT_SIZES: readonly number[] = [1024, 65536];
/** wrk keep-alive connections: enough to keep a single-threaded proxy busy, few enough to be realistic. */
export const DEFAULT_CONNECTIONS = 32;
/** wrk threads. One leaves the second core of a 2-core machine to the proxy (README: -t1 vs -t2). */
export const DEFAULT_THREADS = 1;
/** A warmup run per target before its first measured round: JIT, connection pools, TCP buffers. */
export const DEFAULT_WARMUP_SECONDS = 1;
/** BENCH_QUICK: seconds per measured run (one round): 6 arms × 2 sizes × (1 s warmup + 2 s) ≈ 40 s. */
export const QUICK_SECONDS = 2;

/** Where the JSON report goes by default: <repo>/bench/results/http-proxy.json. */
export const DEFAULT_OUT = fileURLToPath(new URL('../../bench/results/http-proxy.json', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BACKEND_SERVER = fileURLToPath(new URL('./backend-server.js', import.meta.url));
const HOLDFAST_BIN = path.join(REPO_ROOT, 'bin', 'holdfast.js');
/** Other programs' CPU use during a round above which the round is flagged as noisy. */
export const NOISY_FOREIGN_CORES = 0.1;
/** With BENCH_WAIT_QUIET, how often a round that turned out noisy is measured again. */
export const NOISY_RETRIES = 2;
/** holdfast builds its pipeline at start; it may take longer than a C program to accept. */
const HOLDFAST_READY_TIMEOUT_MS = 15_000;

export interface HttpProxyOptions {
  /** Measured seconds per target per round. */
  readonly seconds?: number;
  readonly rounds?: number;
  /** Response body sizes in bytes; one origin process each. */
  readonly sizes?: readonly number[];
  /** Which legs to run (default all three, in this order). */
  readonly targets?: readonly Target[];
  readonly threads?: number;
  readonly connections?: number;
  readonly warmupSeconds?: number;
  /**
   * Before each measured run, wait up to this many seconds for other programs to use less than
   * NOISY_FOREIGN_CORES, and measure a round that turned noisy anyway again (up to NOISY_RETRIES
   * times, keeping the quietest). 0: neither. For shared machines.
   */
  readonly waitQuietSeconds?: number;
  /**
   * Pin each one-thread proxy (HAProxy nbthread 1, holdfast with one worker), every thread of it
   * (Node's GC and libuv helpers too), to the last core with `taskset`, so that both get exactly one
   * core; the two-thread arms, wrk and the origin stay unpinned. Default off (BENCH_PIN=1).
   */
  readonly pin?: boolean;
  /** JSON report path; null writes none. Default DEFAULT_OUT. */
  readonly out?: string | null;
  /** Progress lines (default: stderr, so stdout carries only the table). */
  readonly log?: (line: string) => void;
}

/** One measured wrk run, with the CPU other programs took meanwhile. */
export interface Round extends WrkResult {
  /** Average cores used by processes outside the benchmark during the run; null off Linux. */
  readonly foreignCores: number | null;
  /**
   * CPU microseconds the proxy process spent per completed request (null for direct, or off Linux).
   * Less sensitive to a busy machine than req/s: work done per request, not how fast it got a core.
   */
  readonly proxyCpuUsPerRequest: number | null;
  /** The same for the origin: what the measured leg cost the origin (should be equal for all legs). */
  readonly originCpuUsPerRequest: number | null;
}

const isNoisy = (r: Round): boolean => r.foreignCores !== null && r.foreignCores >= NOISY_FOREIGN_CORES;

export interface Result {
  readonly size: number;
  readonly target: Target;
  /** Median over rounds. */
  readonly requestsPerSec: number;
  /** Median over rounds of each round's p50. */
  readonly latencyP50Ms: number;
  /** Median over rounds of each round's p99. */
  readonly latencyP99Ms: number;
  /** (max − min) / median of req/s over rounds: how far to trust the median. */
  readonly requestsPerSecSpread: number;
  /** Most cores other programs took during any round of this target (null off Linux). */
  readonly maxForeignCores: number | null;
  /** Median over rounds of Round.proxyCpuUsPerRequest. */
  readonly proxyCpuUsPerRequest: number | null;
  readonly rounds: readonly Round[];
}

export interface Ratios {
  readonly size: number;
  /** holdfast req/s ÷ HAProxy req/s (target ≥ 1.0). */
  readonly holdfastVsHaproxyRps: number | null;
  /** holdfast p99 ÷ HAProxy p99 (target ≤ 1.2). */
  readonly holdfastVsHaproxyP99: number | null;
  /** holdfast CPU per request ÷ HAProxy CPU per request (lower is better; robust to a busy machine). */
  readonly holdfastVsHaproxyCpu: number | null;
  /** holdfast req/s ÷ holdfast-nolog req/s: what failover logging costs without failures (target ≥ 0.95). */
  logOnVsOffRps: number | null;
  /** holdfast CPU per request ÷ holdfast-nolog CPU per request. */
  logOnVsOffCpu: number | null;
  /** holdfast req/s ÷ direct req/s: the share of the origin's rate that survives the proxy. */
  readonly holdfastVsDirectRps: number | null;
  readonly haproxyVsDirectRps: number | null;
  /** holdfast with 2 workers ÷ HAProxy nbthread 2: req/s, p99, CPU per request. */
  readonly twoWorkersVsHaproxyRps: number | null;
  readonly twoWorkersVsHaproxyP99: number | null;
  readonly twoWorkersVsHaproxyCpu: number | null;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function summarize(size: number, target: Target, rounds: readonly Round[]): Result {
  const rps = rounds.map((r) => r.requestsPerSec);
  const med = median(rps);
  const foreign = rounds.map((r) => r.foreignCores).filter((c): c is number => c !== null);
  const proxyCpu = rounds.map((r) => r.proxyCpuUsPerRequest).filter((c): c is number => c !== null);
  return {
    size,
    target,
    requestsPerSec: med,
    latencyP50Ms: median(rounds.map((r) => r.latencyP50Ms)),
    latencyP99Ms: median(rounds.map((r) => r.latencyP99Ms)),
    requestsPerSecSpread: med > 0 ? (Math.max(...rps) - Math.min(...rps)) / med : Number.NaN,
    maxForeignCores: foreign.length > 0 ? Math.max(...foreign) : null,
    proxyCpuUsPerRequest: proxyCpu.length > 0 ? median(proxyCpu) : null,
    rounds,
  };
}

export function ratios(results: readonly Result[]): Ratios[] {
  const sizes = [...new Set(results.map((r) => r.size))];
  return sizes.map((size) => {
    const of = (t: Target): Result | undefined => results.find((r) => r.size === size && r.target === t);
    const d = of('direct');
    const h = of('haproxy');
    const f = of('holdfast');
    const n = of('holdfast-nolog');
    const h2 = of('haproxy-2t');
    const f2 = of('holdfast-2w');
    const div = (a: number | undefined, b: number | undefined): number | null =>
      a !== undefined && b !== undefined && b > 0 ? a / b : null;
    return {
      size,
      holdfastVsHaproxyRps: div(f?.requestsPerSec, h?.requestsPerSec),
      holdfastVsHaproxyP99: div(f?.latencyP99Ms, h?.latencyP99Ms),
      holdfastVsHaproxyCpu: div(f?.proxyCpuUsPerRequest ?? undefined, h?.proxyCpuUsPerRequest ?? undefined),
      logOnVsOffRps: div(f?.requestsPerSec, n?.requestsPerSec),
      logOnVsOffCpu: div(f?.proxyCpuUsPerRequest ?? undefined, n?.proxyCpuUsPerRequest ?? undefined),
      holdfastVsDirectRps: div(f?.requestsPerSec, d?.requestsPerSec),
      haproxyVsDirectRps: div(h?.requestsPerSec, d?.requestsPerSec),
      twoWorkersVsHaproxyRps: div(f2?.requestsPerSec, h2?.requestsPerSec),
      twoWorkersVsHaproxyP99: div(f2?.latencyP99Ms, h2?.latencyP99Ms),
      twoWorkersVsHaproxyCpu: div(f2?.proxyCpuUsPerRequest ?? undefined, h2?.proxyCpuUsPerRequest ?? undefined),
    };
  });
}

function sizeLabel(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

const fmtRatio = (x: number | null): string => (x === null ? '–' : `${x.toFixed(2)}×`);

/** The markdown tables the README quotes: per-target medians, then holdfast's ratios. */
export function formatTable(results: readonly Result[]): string {
  const rows = [
    '| size | target | req/s | p50 ms | p99 ms | proxy CPU µs/req | req/s spread | others\' CPU |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
    ...results.map(
      (r) =>
        `| ${sizeLabel(r.size)} | ${r.target} | ${Math.round(r.requestsPerSec)} | ${r.latencyP50Ms.toFixed(2)} | ` +
        `${r.latencyP99Ms.toFixed(2)} | ${r.proxyCpuUsPerRequest === null ? '–' : r.proxyCpuUsPerRequest.toFixed(1)} | ` +
        `${r.rounds.length > 1 ? `${(r.requestsPerSecSpread * 100).toFixed(1)} %` : '–'} | ` +
        `${r.maxForeignCores === null ? '–' : r.maxForeignCores.toFixed(2)} |`,
    ),
    '',
    '| size | holdfast/haproxy req/s (≥ 1.00) | holdfast/haproxy p99 (≤ 1.20) | holdfast/haproxy CPU per req | failover on/off req/s (≥ 0.95) | failover on/off CPU per req | holdfast/direct req/s | haproxy/direct req/s | 2 workers/nbthread 2 req/s (≥ 1.00) | 2 workers/nbthread 2 p99 | 2 workers/nbthread 2 CPU per req |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...ratios(results).map(
      (q) =>
        `| ${sizeLabel(q.size)} | ${fmtRatio(q.holdfastVsHaproxyRps)} | ${fmtRatio(q.holdfastVsHaproxyP99)} | ` +
        `${fmtRatio(q.holdfastVsHaproxyCpu)} | ${fmtRatio(q.logOnVsOffRps)} | ${fmtRatio(q.logOnVsOffCpu)} | ` +
        `${fmtRatio(q.holdfastVsDirectRps)} | ${fmtRatio(q.haproxyVsDirectRps)} | ` +
        `${fmtRatio(q.twoWorkersVsHaproxyRps)} | ${fmtRatio(q.twoWorkersVsHaproxyP99)} | ${fmtRatio(q.twoWorkersVsHaproxyCpu)} |`,
    ),
    '',
    ...verdicts(results),
  ];
  return rows.join('\n');
}

const fmtCpu = (r: Result | undefined): string => (r?.proxyCpuUsPerRequest == null ? '–' : `${r.proxyCpuUsPerRequest.toFixed(1)}`);

/**
 * One line per issue 16 target, `TARGET <name>: met|not met — <figure>`, CPU per request beside each.
 * A target whose arms did not run is "not met — not measured".
 */
export function verdicts(results: readonly Result[]): string[] {
  const of = (size: number, t: Target): Result | undefined => results.find((r) => r.size === size && r.target === t);
  const sizes = [...new Set(results.map((r) => r.size))];
  const line = (name: string, met: boolean | null, figure: string): string =>
    `TARGET ${name}: ${met === true ? 'met' : 'not met'} — ${met === null ? 'not measured' : figure}`;
  /** holdfast-arm ÷ haproxy-arm req/s at one size, with both CPU figures. */
  const vsHaproxy = (name: string, size: number, mine: Target, peer: Target): string => {
    const f = of(size, mine);
    const h = of(size, peer);
    if (!f || !h || h.requestsPerSec <= 0) return line(name, null, '');
    const x = f.requestsPerSec / h.requestsPerSec;
    return line(
      name,
      x >= TARGET_RPS_RATIO,
      `${sizeLabel(size)}: ${x.toFixed(2)}× req/s (${Math.round(f.requestsPerSec)} vs ${Math.round(h.requestsPerSec)}, target ≥ ${TARGET_RPS_RATIO.toFixed(2)}); ` +
        `CPU per request ${fmtCpu(f)} vs ${fmtCpu(h)} µs`,
    );
  };
  const out = [vsHaproxy('1k-vs-haproxy', 1024, 'holdfast', 'haproxy'), vsHaproxy('64k-vs-haproxy', 65536, 'holdfast', 'haproxy')];

  const p99 = sizes.flatMap((size) => {
    const f = of(size, 'holdfast');
    const h = of(size, 'haproxy');
    return f && h && h.latencyP99Ms > 0 ? [{ size, x: f.latencyP99Ms / h.latencyP99Ms, f, h }] : [];
  });
  out.push(
    line(
      'p99',
      p99.length === 0 ? null : p99.every((p) => p.x <= TARGET_P99_RATIO),
      `${p99.map((p) => `${sizeLabel(p.size)} ${p.x.toFixed(2)}× (${p.f.latencyP99Ms.toFixed(2)} vs ${p.h.latencyP99Ms.toFixed(2)} ms; CPU per request ${fmtCpu(p.f)} vs ${fmtCpu(p.h)} µs)`).join(', ')}, target ≤ ${TARGET_P99_RATIO.toFixed(2)}× HAProxy`,
    ),
  );

  const cost = sizes.flatMap((size) => {
    const f = of(size, 'holdfast');
    const n = of(size, 'holdfast-nolog');
    return f?.proxyCpuUsPerRequest != null && n?.proxyCpuUsPerRequest != null && n.proxyCpuUsPerRequest > 0 && n.requestsPerSec > 0
      ? [{ size, cpu: f.proxyCpuUsPerRequest / n.proxyCpuUsPerRequest - 1, rps: f.requestsPerSec / n.requestsPerSec, f, n }]
      : [];
  });
  const pct = (x: number): string => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(1)} %`;
  out.push(
    line(
      'failover-cost',
      cost.length === 0 ? null : cost.every((c) => c.cpu < TARGET_FAILOVER_COST),
      `${cost.map((c) => `${sizeLabel(c.size)} CPU per request ${pct(c.cpu)} (${fmtCpu(c.f)} vs ${fmtCpu(c.n)} µs), req/s ${c.rps.toFixed(2)}×`).join(', ')}, failover on vs off, target < ${(TARGET_FAILOVER_COST * 100).toFixed(0)} % CPU per request`,
    ),
  );

  const two = sizes.flatMap((size) => {
    const f = of(size, 'holdfast-2w');
    const h = of(size, 'haproxy-2t');
    return f && h && h.requestsPerSec > 0 ? [{ size, x: f.requestsPerSec / h.requestsPerSec, f, h }] : [];
  });
  out.push(
    line(
      '2-workers-vs-haproxy',
      two.length === 0 ? null : two.every((t) => t.x >= TARGET_RPS_RATIO),
      `${two.map((t) => `${sizeLabel(t.size)} ${t.x.toFixed(2)}× req/s (${Math.round(t.f.requestsPerSec)} vs ${Math.round(t.h.requestsPerSec)}; CPU per request ${fmtCpu(t.f)} vs ${fmtCpu(t.h)} µs)`).join(', ')}, workers: 2 vs nbthread 2, target ≥ ${TARGET_RPS_RATIO.toFixed(2)}×`,
    ),
  );
  return out;
}

/**
 * BENCH_SECONDS, BENCH_ROUNDS, BENCH_SIZES (comma list), BENCH_TARGETS (comma list), BENCH_THREADS,
 * BENCH_CONNECTIONS, BENCH_WAIT_QUIET (seconds); BENCH_QUICK=1: one round of 2 s, the same arms.
 */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): HttpProxyOptions {
  const int = (name: string, min: number): number | undefined => envInt(env, name, min);
  const list = (name: string): string[] | undefined => {
    const text = env[name];
    return text ? text.split(',').map((s) => s.trim()).filter((s) => s !== '') : undefined;
  };
  const sizes = list('BENCH_SIZES')?.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) throw new Error(`BENCH_SIZES: expected integers >= 0, received "${s}"`);
    return n;
  });
  const targets = list('BENCH_TARGETS')?.map((s) => {
    if (!(TARGETS as readonly string[]).includes(s)) throw new Error(`BENCH_TARGETS: expected ${TARGETS.join(', ')}, received "${s}"`);
    return s as Target;
  });
  const opts: { -readonly [K in keyof HttpProxyOptions]: HttpProxyOptions[K] } = {};
  const quick = env['BENCH_QUICK'] === '1';
  const seconds = int('BENCH_SECONDS', 1) ?? (quick ? QUICK_SECONDS : undefined);
  const rounds = int('BENCH_ROUNDS', 1) ?? (quick ? 1 : undefined);
  const threads = int('BENCH_THREADS', 1);
  const connections = int('BENCH_CONNECTIONS', 1);
  const waitQuiet = int('BENCH_WAIT_QUIET', 0);
  if (seconds !== undefined) opts.seconds = seconds;
  if (rounds !== undefined) opts.rounds = rounds;
  if (threads !== undefined) opts.threads = threads;
  if (connections !== undefined) opts.connections = connections;
  if (waitQuiet !== undefined) opts.waitQuietSeconds = waitQuiet;
  if (env['BENCH_PIN'] === '1') opts.pin = true;
  if (sizes !== undefined) opts.sizes = sizes;
  if (targets !== undefined) opts.targets = targets;
  return opts;
}

/** One http service per size, each with the size's origin as its only backend. */
export function holdfastConfig(routes: readonly { size: number; listenPort: number; originPort: number }[], failover = true, workers = 1): string {
  const lines = [
    '# Written by bench/http-proxy.ts: one service per response size, production defaults otherwise.',
    'version: 1',
    'dispatcher:',
    `  workers: ${workers}`,
    'logging:',
    '  level: warn',
    'admin:',
    '  enabled: true',
    "  listen: '127.0.0.1:0'",
    'services:',
  ];
  for (const r of routes) {
    lines.push(
      `  - name: bench-${r.size}`,
      '    protocol: http',
      `    listen: '127.0.0.1:${r.listenPort}'`,
      '    backends:',
      `      - id: origin-${r.size}`,
      `        address: '127.0.0.1:${r.originPort}'`,
      ...(failover ? [] : ['    http:', '      failover:', '        enabled: false']),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** `taskset -a -p -c <last core> pid`: every thread of the process on one core. */
async function pinToLastCore(pid: number): Promise<void> {
  const core = os.cpus().length - 1;
  const r = await runProcess('taskset', ['-a', '-p', '-c', String(core), String(pid)], 5_000);
  if (r.code !== 0) throw new Error(`taskset -a -p -c ${core} ${pid}: ${r.stderr.trim()}`);
}

async function peerVersion(command: string, args: string[]): Promise<string> {
  try {
    const r = await runProcess(command, args, 5_000);
    return (r.stdout + r.stderr).split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

/** Runs the benchmark and returns one Result per size × target, in run order. */
export async function run(opts: HttpProxyOptions = {}): Promise<Result[]> {
  const seconds = opts.seconds ?? DEFAULT_SECONDS;
  const rounds = opts.rounds ?? DEFAULT_ROUNDS;
  const sizes = opts.sizes ?? DEFAULT_SIZES;
  const targets = opts.targets ?? TARGETS;
  const threads = opts.threads ?? DEFAULT_THREADS;
  const connections = opts.connections ?? DEFAULT_CONNECTIONS;
  const warmupSeconds = opts.warmupSeconds ?? DEFAULT_WARMUP_SECONDS;
  const waitQuietSeconds = opts.waitQuietSeconds ?? 0;
  const pin = opts.pin ?? false;
  if (pin) requirePeers({ taskset: 'taskset' });
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (sizes.length === 0 || targets.length === 0) throw new Error('http-proxy: no sizes or no targets');

  const peers: { wrk: string; haproxy?: string } = targets.includes('haproxy') || targets.includes('haproxy-2t')
    ? requirePeers({ wrk: 'wrk', haproxy: 'haproxy' })
    : requirePeers({ wrk: 'wrk' });
  const load1 = os.loadavg()[0]!;
  if (load1 > 0.5) log(`warning: 1-minute load average is ${load1.toFixed(2)}; other work on this machine skews the numbers`);

  const dir = makeTempDir('holdfast-bench-http');
  const procs: Proc[] = [];
  try {
    // One origin process per size.
    const origins = new Map<number, number>();
    const originPid = new Map<number, number>();
    for (const size of sizes) {
      const p = await startProcess({
        name: `origin-${size}`,
        command: process.execPath,
        args: [BACKEND_SERVER, '--port', '0', '--size', String(size)],
        readyLine: /^listening (\d+)$/,
      });
      procs.push(p);
      origins.set(size, Number(p.readyMatch![1]));
      originPid.set(size, p.pid);
    }

    const ports = new Map<Target, Map<number, number>>();
    /** The process whose CPU counts as the proxy's, per proxied target. */
    const proxyPid = new Map<Target, number>();
    ports.set('direct', origins);

    for (const target of ['haproxy', 'haproxy-2t'] as const) {
      if (!targets.includes(target)) continue;
      const routes = [];
      for (const size of sizes) routes.push({ name: String(size), listenPort: await freePort(), origin: { host: '127.0.0.1', port: origins.get(size)! } });
      const hdir = path.join(dir, target);
      mkdirSync(hdir);
      const h = await startHaproxy({ routes, dir: hdir, haproxy: peers.haproxy!, nbthread: ARM_THREADS[target]! });
      procs.push(h);
      proxyPid.set(target, h.pid);
      if (pin && ARM_THREADS[target] === 1) await pinToLastCore(h.pid);
      ports.set(target, new Map(routes.map((r) => [Number(r.name), r.listenPort])));
    }

    for (const target of ['holdfast', 'holdfast-nolog', 'holdfast-2w'] as const) {
      if (!targets.includes(target)) continue;
      const routes = [];
      for (const size of sizes) routes.push({ size, listenPort: await freePort(), originPort: origins.get(size)! });
      const cfg = path.join(dir, `${target}.yaml`);
      writeFileSync(cfg, holdfastConfig(routes, target !== 'holdfast-nolog', ARM_THREADS[target]!));
      const [first, ...rest] = routes;
      const p = await startProcess({
        name: target,
        command: process.execPath,
        args: [HOLDFAST_BIN, 'dispatcher', '--config', cfg],
        cwd: REPO_ROOT,
        readyPort: { host: '127.0.0.1', port: first!.listenPort },
        readyTimeoutMs: HOLDFAST_READY_TIMEOUT_MS,
      });
      procs.push(p);
      proxyPid.set(target, p.pid);
      if (pin && ARM_THREADS[target] === 1) await pinToLastCore(p.pid);
      for (const r of rest) await waitForPort('127.0.0.1', r.listenPort);
      ports.set(target, new Map(routes.map((r) => [r.size, r.listenPort])));
    }

    const results: Result[] = [];
    for (const size of sizes) {
      const perTarget = new Map<Target, Round[]>(targets.map((t) => [t, []]));
      for (let round = 0; round < rounds; round++) {
        for (const target of targets) {
          const url = `http://127.0.0.1:${ports.get(target)!.get(size)!}/`;
          const common = { url, threads, connections, wrk: peers.wrk! };
          if (round === 0 && warmupSeconds > 0) await runWrk({ ...common, seconds: warmupSeconds, failOnErrors: false });
          const measure = async (): Promise<Round> => {
            if (waitQuietSeconds > 0) {
              const cores = await waitForQuiet(NOISY_FOREIGN_CORES, waitQuietSeconds * 1000);
              if (cores !== null && cores >= NOISY_FOREIGN_CORES) {
                log(`machine still busy after ${waitQuietSeconds} s (other programs: ${cores.toFixed(2)} cores); measuring anyway`);
              }
            }
            const before = sampleCpu();
            const w = await runWrk({ ...common, seconds });
            const after = sampleCpu();
            const perRequestUs = (pid: number | undefined): number | null =>
              before && after && pid !== undefined && w.requests > 0
                ? ((treeCpuMs(after, pid) - treeCpuMs(before, pid)) * 1000) / w.requests
                : null;
            return {
              ...w,
              foreignCores: before && after ? foreignCores(before, after) : null,
              proxyCpuUsPerRequest: perRequestUs(proxyPid.get(target)),
              originCpuUsPerRequest: perRequestUs(originPid.get(size)),
            };
          };
          let r = await measure();
          // With waiting on, a round that turned noisy anyway is measured again; the quietest attempt counts.
          for (let retry = 0; waitQuietSeconds > 0 && retry < NOISY_RETRIES && isNoisy(r); retry++) {
            log(`${sizeLabel(size)} round ${round + 1}/${rounds} ${target}: noisy (${r.foreignCores!.toFixed(2)} cores), measuring again`);
            const again = await measure();
            if ((again.foreignCores ?? 0) < (r.foreignCores ?? 0)) r = again;
          }
          perTarget.get(target)!.push(r);
          log(
            `${sizeLabel(size)} round ${round + 1}/${rounds} ${target}: ${Math.round(r.requestsPerSec)} req/s, ` +
              `p50 ${r.latencyP50Ms.toFixed(2)} ms, p99 ${r.latencyP99Ms.toFixed(2)} ms` +
              (r.proxyCpuUsPerRequest !== null ? `, proxy ${r.proxyCpuUsPerRequest.toFixed(1)} µs CPU/req` : '') +
              (isNoisy(r)
                ? ` (noisy: other programs used ${(r.foreignCores ?? 0).toFixed(2)} cores)`
                : ''),
          );
        }
      }
      for (const target of targets) results.push(summarize(size, target, perTarget.get(target)!));
    }

    const out = opts.out === undefined ? DEFAULT_OUT : opts.out;
    if (out !== null) {
      mkdirSync(path.dirname(out), { recursive: true });
      const report = {
        benchmark: 'http-proxy',
        date: new Date().toISOString(),
        settings: { seconds, rounds, sizes, targets, threads, connections, warmupSeconds, waitQuietSeconds, pin },
        machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', loadAvg1AtStart: load1 },
        versions: {
          node: process.version,
          haproxy: targets.includes('haproxy') ? await peerVersion(peers.haproxy!, ['-v']) : null,
          wrk: await peerVersion(peers.wrk!, ['-v']),
        },
        results,
        ratios: ratios(results),
      };
      writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
      log(`results written to ${out}`);
    }
    return results;
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    removeTempDir(dir);
  }
}

async function main(): Promise<void> {
  const results = await run(optionsFromEnv());
  process.stdout.write(`${formatTable(results)}\n`);
}

runIfMain(import.meta.url, main);
