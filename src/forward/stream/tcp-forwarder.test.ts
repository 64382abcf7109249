/**
 * @module Tests of the TCP forwarder on real loopback sockets: splicing, half-close, backpressure,
 * passive failover on connect, resets, timeouts (FakeClock) and the close/destroy lifecycle.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Socket } from 'node:net';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import '../../balance/index.js';
import { createBalancer } from '../../balance/balancer.js';
import { FakeClock, realClock } from '../../core/clock.js';
import type { Clock } from '../../core/clock.js';
import { channels } from '../../core/diagnostics.js';
import type { ConnectionEvent, TcpSpliceEvent } from '../../core/diagnostics.js';
import type { BackendFailureKind } from '../../core/errors.js';
import { serviceSchema } from '../../config/schema.js';
import { Backend } from '../../core/backend.js';
import { createServiceRuntime } from '../../pipeline/service-runtime.js';
import { TcpForwarder } from './tcp-forwarder.js';

const MB = 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;

let serviceSeq = 0;

async function listen(t: TestContext, onConnection: (socket: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  server.listen({ port: 0, host: '127.0.0.1' });
  await once(server, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** A port on which nothing listens (bound then released). */
async function refusedPort(): Promise<number> {
  const server = net.createServer();
  server.listen({ port: 0, host: '127.0.0.1' });
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** An echo backend that half-closes when the client does (pipe ends its write side on 'end'). */
function echoBackend(t: TestContext): Promise<number> {
  return listen(t, (socket) => socket.pipe(socket));
}

interface Rig {
  forwarder: TcpForwarder;
  backends: Backend[];
  failures: { id: string; kind: BackendFailureKind }[];
  successes: string[];
  events: { open: ConnectionEvent[]; close: ConnectionEvent[]; splice: TcpSpliceEvent[] };
  connect(): Promise<Socket>;
  /** Runs right after `forwarder.handle()` for each accepted client, synchronously. */
  afterHandle: (() => void) | null;
}

async function makeRig(
  t: TestContext,
  ports: number[],
  options: { clock?: Clock; connectTimeoutMs?: number; idleTimeoutMs?: number } = {},
): Promise<Rig> {
  const service = `tcp-test-${++serviceSeq}`;
  const config = serviceSchema.parse({
    name: service,
    protocol: 'tcp',
    listen: '127.0.0.1:1',
    backends: ports.map((port, i) => ({ id: `b${i}`, address: `127.0.0.1:${port}` })),
    health: { connectTimeoutMs: options.connectTimeoutMs ?? 2000 },
    tcp: { idleTimeoutMs: options.idleTimeoutMs ?? 0 },
  });
  const backends = config.backends.map((b, i) => new Backend(service, b.id, '127.0.0.1', ports[i]!, b.weight, i));
  const balancer = createBalancer<Backend>('round-robin');
  const rebuild = (): void => balancer.update(backends.filter((b) => b.eligible));
  rebuild();
  const failures: Rig['failures'] = [];
  const successes: string[] = [];
  const { runtime } = createServiceRuntime(config, backends, balancer, {
    reportFailure(backend, kind) {
      failures.push({ id: backend.id, kind });
      backend.state = 'down';
      rebuild();
    },
    reportSuccess(backend) {
      successes.push(backend.id);
      backend.state = 'up';
      rebuild();
    },
  }, options.clock ?? realClock);
  const forwarder = new TcpForwarder(runtime);

  const events: Rig['events'] = { open: [], close: [], splice: [] };
  const onOpen = (m: unknown): void => {
    if ((m as ConnectionEvent).service === service) events.open.push(m as ConnectionEvent);
  };
  const onClose = (m: unknown): void => {
    if ((m as ConnectionEvent).service === service) events.close.push(m as ConnectionEvent);
  };
  const onSplice = (m: unknown): void => {
    if ((m as TcpSpliceEvent).service === service) events.splice.push(m as TcpSpliceEvent);
  };
  channels.connectionOpen.subscribe(onOpen);
  channels.connectionClose.subscribe(onClose);
  channels.tcpSplice.subscribe(onSplice);

  const rig: Rig = {
    forwarder,
    backends,
    failures,
    successes,
    events,
    afterHandle: null,
    connect: async () => {
      const client = net.connect({ host: '127.0.0.1', port: frontPort, allowHalfOpen: true });
      clients.add(client);
      await once(client, 'connect');
      return client;
    },
  };
  const clients = new Set<Socket>();
  const frontPort = await listen(t, (socket) => {
    forwarder.handle(socket);
    rig.afterHandle?.();
  });
  t.after(() => {
    forwarder.destroy();
    for (const c of clients) c.destroy();
    channels.connectionOpen.unsubscribe(onOpen);
    channels.connectionClose.unsubscribe(onClose);
    channels.tcpSplice.unsubscribe(onSplice);
  });
  return rig;
}

function deferred<T>(): { promise: Promise<T>; resolve: (v: T | PromiseLike<T>) => void } {
  let resolve!: (v: T | PromiseLike<T>) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Everything a socket delivers until its FIN; rejects on an error. */
function readAll(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
    socket.resume();
  });
}

/** Reads exactly `n` bytes (no FIN needed). */
function readN(socket: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onEnd = (): void => reject(new Error(`stream ended after ${got} of ${n} bytes`));
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        socket.off('data', onData);
        socket.off('error', reject);
        socket.off('end', onEnd);
        socket.pause();
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('end', onEnd);
    socket.resume();
  });
}

/** Hashes everything until FIN; resolves with the digest and the byte count. */
function hashAll(socket: Socket): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
    });
    socket.once('end', () => resolve({ sha256: hash.digest('hex'), bytes }));
    socket.once('error', reject);
    socket.resume();
  });
}

/**
 * Writes `total` bytes of distinct chunks (a random block stamped with its sequence number),
 * honouring backpressure, then ends. `onHanded` counts bytes whose write callback fired, i.e.
 * that the kernel accepted.
 */
async function sendStream(
  socket: Socket,
  total: number,
  onHanded: (n: number) => void = () => {},
): Promise<string> {
  const base = randomBytes(CHUNK_BYTES);
  const hash = createHash('sha256');
  let seq = 0;
  for (let sent = 0; sent < total; sent += CHUNK_BYTES) {
    const chunk = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, total - sent));
    base.copy(chunk, 0, 0, chunk.length);
    chunk.writeUInt32BE(seq++, 0);
    hash.update(chunk);
    const n = chunk.length;
    if (!socket.write(chunk, (err) => !err && onHanded(n))) await once(socket, 'drain');
  }
  socket.end();
  return hash.digest('hex');
}

async function echo(client: Socket, text: string): Promise<void> {
  client.write(text);
  assert.equal((await readN(client, Buffer.byteLength(text))).toString(), text);
}

test('echo round trip, events and active count', async (t) => {
  const rig = await makeRig(t, [await echoBackend(t)]);
  const client = await rig.connect();
  await echo(client, 'hello');
  assert.equal(rig.backends[0]!.active, 1);
  client.end(' world');
  assert.equal((await readAll(client)).toString(), ' world');

  const second = await rig.connect();
  await echo(second, 'again');
  second.end();
  await readAll(second);

  await rig.forwarder.close();
  assert.equal(rig.backends[0]!.active, 0);
  assert.deepEqual(rig.failures, []);
  // reportSuccess only while the backend is not yet up: the sink set it up on the first call.
  assert.deepEqual(rig.successes, ['b0']);
  assert.equal(rig.events.open.length, 2);
  assert.deepEqual(rig.events.close, [
    { service: rig.backends[0]!.service, protocol: 'tcp' },
    { service: rig.backends[0]!.service, protocol: 'tcp' },
  ]);
  const first = rig.events.splice.find((e) => e.bytesIn === 11);
  assert.deepEqual(first, { service: rig.backends[0]!.service, backend: 'b0', bytesIn: 11, bytesOut: 11 });
  assert.equal(rig.events.splice.length, 2);
});

test('50 MB each way arrive intact (sha256)', async (t) => {
  const TOTAL = 50 * MB;
  const backendSide = deferred<[string, { sha256: string; bytes: number }]>();
  const port = await listen(t, (socket) => {
    backendSide.resolve(Promise.all([sendStream(socket, TOTAL), hashAll(socket)]));
  });
  const rig = await makeRig(t, [port]);
  const client = await rig.connect();
  const [clientSent, clientGot] = await Promise.all([sendStream(client, TOTAL), hashAll(client)]);
  const [backendSent, backendGot] = await backendSide.promise;
  assert.equal(backendGot.bytes, TOTAL);
  assert.equal(backendGot.sha256, clientSent);
  assert.equal(clientGot.bytes, TOTAL);
  assert.equal(clientGot.sha256, backendSent);
  await rig.forwarder.close();
  assert.deepEqual(
    rig.events.splice.map((e) => [e.bytesIn, e.bytesOut]),
    [[TOTAL, TOTAL]],
  );
  assert.equal(rig.backends[0]!.active, 0);
});

test('client half-close: backend sees FIN, still replies, client receives it', async (t) => {
  let backendSawEnd = false;
  const port = await listen(t, (socket) => {
    void readAll(socket).then(async (request) => {
      backendSawEnd = true;
      // Give a wrongly closing forwarder every chance to have torn the connection down.
      await new Promise((r) => setTimeout(r, 50));
      socket.end(`reply to ${request.toString()}`);
    });
  });
  const rig = await makeRig(t, [port]);
  const client = await rig.connect();
  client.end('ping');
  const reply = await readAll(client);
  assert.equal(backendSawEnd, true);
  assert.equal(reply.toString(), 'reply to ping');
  await rig.forwarder.close();
  assert.equal(rig.backends[0]!.active, 0);
  assert.equal(rig.events.splice[0]?.bytesIn, 4);
  assert.equal(rig.events.splice[0]?.bytesOut, 'reply to ping'.length);
});

test('backend half-close: client sees FIN, then still sends and the backend receives it', async (t) => {
  const backendGot = deferred<Buffer>();
  const port = await listen(t, (socket) => {
    socket.end('banner');
    backendGot.resolve(readAll(socket));
  });
  const rig = await makeRig(t, [port]);
  const client = await rig.connect();
  assert.equal((await readAll(client)).toString(), 'banner');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(client.destroyed, false);
  client.end('late request');
  assert.equal((await backendGot.promise).toString(), 'late request');
  await rig.forwarder.close();
  assert.equal(rig.backends[0]!.active, 0);
});

test('backpressure: a client that does not read holds the backend back, then gets all 200 MB', async (t) => {
  const TOTAL = 200 * MB;
  const LIMIT = 32 * MB;
  let handed = 0;
  const sent = deferred<string>();
  const port = await listen(t, (socket) => {
    sent.resolve(sendStream(socket, TOTAL, (n) => (handed += n)));
  });
  const rig = await makeRig(t, [port]);
  const client = await rig.connect();
  client.pause();
  // Not a timing assertion: one second for every buffer on the path to fill up and stall.
  await new Promise((r) => setTimeout(r, 1000));
  const stalledAt = handed;
  assert.ok(stalledAt > 0, 'the backend wrote something');
  assert.ok(stalledAt < LIMIT, `backend handed ${stalledAt} bytes to the kernel while the client did not read`);
  const got = await hashAll(client);
  assert.equal(got.bytes, TOTAL);
  assert.equal(got.sha256, await sent.promise);
  assert.equal(handed, TOTAL);
  // The client opened with allowHalfOpen: the splice lives until it ends its side too.
  client.end();
  await rig.forwarder.close();
  assert.equal(rig.backends[0]!.active, 0);
});

test('refused backend is reported and the client is carried to the next one', async (t) => {
  const rig = await makeRig(t, [await refusedPort(), await echoBackend(t)]);
  const client = await rig.connect();
  // Sent before any backend accepted: must not be lost while connecting.
  client.write('early ');
  client.end('bytes');
  assert.equal((await readAll(client)).toString(), 'early bytes');
  await rig.forwarder.close();
  assert.deepEqual(rig.failures, [{ id: 'b0', kind: 'refused' }]);
  assert.deepEqual(rig.successes, ['b1']);
  assert.equal(rig.events.splice[0]?.backend, 'b1');
  assert.deepEqual(
    rig.backends.map((b) => [b.state, b.active]),
    [
      ['down', 0],
      ['up', 0],
    ],
  );
});

test('all backends refused: the client is closed, each backend tried once', async (t) => {
  const rig = await makeRig(t, [await refusedPort(), await refusedPort()]);
  const client = await rig.connect();
  const received: Buffer[] = [];
  client.on('data', (c: Buffer) => received.push(c));
  client.on('error', () => {});
  client.write('anyone?');
  // FIN, or RST when 'anyone?' was still unread in the forwarder's socket: either way it is over.
  await Promise.race([once(client, 'end'), once(client, 'close')]);
  assert.equal(Buffer.concat(received).length, 0);
  await rig.forwarder.close();
  assert.deepEqual(rig.failures, [
    { id: 'b0', kind: 'refused' },
    { id: 'b1', kind: 'refused' },
  ]);
  assert.equal(rig.events.open.length, 1);
  assert.equal(rig.events.close.length, 1);
  assert.deepEqual(rig.events.splice, []);
});

test('backend reset mid-stream resets the client', async (t) => {
  const port = await listen(t, (socket) => {
    socket.write('partial');
    socket.once('data', () => socket.resetAndDestroy());
  });
  const rig = await makeRig(t, [port]);
  const client = await rig.connect();
  assert.equal((await readN(client, 7)).toString(), 'partial');
  const outcome = new Promise<string>((resolve) => {
    // A reset must not look like a clean end of stream.
    client.once('end', () => resolve('clean end'));
    client.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
  });
  client.resume();
  client.write('go');
  assert.equal(await outcome, 'ECONNRESET');
  await rig.forwarder.close();
  assert.equal(rig.backends[0]!.active, 0);
  // A reset after the connect succeeded is not a connect failure.
  assert.deepEqual(rig.failures, []);
});

test('client reset mid-stream resets the backend', async (t) => {
  const backendOutcome = deferred<string>();
  const port = await listen(t, (socket) => {
    socket.once('end', () => backendOutcome.resolve('clean end'));
    socket.once('error', (err: NodeJS.ErrnoException) => backendOutcome.resolve(err.code ?? String(err)));
    socket.write('hi');
    socket.resume();
  });
  const rig = await makeRig(t, [port]);
  const client = await rig.connect();
  await readN(client, 2);
  client.resetAndDestroy();
  assert.equal(await backendOutcome.promise, 'ECONNRESET');
  await rig.forwarder.close();
  assert.equal(rig.backends[0]!.active, 0);
});

test('connect timeout (FakeClock) reports the backend and moves on', async (t) => {
  const clock = new FakeClock();
  const CONNECT_TIMEOUT_MS = 500;
  const rig = await makeRig(t, [await echoBackend(t), await echoBackend(t)], {
    clock,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
  });
  // The loopback connect to b0 cannot complete before this synchronous advance: its timer fires.
  rig.afterHandle = () => clock.advance(CONNECT_TIMEOUT_MS);
  const client = await rig.connect();
  rig.afterHandle = null;
  client.end('via b1');
  assert.equal((await readAll(client)).toString(), 'via b1');
  await rig.forwarder.close();
  assert.deepEqual(rig.failures, [{ id: 'b0', kind: 'timeout' }]);
  assert.equal(rig.events.splice[0]?.backend, 'b1');
  assert.deepEqual(
    rig.backends.map((b) => b.active),
    [0, 0],
  );
});

test('connect timer does not fire once connected (FakeClock)', async (t) => {
  const clock = new FakeClock();
  const rig = await makeRig(t, [await echoBackend(t), await echoBackend(t)], { clock, connectTimeoutMs: 500 });
  const client = await rig.connect();
  await echo(client, 'up');
  clock.advance(10_000);
  await echo(client, 'still up');
  client.end();
  await readAll(client);
  await rig.forwarder.close();
  assert.deepEqual(rig.failures, []);
});

test('idle timeout (FakeClock): traffic keeps the splice, silence closes it', async (t) => {
  const clock = new FakeClock();
  const IDLE_MS = 1000;
  const backendClosed = deferred<unknown>();
  const port = await listen(t, (socket) => {
    backendClosed.resolve(once(socket, 'close'));
    socket.pipe(socket);
  });
  const rig = await makeRig(t, [port], { clock, idleTimeoutMs: IDLE_MS });
  const client = await rig.connect();
  // The client is half-open capable: the forwarder closing its side shows up as a FIN.
  const clientEnded = new Promise((resolve) => client.once('end', resolve));
  await echo(client, 'a'); // activity at t=0
  clock.advance(900);
  await echo(client, 'b'); // activity at t=900
  clock.advance(900); // t=1800: the first check sees 900 ms of silence and re-arms
  await echo(client, 'c'); // proves the splice is open; activity at t=1800
  assert.equal(client.destroyed, false);
  clock.advance(IDLE_MS); // t=2800: 1000 ms of silence
  await clientEnded;
  await backendClosed.promise;
  await rig.forwarder.close();
  assert.equal(rig.backends[0]!.active, 0);
});

test('close() waits for live splices and refuses new clients', async (t) => {
  const rig = await makeRig(t, [await echoBackend(t)]);
  const client = await rig.connect();
  await echo(client, 'before');
  let settled = false;
  const closed = rig.forwarder.close().then(() => (settled = true));
  await echo(client, 'during close');
  assert.equal(settled, false);

  const late = await rig.connect();
  late.on('error', () => {});
  await readAll(late).catch(() => {}); // FIN (or RST if its bytes were unread): refused either way
  assert.equal(rig.events.open.length, 1);

  assert.equal(settled, false);
  client.end();
  await readAll(client);
  await closed;
  assert.equal(settled, true);
  assert.equal(rig.backends[0]!.active, 0);
});

test('destroy() closes every socket now', async (t) => {
  const backendClosed = deferred<unknown>();
  const port = await listen(t, (socket) => {
    backendClosed.resolve(once(socket, 'close'));
    socket.pipe(socket);
  });
  const rig = await makeRig(t, [port]);
  const client = await rig.connect();
  client.on('error', () => {});
  await echo(client, 'x');
  const closed = rig.forwarder.close();
  const clientEnded = new Promise((resolve) => client.once('end', resolve));
  rig.forwarder.destroy();
  await clientEnded;
  await backendClosed.promise;
  await closed;
  assert.equal(rig.forwarder.size, 0);
  assert.equal(rig.backends[0]!.active, 0);
});
