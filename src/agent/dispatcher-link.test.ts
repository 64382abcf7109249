import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import type { AddressInfo } from 'node:net';
import { ClosedError } from '../core/errors.js';
import { DispatcherLink } from './dispatcher-link.js';

async function receiver(t: TestContext, type: 'udp4' | 'udp6' = 'udp4') {
  const socket = dgram.createSocket(type);
  const got: Buffer[] = [];
  let wake: (() => void) | null = null;
  socket.on('message', (msg) => {
    got.push(msg);
    wake?.();
  });
  await new Promise<void>((r) => socket.bind(0, type === 'udp6' ? '::1' : '127.0.0.1', r));
  t.after(() => socket.close());
  const { port } = socket.address() as AddressInfo;
  return {
    address: type === 'udp6' ? `[::1]:${port}` : `127.0.0.1:${port}`,
    got,
    async waitFor(n: number) {
      const until = Date.now() + 2000;
      while (got.length < n && Date.now() < until) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
      return got;
    },
  };
}

test('every message goes to every dispatcher, names resolved once', async (t) => {
  const a = await receiver(t);
  // "localhost" may resolve to ::1 or 127.0.0.1: listen where it resolves to.
  const b = await receiver(t, (await lookup('localhost')).family === 6 ? 'udp6' : 'udp4');
  const bByName = `localhost:${b.address.slice(b.address.lastIndexOf(':') + 1)}`;
  const link = await DispatcherLink.open([a.address, bByName]);
  t.after(() => link.close());
  assert.deepEqual(link.resolved, [a.address, b.address]);
  link.send(Buffer.from('one'));
  link.send(Buffer.from('two'));
  assert.deepEqual((await a.waitFor(2)).map(String), ['one', 'two']);
  assert.deepEqual((await b.waitFor(2)).map(String), ['one', 'two']);
});

test('IPv4 and IPv6 dispatchers together', async (t) => {
  const v4 = await receiver(t);
  let v6;
  try {
    v6 = await receiver(t, 'udp6');
  } catch {
    t.skip('no IPv6 loopback');
    return;
  }
  const link = await DispatcherLink.open([v4.address, v6.address]);
  t.after(() => link.close());
  link.send(Buffer.from('hello'));
  assert.equal(String((await v4.waitFor(1))[0]), 'hello');
  assert.equal(String((await v6.waitFor(1))[0]), 'hello');
});

test('close flushes what was sent, then sending is an error', async (t) => {
  const a = await receiver(t);
  const link = await DispatcherLink.open([a.address]);
  for (let i = 0; i < 20; i++) link.send(Buffer.from(`m${i}`));
  await link.close();
  assert.equal((await a.waitFor(20)).length, 20);
  assert.throws(() => link.send(Buffer.from('late')), ClosedError);
  await link.close(); // idempotent
});

test('a name that does not resolve fails open()', async () => {
  await assert.rejects(DispatcherLink.open(['no-such-host.invalid:7600']), (err: NodeJS.ErrnoException) => {
    assert.match(String(err.code), /ENOTFOUND|EAI_AGAIN/);
    assert.match(err.message, /^cannot resolve dispatcher no-such-host\.invalid:7600 \((ENOTFOUND|EAI_AGAIN)\)$/);
    return true;
  });
});
