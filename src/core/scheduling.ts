/**
 * @module The process's own CPU scheduling (issue 17, detection under saturated cores): raising the
 * event-loop thread to real-time (SCHED_RR) or at least to a negative nice value when the system
 * allows it, at start or on the first stall of the process's own event loop.
 *
 * Why: with heartbeats every 10 ms, an agent or dispatcher starved of CPU by other work misses
 * n x delta of heartbeats without anything being wrong with the backend (bench/detection measured
 * 18-30 false downs per minute on two saturated cores at normal priority, none under SCHED_RR).
 * keepalived raises its VRRP process the same way (`vrrp_rt_priority`).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';
import os from 'node:os';
import type { Clock, TimerHandle } from './clock.js';

/** When to raise: on the first stall seen (default), at start, or never. */
export type RaisePolicy = 'on-stall' | 'at-start' | 'never';

export interface SchedulingConfig {
  readonly raise: RaisePolicy;
  /** SCHED_RR priority (1-99) tried first. */
  readonly realtimePriority: number;
  /** Nice value (-20..0) tried when real-time is refused. */
  readonly nice: number;
  /** A timer of the stall watch firing this late (ms) is a stall. */
  readonly stallMs: number;
}

/** What the process runs at after an attempt, and why the better levels were refused. */
export interface RaiseResult {
  readonly level: 'realtime' | 'nice' | 'unchanged';
  readonly errors: readonly string[];
}

/** How the levels are set: replaced in tests. */
export interface SchedulerOps {
  /** SCHED_RR at `priority` for the calling process's main thread; throws when refused. */
  realtime(priority: number): void;
  /** The nice value of the calling thread; throws when refused. */
  nice(value: number): void;
}

/**
 * The real operations, applied to EVERY thread of the process, not only the main one. Node has no
 * sched_setscheduler, so real-time goes through util-linux's `chrt --all-tasks -p` on this process
 * id; nice through os.setPriority on each thread id in /proc/self/task (setpriority(2) on Linux
 * sets one thread). Both need root, CAP_SYS_NICE, or a matching RLIMIT_RTPRIO/RLIMIT_NICE.
 *
 * Why every thread (issue 17, measured in bench/detection with a per-thread trace): V8's scavenger
 * runs on helper threads and the main thread waits for them. With only the main thread raised,
 * the helpers queued behind the CPU burners for ~40 ms while the real-time main thread slept in
 * the join: a 44 ms scavenge, a 53 ms gap between two heartbeats and a false down, with the main
 * thread's own run-queue wait at zero. Threads created later (libuv's pool) inherit the level of
 * the thread that creates them, the main one.
 */
export const systemScheduler: SchedulerOps = {
  realtime(priority) {
    execFileSync('chrt', ['--rr', '--all-tasks', '-p', String(priority), String(process.pid)], { stdio: 'pipe', timeout: 2000 });
  },
  nice(value) {
    const threads = ownThreadIds();
    // The main thread first: if even that is refused, nothing was changed.
    os.setPriority(process.pid, value);
    for (const tid of threads) {
      if (tid === process.pid) continue;
      try {
        os.setPriority(tid, value);
      } catch (err) {
        // A thread that exited meanwhile is not an error; a refusal would have come at the main one.
        if ((err as { info?: { code?: string } }).info?.code !== 'ESRCH') throw err;
      }
    }
  },
};

/** The thread ids of this process (Linux: /proc/self/task); just the process id elsewhere. */
export function ownThreadIds(): number[] {
  try {
    return readdirSync('/proc/self/task').map(Number).filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [process.pid];
  }
}

/** Tries real-time, then nice; never throws. */
export function raiseOwnPriority(cfg: Pick<SchedulingConfig, 'realtimePriority' | 'nice'>, ops: SchedulerOps = systemScheduler): RaiseResult {
  const errors: string[] = [];
  try {
    ops.realtime(cfg.realtimePriority);
    return { level: 'realtime', errors };
  } catch (err) {
    errors.push(`SCHED_RR ${cfg.realtimePriority}: ${reason(err)}`);
  }
  try {
    ops.nice(cfg.nice);
    return { level: 'nice', errors };
  } catch (err) {
    errors.push(`nice ${cfg.nice}: ${reason(err)}`);
  }
  return { level: 'unchanged', errors };
}

function reason(err: unknown): string {
  const e = err as { code?: string; message?: string; stderr?: Buffer };
  const stderr = e.stderr?.toString().trim();
  return stderr || e.code || e.message || String(err);
}

/**
 * Watches the process's own event loop: a timer every `intervalMs` that fires `stallMs` or more
 * late means the process did not run for that long (descheduled, a long GC). The first such stall
 * calls `onStall(lateMs)` and the watch stops (one escalation per process).
 */
export class StallWatch {
  private timer: TimerHandle | null;
  private due: number;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly stallMs: number,
    private readonly onStall: (lateMs: number) => void,
  ) {
    this.due = clock.now() + intervalMs;
    this.timer = clock.setTimeout(this.tick, intervalMs);
  }

  close(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  private readonly tick = (): void => {
    if (this.timer === null) return;
    const now = this.clock.now();
    const late = now - this.due;
    if (late >= this.stallMs) {
      this.close();
      this.onStall(late);
      return;
    }
    this.due = now + this.intervalMs;
    this.timer.refresh();
  };
}

/** What startScheduling reports (the caller logs it). */
export type SchedulingReport = (event: { readonly stallMs: number | null; readonly result: RaiseResult }) => void;

/**
 * Applies `cfg.raise`: at-start raises now; on-stall watches the event loop every stallMs / 2 and
 * raises on the first stall; never does nothing. Returns the watch's close().
 */
export function startScheduling(cfg: SchedulingConfig, clock: Clock, report: SchedulingReport, ops: SchedulerOps = systemScheduler): { close(): void } {
  if (cfg.raise === 'never') return { close: () => {} };
  if (cfg.raise === 'at-start') {
    report({ stallMs: null, result: raiseOwnPriority(cfg, ops) });
    return { close: () => {} };
  }
  const watch = new StallWatch(clock, Math.max(1, cfg.stallMs / 2), cfg.stallMs, (lateMs) => {
    report({ stallMs: lateMs, result: raiseOwnPriority(cfg, ops) });
  });
  return { close: () => watch.close() };
}

/**
 * The calling thread's cumulative run-queue wait (Linux schedstat: time runnable but not running,
 * ns in /proc/thread-self/schedstat's second field), read through one descriptor opened on first
 * use: one pread per reading, no allocation besides the parsed string. Create and read it on the
 * event-loop thread (the descriptor names the thread that opened it). `read()` is null where the
 * kernel does not expose it (no /proc, CONFIG_SCHED_INFO off), and from then on.
 *
 * Why (issue 17): a heartbeat that goes out late after the agent waited on the run queue proves a
 * starved agent; one late without that wait (SIGSTOP, a debugger) proves nothing. The agent says
 * which in flag bit 6, and the dispatcher tolerates the first kind only.
 */
export class RunQueueMeter {
  private readonly file: ProcFile;

  constructor(path = '/proc/thread-self/schedstat') {
    this.file = new ProcFile(path, 96);
  }

  /** Milliseconds this thread has waited for a CPU since it started, or null. */
  read(): number | null {
    return this.file.parse((text) => {
      const fields = text.split(' ');
      const ns = Number(fields[1]);
      return fields.length >= 3 && Number.isFinite(ns) ? ns / 1e6 : null;
    });
  }

  close(): void {
    this.file.close();
  }
}

/**
 * A /proc file read again and again through one descriptor opened on first use (one pread per
 * reading into a buffer of `size` bytes). A file that cannot be read, or whose text `parse` refuses
 * (null), fails for good: every later reading is null.
 */
class ProcFile {
  private fd: number | null = null;
  private failed = false;
  private readonly buf: Buffer;

  constructor(readonly path: string, size: number) {
    this.buf = Buffer.alloc(size);
  }

  parse(parse: (text: string) => number | null): number | null {
    if (this.failed) return null;
    let value: number | null = null;
    try {
      this.fd ??= openSync(this.path, 'r');
      const n = readSync(this.fd, this.buf, 0, this.buf.length, 0);
      value = parse(this.buf.toString('latin1', 0, n));
    } catch {
      value = null;
    }
    if (value === null) {
      this.close();
      this.failed = true;
    }
    return value;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** /proc/stat counts in USER_HZ ticks, 100 per second on every Linux architecture. */
export const PROC_STAT_TICK_MS = 10;
/** The machine's steal time is read at most this often, unless a fresh reading is asked for. */
export const STEAL_REFRESH_MS = 100;

/**
 * The machine's CPU steal time (the hypervisor running something else on our virtual CPUs; the
 * `steal` column of /proc/stat's first line, summed over CPUs), in ms, null where unavailable.
 * /proc/stat costs ~50 us to generate, so a reading is cached for STEAL_REFRESH_MS unless `fresh`.
 *
 * Why (issue 17, traced in bench/detection): with the agent real-time there is no run-queue wait
 * left, yet it still went ~100 ms without running, its heartbeat stuck with it — and /proc/stat's
 * steal grew by ~100 ms meanwhile: the VM's virtual CPU itself was taken away.
 */
export class StealMeter {
  private readonly file: ProcFile;
  private cached: number | null = null;
  private cachedAt = -Infinity;

  constructor(private readonly now: () => number = () => performance.now(), path = '/proc/stat') {
    this.file = new ProcFile(path, 256);
  }

  read(fresh = false): number | null {
    const now = this.now();
    if (!fresh && now - this.cachedAt < STEAL_REFRESH_MS) return this.cached;
    this.cached = this.file.parse((text) => {
      // cpu  user nice system idle iowait irq softirq steal ...
      const fields = text.slice(0, text.indexOf('\n')).split(/\s+/);
      const ticks = Number(fields[8]);
      return fields[0] === 'cpu' && Number.isFinite(ticks) ? ticks * PROC_STAT_TICK_MS : null;
    });
    this.cachedAt = now;
    return this.cached;
  }

  close(): void {
    this.file.close();
  }
}
