/**
 * @module Tests of the UDP relay on real loopback sockets, with the service runtime built by hand
 * (FakeClock for the flow lifecycle, a recording failure sink): the flow table states of SARA III.A,
 * purge of the upstream socket and the session, ECONNREFUSED as passive detection, re-pinning, the
 * bounded queue of a connecting socket, a missing socket, and close/destroy.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import '../../balance/index.js';
import { createBalancer } from '../../balance/balancer.js';
import { serviceSchema, type SessionsConfig } from '../../config/schema.js';
import type { HostPort } from '../../core/address.js';
import { FakeClock, realClock, type Clock } from '../../core/clock.js';
import { channels, type MessageDropEvent, type SessionRefuseEvent } from '../../core/diagnostics.js';
import type { BackendFailureKind } from '../../core/errors.js';
import { Backend } from '../../core/backend.js';
import { addressKey, NO_FLOW, PROTO_UDP, type FlowHandle } from '../../sessions/flow-table.js';
import type { SessionLayer } from '../../sessions/index.js';
import { createServiceRuntime } from '../../pipeline/service-runtime.js';
import {
  createFlowSocketUpstream,
  PENDING_DATAGRAMS_PER_FLOW,
  UdpForwarder,
  type RelayFlow,
  type UpstreamEvents,
  type UpstreamFactory,
} from './udp-forwarder.js';

const SILENCE_MS = 250;
let serviceSeq = 0;

/** A UDP echo server answering `<id>|datagram`; returns its port. */
async function echo(t: TestContext, id: string): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.on('error', () => {});
  s.on('message', (m, r) => s.send(Buffer.concat([Buffer.from(`${id}|`), m]), r.port, r.address));
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  t.after(() => s.close());
  return s.address().port;
}

/** A UDP port nothing listens on (bound, then released): datagrams to it get ICMP port unreachable. */
async function closedPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

interface Rig {
  forwarder: UdpForwarder;
  layer: SessionLayer;
  backends: Backend[];
  failures: { id: string; kind: BackendFailureKind }[];
  drops: string[];
  address: HostPort;
  client: Client;
  /** The flow of `client` in the flow table. */
  flowOf(c: Client): FlowHandle;
  /** What the dispatcher does when the monitor takes `b` down: snapshot, re-pin, forwarder. */
  takeDown(b: Backend): void;
}

interface Client {
  /** Its own address (the flow's source): 127.0.0.1 or ::1, as the service's family. */
  host: string;
  port: number;
  send(payload: string): void;
  next(timeoutMs?: number): Promise<string | null>;
  request(payload: string, timeoutMs?: number): Promise<string | null>;
}

async function client(t: TestContext, to: () => HostPort): Promise<Client> {
  const host = to().host.includes(':') ? '::1' : '127.0.0.1';
  const s = dgram.createSocket(host === '::1' ? 'udp6' : 'udp4');
  s.on('error', () => {});
  const inbox: string[] = [];
  let waiter: ((m: string) => void) | null = null;
  s.on('message', (m) => {
    const text = m.toString('latin1');
    if (waiter) {
      const w = waiter;
      waiter = null;
      w(text);
    } else inbox.push(text);
  });
  s.bind(0, host);
  await once(s, 'listening');
  t.after(() => s.close());
  const next = (timeoutMs = 2000): Promise<string | null> => {
    const first = inbox.shift();
    if (first !== undefined) return Promise.resolve(first);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        waiter = null;
        resolve(null);
      }, timeoutMs);
      waiter = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
    });
  };
  const send = (payload: string): void => {
    const at = to();
    s.send(Buffer.from(payload, 'latin1'), at.port, at.host);
  };
  return {
    host,
    port: s.address().port,
    send,
    next,
    request(payload, timeoutMs) {
      send(payload);
      return next(timeoutMs);
    },
  };
}

async function makeRig(
  t: TestContext,
  ports: number[],
  options: {
    clock?: Clock;
    sessions?: Partial<SessionsConfig>;
    udp?: { maxUpstreamSockets?: number };
    upstream?: UpstreamFactory;
    listenHost?: string;
  } = {},
): Promise<Rig> {
  const service = `udp-test-${++serviceSeq}`;
  const clock = options.clock ?? realClock;
  const config = serviceSchema.parse({
    name: service,
    protocol: 'udp',
    listen: '127.0.0.1:0',
    backends: ports.map((port, i) => ({ id: `b${i}`, address: `127.0.0.1:${port}` })),
    ...(options.sessions ? { sessions: options.sessions } : {}),
    ...(options.udp ? { udp: options.udp } : {}),
  });
  const backends = ports.map((port, i) => new Backend(service, `b${i}`, '127.0.0.1', port, 1, i));
  const balancer = createBalancer<Backend>('round-robin');
  const rebuild = (): void => balancer.update(backends.filter((b) => b.eligible));
  rebuild();
  const failures: Rig['failures'] = [];
  const { runtime, layer } = createServiceRuntime(config, backends, balancer, {
    reportFailure(backend, kind) {
      failures.push({ id: backend.id, kind });
      backend.state = 'down';
      rebuild();
    },
    reportSuccess(backend) {
      backend.state = 'up';
    },
  }, clock);
  layer.start();
  t.after(() => layer.close());
  const forwarder = new UdpForwarder(runtime, options.upstream ? { upstream: options.upstream } : {});
  const address = await forwarder.bindDatagram({ host: options.listenHost ?? '127.0.0.1', port: 0 });
  t.after(() => forwarder.destroy());
  const drops: string[] = [];
  const onDrop = (m: unknown): void => {
    if ((m as MessageDropEvent).service === service) drops.push((m as MessageDropEvent).reason);
  };
  channels.messageDrop.subscribe(onDrop);
  t.after(() => channels.messageDrop.unsubscribe(onDrop));
  const c = await client(t, () => address);
  return {
    forwarder,
    layer,
    backends,
    failures,
    drops,
    address,
    client: c,
    flowOf: (cl) => layer.flows.lookup(addressKey(cl.host), cl.port, addressKey(address.host), address.port, PROTO_UDP),
    takeDown(b) {
      b.state = 'down';
      rebuild();
      layer.sessions.backendDown(b);
      forwarder.backendDown(b);
    },
  };
}

test('a flow through its SARA III.A states: established, inactive yet pinned, purged at twice its timeout with its socket and session', async (t) => {
  const clock = new FakeClock();
  const TIMEOUT_MS = 1000;
  const rig = await makeRig(t, [await echo(t, 'b0'), await echo(t, 'b1')], { clock, sessions: { flowTimeoutMs: TIMEOUT_MS } });
  const { flows } = rig.layer;
  const table = rig.layer.sessions.table;

  assert.equal(await rig.client.request('hello'), 'b0|hello');
  const h = rig.flowOf(rig.client);
  assert.notEqual(h, NO_FLOW);
  assert.equal(flows.role(h), 'signalling');
  // The reply is traffic on the flow too: established.
  assert.equal(flows.status(h), 'established');
  assert.equal(rig.forwarder.upstreamSockets, 1);
  assert.equal(table.size, 1);
  assert.equal(rig.backends[0]!.active, 1, 'a flow counts as work in flight on its backend');

  clock.advance(TIMEOUT_MS);
  assert.equal(flows.status(h), 'inactive');
  assert.equal(rig.forwarder.upstreamSockets, 1, 'inactive is not purged');
  assert.equal(await rig.client.request('again'), 'b0|again', 'an inactive flow keeps its pin');
  assert.equal(rig.flowOf(rig.client), h, 'and is the same flow, revived');
  assert.equal(flows.status(h), 'established');

  clock.advance(2 * TIMEOUT_MS - 1);
  assert.equal(rig.forwarder.flowCount, 1);
  clock.advance(1 + 250);
  assert.equal(rig.flowOf(rig.client), NO_FLOW, 'purged after twice the timeout');
  assert.equal(rig.forwarder.flowCount, 0);
  assert.equal(rig.forwarder.upstreamSockets, 0, 'its upstream socket was closed');
  assert.equal(table.size, 0, 'its session was closed');
  assert.equal(rig.backends[0]!.active, 0);

  // Round robin: the next new flow goes to the next backend.
  assert.equal(await rig.client.request('new'), 'b1|new');
});

test('the first datagram of a flow makes it new; the second, established', async (t) => {
  // A backend that never answers: only client datagrams move the flow.
  const sink = dgram.createSocket('udp4');
  const got: string[] = [];
  sink.on('message', (m) => got.push(m.toString()));
  sink.bind(0, '127.0.0.1');
  await once(sink, 'listening');
  t.after(() => sink.close());
  const rig = await makeRig(t, [sink.address().port]);
  const until = async (n: number): Promise<void> => {
    const deadline = Date.now() + 2000;
    while (got.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  };
  rig.client.send('one');
  await until(1);
  const h = rig.flowOf(rig.client);
  assert.equal(rig.layer.flows.status(h), 'new');
  assert.equal(rig.layer.flows.role(h), 'signalling');
  rig.client.send('two');
  await until(2);
  assert.deepEqual(got, ['one', 'two']);
  assert.equal(rig.layer.flows.status(h), 'established');
});

test('ECONNREFUSED on a flow socket reports the backend refused; the next datagram follows the re-pinned session', async (t) => {
  const rig = await makeRig(t, [await closedPort(), await echo(t, 'b1')]);
  assert.equal(await rig.client.request('lost', SILENCE_MS), null, 'the datagram to the closed port is lost');
  assert.deepEqual(rig.failures, [{ id: 'b0', kind: 'refused' }]);
  assert.equal(await rig.client.request('moved'), 'b1|moved');
  assert.equal(rig.forwarder.upstreamSockets, 1, 'the old socket was closed when the flow moved');
  assert.equal(rig.backends[0]!.active, 0);
  assert.equal(rig.backends[1]!.active, 1);
  assert.equal(rig.layer.sessions.table.size, 1, 'the same session, re-pinned');
});

test('backendDown() detaches the flows of that backend; each re-attaches to its new pin on its next datagram', async (t) => {
  const rig = await makeRig(t, [await echo(t, 'b0'), await echo(t, 'b1')]);
  const other = await client(t, () => rig.address);
  assert.equal(await rig.client.request('x'), 'b0|x');
  assert.equal(await other.request('y'), 'b1|y');
  rig.takeDown(rig.backends[0]!);
  assert.equal(rig.forwarder.upstreamSockets, 1, "only b1's flow keeps its socket");
  assert.equal(rig.backends[0]!.active, 0);
  assert.equal(rig.layer.sessions.table.backend(rig.layer.flows.session(rig.flowOf(rig.client))), 1, 're-pinned to b1, the only one left');
  assert.equal(await rig.client.request('z'), 'b1|z');
  assert.equal(await other.request('w'), 'b1|w');
  assert.equal(rig.backends[1]!.active, 2);
  assert.equal(rig.forwarder.upstreamSockets, 2);
});

test('a connecting upstream socket queues at most PENDING_DATAGRAMS_PER_FLOW datagrams, then drops (counted)', async (t) => {
  const port = await echo(t, 'b0');
  const dropped: string[] = [];
  const replies: string[] = [];
  const events: UpstreamEvents = {
    reply: (_f, d) => replies.push(d.toString()),
    failed: () => assert.fail('no failure expected'),
    dropped: (_f, reason) => dropped.push(reason),
  };
  const upstream = createFlowSocketUpstream(events);
  t.after(() => upstream.close());
  const backend = new Backend('s', 'b0', '127.0.0.1', port, 1, 0);
  const flow: RelayFlow = { handle: 0, session: 0, backend, link: null, clientAddress: '127.0.0.1', clientPort: 1 };
  flow.link = upstream.attach(flow, backend);
  const TOTAL = PENDING_DATAGRAMS_PER_FLOW + 3;
  // Synchronously: the socket cannot have connected yet (bind and connect take an event-loop turn).
  for (let i = 0; i < TOTAL; i++) upstream.send(flow, Buffer.from(`d${i}`));
  assert.deepEqual(dropped, ['queue-full', 'queue-full', 'queue-full']);
  const until = Date.now() + 2000;
  while (replies.length < PENDING_DATAGRAMS_PER_FLOW && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(
    replies,
    Array.from({ length: PENDING_DATAGRAMS_PER_FLOW }, (_, i) => `b0|d${i}`),
    'the queued datagrams are sent in order once connected',
  );
  assert.equal(upstream.sockets, 1);
  upstream.detach(flow);
  assert.equal(upstream.sockets, 0);
});

test('an upstream without capacity (attach() gives no link): the datagram is dropped as no-socket and the flow retries on its next one', async (t) => {
  let refuse = true;
  const factory: UpstreamFactory = (events) => {
    const real = createFlowSocketUpstream(events);
    return {
      attach: (flow, backend) => (refuse ? null : real.attach(flow, backend)),
      send: (flow, d) => real.send(flow, d),
      detach: (flow) => real.detach(flow),
      get sockets() {
        return real.sockets;
      },
      close: () => real.close(),
    };
  };
  const rig = await makeRig(t, [await echo(t, 'b0')], { upstream: factory });
  assert.equal(await rig.client.request('first', SILENCE_MS), null);
  assert.deepEqual(rig.drops, ['no-socket']);
  assert.equal(rig.backends[0]!.active, 0, 'a detached flow is no work on its backend');
  refuse = false;
  assert.equal(await rig.client.request('second'), 'b0|second');
  assert.equal(rig.forwarder.flowCount, 1, 'the same flow');
});

test('a session closed under a live flow (session timeout) is replaced on the flow\'s next datagram, pinned to the backend the flow talks to', async (t) => {
  const clock = new FakeClock();
  const rig = await makeRig(t, [await echo(t, 'b0'), await echo(t, 'b1')], { clock, sessions: { flowTimeoutMs: 10_000, sessionTimeoutMs: 100 } });
  assert.equal(await rig.client.request('a'), 'b0|a');
  const h = rig.flowOf(rig.client);
  const first = rig.layer.flows.session(h);
  clock.advance(150);
  assert.equal(rig.layer.sessions.table.isOpen(first), false);
  // Review finding 4: a new session, but on b0 where the flow's state is — not the balancer's next
  // pick (round robin would say b1).
  assert.equal(await rig.client.request('b'), 'b0|b');
  assert.equal(rig.flowOf(rig.client), h);
  const second = rig.layer.flows.session(h);
  assert.notEqual(second, first);
  assert.equal(rig.layer.sessions.table.backend(second), 0);
  assert.equal(rig.layer.sessions.table.size, 1);
  assert.equal(rig.forwarder.upstreamSockets, 1);
});

test('a receive-only client keeps its session: backend replies touch it past sessionTimeoutMs, and its next datagram stays on that backend', async (t) => {
  // b0 remembers the relay's upstream socket and pushes datagrams to it on demand.
  const pusher = dgram.createSocket('udp4');
  pusher.on('error', () => {});
  let peer: dgram.RemoteInfo | null = null;
  pusher.on('message', (m, r) => {
    peer = r;
    pusher.send(Buffer.concat([Buffer.from('b0|'), m]), r.port, r.address);
  });
  pusher.bind(0, '127.0.0.1');
  await once(pusher, 'listening');
  t.after(() => pusher.close());
  const clock = new FakeClock();
  const SESSION_TIMEOUT_MS = 100;
  const rig = await makeRig(t, [pusher.address().port, await echo(t, 'b1')], {
    clock,
    sessions: { flowTimeoutMs: 10_000, sessionTimeoutMs: SESSION_TIMEOUT_MS },
  });
  assert.equal(await rig.client.request('subscribe'), 'b0|subscribe');
  const h = rig.flowOf(rig.client);
  const session = rig.layer.flows.session(h);
  // The client says nothing for 3 x 60 ms = 180 ms > sessionTimeoutMs; b0 streams every 60 ms.
  for (let i = 0; i < 3; i++) {
    clock.advance(60);
    const to = peer as dgram.RemoteInfo | null;
    assert.ok(to !== null);
    pusher.send(Buffer.from(`push${i}`), to.port, to.address);
    assert.equal(await rig.client.next(), `push${i}`);
  }
  clock.advance(60);
  assert.equal(rig.layer.sessions.table.isOpen(session), true, 'replies are session traffic');
  assert.equal(rig.layer.flows.session(h), session);
  assert.equal(await rig.client.request('again'), 'b0|again', 'still on b0, not re-balanced to b1');
});

test('udp.maxUpstreamSockets: at the cap a new client is refused (sockets-full, no session opened), established flows go on', async (t) => {
  const rig = await makeRig(t, [await echo(t, 'b0')], { udp: { maxUpstreamSockets: 2 } });
  const refusals: string[] = [];
  const onRefuse = (m: unknown): void => {
    const e = m as SessionRefuseEvent;
    if (e.service === rig.forwarder.rt.config.name) refusals.push(e.reason);
  };
  channels.sessionRefuse.subscribe(onRefuse);
  t.after(() => channels.sessionRefuse.unsubscribe(onRefuse));
  const second = await client(t, () => rig.address);
  const third = await client(t, () => rig.address);
  assert.equal(await rig.client.request('one'), 'b0|one');
  assert.equal(await second.request('two'), 'b0|two');
  assert.equal(rig.forwarder.upstreamSockets, 2);
  assert.equal(await third.request('three', SILENCE_MS), null);
  assert.deepEqual(refusals, ['sockets-full']);
  assert.equal(rig.forwarder.upstreamSockets, 2);
  assert.equal(rig.forwarder.flowCount, 2, 'no flow for the refused client');
  assert.equal(rig.layer.sessions.table.size, 2, 'no session opened for the refused client');
  assert.equal(await rig.client.request('one again'), 'b0|one again');
  assert.equal(await second.request('two again'), 'b0|two again');
});

test('udp.maxUpstreamSockets: a detached flow re-attaching at the cap is dropped (no-socket), the flow holding the socket goes on', async (t) => {
  const rig = await makeRig(t, [await echo(t, 'b0'), await echo(t, 'b1')], { udp: { maxUpstreamSockets: 1 } });
  const other = await client(t, () => rig.address);
  assert.equal(await rig.client.request('one'), 'b0|one');
  // b0 goes down: the flow is detached (its socket closed) and re-pinned to b1.
  rig.takeDown(rig.backends[0]!);
  assert.equal(rig.forwarder.upstreamSockets, 0);
  // Another client takes the only socket.
  assert.equal(await other.request('two'), 'b1|two');
  assert.equal(rig.forwarder.upstreamSockets, 1);
  assert.equal(await rig.client.request('three', SILENCE_MS), null);
  assert.deepEqual(rig.drops, ['no-socket']);
  assert.equal(rig.forwarder.upstreamSockets, 1);
  assert.equal(await other.request('four'), 'b1|four');
});

test('destroy() closes the service socket and every upstream socket; a stream client is destroyed', async (t) => {
  const rig = await makeRig(t, [await echo(t, 'b0')]);
  assert.equal(await rig.client.request('a'), 'b0|a');
  const s = new net.Socket();
  rig.forwarder.handle(s);
  assert.equal(s.destroyed, true);
  rig.forwarder.destroy();
  assert.equal(rig.forwarder.upstreamSockets, 0);
  assert.equal(rig.backends[0]!.active, 0);
  assert.equal(await rig.client.request('b', SILENCE_MS), null);
  await rig.forwarder.close();
});

test('an IPv6 service: clients over ::1 are tracked by their interned address key and answered from [::1]', async (t) => {
  const rig = await makeRig(t, [await echo(t, 'b0'), await echo(t, 'b1')], { listenHost: '::1' });
  assert.equal(rig.address.host, '::1');
  const other = await client(t, () => rig.address);
  assert.equal(await rig.client.request('a'), 'b0|a');
  assert.equal(await other.request('b'), 'b1|b');
  assert.equal(await rig.client.request('c'), 'b0|c', 'each IPv6 flow keeps its pin');
  assert.notEqual(rig.flowOf(rig.client), NO_FLOW);
  assert.notEqual(rig.flowOf(rig.client), rig.flowOf(other));
  assert.equal(rig.forwarder.flowCount, 2);
  // Replies come from the service address (the client socket would not tell them apart otherwise).
  const s = dgram.createSocket('udp6');
  s.on('error', () => {});
  s.bind(0, '::1');
  await once(s, 'listening');
  t.after(() => s.close());
  const got = once(s, 'message') as Promise<[Buffer, dgram.RemoteInfo]>;
  s.send('d', rig.address.port, '::1');
  const [m, r] = await got;
  assert.equal(m.toString(), 'b0|d');
  assert.deepEqual({ address: r.address, port: r.port }, { address: '::1', port: rig.address.port });
});

test('bindDatagram rejects with ListenError when the port is taken', async (t) => {
  const holder = dgram.createSocket('udp4');
  holder.bind(0, '127.0.0.1');
  await once(holder, 'listening');
  t.after(() => holder.close());
  const rig = await makeRig(t, [await echo(t, 'b0')]);
  const second = new UdpForwarder(rig.forwarder.rt);
  t.after(() => second.destroy());
  await assert.rejects(second.bindDatagram({ host: '127.0.0.1', port: holder.address().port }), { code: 'HF_ERR_LISTEN' });
});
