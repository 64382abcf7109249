/**
 * @module Tests of the replication-flush micro-benchmark: its knobs, and one tiny real run (this
 * process as master, a backup process over loopback) that checks what each arm puts on the wire:
 * one op per session when sessions end idle, two when every end is sent, and no more frames with
 * the 20 ms window than with the 2 ms one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTable, optionsFromEnv, run } from './replication-flush.js';

test('optionsFromEnv: defaults, BENCH_QUICK, arms, and a clear error for an unknown arm', () => {
  const d = optionsFromEnv({});
  assert.deepEqual([d.rate, d.seconds, d.rounds, d.timeoutMs, d.netns, d.requestUs], [6000, 3, 4, 1000, false, 40]);
  assert.deepEqual(d.arms, ['off', 'timer', 'timer+close', 'turn', 'timer-20']);
  const q = optionsFromEnv({ BENCH_QUICK: '1', BENCH_REPLFLUSH_ARMS: 'off, turn', BENCH_REPLFLUSH_NETNS: '1' });
  assert.deepEqual([q.seconds, q.rounds, q.arms, q.netns], [2, 2, ['off', 'turn'], true]);
  assert.throws(() => optionsFromEnv({ BENCH_REPLFLUSH_ARMS: 'off,fast' }), /BENCH_REPLFLUSH_ARMS.*"fast"/);
  assert.throws(() => optionsFromEnv({ BENCH_REPLFLUSH_RATE: '0' }), /BENCH_REPLFLUSH_RATE/);
});

test('a tiny real run: sessions ending idle cost one op each, sent ends two; every arm in the table', async () => {
  const r = await run({ rate: 400, seconds: 1, rounds: 1, timeoutMs: 100, netns: false, sink: false, arms: ['off', 'timer', 'timer+close', 'timer-20'], requestUs: 40 }, () => {});
  const arm = (name: string) => r.samples.find((s) => s.arm === name)!;
  assert.equal(arm('off').opsSent, 0);
  for (const name of ['timer', 'timer+close', 'timer-20']) assert.ok(arm(name).sessions > 100, `${name}: ${arm(name).sessions} sessions`);
  const perSession = (name: string) => arm(name).opsSent / arm(name).sessions;
  assert.ok(Math.abs(perSession('timer') - 1) < 0.2, `timer: ${perSession('timer')} ops per session`);
  assert.ok(Math.abs(perSession('timer+close') - 2) < 0.2, `timer+close: ${perSession('timer+close')} ops per session`);
  assert.ok(arm('timer-20').framesSent <= arm('timer').framesSent, 'a longer window never flushes more often');
  const table = formatTable(r);
  for (const name of ['off (no replication)', '| timer |', '| timer+close |', '| timer-20 |']) assert.ok(table.includes(name), table);
});
