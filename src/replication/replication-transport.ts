/**
 * @module Session-state replication's transport: the TCP links between dispatchers, both ways. Out:
 * dial every peer, answer its CHALLENGE with a snapshot, then stream batches, bounded by the peer's
 * acknowledgements (redial on any fault). In: accept, challenge, check every frame (MAC, nonce,
 * sequence, sender), hand its ops to the applier, acknowledge. The public API and the data path from
 * the local tables are in state-replicator.ts.
 */
import { createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import net from 'node:net';
import type { HostPort } from '../core/address.js';
import { formatHostPort } from '../core/address.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { channels, type WireDropEvent } from '../core/diagnostics.js';
import { ENVELOPE_OVERHEAD_BYTES, MessageType, open, seal, sealAt, type WireReject } from '../wire/envelope.js';
import { checkFrame, decodeFrame, decodeFrameHeader, encodeFrame, encodeFrameAt, FRAME_HEADER_BYTES, NONCE_BYTES, Op, OpWriter, visitFrame } from '../wire/replication-frame.js';
import { newPeer, ReplicaApplier, serviceIndex, type PeerState, type ReplicatedService, type ServiceIndex } from './replication-apply.js';
import { BatchWriter, CatchUpWriter, DirtySet, FrameReader, LENGTH_PREFIX_BYTES, SnapshotWriter, SNAPSHOT_SLICE_ENTRIES, type Batch } from './replication-batch.js';

/**
 * Default cap of unacknowledged live-stream bytes per peer: over it, the peer's stream pauses and its
 * changes are marked for a catch-up (DirtySet) instead of written, or queued.
 */
export const REPLICATION_BUFFER_BYTES = 8 * 1024 * 1024;
/** A peer paused at the cap that acknowledges nothing for this long is cut (it redials and gets a snapshot). */
export const LAG_TIMEOUT_MS = 10_000;
/**
 * How long a change may wait in the pending batch (groups[].replicationFlushMs). 0, the default since
 * issue 17: no timer — the batch is flushed at the end of the event-loop turn that made its changes
 * (setImmediate), so every change of a turn shares one frame, one seal and one write per peer, and
 * leaves before the reply that depends on it (which needs the backend's answer, a later turn). On a
 * busy master a turn carries many changes; measured (bench/replication-flush), a turn-end flush cost
 * the master no more than the 2 ms timer it replaces, which also lost up to 2 ms of changes on death.
 */
export const REPLICATION_FLUSH_MS = 0;
/** A pending batch that passes this is flushed at once, without waiting for the end of the turn (or flushMs). */
export const REPLICATION_FLUSH_BYTES = 32 * 1024;
/** The acceptor acknowledges at most this often (and at every SNAPSHOT_END). */
export const ACK_INTERVAL_MS = 50;
/** Delay before redialling a peer after a failed or cut connection. */
export const RECONNECT_MS = 500;
/** Foreign sessions and flows are touched this often; must stay below the smallest flow and session timeout. */
export const REFRESH_INTERVAL_MS = 1000;
/** An incoming connection must send its first valid authenticated frame within this, or it is closed. */
export const HANDSHAKE_TIMEOUT_MS = 1000;
/**
 * Incoming connections allowed per configured peer (a redial briefly overlaps the connection it
 * replaces). The cap applies to each of three pools apart: authenticated links, connections still
 * in their handshake from a configured peer's address, and handshakes from any other address. A
 * flood of connections that never authenticate (from addresses that are no peer's) fills only the
 * last pool, so a real peer still gets in.
 */
export const MAX_INBOUND_PER_PEER = 4;
/** A snapshot in progress waits for the socket to drain while more than this is queued in it. */
export const SNAPSHOT_HIGH_WATER_BYTES = 1024 * 1024;
/**
 * A snapshot slice (one synchronous turn of the master's event loop) writes steps of
 * snapshotSliceEntries until this much time has passed (issue 17 item 3: measured, not counted, so
 * that a slice stays short whatever an entry costs on this machine, and GC of its garbage with it).
 */
export const SNAPSHOT_SLICE_MS = 1;
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
  /** Sessions and flows per snapshot step, default SNAPSHOT_SLICE_ENTRIES (a catch-up slice is one step). */
  snapshotSliceEntries?: number;
  /** A snapshot slice writes steps until this many ms have passed, default SNAPSHOT_SLICE_MS; 0: one step per slice. */
  snapshotSliceMs?: number;
  /** Default LAG_TIMEOUT_MS. */
  lagTimeoutMs?: number;
  /**
   * The highest election epoch this node knows (its groups' elections; default: always 0). Every
   * frame carries it; a frame whose sender knows an older epoch than this is refused ('stale') and
   * its connection closed: a deposed master that has not yet heard of its successor cannot stream
   * into a node that has.
   */
  epoch?: () => number;
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
  /**
   * Times a peer's unacknowledged bytes passed maxBufferBytes: its stream paused, its changes marked;
   * once it had acknowledged everything, a catch-up sent their current state (no new snapshot).
   */
  overflows: number;
  /** Catch-ups sent after an overflow. */
  catchUps: number;
  /** Peers cut for acknowledging nothing for lagTimeoutMs while paused (their redial brings a snapshot). */
  lagCuts: number;
  /** Frames rejected, by reason. */
  rejected: Record<WireReject, number>;
  /** Applied opens or inserts the local tables refused (full). */
  applyRefused: number;
  /** Sessions and flows held for peers now. */
  foreignSessions: number;
  foreignFlows: number;
  /** Duration of the last snapshot applied here (accept to SNAPSHOT_END), ms; -1 before any. */
  lastSyncMs: number;
  /**
   * Replication lag as a time, per peer this node streams to: the age of the oldest own change the
   * peer has not yet acknowledged as applied — a live frame sent and not acked, or else a change still
   * waiting in the batch (flushMs) — 0 when it has applied everything, null while it is not streaming
   * (connecting, or receiving its snapshot). Acks go out every ACK_INTERVAL_MS, so it reads up to that
   * much above the true lag. The largest over the peers streaming is `lagMs`.
   */
  peers: { to: string; streaming: boolean; lagMs: number | null; unackedBytes: number }[];
  lagMs: number | null;
  /** Per peer streaming to this node: time since the last frame of it was applied here, ms. */
  inbound: { peer: number | null; sinceLastFrameMs: number }[];
  /** Incoming connections closed at accept: MAX_INBOUND_PER_PEER per peer were open. */
  inboundRefused: number;
  /** Incoming connections closed for sending no valid frame within HANDSHAKE_TIMEOUT_MS. */
  handshakeTimeouts: number;
  /** The longest snapshot slice sent (encode, seal, write: one synchronous turn of this node's event loop), ms; -1 before any. */
  longestSnapshotSliceMs: number;
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


// --- Internals --------------------------------------------------------------------------------------

/** An outgoing connection: we stream our state to `to`. */
export interface OutLink {
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
  unacked: { seq: number; end: number; at: number }[];
  redial: TimerHandle | null;
  /** Non-null while the peer is over the cap: what changed meanwhile (nothing is written to it). */
  dirty: DirtySet | null;
  /** While paused: cuts the peer if no acknowledgement comes within lagTimeoutMs. */
  lagTimer: TimerHandle | null;
}

/** An incoming connection: `peer` streams its state to us. */
export interface InLink {
  readonly socket: net.Socket;
  readonly reader: FrameReader;
  readonly nonce: Buffer;
  readonly acceptedAt: number;
  /** Clock time of the last frame applied (acceptedAt before the first). */
  lastFrameAt: number;
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

export function emptyRejects(): Record<WireReject, number> {
  return { truncated: 0, 'bad-mac': 0, version: 0, type: 0, malformed: 0, replay: 0, stale: 0, 'unknown-host': 0 };
}

/** The links to the peers; the subclass feeds them and is the public face. */
export abstract class ReplicationLinks {
  protected readonly id: number;
  /** The cluster key, imported once: every frame's seal and open uses it. */
  protected readonly key: KeyObject;
  protected readonly clock: Clock;
  protected readonly maxBufferBytes: number;
  protected readonly ackIntervalMs: number;
  protected readonly reconnectMs: number;
  protected readonly refreshIntervalMs: number;
  protected readonly handshakeTimeoutMs: number;
  protected readonly snapshotSliceEntries: number;
  protected readonly snapshotSliceMs: number;
  protected readonly lagTimeoutMs: number;
  protected readonly epoch: () => number;
  protected readonly maxInbound: number;
  /** The configured peers' addresses: their handshakes have a pool of their own (see MAX_INBOUND_PER_PEER). Built at the first accept. */
  private peerHosts: ReadonlySet<string> | null = null;
  protected readonly index: ServiceIndex[];
  protected readonly applier: ReplicaApplier;
  protected readonly pending = new BatchWriter();
  protected readonly flushMs: number;
  protected flushTimer: TimerHandle | null = null;
  /** Clock time of the oldest change in the pending batch; null when it is empty. */
  protected pendingSince: number | null = null;
  protected readonly outLinks: OutLink[];
  protected readonly inLinks = new Set<InLink>();
  protected readonly peers = new Map<number, PeerState>();
  protected readonly syncListeners: { peer: number | null; fn: (e: SyncedEvent) => void }[] = [];
  protected readonly unsubscribes: (() => void)[] = [];
  protected server: net.Server | null = null;
  protected bound: HostPort | null = null;
  protected refreshTimer: TimerHandle | null = null;
  /** True while applying a peer's ops: the listeners ignore what that changes. */
  protected applying = false;
  /** Set by adopt(), cleared by demote(): a peer's open/insert never re-pins or re-keys what we own. */
  protected master = false;
  /** Set by demote(), cleared by adopt(): our own state is not streamed. */
  protected demoted = false;
  protected closed = false;
  protected streamingLinks = 0;
  /** Outgoing links paused over the cap (their `dirty` set): the data path marks changes for them. */
  protected laggingLinks = 0;
  protected readonly s = {
    framesSent: 0,
    opsSent: 0,
    bytesSent: 0,
    framesApplied: 0,
    opsApplied: 0,
    snapshotsSent: 0,
    snapshotsApplied: 0,
    overflows: 0,
    catchUps: 0,
    lagCuts: 0,
    applyRefused: 0,
    lastSyncMs: -1,
    inboundRefused: 0,
    handshakeTimeouts: 0,
    longestSnapshotSliceMs: -1,
    rejected: emptyRejects(),
  };

  constructor(protected readonly options: StateReplicatorOptions) {
    if (!(Number.isInteger(options.id) && options.id >= 0 && options.id <= 0xffff)) throw new RangeError(`replicator id ${options.id} is not a u16`);
    if (options.services.length > 0xffff) throw new RangeError('replicator: more than 65535 services');
    this.id = options.id;
    this.key = createSecretKey(options.key);
    this.clock = options.clock;
    this.maxBufferBytes = options.maxBufferBytes ?? REPLICATION_BUFFER_BYTES;
    this.ackIntervalMs = options.ackIntervalMs ?? ACK_INTERVAL_MS;
    this.flushMs = options.flushMs ?? REPLICATION_FLUSH_MS;
    this.reconnectMs = options.reconnectMs ?? RECONNECT_MS;
    this.refreshIntervalMs = options.refreshIntervalMs ?? REFRESH_INTERVAL_MS;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    this.snapshotSliceEntries = options.snapshotSliceEntries ?? SNAPSHOT_SLICE_ENTRIES;
    this.snapshotSliceMs = options.snapshotSliceMs ?? SNAPSHOT_SLICE_MS;
    this.lagTimeoutMs = options.lagTimeoutMs ?? LAG_TIMEOUT_MS;
    this.epoch = options.epoch ?? (() => 0);
    this.maxInbound = MAX_INBOUND_PER_PEER * Math.max(1, options.peers.length);
    this.index = options.services.map((svc) => serviceIndex(svc));
    this.applier = new ReplicaApplier(this.index, () => this.master, this.s, (link, peer, sessions, flows) => this.synced(link as InLink, peer, sessions, flows), this.peers);
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
      dirty: null,
      lagTimer: null,
    }));
  }


  protected send(link: OutLink, b: Batch, live: boolean): void {
    const seq = ++link.seq;
    // `u32 length ‖ frame ‖ envelope` built and sealed in one buffer: one allocation and one write
    // per frame (a flush's fixed cost is most of replication's cost on the master: issue 17).
    const body = FRAME_HEADER_BYTES + b.bytes.length;
    const record = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + body + ENVELOPE_OVERHEAD_BYTES);
    record.writeUInt32BE(body + ENVELOPE_OVERHEAD_BYTES, 0);
    encodeFrameAt(record, LENGTH_PREFIX_BYTES, { sender: this.id, seq, nonce: link.nonce!, epoch: this.epoch() }, b.count, b.bytes);
    sealAt(MessageType.Replication, record, LENGTH_PREFIX_BYTES, body, this.key);
    link.socket!.write(record);
    this.s.framesSent++;
    this.s.opsSent += b.count;
    this.s.bytesSent += record.length;
    if (live) {
      link.sentBytes += record.length;
      link.unacked.push({ seq, end: link.sentBytes, at: this.clock.now() });
    }
  }

  // --- Outgoing connections --------------------------------------------------------------------------

  protected dial(link: OutLink): void {
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
    this.unlag(link);
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
      this.unlag(link);
      if (!this.closed) link.redial = this.clock.setTimeout(() => this.dial(link), this.reconnectMs);
    });
  }

  /** Ends an outgoing connection now; its close handler redials. */
  protected cut(link: OutLink): void {
    const socket = link.socket;
    if (socket === null) return;
    socket.destroy();
  }

  protected outData(link: OutLink, socket: net.Socket, data: Buffer): void {
    if (link.socket !== socket) return;
    const frames = link.reader.push(data);
    if (frames === 'too-large') return this.reject(link.to, 'malformed', () => this.cut(link));
    for (const msg of frames) {
      const body = this.openFrame(msg, link.to);
      if (body === null) return this.cut(link);
      const frame = decodeFrame(body)!;
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
      const acked = link.ackedBytes;
      for (const op of frame.ops) {
        if (op.op !== Op.Ack) return this.reject(link.to, 'malformed', () => this.cut(link));
        while (link.unacked.length > 0 && ((op.seq - link.unacked[0]!.seq) | 0) >= 0) link.ackedBytes = link.unacked.shift()!.end;
      }
      if (link.dirty !== null && link.ackedBytes !== acked) {
        if (link.ackedBytes === link.sentBytes) this.catchUp(link);
        else this.armLagTimer(link);
      }
    }
  }

  // --- A peer over the cap: paused, its changes marked, then a catch-up -----------------------------

  /** The peer passed the cap: nothing more is written to it; the data path marks what changes. */
  protected lag(link: OutLink): void {
    this.s.overflows++;
    link.dirty = new DirtySet(this.index.length);
    this.laggingLinks++;
    this.armLagTimer(link);
  }

  protected armLagTimer(link: OutLink): void {
    link.lagTimer?.cancel();
    link.lagTimer = this.clock.setTimeout(() => {
      link.lagTimer = null;
      this.s.lagCuts++;
      this.cut(link);
    }, this.lagTimeoutMs);
  }

  /** Forgets a link's pause (its connection ended, or its catch-up starts). */
  protected unlag(link: OutLink): DirtySet | null {
    link.lagTimer?.cancel();
    link.lagTimer = null;
    const d = link.dirty;
    if (d === null) return null;
    link.dirty = null;
    this.laggingLinks--;
    return d;
  }

  /**
   * The paused peer has acknowledged everything written to it: the current state of what changed
   * meanwhile goes out in slices (like the snapshot, not counted against the cap), and the live
   * stream resumes at once — a change to an entry not yet caught up goes live first and is sent
   * again by the catch-up in its current state, which the peer applies idempotently.
   */
  protected catchUp(link: OutLink): void {
    const dirty = this.unlag(link)!;
    this.s.catchUps++;
    const writer = new CatchUpWriter(this.index, dirty);
    const socket = link.socket!;
    const slice = (): void => {
      if (link.socket !== socket || socket.destroyed || this.closed) return;
      const batches = writer.next(this.snapshotSliceEntries);
      socket.cork();
      for (const b of batches) this.send(link, b, false);
      socket.uncork();
      if (writer.done) return;
      if (socket.writableLength > SNAPSHOT_HIGH_WATER_BYTES) socket.once('drain', () => this.clock.immediate(slice));
      else this.clock.immediate(slice);
    };
    slice();
  }

  /** Marks a change for every paused peer (call only while laggingLinks > 0). */
  protected markDirty(mark: (d: DirtySet) => void): void {
    for (const link of this.outLinks) if (link.dirty !== null) mark(link.dirty);
  }

  /**
   * Sends the snapshot in slices, one per event-loop turn (the master's loop is never held for the
   * whole table): a slice writes steps of snapshotSliceEntries sessions and flows until
   * snapshotSliceMs have passed, each frame written to the socket as soon as it is full (the peer
   * applies it while the next is encoded), and pauses while more than SNAPSHOT_HIGH_WATER_BYTES wait
   * in the socket (a slow peer never makes the snapshot pile up in memory). The link streams from the
   * snapshot's start: changes made between slices are flushed to it between them (see
   * SnapshotWriter); snapshot frames do not count against maxBufferBytes.
   */
  protected sendSnapshot(link: OutLink): void {
    // Demoted: an empty snapshot — peers drop what we streamed before.
    const snapshot = new SnapshotWriter(this.index, this.demoted);
    const socket = link.socket!;
    // Ops pending since the last flush are in the snapshot or follow it; sent again, they apply idempotently.
    link.streaming = true;
    this.streamingLinks++;
    this.s.snapshotsSent++;
    const emit = (b: Batch): void => this.send(link, b, false);
    const slice = (): void => {
      if (link.socket !== socket || socket.destroyed || this.closed) return;
      const start = this.clock.now();
      do snapshot.write(this.snapshotSliceEntries, emit, false);
      while (!snapshot.done && this.clock.now() - start < this.snapshotSliceMs && socket.writableLength <= SNAPSHOT_HIGH_WATER_BYTES);
      // The frame begun goes now: a live change flushed before the next slice must follow what it changes.
      snapshot.flush(emit);
      this.s.longestSnapshotSliceMs = Math.max(this.s.longestSnapshotSliceMs, this.clock.now() - start);
      if (snapshot.done) return;
      if (socket.writableLength > SNAPSHOT_HIGH_WATER_BYTES) socket.once('drain', () => this.clock.immediate(slice));
      else this.clock.immediate(slice);
    };
    slice();
  }

  // --- Incoming connections: apply -----------------------------------------------------------------

  protected accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const peerHosts = (this.peerHosts ??= new Set(this.options.peers.map((p) => unmapped(p.host))));
    const fromPeerHost = peerHosts.has(unmapped(socket.remoteAddress ?? ''));
    let authenticated = 0;
    let pendingSamePool = 0;
    for (const l of this.inLinks) {
      if (l.peer !== null) authenticated++;
      else if (peerHosts.has(unmapped(l.socket.remoteAddress ?? '')) === fromPeerHost) pendingSamePool++;
    }
    if (pendingSamePool >= this.maxInbound || authenticated >= this.maxInbound) {
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
      lastFrameAt: this.clock.now(),
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

  protected reply(link: InLink, w: OpWriter): void {
    if (link.socket.destroyed) return;
    const msg = seal(MessageType.Replication, encodeFrame({ sender: this.id, seq: link.outSeq++, nonce: link.nonce, epoch: this.epoch() }, w.count, w.bytes()), this.key);
    const prefix = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES);
    prefix.writeUInt32BE(msg.length, 0);
    link.socket.cork();
    link.socket.write(prefix);
    link.socket.write(msg);
    link.socket.uncork();
  }

  protected inData(link: InLink, data: Buffer): void {
    if (link.socket.destroyed) return;
    const from = `${link.socket.remoteAddress ?? '?'}:${link.socket.remotePort ?? 0}`;
    const frames = link.reader.push(data);
    const drop = (): void => {
      link.socket.destroy();
    };
    if (frames === 'too-large') return this.reject(from, 'malformed', drop);
    for (const msg of frames) {
      const body = this.openFrame(msg, from);
      if (body === null) return drop();
      const frame = decodeFrameHeader(body)!;
      if (!frame.nonce.equals(link.nonce) || frame.seq !== link.seq) return this.reject(from, 'replay', drop);
      if (frame.sender === this.id || (link.peer !== null && frame.sender !== link.peer.id)) return this.reject(from, 'unknown-host', drop);
      // A sender behind the newest election epoch known here is a deposed master (or a node that has
      // not heard of its successor yet): nothing it says is applied; it redials and is asked again.
      if (frame.epoch < this.epoch()) return this.reject(from, 'stale', drop);
      link.seq++;
      if (link.peer === null) {
        let peer = this.peers.get(frame.sender);
        if (peer === undefined) {
          peer = newPeer(frame.sender);
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
        this.applier.begin(link, link.peer, this.clock.now());
        visitFrame(body, this.applier, true);
      } finally {
        this.applying = false;
      }
      this.s.framesApplied++;
      this.s.opsApplied += frame.count;
      link.applied = frame.seq;
      link.lastFrameAt = this.clock.now();
      link.ackTimer ??= this.clock.setTimeout(() => this.ack(link), this.ackIntervalMs);
    }
  }

  protected ack(link: InLink): void {
    link.ackTimer?.cancel();
    link.ackTimer = null;
    const w = new OpWriter(16);
    w.ack(link.applied);
    this.reply(link, w);
  }

  protected synced(link: InLink, peer: PeerState, sessions: number, flows: number): void {
    const ms = this.clock.now() - link.acceptedAt;
    this.s.snapshotsApplied++;
    this.s.lastSyncMs = ms;
    // The sender's buffer is released as soon as the snapshot is in.
    this.clock.immediate(() => this.ack(link));
    const e: SyncedEvent = { peer: peer.id, sessions, flows, ms };
    for (const l of this.syncListeners.slice()) if (l.peer === null || l.peer === peer.id) l.fn(e);
  }

  // --- Frames ---------------------------------------------------------------------------------------

  /** The authenticated body of a replication frame that decodes (checkFrame), or null (rejected and counted). */
  protected openFrame(msg: Buffer, from: HostPort | string): Buffer | null {
    const opened = open(msg, this.key);
    if (!opened.ok) {
      this.reject(from, opened.reason);
      return null;
    }
    if (opened.type !== MessageType.Replication) {
      this.reject(from, 'type');
      return null;
    }
    if (!checkFrame(opened.body)) {
      this.reject(from, 'malformed');
      return null;
    }
    return opened.body;
  }

  protected reject(from: HostPort | string, reason: WireReject, then?: () => void): void {
    this.s.rejected[reason]++;
    if (channels.wireDrop.hasSubscribers) {
      const at = typeof from === 'string' ? from : formatHostPort(from);
      channels.wireDrop.publish({ source: 'replication', reason, from: at } satisfies WireDropEvent);
    }
    then?.();
  }
}


/** The lag figures of ReplicatorStats (see there), read from the links at `now`. */
export function lagStats(
  outLinks: readonly OutLink[],
  inLinks: Iterable<InLink>,
  pendingSince: number | null,
  now: number,
): Pick<ReplicatorStats, 'peers' | 'lagMs' | 'inbound'> {
  let lagMs: number | null = null;
  const peers = outLinks.map((link) => {
    let lag: number | null = null;
    if (link.streaming && link.socket !== null) {
      const oldest = link.unacked[0]?.at ?? pendingSince;
      lag = oldest === null ? 0 : Math.max(0, now - oldest);
      lagMs = Math.max(lagMs ?? 0, lag);
    }
    return { to: formatHostPort(link.to), streaming: link.streaming, lagMs: lag, unackedBytes: link.sentBytes - link.ackedBytes };
  });
  const inbound = [...inLinks].map((l) => ({ peer: l.peer?.id ?? null, sinceLastFrameMs: Math.max(0, now - l.lastFrameAt) }));
  return { peers, lagMs, inbound };
}

/** An IPv4 address as Node reports it on a dual-stack socket (`::ffff:127.0.0.1`), without the prefix. */
function unmapped(host: string): string {
  return host.startsWith('::ffff:') ? host.slice(7) : host;
}
