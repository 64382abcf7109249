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
import { ClientLimiter } from './client-limits.js';
import { AddressLeases, type SharedGate } from './shared-limits.js';

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

/** A SharedGate of holder `holder` over `leases`, answering a turn later (as over IPC). */
function gateOf(leases: AddressLeases, holder: number): SharedGate {
  return {
    acquire: (address, done) => setImmediate(() => done(leases.acquire(holder, address))),
    release: (address) => setImmediate(() => leases.release(holder, address)),
    takeRequests: (address, want, done) =>
      setImmediate(() => {
        const r = leases.takeRequests(address, want);
        done(r.granted, r.retryAfterS);
      }),
  };
}

test('shared gate: two edges (two workers) hold maxConnectionsPerAddress together, TLS refused before its handshake; a closed or dropped holder frees its slots', async (t) => {
  const kit = makeCertKit();
  t.after(() => kit.remove());
  const tlsConfig = tlsSchema.parse({ certificates: [kit.leaf('a', ['a.test'])], watchFiles: false });
  const limits = limitsSchema.parse({ maxConnectionsPerAddress: 2 });
  const authority = new ClientLimiter(limits, realClock);
  const leases = new AddressLeases(authority);
  const w1 = new Edge({ tls: tlsConfig, limits, clock: realClock, shared: gateOf(leases, 1) });
  const w2 = new Edge({ tls: tlsConfig, limits, clock: realClock, shared: gateOf(leases, 2) });
  const s1 = await start(t, w1);
  const s2 = await start(t, w2);
  const a = await greet(s1.port, true);
  const b = await greet(s2.port, true);
  const c = await greet(s1.port, true);
  const d = await greet(s2.port, true);
  assert.deepEqual([a.data, b.data, c.data, d.data], ['hi', 'hi', null, null], 'two connections from one address across both workers');
  assert.equal(authority.counts['too-many-connections'], 2, 'counted once, by the authority');
  assert.equal(w1.stats().tls!.handshakes + w2.stats().tls!.handshakes, 2, 'no handshake was spent on the refused connections');
  assert.equal(s1.sides[0]!.encrypted, true);
  a.socket.destroy();
  await new Promise((r) => setTimeout(r, 50));
  const e = await greet(s2.port, true);
  assert.equal(e.data, 'hi', 'a closed connection gives its slot back');
  assert.equal(leases.heldBy(2), 2);
  assert.equal(leases.dropHolder(2), 2, 'a worker that dies gives back all it held');
  const f = await greet(s1.port, true);
  assert.equal(f.data, 'hi');
  for (const s of [b, e, f]) s.socket.destroy();
});

test('shared gate, plain: the authority refuses at accept and counts connectionsPerSecond and requestsPerSecond across edges', async (t) => {
  const limits = limitsSchema.parse({ maxConnectionsPerAddress: 0, connectionsPerSecond: 2, requestsPerSecond: 3 });
  const authority = new ClientLimiter(limits, realClock);
  const leases = new AddressLeases(authority);
  const w1 = new Edge({ limits, clock: realClock, shared: gateOf(leases, 1) });
  const w2 = new Edge({ limits, clock: realClock, shared: gateOf(leases, 2) });
  const s1 = await start(t, w1);
  const s2 = await start(t, w2);
  const a = await greet(s1.port, false);
  const b = await greet(s2.port, false);
  const c = await greet(s1.port, false);
  assert.deepEqual([a.data, b.data, c.data], ['hi', 'hi', null]);
  assert.equal(authority.counts['connection-rate'], 1);
  // Three requests a second for the address, whichever edge its connections are on.
  const ask = (edge: Edge, side: ClientSide) =>
    new Promise<string>((resolve) => {
      const v = edge.requestVerdict(side);
      if (v === 'ask') edge.askRequests(side, resolve);
      else resolve(v);
    });
  const verdicts = [await ask(w1, s1.sides[0]!), await ask(w2, s2.sides[0]!), await ask(w1, s1.sides[0]!), await ask(w2, s2.sides[0]!), await ask(w1, s1.sides[0]!)];
  assert.deepEqual(verdicts, ['admit', 'admit', 'admit', 'refuse', 'refuse']);
  assert.equal(w2.retryAfterS(s2.sides[0]!), 1);
  assert.equal(authority.counts['request-rate'], 2, 'counted by the authority');
  for (const s of [a, b]) s.socket.destroy();
});
