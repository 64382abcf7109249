/**
 * @module Process ids on disk and in /proc: the agent's pid file (how `holdfast agent drain` finds
 * the running agent), the pid watchdog's liveness test, and the check that a pid really is a
 * holdfast agent before it is sent a signal whose default action would kill anything else.
 */
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';

/** The pid in `path`, or null when the file is missing, unreadable or holds no positive integer. */
export function readPidFile(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const m = /^\s*(\d{1,10})\s*$/.exec(text);
  const pid = m ? Number(m[1]) : NaN;
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

/**
 * Whether process `pid` exists and is not a zombie. kill(pid, 0) delivers nothing and fails with
 * ESRCH when there is no such process; EPERM means it exists under another user. A zombie (exited,
 * not yet reaped by its parent) still answers kill(); /proc/<pid>/stat says Z (or X) for it.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false; // no /proc (not Linux) or it just exited: kill() was the answer
  }
  // "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'Z' || state === 'X';
}

/**
 * Whether `pid` runs `holdfast agent`, from /proc/<pid>/cmdline; null when that cannot be told (no
 * /proc, or not allowed to read it).
 */
export function isHoldfastAgent(pid: number): boolean | null {
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return null;
  }
  const args = cmdline.split('\0');
  const script = args.findIndex((a) => /holdfast(\.js)?$/.test(a) || a.endsWith('/cli/main.js'));
  return script !== -1 && args[script + 1] === 'agent';
}

export type PidFileClaim = { ok: true } | { ok: false; pid: number };

/**
 * Writes this process's pid to `path` (via a temporary file and a rename, so a reader never sees a
 * half-written file), unless the file names another live holdfast agent: two agents with one pid file
 * would leave `drain` signalling the wrong one.
 */
export function claimPidFile(path: string, pid = process.pid): PidFileClaim {
  const holder = readPidFile(path);
  if (holder !== null && holder !== pid && processAlive(holder) && isHoldfastAgent(holder) !== false) {
    return { ok: false, pid: holder };
  }
  const tmp = `${path}.${pid}.tmp`;
  writeFileSync(tmp, `${pid}\n`, { mode: 0o644 });
  renameSync(tmp, path);
  return { ok: true };
}

/** Removes `path` if it still names `pid` (another agent may have taken it over since). */
export function releasePidFile(path: string, pid = process.pid): void {
  if (readPidFile(path) !== pid) return;
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
