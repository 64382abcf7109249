import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { foreignCores, sampleCpu, treeCpuMs, type CpuSample } from './cpu.js';

type Row = [pid: number, ppid: number, ticks: number, childTicks?: number, kernel?: boolean];
const sample = (atMs: number, busyTicks: number, rows: Row[]): CpuSample => ({
  atMs,
  busyTicks,
  procs: new Map(
    rows.map(([pid, ppid, ticks, childTicks, kernel]) => [pid, { ppid, ticks, childTicks: childTicks ?? 0, kernel: kernel ?? false }]),
  ),
});

// 100: harness; 101, 102: its children; 103: grandchild; 200: someone else; 2: a kernel thread.
const BEFORE = sample(0, 10_000, [[100, 1, 0], [101, 100, 0], [102, 100, 0], [103, 102, 0], [200, 1, 1000], [2, 0, 0, 0, true]]);
const AFTER = sample(2000, 11_250, [
  [100, 1, 50, 100], // the harness reaped a child (wrk) that used 100 ticks
  [101, 100, 150],
  [102, 100, 150],
  [103, 102, 100],
  [200, 1, 1100], // +100 ticks
  [2, 0, 500, 0, true],
  // The machine total also holds 100 ticks of a program that came and went between the samples.
]);

test('foreignCores is the machine total minus our tree (reaped children included) and kernel threads', () => {
  // busy +1250; ours 50 + 100 + 150 + 150 + 100 = 550; kernel 500; foreign 200 ticks = 2 s over 2 s.
  assert.equal(foreignCores(BEFORE, AFTER, 100), 1);
  // Seen from 102's tree (250 ticks), the harness and its other child are foreign too: 500 ticks.
  assert.equal(foreignCores(BEFORE, AFTER, 102), 2.5);
  // Never negative, whatever sampling skew does to the totals.
  assert.equal(foreignCores(BEFORE, { ...AFTER, busyTicks: 10_100 }, 100), 0);
});

test('treeCpuMs sums a process and all its descendants, reaped ones included', () => {
  assert.equal(treeCpuMs(AFTER, 100), 5500);
  assert.equal(treeCpuMs(AFTER, 102), 2500);
  assert.equal(treeCpuMs(AFTER, 999), 0);
});

test('sampleCpu sees a busy child burn CPU in our tree', { skip: process.platform !== 'linux' }, async (t) => {
  const child = spawn(process.execPath, ['-e', 'const end = Date.now() + 400; while (Date.now() < end);']);
  t.after(() => child.kill('SIGKILL'));
  const before = sampleCpu()!;
  assert.equal(before.procs.get(process.pid)?.ppid, process.ppid);
  await new Promise((r) => child.once('spawn', r));
  const mid = sampleCpu()!;
  await new Promise((r) => setTimeout(r, 300));
  const after = sampleCpu()!;
  // The child ran a busy loop; even on a loaded machine it gets well over 50 ms of CPU in 300 ms.
  assert.ok(treeCpuMs(after, process.pid) - treeCpuMs(mid, process.pid) >= 50);
  assert.ok(treeCpuMs(after, child.pid!) > 0);
});
