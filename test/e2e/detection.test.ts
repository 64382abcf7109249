/**
 * @module End-to-end failure detection with real processes: a `holdfast dispatcher`, one
 * `holdfast agent` and one HTTP server (test/helpers/cluster-backend.ts) per node, push detection
 * with delta = 20 ms and n = 3. Each fault is applied to the real processes (SIGKILL, SIGSTOP, an
 * nftables rule in a network namespace of the test's own, the application dying under a live
 * agent, a planned failure) and the test waits for the transition the dispatcher logs, then undoes
 * the fault and waits for the way back. Forged and replayed datagrams must be counted and ignored;
 * load vectors must reach the status and steer the shell balancer.
 *
 * These are correctness tests, not measurements (bench/detection.ts measures the latency): every
 * bound is generous, for two cores shared with other test files. Tests that check something else
 * than detection use n = 10, so a scheduling hiccup of the shared machine cannot flap a backend
 * under them.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeAvailability, type Availability } from '../../src/wire/availability.js';
import { MessageType, open, seal } from '../../src/wire/envelope.js';
import { wireTimestamp } from '../../src/wire/timestamp.js';
import { freePort } from '../../bench/lib/procs.js';
import {
  captureSocket,
  freeUdpPort,
  get,
  metricValue,
  newCluster,
  newNetns,
  nft,
  run,
  ROOT,
  sendDatagrams,
  startAgent,
  startBackend,
  startDispatcher,
  type AgentProc,
  type BackendProc,
  type Cluster,
  type DispatcherProc,
} from '../helpers/cluster-procs.js';

const DELTA_MS = 20;
const N = 3;
/** n for the tests that are not about detection (see the module comment). */
const N_CALM = 10;
/** Detection takes n x delta = 60 ms here; one second leaves room for a busy machine. */
const DETECT_BOUND_MS = 1000;
/** Becoming up again needs a restarted process or a watchdog period; generous as well. */
const RECOVER_BOUND_MS = 5000;
/** The first heartbeat after start: node start and module loading of a fresh agent. */
const FIRST_HEARTBEAT_MS = 10_000;

interface NodeSpec {
  id: string;
  agent: number;
  backlog?: number;
}

interface ClusterOptions {
  nodes: readonly NodeSpec[];
  n?: number;
  balancer?: string;
  netns?: string;
  /** Agent watchdog section (YAML flow mapping); `{url}` is replaced by the node's URL. */
  watchdog?: string;
  loadIntervalMs?: number;
  /** Extra agent sections (YAML); `{port}` is replaced by the node's port. */
  agentExtra?: string;
  /** More dispatcher addresses each agent sends to (a capture socket). */
  alsoSendTo?: string;
}

interface Running {
  c: Cluster;
  d: DispatcherProc;
  backends: Map<string, BackendProc>;
  agents: Map<string, AgentProc>;
  /** The service's bound address, for requests through the dispatcher. */
  web: string;
  monitor: string;
}

/** Backends first, then the dispatcher, then the agents; resolves once every backend is up. */
async function startCluster(t: TestContext, o: ClusterOptions): Promise<Running> {
  const c = newCluster(t, o.netns ?? null);
  // A namespace of the test's own has nothing bound: fixed ports are free there.
  const ports = o.netns ? o.nodes.map((_, i) => 18_000 + i) : await Promise.all(o.nodes.map(() => freePort()));
  const monitorPort = o.netns ? 17_600 : await freeUdpPort();
  const monitor = `127.0.0.1:${monitorPort}`;
  const backends = new Map<string, BackendProc>(
    await Promise.all(
      o.nodes.map(async (node, i) => {
        const b = await startBackend(t, c, { id: node.id, port: ports[i]!, ...(node.backlog === undefined ? {} : { backlog: node.backlog }) });
        return [node.id, b] as const;
      }),
    ),
  );
  const loadIntervalMs = o.loadIntervalMs ?? 1000;
  const d = await startDispatcher(
    t,
    c,
    `version: 1
logging: { level: info, format: json }
admin: { enabled: true, listen: '127.0.0.1:0' }
monitor: { listen: '${monitor}' }
services:
  - name: web
    protocol: http
    listen: '127.0.0.1:0'
    balancer: ${o.balancer ?? 'round-robin'}
    backends:
${o.nodes.map((node, i) => `      - { id: ${node.id}, address: '127.0.0.1:${ports[i]}', agent: ${node.agent} }`).join('\n')}
    health:
      detector: { type: push, intervalMs: ${DELTA_MS}, n: ${o.n ?? N} }
    load: { intervalMs: ${loadIntervalMs} }
`,
  );
  const agents = new Map<string, AgentProc>(
    await Promise.all(
      o.nodes.map(async (node, i) => {
        const url = `http://127.0.0.1:${ports[i]}/`;
        const a = await startAgent(t, c, {
          id: node.agent,
          dispatchers: o.alsoSendTo ? [monitor, o.alsoSendTo] : [monitor],
          heartbeatIntervalMs: DELTA_MS,
          loadIntervalMs,
          watchdog: (o.watchdog ?? '{ type: http, url: "{url}", periodMs: 200, timeoutMs: 150 }').replace('{url}', url),
          ...(o.agentExtra ? { extra: o.agentExtra.replaceAll('{port}', String(ports[i])) } : {}),
        });
        return [node.id, a] as const;
      }),
    ),
  );
  for (const node of o.nodes) {
    const up = await d.waitForTransition({ backend: node.id, to: 'up' }, 0, FIRST_HEARTBEAT_MS);
    assert.equal(up.reason, 'heartbeat', `${node.id} came up through its agent's heartbeats`);
  }
  return { c, d, backends, agents, web: d.services.web!, monitor };
}

/** "no heartbeat for X ms" → X; fails on any other reason. */
function silentMs(reason: string): number {
  const m = /^no heartbeat for ([\d.]+) ms$/.exec(reason);
  assert.ok(m, `reason "${reason}" mentions the missing heartbeats`);
  return Number(m[1]);
}

/** A down transition caused by silence: the reason says so and the detector waited its n x delta. */
function assertSilenceDetected(reason: string, n: number): void {
  const silent = silentMs(reason);
  // The deadline is n x delta after the last heartbeat heard; the reason rounds to 0.1 ms.
  assert.ok(silent >= n * DELTA_MS - 0.1, `down after ${silent} ms of silence, before n x delta = ${n * DELTA_MS} ms`);
}

/**
 * `up`, or `suspect`: one heartbeat late by half an interval (10 ms here) makes a backend suspect
 * until the next one, and a shared 2-core machine does that now and then. Suspect stays eligible.
 */
function assertAlive(state: string): void {
  assert.ok(state === 'up' || state === 'suspect', `state ${state}, expected up (or a passing suspect)`);
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

test('push: heartbeats bring a backend up; SIGKILL of agent and server → down within 1 s; restarted → up', async (t) => {
  const { d, backends, agents } = await startCluster(t, { nodes: [{ id: 'b0', agent: 1 }] });
  assertAlive((await d.backend('web', 'b0')).state);

  const mark = d.transitions.length;
  const faultAt = Date.now();
  // The agent first: a server dying first could be seen by the watchdog ("application unavailable").
  agents.get('b0')!.proc.child.kill('SIGKILL');
  backends.get('b0')!.proc.child.kill('SIGKILL');
  const down = await d.waitForTransition({ backend: 'b0', to: 'down' }, mark, DETECT_BOUND_MS + 2000);
  assertSilenceDetected(down.reason, N);
  assert.ok(down.time - faultAt < DETECT_BOUND_MS, `down ${down.time - faultAt} ms after the kill`);
  assert.equal((await d.backend('web', 'b0')).state, 'down');

  const back = d.transitions.length;
  await backends.get('b0')!.restart();
  await agents.get('b0')!.restart();
  const up = await d.waitForTransition({ backend: 'b0', to: 'up' }, back, FIRST_HEARTBEAT_MS);
  assert.equal(up.reason, 'heartbeat');
  assertAlive((await d.backend('web', 'b0')).state);
});

test('push: SIGSTOP of the agent (a hang) → down within 1 s; SIGCONT → up', async (t) => {
  const { d, agents } = await startCluster(t, { nodes: [{ id: 'b0', agent: 1 }] });
  const agent = agents.get('b0')!.proc.child;

  const mark = d.transitions.length;
  const faultAt = Date.now();
  agent.kill('SIGSTOP');
  const down = await d.waitForTransition({ backend: 'b0', to: 'down' }, mark, DETECT_BOUND_MS + 2000);
  assertSilenceDetected(down.reason, N);
  assert.ok(down.time - faultAt < DETECT_BOUND_MS, `down ${down.time - faultAt} ms after SIGSTOP`);

  const back = d.transitions.length;
  const contAt = Date.now();
  agent.kill('SIGCONT');
  const up = await d.waitForTransition({ backend: 'b0', to: 'up' }, back, RECOVER_BOUND_MS);
  assert.equal(up.reason, 'heartbeat');
  assert.ok(up.time - contAt < DETECT_BOUND_MS, `up ${up.time - contAt} ms after SIGCONT: the resumed agent's next heartbeat`);
  assert.equal(agent.exitCode, null, 'the agent survived its hang');
});

test('push: a link cut by nftables (UDP to the monitor port dropped, in a netns) → down; rule deleted → up', async (t) => {
  const ns = await newNetns(t);
  if (typeof ns !== 'string') {
    t.skip(ns.skip);
    return;
  }
  const { d, monitor } = await startCluster(t, { nodes: [{ id: 'b0', agent: 1 }], netns: ns });
  const monitorPort = monitor.slice(monitor.lastIndexOf(':') + 1);
  await nft(ns, 'add', 'table', 'inet', 'hfcut');
  await nft(ns, 'add chain inet hfcut input { type filter hook input priority 0 ; policy accept ; }');
  const lostBefore = metricValue(await d.metrics(), 'holdfast_heartbeats_lost_total', { backend: 'b0' });

  const mark = d.transitions.length;
  const cutAt = Date.now();
  await nft(ns, 'add', 'rule', 'inet', 'hfcut', 'input', 'udp', 'dport', monitorPort, 'drop');
  const down = await d.waitForTransition({ backend: 'b0', to: 'down' }, mark, DETECT_BOUND_MS + 2000);
  assertSilenceDetected(down.reason, N);
  assert.ok(down.time - cutAt < DETECT_BOUND_MS, `down ${down.time - cutAt} ms after the cut`);
  // The processes never stopped: only the link did.
  const cutFor = 200;
  await sleep(cutFor);
  assert.equal(d.transitions.slice(mark).filter((x) => x.backend === 'b0' && x.to === 'up').length, 0, 'no heartbeat crosses the cut');

  const back = d.transitions.length;
  await nft(ns, 'flush', 'chain', 'inet', 'hfcut', 'input');
  const up = await d.waitForTransition({ backend: 'b0', to: 'up' }, back, DETECT_BOUND_MS + 2000);
  assert.equal(up.reason, 'heartbeat');
  // Heartbeats sent into the cut show as a gap in Seq_Nber: counted as lost.
  const lost = metricValue(await d.metrics(), 'holdfast_heartbeats_lost_total', { backend: 'b0' }) - lostBefore;
  assert.ok(lost >= (down.time - cutAt + cutFor) / DELTA_MS / 2, `${lost} heartbeats counted lost over a cut of > ${down.time - cutAt + cutFor} ms`);
  assert.equal((await d.backend('web', 'b0')).lostHeartbeats, lostBefore + lost);
});

test('push: 5 % random loss on the heartbeat path (nftables numgen, in a netns) → losses counted from the sequence gaps, suspect at most, never down at n = 10', async (t) => {
  const ns = await newNetns(t);
  if (typeof ns !== 'string') {
    t.skip(ns.skip);
    return;
  }
  const { d, monitor } = await startCluster(t, { nodes: [{ id: 'b0', agent: 1 }], netns: ns, n: N_CALM });
  const monitorPort = monitor.slice(monitor.lastIndexOf(':') + 1);
  await nft(ns, 'add', 'table', 'inet', 'hfloss');
  await nft(ns, 'add chain inet hfloss input { type filter hook input priority 0 ; policy accept ; }');
  const lostBefore = metricValue(await d.metrics(), 'holdfast_heartbeats_lost_total', { backend: 'b0' });
  const mark = d.transitions.length;
  await nft(ns, 'add', 'rule', 'inet', 'hfloss', 'input', 'udp', 'dport', monitorPort, 'numgen', 'random', 'mod', '100', '<', '5', 'counter', 'drop');
  const LOSS_FOR_MS = 3_000;
  await sleep(LOSS_FOR_MS);
  const listed = await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'inet', 'hfloss']);
  await nft(ns, 'flush', 'chain', 'inet', 'hfloss', 'input');
  const dropped = Number(/counter packets (\d+)/.exec(listed.stdout)?.[1] ?? 0);
  // The agent also sends load vectors to the same port: the rule drops some of those too.
  await sleep(5 * DELTA_MS);
  const lost = metricValue(await d.metrics(), 'holdfast_heartbeats_lost_total', { backend: 'b0' }) - lostBefore;
  t.diagnostic(`${LOSS_FOR_MS} ms of 5 % loss at delta ${DELTA_MS} ms: ${dropped} datagrams dropped by nft, ${lost} heartbeats counted lost`);
  assert.ok(dropped > 0, 'the rule dropped datagrams');
  assert.ok(lost > 0 && lost <= dropped, `${lost} lost heartbeats counted for ${dropped} dropped datagrams`);
  // A single lost heartbeat makes the backend suspect (1.5 delta); it is never taken down.
  const suspects = d.transitions.slice(mark).filter((x) => x.backend === 'b0' && x.to === 'suspect').length;
  t.diagnostic(`${suspects} up → suspect → up round trips`);
  assert.deepEqual(d.transitions.slice(mark).filter((x) => x.backend === 'b0' && x.to === 'down'), [], 'no down under 5 % loss at n = 10');
  assert.equal((await d.backend('web', 'b0')).state, 'up');
});

test('watchdog: the server dies under a live agent → "application unavailable" → down; server back → up', async (t) => {
  const WATCHDOG_PERIOD_MS = 50;
  const { d, backends, agents } = await startCluster(t, {
    nodes: [{ id: 'b0', agent: 1 }],
    watchdog: `{ type: http, url: "{url}", periodMs: ${WATCHDOG_PERIOD_MS}, timeoutMs: 40, failures: 1 }`,
  });

  const mark = d.transitions.length;
  const faultAt = Date.now();
  backends.get('b0')!.proc.child.kill('SIGKILL');
  const down = await d.waitForTransition({ backend: 'b0', to: 'down' }, mark, DETECT_BOUND_MS + 2000);
  assert.equal(down.reason, 'application unavailable', 'the agent announced it (flag 2); its heartbeats never stopped');
  assert.ok(down.time - faultAt < DETECT_BOUND_MS, `down ${down.time - faultAt} ms after the server died`);
  // Heartbeats keep coming (flag 2): the backend stays down, it does not flap back up.
  const afterDown = d.transitions.indexOf(down) + 1;
  await sleep(5 * WATCHDOG_PERIOD_MS);
  assert.deepEqual(d.transitions.slice(afterDown), [], 'down for as long as the application is');
  assert.equal(agents.get('b0')!.proc.child.exitCode, null, 'the agent keeps running');

  const back = d.transitions.length;
  const restartAt = Date.now();
  await backends.get('b0')!.restart();
  const up = await d.waitForTransition({ backend: 'b0', to: 'up' }, back, RECOVER_BOUND_MS);
  assert.equal(up.reason, 'heartbeat');
  assert.ok(up.time - restartAt < RECOVER_BOUND_MS, `up ${up.time - restartAt} ms after the restart`);
});

test('planned failure: `holdfast agent drain` → draining, new requests go elsewhere, the agent exits once idle', async (t) => {
  const DEADLINE_MS = 20_000;
  const { d, agents, web } = await startCluster(t, {
    nodes: [
      { id: 'b0', agent: 1 },
      { id: 'b1', agent: 2 },
    ],
    n: N_CALM,
    agentExtra: `drain: { port: {port}, deadlineMs: ${DEADLINE_MS} }`,
  });
  const answered = async (count: number): Promise<Record<string, number>> => {
    const by: Record<string, number> = {};
    for (let i = 0; i < count; i++) {
      const r = await get(`http://${web}/`);
      assert.equal(r.status, 200, `request ${i}: ${r.status} ${r.body}`);
      by[r.body] = (by[r.body] ?? 0) + 1;
    }
    return by;
  };
  const before = await answered(10);
  assert.deepEqual(Object.keys(before).sort(), ['b0', 'b1'], `round robin over both before the drain: ${JSON.stringify(before)}`);

  const agent = agents.get('b0')!;
  const mark = d.transitions.length;
  const drained = await run(process.execPath, [`${ROOT}bin/holdfast.js`, 'agent', 'drain', '--config', agent.file], 10_000);
  assert.equal(drained.code, 0, `agent drain: ${drained.stderr}`);
  const draining = await d.waitForTransition({ backend: 'b0', to: 'draining' }, mark, DETECT_BOUND_MS + 2000);
  assert.match(draining.reason, /^planned failure at \d{4}-\d\d-\d\dT/);

  assert.deepEqual(await answered(20), { b1: 20 }, 'no new request reaches the draining backend');
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([agent.proc.exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), DEADLINE_MS / 2)))]);
  clearTimeout(timer);
  assert.ok(exit, `the drained agent did not exit within ${DEADLINE_MS / 2} ms; output:\n${agent.proc.output()}`);
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.match(agent.proc.output(), /holdfast agent stopped \(idle\)/, 'it left because the node was idle, not at the deadline');
  // Its heartbeats ended with it: the node is gone.
  const gone = await d.waitForTransition({ backend: 'b0', to: 'down' }, mark, DETECT_BOUND_MS + 2000);
  assertSilenceDetected(gone.reason, N_CALM);
  assertAlive((await d.backend('web', 'b1')).state);
});

test('forged, replayed, truncated and unknown-host messages are dropped and counted by reason; the backend state does not move', async (t) => {
  const capture = await captureSocket(t);
  const { c, d, agents, monitor } = await startCluster(t, { nodes: [{ id: 'b0', agent: 1 }], n: N_CALM, alsoSendTo: capture.address });
  const wrongKey = randomBytes(32);
  const availability = (a: Partial<Availability>, key: Buffer): Buffer =>
    seal(MessageType.Availability, encodeAvailability({ host: 1, seq: 1_000_000, flag: 'available', timestamp: wireTimestamp(Date.now()), ...a }), key);
  const dropped = async (): Promise<Record<string, number>> => {
    const text = await d.metrics();
    const by: Record<string, number> = {};
    for (const reason of ['bad-mac', 'truncated', 'malformed', 'unknown-host', 'replay', 'stale']) {
      by[reason] = metricValue(text, 'holdfast_wire_dropped_total', { source: 'monitor', reason });
    }
    return by;
  };
  const grew = (before: Record<string, number>, after: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.keys(after).map((k) => [k, after[k]! - before[k]!]));

  // While up: forged "application unavailable" (wrong key), truncated copies of real heartbeats,
  // authentic but malformed bodies, and well-sealed messages from a Host_Identity no backend has.
  const heartbeats = (): Buffer[] => capture.messages.filter((m) => m.length === 28 && open(m, c.key).ok);
  for (let waited = 0; heartbeats().length < 25; waited += DELTA_MS) {
    assert.ok(waited < RECOVER_BOUND_MS, `${heartbeats().length} real heartbeats captured in ${waited} ms`);
    await sleep(DELTA_MS);
  }
  const captured = heartbeats();
  let before = await dropped();
  let mark = d.transitions.length;
  await sendDatagrams(monitor, [
    ...Array.from({ length: 10 }, (_, i) => availability({ flag: 'app-unavailable', seq: 1_000_000 + i }, wrongKey)),
    // Shorter than version byte + tag: 'truncated' (a longer cut fails the MAC).
    ...captured.slice(0, 5).map((m) => m.subarray(0, 16)),
    // Authentic, but a body no availability decoder accepts.
    ...Array.from({ length: 3 }, () => seal(MessageType.Availability, Buffer.alloc(5), c.key)),
    ...Array.from({ length: 5 }, (_, i) => availability({ host: 999, flag: 'app-unavailable', seq: i }, c.key)),
  ]);
  await sleep(300);
  assert.deepEqual(grew(before, await dropped()), { 'bad-mac': 10, truncated: 5, malformed: 3, 'unknown-host': 5, replay: 0, stale: 0 });
  // A heartbeat late by half an interval on this busy machine may blip it to suspect and back; a
  // forged message getting through would make it down ("application unavailable").
  assert.deepEqual(
    d.transitions.slice(mark).filter((x) => x.to !== 'suspect' && !(x.to === 'up' && x.from === 'suspect')),
    [],
    'no transition but jitter while forged messages arrived',
  );
  assertAlive((await d.backend('web', 'b0')).state);

  // Down (agent killed): replayed real "available" heartbeats and forged ones do not revive it.
  mark = d.transitions.length;
  agents.get('b0')!.proc.child.kill('SIGKILL');
  await d.waitForTransition({ backend: 'b0', to: 'down' }, mark, DETECT_BOUND_MS + 2000);
  const replays = heartbeats().slice(-20);
  before = await dropped();
  mark = d.transitions.length;
  await sendDatagrams(monitor, [...replays, ...Array.from({ length: 10 }, (_, i) => availability({ seq: 2_000_000 + i }, wrongKey))]);
  await sleep(300);
  const after = grew(before, await dropped());
  assert.equal(after.replay! + after.stale!, replays.length, `every replayed heartbeat dropped as replay or stale: ${JSON.stringify(after)}`);
  assert.ok(after.replay! > 0, 'captured seconds ago: replays, not merely stale');
  assert.equal(after['bad-mac'], 10);
  assert.deepEqual(d.transitions.slice(mark), [], 'the backend stayed down');
  assert.equal((await d.backend('web', 'b0')).state, 'down');
});

test('load vectors reach the dispatcher; shell sends new requests away from the backend reporting high load', async (t) => {
  // The agent fetches the backlog with a timeout of one interval, and a fetch that fails leaves the
  // load at 0 for that vector: 250 ms leaves room for a busy machine.
  const LOAD_INTERVAL_MS = 250;
  const { d, web } = await startCluster(t, {
    nodes: [
      { id: 'b0', agent: 1, backlog: 90 },
      { id: 'b1', agent: 2, backlog: 10 },
    ],
    n: N_CALM,
    balancer: 'shell',
    loadIntervalMs: LOAD_INTERVAL_MS,
    // Only the application's backlog counts, so the two nodes of one machine report different loads.
    agentExtra: `load:
  weights: { cpu: 0, memory: 0, network: 0, io: 0, backlog: 1 }
  statsUrl: "http://127.0.0.1:{port}/stats"
  backlogCapacity: 100`,
  });
  const near = (x: number | undefined, want: number): boolean => x !== undefined && Math.abs(x - want) < 0.01;
  const deadline = Date.now() + RECOVER_BOUND_MS;
  let status = await d.status();
  for (;;) {
    const [b0, b1] = status.services[0]!.backends;
    if (near(b0?.load, 0.9) && near(b1?.load, 0.1) && near(b0?.forecast, 0.9) && near(b1?.forecast, 0.1)) break;
    assert.ok(Date.now() < deadline, `loads 0.9 / 0.1 not in the status within ${RECOVER_BOUND_MS} ms: ${JSON.stringify(status.services[0])}`);
    await sleep(LOAD_INTERVAL_MS);
    status = await d.status();
  }
  const svc = status.services[0]!;
  assert.ok(svc.clusterLoad > 0.1 && svc.clusterLoad < 0.9, `cluster load ${svc.clusterLoad} lies between the two loads`);
  const metrics = await d.metrics();
  assert.ok(Math.abs(metricValue(metrics, 'holdfast_backend_load', { backend: 'b0' }) - 0.9) < 0.01, 'the load gauge too');

  const by: Record<string, number> = {};
  for (let i = 0; i < 30; i++) {
    const r = await get(`http://${web}/`);
    assert.equal(r.status, 200);
    by[r.body] = (by[r.body] ?? 0) + 1;
  }
  assert.ok(
    (by.b0 ?? 0) < (by.b1 ?? 0) && (by.b0 ?? 0) <= 3,
    `30 requests: ${JSON.stringify(by)}; the loaded b0 gets fewer. Now: ${JSON.stringify((await d.status()).services[0]!.backends)}, ` +
      `failed load monitors ${metricValue(await d.metrics(), 'holdfast_load_monitor_failures_total')}`,
  );
});
