import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import '../balance/index.js';
import { createBalancer } from '../balance/balancer.js';
import { FakeClock, realClock, type Clock } from '../core/clock.js';
import { Backend } from '../core/backend.js';
import { addressKey, FlowTable, NO_FLOW, PROTO_UDP } from '../sessions/flow-table.js';
import { SessionRouter } from '../sessions/session-router.js';
import { NO_SESSION, SessionTable } from '../sessions/session-table.js';
import { MessageType, open, seal } from '../wire/envelope.js';
import { decodeFrame, encodeFrame, Op, OpWriter } from '../wire/replication-frame.js';
import type { RelayChange, RelayPortState } from '../media/media-relay.js';
import { createStateReplicator, type StateReplicator } from './state-replicator.js';

const KEY = Buffer.alloc(32, 0x42);
const LOOPBACK = '127.0.0.1';
const VIP = addressKey('10.0.0.100');

/** One service's session layer: three backends up behind round-robin. */
function layer(clock: Clock = realClock, maxSessions = 50_000, sessionTimeoutMs = 60_000) {
  const backends = ['b0', 'b1', 'b2'].map((id, i) => {
    const b = new Backend('sip', id, LOOPBACK, 5070 + i, 1, i);
    b.state = 'up';
    return b;
  });
  const balancer = createBalancer<Backend>('round-robin');
  balancer.update(backends);
  const table = new SessionTable({ service: 'sip', maxSessions, timeoutMs: sessionTimeoutMs, clock });
  const sessions = new SessionRouter('sip', table, backends, balancer);
  const flows = new FlowTable({ service: 'sip', maxFlows: maxSessions * 2, timeoutMs: 30_000, clock });
  return { backends, table, sessions, flows, service: { name: 'sip', sessions, flows, backends } };
}

type Layer = ReturnType<typeof layer>;

async function until(what: string, cond: () => boolean, limitMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > limitMs) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function replicator(t: TestContext, id: number, l: Layer, peers: { host: string; port: number }[], extra: { clock?: Clock; maxBufferBytes?: number; port?: number; snapshotSliceEntries?: number; snapshotSliceMs?: number; epoch?: () => number; ackIntervalMs?: number; lagTimeoutMs?: number } = {}) {
  const r = createStateReplicator({
    id,
    listen: { host: LOOPBACK, port: extra.port ?? 0 },
    peers,
    key: KEY,
    services: [l.service],
    // The table's clock: the applier stamps replicas with the transport's clock reading.
    clock: extra.clock ?? realClock,
    ackIntervalMs: extra.ackIntervalMs ?? 10,
    reconnectMs: 20,
    ...(extra.epoch !== undefined ? { epoch: extra.epoch } : {}),
    ...(extra.lagTimeoutMs !== undefined ? { lagTimeoutMs: extra.lagTimeoutMs } : {}),
    ...(extra.maxBufferBytes !== undefined ? { maxBufferBytes: extra.maxBufferBytes } : {}),
    ...(extra.snapshotSliceEntries !== undefined ? { snapshotSliceEntries: extra.snapshotSliceEntries } : {}),
    ...(extra.snapshotSliceMs !== undefined ? { snapshotSliceMs: extra.snapshotSliceMs } : {}),
  });
  t.after(() => r.close());
  await r.start();
  return r;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, LOOPBACK, () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('replication: opens, data, re-pins, closes and flows on A appear on B; B sends nothing back', async (t) => {
  const a = layer();
  const b = layer();
  const [pa, pb] = [await freePort(), await freePort()];
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: pb }], { port: pa });
  const rb = await replicator(t, 2, b, [{ host: LOOPBACK, port: pa }], { port: pb });
  await until('both connected', () => ra.stats().peersStreaming === 1 && rb.stats().peersStreaming === 1);

  const opened = a.sessions.route('call-1@client');
  assert.equal(opened.type, 'opened');
  if (opened.type !== 'opened') return;
  a.table.setData(opened.session, 'udp 127.0.0.1 5099');
  const anon = a.sessions.open(null);
  assert.equal(anon.type, 'opened');
  if (anon.type !== 'opened') return;
  a.flows.insert(addressKey('192.0.2.7'), 5099, VIP, 5060, PROTO_UDP, 'signalling', opened.session);
  a.flows.insert(addressKey('2001:db8::7'), 40000, VIP, 30000, PROTO_UDP, 'announced', anon.session, 12_345);

  await until('B has the keyed session', () => b.table.find('call-1@client') !== NO_SESSION);
  await until('B has both flows', () => b.flows.size === 2);
  const hb = b.table.find('call-1@client');
  assert.equal(b.table.backend(hb), opened.backend.index);
  await until('B has the data', () => b.table.data(hb) === 'udp 127.0.0.1 5099');
  assert.equal(b.table.size, 2);
  const f1 = b.flows.lookup(addressKey('192.0.2.7'), 5099, VIP, 5060, PROTO_UDP);
  assert.notEqual(f1, NO_FLOW);
  assert.equal(b.flows.session(f1), hb, 'the flow names B\'s own handle of the session');
  const f2 = b.flows.lookup(addressKey('2001:db8::7'), 40000, VIP, 30000, PROTO_UDP);
  assert.notEqual(f2, NO_FLOW);
  assert.equal(b.flows.role(f2), 'announced');
  assert.equal(b.flows.timeoutMs(f2), 12_345);
  const hAnon = b.flows.session(f2);
  assert.equal(b.table.key(hAnon), null);
  assert.equal(b.table.backend(hAnon), anon.backend.index);

  // Re-pin (the backend failed), then the end of the call.
  const other = a.backends[(opened.backend.index + 1) % 3]!;
  a.sessions.pin('call-1@client', other);
  await until('B follows the re-pin', () => b.table.backend(hb) === other.index);
  a.flows.remove(a.flows.lookup(addressKey('2001:db8::7'), 40000, VIP, 30000, PROTO_UDP));
  a.sessions.close(opened.session, 'ended');
  await until('B closed the session', () => b.table.find('call-1@client') === NO_SESSION);
  await until('B removed the flow', () => b.flows.lookup(addressKey('2001:db8::7'), 40000, VIP, 30000, PROTO_UDP) === NO_FLOW);
  assert.equal(b.table.size, 1, 'the anonymous session stays');

  await until('A has its acks', () => rb.stats().framesApplied >= 1);
  // B applied but owns nothing: the only ops A ever received are B's (empty) snapshot.
  assert.equal(ra.stats().opsApplied, 3, 'SNAPSHOT_BEGIN, TABLE_SIZES and SNAPSHOT_END from B, nothing echoed');
  assert.equal(a.table.size, 1);
  assert.equal(rb.stats().foreignSessions, 1);
  assert.equal(rb.stats().foreignFlows, 1);
});

test('replication: a late joiner gets a snapshot, then the stream', async (t) => {
  const a = layer();
  const keys: string[] = [];
  for (let i = 0; i < 300; i++) {
    const key = i % 3 === 0 ? null : `call-${i}`;
    const r = a.sessions.route(key);
    assert.equal(r.type, 'opened');
    if (r.type !== 'opened') return;
    if (key) keys.push(key);
    a.flows.insert(0x0a000000 + i, 5060, VIP, 5060, PROTO_UDP, 'signalling', r.session);
  }
  const pb = await freePort();
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: pb }]);
  const b = layer();
  const synced: { sessions: number; flows: number }[] = [];
  const rb = createStateReplicator({ id: 2, listen: { host: LOOPBACK, port: pb }, peers: [], key: KEY, services: [b.service], clock: realClock, ackIntervalMs: 10 });
  t.after(() => rb.close());
  rb.onSynced(1, (e) => synced.push({ sessions: e.sessions, flows: e.flows }));
  await rb.start();
  await until('snapshot applied', () => synced.length === 1);
  assert.deepEqual(synced[0], { sessions: 300, flows: 300 });
  assert.equal(b.table.size, 300);
  assert.equal(b.flows.size, 300);
  for (const key of keys) assert.equal(b.table.backend(b.table.find(key)), a.table.backend(a.table.find(key)), key);
  for (let i = 0; i < 300; i += 37) {
    const fa = a.flows.lookup(0x0a000000 + i, 5060, VIP, 5060, PROTO_UDP);
    const fb = b.flows.lookup(0x0a000000 + i, 5060, VIP, 5060, PROTO_UDP);
    assert.equal(b.table.backend(b.flows.session(fb)), a.table.backend(a.flows.session(fa)));
  }
  a.sessions.route('call-after');
  await until('stream after the snapshot', () => b.table.find('call-after') !== NO_SESSION);
  assert.equal(ra.stats().snapshotsSent, 1);
});

/** A TCP relay whose connections the test can kill. */
async function proxy(t: TestContext, to: number) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const up = net.connect(to, LOOPBACK);
    sockets.add(c).add(up);
    c.pipe(up).pipe(c);
    const end = () => {
      c.destroy();
      up.destroy();
      sockets.delete(c);
      sockets.delete(up);
    };
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, LOOPBACK, () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  let accepted = 0;
  server.on('connection', () => accepted++);
  return {
    port: (server.address() as net.AddressInfo).port,
    kill: () => {
      for (const s of sockets) s.destroy();
    },
    get accepted() {
      return accepted;
    },
  };
}

test('replication: after the connection is killed, the redial resynchronises (changes made meanwhile included)', async (t) => {
  const a = layer();
  const b = layer();
  const rb = await replicator(t, 2, b, []);
  const p = await proxy(t, rb.address()!.port);
  const synced: number[] = [];
  rb.onSynced(null, (e) => synced.push(e.sessions));
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: p.port }]);
  for (const k of ['k1', 'k2', 'k3']) a.sessions.route(k);
  await until('first sync', () => synced.length >= 1 && b.table.size === 3);

  // Cut the link; while it is down, k1 ends and k4 begins: B hears neither.
  const down = new Promise<void>((resolve) => {
    const poll = () => (ra.stats().peersStreaming === 0 ? resolve() : setTimeout(poll, 1));
    p.kill();
    poll();
  });
  await down;
  a.sessions.close(a.table.find('k1'), 'ended');
  a.sessions.route('k4');
  assert.notEqual(b.table.find('k1'), NO_SESSION, 'B has not heard of the close yet');

  await until('second sync', () => synced.length >= 2);
  assert.ok(p.accepted >= 2);
  assert.equal(b.table.find('k1'), NO_SESSION, 'gone from the new snapshot: removed on B');
  assert.notEqual(b.table.find('k4'), NO_SESSION);
  assert.equal(b.table.size, 3);
  assert.equal(rb.stats().foreignSessions, 3);
});

/** A fake peer: accepts, challenges (validly), then never reads and never acks. */
async function deafPeer(t: TestContext) {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    const w = new OpWriter(8);
    w.challenge();
    const msg = seal(MessageType.Replication, encodeFrame({ sender: 9, seq: 0, nonce: Buffer.alloc(8, 1) }, w.count, w.bytes()), KEY);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(msg.length);
    s.write(Buffer.concat([len, msg]));
    s.pause();
  });
  await new Promise<void>((r) => server.listen(0, LOOPBACK, () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, sockets };
}

test('replication: a peer that stops reading is paused at the buffer cap, then cut when it acknowledges nothing for lagTimeoutMs; the data path never waits for it', async (t) => {
  const a = layer();
  const deaf = await deafPeer(t);
  const cap = 64 * 1024;
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: deaf.port }], { maxBufferBytes: cap, lagTimeoutMs: 1500 });
  await until('streaming to the deaf peer', () => ra.stats().peersStreaming === 1);
  // ~40 bytes per open with its key: 10 000 opens are ~6 x the cap.
  let opened = 0;
  for (let round = 0; round < 10; round++) {
    for (let i = 0; i < 1000; i++) if (a.sessions.route(`call-${round}-${i}-xxxxxxxxxxxx`).type === 'opened') opened++;
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(opened, 10_000, 'every open went through while the peer read nothing');
  assert.equal(ra.stats().overflows, 1, 'paused once at the cap: the rest is marked, not written');
  const sent = ra.stats().bytesSent;
  for (let i = 0; i < 1000; i++) a.sessions.route(`later-${i}-xxxxxxxxxxxx`);
  await new Promise((r) => setTimeout(r, 20));
  // (Unless the lag timeout already cut it on a very slow machine: then the redial's snapshot was written.)
  if (ra.stats().lagCuts === 0) assert.equal(ra.stats().bytesSent, sent, 'nothing more written to the paused peer');
  await until('cut after lagTimeoutMs without an acknowledgement', () => ra.stats().lagCuts === 1);
  await until('redialled (a new snapshot follows)', () => deaf.sockets.length >= 2);
});

test('replication: a backup slower than the stream is paused at the cap and caught up on the same connection, without a new snapshot', async (t) => {
  const a = layer();
  const b = layer();
  const pb = await freePort();
  // B acknowledges every 150 ms: A's live bytes pass the 16 KiB cap long before.
  const rb = await replicator(t, 2, b, [], { port: pb, ackIntervalMs: 150 });
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: pb }], { maxBufferBytes: 16 * 1024 });
  await until('A streams to B', () => ra.stats().peersStreaming === 1 && rb.stats().snapshotsApplied === 1);
  const VIA = addressKey('192.0.2.50');
  const handles: number[] = [];
  for (let round = 0; round < 8; round++) {
    for (let i = 0; i < 250; i++) {
      const r = a.sessions.route(`slow-${round}-${i}@client`);
      assert.equal(r.type, 'opened');
      if (r.type !== 'opened') return;
      a.table.setData(r.session, `udp 192.0.2.50 ${5000 + i}`);
      a.flows.insert(VIA, 10_000 + round * 250 + i, VIP, 5060, PROTO_UDP, 'signalling', r.session);
      handles.push(r.session);
    }
    await new Promise((r) => setImmediate(r));
  }
  // While paused: close some, re-pin some, remove some flows (the catch-up must carry the last state).
  for (let i = 0; i < handles.length; i += 4) a.sessions.close(handles[i]!, 'ended');
  const other = a.backends[0]!;
  for (let i = 1; i < handles.length; i += 4) a.sessions.pin(a.table.key(handles[i]!)!, other);
  for (let i = 2; i < handles.length; i += 4) a.flows.remove(a.flows.lookup(VIA, 10_000 + i, VIP, 5060, PROTO_UDP));
  await until('paused at the cap', () => ra.stats().overflows >= 1);
  await until('caught up', () => ra.stats().catchUps >= 1 && b.table.size === a.table.size && b.flows.size === a.flows.size, 20_000);
  await until('B has A\'s pins and data', () => {
    for (const h of handles) {
      const key = a.table.key(h);
      if (key === null) continue;
      const hb = b.table.find(key);
      if (hb === NO_SESSION || b.table.backend(hb) !== a.table.backend(h) || b.table.data(hb) !== a.table.data(h)) return false;
    }
    return true;
  }, 20_000);
  for (let i = 0; i < handles.length; i += 4) assert.equal(b.table.find(`slow-${Math.floor(i / 250)}-${i % 250}@client`), NO_SESSION, 'closed while paused');
  assert.equal(b.flows.lookup(VIA, 10_002, VIP, 5060, PROTO_UDP), NO_FLOW, 'removed while paused');
  assert.equal(ra.stats().snapshotsSent, 1, 'no new snapshot');
  assert.equal(rb.stats().snapshotsApplied, 1);
  assert.equal(ra.stats().lagCuts, 0);
  // And the stream goes on.
  a.sessions.route('after@client');
  await until('B follows the live stream again', () => b.table.find('after@client') !== NO_SESSION);
});

/** Connects to `port`, reads the CHALLENGE; returns the nonce and a way to send raw bytes. */
async function rawPeer(t: TestContext, port: number) {
  const socket = net.connect(port, LOOPBACK);
  t.after(() => socket.destroy());
  socket.on('error', () => {});
  const first = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
  const opened = open(first.subarray(4, 4 + first.readUInt32BE(0)), KEY);
  assert.ok(opened.ok);
  const frame = decodeFrame(opened.body);
  assert.ok(frame);
  assert.equal(frame.ops[0]!.op, Op.Challenge);
  assert.equal(frame.seq, 0);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    nonce: Buffer.from(frame.nonce),
    send(msg: Buffer) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(msg.length);
      socket.write(Buffer.concat([len, msg]));
    },
    raw: (b: Buffer) => socket.write(b),
    closed,
  };
}

function openFrame(nonce: Buffer, seq: number, key: string, k = KEY): Buffer {
  const w = new OpWriter(64);
  w.snapshotBegin();
  w.sessionOpen(0, 0x1000001, 1, key);
  w.snapshotEnd(1, 0);
  return seal(MessageType.Replication, encodeFrame({ sender: 7, seq, nonce }, w.count, w.bytes()), k);
}

test('replication: forged, replayed and malformed frames are rejected, counted, and change nothing', async (t) => {
  const b = layer();
  const rb = await replicator(t, 2, b, []);
  const port = rb.address()!.port;

  const forged = await rawPeer(t, port);
  forged.send(openFrame(forged.nonce, 1, 'forged', Buffer.alloc(32, 0x13)));
  await forged.closed;
  assert.equal(rb.stats().rejected['bad-mac'], 1);

  // A genuine frame of one connection, replayed on another (another nonce), and out of order.
  const genuine = await rawPeer(t, port);
  const recorded = openFrame(genuine.nonce, 1, 'genuine');
  genuine.send(recorded);
  await until('the genuine frame applied', () => b.table.find('genuine') !== NO_SESSION);
  const replayed = await rawPeer(t, port);
  replayed.send(recorded);
  await replayed.closed;
  assert.equal(rb.stats().rejected.replay, 1);
  genuine.send(openFrame(genuine.nonce, 1, 'again'));
  await genuine.closed;
  assert.equal(rb.stats().rejected.replay, 2, 'seq 1 twice on one connection');

  // Authentic but malformed: a body that does not decode; a length prefix over the cap; random bytes.
  const bad = await rawPeer(t, port);
  bad.send(seal(MessageType.Replication, Buffer.concat([encodeFrame({ sender: 7, seq: 1, nonce: bad.nonce }, 1, Buffer.from([0x7f]))]), KEY));
  await bad.closed;
  assert.equal(rb.stats().rejected.malformed, 1);
  const huge = await rawPeer(t, port);
  huge.raw(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  await huge.closed;
  assert.equal(rb.stats().rejected.malformed, 2);
  const noise = await rawPeer(t, port);
  noise.raw(Buffer.concat([Buffer.from([0, 0, 0, 40]), Buffer.alloc(40, 0xab)]));
  await noise.closed;
  assert.equal(rb.stats().rejected['bad-mac'], 2);

  assert.equal(b.table.find('forged'), NO_SESSION);
  assert.equal(b.table.find('again'), NO_SESSION);
  assert.equal(b.table.size, 1, 'only the genuine session');
  // Still serving: a fresh connection is challenged.
  await rawPeer(t, port);
});

test('replication: adopt() makes replicas our own: they are streamed and snapshotted from then on', async (t) => {
  const a = layer();
  const b = layer();
  const c = layer();
  const rc = await replicator(t, 3, c, []);
  const rb = await replicator(t, 2, b, [{ host: LOOPBACK, port: rc.address()!.port }]);
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: rb.address()!.port }]);
  await until('A and B stream', () => ra.stats().peersStreaming === 1 && rb.stats().peersStreaming === 1);
  a.sessions.route('call-x');
  b.sessions.route('call-b');
  await until('B has A\'s session', () => b.table.find('call-x') !== NO_SESSION);
  await until('C has B\'s own session', () => c.table.find('call-b') !== NO_SESSION);
  assert.equal(c.table.find('call-x'), NO_SESSION, 'a replica is not streamed on');
  // A is gone; B becomes master.
  await ra.close();
  rb.adopt();
  await until('C has the adopted session', () => c.table.find('call-x') !== NO_SESSION);
  assert.equal(c.table.backend(c.table.find('call-x')), b.table.backend(b.table.find('call-x')));
  b.sessions.close(b.table.find('call-x'), 'ended');
  await until('C follows B', () => c.table.find('call-x') === NO_SESSION);
  assert.notEqual(c.table.find('call-b'), NO_SESSION);
});

test('replication: after adopt() the old master cannot close, re-pin or re-key the sessions the new master owns; demote() stops its stream', async (t) => {
  const a = layer();
  const b = layer();
  const [pa, pb] = [await freePort(), await freePort()];
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: pb }], { port: pa });
  const rb = await replicator(t, 2, b, [{ host: LOOPBACK, port: pa }], { port: pb });
  await until('both connected', () => ra.stats().peersStreaming === 1 && rb.stats().peersStreaming === 1);
  const keyed = a.sessions.route('call-k');
  const anon = a.sessions.open(null);
  assert.ok(keyed.type === 'opened' && anon.type === 'opened');
  if (keyed.type !== 'opened' || anon.type !== 'opened') return;
  a.flows.insert(addressKey('192.0.2.9'), 7000, VIP, 30000, PROTO_UDP, 'announced', anon.session);
  await until('B has both sessions and the flow', () => b.table.size === 2 && b.flows.size === 1);
  const hk = b.table.find('call-k');
  const fb = b.flows.lookup(addressKey('192.0.2.9'), 7000, VIP, 30000, PROTO_UDP);
  const ha = b.flows.session(fb);
  assert.equal(b.table.key(ha), null);
  const pinK = b.table.backend(hk);
  const pinA = b.table.backend(ha);

  // Failover: B is master; A (stalled, resumed) still believes it owns them and streams their changes.
  const syncs: number[] = [];
  rb.onSynced(1, (e) => syncs.push(e.sessions));
  rb.adopt();
  const appliedAtAdopt = rb.stats().opsApplied;
  a.sessions.close(anon.session, 'timeout');
  a.sessions.pin('call-k', a.backends[(keyed.backend.index + 1) % 3]!);
  // A's redial brings a snapshot (with its re-pinned copy of call-k), then the close is already past.
  await until('B applied A\'s new snapshot (or the old stream closed the session)', () => syncs.length >= 1 || !b.table.isOpen(ha));
  assert.equal(b.table.isOpen(ha), true, 'the adopted anonymous session survives the old master\'s timeout');
  assert.ok(rb.stats().opsApplied > appliedAtAdopt);
  assert.equal(b.table.isOpen(ha), true, 'the adopted anonymous session survives the old master\'s timeout');
  assert.equal(b.table.backend(ha), pinA);
  assert.equal(b.table.isOpen(hk), true);
  assert.equal(b.table.find('call-k'), hk);
  assert.equal(b.table.backend(hk), pinK, 'the old master\'s re-pin does not move the new master\'s session');
  assert.equal(b.flows.session(fb), ha, 'the adopted flow still names the adopted session');
  a.sessions.close(keyed.session, 'timeout');
  // The snapshot after demote() is empty: wait for it, then nothing of B's changed.
  ra.demote();
  await until('B applied A\'s empty snapshot', () => syncs.length >= 2 && syncs[syncs.length - 1] === 0);
  assert.equal(b.table.find('call-k'), hk);
  assert.equal(b.table.backend(hk), pinK);
  assert.equal(b.table.isOpen(ha), true);
  assert.equal(b.table.size, 2, 'the new master holds exactly the two sessions it adopted');
  assert.equal(rb.stats().foreignSessions, 0);
  // B's own changes still reach A (B streams; A, demoted, applies them as replicas).
  b.sessions.close(hk, 'ended');
  b.sessions.route('call-new');
  await until('A has B\'s new session', () => a.table.find('call-new') !== NO_SESSION);
});

test('replication: incoming connections are capped per peer and closed without a valid frame within the handshake timeout', async (t) => {
  const b = layer();
  const rb = createStateReplicator({ id: 2, listen: { host: LOOPBACK, port: 0 }, peers: [], key: KEY, services: [b.service], clock: realClock, ackIntervalMs: 10, handshakeTimeoutMs: 200 });
  t.after(() => rb.close());
  await rb.start();
  // No configured peer: one peer's worth, 4 connections; the 5th and 6th are closed at accept.
  const closed: number[] = [];
  const sockets: net.Socket[] = [];
  for (let i = 0; i < 6; i++) {
    const s = net.connect({ host: LOOPBACK, port: rb.address()!.port });
    s.on('error', () => {});
    s.resume();
    s.on('close', () => closed.push(i));
    t.after(() => s.destroy());
    sockets.push(s);
    await once(s, 'connect');
    // Accepted (counted) before the next one connects.
    await until('accepted or refused', () => rb.stats().peersInbound + rb.stats().inboundRefused === i + 1);
  }
  assert.equal(rb.stats().inboundRefused, 2);
  await until('every silent connection closed', () => closed.length === 6);
  assert.equal(rb.stats().handshakeTimeouts, 4);
  assert.equal(rb.stats().peersInbound, 0);
  // A real peer still gets in once they are gone.
  const a = layer();
  a.sessions.route('call-after');
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: rb.address()!.port }]);
  await until('B has A\'s session', () => b.table.find('call-after') !== NO_SESSION);
  assert.equal(ra.stats().peersStreaming, 1);
});

test('replication under a flood of unauthenticated connections (silent, garbage, bad MAC, wrong version) from other addresses: bounded, counted, the real peer gets in', async (t) => {
  const b = layer();
  const aPort = await freePort();
  const rb = createStateReplicator({ id: 2, listen: { host: LOOPBACK, port: 0 }, peers: [{ host: LOOPBACK, port: aPort }], key: KEY, services: [b.service], clock: realClock, ackIntervalMs: 10, handshakeTimeoutMs: 8_000 });
  t.after(() => rb.close());
  await rb.start();
  const port = rb.address()!.port;
  const attackers = new Set<net.Socket>();
  t.after(() => {
    for (const s of attackers) s.destroy();
  });
  const wrongVersion = (): Buffer => {
    const m = seal(MessageType.Replication, encodeFrame({ sender: 9, seq: 1, nonce: Buffer.alloc(8) }, 0, Buffer.alloc(0)), Buffer.alloc(32, 0x66));
    m[m.length - 17] = 0x2f; // version 2: the tag no longer matches either (no key, no way to forge one)
    return m;
  };
  const payloads: Array<Buffer | null> = [
    null, // silent: holds a handshake slot until the timeout
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), // garbage, read as a huge length prefix
    Buffer.concat([Buffer.from([0, 0, 0, 60]), Buffer.alloc(60, 0x5a)]), // a frame with a bad MAC
    (() => {
      const m = wrongVersion();
      return Buffer.concat([Buffer.from([0, 0, m.length >> 8, m.length & 255]), m]);
    })(),
  ];
  let opened = 0;
  let maxInbound = 0;
  let flooding = true;
  const flood = (async () => {
    while (flooding) {
      const batch = Array.from({ length: 20 }, () => {
        const i = opened++;
        const s = net.connect({ host: LOOPBACK, port, localAddress: `127.0.4.${1 + (i % 200)}` });
        attackers.add(s);
        s.on('error', () => {});
        s.on('close', () => attackers.delete(s));
        s.resume();
        const p = i % 2 === 0 ? null : payloads[1 + ((i >> 1) % 3)]!;
        return new Promise<void>((resolve) => {
          s.once('connect', () => {
            if (p !== null) s.write(p);
            resolve();
          });
          s.once('close', () => resolve());
        });
      });
      await Promise.all(batch);
      maxInbound = Math.max(maxInbound, rb.stats().peersInbound);
      await new Promise((r) => setImmediate(r));
    }
  })();
  await until('the attackers fill their pool', () => rb.stats().inboundRefused > 0);
  // The real peer starts during the flood and streams its state.
  const a = layer();
  a.sessions.route('call-during-flood');
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port }], { port: aPort });
  await until("B has A's session", () => b.table.find('call-during-flood') !== NO_SESSION, 20_000);
  // The silent attackers hold their whole pool for the 8 s handshake timeout: A got in beside them,
  // not after them (with one shared pool it waited for their timeouts).
  assert.equal(rb.stats().handshakeTimeouts, 0, 'A got in while the attackers still held every handshake slot of theirs');
  a.sessions.route('call-later');
  await until("B has A's later session", () => b.table.find('call-later') !== NO_SESSION);
  flooding = false;
  await flood;
  const st = rb.stats();
  t.diagnostic(`${opened} attacker connections: ${st.inboundRefused} refused at accept, ${st.handshakeTimeouts} handshake timeouts, rejected ${JSON.stringify(st.rejected)}, at most ${maxInbound} inbound at once`);
  assert.equal(ra.stats().peersStreaming, 1);
  // Bounded: the attackers' pool (4 per peer) plus the peer's own link and its handshake pool.
  assert.ok(maxInbound <= 3 * 4, `inbound links at once: ${maxInbound}`);
  assert.ok(st.inboundRefused > 0);
  assert.ok(st.rejected['bad-mac'] > 0, 'bad MAC and wrong-version frames counted as bad-mac');
  assert.ok(st.rejected.malformed > 0, 'garbage counted (an oversized length prefix)');
  assert.equal(b.table.size, 2, "only A's sessions");
});

/** A stand-in for a service's media relay (forward/sip-media.ts `replicated`): ports set by hand. */
function fakeRelay() {
  const listeners: ((c: RelayChange) => void)[] = [];
  const ports = new Map<number, RelayPortState>();
  const restored: RelayPortState[][] = [];
  return {
    ports,
    restored,
    update(s: RelayPortState): void {
      ports.set(s.port, s);
      for (const fn of listeners) fn({ type: 'update', state: s });
    },
    release(session: number, port: number): void {
      ports.delete(port);
      for (const fn of listeners) fn({ type: 'release', session, port });
    },
    relay: {
      onChange(fn: (c: RelayChange) => void): () => void {
        listeners.push(fn);
        return () => listeners.splice(listeners.indexOf(fn), 1);
      },
      forEachPort(fn: (s: RelayPortState) => void): void {
        for (const s of ports.values()) fn(s);
      },
      restore(list: readonly RelayPortState[]): void {
        restored.push([...list]);
      },
    },
  };
}

test('replication: relay ports (snapshot and stream) are recorded by the backup and handed to its relay at adopt(), minus the released and ended ones', async (t) => {
  const a = layer();
  const b = layer();
  const fa = fakeRelay();
  const fb = fakeRelay();
  Object.assign(a.service, { relay: fa.relay });
  Object.assign(b.service, { relay: fb.relay });
  const [pa, pb] = [await freePort(), await freePort()];
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: pb }], { port: pa });
  const call = a.sessions.route('call-m');
  const ended = a.sessions.route('call-ended');
  assert.ok(call.type === 'opened' && ended.type === 'opened');
  const s = call.session;
  // Before B joins: only its snapshot can carry this one.
  fa.update({ session: s, port: 30010, clientHost: '192.0.2.9', clientPort: 4010, backendHost: '127.0.0.1', backendPort: 7010 });
  const rb = await replicator(t, 2, b, [{ host: LOOPBACK, port: pa }], { port: pb });
  await until('A streams to B', () => ra.stats().peersStreaming === 1);
  // Live: allocated (far ends unknown), then announced; a second stream released; a session ended.
  fa.update({ session: s, port: 30000, clientHost: null, clientPort: 0, backendHost: null, backendPort: 0 });
  fa.update({ session: s, port: 30000, clientHost: '192.0.2.9', clientPort: 4000, backendHost: '127.0.0.1', backendPort: 7078 });
  fa.update({ session: s, port: 30001, clientHost: '2001:db8::9', clientPort: 4001, backendHost: null, backendPort: 0 });
  fa.update({ session: s, port: 30002, clientHost: '192.0.2.9', clientPort: 4002, backendHost: '127.0.0.1', backendPort: 7080 });
  fa.release(s, 30002);
  fa.update({ session: ended.session, port: 30004, clientHost: '192.0.2.8', clientPort: 5000, backendHost: '127.0.0.1', backendPort: 7090 });
  a.sessions.close(ended.session, 'ended');
  a.sessions.route('sentinel');
  await until('B has applied everything up to the sentinel', () => b.table.find('sentinel') !== NO_SESSION);
  assert.equal(b.table.find('call-ended'), NO_SESSION);
  assert.equal(fb.restored.length, 0, 'a backup binds nothing');

  rb.adopt();
  const hb = b.table.find('call-m');
  assert.notEqual(hb, NO_SESSION);
  assert.equal(fb.restored.length, 1);
  const got = [...fb.restored[0]!].sort((x, y) => x.port - y.port);
  assert.deepEqual(got, [
    { session: hb, port: 30000, clientHost: '192.0.2.9', clientPort: 4000, backendHost: '127.0.0.1', backendPort: 7078 },
    { session: hb, port: 30001, clientHost: '2001:db8::9', clientPort: 4001, backendHost: null, backendPort: 0 },
    { session: hb, port: 30010, clientHost: '192.0.2.9', clientPort: 4010, backendHost: '127.0.0.1', backendPort: 7010 },
  ]);
  // Handed over once: a second adopt() has nothing left to restore.
  rb.adopt();
  assert.equal(fb.restored.length, 1);
});

test('replication: a snapshot goes in slices over event-loop turns; changes made between slices reach the peer', async (t) => {
  const a = layer();
  const b = layer();
  const handles: number[] = [];
  for (let i = 0; i < 40; i++) {
    const r = a.sessions.route(`call-${i}@client`);
    assert.equal(r.type, 'opened');
    if (r.type !== 'opened') return;
    a.flows.insert(addressKey(`192.0.2.${i}`), 5060, VIP, 5060, PROTO_UDP, 'signalling', r.session);
    handles.push(r.session);
  }
  const rb = await replicator(t, 2, b, []);
  let applied = false;
  const synced = new Promise<void>((resolve) => rb.onSynced(1, () => resolve()));
  rb.onSynced(1, () => (applied = true));
  const ra = await replicator(t, 1, a, [rb.address()!], { snapshotSliceEntries: 4, snapshotSliceMs: 0 });
  while (ra.stats().snapshotsSent === 0) await new Promise((r) => setImmediate(r));
  assert.ok(ra.stats().framesSent < 20 && !applied, 'still in the snapshot');
  // Mid-snapshot (80 entries in slices of 4: 20 turns): a close, an open with its flow, a re-pin.
  a.sessions.close(handles[0]!, 'ended');
  a.flows.removeSession(handles[0]!);
  a.sessions.close(handles[39]!, 'ended');
  a.flows.removeSession(handles[39]!);
  const late = a.sessions.route('late@client');
  assert.equal(late.type, 'opened');
  if (late.type !== 'opened') return;
  a.flows.insert(addressKey('198.51.100.1'), 5060, VIP, 5060, PROTO_UDP, 'signalling', late.session);
  await synced;
  assert.ok(ra.stats().framesSent >= 20, `snapshot in slices: ${ra.stats().framesSent} frames`);
  await until('B matches A', () => b.table.size === a.table.size && b.flows.size === a.flows.size);
  assert.equal(b.table.size, 39);
  assert.equal(b.table.find('call-0@client'), NO_SESSION);
  assert.equal(b.table.find('call-39@client'), NO_SESSION);
  const hl = b.table.find('late@client');
  assert.notEqual(hl, NO_SESSION);
  assert.equal(b.flows.session(b.flows.lookup(addressKey('198.51.100.1'), 5060, VIP, 5060, PROTO_UDP)), hl);
  assert.equal(b.flows.lookup(addressKey('192.0.2.0'), 5060, VIP, 5060, PROTO_UDP), NO_FLOW);
});

test('replication: a sender behind the newest election epoch known here is refused (stale) until it learns it', async (t) => {
  const a = layer();
  const b = layer();
  let epochA = 3;
  let epochB = 3;
  const pb = await freePort();
  const rb = await replicator(t, 2, b, [], { port: pb, epoch: () => epochB });
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: pb }], { epoch: () => epochA });
  await until('A streams to B', () => ra.stats().peersStreaming === 1 && rb.stats().snapshotsApplied === 1);
  const one = a.sessions.route('call-1@epoch');
  assert.equal(one.type, 'opened');
  await until('B has call 1', () => b.table.find('call-1@epoch') !== NO_SESSION);

  // B hears of a newer master (epoch 4); A, partitioned from the election, still says 3.
  epochB = 4;
  const two = a.sessions.route('call-2@epoch');
  assert.equal(two.type, 'opened');
  await until('A\'s frame refused as stale', () => rb.stats().rejected.stale >= 1);
  // Its redials are refused too: call 2 never reaches B.
  await until('refused again after a redial', () => rb.stats().rejected.stale >= 3);
  assert.equal(b.table.find('call-2@epoch'), NO_SESSION);
  assert.equal(rb.stats().snapshotsApplied, 1);

  // A learns the epoch (it is backup now, or master again with it): its stream is taken again.
  epochA = 4;
  await until('B has call 2 from A\'s next snapshot', () => b.table.find('call-2@epoch') !== NO_SESSION);
  assert.ok(rb.stats().snapshotsApplied >= 2);
  // A sender ahead of B is fine (B has not heard the adverts yet).
  epochA = 9;
  a.sessions.route('call-3@epoch');
  await until('B has call 3', () => b.table.find('call-3@epoch') !== NO_SESSION);
});

test('replication lag: the age of the oldest change a standby has not acknowledged; 0 once acked, null while not streaming', async (t) => {
  const a = layer();
  const b = layer();
  const [pa, pb, nobody] = [await freePort(), await freePort(), await freePort()];
  // B acknowledges only every minute: what A sends stays unacknowledged.
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: pb }, { host: LOOPBACK, port: nobody }], { port: pa });
  const rb = await replicator(t, 2, b, [], { port: pb, ackIntervalMs: 60_000 });
  await until('A streams to B', () => ra.stats().peersStreaming === 1);
  await until('B has acked the snapshot', () => ra.stats().peers[0]!.unackedBytes === 0);
  assert.equal(ra.stats().lagMs, 0);
  assert.equal(ra.stats().peers[1]!.lagMs, null, 'a peer that is not streaming has no lag');

  const applied = rb.stats().framesApplied;
  a.sessions.route('call-lag@client');
  await until('B applied the open', () => rb.stats().framesApplied > applied);
  const s = ra.stats();
  assert.ok(s.peers[0]!.unackedBytes > 0);
  assert.ok(s.lagMs !== null && s.lagMs > 0, `lag ${s.lagMs}`);
  assert.deepEqual(rb.stats().inbound.map((x) => x.peer), [1]);
});

test('replication lag: back to 0 when the standby acknowledges', async (t) => {
  const a = layer();
  const b = layer();
  const [pa, pb] = [await freePort(), await freePort()];
  const ra = await replicator(t, 1, a, [{ host: LOOPBACK, port: pb }], { port: pa });
  await replicator(t, 2, b, [], { port: pb });
  await until('A streams to B', () => ra.stats().peersStreaming === 1);
  a.sessions.route('call-lag-2@client');
  await until('B acked everything', () => ra.stats().peers[0]!.unackedBytes === 0 && ra.stats().framesSent > 1);
  assert.equal(ra.stats().lagMs, 0);
});

test('replication flushMs: changes wait in one batch until flushMs after the first, then go as one frame (one seal, one write)', async (t) => {
  const clock = new FakeClock(1_000);
  const a = layer(clock);
  const b = layer();
  const pb = await freePort();
  const rb = await replicator(t, 2, b, [], { port: pb });
  const ra = createStateReplicator({ id: 1, listen: { host: LOOPBACK, port: 0 }, peers: [{ host: LOOPBACK, port: pb }], key: KEY, services: [a.service], clock, flushMs: 50, ackIntervalMs: 10 });
  t.after(() => ra.close());
  await ra.start();
  await until('A streams to B', () => ra.stats().peersStreaming === 1 && rb.stats().snapshotsApplied === 1);
  const frames = ra.stats().framesSent;
  const ops = ra.stats().opsSent;

  assert.equal(a.sessions.route('flush-1').type, 'opened');
  clock.advance(49);
  assert.equal(a.sessions.route('flush-2').type, 'opened');
  assert.equal(ra.stats().framesSent, frames, 'nothing written before flushMs has passed since the first change');
  clock.advance(1);
  assert.equal(ra.stats().framesSent, frames + 1, 'both changes in one frame');
  assert.equal(ra.stats().opsSent, ops + 2);
  await until('B has both sessions', () => b.table.find('flush-1') !== NO_SESSION && b.table.find('flush-2') !== NO_SESSION);

  // The next change starts a new window.
  assert.equal(a.sessions.route('flush-3').type, 'opened');
  clock.advance(49);
  assert.equal(ra.stats().framesSent, frames + 1);
  clock.advance(1);
  assert.equal(ra.stats().framesSent, frames + 2);
  await until('B has the third', () => b.table.find('flush-3') !== NO_SESSION);
});

test('replication: a peer speaking frame format version 2 (an older build, holding the key) is refused as version, counted, and nothing it sends is applied', async (t) => {
  const b = layer();
  const rb = await replicator(t, 2, b, []);
  const s = net.connect({ host: LOOPBACK, port: rb.address()!.port });
  t.after(() => s.destroy());
  s.on('error', () => {});
  await once(s, 'connect');
  // The acceptor's CHALLENGE, in this build's format (version 3): its nonce is what a peer echoes.
  const [first] = (await once(s, 'data')) as [Buffer];
  const challenge = open(first.subarray(4, 4 + first.readUInt32BE(0)), KEY);
  assert.ok(challenge.ok, 'the CHALLENGE opens with the key');
  const nonce = decodeFrame(challenge.body)!.nonce;
  // A snapshot as a version-2 build frames it: SESSION_OPEN ops, sealed with version byte 0x24 and a valid tag.
  const w = new OpWriter();
  w.snapshotBegin();
  w.sessionOpen(0, 0x01000001, 0, 'call-from-v2');
  w.snapshotEnd(1, 0);
  const body = encodeFrame({ sender: 1, seq: 1, nonce, epoch: 0 }, w.count, w.bytes());
  const signed = Buffer.concat([body, Buffer.from([0x24])]);
  const tag = createHmac('sha256', KEY).update(signed).digest().subarray(0, 16);
  const msg = Buffer.concat([signed, tag]);
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(msg.length, 0);
  s.write(Buffer.concat([prefix, msg]));
  await once(s, 'close');
  assert.equal(rb.stats().rejected.version, 1, 'counted as version');
  assert.equal(rb.stats().rejected['bad-mac'], 0, 'authentic: not a MAC failure');
  assert.equal(b.table.find('call-from-v2'), NO_SESSION, 'nothing applied');
  assert.equal(rb.stats().snapshotsApplied, 0);
});

test('replication flushMs 0: the changes of one event-loop turn go as one frame at the end of that turn, none before', async (t) => {
  const a = layer();
  const b = layer();
  const pb = await freePort();
  const rb = await replicator(t, 2, b, [], { port: pb });
  const ra = createStateReplicator({ id: 1, listen: { host: LOOPBACK, port: 0 }, peers: [{ host: LOOPBACK, port: pb }], key: KEY, services: [a.service], clock: realClock, flushMs: 0, ackIntervalMs: 10 });
  t.after(() => ra.close());
  await ra.start();
  await until('A streams to B', () => ra.stats().peersStreaming === 1 && rb.stats().snapshotsApplied === 1);
  for (let round = 0; round < 3; round++) {
    const frames = ra.stats().framesSent;
    const ops = ra.stats().opsSent;
    for (let i = 0; i < 5; i++) assert.equal(a.sessions.route(`turn-${round}-${i}`).type, 'opened');
    assert.equal(ra.stats().framesSent, frames, 'nothing written within the turn');
    await new Promise((r) => setImmediate(r));
    assert.equal(ra.stats().framesSent, frames + 1, 'the turn\'s five opens in one frame');
    assert.equal(ra.stats().opsSent, ops + 5);
  }
  await until('B has every session', () => b.table.size === 15);
});

test('replication: an idle timeout is not sent; the backup expires its replica itself, never before the master, kept alive by re-sent opens of used sessions', async (t) => {
  const TIMEOUT_MS = 1000;
  const clockA = new FakeClock(1_000);
  const clockB = new FakeClock(1_000);
  const a = layer(clockA, 1000, TIMEOUT_MS);
  const b = layer(clockB, 1000, TIMEOUT_MS);
  const pb = await freePort();
  const rb = await replicator(t, 2, b, [], { port: pb, clock: clockB });
  const ra = createStateReplicator({ id: 1, listen: { host: LOOPBACK, port: 0 }, peers: [{ host: LOOPBACK, port: pb }], key: KEY, services: [a.service], clock: clockA, ackIntervalMs: 10 });
  t.after(() => ra.close());
  await ra.start();
  await until('A streams to B', () => ra.stats().peersStreaming === 1 && rb.stats().snapshotsApplied === 1);
  const both = (ms: number): void => {
    clockA.advance(ms);
    clockB.advance(ms);
  };
  const idle = a.sessions.route('idle');
  const used = a.sessions.route('used');
  assert.ok(idle.type === 'opened' && used.type === 'opened');
  clockA.advance(2);
  await until('B has both', () => b.table.find('idle') !== NO_SESSION && b.table.find('used') !== NO_SESSION);
  clockB.advance(2);
  const applied = rb.stats().opsApplied;
  const sent = ra.stats().opsSent;

  // 1 002: nothing touched yet, so the keep-alive passes (every 250 ms) send nothing.
  both(600);
  assert.equal(ra.stats().opsSent, sent, 'a session used once is not re-sent');
  assert.equal(a.sessions.route('used').type, 'pinned'); // 1 602: traffic on "used"
  both(200); // the pass at 1 750 re-sends its open
  assert.equal(ra.stats().opsSent, sent + 1);
  await until('B applied the re-sent open', () => rb.stats().opsApplied === applied + 1);

  // 2 002: "idle" times out on A; no close goes out.
  both(200);
  assert.equal(a.table.sweep(), 1);
  assert.equal(a.table.find('idle'), NO_SESSION);
  both(10);
  assert.equal(ra.stats().opsSent, sent + 1, 'no op for an idle timeout');
  // B keeps its replica a while longer, then expires it on its own sweep.
  assert.equal(b.table.sweep(), 0);
  assert.notEqual(b.table.find('idle'), NO_SESSION, 'B never drops a replica before the master does');
  both(500);
  assert.equal(b.table.sweep(), 1);
  assert.equal(b.table.find('idle'), NO_SESSION, 'B expired the idle replica itself');
  assert.equal(rb.stats().foreignSessions, 1);
  // "used" (last traffic at 1 602) expires on A at 2 602, on B only later.
  both(100); // 2 612
  assert.equal(a.table.sweep(), 1);
  assert.equal(a.table.find('used'), NO_SESSION);
  assert.equal(b.table.sweep(), 0);
  assert.notEqual(b.table.find('used'), NO_SESSION);
  both(1000);
  assert.equal(b.table.sweep(), 1);
  assert.equal(b.table.size, 0);
  assert.equal(rb.stats().foreignSessions, 0);
  assert.equal(ra.stats().opsSent, sent + 1, 'two sessions ended idle: one open each, one re-sent open, no close');
});
