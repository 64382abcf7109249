/**
 * @module Tests of the media relay on real loopback UDP sockets: RTP/RTCP pairs on even/odd ports,
 * both directions, symmetric latching and third-party drops, the announced → secondary flow, re-pin,
 * exhaustion of the port range, ports held by another process, idle release on a FakeClock.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { FakeClock, realClock, type Clock } from '../core/clock.js';
import { addressKey, FlowTable, PROTO_UDP } from '../sessions/flow-table.js';
import { MediaRelay, type MediaRelayOptions, type RelayChange } from './media-relay.js';
import { freeRange } from '../../test/helpers/free-ports.js';

interface Peer {
  socket: dgram.Socket;
  port: number;
  host: string;
  received: { data: string; port: number }[];
  /** Resolves with the next datagram. */
  next(): Promise<{ data: string; port: number }>;
}

async function peer(t: TestContext, host = '127.0.0.1'): Promise<Peer> {
  const socket = dgram.createSocket('udp4');
  socket.on('error', () => {});
  const received: { data: string; port: number }[] = [];
  const waiters: ((d: { data: string; port: number }) => void)[] = [];
  socket.on('message', (m, r) => {
    const d = { data: m.toString(), port: r.port };
    const w = waiters.shift();
    if (w) w(d);
    else received.push(d);
  });
  socket.bind(0, host);
  await once(socket, 'listening');
  t.after(() => socket.close());
  return {
    socket,
    host,
    port: socket.address().port,
    received,
    next: () => {
      const d = received.shift();
      return d ? Promise.resolve(d) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

async function relay(t: TestContext, pairs: number, over: Partial<MediaRelayOptions> = {}, clock: Clock = realClock): Promise<{ relay: MediaRelay; flows: FlowTable }> {
  const range = await freeRange(pairs);
  const flows = new FlowTable({ service: 'm', maxFlows: 64, timeoutMs: 30_000, clock });
  const r = new MediaRelay({
    service: 'm',
    bindHost: '127.0.0.1',
    advertise: '127.0.0.1',
    ...range,
    maxDatagramBytes: 1500,
    flows,
    clock,
    idleTimeoutMs: 60_000,
    randomStart: false,
    ...over,
  });
  t.after(() => r.close());
  return { relay: r, flows };
}

function send(from: Peer, port: number, data: string): void {
  from.socket.send(Buffer.from(data), port, '127.0.0.1');
}

/** Waits until the relay's counters reach `n` relayed + dropped (datagrams handled). */
async function handled(r: MediaRelay, n: number): Promise<void> {
  while (r.stats.relayedPackets + r.stats.droppedPackets < n) await new Promise((resolve) => setTimeout(resolve, 2));
}

test('a stream gets an even RTP port and the odd RTCP port after it, both relayed both ways', async (t) => {
  const { relay: r, flows } = await relay(t, 4);
  const stream = (await r.allocate(7))!;
  assert.ok(stream);
  assert.equal(stream.rtpPort % 2, 0);
  const client = await peer(t);
  const clientRtcp = await peer(t);
  const backend = await peer(t);
  const backendRtcp = await peer(t);
  stream.setClient('127.0.0.1', client.port, clientRtcp.port);
  stream.setBackend('127.0.0.1', backend.port, backendRtcp.port);

  send(client, stream.rtpPort, 'rtp-up');
  assert.deepEqual(await backend.next(), { data: 'rtp-up', port: stream.rtpPort });
  send(clientRtcp, stream.rtpPort + 1, 'rtcp-up');
  assert.deepEqual(await backendRtcp.next(), { data: 'rtcp-up', port: stream.rtpPort + 1 });
  send(backend, stream.rtpPort, 'rtp-down');
  assert.deepEqual(await client.next(), { data: 'rtp-down', port: stream.rtpPort });
  send(backendRtcp, stream.rtpPort + 1, 'rtcp-down');
  assert.deepEqual(await clientRtcp.next(), { data: 'rtcp-down', port: stream.rtpPort + 1 });
  assert.equal(r.stats.relayedPackets, 4);
  assert.equal(r.stats.streams, 1);

  // Both flows: <client, relay, udp>, of session 7, secondary after their first datagram.
  const rtpFlow = flows.lookup(addressKey('127.0.0.1'), client.port, addressKey('127.0.0.1'), stream.rtpPort, PROTO_UDP);
  const rtcpFlow = flows.lookup(addressKey('127.0.0.1'), clientRtcp.port, addressKey('127.0.0.1'), stream.rtpPort + 1, PROTO_UDP);
  assert.equal(flows.role(rtpFlow), 'secondary');
  assert.equal(flows.role(rtcpFlow), 'secondary');
  assert.equal(flows.session(rtpFlow), 7);

  r.releaseSession(7);
  assert.equal(r.stats.streams, 0);
  assert.equal(flows.size, 0);
});

test('an announced flow stays announced until its first datagram', async (t) => {
  const { relay: r, flows } = await relay(t, 2);
  const stream = (await r.allocate(1))!;
  stream.setClient('127.0.0.1', 4000);
  const f = flows.lookup(addressKey('127.0.0.1'), 4000, addressKey('127.0.0.1'), stream.rtpPort, PROTO_UDP);
  assert.equal(flows.role(f), 'announced');
  assert.equal(flows.lookup(addressKey('127.0.0.1'), 4001, addressKey('127.0.0.1'), stream.rtpPort + 1, PROTO_UDP) >= 0, true);
  assert.equal(flows.size, 2);
});

test('the client latches to its real source; third parties are dropped after that', async (t) => {
  const { relay: r, flows } = await relay(t, 2);
  const stream = (await r.allocate(1))!;
  const natted = await peer(t);
  const intruder = await peer(t);
  const backend = await peer(t);
  // Announced from a port nobody uses (behind NAT the client sends from another one).
  stream.setClient('127.0.0.1', 9);
  stream.setBackend('127.0.0.1', backend.port);
  send(natted, stream.rtpPort, 'a');
  assert.equal((await backend.next()).data, 'a');
  send(backend, stream.rtpPort, 'b');
  assert.deepEqual(await natted.next(), { data: 'b', port: stream.rtpPort });
  send(intruder, stream.rtpPort, 'x');
  await handled(r, 3);
  assert.equal(r.stats.droppedPackets, 1);
  assert.equal(backend.received.length, 0);
  // The flow was re-keyed to the latched source.
  assert.equal(flows.lookup(addressKey('127.0.0.1'), 9, addressKey('127.0.0.1'), stream.rtpPort, PROTO_UDP), -1);
  const f = flows.lookup(addressKey('127.0.0.1'), natted.port, addressKey('127.0.0.1'), stream.rtpPort, PROTO_UDP);
  assert.equal(flows.role(f), 'secondary');
});

/** The next datagram of `p`, or a failure after `ms` (a datagram that never comes fails the test instead of hanging it). */
function nextWithin(p: Peer, what: string, ms = 3000): Promise<{ data: string; port: number }> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.next().finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no datagram within ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

test('only the announced client host latches: a third party on another address sending first is dropped; the backend is known by its host', async (t) => {
  const { relay: r } = await relay(t, 2);
  const stream = (await r.allocate(1))!;
  const client = await peer(t, '127.0.0.1');
  const attacker = await peer(t, '127.0.0.2');
  const backendRx = await peer(t, '127.0.0.3');
  const backendTx = await peer(t, '127.0.0.3');
  // The client announces a port it does not send from (NAT); the attacker guesses the relay port and sends first.
  stream.setClient('127.0.0.1', 9);
  send(attacker, stream.rtpPort, 'hijack-1');
  await handled(r, 1);
  stream.setBackend('127.0.0.3', backendRx.port);
  send(attacker, stream.rtpPort, 'hijack-2');
  await handled(r, 2);
  assert.equal(r.stats.droppedPackets, 2);
  assert.equal(r.stats.relayedPackets, 0);
  // The real client still latches (from its announced IP, another port) and reaches the backend.
  send(client, stream.rtpPort, 'a');
  assert.deepEqual(await nextWithin(backendRx, 'client media at the backend'), { data: 'a', port: stream.rtpPort });
  // The backend's media comes from another port than the announced one: still the backend side.
  send(backendTx, stream.rtpPort, 'b');
  assert.deepEqual(await nextWithin(client, 'backend media at the latched client'), { data: 'b', port: stream.rtpPort });
  send(attacker, stream.rtpPort, 'hijack-3');
  await handled(r, 5);
  assert.equal(r.stats.droppedPackets, 3);
  assert.equal(r.stats.relayedPackets, 2);
  assert.equal(attacker.received.length, 0);
  assert.equal(backendRx.received.length, 0);
});

test('a NATed client announcing its private address latches from its signalling host; a third host is still dropped', async (t) => {
  const { relay: r, flows } = await relay(t, 2);
  const stream = (await r.allocate(1))!;
  const client = await peer(t, '127.0.0.1');
  const attacker = await peer(t, '127.0.0.2');
  const backend = await peer(t, '127.0.0.3');
  const changes: RelayChange[] = [];
  r.onChange((c) => changes.push(c));
  // SDP names the private 10.1.2.3:4000; the client's SIP came from 127.0.0.1 (its public address).
  stream.setClient('10.1.2.3', 4000, 4001, '127.0.0.1');
  stream.setBackend('127.0.0.3', backend.port);
  send(attacker, stream.rtpPort, 'hijack-1');
  await handled(r, 1);
  assert.equal(r.stats.droppedPackets, 1);
  send(client, stream.rtpPort, 'a');
  assert.deepEqual(await nextWithin(backend, 'client media at the backend'), { data: 'a', port: stream.rtpPort });
  send(backend, stream.rtpPort, 'b');
  assert.deepEqual(await nextWithin(client, 'backend media at the latched client'), { data: 'b', port: stream.rtpPort });
  send(attacker, stream.rtpPort, 'hijack-2');
  await handled(r, 4);
  assert.equal(r.stats.droppedPackets, 2);
  assert.equal(r.stats.relayedPackets, 2);
  assert.equal(attacker.received.length, 0);
  assert.equal(backend.received.length, 0);
  // The flow moved from the announced private address to the latched public source, and was replicated so.
  assert.equal(flows.lookup(addressKey('10.1.2.3'), 4000, addressKey('127.0.0.1'), stream.rtpPort, PROTO_UDP), -1);
  const f = flows.lookup(addressKey('127.0.0.1'), client.port, addressKey('127.0.0.1'), stream.rtpPort, PROTO_UDP);
  assert.equal(flows.role(f), 'secondary');
  const last = changes.filter((c) => c.type === 'update' && c.state.port === stream.rtpPort).at(-1);
  assert.deepEqual(last?.type === 'update' && { host: last.state.clientHost, port: last.state.clientPort }, { host: '127.0.0.1', port: client.port });
  // A re-INVITE announcing the same SDP keeps the latch: the backend's media still reaches the client.
  stream.setClient('10.1.2.3', 4000, 4001, '127.0.0.1');
  send(backend, stream.rtpPort, 'c');
  assert.deepEqual(await nextWithin(client, 'backend media after re-announcement'), { data: 'c', port: stream.rtpPort });
});

test('datagrams are dropped before the far side is known, and above maxDatagramBytes', async (t) => {
  const { relay: r } = await relay(t, 2, { maxDatagramBytes: 200 });
  const stream = (await r.allocate(1))!;
  const client = await peer(t);
  const backend = await peer(t);
  stream.setClient('127.0.0.1', client.port);
  send(client, stream.rtpPort, 'early');
  await handled(r, 1);
  assert.equal(r.stats.droppedPackets, 1);
  stream.setBackend('127.0.0.1', backend.port);
  client.socket.send(Buffer.alloc(201), stream.rtpPort, '127.0.0.1');
  await handled(r, 2);
  assert.equal(r.stats.droppedPackets, 2);
  client.socket.send(Buffer.alloc(200, 1), stream.rtpPort, '127.0.0.1');
  assert.equal((await backend.next()).data.length, 200);
  assert.equal(r.stats.relayedPackets, 1);
});

test('moveSession sends media towards the backend to the new host, same ports', async (t) => {
  const { relay: r } = await relay(t, 2);
  const stream = (await r.allocate(5))!;
  const client = await peer(t);
  const oldBackend = await peer(t);
  // The new backend listens on the same port number on another host; bind it there explicitly.
  const moved = dgram.createSocket('udp4');
  moved.on('error', () => {});
  const got = new Promise<string>((resolve) => moved.once('message', (m) => resolve(m.toString())));
  moved.bind(oldBackend.port, '127.0.0.2');
  await once(moved, 'listening');
  t.after(() => moved.close());
  stream.setClient('127.0.0.1', client.port);
  stream.setBackend('127.0.0.1', oldBackend.port);
  r.moveSession(5, '127.0.0.2');
  send(client, stream.rtpPort, 'after-move');
  assert.equal(await got, 'after-move');
  assert.equal(oldBackend.received.length, 0);
});

test('an exhausted range yields null; a released pair is allocated again', async (t) => {
  const { relay: r } = await relay(t, 2);
  const a = await r.allocate(1);
  const b = await r.allocate(2);
  assert.ok(a && b);
  assert.notEqual(a.rtpPort, b.rtpPort);
  assert.deepEqual({ ...r.stats }, { streams: 2, portsInUse: 4, portsFree: 0, relayedPackets: 0, droppedPackets: 0 });
  assert.equal(await r.allocate(3), null);
  a.release();
  assert.equal(r.stats.portsFree, 2);
  const c = await r.allocate(3);
  assert.equal(c?.rtpPort, a.rtpPort);
  assert.equal(r.stats.streams, 2);
});

test('with randomStart (the default) every pair of the range is still handed out once', async (t) => {
  const { relay: r } = await relay(t, 4, { randomStart: true });
  const ports = [];
  for (let i = 0; i < 4; i++) ports.push((await r.allocate(i))!.rtpPort);
  assert.equal(await r.allocate(9), null);
  const min = Math.min(...ports);
  assert.deepEqual(ports.map((p) => p - min).sort((a, b) => a - b), [0, 2, 4, 6]);
});

test('an odd portMin starts at the next even port; a lone last port is not used', async (t) => {
  const range = await freeRange(3);
  const { relay: r } = await relay(t, 1, { portMin: range.portMin + 1, portMax: range.portMax });
  // [min+1 .. min+5]: pairs (min+2, min+3) and (min+4, min+5).
  assert.equal(r.stats.portsFree, 4);
  const a = (await r.allocate(1))!;
  const b = (await r.allocate(1))!;
  assert.deepEqual([a.rtpPort, b.rtpPort], [range.portMin + 2, range.portMin + 4]);
});

test('a pair held by another process is skipped', async (t) => {
  const range = await freeRange(2);
  const squatter = dgram.createSocket('udp4');
  squatter.bind(range.portMin + 1, '127.0.0.1');
  await once(squatter, 'listening');
  t.after(() => squatter.close());
  const { relay: r } = await relay(t, 1, range);
  const s = await r.allocate(1);
  assert.equal(s?.rtpPort, range.portMin + 2);
  assert.equal(r.stats.streams, 1);
});

test('a stream with no datagram for idleTimeoutMs is released with its flows (FakeClock)', async (t) => {
  const clock = new FakeClock();
  const { relay: r, flows } = await relay(t, 2, { idleTimeoutMs: 1000 }, clock);
  const quiet = (await r.allocate(1))!;
  const busy = (await r.allocate(2))!;
  const client = await peer(t);
  const backend = await peer(t);
  quiet.setClient('127.0.0.1', 5000);
  busy.setClient('127.0.0.1', client.port);
  busy.setBackend('127.0.0.1', backend.port);
  assert.equal(flows.size, 4);
  clock.advance(600);
  send(client, busy.rtpPort, 'keepalive');
  await backend.next();
  clock.advance(600);
  assert.equal(r.stats.streams, 1);
  assert.equal(r.streamsOf(1).length, 0);
  assert.equal(r.streamsOf(2).length, 1);
  assert.equal(flows.size, 2);
  clock.advance(1000);
  assert.equal(r.stats.streams, 0);
  assert.equal(flows.size, 0);
  assert.equal(r.stats.portsFree, 4);
});

test('an unused RTCP flow purged by the session layer leaves its busy stream alone', async (t) => {
  const clock = new FakeClock();
  const { relay: r, flows } = await relay(t, 1, { idleTimeoutMs: 1000 }, clock);
  const s = (await r.allocate(1))!;
  const client = await peer(t);
  const backend = await peer(t);
  s.setClient('127.0.0.1', client.port);
  s.setBackend('127.0.0.1', backend.port);
  for (let i = 0; i < 4; i++) {
    clock.advance(300);
    send(client, s.rtpPort, `rtp${i}`);
    await backend.next();
  }
  // RTCP never flowed: its flow is idle 1200 ms >= 2 x 500 and is purged; RTP is busy.
  assert.equal(flows.sweep(), 1);
  assert.equal(flows.size, 1);
  assert.equal(r.stats.streams, 1);
  send(client, s.rtpPort, 'still');
  assert.equal((await backend.next()).data, 'still');
});

test('holdfast_media_* metrics read the live relays at scrape time', async (t) => {
  const { createMetrics } = await import('../admin/metrics.js');
  const { relay: r } = await relay(t, 3, { service: 'metrics-probe' });
  await r.allocate(1);
  const m = createMetrics(() => ({ services: [] }) as never);
  t.after(() => m.close());
  const text = await m.registry.metrics();
  assert.match(text, /^holdfast_media_streams\{service="metrics-probe"\} 1$/m);
  assert.match(text, /^holdfast_media_ports_in_use\{service="metrics-probe"\} 2$/m);
  assert.match(text, /^holdfast_media_ports_free\{service="metrics-probe"\} 4$/m);
  await r.close();
  assert.doesNotMatch(await m.registry.metrics(), /service="metrics-probe"/);
});

test('restore() binds a replicated pair with its far ends; allocate() never hands it out; changes and releases are published', async (t) => {
  const { relay: r, flows } = await relay(t, 2);
  const changes: RelayChange[] = [];
  r.onChange((c) => changes.push(c));
  const client = await peer(t);
  const backend = await peer(t);
  const backendRtcp = await peer(t);
  // The second pair of the range, as a peer replicated it (the client latched, the backend announced).
  const port = (r as unknown as { firstRtpPort: number }).firstRtpPort + 2;
  const s = await r.restore(
    9,
    { session: 9, port, clientHost: '127.0.0.1', clientPort: client.port, backendHost: '127.0.0.1', backendPort: backend.port },
    { session: 9, port: port + 1, clientHost: null, clientPort: 0, backendHost: '127.0.0.1', backendPort: backendRtcp.port },
  );
  assert.equal(s?.rtpPort, port);
  assert.deepEqual(r.streamsOf(9), [s]);
  send(client, port, 'rtp-up');
  assert.deepEqual(await backend.next(), { data: 'rtp-up', port });
  send(backend, port, 'rtp-down');
  assert.deepEqual(await client.next(), { data: 'rtp-down', port });
  assert.equal(flows.session(flows.lookup(addressKey('127.0.0.1'), client.port, addressKey('127.0.0.1'), port, PROTO_UDP)), 9);
  // The other pair is the only one left; then none.
  const other = await r.allocate(10);
  assert.equal(other?.rtpPort, port - 2);
  assert.equal(await r.allocate(11), null);
  // A pair already in use is not restored.
  assert.equal(await r.restore(12, { session: 12, port, clientHost: null, clientPort: 0, backendHost: null, backendPort: 0 }, null), null);
  const last = changes.filter((c) => c.type === 'update' && c.state.port === port).at(-1);
  assert.deepEqual(last, { type: 'update', state: { session: 9, port, clientHost: '127.0.0.1', clientPort: client.port, backendHost: '127.0.0.1', backendPort: backend.port } });
  r.releaseSession(9);
  assert.deepEqual(
    changes.filter((c) => c.type === 'release'),
    [
      { type: 'release', session: 9, port },
      { type: 'release', session: 9, port: port + 1 },
    ],
  );
  assert.equal(r.stats.portsFree, 2);
});
