/**
 * @module What HTTP virtual sessions (issue 5) cost on the proxy's hot path: wrk → holdfast → one
 * origin (the http-proxy benchmark's), holdfast without sessions ("off") and with `sessions.cookie:
 * JSESSIONID` ("cookie"), the same requests to both: every request carries
 * `Cookie: lang=en; JSESSIONID=s<k>; theme=dark`, k cycling over BENCH_SESSION_KEYS values per wrk
 * thread (a Lua script; 1: one static header, no script). With "cookie" each request costs the
 * extraction, the session table lookup and touch, and the Set-Cookie check of its reply. Rounds
 * alternate the legs, each round starting with the next one; figures are medians over rounds, and
 * the ratios cookie ÷ off are the result.
 *
 * BENCH_BASE_BIN=<path to another build's bin/holdfast.js> adds a "base" leg (that build, no
 * sessions): off ÷ base is what the change costs a service that does not use sessions.
 *
 *   node dist/bench/http-sessions.js
 *   BENCH_SECONDS=3 BENCH_ROUNDS=5 BENCH_SESSION_KEYS=1 node dist/bench/http-sessions.js
 */
import { runIfMain } from './lib/main.js';
import { envInt } from './lib/env.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { foreignCores, sampleCpu, treeCpuMs } from './lib/cpu.js';
import { freePort, makeTempDir, removeTempDir, requirePeers, runProcess, startProcess, type Proc } from './lib/procs.js';
import { ERROR_RATIO_MAX, parseWrkOutput, type WrkResult } from './lib/wrk.js';
import { holdfastConfig } from './http-proxy.js';

export type Leg = 'base' | 'off' | 'cookie';

export interface HttpSessionsOptions {
  readonly seconds?: number;
  readonly rounds?: number;
  readonly size?: number;
  readonly connections?: number;
  /** Distinct session cookie values the requests cycle through (per wrk thread). */
  readonly sessionKeys?: number;
  /** Another build's bin/holdfast.js for the "base" leg; none: no base leg. */
  readonly baseBin?: string;
  readonly log?: (line: string) => void;
}

export interface LegResult {
  readonly leg: Leg;
  readonly requestsPerSec: number;
  readonly latencyP99Ms: number;
  readonly proxyCpuUsPerRequest: number | null;
  /** Every round's req/s, in order. */
  readonly rounds: readonly number[];
  /** The most cores other programs used in any round. */
  readonly foreignCores: number | null;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BACKEND_SERVER = fileURLToPath(new URL('./backend-server.js', import.meta.url));
const HOLDFAST_BIN = path.join(REPO_ROOT, 'bin', 'holdfast.js');
const WRK_SLACK_MS = 15_000;

/** wrk Lua: every request names one of `keys` sessions, in turn. */
export function wrkScript(keys: number): string {
  return [
    `local keys = ${keys}`,
    'local i = 0',
    'request = function()',
    '  i = (i + 1) % keys',
    '  return wrk.format(nil, nil, { ["Cookie"] = "lang=en; JSESSIONID=s" .. i .. "; theme=dark" })',
    'end',
    '',
  ].join('\n');
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export async function run(opts: HttpSessionsOptions = {}): Promise<LegResult[]> {
  const seconds = opts.seconds ?? 5;
  const rounds = opts.rounds ?? 3;
  const size = opts.size ?? 1024;
  const connections = opts.connections ?? 32;
  const keys = opts.sessionKeys ?? 10_000;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const { wrk } = requirePeers({ wrk: 'wrk' });
  const legs: Leg[] = opts.baseBin ? ['base', 'off', 'cookie'] : ['off', 'cookie'];
  const dir = makeTempDir('holdfast-bench-sessions');
  const procs: Proc[] = [];
  try {
    const origin = await startProcess({
      name: 'origin',
      command: process.execPath,
      args: [BACKEND_SERVER, '--port', '0', '--size', String(size)],
      readyLine: /^listening (\d+)$/,
    });
    procs.push(origin);
    const originPort = Number(origin.readyMatch![1]);
    const ports = new Map<Leg, number>();
    const pids = new Map<Leg, number>();
    for (const leg of legs) {
      const listenPort = await freePort();
      let yaml = holdfastConfig([{ size, listenPort, originPort }]);
      if (leg === 'cookie') yaml += '    sessions:\n      cookie: JSESSIONID\n';
      const cfg = path.join(dir, `${leg}.yaml`);
      writeFileSync(cfg, yaml);
      const bin = leg === 'base' ? opts.baseBin! : HOLDFAST_BIN;
      const p = await startProcess({
        name: `holdfast-${leg}`,
        command: process.execPath,
        args: [bin, 'dispatcher', '--config', cfg],
        cwd: path.dirname(path.dirname(bin)),
        readyPort: { host: '127.0.0.1', port: listenPort },
        readyTimeoutMs: 15_000,
      });
      procs.push(p);
      ports.set(leg, listenPort);
      pids.set(leg, p.pid);
    }
    const script = path.join(dir, 'sessions.lua');
    writeFileSync(script, wrkScript(keys));
    const wrkRun = async (leg: Leg, secs: number): Promise<WrkResult> => {
      const args = ['-t1', `-c${connections}`, `-d${secs}s`, '--latency'];
      if (keys === 1) args.push('-H', 'Cookie: lang=en; JSESSIONID=s0; theme=dark');
      else args.push('-s', script);
      args.push(`http://127.0.0.1:${ports.get(leg)!}/`);
      const r = await runProcess(wrk, args, secs * 1000 + WRK_SLACK_MS);
      if (r.code !== 0) throw new Error(`wrk ${args.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`);
      const w = parseWrkOutput(r.stdout);
      if (w.errorRatio > ERROR_RATIO_MAX) throw new Error(`wrk ${leg}: ${(w.errorRatio * 100).toFixed(3)} % failed\n${r.stdout}`);
      return w;
    };
    // Warmup: JIT, pools, and (cookie) every session key opened once.
    for (const leg of legs) await wrkRun(leg, 2);
    const perLeg = new Map<Leg, { rps: number; p99: number; cpu: number | null; foreign: number | null }[]>(legs.map((l) => [l, []]));
    for (let round = 0; round < rounds; round++) {
      // Each round starts with the next leg, so that no leg always runs first (or last) in a round.
      for (const leg of legs.map((_, j) => legs[(j + round) % legs.length]!)) {
        const before = sampleCpu();
        const w = await wrkRun(leg, seconds);
        const after = sampleCpu();
        const cpu = before && after && w.requests > 0 ? ((treeCpuMs(after, pids.get(leg)!) - treeCpuMs(before, pids.get(leg)!)) * 1000) / w.requests : null;
        const foreign = before && after ? foreignCores(before, after) : null;
        perLeg.get(leg)!.push({ rps: w.requestsPerSec, p99: w.latencyP99Ms, cpu, foreign });
        log(
          `round ${round + 1}/${rounds} ${leg}: ${Math.round(w.requestsPerSec)} req/s, p99 ${w.latencyP99Ms.toFixed(2)} ms` +
            (cpu !== null ? `, ${cpu.toFixed(1)} µs CPU/req` : '') +
            (foreign !== null ? `, others ${foreign.toFixed(2)} cores` : ''),
        );
      }
    }
    return legs.map((leg) => {
      const rs = perLeg.get(leg)!;
      const cpus = rs.map((r) => r.cpu).filter((c): c is number => c !== null);
      const foreign = rs.map((r) => r.foreign).filter((c): c is number => c !== null);
      return {
        leg,
        requestsPerSec: median(rs.map((r) => r.rps)),
        latencyP99Ms: median(rs.map((r) => r.p99)),
        proxyCpuUsPerRequest: cpus.length > 0 ? median(cpus) : null,
        rounds: rs.map((r) => r.rps),
        foreignCores: foreign.length > 0 ? Math.max(...foreign) : null,
      };
    });
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    removeTempDir(dir);
  }
}

export function formatTable(results: readonly LegResult[]): string {
  const of = (leg: Leg) => results.find((r) => r.leg === leg);
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a != null && b != null && b > 0 ? `${(a / b).toFixed(3)}×` : '–');
  const rows = [
    '| leg | req/s | p99 ms | proxy CPU µs/req | req/s per round | others\' CPU |',
    '|---|---:|---:|---:|---|---:|',
    ...results.map(
      (r) =>
        `| ${r.leg} | ${Math.round(r.requestsPerSec)} | ${r.latencyP99Ms.toFixed(2)} | ${r.proxyCpuUsPerRequest?.toFixed(1) ?? '–'} | ` +
        `${r.rounds.map((x) => Math.round(x)).join(', ')} | ${r.foreignCores?.toFixed(2) ?? '–'} |`,
    ),
    '',
    `cookie/off req/s ${ratio(of('cookie')?.requestsPerSec, of('off')?.requestsPerSec)}, ` +
      `cookie/off CPU per req ${ratio(of('cookie')?.proxyCpuUsPerRequest, of('off')?.proxyCpuUsPerRequest)}` +
      (of('base')
        ? `; off/base req/s ${ratio(of('off')?.requestsPerSec, of('base')?.requestsPerSec)}, off/base CPU per req ${ratio(of('off')?.proxyCpuUsPerRequest, of('base')?.proxyCpuUsPerRequest)}`
        : ''),
  ];
  return rows.join('\n');
}

/** BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS, BENCH_SESSION_KEYS, BENCH_BASE_BIN. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): HttpSessionsOptions {
  const opts: { -readonly [K in keyof HttpSessionsOptions]: HttpSessionsOptions[K] } = {};
  const seconds = envInt(env, 'BENCH_SECONDS', 1);
  const rounds = envInt(env, 'BENCH_ROUNDS', 1);
  const connections = envInt(env, 'BENCH_CONNECTIONS', 1);
  const keys = envInt(env, 'BENCH_SESSION_KEYS', 1);
  if (seconds !== undefined) opts.seconds = seconds;
  if (rounds !== undefined) opts.rounds = rounds;
  if (connections !== undefined) opts.connections = connections;
  if (keys !== undefined) opts.sessionKeys = keys;
  if (env.BENCH_BASE_BIN) opts.baseBin = env.BENCH_BASE_BIN;
  return opts;
}

async function main(): Promise<void> {
  process.stdout.write(`${formatTable(await run(optionsFromEnv()))}\n`);
}

runIfMain(import.meta.url, main);
