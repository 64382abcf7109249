/**
 * @module Scale-out (issue 20): N active dispatchers registered on a real etcd (started here), SIP
 * calls spread over them by an L4 spreader that follows etcd's dispatcher set (bench/lib/l4-spreader.ts,
 * standing in for a router's ECMP), each dispatcher balancing with Maglev, so every one of them maps a
 * Call-ID to the same sipp uas.
 *
 * - `capacity-per-dispatcher`: the same sipp load (built-in uac, one socket per call) through 1, 2
 *   and 3 dispatchers; CPU per call of all dispatchers together (/proc utime+stime) and the spread of
 *   calls over the dispatchers (max/min share). On a 2-core machine shared with sipp, the spreader
 *   and other engineers, throughput cannot grow with dispatchers, so the honest figures are CPU per
 *   call (constant = capacity scales with cores) and an even spread. Target: CPU per call with 3
 *   dispatchers ≤ 1.25× with 1, and max/min share of calls ≤ 1.5.
 * - `maglev-disruption`: share of 100 000 keys moved when a 4th backend joins 3 (Maglev, M = 65537),
 *   against the minimum 1/4. Target: within 10 % of 1/(N+1).
 * - `calls-lost`: 3 dispatchers under sipp load, one SIGKILLed mid-run; its lease expires (TTL 2 s)
 *   and the spreader sends its flows to the others, where Maglev maps each call to the backend that
 *   has it. Loss = failed calls among those active at the kill / active calls. Target < 0.1 %.
 *
 *   node dist/bench/scale-out.js   (BENCH_QUICK=1; BENCH_SCALE_RATE=60 calls/s, BENCH_SCALE_SECONDS=8, BENCH_SCALE_CALL_MS=2000)
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { envInt } from './lib/env.js';
import { startHaDispatcher, type HaDispatcher } from './lib/ha-cluster.js';
import { L4Spreader } from './lib/l4-spreader.js';
import { runIfMain } from './lib/main.js';
import { makeTempDir, removeTempDir, which } from './lib/procs.js';
import { countAtKill } from './dispatcher-failover.js';
import { fixture, freeSipPorts, startUac, startUas, type SippResult, type SippUas } from '../test/helpers/sipp.js';
import { EtcdServer, etcdMissing } from '../test/helpers/etcd.js';
import { startViaUas } from './lib/via-uas.js';
import { MaglevBalancer } from '../src/balance/balancer-maglev.js';
import { keyHash } from '../src/core/key-hash.js';

export interface ScaleOptions {
  rate: number;
  seconds: number;
  callMs: number;
  counts: number[];
}

const PREFIX = '/holdfast/';
const LEASE_TTL_S = 2;
const UAC_GRACE_S = 10;
const RECV_TIMEOUT_MS = 6000;
const IDLE_SAMPLE_MS = 1500;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

/** utime + stime of one process, ms (Linux /proc; clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return 0;
  }
}

/** Share of `keys` that map to another backend when backend `n` joins backends 0..n-1. */
export function maglevDisruption(n: number, keys = 100_000): number {
  const pool = Array.from({ length: n + 1 }, (_, index) => ({ id: `uas${index}`, weight: 1, index, active: 0, load: 0, forecast: 0 }));
  const b = new MaglevBalancer<(typeof pool)[number]>();
  b.update(pool.slice(0, n));
  const hashes = Array.from({ length: keys }, (_, i) => keyHash(`${i}-${randomBytes(4).toString('hex')}@10.0.0.1`));
  const before = hashes.map((h) => (b.pick(h) as { backend: { id: string } }).backend.id);
  b.update(pool);
  let moved = 0;
  hashes.forEach((h, i) => {
    if ((b.pick(h) as { backend: { id: string } }).backend.id !== before[i]) moved++;
  });
  return moved / keys;
}

interface Cluster {
  dispatchers: HaDispatcher[];
  spreader: L4Spreader;
  ids: string[];
}

/** A SIP backend of the lab: the Via-answering UAS (default) or sipp's uas (uas-481.xml). */
export type UasKind = 'via' | 'sipp';

interface Backend {
  readonly port: number;
  close(): Promise<void>;
}

async function startBackends(kind: UasKind): Promise<Backend[]> {
  const out: Backend[] = [];
  for (let i = 0; i < 3; i++) {
    if (kind === 'via') out.push(await startViaUas(`uas${i}`));
    else {
      const u: SippUas = await startUas({ transport: 'udp', scenario: fixture('uas-481.xml') });
      out.push({ port: u.port, close: async () => void (await u.kill('SIGKILL')) });
    }
  }
  return out;
}

async function startCluster(k: number, etcd: EtcdServer, uas: Backend[], dir: string): Promise<Cluster> {
  const ports = await freeSipPorts(k);
  const key = randomBytes(32);
  const dispatchers: HaDispatcher[] = [];
  const ids: string[] = [];
  for (let i = 0; i < k; i++) {
    const id = `d${i + 1}`;
    ids.push(id);
    const listen = `127.0.0.1:${ports[i]}`;
    const config = JSON.stringify({
      version: 1,
      logging: { level: 'info', format: 'json' },
      admin: { enabled: true, listen: '127.0.0.1:0' },
      cluster: { membership: 'etcd', etcd: { endpoints: [etcd.endpoint], prefix: PREFIX, id, address: listen, leaseTtlS: LEASE_TTL_S } },
      services: [
        {
          name: 'sip',
          protocol: 'sip',
          listen,
          balancer: 'maglev',
          sip: { transports: ['udp'], recordRoute: false },
          media: { enabled: false },
          health: { probe: { type: 'udp' } },
          backends: uas.map((u, j) => ({ id: `uas${j}`, address: `127.0.0.1:${u.port}` })),
        },
      ],
    });
    dispatchers.push(await startHaDispatcher({ name: `scale-${id}`, id: i + 1, dir, key, config }));
  }
  const spreader = await L4Spreader.start();
  await spreader.follow(etcd.endpoint, PREFIX);
  const deadline = Date.now() + 10_000;
  while (spreader.live().length < k) {
    if (Date.now() > deadline) throw new Error(`spreader sees ${spreader.live().join(',')} of ${k} dispatchers`);
    await sleep(20);
  }
  return { dispatchers, spreader, ids };
}

async function stopCluster(c: Cluster | null): Promise<void> {
  if (!c) return;
  await c.spreader.close();
  await Promise.all(c.dispatchers.map((d) => d.proc.stop()));
}

export interface CapacityRow {
  dispatchers: number;
  calls: number;
  successful: number;
  failed: number;
  /** All CPU of the dispatchers during the load, per successful call. */
  cpuMsPerCall: number;
  /** The same less what they spend idle over as long (measured just before): the marginal cost of a call. */
  netCpuMsPerCall: number;
  /** CPU of all the dispatchers idle, ms per second. */
  idleMsPerS: number;
  /** Calls (flows) first sent to each dispatcher. */
  spread: number[];
}

async function clearEtcd(etcd: EtcdServer): Promise<void> {
  const c = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  await c.delete().prefix(PREFIX);
  c.close();
}

export async function runCapacity(k: number, o: ScaleOptions, etcd: EtcdServer, log: (l: string) => void): Promise<CapacityRow> {
  const dir = makeTempDir('holdfast-bench-scale');
  let uas: Backend[] = [];
  let cluster: Cluster | null = null;
  try {
    await clearEtcd(etcd);
    uas = await startBackends('via');
    cluster = await startCluster(k, etcd, uas, dir);
    await sleep(300);
    // Idle cost first (health probes, etcd keep-alives, timers): what each dispatcher spends with no call.
    const idle0 = cluster.dispatchers.map((d) => cpuMs(d.proc.child.pid!));
    const idleStart = Date.now();
    await sleep(IDLE_SAMPLE_MS);
    const idleMsPerS = (cluster.dispatchers.reduce((a, d, i) => a + cpuMs(d.proc.child.pid!) - idle0[i]!, 0) * 1000) / (Date.now() - idleStart);
    const before = cluster.dispatchers.map((d) => cpuMs(d.proc.child.pid!));
    const loadStart = Date.now();
    const calls = o.rate * o.seconds;
    const uac = await startUac({
      target: cluster.spreader.address,
      transport: 'udp',
      calls,
      rate: o.rate,
      callLengthMs: o.callMs,
      statPeriodMs: 100,
      timeoutS: o.seconds + Math.ceil(o.callMs / 1000) + UAC_GRACE_S,
      extra: ['-t', 'un', '-max_socket', '4000'],
    });
    const r = await uac.done;
    if (r.created === 0) throw new Error(`sipp placed no call (exit ${r.code}): ${r.outputTail}\n${r.errors}`);
    const after = cluster.dispatchers.map((d) => cpuMs(d.proc.child.pid!));
    const cpu = after.reduce((a, x, i) => a + x - before[i]!, 0);
    const idleDuring = (idleMsPerS * (Date.now() - loadStart)) / 1000;
    const spread = cluster.ids.map((id) => cluster!.spreader.flowsTo.get(id) ?? 0);
    const ok = Math.max(1, r.successful);
    const row: CapacityRow = {
      dispatchers: k,
      calls,
      successful: r.successful,
      failed: r.failed + r.unfinished,
      cpuMsPerCall: cpu / ok,
      netCpuMsPerCall: Math.max(0, cpu - idleDuring) / ok,
      idleMsPerS,
      spread,
    };
    log(
      `scale-out capacity ${k} dispatcher(s): ${r.successful}/${r.created} calls ok, ${row.failed} failed, ${row.cpuMsPerCall.toFixed(3)} ms CPU per call ` +
        `(${row.netCpuMsPerCall.toFixed(3)} net of idle ${idleMsPerS.toFixed(1)} ms/s), calls per dispatcher ${spread.join('/')}`,
    );
    return row;
  } finally {
    await stopCluster(cluster);
    await Promise.all(uas.map((u) => u.close()));
    removeTempDir(dir);
  }
}

export interface KillRow {
  kind: UasKind;
  calls: number;
  successful: number;
  failed: number;
  activeAtKill: number;
  failedActive: number;
  failedAfter: number;
  lossRatio: number | null;
  /** SIGKILL → the spreader stops sending to the dead dispatcher (its lease expired), ms. */
  leaveMs: number;
}

export async function runKill(o: ScaleOptions, etcd: EtcdServer, log: (l: string) => void, kind: UasKind = 'via'): Promise<KillRow> {
  const dir = makeTempDir('holdfast-bench-scale-kill');
  let uas: Backend[] = [];
  let cluster: Cluster | null = null;
  try {
    await clearEtcd(etcd);
    uas = await startBackends(kind);
    cluster = await startCluster(3, etcd, uas, dir);
    await sleep(300);
    const calls = o.rate * o.seconds;
    const uac = await startUac({
      target: cluster.spreader.address,
      transport: 'udp',
      calls,
      rate: o.rate,
      callLengthMs: o.callMs,
      statPeriodMs: 10,
      // A call stuck behind the dead dispatcher fails after RECV_TIMEOUT_MS with its Call-ID in
      // sipp's error file, so that it is counted (a call still open at -timeout would not be).
      timeoutS: o.seconds + Math.ceil((o.callMs + 2 * RECV_TIMEOUT_MS) / 1000) + UAC_GRACE_S,
      extra: ['-t', 'un', '-max_socket', '4000', '-recv_timeout', `${RECV_TIMEOUT_MS}ms`],
    });
    const startedAt = Date.now();
    await sleep(startedAt + Math.max((o.seconds * 1000) / 2, o.callMs + 1000) - Date.now());
    const victim = cluster.dispatchers[1]!;
    const killMs = Date.now();
    await victim.kill('SIGKILL');
    while (cluster.spreader.live().includes('d2') && Date.now() - killMs < 10_000) await sleep(10);
    const leaveMs = Date.now() - killMs;
    const r: SippResult = await uac.done;
    const k = countAtKill(r.rows, killMs, r.failedCallIds);
    if (r.unfinished > 0) k.failedActive += r.unfinished; // still open at -timeout: counted lost, not hidden
    const row: KillRow = {
      kind,
      calls,
      successful: r.successful,
      failed: r.failed + r.unfinished,
      activeAtKill: k.activeAtKill,
      failedActive: k.failedActive,
      failedAfter: k.failedAfter,
      lossRatio: k.activeAtKill > 0 ? k.failedActive / k.activeAtKill : null,
      leaveMs,
    };
    log(
      `scale-out kill 1 of 3 (${kind} uas): ${r.successful}/${r.created} ok, ${row.failed} failed (${Object.entries(r.failedBy).map(([w, n]) => `${w} ${n}`).join(', ') || '-'}); ` +
        `${k.failedActive} of ${k.activeAtKill} active at the kill failed, ${k.failedAfter} later ones; dead dispatcher left the spreader after ${leaveMs} ms`,
    );
    return row;
  } finally {
    await stopCluster(cluster);
    await Promise.all(uas.map((u) => u.close()));
    removeTempDir(dir);
  }
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): ScaleOptions {
  const quick = env['BENCH_QUICK'] === '1';
  return {
    rate: envInt(env, 'BENCH_SCALE_RATE', 1) ?? (quick ? 40 : 60),
    seconds: envInt(env, 'BENCH_SCALE_SECONDS', 2) ?? (quick ? 5 : 10),
    callMs: envInt(env, 'BENCH_SCALE_CALL_MS', 100) ?? 2000,
    counts: [1, 2, 3],
  };
}

const pct = (x: number | null): string => (x === null ? '-' : `${(100 * x).toFixed(2)} %`);

/** Runs every part and returns the table and TARGET lines (progress goes to `log`). */
export async function run(log: (l: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<string> {
  const missing = etcdMissing() ?? (which('sipp') ? null : 'sipp is not installed (Debian sip-tester)');
  if (missing) return `scale-out: skipped: ${missing}\n`;
  const o = optionsFromEnv();
  const etcd = await EtcdServer.start();
  const lines: string[] = [];
  try {
    const rows: CapacityRow[] = [];
    for (const k of o.counts) rows.push(await runCapacity(k, o, etcd, log));
    const kill = await runKill(o, etcd, log, 'via');
    const killSipp = await runKill(o, etcd, log, 'sipp');
    const disruption = maglevDisruption(3);
    lines.push(`## bench/scale-out (${o.rate} calls/s for ${o.seconds} s, calls of ${o.callMs} ms; etcd ${etcd.endpoint}; 2 cores shared by sipp, the spreader, etcd and the dispatchers)`);
    lines.push('');
    lines.push('| dispatchers | calls ok / placed | failed | CPU per call (all dispatchers) | vs 1 | idle CPU (all) | net CPU per call | vs 1 | calls per dispatcher | max/min share |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|');
    const base = rows[0]!.cpuMsPerCall;
    const netBase = rows[0]!.netCpuMsPerCall;
    for (const r of rows) {
      const spread = r.spread.length > 1 ? Math.max(...r.spread) / Math.max(1, Math.min(...r.spread)) : 1;
      lines.push(
        `| ${r.dispatchers} | ${r.successful} / ${r.calls} | ${r.failed} | ${r.cpuMsPerCall.toFixed(3)} ms | ${(r.cpuMsPerCall / base).toFixed(2)}× | ` +
          `${r.idleMsPerS.toFixed(1)} ms/s | ${r.netCpuMsPerCall.toFixed(3)} ms | ${(r.netCpuMsPerCall / netBase).toFixed(2)}× | ${r.spread.join(' / ')} | ${spread.toFixed(2)} |`,
      );
    }
    lines.push('');
    lines.push(`kill 1 of 3 dispatchers, sipp's uas (answers a call where it first heard it from, not per Via): ${killSipp.failedActive} of ${killSipp.activeAtKill} active calls failed (${pct(killSipp.lossRatio)}), ${killSipp.failedAfter} later calls failed`);
    lines.push(`kill 1 of 3 dispatchers, Via-answering uas: ${kill.failedActive} of ${kill.activeAtKill} active calls failed (${pct(kill.lossRatio)}), ${kill.failedAfter} later calls failed, ${kill.successful}/${kill.calls} ok; the dead one left the spreader after ${kill.leaveMs} ms (lease ${LEASE_TTL_S} s)`);
    lines.push(`Maglev (M = 65537): a 4th backend joining 3 moved ${pct(disruption)} of 100 000 keys (minimum 25.00 %)`);
    lines.push('');
    const three = rows.find((r) => r.dispatchers === 3)!;
    const netRatio = three.netCpuMsPerCall / netBase;
    const cpuRatio = three.cpuMsPerCall / base;
    const spread3 = Math.max(...three.spread) / Math.max(1, Math.min(...three.spread));
    const capMet = netRatio <= 1.25 && spread3 <= 1.5 && rows.every((r) => r.failed === 0);
    lines.push(
      `TARGET capacity-per-dispatcher: ${capMet ? 'met' : 'not met'} — CPU per call net of idle with 3 dispatchers ${netRatio.toFixed(2)}× that with 1 (target ≤ 1.25×; ` +
        `gross ${cpuRatio.toFixed(2)}×, idle ${three.idleMsPerS.toFixed(1)} vs ${rows[0]!.idleMsPerS.toFixed(1)} ms/s), calls spread max/min ${spread3.toFixed(2)} (≤ 1.5), failed calls ${rows.map((r) => r.failed).join('/')} ` +
        `(2 shared cores: throughput cannot grow with dispatchers, CPU per call is the figure)`,
    );
    const disMet = Math.abs(disruption - 0.25) <= 0.025;
    lines.push(`TARGET maglev-disruption: ${disMet ? 'met' : 'not met'} — ${pct(disruption)} of keys moved when a 4th backend joined 3 (1/N = 25 %, target within 10 %)`);
    const lossMet = kill.lossRatio !== null && kill.lossRatio < 0.001;
    lines.push(`TARGET calls-lost: ${lossMet ? 'met' : 'not met'} — ${pct(kill.lossRatio)} of ${kill.activeAtKill} active calls lost when 1 of 3 dispatchers was SIGKILLed, backends answering per Via (target < 0.1 %; with sipp's uas ${pct(killSipp.lossRatio)})`);
  } finally {
    await etcd.stop();
  }
  return `${lines.join('\n')}\n`;
}

runIfMain(import.meta.url, async () => {
  process.stdout.write(await run());
});
