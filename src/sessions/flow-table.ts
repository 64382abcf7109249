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
 * PLACEHOLDER IMPLEMENTATION (Map-based) until the compact typed-array table replaces it.
 */
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
}

/**
 * The 32-bit key of an address string as the flow table stores it: an IPv4 address as its u32 value;
 * anything else (IPv6) interned to an id in 240.0.0.0/4, which no real IPv4 source uses. Returns -1
 * for an empty string.
 */
export function addressKey(address: string): number {
  const parts = address.split('.');
  if (parts.length === 4) {
    let v = 0;
    for (const p of parts) {
      const n = Number(p);
      if (!(n >= 0 && n <= 255) || p === '') return internOther(address);
      v = v * 256 + n;
    }
    return v;
  }
  return address === '' ? -1 : internOther(address);
}

const interned = new Map<string, number>();
function internOther(address: string): number {
  let id = interned.get(address);
  if (id === undefined) interned.set(address, (id = 0xf0000000 + interned.size));
  return id;
}

interface Flow {
  key: string;
  srcIp: number;
  srcPort: number;
  dstIp: number;
  dstPort: number;
  proto: FlowProto;
  status: FlowStatus;
  role: FlowRole;
  session: SessionHandle;
  timeoutMs: number;
  lastSeen: number;
}

export class FlowTable {
  readonly capacity: number;
  private readonly flows: (Flow | undefined)[] = [];
  private readonly byKey = new Map<string, number>();
  private readonly free: number[] = [];
  private count = 0;
  private readonly purgeListeners: ((h: FlowHandle) => void)[] = [];

  constructor(private readonly options: FlowTableOptions) {
    this.capacity = options.maxFlows;
  }

  get size(): number {
    return this.count;
  }

  lookup(srcIp: number, srcPort: number, dstIp: number, dstPort: number, proto: FlowProto): FlowHandle {
    return this.byKey.get(`${srcIp}:${srcPort}:${dstIp}:${dstPort}:${proto}`) ?? NO_FLOW;
  }

  /**
   * Tracks a new flow (status new, timestamp now). Returns the existing handle if the flow is already
   * tracked, -1 when the table is full.
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
  ): FlowHandle {
    const key = `${srcIp}:${srcPort}:${dstIp}:${dstPort}:${proto}`;
    const existing = this.byKey.get(key);
    if (existing !== undefined) return existing;
    if (this.count >= this.capacity) return NO_FLOW;
    const h = this.free.pop() ?? this.flows.length;
    this.flows[h] = { key, srcIp, srcPort, dstIp, dstPort, proto, status: 'new', role, session, timeoutMs, lastSeen: this.options.clock.now() };
    this.byKey.set(key, h);
    this.count++;
    return h;
  }

  /** A datagram (or segment) on the flow: new/inactive → established, announced → secondary, timestamp now. */
  seen(h: FlowHandle): void {
    const f = this.flows[h];
    if (!f) return;
    f.status = 'established';
    if (f.role === 'announced') f.role = 'secondary';
    f.lastSeen = this.options.clock.now();
  }

  status(h: FlowHandle): FlowStatus {
    const f = this.flows[h];
    if (!f) return 'inactive';
    if (f.status !== 'inactive' && this.options.clock.now() - f.lastSeen >= f.timeoutMs) f.status = 'inactive';
    return f.status;
  }

  role(h: FlowHandle): FlowRole {
    return this.flows[h]?.role ?? 'signalling';
  }

  session(h: FlowHandle): SessionHandle {
    return this.flows[h]?.session ?? NO_SESSION;
  }

  setSession(h: FlowHandle, session: SessionHandle): void {
    const f = this.flows[h];
    if (f) f.session = session;
  }

  /** The flow's source port (handy for replies): */
  srcPort(h: FlowHandle): number {
    return this.flows[h]?.srcPort ?? -1;
  }

  srcIp(h: FlowHandle): number {
    return this.flows[h]?.srcIp ?? -1;
  }

  remove(h: FlowHandle): void {
    const f = this.flows[h];
    if (!f) return;
    this.byKey.delete(f.key);
    this.flows[h] = undefined;
    this.free.push(h);
    this.count--;
  }

  /** Removes every flow of `session` (the session ended); returns how many. */
  removeSession(session: SessionHandle): number {
    let n = 0;
    this.flows.forEach((f, h) => {
      if (f && f.session === session) {
        this.remove(h);
        n++;
      }
    });
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
   * The purging process: flows idle for their timeout become inactive; flows idle for twice their
   * timeout are removed, the onPurge listeners being called just before. Visits at most `budget` slots
   * per call, resuming where the last call stopped. Returns how many were purged.
   */
  sweep(budget: number = Number.MAX_SAFE_INTEGER): number {
    const now = this.options.clock.now();
    let purged = 0;
    for (let h = 0, visited = 0; h < this.flows.length && visited < budget; h++, visited++) {
      const f = this.flows[h];
      if (!f) continue;
      const idle = now - f.lastSeen;
      if (idle >= 2 * f.timeoutMs) {
        for (const fn of this.purgeListeners) fn(h);
        this.remove(h);
        purged++;
      } else if (idle >= f.timeoutMs) f.status = 'inactive';
    }
    return purged;
  }
}
