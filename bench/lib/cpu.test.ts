import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { foreignCores, sampleCpu, treeCpuMs, type CpuSample } from './cpu.js';

type Row = [pid: number, ppid: number, ticks: number, kernel?: boolean];
const sample = (atMs: number, rows: Row[]): CpuSample => ({
  atMs,
  procs: new Map(rows.map(([pid, ppid, ticks, kernel]) => [pid, { ppid, ticks, kernel: kernel ?? false }])),
});

test('foreignCores counts only processes outside the root tree and not kernel threads', () => {
  // 100: harness; 101, 102: its children; 103: grandchild; 200: someone else; 300: new foreign; 2: kthread.
  const before = sample(0, [[100, 1, 0], [101, 100, 0], [102, 100, 0], [103, 102, 0], [200, 1, 1000], [2, 0, 0, true]]);
  const after = sample(2000, [
    [100, 1, 50], [101, 100, 150], [102, 100, 150], [103, 102, 100],
    [200, 1, 1100], // +100 ticks = 1 s of CPU
    [300, 1, 100], //  started in the window: +100 ticks
    [2, 0, 500, true],
  ]);
  // 200 ticks = 2 CPU-seconds over 2 s = 1 core.
  assert.equal(foreignCores(before, after, 100), 1);
  // Seen from 102's tree, the harness and its other child are foreign too: 200 + 50 + 150 ticks = 2 cores.
  assert.equal(foreignCores(before, after, 102), 2);
});

test('treeCpuMs sums a process and all its descendants', () => {
  const s = sample(0, [[100, 1, 10], [101, 100, 20], [102, 101, 30], [200, 1, 1000]]);
  assert.equal(treeCpuMs(s, 100), 600);
  assert.equal(treeCpuMs(s, 101), 500);
  assert.equal(treeCpuMs(s, 999), 0);
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
