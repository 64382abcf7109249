/**
 * @module The replicated dispatcher end to end, loopback takeover (issue 7): two real `holdfast
 * dispatcher` processes in one election group whose VIP (a random 127/8 address) carries a SIP UDP
 * service in front of three sipp uas backends (uas-481: a BYE that lands on the wrong backend
 * fails); a sipp uac calls the VIP. SIGKILL of the master → the backup binds the VIP and serves the
 * calls; one master at a time (the VIP-held intervals of the two processes never overlap); the
 * killed dispatcher restarted rejoins as backup and, with preemption and a higher priority, takes
 * the VIP back.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { haConfig, startHaDispatcher, type GroupEvent, type HaDispatcher } from '../../bench/lib/ha-cluster.js';
import { makeTempDir, removeTempDir, which } from '../../bench/lib/procs.js';
import { startUasPool } from '../helpers/sip-backends.js';
import { describeResult, fixture, freeSipPort, freeSipPorts, startUac } from '../helpers/sipp.js';

const SIPP = which('sipp');


interface Pair {
  vip: string;
  sipPort: number;
  config(id: number, priority: number, preempt: boolean): string;
  start(name: string, id: number, priority: number, preempt: boolean): Promise<HaDispatcher>;
}

async function pair(t: TestContext, backends: number[]): Promise<Pair> {
  const vip = `127.${randomInt(64, 250)}.${randomInt(1, 250)}.${randomInt(2, 250)}`;
  const sipPort = await freeSipPort(vip);
  // Election sockets are UDP, state replication TCP on the same number: both must be free.
  const election = await freeSipPorts(2);
  const dir = makeTempDir('holdfast-ha');
  const key = randomBytes(32);
  const procs: HaDispatcher[] = [];
  t.after(async () => {
    await Promise.all(procs.map((p) => p.proc.stop()));
    removeTempDir(dir);
  });
  const config = (id: number, priority: number, preempt: boolean): string =>
    haConfig({
      id,
      priority,
      preempt,
      listen: `127.0.0.1:${election[id - 1]}`,
      peers: [`127.0.0.1:${election[2 - id]}`],
      vip,
      services: [
        {
          name: 'sip',
          protocol: 'sip',
          listen: `${vip}:${sipPort}`,
          sip: { transports: ['udp'] },
          health: { probe: { type: 'udp' } },
          backends: backends.map((port, i) => ({ id: `uas${i}`, address: `127.0.0.1:${port}` })),
        },
      ],
    });
  return {
    vip,
    sipPort,
    config,
    async start(name, id, priority, preempt) {
      const d = await startHaDispatcher({ name, id, dir, key, config: config(id, priority, preempt) });
      procs.push(d);
      return d;
    },
  };
}

/** [taken, released) intervals of the VIP from one dispatcher's log (pino time, ms); open ones end at `end`. */
function heldIntervals(events: readonly GroupEvent[], end: number): [number, number][] {
  const out: [number, number][] = [];
  let from: number | null = null;
  for (const e of events) {
    if (e.what === 'taken' && from === null) from = e.time;
    if (e.what === 'released' && from !== null) {
      out.push([from, e.time]);
      from = null;
    }
  }
  if (from !== null) out.push([from, end]);
  return out;
}

/**
 * One VIP holder at a time. The kernel enforces it (one bind of VIP:port); the log shows it up to
 * the log lines' own lag: "released" is written after the socket closed, "taken" after the bind,
 * so an overlap of a couple of ms is the order of the two writes, not two holders.
 */
const LOG_SLACK_MS = 3;
function assertOneHolder(a: HaDispatcher, b: HaDispatcher): void {
  const end = Date.now();
  for (const [s1, e1] of heldIntervals(a.events, end)) {
    for (const [s2, e2] of heldIntervals(b.events, end)) {
      const overlap = Math.min(e1, e2) - Math.max(s1, s2);
      assert.ok(overlap <= LOG_SLACK_MS, `both held the VIP for ${overlap} ms: a ${JSON.stringify(a.events)} b ${JSON.stringify(b.events)}`);
    }
  }
}

test('SIGKILL of the master: the backup takes the VIP and serves the calls; the restarted one rejoins and takes it back', { skip: SIPP ? false : 'sipp is not installed', timeout: 90_000 }, async (t) => {
  const uas = await startUasPool(t, 3, { transport: 'udp', scenario: fixture('uas-481.xml') });
  const p = await pair(t, uas.map((u) => u.port));

  let a = await p.start('dispatcher-a', 1, 200, true);
  await a.waitFor('taken', 0, 5_000);
  const b = await p.start('dispatcher-b', 2, 100, true);
  await b.waitFor('backup', 0, 5_000);
  // Several Master_Down_Intervals (≈ 70 ms): B hears A and stays backup.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(b.state(), 'backup');
  assert.equal(b.events.filter((e) => e.what === 'taken').length, 0);

  // Long calls through the VIP: 20 calls/s for 3 s, 4 s each.
  const uac = await startUac({ t, target: `${p.vip}:${p.sipPort}`, transport: 'udp', calls: 60, rate: 20, callLengthMs: 4_000, timeoutS: 40, statPeriodMs: 100 });
  await new Promise((r) => setTimeout(r, 1_500));
  const before = uac.stats();
  const killedAt = Date.now();
  await a.kill('SIGKILL');
  const taken = await b.waitFor('taken', 0, 5_000);
  const master = b.events.find((e) => e.what === 'master')!;
  assert.equal(master.reason, 'master-down');
  assert.ok(taken.seenAt - killedAt < 2_000, `takeover took ${taken.seenAt - killedAt} ms`);
  const activeAtKill = before?.currentCalls ?? 0;
  assert.ok(activeAtKill > 0, 'calls were in progress at the kill');

  const r = await uac.done;
  if (r.failed > 0) t.diagnostic(b.proc.output().split('\n').filter((l) => /synced|group|error|warn/i.test(l)).slice(-8).join('\n'));
  t.diagnostic(`active at kill ${activeAtKill}, takeover seen ${taken.seenAt - killedAt} ms after the kill; ${describeResult(r).split('\n')[0]}`);
  assert.equal(r.created, 60, describeResult(r));
  // Calls started after the takeover all complete; those in progress at the kill complete too
  // when their state was replicated, else at most they fail.
  assert.ok(r.failed <= activeAtKill + 2, describeResult(r));
  assert.ok(r.successful >= 60 - activeAtKill - 2, describeResult(r));
  assert.equal(r.failed, 0, describeResult(r));

  // Restart A: it rejoins as backup, then preempts B (higher priority, preempt on).
  const from = b.events.length;
  a = await p.start('dispatcher-a2', 1, 200, true);
  const joined = a.events.find((e) => e.what === 'backup');
  assert.equal(joined?.reason, 'startup');
  const back = await a.waitFor('taken', 0, 5_000);
  const aMaster = a.events.find((e) => e.what === 'master')!;
  assert.equal(aMaster.reason, 'preempt');
  assert.ok(aMaster.epoch! > master.epoch!, `epoch grows: ${aMaster.epoch} after ${master.epoch}`);
  await b.waitFor('released', from, 5_000);
  assert.equal(b.state(), 'backup');
  assert.ok(back.time >= killedAt);
  assertOneHolder(a, b);

  // The VIP answers through A now: a short run of calls completes.
  const r2 = await (await startUac({ t, target: `${p.vip}:${p.sipPort}`, transport: 'udp', calls: 10, rate: 10, callLengthMs: 200, timeoutS: 30 })).done;
  assert.equal(r2.successful, 10, describeResult(r2));
  const st = await a.status();
  assert.deepEqual(
    st.groups?.map((g) => [g.name, g.state, g.vipHeld]),
    [['vip', 'master', true]],
  );
  const sb = await b.status();
  assert.deepEqual(
    sb.groups?.map((g) => [g.name, g.state, g.vipHeld, g.master]),
    [['vip', 'backup', false, 1]],
  );
});

test('a planned stop (SIGTERM) of the master hands the VIP over after Skew_Time, no calls lost between', { skip: SIPP ? false : 'sipp is not installed', timeout: 60_000 }, async (t) => {
  const uas = await startUasPool(t, 3, { transport: 'udp', scenario: fixture('uas-481.xml') });
  const p = await pair(t, uas.map((u) => u.port));
  const a = await p.start('dispatcher-a', 1, 200, false);
  await a.waitFor('taken', 0, 5_000);
  const b = await p.start('dispatcher-b', 2, 100, false);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(b.state(), 'backup');
  await a.kill('SIGTERM');
  const m = await b.waitFor('master', 0, 5_000);
  assert.equal(m.reason, 'master-resigned');
  await b.waitFor('taken', 0, 5_000);
  assertOneHolder(a, b);
  const r = await (await startUac({ t, target: `${p.vip}:${p.sipPort}`, transport: 'udp', calls: 10, rate: 10, callLengthMs: 200, timeoutS: 30 })).done;
  assert.equal(r.successful, 10, describeResult(r));
});
