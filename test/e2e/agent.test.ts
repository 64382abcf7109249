/**
 * @module End-to-end tests of `holdfast agent` as a real process: the test plays the dispatcher (a
 * UDP socket on 127.0.0.1:0 that opens and decodes every message with src/wire) and the watched
 * application (a server on 127.0.0.1:0), and checks what arrives: heartbeats every delta with
 * consecutive Seq_Nber and flag 1, flag 2 once the application stops, flag 3 on SIGUSR2 or
 * `holdfast agent drain` with an exit once the application has no established connection (or at
 * the drain deadline), one last flag 3 on SIGTERM, and load vectors every delta_load in [0,1].
 * Timing margins are generous (the machine has 2 shared cores); each is stated where it is used.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeAvailability, type Availability } from '../../src/wire/availability.js';
import { MessageType, open } from '../../src/wire/envelope.js';
import { decodeLoadVector, type LoadVector } from '../../src/wire/load-vector.js';
import { unwrapTimestamp } from '../../src/wire/timestamp.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const KEY = randomBytes(32);
const DELTA_MS = 20;

interface Received<T> {
  /** Date.now() at arrival. */
  at: number;
  msg: T;
}

/** The test's dispatcher: a UDP socket that opens and decodes whatever the agent sends. */
async function dispatcher(t: TestContext) {
  const socket = dgram.createSocket('udp4');
  const heartbeats: Received<Availability>[] = [];
  const loads: Received<LoadVector>[] = [];
  const raw: Buffer[] = [];
  const rejected: string[] = [];
  socket.on('message', (msg) => {
    const at = Date.now();
    raw.push(msg);
    const opened = open(msg, KEY);
    if (!opened.ok) return void rejected.push(opened.reason);
    if (opened.type === MessageType.Availability) {
      const a = decodeAvailability(opened.body);
      if (a) heartbeats.push({ at, msg: a });
      else rejected.push('malformed availability');
    } else {
      const v = decodeLoadVector(opened.body);
      if (v) loads.push({ at, msg: v });
      else rejected.push('malformed load vector');
    }
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  t.after(() => socket.close());
  return { address: `127.0.0.1:${(socket.address() as AddressInfo).port}`, heartbeats, loads, raw, rejected };
}

/** The watched application: an HTTP server answering 200, or a bare TCP server. */
async function application(t: TestContext, kind: 'http' | 'tcp') {
  const sockets = new Set<net.Socket>();
  const server =
    kind === 'http'
      ? http.createServer((_req, res) => res.end('ok'))
      : net.createServer(() => {
          /* keeps the connection open until the client closes it */
        });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const stop = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  t.after(() => (server.listening ? stop() : undefined));
  return { port, server, sockets, stop };
}

interface AgentProcess {
  child: ChildProcess;
  file: string;
  pidFile: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  output(): string;
}

/** Writes an agent configuration and starts `node bin/holdfast.js agent --config FILE`. */
function startAgent(t: TestContext, yaml: (pidFile: string) => string): AgentProcess {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-agent-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pidFile = join(dir, 'agent.pid');
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, yaml(pidFile));
  const child = spawn(process.execPath, ['bin/holdfast.js', 'agent', '--config', file], {
    cwd: ROOT,
    env: { ...process.env, HOLDFAST_CLUSTER_KEY: KEY.toString('hex') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, file, pidFile, exited, output: () => out };
}

function agentYaml(o: { id: number; dispatcher: string; watchdog: string; extra?: string; loadIntervalMs?: number }) {
  return (pidFile: string) => `logging: { level: warn }
agent:
  id: ${o.id}
  dispatchers: ["${o.dispatcher}"]
  heartbeatIntervalMs: ${DELTA_MS}
  loadIntervalMs: ${o.loadIntervalMs ?? 1000}
  pidFile: ${JSON.stringify(pidFile)}
watchdog: ${o.watchdog}
${o.extra ?? ''}`;
}

/** Polls `cond` every 5 ms until it holds; fails with `what` (and the agent's output) after `timeoutMs`. */
async function until(cond: () => boolean, timeoutMs: number, what: string, agent?: AgentProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`${what} within ${timeoutMs} ms${agent ? `; agent output:\n${agent.output()}` : ''}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Resolves with the exit, or fails after `timeoutMs`. */
async function exitWithin(agent: AgentProcess, timeoutMs: number) {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      agent.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`agent still running after ${timeoutMs} ms:\n${agent.output()}`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Node start and module loading take a few hundred ms here; the first heartbeat comes after. */
const START_MS = 5000;

test('heartbeats every delta with consecutive seq and flag 1; load vectors every delta_load in [0,1]; a wrong key does not open them', async (t) => {
  const d = await dispatcher(t);
  const app = await application(t, 'http');
  const LOAD_MS = 150;
  const agent = startAgent(
    t,
    agentYaml({
      id: 4242,
      dispatcher: d.address,
      watchdog: `{ type: http, url: "http://127.0.0.1:${app.port}/health", periodMs: 200, timeoutMs: 100 }`,
      loadIntervalMs: LOAD_MS,
    }),
  );
  await until(() => d.loads.length >= 6, START_MS, '6 load vectors', agent);

  const hb = d.heartbeats.map((h) => h.msg);
  assert.ok(hb.length >= 30, `${hb.length} heartbeats`);
  assert.deepEqual(
    hb.map((h) => h.seq),
    hb.map((_, i) => i),
    'Seq_Nber starts at 0 and grows by 1 per announcement (loopback loses none)',
  );
  assert.ok(hb.every((h) => h.host === 4242));
  // The watchdog's first check runs before the first announcement: the application is up, so flag 1 throughout.
  assert.deepEqual([...new Set(hb.map((h) => h.flag))], ['available']);
  const now = Date.now();
  for (const h of d.heartbeats) {
    const sent = unwrapTimestamp(h.msg.timestamp, now);
    assert.ok(Math.abs(h.at - sent) < 1000, `Timestamp is the send time: ${sent} vs arrival ${h.at}`);
  }
  // Timer jitter on a busy machine: the median gap, not every gap, must be close to delta.
  const gaps = d.heartbeats.slice(1).map((h, i) => h.at - d.heartbeats[i]!.at);
  const gap = median(gaps);
  assert.ok(gap >= DELTA_MS * 0.5 && gap <= DELTA_MS * 2, `median heartbeat gap ${gap} ms for delta ${DELTA_MS} ms`);

  const loads = d.loads.map((l) => l.msg);
  assert.deepEqual(
    loads.map((l) => l.seq),
    loads.map((_, i) => i),
  );
  for (const l of loads) {
    assert.equal(l.host, 4242);
    for (const k of ['cpu', 'memory', 'network', 'io', 'backlog', 'load'] as const) {
      assert.ok(l[k] >= 0 && l[k] <= 1, `${k} = ${l[k]}`);
    }
    assert.equal(l.backlog, 0, 'no statsUrl: no backlog');
    // No statsUrl: the backlog's weight (0.1) is shared among the other four.
    const expected = (0.4 * l.cpu + 0.2 * l.memory + 0.2 * l.network + 0.1 * l.io) / 0.9;
    assert.ok(Math.abs(l.load - expected) < 1e-3, `load ${l.load} = weighted sum ${expected}`);
  }
  assert.ok(loads.some((l) => l.memory > 0), 'memory is measured');
  const loadGap = median(d.loads.slice(1).map((l, i) => l.at - d.loads[i]!.at));
  assert.ok(loadGap >= LOAD_MS * 0.5 && loadGap <= LOAD_MS * 2, `median load gap ${loadGap} ms for ${LOAD_MS} ms`);

  assert.deepEqual(d.rejected, []);
  const sizes = new Set(d.raw.map((m) => m.length));
  assert.deepEqual([...sizes].sort(), [28, 39], 'availability 28 bytes, load vector 39 bytes');
  // Sanity: the messages are authenticated, not merely framed.
  const otherKey = randomBytes(32);
  for (const msg of d.raw.slice(0, 5)) assert.deepEqual(open(msg, otherKey), { ok: false, reason: 'bad-mac' });
});

test('the watched application stops: flag 2 within periodMs + timeoutMs + margin; back to flag 1 when it returns', async (t) => {
  const d = await dispatcher(t);
  const app = await application(t, 'http');
  const PERIOD_MS = 100;
  const TIMEOUT_MS = 50;
  const agent = startAgent(
    t,
    agentYaml({
      id: 7,
      dispatcher: d.address,
      watchdog: `{ type: http, url: "http://127.0.0.1:${app.port}/", periodMs: ${PERIOD_MS}, timeoutMs: ${TIMEOUT_MS} }`,
    }),
  );
  await until(() => d.heartbeats.length >= 5, START_MS, '5 heartbeats', agent);
  assert.ok(d.heartbeats.every((h) => h.msg.flag === 'available'));

  await app.stop();
  const stoppedAt = Date.now();
  // A refused connection fails the next check at once; the next check comes within one period.
  // Margin: 300 ms for timers and scheduling on 2 busy cores.
  const LIMIT_MS = PERIOD_MS + TIMEOUT_MS + 300;
  await until(() => d.heartbeats.some((h) => h.msg.flag === 'app-unavailable'), LIMIT_MS, 'flag 2', agent);
  const first = d.heartbeats.find((h) => h.msg.flag === 'app-unavailable')!;
  assert.ok(first.at - stoppedAt <= LIMIT_MS, `flag 2 after ${first.at - stoppedAt} ms`);
  const seqs = d.heartbeats.map((h) => h.msg.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i), 'heartbeats never paused');

  const before = d.heartbeats.length;
  await new Promise<void>((r) => app.server.listen(app.port, '127.0.0.1', r));
  await until(() => d.heartbeats.slice(before).some((h) => h.msg.flag === 'available'), LIMIT_MS, 'flag 1 again', agent);
});

test('SIGUSR2: flag 3 at once, the agent stays while a connection is established and exits 0 once it closes', async (t) => {
  const d = await dispatcher(t);
  const app = await application(t, 'tcp');
  const agent = startAgent(
    t,
    agentYaml({
      id: 8,
      dispatcher: d.address,
      watchdog: `{ type: tcp, address: "127.0.0.1:${app.port}", periodMs: 100, timeoutMs: 50 }`,
      extra: `drain: { port: ${app.port}, deadlineMs: 20000 }`,
    }),
  );
  await until(() => d.heartbeats.length >= 3 && existsSync(agent.pidFile), START_MS, 'heartbeats and the pid file', agent);

  // A client with a connection in progress.
  const client = net.connect(app.port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  t.after(() => client.destroy());

  const signalledAt = Date.now();
  agent.child.kill('SIGUSR2');
  await until(() => d.heartbeats.some((h) => h.msg.flag === 'planned-failure'), 500, 'flag 3', agent);
  const planned = d.heartbeats.find((h) => h.msg.flag === 'planned-failure')!;
  const plannedAt = unwrapTimestamp(planned.msg.timestamp, Date.now());
  assert.ok(plannedAt >= signalledAt - 5 && plannedAt <= planned.at + 5, `planned failure time ${plannedAt - signalledAt} ms after the signal`);

  // Well past DRAIN_MIN_ANNOUNCEMENTS and several idle polls: still running, still announcing.
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(agent.child.exitCode, null, 'waits for the established connection');
  const after = d.heartbeats.slice(d.heartbeats.indexOf(planned));
  assert.ok(after.length >= 10, `${after.length} announcements while draining`);
  assert.ok(after.every((h) => h.msg.flag === 'planned-failure' && h.msg.timestamp === planned.msg.timestamp));

  client.destroy();
  const closedAt = Date.now();
  const exit = await exitWithin(agent, 2000);
  assert.deepEqual([exit.code, exit.signal], [0, null], agent.output());
  assert.ok(exit.at - closedAt < 1000, `exited ${exit.at - closedAt} ms after the last connection closed`);
  assert.equal(existsSync(agent.pidFile), false, 'pid file removed');
});

test('`holdfast agent drain`: finds the agent by its pid file, flag 3, and an idle node exits at once', async (t) => {
  const d = await dispatcher(t);
  const app = await application(t, 'tcp');
  const agent = startAgent(
    t,
    agentYaml({
      id: 9,
      dispatcher: d.address,
      watchdog: `{ type: tcp, address: "127.0.0.1:${app.port}", periodMs: 100, timeoutMs: 50 }`,
      extra: `drain: { port: ${app.port}, deadlineMs: 20000 }`,
    }),
  );
  await until(() => d.heartbeats.length >= 3 && existsSync(agent.pidFile), START_MS, 'heartbeats and the pid file', agent);

  const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, ['bin/holdfast.js', 'agent', 'drain', '--config', agent.file], { cwd: ROOT }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    ),
  );
  assert.equal(run.stderr, '');
  assert.equal(run.code, 0);
  assert.match(run.stdout, new RegExp(`^sent SIGUSR2 to the holdfast agent 9 \\(pid ${agent.child.pid}\\)`));
  assert.match(run.stdout, new RegExp(`once port ${app.port} has no established connection, at the latest after 20000 ms`));

  const exit = await exitWithin(agent, 2000);
  assert.deepEqual([exit.code, exit.signal], [0, null], agent.output());
  const planned = d.heartbeats.filter((h) => h.msg.flag === 'planned-failure');
  assert.ok(planned.length >= 3, `${planned.length} planned-failure announcements before exiting (DRAIN_MIN_ANNOUNCEMENTS)`);
  assert.equal(d.heartbeats.at(-1)!.msg.flag, 'planned-failure');
});

test('drain deadline: the agent exits 0 at drain.deadlineMs although a connection stays open', async (t) => {
  const d = await dispatcher(t);
  const app = await application(t, 'tcp');
  const DEADLINE_MS = 400;
  const agent = startAgent(
    t,
    agentYaml({
      id: 10,
      dispatcher: d.address,
      watchdog: `{ type: tcp, address: "127.0.0.1:${app.port}", periodMs: 100, timeoutMs: 50 }`,
      extra: `drain: { port: ${app.port}, deadlineMs: ${DEADLINE_MS} }`,
    }),
  );
  await until(() => d.heartbeats.length >= 3, START_MS, 'heartbeats', agent);
  const client = net.connect(app.port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  t.after(() => client.destroy());

  const signalledAt = Date.now();
  agent.child.kill('SIGUSR2');
  const exit = await exitWithin(agent, DEADLINE_MS + 2000);
  assert.deepEqual([exit.code, exit.signal], [0, null], agent.output());
  const took = exit.at - signalledAt;
  // Not before the deadline (minus a little for when the signal lands), and not much after.
  assert.ok(took >= DEADLINE_MS - 20 && took < DEADLINE_MS + 1000, `exited ${took} ms after SIGUSR2, deadline ${DEADLINE_MS} ms`);
  assert.equal(app.sockets.size, 1, 'the connection is still open: the deadline, not idleness, ended the drain');
});

test('SIGTERM: one last planned-failure announcement, then exit 0 at once (and a second agent on the same pid file is refused)', async (t) => {
  const d = await dispatcher(t);
  const agent = startAgent(t, agentYaml({ id: 11, dispatcher: d.address, watchdog: '{ type: none }', extra: 'drain: { deadlineMs: 20000 }' }));
  await until(() => d.heartbeats.length >= 3, START_MS, 'heartbeats', agent);
  assert.ok(d.heartbeats.every((h) => h.msg.flag === 'available'), 'watchdog none: flag 1');

  // A second agent with the same pid file refuses to start (drain would signal the wrong one).
  const second = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
    execFile(
      process.execPath,
      ['bin/holdfast.js', 'agent', '--config', agent.file],
      { cwd: ROOT, env: { ...process.env, HOLDFAST_CLUSTER_KEY: KEY.toString('hex') } },
      (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
    ),
  );
  assert.equal(second.code, 1);
  assert.equal(
    second.stderr,
    `holdfast: another agent is running with pid file ${agent.pidFile} (pid ${agent.child.pid}); stop it, or give this one its own agent.pidFile\n`,
  );
  assert.ok(existsSync(agent.pidFile), 'the running agent keeps its pid file');

  const signalledAt = Date.now();
  agent.child.kill('SIGTERM');
  const exit = await exitWithin(agent, 1000);
  assert.deepEqual([exit.code, exit.signal], [0, null], agent.output());
  assert.ok(exit.at - signalledAt < 1000);
  await new Promise((r) => setTimeout(r, 50)); // a datagram sent just before exit is still in flight
  const last = d.heartbeats.at(-1)!;
  assert.equal(last.msg.flag, 'planned-failure');
  assert.ok(d.heartbeats.slice(0, -1).every((h) => h.msg.flag === 'available'));
  const seqs = d.heartbeats.map((h) => h.msg.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i));
  assert.equal(existsSync(agent.pidFile), false, 'pid file removed');
});

/**
 * Issue 17: the starved flag (bit 6) from a real agent. Starved: the agent at nice 19 shares CPU 0
 * with a busy loop at nice 0 (it gets ~1.5 % of that CPU: its 20 ms ticks run tens of ms late,
 * waiting on the run queue). Stopped: SIGSTOP for 500 ms is as late, with no run-queue wait — the
 * heartbeat that ends that silence must not say starved. Needs Linux's /proc schedstat and taskset.
 */
test('starved flag: an agent starved of CPU says so on its late heartbeats; one stopped by SIGSTOP does not', async (t) => {
  if (!existsSync('/proc/thread-self/schedstat')) return t.skip('no /proc/thread-self/schedstat');
  const run = (cmd: string, args: string[]): Promise<void> =>
    new Promise((resolve, reject) => execFile(cmd, args, (err) => (err ? reject(err) : resolve())));
  try {
    await run('taskset', ['--version']);
    await run('renice', ['--version']);
  } catch (err) {
    return t.skip(`taskset unusable: ${(err as Error).message}`);
  }
  const app = await application(t, 'tcp');
  const watchdog = `{ type: tcp, address: "127.0.0.1:${app.port}", periodMs: 500, timeoutMs: 250 }`;

  // Starved. raise: never — a real-time agent is never starved (that is the point of raising it).
  const starvedD = await dispatcher(t);
  const starved = startAgent(t, agentYaml({ id: 1, dispatcher: starvedD.address, watchdog, extra: 'scheduling: { raise: never }' }));
  await until(() => starvedD.heartbeats.length >= 5, START_MS, '5 heartbeats', starved);
  const pid = String(starved.child.pid);
  await run('taskset', ['-a', '-p', '-c', '0', pid]);
  await run('renice', ['-n', '19', '-p', pid]);
  const burner = spawn('taskset', ['-c', '0', process.execPath, '-e', 'for(;;){}'], { stdio: 'ignore' });
  t.after(() => burner.kill('SIGKILL'));
  // Generous: at ~1.5 % of a CPU the agent still runs a tick every few tens of ms.
  await until(() => starvedD.heartbeats.some((h) => h.msg.starved === true), 20_000, 'a heartbeat flagged starved', starved);
  burner.kill('SIGKILL');
  starved.child.kill('SIGKILL');

  // Stopped. raise: at-start (real-time when allowed), so that on a busy machine the agent does not
  // also wait on the run queue after SIGCONT; that wait would be real starvation, not the stop.
  const stoppedD = await dispatcher(t);
  const stopped = startAgent(t, agentYaml({ id: 2, dispatcher: stoppedD.address, watchdog, extra: 'scheduling: { raise: at-start }' }));
  await until(() => stoppedD.heartbeats.length >= 5, START_MS, '5 heartbeats', stopped);
  const before = stoppedD.heartbeats.length;
  stopped.child.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 500));
  stopped.child.kill('SIGCONT');
  await until(() => stoppedD.heartbeats.length >= before + 5, START_MS, '5 heartbeats after SIGCONT', stopped);
  const after = stoppedD.heartbeats.slice(before);
  const ending = after.find((h, i) => h.at - (i === 0 ? stoppedD.heartbeats[before - 1]! : after[i - 1]!).at >= 400);
  assert.ok(ending, 'the heartbeat that ends the stop is seen');
  assert.equal(ending.msg.starved, undefined, 'a stop is not starvation');
  stopped.child.kill('SIGTERM');
  await exitWithin(stopped, 2000);
});
