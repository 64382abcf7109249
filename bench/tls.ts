/**
 * @module Macro benchmark of TLS termination (issue 13): wrk over TLS 1.3 → {HAProxy | holdfast} →
 * an HTTP/1.1 origin on loopback, both proxies with the same ECDSA P-256 certificate, TLS 1.3 only,
 * one thread each. Arms: keep-alive at 1 KiB and 64 KiB (req/s, p99, proxy CPU per request) and a
 * new connection per request at 1 KiB (`Connection: close`: one full handshake per request, so
 * req/s is handshakes/s). Rounds alternate the targets; medians over rounds; ratios holdfast/HAProxy.
 * The chaos arm runs bench/failover-chaos through TLS.
 *
 *   node dist/bench/tls.js            BENCH_QUICK=1 node dist/bench/tls.js   (fewer, shorter rounds)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeCertKit } from './lib/certs.js';
import { sampleCpu, treeCpuMs } from './lib/cpu.js';
import { envInt } from './lib/env.js';
import { startHaproxy } from './lib/haproxy.js';
import { runIfMain } from './lib/main.js';
import { freePort, requirePeers, startProcess, waitForPort, type Proc } from './lib/procs.js';
import { runWrk } from './lib/wrk.js';
import { median } from './http-proxy.js';
import * as chaos from './failover-chaos.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BACKEND_SERVER = fileURLToPath(new URL('./backend-server.js', import.meta.url));
const HOLDFAST_BIN = path.join(REPO_ROOT, 'bin', 'holdfast.js');

export type Arm = 'keepalive-1k' | 'keepalive-64k' | 'handshake-1k';
const ARMS: readonly { arm: Arm; size: number; close: boolean }[] = [
  { arm: 'keepalive-1k', size: 1024, close: false },
  { arm: 'keepalive-64k', size: 65536, close: false },
  { arm: 'handshake-1k', size: 1024, close: true },
];
type Target = 'haproxy' | 'holdfast';
const TARGETS: readonly Target[] = ['haproxy', 'holdfast'];

export interface TlsBenchOptions {
  readonly seconds: number;
  readonly rounds: number;
  readonly connections: number;
  /** Run the chaos arm (failover-chaos through TLS). */
  readonly chaos: boolean;
  readonly chaosSeconds: number;
  readonly log?: (line: string) => void;
}

export interface ArmResult {
  readonly arm: Arm;
  readonly target: Target;
  readonly requestsPerSec: number;
  readonly latencyP99Ms: number;
  readonly cpuUsPerRequest: number | null;
}

export interface TlsBenchResult {
  readonly arms: readonly ArmResult[];
  readonly chaos: { readonly failures: number; readonly requests: number; readonly kills: number } | null;
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): TlsBenchOptions {
  const quick = env['BENCH_QUICK'] === '1';
  return {
    seconds: envInt(env, 'BENCH_SECONDS', 1) ?? (quick ? 3 : 8),
    rounds: envInt(env, 'BENCH_ROUNDS', 1) ?? (quick ? 1 : 3),
    connections: envInt(env, 'BENCH_CONNECTIONS', 1) ?? 32,
    chaos: env['BENCH_TLS_CHAOS'] !== '0',
    chaosSeconds: envInt(env, 'BENCH_CHAOS_SECONDS', 3) ?? (quick ? 12 : 30),
  };
}

function holdfastYaml(routes: readonly { name: string; listenPort: number; originPort: number }[], cert: string, key: string): string {
  const lines = ['version: 1', 'logging: { level: warn }', 'admin: { enabled: false }', 'services:'];
  for (const r of routes) {
    lines.push(
      `  - name: ${r.name}`,
      '    protocol: http',
      `    listen: '127.0.0.1:${r.listenPort}'`,
      `    tls: { certificates: [{ cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }], minVersion: TLSv1.3 }`,
      '    backends:',
      `      - { id: origin, address: '127.0.0.1:${r.originPort}' }`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export async function run(opts: TlsBenchOptions): Promise<TlsBenchResult> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const peers = requirePeers({ wrk: 'wrk', haproxy: 'haproxy' });
  const kit = makeCertKit();
  const procs: Proc[] = [];
  try {
    const leaf = kit.leaf('bench', ['localhost', '127.0.0.1']);
    // HAProxy wants the chain and the key in one file.
    const combined = path.join(kit.dir, 'combined.pem');
    writeFileSync(combined, readFileSync(leaf.cert, 'latin1') + readFileSync(leaf.key, 'latin1'));

    const origins = new Map<number, { port: number; pid: number }>();
    for (const size of new Set(ARMS.map((a) => a.size))) {
      const p = await startProcess({ name: `origin-${size}`, command: process.execPath, args: [BACKEND_SERVER, '--port', '0', '--size', String(size)], readyLine: /^listening (\d+)$/ });
      procs.push(p);
      origins.set(size, { port: Number(p.readyMatch![1]), pid: p.pid });
    }
    const ports = new Map<string, number>();
    const routes = [];
    for (const a of ARMS) routes.push({ name: a.arm.replace(/[^A-Za-z0-9_-]/g, '_'), arm: a.arm, listenPort: await freePort(), originPort: origins.get(a.size)!.port });
    const hRoutes = [];
    for (const r of routes) {
      const port = await freePort();
      ports.set(`haproxy ${r.arm}`, port);
      hRoutes.push({ name: r.name, listenPort: port, origin: { host: '127.0.0.1', port: r.originPort }, bindParams: `ssl crt ${combined} alpn http/1.1 ssl-min-ver TLSv1.3` });
    }
    const haproxy = await startHaproxy({ routes: hRoutes, dir: kit.dir, haproxy: peers.haproxy });
    procs.push(haproxy);
    const cfg = path.join(kit.dir, 'holdfast.yaml');
    writeFileSync(cfg, holdfastYaml(routes, leaf.cert, leaf.key));
    const holdfast = await startProcess({
      name: 'holdfast',
      command: process.execPath,
      args: [HOLDFAST_BIN, 'dispatcher', '--config', cfg],
      cwd: REPO_ROOT,
      readyPort: { host: '127.0.0.1', port: routes[0]!.listenPort },
      readyTimeoutMs: 15_000,
    });
    procs.push(holdfast);
    for (const r of routes) {
      ports.set(`holdfast ${r.arm}`, r.listenPort);
      await waitForPort('127.0.0.1', r.listenPort);
    }
    const pid: Record<Target, number> = { haproxy: haproxy.pid, holdfast: holdfast.pid };

    const arms: ArmResult[] = [];
    for (const a of ARMS) {
      const rounds = new Map<Target, { rps: number; p99: number; cpu: number | null }[]>(TARGETS.map((t) => [t, []]));
      for (let round = 0; round < opts.rounds; round++) {
        for (const target of TARGETS) {
          const url = `https://127.0.0.1:${ports.get(`${target} ${a.arm}`)!}/`;
          const common = { url, threads: 1, connections: opts.connections, wrk: peers.wrk, headers: a.close ? ['Connection: close'] : [] };
          if (round === 0) await runWrk({ ...common, seconds: 1, failOnErrors: false });
          const before = sampleCpu();
          const w = await runWrk({ ...common, seconds: opts.seconds });
          const after = sampleCpu();
          const cpu = before && after && w.requests > 0 ? ((treeCpuMs(after, pid[target]) - treeCpuMs(before, pid[target])) * 1000) / w.requests : null;
          rounds.get(target)!.push({ rps: w.requestsPerSec, p99: w.latencyP99Ms, cpu });
          log(`${a.arm} round ${round + 1}/${opts.rounds} ${target}: ${Math.round(w.requestsPerSec)} req/s, p99 ${w.latencyP99Ms.toFixed(2)} ms${cpu === null ? '' : `, ${cpu.toFixed(1)} µs CPU/req`}`);
        }
      }
      for (const target of TARGETS) {
        const rs = rounds.get(target)!;
        const cpus = rs.map((r) => r.cpu).filter((c): c is number => c !== null);
        arms.push({ arm: a.arm, target, requestsPerSec: median(rs.map((r) => r.rps)), latencyP99Ms: median(rs.map((r) => r.p99)), cpuUsPerRequest: cpus.length > 0 ? median(cpus) : null });
      }
    }
    await Promise.all(procs.splice(0).map((p) => p.stop()));

    let chaosResult: TlsBenchResult['chaos'] = null;
    if (opts.chaos) {
      const c = await chaos.run({ ...chaos.optionsFromEnv(), seconds: opts.chaosSeconds, targets: ['holdfast'], tls: true, out: null, log });
      const h = c.results.find((r) => r.target === 'holdfast');
      if (h) {
        // The classes marked "nothing" in DESIGN.md: all but rand-large (replies over holdReplyBytes that differ each time).
        const nothing = h.classes.filter((k) => k.cls !== chaos.MAY_FAIL);
        chaosResult = {
          failures: nothing.reduce((n, k) => n + k.failures, 0) + h.preflightProblems.length + (h.proxyExited ? 1 : 0),
          requests: nothing.reduce((n, k) => n + k.requests, 0),
          kills: h.kills.length,
        };
      }
    }
    return { arms, chaos: chaosResult };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    kit.remove();
  }
}

const ratio = (r: TlsBenchResult, arm: Arm, f: (x: ArmResult) => number | null): number | null => {
  const h = r.arms.find((x) => x.arm === arm && x.target === 'holdfast');
  const p = r.arms.find((x) => x.arm === arm && x.target === 'haproxy');
  const a = h ? f(h) : null;
  const b = p ? f(p) : null;
  return a !== null && b !== null && b > 0 ? a / b : null;
};
const fmt = (x: number | null): string => (x === null ? '–' : `${x.toFixed(2)}×`);

export function formatTable(r: TlsBenchResult): string {
  const lines = [
    '| arm | target | req/s | p99 ms | proxy CPU µs/req |',
    '|---|---|---:|---:|---:|',
    ...r.arms.map((a) => `| ${a.arm} | ${a.target} | ${Math.round(a.requestsPerSec)} | ${a.latencyP99Ms.toFixed(2)} | ${a.cpuUsPerRequest === null ? '–' : a.cpuUsPerRequest.toFixed(1)} |`),
    '',
    '| arm | holdfast/HAProxy req/s | holdfast/HAProxy p99 | holdfast/HAProxy CPU per req |',
    '|---|---:|---:|---:|',
    ...ARMS.map((a) => `| ${a.arm} | ${fmt(ratio(r, a.arm, (x) => x.requestsPerSec))} | ${fmt(ratio(r, a.arm, (x) => x.latencyP99Ms))} | ${fmt(ratio(r, a.arm, (x) => x.cpuUsPerRequest))} |`),
    '',
  ];
  const k1 = ratio(r, 'keepalive-1k', (x) => x.requestsPerSec);
  const k64 = ratio(r, 'keepalive-64k', (x) => x.requestsPerSec);
  const hs = ratio(r, 'handshake-1k', (x) => x.requestsPerSec);
  const keepMet = k1 !== null && k64 !== null && k1 >= 1 && k64 >= 1;
  lines.push(`TARGET keepalive-vs-haproxy: ${keepMet ? 'met' : 'not met'} — ${fmt(k1)} req/s at 1 KiB, ${fmt(k64)} at 64 KiB (≥ 1.00×)`);
  lines.push(`TARGET handshakes-vs-haproxy: ${hs !== null && hs >= 1 ? 'met' : 'not met'} — ${fmt(hs)} handshakes/s (≥ 1.00×)`);
  if (r.chaos === null) lines.push('TARGET chaos-over-tls: not met — not run (BENCH_TLS_CHAOS=0)');
  else {
    lines.push(
      `TARGET chaos-over-tls: ${r.chaos.failures === 0 ? 'met' : 'not met'} — ${r.chaos.failures} client-visible failures in ${r.chaos.requests} requests over TLS, ${r.chaos.kills} backend SIGKILLs`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  process.stdout.write(`${formatTable(await run(optionsFromEnv()))}\n`);
}

runIfMain(import.meta.url, main);
