/**
 * @module How much CPU *other* programs took while a benchmark round ran, so a noisy round shows up
 * as such instead of as a slow proxy. Linux only (reads /proc); elsewhere it reports nothing.
 *
 * Foreign CPU = the machine's user + nice + system time (/proc/stat) minus what our process tree
 * used (the harness, wrk, the origins, the proxies: utime + stime, plus cutime + cstime so that a wrk
 * that exited and was reaped during the round still counts as ours) minus kernel threads (kworkers
 * and friends mostly carry our own loopback traffic; interrupt time is not in the sum at all).
 * Taking the machine total, not a sum over the processes we can see, also catches other programs that
 * started and ended between two samples (short test processes, compiler runs).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat. 100 on every mainstream Linux build. */
const CLOCK_TICKS_PER_S = 100;
/** PF_KTHREAD in /proc/<pid>/stat's flags field. */
const PF_KTHREAD = 0x00200000;

export interface ProcStat {
  readonly ppid: number;
  /** utime + stime. */
  readonly ticks: number;
  /** cutime + cstime: CPU of children this process has waited for. */
  readonly childTicks: number;
  readonly kernel: boolean;
  /** stime + cstime: the kernel's share of ticks + childTicks (syscalls, and softirq work done in them). */
  readonly systemTicks?: number;
}

export interface CpuSample {
  readonly atMs: number;
  /** user + nice + system over all CPUs since boot (/proc/stat), in clock ticks. */
  readonly busyTicks: number;
  readonly procs: ReadonlyMap<number, ProcStat>;
}

function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null; // exited between readdir and read
  }
  // The command name is in parentheses and may itself contain spaces or parentheses.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
  // utime stime cutime cstime
  const ppid = Number(f[1]);
  const flags = Number(f[6]);
  const ticks = Number(f[11]) + Number(f[12]);
  const childTicks = Number(f[13]) + Number(f[14]);
  if (!Number.isFinite(ppid) || !Number.isFinite(ticks) || !Number.isFinite(childTicks)) return null;
  const systemTicks = Number(f[12]) + Number(f[14]);
  return { ppid, ticks, childTicks, kernel: (flags & PF_KTHREAD) !== 0, systemTicks };
}

/** Every process's CPU ticks now, or null where /proc is not available. */
export function sampleCpu(): CpuSample | null {
  let entries: string[];
  let busyTicks: number;
  try {
    // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
    const f = /^cpu\s+(\d+) (\d+) (\d+)/m.exec(readFileSync('/proc/stat', 'latin1'));
    if (!f) return null;
    busyTicks = Number(f[1]) + Number(f[2]) + Number(f[3]);
    entries = readdirSync('/proc');
  } catch {
    return null;
  }
  const procs = new Map<number, ProcStat>();
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const s = readStat(pid);
    if (s) procs.set(pid, s);
  }
  return { atMs: performance.now(), busyTicks, procs };
}

function isOurs(pid: number, procs: ReadonlyMap<number, ProcStat>, root: number): boolean {
  // Walk up the parent chain; bounded against a cycle from pid reuse between the two reads.
  for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
    if (p === root) return true;
    const s = procs.get(p);
    if (!s) return false;
    p = s.ppid;
  }
  return false;
}

/**
 * Average CPU cores used by processes outside the tree rooted at `root` (default: this process)
 * between two samples. 1.0 means other programs kept one core fully busy.
 */
export function foreignCores(before: CpuSample, after: CpuSample, root: number = process.pid): number {
  const elapsedS = (after.atMs - before.atMs) / 1000;
  if (elapsedS <= 0) return 0;
  const ours = treeTicks(after, root) - treeTicks(before, root);
  let kernel = 0;
  for (const [pid, s] of after.procs) {
    if (s.kernel) kernel += Math.max(0, s.ticks - (before.procs.get(pid)?.ticks ?? 0));
  }
  const foreign = after.busyTicks - before.busyTicks - ours - kernel;
  return Math.max(0, foreign) / CLOCK_TICKS_PER_S / elapsedS;
}

/** Ticks of the tree rooted at `root`, including children its members have reaped. */
function treeTicks(sample: CpuSample, root: number): number {
  let ticks = 0;
  for (const [pid, s] of sample.procs) if (isOurs(pid, sample.procs, root)) ticks += s.ticks + s.childTicks;
  return ticks;
}

/** CPU milliseconds used so far by the process `root` and its descendants (reaped ones too), in one sample. */
export function treeCpuMs(sample: CpuSample, root: number): number {
  return (treeTicks(sample, root) * 1000) / CLOCK_TICKS_PER_S;
}

/** The kernel-mode part of treeCpuMs (stime + cstime), ms. */
export function treeSystemCpuMs(sample: CpuSample, root: number): number {
  let ticks = 0;
  for (const [pid, s] of sample.procs) if (isOurs(pid, sample.procs, root)) ticks += s.systemTicks ?? 0;
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}

/** Length of one look at the machine while waiting for it to be quiet. */
const QUIET_PROBE_MS = 500;

/**
 * Waits until other programs use less than `maxCores` over a QUIET_PROBE_MS window, or `maxWaitMs`
 * has passed. Resolves with the last measured figure (null off Linux). For shared machines, where a
 * round that starts beside a compiler measures the compiler.
 */
export async function waitForQuiet(maxCores: number, maxWaitMs: number): Promise<number | null> {
  const deadline = performance.now() + maxWaitMs;
  for (;;) {
    const before = sampleCpu();
    if (!before) return null;
    await new Promise((r) => setTimeout(r, QUIET_PROBE_MS));
    const after = sampleCpu();
    if (!after) return null;
    const cores = foreignCores(before, after);
    if (cores < maxCores || performance.now() >= deadline) return cores;
  }
}
