import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from './clock.js';
import { StallWatch, raiseOwnPriority, startScheduling, type SchedulerOps, type SchedulingConfig } from './scheduling.js';

function ops(allowRealtime: boolean, allowNice: boolean, calls: string[] = []): SchedulerOps {
  return {
    realtime(p) {
      calls.push(`rr ${p}`);
      if (!allowRealtime) throw Object.assign(new Error('Operation not permitted'), { code: 'EPERM' });
    },
    nice(v) {
      calls.push(`nice ${v}`);
      if (!allowNice) throw Object.assign(new Error('permission denied'), { code: 'EACCES' });
    },
  };
}

const CFG: SchedulingConfig = { raise: 'on-stall', realtimePriority: 10, nice: -10, stallMs: 10 };

test('raiseOwnPriority: real-time first, nice when real-time is refused, unchanged with both reasons', () => {
  assert.deepEqual(raiseOwnPriority(CFG, ops(true, true)), { level: 'realtime', errors: [] });
  assert.deepEqual(raiseOwnPriority(CFG, ops(false, true)), { level: 'nice', errors: ['SCHED_RR 10: EPERM'] });
  assert.deepEqual(raiseOwnPriority(CFG, ops(false, false)), { level: 'unchanged', errors: ['SCHED_RR 10: EPERM', 'nice -10: EACCES'] });
});

test('StallWatch: timers on time are no stall; the first one 10 ms late or more is, once', () => {
  const clock = new FakeClock();
  const stalls: number[] = [];
  const watch = new StallWatch(clock, 5, 10, (ms) => stalls.push(ms));
  clock.advance(100);
  assert.deepEqual(stalls, []);
  clock.stall(9); // due at 105, runs at 109: 4 ms late, not a stall
  clock.advance(0);
  assert.deepEqual(stalls, []);
  clock.advance(3); // due at 114
  clock.stall(20); // runs at 132: 18 ms late
  clock.advance(0);
  assert.deepEqual(stalls, [18]);
  clock.stall(50);
  clock.advance(100);
  assert.deepEqual(stalls, [18], 'one escalation per process');
  watch.close();
});

test('startScheduling: at-start raises at once, on-stall on the first stall, never not at all', () => {
  const clock = new FakeClock();
  const seen: Array<[number | null, string]> = [];
  const report = (e: { stallMs: number | null; result: { level: string } }): void => void seen.push([e.stallMs, e.result.level]);
  const calls: string[] = [];
  startScheduling({ ...CFG, raise: 'at-start' }, clock, report, ops(false, true, calls));
  assert.deepEqual(seen, [[null, 'nice']]);
  startScheduling({ ...CFG, raise: 'never' }, clock, report, ops(true, true, calls));
  const s = startScheduling(CFG, clock, report, ops(true, true, calls));
  clock.advance(1000);
  assert.equal(seen.length, 1, 'no stall, no raise');
  clock.stall(25); // the watch (every 5 ms) was due at 1005 and runs at 1025
  clock.advance(0);
  assert.deepEqual(seen, [
    [null, 'nice'],
    [20, 'realtime'],
  ]);
  assert.deepEqual(calls, ['rr 10', 'nice -10', 'rr 10']);
  s.close();
});

/**
 * A real process raising itself (needs root or CAP_SYS_NICE; skipped otherwise): every thread
 * moves, not only the main one — V8's GC helpers left behind made the real-time main thread wait
 * for them behind the CPU burners (issue 17).
 */
const childScript = (level: 'realtime' | 'nice'): string => `
  import { readFileSync } from 'node:fs';
  import { systemScheduler, ownThreadIds } from ${JSON.stringify(new URL('./scheduling.js', import.meta.url).href)};
  try {
    ${level === 'realtime' ? 'systemScheduler.realtime(3)' : 'systemScheduler.nice(-3)'};
  } catch (err) {
    console.log(JSON.stringify({ refused: String(err.code ?? err.message) }));
    process.exit(0);
  }
  const threads = ownThreadIds().map((tid) => {
    const stat = readFileSync('/proc/self/task/' + tid + '/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // stat fields 19 (nice) and 41 (policy), counted from 1 with pid and comm as fields 1 and 2.
    return { tid, nice: Number(f[16]), policy: Number(f[38]) };
  });
  console.log(JSON.stringify({ threads }));
`;

for (const level of ['realtime', 'nice'] as const) {
  test(`systemScheduler.${level}: a real process raises every one of its threads`, async (t) => {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', childScript(level)], { encoding: 'utf8', timeout: 20_000 });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { refused?: string; threads?: { tid: number; nice: number; policy: number }[] };
    if (r.refused !== undefined) return t.skip(`not allowed here: ${r.refused}`);
    const threads = r.threads!;
    assert.ok(threads.length > 1, `node runs helper threads (saw ${threads.length})`);
    for (const th of threads) {
      // SCHED_RR = 2; nice is per thread on Linux.
      if (level === 'realtime') assert.equal(th.policy, 2, `thread ${th.tid} is SCHED_RR`);
      else assert.equal(th.nice, -3, `thread ${th.tid} is at nice -3`);
    }
  });
}
