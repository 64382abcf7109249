/**
 * @module Session-state replication between dispatchers (issue 7): semi-active replication as in
 * the SIP ALG paper (seed 004) — the master's every session-table change (session open, re-pin,
 * close, its per-session data, flow insert and remove) is streamed to the backups, which apply it
 * and acknowledge — with CoRAL's reintegration (seed 001): a backup that joins late, restarts or
 * fell behind gets a snapshot of the whole state, then the stream.
 *
 * ## API (called by the dispatcher, src/dispatcher/)
 *
 * ```ts
 * const r = createStateReplicator({
 *   id,                    // config.dispatcher.id (u16)
 *   listen,                // the group's `listen` HostPort: TCP on the same host:port as its UDP election socket
 *   peers,                 // the group's `peers`
 *   key,                   // the cluster key (Buffer)
 *   services,              // [{ name, sessions: SessionRouter, flows: FlowTable, backends, relay? }] of the
 *                          // group's services, IN THE SAME ORDER on every dispatcher (ops name a service by
 *                          // index); `relay`: the service's media relay (ReplicatedRelay), if it has one
 *   clock,
 *   maxBufferBytes,        // optional, per peer, default REPLICATION_BUFFER_BYTES
 * });
 * await r.start();         // listens, then dials every peer (and redials forever)
 * r.adopt();               // when this dispatcher becomes master of the group (election 'master'):
 *                          // the state peers replicated here becomes its own (streamed, snapshotted)
 * r.demote();             // when it is backup again (election 'backup'): it stops streaming its own state
 * r.onSynced(peerId | null, (e) => ...);  // a peer's snapshot was applied here: { peer, sessions, flows, ms }
 * r.stats();               // counters (ReplicatorStats)
 * await r.close();
 * ```
 *
 * ## Protocol
 *
 * Every dispatcher dials every peer and streams ITS OWN state over that connection; what it accepts
 * it only applies. Frames (wire/replication-frame.ts, sealed by wire/envelope.ts, type 4) travel
 * as `u32 length ‖ sealed frame`. The acceptor speaks first: a CHALLENGE frame whose header carries
 * a fresh random 8-byte nonce. The dialer then sends SNAPSHOT_BEGIN, every session and flow it owns,
 * SNAPSHOT_END, and from then on the live stream. Every frame carries the nonce and its sequence
 * number (1, 2, 3… per connection): a frame from another connection or out of order is 'replay',
 * one that fails the MAC 'bad-mac', one that does not decode 'malformed'; each is counted
 * (wireDrop, source 'replication') and ends the connection (the dialer redials and resynchronises).
 * The acceptor acknowledges (ACK seq) at SNAPSHOT_END and then at most every ackIntervalMs.
 *
 * Bounds and the data path: a change only encodes a few bytes into the pending batch (no I/O, no
 * allocation beyond the batch's growth). The batch is framed, sealed (one HMAC) and written (one
 * corked socket write per peer) at most every flushMs (REPLICATION_FLUSH_MS, on the clock), or at once
 * when it passes REPLICATION_FLUSH_BYTES — whichever comes first: at any rate, many changes share one
 * seal and one write, and the backup acknowledges at most every ackIntervalMs, not per frame. The
 * price is lag: a change reaches the backups up to flushMs (plus the loopback/network hop) after it
 * was made; a failover within that window loses it, as it would lose a change still in flight. Per peer, the bytes written but not yet acknowledged (the snapshot excepted) are capped at
 * maxBufferBytes: over it, the connection is cut — a slow or dead backup never holds the master's
 * memory or time — and the redial brings a fresh snapshot. A received frame is at most
 * MAX_FRAME_BODY_BYTES; applied state is bounded by the local tables (a refused open is counted).
 * Incoming connections are capped at MAX_INBOUND_PER_PEER per configured peer (at least one peer's
 * worth): one over the cap is closed at accept (inboundRefused); one that has not sent a valid
 * authenticated frame within HANDSHAKE_TIMEOUT_MS of its accept is closed (handshakeTimeouts) — an
 * unauthenticated client never holds a connection, a buffer or a timer for long.
 *
 * Echo suppression: state applied from a peer is "foreign" — listed per service, never streamed on
 * (snapshots skip it, changes made while applying are ignored) — until adopt(). Foreign sessions and
 * flows are kept alive locally (touched every refreshIntervalMs) because their traffic goes to the
 * owner: they end when the owner says so, or when the owner's next snapshot no longer has them.
 *
 * Ownership across a failover (who may change what): a session or flow here is either OWN (not
 * marked foreign) or a replica of exactly one peer. A peer's op only ever touches a session or flow
 * still marked foreign TO THAT PEER (its replica): it never closes, re-pins, re-keys or re-data's one
 * this node owns. adopt() (this node became master) makes the replicas its own and destroys every
 * inbound connection — frames already sent on them by the old master (e.g. the timeouts of its stale
 * copies) are never applied; the peers redial and send a fresh snapshot. While master, a peer's
 * SESSION_OPEN or FLOW_INSERT naming a session or flow this node owns (same key / 5-tuple) is
 * ignored: the master's pin is the truth. A backup (not master) defers to the sender, as before.
 * demote() (the election made this node backup in every group on this replicator: dispatcher/
 * groups.ts) makes it stop streaming its own state: its outgoing connections are cut, the redial sends
 * an empty snapshot (so peers forget what it streamed before) and no own change is streamed until the
 * next adopt(); what it still holds ages out locally.
 *
 * Media relay ports (RELAY_OPEN / RELAY_CLOSE): the master streams each relay port's far ends (one op
 * per port, RTP and RTCP apart) on every change and in snapshots, after the sessions; a backup only
 * records them by its peer and session (it cannot bind them: the master holds them) and forgets them
 * with their session. adopt() hands the records of the sessions it adopts to the service's relay,
 * which binds those ports again, so that the media of calls in progress goes on after a takeover.
 * Records are bounded by the port numbers: one per (service, relay port) per peer.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { HostPort } from '../core/address.js';
import { formatHostPort } from '../core/address.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { channels, type WireDropEvent } from '../core/diagnostics.js';
import { ListenError } from '../core/errors.js';
import type { SessionChange } from '../sessions/session-router.js';
import type { RelayPortState } from '../media/media-relay.js';
import { MessageType, open, seal, type WireReject } from '../wire/envelope.js';
import { decodeFrame, decodeFrameHeader, encodeFrame, NONCE_BYTES, Op, OpWriter } from '../wire/replication-frame.js';
import { ReplicaApplier, type PeerState, type ReplicatedService, type ServiceIndex } from './replication-apply.js';
import { encodeFlow, encodeRelay, fitKey, fits, FrameReader, LENGTH_PREFIX_BYTES, wireAddress, writeSnapshot, BatchWriter, type Batch } from './replication-batch.js';

export type { ReplicatedRelay, ReplicatedService } from './replication-apply.js';

/** Default cap of unacknowledged live-stream bytes per peer. */
export const REPLICATION_BUFFER_BYTES = 8 * 1024 * 1024;
/**
 * The pending batch is flushed at most this often (the replication lag it adds): changes made within
 * it share one frame, one seal and one write per peer instead of paying one each (issue 7's < 5 %).
 */
export const REPLICATION_FLUSH_MS = 2;
/** A pending batch that passes this is flushed at once, without waiting for REPLICATION_FLUSH_MS. */
export const REPLICATION_FLUSH_BYTES = 32 * 1024;
/** The acceptor acknowledges at most this often (and at every SNAPSHOT_END). */
export const ACK_INTERVAL_MS = 50;
/** Delay before redialling a peer after a failed or cut connection. */
export const RECONNECT_MS = 500;
/** Foreign sessions and flows are touched this often; must stay below the smallest flow and session timeout. */
export const REFRESH_INTERVAL_MS = 1000;
/** An incoming connection must send its first valid authenticated frame within this, or it is closed. */
export const HANDSHAKE_TIMEOUT_MS = 1000;
/** Incoming connections allowed per configured peer (a redial briefly overlaps the connection it replaces). */
export const MAX_INBOUND_PER_PEER = 4;
/** A batch is closed into a frame before its ops would pass this size. */
export interface StateReplicatorOptions {
  /** This dispatcher's id (u16), config.dispatcher.id. */
  id: number;
  /** Where peers connect: the group's election host:port, in TCP. Port 0 picks one (tests): see address(). */
  listen: HostPort;
  peers: readonly HostPort[];
  /** The cluster key (HMAC-SHA256). */
  key: Buffer;
  /** The group's services, in the same order on every dispatcher. */
  services: readonly ReplicatedService[];
  clock: Clock;
  maxBufferBytes?: number;
  /** Default REPLICATION_FLUSH_MS. */
  flushMs?: number;
  ackIntervalMs?: number;
  reconnectMs?: number;
  refreshIntervalMs?: number;
  handshakeTimeoutMs?: number;
}

export interface SyncedEvent {
  /** The peer's dispatcher id. */
  peer: number;
  sessions: number;
  flows: number;
  /** From the connection's accept to the snapshot applied, clock ms. */
  ms: number;
}

export interface ReplicatorStats {
  /** Outgoing connections streaming (snapshot sent). */
  peersStreaming: number;
  /** Incoming connections (peers streaming to us). */
  peersInbound: number;
  framesSent: number;
  opsSent: number;
  bytesSent: number;
  framesApplied: number;
  opsApplied: number;
  snapshotsSent: number;
  snapshotsApplied: number;
  /** Connections cut because a peer's unacknowledged bytes passed maxBufferBytes. */
  overflows: number;
  /** Frames rejected, by reason. */
  rejected: Record<WireReject, number>;
  /** Applied opens or inserts the local tables refused (full). */
  applyRefused: number;
  /** Sessions and flows held for peers now. */
  foreignSessions: number;
  foreignFlows: number;
  /** Duration of the last snapshot applied here (accept to SNAPSHOT_END), ms; -1 before any. */
  lastSyncMs: number;
  /** Incoming connections closed at accept: MAX_INBOUND_PER_PEER per peer were open. */
  inboundRefused: number;
  /** Incoming connections closed for sending no valid frame within HANDSHAKE_TIMEOUT_MS. */
  handshakeTimeouts: number;
}

export interface StateReplicator {
  start(): Promise<void>;
  close(): Promise<void>;
  /** The bound TCP address (after start()). */
  address(): HostPort | null;
  stats(): ReplicatorStats;
  /** `fn` runs each time a snapshot from `peer` (any peer when null) has been applied. Returns an unsubscribe. */
  onSynced(peer: number | null, fn: (e: SyncedEvent) => void): () => void;
  /** This dispatcher became master: state replicated from peers becomes its own; peers get a new snapshot. */
  adopt(): void;
  /** This dispatcher is backup again: it stops streaming its own state (peers get an empty snapshot) until adopt(). */
  demote(): void;
}

export function createStateReplicator(options: StateReplicatorOptions): StateReplicator {
  return new Replicator(options);
}

// --- Internals --------------------------------------------------------------------------------------

/** An outgoing connection: we stream our state to `to`. */
interface OutLink {
  readonly to: HostPort;
  socket: net.Socket | null;
  reader: FrameReader;
  /** Set by the peer's CHALLENGE. */
  nonce: Buffer | null;
  peerId: number;
  streaming: boolean;
  seq: number;
  /** Peer's ack frames: next expected seq. */
  ackSeq: number;
  /** Live-stream bytes written / acknowledged (cumulative), and per unacked frame its cumulative end. */
  sentBytes: number;
  ackedBytes: number;
  unacked: { seq: number; end: number }[];
  redial: TimerHandle | null;
}

/** An incoming connection: `peer` streams its state to us. */
interface InLink {
  readonly socket: net.Socket;
  readonly reader: FrameReader;
  readonly nonce: Buffer;
  readonly acceptedAt: number;
  peer: PeerState | null;
  /** Next expected seq. */
  seq: number;
  /** Our own frames (CHALLENGE is 0, ACKs 1, 2, …). */
  outSeq: number;
  applied: number;
  ackTimer: TimerHandle | null;
  /** Until the first valid frame (then null). */
  handshakeTimer: TimerHandle | null;
  snapshotSessions: number;
  snapshotFlows: number;
}

function emptyRejects(): Record<WireReject, number> {
  return { truncated: 0, 'bad-mac': 0, version: 0, type: 0, malformed: 0, replay: 0, stale: 0, 'unknown-host': 0 };
}

class Replicator implements StateReplicator {
  private readonly id: number;
  private readonly key: Buffer;
  private readonly clock: Clock;
  private readonly maxBufferBytes: number;
  private readonly ackIntervalMs: number;
  private readonly reconnectMs: number;
  private readonly refreshIntervalMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly maxInbound: number;
  private readonly index: ServiceIndex[];
  private readonly applier: ReplicaApplier;
  private readonly pending = new BatchWriter();
  private readonly flushMs: number;
  private flushTimer: TimerHandle | null = null;
  private readonly outLinks: OutLink[];
  private readonly inLinks = new Set<InLink>();
  private readonly peers = new Map<number, PeerState>();
  private readonly syncListeners: { peer: number | null; fn: (e: SyncedEvent) => void }[] = [];
  private readonly unsubscribes: (() => void)[] = [];
  private server: net.Server | null = null;
  private bound: HostPort | null = null;
  private refreshTimer: TimerHandle | null = null;
  /** True while applying a peer's ops: the listeners ignore what that changes. */
  private applying = false;
  /** Set by adopt(), cleared by demote(): a peer's open/insert never re-pins or re-keys what we own. */
  private master = false;
  /** Set by demote(), cleared by adopt(): our own state is not streamed. */
  private demoted = false;
  private closed = false;
  private streamingLinks = 0;
  private readonly s = {
    framesSent: 0,
    opsSent: 0,
    bytesSent: 0,
    framesApplied: 0,
    opsApplied: 0,
    snapshotsSent: 0,
    snapshotsApplied: 0,
    overflows: 0,
    applyRefused: 0,
    lastSyncMs: -1,
    inboundRefused: 0,
    handshakeTimeouts: 0,
    rejected: emptyRejects(),
  };

  constructor(private readonly options: StateReplicatorOptions) {
    if (!(Number.isInteger(options.id) && options.id >= 0 && options.id <= 0xffff)) throw new RangeError(`replicator id ${options.id} is not a u16`);
    if (options.services.length > 0xffff) throw new RangeError('replicator: more than 65535 services');
    this.id = options.id;
    this.key = options.key;
    this.clock = options.clock;
    this.maxBufferBytes = options.maxBufferBytes ?? REPLICATION_BUFFER_BYTES;
    this.ackIntervalMs = options.ackIntervalMs ?? ACK_INTERVAL_MS;
    this.flushMs = options.flushMs ?? REPLICATION_FLUSH_MS;
    this.reconnectMs = options.reconnectMs ?? RECONNECT_MS;
    this.refreshIntervalMs = options.refreshIntervalMs ?? REFRESH_INTERVAL_MS;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    this.maxInbound = MAX_INBOUND_PER_PEER * Math.max(1, options.peers.length);
    this.index = options.services.map((svc) => ({ svc, foreignSessions: new Map(), foreignFlows: new Map() }));
    this.applier = new ReplicaApplier(this.index, () => this.master, this.s);
    this.outLinks = options.peers.map((to) => ({
      to,
      socket: null,
      reader: new FrameReader(),
      nonce: null,
      peerId: -1,
      streaming: false,
      seq: 0,
      ackSeq: 1,
      sentBytes: 0,
      ackedBytes: 0,
      unacked: [],
      redial: null,
    }));
  }

  // --- Lifecycle ---------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.server !== null || this.closed) return;
    this.index.forEach((ix, service) => this.listen(ix, service));
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new ListenError(`replication tcp ${formatHostPort(this.options.listen)}`, { cause: err }));
      server.once('error', onError);
      server.listen(this.options.listen.port, this.options.listen.host, () => {
        server.off('error', onError);
        server.on('error', () => {});
        const a = server.address() as net.AddressInfo;
        this.bound = { host: a.address, port: a.port };
        resolve();
      });
    });
    this.refreshTimer = this.clock.setInterval(() => this.applier.refresh(), this.refreshIntervalMs);
    for (const link of this.outLinks) this.dial(link);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const u of this.unsubscribes) u();
    this.refreshTimer?.cancel();
    this.flushTimer?.cancel();
    this.flushTimer = null;
    for (const link of this.outLinks) {
      link.redial?.cancel();
      link.socket?.destroy();
      link.socket = null;
    }
    for (const link of this.inLinks) {
      link.ackTimer?.cancel();
      link.handshakeTimer?.cancel();
      link.socket.destroy();
    }
    this.inLinks.clear();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  address(): HostPort | null {
    return this.bound;
  }

  onSynced(peer: number | null, fn: (e: SyncedEvent) => void): () => void {
    const entry = { peer, fn };
    this.syncListeners.push(entry);
    return () => {
      const i = this.syncListeners.indexOf(entry);
      if (i >= 0) this.syncListeners.splice(i, 1);
    };
  }

  adopt(): void {
    const restore = this.index.map((): RelayPortState[] => []);
    for (const peer of this.peers.values()) {
      for (const [sid, ports] of peer.relays) {
        const session = peer.sessions.get(sid);
        if (session === undefined) continue;
        for (const r of ports.values()) {
          if (r.service !== session.service) continue;
          restore[r.service]!.push({
            session: session.local,
            port: r.port,
            clientHost: r.clientHost,
            clientPort: r.clientPort,
            backendHost: r.backendHost,
            backendPort: r.backendPort,
          });
        }
      }
    }
    this.index.forEach((ix, service) => {
      if (restore[service]!.length > 0) ix.svc.relay?.restore(restore[service]!);
    });
    for (const ix of this.index) {
      ix.foreignSessions.clear();
      ix.foreignFlows.clear();
    }
    this.peers.clear();
    this.master = true;
    this.demoted = false;
    // Frames the old master already sent (or still sends) on its connections must not reach what we
    // now own: its connections end here; it redials, and its snapshot is applied under the master rule.
    for (const link of this.inLinks) {
      link.ackTimer?.cancel();
      link.ackTimer = null;
      link.peer = null;
      link.socket.destroy();
    }
    // Peers learn the state we now own through a fresh snapshot on a fresh connection.
    for (const link of this.outLinks) if (link.socket !== null) this.cut(link);
  }

  demote(): void {
    this.master = false;
    if (this.demoted) return;
    this.demoted = true;
    // Own changes not yet sent are not streamed either.
    this.pending.take();
    for (const link of this.outLinks) if (link.socket !== null) this.cut(link);
  }

  stats(): ReplicatorStats {
    let foreignSessions = 0;
    let foreignFlows = 0;
    for (const ix of this.index) {
      foreignSessions += ix.foreignSessions.size;
      foreignFlows += ix.foreignFlows.size;
    }
    return {
      peersStreaming: this.streamingLinks,
      peersInbound: this.inLinks.size,
      framesSent: this.s.framesSent,
      opsSent: this.s.opsSent,
      bytesSent: this.s.bytesSent,
      framesApplied: this.s.framesApplied,
      opsApplied: this.s.opsApplied,
      snapshotsSent: this.s.snapshotsSent,
      snapshotsApplied: this.s.snapshotsApplied,
      overflows: this.s.overflows,
      rejected: { ...this.s.rejected },
      applyRefused: this.s.applyRefused,
      foreignSessions,
      foreignFlows,
      lastSyncMs: this.s.lastSyncMs,
      inboundRefused: this.s.inboundRefused,
      handshakeTimeouts: this.s.handshakeTimeouts,
    };
  }

  // --- The data path: local changes → pending batch ------------------------------------------------

  private listen(ix: ServiceIndex, service: number): void {
    const { sessions, flows } = ix.svc;
    this.unsubscribes.push(
      sessions.onChange((c) => this.sessionChanged(ix, service, c)),
      sessions.table.onData((h, data) => {
        if (this.applying || this.demoted || this.streamingLinks === 0 || ix.foreignSessions.has(h) || !fits(data)) return;
        this.pending.room().sessionData(service, h, data);
        this.scheduleFlush();
      }),
      flows.onInsert((h) => {
        if (this.applying || this.demoted || this.streamingLinks === 0 || ix.foreignFlows.has(h)) return;
        encodeFlow(this.pending.room(), ix.svc.flows, service, h);
        this.scheduleFlush();
      }),
      flows.onRemove((h) => {
        if (this.applying) return;
        const foreign = ix.foreignFlows.get(h);
        if (foreign !== undefined) {
          // A replica left the table locally (not by its owner): forget it, tell no one.
          ix.foreignFlows.delete(h);
          foreign.peer.flows.delete(foreign.key);
          return;
        }
        if (this.demoted || this.streamingLinks === 0) return;
        this.pending.room().flowRemove(service, {
          src: wireAddress(flows.srcIp(h)),
          srcPort: flows.srcPort(h),
          dst: wireAddress(flows.dstIp(h)),
          dstPort: flows.dstPort(h),
          proto: flows.proto(h),
        });
        this.scheduleFlush();
      }),
    );
    const relay = ix.svc.relay;
    if (relay === undefined) return;
    this.unsubscribes.push(
      relay.onChange((c) => {
        if (this.applying || this.demoted || this.streamingLinks === 0) return;
        const session = c.type === 'update' ? c.state.session : c.session;
        if (ix.foreignSessions.has(session)) return;
        if (c.type === 'update') encodeRelay(this.pending.room(), service, c.state);
        else this.pending.room().relayClose(service, session, c.port);
        this.scheduleFlush();
      }),
    );
  }

  private sessionChanged(ix: ServiceIndex, service: number, c: SessionChange): void {
    if (this.applying) return;
    const foreign = ix.foreignSessions.get(c.session);
    if (foreign !== undefined) {
      if (c.type === 'close') {
        ix.foreignSessions.delete(c.session);
        foreign.peer.sessions.delete(foreign.sid);
        foreign.peer.relays.delete(foreign.sid);
      }
      return;
    }
    if (this.demoted || this.streamingLinks === 0) return;
    const w = this.pending.room();
    switch (c.type) {
      case 'open':
        w.sessionOpen(service, c.session, c.backend.index, fitKey(c.key));
        break;
      case 'repin':
        w.sessionRepin(service, c.session, c.to.index);
        break;
      case 'close':
        w.sessionClose(service, c.session, c.reason);
        break;
    }
    this.scheduleFlush();
  }

  /** A key too long for the wire is replicated as an anonymous session (its flows still follow it). */
  /** After an op went into the pending batch: flush now when it is large, else within flushMs. */
  private scheduleFlush(): void {
    if (this.pending.bytes >= REPLICATION_FLUSH_BYTES) return this.flush();
    this.flushTimer ??= this.clock.setTimeout(() => {
      this.flushTimer = null;
      this.flush();
    }, this.flushMs);
  }

  /** Frames the pending ops once per peer; cuts a peer whose unacknowledged bytes would pass the cap. */
  private flush(): void {
    this.flushTimer?.cancel();
    this.flushTimer = null;
    const batches = this.pending.take();
    if (batches.length === 0) return;
    let bytes = 0;
    for (const b of batches) bytes += b.bytes.length;
    for (const link of this.outLinks) {
      const socket = link.socket;
      if (!link.streaming || socket === null || socket.destroyed) continue;
      if (link.sentBytes - link.ackedBytes + bytes > this.maxBufferBytes) {
        this.s.overflows++;
        this.cut(link);
        continue;
      }
      socket.cork();
      for (const b of batches) this.send(link, b, true);
      socket.uncork();
    }
  }

  private send(link: OutLink, b: Batch, live: boolean): void {
    const seq = ++link.seq;
    const msg = seal(MessageType.Replication, encodeFrame({ sender: this.id, seq, nonce: link.nonce! }, b.count, b.bytes), this.key);
    const prefix = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES);
    prefix.writeUInt32BE(msg.length, 0);
    link.socket!.write(prefix);
    link.socket!.write(msg);
    this.s.framesSent++;
    this.s.opsSent += b.count;
    this.s.bytesSent += msg.length + LENGTH_PREFIX_BYTES;
    if (live) {
      link.sentBytes += msg.length + LENGTH_PREFIX_BYTES;
      link.unacked.push({ seq, end: link.sentBytes });
    }
  }

  // --- Outgoing connections --------------------------------------------------------------------------

  private dial(link: OutLink): void {
    if (this.closed) return;
    link.redial = null;
    link.reader = new FrameReader();
    link.nonce = null;
    link.streaming = false;
    link.seq = 0;
    link.ackSeq = 1;
    link.sentBytes = 0;
    link.ackedBytes = 0;
    link.unacked = [];
    const socket = net.connect({ host: link.to.host, port: link.to.port });
    link.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (data: Buffer) => this.outData(link, socket, data));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (link.socket !== socket) return;
      if (link.streaming) this.streamingLinks--;
      link.streaming = false;
      link.socket = null;
      if (!this.closed) link.redial = this.clock.setTimeout(() => this.dial(link), this.reconnectMs);
    });
  }

  /** Ends an outgoing connection now; its close handler redials. */
  private cut(link: OutLink): void {
    const socket = link.socket;
    if (socket === null) return;
    socket.destroy();
  }

  private outData(link: OutLink, socket: net.Socket, data: Buffer): void {
    if (link.socket !== socket) return;
    const frames = link.reader.push(data);
    if (frames === 'too-large') return this.reject(link.to, 'malformed', () => this.cut(link));
    for (const msg of frames) {
      const frame = this.openFrame(msg, link.to);
      if (frame === null) return this.cut(link);
      if (link.nonce === null) {
        // The acceptor's first frame: CHALLENGE, seq 0.
        const first = frame.ops[0];
        if (frame.seq !== 0 || frame.ops.length !== 1 || first?.op !== Op.Challenge || frame.sender === this.id) {
          return this.reject(link.to, 'malformed', () => this.cut(link));
        }
        link.nonce = Buffer.from(frame.nonce);
        link.peerId = frame.sender;
        this.sendSnapshot(link);
        continue;
      }
      if (frame.sender !== link.peerId || !frame.nonce.equals(link.nonce) || frame.seq !== link.ackSeq) {
        return this.reject(link.to, 'replay', () => this.cut(link));
      }
      link.ackSeq++;
      for (const op of frame.ops) {
        if (op.op !== Op.Ack) return this.reject(link.to, 'malformed', () => this.cut(link));
        while (link.unacked.length > 0 && ((op.seq - link.unacked[0]!.seq) | 0) >= 0) link.ackedBytes = link.unacked.shift()!.end;
      }
    }
  }

  private sendSnapshot(link: OutLink): void {
    // Demoted: an empty snapshot — peers drop what we streamed before.
    const batches = writeSnapshot(this.index, this.demoted);
    // Ops pending since the last flush are in the snapshot already; sent again after it, they apply idempotently.
    const socket = link.socket!;
    socket.cork();
    for (const b of batches) this.send(link, b, false);
    socket.uncork();
    link.streaming = true;
    this.streamingLinks++;
    this.s.snapshotsSent++;
  }

  // --- Incoming connections: apply -----------------------------------------------------------------

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    if (this.inLinks.size >= this.maxInbound) {
      this.s.inboundRefused++;
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const link: InLink = {
      socket,
      reader: new FrameReader(),
      nonce: randomBytes(NONCE_BYTES),
      acceptedAt: this.clock.now(),
      peer: null,
      seq: 1,
      outSeq: 0,
      applied: 0,
      ackTimer: null,
      handshakeTimer: null,
      snapshotSessions: 0,
      snapshotFlows: 0,
    };
    this.inLinks.add(link);
    link.handshakeTimer = this.clock.setTimeout(() => {
      link.handshakeTimer = null;
      if (link.peer !== null || socket.destroyed) return;
      this.s.handshakeTimeouts++;
      socket.destroy();
    }, this.handshakeTimeoutMs);
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.on('close', () => {
      link.ackTimer?.cancel();
      link.handshakeTimer?.cancel();
      this.inLinks.delete(link);
    });
    socket.on('data', (data: Buffer) => this.inData(link, data));
    const w = new OpWriter(16);
    w.challenge();
    this.reply(link, w);
  }

  private reply(link: InLink, w: OpWriter): void {
    if (link.socket.destroyed) return;
    const msg = seal(MessageType.Replication, encodeFrame({ sender: this.id, seq: link.outSeq++, nonce: link.nonce }, w.count, w.bytes()), this.key);
    const prefix = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES);
    prefix.writeUInt32BE(msg.length, 0);
    link.socket.cork();
    link.socket.write(prefix);
    link.socket.write(msg);
    link.socket.uncork();
  }

  private inData(link: InLink, data: Buffer): void {
    if (link.socket.destroyed) return;
    const from = `${link.socket.remoteAddress ?? '?'}:${link.socket.remotePort ?? 0}`;
    const frames = link.reader.push(data);
    const drop = (): void => {
      link.socket.destroy();
    };
    if (frames === 'too-large') return this.reject(from, 'malformed', drop);
    for (const msg of frames) {
      const frame = this.openFrame(msg, from);
      if (frame === null) return drop();
      if (!frame.nonce.equals(link.nonce) || frame.seq !== link.seq) return this.reject(from, 'replay', drop);
      if (frame.sender === this.id || (link.peer !== null && frame.sender !== link.peer.id)) return this.reject(from, 'unknown-host', drop);
      link.seq++;
      if (link.peer === null) {
        let peer = this.peers.get(frame.sender);
        if (peer === undefined) {
          peer = { id: frame.sender, sessions: new Map(), flows: new Map(), relays: new Map(), gen: 0 };
          this.peers.set(frame.sender, peer);
        }
        // A newer connection from the same peer replaces the older one.
        for (const other of this.inLinks) if (other !== link && other.peer === peer) other.socket.destroy();
        link.peer = peer;
        link.handshakeTimer?.cancel();
        link.handshakeTimer = null;
      }
      this.applying = true;
      try {
        for (const op of frame.ops) {
          const synced = this.applier.apply(link, link.peer, op);
          if (synced !== null) this.synced(link, link.peer, synced.sessions, synced.flows);
        }
      } finally {
        this.applying = false;
      }
      this.s.framesApplied++;
      this.s.opsApplied += frame.ops.length;
      link.applied = frame.seq;
      link.ackTimer ??= this.clock.setTimeout(() => this.ack(link), this.ackIntervalMs);
    }
  }

  private ack(link: InLink): void {
    link.ackTimer?.cancel();
    link.ackTimer = null;
    const w = new OpWriter(16);
    w.ack(link.applied);
    this.reply(link, w);
  }

  private synced(link: InLink, peer: PeerState, sessions: number, flows: number): void {
    const ms = this.clock.now() - link.acceptedAt;
    this.s.snapshotsApplied++;
    this.s.lastSyncMs = ms;
    // The sender's buffer is released as soon as the snapshot is in.
    this.clock.immediate(() => this.ack(link));
    const e: SyncedEvent = { peer: peer.id, sessions, flows, ms };
    for (const l of this.syncListeners.slice()) if (l.peer === null || l.peer === peer.id) l.fn(e);
  }

  // --- Frames ---------------------------------------------------------------------------------------

  private openFrame(msg: Buffer, from: HostPort | string): ReturnType<typeof decodeFrame> {
    const opened = open(msg, this.key);
    if (!opened.ok) {
      this.reject(from, opened.reason);
      return null;
    }
    if (opened.type !== MessageType.Replication) {
      this.reject(from, 'type');
      return null;
    }
    if (decodeFrameHeader(opened.body) === null) {
      this.reject(from, 'malformed');
      return null;
    }
    const frame = decodeFrame(opened.body);
    if (frame === null) this.reject(from, 'malformed');
    return frame;
  }

  private reject(from: HostPort | string, reason: WireReject, then?: () => void): void {
    this.s.rejected[reason]++;
    if (channels.wireDrop.hasSubscribers) {
      const at = typeof from === 'string' ? from : formatHostPort(from);
      channels.wireDrop.publish({ source: 'replication', reason, from: at } satisfies WireDropEvent);
    }
    then?.();
  }
}

