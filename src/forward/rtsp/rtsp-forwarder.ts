/**
 * @module The RTSP forwarder (issue 6; RFC 2326 over TCP; SARA III.A's RTSP example): each client
 * connection is relayed to the backend its session is pinned to, over one upstream TCP connection;
 * SETUP's Transport header announces the RTP/RTCP flows, which are relayed through a media relay port
 * pair (src/media/media-relay.ts), the Transport rewritten both ways; a session's signalling and
 * media move to a new backend together when its backend fails.
 *
 * Session keying: a connection's first request that names no known session opens an anonymous session
 * (SessionRouter.open) that picks the backend; the first SETUP's reply names the RTSP session
 * (`Session: X`), and X is recorded as the name of that very table session, so that a later request
 * presenting Session X — on this connection or on another one (RFC 2326 lets a client send PLAY or
 * TEARDOWN on a new connection) — follows its pin. The table session is the RTSP session: it outlives
 * its connection, it ends with the 2xx reply to TEARDOWN or by the table's idle sweep
 * (sessions.sessionTimeoutMs; RTSP clients keep a session alive with requests, RFC 2326 §12.37), and
 * its relay streams are released with it. The name map is the forwarder's (the table cannot rename an
 * anonymous session once the backend names it); it holds one entry per open named session.
 *
 * Transport rewriting (RFC 2326 §12.39): in a SETUP request, the first RTP/AVP[/UDP] unicast spec with
 * a client_port gets a relay pair allocated (refused with 453 Not Enough Bandwidth when the range is
 * exhausted) and its client_port rewritten to the relay's RTP-RTCP ports, so the backend sends media
 * to the relay; in the reply, that spec's server_port tells the relay where the backend's media comes
 * from and goes to, and is rewritten to the same relay pair (both sides face the same ports), its
 * client_port is written back to the client's own ports, a source= to the relay's address. Other specs
 * (interleaved over TCP, multicast, a second UDP spec) pass through; interleaved `$` frames are relayed
 * as they are.
 *
 * Failures: a refused, timed-out or reset upstream is reported (passive detection: the backend goes
 * down, SessionRouter re-pins its sessions, the relay moves their media to the new backend's host);
 * requests not yet written are sent to the new backend. The new backend does not know the RTSP
 * session: its answer to the client's next request naming it is 454 Session Not Found (RFC 2326
 * §11.3.5), after which the client sets the session up again (through the same relay range). Requests
 * already written when an upstream dies are answered 503 by the forwarder.
 *
 * Malformed client input is answered 400 Bad Request (413 when over the bounds) and the connection is
 * closed; messageDrop counts it. Bounds per connection: head http.maxHeaderBytes, body
 * RTSP_MAX_BODY_BYTES, RTSP_MAX_PENDING requests awaiting replies (the client is paused at the bound),
 * http.highWaterMarkBytes buffered per direction (the reader pauses). A connection without a byte
 * either way for http.idleTimeoutMs is closed (its sessions stay).
 */
import type { Socket } from 'node:net';
import { channels, type ConnectionEvent, type MessageDropEvent, type SessionRefuseEvent } from '../../core/diagnostics.js';
import type { BackendFailureKind } from '../../core/errors.js';
import { parseHostPort } from '../../core/address.js';
import type { Backend } from '../../core/backend.js';
import { addressKey, NO_FLOW, PROTO_TCP, type FlowHandle } from '../../sessions/flow-table.js';
import { NO_SESSION, type SessionHandle } from '../../sessions/session-table.js';
import {
  applyRtspEdits,
  buildRtspResponse,
  formatTransportSpec,
  isRelayableTransport,
  parseRtspMessage,
  RtspStreamFramer,
  salvageCseq,
  type RtspEdit,
  type RtspFrame,
  type RtspMessage,
} from '../../sessions/rtsp-message.js';
import { MediaRelay, type RelayStream } from '../../media/media-relay.js';
import { routerOf, type Forwarder, type Router, type ServiceRuntime } from '../../pipeline/index.js';
import { IdleTimer, LiveSet, noop } from '../lifecycle.js';
import { closeUpstream, openUpstream, type UpstreamLink } from '../upstream-connect.js';

/** Largest message body accepted (SDP of a DESCRIBE, ANNOUNCE, GET_PARAMETER). */
export const RTSP_MAX_BODY_BYTES = 64 * 1024;
/** Requests of one connection awaiting their reply; at the bound the client is not read. */
export const RTSP_MAX_PENDING = 64;


function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** A request forwarded and not answered yet, by CSeq. */
interface Pending {
  readonly method: string;
  readonly session: SessionHandle;
  /** SETUP: the relay stream allocated for it and the client's own ports. */
  readonly stream: RelayStream | null;
  readonly clientPorts: readonly [number, number] | null;
  /** SETUP naming no session on a connection whose session is named: the table session it opened (else NO_SESSION). */
  readonly opened: SessionHandle;
}

/** A message waiting for its upstream to connect. */
interface Queued {
  readonly out: Buffer;
  readonly cseq: number;
  readonly session: SessionHandle;
  readonly attempt: number;
}

interface Upstream extends UpstreamLink {
  readonly framer: RtspStreamFramer;
  queue: Queued[];
  queuedBytes: number;
}

interface RtspConn {
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

export class RtspForwarder implements Forwarder {
  private readonly service: string;
  private readonly listenHost: string;
  private readonly highWaterMark: number;
  private readonly relay: MediaRelay | null;
  private readonly conns: LiveSet<RtspConn>;
  /** RTSP session id → the table session it names, and back. */
  private readonly byKey = new Map<string, SessionHandle>();
  private readonly keyOf = new Map<SessionHandle, string>();
  private readonly unsubscribe: () => void;
  private readonly router: Router;

  constructor(private readonly rt: ServiceRuntime) {
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
  private pump(conn: RtspConn): void {
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

  private onClientFrame(conn: RtspConn, f: RtspFrame): Promise<void> | null {
    if (f.type === 'error') {
      this.reject(conn, f.reason, null);
      return null;
    }
    if (f.type === 'interleaved') {
      const up = conn.upstream;
      if (up && !up.closed && up.connected) this.writeUpstream(conn, up, f.bytes);
      else this.drop('no-upstream');
      return null;
    }
    const r = parseRtspMessage(f.bytes);
    if (!r.ok) {
      this.reject(conn, 'malformed', salvageCseq(f.bytes));
      return null;
    }
    const m = r.message;
    if (m.kind === 'response') {
      // A reply to a request the server sent (ANNOUNCE, GET_PARAMETER...): back on the upstream.
      const up = conn.upstream;
      if (up && !up.closed) this.writeUpstream(conn, up, f.bytes.subarray(0, m.length));
      else this.drop('no-upstream');
      return null;
    }
    if (m.version !== 'RTSP/1.0') {
      this.answer(conn, buildRtspResponse(505, 'RTSP Version not supported', m));
      return null;
    }
    const routed = this.routeRequest(conn, m);
    if (!routed) return null;
    if (m.method.toUpperCase() === 'SETUP') return this.setup(conn, m, routed.session);
    this.forward(conn, m, routed.session, applyRtspEdits(m, []), null, null);
    return null;
  }

  /** The session a request belongs to, following or opening its pin; null when it was answered. */
  private routeRequest(conn: RtspConn, m: RtspMessage): { session: SessionHandle; backend: Backend } | null {
    const named = m.session ? (this.byKey.get(m.session.id) ?? NO_SESSION) : NO_SESSION;
    const h = named !== NO_SESSION ? named : conn.session;
    // A request of an open session follows its pin ('established'); one of no session, or of one that
    // ended, opens a new one ('new': a refusal is answered with its Retry-After).
    const route = this.router.route(NO_FLOW, { via: 'session', session: h, admit: 'established', orNew: true });
    if (route.type !== 'forward') {
      const retry = route.type === 'refuse' && route.reason === 'overload' ? [`Retry-After: ${route.retryAfterS}`] : [];
      this.answer(conn, buildRtspResponse(503, 'Service Unavailable', m, retry));
      return null;
    }
    if (conn.session === NO_SESSION || !this.router.isOpen(conn.session)) conn.session = route.session;
    this.trackFlow(conn);
    return { session: route.session, backend: route.backend };
  }

  /**
   * SETUP: allocate a relay pair for the first relayable transport spec and rewrite its client_port.
   * A SETUP naming no session starts a new RTSP session: it takes the connection's session while that
   * one names none yet, else a new one on the same backend (the connection has one upstream).
   */
  private setup(conn: RtspConn, m: RtspMessage, routed: SessionHandle): Promise<void> | null {
    const specIndex = m.transports.findIndex((s) => isRelayableTransport(s) && s.clientPort !== null);
    if (!this.relay || specIndex < 0) {
      this.forward(conn, m, routed, applyRtspEdits(m, []), null, null);
      return null;
    }
    let session = routed;
    if (!m.session && this.keyOf.has(session)) {
      const opened = this.router.openBeside(routed);
      if (opened.type !== 'forward') {
        this.answer(conn, buildRtspResponse(503, 'Service Unavailable', m));
        return null;
      }
      session = opened.session;
    }
    const spec = m.transports[specIndex]!;
    const clientPorts = spec.clientPort!;
    return this.relay.allocate(session).then((stream) => {
      const opened = session === routed ? NO_SESSION : session;
      if (conn.done || this.conns.destroyed) {
        stream?.release();
        this.closeOpened(opened);
        return;
      }
      if (!stream) {
        if (channels.sessionRefuse.hasSubscribers) {
          channels.sessionRefuse.publish({ service: this.service, reason: 'relay-ports-full' } satisfies SessionRefuseEvent);
        }
        this.closeOpened(opened);
        this.answer(conn, buildRtspResponse(453, 'Not Enough Bandwidth', m));
        return;
      }
      stream.setClient(conn.remoteHost, clientPorts[0], clientPorts[1]);
      const set: Record<string, string> = { client_port: `${stream.rtpPort}-${stream.rtpPort + 1}` };
      if (spec.params.some(([k]) => k === 'destination')) set['destination'] = this.relay!.advertise;
      const edit: RtspEdit = { start: spec.start, end: spec.end, text: formatTransportSpec(spec, set) };
      this.forward(conn, m, session, applyRtspEdits(m, [edit]), stream, clientPorts, opened);
    });
  }

  /** Sends a request to its session's backend and remembers it until its reply. */
  private forward(
    conn: RtspConn,
    m: RtspMessage,
    session: SessionHandle,
    out: Buffer,
    stream: RelayStream | null,
    clientPorts: readonly [number, number] | null,
    opened: SessionHandle = NO_SESSION,
  ): void {
    if (conn.pending.has(m.cseq)) {
      // A CSeq reused before its reply: the replies could not be told apart.
      stream?.release();
      this.closeOpened(opened);
      this.answer(conn, buildRtspResponse(400, 'Bad Request', m));
      return;
    }
    conn.pending.set(m.cseq, { method: m.method.toUpperCase(), session, stream, clientPorts, opened });
    this.send(conn, { out, cseq: m.cseq, session, attempt: 0 });
  }

  /** Writes `q` to its session's current backend (connecting first), or answers 503 when none is left. */
  private send(conn: RtspConn, q: Queued): void {
    if (conn.done) return;
    const route = this.router.route(NO_FLOW, { via: 'session', session: q.session });
    const backend = route.type === 'forward' ? route.backend : undefined;
    if (!backend || q.attempt > this.rt.backends.length) {
      this.failPending(conn, q.cseq);
      return;
    }
    let up = conn.upstream;
    if (!up || up.closed || up.backend !== backend) {
      if (up && !up.closed) this.dropUpstream(conn, up, q.cseq);
      up = this.connectUpstream(conn, backend);
    }
    if (!up.connected) {
      up.queue.push(q);
      up.queuedBytes += q.out.length;
      this.checkPressure(conn);
      return;
    }
    this.writeUpstream(conn, up, q.out);
  }

  private connectUpstream(conn: RtspConn, backend: Backend): Upstream {
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
  private connectFailed(conn: RtspConn, up: Upstream, kind: BackendFailureKind): void {
    if (up.closed) return;
    const queue = this.detachUpstream(conn, up);
    if (this.conns.open) this.router.failed(up.backend, kind);
    // Nothing reached the backend: every failure takes a backend down, so this ends within backends + 1 tries.
    for (const q of queue) this.send(conn, { ...q, attempt: q.attempt + 1 });
  }

  /** Closes an upstream on purpose (its backend is down or another one serves the connection now). */
  private dropUpstream(conn: RtspConn, up: Upstream, keep = -1): void {
    const queue = this.detachUpstream(conn, up);
    // Its requests will get no reply; the one about to go elsewhere (`keep`) is not one of them.
    for (const q of queue) if (q.cseq !== keep) this.failPending(conn, q.cseq);
    for (const cseq of [...conn.pending.keys()]) if (cseq !== keep) this.failPending(conn, cseq);
  }

  /** Closes `up`, unlinks it from `conn`, and hands back the messages it held unsent. */
  private detachUpstream(conn: RtspConn, up: Upstream): Queued[] {
    closeUpstream(up);
    if (conn.upstream === up) conn.upstream = null;
    const queue = up.queue;
    up.queue = [];
    up.queuedBytes = 0;
    return queue;
  }

  /** A request that will get no reply from a backend: 503 to the client, its relay pair released. */
  private failPending(conn: RtspConn, cseq: number): void {
    const p = conn.pending.get(cseq);
    if (!p) return;
    conn.pending.delete(cseq);
    p.stream?.release();
    this.closeOpened(p.opened);
    this.answer(conn, buildRtspResponse(503, 'Service Unavailable', { cseq }));
    this.pump(conn);
  }

  // ------------------------------------------------------------------ backend side

  private onUpstreamFrame(conn: RtspConn, up: Upstream, f: RtspFrame): void {
    if (f.type === 'error') {
      this.drop(f.reason);
      this.dropUpstream(conn, up);
      return;
    }
    if (f.type === 'interleaved') return this.writeClient(conn, f.bytes);
    const r = parseRtspMessage(f.bytes);
    if (!r.ok) {
      this.drop('malformed');
      const cseq = salvageCseq(f.bytes);
      const p = cseq === null ? undefined : conn.pending.get(cseq);
      if (cseq !== null && p) {
        p.stream?.release();
        this.closeOpened(p.opened);
        conn.pending.delete(cseq);
        this.writeClient(conn, buildRtspResponse(502, 'Bad Gateway', { cseq }));
        this.pump(conn);
      }
      return;
    }
    const m = r.message;
    if (m.kind === 'request') return this.writeClient(conn, f.bytes.subarray(0, m.length));
    const p = conn.pending.get(m.cseq);
    if (!p) return this.writeClient(conn, f.bytes.subarray(0, m.length));
    conn.pending.delete(m.cseq);
    const ok = m.status >= 200 && m.status < 300;
    let out = f.bytes.subarray(0, m.length);
    if (p.method === 'SETUP' && ok) out = this.setupReply(m, up, p);
    else if (p.stream) p.stream.release();
    if (!ok) this.closeOpened(p.opened);
    if (p.method === 'TEARDOWN' && ok && this.router.isOpen(p.session)) {
      // The whole session ends (a TEARDOWN of one stream of an aggregate keeps the session: RFC 2326
      // §10.7 lets the URI name one stream, but the relay cannot tell which, so media ends with it).
      this.router.close(p.session, 'ended');
    }
    this.writeClient(conn, out);
    this.pump(conn);
  }

  /** A 2xx to SETUP: names the session, tells the relay the backend's ports, rewrites the Transport back. */
  private setupReply(m: RtspMessage, up: Upstream, p: Pending): Buffer {
    if (m.session && this.router.isOpen(p.session) && !this.keyOf.has(p.session) && !this.byKey.has(m.session.id)) {
      this.byKey.set(m.session.id, p.session);
      this.keyOf.set(p.session, m.session.id);
    }
    const stream = p.stream;
    if (!stream || !p.clientPorts) return applyRtspEdits(m, []);
    const relayPorts = `${stream.rtpPort}-${stream.rtpPort + 1}`;
    const spec = m.transports.find((s) => isRelayableTransport(s) && s.serverPort !== null && (s.clientPort === null || s.clientPort[0] === stream.rtpPort));
    if (!spec) {
      // The backend chose another transport (interleaved): the pair is not used.
      stream.release();
      return applyRtspEdits(m, []);
    }
    const backendHost = up.socket.remoteAddress ?? up.backend.host;
    stream.setBackend(backendHost, spec.serverPort![0], spec.serverPort![1]);
    const set: Record<string, string> = { server_port: relayPorts };
    if (spec.clientPort !== null) set['client_port'] = `${p.clientPorts[0]}-${p.clientPorts[1]}`;
    if (spec.params.some(([k]) => k === 'source')) set['source'] = this.relay!.advertise;
    return applyRtspEdits(m, [{ start: spec.start, end: spec.end, text: formatTransportSpec(spec, set) }]);
  }

  // ------------------------------------------------------------------ plumbing

  /**
   * Closes the session a SETUP opened (Pending.opened) once that SETUP failed: unnamed and without
   * streams, nothing else can reach it, and it would hold a table slot until sessionTimeoutMs.
   */
  private closeOpened(h: SessionHandle): void {
    if (h === NO_SESSION || this.keyOf.has(h) || !this.router.isOpen(h)) return;
    if ((this.relay?.streamsOf(h).length ?? 0) === 0) this.router.close(h, 'ended');
  }

  private sessionClosed(h: SessionHandle): void {
    this.relay?.releaseSession(h);
    const key = this.keyOf.get(h);
    if (key !== undefined) {
      this.keyOf.delete(h);
      this.byKey.delete(key);
    }
  }

  /** The client's signalling flow <client, service, tcp> (SARA III.A), tied to the connection's session. */
  private trackFlow(conn: RtspConn): void {
    const flows = this.rt.flows;
    if (conn.flow === NO_FLOW) {
      const local = conn.socket.localAddress ?? this.listenHost;
      conn.flow = flows.insert(addressKey(conn.remoteHost), conn.remotePort, addressKey(local), conn.socket.localPort ?? 0, PROTO_TCP, 'signalling', conn.session);
    } else if (flows.session(conn.flow) !== conn.session) flows.setSession(conn.flow, conn.session);
    if (conn.flow !== NO_FLOW) flows.seen(conn.flow);
  }

  /** Bad input from the client: an error reply, then the connection closes (no resynchronisation point). */
  private reject(conn: RtspConn, reason: 'malformed' | 'too-large', cseq: number | null): void {
    this.drop(reason);
    const reply = reason === 'too-large' ? buildRtspResponse(413, 'Request Entity Too Large', { cseq }) : buildRtspResponse(400, 'Bad Request', { cseq });
    conn.done = true;
    conn.socket.pause();
    if (conn.socket.writable) conn.socket.end(reply);
    const timer = this.rt.clock.setTimeout(() => conn.socket.destroy(), 1000);
    conn.socket.once('close', () => timer.cancel());
    this.closeConn(conn, false);
  }

  private drop(reason: string): void {
    if (channels.messageDrop.hasSubscribers) {
      channels.messageDrop.publish({ service: this.service, reason, transport: 'tcp' } satisfies MessageDropEvent);
    }
  }

  private answer(conn: RtspConn, buf: Buffer): void {
    this.writeClient(conn, buf);
  }

  private writeClient(conn: RtspConn, buf: Buffer): void {
    if (conn.done || conn.socket.destroyed || !conn.socket.writable) return;
    conn.socket.write(buf);
    if (conn.socket.writableLength > this.highWaterMark) conn.upstream?.socket.pause();
  }

  private writeUpstream(conn: RtspConn, up: Upstream, buf: Buffer): void {
    if (up.socket.destroyed || !up.socket.writable) return;
    up.socket.write(buf);
    this.checkPressure(conn);
  }

  /** The client is read while its upstream holds less than the high-water mark. */
  private checkPressure(conn: RtspConn): void {
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
  private closeConn(conn: RtspConn, destroy = true): void {
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
