/**
 * @module The applying side of session-state replication: what each peer replicated here (its
 * sessions, flows and relay ports, by the peer's own handles), applied to the local tables op by op
 * and reconciled after each snapshot. A peer's op never touches a session this node owns (see
 * state-replicator.ts). Also the shape of what is replicated: a service's tables and relay.
 */
import type { Backend } from '../core/backend.js';
import type { RelayChange, RelayPortState } from '../media/index.js';
import { addressKey, addressOf, NO_FLOW, type FlowHandle, type FlowProto, type FlowRole, type FlowTable } from '../sessions/flow-table.js';
import type { SessionRouter } from '../sessions/session-router.js';
import { NO_SESSION, sessionSlot, type SessionEndReason, type SessionHandle } from '../sessions/session-table.js';
import { NO_SID, type OpVisitor, type WireAddress } from '../wire/replication-frame.js';

export interface ReplicatedService {
  readonly name: string;
  readonly sessions: SessionRouter;
  readonly flows: FlowTable;
  readonly backends: readonly Backend[];
  /** The service's media relay, when it has one: its ports are replicated too. */
  readonly relay?: ReplicatedRelay;
}

/** What the replicator needs of a media relay (forward/sip/sip-media.ts provides it). */
export interface ReplicatedRelay {
  /** Every change of a local relay port's far ends, and every release. Returns an unsubscribe. */
  onChange(fn: (c: RelayChange) => void): () => void;
  forEachPort(fn: (s: RelayPortState) => void): void;
  /** At adopt(): the relay ports peers replicated here, by local session handle; the relay binds them again. */
  restore(ports: readonly RelayPortState[]): void;
}

/**
 * Idle expiry of replicated sessions (issue 17 item 2): the owner does not send the close of a
 * session that timed out; each node expires its replicas itself, on the service's own idle timeout
 * T. The owner reports traffic on its sessions by re-sending SESSION_OPEN for those touched since
 * they were last sent, in a pass every T / SESSION_KEEPALIVE_PASSES (state-replicator.ts); the
 * receiver counts a replica as seen T × REPLICA_IDLE_GRACE after each open it applies, so a replica
 * outlives its owner's copy (by up to half a timeout) and never expires before it: one pass period,
 * plus room for a pass spread over turns, the stream's lag and the sweep's own step.
 */
export const SESSION_KEEPALIVE_PASSES = 4;
export const REPLICA_IDLE_GRACE = 0.5;

/** Slots an index array starts with; then doubled as needed, up to its bound. */
const INITIAL_SLOTS = 1024;

function grownF64(a: Float64Array, need: number, fill: number): Float64Array<ArrayBuffer> {
  let n = Math.max(a.length, INITIAL_SLOTS);
  while (n <= need) n *= 2;
  const b = new Float64Array(n);
  b.set(a);
  b.fill(fill, a.length);
  return b;
}

function grownI32(a: Int32Array, need: number): Int32Array<ArrayBuffer> {
  let n = Math.max(a.length, INITIAL_SLOTS);
  while (n <= need) n *= 2;
  const b = new Int32Array(n);
  b.set(a);
  return b;
}

/**
 * Which local sessions and flows of one service are replicas, and of which peer (its tag, id + 1;
 * 0: our own), with the peer's sid and the snapshot generation that last sent them: typed arrays
 * indexed by local slot (a session handle's slot, sessionSlot(); a flow handle is its slot), so a
 * replicated session or flow costs no object and no map entry (issue 17 item 3). Bounded by the
 * local tables' capacities.
 */
export class ForeignIndex {
  /** By session slot: owner tag (0: own). */
  private sOwner = new Int32Array(0);
  /** By session slot: the local handle the mark is for (a later session in the slot is not marked). */
  private sHandle = new Float64Array(0);
  private sSid = new Float64Array(0);
  private sGen = new Int32Array(0);
  /** By flow handle: owner tag (0: own). */
  private fOwner = new Int32Array(0);
  private fGen = new Int32Array(0);
  /** Marked sessions and flows. */
  sessions = 0;
  flows = 0;
  /** One past the highest slot ever marked (scans stop there). */
  private sUsed = 0;
  private fUsed = 0;

  /** The tag of the peer whose replica session `h` is, or 0 (own, or not open). */
  sessionOwner(h: SessionHandle): number {
    const slot = sessionSlot(h);
    return slot < this.sUsed && this.sHandle[slot] === h ? this.sOwner[slot]! : 0;
  }

  isSession(h: SessionHandle): boolean {
    return this.sessionOwner(h) !== 0;
  }

  /** The owner's sid of a replica session (call after sessionOwner() said it is one). */
  sid(h: SessionHandle): number {
    return this.sSid[sessionSlot(h)]!;
  }

  markSession(h: SessionHandle, tag: number, sid: number, gen: number): void {
    const slot = sessionSlot(h);
    if (slot >= this.sOwner.length) {
      this.sOwner = grownI32(this.sOwner, slot);
      this.sHandle = grownF64(this.sHandle, slot, -1);
      this.sSid = grownF64(this.sSid, slot, -1);
      this.sGen = grownI32(this.sGen, slot);
    }
    // Counted per slot: a mark left for an earlier session of the slot is replaced, not added to.
    if (this.sOwner[slot] === 0) this.sessions++;
    this.sOwner[slot] = tag;
    this.sHandle[slot] = h;
    this.sSid[slot] = sid;
    this.sGen[slot] = gen;
    if (slot >= this.sUsed) this.sUsed = slot + 1;
  }

  /** Room for marks of `sessions` session slots and `flows` flow handles, allocated at once. */
  reserve(sessions: number, flows: number): void {
    if (sessions > this.sOwner.length) {
      this.sOwner = grownI32(this.sOwner, sessions - 1);
      this.sHandle = grownF64(this.sHandle, sessions - 1, -1);
      this.sSid = grownF64(this.sSid, sessions - 1, -1);
      this.sGen = grownI32(this.sGen, sessions - 1);
    }
    if (flows > this.fOwner.length) {
      this.fOwner = grownI32(this.fOwner, flows - 1);
      this.fGen = grownI32(this.fGen, flows - 1);
    }
  }

  /** Sets a replica session's generation (it was sent again). */
  touchSession(h: SessionHandle, gen: number): void {
    this.sGen[sessionSlot(h)] = gen;
  }

  unmarkSession(h: SessionHandle): void {
    const slot = sessionSlot(h);
    if (slot >= this.sUsed || this.sHandle[slot] !== h || this.sOwner[slot] === 0) return;
    this.sOwner[slot] = 0;
    this.sHandle[slot] = -1;
    this.sessions--;
  }

  flowOwner(h: FlowHandle): number {
    return h >= 0 && h < this.fUsed ? this.fOwner[h]! : 0;
  }

  isFlow(h: FlowHandle): boolean {
    return this.flowOwner(h) !== 0;
  }

  markFlow(h: FlowHandle, tag: number, gen: number): void {
    if (h >= this.fOwner.length) {
      this.fOwner = grownI32(this.fOwner, h);
      this.fGen = grownI32(this.fGen, h);
    }
    if (this.fOwner[h] === 0) this.flows++;
    this.fOwner[h] = tag;
    this.fGen[h] = gen;
    if (h >= this.fUsed) this.fUsed = h + 1;
  }

  unmarkFlow(h: FlowHandle): void {
    if (h < 0 || h >= this.fUsed || this.fOwner[h] === 0) return;
    this.fOwner[h] = 0;
    this.flows--;
  }

  /** Every replica session (its local handle, owner tag, sid and generation); `fn` may unmark it. */
  forEachSession(fn: (h: SessionHandle, tag: number, sid: number, gen: number) => void): void {
    for (let slot = 0; slot < this.sUsed; slot++) {
      const tag = this.sOwner[slot]!;
      if (tag !== 0) fn(this.sHandle[slot]!, tag, this.sSid[slot]!, this.sGen[slot]!);
    }
  }

  /** Every replica flow (its handle, owner tag and generation); `fn` may unmark it. */
  forEachFlow(fn: (h: FlowHandle, tag: number, gen: number) => void): void {
    for (let h = 0; h < this.fUsed; h++) {
      const tag = this.fOwner[h]!;
      if (tag !== 0) fn(h, tag, this.fGen[h]!);
    }
  }

  /** Nothing here is a replica any more (adopt()). */
  clear(): void {
    this.sOwner.fill(0, 0, this.sUsed);
    this.sHandle.fill(-1, 0, this.sUsed);
    this.fOwner.fill(0, 0, this.fUsed);
    this.sessions = 0;
    this.flows = 0;
    this.sUsed = 0;
    this.fUsed = 0;
  }
}

/**
 * What one peer replicated here in one service: its sessions by the slot of its sid (the peer's own
 * handle, sessionSlot()), each with the local handle of the replica, and its relay ports by sid.
 */
export class PeerService {
  /** By sid slot: the whole sid (-1: none). */
  sid = new Float64Array(0);
  /** By sid slot: the local handle of its replica. */
  local = new Float64Array(0);
  readonly relays = new Map<number, Map<number, RelayRecord>>();

  /** The local handle of the peer's session `sid`, or NO_SESSION. */
  localOf(sid: number): SessionHandle {
    const slot = sessionSlot(sid);
    return slot < this.sid.length && this.sid[slot] === sid ? this.local[slot]! : NO_SESSION;
  }

  set(sid: number, local: SessionHandle): void {
    const slot = sessionSlot(sid);
    if (slot >= this.sid.length) {
      this.sid = grownF64(this.sid, slot, -1);
      this.local = grownF64(this.local, slot, -1);
    }
    this.sid[slot] = sid;
    this.local[slot] = local;
  }

  /** Room for sids in `slots` slots, allocated at once. */
  reserve(slots: number): void {
    if (slots > this.sid.length) {
      this.sid = grownF64(this.sid, slots - 1, -1);
      this.local = grownF64(this.local, slots - 1, -1);
    }
  }

  forget(sid: number): void {
    const slot = sessionSlot(sid);
    if (slot < this.sid.length && this.sid[slot] === sid) this.sid[slot] = -1;
    this.relays.delete(sid);
  }
}

/** What one peer replicated here, kept across its reconnections (the next snapshot reconciles it). */
export interface PeerState {
  readonly id: number;
  /** id + 1: its mark in the services' ForeignIndex. */
  readonly tag: number;
  /** By service index. */
  readonly services: (PeerService | undefined)[];
  gen: number;
}

export function newPeer(id: number): PeerState {
  return { id, tag: id + 1, services: [], gen: 0 };
}

export function peerService(peer: PeerState, service: number): PeerService {
  return (peer.services[service] ??= new PeerService());
}

export interface RelayRecord {
  readonly service: number;
  readonly port: number;
  readonly clientHost: string | null;
  readonly clientPort: number;
  readonly backendHost: string | null;
  readonly backendPort: number;
  gen: number;
}

/** Per service: which of its local sessions and flows are replicas, and of whom. */
export interface ServiceIndex {
  readonly svc: ReplicatedService;
  readonly foreign: ForeignIndex;
}

export function serviceIndex(svc: ReplicatedService): ServiceIndex {
  return { svc, foreign: new ForeignIndex() };
}

/** What a snapshot in progress has counted so far (an incoming link). */
export interface SnapshotCounts {
  snapshotSessions: number;
  snapshotFlows: number;
}

/**
 * Applies peers' ops to the local tables of the replicated services. It is the frame decoder's
 * visitor (wire/replication-frame.ts visitFrame): each op goes from the bytes straight into the
 * tables and into typed arrays by slot (ForeignIndex, PeerService): no object and no map entry per
 * op, per session or per flow. Call begin() with the
 * incoming link and its peer before handing it a frame.
 */
export class ReplicaApplier implements OpVisitor {
  private link: SnapshotCounts = { snapshotSessions: 0, snapshotFlows: 0 };
  private peer: PeerState = newPeer(-1);
  /** The clock reading the ops that follow are applied at (undefined: each table reads its clock). */
  private now: number | undefined = undefined;

  constructor(
    private readonly index: readonly ServiceIndex[],
    /** Whether this node is master: its own sessions' pins are the truth then. */
    private readonly isMaster: () => boolean,
    private readonly stats: { applyRefused: number },
    /**
     * At a snapshot's end, after what the peer no longer has was dropped: the counts the sender
     * announced (the caller reports the peer synced).
     */
    private readonly onSnapshotEnd: (link: SnapshotCounts, peer: PeerState, sessions: number, flows: number) => void = () => {},
    /** Every peer that replicated here, by id: a session moving from one peer to another is forgotten by the first. */
    private readonly peers: ReadonlyMap<number, PeerState> = new Map(),
  ) {}

  /**
   * The ops that follow are `peer`'s, received on `link`, applied at clock time `now` (a frame is
   * applied in one synchronous go: one clock reading serves its thousands of sessions and flows).
   */
  begin(link: SnapshotCounts, peer: PeerState, now?: number): void {
    this.link = link;
    this.peer = peer;
    this.now = now;
  }

  snapshotBegin(): void {
    this.peer.gen++;
    this.link.snapshotSessions = 0;
    this.link.snapshotFlows = 0;
  }

  snapshotEnd(sessions: number, flows: number): void {
    this.reconcile(this.peer);
    this.onSnapshotEnd(this.link, this.peer, sessions, flows);
  }

  sessionOpen(service: number, sid: number, backend: number, key: string | null): void {
    this.open(service, sid, backend, key);
  }

  /** A snapshot's session and its data (SESSION_BLOCK): one replica lookup for both. */
  sessionEntry(service: number, sid: number, backend: number, key: string | null, data: string | null): void {
    const h = this.open(service, sid, backend, key);
    if (data !== null && h !== NO_SESSION) this.index[service]!.svc.sessions.table.setData(h, data);
  }

  /** SESSION_OPEN: the replica's local handle (NO_SESSION when refused, or when the session is ours while master). */
  private open(service: number, sid: number, backend: number, key: string | null): SessionHandle {
    this.link.snapshotSessions++;
    const ix = this.index[service];
    if (ix === undefined) return NO_SESSION;
    const peer = this.peer;
    const table = ix.svc.sessions.table;
    const foreign = ix.foreign;
    // A sid whose slot is beyond what our table could hold twice over is refused (bounds the index).
    if (sessionSlot(sid) >= 2 * table.capacity + INITIAL_SLOTS) {
      this.stats.applyRefused++;
      return NO_SESSION;
    }
    const ps = peerService(peer, service);
    const known = this.replica(ix, ps, sid);
    if (known !== NO_SESSION && table.isOpen(known)) {
      if (table.backend(known) !== backend) table.repin(known, backend);
      foreign.touchSession(known, peer.gen);
      table.touchAhead(known, table.timeoutMs * REPLICA_IDLE_GRACE, this.now);
      return known;
    }
    // Open first: a key not known here (the common case: a snapshot into an empty table) costs one
    // lookup; open() refuses a key already open (or a full table), and find() tells which. The key
    // was decoded from the frame: a string of its own, kept without a copy.
    let h = table.openOwned(key, backend, this.now);
    if (h === NO_SESSION) {
      if (key !== null) h = table.find(key);
      if (h === NO_SESSION) {
        this.stats.applyRefused++;
        return NO_SESSION;
      }
      // Known here already (our own, or another peer's): the sender is master, its pin is the truth.
      const other = foreign.sessionOwner(h);
      // Our own while master: our pin is the truth, the sender's copy is stale.
      if (other === 0 && this.isMaster()) return NO_SESSION;
      if (other !== 0 && other !== peer.tag) this.peers.get(other - 1)?.services[service]?.forget(foreign.sid(h));
      else if (other === peer.tag) ps.forget(foreign.sid(h));
      if (table.backend(h) !== backend) table.repin(h, backend);
    }
    ps.set(sid, h);
    foreign.markSession(h, peer.tag, sid, peer.gen);
    table.touchAhead(h, table.timeoutMs * REPLICA_IDLE_GRACE, this.now);
    return h;
  }

  sessionRepin(service: number, sid: number, backend: number): void {
    const ix = this.index[service];
    if (ix === undefined) return;
    const h = this.replica(ix, peerService(this.peer, service), sid);
    if (h !== NO_SESSION) ix.svc.sessions.table.repin(h, backend);
  }

  sessionClose(service: number, sid: number, reason: SessionEndReason): void {
    const ix = this.index[service];
    if (ix === undefined) return;
    const ps = peerService(this.peer, service);
    const h = this.replica(ix, ps, sid);
    if (h === NO_SESSION) return;
    ps.forget(sid);
    ix.foreign.unmarkSession(h);
    ix.svc.sessions.table.close(h, reason);
  }

  sessionData(service: number, sid: number, data: string): void {
    const ix = this.index[service];
    if (ix === undefined) return;
    const h = this.replica(ix, peerService(this.peer, service), sid);
    if (h !== NO_SESSION) ix.svc.sessions.table.setData(h, data);
  }

  flowInsert(
    service: number,
    sid: number,
    src: WireAddress,
    srcPort: number,
    dst: WireAddress,
    dstPort: number,
    proto: number,
    role: FlowRole,
    timeoutMs: number,
  ): void {
    this.link.snapshotFlows++;
    const ix = this.index[service];
    if (ix === undefined) return;
    if (proto !== 6 && proto !== 17) return;
    const peer = this.peer;
    const flows = ix.svc.flows;
    const foreign = ix.foreign;
    const session = sid === NO_SID ? NO_SESSION : this.replica(ix, peerService(peer, service), sid);
    // One probe: insert() answers the handle of a flow already there (the size tells which).
    const before = flows.size;
    const h = flows.insert(localAddress(src), srcPort, localAddress(dst), dstPort, proto as FlowProto, role, session, timeoutMs, this.now);
    if (h === NO_FLOW) {
      this.stats.applyRefused++;
      return;
    }
    if (flows.size === before) {
      const other = foreign.flowOwner(h);
      // Our own while master: the sender's copy is stale.
      if (other === 0 && this.isMaster()) return;
      flows.setSession(h, session);
    }
    foreign.markFlow(h, peer.tag, peer.gen);
  }

  flowRemove(service: number, src: WireAddress, srcPort: number, dst: WireAddress, dstPort: number, proto: number): void {
    const ix = this.index[service];
    if (ix === undefined || (proto !== 6 && proto !== 17)) return;
    const flows = ix.svc.flows;
    const h = flows.lookup(localAddress(src), srcPort, localAddress(dst), dstPort, proto as FlowProto);
    if (h === NO_FLOW) return;
    // Only the peer's own replica: never a flow this node owns, nor another peer's.
    if (ix.foreign.flowOwner(h) !== this.peer.tag) return;
    ix.foreign.unmarkFlow(h);
    flows.remove(h);
  }

  relayOpen(service: number, sid: number, relayPort: number, client: WireAddress, clientPort: number, backend: WireAddress, backendPort: number): void {
    const ix = this.index[service];
    if (ix === undefined) return;
    const ps = peerService(this.peer, service);
    if (this.replica(ix, ps, sid) === NO_SESSION) return;
    let ports = ps.relays.get(sid);
    if (ports === undefined) ps.relays.set(sid, (ports = new Map()));
    const clientHost = relayHost(client);
    const backendHost = relayHost(backend);
    ports.set(relayPort, {
      service,
      port: relayPort,
      clientHost,
      clientPort: clientHost === null ? 0 : clientPort,
      backendHost,
      backendPort: backendHost === null ? 0 : backendPort,
      gen: this.peer.gen,
    });
  }

  relayClose(service: number, sid: number, relayPort: number): void {
    const ports = this.peer.services[service]?.relays.get(sid);
    if (ports === undefined) return;
    ports.delete(relayPort);
    if (ports.size === 0) this.peer.services[service]!.relays.delete(sid);
  }

  /** ACK and CHALLENGE do not travel this way. */
  ack(): void {}
  challenge(): void {}

  /** The sender's table sizes: ours grow once to hold them besides what they hold now (bounded by their capacities). */
  tableSizes(service: number, sessions: number, flows: number): void {
    const ix = this.index[service];
    if (ix === undefined) return;
    const table = ix.svc.sessions.table;
    table.reserve(table.size + sessions);
    ix.svc.flows.reserve(ix.svc.flows.size + flows);
    // The replica marks, by local slot, and the peer's sids, by the sender's slot (at least as many
    // as it holds), grow once too: bounded by the table (the sender's count is only a hint).
    ix.foreign.reserve(Math.min(table.size + sessions, table.capacity), Math.min(ix.svc.flows.size + flows, ix.svc.flows.capacity));
    peerService(this.peer, service).reserve(Math.min(sessions, 2 * table.capacity));
  }

  /**
   * The local handle of the current peer's replica `sid` in a service — only while the local session
   * is still marked foreign to that peer under that sid: a peer's op never touches a session this node
   * owns (see state-replicator.ts). NO_SESSION otherwise (and the stale entry is forgotten).
   */
  private replica(ix: ServiceIndex, ps: PeerService, sid: number): SessionHandle {
    const h = ps.localOf(sid);
    if (h === NO_SESSION) return NO_SESSION;
    if (ix.foreign.sessionOwner(h) === this.peer.tag && ix.foreign.sid(h) === sid) return h;
    ps.forget(sid);
    return NO_SESSION;
  }

  /** After a snapshot: what the peer had replicated here before and did not send again is gone. */
  private reconcile(peer: PeerState): void {
    peer.services.forEach((ps) => {
      if (ps === undefined) return;
      for (const [sid, ports] of ps.relays) {
        for (const [port, r] of ports) if (r.gen !== peer.gen) ports.delete(port);
        if (ports.size === 0) ps.relays.delete(sid);
      }
    });
    this.index.forEach((ix, service) => {
      const foreign = ix.foreign;
      if (foreign.flows > 0) {
        const flows = ix.svc.flows;
        foreign.forEachFlow((h, tag, gen) => {
          if (tag !== peer.tag || gen === peer.gen) return;
          foreign.unmarkFlow(h);
          flows.remove(h);
        });
      }
      if (foreign.sessions > 0) {
        const table = ix.svc.sessions.table;
        const ps = peer.services[service];
        foreign.forEachSession((h, tag, sid, gen) => {
          if (tag !== peer.tag || gen === peer.gen) return;
          ps?.forget(sid);
          foreign.unmarkSession(h);
          table.close(h, 'removed');
        });
      }
    });
  }

  /**
   * Keeps replicated flows alive: their traffic goes to their owner, which says when they end.
   * Replicated sessions are not touched here: they expire on their own idle timeout (see
   * REPLICA_IDLE_GRACE), kept alive by the owner's re-sent opens. `now`: one clock reading for them
   * all (a clock call each cost a backup about a tenth of its CPU while it applied a snapshot).
   */
  refresh(now?: number): void {
    for (const ix of this.index) {
      const flows = ix.svc.flows;
      ix.foreign.forEachFlow((h) => flows.touch(h, now));
    }
  }
}

export function localAddress(a: WireAddress): number {
  return typeof a === 'number' ? a : addressKey(a);
}

/** A relay far end on the wire: 0 (0.0.0.0) stands for "not known yet". */
export function relayHost(a: WireAddress): string | null {
  if (typeof a === 'string') return a;
  return a === 0 ? null : addressOf(a);
}
