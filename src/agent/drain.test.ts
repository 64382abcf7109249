import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { countEstablished, establishedConnections } from './drain.js';

const FIXTURES = new URL('../../../test/fixtures/proc/', import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8');

test('counts ESTABLISHED sockets by local port only, in tcp and tcp6', () => {
  // Port 9001 = 0x2329: two established; LISTEN, TIME_WAIT, CLOSE_WAIT and the client side of a
  // connection to 9001 (remote port 2329) do not count.
  assert.equal(countEstablished(fixture('net-tcp'), 9001), 2);
  assert.equal(countEstablished(fixture('net-tcp6'), 9001), 1);
  assert.equal(countEstablished(fixture('net-tcp'), 0xd6ac), 1);
  assert.equal(countEstablished(fixture('net-tcp'), 7600), 0, 'LISTEN only');
  assert.equal(countEstablished('', 9001), 0);
});

test('establishedConnections adds IPv4 and IPv6; null when neither table can be read', async () => {
  const files: Record<string, string> = { 'net/tcp': fixture('net-tcp'), 'net/tcp6': fixture('net-tcp6') };
  assert.equal(await establishedConnections(9001, async (p) => files[p] ?? null), 3);
  assert.equal(await establishedConnections(9001, async (p) => (p === 'net/tcp' ? files[p]! : null)), 2);
  assert.equal(await establishedConnections(9001, async () => null), null);
});

test('on this machine: a real connection is seen, and gone once closed', { skip: process.platform !== 'linux' }, async (t) => {
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => accepted.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  assert.equal(await establishedConnections(port), 0);
  const client = net.connect(port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  while (accepted.length === 0) await new Promise((r) => setImmediate(r));
  assert.equal(await establishedConnections(port), 1, 'the server side of the connection');
  client.destroy();
  accepted[0]!.destroy();
  await new Promise((r) => accepted[0]!.once('close', r));
  assert.equal(await establishedConnections(port), 0);
});
