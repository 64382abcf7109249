/**
 * @module The election across real processes (test/fixtures/election-node.ts, one per dispatcher),
 * real UDP on loopback, the cluster key from the environment, and a loopback VIP whose UDP listener
 * answers with the id of the node holding it: SIGKILL of the master, a SIGSTOP/SIGCONT partition
 * that heals, a planned switchover by priority 0, preempt off then on.
 *
 * Correctness tests, not measurements (bench/election.ts measures): the measured takeover times are
 * printed as diagnostics, and the bounds asserted are generous for two cores shared with other test
 * files. Tests that check a sequence of states use 50 ms adverts (master down after ~180 ms), so a
 * scheduling hiccup of the shared machine cannot fake a master failure under them.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { masterDownMs } from '../../src/replication/election.js';
import { ElectionNode, VipProber, freeUdpPort, newKeyHex, type NodeSpec } from '../../bench/lib/election-node.js';

/** The issue's advertisement interval, for the takeover test. */
const FAST_MS = 20;
/** For the tests about sequences of states (see the module comment). */
const CALM_MS = 50;
/** A takeover is 3 intervals + skew; this much more is allowed for a busy machine. */
const MARGIN_MS = 1000;
const START_MS = 15_000;
/** How long "nothing changes any more" is watched. */
const QUIET_MS = 1000;
const GROUP_ID = 7;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A VIP of this test file's own in 127/8 and a port free on it. */
async function vip(): Promise<{ host: string; port: number }> {
  const host = `127.88.${1 + (process.pid % 250)}.${1 + Math.floor(Math.random() * 250)}`;
  return { host, port: await freeUdpPort(host) };
}

/**
 * Starts one process per spec, all peers of each other; everything is killed when the test ends.
 * `firstAlone`: the first node is master before the others start (a newcomer joining a live group).
 */
async function group(
  t: TestContext,
  specs: ReadonlyArray<{ node: number; priority: number; preempt?: boolean }>,
  intervalMs: number,
  at?: { host: string; port: number },
  firstAlone = false,
): Promise<ElectionNode[]> {
  const key = newKeyHex();
  const ports = await Promise.all(specs.map(() => freeUdpPort()));
  const nodes: ElectionNode[] = [];
  t.after(() => Promise.all(nodes.map((n) => n.stop())));
  for (const [i, s] of specs.entries()) {
    const spec: NodeSpec = {
      node: s.node,
      groupId: GROUP_ID,
      priority: s.priority,
      intervalMs,
      preempt: s.preempt ?? true,
      listen: `127.0.0.1:${ports[i]}`,
      peers: ports.filter((_, j) => j !== i).map((p) => `127.0.0.1:${p}`),
      ...(at ? { vip: `${at.host}:${at.port}` } : {}),
    };
    nodes.push(await ElectionNode.start(spec, key));
    if (firstAlone && i === 0) await nodes[0]!.waitState('master', 0, START_MS);
  }
  return nodes;
}

/** Resolves once `node` is master and every other node has heard its adverts at that epoch. */
async function settled(master: ElectionNode, others: readonly ElectionNode[], timeoutMs = START_MS): Promise<number> {
  const m = await master.waitState('master', 0, timeoutMs);
  for (const o of others) {
    await o.waitFor((e) => e.event === 'heard' && e.sender === master.id && e.epoch === m.epoch, 0, timeoutMs, `advert of ${master.id} at epoch ${m.epoch}`);
  }
  return m.epoch;
}

function masters(nodes: readonly ElectionNode[]): number[] {
  return nodes.filter((n) => n.state === 'master').map((n) => n.id);
}

/** Watches QUIET_MS: no node changes state meanwhile. */
async function assertQuiet(nodes: readonly ElectionNode[], label: string): Promise<void> {
  const marks = nodes.map((n) => n.states().length);
  await sleep(QUIET_MS);
  nodes.forEach((n, i) => assert.equal(n.states().length, marks[i], `${label}: node ${n.id} changed state: ${JSON.stringify(n.states(marks[i]))}`));
}

test('SIGKILL of the master: the best backup takes over within 3 x interval + skew (+ margin), with the next epoch and the VIP', async (t) => {
  const at = await vip();
  const [a, b, c] = (await group(
    t,
    [
      { node: 1, priority: 200 },
      { node: 2, priority: 150 },
      { node: 3, priority: 100 },
    ],
    FAST_MS,
    at,
  )) as [ElectionNode, ElectionNode, ElectionNode];
  await settled(a, [b, c]);
  const prober = await VipProber.start(at);
  t.after(() => prober.close());
  assert.ok(await prober.waitAnswer(1, 0, START_MS), 'the master answers on the VIP');
  // A starved machine can move the VIP for a moment even at rest (20 ms adverts: 68 ms of silence
  // suffice); A, the highest priority, takes it back. Kill it while it holds it, at its epoch then.
  await a.waitFor((e) => e.event === 'state' && a.state === 'master', 0, START_MS, 'master state');
  const epoch = a.states().at(-1)!.epoch;

  const marks = [b.events.length, c.events.length] as const;
  const killedAt = a.signal('SIGKILL');
  const bound = masterDownMs(150, FAST_MS);
  // The first takeover after the kill, by either backup (B's shorter skew wins unless B is starved).
  const deadline = Date.now() + bound + MARGIN_MS;
  let first: { node: number; wall: number; epoch: number; reason: string } | undefined;
  while (first === undefined && Date.now() < deadline) {
    const ups = [b.states(marks[0]).find((s) => s.type === 'master'), c.states(marks[1]).find((s) => s.type === 'master')]
      .map((s, i) => (s ? { node: i + 2, wall: s.wall, epoch: s.epoch, reason: s.reason } : undefined))
      .filter((s) => s !== undefined);
    first = ups.sort((x, y) => x.wall - y.wall)[0];
    if (first === undefined) await sleep(2);
  }
  assert.ok(first, `no takeover within ${bound + MARGIN_MS} ms of the kill`);
  const tookMs = first.wall - killedAt;
  const answered = await prober.waitAnswer(2, killedAt, MARGIN_MS);
  t.diagnostic(
    `takeover by node ${first.node} ${tookMs.toFixed(1)} ms after SIGKILL (Master_Down_Interval ${bound} ms, 20 ms adverts); ` +
      `first VIP answer from node 2 ${answered === null ? 'none' : `${(answered - killedAt).toFixed(1)} ms`}`,
  );
  assert.ok(tookMs > 0 && tookMs < bound + MARGIN_MS, `takeover ${tookMs} ms`);
  assert.equal(first.epoch, epoch + 1, 'the first new master takes the next epoch');
  assert.equal(first.reason, 'master-down');
  assert.ok(answered !== null, 'the new master answers on the VIP');
  // B ends up master (preempting node 3 if node 3 was first), node 3 backup.
  await b.waitFor((e) => e.event === 'state' && b.state === 'master', marks[0], MARGIN_MS, 'master state');
  await sleep(200);
  assert.deepEqual(masters([b, c]), [2]);
  assert.equal(c.state, 'backup');
});

test('SIGSTOP of the master, then SIGCONT (a partition that heals): exactly one master afterwards, no flapping, the VIP follows', async (t) => {
  const at = await vip();
  const [a, b] = (await group(
    t,
    [
      { node: 1, priority: 200 },
      { node: 2, priority: 100 },
    ],
    CALM_MS,
    at,
  )) as [ElectionNode, ElectionNode];
  const epoch = await settled(a, [b]);
  const prober = await VipProber.start(at, 2);
  t.after(() => prober.close());

  const markA = a.events.length;
  const markB = b.events.length;
  a.signal('SIGSTOP');
  const bUp = await b.waitState('master', markB, masterDownMs(100, CALM_MS) + MARGIN_MS);
  assert.equal(bUp.epoch, epoch + 1);
  // Both believe they are master now; A, stopped, still holds the VIP's port, so B waits for it.
  await sleep(300);
  const healedAt = a.signal('SIGCONT');
  // A hears epoch + 1 and steps down at once, then (priority 200, preempt) takes the VIP back at epoch + 2.
  const aDown = await a.waitState('backup', markA, MARGIN_MS);
  assert.equal(aDown.reason, 'higher-epoch');
  const aUp = await a.waitState('master', markA, masterDownMs(200, CALM_MS) + MARGIN_MS);
  assert.equal(aUp.reason, 'preempt');
  assert.equal(aUp.epoch, epoch + 2);
  const bDown = await b.waitState('backup', markB, MARGIN_MS);
  assert.equal(bDown.reason, 'higher-epoch');
  const convergedMs = Math.max(aUp.wall, bDown.wall) - healedAt;
  t.diagnostic(`one master ${convergedMs.toFixed(1)} ms after SIGCONT (50 ms adverts; bound (N + 1) x 4 intervals = ${3 * 4 * CALM_MS} ms)`);
  assert.ok(convergedMs < 3 * 4 * CALM_MS + MARGIN_MS, `converged in ${convergedMs} ms`);
  await assertQuiet([a, b], 'after the heal');
  assert.deepEqual(masters([a, b]), [1]);
  assert.ok(await prober.waitAnswer(1, aUp.wall, MARGIN_MS), 'the VIP answers from A again');
  // Exactly the transitions the rules predict, nothing more.
  assert.deepEqual(
    a.states(markA).map((s) => `${s.type}:${s.reason}`),
    ['backup:higher-epoch', 'master:preempt'],
  );
  assert.deepEqual(
    b.states(markB).map((s) => `${s.type}:${s.reason}`),
    ['master:master-down', 'backup:higher-epoch'],
  );
});

test('planned switchover: the master advertises priority 0 and the backup takes over after its skew, not a master-down interval', async (t) => {
  const [a, b] = (await group(
    t,
    [
      { node: 1, priority: 200 },
      { node: 2, priority: 100 },
    ],
    CALM_MS,
  )) as [ElectionNode, ElectionNode];
  const epoch = await settled(a, [b]);
  const markA = a.events.length;
  const markB = b.events.length;
  const resignedAt = a.signal('SIGUSR1');
  const down = await a.waitState('backup', markA, MARGIN_MS);
  assert.equal(down.reason, 'resigned');
  const up = await b.waitState('master', markB, masterDownMs(100, CALM_MS) + MARGIN_MS);
  assert.equal(up.reason, 'master-resigned');
  assert.equal(up.epoch, epoch + 1);
  t.diagnostic(
    `switchover ${(up.wall - resignedAt).toFixed(1)} ms after the resign signal (skew ${((156 * CALM_MS) / 256).toFixed(1)} ms; ` +
      `master down would be ${masterDownMs(100, CALM_MS)} ms)`,
  );
  // A no longer preempts: B keeps the VIP although A has the higher priority.
  await assertQuiet([a, b], 'after the switchover');
  assert.deepEqual(masters([a, b]), [2]);
});

test('preempt off: a higher-priority newcomer stays backup; turned on, it takes over and the old master steps down on the epoch', async (t) => {
  const [a, b] = (await group(
    t,
    [
      { node: 1, priority: 100 },
      { node: 2, priority: 200, preempt: false },
    ],
    CALM_MS,
    undefined,
    true,
  )) as [ElectionNode, ElectionNode];
  await settled(a, [b]);
  const markA = a.events.length;
  const markB = b.events.length;
  await assertQuiet([a, b], 'preempt off');
  assert.deepEqual(masters([a, b]), [1]);
  assert.equal(b.states(markB).length, 0);

  const onAt = b.signal('SIGUSR2');
  const up = await b.waitState('master', markB, masterDownMs(200, CALM_MS) + MARGIN_MS);
  assert.equal(up.reason, 'preempt');
  const down = await a.waitState('backup', markA, MARGIN_MS);
  assert.equal(down.reason, 'higher-epoch');
  t.diagnostic(`preempted ${(up.wall - onAt).toFixed(1)} ms after preempt was turned on (master down ${masterDownMs(200, CALM_MS)} ms)`);
  await assertQuiet([a, b], 'after preemption');
  assert.deepEqual(masters([a, b]), [2]);
});
