import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../balance/index.js';
import { createBalancer } from '../balance/balancer.js';
import { FakeClock } from '../core/clock.js';
import { Backend } from '../core/backend.js';
import { addressKey, FlowTable, PROTO_UDP } from '../sessions/flow-table.js';
import { SessionRouter } from '../sessions/session-router.js';
import { SessionTable } from '../sessions/session-table.js';
import { decodeFrame, encodeFrame, Op, type ReplicationOp } from '../wire/replication-frame.js';
import { serviceIndex, type ServiceIndex } from './replication-apply.js';
import { SnapshotWriter, writeSnapshot, type Batch } from './replication-batch.js';

const VIP = addressKey('10.0.0.100');

function service(n: number) {
  const clock = new FakeClock();
  const backends = ['b0', 'b1'].map((id, i) => {
    const b = new Backend('sip', id, '127.0.0.1', 5070 + i, 1, i);
    b.state = 'up';
    return b;
  });
  const balancer = createBalancer<Backend>('round-robin');
  balancer.update(backends);
  const table = new SessionTable({ service: 'sip', maxSessions: 10_000, timeoutMs: 60_000, clock });
  const sessions = new SessionRouter('sip', table, backends, balancer);
  const flows = new FlowTable({ service: 'sip', maxFlows: 10_000, timeoutMs: 30_000, clock });
  const handles: number[] = [];
  for (let i = 0; i < n; i++) {
    const h = table.open(i % 2 === 0 ? `call-${i}` : null, i % 2);
    table.setData(h, `udp 5060 192.0.2.${i}`);
    flows.insert(0x0a000000 + i, 5060, VIP, 5060, PROTO_UDP, 'signalling', h);
    handles.push(h);
  }
  const ix: ServiceIndex = serviceIndex({ name: 'sip', sessions, flows, backends });
  return { table, flows, ix, handles };
}

const ops = (batches: Batch[]): ReplicationOp[] =>
  batches.flatMap((b) => decodeFrame(encodeFrame({ sender: 1, seq: 1, nonce: Buffer.alloc(8) }, b.count, b.bytes))!.ops);

test('snapshot writer: slices of at most `max` sessions and flows add up to the one-pass snapshot', () => {
  const s = service(25);
  const whole = ops(writeSnapshot([s.ix], false));
  assert.equal(whole.length, 1 + 1 + 25 * 2 + 25 + 1, 'begin, table sizes, open + data per session, a flow each, end');
  assert.deepEqual(whole[1], { op: Op.TableSizes, service: 0, sessions: 25, flows: 25 });
  const w = new SnapshotWriter([s.ix], false);
  const sliced: ReplicationOp[] = [];
  let slices = 0;
  while (!w.done) {
    const slice = ops(w.next(10));
    slices++;
    const entries = slice.filter((o) => o.op === Op.SessionOpen || o.op === Op.FlowInsert).length;
    assert.ok(entries <= 10, `slice ${slices} carries ${entries} sessions and flows`);
    sliced.push(...slice);
  }
  assert.equal(slices, 5, '50 entries in slices of 10');
  assert.deepEqual(sliced, whole);
  assert.deepEqual(sliced.at(-1), { op: Op.SnapshotEnd, sessions: 25, flows: 25 });
});

test('snapshot writer: what changes between slices is seen by slot; replicas are never listed', () => {
  const s = service(6);
  s.ix.foreign.markSession(s.handles[1]!, 9, 1, 0);
  const w = new SnapshotWriter([s.ix], false);
  const first = ops(w.next(2)); // begin + the sessions in slots 0 and 2 (slot 1 is a replica: visited, not listed)
  assert.deepEqual(
    first.filter((o) => o.op === Op.SessionOpen).map((o) => (o as { sid: number }).sid),
    [s.handles[0]],
  );
  s.table.close(s.handles[4]!, 'ended'); // not reached yet: not in the snapshot
  s.table.close(s.handles[0]!, 'ended'); // passed already: the live stream says it closed
  const rest: ReplicationOp[] = [];
  while (!w.done) rest.push(...ops(w.next(2)));
  const sids = rest.filter((o) => o.op === Op.SessionOpen).map((o) => (o as { sid: number }).sid);
  assert.ok(!sids.includes(s.handles[4]!));
  assert.deepEqual(rest.at(-1), { op: Op.SnapshotEnd, sessions: 4, flows: 6 });
});

test('snapshot writer: an empty snapshot is only its brackets', () => {
  const s = service(3);
  const w = new SnapshotWriter([s.ix], true);
  assert.deepEqual(ops(w.next(1)), [{ op: Op.SnapshotBegin }, { op: Op.SnapshotEnd, sessions: 0, flows: 0 }]);
  assert.equal(w.done, true);
});

test('snapshot writer: each service has its own blocks (no block runs on into the next service)', () => {
  const s0 = service(5);
  const s1 = service(7);
  const all = ops(writeSnapshot([s0.ix, s1.ix], false));
  const per = (svc: number, op: number) => all.filter((o) => o.op === op && (o as { service: number }).service === svc).length;
  assert.deepEqual([per(0, Op.SessionOpen), per(0, Op.FlowInsert), per(1, Op.SessionOpen), per(1, Op.FlowInsert)], [5, 5, 7, 7]);
  assert.deepEqual(all.at(-1), { op: Op.SnapshotEnd, sessions: 12, flows: 12 });
});
