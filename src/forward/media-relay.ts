/**
 * @module The media relay (issue 6): RTP/RTCP streams announced by SDP (SIP) or by RTSP's Transport
 * header are relayed through UDP port pairs of the dispatcher (RTP on an even port, RTCP on the next
 * odd one, RFC 3550 §11), so that media from the client reaches the backend its session is pinned to
 * and media from the backend comes back — an application-level gateway (seed 004) for the media plane.
 *
 * Relay rule, per socket (one per port, both directions on it): a datagram from the backend's
 * (host, port) goes to the client; any other source is the client side and goes to the backend. The
 * client address latches to the first source seen (symmetric RTP, RFC 4961 §3: NATed clients send
 * from other ports than they announce); after that, datagrams from third parties are dropped. Until
 * the far side of a datagram is known (no backend announced yet, no client announced or latched),
 * the datagram is dropped. Every drop is counted (`stats.droppedPackets`).
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
  /** Where media from the backend is sent (the client's announced address), RTCP at rtcpPort. */
  setClient(host: string, rtpPort: number, rtcpPort?: number): void;
  /** Where media from the client is sent (the backend's announced address). */
  setBackend(host: string, rtpPort: number, rtcpPort?: number): void;
  release(): void;
}

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

  setClient(host: string, rtpPort: number, rtcpPort: number = rtpPort + 1): void {
    if (this.released) return;
    this.relay.announceClient(this, this.rtp, host, rtpPort);
    this.relay.announceClient(this, this.rtcp, host, rtcpPort);
  }

  setBackend(host: string, rtpPort: number, rtcpPort: number = rtpPort + 1): void {
    if (this.released) return;
    this.rtp.backendHost = host;
    this.rtp.backendPort = rtpPort;
    this.rtcp.backendHost = host;
    this.rtcp.backendPort = rtcpPort;
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
  private closed = false;
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
      stream.lastActivity = this.opts.clock.now();
      this.streamCount++;
      this.streamOfPort.set(stream.rtp, stream);
      this.streamOfPort.set(stream.rtcp, stream);
      const list = this.bySession.get(session);
      if (list) list.push(stream);
      else this.bySession.set(session, [stream]);
      stream.rtp.socket!.on('message', (msg, rinfo) => this.onDatagram(stream, stream.rtp, msg, rinfo.address, rinfo.port));
      stream.rtcp.socket!.on('message', (msg, rinfo) => this.onDatagram(stream, stream.rtcp, msg, rinfo.address, rinfo.port));
      return stream;
    }
    return null;
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

  /** @internal Stream.setClient: a new announced client address resets the latch and re-keys the flow. */
  announceClient(stream: Stream, port: RelayPort, host: string, clientPort: number): void {
    if (port.clientHost === host && port.clientPort === clientPort && (port.latched || port.flow !== NO_FLOW)) return;
    port.clientHost = host;
    port.clientPort = clientPort;
    port.latched = false;
    this.trackFlow(stream, port, host, clientPort);
  }

  /** @internal Closes the stream's sockets, removes its flows and frees its pair. */
  releaseStream(stream: Stream): Promise<void> {
    if (stream.released) return Promise.resolve();
    stream.released = true;
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
    if (srcPort === port.backendPort && host === port.backendHost) {
      if (port.clientHost === null) {
        this.dropped++;
        return;
      }
      this.forward(socket, msg, port.clientPort, port.clientHost);
    } else {
      if (!port.latched) {
        port.latched = true;
        if (host !== port.clientHost || srcPort !== port.clientPort) {
          port.clientHost = host;
          port.clientPort = srcPort;
          this.trackFlow(stream, port, host, srcPort);
        }
      } else if (srcPort !== port.clientPort || host !== port.clientHost) {
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

  private givePair(pair: number): void {
    this.freeRing[(this.freeHead + this.freeCount) % this.pairCount] = pair;
    this.freeCount++;
  }
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
