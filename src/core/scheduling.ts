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
 * The real operations. Node has no sched_setscheduler, so real-time goes through util-linux's
 * `chrt -p` on this process id (the main thread, where the event loop and the sockets run); nice
 * through os.setPriority. Both need root, CAP_SYS_NICE, or a matching RLIMIT_RTPRIO/RLIMIT_NICE.
 */
export const systemScheduler: SchedulerOps = {
  realtime(priority) {
    execFileSync('chrt', ['--rr', '-p', String(priority), String(process.pid)], { stdio: 'pipe', timeout: 2000 });
  },
  nice(value) {
    os.setPriority(value);
  },
};

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
