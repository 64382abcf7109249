/**
 * @module Client sockets reading into one shared buffer (issue 16, http-client-reads.ts): whatever
 * outlives a read — a partial head, pipelined requests, request bodies queued for a slow backend, the
 * request log — must be a copy, since the next read of any client overwrites the buffer. Many clients
 * send pipelined PUTs with bodies of their own bytes, in pieces that split heads and bodies across
 * reads, to a backend that reads slowly; each reply names the digest of the body the backend got.
 * The same run with adoption off is the test of the 'data' fallback (a Node without the internals).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { startHttpBackend, type HttpHandler } from '../helpers/scripted-backend.js';
import { startTestDispatcher } from '../helpers/dispatcher.js';
import { setClientReadsEnabled } from '../../src/forward/http/http-client-reads.js';
import type { HostPort } from '../../src/core/address.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const CLIENTS = 8;
const REQUESTS = 4;

/** Reads the body slowly (pauses between chunks), then answers its length and digest. */
const slowDigest: HttpHandler = (req, res) => {
  const hash = createHash('sha256');
  let n = 0;
  req.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    n += chunk.length;
    req.pause();
    setTimeout(() => req.resume(), 2);
  });
  req.on('end', () => {
    const text = `${n} ${hash.digest('hex')}`;
    res.setHeader('content-length', Buffer.byteLength(text));
    res.end(text);
  });
};

function request(i: number, body: Buffer, chunked: boolean): Buffer {
  if (!chunked) {
    return Buffer.concat([Buffer.from(`PUT /r${i} HTTP/1.1\r\nHost: test\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
  }
  const half = body.length >> 1;
  return Buffer.concat([
    Buffer.from(`PUT /r${i} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n${half.toString(16)}\r\n`),
    body.subarray(0, half),
    Buffer.from(`\r\n${(body.length - half).toString(16)}\r\n`),
    body.subarray(half),
    Buffer.from('\r\n0\r\n\r\n'),
  ]);
}

/** One connection: REQUESTS pipelined PUTs written in uneven pieces; resolves with the reply bodies. */
function client(t: TestContext, at: HostPort, bodies: Buffer[], seed: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(at.port, at.host);
    t.after(() => socket.destroy());
    socket.setNoDelay(true);
    let got = Buffer.alloc(0);
    const replies: string[] = [];
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      for (;;) {
        const end = got.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = got.subarray(0, end).toString('latin1');
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? -1);
        if (!head.startsWith('HTTP/1.1 200') || length < 0) return reject(new Error(`unexpected reply: ${head}`));
        if (got.length < end + 4 + length) return;
        replies.push(got.subarray(end + 4, end + 4 + length).toString());
        got = got.subarray(end + 4 + length);
        if (replies.length === bodies.length) {
          socket.end();
          resolve(replies);
          return;
        }
      }
    });
    const all = Buffer.concat(bodies.map((b, i) => request(i, b, (i + seed) % 2 === 1)));
    void (async () => {
      // Uneven pieces: heads split across reads, several requests in one read.
      let at = 0;
      for (let k = 0; at < all.length; k++) {
        const n = [7, 1500, 33, 70_000, 3, 9000][(k + seed) % 6]!;
        socket.write(all.subarray(at, at + n));
        at += n;
        if (k % 3 === 0) await sleep(1);
      }
    })();
  });
}

async function run(t: TestContext): Promise<void> {
  const backend = await startHttpBackend(slowDigest, { readBody: false });
  t.after(() => backend.close());
  const d = await startTestDispatcher(t, { backends: [backend.address] });
  const work = Array.from({ length: CLIENTS }, (_, c) => {
    // Each body of its own random bytes and size (one spans several reads, one fits in a head's read).
    const bodies = Array.from({ length: REQUESTS }, (_, i) => randomBytes([200_000, 10, 5000, 70_000][(i + c) % 4]!));
    return client(t, d.address, bodies, c).then((replies) => ({ bodies, replies }));
  });
  for (const { bodies, replies } of await Promise.all(work)) {
    assert.deepEqual(
      replies,
      bodies.map((b) => `${b.length} ${sha(b)}`),
    );
  }
}

test('many clients, pipelined bodies, a slow backend: every backend gets exactly its client\'s bytes (shared read buffer)', async (t) => {
  await run(t);
});

test('the same with client reads through data events (the fallback)', async (t) => {
  const was = setClientReadsEnabled(false);
  t.after(() => setClientReadsEnabled(was));
  await run(t);
});

/** One GET on `socket`; resolves with the status line of its reply. */
function statusOf(socket: net.Socket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (b: Buffer): void => {
      got += b.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length: *(\d+)/i.exec(got.slice(0, end))?.[1] ?? 0);
      if (got.length < end + 4 + length) return;
      socket.off('data', onData);
      resolve(got.slice(0, got.indexOf('\r\n')));
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: test\r\n\r\n`);
  });
}

test('http.idleTimeoutMs (an IdleTimer, not a socket timeout): an idle keep-alive client is closed, an exchange longer than it is not cut', async (t) => {
  const backend = await startHttpBackend((req, res) => {
    const reply = (): void => {
      res.setHeader('content-length', 2);
      res.end('ok');
    };
    if (req.url === '/slow') setTimeout(reply, 900);
    else reply();
  });
  t.after(() => backend.close());
  const d = await startTestDispatcher(t, { backends: [backend.address], http: { idleTimeoutMs: 300 } });
  const connect = async (): Promise<net.Socket> => {
    const s = net.connect(d.address.port, d.address.host);
    t.after(() => s.destroy());
    await new Promise((r) => s.once('connect', r));
    return s;
  };
  // The slow exchange spans three idle periods without a client byte: the timer keeps watching.
  const slow = await connect();
  assert.equal(await statusOf(slow, '/slow'), 'HTTP/1.1 200 OK');
  // Then idle on a kept-alive connection: closed by us.
  const idle = await connect();
  assert.equal(await statusOf(idle, '/fast'), 'HTTP/1.1 200 OK');
  await new Promise<void>((resolve) => idle.once('close', () => resolve()));
  await new Promise<void>((resolve) => (slow.destroyed ? resolve() : slow.once('close', () => resolve())));
});
