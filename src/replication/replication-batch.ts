/**
 * @module The sending side's batching and snapshot: ops are written into frame-sized batches
 * (BatchWriter) that the stream flushes, a snapshot writes every session, flow and relay port this
 * node owns into one batch set, and the stream's `u32 length ‖ frame` records are split again on
 * the receiving side (FrameReader).
 */
import { addressOf, type FlowHandle, type FlowTable } from '../sessions/flow-table.js';
import { NO_SESSION, type SessionEndReason, type SessionHandle } from '../sessions/session-table.js';
import type { RelayPortState } from '../media/index.js';
import { ENVELOPE_OVERHEAD_BYTES } from '../wire/envelope.js';
import {
  FRAME_HEADER_BYTES,
  MAX_ADDRESS_TEXT_BYTES,
  MAX_FRAME_BODY_BYTES,
  MAX_OP_BYTES,
  MAX_STRING_BYTES,
  NO_SID,
  FLOW_ENTRY_BYTES,
  MAX_BLOCK_ENTRIES,
  Op,
  OpWriter,
  SESSION_ENTRY_BYTES,
  type FlowTuple,
  type WireAddress,
} from '../wire/replication-frame.js';
import type { ServiceIndex } from './replication-apply.js';

export const BATCH_LIMIT_BYTES = MAX_FRAME_BODY_BYTES - FRAME_HEADER_BYTES - MAX_OP_BYTES;
export const LENGTH_PREFIX_BYTES = 4;
export const MAX_WIRE_FRAME_BYTES = MAX_FRAME_BODY_BYTES + ENVELOPE_OVERHEAD_BYTES;

export interface Batch {
  count: number;
  bytes: Buffer;
}

/** An OpWriter that closes a batch whenever the next op might not fit one frame. */
export class BatchWriter {
  readonly w = new OpWriter(16 * 1024);
  batches: Batch[] = [];
  queuedBytes = 0;

  /** Call before writing each op. */
  room(): OpWriter {
    if (this.w.length > BATCH_LIMIT_BYTES) this.roll();
    return this.w;
  }

  roll(): void {
    if (this.w.count === 0) return;
    this.batches.push({ count: this.w.count, bytes: Buffer.from(this.w.bytes()) });
    this.queuedBytes += this.w.length;
    this.w.reset();
  }

  take(): Batch[] {
    this.roll();
    const out = this.batches;
    this.batches = [];
    this.queuedBytes = 0;
    return out;
  }

  get bytes(): number {
    return this.queuedBytes + this.w.length;
  }

  /** Batches pending (0 when empty), without closing the current one. */
  get batchCount(): number {
    return this.batches.length + (this.w.count > 0 ? 1 : 0);
  }

  /**
   * Hands every pending batch to `fn`, then empties the writer. The last batch is a view of the
   * writer's own buffer, valid only during `fn` (the sender copies it into its record): the usual
   * flush — one batch — allocates and copies nothing here.
   */
  drain(fn: (b: Batch) => void): void {
    for (const b of this.batches) fn(b);
    if (this.w.count > 0) fn({ count: this.w.count, bytes: this.w.bytes() });
    this.batches = [];
    this.queuedBytes = 0;
    this.w.reset();
  }
}

/** Splits a byte stream into `u32 length ‖ frame` records; bounded by one frame. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;

  /** Feeds bytes; returns the complete frames, or 'too-large' when a length prefix is over the cap. */
  push(data: Buffer): Buffer[] | 'too-large' {
    this.chunks.push(data);
    this.size += data.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.size < LENGTH_PREFIX_BYTES) return out;
      let buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
      this.chunks = [buf];
      const len = buf.readUInt32BE(0);
      if (len > MAX_WIRE_FRAME_BYTES) return 'too-large';
      if (this.size < LENGTH_PREFIX_BYTES + len) return out;
      out.push(buf.subarray(LENGTH_PREFIX_BYTES, LENGTH_PREFIX_BYTES + len));
      buf = buf.subarray(LENGTH_PREFIX_BYTES + len);
      this.chunks = buf.length > 0 ? [buf] : [];
      this.size = buf.length;
    }
  }
}

const INTERNED_BASE = 0xf0000000;

export function wireAddress(key: number): WireAddress {
  return key >= 0 && key < INTERNED_BASE ? key : addressOf(key);
}

/** RELAY_OPEN of one relay port; an unknown far end (or an address text too long for the wire) travels as 0. */
export function encodeRelay(w: OpWriter, service: number, p: RelayPortState): void {
  const wire = (h: string | null): WireAddress => (h !== null && h.length >= 1 && h.length <= MAX_ADDRESS_TEXT_BYTES ? h : 0);
  const client = wire(p.clientHost);
  const backend = wire(p.backendHost);
  w.relayOpen(service, p.session, p.port, client, client === 0 ? 0 : p.clientPort, backend, backend === 0 ? 0 : p.backendPort);
}

/** Whether a key or data string fits its wire field (a longer data string is not replicated). */
export function fits(s: string): boolean {
  return s.length * 3 <= MAX_STRING_BYTES || Buffer.byteLength(s, 'utf8') <= MAX_STRING_BYTES;
}

/** A key that does not fit its wire field travels as none. */
export function fitKey(key: string | null): string | null {
  return key === null || fits(key) ? key : null;
}

/** FLOW_INSERT of one local flow. */
export function encodeFlow(w: OpWriter, f: FlowTable, service: number, h: FlowHandle): void {
  const session = f.session(h);
  w.flowInsert(
    service,
    session === NO_SESSION ? NO_SID : session,
    { src: wireAddress(f.srcIp(h)), srcPort: f.srcPort(h), dst: wireAddress(f.dstIp(h)), dstPort: f.dstPort(h), proto: f.proto(h) },
    f.role(h),
    f.timeoutMs(h),
  );
}

/**
 * Sessions and flows a snapshot writes per step (SnapshotWriter.write): the replicator writes steps
 * until its slice's time budget is spent (SNAPSHOT_SLICE_MS), so a step is the granularity at which
 * it looks at the clock.
 */
export const SNAPSHOT_SLICE_ENTRIES = 256;

/** Op bytes a frame holds (its body less the header). */
const FRAME_OPS_BYTES = MAX_FRAME_BODY_BYTES - FRAME_HEADER_BYTES;
/** A block's own bytes: opcode, service, count. */
const BLOCK_HEAD_BYTES = 5;
const ROLE_CODES: Record<string, number> = { signalling: 0, announced: 1, secondary: 2 };

/**
 * A snapshot of what this node owns (not what peers replicated here), written in steps so that the
 * master's event loop is never held for long: SNAPSHOT_BEGIN, then per service TABLE_SIZES, its
 * sessions with their data (SESSION_BLOCKs), its flows (FLOW_BLOCKs; an IPv6 flow as a FLOW_INSERT),
 * its relay ports, then SNAPSHOT_END. Each write() writes at most `max` sessions and flows (relay
 * ports, one per media port, go in one step). `empty`: only the brackets (a demoted node: peers drop
 * what it streamed before).
 *
 * Frames are filled to MAX_FRAME_BODY_BYTES in one reused buffer and handed to `emit` as views, valid
 * only until emit returns (the replicator copies each into its sealed record at once): a snapshot
 * allocates one buffer, not one per frame (issue 17 item 3: less garbage, shorter GC pauses).
 *
 * The tables may change between steps: a session or flow opened in a slot already passed is not
 * in the snapshot, one closed in a slot not reached yet is not either. The live stream, which flows
 * on the same connection from the snapshot's start, carries those changes; the receiver applies
 * both in order and idempotently (a re-sent open or insert only refreshes its replica).
 */
export class SnapshotWriter {
  private readonly w = new OpWriter(MAX_FRAME_BODY_BYTES);
  private service = 0;
  private phase: 'begin' | 'sessions' | 'flows' | 'relays' | 'end' | 'done' = 'begin';
  private slot = 0;
  private sessions = 0;
  private flows = 0;
  private emit: (b: Batch) => void = () => {};

  constructor(
    private readonly index: readonly ServiceIndex[],
    private readonly empty: boolean,
  ) {}

  get done(): boolean {
    return this.phase === 'done';
  }

  /**
   * Writes the next step: at most `max` sessions and flows. Every frame filled meanwhile goes to
   * `emit`; with `flush`, so does the frame begun (the end of a slice: nothing is held back).
   */
  write(max: number, emit: (b: Batch) => void, flush: boolean): void {
    this.emit = emit;
    let budget = max;
    // Relay ports and the end take no budget: the step that lists the last flow also closes the snapshot.
    while (this.phase !== 'done' && (budget > 0 || this.phase === 'relays' || this.phase === 'end')) {
      switch (this.phase) {
        case 'begin':
          this.op(1).snapshotBegin();
          this.phase = this.empty || this.index.length === 0 ? 'end' : 'sessions';
          break;
        case 'sessions':
          budget -= this.writeSessions(budget);
          break;
        case 'flows':
          budget -= this.writeFlows(budget);
          break;
        case 'relays': {
          const ix = this.index[this.service]!;
          const service = this.service;
          ix.svc.relay?.forEachPort((p) => {
            if (!ix.foreign.isSession(p.session)) encodeRelay(this.op(MAX_OP_BYTES), service, p);
          });
          this.service++;
          this.phase = this.service < this.index.length ? 'sessions' : 'end';
          break;
        }
        case 'end':
          this.op(9).snapshotEnd(this.sessions, this.flows);
          this.phase = 'done';
          break;
      }
    }
    if (flush || this.phase === 'done') this.frame();
    this.emit = () => {};
  }

  /** Hands the frame begun to `emit` (the end of a slice). */
  flush(emit: (b: Batch) => void): void {
    this.emit = emit;
    this.frame();
    this.emit = () => {};
  }

  /** The next step's frames, copied (tests and benchmarks; the replicator uses write()). */
  next(max: number = SNAPSHOT_SLICE_ENTRIES): Batch[] {
    const out: Batch[] = [];
    this.write(max, (b) => out.push({ count: b.count, bytes: Buffer.from(b.bytes) }), true);
    return out;
  }

  /** Hands the frame begun to emit (if it holds any op) and starts the next one in the same buffer. */
  private frame(): void {
    const w = this.w;
    w.endBlock();
    if (w.count === 0) return;
    this.emit({ count: w.count, bytes: w.bytes() });
    w.reset();
  }

  /** Room for a plain op of at most `bytes` (any block closed first). */
  private op(bytes: number): OpWriter {
    const w = this.w;
    w.endBlock();
    if (w.length + bytes > FRAME_OPS_BYTES || w.count === 0xffff) this.frame();
    return w;
  }

  /** Room for a block entry of at most `bytes` in a block of `op` (opened, or a new frame begun, as needed). */
  private entry(op: number, service: number, bytes: number): OpWriter {
    const w = this.w;
    const open = w.block === op && w.blockService === service;
    if (w.length + bytes + (open ? 0 : BLOCK_HEAD_BYTES) > FRAME_OPS_BYTES || w.blockEntries === MAX_BLOCK_ENTRIES || w.count === 0xffff) {
      this.frame();
    } else if (open) return w;
    if (op === Op.SessionBlock) w.sessionBlock(service);
    else w.flowBlock(service);
    return w;
  }

  /** Sessions from this.slot on, at most `budget` visited; returns how many were visited. */
  private writeSessions(budget: number): number {
    const ix = this.index[this.service]!;
    const service = this.service;
    const table = ix.svc.sessions.table;
    const foreign = ix.foreign;
    if (this.slot === 0) this.op(11).tableSizes(service, table.size - foreign.sessions, ix.svc.flows.size - foreign.flows);
    let visited = 0;
    this.slot = table.forEachFrom(this.slot, budget, (h) => {
      visited++;
      if (foreign.isSession(h)) return;
      const key = fitKey(table.key(h));
      const d = table.data(h);
      const data = d !== null && fits(d) ? d : null;
      const chars = (key === null ? 0 : key.length) + (data === null ? 0 : data.length);
      this.entry(Op.SessionBlock, service, SESSION_ENTRY_BYTES + 3 * chars).sessionEntry(h, table.backend(h), key, data);
      this.sessions++;
    });
    if (this.slot < 0) {
      this.slot = 0;
      this.phase = 'flows';
    }
    return visited;
  }

  /** Flows from this.slot on, at most `budget` visited; returns how many were visited. */
  private writeFlows(budget: number): number {
    const ix = this.index[this.service]!;
    const service = this.service;
    const flows = ix.svc.flows;
    const foreign = ix.foreign;
    let visited = 0;
    this.slot = flows.forEachFrom(this.slot, budget, (h) => {
      visited++;
      if (foreign.isFlow(h)) return;
      this.flows++;
      const src = flows.srcIp(h);
      const dst = flows.dstIp(h);
      if (src >= INTERNED_BASE || dst >= INTERNED_BASE) {
        // Not IPv4: its address travels as text, in a FLOW_INSERT of its own.
        encodeFlow(this.op(MAX_OP_BYTES), flows, service, h);
        return;
      }
      const session = flows.session(h);
      this.entry(Op.FlowBlock, service, FLOW_ENTRY_BYTES).flowEntry(
        session === NO_SESSION ? NO_SID : session,
        src,
        flows.srcPort(h),
        dst,
        flows.dstPort(h),
        flows.proto(h),
        ROLE_CODES[flows.role(h)]!,
        flows.timeoutMs(h),
      );
    });
    if (this.slot < 0) {
      this.slot = 0;
      this.phase = 'relays';
    }
    return visited;
  }
}

/** The whole snapshot in one synchronous pass (tests; the replicator sends it in slices). */
export function writeSnapshot(index: readonly ServiceIndex[], empty: boolean): Batch[] {
  const s = new SnapshotWriter(index, empty);
  const out: Batch[] = [];
  while (!s.done) out.push(...s.next(Number.MAX_SAFE_INTEGER));
  return out;
}

/** What changed, per service, while a peer could not take the stream (see DirtySet). */
interface DirtyService {
  /** Session handle → null: opened, re-pinned or given data; a reason: closed (the peer may know it). */
  readonly sessions: Map<SessionHandle, SessionEndReason | null>;
  /**
   * Flow handle → null: inserted since (the peer never saw it); a tuple: the flow the peer may know
   * that was removed from the slot first (a flow inserted there since is sent too, if still there).
   */
  readonly flows: Map<FlowHandle, FlowTuple | null>;
  /** Relay port → its session, when it changed or was released. */
  readonly relays: Map<number, SessionHandle>;
}

/**
 * The changes a lagging peer missed, by what they touched rather than as ops (issue 17 item 3: the
 * stream cap no longer forces a new snapshot): while a peer's unacknowledged bytes are over the cap,
 * each change marks its session, flow or relay port here instead of being written to that peer;
 * once the peer has acknowledged everything written, CatchUpWriter sends the current state of
 * what is marked. Bounded by the tables: one entry per session handle, flow slot and relay port.
 */
export class DirtySet {
  readonly services: DirtyService[];

  constructor(services: number) {
    this.services = Array.from({ length: services }, () => ({ sessions: new Map(), flows: new Map(), relays: new Map() }));
  }

  session(service: number, h: SessionHandle): void {
    const m = this.services[service]!.sessions;
    if (!m.has(h)) m.set(h, null);
  }

  sessionClosed(service: number, h: SessionHandle, reason: SessionEndReason): void {
    this.services[service]!.sessions.set(h, reason);
  }

  flowInserted(service: number, h: FlowHandle): void {
    const m = this.services[service]!.flows;
    if (!m.has(h)) m.set(h, null);
  }

  flowRemoved(service: number, h: FlowHandle, t: FlowTuple): void {
    const m = this.services[service]!.flows;
    const e = m.get(h);
    if (e === undefined) m.set(h, t);
    // Inserted and removed while the peer lagged: it never knew this flow.
    else if (e === null) m.delete(h);
  }

  relay(service: number, port: number, session: SessionHandle): void {
    this.services[service]!.relays.set(port, session);
  }

  get size(): number {
    let n = 0;
    for (const s of this.services) n += s.sessions.size + s.flows.size + s.relays.size;
    return n;
  }
}

/** The current state of what a DirtySet marks, in slices (like SnapshotWriter; entries are consumed as written). */
export class CatchUpWriter {
  private readonly w = new BatchWriter();
  private service = 0;
  private phase: 'sessions' | 'flows' | 'relays' | 'done';

  constructor(
    private readonly index: readonly ServiceIndex[],
    private readonly dirty: DirtySet,
  ) {
    this.phase = index.length === 0 ? 'done' : 'sessions';
  }

  get done(): boolean {
    return this.phase === 'done';
  }

  /** The next slice's batches: at most `max` sessions and flows (relay ports take no budget). */
  next(max: number = SNAPSHOT_SLICE_ENTRIES): Batch[] {
    let budget = max;
    while (this.phase !== 'done' && (budget > 0 || this.phase === 'relays')) {
      const service = this.service;
      const ix = this.index[service]!;
      const d = this.dirty.services[service]!;
      const w = this.w;
      switch (this.phase) {
        case 'sessions': {
          const table = ix.svc.sessions.table;
          for (const [h, closed] of d.sessions) {
            if (budget === 0) break;
            budget--;
            d.sessions.delete(h);
            if (ix.foreign.isSession(h)) continue;
            if (table.isOpen(h)) {
              w.room().sessionOpen(service, h, table.backend(h), fitKey(table.key(h)));
              const data = table.data(h);
              if (data !== null && fits(data)) w.room().sessionData(service, h, data);
            } else w.room().sessionClose(service, h, closed ?? 'removed');
          }
          if (d.sessions.size === 0) this.phase = 'flows';
          break;
        }
        case 'flows': {
          const flows = ix.svc.flows;
          for (const [h, removed] of d.flows) {
            if (budget === 0) break;
            budget--;
            d.flows.delete(h);
            if (removed !== null) w.room().flowRemove(service, removed);
            if (flows.has(h) && !ix.foreign.isFlow(h)) encodeFlow(w.room(), flows, service, h);
          }
          if (d.flows.size === 0) this.phase = 'relays';
          break;
        }
        case 'relays': {
          if (d.relays.size > 0) {
            const now = new Map<number, RelayPortState>();
            ix.svc.relay?.forEachPort((p) => now.set(p.port, p));
            for (const [port, session] of d.relays) {
              const p = now.get(port);
              if (p !== undefined && !ix.foreign.isSession(p.session)) encodeRelay(w.room(), service, p);
              else w.room().relayClose(service, session, port);
            }
            d.relays.clear();
          }
          this.service++;
          this.phase = this.service < this.index.length ? 'sessions' : 'done';
          break;
        }
      }
    }
    return this.w.take();
  }
}
