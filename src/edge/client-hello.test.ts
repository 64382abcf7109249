import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { readClientHelloSni, serverNameMatches } from './client-hello.js';

/** The first bytes a real client (Node's TLS, OpenSSL) sends, captured by a plain TCP server. */
async function capturedHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const got = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (d: Buffer) => { resolve(d); s.destroy(); })));
  const c = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, rejectUnauthorized: false, ...opts });
  c.on('error', () => {});
  const hello = await got;
  c.destroy();
  server.close();
  return hello;
}

test('a real ClientHello: its server name, none for an IP, and every prefix asks for more bytes', async () => {
  const hello = await capturedHello({ servername: 'Shop.Example.COM' });
  assert.deepEqual(readClientHelloSni(hello), { status: 'hello', name: 'shop.example.com' });
  for (const n of [0, 1, 4, 5, 100, hello.length - 1]) assert.deepEqual(readClientHelloSni(hello.subarray(0, n)), { status: 'need-more' });
  const noSni = await capturedHello({});
  assert.deepEqual(readClientHelloSni(noSni), { status: 'hello', name: null });
});

test('not TLS: plain HTTP, another record type, a bad length; a truncated ClientHello body', () => {
  assert.equal(readClientHelloSni(Buffer.from('GET / HTTP/1.1\r\n\r\n')).status, 'not-tls');
  assert.equal(readClientHelloSni(Buffer.from([0x17, 3, 3, 0, 1, 0])).status, 'not-tls');
  assert.equal(readClientHelloSni(Buffer.from([0x16, 3, 1, 0x50, 0x00])).status, 'not-tls');
  // A handshake record of 4 bytes: a ClientHello header claiming 100 bytes with none after it.
  assert.deepEqual(readClientHelloSni(Buffer.from([0x16, 3, 1, 0, 4, 1, 0, 0, 100])), { status: 'not-tls', why: 'truncated ClientHello' });
});

test('random bytes after a handshake record header never throw', () => {
  let seed = 7;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  for (let i = 0; i < 5000; i++) {
    const len = rand() + 4;
    const b = Buffer.alloc(5 + len);
    b[0] = 0x16;
    b[1] = 3;
    b.writeUInt16BE(len, 3);
    for (let j = 5; j < b.length; j++) b[j] = rand();
    b[5] = 1;
    assert.doesNotThrow(() => readClientHelloSni(b));
  }
});

test('server names: exact, and a wildcard one label deep', () => {
  assert.equal(serverNameMatches(['a.test'], 'a.test'), true);
  assert.equal(serverNameMatches(['*.w.test'], 'x.w.test'), true);
  assert.equal(serverNameMatches(['*.w.test'], 'y.x.w.test'), false);
  assert.equal(serverNameMatches(['*.w.test'], 'w.test'), false);
  assert.equal(serverNameMatches(['A.Test'], 'a.test'), true);
});
