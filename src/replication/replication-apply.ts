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
import { NO_SESSION, type SessionEndReason, type SessionHandle } from '../sessions/session-table.js';
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

/** One session a peer replicated here: in its peer's `sessions` (by sid) and its service's `foreignSessions` (by local handle). */
export interface SessionReplica {
  readonly peer: PeerState;
  /** The peer's session handle. */
  readonly sid: number;
  readonly service: number;
  readonly local: SessionHandle;
  /** The peer's snapshot generation that last sent it. */
  gen: number;
}

/** One flow a peer replicated here: in its peer's `flows` (by `key`) and its service's `foreignFlows` (by local handle). */
export interface FlowReplica {
  readonly peer: PeerState;
  /** flowKey(service, local). */
  readonly key: number;
  readonly service: number;
  readonly local: FlowHandle;
  gen: number;
}

/** What one peer replicated here, kept across its reconnections (the next snapshot reconciles it). */
export interface PeerState {
  readonly id: number;
  /** By the peer's session handle. */
  readonly sessions: Map<number, SessionReplica>;
  /** By flowKey(service, local flow handle). */
  readonly flows: Map<number, FlowReplica>;
  /** Relay ports, by the peer's session handle, then relay port. */
  readonly relays: Map<number, Map<number, RelayRecord>>;
  gen: number;
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

/** Per service: local handles of foreign state → its replica record (owner, and the key it is known by there). */
export interface ServiceIndex {
  readonly svc: ReplicatedService;
  readonly foreignSessions: Map<SessionHandle, SessionReplica>;
  readonly foreignFlows: Map<FlowHandle, FlowReplica>;
}

/** What a snapshot in progress has counted so far (an incoming link). */
export interface SnapshotCounts {
  snapshotSessions: number;
  snapshotFlows: number;
}

/**
 * Applies peers' ops to the local tables of the replicated services. It is the frame decoder's
 * visitor (wire/replication-frame.ts visitFrame): each op goes from the bytes straight into the
 * tables, with one record per replicated session or flow and no object per op. Call begin() with the
 * incoming link and its peer before handing it a frame.
 */
export class ReplicaApplier implements OpVisitor {
  private link: SnapshotCounts = { snapshotSessions: 0, snapshotFlows: 0 };
  private peer: PeerState = { id: -1, sessions: new Map(), flows: new Map(), relays: new Map(), gen: 0 };

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
  ) {}

  /** The ops that follow are `peer`'s, received on `link`. */
  begin(link: SnapshotCounts, peer: PeerState): void {
    this.link = link;
    this.peer = peer;
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
    this.link.snapshotSessions++;
    const ix = this.index[service];
    if (ix === undefined) return;
    const peer = this.peer;
    const table = ix.svc.sessions.table;
    const known = this.replica(service, sid);
    if (known !== undefined && table.isOpen(known.local)) {
      if (table.backend(known.local) !== backend) table.repin(known.local, backend);
      known.gen = peer.gen;
      return;
    }
    let h = key === null ? NO_SESSION : table.find(key);
    if (h !== NO_SESSION) {
      // Known here already (our own, or another peer's): the sender is master, its pin is the truth.
      const other = ix.foreignSessions.get(h);
      // Our own while master: our pin is the truth, the sender's copy is stale.
      if (other === undefined && this.isMaster()) return;
      if (other !== undefined) {
        other.peer.sessions.delete(other.sid);
        other.peer.relays.delete(other.sid);
      }
      if (table.backend(h) !== backend) table.repin(h, backend);
    } else {
      h = table.open(key, backend);
      if (h === NO_SESSION) {
        this.stats.applyRefused++;
        return;
      }
    }
    const r: SessionReplica = { peer, sid, service, local: h, gen: peer.gen };
    peer.sessions.set(sid, r);
    ix.foreignSessions.set(h, r);
  }

  sessionRepin(service: number, sid: number, backend: number): void {
    const e = this.replica(service, sid);
    if (e !== undefined) this.index[service]!.svc.sessions.table.repin(e.local, backend);
  }

  sessionClose(service: number, sid: number, reason: SessionEndReason): void {
    const e = this.replica(service, sid);
    if (e === undefined) return;
    this.peer.sessions.delete(sid);
    this.peer.relays.delete(sid);
    const ix = this.index[service]!;
    ix.foreignSessions.delete(e.local);
    ix.svc.sessions.table.close(e.local, reason);
  }

  sessionData(service: number, sid: number, data: string): void {
    const e = this.replica(service, sid);
    if (e !== undefined) this.index[service]!.svc.sessions.table.setData(e.local, data);
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
    const session = sid === NO_SID ? NO_SESSION : (this.replica(service, sid)?.local ?? NO_SESSION);
    const s = localAddress(src);
    const d = localAddress(dst);
    let h = flows.lookup(s, srcPort, d, dstPort, proto as FlowProto);
    if (h === NO_FLOW) {
      h = flows.insert(s, srcPort, d, dstPort, proto as FlowProto, role, session, timeoutMs);
      if (h === NO_FLOW) {
        this.stats.applyRefused++;
        return;
      }
    } else {
      const other = ix.foreignFlows.get(h);
      // Our own while master: the sender's copy is stale.
      if (other === undefined && this.isMaster()) return;
      flows.setSession(h, session);
      if (other !== undefined) {
        if (other.peer === peer) {
          other.gen = peer.gen;
          return;
        }
        other.peer.flows.delete(other.key);
      }
    }
    const r: FlowReplica = { peer, key: flowKey(service, h), service, local: h, gen: peer.gen };
    peer.flows.set(r.key, r);
    ix.foreignFlows.set(h, r);
  }

  flowRemove(service: number, src: WireAddress, srcPort: number, dst: WireAddress, dstPort: number, proto: number): void {
    const ix = this.index[service];
    if (ix === undefined || (proto !== 6 && proto !== 17)) return;
    const flows = ix.svc.flows;
    const h = flows.lookup(localAddress(src), srcPort, localAddress(dst), dstPort, proto as FlowProto);
    if (h === NO_FLOW) return;
    const e = ix.foreignFlows.get(h);
    // Only the peer's own replica: never a flow this node owns, nor another peer's.
    if (e === undefined || e.peer !== this.peer) return;
    this.peer.flows.delete(e.key);
    ix.foreignFlows.delete(h);
    flows.remove(h);
  }

  relayOpen(service: number, sid: number, relayPort: number, client: WireAddress, clientPort: number, backend: WireAddress, backendPort: number): void {
    const e = this.replica(service, sid);
    if (e === undefined) return;
    const peer = this.peer;
    let ports = peer.relays.get(sid);
    if (ports === undefined) peer.relays.set(sid, (ports = new Map()));
    const clientHost = relayHost(client);
    const backendHost = relayHost(backend);
    ports.set(relayPort, {
      service,
      port: relayPort,
      clientHost,
      clientPort: clientHost === null ? 0 : clientPort,
      backendHost,
      backendPort: backendHost === null ? 0 : backendPort,
      gen: peer.gen,
    });
  }

  relayClose(_service: number, sid: number, relayPort: number): void {
    const ports = this.peer.relays.get(sid);
    if (ports === undefined) return;
    ports.delete(relayPort);
    if (ports.size === 0) this.peer.relays.delete(sid);
  }

  /** ACK and CHALLENGE do not travel this way. */
  ack(): void {}
  challenge(): void {}

  /**
   * The current peer's replica `sid` of `service` — only while the local session is still marked
   * foreign to that peer under that sid: a peer's op never touches a session this node owns (see
   * state-replicator.ts).
   */
  private replica(service: number, sid: number): SessionReplica | undefined {
    const peer = this.peer;
    const e = peer.sessions.get(sid);
    if (e === undefined) return undefined;
    if (e.service === service && this.index[service]?.foreignSessions.get(e.local) === e) return e;
    peer.sessions.delete(sid);
    peer.relays.delete(sid);
    return undefined;
  }

  /** After a snapshot: what the peer had replicated here before and did not send again is gone. */
  private reconcile(peer: PeerState): void {
    for (const [sid, ports] of peer.relays) {
      for (const [port, r] of ports) if (r.gen !== peer.gen) ports.delete(port);
      if (ports.size === 0) peer.relays.delete(sid);
    }
    for (const [key, e] of peer.flows) {
      if (e.gen === peer.gen) continue;
      peer.flows.delete(key);
      const ix = this.index[e.service]!;
      if (ix.foreignFlows.get(e.local) !== e) continue;
      ix.foreignFlows.delete(e.local);
      ix.svc.flows.remove(e.local);
    }
    for (const [sid, e] of peer.sessions) {
      if (e.gen === peer.gen) continue;
      peer.sessions.delete(sid);
      const ix = this.index[e.service]!;
      if (ix.foreignSessions.get(e.local) !== e) continue;
      ix.foreignSessions.delete(e.local);
      ix.svc.sessions.table.close(e.local, 'removed');
    }
  }

  /** Keeps replicas alive: their traffic goes to their owner, which says when they end. */
  refresh(): void {
    for (const ix of this.index) {
      const table = ix.svc.sessions.table;
      for (const h of ix.foreignSessions.keys()) table.touch(h);
      const flows = ix.svc.flows;
      for (const h of ix.foreignFlows.keys()) flows.touch(h);
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

/** A replicated flow's key in its peer's `flows`: the local handle and the service (a handle is below 2^30, a service below 2^16: below 2^53). */
export function flowKey(service: number, local: FlowHandle): number {
  return local * 0x10000 + service;
}
