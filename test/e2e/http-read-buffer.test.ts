/**
 * @module The backend read buffer and a reply queued behind a slow client (found by the HTTP/2 work,
 * issue 19). Backend sockets read into a buffer of holdfast's own (`onread`); a reply write that
 * cannot be flushed at once keeps pointing into that buffer. When the buffer was shared by every
 * backend socket of the forwarder, another idle socket still held it as its next read target, and
 * its next reply overwrote the bytes still queued for the slow client: the client got a body of the
 * right length with another reply's bytes in it.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startHttpBackend, type HttpHandler } from '../helpers/scripted-backend.js';
import { startTestDispatcher } from '../helpers/dispatcher.js';
import type { HostPort } from '../../src/core/address.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const BIG = 16 * 1024 * 1024;
const SMALL = 256 * 1024;

/** /big: BIG bytes of 'a'; anything else: SMALL bytes of 'b'. */
const bodies: HttpHandler = (req, res) => {
  const big = req.url === '/big';
  res.setHeader('content-length', big ? BIG : SMALL);
  res.end(Buffer.alloc(big ? BIG : SMALL, big ? 'a' : 'b'));
};

/** One GET on a new connection, read to the end of its body; resolves with the body. */
function fetchBody(t: TestContext, at: HostPort, path: string, beforeReading?: Promise<void>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(at.port, at.host);
    t.after(() => socket.destroy());
    const parts: Buffer[] = [];
    let got = 0;
    let length = -1;
    let headBytes = -1;
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      parts.push(chunk);
      got += chunk.length;
      if (headBytes < 0) {
        const all = Buffer.concat(parts);
        const end = all.indexOf('\r\n\r\n');
        if (end < 0) return;
        headBytes = end + 4;
        length = Number(/content-length: *(\d+)/i.exec(all.subarray(0, end).toString('latin1'))?.[1] ?? -1);
      }
      if (got - headBytes >= length) {
        socket.destroy();
        resolve(Buffer.concat(parts).subarray(headBytes, headBytes + length));
      }
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: test\r\n\r\n`);
    if (beforeReading) {
      socket.pause();
      void beforeReading.then(() => socket.resume());
    }
  });
}

function foreignBytes(body: Buffer, expected: number): number {
  let n = 0;
  for (const byte of body) if (byte !== expected) n++;
  return n;
}

test('a reply queued for a slow client is not overwritten by another backend connection\'s next read', async (t) => {
  const backend = await startHttpBackend(bodies);
  t.after(() => backend.close());
  const d = await startTestDispatcher(t, { backends: [backend.address] });

  // Two backend connections that served a reply each and wait idle in the pool.
  const [one, two] = await Promise.all([fetchBody(t, d.address, '/small'), fetchBody(t, d.address, '/small')]);
  assert.equal(foreignBytes(one, 0x62) + foreignBytes(two, 0x62), 0);

  // A client that does not read: its reply fills the kernel buffers and the rest waits queued.
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const slow = fetchBody(t, d.address, '/big', released);
  await sleep(500);

  // Meanwhile the other idle connection carries replies of other bytes.
  for (let i = 0; i < 4; i++) assert.equal(foreignBytes(await fetchBody(t, d.address, '/small'), 0x62), 0);

  release();
  const body = await slow;
  assert.equal(body.length, BIG);
  assert.equal(foreignBytes(body, 0x61), 0, 'bytes of another reply in the slow client\'s body');
});
