/**
 * @module End-to-end tests of the SIP media relay (issue 6) through a real dispatcher, on real UDP
 * sockets: a SIP client and a SIP backend written here (raw messages, so every SDP line can be
 * checked) exchange offers and answers through holdfast, then RTP/RTCP through the relay ports the
 * rewritten SDP names. Covers audio + video, a re-INVITE that changes ports, relay-port exhaustion
 * (503), streams timing out, malformed SDP (400) and media.enabled false. The sipp interop run
 * (three uas, RTP from pcap) is at the end.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { mediaSchema } from '../../src/config/schema.js';
import { channels, type SessionRefuseEvent } from '../../src/core/diagnostics.js';
import { startDispatcher } from '../../src/dispatcher/dispatcher.js';
import { liveRelays, type MediaRelay } from '../../src/media/media-relay.js';
import { sipTestConfig } from '../helpers/sip-dispatcher.js';
import { freeRange } from '../helpers/free-ports.js';
import { fixture, runUac, startUas, type SippUas } from '../helpers/sipp.js';

const CRLF = '\r\n';

interface Sock {
  socket: dgram.Socket;
  port: number;
  /** The next datagram (with its source port). */
  next(timeoutMs?: number): Promise<{ text: string; port: number }>;
  /** Datagrams received and not yet taken by next(). */
  queued: { text: string; port: number }[];
  send(text: string | Buffer, port: number): void;
}

async function sock(t: TestContext): Promise<Sock> {
  const socket = dgram.createSocket('udp4');
  socket.on('error', () => {});
  const queued: { text: string; port: number }[] = [];
  const waiters: ((d: { text: string; port: number }) => void)[] = [];
  socket.on('message', (m, r) => {
    // The dispatcher's UDP health probe is an empty datagram.
    if (m.length === 0) return;
    const d = { text: m.toString('latin1'), port: r.port };
    const w = waiters.shift();
    if (w) w(d);
    else queued.push(d);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  t.after(() => socket.close());
  return {
    socket,
    port: socket.address().port,
    queued,
    next(timeoutMs = 5000) {
      const d = queued.shift();
      if (d) return Promise.resolve(d);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no datagram on :${socket.address().port} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push((x) => {
          clearTimeout(timer);
          resolve(x);
        });
      });
    },
    send(text, port) {
      socket.send(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, port, '127.0.0.1');
    },
  };
}

function sdpOf(address: string, streams: { type: string; port: number; rtcp?: number }[]): string {
  const lines = ['v=0', `o=- 1 1 IN IP4 ${address}`, 's=-', `c=IN IP4 ${address}`, 't=0 0'];
  for (const s of streams) {
    lines.push(`m=${s.type} ${s.port} RTP/AVP ${s.type === 'video' ? 96 : 0}`);
    if (s.rtcp !== undefined) lines.push(`a=rtcp:${s.rtcp}`);
  }
  return lines.join(CRLF) + CRLF;
}

interface Dialog {
  callId: string;
  fromTag: string;
  toTag: string | null;
  cseq: number;
}

function request(method: string, d: Dialog, clientPort: number, body: string | null, branch: string): string {
  const head = [
    `${method} sip:service@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${clientPort};branch=z9hG4bK${branch};rport`,
    'Max-Forwards: 70',
    `From: <sip:alice@127.0.0.1>;tag=${d.fromTag}`,
    `To: <sip:service@127.0.0.1>${d.toTag ? `;tag=${d.toTag}` : ''}`,
    `Call-ID: ${d.callId}`,
    `CSeq: ${d.cseq} ${method}`,
    `Contact: <sip:alice@127.0.0.1:${clientPort}>`,
  ];
  if (body !== null) head.push('Content-Type: application/sdp');
  head.push(`Content-Length: ${body === null ? 0 : Buffer.byteLength(body, 'latin1')}`);
  return head.join(CRLF) + CRLF + CRLF + (body ?? '');
}

/** A response to `req` (its Via, From, To, Call-ID, CSeq copied), To tag added. */
function response(req: string, status: string, toTag: string, body: string | null): string {
  const headers = req.split(CRLF + CRLF)[0]!.split(CRLF).slice(1);
  const keep = headers.filter((h) => /^(Via|From|To|Call-ID|CSeq|Record-Route):/i.test(h)).map((h) => (/^To:/i.test(h) && !/;tag=/.test(h) ? `${h};tag=${toTag}` : h));
  const lines = [`SIP/2.0 ${status}`, ...keep, '<contact>'];
  lines[lines.length - 1] = 'Contact: <sip:backend@127.0.0.1>';
  if (body !== null) lines.push('Content-Type: application/sdp');
  lines.push(`Content-Length: ${body === null ? 0 : Buffer.byteLength(body, 'latin1')}`);
  return lines.join(CRLF) + CRLF + CRLF + (body ?? '');
}

function bodyOf(msg: string): string {
  return msg.slice(msg.indexOf(CRLF + CRLF) + 4);
}

function header(msg: string, name: string): string | null {
  const m = new RegExp(`^${name}:\\s*(.*)$`, 'im').exec(msg.split(CRLF + CRLF)[0]!);
  return m ? m[1]!.trim() : null;
}

/** The m= ports and the session c= of an SDP, and each a=rtcp port. */
function mediaOf(sdp: string): { c: string | null; ports: number[]; rtcp: number[] } {
  const c = /^c=IN IP4 (\S+)/m.exec(sdp)?.[1] ?? null;
  const ports = [...sdp.matchAll(/^m=\S+ (\d+)/gm)].map((m) => Number(m[1]));
  const rtcp = [...sdp.matchAll(/^a=rtcp:(\d+)/gm)].map((m) => Number(m[1]));
  return { c, ports, rtcp };
}

interface Rig {
  sipPort: number;
  relay: MediaRelay;
  range: { portMin: number; portMax: number };
}

async function rig(
  t: TestContext,
  backends: number[],
  opts: { pairs?: number; flowTimeoutMs?: number; enabled?: boolean } = {},
): Promise<Rig> {
  const range = await freeRange(opts.pairs ?? 8);
  const config = sipTestConfig({ backends, transports: ['udp'], sessions: { flowTimeoutMs: opts.flowTimeoutMs ?? 30_000 } });
  const name = `media-${Math.random().toString(36).slice(2, 8)}`;
  const svc = config.services[0]!;
  (svc as { name: string }).name = name;
  (svc as { media: unknown }).media = mediaSchema.parse({ enabled: opts.enabled ?? true, ...range });
  const before = new Set(liveRelays);
  const dispatcher = await startDispatcher(config);
  t.after(() => dispatcher.close());
  const relay = [...liveRelays].find((r) => !before.has(r) && r.service === name);
  return { sipPort: dispatcher.serviceAddress(name).port, relay: relay!, range };
}

let seq = 0;
function dialog(): Dialog {
  seq++;
  return { callId: `media-${seq}-${Math.random().toString(36).slice(2)}@test`, fromTag: `f${seq}`, toTag: null, cseq: 1 };
}

/** INVITE → backend (which answers `answer` with 200) → client; returns both SDPs as seen, and the backend's INVITE. */
async function call(client: Sock, backend: Sock, sipPort: number, d: Dialog, offer: string, answer: string, branch: string): Promise<{ offerSeen: string; answerSeen: string }> {
  client.send(request('INVITE', d, client.port, offer, branch), sipPort);
  const inv = await backend.next();
  assert.match(inv.text, /^INVITE /);
  d.toTag ??= `t${seq}`;
  backend.send(response(inv.text, '200 OK', d.toTag, answer), inv.port);
  let ok = await client.next();
  while (!ok.text.startsWith('SIP/2.0 200')) ok = await client.next();
  client.send(request('ACK', { ...d }, client.port, null, `${branch}ack`), sipPort);
  const ack = await backend.next();
  assert.match(ack.text, /^ACK /);
  return { offerSeen: bodyOf(inv.text), answerSeen: bodyOf(ok.text) };
}

test('a call with audio and video: both SDPs point at the relay, RTP and RTCP flow both ways per m= line', async (t) => {
  const backend = await sock(t);
  const r = await rig(t, [backend.port]);
  const client = await sock(t);
  const [cAudio, cAudioRtcp, cVideo, cVideoRtcp] = [await sock(t), await sock(t), await sock(t), await sock(t)];
  const [bAudio, bAudioRtcp, bVideo, bVideoRtcp] = [await sock(t), await sock(t), await sock(t), await sock(t)];
  const d = dialog();
  const offer = sdpOf('127.0.0.1', [
    { type: 'audio', port: cAudio.port, rtcp: cAudioRtcp.port },
    { type: 'video', port: cVideo.port, rtcp: cVideoRtcp.port },
  ]);
  const answer = sdpOf('127.0.0.1', [
    { type: 'audio', port: bAudio.port, rtcp: bAudioRtcp.port },
    { type: 'video', port: bVideo.port, rtcp: bVideoRtcp.port },
  ]);
  const { offerSeen, answerSeen } = await call(client, backend, r.sipPort, d, offer, answer, 'av1');
  const o = mediaOf(offerSeen);
  const a = mediaOf(answerSeen);
  // Both sides see the relay: the same port per m= line, even, inside the range, RTCP = RTP + 1.
  assert.equal(o.c, '127.0.0.1');
  assert.deepEqual(o.ports, a.ports);
  assert.notEqual(o.ports[0], o.ports[1]);
  for (const p of o.ports) {
    assert.equal(p % 2, 0);
    assert.ok(p >= r.range.portMin && p + 1 <= r.range.portMax, `${p} in ${JSON.stringify(r.range)}`);
  }
  assert.deepEqual(o.rtcp, o.ports.map((p) => p + 1));
  assert.deepEqual(a.rtcp, a.ports.map((p) => p + 1));
  assert.ok(!offerSeen.includes(String(cAudio.port)) && !answerSeen.includes(String(bAudio.port)));
  assert.equal(r.relay.stats.streams, 2);

  const [audio, video] = [o.ports[0]!, o.ports[1]!];
  const rtp = (tag: string) => Buffer.concat([Buffer.from([0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]), Buffer.from(tag)]);
  cAudio.send(rtp('a-up'), audio);
  assert.equal((await bAudio.next()).text.slice(12), 'a-up');
  bAudio.send(rtp('a-down'), audio);
  const down = await cAudio.next();
  assert.deepEqual([down.text.slice(12), down.port], ['a-down', audio]);
  cVideo.send(rtp('v-up'), video);
  assert.equal((await bVideo.next()).text.slice(12), 'v-up');
  bVideo.send(rtp('v-down'), video);
  assert.equal((await cVideo.next()).text.slice(12), 'v-down');
  cAudioRtcp.send('rtcp-a', audio + 1);
  assert.equal((await bAudioRtcp.next()).text, 'rtcp-a');
  bVideoRtcp.send('rtcp-v', video + 1);
  assert.equal((await cVideoRtcp.next()).text, 'rtcp-v');
  assert.equal(r.relay.stats.relayedPackets, 6);

  // BYE ends the session: its streams and ports go at once (not after the 32 s linger).
  d.cseq++;
  client.send(request('BYE', d, client.port, null, 'av1bye'), r.sipPort);
  const bye = await backend.next();
  assert.match(bye.text, /^BYE /);
  assert.equal(r.relay.stats.streams, 0);
  assert.equal(r.relay.stats.portsInUse, 0);
});

test('a re-INVITE that changes ports keeps the relay ports and moves the far ends', async (t) => {
  const backend = await sock(t);
  const r = await rig(t, [backend.port]);
  const client = await sock(t);
  const [c1, c2, b1, b2] = [await sock(t), await sock(t), await sock(t), await sock(t)];
  const d = dialog();
  const first = await call(client, backend, r.sipPort, d, sdpOf('127.0.0.1', [{ type: 'audio', port: c1.port }]), sdpOf('127.0.0.1', [{ type: 'audio', port: b1.port }]), 'ri1');
  const relayPort = mediaOf(first.offerSeen).ports[0]!;
  c1.send('one', relayPort);
  assert.equal((await b1.next()).text, 'one');

  d.cseq++;
  const second = await call(client, backend, r.sipPort, d, sdpOf('127.0.0.1', [{ type: 'audio', port: c2.port }]), sdpOf('127.0.0.1', [{ type: 'audio', port: b2.port }]), 'ri2');
  assert.deepEqual(mediaOf(second.offerSeen).ports, [relayPort]);
  assert.deepEqual(mediaOf(second.answerSeen).ports, [relayPort]);
  assert.equal(r.relay.stats.streams, 1);
  c2.send('two', relayPort);
  assert.equal((await b2.next()).text, 'two');
  b2.send('back', relayPort);
  assert.equal((await c2.next()).text, 'back');
  // The old client port no longer counts as the client once the new one latched: dropped.
  const dropped = r.relay.stats.droppedPackets;
  c1.send('stale', relayPort);
  for (let i = 0; i < 200 && r.relay.stats.droppedPackets === dropped; i++) await new Promise((res) => setTimeout(res, 5));
  assert.equal(r.relay.stats.droppedPackets, dropped + 1);
  assert.equal(b1.queued.length + b2.queued.length, 0);
});

test('relay-port exhaustion: the new call gets 503 with Retry-After and relay-ports-full is published', async (t) => {
  const backend = await sock(t);
  const r = await rig(t, [backend.port], { pairs: 1 });
  const refusals: string[] = [];
  const onRefuse = (m: unknown) => refusals.push((m as SessionRefuseEvent).reason);
  diagnostics_channel.subscribe(channels.sessionRefuse.name, onRefuse);
  t.after(() => diagnostics_channel.unsubscribe(channels.sessionRefuse.name, onRefuse));
  const client = await sock(t);
  const [c1, b1] = [await sock(t), await sock(t)];
  await call(client, backend, r.sipPort, dialog(), sdpOf('127.0.0.1', [{ type: 'audio', port: c1.port }]), sdpOf('127.0.0.1', [{ type: 'audio', port: b1.port }]), 'ex1');
  assert.equal(r.relay.stats.portsFree, 0);

  const d2 = dialog();
  client.send(request('INVITE', d2, client.port, sdpOf('127.0.0.1', [{ type: 'audio', port: 4000 }]), 'ex2'), r.sipPort);
  const reply = await client.next();
  assert.match(reply.text, /^SIP\/2.0 503 /);
  assert.equal(header(reply.text, 'Retry-After'), '5');
  assert.equal(header(reply.text, 'Call-ID'), d2.callId);
  assert.ok(refusals.includes('relay-ports-full'));
  // Nothing reached the backend, and the established call still has its stream.
  await new Promise((res) => setTimeout(res, 50));
  assert.equal(backend.queued.length, 0);
  assert.equal(r.relay.stats.streams, 1);
});

test('a stream with no media for 2 x flowTimeoutMs is released', async (t) => {
  const backend = await sock(t);
  const r = await rig(t, [backend.port], { flowTimeoutMs: 100 });
  const client = await sock(t);
  const [c1, b1] = [await sock(t), await sock(t)];
  await call(client, backend, r.sipPort, dialog(), sdpOf('127.0.0.1', [{ type: 'audio', port: c1.port }]), sdpOf('127.0.0.1', [{ type: 'audio', port: b1.port }]), 'to1');
  assert.equal(r.relay.stats.streams, 1);
  const started = Date.now();
  while (r.relay.stats.streams > 0 && Date.now() - started < 10_000) await new Promise((res) => setTimeout(res, 20));
  assert.equal(r.relay.stats.streams, 0);
  assert.ok(Date.now() - started >= 150, 'released no earlier than the idle timeout (200 ms after the last activity)');
  assert.equal(r.relay.stats.portsInUse, 0);
});

test('malformed SDP in an INVITE: 400 Bad Request, nothing forwarded, no relay port taken', async (t) => {
  const backend = await sock(t);
  const r = await rig(t, [backend.port]);
  const client = await sock(t);
  const d = dialog();
  client.send(request('INVITE', d, client.port, 'v=0\r\nm=audio banana RTP/AVP 0\r\n', 'bad1'), r.sipPort);
  const reply = await client.next();
  assert.match(reply.text, /^SIP\/2.0 400 /);
  assert.match(header(reply.text, 'Warning') ?? '', /Malformed SDP/);
  await new Promise((res) => setTimeout(res, 50));
  assert.equal(backend.queued.length, 0);
  assert.equal(r.relay.stats.streams, 0);
  // The Call-ID is free again: a good INVITE opens a new session and gets its stream.
  const [c1, b1] = [await sock(t), await sock(t)];
  await call(client, backend, r.sipPort, d, sdpOf('127.0.0.1', [{ type: 'audio', port: c1.port }]), sdpOf('127.0.0.1', [{ type: 'audio', port: b1.port }]), 'bad2');
  assert.equal(r.relay.stats.streams, 1);
});

test('media.enabled false: SDP passes untouched', async (t) => {
  const backend = await sock(t);
  const r = await rig(t, [backend.port], { enabled: false });
  assert.equal(r.relay, undefined);
  const client = await sock(t);
  const offer = sdpOf('127.0.0.1', [{ type: 'audio', port: 4000 }]);
  const answer = sdpOf('127.0.0.1', [{ type: 'audio', port: 5000 }]);
  const seen = await call(client, backend, r.sipPort, dialog(), offer, answer, 'off1');
  assert.equal(seen.offerSeen, offer);
  assert.equal(seen.answerSeen, answer);
});

// ---------------------------------------------------------------- sipp interop

/** A UDP "backend media" endpoint: counts datagrams by source port and echoes them. */
async function mediaCounter(t: TestContext): Promise<{ port: number; bySource: Map<number, number>; total(): number }> {
  const s = await sock(t);
  const bySource = new Map<number, number>();
  s.socket.removeAllListeners('message');
  s.socket.on('message', (m, rinfo) => {
    bySource.set(rinfo.port, (bySource.get(rinfo.port) ?? 0) + 1);
    s.socket.send(m, rinfo.port, rinfo.address);
  });
  return { port: s.port, bySource, total: () => [...bySource.values()].reduce((a, b) => a + b, 0) };
}

test('sipp: calls with RTP (pcap) through holdfast to three uas: every call\'s media reaches the backend that holds its signalling', async (t) => {
  const CALLS = 12;
  const counters = [await mediaCounter(t), await mediaCounter(t), await mediaCounter(t)];
  const uas: SippUas[] = [];
  for (const c of counters) {
    uas.push(await startUas({ transport: 'udp', scenario: fixture('uas-media.xml'), traceMessages: true, extra: ['-key', 'backend_media_port', String(c.port)], t }));
  }
  const r = await rig(t, uas.map((u) => u.port), { pairs: 64 });
  const result = await runUac({
    target: `127.0.0.1:${r.sipPort}`,
    transport: 'udp',
    scenario: fixture('uac-pcap.xml'),
    calls: CALLS,
    rate: 20,
    timeoutS: 60,
    traceMessages: true,
    t,
  });
  assert.equal(result.successful, CALLS, `${result.outputTail}\n${result.errors}`);
  // Each uas logged the INVITEs it got, whose SDP names the call's relay port; its media counter
  // must have received the call's RTP from exactly those relay ports, and from no other.
  let calls = 0;
  for (let i = 0; i < uas.length; i++) {
    const invites = uas[i]!.loggedMessages().filter((m) => m.direction === 'received' && /^INVITE /.test(m.text));
    const relayPorts = new Set(invites.map((m) => mediaOf(bodyOf(m.text.replace(/\r?\n/g, CRLF))).ports[0]!));
    calls += relayPorts.size;
    const sources = new Set(counters[i]!.bySource.keys());
    assert.deepEqual([...sources].sort(), [...relayPorts].sort(), `backend ${i}: media from ${[...sources]} for calls on ${[...relayPorts]}`);
    for (const p of relayPorts) assert.ok(counters[i]!.bySource.get(p)! > 0);
  }
  assert.equal(calls, CALLS);
  assert.ok(counters.filter((c) => c.total() > 0).length >= 2, 'round robin spread the calls');
});
