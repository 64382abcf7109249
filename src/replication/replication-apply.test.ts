import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../balance/index.js';
import { createBalancer } from '../balance/balancer.js';
import { FakeClock } from '../core/clock.js';
import { Backend } from '../core/backend.js';
import { FlowTable } from '../sessions/flow-table.js';
import { SessionRouter } from '../sessions/session-router.js';
import { NO_SESSION, SessionTable } from '../sessions/session-table.js';
import { ForeignIndex, newPeer, PeerService, ReplicaApplier, serviceIndex } from './replication-apply.js';

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
