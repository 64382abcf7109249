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
 * Layout: typed arrays indexed by slot (backend, timestamp, generation) that double from
 * SESSION_INITIAL_SLOTS up to maxSessions, never above; a Map from key to handle for named sessions
 * only. A handle is generation × 2^24 + slot: the slot's generation is odd while a session holds it
 * and moves on at every open and close, so a stale handle stops matching the moment its session
 * closes, and matches again only after 2^27 more sessions have used that very slot.
 */
import { unsliced } from '../core/strings.js';
import type { Clock } from '../core/clock.js';

export type SessionHandle = number;
export const NO_SESSION: SessionHandle = -1;

/**
 * The slot a handle names (below 2^24; a stale handle names its old slot): lets other components
 * index per-session arrays by slot (replication's replica index) and check the whole handle there.
 */
export function sessionSlot(h: SessionHandle): number {
  return h % 0x1000000;
}

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

/** Slots allocated by the first open (or maxSessions when smaller); then doubled as needed. */
export const SESSION_INITIAL_SLOTS = 1024;
/** Handle = generation × SLOT_SPAN + slot: at most 2^24 slots (the configuration's maximum). */
const SLOT_SPAN = 0x1000000;
/** Generations wrap at 2^28 (odd: open, even: free), so a handle stays below 2^52, an exact integer. */
const GEN_MASK = 0x0fffffff;

export class SessionTable {
  readonly capacity: number;
  private readonly byKey = new Map<string, SessionHandle>();
  private readonly closeListeners: ((h: SessionHandle, reason: SessionEndReason, backend: number, key: string | null) => void)[] = [];
  /**
   * Added to timeoutMs before a session counts as idle: traffic that another process reports late
   * (dispatcher workers report their sessions' traffic every so often) must not end a live session.
   */
  timeoutGraceMs = 0;
  private count = 0;
  private slots = 0;
  /** Slots ever used (the sweep's range). */
  private used = 0;
  /** Free list through `nextFree`. */
  private freeHead = -1;
  private cursor = 0;
  private backends = new Int32Array(0);
  private lastSeens = new Float64Array(0);
  private gens = new Int32Array(0);
  private nextFree = new Int32Array(0);
  /** By slot: the session's key, null when anonymous or free. */
  private keys: (string | null)[] = [];
  /** By slot: a forwarder's small per-session record (setData), null when none. */
  private datas: (string | null)[] = [];
  private readonly dataListeners: ((h: SessionHandle, data: string) => void)[] = [];

  constructor(private readonly options: SessionTableOptions) {
    if (!(Number.isInteger(options.maxSessions) && options.maxSessions >= 1 && options.maxSessions <= SLOT_SPAN)) {
      throw new RangeError(`session table: maxSessions must be an integer in [1, 2^24], received ${options.maxSessions}`);
    }
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
    // A key cut from a parsed message (a Call-ID, a cookie) would keep the whole message alive.
    return this.place(key, backend, this.options.clock.now(), true);
  }

  /**
   * open() for a bulk load (a replication snapshot, issue 17 item 3): `key` must be a string of its
   * own — decoded from bytes, not cut from a larger string — so it is kept as is, not copied; `now`
   * is the caller's clock reading, taken once for many sessions (default: the clock's now).
   */
  openOwned(key: string | null, backend: number, now?: number): SessionHandle {
    return this.place(key, backend, now ?? this.options.clock.now(), false);
  }

  private place(key: string | null, backend: number, now: number, copyKey: boolean): SessionHandle {
    if (this.count >= this.capacity) return NO_SESSION;
    if (key !== null && this.byKey.has(key)) return NO_SESSION;
    const slot = this.allocate();
    const gen = (this.gens[slot]! + 1) & GEN_MASK;
    this.gens[slot] = gen;
    this.backends[slot] = backend;
    this.lastSeens[slot] = now;
    const kept = key === null || !copyKey ? key : unsliced(key);
    this.keys[slot] = kept;
    this.count++;
    const h = gen * SLOT_SPAN + slot;
    if (kept !== null) this.byKey.set(kept, h);
    return h;
  }

  isOpen(h: SessionHandle): boolean {
    return this.slotOf(h) >= 0;
  }

  /** The backend index the session is pinned to (-1 for a stale handle). */
  backend(h: SessionHandle): number {
    const slot = this.slotOf(h);
    return slot >= 0 ? this.backends[slot]! : -1;
  }

  key(h: SessionHandle): string | null {
    const slot = this.slotOf(h);
    return slot >= 0 ? this.keys[slot]! : null;
  }

  /** When the session last had traffic (clock.now() of its open or last touch()); -1 for a stale handle. */
  lastSeen(h: SessionHandle): number {
    const slot = this.slotOf(h);
    return slot >= 0 ? this.lastSeens[slot]! : -1;
  }

  /** Traffic on the session: it is not idle. `now`: the caller's clock reading, when it touches many sessions at once. */
  touch(h: SessionHandle, now?: number): void {
    const slot = this.slotOf(h);
    if (slot >= 0) this.lastSeens[slot] = now ?? this.options.clock.now();
  }

  /**
   * touch(), but the session counts as seen `aheadMs` from now (never earlier than it already did):
   * a replica on a backup, whose owner reports its traffic only every so often, is kept that much
   * longer than the owner's own idle timeout so that it never expires before the owner's copy.
   */
  touchAhead(h: SessionHandle, aheadMs: number, now = this.options.clock.now()): void {
    const slot = this.slotOf(h);
    if (slot < 0) return;
    const at = now + aheadMs;
    if (at > this.lastSeens[slot]!) this.lastSeens[slot] = at;
  }

  /** A session with no touch() for this long is closed by sweep(). */
  get timeoutMs(): number {
    return this.options.timeoutMs;
  }

  /** Moves the pin (the old backend failed). */
  repin(h: SessionHandle, backend: number): void {
    const slot = this.slotOf(h);
    if (slot >= 0) this.backends[slot] = backend;
  }

  close(h: SessionHandle, reason: SessionEndReason): void {
    const slot = this.slotOf(h);
    if (slot < 0) return;
    const backend = this.backends[slot]!;
    const key = this.keys[slot]!;
    this.gens[slot] = (this.gens[slot]! + 1) & GEN_MASK;
    this.keys[slot] = null;
    this.datas[slot] = null;
    this.nextFree[slot] = this.freeHead;
    this.freeHead = slot;
    this.count--;
    if (key !== null) this.byKey.delete(key);
    for (const fn of this.closeListeners.slice()) fn(h, reason, backend, key);
  }

  /** Open sessions pinned to `backend` (for re-pinning after a failure). Scans the table: failures are rare. */
  pinnedTo(backend: number): SessionHandle[] {
    const out: SessionHandle[] = [];
    for (let slot = 0; slot < this.used; slot++) {
      const gen = this.gens[slot]!;
      if ((gen & 1) === 1 && this.backends[slot] === backend) out.push(gen * SLOT_SPAN + slot);
    }
    return out;
  }

  /**
   * Closes (reason 'timeout') sessions idle for timeoutMs or more, visiting at most `budget` slots
   * and resuming where the last call stopped; returns how many closed.
   */
  sweep(budget: number = Number.MAX_SAFE_INTEGER): number {
    const now = this.options.clock.now();
    const timeout = this.options.timeoutMs + this.timeoutGraceMs;
    const visits = Math.min(budget, this.used);
    let closed = 0;
    for (let v = 0; v < visits; v++) {
      if (this.cursor >= this.used) this.cursor = 0;
      const slot = this.cursor++;
      const gen = this.gens[slot]!;
      if ((gen & 1) === 1 && now - this.lastSeens[slot]! >= timeout) {
        this.close(gen * SLOT_SPAN + slot, 'timeout');
        closed++;
      }
    }
    return closed;
  }

  /** Called after a session closed, with the backend index it was pinned to and its key (its flows, relay ports and replicas follow it). Returns an unsubscribe. */
  onClose(fn: (h: SessionHandle, reason: SessionEndReason, backend: number, key: string | null) => void): () => void {
    this.closeListeners.push(fn);
    return () => {
      const i = this.closeListeners.indexOf(fn);
      if (i >= 0) this.closeListeners.splice(i, 1);
    };
  }

  /**
   * Attaches a small string to an open session (the SIP forwarder's client address and transport), so
   * that replication carries it to the backups and a forwarder that takes the session over can
   * rebuild its side record (issue 7). Dropped when the session closes.
   */
  setData(h: SessionHandle, data: string): void {
    const slot = this.slotOf(h);
    if (slot < 0 || this.datas[slot] === data) return;
    this.datas[slot] = data;
    for (const fn of this.dataListeners) fn(h, data);
  }

  /** Called after setData() changed a session's string. Returns an unsubscribe. */
  onData(fn: (h: SessionHandle, data: string) => void): () => void {
    this.dataListeners.push(fn);
    return () => {
      const i = this.dataListeners.indexOf(fn);
      if (i >= 0) this.dataListeners.splice(i, 1);
    };
  }

  /** The string setData() attached to the session, or null. */
  data(h: SessionHandle): string | null {
    const slot = this.slotOf(h);
    return slot >= 0 ? this.datas[slot]! : null;
  }

  /** Calls `fn` with every open session (a replication snapshot); `fn` must not open or close sessions. */
  forEach(fn: (h: SessionHandle) => void): void {
    for (let slot = 0; slot < this.used; slot++) {
      const gen = this.gens[slot]!;
      if ((gen & 1) === 1) fn(gen * SLOT_SPAN + slot);
    }
  }

  /**
   * forEach() in slices (a replication snapshot spread over event-loop turns): calls `fn` with the
   * open sessions from slot `from` on, at most `max` of them; returns the slot to resume from, or -1
   * when the table's end was reached. Sessions opened or closed between calls are seen or not
   * depending on their slot.
   */
  forEachFrom(from: number, max: number, fn: (h: SessionHandle) => void): number {
    let n = 0;
    for (let slot = from; slot < this.used; slot++) {
      const gen = this.gens[slot]!;
      if ((gen & 1) !== 1) continue;
      if (n === max) return slot;
      fn(gen * SLOT_SPAN + slot);
      n++;
    }
    return -1;
  }

  /** Bytes held by the slot arrays (typed arrays and the key and data arrays' pointers; the strings and the key Map not counted). */
  bytes(): number {
    return this.backends.byteLength + this.lastSeens.byteLength + this.gens.byteLength + this.nextFree.byteLength + this.slots * 16;
  }

  /** The slot of an open session's handle, -1 for a stale or foreign one. */
  private slotOf(h: SessionHandle): number {
    if (!(h >= SLOT_SPAN)) return -1;
    const slot = h % SLOT_SPAN;
    if (slot >= this.used) return -1;
    const gen = this.gens[slot]!;
    return (gen & 1) === 1 && gen * SLOT_SPAN + slot === h ? slot : -1;
  }

  private allocate(): number {
    if (this.freeHead >= 0) {
      const slot = this.freeHead;
      this.freeHead = this.nextFree[slot]!;
      return slot;
    }
    if (this.used === this.slots) this.grow();
    return this.used++;
  }

  /**
   * Allocates room for `n` sessions (at most maxSessions) at once, instead of doubling step by step
   * (a replication snapshot announces its size). Never shrinks.
   */
  reserve(n: number): void {
    const slots = Math.min(this.capacity, Math.floor(n));
    if (slots > this.slots) this.grow(slots);
  }

  private grow(to?: number): void {
    const slots = to ?? (this.slots === 0 ? Math.min(this.capacity, SESSION_INITIAL_SLOTS) : Math.min(this.capacity, this.slots * 2));
    const backends = new Int32Array(slots);
    backends.set(this.backends);
    this.backends = backends;
    const lastSeens = new Float64Array(slots);
    lastSeens.set(this.lastSeens);
    this.lastSeens = lastSeens;
    const gens = new Int32Array(slots);
    gens.set(this.gens);
    this.gens = gens;
    const nextFree = new Int32Array(slots);
    nextFree.set(this.nextFree);
    this.nextFree = nextFree;
    for (let slot = this.slots; slot < slots; slot++) {
      this.keys.push(null);
      this.datas.push(null);
    }
    this.slots = slots;
  }
}
