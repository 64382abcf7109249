/**
 * @module End-to-end tests of `protocol: rtsp` (issue 6): a real dispatcher in front of real RTSP test
 * servers, real clients with UDP media sockets — RTP/RTCP through the relay, the flow table's
 * announced → secondary, per-session media isolation, relay-port exhaustion (453), streams released
 * when idle, malformed RTSP (400 + close, counted), and a backend killed mid-session.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import diagnostics_channel from 'node:diagnostics_channel';
import { configSchema, type MediaConfig, type SessionsConfig } from '../../src/config/schema.js';
import { startDispatcher } from '../../src/dispatcher/dispatcher.js';
import { realClock } from '../../src/core/clock.js';
import { createBalancer } from '../../src/balance/index.js';
import { Backend } from '../../src/core/backend.js';
import { createSessionLayer } from '../../src/sessions/index.js';
import { addressOf, PROTO_UDP, PROTO_TCP } from '../../src/sessions/flow-table.js';
import { ADMIT_ALL } from '../../src/admission/admission-controller.js';
import { RtspForwarder } from '../../src/forward/rtsp/rtsp-forwarder.js';
import { listen } from '../../src/forward/listener.js';
import type { ServiceRuntime } from '../../src/pipeline/service-runtime.js';
import { mediaClient, ports, RtspClient, startRtspServer, transportParam, type RtspServer } from '../helpers/rtsp-server.js';

/** An even base for this file's relay ranges, away from other tests' (random: files run in parallel). */
function relayBase(): number {
  return 30_000 + 2 * Math.floor(Math.random() * 10_000);
}

async function until(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function rtspConfig(opts: { backends: readonly { host: string; port: number }[]; media?: Partial<MediaConfig>; sessions?: Partial<SessionsConfig> }) {
  return configSchema.parse({
    version: 1,
    logging: { level: 'silent' },
    admin: { enabled: false },
    services: [
      {
        name: 'rtsp',
        protocol: 'rtsp',
        listen: '127.0.0.1:0',
        backends: opts.backends.map((b, i) => ({ id: `b${i}`, address: `${b.host}:${b.port}` })),
        media: opts.media ?? {},
        ...(opts.sessions ? { sessions: opts.sessions } : {}),
        health: { probe: { intervalMs: 60_000 } },
      },
    ],
  });
}

async function startRtspDispatcher(t: TestContext, opts: Parameters<typeof rtspConfig>[0]) {
  const dispatcher = await startDispatcher(rtspConfig(opts));
  const clients: RtspClient[] = [];
  t.after(async () => {
    for (const c of clients) c.socket.destroy();
    await dispatcher.close();
  });
  const port = dispatcher.serviceAddress('rtsp').port;
  return {
    dispatcher,
    port,
    async client(): Promise<RtspClient> {
      const c = await RtspClient.connect(t, port);
      clients.push(c);
      return c;
    },
  };
}

function sessionId(reply: { headers: Readonly<Record<string, string>> }): string {
  const s = reply.headers['session'];
  assert.ok(s, 'the reply carries a Session');
  return s.split(';')[0]!.trim();
}

function subscribe<T>(t: TestContext, name: string): T[] {
  const seen: T[] = [];
  const fn = (m: unknown) => seen.push(m as T);
  diagnostics_channel.subscribe(name, fn);
  t.after(() => diagnostics_channel.unsubscribe(name, fn));
  return seen;
}

async function canBind(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind(port, host, () => s.close(() => resolve(true)));
  });
}

/** DESCRIBE + SETUP with the media client's ports; returns the session id and the replies. */
async function setUp(c: RtspClient, media: { rtp: dgram.Socket; rtcp: dgram.Socket }) {
  const cp: [number, number] = [media.rtp.address().port, media.rtcp.address().port];
  const setup = await c.request('SETUP', 'rtsp://example.com/movie/track1', { Transport: `RTP/AVP;unicast;client_port=${cp[0]}-${cp[1]}` });
  return { setup, cp };
}

test('an RTSP session: DESCRIBE, SETUP (Transport rewritten to a relay pair both ways), PLAY (RTP reaches the client through the relay), RTCP reaches the server, TEARDOWN frees the pair', async (t) => {
  const base = relayBase();
  const b0 = await startRtspServer(t, { label: 'b0' });
  const d = await startRtspDispatcher(t, { backends: [b0], media: { portMin: base, portMax: base + 99 } });
  const c = await d.client();
  const m = await mediaClient(t);

  const describe = await c.request('DESCRIBE', 'rtsp://example.com/movie', { Accept: 'application/sdp' });
  assert.equal(describe.status, 200);
  assert.match(describe.body, /^m=video 0 RTP\/AVP 96\r$/m);

  const { setup, cp } = await setUp(c, m);
  assert.equal(setup.status, 200);
  const id = sessionId(setup);
  const ss = b0.sessions.get(id)!;
  assert.ok(ss, 'the server set the session up');
  // The backend was told to send to a relay pair: RTP even in the range, RTCP the next port (RFC 3550 §11).
  const [relayRtp, relayRtcp] = ss.clientPort;
  assert.ok(relayRtp >= base && relayRtp <= base + 98 && relayRtp % 2 === 0, `relay RTP port ${relayRtp} in [${base}, ${base + 98}], even`);
  assert.equal(relayRtcp, relayRtp + 1);
  // The client sees its own ports echoed, and the same relay pair as the server's ports.
  assert.deepEqual(ports(transportParam(setup.headers['transport'], 'client_port')), cp);
  assert.deepEqual(ports(transportParam(setup.headers['transport'], 'server_port')), [relayRtp, relayRtcp]);
  assert.equal(transportParam(setup.headers['transport'], 'ssrc'), '1234ABCD', 'other parameters pass through');

  const play = await c.request('PLAY', 'rtsp://example.com/movie', { Session: id, Range: 'npt=0-' });
  assert.equal(play.status, 200);
  await until('5 RTP packets at the client', () => m.rtpReceived.length === 5);
  assert.deepEqual(
    m.rtpReceived.map((p) => p.text),
    [0, 1, 2, 3, 4].map((i) => `RTP ${id} ${i}`),
  );
  for (const p of m.rtpReceived) assert.equal(p.port, relayRtp, 'RTP comes from the relay RTP port');

  m.rtcp.send('RTCP RR from the client', relayRtcp, '127.0.0.1');
  await until('the RTCP at the server', () => ss.rtcpReceived.length === 1);
  assert.deepEqual(ss.rtcpReceived, ['RTCP RR from the client']);

  const teardown = await c.request('TEARDOWN', 'rtsp://example.com/movie', { Session: id });
  assert.equal(teardown.status, 200);
  await until('the relay pair closed after TEARDOWN', async () => (await canBind(relayRtp)) && (await canBind(relayRtcp)));
  assert.equal(d.dispatcher.status().services[0]!.sessions.active, 0, 'the session ended with TEARDOWN (the connection has no other)');
});

/**
 * An RtspForwarder built by hand (no dispatcher, so the test can read its session layer) in front of
 * one RTSP server b0, with a relay of `relayPorts` ports, listening on 127.0.0.1:0 with one client
 * connected; all closed when the test ends.
 */
async function directForwarder(t: TestContext, relayPorts: number) {
  const base = relayBase();
  const b0 = await startRtspServer(t, { label: 'b0' });
  const config = rtspConfig({ backends: [b0], media: { portMin: base, portMax: base + relayPorts - 1 } }).services[0]!;
  const backends = [new Backend(config.name, 'b0', '127.0.0.1', b0.port, 1, 0, null)];
  const balancer = createBalancer<Backend>(config.balancer);
  balancer.update(backends);
  const layer = createSessionLayer(config, backends, balancer, realClock);
  const rt: ServiceRuntime = {
    config,
    backends,
    balancer,
    failures: { reportFailure() {}, reportSuccess() {} },
    clock: realClock,
    sessions: layer.sessions,
    flows: layer.flows,
    admission: ADMIT_ALL,
  };
  const fwd = new RtspForwarder(rt);
  const listener = await listen('127.0.0.1:0', fwd);
  const c = await RtspClient.connect(t, listener.address.port);
  t.after(async () => {
    c.socket.destroy();
    await listener.close();
    fwd.destroy();
    await fwd.close();
    layer.close();
  });
  return { b0, layer, listener, c };
}

test('flow table: SETUP announces <client, relay, udp> RTP and RTCP flows of the session; the first datagram on each makes it secondary', async (t) => {
  const { b0, layer, listener, c } = await directForwarder(t, 10);
  const m = await mediaClient(t);
  const { setup, cp } = await setUp(c, m);
  assert.equal(setup.status, 200);
  const relay = ports(transportParam(setup.headers['transport'], 'server_port'))!;

  const flows = () => {
    const out: { src: string; dst: string; proto: number; role: string; session: number }[] = [];
    layer.flows.forEach((h) => {
      out.push({
        src: `${addressOf(layer.flows.srcIp(h))}:${layer.flows.srcPort(h)}`,
        dst: `${addressOf(layer.flows.dstIp(h))}:${layer.flows.dstPort(h)}`,
        proto: layer.flows.proto(h),
        role: layer.flows.role(h),
        session: layer.flows.session(h),
      });
    });
    return out.sort((a, b) => a.proto - b.proto || a.dst.localeCompare(b.dst));
  };
  const session = flows().find((f) => f.proto === PROTO_TCP)!.session;
  assert.ok(layer.sessions.table.isOpen(session), 'the signalling flow belongs to an open session');
  assert.deepEqual(flows(), [
    { src: `127.0.0.1:${c.socket.localPort}`, dst: `127.0.0.1:${listener.address.port}`, proto: PROTO_TCP, role: 'signalling', session },
    { src: `127.0.0.1:${cp[0]}`, dst: `127.0.0.1:${relay[0]}`, proto: PROTO_UDP, role: 'announced', session },
    { src: `127.0.0.1:${cp[1]}`, dst: `127.0.0.1:${relay[1]}`, proto: PROTO_UDP, role: 'announced', session },
  ]);

  const id = sessionId(setup);
  assert.equal((await c.request('PLAY', 'rtsp://example.com/movie', { Session: id })).status, 200);
  await until('RTP at the client', () => m.rtpReceived.length === 5);
  assert.deepEqual(
    flows().map((f) => f.role),
    ['signalling', 'secondary', 'announced'],
    'RTP confirmed the RTP flow; RTCP has not flowed yet',
  );
  m.rtcp.send('RR', relay[1], '127.0.0.1');
  await until('RTCP at the server', () => b0.sessions.get(id)!.rtcpReceived.length === 1);
  assert.deepEqual(
    flows().map((f) => f.role),
    ['signalling', 'secondary', 'secondary'],
  );
});

test('two sessions on two backends: each client gets only its own backend media', async (t) => {
  const base = relayBase();
  const b0 = await startRtspServer(t, { label: 'b0' });
  const b1 = await startRtspServer(t, { label: 'b1' });
  const d = await startRtspDispatcher(t, { backends: [b0, b1], media: { portMin: base, portMax: base + 99 } });
  const got: { id: string; received: { text: string }[] }[] = [];
  for (let i = 0; i < 2; i++) {
    const c = await d.client();
    const m = await mediaClient(t);
    const { setup } = await setUp(c, m);
    assert.equal(setup.status, 200);
    const id = sessionId(setup);
    assert.equal((await c.request('PLAY', 'rtsp://example.com/movie', { Session: id })).status, 200);
    got.push({ id, received: m.rtpReceived });
  }
  assert.deepEqual(got.map((g) => g.id.split('-')[0]).sort(), ['b0', 'b1'], 'round robin put one session on each backend');
  // RFC 2326 lets a session's requests come on another connection: Session: X follows X's pin
  // (the other backend would answer 454).
  for (const g of got) {
    const other = await d.client();
    assert.equal((await other.request('GET_PARAMETER', 'rtsp://example.com/movie', { Session: g.id })).status, 200, `${g.id} on a new connection`);
  }
  for (const g of got) {
    await until(`5 RTP packets of ${g.id}`, () => g.received.length >= 5);
    // A little longer: a packet of the other session would arrive now if it could.
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      g.received.map((p) => p.text),
      [0, 1, 2, 3, 4].map((i) => `RTP ${g.id} ${i}`),
    );
  }
});

test('relay ports exhausted: with 2 pairs, the third SETUP gets 453 Not Enough Bandwidth (never reaches the backend) and sessionRefuse relay-ports-full', async (t) => {
  const base = relayBase();
  const refusals = subscribe<{ service: string; reason: string }>(t, 'holdfast:session:refuse');
  const b0 = await startRtspServer(t, { label: 'b0' });
  const d = await startRtspDispatcher(t, { backends: [b0], media: { portMin: base, portMax: base + 3 } });
  const statuses: number[] = [];
  const relayPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await d.client();
    const { setup } = await setUp(c, await mediaClient(t));
    statuses.push(setup.status);
    if (setup.status === 200) relayPorts.push(ports(transportParam(setup.headers['transport'], 'server_port'))![0]);
    else assert.equal(setup.reason, 'Not Enough Bandwidth');
  }
  assert.deepEqual(statuses, [200, 200, 453]);
  assert.deepEqual(relayPorts.sort(), [base, base + 2]);
  assert.equal(b0.requests.filter((r) => r.method === 'SETUP').length, 2);
  assert.deepEqual(refusals, [{ service: 'rtsp', reason: 'relay-ports-full' }]);
});

test('flows timing out: an idle stream (no media) is released after 2 x flowTimeoutMs and its pair serves a new session', async (t) => {
  const base = relayBase();
  const b0 = await startRtspServer(t, { label: 'b0' });
  const d = await startRtspDispatcher(t, { backends: [b0], media: { portMin: base, portMax: base + 1 }, sessions: { flowTimeoutMs: 100 } });
  const c1 = await d.client();
  const first = await setUp(c1, await mediaClient(t));
  assert.equal(first.setup.status, 200);
  const c2 = await d.client();
  const m2 = await mediaClient(t);
  assert.equal((await setUp(c2, m2)).setup.status, 453, 'the only pair is held by the first session');
  // No TEARDOWN: only the idle timeout can free the pair.
  await until('the idle pair released', async () => canBind(base));
  const again = await setUp(c2, m2);
  assert.equal(again.setup.status, 200);
  assert.deepEqual(ports(transportParam(again.setup.headers['transport'], 'server_port')), [base, base + 1]);
});

test('malformed RTSP: 400 Bad Request, the connection closes, messageDrop counts it, the backend sees nothing and other clients go on', async (t) => {
  const drops = subscribe<{ service: string; reason: string; transport: string }>(t, 'holdfast:message:drop');
  const b0 = await startRtspServer(t, { label: 'b0' });
  const d = await startRtspDispatcher(t, { backends: [b0], media: { portMin: relayBase(), portMax: 65_000 } });
  const good = await d.client();
  const bad = ['GARBAGE\r\n\r\n', 'OPTIONS rtsp://example.com/ RTSP/1.0\r\nCSeq: seven\r\n\r\n', 'OPTIONS rtsp://example.com/ RTSP/1.0\r\nCSeq: 3\r\nSession: a b\r\n\r\n'];
  const replies: string[] = [];
  for (const text of bad) {
    const s = net.connect(d.port, '127.0.0.1');
    t.after(() => s.destroy());
    let received = '';
    s.on('data', (b) => (received += b.toString('latin1')));
    s.on('error', () => {});
    s.write(text);
    await new Promise((r) => s.once('close', r));
    assert.match(received, /^RTSP\/1\.0 400 Bad Request\r\n/, `400 for ${JSON.stringify(text)}`);
    replies.push(received);
  }
  assert.match(replies[2]!, /\r\nCSeq: 3\r\n/, 'the CSeq is echoed when it could be read');
  assert.equal(b0.requests.length, 0);
  assert.deepEqual(
    drops.filter((e) => e.service === 'rtsp'),
    bad.map(() => ({ service: 'rtsp', reason: 'malformed', transport: 'tcp' })),
  );
  assert.equal((await good.request('OPTIONS', 'rtsp://example.com/')).status, 200);
});

test('a backend killed mid-session: the session re-pins, its media follows to the new backend host, the new backend answers 454, a new SETUP there streams again', async (t) => {
  const base = relayBase();
  const repins = subscribe<{ service: string; from: string; to: string | null }>(t, 'holdfast:session:repin');
  const servers = [await startRtspServer(t, { label: 'b0', host: '127.0.0.1' }), await startRtspServer(t, { label: 'b1', host: '127.0.0.2' })];
  const d = await startRtspDispatcher(t, { backends: servers, media: { portMin: base, portMax: base + 99 } });
  const c = await d.client();
  const m = await mediaClient(t);
  const { setup } = await setUp(c, m);
  assert.equal(setup.status, 200);
  const id = sessionId(setup);
  const firstIndex = servers.findIndex((s) => s.sessions.has(id));
  const first = servers[firstIndex] as RtspServer;
  const second = servers[1 - firstIndex] as RtspServer;
  const oldServerPorts = first.sessions.get(id)!.serverPort;
  const relay = ports(transportParam(setup.headers['transport'], 'server_port'))!;
  assert.equal((await c.request('PLAY', 'rtsp://example.com/movie', { Session: id })).status, 200);
  await until('RTP before the failure', () => m.rtpReceived.length === 5);

  await first.kill();
  // A request written before the dispatcher saw the connection die gets 503 (it may have been acted
  // on, so it is not resent); the client retries, as RTSP clients do.
  let after = await c.request('GET_PARAMETER', 'rtsp://example.com/movie', { Session: id });
  for (let i = 0; i < 3 && after.status === 503; i++) after = await c.request('GET_PARAMETER', 'rtsp://example.com/movie', { Session: id });
  assert.equal(after.status, 454, 'the new backend does not know the session');
  assert.deepEqual(repins.filter((r) => r.service === 'rtsp'), [{ service: 'rtsp', from: `b${firstIndex}`, to: `b${1 - firstIndex}` }]);

  // The old stream's media now goes to the new backend's host (same ports: the relay cannot know better).
  const probe = dgram.createSocket('udp4');
  t.after(() => probe.close());
  const atProbe: string[] = [];
  probe.on('message', (msg) => atProbe.push(msg.toString()));
  await new Promise<void>((resolve) => probe.bind(oldServerPorts[1], second.host, resolve));
  m.rtcp.send('RR after the move', relay[1], '127.0.0.1');
  await until('RTCP at the new backend host', () => atProbe.length === 1);

  const again = await setUp(c, m);
  assert.equal(again.setup.status, 200);
  const id2 = sessionId(again.setup);
  assert.ok(second.sessions.has(id2), 'the new session is on the surviving backend');
  m.rtpReceived.length = 0;
  assert.equal((await c.request('PLAY', 'rtsp://example.com/movie', { Session: id2 })).status, 200);
  await until('RTP from the surviving backend', () => m.rtpReceived.length === 5);
  assert.deepEqual(
    m.rtpReceived.map((p) => p.text),
    [0, 1, 2, 3, 4].map((i) => `RTP ${id2} ${i}`),
  );
});

test('SETUPs naming no session on a connection whose session is named: each refused one (453) closes the session it opened, so the table does not fill (review finding 6)', async (t) => {
  const { b0, layer, c } = await directForwarder(t, 2);
  const table = layer.sessions.table;
  const m = await mediaClient(t);
  // The first SETUP takes the only relay pair and names the connection's session.
  assert.equal((await setUp(c, m)).setup.status, 200);
  assert.equal(table.size, 1);
  for (let i = 0; i < 5; i++) {
    const { setup } = await setUp(c, m);
    assert.equal(setup.status, 453);
    assert.equal(table.size, 1, `after refused SETUP ${i + 1}`);
  }
  assert.equal(b0.requests.filter((r) => r.method === 'SETUP').length, 1);
});
