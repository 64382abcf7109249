/**
 * @module Where replication's CPU goes on the master (issue 17 item 2), without HTTP around it: this
 * process is the master — a session table that opens BENCH_REPLFLUSH_RATE sessions a second (one
 * timer tick a millisecond, as a paced server's event loop) and ends each after the idle timeout —
 * streaming to a real backup process over TCP. The master's own CPU (process.cpuUsage, user and
 * system) per session is measured in arms that alternate in every round (ABBA-like rotation):
 *
 * - `off`: the same sessions, no replicator (the workload's own cost, subtracted from the others);
 * - `timer`: the default flush (a 2 ms window), sessions ending idle (no close op since issue 17);
 * - `timer+close`: the same, but every end sent as a close op (how idle timeouts were replicated before);
 * - `turn`: flushMs 0, one flush at the end of each event-loop turn that made changes;
 * - `timer-20`: a 20 ms window.
 *
 * With BENCH_REPLFLUSH_SINK=1 every replicating arm also runs against a sink: a process that takes
 * the handshake and then drops the stream unread (no MAC check, no apply): the master's own cost;
 * and a flush's parts (seal, write, the timer wake-up) are timed apart against the sink (sendPath).
 * With BENCH_REPLFLUSH_NETNS=1 every replicating arm also runs against a backup in a network
 * namespace over veth (root, `ip`) beside the one on the host's loopback: if the loopback receive work
 * done inside the master's write is what costs, the two differ.
 *
 *   node dist/bench/replication-flush.js
 *   knobs: BENCH_REPLFLUSH_RATE=6000 BENCH_REPLFLUSH_SECONDS=3 BENCH_REPLFLUSH_ROUNDS=4
 *     BENCH_REPLFLUSH_TIMEOUT_MS=1000 BENCH_REPLFLUSH_NETNS=1 BENCH_REPLFLUSH_SINK=1 BENCH_REPLFLUSH_ARMS=off,timer,...
 *   BENCH_QUICK=1: 2 s × 2 rounds.
 * Prints µs of master CPU per session above `off`, per arm, and the share of a request's CPU that is
 * (BENCH_REPLFLUSH_REQUEST_US, default 40 µs: the unreplicated master's CPU per HTTP request measured
 * by bench/replication-cost on this machine).
 */
import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import '../src/balance/index.js';
import { createBalancer } from '../src/balance/balancer.js';
import { Backend } from '../src/core/backend.js';
import { realClock } from '../src/core/clock.js';
import { createStateReplicator, type StateReplicator } from '../src/replication/state-replicator.js';
import { FlowTable } from '../src/sessions/flow-table.js';
import { SessionRouter } from '../src/sessions/session-router.js';
import { SessionTable, type SessionHandle } from '../src/sessions/session-table.js';
import { MessageType, seal } from '../src/wire/envelope.js';
import { encodeFrame, NONCE_BYTES, OpWriter } from '../src/wire/replication-frame.js';
import { foreignCores, sampleCpu, treeCpuMs } from './lib/cpu.js';
import { envInt } from './lib/env.js';
import { runIfMain } from './lib/main.js';
import { lanUnavailable, makeVethNamespace, type VethNamespace } from './lib/netns-lan.js';
import { startProcess, type Proc } from './lib/procs.js';

export const ARMS = ['off', 'timer', 'timer+close', 'turn', 'timer-20'] as const;
export type Arm = (typeof ARMS)[number];
const MAX_SESSIONS = 500_000;
const SELF = fileURLToPath(import.meta.url);

export interface Options {
  rate: number;
  seconds: number;
  rounds: number;
  timeoutMs: number;
  netns: boolean;
  /** Also against a sink: a backup that reads and drops the stream (BENCH_REPLFLUSH_SINK=1). */
  sink: boolean;
  arms: Arm[];
  requestUs: number;
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): Options {
  const quick = env['BENCH_QUICK'] === '1';
  const arms = (env['BENCH_REPLFLUSH_ARMS'] ?? '').trim();
  return {
    rate: envInt(env, 'BENCH_REPLFLUSH_RATE', 1) ?? 6000,
    seconds: envInt(env, 'BENCH_REPLFLUSH_SECONDS', 1) ?? (quick ? 2 : 3),
    rounds: envInt(env, 'BENCH_REPLFLUSH_ROUNDS', 1) ?? (quick ? 2 : 4),
    timeoutMs: envInt(env, 'BENCH_REPLFLUSH_TIMEOUT_MS', 10) ?? 1000,
    netns: env['BENCH_REPLFLUSH_NETNS'] === '1',
    sink: env['BENCH_REPLFLUSH_SINK'] === '1',
    arms:
      arms === ''
        ? [...ARMS]
        : arms.split(',').map((x) => {
            if (!(ARMS as readonly string[]).includes(x.trim())) throw new Error(`BENCH_REPLFLUSH_ARMS: expected a list of ${ARMS.join(', ')}, received "${x}"`);
            return x.trim() as Arm;
          }),
    requestUs: envInt(env, 'BENCH_REPLFLUSH_REQUEST_US', 1) ?? 40,
  };
}

function layer(timeoutMs: number) {
  const backends = ['b0', 'b1', 'b2'].map((id, i) => {
    const b = new Backend('web', id, '127.0.0.1', 8080 + i, 1, i);
    b.state = 'up';
    return b;
  });
  const balancer = createBalancer<Backend>('round-robin');
  balancer.update(backends);
  const table = new SessionTable({ service: 'web', maxSessions: MAX_SESSIONS, timeoutMs, clock: realClock });
  const sessions = new SessionRouter('web', table, backends, balancer);
  const flows = new FlowTable({ service: 'web', maxFlows: 1024, timeoutMs, clock: realClock });
  return { table, sessions, flows, service: { name: 'web', sessions, flows, backends } };
}

/**
 * A backup that does no work: it answers the handshake (a sealed CHALLENGE) and then reads and drops
 * every byte — no MAC check, no apply, no acknowledgement. Against it the master pays its own side of
 * the stream alone; the difference to a real backup is what the backup's work on the same two cores
 * costs the master (shared caches and cores, preemption), not anything the master does.
 */
async function sinkMain(keyHex: string, host: string): Promise<void> {
  const key = Buffer.from(keyHex, 'hex');
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', () => {});
    const w = new OpWriter(16);
    w.challenge();
    const msg = seal(MessageType.Replication, encodeFrame({ sender: 3, seq: 0, nonce: randomBytes(NONCE_BYTES), epoch: 0 }, w.count, w.bytes()), key);
    const prefix = Buffer.allocUnsafe(4);
    prefix.writeUInt32BE(msg.length, 0);
    socket.write(Buffer.concat([prefix, msg]));
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  process.stdout.write(`listening ${(server.address() as net.AddressInfo).port}\n`);
}

/** The backup: a replicator on its own session layer, in this file run as a child process. */
async function backupMain(keyHex: string, host: string, timeoutMs: number): Promise<void> {
  const l = layer(timeoutMs);
  const r = createStateReplicator({ id: 2, listen: { host, port: 0 }, peers: [], key: Buffer.from(keyHex, 'hex'), services: [l.service], clock: realClock });
  await r.start();
  // The backup sweeps its table as a dispatcher does (its replicas expire on their own since issue 17).
  setInterval(() => l.table.sweep(4096), Math.max(10, Math.floor(timeoutMs / 4))).unref();
  process.stdout.write(`listening ${r.address()!.port}\n`);
  setInterval(() => {}, 1 << 30);
}

interface Where {
  label: 'loopback' | 'veth' | 'sink';
  host: string;
  port: number;
  proc: Proc;
}

async function startBackup(key: Buffer, o: Options, veth: VethNamespace | null, sink = false): Promise<Where> {
  const host = veth === null ? '127.0.0.1' : veth.nsIp;
  const argv = [process.execPath, SELF, sink ? '--sink' : '--backup', key.toString('hex'), host, String(o.timeoutMs)];
  const proc = await startProcess({
    name: sink ? 'sink' : veth === null ? 'backup-loopback' : 'backup-veth',
    command: veth === null ? argv[0]! : 'ip',
    args: veth === null ? argv.slice(1) : ['netns', 'exec', veth.ns, ...argv],
    readyLine: /^listening (\d+)$/m,
  });
  veth?.procs.push(proc);
  return { label: sink ? 'sink' : veth === null ? 'loopback' : 'veth', host, port: Number(proc.readyMatch![1]), proc };
}

export interface Sample {
  arm: Arm;
  where: Where['label'] | null;
  round: number;
  sessions: number;
  userUs: number;
  systemUs: number;
  backupUs: number;
  framesSent: number;
  opsSent: number;
  othersCores: number | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function runArm(arm: Arm, where: Where | null, round: number, key: Buffer, o: Options): Promise<Sample> {
  const l = layer(o.timeoutMs);
  let r: StateReplicator | null = null;
  if (arm !== 'off' && where !== null) {
    const flushMs = arm === 'turn' ? 0 : arm === 'timer-20' ? 20 : 2;
    r = createStateReplicator({ id: 1, listen: { host: '127.0.0.1', port: 0 }, peers: [{ host: where.host, port: where.port }], key, services: [l.service], clock: realClock, flushMs });
    await r.start();
    const until = Date.now() + 10_000;
    while (r.stats().peersStreaming === 0) {
      if (Date.now() > until) throw new Error(`${arm}: the backup at ${where.host}:${where.port} did not connect`);
      await sleep(5);
    }
  }
  // Ended sessions, oldest first: `timer+close` closes them itself ('removed': sent as before issue 17).
  const opened: SessionHandle[] = [];
  const openedAt: number[] = [];
  let head = 0;
  let n = 0;
  let sessions = 0;
  // Owed by the clock, not by the tick count: a starved timer opens more per tick, the rate holds.
  let last = performance.now();
  let owed = 0;
  const tick = (): void => {
    const t = performance.now();
    owed += ((t - last) * o.rate) / 1000;
    last = t;
    const now = Date.now();
    for (; owed >= 1; owed--) {
      const route = l.sessions.route(`s${round}-${n++}`);
      if (route.type === 'opened') {
        sessions++;
        if (arm === 'timer+close') {
          opened.push(route.session);
          openedAt.push(now);
        }
      }
    }
    while (head < opened.length && now - openedAt[head]! >= o.timeoutMs) l.sessions.close(opened[head++]!, 'removed');
  };
  // Warm: one timeout's worth, so that opens and ends both run during the window.
  const timer = setInterval(tick, 1);
  const sweeper = setInterval(() => l.table.sweep(4096), Math.max(10, Math.floor(o.timeoutMs / 4)));
  await sleep(o.timeoutMs + 200);
  const from = { cpu: process.cpuUsage(), sessions, sample: sampleCpu(), frames: r?.stats().framesSent ?? 0, ops: r?.stats().opsSent ?? 0 };
  await sleep(o.seconds * 1000);
  const cpu = process.cpuUsage(from.cpu);
  const after = sampleCpu();
  const done = sessions - from.sessions;
  const stats = r?.stats();
  clearInterval(timer);
  clearInterval(sweeper);
  await r?.close();
  const backupMs = where && from.sample && after ? treeCpuMs(after, where.proc.pid) - treeCpuMs(from.sample, where.proc.pid) : NaN;
  return {
    arm,
    where: r === null ? null : (where?.label ?? null),
    round,
    sessions: done,
    userUs: cpu.user / done,
    systemUs: cpu.system / done,
    backupUs: (backupMs * 1000) / done,
    framesSent: (stats?.framesSent ?? 0) - from.frames,
    opsSent: (stats?.opsSent ?? 0) - from.ops,
    othersCores: from.sample && after ? foreignCores(from.sample, after) : null,
  };
}

export interface Report {
  settings: Options;
  samples: Sample[];
  sendPath: SendPathRow[];
}

export interface SendPathRow {
  what: string;
  /** This process's CPU per operation, µs, and the kernel-mode part of it. */
  us: number;
  systemUs: number;
}

/**
 * The parts of one flush apart, against a sink process (`SEND_PATH_OPS` each): the HMAC seal of a
 * 300-byte frame, its socket write, both, done back to back in a busy loop (a flush in a turn that is
 * awake anyway) or each from its own 1 ms timer (a flush that wakes an idle event loop: the timer's
 * own cost, then a seal and a write from cold).
 */
async function sendPath(sink: Where, key: Buffer): Promise<SendPathRow[]> {
  const socket = net.connect({ host: sink.host, port: sink.port });
  socket.setNoDelay(true);
  socket.on('data', () => {});
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  const k = createSecretKey(key);
  const frame = randomBytes(300);
  const flush = (): void => {
    const b = Buffer.from(frame);
    createHmac('sha256', k).update(b).digest().copy(b, 0, 0, 16);
    socket.write(b);
  };
  const measure = async (what: string, fn: () => void, timer: boolean): Promise<SendPathRow> => {
    const c0 = process.cpuUsage();
    for (let i = 0; i < SEND_PATH_OPS; i++) {
      if (timer) await new Promise<void>((r) => setTimeout(() => (fn(), r()), 1));
      else {
        fn();
        if (i % 4 === 3) await new Promise((r) => setImmediate(r));
      }
    }
    const c = process.cpuUsage(c0);
    return { what, us: (c.user + c.system) / SEND_PATH_OPS, systemUs: c.system / SEND_PATH_OPS };
  };
  const rows = [
    await measure('nothing (busy loop)', () => {}, false),
    await measure('seal 300 B (busy loop)', () => createHmac('sha256', k).update(frame).digest(), false),
    await measure('write 300 B (busy loop)', () => socket.write(Buffer.from(frame)), false),
    await measure('seal + write (busy loop)', flush, false),
    await measure('1 ms timer wake-up, nothing', () => {}, true),
    await measure('1 ms timer wake-up, seal + write', flush, true),
  ];
  socket.destroy();
  return rows;
}
const SEND_PATH_OPS = 2000;

export async function run(o: Options, log: (l: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<Report> {
  const key = randomBytes(32);
  let veth: VethNamespace | null = null;
  const backups: Where[] = [];
  const samples: Sample[] = [];
  try {
    backups.push(await startBackup(key, o, null));
    if (o.sink) backups.push(await startBackup(key, o, null, true));
    if (o.netns) {
      const why = lanUnavailable();
      if (why !== null) throw new Error(`BENCH_REPLFLUSH_NETNS=1: ${why}`);
      veth = await makeVethNamespace();
      backups.push(await startBackup(key, o, veth));
    }
    const plan: { arm: Arm; where: Where | null }[] = [];
    for (const arm of o.arms) {
      if (arm === 'off') plan.push({ arm, where: null });
      else for (const w of backups) plan.push({ arm, where: w });
    }
    for (let round = 0; round < o.rounds; round++) {
      // Each round starts one arm further along, and every other round runs backwards: drift on the
      // shared machine falls on every arm alike.
      const k = round % plan.length;
      const order = [...plan.slice(k), ...plan.slice(0, k)];
      if (round % 2 === 1) order.reverse();
      for (const p of order) {
        const s = await runArm(p.arm, p.where, round, key, o);
        samples.push(s);
        log(
          `replication-flush ${p.arm}${s.where ? ` (${s.where})` : ''} round ${round + 1}/${o.rounds}: ${s.sessions} sessions, master ${(s.userUs + s.systemUs).toFixed(2)} µs/session ` +
            `(system ${s.systemUs.toFixed(2)}), backup ${s.backupUs.toFixed(2)}, ${s.framesSent} frames, ${s.opsSent} ops, others ${s.othersCores?.toFixed(2) ?? '?'} cores`,
        );
      }
    }
    const sink = backups.find((b) => b.label === 'sink');
    const sendPathRows = sink ? await sendPath(sink, key) : [];
    return { settings: o, samples, sendPath: sendPathRows };
  } finally {
    await Promise.allSettled(backups.filter((b) => b.label !== 'veth').map((b) => b.proc.stop()));
    await veth?.close();
  }
}

function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function formatTable(r: Report): string {
  const o = r.settings;
  const off = r.samples.filter((s) => s.arm === 'off');
  const base = median(off.map((s) => s.userUs + s.systemUs));
  const baseSys = median(off.map((s) => s.systemUs));
  const keys = [...new Set(r.samples.filter((s) => s.arm !== 'off').map((s) => `${s.arm}|${s.where}`))];
  const lines = [
    `| arm | backup on | master µs/session | of which system | above \`off\` | share of a ${o.requestUs} µs request | frames/s | ops/session | backup µs/session |`,
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    `| off (no replication) | – | ${base.toFixed(2)} | ${baseSys.toFixed(2)} | – | – | – | – | – |`,
  ];
  for (const k of keys) {
    const [arm, where] = k.split('|');
    const xs = r.samples.filter((s) => s.arm === arm && s.where === where);
    const total = median(xs.map((s) => s.userUs + s.systemUs));
    const extra = total - base;
    lines.push(
      `| ${arm} | ${where} | ${total.toFixed(2)} | ${median(xs.map((s) => s.systemUs)).toFixed(2)} | ${extra >= 0 ? '+' : ''}${extra.toFixed(2)} | ${((extra / o.requestUs) * 100).toFixed(1)} % | ` +
        `${median(xs.map((s) => s.framesSent / o.seconds)).toFixed(0)} | ${median(xs.map((s) => s.opsSent / s.sessions)).toFixed(2)} | ${median(xs.map((s) => s.backupUs)).toFixed(2)} |`,
    );
  }
  const others = r.samples.map((s) => s.othersCores).filter((x): x is number => x !== null);
  const send =
    r.sendPath.length === 0
      ? ''
      : `\n| one flush's parts, against the sink | µs of this process per op | of which system |\n|---|---:|---:|\n${r.sendPath.map((x) => `| ${x.what} | ${x.us.toFixed(2)} | ${x.systemUs.toFixed(2)} |`).join('\n')}\n`;
  return (
    `${lines.join('\n')}\n${send}\n${o.rate} sessions/s opened by a 1 ms timer, each ending after ${o.timeoutMs} ms; ${o.seconds} s × ${o.rounds} rounds per arm, medians; ` +
    `other programs used ${others.length > 0 ? `${median(others).toFixed(2)} cores (median)` : '?'} during the runs.\n`
  );
}

if (process.argv[2] === '--backup') void backupMain(process.argv[3]!, process.argv[4]!, Number(process.argv[5]));
else if (process.argv[2] === '--sink') void sinkMain(process.argv[3]!, process.argv[4]!);
else {
  runIfMain(import.meta.url, async () => {
    process.stdout.write(formatTable(await run(optionsFromEnv())));
  });
}
