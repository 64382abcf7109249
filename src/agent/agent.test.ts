import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { agentConfigSchema } from '../config/agent-schema.js';
import { FakeClock } from '../core/clock.js';
import { decodeAvailability, type Availability } from '../wire/availability.js';
import { MessageType, open } from '../wire/envelope.js';
import { wireTimestamp } from '../wire/timestamp.js';
import { DRAIN_MIN_ANNOUNCEMENTS, DRAIN_POLL_MS, startAgent, type Agent, type AgentExit } from './agent.js';

const KEY = randomBytes(32);
const T0 = 1_700_000_000_000;
const DELTA_MS = 20;
const settle = () => new Promise<void>((r) => setImmediate(r));

/** The line of /proc/net/tcp for one ESTABLISHED connection to local port `port`. */
function establishedLine(port: number): string {
  return `   1: 0100007F:${port.toString(16).toUpperCase().padStart(4, '0')} 0100007F:D6AC 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n`;
}

/** A UDP "dispatcher" that opens and decodes every availability message. */
async function dispatcher(t: TestContext) {
  const socket = dgram.createSocket('udp4');
  const heartbeats: Availability[] = [];
  socket.on('message', (msg) => {
    const o = open(msg, KEY);
    assert.ok(o.ok, 'authentic');
    if (o.type === MessageType.Availability) heartbeats.push(decodeAvailability(o.body)!);
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  t.after(() => socket.close());
  return {
    address: `127.0.0.1:${(socket.address() as AddressInfo).port}`,
    heartbeats,
    /** Waits (real time, bounded) until `n` heartbeats have arrived. */
    async received(n: number): Promise<Availability[]> {
      const until = Date.now() + 2000;
      while (heartbeats.length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
      assert.equal(heartbeats.length, n, 'heartbeats received');
      return heartbeats;
    },
  };
}

async function agentFor(t: TestContext, drain: { deadlineMs: number; port?: number }) {
  const d = await dispatcher(t);
  const clock = new FakeClock(T0);
  let tcp = establishedLine(9001);
  const config = agentConfigSchema.parse({
    agent: { id: 4, dispatchers: [d.address], heartbeatIntervalMs: DELTA_MS, loadIntervalMs: 60_000 },
    watchdog: { type: 'none' },
    drain,
  });
  const agent = await startAgent(config, {
    key: KEY,
    clock,
    readProc: async (path) => (path === 'net/tcp' ? tcp : null),
  });
  t.after(() => agent.stop());
  let exit: AgentExit | null = null;
  void agent.done.then((e) => (exit = e));
  return {
    d,
    clock,
    agent,
    exit: () => exit,
    setConnections(n: number) {
      tcp = n === 0 ? '' : establishedLine(9001).repeat(n);
    },
    /** Advances fake time step by step, letting the drain's /proc reads and the close finish. */
    async run(ms: number, step = DRAIN_POLL_MS) {
      for (let done = 0; done < ms; done += step) {
        clock.advance(Math.min(step, ms - done));
        await settle();
        await settle();
      }
    },
  };
}

async function stopped(agent: Agent): Promise<AgentExit> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<AgentExit>((_, reject) => (timer = setTimeout(() => reject(new Error('agent did not stop')), 2000)));
  try {
    return await Promise.race([agent.done, late]);
  } finally {
    clearTimeout(timer);
  }
}

test('heartbeats run on the clock: flag 1 with watchdog none, seq +1, timestamp = send time', async (t) => {
  const a = await agentFor(t, { deadlineMs: 1000 });
  await a.run(3 * DELTA_MS, DELTA_MS);
  const hb = await a.d.received(4);
  assert.deepEqual(
    hb.map((h) => [h.host, h.seq, h.flag, h.timestamp]),
    [0, 1, 2, 3].map((i) => [4, i, 'available', wireTimestamp(T0 + i * DELTA_MS)]),
  );
  assert.equal(a.agent.state, 'running');
});

test('drain: planned failure at once, with Timestamp = the drain time; exit when idle, not before', async (t) => {
  const a = await agentFor(t, { deadlineMs: 10_000, port: 9001 });
  await a.run(10, 10);
  a.agent.drain();
  a.agent.drain(); // idempotent
  assert.equal(a.agent.state, 'draining');
  const hb = await a.d.received(2);
  assert.deepEqual([hb[1]!.flag, hb[1]!.timestamp, hb[1]!.seq], ['planned-failure', wireTimestamp(T0 + 10), 1]);

  // Connections stay established: the agent keeps announcing the planned failure (same Timestamp).
  await a.run(500);
  assert.equal(a.exit(), null);
  const later = a.d.heartbeats.slice(2);
  assert.ok(later.length >= 20);
  assert.ok(later.every((h) => h.flag === 'planned-failure' && h.timestamp === wireTimestamp(T0 + 10)));

  a.setConnections(0);
  await a.run(DRAIN_POLL_MS);
  assert.equal(await stopped(a.agent), 'idle');
  assert.equal(a.agent.state, 'stopped');
});

test('drain: an idle node still gets DRAIN_MIN_ANNOUNCEMENTS planned-failure announcements out', async (t) => {
  const a = await agentFor(t, { deadlineMs: 10_000, port: 9001 });
  a.setConnections(0);
  a.agent.drain();
  await a.run(200, 5);
  assert.equal(await stopped(a.agent), 'idle');
  const planned = a.d.heartbeats.filter((h) => h.flag === 'planned-failure');
  assert.ok(planned.length >= DRAIN_MIN_ANNOUNCEMENTS, `${planned.length} planned-failure announcements`);
  assert.ok(planned.length <= DRAIN_MIN_ANNOUNCEMENTS + 3, `${planned.length}: exited soon after`);
});

test('drain: the deadline ends it when the node stays busy, or when there is no port to watch', async (t) => {
  const busy = await agentFor(t, { deadlineMs: 300, port: 9001 });
  busy.agent.drain();
  await busy.run(250);
  assert.equal(busy.exit(), null);
  await busy.run(100);
  assert.equal(await stopped(busy.agent), 'deadline');

  const blind = await agentFor(t, { deadlineMs: 300 });
  blind.setConnections(0);
  blind.agent.drain();
  await blind.run(250);
  assert.equal(blind.exit(), null, 'no port: idleness cannot be seen');
  await blind.run(100);
  assert.equal(await stopped(blind.agent), 'deadline');
});

test('stop: one last planned-failure announcement, then stopped; no more heartbeats', async (t) => {
  const a = await agentFor(t, { deadlineMs: 1000 });
  await a.run(DELTA_MS, DELTA_MS);
  a.clock.advance(5);
  await a.agent.stop();
  assert.equal(await stopped(a.agent), 'stopped');
  const hb = await a.d.received(3);
  assert.deepEqual([hb[2]!.flag, hb[2]!.timestamp], ['planned-failure', wireTimestamp(T0 + DELTA_MS + 5)]);
  a.clock.advance(1000);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(a.d.heartbeats.length, 3);
  await a.agent.stop(); // idempotent
});
