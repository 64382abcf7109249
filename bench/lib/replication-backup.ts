/**
 * @module The backup end of bench/replication.ts, run in a worker thread so that the master's event
 * loop (the main thread) is measured alone: a session layer and a replicator that listens, reports its
 * port, and posts each snapshot applied ({ ms, sessions, flows } as the replicator reports them, plus
 * its tables' sizes).
 */
import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import '../../src/balance/index.js';
import { createBalancer } from '../../src/balance/balancer.js';
import { realClock } from '../../src/core/clock.js';
import { Backend } from '../../src/core/backend.js';
import { createStateReplicator } from '../../src/replication/state-replicator.js';
import { FlowTable } from '../../src/sessions/flow-table.js';
import { SessionRouter } from '../../src/sessions/session-router.js';
import { SessionTable } from '../../src/sessions/session-table.js';

export interface BackupData {
  readonly key: Uint8Array;
  readonly maxSessions: number;
}

/** A bench session layer (three backends up, round-robin): the same on both ends. */
export function benchLayer(max: number) {
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

/**
 * This thread's scheduler times, ms (Linux /proc/thread-self/schedstat): `cpu` on a CPU, `wait`
 * runnable but waiting for one (what other processes on a shared machine take from it). The kernel
 * brings them up to date at each context switch and tick: good over a snapshot (the thread sleeps
 * between frames), within a tick or so. Null when the file is missing (not Linux).
 */
export function threadTimes(): { cpu: number; wait: number } | null {
  try {
    const [cpu, wait] = readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ');
    return { cpu: Number(cpu) / 1e6, wait: Number(wait) / 1e6 };
  } catch {
    return null;
  }
}

if (parentPort !== null && (workerData as { replicationBackup?: BackupData } | null)?.replicationBackup !== undefined) {
  const port = parentPort;
  const d = (workerData as { replicationBackup: BackupData }).replicationBackup;
  let close: () => Promise<void> = async () => {};
  // 'start': a fresh backup (empty tables, new replicator) that reports its port; 'stop' closes it;
  // 'exit' closes the worker. One worker serves every round: its code is warm after the first.
  port.on('message', (m: string) => {
    if (m === 'start') {
      const l = benchLayer(d.maxSessions);
      const r = createStateReplicator({ id: 2, listen: { host: '127.0.0.1', port: 0 }, peers: [], key: Buffer.from(d.key), services: [l.service], clock: realClock });
      // The backup thread's CPU and run-queue wait from listening to the snapshot applied (it is idle before the accept).
      let t0 = threadTimes();
      r.onSynced(1, (e) => {
        const t1 = threadTimes();
        const cpuMs = t0 !== null && t1 !== null ? t1.cpu - t0.cpu : -1;
        const waitMs = t0 !== null && t1 !== null ? t1.wait - t0.wait : -1;
        port.postMessage({ type: 'synced', ms: e.ms, sessions: e.sessions, flows: e.flows, tableSize: l.table.size, flowSize: l.flows.size, cpuMs, waitMs });
      });
      close = () => r.close();
      void r.start().then(() => {
        t0 = threadTimes();
        port.postMessage({ type: 'listening', port: r.address()!.port });
      });
    } else if (m === 'stop') void close().then(() => port.postMessage({ type: 'stopped' }));
    else if (m === 'exit') port.close();
  });
}
