import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { HeadCounter, buildResponse, startOrigin } from './backend.js';

const REQ = 'GET / HTTP/1.1\r\nHost: bench\r\n\r\n';

test('buildResponse frames a body of exactly size bytes', () => {
  for (const size of [0, 1, 1024, 65536]) {
    const r = buildResponse(size).toString('latin1');
    const split = r.indexOf('\r\n\r\n');
    assert.match(r, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(r.slice(0, split), new RegExp(`\r\nContent-Length: ${size}$`, 'm'));
    assert.equal(r.length - split - 4, size);
  }
  assert.throws(() => buildResponse(-1), RangeError);
});

test('HeadCounter counts pipelined heads and heads split at every byte', () => {
  const c = new HeadCounter();
  assert.equal(c.feed(Buffer.from(REQ + REQ + REQ)), 3);
  // Split a two-request stream at every possible position: always 2 in total.
  const two = Buffer.from(REQ + REQ);
  for (let cut = 1; cut < two.length; cut++) {
    const k = new HeadCounter();
    const total = k.feed(two.subarray(0, cut)) + k.feed(two.subarray(cut));
    assert.equal(total, 2, `cut at ${cut}`);
  }
  // Byte by byte.
  const b = new HeadCounter();
  let n = 0;
  for (const byte of two) n += b.feed(Buffer.from([byte]));
  assert.equal(n, 2);
});

test('HeadCounter does not count one terminator twice across reads', () => {
  const c = new HeadCounter();
  assert.equal(c.feed(Buffer.from('GET / HTTP/1.1\r\n\r\n')), 1);
  // The carried tail is after the last terminator, so "\n" + "\r\n" must not form a new one.
  assert.equal(c.feed(Buffer.from('\r\n')), 0);
  assert.equal(c.feed(Buffer.from('\r\n')), 1);
});

test('HeadCounter flags a stream without a head end past 64 KiB', () => {
  const c = new HeadCounter();
  c.feed(Buffer.alloc(40 * 1024, 0x61));
  assert.equal(c.overlong, false);
  c.feed(Buffer.alloc(40 * 1024, 0x61));
  assert.equal(c.overlong, true);
});

test('origin answers pipelined and split requests in order on one connection', async (t) => {
  const origin = await startOrigin({ size: 5 });
  t.after(() => origin.close());
  const socket = net.connect(origin.port, '127.0.0.1');
  t.after(() => socket.destroy());
  let got = '';
  socket.setEncoding('latin1').on('data', (s: string) => (got += s));
  await new Promise((r) => socket.once('connect', r));
  socket.write(REQ + REQ + REQ.slice(0, 7));
  await new Promise((r) => setTimeout(r, 20));
  socket.write(REQ.slice(7));
  const one = buildResponse(5).toString('latin1');
  const deadline = Date.now() + 2000;
  while (got.length < one.length * 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(got, one + one + one);
  assert.equal(origin.responses, 3);
});
