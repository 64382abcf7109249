/**
 * @module Flood bounds (issue 18): an idle-connection flood against a real `holdfast dispatcher`.
 * 10 000 TCP connections (BENCH_QUICK: 4 000) from ten loopback source addresses open and stay
 * silent; meanwhile a normal client on 127.0.0.1 sends requests. Measured: the dispatcher's RSS
 * before and with the flood held (memory per idle connection), the connections the edge refused
 * past `limits.maxConnectionsPerAddress`, and the normal client's failures and p99 against the same
 * client with no flood (same run). Ends with `TARGET idle-flood: met|not met — <figure>`.
 *
 *   node dist/bench/hardening.js            BENCH_QUICK=1 node dist/bench/hardening.js
 */
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runIfMain } from './lib/main.js';
import { freePort, makeTempDir, removeTempDir, startProcess, waitForPort, type Proc } from './lib/procs.js';
import { median } from './http-proxy.js';
import { faultOptionsFromEnv, formatFaults, runFaults, type FaultResult } from './hardening-faults.js';
import { formatTable as formatFuzz, run as runFuzz, type FuzzResult } from '../fuzz/run.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BACKEND_SERVER = fileURLToPath(new URL('./backend-server.js', import.meta.url));
const HOLDFAST_BIN = path.join(REPO_ROOT, 'bin', 'holdfast.js');
/** Source addresses of the flood: the per-address limit (1024 by default) applies to each. */
const FLOOD_SOURCES = 10;
/** The configured bound the target holds memory to: per idle connection (a socket, its parser state). */
export const IDLE_BYTES_BOUND = 16 * 1024;

export interface HardeningOptions {
  readonly connections: number;
  readonly requests: number;
}

export interface HardeningResult {
  readonly connections: number;
  readonly opened: number;
  readonly refusedAtEdge: number;
  readonly rssBefore: number;
  readonly rssFlooded: number;
  readonly normal: { readonly quietP99Ms: number; readonly floodP99Ms: number; readonly failures: number; readonly requests: number };
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): HardeningOptions {
  const quick = env['BENCH_QUICK'] === '1';
  return { connections: quick ? 4_000 : 10_000, requests: quick ? 200 : 1_000 };
}

function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** `n` sequential GETs on one keep-alive connection: their latencies, and how many failed. */
async function normalClient(port: number, n: number): Promise<{ latencies: number[]; failures: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  let failures = 0;
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const ok = await new Promise<boolean>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 5_000 }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode === 200));
        });
        req.on('timeout', () => req.destroy());
        req.on('error', () => resolve(false));
      });
      latencies.push(performance.now() - t0);
      if (!ok) failures++;
    }
  } finally {
    agent.destroy();
  }
  return { latencies, failures };
}

const p99 = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)] ?? Number.NaN;
};

export async function run(opts: HardeningOptions): Promise<HardeningResult> {
  const dir = makeTempDir('holdfast-bench-hardening');
  const procs: Proc[] = [];
  const flood: net.Socket[] = [];
  try {
    const origin = await startProcess({ name: 'origin', command: process.execPath, args: [BACKEND_SERVER, '--port', '0', '--size', '1024'], readyLine: /^listening (\d+)$/ });
    procs.push(origin);
    const port = await freePort();
    const cfg = path.join(dir, 'holdfast.yaml');
    writeFileSync(
      cfg,
      [
        'version: 1',
        'logging: { level: warn }',
        'admin: { enabled: false }',
        'services:',
        '  - name: web',
        '    protocol: http',
        `    listen: '127.0.0.1:${port}'`,
        // The product's defaults, except the idle timeout: the flood must still be open when measured.
        '    http: { idleTimeoutMs: 120000 }',
        '    backends:',
        `      - { id: origin, address: '127.0.0.1:${origin.readyMatch![1]}' }`,
      ].join('\n'),
    );
    const hf = await startProcess({ name: 'holdfast', command: process.execPath, args: [HOLDFAST_BIN, 'dispatcher', '--config', cfg], cwd: REPO_ROOT, readyPort: { host: '127.0.0.1', port }, readyTimeoutMs: 15_000 });
    procs.push(hf);
    await waitForPort('127.0.0.1', port);
    const quiet = await normalClient(port, opts.requests);
    const rssBefore = rssOf(hf.pid);

    let opened = 0;
    let closedEarly = 0;
    const perSource = Math.ceil(opts.connections / FLOOD_SOURCES);
    for (let s = 0; s < FLOOD_SOURCES; s++) {
      const batch: Promise<void>[] = [];
      for (let i = 0; i < perSource && flood.length < opts.connections; i++) {
        const sock = net.connect({ host: '127.0.0.1', port, localAddress: `127.0.1.${s + 1}` });
        flood.push(sock);
        sock.on('error', () => {});
        batch.push(
          new Promise<void>((resolve) => {
            sock.once('connect', () => {
              opened++;
              resolve();
            });
            sock.once('close', () => {
              closedEarly++;
              resolve();
            });
          }),
        );
      }
      await Promise.all(batch);
    }
    // Let the edge close what it refuses, then measure with the rest held open.
    await new Promise((r) => setTimeout(r, 1_000));
    const flooded = await normalClient(port, opts.requests);
    const rssFlooded = rssOf(hf.pid);
    return {
      connections: opts.connections,
      opened,
      refusedAtEdge: closedEarly,
      rssBefore,
      rssFlooded,
      normal: { quietP99Ms: p99(quiet.latencies), floodP99Ms: p99(flooded.latencies), failures: flooded.failures + quiet.failures, requests: 2 * opts.requests },
    };
  } finally {
    for (const s of flood) s.destroy();
    await Promise.all(procs.map((p) => p.stop()));
    removeTempDir(dir);
  }
}

export function formatTable(r: HardeningResult): string {
  const held = r.opened - r.refusedAtEdge;
  const perConn = held > 0 ? (r.rssFlooded - r.rssBefore) / held : Number.NaN;
  const mib = (b: number): string => (b / 1048576).toFixed(1);
  const met = r.normal.failures === 0 && perConn <= IDLE_BYTES_BOUND;
  return [
    '| idle connections tried | held by holdfast | closed at the edge (per-address limit) | RSS before → flooded | per held connection | normal client p99, quiet → flooded | normal failures |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    `| ${r.connections} | ${held} | ${r.refusedAtEdge} | ${mib(r.rssBefore)} → ${mib(r.rssFlooded)} MiB | ${(perConn / 1024).toFixed(1)} KiB | ${r.normal.quietP99Ms.toFixed(2)} → ${r.normal.floodP99Ms.toFixed(2)} ms | ${r.normal.failures} of ${r.normal.requests} |`,
    '',
    `TARGET idle-flood: ${met ? 'met' : 'not met'} — ${held} idle connections held at ${(perConn / 1024).toFixed(1)} KiB each (bound ${IDLE_BYTES_BOUND / 1024} KiB), ${r.refusedAtEdge} refused at the edge, ${r.normal.failures} of ${r.normal.requests} normal requests failed, p99 ${r.normal.quietP99Ms.toFixed(2)} → ${r.normal.floodP99Ms.toFixed(2)} ms`,
  ].join('\n');
}

/** The idle-flood table, the fault table, then their verdict lines together at the end. */
export function formatAll(flood: HardeningResult, faults: FaultResult, fuzz: readonly FuzzResult[] = []): string {
  const split = (text: string): [string[], string[]] => {
    const lines = text.split('\n');
    return [lines.filter((l) => !l.startsWith('TARGET ')), lines.filter((l) => l.startsWith('TARGET '))];
  };
  const [floodBody, floodTargets] = split(formatTable(flood));
  const [faultBody, faultTargets] = split(formatFaults(faults));
  const [fuzzBody, fuzzTargets] = fuzz.length > 0 ? split(formatFuzz(fuzz)) : [[], []];
  return [...fuzzBody, ...floodBody, ...faultBody, ...fuzzTargets, ...floodTargets, ...faultTargets].join('\n');
}

/** Inputs per parser of the short fuzz run that gives this benchmark its fuzz verdicts (`npm run fuzz` runs 1 M). */
export function fuzzInputsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  return env['BENCH_QUICK'] === '1' ? 20_000 : 200_000;
}

async function main(): Promise<void> {
  const fuzz = runFuzz({ inputs: fuzzInputsFromEnv(), seed: 1 });
  const flood = await run(optionsFromEnv());
  const faults = await runFaults(faultOptionsFromEnv(), (line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${formatAll(flood, faults, fuzz)}\n`);
}

runIfMain(import.meta.url, main);
