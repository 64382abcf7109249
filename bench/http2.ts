/**
 * @module Macro benchmark of HTTP/2 to clients (issue 19): h2load (prior-knowledge h2c, 32
 * connections × 10 streams, one thread) → {HAProxy | holdfast} → the same HTTP/1.1 origin on
 * loopback, one proxy thread each, replies of 1 KiB and 64 KiB. Rounds alternate the targets;
 * medians over rounds; ratios holdfast/HAProxy of req/s and p99 (h2load prints no percentiles: they
 * come from its --log-file, one line per request). The chaos arm runs bench/failover-chaos with
 * HTTP/2 clients (16 connections × 4 streams: 64 requests in flight, 4× the HTTP/1.1 chaos run) while
 * origins are SIGKILLed.
 *
 *   node dist/bench/http2.js          BENCH_QUICK=1 node dist/bench/http2.js   (fewer, shorter rounds)
 *   BENCH_H2_CHAOS=0 skips the chaos arm; BENCH_H2_STREAMS sets the chaos streams per connection.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { envInt } from './lib/env.js';
import { startHaproxy } from './lib/haproxy.js';
import { runIfMain } from './lib/main.js';
import { freePort, makeTempDir, removeTempDir, requirePeers, runProcess, startProcess, waitForPort, type Proc } from './lib/procs.js';
import { median } from './http-proxy.js';
import * as chaos from './failover-chaos.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BACKEND_SERVER = fileURLToPath(new URL('./backend-server.js', import.meta.url));
const HOLDFAST_BIN = path.join(REPO_ROOT, 'bin', 'holdfast.js');

export type Arm = 'h2-1k' | 'h2-64k';
const ARMS: readonly { arm: Arm; size: number }[] = [
  { arm: 'h2-1k', size: 1024 },
  { arm: 'h2-64k', size: 65536 },
];
type Target = 'haproxy' | 'holdfast';
const TARGETS: readonly Target[] = ['haproxy', 'holdfast'];

export interface H2BenchOptions {
  readonly seconds: number;
  readonly rounds: number;
  readonly connections: number;
  readonly streams: number;
  readonly chaos: boolean;
  readonly chaosSeconds: number;
  readonly chaosStreams: number;
  readonly log?: (line: string) => void;
}

export interface ArmResult {
  readonly arm: Arm;
  readonly target: Target;
  readonly requestsPerSec: number;
  readonly latencyP99Ms: number;
  readonly failed: number;
}

export interface H2BenchResult {
  readonly arms: readonly ArmResult[];
  readonly chaos: { readonly failures: number; readonly requests: number; readonly kills: number; readonly randLarge: string } | null;
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): H2BenchOptions {
  const quick = env['BENCH_QUICK'] === '1';
  return {
    seconds: envInt(env, 'BENCH_SECONDS', 1) ?? (quick ? 3 : 8),
    rounds: envInt(env, 'BENCH_ROUNDS', 1) ?? (quick ? 1 : 3),
    connections: envInt(env, 'BENCH_CONNECTIONS', 1) ?? 32,
    streams: envInt(env, 'BENCH_STREAMS', 1) ?? 10,
    chaos: env['BENCH_H2_CHAOS'] !== '0',
    chaosSeconds: envInt(env, 'BENCH_CHAOS_SECONDS', 3) ?? (quick ? 12 : 30),
    chaosStreams: envInt(env, 'BENCH_H2_STREAMS', 1) ?? 4,
  };
}

function holdfastYaml(routes: readonly { name: string; listenPort: number; originPort: number }[]): string {
  const lines = ['version: 1', 'logging: { level: warn }', 'admin: { enabled: false }', 'services:'];
  for (const r of routes) {
    lines.push(
      `  - name: ${r.name}`,
      '    protocol: http',
      `    listen: '127.0.0.1:${r.listenPort}'`,
      '    http: { http2: true }',
      '    backends:',
      `      - { id: origin, address: '127.0.0.1:${r.originPort}' }`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The 99th percentile of h2load's --log-file durations (µs, third column), in ms. */
export function p99FromLog(text: string): number {
  const d: number[] = [];
  for (const line of text.split('\n')) {
    const f = line.split('\t');
    if (f.length >= 3) d.push(Number(f[2]));
  }
  if (d.length === 0) return Number.NaN;
  d.sort((a, b) => a - b);
  return d[Math.min(d.length - 1, Math.ceil(0.99 * d.length) - 1)]! / 1000;
}

/** h2load's summary: req/s and failed requests. */
export function parseH2load(out: string): { rps: number; failed: number; done: number } {
  const rps = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  const req = /requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored/.exec(out);
  if (!rps || !req) throw new Error(`h2load: unexpected output:\n${out}`);
  return { rps: Number(rps[1]), done: Number(req[1]), failed: Number(req[2]) + Number(req[3]) };
}

async function h2load(h2loadBin: string, url: string, o: H2BenchOptions, seconds: number, logFile: string): Promise<{ rps: number; p99: number; failed: number }> {
  const args = ['-c', String(o.connections), '-m', String(o.streams), '-t', '1', '-D', String(seconds), '--warm-up-time=1', `--log-file=${logFile}`, url];
  const r = await runProcess(h2loadBin, args, (seconds + 30) * 1000);
  const s = parseH2load(r.stdout);
  return { rps: s.rps, p99: p99FromLog(readFileSync(logFile, 'utf8')), failed: s.failed };
}

export async function run(opts: H2BenchOptions): Promise<H2BenchResult> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const peers = requirePeers({ h2load: 'h2load', haproxy: 'haproxy' });
  const dir = makeTempDir('holdfast-h2-');
  const procs: Proc[] = [];
  try {
    const origins = new Map<number, number>();
    for (const a of ARMS) {
      const p = await startProcess({ name: `origin-${a.size}`, command: process.execPath, args: [BACKEND_SERVER, '--port', '0', '--size', String(a.size)], readyLine: /^listening (\d+)$/ });
      procs.push(p);
      origins.set(a.size, Number(p.readyMatch![1]));
    }
    const routes: { name: string; arm: Arm; listenPort: number; originPort: number }[] = [];
    for (const a of ARMS) routes.push({ name: a.arm.replace(/[^A-Za-z0-9_-]/g, '_'), arm: a.arm, listenPort: await freePort(), originPort: origins.get(a.size)! });
    const ports = new Map<string, number>();
    const hRoutes = [];
    for (const r of routes) {
      const port = await freePort();
      ports.set(`haproxy ${r.arm}`, port);
      // `proto h2` on a cleartext bind: prior-knowledge h2c, as holdfast serves it.
      hRoutes.push({ name: r.name, listenPort: port, origin: { host: '127.0.0.1', port: r.originPort }, bindParams: 'proto h2' });
    }
    procs.push(await startHaproxy({ routes: hRoutes, dir, haproxy: peers.haproxy }));
    const cfg = path.join(dir, 'holdfast.yaml');
    writeFileSync(cfg, holdfastYaml(routes));
    procs.push(
      await startProcess({
        name: 'holdfast',
        command: process.execPath,
        args: [HOLDFAST_BIN, 'dispatcher', '--config', cfg],
        cwd: REPO_ROOT,
        readyPort: { host: '127.0.0.1', port: routes[0]!.listenPort },
        readyTimeoutMs: 15_000,
      }),
    );
    for (const r of routes) {
      ports.set(`holdfast ${r.arm}`, r.listenPort);
      await waitForPort('127.0.0.1', r.listenPort);
    }
    const arms: ArmResult[] = [];
    for (const a of ARMS) {
      const rounds = new Map<Target, { rps: number; p99: number; failed: number }[]>(TARGETS.map((t) => [t, []]));
      for (let round = 0; round < opts.rounds; round++) {
        for (const target of TARGETS) {
          const url = `http://127.0.0.1:${ports.get(`${target} ${a.arm}`)!}/`;
          const r = await h2load(peers.h2load, url, opts, opts.seconds, path.join(dir, `${target}-${a.arm}-${round}.log`));
          rounds.get(target)!.push(r);
          log(`${a.arm} round ${round + 1}/${opts.rounds} ${target}: ${Math.round(r.rps)} req/s, p99 ${r.p99.toFixed(2)} ms, ${r.failed} failed`);
        }
      }
      for (const target of TARGETS) {
        const rs = rounds.get(target)!;
        arms.push({ arm: a.arm, target, requestsPerSec: median(rs.map((r) => r.rps)), latencyP99Ms: median(rs.map((r) => r.p99)), failed: rs.reduce((n, r) => n + r.failed, 0) });
      }
    }
    await Promise.all(procs.splice(0).map((p) => p.stop()));

    let chaosResult: H2BenchResult['chaos'] = null;
    if (opts.chaos) {
      const c = await chaos.run({ ...chaos.optionsFromEnv(), seconds: opts.chaosSeconds, targets: ['holdfast'], http2Streams: opts.chaosStreams, out: null, log });
      const h = c.results.find((r) => r.target === 'holdfast');
      if (h) {
        // The classes marked "nothing" in DESIGN.md: all but rand-large.
        const nothing = h.classes.filter((k) => k.cls !== chaos.MAY_FAIL);
        const rl = h.classes.find((k) => k.cls === chaos.MAY_FAIL);
        chaosResult = {
          failures: nothing.reduce((n, k) => n + k.failures, 0) + h.preflightProblems.length + (h.proxyExited ? 1 : 0),
          requests: nothing.reduce((n, k) => n + k.requests, 0),
          kills: h.kills.length,
          randLarge: rl ? `${rl.failures}/${rl.requests}` : '–',
        };
      }
    }
    return { arms, chaos: chaosResult };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    removeTempDir(dir);
  }
}

const ratio = (r: H2BenchResult, arm: Arm, f: (x: ArmResult) => number): number | null => {
  const h = r.arms.find((x) => x.arm === arm && x.target === 'holdfast');
  const p = r.arms.find((x) => x.arm === arm && x.target === 'haproxy');
  return h && p && f(p) > 0 ? f(h) / f(p) : null;
};
const fmt = (x: number | null): string => (x === null ? '–' : `${x.toFixed(2)}×`);

export function formatTable(r: H2BenchResult): string {
  const lines = [
    '| arm | target | req/s | p99 ms | failed |',
    '|---|---|---:|---:|---:|',
    ...r.arms.map((a) => `| ${a.arm} | ${a.target} | ${Math.round(a.requestsPerSec)} | ${a.latencyP99Ms.toFixed(2)} | ${a.failed} |`),
    '',
    '| arm | holdfast/HAProxy req/s | holdfast/HAProxy p99 |',
    '|---|---:|---:|',
    ...ARMS.map((a) => `| ${a.arm} | ${fmt(ratio(r, a.arm, (x) => x.requestsPerSec))} | ${fmt(ratio(r, a.arm, (x) => x.latencyP99Ms))} |`),
    '',
  ];
  const k1 = ratio(r, 'h2-1k', (x) => x.requestsPerSec);
  const k64 = ratio(r, 'h2-64k', (x) => x.requestsPerSec);
  const p1 = ratio(r, 'h2-1k', (x) => x.latencyP99Ms);
  const p64 = ratio(r, 'h2-64k', (x) => x.latencyP99Ms);
  const met = k1 !== null && k64 !== null && k1 >= 1 && k64 >= 1;
  lines.push(`TARGET h2-vs-haproxy: ${met ? 'met' : 'not met'} — ${fmt(k1)} req/s at 1 KiB, ${fmt(k64)} at 64 KiB (≥ 1.00×); p99 ${fmt(p1)} and ${fmt(p64)}`);
  if (r.chaos === null) lines.push('TARGET chaos-over-h2: not met — not run (BENCH_H2_CHAOS=0)');
  else {
    lines.push(
      `TARGET chaos-over-h2: ${r.chaos.failures === 0 ? 'met' : 'not met'} — ${r.chaos.failures} client-visible failures in ${r.chaos.requests} requests of the "nothing" classes over HTTP/2, ${r.chaos.kills} backend SIGKILLs (rand-large ${r.chaos.randLarge} failed, allowed)`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  process.stdout.write(`${formatTable(await run(optionsFromEnv()))}\n`);
}

runIfMain(import.meta.url, main);
