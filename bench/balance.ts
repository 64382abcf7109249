/**
 * @module Balancer comparison (issue 3): three backends of unequal speed (one three times slower)
 * under bursty load; shell, least-loaded, least-connections and round-robin compared on p99 latency
 * and on the standard deviation of backend load.
 *
 * This is a deterministic discrete-event simulation in one process, not a macro benchmark: the
 * question is which *algorithm* spreads work better, and that depends only on what each balancer
 * sees (in-flight counts, load samples delta_load old) and on the backends' queues. Real processes
 * would add scheduler noise of a 2-core machine shared with the load generator and make runs
 * unrepeatable, while teaching nothing about the algorithms. What is real: the balancers (created by
 * name from src/balance/), the Backend objects they read, and the LoadManager (src/load/) that turns
 * every load vector into `load` and the shell forecast, on a FakeClock moved by the simulation.
 *
 * Model (all times simulated):
 * - Backends a, b (mean service 10 ms) and c (30 ms: three times slower), each WORKERS workers and an
 *   unbounded FIFO queue. Service times are exponential; every request draws one unit-mean work
 *   figure at arrival (common random numbers: each balancer faces the same requests) scaled by the
 *   chosen backend's mean.
 * - Arrivals: a Poisson process modulated on/off (bursty): quiet phases (mean QUIET_MS) at
 *   QUIET_RATE, bursts (mean BURST_MS) at BURST_RATE, phase lengths exponential.
 * - Every delta_load each backend's agent sends a load vector: cpu = busy workers averaged over the
 *   interval / WORKERS (as /proc/stat deltas give it), backlog = queued requests / BACKLOG_FULL
 *   (capped at 1), load = 0.5 cpu + 0.5 backlog, quantised to u16 as on the wire.
 * - The forwarder's `active` is bumped at dispatch and dropped at completion (least-connections).
 * Metrics after WARMUP_MS: latency = completion - arrival (pooled over seeds); σ load = the
 * population standard deviation of the three backends' sampled load, averaged over sample instants;
 * slow share = fraction of requests sent to c (its fair share by capacity is 1/7 ≈ 14 %).
 *
 *   node dist/bench/balance.js          (or: node dist/bench/run.js balance)
 *   BENCH_BALANCE_SECONDS=30 BENCH_BALANCE_INTERVALS=10,100 node dist/bench/balance.js
 */
import { runIfMain } from './lib/main.js';
import { prng } from './lib/prng.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBalancer } from '../src/balance/index.js';
import type { Balancer } from '../src/balance/index.js';
import { FakeClock } from '../src/core/clock.js';
import { LoadManager } from '../src/load/load-manager.js';
import { Backend } from '../src/core/backend.js';
import type { LoadVector } from '../src/wire/load-vector.js';

export const BALANCERS: readonly string[] = ['shell', 'least-loaded', 'least-connections', 'round-robin'];
/** Simulated seconds per run (after which arrivals stop; in-flight work is drained and counted). */
export const DEFAULT_SECONDS = 120;
export const DEFAULT_SEEDS: readonly number[] = [1, 2, 3];
/** delta_load values compared: the agent's load vector interval. */
export const DEFAULT_INTERVALS_MS: readonly number[] = [10, 100, 1000];
/** T of SARA eq. 5 (the config default). */
export const HISTORY = 8;
/** alpha of SARA eq. 1 (the config default). */
export const ALPHA = 0.5;

/** Mean service time per backend: two fast, one three times slower. */
export const SERVICE_MS: readonly number[] = [10, 10, 30];
export const WORKERS = 4;
/** Queued requests at which the backlog indicator reads 1 (4 per worker). */
export const BACKLOG_FULL = 16;
/** Requests per second in quiet phases and in bursts. Capacity: 4/10ms x 2 + 4/30ms ≈ 933 req/s. */
export const QUIET_RATE = 250;
export const BURST_RATE = 900;
export const QUIET_MS = 800;
export const BURST_MS = 200;
/** Latencies and load samples before this are not counted (queues and histories fill up). */
export const WARMUP_MS = 5_000;

export const DEFAULT_OUT = fileURLToPath(new URL('../../bench/results/balance.json', import.meta.url));

export interface BalanceOptions {
  readonly seconds?: number;
  readonly seeds?: readonly number[];
  readonly intervalsMs?: readonly number[];
  readonly balancers?: readonly string[];
  /** JSON report path; null writes none. */
  readonly out?: string | null;
}

export interface RunResult {
  readonly balancer: string;
  readonly intervalMs: number;
  readonly seed: number;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  readonly loadStdDev: number;
  /** Requests sent to each backend (a, b, c), as fractions. */
  readonly shares: readonly number[];
  /** Time-averaged utilisation (busy workers / WORKERS) of each backend. */
  readonly utilisation: readonly number[];
}

export interface Summary {
  readonly balancer: string;
  readonly intervalMs: number;
  readonly requests: number;
  /** Percentiles of the latencies of all seeds pooled. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  /** Mean over seeds of RunResult.loadStdDev. */
  readonly loadStdDev: number;
  readonly slowShare: number;
  readonly slowUtilisation: number;
}

export interface BalanceReport {
  readonly summaries: readonly Summary[];
  readonly runs: readonly RunResult[];
  readonly wallMs: number;
}

export { prng };

/** Exponential with mean 1 (1 - u avoids log 0). */
function exp1(random: () => number): number {
  return -Math.log(1 - random());
}

const ARRIVAL = 0;
const COMPLETE = 1;
const SAMPLE = 2;
const PHASE = 3;

interface SimEvent {
  t: number;
  order: number;
  kind: number;
  /** COMPLETE: backend index; ARRIVAL: the phase it was drawn in (stale after a phase change). */
  backend: number;
  /** COMPLETE: arrival time of the request. */
  arrived: number;
}

/** A binary min-heap on (t, order): ties in time resolve in scheduling order, deterministically. */
class EventHeap {
  private readonly items: SimEvent[] = [];
  private order = 0;

  get size(): number {
    return this.items.length;
  }

  push(t: number, kind: number, backend = 0, arrived = 0): void {
    const items = this.items;
    const e: SimEvent = { t, order: this.order++, kind, backend, arrived };
    let i = items.push(e) - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(e, items[p]!)) break;
      items[i] = items[p]!;
      i = p;
    }
    items[i] = e;
  }

  pop(): SimEvent {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= items.length) break;
        const r = l + 1;
        const c = r < items.length && less(items[r]!, items[l]!) ? r : l;
        if (!less(items[c]!, last)) break;
        items[i] = items[c]!;
        i = c;
      }
      items[i] = last;
    }
    return top;
  }
}

function less(x: SimEvent, y: SimEvent): boolean {
  return x.t < y.t || (x.t === y.t && x.order < y.order);
}

/** p-th percentile (nearest rank) of sorted values. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

interface SimBackend {
  readonly backend: Backend;
  readonly serviceMs: number;
  busy: number;
  /** Arrival times of queued requests, and their unit work, FIFO from `head`. */
  queue: number[];
  work: number[];
  head: number;
  /** ∫ busy dt in worker-ms, and its value at the last sample. */
  busyIntegral: number;
  sampledIntegral: number;
  lastChange: number;
  sent: number;
  seq: number;
}

/** One simulated run: one balancer, one delta_load, one seed. Latencies are appended to `latencies`. */
export function simulate(balancerName: string, intervalMs: number, seed: number, seconds: number, latencies: number[]): RunResult {
  const clock = new FakeClock(0);
  const backends = SERVICE_MS.map((_, i) => {
    const b = new Backend('bench', String.fromCharCode(97 + i), '127.0.0.1', 10_000 + i, 1, i, i + 1);
    b.state = 'up';
    return b;
  });
  const sims: SimBackend[] = backends.map((backend, i) => ({
    backend,
    serviceMs: SERVICE_MS[i]!,
    busy: 0,
    queue: [],
    work: [],
    head: 0,
    busyIntegral: 0,
    sampledIntegral: 0,
    lastChange: 0,
    sent: 0,
    seq: 0,
  }));
  const manager = new LoadManager('bench', backends, { intervalMs, history: HISTORY, alpha: ALPHA }, clock);
  manager.start();
  const balancer: Balancer<Backend> = createBalancer<Backend>(balancerName);
  balancer.update(backends);

  // Separate streams: arrivals and work do not depend on the balancer's choices.
  const arrivalRandom = prng(seed * 2654435761);
  const workRandom = prng(seed * 40503 + 17);
  const phaseRandom = prng(seed * 69069 + 1);
  const endMs = seconds * 1000;
  const heap = new EventHeap();
  let bursting = false;
  let rate = QUIET_RATE;
  let phase = 0;
  let phaseEnd = QUIET_MS * exp1(phaseRandom);
  heap.push(phaseEnd, PHASE);
  heap.push((1000 / rate) * exp1(arrivalRandom), ARRIVAL, phase);
  heap.push(intervalMs, SAMPLE);

  let requests = 0;
  let latencySum = 0;
  let stdDevSum = 0;
  let stdDevCount = 0;
  const firstLatency = latencies.length;

  const settle = (s: SimBackend, t: number): void => {
    s.busyIntegral += s.busy * (t - s.lastChange);
    s.lastChange = t;
  };
  const startService = (s: SimBackend, index: number, t: number, arrived: number, work: number): void => {
    settle(s, t);
    s.busy++;
    heap.push(t + s.serviceMs * work, COMPLETE, index, arrived);
  };

  while (heap.size > 0) {
    const e = heap.pop();
    const t = e.t;
    if (t > clock.now()) clock.advance(t - clock.now());
    switch (e.kind) {
      case ARRIVAL: {
        if (e.backend !== phase) break;
        const work = exp1(workRandom);
        const result = balancer.pick();
        if (result.type === 'pick') {
          const index = result.backend.index;
          const s = sims[index]!;
          s.backend.active++;
          if (t >= WARMUP_MS) s.sent++;
          if (s.busy < WORKERS) startService(s, index, t, t, work);
          else {
            s.queue.push(t);
            s.work.push(work);
          }
        }
        const next = t + (1000 / rate) * exp1(arrivalRandom);
        if (next < endMs) heap.push(next, ARRIVAL, phase);
        break;
      }
      case COMPLETE: {
        const s = sims[e.backend]!;
        settle(s, t);
        s.busy--;
        s.backend.active--;
        if (e.arrived >= WARMUP_MS) {
          const latency = t - e.arrived;
          latencies.push(latency);
          latencySum += latency;
          requests++;
        }
        if (s.head < s.queue.length) {
          const arrived = s.queue[s.head]!;
          const work = s.work[s.head]!;
          s.head++;
          if (s.head > 1024 && s.head * 2 > s.queue.length) {
            s.queue = s.queue.slice(s.head);
            s.work = s.work.slice(s.head);
            s.head = 0;
          }
          startService(s, e.backend, t, arrived, work);
        }
        break;
      }
      case SAMPLE: {
        let sum = 0;
        let sumSq = 0;
        for (const s of sims) {
          settle(s, t);
          const cpu = Math.min(1, (s.busyIntegral - s.sampledIntegral) / (WORKERS * intervalMs));
          s.sampledIntegral = s.busyIntegral;
          const backlog = Math.min(1, (s.queue.length - s.head) / BACKLOG_FULL);
          const load = Math.round((0.5 * cpu + 0.5 * backlog) * 65535) / 65535;
          const vector: LoadVector = { host: s.backend.agent!, seq: ++s.seq, timestamp: t >>> 0, cpu, memory: 0, network: 0, io: 0, backlog, load };
          manager.onVector(s.backend, vector);
          sum += load;
          sumSq += load * load;
        }
        if (t >= WARMUP_MS) {
          const n = sims.length;
          const mean = sum / n;
          stdDevSum += Math.sqrt(Math.max(0, sumSq / n - mean * mean));
          stdDevCount++;
        }
        // Agents keep reporting while work drains after the last arrival.
        if (t + intervalMs < endMs || sims.some((s) => s.busy > 0)) heap.push(t + intervalMs, SAMPLE);
        break;
      }
      case PHASE: {
        bursting = !bursting;
        rate = bursting ? BURST_RATE : QUIET_RATE;
        phaseEnd = t + (bursting ? BURST_MS : QUIET_MS) * exp1(phaseRandom);
        if (phaseEnd < endMs) heap.push(phaseEnd, PHASE);
        // Poisson arrivals are memoryless: the pending one, drawn at the old rate, is redrawn.
        phase++;
        const next = t + (1000 / rate) * exp1(arrivalRandom);
        if (next < endMs) heap.push(next, ARRIVAL, phase);
        break;
      }
    }
  }
  manager.close();

  const mine = Float64Array.from(latencies.slice(firstLatency)).sort();
  const sent = sims.reduce((n, s) => n + s.sent, 0);
  const horizon = clock.now();
  return {
    balancer: balancerName,
    intervalMs,
    seed,
    requests,
    p50Ms: percentile(mine, 50),
    p99Ms: percentile(mine, 99),
    meanMs: requests > 0 ? latencySum / requests : Number.NaN,
    loadStdDev: stdDevCount > 0 ? stdDevSum / stdDevCount : Number.NaN,
    shares: sims.map((s) => (sent > 0 ? s.sent / sent : 0)),
    utilisation: sims.map((s) => s.busyIntegral / (WORKERS * horizon)),
  };
}

/** Every balancer x delta_load x seed; writes the JSON report unless `out` is null. */
export function run(opts: BalanceOptions = {}): BalanceReport {
  const started = performance.now();
  const seconds = opts.seconds ?? DEFAULT_SECONDS;
  const seeds = opts.seeds ?? DEFAULT_SEEDS;
  const intervals = opts.intervalsMs ?? DEFAULT_INTERVALS_MS;
  const balancers = opts.balancers ?? BALANCERS;
  const runs: RunResult[] = [];
  const summaries: Summary[] = [];
  for (const intervalMs of intervals) {
    for (const name of balancers) {
      const pooled: number[] = [];
      const mine: RunResult[] = [];
      for (const seed of seeds) mine.push(simulate(name, intervalMs, seed, seconds, pooled));
      runs.push(...mine);
      const sorted = Float64Array.from(pooled).sort();
      const requests = mine.reduce((n, r) => n + r.requests, 0);
      const avg = (f: (r: RunResult) => number): number => mine.reduce((n, r) => n + f(r), 0) / mine.length;
      summaries.push({
        balancer: name,
        intervalMs,
        requests,
        p50Ms: percentile(sorted, 50),
        p99Ms: percentile(sorted, 99),
        meanMs: mine.reduce((n, r) => n + r.meanMs * r.requests, 0) / requests,
        loadStdDev: avg((r) => r.loadStdDev),
        slowShare: avg((r) => r.shares[2]!),
        slowUtilisation: avg((r) => r.utilisation[2]!),
      });
    }
  }
  const report: BalanceReport = { summaries, runs, wallMs: performance.now() - started };
  const out = opts.out === undefined ? DEFAULT_OUT : opts.out;
  if (out !== null) {
    mkdirSync(path.dirname(out), { recursive: true });
    const json = {
      benchmark: 'balance',
      date: new Date().toISOString(),
      kind: 'deterministic discrete-event simulation (see bench/balance.ts)',
      settings: {
        seconds,
        seeds,
        intervalsMs: intervals,
        balancers,
        serviceMs: SERVICE_MS,
        workers: WORKERS,
        backlogFull: BACKLOG_FULL,
        quietRate: QUIET_RATE,
        burstRate: BURST_RATE,
        quietMs: QUIET_MS,
        burstMs: BURST_MS,
        warmupMs: WARMUP_MS,
        history: HISTORY,
        alpha: ALPHA,
      },
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', node: process.version },
      ...report,
    };
    writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);
    process.stderr.write(`results written to ${out}\n`);
  }
  return report;
}

const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;

/** The markdown table the README quotes. */
export function formatTable(report: BalanceReport): string {
  const rows = [
    '| delta_load | balancer | p50 ms | p99 ms | mean ms | σ load | share to slow c | c utilisation |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
    ...report.summaries.map(
      (s) =>
        `| ${s.intervalMs} ms | ${s.balancer} | ${s.p50Ms.toFixed(1)} | ${s.p99Ms.toFixed(1)} | ${s.meanMs.toFixed(1)} | ` +
        `${s.loadStdDev.toFixed(3)} | ${pct(s.slowShare)} | ${pct(s.slowUtilisation)} |`,
    ),
  ];
  return rows.join('\n');
}

/** BENCH_BALANCE_SECONDS (simulated seconds per run), BENCH_BALANCE_SEEDS and BENCH_BALANCE_INTERVALS
 * (comma lists). Names of their own: BENCH_SECONDS means measured wall seconds to http-proxy. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): BalanceOptions {
  const list = (name: string, min: number): number[] | undefined => {
    const text = env[name];
    if (text === undefined || text === '') return undefined;
    return text.split(',').map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected integers >= ${min}, received "${s}"`);
      return n;
    });
  };
  const opts: { -readonly [K in keyof BalanceOptions]: BalanceOptions[K] } = {};
  const seconds = list('BENCH_BALANCE_SECONDS', 10);
  if (seconds !== undefined) {
    if (seconds.length !== 1) throw new Error(`BENCH_BALANCE_SECONDS: expected one integer, received "${env.BENCH_BALANCE_SECONDS}"`);
    opts.seconds = seconds[0];
  }
  const seeds = list('BENCH_BALANCE_SEEDS', 0);
  if (seeds !== undefined) opts.seeds = seeds;
  const intervals = list('BENCH_BALANCE_INTERVALS', 1);
  if (intervals !== undefined) opts.intervalsMs = intervals;
  return opts;
}

function main(): void {
  const report = run(optionsFromEnv());
  process.stdout.write(`${formatTable(report)}\n`);
  process.stderr.write(`simulated in ${(report.wallMs / 1000).toFixed(1)} s\n`);
}

runIfMain(import.meta.url, main);
