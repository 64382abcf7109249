/**
 * @module The RTSP forwarder's connection layer: client connections (framing, pumping one request at
 * a time while a SETUP waits for its relay pair, backpressure, idle timer, close), their upstream
 * connection to the session's backend (connect, failure report, requests held and sent again), the
 * signalling flow, and the forwarder's lifecycle. The request and reply handling is the layer above
 * (rtsp-forwarder.ts).
 */
import type { Socket } from 'node:net';
import { channels, type ConnectionEvent, type MessageDropEvent } from '../../core/diagnostics.js';
import type { BackendFailureKind } from '../../core/errors.js';
import { parseHostPort } from '../../core/address.js';
import type { Backend } from '../../core/backend.js';
import { addressKey, NO_FLOW, PROTO_TCP, type FlowHandle } from '../../sessions/flow-table.js';
import { NO_SESSION, type SessionHandle } from '../../sessions/session-table.js';
import { buildRtspResponse, RtspStreamFramer, type RtspFrame } from '../../sessions/rtsp-message.js';
import { MediaRelay, type RelayStream } from '../../media/index.js';
import { routerOf, type Forwarder, type Router, type ServiceRuntime } from '../../pipeline/index.js';
import { IdleTimer, LiveSet, noop } from '../lifecycle.js';
import { closeUpstream, openUpstream, type UpstreamLink } from '../upstream-connect.js';

/** Largest message body accepted (SDP of a DESCRIBE, ANNOUNCE, GET_PARAMETER). */
export const RTSP_MAX_BODY_BYTES = 64 * 1024;
/** Requests of one connection awaiting their reply; at the bound the client is not read. */
export const RTSP_MAX_PENDING = 64;


export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** A request forwarded and not answered yet, by CSeq. */
export interface Pending {
  readonly method: string;
  readonly session: SessionHandle;
  /** SETUP: the relay stream allocated for it and the client's own ports. */
  readonly stream: RelayStream | null;
  readonly clientPorts: readonly [number, number] | null;
  /** SETUP naming no session on a connection whose session is named: the table session it opened (else NO_SESSION). */
  readonly opened: SessionHandle;
}

/** A message waiting for its upstream to connect. */
export interface Queued {
  readonly out: Buffer;
  readonly cseq: number;
  readonly session: SessionHandle;
  readonly attempt: number;
}

export interface Upstream extends UpstreamLink {
  readonly framer: RtspStreamFramer;
  queue: Queued[];
  queuedBytes: number;
}

export interface RtspConn {
  readonly socket: Socket;
  readonly framer: RtspStreamFramer;
  readonly remoteHost: string;
  readonly remotePort: number;
  /** The session that routes this connection's requests naming no known session. */
  session: SessionHandle;
  upstream: Upstream | null;
  readonly pending: Map<number, Pending>;
  flow: FlowHandle;
  /** Set once the connection is set up; every client and upstream chunk is activity. */
  idle: IdleTimer | null;
  /** A SETUP is waiting for its relay allocation: later messages wait (order is kept). */
  busy: boolean;
  pumping: boolean;
  pausedForUpstream: boolean;
  done: boolean;
}

/** Client connections and their upstreams; requests and replies are handled by the subclass. */
export abstract class RtspConnections implements Forwarder {
  protected abstract onClientFrame(conn: RtspConn, f: RtspFrame): Promise<void> | null;
  protected abstract onUpstreamFrame(conn: RtspConn, up: Upstream, f: RtspFrame): void;
  protected abstract send(conn: RtspConn, q: Queued): void;

  protected readonly service: string;
  protected readonly listenHost: string;
  protected readonly highWaterMark: number;
  protected readonly relay: MediaRelay | null;
  protected readonly conns: LiveSet<RtspConn>;
  /** RTSP session id → the table session it names, and back. */
  protected readonly byKey = new Map<string, SessionHandle>();
  protected readonly keyOf = new Map<SessionHandle, string>();
  protected readonly unsubscribe: () => void;
  protected readonly router: Router;

  constructor(protected readonly rt: ServiceRuntime) {
    this.router = routerOf(rt);
    // Drained: stop following session changes, and let the relay's ports go.
    this.conns = new LiveSet<RtspConn>(() => {
      this.unsubscribe();
      return this.relay ? this.relay.close() : Promise.resolve();
    });
    const cfg = rt.config;
    this.service = cfg.name;
    this.listenHost = parseHostPort(cfg.listen)?.host ?? '127.0.0.1';
    this.highWaterMark = cfg.http.highWaterMarkBytes;
    const bindHost = this.listenHost;
    this.relay = cfg.media.enabled
      ? new MediaRelay({
          service: cfg.name,
          bindHost,
          advertise: cfg.media.advertise ?? (isWildcard(bindHost) ? '127.0.0.1' : bindHost),
          portMin: cfg.media.portMin,
          portMax: cfg.media.portMax,
          maxDatagramBytes: cfg.udp.maxDatagramBytes,
          flows: rt.flows,
          clock: rt.clock,
          idleTimeoutMs: cfg.sessions.flowTimeoutMs * 2,
        })
      : null;
    this.unsubscribe = this.router.onChange((change) => {
      if (change.type === 'repin') this.relay?.moveSession(change.session, change.to.host);
      else if (change.type === 'close') this.sessionClosed(change.session);
    });
  }


  /** The relay's counters (streams, ports in use, relayed and dropped packets); null when media is off. */
  get mediaStats(): MediaRelay['stats'] | null {
    return this.relay?.stats ?? null;
  }

  handle(socket: Socket): void {
    if (!this.conns.accepts(socket)) return;
    const conn: RtspConn = {
      socket,
      framer: new RtspStreamFramer(this.rt.config.http.maxHeaderBytes, RTSP_MAX_BODY_BYTES),
      remoteHost: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      session: NO_SESSION,
      upstream: null,
      pending: new Map(),
      flow: NO_FLOW,
      idle: null,
      busy: false,
      pumping: false,
      pausedForUpstream: false,
      done: false,
    };
    this.conns.add(conn);
    if (channels.connectionOpen.hasSubscribers) {
      channels.connectionOpen.publish({ service: this.service, protocol: 'rtsp' } satisfies ConnectionEvent);
    }
    socket.setNoDelay(true);
    socket.on('error', noop);
    socket.on('close', () => this.closeConn(conn));
    socket.on('end', () => socket.end());
    socket.on('drain', () => conn.upstream?.socket.resume());
    socket.on('data', (chunk: Buffer) => {
      conn.idle?.touch();
      conn.framer.push(chunk);
      this.pump(conn);
    });
    conn.idle = new IdleTimer(this.rt.clock, this.rt.config.http.idleTimeoutMs, () => socket.destroy());
  }

  /** Takes no new connections; resolves once every connection closed and the relay let go of its ports. */
  close(): Promise<void> {
    return this.conns.close();
  }

  destroy(_err?: Error): void {
    this.conns.destroy((conn) => conn.socket.destroy());
  }

  backendDown(backend: Backend): void {
    // Upstreams to it are dead or dying; the next request of their sessions reconnects where the
    // router re-pinned them.
    for (const conn of this.conns) {
      const up = conn.upstream;
      if (up && up.backend === backend && up.queue.length === 0) this.dropUpstream(conn, up);
    }
  }

  // ------------------------------------------------------------------ client side

  /** Handles the client's frames in order; a SETUP waiting for its relay pair holds the rest. */
  protected pump(conn: RtspConn): void {
    // Re-entered from a reply handled inside the loop: the running loop goes on with the next frame.
    if (conn.pumping) return;
    conn.pumping = true;
    try {
      while (!conn.done && !conn.busy && conn.pending.size < RTSP_MAX_PENDING) {
        const f = conn.framer.next();
        if (!f) break;
        const wait = this.onClientFrame(conn, f);
        if (wait) {
          conn.busy = true;
          void wait.then(() => {
            conn.busy = false;
            this.pump(conn);
          });
        }
      }
    } finally {
      conn.pumping = false;
    }
    if (conn.done) return;
    const hold = conn.busy || conn.pending.size >= RTSP_MAX_PENDING || conn.pausedForUpstream;
    if (hold) conn.socket.pause();
    else conn.socket.resume();
  }

  protected connectUpstream(conn: RtspConn, backend: Backend): Upstream {
    const up = openUpstream(
      this.rt,
      backend,
      (socket): Upstream => {
        const made: Upstream = {
          backend,
          socket,
          framer: new RtspStreamFramer(this.rt.config.http.maxHeaderBytes, RTSP_MAX_BODY_BYTES),
          connected: false,
          closed: false,
          connectTimer: null,
          queue: [],
          queuedBytes: 0,
        };
        conn.upstream = made;
        return made;
      },
      {
        failed: (kind) => this.connectFailed(conn, up, kind),
        reset: () => {
          if (this.conns.open && !up.closed) this.router.failed(backend, 'reset');
        },
        connected: () => {
          for (const q of up.queue) up.socket.write(q.out);
          up.queue = [];
          up.queuedBytes = 0;
          this.checkPressure(conn);
        },
        closed: () => {
          if (up.closed) return;
          up.closed = true;
          if (conn.upstream === up) conn.upstream = null;
          // Replies that will never come: the requests may have been acted on, so they are not resent.
          if (conn.pending.size > 0 && this.conns.open) {
            if (backend.state !== 'down') this.router.failed(backend, 'closed');
            for (const cseq of [...conn.pending.keys()]) this.failPending(conn, cseq);
          }
          this.checkPressure(conn);
        },
      },
    );
    up.socket.on('drain', () => this.checkPressure(conn));
    up.socket.on('data', (chunk: Buffer) => {
      conn.idle?.touch();
      up.framer.push(chunk);
      for (let f = up.framer.next(); f && !up.closed && !conn.done; f = up.framer.next()) this.onUpstreamFrame(conn, up, f);
    });
    return up;
  }

  /** The upstream never connected: report the backend (it goes down, its sessions re-pin) and resend. */
  protected connectFailed(conn: RtspConn, up: Upstream, kind: BackendFailureKind): void {
    if (up.closed) return;
    const queue = this.detachUpstream(conn, up);
    if (this.conns.open) this.router.failed(up.backend, kind);
    // Nothing reached the backend: every failure takes a backend down, so this ends within backends + 1 tries.
    for (const q of queue) this.send(conn, { ...q, attempt: q.attempt + 1 });
  }

  /** Closes an upstream on purpose (its backend is down or another one serves the connection now). */
  protected dropUpstream(conn: RtspConn, up: Upstream, keep = -1): void {
    const queue = this.detachUpstream(conn, up);
    // Its requests will get no reply; the one about to go elsewhere (`keep`) is not one of them.
    for (const q of queue) if (q.cseq !== keep) this.failPending(conn, q.cseq);
    for (const cseq of [...conn.pending.keys()]) if (cseq !== keep) this.failPending(conn, cseq);
  }

  /** Closes `up`, unlinks it from `conn`, and hands back the messages it held unsent. */
  protected detachUpstream(conn: RtspConn, up: Upstream): Queued[] {
    closeUpstream(up);
    if (conn.upstream === up) conn.upstream = null;
    const queue = up.queue;
    up.queue = [];
    up.queuedBytes = 0;
    return queue;
  }

  /** A request that will get no reply from a backend: 503 to the client, its relay pair released. */
  protected failPending(conn: RtspConn, cseq: number): void {
    const p = conn.pending.get(cseq);
    if (!p) return;
    conn.pending.delete(cseq);
    p.stream?.release();
    this.closeOpened(p.opened);
    this.answer(conn, buildRtspResponse(503, 'Service Unavailable', { cseq }));
    this.pump(conn);
  }

  // ------------------------------------------------------------------ plumbing

  /**
   * Closes the session a SETUP opened (Pending.opened) once that SETUP failed: unnamed and without
   * streams, nothing else can reach it, and it would hold a table slot until sessionTimeoutMs.
   */
  protected closeOpened(h: SessionHandle): void {
    if (h === NO_SESSION || this.keyOf.has(h) || !this.router.isOpen(h)) return;
    if ((this.relay?.streamsOf(h).length ?? 0) === 0) this.router.close(h, 'ended');
  }

  protected sessionClosed(h: SessionHandle): void {
    this.relay?.releaseSession(h);
    const key = this.keyOf.get(h);
    if (key !== undefined) {
      this.keyOf.delete(h);
      this.byKey.delete(key);
    }
  }

  /** The client's signalling flow <client, service, tcp> (SARA III.A), tied to the connection's session. */
  protected trackFlow(conn: RtspConn): void {
    const flows = this.rt.flows;
    if (conn.flow === NO_FLOW) {
      const local = conn.socket.localAddress ?? this.listenHost;
      conn.flow = flows.insert(addressKey(conn.remoteHost), conn.remotePort, addressKey(local), conn.socket.localPort ?? 0, PROTO_TCP, 'signalling', conn.session);
    } else if (flows.session(conn.flow) !== conn.session) flows.setSession(conn.flow, conn.session);
    if (conn.flow !== NO_FLOW) flows.seen(conn.flow);
  }

  /** Bad input from the client: an error reply, then the connection closes (no resynchronisation point). */
  protected reject(conn: RtspConn, reason: 'malformed' | 'too-large', cseq: number | null): void {
    this.drop(reason);
    const reply = reason === 'too-large' ? buildRtspResponse(413, 'Request Entity Too Large', { cseq }) : buildRtspResponse(400, 'Bad Request', { cseq });
    conn.done = true;
    conn.socket.pause();
    if (conn.socket.writable) conn.socket.end(reply);
    const timer = this.rt.clock.setTimeout(() => conn.socket.destroy(), 1000);
    conn.socket.once('close', () => timer.cancel());
    this.closeConn(conn, false);
  }

  protected drop(reason: string): void {
    if (channels.messageDrop.hasSubscribers) {
      channels.messageDrop.publish({ service: this.service, reason, transport: 'tcp' } satisfies MessageDropEvent);
    }
  }

  protected answer(conn: RtspConn, buf: Buffer): void {
    this.writeClient(conn, buf);
  }

  protected writeClient(conn: RtspConn, buf: Buffer): void {
    if (conn.done || conn.socket.destroyed || !conn.socket.writable) return;
    conn.socket.write(buf);
    if (conn.socket.writableLength > this.highWaterMark) conn.upstream?.socket.pause();
  }

  protected writeUpstream(conn: RtspConn, up: Upstream, buf: Buffer): void {
    if (up.socket.destroyed || !up.socket.writable) return;
    up.socket.write(buf);
    this.checkPressure(conn);
  }

  /** The client is read while its upstream holds less than the high-water mark. */
  protected checkPressure(conn: RtspConn): void {
    if (conn.done) return;
    const up = conn.upstream;
    const over = up !== null && !up.closed && up.queuedBytes + up.socket.writableLength > this.highWaterMark;
    if (over && !conn.pausedForUpstream) {
      conn.pausedForUpstream = true;
      conn.socket.pause();
    } else if (!over && conn.pausedForUpstream) {
      conn.pausedForUpstream = false;
      if (!conn.busy && conn.pending.size < RTSP_MAX_PENDING) conn.socket.resume();
    }
  }

  /**
   * The connection ended: its upstream closes, its unanswered SETUPs free their pairs, and its session
   * ends unless it is a named RTSP session (which outlives connections, RFC 2326 §3.4).
   */
  protected closeConn(conn: RtspConn, destroy = true): void {
    if (!this.conns.has(conn)) return;
    conn.done = true;
    conn.idle?.cancel();
    const up = conn.upstream;
    if (up) {
      closeUpstream(up);
      conn.upstream = null;
    }
    for (const p of conn.pending.values()) {
      p.stream?.release();
      this.closeOpened(p.opened);
    }
    conn.pending.clear();
    if (conn.flow !== NO_FLOW) this.rt.flows.remove(conn.flow);
    conn.flow = NO_FLOW;
    const h = conn.session;
    if (h !== NO_SESSION && !this.keyOf.has(h) && this.router.isOpen(h) && (this.relay?.streamsOf(h).length ?? 0) === 0) {
      this.router.close(h, 'ended');
    }
    if (destroy) conn.socket.destroy();
    this.conns.delete(conn);
    if (channels.connectionClose.hasSubscribers) {
      channels.connectionClose.publish({ service: this.service, protocol: 'rtsp' } satisfies ConnectionEvent);
    }
    this.conns.settle();
  }
}
