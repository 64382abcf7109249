import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Backend } from '../core/backend.js';
import { httpProbe, probeFor, sipProbe, tcpProbe, udpProbe } from './probe.js';
import type { ProbeConfig } from './probe.js';

const TIMEOUT_MS = 100;
const cfg = (over: Partial<ProbeConfig> = {}): ProbeConfig => ({ type: 'tcp', path: '/', intervalMs: 1000, timeoutMs: TIMEOUT_MS, ...over });

/** A real server on an ephemeral loopback port, closed after the test. */
async function listen(t: import('node:test').TestContext, onConnection: (socket: net.Socket) => void): Promise<{ backend: Backend; closed: Promise<void>[] }> {
  const sockets = new Set<net.Socket>();
  const closed: Promise<void>[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return { backend: new Backend('web', 'a', '127.0.0.1', port, 1, 0), closed };
}

/** A port nothing listens on: bound once, then released. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** An HTTP server that answers with `reply` and records the request bytes. */
async function httpServer(t: import('node:test').TestContext, reply: string | null) {
  const requests: string[] = [];
  const server = await listen(t, (socket) => {
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      requests.push(head);
      if (reply !== null) socket.write(reply);
    });
  });
  return { ...server, requests };
}

test('tcp probe: up against a listening server, and the socket is closed', async (t) => {
  const { backend, closed } = await listen(t, () => {});
  assert.equal(await tcpProbe(backend, cfg()), true);
  assert.equal(closed.length, 1);
  await closed[0]; // the server sees the probe's connection end
});

test('tcp probe: down against a closed port', async () => {
  const backend = new Backend('web', 'a', '127.0.0.1', await freePort(), 1, 0);
  assert.equal(await tcpProbe(backend, cfg()), false);
});

test('http probe: 200 is up, and the request is the documented one', async (t) => {
  const { backend, requests, closed } = await httpServer(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  assert.equal(await httpProbe(backend, cfg({ type: 'http', path: '/healthz' })), true);
  assert.deepEqual(requests, [
    `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${backend.port}\r\nConnection: close\r\nUser-Agent: holdfast-probe\r\n\r\n`,
  ]);
  await closed[0];
});

test('http probe: 3xx is up, 500 and 404 are down', async (t) => {
  const redirect = await httpServer(t, 'HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n');
  assert.equal(await httpProbe(redirect.backend, cfg({ type: 'http' })), true);
  const failing = await httpServer(t, 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n');
  assert.equal(await httpProbe(failing.backend, cfg({ type: 'http' })), false);
  const missing = await httpServer(t, 'HTTP/1.0 404 Not Found\r\n\r\n');
  assert.equal(await httpProbe(missing.backend, cfg({ type: 'http' })), false);
});

test('http probe: a status line split over several packets is read whole', async (t) => {
  const { backend } = await listen(t, (socket) => {
    socket.once('data', () => {
      socket.write('HTTP/1.1 2');
      setTimeout(() => socket.write('04 No Content\r\n\r\n'), 10);
    });
  });
  assert.equal(await httpProbe(backend, cfg({ type: 'http' })), true);
});

test('http probe: garbage or a close before the status line is down', async (t) => {
  const garbage = await httpServer(t, 'SSH-2.0-OpenSSH_9.2\r\n');
  assert.equal(await httpProbe(garbage.backend, cfg({ type: 'http' })), false);
  const hangup = await listen(t, (socket) => socket.once('data', () => socket.end()));
  assert.equal(await httpProbe(hangup.backend, cfg({ type: 'http' })), false);
  const endless = await listen(t, (socket) => socket.once('data', () => socket.write('x'.repeat(4096))));
  assert.equal(await httpProbe(endless.backend, cfg({ type: 'http' })), false);
});

test('http probe: a server that accepts but never answers times out as down', async (t) => {
  const { backend, requests, closed } = await httpServer(t, null);
  const started = performance.now();
  assert.equal(await httpProbe(backend, cfg({ type: 'http' })), false);
  const elapsed = performance.now() - started;
  assert.equal(requests.length, 1, 'the request was sent');
  assert.ok(elapsed >= TIMEOUT_MS - 5, `gave up after ${elapsed} ms, before the ${TIMEOUT_MS} ms timeout`);
  assert.ok(elapsed < TIMEOUT_MS + 2000, `gave up after ${elapsed} ms`);
  await closed[0];
});

test('probeFor picks the prober by type', () => {
  assert.equal(probeFor(cfg({ type: 'tcp' })), tcpProbe);
  assert.equal(probeFor(cfg({ type: 'http' })), httpProbe);
});

/** A UDP socket on an ephemeral loopback port answering each datagram with `reply(msg)` (null: silence). */
async function udpServer(t: import('node:test').TestContext, reply: (msg: Buffer) => Buffer | null): Promise<{ backend: Backend; received: Buffer[] }> {
  const received: Buffer[] = [];
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    received.push(msg);
    const out = reply(msg);
    if (out) socket.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return { backend: new Backend('voice', 'a', '127.0.0.1', socket.address().port, 1, 0), received };
}

test('udp probe: a bound port is up (no ICMP until the deadline); a closed port is down at once', async (t) => {
  const { backend, received } = await udpServer(t, () => null);
  assert.equal(await probeFor(cfg({ type: 'udp' }))(backend, cfg({ type: 'udp' })), true);
  assert.equal(received.length, 1);
  assert.equal(received[0]!.length, 0, 'an empty datagram');
  const closed = new Backend('voice', 'b', '127.0.0.1', await freeUdpPort(), 1, 1);
  const t0 = performance.now();
  assert.equal(await udpProbe(closed, cfg({ type: 'udp', timeoutMs: 5000 })), false);
  assert.ok(performance.now() - t0 < 4000, 'ICMP port unreachable ends the probe before its deadline');
});

test('sip probe: any SIP response is up; silence, garbage or a closed port is down', async (t) => {
  const answering = await udpServer(t, () => Buffer.from('SIP/2.0 404 Not Found\r\nContent-Length: 0\r\n\r\n'));
  assert.equal(await probeFor(cfg({ type: 'sip' }))(answering.backend, cfg({ type: 'sip' })), true);
  const sent = answering.received[0]!.toString('latin1');
  assert.match(sent, /^OPTIONS sip:127\.0\.0\.1:\d+ SIP\/2\.0\r\n/);
  for (const h of ['Via: SIP/2.0/UDP 127.0.0.1:', 'Call-ID: ', 'CSeq: 1 OPTIONS\r\n', 'Max-Forwards: 70\r\n', 'Content-Length: 0\r\n\r\n']) {
    assert.ok(sent.includes(h), `OPTIONS carries ${JSON.stringify(h)}`);
  }
  const silent = await udpServer(t, () => null);
  assert.equal(await sipProbe(silent.backend, cfg({ type: 'sip' })), false);
  const garbage = await udpServer(t, () => Buffer.from('HTTP/1.1 200 OK\r\n\r\n'));
  assert.equal(await sipProbe(garbage.backend, cfg({ type: 'sip' })), false);
  assert.equal(await sipProbe(new Backend('voice', 'c', '127.0.0.1', await freeUdpPort(), 1, 2), cfg({ type: 'sip', timeoutMs: 5000 })), false);
});

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
