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
 * SNAPSHOT_END, and from then on the live stream. The snapshot goes in slices, one per event-loop
 * turn (SnapshotWriter, replication-batch.ts), and the live stream flows from its first slice: a
 * change made between slices reaches the peer between them, and the peer applies both in order. Every frame carries the nonce and its sequence
 * number (1, 2, 3… per connection): a frame from another connection or out of order is 'replay',
 * one that fails the MAC 'bad-mac', one that does not decode 'malformed'; each is counted
 * (wireDrop, source 'replication') and ends the connection (the dialer redials and resynchronises).
 * Every frame also carries the highest election epoch its sender knows (`epoch` option, fed by the
 * groups' elections): a frame from a sender that knows an older epoch than the receiver is 'stale',
 * counted and refused the same way — once a node has heard of a newer master, a deposed one that has
 * not (a partition) cannot stream into it; it is heard again when it has learnt the epoch.
 * The acceptor acknowledges (ACK seq) at SNAPSHOT_END and then at most every ackIntervalMs.
 *
 * Bounds and the data path: a change only encodes a few bytes into the pending batch (no I/O, no
 * allocation beyond the batch's growth). The batch is framed, sealed (one HMAC) and written (one
 * buffer, one socket write per peer) at the end of the event-loop turn that made the changes (flushMs
 * 0, the default: one setImmediate per turn), or with flushMs > 0 at most every flushMs (on the clock),
 * or at once when it passes REPLICATION_FLUSH_BYTES: all the changes of a turn share one seal and one
 * write, and the backup acknowledges at most every ackIntervalMs, not per frame. With the turn flush a
 * change leaves before any reply that depends on it (the backend's answer comes in a later turn); with
 * a window, a failover within it loses the changes still waiting, as it would lose one in flight. Per peer, the bytes written but not yet acknowledged (the snapshot excepted) are capped at
 * maxBufferBytes: over it (by at most one flush), nothing more is written to that peer — a slow or
 * dead backup never holds the master's memory or time — and each later change marks what it
 * touched (a session handle, a flow slot, a relay port: DirtySet, bounded by the tables) instead;
 * once the peer has acknowledged everything written, the current state of what is marked goes out
 * on the same connection (CatchUpWriter, in slices) and the live stream resumes. So a backup that
 * falls behind — typically while it applies a large snapshot with changes queued behind it — is
 * caught up with what changed, not sent a new snapshot that it would fall behind on again (issue 17).
 * A paused peer that acknowledges nothing for lagTimeoutMs (LAG_TIMEOUT_MS) is cut; its redial
 * brings a snapshot. A received frame is at most
 * MAX_FRAME_BODY_BYTES; applied state is bounded by the local tables (a refused open is counted).
 * Incoming connections are capped at MAX_INBOUND_PER_PEER per configured peer (at least one peer's
 * worth): one over the cap is closed at accept (inboundRefused); one that has not sent a valid
 * authenticated frame within HANDSHAKE_TIMEOUT_MS of its accept is closed (handshakeTimeouts) — an
 * unauthenticated client never holds a connection, a buffer or a timer for long.
 *
 * Echo suppression: state applied from a peer is "foreign" — listed per service, never streamed on
 * (snapshots skip it, changes made while applying are ignored) — until adopt(). Foreign flows are
 * kept alive locally (touched every refreshIntervalMs) because their traffic goes to the owner: they
 * end when the owner says so, or when the owner's next snapshot no longer has them. Foreign sessions
 * end the same ways, or idle on their own (issue 17): the owner sends no close for an idle timeout;
 * it re-sends the open of each own session touched since it was last sent (a keep-alive pass every
 * timeout / SESSION_KEEPALIVE_PASSES), and the receiver counts a replica as seen half a timeout past
 * each open it applies (replication-apply.ts REPLICA_IDLE_GRACE), so it outlives the owner's copy.
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
import net from 'node:net';
import type { HostPort } from '../core/address.js';
import { formatHostPort } from '../core/address.js';
import { ListenError } from '../core/errors.js';
import type { SessionChange } from '../sessions/session-router.js';
import { NO_SESSION, sessionSlot, type SessionHandle } from '../sessions/session-table.js';
import type { TimerHandle } from '../core/clock.js';
import type { RelayPortState } from '../media/index.js';
import { open, seal } from '../wire/envelope.js';
import { SESSION_KEEPALIVE_PASSES, type ReplicatedService, type ServiceIndex } from './replication-apply.js';
import { encodeFlow, encodeRelay, fitKey, fits, wireAddress } from './replication-batch.js';

import { HANDSHAKE_TIMEOUT_MS, lagStats, MAX_INBOUND_PER_PEER, REPLICATION_BUFFER_BYTES, REPLICATION_FLUSH_BYTES, REPLICATION_FLUSH_MS, ReplicationLinks } from './replication-transport.js';
import type { ReplicatorStats, StateReplicator, StateReplicatorOptions, SyncedEvent } from './replication-transport.js';

export type { ReplicatedRelay, ReplicatedService } from './replication-apply.js';
export {
  REPLICATION_BUFFER_BYTES,
  LAG_TIMEOUT_MS,
  REPLICATION_FLUSH_MS,
  REPLICATION_FLUSH_BYTES,
  ACK_INTERVAL_MS,
  RECONNECT_MS,
  REFRESH_INTERVAL_MS,
  HANDSHAKE_TIMEOUT_MS,
  MAX_INBOUND_PER_PEER,
  type StateReplicatorOptions,
  type SyncedEvent,
  type ReplicatorStats,
  type StateReplicator,
} from './replication-transport.js';

/** Own sessions a keep-alive pass visits per event-loop turn. */
export const KEEPALIVE_SLICE_SESSIONS = 4096;
/** The keep-alive pass runs at most this often, whatever the session timeout. */
export const KEEPALIVE_MIN_INTERVAL_MS = 10;

export function createStateReplicator(options: StateReplicatorOptions): StateReplicator {
  return new Replicator(options);
}

class Replicator extends ReplicationLinks implements StateReplicator {
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
    this.refreshTimer = this.clock.setInterval(() => this.applier.refresh(this.clock.now()), this.refreshIntervalMs);
    this.startKeepAlive();
    for (const link of this.outLinks) this.dial(link);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const u of this.unsubscribes) u();
    this.refreshTimer?.cancel();
    this.keepAliveTimer?.cancel();
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
      peer.services.forEach((ps, service) => {
        if (ps === undefined) return;
        const foreign = this.index[service]?.foreign;
        if (foreign === undefined) return;
        for (const [sid, ports] of ps.relays) {
          const local = ps.localOf(sid);
          if (local === NO_SESSION || foreign.sessionOwner(local) !== peer.tag) continue;
          for (const r of ports.values()) {
            restore[service]!.push({
              session: local,
              port: r.port,
              clientHost: r.clientHost,
              clientPort: r.clientPort,
              backendHost: r.backendHost,
              backendPort: r.backendPort,
            });
          }
        }
      });
    }
    this.index.forEach((ix, service) => {
      if (restore[service]!.length > 0) ix.svc.relay?.restore(restore[service]!);
    });
    for (const ix of this.index) ix.foreign.clear();
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
    this.pendingSince = null;
    for (const link of this.outLinks) if (link.socket !== null) this.cut(link);
  }

  stats(): ReplicatorStats {
    let foreignSessions = 0;
    let foreignFlows = 0;
    for (const ix of this.index) {
      foreignSessions += ix.foreign.sessions;
      foreignFlows += ix.foreign.flows;
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
      catchUps: this.s.catchUps,
      lagCuts: this.s.lagCuts,
      rejected: { ...this.s.rejected },
      applyRefused: this.s.applyRefused,
      foreignSessions,
      foreignFlows,
      lastSyncMs: this.s.lastSyncMs,
      inboundRefused: this.s.inboundRefused,
      handshakeTimeouts: this.s.handshakeTimeouts,
      longestSnapshotSliceMs: this.s.longestSnapshotSliceMs,
      ...lagStats(this.outLinks, this.inLinks, this.pendingSince, this.clock.now()),
    };
  }

  // --- The data path: local changes → pending batch ------------------------------------------------

  protected listen(ix: ServiceIndex, service: number): void {
    const { sessions, flows } = ix.svc;
    this.unsubscribes.push(
      sessions.onChange((c) => this.sessionChanged(ix, service, c)),
      sessions.table.onData((h, data) => {
        if (this.applying || this.demoted || this.streamingLinks === 0 || ix.foreign.isSession(h) || !fits(data)) return;
        this.pending.room().sessionData(service, h, data);
        if (this.laggingLinks > 0) this.markDirty((d) => d.session(service, h));
        this.scheduleFlush();
      }),
      flows.onInsert((h) => {
        if (this.applying || this.demoted || this.streamingLinks === 0 || ix.foreign.isFlow(h)) return;
        encodeFlow(this.pending.room(), ix.svc.flows, service, h);
        if (this.laggingLinks > 0) this.markDirty((d) => d.flowInserted(service, h));
        this.scheduleFlush();
      }),
      flows.onRemove((h) => {
        if (this.applying) return;
        if (ix.foreign.isFlow(h)) {
          // A replica left the table locally (not by its owner): forget it, tell no one.
          ix.foreign.unmarkFlow(h);
          return;
        }
        if (this.demoted || this.streamingLinks === 0) return;
        const tuple = {
          src: wireAddress(flows.srcIp(h)),
          srcPort: flows.srcPort(h),
          dst: wireAddress(flows.dstIp(h)),
          dstPort: flows.dstPort(h),
          proto: flows.proto(h),
        };
        this.pending.room().flowRemove(service, tuple);
        if (this.laggingLinks > 0) this.markDirty((d) => d.flowRemoved(service, h, tuple));
        this.scheduleFlush();
      }),
    );
    const relay = ix.svc.relay;
    if (relay === undefined) return;
    this.unsubscribes.push(
      relay.onChange((c) => {
        if (this.applying || this.demoted || this.streamingLinks === 0) return;
        const session = c.type === 'update' ? c.state.session : c.session;
        if (ix.foreign.isSession(session)) return;
        if (c.type === 'update') encodeRelay(this.pending.room(), service, c.state);
        else this.pending.room().relayClose(service, session, c.port);
        if (this.laggingLinks > 0) {
          const port = c.type === 'update' ? c.state.port : c.port;
          this.markDirty((d) => d.relay(service, port, session));
        }
        this.scheduleFlush();
      }),
    );
  }

  protected sessionChanged(ix: ServiceIndex, service: number, c: SessionChange): void {
    if (this.applying) return;
    const owner = ix.foreign.sessionOwner(c.session);
    if (owner !== 0) {
      if (c.type === 'close') {
        // A replica ended locally (timeout, removed): forget it, tell no one.
        this.peers.get(owner - 1)?.services[service]?.forget(ix.foreign.sid(c.session));
        ix.foreign.unmarkSession(c.session);
      }
      return;
    }
    if (this.demoted || this.streamingLinks === 0) return;
    if (this.laggingLinks > 0) {
      if (c.type === 'close') this.markDirty((d) => d.sessionClosed(service, c.session, c.reason));
      else this.markDirty((d) => d.session(service, c.session));
    }
    // An idle timeout is not sent: the peers expire their replica on the same timeout (replication-
    // apply.ts REPLICA_IDLE_GRACE), so a session that ends idle costs its open alone.
    if (c.type === 'close' && c.reason === 'timeout') return;
    const w = this.pending.room();
    switch (c.type) {
      case 'open':
        w.sessionOpen(service, c.session, c.backend.index, fitKey(c.key));
        this.markSent(service, c.session);
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

  // --- Keep-alive of replicas: re-sent opens of the sessions touched since they were last sent ----

  /** Per service, by session slot: clock time its open was last written to the batch. */
  private sentAt: Float64Array[] = [];
  private keepAliveTimer: TimerHandle | null = null;
  private keepAliveRunning = false;

  /** `at`: the session's traffic up to then is on its way to the peers (now; or a replica's lastSeen ahead of now after adopt()). */
  private markSent(service: number, h: SessionHandle, at: number = this.clock.now()): void {
    const slot = sessionSlot(h);
    let a = this.sentAt[service] ?? new Float64Array(0);
    if (slot >= a.length) {
      const b = new Float64Array(Math.max(1024, 2 ** Math.ceil(Math.log2(slot + 1))));
      b.set(a);
      a = this.sentAt[service] = b;
    }
    a[slot] = at;
  }

  /** Every T / SESSION_KEEPALIVE_PASSES (the smallest session timeout of the services). */
  protected startKeepAlive(): void {
    const timeouts = this.index.map((ix) => ix.svc.sessions.table.timeoutMs);
    if (timeouts.length === 0) return;
    const every = Math.max(KEEPALIVE_MIN_INTERVAL_MS, Math.floor(Math.min(...timeouts) / SESSION_KEEPALIVE_PASSES));
    this.keepAliveTimer = this.clock.setInterval(() => this.keepAlivePass(), every);
  }

  /**
   * One pass over every service's own open sessions, KEEPALIVE_SLICE_SESSIONS per event-loop turn:
   * a session touched since its open was last sent gets SESSION_OPEN again (same sid, pin and key),
   * which the peers apply as "seen now" (replication-apply.ts). A session opened and never used
   * again — most HTTP sessions — costs nothing here.
   */
  protected keepAlivePass(): void {
    if (this.keepAliveRunning || this.closed || this.demoted || this.streamingLinks === 0) return;
    this.keepAliveRunning = true;
    let service = 0;
    let from = 0;
    const slice = (): void => {
      if (this.closed || this.demoted || this.streamingLinks === 0) {
        this.keepAliveRunning = false;
        return;
      }
      const ix = this.index[service]!;
      const table = ix.svc.sessions.table;
      const sent = this.sentAt[service];
      from = table.forEachFrom(from, KEEPALIVE_SLICE_SESSIONS, (h) => {
        if (ix.foreign.isSession(h)) return;
        const slot = sessionSlot(h);
        if (sent !== undefined && slot < sent.length && table.lastSeen(h) <= sent[slot]!) return;
        this.pending.room().sessionOpen(service, h, table.backend(h), fitKey(table.key(h)));
        this.markSent(service, h, Math.max(this.clock.now(), table.lastSeen(h)));
        if (this.laggingLinks > 0) this.markDirty((d) => d.session(service, h));
        this.scheduleFlush();
      });
      if (from < 0) {
        from = 0;
        service++;
      }
      if (service >= this.index.length) {
        this.keepAliveRunning = false;
        return;
      }
      this.clock.immediate(slice);
    };
    slice();
  }

  /** A key too long for the wire is replicated as an anonymous session (its flows still follow it). */
  /**
   * After an op went into the pending batch: flush now when it is large, else within flushMs — or,
   * with flushMs 0, at the end of this event-loop turn (one setImmediate per turn that made changes,
   * however many it made): the frame then leaves in the turn that made its changes, before any
   * reply that the backend has yet to send for them.
   */
  protected scheduleFlush(): void {
    this.pendingSince ??= this.clock.now();
    if (this.pending.bytes >= REPLICATION_FLUSH_BYTES) return this.flush();
    if (this.flushMs === 0) {
      if (this.turnFlushQueued) return;
      this.turnFlushQueued = true;
      this.clock.immediate(this.turnFlush);
      return;
    }
    this.flushTimer ??= this.clock.setTimeout(() => {
      this.flushTimer = null;
      this.flush();
    }, this.flushMs);
  }

  private turnFlushQueued = false;
  private readonly turnFlush = (): void => {
    this.turnFlushQueued = false;
    if (!this.closed) this.flush();
  };

  /** Frames the pending ops once per peer; pauses a peer whose unacknowledged bytes pass the cap. */
  protected flush(): void {
    this.flushTimer?.cancel();
    this.flushTimer = null;
    this.pendingSince = null;
    const n = this.pending.batchCount;
    if (n === 0) return;
    const live = this.outLinks.filter((link) => link.streaming && link.socket !== null && !link.socket.destroyed && link.dirty === null);
    // A paused peer gets these changes from its catch-up (the data path marked them).
    if (live.length === 0) return this.pending.drain(() => {});
    // One batch (the usual flush) is one write; several share one corked writev.
    if (n > 1) for (const link of live) link.socket!.cork();
    this.pending.drain((b) => {
      for (const link of live) this.send(link, b, true);
    });
    for (const link of live) {
      if (n > 1) link.socket!.uncork();
      // Over the cap (by at most this flush): pause the peer rather than cut it — a new snapshot
      // per overflow would never finish for a peer that cannot keep up with a large one.
      if (link.sentBytes - link.ackedBytes > this.maxBufferBytes) this.lag(link);
    }
  }
}
