import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { adoptReads, clientReadsSupported, setClientReadsEnabled } from './http-client-reads.js';

/** A server on port 0 and a client connected to it; resolves with both ends. */
async function pair(t: TestContext): Promise<{ accepted: net.Socket; client: net.Socket; adopted: boolean; reads: Buffer[]; shared: Buffer }> {
  const shared = Buffer.alloc(1024);
  const reads: Buffer[] = [];
  let adopted = false;
  const server = net.createServer({ allowHalfOpen: true });
  const accepted = new Promise<net.Socket>((resolve) => {
    server.on('connection', (s) => {
      adopted = adoptReads(s, shared, (n, buf) => {
        assert.equal(buf, shared);
        reads.push(Buffer.from(buf.subarray(0, n)));
      });
      resolve(s);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => client.destroy());
  const s = await accepted;
  t.after(() => s.destroy());
  return { accepted: s, client, adopted, reads, shared };
}

const until = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

test('this Node lets accepted sockets read into a buffer of ours', () => {
  assert.equal(clientReadsSupported(), true, 'Node 20 keeps onread in kBuffer/kBufferGen/kBufferCb');
});

test('an accepted socket reads into the shared buffer; no data event; end still comes', async (t) => {
  const { accepted, client, adopted, reads } = await pair(t);
  assert.equal(adopted, true);
  let dataEvents = 0;
  accepted.on('data', () => dataEvents++);
  const ended = new Promise<void>((r) => accepted.on('end', r));
  client.write('hello ');
  await until(() => reads.length >= 1);
  client.end('world');
  await ended;
  assert.equal(Buffer.concat(reads).toString(), 'hello world');
  assert.equal(dataEvents, 0);
  // The socket still writes (allowHalfOpen).
  const got = new Promise<string>((r) => client.once('data', (b) => r(b.toString())));
  accepted.end('bye');
  assert.equal(await got, 'bye');
});

test('pause stops the reads, resume starts them again', async (t) => {
  const { accepted, client, reads } = await pair(t);
  client.write('a');
  await until(() => reads.length === 1);
  accepted.pause();
  // An echo from the client side proves the byte was sent before we look.
  client.write('b');
  await new Promise<void>((r) => client.write('', () => r()));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(Buffer.concat(reads).toString(), 'a', 'nothing is read while paused');
  accepted.resume();
  await until(() => Buffer.concat(reads).toString() === 'ab');
});

test('a socket with bytes already read, a non-TCP stream, or adoption turned off is left to data', async (t) => {
  const shared = Buffer.alloc(64);
  const server = net.createServer();
  const seen = new Promise<net.Socket>((resolve) => {
    server.on('connection', (s) => {
      s.once('data', (chunk: Buffer) => {
        s.pause();
        s.unshift(chunk); // a sniffer put the bytes back
        resolve(s);
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => client.destroy());
  client.write('x');
  const s = await seen;
  t.after(() => s.destroy());
  assert.equal(adoptReads(s, shared, () => {}), false);

  assert.equal(adoptReads(new Duplex({ read() {} }) as unknown as net.Socket, shared, () => {}), false);

  const was = setClientReadsEnabled(false);
  t.after(() => setClientReadsEnabled(was));
  const { adopted } = await pair(t);
  assert.equal(adopted, false);
});
