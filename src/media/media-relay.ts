/**
 * @module The media relay (issue 6): RTP/RTCP streams announced by SDP (SIP) or by RTSP's Transport
 * header are relayed through UDP port pairs of the dispatcher (RTP on an even port, RTCP on the next
 * odd one, RFC 3550 §11), so that media from the client reaches the backend its session is pinned to
 * and media from the backend comes back — an application-level gateway (seed 004) for the media plane.
 *
 * Relay rule, per socket (one per port, both directions on it): a datagram from the announced
 * backend's host (any port: a media server may send from another port than it announces) goes to the
 * client; a datagram from the announced client's host is the client side and goes to the backend;
 * anything else (another IP) is dropped — a third party that sends first to a predictable relay port
 * never captures the stream. The client's host is the one its SDP announces or, for a client behind
 * NAT whose SDP carries its private address, the host its signalling comes from (setClient's
 * signallingHost). When client and backend share a host, only the backend's announced port is the
 * backend side. The client's address latches to the first datagram from either client host
 * (symmetric RTP, RFC 4961 §3: NATed clients send from other addresses than they announce); after
 * that, other sources are dropped. Until the far side of a datagram is known (no backend announced
 * yet, no client announced), the datagram is dropped. Every drop is counted (`stats.droppedPackets`).
 *
 * Flows (SARA III.A): each stream inserts an announced flow <client ip:port, relay ip:port, udp> for
 * RTP and one for RTCP, tied to its session; a datagram on the socket marks it seen (announced →
 * secondary). When the client latches to another source, the flow is re-keyed to that source. A flow
 * the session layer purges while its stream is idle releases the stream; a flow purged while the
 * stream is busy (RTCP never used) is just forgotten.
 *
 * Bounded: the port range is the bound — at most (portMax - portMin + 1) / 2 streams, two sockets
 * each; allocate() resolves null when no pair is free (the caller refuses the session: SIP 503, RTSP
 * 453). Datagrams above maxDatagramBytes are dropped. A stream with no datagram either way for
 * idleTimeoutMs is released. Socket errors are counted, never thrown.
 *
 * Replication (issue 7): every change of a port's far ends (allocation, announcement, latch, re-pin)
 * and every release is published to onChange() listeners as a RelayPortState; a promoted backup
 * binds the recorded ports again with restore(), so that the RTP of calls in progress goes on.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Clock, TimerHandle } from '../core/clock.js';
import { addressKey, NO_FLOW, pinAddress, PROTO_UDP, type FlowHandle, type FlowTable } from '../sessions/flow-table.js';
import type { SessionHandle } from '../sessions/session-table.js';

/** Port pairs tried by one allocate() when a bind fails (a port held by another process): then null. */
export const BIND_ATTEMPTS_MAX = 16;
/** Idle checks per idle timeout (a stream is released between 1 and 1 + 1/this timeouts after its last datagram). */
const IDLE_CHECKS_PER_TIMEOUT = 4;
/** Receive buffer of a relay socket: a burst of RTP waits in the kernel while the loop is busy. */
export const RELAY_RECV_BUFFER_BYTES = 256 * 1024;

export interface MediaRelayOptions {
  service: string;
  /** Address the relay sockets bind (the service's listen host). */
  bindHost: string;
  /** Address written into rewritten SDP/Transport (media.advertise ?? bindHost). */
  advertise: string;
  portMin: number;
  portMax: number;
  maxDatagramBytes: number;
  /** runtime.flows: announced flows are inserted here (role 'announced' → 'secondary' on first packet). */
  flows: FlowTable;
  clock: Clock;
  /** A stream idle this long (no datagram either way) is released; default sessions.flowTimeoutMs x 2 (purge rule). */
  idleTimeoutMs: number;
  /** Start handing out pairs at a random one (default true), so that relays of several processes on one host rarely try the same ports; false: from portMin. */
  randomStart?: boolean;
}

export interface MediaRelayStats {
  streams: number;
  portsInUse: number;
  portsFree: number;
  relayedPackets: number;
  droppedPackets: number;
}

export interface RelayStream {
  readonly session: SessionHandle;
  /** The relay's RTP port (RTCP = rtpPort + 1), on `advertise`. */
  readonly rtpPort: number;
  /** True once released (session end, idle timeout, relay closed): its ports may serve another stream. */
  readonly released: boolean;
  /**
   * Where media from the backend is sent (the client's announced address), RTCP at rtcpPort, until
   * the client's media latches. `signallingHost`: the source host of the client's signalling, the
   * other host the client's media may come from (a NATed client announces its private address).
   */
  setClient(host: string, rtpPort: number, rtcpPort?: number, signallingHost?: string | null): void;
  /** Where media from the client is sent (the backend's announced address). */
  setBackend(host: string, rtpPort: number, rtcpPort?: number): void;
  release(): void;
}

/** One relay port and its far ends, as replicated (issue 7); null host: not known yet. */
export interface RelayPortState {
  readonly session: SessionHandle;
  readonly port: number;
  readonly clientHost: string | null;
  readonly clientPort: number;
  readonly backendHost: string | null;
  readonly backendPort: number;
}

/** A relay port changed (its state now) or was released. */
export type RelayChange = { readonly type: 'update'; readonly state: RelayPortState } | { readonly type: 'release'; readonly session: SessionHandle; readonly port: number };

/** restore() retries a bind this often while the port is still held (the old master's sockets) or the VIP not yet local. */
export const RESTORE_RETRY_MS = 20;
/** restore() gives a port pair up after this long (counted: restoreFailures). */
export const RESTORE_TIMEOUT_MS = 5000;

/** Every open relay of the process, for the metrics scrape (admin/metrics.ts reads their stats). */
export const liveRelays: ReadonlySet<MediaRelay> = new Set<MediaRelay>();

/** One relay port: its socket and the two far ends as this port knows them. */
class RelayPort {
  socket: dgram.Socket | null = null;
  /** The backend's address for this port; null: not announced yet. */
  backendHost: string | null = null;
  backendPort = 0;
  /** Where datagrams from the backend go: the announced client address, then the latched source. */
  clientHost: string | null = null;
  clientPort = 0;
  /** The client's announced address (clientHost/clientPort until the latch). */
  announcedHost: string | null = null;
  announcedPort = 0;
  /** The client's signalling source host: its media is accepted from there too; null: none. */
  signallingHost: string | null = null;
  latched = false;
  flow: FlowHandle = NO_FLOW;

  constructor(readonly port: number) {}
}

class Stream implements RelayStream {
  released = false;
  lastActivity: number;
  readonly rtp: RelayPort;
  readonly rtcp: RelayPort;

  constructor(
    private readonly relay: MediaRelay,
    readonly session: SessionHandle,
    readonly rtpPort: number,
    now: number,
  ) {
    this.rtp = new RelayPort(rtpPort);
    this.rtcp = new RelayPort(rtpPort + 1);
    this.lastActivity = now;
  }

  setClient(host: string, rtpPort: number, rtcpPort: number = rtpPort + 1, signallingHost: string | null = null): void {
    if (this.released) return;
    this.relay.announceClient(this, this.rtp, host, rtpPort, signallingHost);
    this.relay.announceClient(this, this.rtcp, host, rtcpPort, signallingHost);
  }

  setBackend(host: string, rtpPort: number, rtcpPort: number = rtpPort + 1): void {
    if (this.released) return;
    this.rtp.backendHost = host;
    this.rtp.backendPort = rtpPort;
    this.rtcp.backendHost = host;
    this.rtcp.backendPort = rtcpPort;
    this.relay.changed(this, this.rtp);
    this.relay.changed(this, this.rtcp);
  }

  release(): void {
    this.relay.releaseStream(this);
  }
}

/**
 * The relay of one service. Port pairs are handed out least-recently-released first, so that late
 * datagrams of an ended call rarely reach the next stream of the same port.
 */
export class MediaRelay {
  private readonly firstRtpPort: number;
  private readonly pairCount: number;
  /** Free pair indexes, a FIFO ring. */
  private readonly freeRing: Int32Array;
  private freeHead = 0;
  private freeCount: number;
  private readonly bySession = new Map<SessionHandle, Stream[]>();
  /** Streams by flow handle, to release a stream whose flow the session layer purged. */
  private readonly byFlow = new Map<FlowHandle, RelayPort>();
  private readonly streamOfPort = new Map<RelayPort, Stream>();
  private readonly relayKey: number;
  private streamCount = 0;
  private relayed = 0;
  private dropped = 0;
  private restoreFailed = 0;
  private closed = false;
  private readonly changeListeners: ((c: RelayChange) => void)[] = [];
  private readonly idleTimer: TimerHandle;
  private readonly unsubscribePurge: () => void;

  constructor(private readonly opts: MediaRelayOptions) {
    if (!(Number.isInteger(opts.portMin) && Number.isInteger(opts.portMax) && opts.portMin >= 1 && opts.portMax <= 65535)) {
      throw new RangeError(`media relay: ports must be integers in [1, 65535], received ${opts.portMin}-${opts.portMax}`);
    }
    this.firstRtpPort = opts.portMin % 2 === 0 ? opts.portMin : opts.portMin + 1;
    this.pairCount = Math.max(0, Math.floor((opts.portMax - this.firstRtpPort + 1) / 2));
    this.freeRing = new Int32Array(Math.max(1, this.pairCount));
    const start = this.pairCount > 0 && opts.randomStart !== false ? Math.floor(Math.random() * this.pairCount) : 0;
    for (let i = 0; i < this.pairCount; i++) this.freeRing[i] = (start + i) % this.pairCount;
    this.freeCount = this.pairCount;
    this.relayKey = pinAddress(opts.advertise);
    const every = Math.max(1, Math.floor(opts.idleTimeoutMs / IDLE_CHECKS_PER_TIMEOUT));
    this.idleTimer = opts.clock.setInterval(() => this.releaseIdle(), every);
    this.unsubscribePurge = opts.flows.onPurge((h) => this.flowPurged(h));
    (liveRelays as Set<MediaRelay>).add(this);
  }

  get stats(): MediaRelayStats {
    return {
      streams: this.streamCount,
      portsInUse: 2 * (this.pairCount - this.freeCount),
      portsFree: 2 * this.freeCount,
      relayedPackets: this.relayed,
      droppedPackets: this.dropped,
    };
  }

  /** Streams restore() could not bind within RESTORE_TIMEOUT_MS. */
  get restoreFailures(): number {
    return this.restoreFailed;
  }

  get service(): string {
    return this.opts.service;
  }

  /** The address written into rewritten announcements. */
  get advertise(): string {
    return this.opts.advertise;
  }

  /** The streams of `session`, in allocation order (empty when it has none). */
  streamsOf(session: SessionHandle): readonly RelayStream[] {
    return this.bySession.get(session) ?? [];
  }

  /**
   * Binds one RTP/RTCP port pair for a media stream of `session`; null when the range is exhausted
   * (or BIND_ATTEMPTS_MAX pairs in a row could not be bound, or the relay is closed).
   */
  async allocate(session: SessionHandle): Promise<RelayStream | null> {
    for (let attempt = 0; attempt < BIND_ATTEMPTS_MAX && !this.closed; attempt++) {
      const pair = this.takePair();
      if (pair < 0) return null;
      const rtpPort = this.firstRtpPort + 2 * pair;
      const stream = new Stream(this, session, rtpPort, this.opts.clock.now());
      const ok = (await this.bind(stream.rtp)) && (await this.bind(stream.rtcp));
      if (!ok || this.closed) {
        closeSocket(stream.rtp);
        closeSocket(stream.rtcp);
        // A port held by another process goes to the back of the queue.
        this.givePair(pair);
        continue;
      }
      this.open(stream);
      return stream;
    }
    return null;
  }

  /**
   * Binds the pair of `rtp.port` again for `session` with the far ends a peer replicated (issue 7:
   * this dispatcher took over). A port still held (the old master's socket not yet closed, the VIP
   * not yet local) is retried every RESTORE_RETRY_MS up to RESTORE_TIMEOUT_MS; then null (counted).
   */
  async restore(session: SessionHandle, rtp: RelayPortState, rtcp: RelayPortState | null): Promise<RelayStream | null> {
    const pair = (rtp.port - this.firstRtpPort) / 2;
    if (this.closed || !Number.isInteger(pair) || pair < 0 || pair >= this.pairCount || !this.claimPair(pair)) return null;
    const stream = new Stream(this, session, rtp.port, this.opts.clock.now());
    const until = this.opts.clock.now() + RESTORE_TIMEOUT_MS;
    for (;;) {
      if (stream.rtp.socket === null) await this.bind(stream.rtp);
      if (stream.rtp.socket !== null && stream.rtcp.socket === null) await this.bind(stream.rtcp);
      if (this.closed || (stream.rtcp.socket !== null && stream.rtp.socket !== null) || this.opts.clock.now() >= until) break;
      await new Promise<void>((resolve) => this.opts.clock.setTimeout(resolve, RESTORE_RETRY_MS));
    }
    if (this.closed || stream.rtp.socket === null || stream.rtcp.socket === null) {
      closeSocket(stream.rtp);
      closeSocket(stream.rtcp);
      this.givePair(pair);
      if (!this.closed) this.restoreFailed++;
      return null;
    }
    this.open(stream);
    for (const [port, st] of [[stream.rtp, rtp], [stream.rtcp, rtcp]] as const) {
      if (st === null) continue;
      port.backendHost = st.backendHost;
      port.backendPort = st.backendPort;
      if (st.clientHost !== null) this.announceClient(stream, port, st.clientHost, st.clientPort);
      this.changed(stream, port);
    }
    return stream;
  }

  /** `fn` runs on every change of a relay port's far ends and on every release. Returns an unsubscribe. */
  onChange(fn: (c: RelayChange) => void): () => void {
    this.changeListeners.push(fn);
    return () => {
      const i = this.changeListeners.indexOf(fn);
      if (i >= 0) this.changeListeners.splice(i, 1);
    };
  }

  /** Every bound relay port's state (a replication snapshot). */
  forEachPort(fn: (s: RelayPortState) => void): void {
    for (const list of this.bySession.values()) for (const stream of list) for (const port of [stream.rtp, stream.rtcp]) fn(portState(stream, port));
  }

  /** @internal A port's far ends changed: tells the listeners. */
  changed(stream: Stream, port: RelayPort): void {
    if (this.changeListeners.length === 0 || stream.released) return;
    const c: RelayChange = { type: 'update', state: portState(stream, port) };
    for (const fn of this.changeListeners.slice()) fn(c);
  }

  private open(stream: Stream): void {
    stream.lastActivity = this.opts.clock.now();
    this.streamCount++;
    this.streamOfPort.set(stream.rtp, stream);
    this.streamOfPort.set(stream.rtcp, stream);
    const list = this.bySession.get(stream.session);
    if (list) list.push(stream);
    else this.bySession.set(stream.session, [stream]);
    stream.rtp.socket!.on('message', (msg, rinfo) => this.onDatagram(stream, stream.rtp, msg, rinfo.address, rinfo.port));
    stream.rtcp.socket!.on('message', (msg, rinfo) => this.onDatagram(stream, stream.rtcp, msg, rinfo.address, rinfo.port));
    this.changed(stream, stream.rtp);
    this.changed(stream, stream.rtcp);
  }

  /** Releases every stream of the session (session ended: BYE/CANCEL/final failure/TEARDOWN/timeout). */
  releaseSession(session: SessionHandle): void {
    const list = this.bySession.get(session);
    if (!list) return;
    for (const stream of list.slice()) this.releaseStream(stream);
  }

  /** The session's backend changed (re-pin): media towards the backend goes to `host` from now on (ports kept). */
  moveSession(session: SessionHandle, host: string): void {
    const list = this.bySession.get(session);
    if (!list) return;
    for (const stream of list) {
      if (stream.rtp.backendHost !== null) stream.rtp.backendHost = host;
      if (stream.rtcp.backendHost !== null) stream.rtcp.backendHost = host;
      this.changed(stream, stream.rtp);
      this.changed(stream, stream.rtcp);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    (liveRelays as Set<MediaRelay>).delete(this);
    this.idleTimer.cancel();
    this.unsubscribePurge();
    const all = [...this.bySession.values()].flat();
    await Promise.all(all.map((s) => this.releaseStream(s)));
  }

  /**
   * @internal Stream.setClient: a new announced client address resets the latch and re-keys the
   * flow; the same one again (a re-INVITE) keeps the latch.
   */
  announceClient(stream: Stream, port: RelayPort, host: string, clientPort: number, signallingHost: string | null = null): void {
    const sameSignalling = signallingHost === null || signallingHost === port.signallingHost;
    if (port.announcedHost === host && port.announcedPort === clientPort && sameSignalling && (port.latched || port.flow !== NO_FLOW)) return;
    port.announcedHost = host;
    port.announcedPort = clientPort;
    if (signallingHost !== null) port.signallingHost = signallingHost;
    port.clientHost = host;
    port.clientPort = clientPort;
    port.latched = false;
    this.trackFlow(stream, port, host, clientPort);
    this.changed(stream, port);
  }

  /** @internal Closes the stream's sockets, removes its flows and frees its pair. */
  releaseStream(stream: Stream): Promise<void> {
    if (stream.released) return Promise.resolve();
    stream.released = true;
    if (this.changeListeners.length > 0) {
      for (const port of [stream.rtp.port, stream.rtcp.port]) {
        const c: RelayChange = { type: 'release', session: stream.session, port };
        for (const fn of this.changeListeners.slice()) fn(c);
      }
    }
    this.untrackFlow(stream, stream.rtp);
    this.untrackFlow(stream, stream.rtcp);
    this.streamOfPort.delete(stream.rtp);
    this.streamOfPort.delete(stream.rtcp);
    const list = this.bySession.get(stream.session);
    if (list) {
      const i = list.indexOf(stream);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.bySession.delete(stream.session);
    }
    this.streamCount--;
    const done = Promise.all([closeSocket(stream.rtp), closeSocket(stream.rtcp)]).then(() => undefined);
    this.givePair((stream.rtpPort - this.firstRtpPort) / 2);
    return done;
  }

  private onDatagram(stream: Stream, port: RelayPort, msg: Buffer, host: string, srcPort: number): void {
    if (stream.released) return;
    if (msg.length > this.opts.maxDatagramBytes) {
      this.dropped++;
      return;
    }
    const socket = port.socket;
    if (socket === null) return;
    const clientSide = host === port.clientHost || (!port.latched && host === port.signallingHost);
    const fromBackend = port.backendHost !== null && host === port.backendHost && (srcPort === port.backendPort || !clientSide);
    if (fromBackend) {
      if (port.clientHost === null) {
        this.dropped++;
        return;
      }
      this.forward(socket, msg, port.clientPort, port.clientHost);
    } else {
      if (port.clientHost === null || !clientSide) {
        this.dropped++;
        return;
      }
      if (!port.latched) {
        port.latched = true;
        if (srcPort !== port.clientPort || host !== port.clientHost) {
          port.clientHost = host;
          port.clientPort = srcPort;
          this.trackFlow(stream, port, host, srcPort);
          this.changed(stream, port);
        }
      } else if (srcPort !== port.clientPort) {
        this.dropped++;
        return;
      }
      if (port.backendHost === null) {
        this.dropped++;
        this.seen(stream, port);
        return;
      }
      this.forward(socket, msg, port.backendPort, port.backendHost);
    }
    this.seen(stream, port);
  }

  private forward(socket: dgram.Socket, msg: Buffer, port: number, host: string): void {
    try {
      socket.send(msg, port, host);
      this.relayed++;
    } catch {
      this.dropped++;
    }
  }

  private seen(stream: Stream, port: RelayPort): void {
    stream.lastActivity = this.opts.clock.now();
    if (port.flow !== NO_FLOW && this.ownsFlow(stream, port)) this.opts.flows.seen(port.flow);
  }

  /** Whether port.flow still names this port's flow (the session layer may have removed it). */
  private ownsFlow(stream: Stream, port: RelayPort): boolean {
    const flows = this.opts.flows;
    return flows.has(port.flow) && flows.session(port.flow) === stream.session && flows.dstPort(port.flow) === port.port && flows.dstIp(port.flow) === this.relayKey >>> 0;
  }

  private trackFlow(stream: Stream, port: RelayPort, host: string, clientPort: number): void {
    this.untrackFlow(stream, port);
    const h = this.opts.flows.insert(addressKey(host), clientPort, this.relayKey, port.port, PROTO_UDP, 'announced', stream.session, this.opts.idleTimeoutMs / 2);
    // A full flow table: the stream is relayed but not tracked (the port range bounds it anyway).
    if (h === NO_FLOW) return;
    port.flow = h;
    this.byFlow.set(h, port);
  }

  private untrackFlow(stream: Stream, port: RelayPort): void {
    if (port.flow === NO_FLOW) return;
    if (this.byFlow.get(port.flow) === port) this.byFlow.delete(port.flow);
    if (this.ownsFlow(stream, port)) this.opts.flows.remove(port.flow);
    port.flow = NO_FLOW;
  }

  /** The session layer purges a flow (idle 2 x its timeout): an idle stream goes with it. */
  private flowPurged(h: FlowHandle): void {
    const port = this.byFlow.get(h);
    if (!port) return;
    const stream = this.streamOfPort.get(port);
    this.byFlow.delete(h);
    port.flow = NO_FLOW;
    if (stream && this.opts.clock.now() - stream.lastActivity >= this.opts.idleTimeoutMs) void this.releaseStream(stream);
  }

  private releaseIdle(): void {
    if (this.streamCount === 0) return;
    const now = this.opts.clock.now();
    for (const list of [...this.bySession.values()]) {
      for (const stream of list.slice()) if (now - stream.lastActivity >= this.opts.idleTimeoutMs) void this.releaseStream(stream);
    }
  }

  private bind(port: RelayPort): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = dgram.createSocket({ type: isIPv6(this.opts.bindHost) ? 'udp6' : 'udp4', recvBufferSize: RELAY_RECV_BUFFER_BYTES });
      const failed = () => {
        socket.removeAllListeners('listening');
        try {
          socket.close();
        } catch {
          // already closed
        }
        resolve(false);
      };
      socket.once('error', failed);
      socket.once('listening', () => {
        socket.off('error', failed);
        // After the bind, a socket error (ICMP-induced, send failure) is counted, never thrown.
        socket.on('error', () => {
          this.dropped++;
        });
        port.socket = socket;
        resolve(true);
      });
      try {
        socket.bind({ port: port.port, address: this.opts.bindHost, exclusive: true });
      } catch {
        failed();
      }
    });
  }

  private takePair(): number {
    if (this.freeCount === 0) return -1;
    const pair = this.freeRing[this.freeHead]!;
    this.freeHead = (this.freeHead + 1) % this.pairCount;
    this.freeCount--;
    return pair;
  }

  /** Takes `pair` out of the free ring; false when it is not free. */
  private claimPair(pair: number): boolean {
    for (let i = 0; i < this.freeCount; i++) {
      const at = (this.freeHead + i) % this.pairCount;
      if (this.freeRing[at] !== pair) continue;
      // Close the gap: the pairs before it move one step towards the tail.
      for (let j = i; j > 0; j--) this.freeRing[(this.freeHead + j) % this.pairCount] = this.freeRing[(this.freeHead + j - 1) % this.pairCount]!;
      this.freeHead = (this.freeHead + 1) % this.pairCount;
      this.freeCount--;
      return true;
    }
    return false;
  }

  private givePair(pair: number): void {
    this.freeRing[(this.freeHead + this.freeCount) % this.pairCount] = pair;
    this.freeCount++;
  }
}

function portState(stream: Stream, port: RelayPort): RelayPortState {
  return {
    session: stream.session,
    port: port.port,
    clientHost: port.clientHost,
    clientPort: port.clientPort,
    backendHost: port.backendHost,
    backendPort: port.backendPort,
  };
}

function closeSocket(port: RelayPort): Promise<void> {
  const socket = port.socket;
  port.socket = null;
  if (socket === null) return Promise.resolve();
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve();
    }
  });
}
