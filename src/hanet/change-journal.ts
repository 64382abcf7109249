/**
 * @module Every change HANet makes to the host, with how to undo it, kept in a state file written
 * before the change is made (write-ahead): `close()` undoes them all, a restart after a crash
 * undoes whatever the file still lists (`recover()`), so nothing is left behind that a restart
 * does not clean up. Entries are keyed: making a change whose key is recorded already changes
 * nothing in the journal (the recorded undo still leads back to the original state), and
 * `revert(key)` runs one entry's undo and forgets it. Every change and undo is logged.
 */
import { renameSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Logger } from '../admin/log.js';
import type { HostSystem } from './host-system.js';

/** What an undo that finds its change already gone may print (iproute2 6.x and older RTNETLINK). */
export const ALREADY_UNDONE = /No such process|Cannot assign requested address|Address not found|No such file or directory|Cannot find device|not found|does not exist|RTNETLINK answers: No such/i;
/** What a change that finds itself already made may print. */
export const ALREADY_DONE = /File exists|Address already assigned/i;

export type JournalEntry =
  | { key: string; kind: 'ip'; what: string; undo: string[][] }
  | { key: string; kind: 'sysctl'; what: string; name: string; value: string };

interface StateFile {
  pid: number;
  entries: JournalEntry[];
}

export class ChangeJournal {
  readonly #file: string;
  readonly #sys: HostSystem;
  readonly #log: Logger | undefined;
  readonly #entries: JournalEntry[] = [];

  constructor(file: string, sys: HostSystem, log?: Logger) {
    this.#file = file;
    this.#sys = sys;
    this.#log = log;
  }

  /** Keys of the changes in force, oldest first. */
  get keys(): string[] {
    return this.#entries.map((e) => e.key);
  }

  has(key: string): boolean {
    return this.#entries.some((e) => e.key === key);
  }

  /**
   * Undoes what a previous run left in the state file (it crashed, or was SIGKILLed), newest first,
   * then removes the file. Resolves with the number of entries undone.
   */
  async recover(): Promise<number> {
    let state: StateFile;
    try {
      state = JSON.parse(readFileSync(this.#file, 'utf8')) as StateFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      this.#log?.warn({ file: this.#file, err: String(err) }, 'hanet: unreadable state file ignored');
      rmSync(this.#file, { force: true });
      return 0;
    }
    const leftovers = Array.isArray(state.entries) ? state.entries : [];
    this.#log?.warn({ file: this.#file, pid: state.pid, changes: leftovers.length }, `hanet: undoing ${leftovers.length} change(s) left by a previous run (pid ${state.pid})`);
    for (const entry of [...leftovers].reverse()) await this.#undo(entry);
    rmSync(this.#file, { force: true });
    return leftovers.length;
  }

  /**
   * Runs `lines` with `ip`, journaling `undo` under `key` first (unless `key` is recorded already).
   * `tolerate`: errors that mean "already so".
   */
  async ip(key: string, what: string, lines: string[][], undo: string[][], tolerate: RegExp = ALREADY_DONE): Promise<void> {
    if (!this.has(key)) {
      this.#entries.push({ key, kind: 'ip', what, undo });
      this.#save();
    }
    this.#log?.info({ change: what, commands: lines.map((l) => `ip ${l.join(' ')}`) }, `hanet: ${what}`);
    await this.#sys.ip(lines, tolerate);
  }

  /**
   * Several changes in one `ip -batch` run (one process instead of one each: failover time), each
   * journaled under its own key first.
   */
  async ipMany(changes: readonly { key: string; what: string; lines: string[][]; undo: string[][] }[], tolerate: RegExp = ALREADY_DONE): Promise<void> {
    if (changes.length === 0) return;
    let added = false;
    for (const c of changes) {
      if (this.has(c.key)) continue;
      this.#entries.push({ key: c.key, kind: 'ip', what: c.what, undo: c.undo });
      added = true;
    }
    if (added) this.#save();
    const lines = changes.flatMap((c) => c.lines);
    this.#log?.info({ change: changes.map((c) => c.what), commands: lines.map((l) => `ip ${l.join(' ')}`) }, `hanet: ${changes.map((c) => c.what).join('; ')}`);
    await this.#sys.ip(lines, tolerate);
  }

  /** Sets a sysctl, journaling its current value first (once per key: the first value is the original). */
  sysctl(name: string, value: string): void {
    const key = `sysctl:${name}`;
    const current = this.#sys.sysctlRead(name);
    if (!this.has(key)) {
      if (current === value) return;
      this.#entries.push({ key, kind: 'sysctl', what: `sysctl ${name}=${value}`, name, value: current });
      this.#save();
    }
    if (current === value) return;
    this.#log?.info({ change: `sysctl -w ${name}=${value}`, was: current }, `hanet: sysctl ${name}=${value} (was ${current})`);
    this.#sys.sysctlWrite(name, value);
  }

  /** Runs the undo of `key` and forgets it; no-op when not recorded. */
  async revert(key: string): Promise<void> {
    const i = this.#entries.findIndex((e) => e.key === key);
    if (i < 0) return;
    const [entry] = this.#entries.splice(i, 1);
    await this.#undo(entry!);
    this.#save();
  }

  /** Undoes everything, newest first, and removes the state file. Undo failures are logged, not thrown. */
  async undoAll(): Promise<void> {
    while (this.#entries.length > 0) {
      const entry = this.#entries.pop()!;
      await this.#undo(entry);
      this.#save();
    }
    rmSync(this.#file, { force: true });
  }

  async #undo(entry: JournalEntry): Promise<void> {
    try {
      if (entry.kind === 'sysctl') {
        this.#log?.info({ undo: `sysctl -w ${entry.name}=${entry.value}` }, `hanet: undo ${entry.what}`);
        this.#sys.sysctlWrite(entry.name, entry.value);
      } else {
        this.#log?.info({ undo: entry.undo.map((l) => `ip ${l.join(' ')}`) }, `hanet: undo ${entry.what}`);
        await this.#sys.ip(entry.undo, ALREADY_UNDONE);
      }
    } catch (err) {
      this.#log?.error({ err: String(err), key: entry.key }, `hanet: cannot undo ${entry.what}: ${(err as Error).message}`);
    }
  }

  #save(): void {
    if (this.#entries.length === 0) {
      rmSync(this.#file, { force: true });
      return;
    }
    const state: StateFile = { pid: process.pid, entries: this.#entries };
    // Write then rename: a crash mid-write leaves the previous file, never half of one.
    const tmp = `${this.#file}.tmp`;
    writeFileSync(tmp, JSON.stringify(state), { mode: 0o600 });
    renameSync(tmp, this.#file);
  }
}
