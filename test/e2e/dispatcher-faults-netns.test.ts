/**
 * @module Faults beyond SIGKILL against the replicated dispatcher (issue 18), through
 * bench/hardening-faults.ts in namespaces of its own (removed at the end): a partition between the
 * dispatchers that heals leaves exactly one master and one VIP holder and loses no session
 * established before it; a SIGSTOPped master, resumed after the backup took over, is fenced by the
 * newer epoch (steps down, releases the VIP, never takes it again); 5 % random loss of election
 * datagrams causes no master change. Root only (ip netns, nft): skipped with the reason otherwise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatFaults, runFaults } from '../../bench/hardening-faults.js';
import { lanUnavailable } from '../../bench/lib/netns-lan.js';

test('partition and heal, SIGSTOP of the master, 5 % advert loss: one master and one VIP holder after each, every session on its pin', { timeout: 120_000 }, async (t) => {
  const missing = lanUnavailable();
  if (missing) return void t.skip(missing);
  const r = await runFaults({ sessions: 20, partitionMs: 500, stallMs: 500, lossMs: 1_000 }, (line) => t.diagnostic(line));
  assert.ok(!('skipped' in r));
  for (const arm of r.arms) {
    assert.equal(arm.masters, 1, `${arm.name}: ${arm.detail}`);
    assert.equal(arm.vipHolders, 1, `${arm.name}: ${arm.detail}`);
    assert.equal(arm.kept, arm.sessions, `${arm.name}: sessions lost; ${arm.detail}`);
  }
  const stalled = r.arms.find((a) => a.name === 'stalled-master')!;
  assert.match(stalled.detail, /stepped down \(higher-epoch\), regained the VIP 0 times/);
  assert.match(formatFaults(r), /^TARGET partition-heal: met — /m);
});
