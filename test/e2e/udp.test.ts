/**
 * @module End-to-end tests of the UDP relay (issue 5): a dispatcher started in-process with a `udp`
 * service, real echo backends (in-process, or child processes for kill -9) and real client sockets on
 * loopback. Flow timeouts run on a FakeClock: the boundaries (inactive at the timeout, purged at twice
 * the timeout) are exact, not raced against a real clock.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import type { Channel } from 'node:diagnostics_channel';
import { FakeClock } from '../../src/core/clock.js';
import {
  channels,
  type FlowPurgeEvent,
  type MessageDropEvent,
  type SessionCloseEvent,
  type SessionEvent,
  type SessionRefuseEvent,
  type SessionRepinEvent,
} from '../../src/core/diagnostics.js';
import type { HostPort } from '../../src/core/address.js';
import { parseReply, startUdpEcho, startUdpEchoProcess, type UdpEcho } from '../helpers/udp-echo.js';
import { startUdpDispatcher, udpClient, type UdpClient } from '../helpers/udp-dispatcher.js';
import { spoofedFlood } from '../helpers/spoofed-flood.js';
import type { FdExhaustReport } from '../helpers/udp-fd-exhaust.js';
import { LEGS, run as runUdpRelayBench } from '../../bench/udp-relay.js';

/** How long a test waits for a datagram that must NOT come (a drop), on loopback. */
const SILENCE_MS = 300;

/** Messages of `channel` for service 'udp', collected until the test ends. */
function collect<T extends { service: string }>(t: TestContext, channel: Channel): T[] {
  const seen: T[] = [];
  const fn = (m: unknown): void => {
    if ((m as T).service === 'udp') seen.push(m as T);
  };
  channel.subscribe(fn);
  t.after(() => channel.unsubscribe(fn));
  return seen;
}

/** One request through the relay: the reply must echo `payload`, from the service address; returns the backend id. */
async function exchange(client: UdpClient, service: HostPort, payload: string): Promise<string> {
  const r = await client.request(service, payload);
  assert.ok(r, `no reply to ${payload} from ${client.address.port}`);
  assert.deepEqual(r.from, service, 'the reply comes from the service address');
  const tagged = parseReply(r.data);
  assert.ok(tagged, `untagged reply ${r.data.toString('latin1')}`);
  assert.equal(tagged.payload, payload);
  return tagged.id;
}

async function threeEchoes(t: TestContext): Promise<UdpEcho[]> {
  return Promise.all(['b0', 'b1', 'b2'].map((id) => startUdpEcho(t, id)));
}

test('datagrams are relayed both ways; clients spread over 3 backends, each pinned to one', async (t) => {
  const echoes = await threeEchoes(t);
  const d = await startUdpDispatcher(t, { backends: echoes });
  const CLIENTS = 30;
  const PER_CLIENT = 5;
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => udpClient(t)));
  const backendOf = await Promise.all(
    clients.map(async (c, i) => {
      const ids = new Set<string>();
      for (let k = 0; k < PER_CLIENT; k++) ids.add(await exchange(c, d.address, `client ${i} datagram ${k}`));
      assert.equal(ids.size, 1, `client ${i} reached ${[...ids].join(', ')}`);
      return [...ids][0]!;
    }),
  );
  // Round robin over 3 eligible backends, one pick per new flow: 30 flows, 10 each.
  for (const id of ['b0', 'b1', 'b2']) assert.equal(backendOf.filter((b) => b === id).length, CLIENTS / 3, `flows on ${id}`);
  for (const echo of echoes) {
    // Each flow reaches its backend from its own upstream socket (source port), every datagram of it.
    assert.equal(echo.sources.size, CLIENTS / 3, `${echo.id}: distinct relay sources`);
    for (const [source, n] of echo.sources) assert.equal(n, PER_CLIENT, `${echo.id}: datagrams from ${source}`);
  }
});

test('flow timeout: inactive after the timeout but still pinned, purged at twice the timeout, then balanced anew', async (t) => {
  const clock = new FakeClock();
  const echoes = await threeEchoes(t);
  const FLOW_TIMEOUT_MS = 200;
  const d = await startUdpDispatcher(t, { backends: echoes, clock, sessions: { flowTimeoutMs: FLOW_TIMEOUT_MS } });
  const purges = collect<FlowPurgeEvent>(t, channels.flowPurge);
  const closes = collect<SessionCloseEvent>(t, channels.sessionClose);
  const client = await udpClient(t);

  assert.equal(await exchange(client, d.address, 'one'), 'b0');
  // Inactive (idle >= timeout) but not purged (idle < 2 x timeout): the pin holds.
  clock.advance(FLOW_TIMEOUT_MS + 50);
  assert.equal(purges.length, 0);
  assert.equal(await exchange(client, d.address, 'two'), 'b0', 'an inactive flow stays pinned');
  const revivedAt = clock.now();
  // The sweep runs every 25 ms of fake time (timeout / 8). 1 ms short of twice the timeout: kept.
  clock.advance(2 * FLOW_TIMEOUT_MS - 1);
  assert.equal(purges.length, 0, 'not purged before twice the timeout');
  clock.advance(revivedAt + 2 * FLOW_TIMEOUT_MS + 25 - clock.now());
  assert.deepEqual(purges, [{ service: 'udp', count: 1 }]);
  assert.deepEqual(closes, [{ service: 'udp', backend: 'b0', reason: 'timeout' }]);
  // A new flow from the same source: the balancer picks again (round robin: the next one).
  assert.equal(await exchange(client, d.address, 'three'), 'b1');
  assert.equal(echoes[0]!.sources.size, 1);
  assert.equal(echoes[1]!.sources.size, 1);
});

test('a backend killed with SIGKILL: ECONNREFUSED takes it down, its flow is re-pinned (counted) and answered elsewhere', async (t) => {
  const procs = await Promise.all(['b0', 'b1', 'b2'].map((id) => startUdpEchoProcess(t, id)));
  const d = await startUdpDispatcher(t, { backends: procs });
  const repins = collect<SessionRepinEvent>(t, channels.sessionRepin);
  const a = await udpClient(t);
  const b = await udpClient(t);
  assert.equal(await exchange(a, d.address, 'a1'), 'b0');
  assert.equal(await exchange(b, d.address, 'b1'), 'b1');

  procs[0]!.proc.child.kill('SIGKILL');
  await procs[0]!.proc.exited;
  // The first datagram after the kill meets the closed port (ICMP port unreachable): it is lost,
  // and the relay's connected socket gets ECONNREFUSED. The client retries, as UDP clients do.
  let answeredBy: string | null = null;
  let lost = 0;
  for (let attempt = 0; attempt < 5 && answeredBy === null; attempt++) {
    const r = await a.request(d.address, `a-retry-${attempt}`, SILENCE_MS);
    if (r === null) lost++;
    else answeredBy = parseReply(r.data)!.id;
  }
  assert.ok(answeredBy === 'b1' || answeredBy === 'b2', `answered by ${answeredBy}`);
  assert.equal(lost, 1, 'exactly the datagram that met the dead port is lost');
  await d.waitForState('b0', 'down');
  assert.equal(d.backend('b0').reason, 'refused');
  assert.deepEqual(repins, [{ service: 'udp', from: 'b0', to: answeredBy }]);
  // The flow stays on its new backend; the other client never moved.
  for (let k = 0; k < 3; k++) assert.equal(await exchange(a, d.address, `a-after-${k}`), answeredBy);
  assert.equal(await exchange(b, d.address, 'b2'), 'b1');
});

test('flows-full: with maxFlows 16 the 17th client is refused (counted), the 16 keep working, and new clients are served after the purge', async (t) => {
  const clock = new FakeClock();
  const echoes = await threeEchoes(t);
  const FLOW_TIMEOUT_MS = 100;
  const d = await startUdpDispatcher(t, { backends: echoes, clock, sessions: { maxFlows: 16, flowTimeoutMs: FLOW_TIMEOUT_MS } });
  const refusals = collect<SessionRefuseEvent>(t, channels.sessionRefuse);
  const purges = collect<FlowPurgeEvent>(t, channels.flowPurge);
  const opens = collect<SessionEvent>(t, channels.sessionOpen);
  const closes = collect<SessionCloseEvent>(t, channels.sessionClose);
  const clients = await Promise.all(Array.from({ length: 16 }, () => udpClient(t)));
  for (const [i, c] of clients.entries()) await exchange(c, d.address, `first ${i}`);

  const late = await udpClient(t);
  assert.equal(await late.request(d.address, 'refused', SILENCE_MS), null);
  assert.deepEqual(refusals, [{ service: 'udp', reason: 'flows-full' }]);
  assert.equal(opens.length, 16, 'a refused flow opens no session');
  assert.equal(closes.length, 0);
  for (const [i, c] of clients.entries()) await exchange(c, d.address, `again ${i}`);
  assert.equal(refusals.length, 1, 'established flows are never refused');

  clock.advance(2 * FLOW_TIMEOUT_MS + 25);
  assert.equal(
    purges.reduce((n, p) => n + p.count, 0),
    16,
  );
  await exchange(late, d.address, 'served');
  assert.equal(refusals.length, 1);
});

test('oversized datagrams are dropped and counted; garbage and foreign sources never disturb the relay', async (t) => {
  const echoes = await threeEchoes(t);
  const d = await startUdpDispatcher(t, { backends: echoes, udp: { maxDatagramBytes: 512 } });
  const drops = collect<MessageDropEvent>(t, channels.messageDrop);
  const client = await udpClient(t);

  assert.equal(await client.request(d.address, Buffer.alloc(513, 0x41), SILENCE_MS), null);
  assert.deepEqual(drops, [{ service: 'udp', reason: 'too-large', transport: 'udp' }]);
  const full = await client.request(d.address, Buffer.alloc(512, 0x42));
  assert.ok(full);
  assert.equal(full.data.length, 'b0|'.length + 512, 'a datagram of exactly the maximum is relayed whole');

  // Garbage: empty, binary, a burst from many sources. The relay keeps serving.
  const noisy = await Promise.all(Array.from({ length: 8 }, () => udpClient(t)));
  for (const n of noisy) {
    n.send(d.address, Buffer.alloc(0));
    n.send(d.address, Buffer.from([0, 0xff, 0x80, 0x0d, 0x0a]));
  }
  // The echo leaves empty datagrams (what the health probe sends) unanswered: the binary one answers.
  const binary = await noisy[0]!.next();
  assert.ok(binary);
  assert.equal(parseReply(binary.data)!.payload, '\x00\xff\x80\r\n', 'binary bytes relayed as they are');
  assert.equal(await exchange(client, d.address, 'still here'), 'b0');

  // A foreign source sending to the relay's upstream socket: a connected socket drops it, so nothing
  // reaches the client.
  const [upstreamSource] = [...echoes[0]!.sources.keys()];
  const upstreamPort = Number(upstreamSource!.split(':')[1]);
  const intruder = dgram.createSocket('udp4');
  t.after(() => intruder.close());
  intruder.on('error', () => {});
  await new Promise<void>((resolve) => intruder.bind(0, '127.0.0.1', resolve));
  intruder.send(Buffer.from('spoofed reply'), upstreamPort, '127.0.0.1');
  assert.equal(await client.next(SILENCE_MS), null, 'a datagram from anyone but the backend is not relayed');
  assert.equal(await exchange(client, d.address, 'after the intruder'), 'b0');
  assert.equal(drops.length, 1);
});

test('descriptors exhausted: a new flow gets no upstream socket (dropped, counted), established flows go on, and it is served once descriptors free up', async () => {
  const script = fileURLToPath(new URL('../helpers/udp-fd-exhaust.js', import.meta.url));
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile('sh', ['-c', 'ulimit -n 256 && exec "$0" "$1" --run', process.execPath, script], { timeout: 15_000 }, (err, out, errOut) =>
      err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out),
    );
  });
  const report = JSON.parse(stdout) as FdExhaustReport;
  assert.ok(report.filled > 0, 'the scenario really ran out of descriptors');
  assert.equal(report.aBefore, 'b0|a1');
  assert.equal(report.bDuring, null, 'no socket, no relay');
  assert.equal(report.aDuring, 'b0|a2', 'an established flow needs no new descriptor');
  assert.equal(report.bAfter, 'b0|b2', 'the same client is served once descriptors are free');
  assert.deepEqual(report.drops, ['no-socket']);
  assert.deepEqual(report.refusals, []);
});

test('udp-relay benchmark: one short round through every leg relays every datagram', { timeout: 20_000 }, async () => {
  const results = await runUdpRelayBench({ flows: [4], seconds: 0.3, rounds: 1, rate: 1000, newFlows: 5, out: null, log: () => {} });
  assert.deepEqual(
    results.map((r) => r.leg),
    [...LEGS],
  );
  for (const r of results) {
    assert.equal(r.flows, 4);
    assert.ok(r.pps > 0, `${r.leg}: pps ${r.pps}`);
    assert.ok(r.rttP99Us >= r.rttP50Us && r.rttP50Us > 0, `${r.leg}: p50 ${r.rttP50Us} p99 ${r.rttP99Us}`);
    assert.ok(r.newFlowP50Us > 0, `${r.leg}: new flow p50 ${r.newFlowP50Us}`);
    assert.ok(r.lossPercent < 5, `${r.leg}: loss ${r.lossPercent} %`);
    // The relayed legs really went through a relay process: it burnt CPU for them.
    if (r.leg !== 'direct' && process.platform === 'linux') assert.ok((r.relayCpuUsPerPacket ?? 0) > 0, `${r.leg}: relay CPU ${r.relayCpuUsPerPacket}`);
    else assert.equal(r.relayCpuUsPerPacket, null);
  }
});

test('flood from 3000 spoofed source addresses: the flow table stays at maxFlows, every refused flow is counted, established clients keep their pins', async (t) => {
  const echoes = await threeEchoes(t);
  const MAX_FLOWS = 64;
  const FLOOD = 3000;
  const d = await startUdpDispatcher(t, { backends: echoes, sessions: { maxFlows: MAX_FLOWS } });
  const refusals = collect<SessionRefuseEvent>(t, channels.sessionRefuse);
  const clients = await Promise.all(Array.from({ length: 16 }, () => udpClient(t)));
  const pins: string[] = [];
  for (const [i, c] of clients.entries()) pins.push(await exchange(c, d.address, `before ${i}`));
  const flows = (): number => d.dispatcher.status().services[0]!.flows.active;
  const before = flows();
  await spoofedFlood(FLOOD, 77, d.address, (i) => Buffer.from(`flood ${i}`));
  const waitUntil = Date.now() + 10_000;
  while (flows() - before + refusals.length < FLOOD && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 20));
  assert.equal(flows(), MAX_FLOWS, 'the flow table filled to its bound and no further');
  assert.equal(refusals.length, FLOOD - (MAX_FLOWS - before), 'every flood flow past the bound refused and counted');
  assert.ok(refusals.every((r) => r.reason === 'flows-full'));
  for (const [i, c] of clients.entries()) assert.equal(await exchange(c, d.address, `after ${i}`), pins[i], `client ${i} keeps its backend`);
});
