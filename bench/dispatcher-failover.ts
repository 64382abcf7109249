/**
 * @module Dispatcher failover (issue 7), loopback takeover, in two parts.
 *
 * `takeover`: two `holdfast dispatcher` processes in one election group whose 127/8 VIP carries a
 * UDP service in front of two echo backends; a client sends a datagram to the VIP every 1 ms. Each
 * trial SIGKILLs the master and measures, on the client, the time from the kill to the first reply
 * to a datagram sent after it (only the new master can have forwarded it); the killed dispatcher is
 * then restarted as a backup without preemption, and the next trial kills the other one. p50/p99
 * over BENCH_HA_TRIALS trials per advert interval.
 *
 * `sip`: the SIP ALG paper's experiment (seed 004, section 3): sipp's built-in uac (INVITE with SDP,
 * ACK, `-d` pause, BYE) places calls through the VIP at each rate into three sipp uas (uas-481.xml:
 * a BYE that reaches a backend that never saw the call gets 481, so a call re-routed to the wrong
 * backend fails); the master is SIGKILLed mid-run. Loss ratio = failed calls among those active at
 * the failure / calls active at the failure, for the paper's three cases: `none` (one dispatcher,
 * no standby), `no-replication` (a standby with `replicateState: false`: it takes the VIP, not the
 * calls' pins) and `replication` (a standby with the state replicated).
 *
 *   node dist/bench/dispatcher-failover.js   (BENCH_HA_PARTS=takeover,sip; BENCH_HA_TRIALS=30,
 *     BENCH_HA_INTERVALS=20,10,5; BENCH_HA_SIP_RATES=50,100,200, BENCH_HA_SIP_CASES=none,no-replication,replication,
 *     BENCH_HA_SIP_CALL_MS=2500, BENCH_HA_SIP_SECONDS=6, BENCH_HA_SIP_RECV_TIMEOUT_MS=3000,
 *     BENCH_HA_SIP_INTERVAL_MS=20, BENCH_HA_SIP_NO_RETRANS=1 for the paper's uac without retransmissions)
 */
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { envInt } from './lib/env.js';
import { haConfig, startHaDispatcher, type HaDispatcher } from './lib/ha-cluster.js';
import { runIfMain } from './lib/main.js';
import { makeTempDir, removeTempDir } from './lib/procs.js';
import { fixture, startUac, startUas, type SippResult, type SippStats, type SippUac, type SippUas } from '../test/helpers/sipp.js';
import { bindUdpEcho } from '../test/helpers/udp-echo.js';

export const PARTS = ['takeover', 'sip'] as const;
export type Part = (typeof PARTS)[number];
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
  const list = (env['BENCH_HA_INTERVALS'] ?? '20,10,5').split(',').map(Number).filter((n) => n >= 5);
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
    parts: listOf('BENCH_HA_PARTS', env['BENCH_HA_PARTS'], PARTS) ?? [...PARTS],
    trials: envInt(env, 'BENCH_HA_TRIALS', 1) ?? 30,
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
  intervalMs: number;
  trials: number;
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
  const election = [await freeUdp('127.0.0.1'), await freeUdp('127.0.0.1')];
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
      const master = nodes.findIndex((n) => n?.state() === 'master');
      const backup = 1 - master;
      await new Promise((r) => setTimeout(r, 200 + randomInt(100)));
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
  return { intervalMs, trials: sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? NaN };
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
    const election = [await freeUdp('127.0.0.1'), await freeUdp('127.0.0.1')];
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
    const from = nodes[1]?.events.length ?? 0;
    const killMs = Date.now();
    await nodes[0]!.kill('SIGKILL');
    let takeoverMs: number | null = null;
    if (nodes[1]) takeoverMs = (await nodes[1].waitFor('taken', from, HA_WAIT_MS)).time - killMs;
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

export async function runSip(o: SipOptions, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<SipRow[]> {
  const rows: SipRow[] = [];
  for (const rate of o.rates) for (const kase of o.cases) rows.push(await runSipCase(rate, kase, o, log));
  return rows;
}

export interface Report {
  settings: Options;
  takeover: Row[];
  sip: SipRow[];
}

export async function run(o: Options): Promise<Report> {
  const takeover: Row[] = [];
  if (o.parts.includes('takeover')) for (const ms of o.intervalsMs) takeover.push(await runInterval(ms, o.trials));
  const sip = o.parts.includes('sip') ? await runSip(o.sip) : [];
  return { settings: o, takeover, sip };
}

const CASE_LABEL: Record<SipCase, string> = {
  none: 'no standby',
  'no-replication': 'standby, no state replication',
  replication: 'standby with state replication',
};

function pct(x: number | null): string {
  return x === null ? '–' : `${(x * 100).toFixed(2)} %`;
}

export function formatTakeover(rows: readonly Row[]): string {
  const lines = [
    '| advert interval | trials | p50 ms | p99 ms | max ms |',
    '|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.intervalMs} ms | ${r.trials} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(1)} |`),
  ];
  return `${lines.join('\n')}\n\nSIGKILL of the master → first reply to a datagram sent after the kill (client sends every 1 ms; loopback takeover, no preemption; the killed one restarted as backup between trials).\n`;
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
  if (r.takeover.length > 0) parts.push(formatTakeover(r.takeover));
  if (r.sip.length > 0) parts.push(formatSip(r.sip, r.settings.sip));
  return parts.join('\n');
}

runIfMain(import.meta.url, async () => {
  process.stdout.write(formatTable(await run(optionsFromEnv())));
});
