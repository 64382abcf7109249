/**
 * @module The media relay across a takeover, end to end (issue 7: "after a takeover, UDP flows (SIP
 * signalling and media) go on with their pins"): two real `holdfast dispatcher` processes in one
 * loopback election group whose VIP carries a SIP UDP service with its media relay; a SIP client and
 * two SIP backends written here (raw UDP, so the SDP and every RTP datagram can be checked). A call's
 * RTP flows through the master's relay port; SIGKILL of the master → the backup takes the VIP, binds
 * the replicated relay port again, and the client's RTP to the SAME relay port reaches the SAME
 * backend media port, and the backend's RTP comes back; the call's BYE reaches the same backend.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { test, type TestContext } from 'node:test';
import { haConfig, startHaDispatcher, type HaDispatcher } from '../../bench/lib/ha-cluster.js';
import { makeTempDir, removeTempDir } from '../../bench/lib/procs.js';
import { freeSipPort, freeSipPorts } from '../helpers/sipp.js';

const CRLF = '\r\n';

interface Datagram {
  text: string;
  host: string;
  port: number;
}

interface Sock {
  port: number;
  next(timeoutMs?: number, what?: string): Promise<Datagram>;
  send(text: string, host: string, port: number): void;
}

async function sock(t: TestContext): Promise<Sock> {
  const socket = dgram.createSocket('udp4');
  socket.on('error', () => {});
  const queued: Datagram[] = [];
  const waiters: ((d: Datagram) => void)[] = [];
  socket.on('message', (m, r) => {
    // The dispatcher's UDP health probe is an empty datagram.
    if (m.length === 0) return;
    const d = { text: m.toString('latin1'), host: r.address, port: r.port };
    const w = waiters.shift();
    if (w) w(d);
    else queued.push(d);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const port = socket.address().port;
  t.after(() => socket.close());
  return {
    port,
    next(timeoutMs = 5000, what = '') {
      const d = queued.shift();
      if (d) return Promise.resolve(d);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const i = waiters.indexOf(w);
          if (i >= 0) waiters.splice(i, 1);
          reject(new Error(`no datagram on :${port} within ${timeoutMs} ms ${what}`));
        }, timeoutMs);
        const w = (x: Datagram): void => {
          clearTimeout(timer);
          resolve(x);
        };
        waiters.push(w);
      });
    },
    send(text, host, port) {
      socket.send(Buffer.from(text, 'latin1'), port, host);
    },
  };
}


function sdpOf(address: string, port: number): string {
  return ['v=0', `o=- 1 1 IN IP4 ${address}`, 's=-', `c=IN IP4 ${address}`, 't=0 0', `m=audio ${port} RTP/AVP 0`].join(CRLF) + CRLF;
}

function request(method: string, callId: string, toTag: string | null, cseq: number, clientPort: number, body: string | null, branch: string): string {
  const head = [
    `${method} sip:service@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${clientPort};branch=z9hG4bK${branch};rport`,
    'Max-Forwards: 70',
    'From: <sip:alice@127.0.0.1>;tag=alice1',
    `To: <sip:service@127.0.0.1>${toTag ? `;tag=${toTag}` : ''}`,
    `Call-ID: ${callId}`,
    `CSeq: ${cseq} ${method}`,
    `Contact: <sip:alice@127.0.0.1:${clientPort}>`,
  ];
  if (body !== null) head.push('Content-Type: application/sdp');
  head.push(`Content-Length: ${body === null ? 0 : Buffer.byteLength(body, 'latin1')}`);
  return head.join(CRLF) + CRLF + CRLF + (body ?? '');
}

function response(req: string, status: string, toTag: string, body: string | null): string {
  const headers = req.split(CRLF + CRLF)[0]!.split(CRLF).slice(1);
  const keep = headers.filter((h) => /^(Via|From|To|Call-ID|CSeq|Record-Route):/i.test(h)).map((h) => (/^To:/i.test(h) && !/;tag=/.test(h) ? `${h};tag=${toTag}` : h));
  const lines = [`SIP/2.0 ${status}`, ...keep, 'Contact: <sip:backend@127.0.0.1>'];
  if (body !== null) lines.push('Content-Type: application/sdp');
  lines.push(`Content-Length: ${body === null ? 0 : Buffer.byteLength(body, 'latin1')}`);
  return lines.join(CRLF) + CRLF + CRLF + (body ?? '');
}

/** The c= address and first m= port of a message's SDP. */
function mediaOf(msg: string): { c: string | null; port: number } {
  const sdp = msg.slice(msg.indexOf(CRLF + CRLF) + 4);
  return { c: /^c=IN IP4 (\S+)/m.exec(sdp)?.[1] ?? null, port: Number(/^m=audio (\d+)/m.exec(sdp)?.[1] ?? -1) };
}

/** The first of `socks` to receive a datagram (its index and the datagram). */
function first(socks: Sock[], timeoutMs = 5000): Promise<[number, Datagram]> {
  return Promise.any(socks.map((s, i) => s.next(timeoutMs).then((d): [number, Datagram] => [i, d])));
}

/** Sends `text` every 50 ms until `to` receives a datagram starting with `prefix` (or timeoutMs passes). */
async function sendUntil(from: Sock, host: string, port: number, to: Sock, prefix: string, timeoutMs: number): Promise<Datagram> {
  const until = Date.now() + timeoutMs;
  let n = 0;
  for (;;) {
    from.send(`${prefix}${n++}`, host, port);
    try {
      const d = await to.next(50);
      if (d.text.startsWith(prefix)) return d;
    } catch {
      // not yet
    }
    if (Date.now() > until) throw new Error(`no ${prefix} relayed within ${timeoutMs} ms (${n} sent)`);
  }
}

test('SIGKILL of the master mid-call: RTP goes on through the same relay port to the same backend media port', { timeout: 60_000 }, async (t) => {
  const sig = [await sock(t), await sock(t)];
  const media = [await sock(t), await sock(t)];
  const client = await sock(t);
  const clientMedia = await sock(t);

  const vip = `127.${randomInt(64, 250)}.${randomInt(1, 250)}.${randomInt(2, 250)}`;
  const sipPort = await freeSipPort(vip);
  // Election sockets are UDP, state replication TCP on the same number: both must be free.
  const election = await freeSipPorts(2);
  const portMin = 30_000 + 2 * randomInt(0, 15_000);
  const dir = makeTempDir('holdfast-ha-media');
  const key = randomBytes(32);
  const procs: HaDispatcher[] = [];
  t.after(async () => {
    await Promise.all(procs.map((p) => p.proc.stop()));
    removeTempDir(dir);
  });
  const start = async (name: string, id: number, priority: number): Promise<HaDispatcher> => {
    const config = haConfig({
      id,
      priority,
      listen: `127.0.0.1:${election[id - 1]}`,
      peers: [`127.0.0.1:${election[2 - id]}`],
      vip,
      services: [
        {
          name: 'sip',
          protocol: 'sip',
          listen: `${vip}:${sipPort}`,
          sip: { transports: ['udp'] },
          media: { enabled: true, portMin, portMax: portMin + 15 },
          health: { probe: { type: 'udp' } },
          backends: sig.map((s, i) => ({ id: `uas${i}`, address: `127.0.0.1:${s.port}` })),
        },
      ],
    });
    const d = await startHaDispatcher({ name, id, dir, key, config });
    procs.push(d);
    return d;
  };

  const a = await start('dispatcher-a', 1, 200);
  await a.waitFor('taken', 0, 5_000);
  const b = await start('dispatcher-b', 2, 100);
  await b.waitFor('backup', 0, 5_000);
  // B hears A and gets A's snapshot (then the stream on the same connection).
  const syncedBy = Date.now() + 10_000;
  while (!b.proc.output().includes('replicated state synced')) {
    assert.ok(Date.now() < syncedBy, `B never synced: ${b.proc.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 20));
  }

  // The call, through A: INVITE with the client's SDP → one backend; its 200 with its SDP → the client.
  const callId = `ha-media-${randomBytes(4).toString('hex')}@test`;
  client.send(request('INVITE', callId, null, 1, client.port, sdpOf('127.0.0.1', clientMedia.port), 'inv1'), vip, sipPort);
  const [which, inv] = await first(sig);
  assert.match(inv.text, /^INVITE /);
  const offer = mediaOf(inv.text);
  assert.equal(offer.c, vip, 'the offer names the relay on the VIP');
  const relayPort = offer.port;
  assert.ok(relayPort >= portMin && relayPort <= portMin + 15 && relayPort % 2 === 0, `relay RTP port ${relayPort} in the range, even`);
  sig[which]!.send(response(inv.text, '200 OK', 'bob1', sdpOf('127.0.0.1', media[which]!.port)), inv.host, inv.port);
  let ok = await client.next(5000, '(200 to the INVITE)');
  while (!ok.text.startsWith('SIP/2.0 200')) ok = await client.next(5000, `(200 to the INVITE after ${ok.text.split(CRLF)[0]})`);
  assert.deepEqual(mediaOf(ok.text), { c: vip, port: relayPort });
  client.send(request('ACK', callId, 'bob1', 1, client.port, null, 'ack1'), vip, sipPort);
  assert.match((await sig[which]!.next(5000, '(ACK)')).text, /^ACK /);

  // RTP through A's relay, both ways.
  const before = await sendUntil(clientMedia, vip, relayPort, media[which]!, 'rtp-before-', 3_000);
  assert.equal(before.port, relayPort, 'media reaches the backend from the relay port');
  const back = await sendUntil(media[which]!, vip, relayPort, clientMedia, 'rtp-back-', 3_000);
  assert.equal(back.port, relayPort);
  // Lets A's stream of the relay's change (the client latched) reach B.
  await new Promise((r) => setTimeout(r, 300));

  await a.kill('SIGKILL');
  await b.waitFor('taken', 0, 5_000);

  // After the takeover: the client's RTP to the same relay port reaches the same backend media port.
  const after = await sendUntil(clientMedia, vip, relayPort, media[which]!, 'rtp-after-', 5_000);
  assert.equal(after.host, vip);
  assert.equal(after.port, relayPort, 'the relay port of the call is the same after the takeover');
  const other = media[1 - which]!;
  await assert.rejects(other.next(200), 'nothing reaches the other backend');
  const backAfter = await sendUntil(media[which]!, vip, relayPort, clientMedia, 'rtp-back-after-', 3_000);
  assert.equal(backAfter.port, relayPort);

  // The call's BYE goes to the same backend through B.
  client.send(request('BYE', callId, 'bob1', 2, client.port, null, 'bye1'), vip, sipPort);
  let bye = await sig[which]!.next(5000, '(BYE)');
  while (!bye.text.startsWith('BYE ')) bye = await sig[which]!.next(5000, '(BYE)');
  sig[which]!.send(response(bye.text, '200 OK', 'bob1', null), bye.host, bye.port);
  let done = await client.next(5000, '(200 to the BYE)');
  while (!/^SIP\/2\.0 200 .*\r\n[\s\S]*CSeq: 2 BYE/.test(done.text)) done = await client.next(5000, '(200 to the BYE)');
});
