import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../balance/index.js';
import { createBalancer } from '../balance/balancer.js';
import { FakeClock } from '../core/clock.js';
import { Backend } from '../core/backend.js';
import { addressKey, FlowTable, NO_FLOW, PROTO_TCP, PROTO_UDP } from '../sessions/flow-table.js';
import { checkFrame, encodeFrame, FLOW_ROLES, MAX_FRAME_BODY_BYTES, visitFrame } from '../wire/replication-frame.js';
import { writeSnapshot } from './replication-batch.js';
import { SessionRouter } from '../sessions/session-router.js';
import { NO_SESSION, SessionTable } from '../sessions/session-table.js';
import { ForeignIndex, newPeer, PeerService, REPLICA_IDLE_GRACE, ReplicaApplier, serviceIndex } from './replication-apply.js';

const SLOT = 0x1000000;

test('ForeignIndex: replicas marked by slot, a later session of the slot is not one, counts per slot', () => {
  const f = new ForeignIndex();
  const h = 1 * SLOT + 5;
  f.markSession(h, 3, 77 * SLOT + 2, 1);
  assert.deepEqual([f.isSession(h), f.sessionOwner(h), f.sid(h), f.sessions], [true, 3, 77 * SLOT + 2, 1]);
  const later = 3 * SLOT + 5;
  assert.equal(f.isSession(later), false, 'the slot\'s next session is our own');
  f.markSession(later, 4, 9, 1);
  assert.equal(f.sessions, 1, 'the slot\'s mark replaced');
  f.unmarkSession(h);
  assert.equal(f.sessions, 1, 'unmarking the earlier handle changes nothing');
  f.unmarkSession(later);
  assert.equal(f.sessions, 0);
  f.markFlow(4000, 3, 2);
  assert.deepEqual([f.isFlow(4000), f.flowOwner(4000), f.flows, f.isFlow(3999), f.isFlow(-1)], [true, 3, 1, false, false]);
  const seen: number[] = [];
  f.forEachFlow((fh) => seen.push(fh));
  assert.deepEqual(seen, [4000]);
  f.clear();
  assert.deepEqual([f.isFlow(4000), f.flows, f.sessions], [false, 0, 0]);
});

test('PeerService: a peer\'s sessions by the slot of its sid; a sid of another generation is not found', () => {
  const p = new PeerService();
  p.set(2 * SLOT + 9, 5 * SLOT + 1);
  assert.equal(p.localOf(2 * SLOT + 9), 5 * SLOT + 1);
  assert.equal(p.localOf(4 * SLOT + 9), NO_SESSION);
  assert.equal(p.localOf(11), NO_SESSION);
  p.forget(2 * SLOT + 9);
  assert.equal(p.localOf(2 * SLOT + 9), NO_SESSION);
});

function layer(name: string) {
  const clock = new FakeClock();
  const backends = ['b0', 'b1'].map((id, i) => {
    const b = new Backend(name, id, '127.0.0.1', 5070 + i, 1, i);
    b.state = 'up';
    return b;
  });
  const balancer = createBalancer<Backend>('round-robin');
  balancer.update(backends);
  const table = new SessionTable({ service: name, maxSessions: 100, timeoutMs: 60_000, clock });
  const sessions = new SessionRouter(name, table, backends, balancer);
  const flows = new FlowTable({ service: name, maxFlows: 200, timeoutMs: 60_000, clock });
  return { table, flows, svc: { name, sessions, flows, backends } };
}

test('ReplicaApplier: two services\' equal session handles are two replicas (they used to share one record); TABLE_SIZES sizes the tables once', () => {
  const a = layer('a');
  const b = layer('b');
  const index = [serviceIndex(a.svc), serviceIndex(b.svc)];
  const applier = new ReplicaApplier(index, () => false, { applyRefused: 0 });
  const peer = newPeer(7);
  applier.begin({ snapshotSessions: 0, snapshotFlows: 0 }, peer);
  const sid = 1 * SLOT + 0; // the first session of each of the peer's tables
  applier.tableSizes(0, 60, 120);
  assert.equal(a.table.bytes(), 60 * 36, 'room for the 60 sessions announced, allocated at once');
  applier.tableSizes(1, 1_000_000, 1_000_000);
  assert.equal(b.table.bytes(), 100 * 36, 'never beyond maxSessions');
  applier.sessionOpen(0, sid, 1, 'call-a');
  applier.sessionOpen(1, sid, 0, 'call-b');
  const ha = a.table.find('call-a');
  const hb = b.table.find('call-b');
  assert.notEqual(ha, NO_SESSION);
  assert.notEqual(hb, NO_SESSION);
  assert.equal(index[0]!.foreign.sessionOwner(ha), peer.tag);
  assert.equal(index[1]!.foreign.sessionOwner(hb), peer.tag);
  applier.sessionData(1, sid, 'udp 192.0.2.1 5060');
  assert.equal(b.table.data(hb), 'udp 192.0.2.1 5060');
  assert.equal(a.table.data(ha), null);
  applier.sessionClose(0, sid, 'ended');
  assert.equal(a.table.find('call-a'), NO_SESSION);
  assert.equal(b.table.find('call-b'), hb, 'the other service\'s replica stays');
  applier.sessionRepin(1, sid, 1);
  assert.equal(b.table.backend(hb), 1);
  // A sid whose slot no table here could ever hold is refused (it would size the index).
  const stats = { applyRefused: 0 };
  const bounded = new ReplicaApplier(index, () => false, stats);
  bounded.begin({ snapshotSessions: 0, snapshotFlows: 0 }, peer);
  bounded.sessionOpen(0, 1 * SLOT + 0xfffff0, 0, 'far');
  assert.equal(stats.applyRefused, 1);
  assert.equal(a.table.find('far'), NO_SESSION);
});

test('a snapshot in blocks, across many frames, rebuilds the same tables: keyed and anonymous sessions, UTF-8 keys, repeated and long data, IPv4 and IPv6 flows', () => {
  const N = 3000;
  const make = (max: number) => {
    const clock = new FakeClock();
    const backends = ['b0', 'b1', 'b2'].map((id, i) => {
      const b = new Backend('sip', id, '127.0.0.1', 5070 + i, 1, i);
      b.state = 'up';
      return b;
    });
    const balancer = createBalancer<Backend>('round-robin');
    balancer.update(backends);
    const table = new SessionTable({ service: 'sip', maxSessions: max, timeoutMs: 60_000, clock });
    const sessions = new SessionRouter('sip', table, backends, balancer);
    const flows = new FlowTable({ service: 'sip', maxFlows: 2 * max, timeoutMs: 60_000, clock });
    return { table, flows, svc: { name: 'sip', sessions, flows, backends } };
  };
  const a = make(N);
  const expected = new Map<string, { backend: number; data: string | null; flows: string[] }>();
  for (let i = 0; i < N; i++) {
    const key = i % 3 === 0 ? null : i % 3 === 1 ? `call-${i}@example` : `appel-é-${i}-${'ü'.repeat(i % 40)}`;
    const h = a.table.open(key, i % 3);
    // Data: repeated short strings (the decoder's cache), non-ASCII ones, and ones longer than the cache holds.
    const data = i % 5 === 0 ? null : i % 5 === 1 ? `udp 5060 192.0.2.${i % 7}` : i % 5 === 2 ? `tcp 5061 2001:db8::${i % 3}` : i % 5 === 3 ? `udp 5060 ü${i % 2}` : 'x'.repeat(100 + (i % 50));
    if (data !== null) a.table.setData(h, data);
    const src = i % 4 === 0 ? addressKey(`2001:db8::${i.toString(16)}`) : 0x0a000000 + i;
    a.flows.insert(src, 5060 + (i % 100), addressKey('10.0.0.100'), 5060, PROTO_UDP, FLOW_ROLES[i % 3]!, h, 1000 + i);
    if (i % 10 === 0) a.flows.insert(0x0b000000 + i, 4000, addressKey('10.0.0.100'), 4000, PROTO_TCP, 'secondary', NO_SESSION, 5000);
    if (key !== null) expected.set(key, { backend: i % 3, data, flows: [] });
  }
  const frames = writeSnapshot([serviceIndex(a.svc)], false).map((b, i) => encodeFrame({ sender: 1, seq: i + 1, nonce: Buffer.alloc(8) }, b.count, b.bytes));
  assert.ok(frames.length > 3, `several frames: ${frames.length}`);
  for (const f of frames) {
    assert.ok(f.length <= MAX_FRAME_BODY_BYTES, `a frame of ${f.length} bytes`);
    assert.ok(checkFrame(f));
  }
  const b = make(N);
  const ix = serviceIndex(b.svc);
  const synced: number[][] = [];
  const applier = new ReplicaApplier([ix], () => false, { applyRefused: 0 }, (_l, _p, sessions, flows) => synced.push([sessions, flows]));
  applier.begin({ snapshotSessions: 0, snapshotFlows: 0 }, newPeer(1), 123);
  for (const f of frames) assert.ok(visitFrame(f, applier));
  assert.deepEqual(synced, [[N, a.flows.size]]);
  assert.equal(b.table.size, N);
  assert.equal(b.flows.size, a.flows.size);
  assert.equal(ix.foreign.sessions, N);
  assert.equal(ix.foreign.flows, a.flows.size);
  for (const [key, e] of expected) {
    const h = b.table.find(key);
    assert.notEqual(h, NO_SESSION, key);
    assert.equal(b.table.backend(h), e.backend, key);
    assert.equal(b.table.data(h), e.data, key);
    // Seen at the clock reading of begin(), pushed ahead by the replica's idle grace (it expires on its own).
    assert.equal(b.table.lastSeen(h), 123 + b.table.timeoutMs * REPLICA_IDLE_GRACE, 'opened at the clock reading of begin()');
  }
  // Every flow is there with its fields, and on the replica of its session.
  a.flows.forEach((fh) => {
    const src = a.flows.srcIp(fh);
    const h = b.flows.lookup(src, a.flows.srcPort(fh), a.flows.dstIp(fh), a.flows.dstPort(fh), a.flows.proto(fh) as 6 | 17);
    assert.notEqual(h, NO_FLOW);
    assert.equal(b.flows.role(h), a.flows.role(fh));
    assert.equal(b.flows.timeoutMs(h), a.flows.timeoutMs(fh));
    const owner = a.flows.session(fh);
    const key = owner === NO_SESSION ? null : a.table.key(owner);
    if (owner === NO_SESSION) assert.equal(b.flows.session(h), NO_SESSION);
    else if (key !== null) assert.equal(b.flows.session(h), b.table.find(key));
    else assert.notEqual(b.flows.session(h), NO_SESSION);
  });
});
