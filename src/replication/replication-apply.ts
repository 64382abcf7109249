/**
 * @module The applying side of session-state replication: what each peer replicated here (its
 * sessions, flows and relay ports, by the peer's own handles), applied to the local tables op by op
 * and reconciled after each snapshot. A peer's op never touches a session this node owns (see
 * state-replicator.ts). Also the shape of what is replicated: a service's tables and relay.
 */
import type { Backend } from '../core/backend.js';
import type { RelayChange, RelayPortState } from '../media/index.js';
import { addressKey, addressOf, NO_FLOW, type FlowHandle, type FlowProto, type FlowTable } from '../sessions/flow-table.js';
import type { SessionRouter } from '../sessions/session-router.js';
import { NO_SESSION, type SessionHandle } from '../sessions/session-table.js';
import { NO_SID, Op, type ReplicationOp, type WireAddress } from '../wire/replication-frame.js';

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

/** What one peer replicated here, kept across its reconnections (the next snapshot reconciles it). */
export interface PeerState {
  readonly id: number;
  /** By the peer's session handle. */
  readonly sessions: Map<number, { service: number; local: SessionHandle; gen: number }>;
  /** By service and 5-tuple text. */
  readonly flows: Map<string, { service: number; local: FlowHandle; gen: number }>;
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

/** Per service: local handles of foreign state → its owner (and the key it is known by there). */
export interface ServiceIndex {
  readonly svc: ReplicatedService;
  readonly foreignSessions: Map<SessionHandle, { peer: PeerState; sid: number }>;
  readonly foreignFlows: Map<FlowHandle, { peer: PeerState; key: string }>;
}

/** What a snapshot in progress has counted so far (an incoming link). */
export interface SnapshotCounts {
  snapshotSessions: number;
  snapshotFlows: number;
}

/** Applies peers' ops to the local tables of the replicated services. */
export class ReplicaApplier {
  constructor(
    private readonly index: readonly ServiceIndex[],
    /** Whether this node is master: its own sessions' pins are the truth then. */
    private readonly isMaster: () => boolean,
    private readonly stats: { applyRefused: number },
  ) {}

  /**
   * Applies one op of `peer`'s stream. `link` counts the snapshot's sessions and flows; at the
   * snapshot's end, what the peer no longer has is dropped and the counts the sender announced are
   * returned (the caller reports the peer synced), else null.
   */
  apply(link: SnapshotCounts, peer: PeerState, op: ReplicationOp): { sessions: number; flows: number } | null {
    switch (op.op) {
      case Op.SnapshotBegin:
        peer.gen++;
        link.snapshotSessions = 0;
        link.snapshotFlows = 0;
        return null;
      case Op.SnapshotEnd:
        this.reconcile(peer);
        return { sessions: op.sessions, flows: op.flows };
      case Op.SessionOpen:
        link.snapshotSessions++;
        this.applyOpen(peer, op.service, op.sid, op.backend, op.key);
        return null;
      case Op.SessionRepin: {
        const e = this.replica(peer, op.service, op.sid);
        if (e !== undefined) this.index[e.service]!.svc.sessions.table.repin(e.local, op.backend);
        return null;
      }
      case Op.SessionClose: {
        const e = this.replica(peer, op.service, op.sid);
        if (e === undefined) return null;
        peer.sessions.delete(op.sid);
        peer.relays.delete(op.sid);
        const ix = this.index[e.service]!;
        ix.foreignSessions.delete(e.local);
        ix.svc.sessions.table.close(e.local, op.reason);
        return null;
      }
      case Op.SessionData: {
        const e = this.replica(peer, op.service, op.sid);
        if (e !== undefined) this.index[e.service]!.svc.sessions.table.setData(e.local, op.data);
        return null;
      }
      case Op.FlowInsert:
        link.snapshotFlows++;
        this.applyFlow(peer, op);
        return null;
      case Op.FlowRemove: {
        const key = flowKey(op.service, op.src, op.srcPort, op.dst, op.dstPort, op.proto);
        const e = peer.flows.get(key);
        if (e === undefined) return null;
        peer.flows.delete(key);
        const ix = this.index[e.service]!;
        if (ix.foreignFlows.get(e.local)?.peer !== peer) return null;
        ix.foreignFlows.delete(e.local);
        ix.svc.flows.remove(e.local);
        return null;
      }
      case Op.RelayOpen: {
        const e = this.replica(peer, op.service, op.sid);
        if (e === undefined) return null;
        let ports = peer.relays.get(op.sid);
        if (ports === undefined) peer.relays.set(op.sid, (ports = new Map()));
        const clientHost = relayHost(op.client);
        const backendHost = relayHost(op.backend);
        ports.set(op.relayPort, {
          service: op.service,
          port: op.relayPort,
          clientHost,
          clientPort: clientHost === null ? 0 : op.clientPort,
          backendHost,
          backendPort: backendHost === null ? 0 : op.backendPort,
          gen: peer.gen,
        });
        return null;
      }
      case Op.RelayClose: {
        const ports = peer.relays.get(op.sid);
        if (ports === undefined) return null;
        ports.delete(op.relayPort);
        if (ports.size === 0) peer.relays.delete(op.sid);
        return null;
      }
      default:
        // ACK and CHALLENGE do not travel this way.
        return null;
    }
  }

  private applyOpen(peer: PeerState, service: number, sid: number, backend: number, key: string | null): void {
    const ix = this.index[service];
    if (ix === undefined) return;
    const table = ix.svc.sessions.table;
    const known = this.replica(peer, service, sid);
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
    peer.sessions.set(sid, { service, local: h, gen: peer.gen });
    ix.foreignSessions.set(h, { peer, sid });
  }

  private applyFlow(peer: PeerState, op: Extract<ReplicationOp, { op: typeof Op.FlowInsert }>): void {
    const ix = this.index[op.service];
    if (ix === undefined) return;
    if (op.proto !== 6 && op.proto !== 17) return;
    const flows = ix.svc.flows;
    const key = flowKey(op.service, op.src, op.srcPort, op.dst, op.dstPort, op.proto);
    const session = op.sid === NO_SID ? NO_SESSION : (this.replica(peer, op.service, op.sid)?.local ?? NO_SESSION);
    const src = localAddress(op.src);
    const dst = localAddress(op.dst);
    let h = flows.lookup(src, op.srcPort, dst, op.dstPort, op.proto as FlowProto);
    if (h === NO_FLOW) {
      h = flows.insert(src, op.srcPort, dst, op.dstPort, op.proto as FlowProto, op.role, session, op.timeoutMs);
      if (h === NO_FLOW) {
        this.stats.applyRefused++;
        return;
      }
    } else {
      const other = ix.foreignFlows.get(h);
      // Our own while master: the sender's copy is stale.
      if (other === undefined && this.isMaster()) return;
      flows.setSession(h, session);
      if (other !== undefined && other.peer !== peer) other.peer.flows.delete(other.key);
    }
    peer.flows.set(key, { service: op.service, local: h, gen: peer.gen });
    ix.foreignFlows.set(h, { peer, key });
  }

  /**
   * The peer's replica `sid` of `service` — only while the local session is still marked foreign to
   * that peer under that sid: a peer's op never touches a session this node owns (see the header).
   */
  private replica(peer: PeerState, service: number, sid: number): { service: number; local: SessionHandle; gen: number } | undefined {
    const e = peer.sessions.get(sid);
    if (e === undefined || e.service !== service) return undefined;
    const f = this.index[service]?.foreignSessions.get(e.local);
    if (f?.peer === peer && f.sid === sid) return e;
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
      if (ix.foreignFlows.get(e.local)?.peer !== peer) continue;
      ix.foreignFlows.delete(e.local);
      ix.svc.flows.remove(e.local);
    }
    for (const [sid, e] of peer.sessions) {
      if (e.gen === peer.gen) continue;
      peer.sessions.delete(sid);
      const ix = this.index[e.service]!;
      const f = ix.foreignSessions.get(e.local);
      if (f?.peer !== peer || f.sid !== sid) continue;
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

export function flowKey(service: number, src: WireAddress, srcPort: number, dst: WireAddress, dstPort: number, proto: number): string {
  return `${service}|${src}|${srcPort}|${dst}|${dstPort}|${proto}`;
}
