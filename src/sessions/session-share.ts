/**
 * @module One session table for several processes (issue 16, `dispatcher.workers`): the primary's
 * table is the authority (SessionAuthority); each worker keeps a replica (SessionMirror) that it
 * routes from synchronously. Every change of a keyed session in the primary (open, re-pin, close,
 * timeout) is sent to every worker; a worker's own changes (a Set-Cookie pin, a re-pin off a failed
 * backend, an expired cookie) go to the primary, which applies them and sends the outcome to all. A
 * key a worker does not know is asked of the primary once (a round trip per key per worker, the
 * answer "none" remembered too, until a change of that key arrives), so a session pinned by one
 * worker is found by another even before the change reached it. Re-pins use rendezvous hashing of
 * the key (SessionRouter.repinByKey), so that a worker and the primary that see the same backend
 * fail move a session to the same place; where they raced, the primary's table wins and the
 * worker is told. Workers report which sessions had traffic every touchFlushMs; the primary's idle
 * timeout is extended by that much. Transport-agnostic: the dispatcher carries the messages.
 */
import type { Backend } from '../core/backend.js';
import type { SessionRouter } from './session-router.js';
import { NO_SESSION } from './session-table.js';

/** A worker's message to the primary about the sessions of one service. */
export type SessionShareUp =
  /** The worker does not know `key`: its pin, or none; `open` (header sessions): open it if unknown. */
  | { readonly op: 'get'; readonly id: number; readonly key: string; readonly open: boolean }
  /** The worker pinned `key` to `backend` (a Set-Cookie: the backend holds that session now). */
  | { readonly op: 'pin'; readonly key: string; readonly backend: string }
  /** The worker moved `key` off `from` (failed, down, or avoided) to `to`. */
  | { readonly op: 'repin'; readonly key: string; readonly from: string; readonly to: string }
  /** The session `key` ended (an expired cookie). */
  | { readonly op: 'end'; readonly key: string }
  /** These sessions had traffic in the worker since its last report. */
  | { readonly op: 'touch'; readonly keys: readonly string[] };

/** The primary's message to a worker. */
export type SessionShareDown =
  /** `key` is pinned to `backend` (null: not open). `id`: the answer to that `get`. */
  | { readonly op: 'set'; readonly key: string; readonly backend: string | null; readonly id?: number }
  /** A slice of the primary's table, for a worker that starts: [key, backend] pairs. */
  | { readonly op: 'sets'; readonly entries: readonly (readonly [string, string])[] };

/** Keys a worker remembers as not open (answers "none"); past it, they are forgotten all at once. */
export const MAX_KNOWN_ABSENT = 65_536;
/** Entries per snapshot message. */
export const SNAPSHOT_SLICE = 4096;

/** How often a worker reports its sessions' traffic: an eighth of the idle timeout, within [20 ms, 10 s]. */
export function touchFlushMs(sessionTimeoutMs: number): number {
  return Math.min(10_000, Math.max(20, Math.floor(sessionTimeoutMs / 8)));
}

/** What an HTTP connection asks before routing a request of a session (its head waits meanwhile). */
export interface SessionLookup {
  /** Whether `key` can be routed from the local replica now (open here, or known not to be open). */
  known(key: string): boolean;
  /** Asks the primary about `key`; `done` when the replica has the answer. */
  lookup(key: string, open: boolean, done: () => void): void;
}

/** A worker's replica of one service's session table, routed from by its SessionRouter. */
export class SessionMirror implements SessionLookup {
  private readonly byId: Map<string, Backend>;
  private readonly absent = new Set<string>();
  private readonly pending = new Map<number, () => void>();
  private nextId = 1;
  /** Applying the primary's change: not echoed back. */
  private applying = false;
  private lastFlush: number;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly router: SessionRouter,
    backends: readonly Backend[],
    private readonly send: (m: SessionShareUp) => void,
    private readonly now: () => number,
  ) {
    this.byId = new Map(backends.map((b) => [b.id, b]));
    this.lastFlush = now();
    router.repinByKey = true;
    this.unsubscribe = router.onChange((c) => {
      if (this.applying) return;
      const table = router.table;
      switch (c.type) {
        case 'open': {
          if (c.key === null) return;
          this.absent.delete(c.key);
          send({ op: 'pin', key: c.key, backend: c.backend.id });
          return;
        }
        case 'repin': {
          const key = table.key(c.session);
          if (key !== null) send({ op: 'repin', key, from: c.from?.id ?? '', to: c.to.id });
          return;
        }
        case 'close':
          if (c.key === null) return;
          this.remember(c.key);
          send({ op: 'end', key: c.key });
          return;
      }
    });
  }

  known(key: string): boolean {
    return this.absent.has(key) || this.router.table.find(key) !== NO_SESSION;
  }

  lookup(key: string, open: boolean, done: () => void): void {
    const id = this.nextId++;
    this.pending.set(id, done);
    this.send({ op: 'get', id, key, open });
  }

  /** A message from the primary. */
  apply(m: SessionShareDown): void {
    if (m.op === 'sets') {
      for (const [key, backend] of m.entries) this.set(key, backend);
      return;
    }
    this.set(m.key, m.backend);
    if (m.id !== undefined) {
      const done = this.pending.get(m.id);
      this.pending.delete(m.id);
      done?.();
    }
  }

  /** The keys of sessions with traffic since the last report (sent when there are any). */
  flushTouches(): void {
    const table = this.router.table;
    const since = this.lastFlush;
    this.lastFlush = this.now();
    let keys: string[] = [];
    table.forEach((h) => {
      const key = table.key(h);
      if (key === null || table.lastSeen(h) <= since) return;
      keys.push(key);
      if (keys.length >= SNAPSHOT_SLICE) {
        this.send({ op: 'touch', keys });
        keys = [];
      }
    });
    if (keys.length > 0) this.send({ op: 'touch', keys });
  }

  close(): void {
    this.unsubscribe();
    for (const done of this.pending.values()) done();
    this.pending.clear();
  }

  private remember(key: string): void {
    if (this.absent.size >= MAX_KNOWN_ABSENT) this.absent.clear();
    this.absent.add(key);
  }

  private set(key: string, backendId: string | null): void {
    const table = this.router.table;
    const h = table.find(key);
    this.applying = true;
    try {
      if (backendId === null) {
        this.remember(key);
        if (h !== NO_SESSION) table.close(h, 'ended');
        return;
      }
      const b = this.byId.get(backendId);
      if (b === undefined) return;
      this.absent.delete(key);
      // A full replica (as full as the primary's) serves the key unpinned, as the primary would.
      if (h === NO_SESSION) {
        if (table.open(key, b.index) === NO_SESSION) this.remember(key);
      } else if (table.backend(h) !== b.index) table.repin(h, b.index);
    } finally {
      this.applying = false;
    }
  }
}

/** The primary's side: its session router decides, every change goes to every worker. */
export class SessionAuthority {
  private readonly byId: Map<string, Backend>;
  private readonly unsubscribe: () => void;
  private broadcast: (m: SessionShareDown) => void = () => {};

  constructor(
    private readonly router: SessionRouter,
    backends: readonly Backend[],
    sessionTimeoutMs: number,
  ) {
    this.byId = new Map(backends.map((b) => [b.id, b]));
    router.repinByKey = true;
    // A worker's traffic reaches this table up to one report late.
    router.table.timeoutGraceMs = touchFlushMs(sessionTimeoutMs);
    this.unsubscribe = router.onChange((c) => {
      switch (c.type) {
        case 'open':
          if (c.key !== null) this.broadcast({ op: 'set', key: c.key, backend: c.backend.id });
          return;
        case 'repin': {
          const key = router.table.key(c.session);
          if (key !== null) this.broadcast({ op: 'set', key, backend: c.to.id });
          return;
        }
        case 'close':
          if (c.key !== null) this.broadcast({ op: 'set', key: c.key, backend: null });
          return;
      }
    });
  }

  /** Where changes go (every live worker). */
  connect(broadcast: (m: SessionShareDown) => void): void {
    this.broadcast = broadcast;
  }

  /** The whole table, in slices, for a worker that starts. */
  snapshot(): SessionShareDown[] {
    const table = this.router.table;
    const out: SessionShareDown[] = [];
    let entries: (readonly [string, string])[] = [];
    table.forEach((h) => {
      const key = table.key(h);
      const b = this.router.backendAt(table.backend(h));
      if (key === null || b === undefined) return;
      entries.push([key, b.id]);
      if (entries.length >= SNAPSHOT_SLICE) {
        out.push({ op: 'sets', entries });
        entries = [];
      }
    });
    if (entries.length > 0) out.push({ op: 'sets', entries });
    return out;
  }

  /** A worker's message; returns the answer for that worker alone (a `get`, or a correction), if any. */
  handle(m: SessionShareUp): SessionShareDown | null {
    const router = this.router;
    const table = router.table;
    switch (m.op) {
      case 'get': {
        let h = table.find(m.key);
        if (h === NO_SESSION && m.open) {
          const r = router.open(m.key);
          if (r.type !== 'refused') h = r.session;
        }
        const b = h === NO_SESSION ? undefined : router.backendAt(table.backend(h));
        return { op: 'set', key: m.key, backend: b?.id ?? null, id: m.id };
      }
      case 'pin': {
        const b = this.byId.get(m.backend);
        if (b !== undefined) router.pin(m.key, b);
        return null;
      }
      case 'repin': {
        const to = this.byId.get(m.to);
        if (to === undefined) return null;
        const h = table.find(m.key);
        const at = h === NO_SESSION ? undefined : router.backendAt(table.backend(h));
        // First come: moved from where the worker saw it, or reopened; otherwise the worker is late
        // (the primary moved it already) and is told where it is.
        if (at === undefined || at.id === m.from) {
          router.pin(m.key, to);
          return null;
        }
        return at.id === m.to ? null : { op: 'set', key: m.key, backend: at.id };
      }
      case 'end': {
        const h = table.find(m.key);
        if (h !== NO_SESSION) router.close(h, 'ended');
        return null;
      }
      case 'touch':
        for (const key of m.keys) {
          const h = table.find(key);
          if (h !== NO_SESSION) table.touch(h);
        }
        return null;
    }
  }

  close(): void {
    this.unsubscribe();
  }
}
