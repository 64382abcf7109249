/**
 * @module Benchmark of session-state replication (src/replication/state-replicator.ts, issue 7):
 * reintegration time — a backup connects and receives the snapshot of N sessions and N flows over
 * loopback TCP, from accept to SNAPSHOT_END applied (CoRAL reports 11 ms for its integration) — and
 * the cost replication adds to the data path, in ns per change: the same open + flow insert + close
 * cycles timed on a session layer with a streaming replicator and on one without, interleaved, in
 * the same process. Prints a markdown table; `node dist/bench/replication.js`.
 *
 * Knobs: BENCH_REPLICATION_SESSIONS (default 10 000; as many flows), BENCH_REPLICATION_CHANGES
 * (cycles per data-path pass, default 200 000), BENCH_ROUNDS (default 5; medians).
 */
import '../src/balance/index.js';
import { createBalancer } from '../src/balance/balancer.js';
import { realClock } from '../src/core/clock.js';
import { Backend } from '../src/core/backend.js';
import { createStateReplicator, type StateReplicator } from '../src/replication/state-replicator.js';
import { addressKey, FlowTable, PROTO_UDP } from '../src/sessions/flow-table.js';
import { SessionRouter } from '../src/sessions/session-router.js';
import { SessionTable } from '../src/sessions/session-table.js';
import { runIfMain } from './lib/main.js';

export interface ReplicationBenchOptions {
  readonly sessions: number;
  readonly changes: number;
  readonly rounds: number;
}

export interface ReplicationResult {
  readonly sessions: number;
  readonly flows: number;
  /** Accept → snapshot applied, ms, per round. */
  readonly syncMs: number[];
  readonly snapshotBytes: number;
  /** ns per change on the data path, with and without a streaming replicator (medians). */
  readonly nsPerChangeReplicated: number;
  readonly nsPerChangeAlone: number;
  /** ns per change including framing, sealing and writing (the event-loop turn after). */
  readonly nsPerChangeFlushed: number;
  readonly rounds: number;
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): ReplicationBenchOptions {
  const n = (name: string, d: number) => (env[name] !== undefined ? Number(env[name]) : d);
  return { sessions: n('BENCH_REPLICATION_SESSIONS', 10_000), changes: n('BENCH_REPLICATION_CHANGES', 200_000), rounds: n('BENCH_ROUNDS', 5) };
}

const KEY = Buffer.alloc(32, 7);
const VIP = addressKey('10.0.0.100');

function layer(max: number) {
  const backends = ['b0', 'b1', 'b2'].map((id, i) => {
    const b = new Backend('sip', id, '127.0.0.1', 5070 + i, 1, i);
    b.state = 'up';
    return b;
  });
  const balancer = createBalancer<Backend>('round-robin');
  balancer.update(backends);
  const table = new SessionTable({ service: 'sip', maxSessions: max, timeoutMs: 600_000, clock: realClock });
  const sessions = new SessionRouter('sip', table, backends, balancer);
  const flows = new FlowTable({ service: 'sip', maxFlows: max * 2, timeoutMs: 600_000, clock: realClock });
  return { table, sessions, flows, service: { name: 'sip', sessions, flows, backends } };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const turn = () => new Promise((r) => setImmediate(r));

/** `cycles` × (open a keyed session, insert its flow, close it): 3 changes per cycle. Returns ns per change. */
async function cycles(l: ReturnType<typeof layer>, count: number, tag: string): Promise<{ sync: number; total: number }> {
  let busy = 0n;
  const t0 = process.hrtime.bigint();
  const BATCH = 1000;
  for (let done = 0; done < count; done += BATCH) {
    const s = process.hrtime.bigint();
    for (let i = done; i < done + BATCH; i++) {
      const r = l.sessions.route(`${tag}-${i}@bench`);
      if (r.type === 'refused') throw new Error('refused');
      l.flows.insert(0x0b000000 + (i & 0xffffff), 5060, VIP, 5060, PROTO_UDP, 'signalling', r.session);
      l.flows.removeSession(r.session);
      l.sessions.close(r.session, 'ended');
    }
    busy += process.hrtime.bigint() - s;
    await turn();
  }
  const total = process.hrtime.bigint() - t0;
  // insert + remove + open + close: four changes per cycle.
  return { sync: Number(busy) / (count * 4), total: Number(total) / (count * 4) };
}

export async function run(o: ReplicationBenchOptions, progress: (line: string) => void = () => {}): Promise<ReplicationResult> {
  const a = layer(o.sessions * 2);
  for (let i = 0; i < o.sessions; i++) {
    const r = a.sessions.route(i % 2 === 0 ? null : `call-${i}@192.0.2.1`);
    if (r.type === 'refused') throw new Error('refused');
    a.table.setData(r.session, `udp 5060 192.0.2.${i & 0xff}`);
    a.flows.insert(0x0a000000 + i, 5060, VIP, 5060, PROTO_UDP, 'signalling', r.session);
  }
  const syncMs: number[] = [];
  let snapshotBytes = 0;
  for (let round = 0; round < o.rounds; round++) {
    const b = layer(o.sessions * 2);
    const rb = createStateReplicator({ id: 2, listen: { host: '127.0.0.1', port: 0 }, peers: [], key: KEY, services: [b.service], clock: realClock });
    await rb.start();
    const done = new Promise<number>((resolve) => rb.onSynced(1, (e) => resolve(e.ms)));
    const ra = createStateReplicator({ id: 1, listen: { host: '127.0.0.1', port: 0 }, peers: [rb.address()!], key: KEY, services: [a.service], clock: realClock });
    await ra.start();
    const ms = await done;
    if (b.table.size !== o.sessions || b.flows.size !== o.sessions) throw new Error(`snapshot incomplete: ${b.table.size} sessions, ${b.flows.size} flows`);
    snapshotBytes = ra.stats().bytesSent;
    syncMs.push(ms);
    progress(`round ${round + 1}: snapshot of ${o.sessions} sessions + ${o.sessions} flows (${snapshotBytes} bytes) applied in ${ms.toFixed(2)} ms`);
    await ra.close();
    await rb.close();
  }

  // Data path: a layer streaming to a live peer against one without a replicator.
  const repl = layer(o.changes + 16);
  const alone = layer(o.changes + 16);
  const sink = layer(o.changes + 16);
  const rs = createStateReplicator({ id: 2, listen: { host: '127.0.0.1', port: 0 }, peers: [], key: KEY, services: [sink.service], clock: realClock });
  await rs.start();
  const rr = createStateReplicator({ id: 1, listen: { host: '127.0.0.1', port: 0 }, peers: [rs.address()!], key: KEY, services: [repl.service], clock: realClock, maxBufferBytes: 256 * 1024 * 1024 });
  await rr.start();
  while (rr.stats().peersStreaming === 0) await turn();
  const withR: number[] = [];
  const withTotal: number[] = [];
  const without: number[] = [];
  for (let round = 0; round < o.rounds; round++) {
    const x = await cycles(repl, o.changes, `r${round}`);
    const y = await cycles(alone, o.changes, `a${round}`);
    withR.push(x.sync);
    withTotal.push(x.total);
    without.push(y.sync);
    progress(`round ${round + 1}: ${x.sync.toFixed(0)} ns/change replicated (${x.total.toFixed(0)} with flushes), ${y.sync.toFixed(0)} alone`);
  }
  if (rr.stats().overflows > 0) throw new Error('the peer was cut during the data-path run');
  await rr.close();
  await rs.close();
  return {
    sessions: o.sessions,
    flows: o.sessions,
    syncMs,
    snapshotBytes,
    nsPerChangeReplicated: median(withR),
    nsPerChangeAlone: median(without),
    nsPerChangeFlushed: median(withTotal),
    rounds: o.rounds,
  };
}

export function formatTable(r: ReplicationResult): string {
  const sorted = [...r.syncMs].sort((a, b) => a - b);
  return [
    `Reintegration: snapshot of ${r.sessions} sessions + ${r.flows} flows (${r.snapshotBytes} bytes on the wire), accept → applied, ${r.rounds} rounds`,
    '',
    '| median ms | min ms | max ms |',
    '|---:|---:|---:|',
    `| ${median(r.syncMs).toFixed(2)} | ${sorted[0]!.toFixed(2)} | ${sorted[sorted.length - 1]!.toFixed(2)} |`,
    '',
    'Data path, ns per change (session open, flow insert, flow remove, session close), medians',
    '',
    '| without replicator | with replicator (encode only) | added | with framing + sealing + write |',
    '|---:|---:|---:|---:|',
    `| ${r.nsPerChangeAlone.toFixed(0)} | ${r.nsPerChangeReplicated.toFixed(0)} | ${(r.nsPerChangeReplicated - r.nsPerChangeAlone).toFixed(0)} (${(r.nsPerChangeReplicated / r.nsPerChangeAlone).toFixed(2)}×) | ${r.nsPerChangeFlushed.toFixed(0)} |`,
  ].join('\n');
}

runIfMain(import.meta.url, async () => {
  console.log(formatTable(await run(optionsFromEnv(), (line) => process.stderr.write(`${line}\n`))));
});
