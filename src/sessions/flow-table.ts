/**
 * @module The flow table (SARA III.A): every flow <src ip:port, dst ip:port, proto> the dispatcher
 * tracks, with its timeout, timestamp, status (new, established, inactive) and identity (signalling,
 * announced, secondary), and the session it belongs to. A flow idle for its timeout becomes inactive;
 * sweep() purges it once twice its timeout has passed. Bounded: insert() refuses when maxFlows flows
 * are tracked.
 *
 * CONTRACT (other components code against these signatures): addresses are 32-bit keys from
 * addressKey(); a handle is an opaque number, -1 is "none", valid until the flow is removed or purged.
 *
 * Layout (issue 5: a million flows in under 200 bytes each, millions of lookups a second): a struct
 * of typed arrays indexed by slot — the handle is the slot, and a slot never moves while its flow
 * lives — plus two open-addressing indexes of slot numbers (linear probing, power-of-two size, load
 * at most 0.7, backward-shift deletion, so no tombstones): one by the flow's 5-tuple, one by session
 * (the head of a doubly linked list of the session's flows, so removeSession() visits only its own
 * flows). The four 32-bit words a lookup compares sit side by side, so a hit costs two cache lines:
 * the index entry (slot + hash) and the key. Arrays double from FLOW_INITIAL_SLOTS up to maxFlows,
 * never above; they do not shrink.
 */
import { getRandomValues } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { NO_SESSION, type SessionHandle } from './session-table.js';

export type FlowHandle = number;
export const NO_FLOW: FlowHandle = -1;
export type FlowStatus = 'new' | 'established' | 'inactive';
export type FlowRole = 'signalling' | 'announced' | 'secondary';
/** IP protocol numbers. */
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export type FlowProto = typeof PROTO_TCP | typeof PROTO_UDP;

export interface FlowTableOptions {
  service: string;
  maxFlows: number;
  /** Default flow timeout (insert() may give one per flow). */
  timeoutMs: number;
  clock: Clock;
  /** Seed of the index hash; random by default so that clients cannot aim their ports at one probe chain. */
  hashSeed?: number;
}

// --- Address keys -------------------------------------------------------------------------------

/** First interned id: 240.0.0.0, class E, which no real IPv4 source uses. */
const INTERN_BASE = 0xf0000000;
/** Interned ids available (240.0.0.0/4). */
const INTERN_IDS = 0x10000000;
/**
 * Interned ids no flow uses, kept at most (oldest released first). A key from addressKey() therefore
 * stays bound to its address at least until this many other new addresses were interned — plenty for
 * a lookup followed by insert() on the same datagram — and for as long as a flow holds it.
 */
export const INTERN_IDLE_MAX = 4096;

const internIds = new Map<string, number>();
/** By id - INTERN_BASE: the address, or undefined when the id is free. */
const internAddresses: (string | undefined)[] = [];
/** By id - INTERN_BASE: how many flows (of every table) hold the id. */
const internRefs: number[] = [];
const internFree: number[] = [];
/** Unreferenced ids in the order they became unreferenced (a Set keeps insertion order). */
const internIdle = new Set<number>();

/** The u32 value of a dotted quad, or -1 when `s` is not one (charCodeAt parsing, no allocation). */
function parseIPv4(s: string): number {
  const n = s.length;
  if (n < 7 || n > 15) return -1;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
    } else {
      const d = c - 48;
      if (d < 0 || d > 9 || digits === 3) return -1;
      octet = octet * 10 + d;
      if (octet > 255) return -1;
      digits++;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + octet;
}

/**
 * The 32-bit key of an address string as the flow table stores it: an IPv4 address as its u32 value;
 * anything else (IPv6) interned to an id in 240.0.0.0/4, which no real IPv4 source uses. Returns -1
 * for an empty string.
 *
 * Interning is bounded: an id is held while a flow uses it (insert() takes a reference, removal
 * drops it) and at most INTERN_IDLE_MAX ids without a flow are kept, the oldest released first; a
 * released id may later name another address. So compute keys per datagram, and keep a key only
 * from pinAddress(). A class E dotted quad is interned too, so it can never collide with an id.
 */
export function addressKey(address: string): number {
  const v4 = parseIPv4(address);
  if (v4 >= 0 && v4 < INTERN_BASE) return v4;
  return address === '' ? -1 : internOther(address);
}

/**
 * addressKey() for an address a component keeps the key of for its lifetime (a service's own bound
 * address, used as the destination of every flow): an interned key stays bound to it for good.
 */
export function pinAddress(address: string): number {
  const key = addressKey(address);
  retainAddress(key);
  return key;
}

/** The address string of a key from addressKey() ('' when the key names none): for replies. */
export function addressOf(key: number): string {
  if (key >= 0 && key < INTERN_BASE) return `${key >>> 24}.${(key >>> 16) & 0xff}.${(key >>> 8) & 0xff}.${key & 0xff}`;
  const i = key - INTERN_BASE;
  return (i >= 0 && internAddresses[i]) || '';
}

/** Interned ids in use (held by a flow or idle): for tests and status. */
export function internedAddressCount(): number {
  return internIds.size;
}

function internOther(address: string): number {
  const known = internIds.get(address);
  if (known !== undefined) return known;
  let i = internFree.pop();
  if (i === undefined) {
    if (internAddresses.length >= INTERN_IDS) throw new RangeError('flow table: 2^28 interned addresses in use');
    i = internAddresses.length;
  }
  internAddresses[i] = address;
  internRefs[i] = 0;
  const id = INTERN_BASE + i;
  internIds.set(address, id);
  internIdle.add(id);
  while (internIdle.size > INTERN_IDLE_MAX) {
    const oldest = internIdle.values().next().value as number;
    internIdle.delete(oldest);
    const j = oldest - INTERN_BASE;
    internIds.delete(internAddresses[j]!);
    internAddresses[j] = undefined;
    internFree.push(j);
  }
  return id;
}

function retainAddress(key: number): void {
  const i = key - INTERN_BASE;
  if (i < 0 || internAddresses[i] === undefined) return;
  if (internRefs[i]!++ === 0) internIdle.delete(key);
}

function releaseAddress(key: number): void {
  const i = key - INTERN_BASE;
  if (i < 0 || internAddresses[i] === undefined) return;
  if (--internRefs[i]! === 0) internIdle.add(key);
}

// --- The table ----------------------------------------------------------------------------------

/** Slots allocated by the first insert (or maxFlows when smaller); then doubled as needed. */
export const FLOW_INITIAL_SLOTS = 1024;
/** Highest load of an index (entries / positions). */
const MAX_LOAD = 0.7;
/** 32-bit words per slot in `keys`: srcIp, dstIp, srcPort << 16 | dstPort, meta. */
const KEY_WORDS = 4;
/** meta: proto in bits 0-7 (0: free slot), status in bits 8-9, role in bits 10-11. */
const STATUS_SHIFT = 8;
const ROLE_SHIFT = 10;
const STATUS_NEW = 0;
const STATUS_ESTABLISHED = 1;
const STATUS_INACTIVE = 2;
const ROLE_SIGNALLING = 0;
const ROLE_ANNOUNCED = 1;
const ROLE_SECONDARY = 2;
const STATUSES: readonly FlowStatus[] = ['new', 'established', 'inactive'];
const ROLES: readonly FlowRole[] = ['signalling', 'announced', 'secondary'];
const ROLE_CODES: Record<FlowRole, number> = { signalling: ROLE_SIGNALLING, announced: ROLE_ANNOUNCED, secondary: ROLE_SECONDARY };

/** One murmur3 round. */
function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** murmur3's finaliser: every input bit reaches the low bits the index uses. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Index positions for `slots` slots: the power of two that keeps the load at most MAX_LOAD. */
function indexSizeFor(slots: number): number {
  let size = 8;
  while (size * MAX_LOAD < slots) size *= 2;
  return size;
}

export class FlowTable {
  readonly capacity: number;
  private readonly seed: number;
  private readonly purgeListeners: ((h: FlowHandle) => void)[] = [];
  private readonly insertListeners: ((h: FlowHandle) => void)[] = [];
  private readonly removeListeners: ((h: FlowHandle) => void)[] = [];
  private count = 0;
  /** Slots allocated. */
  private slots = 0;
  /** Slots ever used (the sweep's range); slots above are untouched. */
  private used = 0;
  /** Free list through `next`. */
  private freeHead = -1;
  private cursor = 0;

  /** KEY_WORDS per slot: srcIp | 0, dstIp | 0, srcPort << 16 | dstPort, meta. */
  private keys = new Int32Array(0);
  private sessions = new Float64Array(0);
  private lastSeens = new Float64Array(0);
  private timeouts = new Int32Array(0);
  /** The session's list (and the free list for free slots); -1 ends. */
  private next = new Int32Array(0);
  private prev = new Int32Array(0);

  private mask = 0;
  /** Two words per position: slot + 1 (0: empty), the 5-tuple hash. */
  private index = new Int32Array(0);
  /** Per position: the slot + 1 of the first flow of a session (0: empty); its key is sessions[slot]. */
  private sessionIndex = new Int32Array(0);

  constructor(private readonly options: FlowTableOptions) {
    if (!(Number.isInteger(options.maxFlows) && options.maxFlows >= 1 && options.maxFlows <= 0x40000000)) {
      throw new RangeError(`flow table: maxFlows must be an integer in [1, 2^30], received ${options.maxFlows}`);
    }
    this.capacity = options.maxFlows;
    this.seed = options.hashSeed ?? getRandomValues(new Int32Array(1))[0]!;
  }

  get size(): number {
    return this.count;
  }

  lookup(srcIp: number, srcPort: number, dstIp: number, dstPort: number, proto: FlowProto): FlowHandle {
    if (this.count === 0) return NO_FLOW;
    const a = srcIp | 0;
    const b = dstIp | 0;
    const p = ((srcPort & 0xffff) << 16) | (dstPort & 0xffff);
    const h = this.hash(a, b, p, proto);
    const index = this.index;
    const keys = this.keys;
    const mask = this.mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = index[2 * i]!;
      if (e === 0) return NO_FLOW;
      if (index[2 * i + 1] === h) {
        const k = (e - 1) * KEY_WORDS;
        if (keys[k] === a && keys[k + 1] === b && keys[k + 2] === p && (keys[k + 3]! & 0xff) === proto) return e - 1;
      }
    }
  }

  /**
   * Tracks a new flow (status new, timestamp now). Returns the existing handle if the flow is already
   * tracked, -1 when the table is full. `now`: the caller's clock reading, when it inserts many flows
   * at once (a replication snapshot reads the clock once per frame, not per flow).
   */
  insert(
    srcIp: number,
    srcPort: number,
    dstIp: number,
    dstPort: number,
    proto: FlowProto,
    role: FlowRole,
    session: SessionHandle = NO_SESSION,
    timeoutMs: number = this.options.timeoutMs,
    now?: number,
  ): FlowHandle {
    if ((proto & 0xff) === 0 || proto > 0xff) throw new RangeError(`flow table: protocol ${proto} is not an IP protocol number`);
    const a = srcIp | 0;
    const b = dstIp | 0;
    const p = ((srcPort & 0xffff) << 16) | (dstPort & 0xffff);
    const h = this.hash(a, b, p, proto);
    let i = h & this.mask;
    if (this.count > 0) {
      const keys = this.keys;
      for (let e = this.index[2 * i]!; e !== 0; i = (i + 1) & this.mask, e = this.index[2 * i]!) {
        if (this.index[2 * i + 1] !== h) continue;
        const k = (e - 1) * KEY_WORDS;
        if (keys[k] === a && keys[k + 1] === b && keys[k + 2] === p && (keys[k + 3]! & 0xff) === proto) return e - 1;
      }
    }
    if (this.count >= this.capacity) return NO_FLOW;
    const indexBefore = this.index;
    const slot = this.allocate();
    if (this.index !== indexBefore) {
      // The index was rebuilt larger: find the empty position again.
      for (i = h & this.mask; this.index[2 * i] !== 0; i = (i + 1) & this.mask);
    }
    this.index[2 * i] = slot + 1;
    this.index[2 * i + 1] = h;
    const k = slot * KEY_WORDS;
    this.keys[k] = a;
    this.keys[k + 1] = b;
    this.keys[k + 2] = p;
    this.keys[k + 3] = (proto & 0xff) | (STATUS_NEW << STATUS_SHIFT) | ((ROLE_CODES[role] ?? ROLE_SIGNALLING) << ROLE_SHIFT);
    this.lastSeens[slot] = now ?? this.options.clock.now();
    this.timeouts[slot] = Math.max(0, Math.min(0x7fffffff, Math.round(timeoutMs)));
    this.sessions[slot] = session;
    this.link(slot);
    retainAddress(srcIp);
    retainAddress(dstIp);
    this.count++;
    if (this.insertListeners.length > 0) for (const fn of this.insertListeners) fn(slot);
    return slot;
  }

  /** A datagram (or segment) on the flow: new/inactive → established, announced → secondary, timestamp now. */
  seen(h: FlowHandle): void {
    if (!this.live(h)) return;
    const k = h * KEY_WORDS + 3;
    const meta = this.keys[k]!;
    const role = (meta >>> ROLE_SHIFT) & 3;
    this.keys[k] = (meta & 0xff) | (STATUS_ESTABLISHED << STATUS_SHIFT) | ((role === ROLE_ANNOUNCED ? ROLE_SECONDARY : role) << ROLE_SHIFT);
    this.lastSeens[h] = this.options.clock.now();
  }

  status(h: FlowHandle): FlowStatus {
    if (!this.live(h)) return 'inactive';
    const k = h * KEY_WORDS + 3;
    let status = (this.keys[k]! >>> STATUS_SHIFT) & 3;
    if (status !== STATUS_INACTIVE && this.options.clock.now() - this.lastSeens[h]! >= this.timeouts[h]!) {
      status = STATUS_INACTIVE;
      this.keys[k] = (this.keys[k]! & ~(3 << STATUS_SHIFT)) | (STATUS_INACTIVE << STATUS_SHIFT);
    }
    return STATUSES[status]!;
  }

  role(h: FlowHandle): FlowRole {
    return this.live(h) ? ROLES[(this.keys[h * KEY_WORDS + 3]! >>> ROLE_SHIFT) & 3]! : 'signalling';
  }

  session(h: FlowHandle): SessionHandle {
    return this.live(h) ? this.sessions[h]! : NO_SESSION;
  }

  setSession(h: FlowHandle, session: SessionHandle): void {
    if (!this.live(h) || this.sessions[h] === session) return;
    this.unlink(h);
    this.sessions[h] = session;
    this.link(h);
  }

  /** The flow's source port (handy for replies): */
  srcPort(h: FlowHandle): number {
    return this.live(h) ? this.keys[h * KEY_WORDS + 2]! >>> 16 : -1;
  }

  srcIp(h: FlowHandle): number {
    return this.live(h) ? this.keys[h * KEY_WORDS]! >>> 0 : -1;
  }

  dstIp(h: FlowHandle): number {
    return this.live(h) ? this.keys[h * KEY_WORDS + 1]! >>> 0 : -1;
  }

  dstPort(h: FlowHandle): number {
    return this.live(h) ? this.keys[h * KEY_WORDS + 2]! & 0xffff : -1;
  }

  /** PROTO_TCP or PROTO_UDP; -1 for a handle that names no flow. */
  proto(h: FlowHandle): number {
    return this.live(h) ? this.keys[h * KEY_WORDS + 3]! & 0xff : -1;
  }

  /** The flow's timestamp (clock.now() of its insert or last seen()); -1 for a handle that names no flow. */
  lastSeen(h: FlowHandle): number {
    return this.live(h) ? this.lastSeens[h]! : -1;
  }

  timeoutMs(h: FlowHandle): number {
    return this.live(h) ? this.timeouts[h]! : -1;
  }

  /** Whether `h` names a flow now. */
  has(h: FlowHandle): boolean {
    return this.live(h);
  }

  /** The flows of `session` (most recently attached first), without scanning the table. */
  flowsOf(session: SessionHandle): FlowHandle[] {
    const out: FlowHandle[] = [];
    if (session === NO_SESSION) return out;
    const pos = this.findSession(session);
    if (pos < 0) return out;
    for (let f = this.sessionIndex[pos]! - 1; f >= 0; f = this.next[f]!) out.push(f);
    return out;
  }

  remove(h: FlowHandle): void {
    if (!this.live(h)) return;
    if (this.removeListeners.length > 0) for (const fn of this.removeListeners) fn(h);
    const k = h * KEY_WORDS;
    const a = this.keys[k]!;
    const b = this.keys[k + 1]!;
    this.deleteFromIndex(h, this.hash(a, b, this.keys[k + 2]!, this.keys[k + 3]! & 0xff));
    this.unlink(h);
    this.keys[k + 3] = 0;
    this.sessions[h] = NO_SESSION;
    this.next[h] = this.freeHead;
    this.freeHead = h;
    this.count--;
    releaseAddress(a >>> 0);
    releaseAddress(b >>> 0);
  }

  /**
   * Removes every flow of `session` (the session ended); returns how many. Visits only that session's
   * flows. NO_SESSION is no session: flows without one are not removed.
   */
  removeSession(session: SessionHandle): number {
    if (session === NO_SESSION) return 0;
    const pos = this.findSession(session);
    if (pos < 0) return 0;
    let n = 0;
    let f = this.sessionIndex[pos]! - 1;
    while (f >= 0) {
      const after = this.next[f]!;
      this.remove(f);
      n++;
      f = after;
    }
    return n;
  }

  /** Called just before a flow is purged (its relay socket or port follows it). Returns an unsubscribe. */
  onPurge(fn: (h: FlowHandle) => void): () => void {
    this.purgeListeners.push(fn);
    return () => {
      const i = this.purgeListeners.indexOf(fn);
      if (i >= 0) this.purgeListeners.splice(i, 1);
    };
  }

  /**
   * Called after a new flow was inserted (replication streams it to the backups, issue 7). Called
   * synchronously on the data path: a listener must only record. Returns an unsubscribe.
   */
  onInsert(fn: (h: FlowHandle) => void): () => void {
    this.insertListeners.push(fn);
    return () => {
      const i = this.insertListeners.indexOf(fn);
      if (i >= 0) this.insertListeners.splice(i, 1);
    };
  }

  /**
   * Called just before a flow leaves the table by remove(), removeSession() or the sweep (its fields
   * are still readable). Same rules as onInsert. Returns an unsubscribe.
   */
  onRemove(fn: (h: FlowHandle) => void): () => void {
    this.removeListeners.push(fn);
    return () => {
      const i = this.removeListeners.indexOf(fn);
      if (i >= 0) this.removeListeners.splice(i, 1);
    };
  }

  /** Calls `fn` with every flow in the table (a replication snapshot); `fn` must not insert or remove. */
  forEach(fn: (h: FlowHandle) => void): void {
    for (let slot = 0; slot < this.used; slot++) if (this.keys[slot * KEY_WORDS + 3] !== 0) fn(slot);
  }

  /** forEach() in slices: as SessionTable.forEachFrom(), the flows from slot `from` on, at most `max`; the slot to resume from, or -1 at the end. */
  forEachFrom(from: number, max: number, fn: (h: FlowHandle) => void): number {
    let n = 0;
    for (let slot = from; slot < this.used; slot++) {
      if (this.keys[slot * KEY_WORDS + 3] === 0) continue;
      if (n === max) return slot;
      fn(slot);
      n++;
    }
    return -1;
  }

  /**
   * Marks the flow as not idle without changing its status or role (a replica kept alive by its
   * owner). `now`: the caller's clock reading, when it touches many flows at once.
   */
  touch(h: FlowHandle, now?: number): void {
    if (this.live(h)) this.lastSeens[h] = now ?? this.options.clock.now();
  }

  /**
   * The purging process: flows idle for their timeout become inactive; flows idle for twice their
   * timeout are removed, the onPurge listeners being called just before. Visits at most `budget` slots
   * per call, resuming where the last call stopped. Returns how many were purged.
   *
   * A listener may remove flows (removeSession of the flow's session) or revive the flow (seen()): a
   * flow is removed after its listeners only if it is still there and still idle for twice its timeout.
   */
  sweep(budget: number = Number.MAX_SAFE_INTEGER): number {
    const now = this.options.clock.now();
    const visits = Math.min(budget, this.used);
    let purged = 0;
    for (let v = 0; v < visits; v++) {
      if (this.cursor >= this.used) this.cursor = 0;
      const slot = this.cursor++;
      const k = slot * KEY_WORDS + 3;
      const meta = this.keys[k]!;
      if (meta === 0) continue;
      const idle = now - this.lastSeens[slot]!;
      const timeout = this.timeouts[slot]!;
      if (idle >= 2 * timeout) {
        for (const fn of this.purgeListeners.slice()) fn(slot);
        purged++;
        if (this.keys[k] !== 0 && now - this.lastSeens[slot]! >= 2 * this.timeouts[slot]!) this.remove(slot);
      } else if (idle >= timeout) {
        this.keys[k] = (meta & ~(3 << STATUS_SHIFT)) | (STATUS_INACTIVE << STATUS_SHIFT);
      }
    }
    return purged;
  }

  /** Bytes held by the table's typed arrays (slots and both indexes): the table's memory, less the object itself. */
  bytes(): number {
    return (
      this.keys.byteLength +
      this.sessions.byteLength +
      this.lastSeens.byteLength +
      this.timeouts.byteLength +
      this.next.byteLength +
      this.prev.byteLength +
      this.index.byteLength +
      this.sessionIndex.byteLength
    );
  }

  private live(h: FlowHandle): boolean {
    return h >= 0 && h < this.used && (h | 0) === h && this.keys[h * KEY_WORDS + 3] !== 0;
  }

  private hash(a: number, b: number, p: number, proto: number): number {
    return fmix(mix(mix(mix(this.seed ^ proto, a), b), p));
  }

  private sessionHash(session: number): number {
    const lo = session >>> 0;
    const hi = (session / 4294967296) | 0;
    return fmix(mix(mix(this.seed, lo), hi));
  }

  /** A free slot, growing the arrays (and rebuilding the indexes) when every allocated slot is used. */
  private allocate(): number {
    if (this.freeHead >= 0) {
      const slot = this.freeHead;
      this.freeHead = this.next[slot]!;
      return slot;
    }
    if (this.used === this.slots) this.grow();
    return this.used++;
  }

  /**
   * Allocates room for `n` flows (at most maxFlows) at once, instead of doubling and re-indexing step
   * by step (a replication snapshot announces its size). Never shrinks.
   */
  reserve(n: number): void {
    const slots = Math.min(this.capacity, Math.floor(n));
    if (slots > this.slots) this.grow(slots);
  }

  private grow(to?: number): void {
    const slots = to ?? (this.slots === 0 ? Math.min(this.capacity, FLOW_INITIAL_SLOTS) : Math.min(this.capacity, this.slots * 2));
    const widen = <T extends Int32Array | Float64Array>(old: T, make: (n: number) => T, per = 1): T => {
      const a = make(slots * per);
      a.set(old);
      return a;
    };
    this.keys = widen(this.keys, (n) => new Int32Array(n), KEY_WORDS);
    this.sessions = widen(this.sessions, (n) => new Float64Array(n));
    this.lastSeens = widen(this.lastSeens, (n) => new Float64Array(n));
    this.timeouts = widen(this.timeouts, (n) => new Int32Array(n));
    this.next = widen(this.next, (n) => new Int32Array(n));
    this.prev = widen(this.prev, (n) => new Int32Array(n));
    this.slots = slots;
    const size = indexSizeFor(slots);
    if (size === this.mask + 1 && this.index.length > 0) return;
    this.mask = size - 1;
    this.index = new Int32Array(size * 2);
    this.sessionIndex = new Int32Array(size);
    for (let slot = 0; slot < this.used; slot++) {
      const k = slot * KEY_WORDS;
      const meta = this.keys[k + 3]!;
      if (meta === 0) continue;
      const h = this.hash(this.keys[k]!, this.keys[k + 1]!, this.keys[k + 2]!, meta & 0xff);
      let i = h & this.mask;
      while (this.index[2 * i] !== 0) i = (i + 1) & this.mask;
      this.index[2 * i] = slot + 1;
      this.index[2 * i + 1] = h;
      const session = this.sessions[slot]!;
      if (session !== NO_SESSION && this.prev[slot] === -1) {
        let j = this.sessionHash(session) & this.mask;
        while (this.sessionIndex[j] !== 0) j = (j + 1) & this.mask;
        this.sessionIndex[j] = slot + 1;
      }
    }
  }

  /** Removes the index entry of `slot` (whose 5-tuple hashes to `h`), shifting back the entries after it. */
  private deleteFromIndex(slot: number, h: number): void {
    const index = this.index;
    const mask = this.mask;
    let i = h & mask;
    while (index[2 * i] !== slot + 1) i = (i + 1) & mask;
    for (let j = (i + 1) & mask; index[2 * j] !== 0; j = (j + 1) & mask) {
      const home = index[2 * j + 1]! & mask;
      // The entry at j may fill the hole at i when i lies on its probe path: from home to j.
      if (((j - home) & mask) >= ((j - i) & mask)) {
        index[2 * i] = index[2 * j]!;
        index[2 * i + 1] = index[2 * j + 1]!;
        i = j;
      }
    }
    index[2 * i] = 0;
    index[2 * i + 1] = 0;
  }

  /** The sessionIndex position of `session`'s list, or -1. */
  private findSession(session: number): number {
    const si = this.sessionIndex;
    if (si.length === 0) return -1;
    const mask = this.mask;
    for (let i = this.sessionHash(session) & mask; ; i = (i + 1) & mask) {
      const e = si[i]!;
      if (e === 0) return -1;
      if (this.sessions[e - 1] === session) return i;
    }
  }

  /** Puts `slot` at the head of its session's list (sessions[slot] is set). */
  private link(slot: number): void {
    this.prev[slot] = -1;
    this.next[slot] = -1;
    const session = this.sessions[slot]!;
    if (session === NO_SESSION) return;
    const pos = this.findSession(session);
    if (pos >= 0) {
      const head = this.sessionIndex[pos]! - 1;
      this.next[slot] = head;
      this.prev[head] = slot;
      this.sessionIndex[pos] = slot + 1;
      return;
    }
    const mask = this.mask;
    let i = this.sessionHash(session) & mask;
    while (this.sessionIndex[i] !== 0) i = (i + 1) & mask;
    this.sessionIndex[i] = slot + 1;
  }

  /** Takes `slot` out of its session's list (sessions[slot] still names the session). */
  private unlink(slot: number): void {
    const session = this.sessions[slot]!;
    if (session === NO_SESSION) return;
    const p = this.prev[slot]!;
    const n = this.next[slot]!;
    this.prev[slot] = -1;
    this.next[slot] = -1;
    if (n >= 0) this.prev[n] = p;
    if (p >= 0) {
      this.next[p] = n;
      return;
    }
    const pos = this.findSession(session);
    if (n >= 0) {
      this.sessionIndex[pos] = n + 1;
      return;
    }
    const si = this.sessionIndex;
    const mask = this.mask;
    let i = pos;
    for (let j = (i + 1) & mask; si[j] !== 0; j = (j + 1) & mask) {
      const home = this.sessionHash(this.sessions[si[j]! - 1]!) & mask;
      if (((j - home) & mask) >= ((j - i) & mask)) {
        si[i] = si[j]!;
        i = j;
      }
    }
    si[i] = 0;
  }
}
