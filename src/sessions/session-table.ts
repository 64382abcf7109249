/**
 * @module The session table (SARA III.A, III.C): every session the dispatcher knows, each pinned to
 * one backend. A session is named by a key (a SIP Call-ID, an HTTP cookie value) or anonymous (a UDP
 * client flow, found through its flow). Bounded: open() refuses when maxSessions are open; idle
 * sessions are closed by sweep() after timeoutMs.
 *
 * CONTRACT (other components code against these signatures): a handle is an opaque number, -1 is
 * "none"; a handle stays valid until the session is closed, and is never confused with a later
 * session that reuses the same slot (isOpen(h) is false for a stale handle).
 *
 * PLACEHOLDER IMPLEMENTATION (Map-based) until the compact typed-array table replaces it.
 */
import type { Clock } from '../core/clock.js';

export type SessionHandle = number;
export const NO_SESSION: SessionHandle = -1;

/** Why a session ended: its protocol ended it (BYE, final failure), idle timeout, or the operator/owner removed it. */
export type SessionEndReason = 'ended' | 'timeout' | 'removed';

export interface SessionTableOptions {
  /** The service name, for events. */
  service: string;
  maxSessions: number;
  /** A session with no touch() for this long is closed by sweep(). */
  timeoutMs: number;
  clock: Clock;
}

interface Entry {
  key: string | null;
  backend: number;
  lastSeen: number;
  gen: number;
}

export class SessionTable {
  readonly capacity: number;
  private readonly entries: (Entry | undefined)[] = [];
  private readonly byKey = new Map<string, SessionHandle>();
  private readonly free: number[] = [];
  private readonly gens: number[] = [];
  private count = 0;
  private readonly closeListeners: ((h: SessionHandle, reason: SessionEndReason, backend: number) => void)[] = [];

  constructor(private readonly options: SessionTableOptions) {
    this.capacity = options.maxSessions;
  }

  /** Sessions open now. */
  get size(): number {
    return this.count;
  }

  /** The open session named `key`, or -1. */
  find(key: string): SessionHandle {
    return this.byKey.get(key) ?? NO_SESSION;
  }

  /** Opens a session pinned to backend index `backend`; -1 when the table is full (or `key` is already open). */
  open(key: string | null, backend: number): SessionHandle {
    if (this.count >= this.capacity) return NO_SESSION;
    if (key !== null && this.byKey.has(key)) return NO_SESSION;
    const slot = this.free.pop() ?? this.entries.length;
    const gen = ((this.gens[slot] ?? 0) + 1) & 0x3ff;
    this.gens[slot] = gen;
    this.entries[slot] = { key, backend, lastSeen: this.options.clock.now(), gen };
    this.count++;
    const h = gen * 0x1000000 + slot;
    if (key !== null) this.byKey.set(key, h);
    return h;
  }

  isOpen(h: SessionHandle): boolean {
    return this.entry(h) !== undefined;
  }

  /** The backend index the session is pinned to (-1 for a stale handle). */
  backend(h: SessionHandle): number {
    return this.entry(h)?.backend ?? -1;
  }

  key(h: SessionHandle): string | null {
    return this.entry(h)?.key ?? null;
  }

  /** Traffic on the session: it is not idle. */
  touch(h: SessionHandle): void {
    const e = this.entry(h);
    if (e) e.lastSeen = this.options.clock.now();
  }

  /** Moves the pin (the old backend failed). */
  repin(h: SessionHandle, backend: number): void {
    const e = this.entry(h);
    if (e) e.backend = backend;
  }

  close(h: SessionHandle, reason: SessionEndReason): void {
    const e = this.entry(h);
    if (!e) return;
    const slot = h % 0x1000000;
    this.entries[slot] = undefined;
    if (e.key !== null) this.byKey.delete(e.key);
    this.free.push(slot);
    this.count--;
    for (const fn of this.closeListeners) fn(h, reason, e.backend);
  }

  /** Open sessions pinned to `backend` (for re-pinning after a failure). */
  pinnedTo(backend: number): SessionHandle[] {
    const out: SessionHandle[] = [];
    this.entries.forEach((e, slot) => {
      if (e && e.backend === backend) out.push(e.gen * 0x1000000 + slot);
    });
    return out;
  }

  /** Closes (reason 'timeout') sessions idle for timeoutMs or more, visiting at most `budget` slots; returns how many closed. */
  sweep(budget: number = Number.MAX_SAFE_INTEGER): number {
    const now = this.options.clock.now();
    let closed = 0;
    let visited = 0;
    for (let slot = 0; slot < this.entries.length && visited < budget; slot++, visited++) {
      const e = this.entries[slot];
      if (e && now - e.lastSeen >= this.options.timeoutMs) {
        this.close(e.gen * 0x1000000 + slot, 'timeout');
        closed++;
      }
    }
    return closed;
  }

  /** Called after a session closed, with the backend index it was pinned to (its flows, relay ports and replicas follow it). Returns an unsubscribe. */
  onClose(fn: (h: SessionHandle, reason: SessionEndReason, backend: number) => void): () => void {
    this.closeListeners.push(fn);
    return () => {
      const i = this.closeListeners.indexOf(fn);
      if (i >= 0) this.closeListeners.splice(i, 1);
    };
  }

  private entry(h: SessionHandle): Entry | undefined {
    if (h < 0) return undefined;
    const e = this.entries[h % 0x1000000];
    return e && e.gen === Math.floor(h / 0x1000000) ? e : undefined;
  }
}
