/**
 * The edge gate on real sockets: per-address connection limits refuse at accept (plain) and before
 * the handshake (TLS), a closed connection frees its slot, the listener-wide cap drops and counts,
 * and a forwarder learns whether a connection is encrypted.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { realClock } from '../core/clock.js';
import { makeCertKit } from '../../bench/lib/certs.js';
import { Edge, type ClientSide } from './edge.js';
import { limitsSchema, tlsSchema } from './edge-schema.js';

async function start(t: TestContext, edge: Edge): Promise<{ port: number; sides: ClientSide[]; accepted: net.Socket[] }> {
  const sides: ClientSide[] = [];
  const accepted: net.Socket[] = [];
  const server = edge.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    sides.push(edge.clientSide(s));
    s.on('error', () => {});
    s.on('end', () => s.end()); // allowHalfOpen: the forwarder ends its side when the client leaves
    s.write('hi');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    edge.close();
    for (const s of accepted) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, sides, accepted };
}

/** Connects and resolves with the first bytes, or null when the server closed first. */
function greet(port: number, useTls: boolean): Promise<{ socket: net.Socket; data: string | null }> {
  return new Promise((resolve) => {
    const socket = useTls ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.once('data', (d: Buffer) => resolve({ socket, data: d.toString() }));
    socket.once('close', () => resolve({ socket, data: null }));
  });
}

test('plain: the third connection from one address is refused; closing one frees its slot', async (t) => {
  const edge = new Edge({ limits: limitsSchema.parse({ maxConnectionsPerAddress: 2 }), clock: realClock });
  const { port, sides } = await start(t, edge);
  const a = await greet(port, false);
  const b = await greet(port, false);
  const c = await greet(port, false);
  assert.deepEqual([a.data, b.data, c.data], ['hi', 'hi', null]);
  assert.equal(edge.stats().refused['too-many-connections'], 1);
  assert.equal(sides[0]!.encrypted, false);
  a.socket.destroy();
  await new Promise((r) => setTimeout(r, 50));
  const d = await greet(port, false);
  assert.equal(d.data, 'hi');
  for (const s of [b, d]) s.socket.destroy();
});

test('TLS: over the per-address limit the connection is closed before the handshake; admitted ones are encrypted', async (t) => {
  const kit = makeCertKit();
  t.after(() => kit.remove());
  const pair = kit.leaf('a', ['a.test']);
  const edge = new Edge({
    tls: tlsSchema.parse({ certificates: [pair], watchFiles: false }),
    limits: limitsSchema.parse({ maxConnectionsPerAddress: 1 }),
    clock: realClock,
  });
  const { port, sides } = await start(t, edge);
  const a = await greet(port, true);
  assert.equal(a.data, 'hi');
  const b = await greet(port, true);
  assert.equal(b.data, null);
  assert.equal(edge.stats().refused['too-many-connections'], 1);
  assert.equal(edge.stats().tls!.handshakes, 1, 'no handshake was spent on the refused connection');
  assert.deepEqual([sides[0]!.encrypted, sides[0]!.clientSubject], [true, null]);
  a.socket.destroy();
});

test('the listener-wide cap drops connections past maxConnections and counts them', async (t) => {
  const edge = new Edge({ limits: limitsSchema.parse({ maxConnections: 1, maxConnectionsPerAddress: 0 }), clock: realClock });
  const { port } = await start(t, edge);
  const a = await greet(port, false);
  const b = await greet(port, false);
  assert.deepEqual([a.data, b.data], ['hi', null]);
  assert.equal(edge.stats().refused['max-connections'], 1);
  a.socket.destroy();
});
