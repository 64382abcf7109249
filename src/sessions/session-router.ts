/**
 * @module Session-aware balancing (SARA III.C, Fig. 5): the first unit of work of a session asks the
 * balancer for a backend and pins the session to it; every later one follows the pin. A pin on a
 * backend that is down moves (re-pin, counted); a pin on a draining backend stays (planned failure:
 * it keeps its sessions and gets no new ones, which the balancer's snapshot already ensures).
 */
import type { Balancer } from '../balance/balancer.js';
import { channels, type SessionCloseEvent, type SessionEvent, type SessionRefuseEvent, type SessionRepinEvent } from '../core/diagnostics.js';
import type { Backend } from '../core/backend.js';
import { keyHash, mix32 } from '../core/key-hash.js';
import { NO_SESSION, type SessionEndReason, type SessionHandle, type SessionTable } from './session-table.js';

export type SessionRoute =
  | { readonly type: 'pinned'; readonly session: SessionHandle; readonly backend: Backend }
  | { readonly type: 'opened'; readonly session: SessionHandle; readonly backend: Backend }
  | { readonly type: 'repinned'; readonly session: SessionHandle; readonly backend: Backend; readonly from: Backend }
  | { readonly type: 'refused'; readonly reason: SessionRefuseEvent['reason'] | 'closed' };

/**
 * A change of the session table, as listeners see it (media relays follow re-pins; replication
 * streams every change to the backups).
 */
export type SessionChange =
  | { readonly type: 'open'; readonly session: SessionHandle; readonly key: string | null; readonly backend: Backend }
  | { readonly type: 'repin'; readonly session: SessionHandle; readonly from: Backend | null; readonly to: Backend }
  | { readonly type: 'close'; readonly session: SessionHandle; readonly reason: SessionEndReason; readonly key: string | null };

/** A pin is kept unless its backend is down (or gone from the configuration). */
function keepsPin(b: Backend | undefined): b is Backend {
  return b !== undefined && b.state !== 'down';
}

export class SessionRouter {
  constructor(
    private readonly service: string,
    readonly table: SessionTable,
    private readonly backends: readonly Backend[],
    private readonly balancer: Balancer<Backend>,
  ) {
    table.onClose((h, reason, backend, key) => this.closed(h, reason, backend, key));
  }

  /**
   * Re-pins a keyed session by rendezvous hashing of its key over the eligible backends instead of
   * the balancer's pick (issue 16): dispatcher workers and their primary that see the same backend
   * fail move its sessions to the same backend without asking each other.
   */
  repinByKey = false;

  /** Whether keyed sessions move by rendezvous hashing (a Maglev balancer maps keys the same everywhere already). */
  get rendezvousRepins(): boolean {
    return this.repinByKey && this.balancer.hashesKeys !== true;
  }

  private readonly listeners: ((change: SessionChange) => void)[] = [];

  /** Called synchronously after every open, re-pin and close. Returns an unsubscribe. */
  onChange(fn: (change: SessionChange) => void): () => void {
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  private changed(change: SessionChange): void {
    for (const fn of this.listeners) fn(change);
  }

  /**
   * Routes one unit of work of the session named `key` (null: anonymous, always new). Follows the pin of
   * an open session; otherwise opens one on the balancer's choice when `open` is true, or refuses.
   */
  route(key: string | null, open = true): SessionRoute {
    if (key !== null) {
      const h = this.table.find(key);
      if (h !== NO_SESSION) return this.follow(h);
    }
    if (!open) return { type: 'refused', reason: 'no-backend' };
    return this.open(key);
  }

  /**
   * Opens a session on the balancer's choice (a new session: admission was already decided). `hash`:
   * the key's hash for a balancer that `hashesKeys` (Maglev), so that every dispatcher opens it on
   * the same backend.
   */
  open(key: string | null, hash?: number): SessionRoute {
    const pick = this.balancer.pick(hash);
    if (pick.type === 'none') return this.refuse('no-backend');
    const h = this.table.open(key, pick.backend.index);
    if (h === NO_SESSION) return this.refuse('sessions-full');
    if (channels.sessionOpen.hasSubscribers) {
      channels.sessionOpen.publish({ service: this.service, backend: pick.backend.id } satisfies SessionEvent);
    }
    if (this.listeners.length > 0) this.changed({ type: 'open', session: h, key, backend: pick.backend });
    return { type: 'opened', session: h, backend: pick.backend };
  }

  /** Routes one unit of work of an open session: its pin, or a new one when the pinned backend is down. */
  follow(h: SessionHandle): SessionRoute {
    // A stale handle (the session timed out or ended under its caller) has no pin to follow.
    if (!this.table.isOpen(h)) return { type: 'refused', reason: 'closed' };
    const pinned = this.backends[this.table.backend(h)];
    this.table.touch(h);
    if (keepsPin(pinned)) return { type: 'pinned', session: h, backend: pinned };
    const moved = this.repin(h);
    if (!moved) return this.refuse('no-backend');
    return { type: 'repinned', session: h, backend: moved, from: pinned ?? moved };
  }

  /** The health monitor took `backend` down: move every session pinned to it now. Returns how many moved. */
  backendDown(backend: Backend): number {
    let moved = 0;
    for (const h of this.table.pinnedTo(backend.index)) if (this.repin(h)) moved++;
    return moved;
  }

  /**
   * Pins the session named `key` to `backend`, which the caller chose: an HTTP reply whose Set-Cookie
   * names a session that backend created, or the backend that took a session's request over in a
   * failover (issue 5). Opens the session when unknown ('opened', sessionOpen), moves it when pinned
   * elsewhere ('repinned', sessionRepin), touches it when already there ('pinned'); 'refused'
   * ('sessions-full', sessionRefuse) when the table cannot open it. `key` null: a new anonymous
   * session pinned to `backend` (the UDP relay's flow outlived its session: it stays on its backend).
   */
  pin(key: string | null, backend: Backend): SessionRoute {
    const h = key === null ? NO_SESSION : this.table.find(key);
    if (h === NO_SESSION) {
      const opened = this.table.open(key, backend.index);
      if (opened === NO_SESSION) return this.refuse('sessions-full');
      if (channels.sessionOpen.hasSubscribers) {
        channels.sessionOpen.publish({ service: this.service, backend: backend.id } satisfies SessionEvent);
      }
      if (this.listeners.length > 0) this.changed({ type: 'open', session: opened, key, backend });
      return { type: 'opened', session: opened, backend };
    }
    this.table.touch(h);
    const at = this.table.backend(h);
    if (at === backend.index) return { type: 'pinned', session: h, backend };
    const from = this.backends[at];
    this.table.repin(h, backend.index);
    if (channels.sessionRepin.hasSubscribers) {
      channels.sessionRepin.publish({ service: this.service, from: from?.id ?? '?', to: backend.id } satisfies SessionRepinEvent);
    }
    if (this.listeners.length > 0) this.changed({ type: 'repin', session: h, from: from ?? null, to: backend });
    return { type: 'repinned', session: h, backend, from: from ?? backend };
  }

  close(h: SessionHandle, reason: SessionEndReason): void {
    this.table.close(h, reason);
  }

  /** The backend of index `i` (a session's pin), if any. */
  backendAt(i: number): Backend | undefined {
    return this.backends[i];
  }

  /**
   * Moves session `h` to the balancer's choice. With Maglev a keyed session moves where its key now
   * maps (the table without the down backend), so that dispatchers that see the same backends down
   * re-pin it to the same backend without telling each other.
   */
  private repin(h: SessionHandle): Backend | null {
    const from = this.backends[this.table.backend(h)];
    let to: Backend | null;
    const named = this.rendezvousRepins ? this.table.key(h) : null;
    if (named !== null) {
      to = this.rendezvous(named, null);
    } else {
      const key = this.balancer.hashesKeys === true ? this.table.key(h) : null;
      const pick = this.balancer.pick(key === null ? undefined : keyHash(key));
      to = pick.type === 'pick' ? pick.backend : null;
    }
    if (to) this.table.repin(h, to.index);
    if (channels.sessionRepin.hasSubscribers) {
      channels.sessionRepin.publish({ service: this.service, from: from?.id ?? '?', to: to?.id ?? null } satisfies SessionRepinEvent);
    }
    if (to && this.listeners.length > 0) this.changed({ type: 'repin', session: h, from: from ?? null, to });
    return to;
  }

  /**
   * Rendezvous (highest random weight) hashing of `key` over the eligible backends but `avoid`:
   * weighted, so that a backend of weight w takes w shares of the sessions that move. The same key
   * and the same eligible set give the same backend in every process.
   */
  rendezvous(key: string, avoid: Backend | null): Backend | null {
    const k = keyHash(key);
    let best: Backend | null = null;
    let bestScore = Infinity;
    for (const b of this.backends) {
      if (!b.eligible || b.removed || b === avoid) continue;
      // u in (0, 1) from the pair's hash; -ln(u) / w is the weighted draw, smallest wins.
      const u = ((mix32(k ^ keyHash(b.id)) >>> 0) + 0.5) / 4294967296;
      const score = -Math.log(u) / b.weight;
      if (score < bestScore) {
        bestScore = score;
        best = b;
      }
    }
    return best;
  }

  private refuse(reason: SessionRefuseEvent['reason']): SessionRoute {
    if (channels.sessionRefuse.hasSubscribers) channels.sessionRefuse.publish({ service: this.service, reason } satisfies SessionRefuseEvent);
    return { type: 'refused', reason };
  }

  private closed(h: SessionHandle, reason: SessionEndReason, backend: number, key: string | null): void {
    if (this.listeners.length > 0) this.changed({ type: 'close', session: h, reason, key });
    if (!channels.sessionClose.hasSubscribers) return;
    channels.sessionClose.publish({ service: this.service, backend: this.backends[backend]?.id ?? null, reason } satisfies SessionCloseEvent);
  }
}
