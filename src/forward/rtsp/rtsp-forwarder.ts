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
import { channels, type SessionRefuseEvent } from '../../core/diagnostics.js';
import type { Backend } from '../../core/backend.js';
import { NO_FLOW } from '../../sessions/flow-table.js';
import { NO_SESSION, type SessionHandle } from '../../sessions/session-table.js';
import {
  applyRtspEdits,
  buildRtspResponse,
  formatTransportSpec,
  isRelayableTransport,
  parseRtspMessage,
  salvageCseq,
  type RtspEdit,
  type RtspFrame,
  type RtspMessage,
} from '../../sessions/rtsp-message.js';
import type { RelayStream } from '../../media/index.js';
import { RTSP_MAX_BODY_BYTES, RTSP_MAX_PENDING, RtspConnections, type Pending, type Queued, type RtspConn, type Upstream } from './rtsp-connection.js';

export { RTSP_MAX_BODY_BYTES, RTSP_MAX_PENDING } from './rtsp-connection.js';

/** Requests routed through the service's Router, SETUP's relay pairs, replies rewritten back. */
export class RtspForwarder extends RtspConnections {
  protected onClientFrame(conn: RtspConn, f: RtspFrame): Promise<void> | null {
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
  protected routeRequest(conn: RtspConn, m: RtspMessage): { session: SessionHandle; backend: Backend } | null {
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
  protected setup(conn: RtspConn, m: RtspMessage, routed: SessionHandle): Promise<void> | null {
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
  protected forward(
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
  protected send(conn: RtspConn, q: Queued): void {
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

  // ------------------------------------------------------------------ backend side

  protected onUpstreamFrame(conn: RtspConn, up: Upstream, f: RtspFrame): void {
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
  protected setupReply(m: RtspMessage, up: Upstream, p: Pending): Buffer {
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
}
