/**
 * Planned switchover of a VIP through the admin API (issue 14), on a real demo cluster (two
 * dispatchers, one loopback VIP): the master's POST /api/v1/groups/{group}/switchover hands the VIP
 * to the backup, which serves the traffic from then on; the resigned dispatcher does not take it
 * back (preemption off); asking a backup is 409, an unknown group 404.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import type { GroupStatus } from '../../src/admin/status.js';
import { DEMO_GROUP, runDemo } from '../../src/demo/demo.js';
import { freeDemoPortBase } from '../helpers/demo-ports.js';



async function until(what: string, ok: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`${what}: not within ${timeoutMs} ms`);
}

test('switchover: the master hands the VIP to the backup and does not take it back; a backup answers 409, an unknown group 404', { timeout: 60_000 }, async (t) => {
  const vip = `127.${randomInt(64, 250)}.${randomInt(1, 250)}.${randomInt(2, 250)}`;
  const base = await freeDemoPortBase(vip);
  const lines: string[] = [];
  const controller = new AbortController();
  const demo = runDemo({ portBase: base, vip, trafficIntervalMs: 200, signal: controller.signal, out: (l) => lines.push(l) });
  t.after(async () => {
    controller.abort();
    await demo;
  });
  const admin = (i: 1 | 2) => `http://127.0.0.1:${base + i}/api/v1`;
  const role = async (i: 1 | 2): Promise<GroupStatus | undefined> => {
    try {
      return ((await (await fetch(`${admin(i)}/groups`)).json()) as GroupStatus[]).find((g) => g.name === DEMO_GROUP);
    } catch {
      return undefined;
    }
  };
  await until('dispatcher 1 master with the VIP', async () => (await role(1))?.vipHeld === true, 15_000);

  // The replication counters of a replicated dispatcher: its election transport at least.
  const replication = (await (await fetch(`${admin(1)}/replication`)).json()) as { transports: unknown[]; replicators: unknown[] };
  assert.ok(replication.transports.length >= 1, JSON.stringify(replication));

  const fromBackup = await fetch(`${admin(2)}/groups/${DEMO_GROUP}/switchover`, { method: 'POST' });
  assert.equal(fromBackup.status, 409);
  assert.equal(((await fromBackup.json()) as { issues: { path: string }[] }).issues[0]!.path, 'path.group');
  assert.equal((await fetch(`${admin(1)}/groups/nope/switchover`, { method: 'POST' })).status, 404);
  assert.equal((await fetch(`${admin(1)}/groups/${DEMO_GROUP}/switchover`, { method: 'POST', body: '{"now":1}' })).status, 400);

  const res = await fetch(`${admin(1)}/groups/${DEMO_GROUP}/switchover`, { method: 'POST' });
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { resigned: boolean }).resigned, true);
  await until('dispatcher 2 master with the VIP', async () => (await role(2))?.vipHeld === true, 5000);
  const served = lines.length;
  // Several advert intervals later, still dispatcher 2: the resigned one does not preempt it.
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual([(await role(1))?.state, (await role(2))?.state, (await role(2))?.vipHeld], ['backup', 'master', true]);
  await until('traffic through the VIP after the switchover', async () => lines.slice(served).some((l) => /^demo request \d+: 200 /.test(l)), 5000);
});
