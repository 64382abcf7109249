/**
 * @module The UDP relay's upstream design, measured (issue 5): one connected upstream socket per
 * client flow (`per-flow`, what src/forward/stream/udp-forwarder.ts ships) against a pool of shared
 * unconnected sockets with a (socket, backend) → flow map (`pool`, defined here), both through the
 * same UdpForwarder with the same flow table and session router; and `direct`, the client talking to
 * the echo server itself, as the peer every figure is compared with in the same run.
 *
 *   harness (N client sockets) ──► direct:   echo
 *                              ──► per-flow: relay process ──► echo
 *                              ──► pool:     relay process ──► echo
 *
 * The echo server and each relay run in their own process (one event loop, one core at most); the
 * harness drives N client flows (N = each of BENCH_UDP_FLOWS) with 160-byte datagrams and measures:
 * - pps: replies per second with BENCH_UDP_WINDOW datagrams in flight in total, spread over the flows
 *   round robin (closed loop: as fast as the slowest process allows);
 * - relay CPU µs/packet over that window: the on-CPU time of the relay's event-loop thread
 *   (/proc/<pid>/schedstat, nanoseconds, user + system) per relayed request/reply pair — the work
 *   figure, which other programs on the machine move far less than pps;
 * - RTT p50/p99 at a light paced load (BENCH_UDP_RATE datagrams/s over the flows), the latency the
 *   relay adds (relay − direct, same run), and the relay's CPU per pair at that load (no batching
 *   of wake-ups: the cost of a lone datagram);
 * - new flow: the round trip of the first datagram of a fresh client flow (one at a time), where
 *   per-flow pays a bind + connect.
 * Rounds alternate direct → per-flow → pool; each figure is the median over rounds.
 *
 *   node dist/bench/udp-relay.js        (or: node dist/bench/run.js udp-relay)
 *   BENCH_UDP_FLOWS=1,64,1024 BENCH_UDP_SECONDS=3 BENCH_ROUNDS=3 BENCH_UDP_RATE=5000 BENCH_UDP_WINDOW=64
 *   BENCH_WAIT_QUIET=30   (seconds to wait, before each leg's round, for other programs to use < 0.1 core)
 *
 * The pool design, for the record: sockets are created on demand up to POOL_SOCKETS and each serves
 * at most one flow per backend, so with B backends it holds POOL_SOCKETS x B flows with POOL_SOCKETS
 * descriptors. Replies are attributed by (socket, backend): the source address of a reply picks the
 * backend, the socket picks the flow. It needs no bind per new flow (sockets are reused), but every
 * send on an unconnected socket pays an address lookup, every reply a map lookup and a source check,
 * and ICMP port unreachable never reaches it (no passive failure detection).
 */
import dgram from 'node:dgram';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import '../src/balance/index.js';
import { createBalancer } from '../src/balance/balancer.js';
import { serviceSchema } from '../src/config/schema.js';
import type { HostPort } from '../src/core/address.js';
import { realClock } from '../src/core/clock.js';
import { createFlowSocketUpstream, UdpForwarder, type RelayFlow, type Upstream, type UpstreamFactory } from '../src/forward/stream/udp-forwarder.js';
import { Backend } from '../src/core/backend.js';
import { HealthMonitor } from '../src/monitor/health.js';
import { createSessionLayer } from '../src/sessions/index.js';
import { ADMIT_ALL } from '../src/admission/index.js';
import { foreignCores, sampleCpu, waitForQuiet } from './lib/cpu.js';
import { runIfMain } from './lib/main.js';
import { startProcess, type Proc } from './lib/procs.js';

export type Leg = 'direct' | 'per-flow' | 'pool';
export const LEGS: readonly Leg[] = ['direct', 'per-flow', 'pool'];
export type Design = Exclude<Leg, 'direct'>;

export const DATAGRAM_BYTES = 160;
export const DEFAULT_FLOWS: readonly number[] = [1, 64, 1024];
export const DEFAULT_SECONDS = 3;
export const DEFAULT_ROUNDS = 3;
/** Datagrams in flight over all flows in the throughput phase. */
export const DEFAULT_WINDOW = 64;
/** Datagrams per second of the latency phase: light, so RTTs show per-hop cost, not queueing. */
export const DEFAULT_RATE = 5000;
/** Fresh flows timed per round (one at a time). */
export const DEFAULT_NEW_FLOWS = 100;
export const DEFAULT_OUT = fileURLToPath(new URL('../../bench/results/udp-relay.json', import.meta.url));

/** Pool sockets of the `pool` design (each serves one flow per backend). */
export const POOL_SOCKETS = 8192;
/** The relays' flow timeout: flows of the new-flow phase are purged within seconds. */
const RELAY_FLOW_TIMEOUT_MS = 5_000;
/** Throughput: a window with no reply for this long lost datagrams; it is primed again. */
const STALL_MS = 100;
/** Time spent sending before a phase's measured window begins (JIT, socket buffers). */
const WARMUP_MS = 500;
/** After a phase, how long stragglers may arrive before counting losses. */
const DRAIN_MS = 200;
/** Other programs' CPU (cores) under which the machine counts as quiet. */
const QUIET_CORES = 0.1;
/** A fresh flow's first reply later than this counts as lost. */
const NEW_FLOW_TIMEOUT_MS = 1_000;

export interface UdpRelayOptions {
  readonly flows?: readonly number[];
  readonly seconds?: number;
  readonly rounds?: number;
  readonly window?: number;
  readonly rate?: number;
  readonly newFlows?: number;
  readonly legs?: readonly Leg[];
  /** Before each leg's round, wait up to this long for other programs to use < QUIET_CORES. */
  readonly waitQuietSeconds?: number;
  /** JSON report path; null: none. */
  readonly out?: string | null;
  readonly log?: (line: string) => void;
}

export interface Round {
  readonly pps: number;
  /** Relay event-loop thread CPU per relayed request/reply pair at saturation, µs; null for direct or off Linux. */
  readonly relayCpuUsPerPacket: number | null;
  /** The same at the paced load of the latency phase. */
  readonly relayCpuUsPerPacketPaced: number | null;
  readonly rttP50Us: number;
  readonly rttP99Us: number;
  readonly newFlowP50Us: number;
  readonly newFlowP99Us: number;
  /** Datagrams sent without a reply (throughput and latency phases), in percent. */
  readonly lossPercent: number;
  /** Cores other programs used during the throughput phase. */
  readonly foreignCores: number | null;
}

export interface Result {
  readonly flows: number;
  readonly leg: Leg;
  readonly rounds: readonly Round[];
  /** Medians over rounds. */
  readonly pps: number;
  readonly relayCpuUsPerPacket: number | null;
  readonly relayCpuUsPerPacketPaced: number | null;
  readonly rttP50Us: number;
  readonly rttP99Us: number;
  readonly newFlowP50Us: number;
  readonly newFlowP99Us: number;
  readonly lossPercent: number;
  readonly foreignCores: number | null;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The q-quantile (0..1) of `values` by nearest rank. */
export function quantile(values: ArrayLike<number>, q: number): number {
  const s = Float64Array.from(values).sort();
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

// --- the pool design -------------------------------------------------------------------------------

interface PoolLink {
  readonly socket: number;
  readonly backend: number;
}

/**
 * Shared unconnected upstream sockets, each serving at most one flow per backend: replies are
 * attributed by (socket index, backend index) → flow. Bounded by `poolSockets` descriptors and
 * poolSockets x backends flows; attach() returns null when the backend has no free socket.
 */
export function createPoolUpstream(poolSockets: number): UpstreamFactory {
  return (events) => {
    const sockets: dgram.Socket[] = [];
    /** By backend index: by socket index, the flow it serves. */
    const owners: (RelayFlow | undefined)[][] = [];
    /** By backend index: socket indexes with no flow for that backend. */
    const free: number[][] = [];
    /** Backend port → [address, backend index] pairs: who may reply. */
    const peers = new Map<number, [string, number][]>();

    const open = (i: number): dgram.Socket => {
      const socket = dgram.createSocket('udp4');
      socket.on('error', () => {});
      socket.on('message', (datagram: Buffer, rinfo: dgram.RemoteInfo) => {
        const candidates = peers.get(rinfo.port);
        if (candidates === undefined) return;
        for (const [address, b] of candidates) {
          if (address !== rinfo.address) continue;
          const flow = owners[b]?.[i];
          if (flow !== undefined) events.reply(flow, datagram);
          return;
        }
      });
      socket.bind(0);
      return socket;
    };

    const upstream: Upstream = {
      attach(flow, backend) {
        const b = backend.index;
        if (owners[b] === undefined) {
          owners[b] = [];
          free[b] = [];
          const list = peers.get(backend.port) ?? [];
          list.push([backend.host, b]);
          peers.set(backend.port, list);
        }
        let i = free[b]!.pop();
        if (i === undefined) {
          // Sockets every backend already uses cannot serve a second flow of this one: a new socket.
          if (sockets.length >= poolSockets) return null;
          i = sockets.length;
          sockets.push(open(i));
          for (let other = 0; other < owners.length; other++) if (other !== b && owners[other] !== undefined) free[other]!.push(i);
        }
        owners[b]![i] = flow;
        return { socket: i, backend: b } satisfies PoolLink;
      },
      send(flow, datagram) {
        const link = flow.link as PoolLink;
        const backend = flow.backend!;
        sockets[link.socket]!.send(datagram, backend.port, backend.host);
      },
      detach(flow) {
        const link = flow.link as PoolLink;
        owners[link.backend]![link.socket] = undefined;
        free[link.backend]!.push(link.socket);
      },
      get sockets() {
        return sockets.length;
      },
      close() {
        for (const s of sockets) s.close();
        sockets.length = 0;
      },
    };
    return upstream;
  };
}

// --- child processes ---------------------------------------------------------------------------------

/** The echo server: every datagram back to its sender, untouched. */
async function serveEcho(): Promise<HostPort> {
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  socket.on('error', () => {});
  socket.on('message', (m, r) => socket.send(m, r.port, r.address));
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { host: '127.0.0.1', port: socket.address().port };
}

/** A relay with `design` in front of the echo server at `to`, built the way the dispatcher builds a service. */
async function serveRelay(design: Design, to: number): Promise<HostPort> {
  const config = serviceSchema.parse({
    name: `udp-${design}`,
    protocol: 'udp',
    listen: '127.0.0.1:0',
    backends: [{ id: 'echo', address: `127.0.0.1:${to}` }],
    sessions: { flowTimeoutMs: RELAY_FLOW_TIMEOUT_MS },
  });
  const backends = [new Backend(config.name, 'echo', '127.0.0.1', to, 1, 0)];
  const balancer = createBalancer<Backend>(config.balancer);
  const rebuild = (): void => balancer.update(backends.filter((b) => b.eligible));
  rebuild();
  // The real monitor (not started: no probes), so reportSuccess costs what it costs in production.
  const monitor = new HealthMonitor(config.name, backends, config.health, realClock);
  monitor.onChange(rebuild);
  const layer = createSessionLayer(config, backends, balancer, realClock);
  layer.start();
  const forwarder = new UdpForwarder(
    { config, backends, balancer, failures: monitor, clock: realClock, sessions: layer.sessions, flows: layer.flows, admission: ADMIT_ALL },
    { upstream: design === 'pool' ? createPoolUpstream(POOL_SOCKETS) : createFlowSocketUpstream },
  );
  return forwarder.bindDatagram({ host: '127.0.0.1', port: 0 });
}

async function serve(role: string, design: string | undefined, to: string | undefined): Promise<void> {
  let at: HostPort;
  if (role === 'echo') at = await serveEcho();
  else if (role === 'relay' && (design === 'per-flow' || design === 'pool') && to !== undefined) at = await serveRelay(design, Number(to));
  else throw new Error(`usage: udp-relay.js --serve echo | --serve relay --design per-flow|pool --to <port>`);
  process.stdout.write(`listening ${at.port}\n`);
  process.once('SIGTERM', () => process.exit(0));
  process.once('SIGINT', () => process.exit(0));
}

function startChild(name: string, args: readonly string[]): Promise<Proc> {
  return startProcess({
    name,
    command: process.execPath,
    args: [fileURLToPath(import.meta.url), ...args],
    readyLine: /^listening (\d+)$/,
  });
}

// --- the load driver ---------------------------------------------------------------------------------

/**
 * Nanoseconds the main thread of `pid` has run (/proc/<pid>/schedstat, first field), or null (not
 * Linux, no such process). The event loop is the main thread: a relay's work is there.
 */
function threadCpuNs(pid: number | null): number | null {
  if (pid === null) return null;
  try {
    const ns = Number(readFileSync(`/proc/${pid}/schedstat`, 'latin1').split(' ')[0]);
    return Number.isFinite(ns) ? ns : null;
  } catch {
    return null;
  }
}

function usPerPair(before: number | null, after: number | null, pairs: number): number | null {
  return before === null || after === null || pairs <= 0 ? null : (after - before) / 1000 / pairs;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** N client flows: one bound socket each, one shared reply handler. */
class Driver {
  handler: (m: Buffer) => void = () => {};
  private constructor(readonly sockets: readonly dgram.Socket[]) {}

  static async open(n: number): Promise<Driver> {
    const sockets: dgram.Socket[] = [];
    const driver = new Driver(sockets);
    for (let i = 0; i < n; i++) {
      const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 1024 * 1024 });
      s.on('error', () => {});
      s.on('message', (m: Buffer) => driver.handler(m));
      await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
      sockets.push(s);
    }
    return driver;
  }

  close(): void {
    for (const s of this.sockets) s.close();
  }
}

function stamped(): Buffer {
  const b = Buffer.alloc(DATAGRAM_BYTES);
  b.writeDoubleLE(performance.now(), 0);
  return b;
}

/** Every flow sends one datagram and gets its reply: flows exist in the relay before anything is timed. */
async function primeFlows(d: Driver, target: HostPort): Promise<void> {
  const pending = new Set(d.sockets.map((_, i) => i));
  d.handler = (m) => pending.delete(m.readUInt32LE(8));
  for (let attempt = 0; attempt < 5 && pending.size > 0; attempt++) {
    for (const i of pending) {
      const b = stamped();
      b.writeUInt32LE(i, 8);
      d.sockets[i]!.send(b, target.port, target.host);
    }
    const until = performance.now() + 1000;
    while (pending.size > 0 && performance.now() < until) await sleep(10);
  }
  d.handler = () => {};
  if (pending.size > 0) throw new Error(`${pending.size} of ${d.sockets.length} flows got no reply from ${target.host}:${target.port}`);
}

interface Throughput {
  pps: number;
  relayCpuUsPerPacket: number | null;
  sent: number;
  received: number;
  foreignCores: number | null;
}

/** Closed loop: `window` datagrams in flight over the flows round robin; each reply sends the next. */
async function throughput(d: Driver, target: HostPort, seconds: number, window: number, relayPid: number | null): Promise<Throughput> {
  const n = d.sockets.length;
  const payload = Buffer.alloc(DATAGRAM_BYTES, 0x55);
  let cursor = 0;
  let sent = 0;
  let received = 0;
  const sendNext = (): void => {
    const s = d.sockets[cursor]!;
    cursor = cursor + 1 === n ? 0 : cursor + 1;
    sent++;
    s.send(payload, target.port, target.host);
  };
  d.handler = () => {
    received++;
    sendNext();
  };
  for (let i = 0; i < window; i++) sendNext();
  let lastSeen = -1;
  const watchdog = setInterval(() => {
    if (received === lastSeen) for (let i = 0; i < window; i++) sendNext();
    lastSeen = received;
  }, STALL_MS);
  await sleep(WARMUP_MS);
  const before = sampleCpu();
  const cpu0 = threadCpuNs(relayPid);
  const r0 = received;
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const r1 = received;
  const t1 = performance.now();
  const cpu1 = threadCpuNs(relayPid);
  const after = sampleCpu();
  clearInterval(watchdog);
  d.handler = () => {
    received++;
  };
  await sleep(DRAIN_MS);
  d.handler = () => {};
  const pairs = r1 - r0;
  return {
    pps: (pairs / (t1 - t0)) * 1000,
    relayCpuUsPerPacket: usPerPair(cpu0, cpu1, pairs),
    sent,
    received,
    foreignCores: before && after ? foreignCores(before, after) : null,
  };
}

interface Latency {
  p50Us: number;
  p99Us: number;
  sent: number;
  received: number;
  relayCpuUsPerPacket: number | null;
}

/** Open loop at `rate` datagrams/s over the flows round robin; RTT of each from its send stamp. */
async function latency(d: Driver, target: HostPort, seconds: number, rate: number, relayPid: number | null): Promise<Latency> {
  const n = d.sockets.length;
  const samples = new Float64Array(Math.ceil(rate * (seconds + 1)) + 16);
  let count = 0;
  let sent = 0;
  let cursor = 0;
  d.handler = (m) => {
    if (count < samples.length) samples[count++] = performance.now() - m.readDoubleLE(0);
  };
  const start = performance.now();
  const cpu0 = threadCpuNs(relayPid);
  const pace = setInterval(() => {
    const due = Math.min(Math.floor(((performance.now() - start) * rate) / 1000), Math.floor(seconds * rate));
    while (sent < due) {
      const s = d.sockets[cursor]!;
      cursor = cursor + 1 === n ? 0 : cursor + 1;
      sent++;
      s.send(stamped(), target.port, target.host);
    }
  }, 1);
  await sleep(seconds * 1000 + 5);
  clearInterval(pace);
  await sleep(DRAIN_MS);
  const cpu1 = threadCpuNs(relayPid);
  d.handler = () => {};
  const rtts = samples.subarray(0, count);
  return {
    p50Us: quantile(rtts, 0.5) * 1000,
    p99Us: quantile(rtts, 0.99) * 1000,
    sent,
    received: count,
    relayCpuUsPerPacket: usPerPair(cpu0, cpu1, count),
  };
}

/** `k` fresh flows, one at a time: the round trip of each one's first datagram. */
async function newFlows(target: HostPort, k: number): Promise<{ p50Us: number; p99Us: number }> {
  const rtts: number[] = [];
  for (let i = 0; i < k; i++) {
    const s = dgram.createSocket('udp4');
    s.on('error', () => {});
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
    const rtt = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), NEW_FLOW_TIMEOUT_MS);
      s.once('message', (m: Buffer) => {
        clearTimeout(timer);
        resolve(performance.now() - m.readDoubleLE(0));
      });
      s.send(stamped(), target.port, target.host);
    });
    s.close();
    if (rtt !== null) rtts.push(rtt);
  }
  return { p50Us: quantile(rtts, 0.5) * 1000, p99Us: quantile(rtts, 0.99) * 1000 };
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): UdpRelayOptions {
  const num = (name: string, min: number): number | undefined => {
    const text = env[name];
    if (text === undefined || text === '') return undefined;
    const n = Number(text);
    if (!(n >= min)) throw new RangeError(`${name}: expected a number >= ${min}, received "${text}"`);
    return n;
  };
  const list = env['BENCH_UDP_FLOWS'];
  const flows = list ? list.split(',').map((s) => Number(s)) : undefined;
  if (flows && !flows.every((n) => Number.isInteger(n) && n >= 1)) throw new RangeError(`BENCH_UDP_FLOWS: expected integers >= 1, received "${list}"`);
  const legs = env['BENCH_UDP_LEGS']?.split(',') as Leg[] | undefined;
  if (legs && !legs.every((l) => LEGS.includes(l))) throw new RangeError(`BENCH_UDP_LEGS: expected some of ${LEGS.join(',')}`);
  return {
    ...(flows ? { flows } : {}),
    ...(legs ? { legs } : {}),
    seconds: num('BENCH_UDP_SECONDS', 0.1) ?? DEFAULT_SECONDS,
    rounds: num('BENCH_ROUNDS', 1) ?? DEFAULT_ROUNDS,
    window: num('BENCH_UDP_WINDOW', 1) ?? DEFAULT_WINDOW,
    rate: num('BENCH_UDP_RATE', 1) ?? DEFAULT_RATE,
    newFlows: num('BENCH_UDP_NEW_FLOWS', 1) ?? DEFAULT_NEW_FLOWS,
    waitQuietSeconds: num('BENCH_WAIT_QUIET', 0) ?? 0,
  };
}

export async function run(opts: UdpRelayOptions = {}): Promise<Result[]> {
  const flowCounts = opts.flows ?? DEFAULT_FLOWS;
  const seconds = opts.seconds ?? DEFAULT_SECONDS;
  const rounds = opts.rounds ?? DEFAULT_ROUNDS;
  const window = opts.window ?? DEFAULT_WINDOW;
  const rate = opts.rate ?? DEFAULT_RATE;
  const k = opts.newFlows ?? DEFAULT_NEW_FLOWS;
  const legs = opts.legs ?? LEGS;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const out = opts.out === undefined ? DEFAULT_OUT : opts.out;

  const procs: Proc[] = [];
  try {
    const echo = await startChild('udp-echo', ['--serve', 'echo']);
    procs.push(echo);
    const echoAt: HostPort = { host: '127.0.0.1', port: Number(echo.readyMatch![1]) };
    const targets = new Map<Leg, { at: HostPort; pid: number | null }>([['direct', { at: echoAt, pid: null }]]);
    for (const design of ['per-flow', 'pool'] as const) {
      if (!legs.includes(design)) continue;
      const relay = await startChild(`udp-relay-${design}`, ['--serve', 'relay', '--design', design, '--to', String(echoAt.port)]);
      procs.push(relay);
      targets.set(design, { at: { host: '127.0.0.1', port: Number(relay.readyMatch![1]) }, pid: relay.pid });
    }
    const results: Result[] = [];
    for (const flows of flowCounts) {
      const driver = await Driver.open(flows);
      try {
        const perLeg = new Map<Leg, Round[]>(legs.map((l) => [l, []]));
        for (let round = 0; round < rounds; round++) {
          for (const leg of legs) {
            const { at, pid } = targets.get(leg)!;
            if ((opts.waitQuietSeconds ?? 0) > 0) {
              const cores = await waitForQuiet(QUIET_CORES, opts.waitQuietSeconds! * 1000);
              if (cores !== null && cores >= QUIET_CORES) log(`machine still busy (others: ${cores.toFixed(2)} cores); measuring anyway`);
            }
            await primeFlows(driver, at);
            const tp = await throughput(driver, at, seconds, window, pid);
            const lat = await latency(driver, at, Math.max(0.5, seconds / 2), rate, pid);
            const nf = await newFlows(at, k);
            const sent = tp.sent + lat.sent;
            const r: Round = {
              pps: tp.pps,
              relayCpuUsPerPacket: tp.relayCpuUsPerPacket,
              relayCpuUsPerPacketPaced: lat.relayCpuUsPerPacket,
              rttP50Us: lat.p50Us,
              rttP99Us: lat.p99Us,
              newFlowP50Us: nf.p50Us,
              newFlowP99Us: nf.p99Us,
              lossPercent: sent === 0 ? 0 : (100 * Math.max(0, sent - tp.received - lat.received)) / sent,
              foreignCores: tp.foreignCores,
            };
            perLeg.get(leg)!.push(r);
            log(
              `flows ${flows} ${leg} round ${round + 1}: ${Math.round(r.pps)} pps, relay ${r.relayCpuUsPerPacket?.toFixed(1) ?? '-'} µs/pkt ` +
                `(paced ${r.relayCpuUsPerPacketPaced?.toFixed(1) ?? '-'}), ` +
                `rtt p50 ${r.rttP50Us.toFixed(0)} p99 ${r.rttP99Us.toFixed(0)} µs, new flow p50 ${r.newFlowP50Us.toFixed(0)} µs, ` +
                `loss ${r.lossPercent.toFixed(2)} %${(r.foreignCores ?? 0) > 0.1 ? ` (noisy: others used ${r.foreignCores!.toFixed(2)} cores)` : ''}`,
            );
          }
        }
        for (const leg of legs) {
          const rs = perLeg.get(leg)!;
          const medianOf = (xs: (number | null)[]): number | null => {
            const known = xs.filter((x): x is number => x !== null);
            return known.length > 0 ? median(known) : null;
          };
          const foreign = rs.map((r) => r.foreignCores).filter((x): x is number => x !== null);
          results.push({
            flows,
            leg,
            rounds: rs,
            pps: median(rs.map((r) => r.pps)),
            relayCpuUsPerPacket: medianOf(rs.map((r) => r.relayCpuUsPerPacket)),
            relayCpuUsPerPacketPaced: medianOf(rs.map((r) => r.relayCpuUsPerPacketPaced)),
            rttP50Us: median(rs.map((r) => r.rttP50Us)),
            rttP99Us: median(rs.map((r) => r.rttP99Us)),
            newFlowP50Us: median(rs.map((r) => r.newFlowP50Us)),
            newFlowP99Us: median(rs.map((r) => r.newFlowP99Us)),
            lossPercent: median(rs.map((r) => r.lossPercent)),
            foreignCores: foreign.length > 0 ? Math.max(...foreign) : null,
          });
        }
      } finally {
        driver.close();
      }
    }
    if (out !== null) {
      mkdirSync(path.dirname(out), { recursive: true });
      const settings = { flows: flowCounts, seconds, rounds, window, rate, newFlows: k, datagramBytes: DATAGRAM_BYTES, node: process.version, waitQuietSeconds: opts.waitQuietSeconds ?? 0 };
      writeFileSync(out, `${JSON.stringify({ settings, results }, null, 2)}\n`);
    }
    return results;
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
}

export function formatTable(results: readonly Result[]): string {
  const us = (n: number | null): string => (n === null || Number.isNaN(n) ? '-' : n.toFixed(Math.abs(n) < 10 ? 1 : 0));
  const rows = results.map((r) => {
    const direct = results.find((x) => x.flows === r.flows && x.leg === 'direct');
    const vs = direct && r.leg !== 'direct' ? ` (${(r.pps / direct.pps).toFixed(2)}x)` : '';
    const added = (a: number, b: number | undefined): string => (b === undefined || r.leg === 'direct' ? '-' : `${a >= b ? '+' : ''}${us(a - b)}`);
    return (
      `| ${r.flows} | ${r.leg} | ${Math.round(r.pps).toLocaleString('en-US')}${vs} | ${us(r.relayCpuUsPerPacket)} / ${us(r.relayCpuUsPerPacketPaced)} | ` +
      `${us(r.rttP50Us)} / ${us(r.rttP99Us)} | ${added(r.rttP50Us, direct?.rttP50Us)} / ${added(r.rttP99Us, direct?.rttP99Us)} | ` +
      `${us(r.newFlowP50Us)} / ${us(r.newFlowP99Us)} | ${r.lossPercent.toFixed(2)} | ${r.foreignCores === null ? '-' : r.foreignCores.toFixed(2)} |`
    );
  });
  return [
    '| flows | leg | pps (x direct) | relay CPU µs/pair saturated / paced | RTT p50 / p99 µs | added p50 / p99 µs | new flow p50 / p99 µs | loss % | others\' CPU |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { serve: { type: 'string' }, design: { type: 'string' }, to: { type: 'string' } },
    strict: true,
  });
  if (values.serve !== undefined) {
    await serve(values.serve, values.design, values.to);
    return;
  }
  const opts = optionsFromEnv();
  process.stderr.write(`udp-relay: node ${process.version}, ${DATAGRAM_BYTES} B datagrams\n`);
  process.stdout.write(`${formatTable(await run(opts))}\n`);
}

runIfMain(import.meta.url, main);
