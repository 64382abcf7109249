/**
 * @module The media relay measured (issue 6), each figure against its direct peer in the same run.
 *
 * 1. Relay throughput and added latency, 160-byte RTP payloads (172-byte datagrams with the RTP
 *    header). The relay (src/media/media-relay.ts, one stream) runs in a child process — one event
 *    loop, one core at most; the harness runs the client and the echoing "backend":
 *
 *      direct: client ──► echo ──► client
 *      relay:  client ──► relay ──► echo ──► relay ──► client   (two relayed datagrams per round trip)
 *
 *    - pps: round trips per second with BENCH_MEDIA_WINDOW datagrams in flight (closed loop), and
 *      relayed datagrams per second (2 per round trip), with the relay's on-CPU time per relayed
 *      datagram (/proc/<pid>/schedstat of its event-loop thread);
 *    - RTT p50/p99 with one datagram in flight (ping-pong), and the p99 the relay adds (relay − direct).
 * 2. sipp: a uac placing calls with RTP (test/fixtures/sipp/uac-pcap.xml plays g711a.pcap, 50
 *    packets/s per call) through holdfast to three sipp uas (uas-media.xml) whose media endpoint is a
 *    UDP counter here that echoes; and the same uac direct to one uas. Reports calls/s, successful
 *    calls, relayed packets/s (the relay's own counter over the run) and whether every call's media
 *    reached the backend that took its INVITE (relay ports in each uas's INVITEs = sources of its
 *    counter's packets).
 *
 *   node dist/bench/sip-media.js      (or: node dist/bench/run.js sip-media)
 *   BENCH_MEDIA_SECONDS=3 BENCH_MEDIA_WINDOW=32 BENCH_MEDIA_PINGS=2000 BENCH_MEDIA_CALLS=60 BENCH_MEDIA_RATE=20
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { configSchema } from '../src/config/schema.js';
import { realClock } from '../src/core/clock.js';
import { startDispatcher } from '../src/dispatcher/dispatcher.js';
import { liveRelays, MediaRelay } from '../src/media/media-relay.js';
import { FlowTable } from '../src/sessions/flow-table.js';
import { fixture, runUac, startUas, type SippUas } from '../test/helpers/sipp.js';
import { foreignCores, sampleCpu } from './lib/cpu.js';
import { envInt } from './lib/env.js';
import { runIfMain } from './lib/main.js';
import { startProcess, stopAll, type Proc } from './lib/procs.js';

export const PAYLOAD_BYTES = 160;
const RTP_HEADER_BYTES = 12;
const WARMUP_MS = 300;

export interface Options {
  seconds: number;
  window: number;
  pings: number;
  calls: number;
  rate: number;
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): Options {
  return {
    seconds: envInt(env, 'BENCH_MEDIA_SECONDS', 1) ?? 3,
    window: envInt(env, 'BENCH_MEDIA_WINDOW', 1) ?? 32,
    pings: envInt(env, 'BENCH_MEDIA_PINGS', 10) ?? 2000,
    calls: envInt(env, 'BENCH_MEDIA_CALLS', 3) ?? 60,
    rate: envInt(env, 'BENCH_MEDIA_RATE', 1) ?? 20,
  };
}

interface LegResult {
  pps: number;
  relayCpuUsPerDatagram: number | null;
  rttP50Us: number;
  rttP99Us: number;
  foreignCores: number | null;
}

export interface Result {
  direct: LegResult;
  relay: LegResult;
  sipp: {
    direct: { calls: number; successful: number; callRate: number };
    holdfast: { calls: number; successful: number; callRate: number; relayedPps: number; mediaOnSignallingBackend: boolean; packetsAtBackends: number[] };
  } | null;
}

// --- the relay child -----------------------------------------------------------------------------

async function serveRelay(echoPort: number): Promise<void> {
  const flows = new FlowTable({ service: 'bench', maxFlows: 64, timeoutMs: 3_600_000, clock: realClock });
  const relay = new MediaRelay({
    service: 'bench', bindHost: '127.0.0.1', advertise: '127.0.0.1', portMin: 20_000, portMax: 29_999,
    maxDatagramBytes: 1500, flows, clock: realClock, idleTimeoutMs: 7_200_000,
  });
  const stream = await relay.allocate(1);
  if (!stream) throw new Error('no relay port');
  stream.setBackend('127.0.0.1', echoPort);
  // The client is latched from its first datagram.
  stream.setClient('127.0.0.1', 9);
  process.stdout.write(`listening ${stream.rtpPort}\n`);
  process.once('SIGTERM', () => process.exit(0));
}

function threadCpuNs(pid: number): number | null {
  try {
    const ns = Number(readFileSync(`/proc/${pid}/schedstat`, 'latin1').split(' ')[0]);
    return Number.isFinite(ns) ? ns : null;
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function udp(): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
  s.on('error', () => {});
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

async function measureLeg(target: number, relayPid: number | null, opts: Options): Promise<LegResult> {
  const client = await udp();
  const packet = Buffer.alloc(RTP_HEADER_BYTES + PAYLOAD_BYTES, 0xd5);
  packet[0] = 0x80;
  packet[1] = 8;
  let received = 0;
  let mode: 'flood' | 'ping' = 'flood';
  let pingResolve: (() => void) | null = null;
  client.on('message', () => {
    received++;
    if (mode === 'flood') client.send(packet, target, '127.0.0.1');
    else pingResolve?.();
  });
  for (let i = 0; i < opts.window; i++) client.send(packet, target, '127.0.0.1');
  const watchdog = setInterval(() => {
    // A lost datagram lowers the window; top it up when nothing came back for a while.
    if (mode === 'flood') for (let i = 0; i < opts.window; i++) client.send(packet, target, '127.0.0.1');
  }, 1000);
  await sleep(WARMUP_MS);
  const before = sampleCpu();
  const cpu0 = relayPid === null ? null : threadCpuNs(relayPid);
  const r0 = received;
  const t0 = performance.now();
  await sleep(opts.seconds * 1000);
  const pairs = received - r0;
  const t1 = performance.now();
  const cpu1 = relayPid === null ? null : threadCpuNs(relayPid);
  const after = sampleCpu();
  clearInterval(watchdog);
  mode = 'ping';
  await sleep(200);
  const rtts: number[] = [];
  for (let i = 0; i < opts.pings; i++) {
    const got = new Promise<void>((resolve) => {
      pingResolve = resolve;
    });
    const start = performance.now();
    client.send(packet, target, '127.0.0.1');
    const ok = await Promise.race([got.then(() => true), sleep(1000).then(() => false)]);
    if (ok) rtts.push((performance.now() - start) * 1000);
  }
  client.close();
  rtts.sort((a, b) => a - b);
  const q = (p: number) => rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))] ?? NaN;
  return {
    pps: (pairs / (t1 - t0)) * 1000,
    relayCpuUsPerDatagram: cpu0 !== null && cpu1 !== null && pairs > 0 ? (cpu1 - cpu0) / 1000 / (2 * pairs) : null,
    rttP50Us: q(0.5),
    rttP99Us: q(0.99),
    foreignCores: before && after ? foreignCores(before, after) : null,
  };
}

async function echoServer(): Promise<dgram.Socket> {
  const s = await udp();
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  return s;
}

// --- sipp ----------------------------------------------------------------------------------------

async function mediaCounter(): Promise<{ socket: dgram.Socket; bySource: Map<number, number> }> {
  const s = await udp();
  const bySource = new Map<number, number>();
  s.on('message', (m, r) => {
    bySource.set(r.port, (bySource.get(r.port) ?? 0) + 1);
    s.send(m, r.port, r.address);
  });
  return { socket: s, bySource };
}

async function sippRun(opts: Options): Promise<Result['sipp']> {
  const direct = await mediaCounter();
  const directUas = await startUas({ transport: 'udp', scenario: fixture('uas-media.xml'), extra: ['-key', 'backend_media_port', String(direct.socket.address().port)] });
  const d = await runUac({ target: `127.0.0.1:${directUas.port}`, transport: 'udp', scenario: fixture('uac-pcap.xml'), calls: opts.calls, rate: opts.rate, timeoutS: 120 });
  await directUas.kill('SIGKILL');
  direct.socket.close();

  const counters = [await mediaCounter(), await mediaCounter(), await mediaCounter()];
  const uas: SippUas[] = [];
  for (const c of counters) {
    uas.push(await startUas({ transport: 'udp', scenario: fixture('uas-media.xml'), traceMessages: true, extra: ['-key', 'backend_media_port', String(c.socket.address().port)] }));
  }
  const config = configSchema.parse({
    version: 1,
    logging: { level: 'silent' },
    admin: { enabled: false },
    services: [{
      name: 'sip-media', protocol: 'sip', listen: '127.0.0.1:0', sip: { transports: ['udp'] },
      backends: uas.map((u, i) => ({ id: `b${i}`, address: `127.0.0.1:${u.port}` })),
    }],
  });
  const dispatcher = await startDispatcher(config);
  const relay = [...liveRelays].find((r) => r.service === 'sip-media')!;
  const relayed0 = relay.stats.relayedPackets;
  const h = await runUac({ target: `127.0.0.1:${dispatcher.serviceAddress('sip-media').port}`, transport: 'udp', scenario: fixture('uac-pcap.xml'), calls: opts.calls, rate: opts.rate, timeoutS: 120 });
  const relayed = relay.stats.relayedPackets - relayed0;
  let onSignalling = true;
  for (let i = 0; i < uas.length; i++) {
    const ports = new Set(
      uas[i]!.loggedMessages()
        .filter((m) => m.direction === 'received' && m.firstLine.startsWith('INVITE '))
        .map((m) => Number(/^m=audio (\d+)/m.exec(m.text)?.[1])),
    );
    const sources = new Set(counters[i]!.bySource.keys());
    if (ports.size !== sources.size || [...ports].some((p) => !sources.has(p))) onSignalling = false;
  }
  await dispatcher.close();
  for (const u of uas) await u.kill('SIGKILL');
  for (const c of counters) c.socket.close();
  return {
    direct: { calls: opts.calls, successful: d.successful, callRate: d.callRate },
    holdfast: {
      calls: opts.calls,
      successful: h.successful,
      callRate: h.callRate,
      relayedPps: relayed / h.durationS,
      mediaOnSignallingBackend: onSignalling,
      packetsAtBackends: counters.map((c) => [...c.bySource.values()].reduce((a, b) => a + b, 0)),
    },
  };
}

// --- run -----------------------------------------------------------------------------------------

export async function run(opts: Options): Promise<Result> {
  const echo = await echoServer();
  const echoPort = echo.address().port;
  const directResult = await measureLeg(echoPort, null, opts);
  const child: Proc = await startProcess({
    name: 'media-relay',
    command: process.execPath,
    args: [fileURLToPath(import.meta.url), '--serve', String(echoPort)],
    readyLine: /^listening (\d+)$/,
  });
  const relayPort = Number(child.readyMatch![1]);
  const relayResult = await measureLeg(relayPort, child.pid, opts);
  await child.stop();
  echo.close();
  let sipp: Result['sipp'] = null;
  try {
    sipp = await sippRun(opts);
  } catch (err) {
    process.stderr.write(`sipp part skipped: ${(err as Error).message}\n`);
  }
  return { direct: directResult, relay: relayResult, sipp };
}

export function formatTable(r: Result): string {
  const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const lines = [
    `| leg | round trips/s | relayed datagrams/s | relay CPU µs/datagram | RTT p50 µs | RTT p99 µs | other load (cores) |`,
    `|---|---|---|---|---|---|---|`,
    `| direct | ${f(r.direct.pps)} | - | - | ${f(r.direct.rttP50Us)} | ${f(r.direct.rttP99Us)} | ${r.direct.foreignCores?.toFixed(2) ?? '-'} |`,
    `| relay | ${f(r.relay.pps)} | ${f(2 * r.relay.pps)} | ${r.relay.relayCpuUsPerDatagram?.toFixed(2) ?? '-'} | ${f(r.relay.rttP50Us)} | ${f(r.relay.rttP99Us)} | ${r.relay.foreignCores?.toFixed(2) ?? '-'} |`,
    ``,
    `relay/direct round trips: ${(r.relay.pps / r.direct.pps).toFixed(2)}; p99 added by the relay (two relayed hops): ${f(r.relay.rttP99Us - r.direct.rttP99Us)} µs`,
  ];
  if (r.sipp) {
    const s = r.sipp;
    lines.push(
      ``,
      `| sipp (uac-pcap → uas-media) | calls | successful | calls/s | relayed packets/s | media on the signalling backend | packets at b0/b1/b2 |`,
      `|---|---|---|---|---|---|---|`,
      `| direct (one uas) | ${s.direct.calls} | ${s.direct.successful} | ${s.direct.callRate.toFixed(1)} | - | - | - |`,
      `| holdfast (three uas) | ${s.holdfast.calls} | ${s.holdfast.successful} | ${s.holdfast.callRate.toFixed(1)} | ${s.holdfast.relayedPps.toFixed(0)} | ${s.holdfast.mediaOnSignallingBackend ? 'yes, every call' : 'NO'} | ${s.holdfast.packetsAtBackends.join(' / ')} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { serve: { type: 'string' } } });
  if (values.serve !== undefined) return serveRelay(Number(values.serve));
  try {
    process.stdout.write(`${formatTable(await run(optionsFromEnv()))}\n`);
  } finally {
    await stopAll();
  }
}

runIfMain(import.meta.url, main);
