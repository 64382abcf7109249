/**
 * @module Dispatcher failover (issue 7), in two parts.
 *
 * `takeover`, in each of BENCH_HA_MODES: `loopback`, two `holdfast dispatcher` processes in one
 * election group whose 127/8 VIP carries a UDP service in front of two echo backends; `linux` (root,
 * ip and arping), the same between network namespaces with `ip addr add` + gratuitous ARP takeover
 * (`runLinuxInterval`); a client sends a datagram to the VIP every 1 ms. Each
 * trial SIGKILLs the master and measures, on the client, the time from the kill to the first reply
 * to a datagram sent after it (only the new master can have forwarded it); the killed dispatcher is
 * then restarted as a backup without preemption, and the next trial kills the other one. p50/p99
 * over BENCH_HA_TRIALS trials per advert interval. Linux mode runs once per BENCH_HA_GARP sender
 * (`arping`: a process started at takeover, the old way; `auto`: the packet socket opened at start,
 * issue 17 item 4), each interval's two arms one after the other, and ends with
 * `TARGET linux-takeover-p99: met|not met — …` (p99 under 100 ms with 20 ms adverts, the packet socket).
 * BENCH_QUICK=1: linux takeover only, 20 and 5 ms adverts, 5 trials, both senders (under 50 s here).
 *
 * `sip`: the SIP ALG paper's experiment (seed 004, section 3): sipp's built-in uac (INVITE with SDP,
 * ACK, `-d` pause, BYE) places calls through the VIP at each rate into three sipp uas (uas-481.xml:
 * a BYE that reaches a backend that never saw the call gets 481, so a call re-routed to the wrong
 * backend fails); the master is SIGKILLed mid-run. Loss ratio = failed calls among those active at
 * the failure / calls active at the failure, for the paper's three cases: `none` (one dispatcher,
 * no standby), `no-replication` (a standby with `replicateState: false`: it takes the VIP, not the
 * calls' pins) and `replication` (a standby with the state replicated).
 *
 *   node dist/bench/dispatcher-failover.js   (BENCH_HA_PARTS=takeover,sip; BENCH_HA_MODES=loopback,linux; BENCH_HA_GARP=arping,auto; BENCH_HA_TRIALS=30,
 *     BENCH_HA_INTERVALS=20,10,5; BENCH_HA_SIP_RATES=50,100,200, BENCH_HA_SIP_CASES=none,no-replication,replication,
 *     BENCH_HA_SIP_CALL_MS=2500, BENCH_HA_SIP_SECONDS=6, BENCH_HA_SIP_RECV_TIMEOUT_MS=3000,
 *     BENCH_HA_SIP_INTERVAL_MS=20, BENCH_HA_SIP_NO_RETRANS=1 for the paper's uac without retransmissions)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { envInt } from './lib/env.js';
import { haConfig, startHaDispatcher, type HaDispatcher } from './lib/ha-cluster.js';
import { makeLan, type Lan, type LanNode } from './lib/netns-lan.js';
import { runIfMain } from './lib/main.js';
import { makeTempDir, removeTempDir, startProcess, which, type Proc } from './lib/procs.js';
import { fixture, freeSipPorts, startUac, startUas, type SippResult, type SippStats, type SippUac, type SippUas } from '../test/helpers/sipp.js';
import { run as runCommand } from '../test/helpers/cluster-procs.js';
import { bindUdpEcho } from '../test/helpers/udp-echo.js';

export const PARTS = ['takeover', 'sip'] as const;
export type Part = (typeof PARTS)[number];
/** Takeover modes of the `takeover` part: the 127/8 alias, or `ip addr add` + gratuitous ARP in namespaces. */
export const MODES = ['loopback', 'linux'] as const;
export type Mode = (typeof MODES)[number];
/** Linux mode's gratuitous-ARP senders (groups[].garp). */
export const GARPS = ['arping', 'auto'] as const;
export type Garp = (typeof GARPS)[number];
/** Issue 17 item 4: linux-mode takeover p99 with 20 ms adverts under this. */
export const LINUX_TARGET_P99_MS = 100;
/** The paper's three failure cases (seed 004, section 3: i, ii, iii). */
export const SIP_CASES = ['none', 'no-replication', 'replication'] as const;
export type SipCase = (typeof SIP_CASES)[number];

export interface SipOptions {
  /** Calls per second, one run per rate and case. */
  rates: number[];
  cases: SipCase[];
  /** The built-in uac's pause between ACK and BYE (`-d`). */
  callMs: number;
  /** How long the uac places calls (calls = rate × seconds); the kill is at max(half of it, callMs + 1 s). */
  seconds: number;
  /** `-recv_timeout`: how long a call waits for an answer before sipp aborts it (bounds the dead cases). */
  recvTimeoutMs: number;
  /** Advertisement interval of the group. */
  advertIntervalMs: number;
  /** `-nr`: no uac retransmissions, the paper's "extreme case" (its section 3). */
  noRetransmissions: boolean;
}

export interface Options {
  parts: Part[];
  /** Takeover modes of the `takeover` part (linux mode skipped, with the reason, when not root or without ip/arping). */
  modes: Mode[];
  /** Linux mode: one arm per sender. */
  garps: Garp[];
  trials: number;
  intervalsMs: number[];
  sip: SipOptions;
}

export const SIP_DEFAULTS: SipOptions = {
  rates: [50, 100, 200],
  cases: [...SIP_CASES],
  callMs: 2_500,
  seconds: 6,
  recvTimeoutMs: 3_000,
  advertIntervalMs: 20,
  noRetransmissions: false,
};

function listOf<T extends string>(name: string, text: string | undefined, allowed: readonly T[]): T[] | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  return text.split(',').map((x) => {
    const v = x.trim();
    if (!(allowed as readonly string[]).includes(v)) throw new Error(`${name}: expected a list of ${allowed.join(', ')}, received "${v}"`);
    return v as T;
  });
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): Options {
  const quick = env['BENCH_QUICK'] === '1';
  const list = (env['BENCH_HA_INTERVALS'] ?? (quick ? '20,5' : '20,10,5')).split(',').map(Number).filter((n) => n >= 5);
  const ratesText = env['BENCH_HA_SIP_RATES'];
  let rates = SIP_DEFAULTS.rates;
  if (ratesText !== undefined && ratesText.trim() !== '') {
    rates = ratesText.split(',').map((x) => {
      const n = Number(x.trim());
      if (!Number.isInteger(n) || n < 1 || n > 1000) throw new Error(`BENCH_HA_SIP_RATES: expected integers 1-1000, received "${x}"`);
      return n;
    });
  }
  return {
    parts: listOf('BENCH_HA_PARTS', env['BENCH_HA_PARTS'], PARTS) ?? (quick ? ['takeover'] : [...PARTS]),
    modes: listOf('BENCH_HA_MODES', env['BENCH_HA_MODES'], MODES) ?? (quick ? ['linux'] : [...MODES]),
    garps: listOf('BENCH_HA_GARP', env['BENCH_HA_GARP'], GARPS) ?? [...GARPS],
    trials: envInt(env, 'BENCH_HA_TRIALS', 1) ?? (quick ? 5 : 30),
    intervalsMs: list.length > 0 ? list : [20],
    sip: {
      rates,
      cases: listOf('BENCH_HA_SIP_CASES', env['BENCH_HA_SIP_CASES'], SIP_CASES) ?? SIP_DEFAULTS.cases,
      callMs: envInt(env, 'BENCH_HA_SIP_CALL_MS', 100) ?? SIP_DEFAULTS.callMs,
      seconds: envInt(env, 'BENCH_HA_SIP_SECONDS', 1) ?? SIP_DEFAULTS.seconds,
      recvTimeoutMs: envInt(env, 'BENCH_HA_SIP_RECV_TIMEOUT_MS', 500) ?? SIP_DEFAULTS.recvTimeoutMs,
      advertIntervalMs: envInt(env, 'BENCH_HA_SIP_INTERVAL_MS', 5) ?? SIP_DEFAULTS.advertIntervalMs,
      noRetransmissions: env['BENCH_HA_SIP_NO_RETRANS'] === '1',
    },
  };
}

export interface Row {
  mode: Mode;
  /** Linux mode: the gratuitous-ARP sender. */
  garp?: Garp;
  intervalMs: number;
  /** Trials with a reply after the kill (the figures are over these). */
  trials: number;
  /** Trials with no reply within HA_WAIT_MS of the kill. */
  lost: number;
  p50: number;
  p99: number;
  max: number;
}

function freeUdp(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

async function runInterval(intervalMs: number, trials: number): Promise<Row> {
  const backends = [await bindUdpEcho('b0'), await bindUdpEcho('b1')];
  const vip = `127.${randomInt(64, 250)}.${randomInt(1, 250)}.${randomInt(2, 250)}`;
  const port = await freeUdp(vip);
  // Free for UDP (the election) and TCP (replication listens on the same number).
  const election = await freeSipPorts(2);
  const dir = makeTempDir('holdfast-bench-ha');
  const key = randomBytes(32);
  const config = (id: number): string =>
    haConfig({
      id,
      priority: 100,
      preempt: false,
      advertIntervalMs: intervalMs,
      listen: `127.0.0.1:${election[id - 1]}`,
      peers: [`127.0.0.1:${election[2 - id]}`],
      vip,
      services: [{ name: 'echo', protocol: 'udp', listen: `${vip}:${port}`, backends: backends.map((b) => ({ id: b.id, address: `127.0.0.1:${b.port}` })) }],
    });
  const nodes: (HaDispatcher | null)[] = [null, null];
  const start = async (i: number): Promise<HaDispatcher> => (nodes[i] = await startHaDispatcher({ name: `dispatcher-${i + 1}`, id: i + 1, dir, key, config: config(i + 1) }));
  const client = dgram.createSocket('udp4');
  client.on('error', () => {});
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
  let killedAt = Infinity;
  let firstAfter = Infinity;
  client.on('message', (m) => {
    const sent = Number(m.toString('latin1').split('|')[1]);
    const now = performance.now();
    if (sent > killedAt + 1 && now < firstAfter) firstAfter = now;
  });
  const ticker = setInterval(() => client.send(String(performance.now()), port, vip), 1);
  const gaps: number[] = [];
  try {
    await start(0);
    await nodes[0]!.waitFor('taken', 0, 5_000);
    await start(1);
    for (let trial = 0; trial < trials; trial++) {
      const { master } = await settledMaster(nodes as HaDispatcher[], `loopback ${intervalMs} ms adverts`);
      const backup = 1 - master;
      const from = nodes[backup]!.events.length;
      firstAfter = Infinity;
      killedAt = performance.now();
      await nodes[master]!.kill('SIGKILL');
      await nodes[backup]!.waitFor('taken', from, 5_000);
      const deadline = Date.now() + 5_000;
      while (firstAfter === Infinity && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      gaps.push(firstAfter - killedAt);
      killedAt = Infinity;
      await nodes[master]!.proc.stop();
      await start(master);
      await nodes[master]!.waitFor('backup', 0, 5_000);
      process.stderr.write(`dispatcher-failover ${intervalMs} ms adverts: trial ${trial + 1}/${trials}: ${gaps.at(-1)!.toFixed(1)} ms\n`);
    }
  } finally {
    clearInterval(ticker);
    client.close();
    await Promise.all(nodes.map((n) => n?.proc.stop()));
    await Promise.all(backends.map((b) => b.close()));
    removeTempDir(dir);
  }
  const sorted = gaps.filter(Number.isFinite).sort((a, b) => a - b);
  return { mode: 'loopback', intervalMs, trials: sorted.length, lost: gaps.length - sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? NaN };
}

// ---------------------------------------------------------------- the SIP ALG experiment

/** What one statistics row and the failed Call-IDs say about the calls active at the kill. */
export interface KillCount {
  /** CurrentCall of the last statistics row at or before the kill. */
  activeAtKill: number;
  /** TotalCallCreated of that row: calls numbered 1..createdAtKill had started by then. */
  createdAtKill: number;
  /** Calls of that row's active set that failed afterwards. */
  failedActive: number;
  /** Failed calls started after that row (new calls, and the few started between the row and the kill). */
  failedAfter: number;
  /** Failed calls whose Call-ID carries no call number (should be 0). */
  unnumbered: number;
}

/** sipp's default Call-ID is `<call number>-<pid>@<local ip>`; the number counts created calls from 1. */
export function callNumber(callId: string): number | null {
  const m = /^(\d+)-\d+@/.exec(callId);
  return m ? Number(m[1]) : null;
}

/**
 * Seed 004's denominator and numerator from sipp's own records: the active calls are CurrentCall of
 * the last statistics row at or before `killMs`; they are the calls numbered up to that row's
 * TotalCallCreated that had not ended by then, so the failed ones among them are the failed Call-IDs
 * with such a number, less the failures that row had already counted.
 */
export function countAtKill(rows: readonly SippStats[], killMs: number, failedCallIds: readonly string[]): KillCount {
  let at: SippStats | null = null;
  for (const r of rows) if (r.atMs <= killMs) at = r;
  const createdAtKill = at?.totalCallCreated ?? 0;
  let before = 0;
  let after = 0;
  let unnumbered = 0;
  for (const id of failedCallIds) {
    const n = callNumber(id);
    if (n === null) unnumbered++;
    else if (n <= createdAtKill) before++;
    else after++;
  }
  return { activeAtKill: at?.currentCalls ?? 0, createdAtKill, failedActive: Math.max(0, before - (at?.failed ?? 0)), failedAfter: after, unnumbered };
}

export interface SipRow extends KillCount {
  rate: number;
  case: SipCase;
  calls: number;
  created: number;
  successful: number;
  /** sipp's FailedCall plus the calls still open when it stopped. */
  failed: number;
  failedBy: Readonly<Record<string, number>>;
  /** failedActive / activeAtKill. */
  lossRatio: number | null;
  /** SIGKILL → the standby's "VIP taken" log line (its own clock), ms; null for `none`. */
  takeoverMs: number | null;
  /** ms from the uac's start to the kill. */
  killAtMs: number;
}

const STAT_PERIOD_MS = 10;
/** Extra seconds for sipp to end after its last call's BYE, before -timeout counts it as failed. */
const UAC_GRACE_S = 10;
const HA_WAIT_MS = 5_000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

async function runSipCase(rate: number, kase: SipCase, o: SipOptions, log: (line: string) => void): Promise<SipRow> {
  const uas: SippUas[] = [];
  const nodes: HaDispatcher[] = [];
  let uac: SippUac | null = null;
  const dir = makeTempDir('holdfast-bench-ha-sip');
  try {
    for (let i = 0; i < 3; i++) uas.push(await startUas({ transport: 'udp', scenario: fixture('uas-481.xml') }));
    const vip = `127.${randomInt(64, 250)}.${randomInt(1, 250)}.${randomInt(2, 250)}`;
    const sipPort = await freeUdp(vip);
    // `none` has a peer nobody answers at: the lone dispatcher elects itself after Master_Down_Interval.
    // Free for UDP (the election) and TCP (replication listens on the same number).
    const election = await freeSipPorts(2);
    const key = randomBytes(32);
    const config = (id: number): string => {
      const c = JSON.parse(
        haConfig({
          id,
          priority: id === 1 ? 200 : 100,
          preempt: false,
          advertIntervalMs: o.advertIntervalMs,
          listen: `127.0.0.1:${election[id - 1]}`,
          peers: [`127.0.0.1:${election[2 - id]}`],
          vip,
          services: [
            {
              name: 'sip',
              protocol: 'sip',
              listen: `${vip}:${sipPort}`,
              sip: { transports: ['udp'] },
              health: { probe: { type: 'udp' } },
              backends: uas.map((u, i) => ({ id: `uas${i}`, address: `127.0.0.1:${u.port}` })),
            },
          ],
        }),
      ) as { groups: Record<string, unknown>[] };
      c.groups[0]!['replicateState'] = kase === 'replication';
      return JSON.stringify(c);
    };
    nodes.push(await startHaDispatcher({ name: 'dispatcher-1', id: 1, dir, key, config: config(1) }));
    await nodes[0]!.waitFor('taken', 0, HA_WAIT_MS);
    if (kase !== 'none') {
      nodes.push(await startHaDispatcher({ name: 'dispatcher-2', id: 2, dir, key, config: config(2) }));
      await nodes[1]!.waitFor('backup', 0, HA_WAIT_MS);
    }
    // Health probes see the uas up; the backup hears a few adverts.
    await sleep(500);
    const calls = rate * o.seconds;
    uac = await startUac({
      target: `${vip}:${sipPort}`,
      transport: 'udp',
      calls,
      rate,
      callLengthMs: o.callMs,
      statPeriodMs: STAT_PERIOD_MS,
      timeoutS: o.seconds + Math.ceil((o.callMs + 2 * o.recvTimeoutMs) / 1000) + UAC_GRACE_S,
      extra: ['-recv_timeout', `${o.recvTimeoutMs}ms`, ...(o.noRetransmissions ? ['-nr'] : [])],
    });
    const startedAt = Date.now();
    const killAt = Math.max((o.seconds * 1000) / 2, o.callMs + 1000);
    await sleep(startedAt + killAt - Date.now());
    // The master now (a standby that missed adverts at its start may have taken over then: see
    // settledMaster), and the standby that must take over from it.
    const master = nodes.length > 1 ? (await settledMaster(nodes, `sip ${kase}`)).master : 0;
    const standby = nodes.length > 1 ? nodes[1 - master]! : null;
    const from = standby?.events.length ?? 0;
    const killMs = Date.now();
    await nodes[master]!.kill('SIGKILL');
    let takeoverMs: number | null = null;
    if (standby) takeoverMs = (await standby.waitFor('taken', from, HA_WAIT_MS)).time - killMs;
    const r: SippResult = await uac.done;
    const k = countAtKill(r.rows, killMs, r.failedCallIds);
    const failed = r.failed + r.unfinished;
    const row: SipRow = {
      rate,
      case: kase,
      calls,
      created: r.created,
      successful: r.successful,
      failed,
      failedBy: r.failedBy,
      ...k,
      lossRatio: k.activeAtKill > 0 ? k.failedActive / k.activeAtKill : null,
      takeoverMs,
      killAtMs: killMs - (r.rows[0]?.startMs ?? startedAt),
    };
    log(
      `dispatcher-failover sip ${rate} calls/s ${kase}: ${r.successful}/${r.created} ok, ${failed} failed ` +
        `(${Object.entries(r.failedBy).map(([w, n]) => `${w} ${n}`).join(', ') || '-'}; ${r.failedCallIds.length} Call-IDs in the error file); ` +
        `${k.failedActive} of ${k.activeAtKill} active at the kill failed, ${k.failedAfter} later ones; ` +
        `takeover ${takeoverMs === null ? '-' : `${takeoverMs} ms`}`,
    );
    return row;
  } finally {
    if (uac && uac.proc.child.exitCode === null && uac.proc.child.signalCode === null) {
      uac.kill('SIGKILL');
      await uac.done.catch(() => undefined);
    }
    await Promise.all(nodes.map((n) => n.proc.stop()));
    await Promise.all(uas.map((u) => u.kill('SIGKILL')));
    removeTempDir(dir);
  }
}

/**
 * Waits for one master and one backup among two dispatchers, still so after a pause of 200-300 ms (a
 * backup started or restarted on a busy machine may miss adverts and take over once; the epoch rule
 * then leaves one master). The master's index, and how many times the roles moved meanwhile.
 */
async function settledMaster(nodes: readonly HaDispatcher[], what: string): Promise<{ master: number; flaps: number }> {
  let flaps = 0;
  for (const deadline = Date.now() + HA_WAIT_MS; ; ) {
    const states = nodes.map((n) => n.state());
    const m = states.indexOf('master');
    if (m >= 0 && states[1 - m] === 'backup') {
      const seen = nodes.map((n) => n.events.length);
      await sleep(200 + randomInt(100));
      if (nodes.every((n, i) => n.events.slice(seen[i]).every((e) => e.what !== 'master' && e.what !== 'backup'))) return { master: m, flaps };
      flaps++;
    } else if (Date.now() > deadline) throw new Error(`${what}: no single master (${states.join(', ')})`);
    else await sleep(10);
  }
}

export async function runSip(o: SipOptions, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<SipRow[]> {
  const rows: SipRow[] = [];
  for (const rate of o.rates) for (const kase of o.cases) rows.push(await runSipCase(rate, kase, o, log));
  return rows;
}

// ---------------------------------------------------------------- linux takeover in namespaces

/** Why linux mode cannot run here, or null when it can. */
export function linuxSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, ip addr add, arping)';
  for (const cmd of ['ip', 'arping']) if (which(cmd) === null) return `${cmd} is not installed`;
  return null;
}

const LINUX_SERVICE_PORT = 5000;
const LINUX_ECHO_PORT = 7000;
const LINUX_ELECTION_PORT = 7700;

async function must(command: string, ...args: string[]): Promise<string> {
  const r = await runCommand(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Sends `String(performance.now())` to VIP:port every 1 ms from inside the client namespace. On a
 * stdin line `kill <pid>` it notes the time and SIGKILLs the master itself (same pid namespace), so
 * the kill and the first-reply clock are one clock with no pipe latency between them; it prints
 * `gap <ms>` for the first reply to a datagram sent more than 1 ms after the kill. `echo` once the
 * first reply ever comes back.
 */
function linuxClientScript(vip: string, port: number): string {
  return `const s = require('dgram').createSocket('udp4');
let killedAt = Infinity, seen = false;
s.on('error', () => {});
s.on('message', (m) => {
  if (!seen) { seen = true; console.log('echo'); }
  const sent = Number(m.toString('latin1'));
  if (sent > killedAt + 1) { console.log('gap ' + (performance.now() - killedAt)); killedAt = Infinity; }
});
s.bind(0, () => setInterval(() => s.send(String(performance.now()), ${port}, '${vip}'), 1));
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\\n')) >= 0) {
    const [cmd, arg] = buf.slice(0, nl).split(' ');
    buf = buf.slice(nl + 1);
    if (cmd === 'kill') { killedAt = performance.now(); try { process.kill(Number(arg), 'SIGKILL'); } catch (e) { console.log('error ' + e.message); } }
  }
});
process.stdin.on('end', () => process.exit(0));`;
}

/**
 * Linux takeover (src/takeover/linux.ts: `ip addr add` of the VIP on the master's interface, then
 * gratuitous ARP) between network namespaces of its own, laid out as test/e2e/dispatcher-ha-netns.test.ts:
 * a switch namespace with a bridge; client, d1, d2 and backend namespaces joined to it by veths; the
 * client accepts gratuitous ARP (arp_accept=1). Same trial as `runInterval`; the first reply after the
 * kill needs the new master's gratuitous ARP to have repointed the client's neighbour cache. The
 * namespaces (hence bridge and veths) and every process are removed on every path, an exit hook
 * included.
 */
async function runLinuxInterval(intervalMs: number, trials: number, garp: Garp): Promise<Row> {
  let lan: Lan | null = null;
  const dropAll = (): void => {
    for (const ns of lan?.namespaces ?? []) spawnSync('ip', ['netns', 'del', ns]);
  };
  process.on('exit', dropAll);
  const dir = makeTempDir('holdfast-bench-ha-linux');
  const nodes: (HaDispatcher | null)[] = [null, null];
  let echo: Proc | null = null;
  let client: ChildProcess | null = null;
  const gaps: number[] = [];
  let lost = 0;
  /** Times the group changed master between a restart and the next kill. */
  let flaps = 0;
  try {
    lan = await makeLan({ c: 10, d1: 1, d2: 2, b: 20 });
    const subnet = lan.subnet;
    const { c, d1, d2, b } = lan.nodes as Record<'c' | 'd1' | 'd2' | 'b', LanNode>;
    await must('ip', 'netns', 'exec', c.ns, 'sysctl', '-qw', `net.ipv4.conf.${c.iface}.arp_accept=1`);
    const d = [d1, d2];
    const vip = `${subnet}.100`;

    echo = await startProcess({
      name: 'echo',
      command: 'ip',
      args: ['netns', 'exec', b.ns, process.execPath, '-e',
        `const s = require('dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(${LINUX_ECHO_PORT}, '${b.ip}', () => console.log('listening'));`],
      readyLine: /^listening$/m,
    });
    const key = randomBytes(32);
    const config = (i: number): string =>
      haConfig({
        id: i + 1,
        priority: 100,
        preempt: false,
        advertIntervalMs: intervalMs,
        listen: `${d[i]!.ip}:${LINUX_ELECTION_PORT}`,
        peers: [`${d[1 - i]!.ip}:${LINUX_ELECTION_PORT}`],
        vip: `${vip}/24`,
        takeover: 'linux',
        interface: d[i]!.iface,
        garp,
        services: [
          {
            name: 'echo',
            protocol: 'udp',
            listen: `${vip}:${LINUX_SERVICE_PORT}`,
            health: { probe: { type: 'udp' } },
            backends: [{ id: 'echo', address: `${b.ip}:${LINUX_ECHO_PORT}` }],
          },
        ],
      });
    const start = async (i: number): Promise<HaDispatcher> =>
      (nodes[i] = await startHaDispatcher({ name: `dispatcher-${i + 1}`, id: i + 1, dir, key, netns: d[i]!.ns, config: config(i) }));
    await start(0);
    await nodes[0]!.waitFor('taken', 0, HA_WAIT_MS);
    await start(1);
    await nodes[1]!.waitFor('backup', 0, HA_WAIT_MS);

    const cl = spawn('ip', ['netns', 'exec', c.ns, process.execPath, '-e', linuxClientScript(vip, LINUX_SERVICE_PORT)], { stdio: ['pipe', 'pipe', 'inherit'] });
    client = cl;
    const lines: string[] = [];
    const waiters = new Set<() => void>();
    let partial = '';
    cl.stdout!.setEncoding('utf8');
    cl.stdout!.on('data', (s: string) => {
      partial += s;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        lines.push(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
      }
      for (const w of waiters) w();
    });
    const nextLine = (prefix: string, from: number, timeoutMs: number): Promise<string | null> =>
      new Promise((resolve) => {
        const check = (): void => {
          const l = lines.slice(from).find((x) => x.startsWith(prefix));
          if (l === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(l);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          resolve(null);
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    if ((await nextLine('echo', 0, HA_WAIT_MS)) === null) throw new Error(`linux mode: the client never reached ${vip}:${LINUX_SERVICE_PORT}`);

    for (let trial = 0; trial < trials; trial++) {
      const settled = await settledMaster(nodes as HaDispatcher[], 'linux mode');
      const master = settled.master;
      flaps += settled.flaps;
      const backup = 1 - master;
      const from = nodes[backup]!.events.length;
      const at = lines.length;
      const killWall = Date.now();
      cl.stdin!.write(`kill ${nodes[master]!.proc.pid}\n`);
      await nodes[master]!.proc.exited;
      const taken = await nodes[backup]!.waitFor('taken', from, HA_WAIT_MS);
      const line = await nextLine('gap ', at, HA_WAIT_MS);
      const err = lines.slice(at).find((l) => l.startsWith('error '));
      if (err) throw new Error(`linux mode: the client could not kill the master: ${err}`);
      if (line === null) lost++;
      else gaps.push(Number(line.slice(4)));
      await nodes[master]!.proc.stop();
      await start(master);
      await nodes[master]!.waitFor('backup', 0, HA_WAIT_MS);
      await nodes[master]!.waitFor('synced', 0, HA_WAIT_MS);
      process.stderr.write(`dispatcher-failover linux (${garp}) ${intervalMs} ms adverts: trial ${trial + 1}/${trials}: ${line === null ? 'no reply' : `${Number(line.slice(4)).toFixed(1)} ms`} (VIP taken in the new master's log ${taken.time - killWall} ms after the kill)\n`);
    }
  } finally {
    if (client && client.exitCode === null && client.signalCode === null) {
      const gone = new Promise((r) => client!.once('exit', r));
      client.kill('SIGKILL');
      await gone;
    }
    await Promise.all(nodes.map((n) => n?.proc.stop()));
    await echo?.stop();
    await lan?.close();
    process.off('exit', dropAll);
    removeTempDir(dir);
  }
  if (flaps > 0) process.stderr.write(`dispatcher-failover linux ${intervalMs} ms adverts: ${flaps} restart(s) where the group changed master before a trial (waited for one master)\n`);
  const sorted = gaps.sort((x, y) => x - y);
  return { mode: 'linux', garp, intervalMs, trials: sorted.length, lost, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? NaN };
}

export interface Report {
  settings: Options;
  takeover: Row[];
  /** Why a takeover mode was not measured. */
  skipped: string[];
  sip: SipRow[];
}

export async function run(o: Options): Promise<Report> {
  const takeover: Row[] = [];
  const skipped: string[] = [];
  if (o.parts.includes('takeover')) {
    if (o.modes.includes('loopback')) for (const ms of o.intervalsMs) takeover.push(await runInterval(ms, o.trials));
    if (o.modes.includes('linux')) {
      const why = linuxSkipReason();
      if (why !== null) {
        skipped.push(`linux mode skipped: ${why}`);
        process.stderr.write(`dispatcher-failover: linux mode skipped: ${why}\n`);
      } else for (const ms of o.intervalsMs) for (const garp of o.garps) takeover.push(await runLinuxInterval(ms, o.trials, garp));
    }
  }
  const sip = o.parts.includes('sip') ? await runSip(o.sip) : [];
  return { settings: o, takeover, skipped, sip };
}

const CASE_LABEL: Record<SipCase, string> = {
  none: 'no standby',
  'no-replication': 'standby, no state replication',
  replication: 'standby with state replication',
};

function pct(x: number | null): string {
  return x === null ? '–' : `${(x * 100).toFixed(2)} %`;
}

export function formatTakeover(rows: readonly Row[], skipped: readonly string[] = []): string {
  const lines = [
    '| takeover | advert interval | trials | no reply | p50 ms | p99 ms | max ms |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.mode}${r.garp === undefined ? '' : ` (${GARP_LABEL[r.garp]})`} | ${r.intervalMs} ms | ${r.trials} | ${r.lost} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(1)} |`),
  ];
  const notes = skipped.map((s) => `${s}\n`).join('');
  return (
    `${lines.join('\n')}\n\nSIGKILL of the master → first reply to a datagram sent after the kill (client sends every 1 ms; no preemption; the killed one restarted as backup between trials). ` +
    `loopback: 127/8 VIP alias; linux: \`ip addr add\` + gratuitous ARP between network namespaces (client, two dispatchers, echo backend on one bridge), ` +
    `sent by arping started at takeover or through the packet socket opened at start.\n${notes}${linuxVerdict(rows, skipped)}`
  );
}

const GARP_LABEL: Record<Garp, string> = { arping: 'arping', auto: 'packet socket' };

/** The linux-takeover-p99 line: the packet socket's p99 with 20 ms adverts against the target, arping's in the same run beside it. */
export function linuxVerdict(rows: readonly Row[], skipped: readonly string[] = []): string {
  const linux = rows.filter((r) => r.mode === 'linux' && r.trials > 0);
  const skip = skipped.find((x) => x.startsWith('linux'));
  if (linux.length === 0) return skip === undefined ? '' : `\nTARGET linux-takeover-p99: not met — not measured (${skip})\n`;
  const arm = (garp: Garp, ms: number): Row | undefined => linux.find((r) => r.garp === garp && r.intervalMs === ms);
  const figure = (r: Row): string => `p50 ${r.p50.toFixed(1)} / p99 ${r.p99.toFixed(1)} ms over ${r.trials} trials`;
  const parts: string[] = [];
  for (const ms of [...new Set(linux.map((r) => r.intervalMs))]) {
    const auto = arm('auto', ms);
    const old = arm('arping', ms);
    if (auto && old) parts.push(`${ms} ms adverts: packet socket ${figure(auto)}, arping ${figure(old)} (p99 ${(auto.p99 / old.p99).toFixed(2)}x arping's)`);
    else if (auto ?? old) parts.push(`${ms} ms adverts: ${GARP_LABEL[(auto ?? old)!.garp!]} ${figure((auto ?? old)!)}`);
  }
  const target = arm('auto', 20);
  const verdict = target === undefined ? 'not met' : target.p99 < LINUX_TARGET_P99_MS && target.lost === 0 ? 'met' : 'not met';
  const lead = target === undefined ? 'not measured with 20 ms adverts and the packet socket; ' : '';
  return `\nTARGET linux-takeover-p99: ${verdict} — ${lead}${parts.join('; ')} (target p99 < ${LINUX_TARGET_P99_MS} ms with 20 ms adverts)\n`;
}

export function formatSip(rows: readonly SipRow[], o: SipOptions): string {
  const lines = [
    '| calls/s | case | calls | active at kill | failed of them | loss ratio | failed later calls | ok / created | takeover ms |',
    '|---:|---|---:|---:|---:|---:|---:|---|---:|',
    ...rows.map(
      (r) =>
        `| ${r.rate} | ${CASE_LABEL[r.case]} | ${r.calls} | ${r.activeAtKill} | ${r.failedActive} | ${pct(r.lossRatio)} | ${r.failedAfter} | ` +
        `${r.successful} / ${r.created} | ${r.takeoverMs === null ? '–' : r.takeoverMs} |`,
    ),
  ];
  const repl = rows.filter((r) => r.case === 'replication' && r.activeAtKill > 0);
  const sumFailed = repl.reduce((a, r) => a + r.failedActive, 0);
  const sumActive = repl.reduce((a, r) => a + r.activeAtKill, 0);
  const verdict =
    repl.length === 0
      ? ''
      : `\nWith replication: ${sumFailed} of ${sumActive} active calls lost over ${repl.length} run(s), ${pct(sumFailed / sumActive)} ` +
        `(target < 0.1 %: ${sumFailed / sumActive < 0.001 ? 'met' : 'not met'}; the SIP ALG paper: 6.4 %).\n`;
  return (
    `${lines.join('\n')}\n\nsipp built-in uac (INVITE with SDP, ACK, ${o.callMs} ms pause, BYE; UDP retransmissions ${o.noRetransmissions ? 'off (-nr)' : 'on'}, -recv_timeout ${o.recvTimeoutMs} ms) ` +
    `through the VIP for ${o.seconds} s per run into three sipp uas (uas-481.xml: a BYE on a backend that never saw the call gets 481); ` +
    `the master SIGKILLed at max(${o.seconds / 2} s, call length + 1 s). Active at kill: sipp's CurrentCall in its last ${STAT_PERIOD_MS} ms statistics row before the kill; ` +
    `loss ratio = failed calls among them / active (seed 004). "failed later calls": calls started after that row that failed (with no standby: every one). ` +
    `Takeover: SIGKILL → the standby's "VIP taken" log line, ${o.advertIntervalMs} ms adverts.\n${verdict}`
  );
}

export function formatTable(r: Report): string {
  const parts: string[] = [];
  if (r.takeover.length > 0 || r.skipped.length > 0) parts.push(formatTakeover(r.takeover, r.skipped));
  if (r.sip.length > 0) parts.push(formatSip(r.sip, r.settings.sip));
  return parts.join('\n');
}

runIfMain(import.meta.url, async () => {
  process.stdout.write(formatTable(await run(optionsFromEnv())));
});
