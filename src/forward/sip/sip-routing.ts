/**
 * @module Dialog routing and Record-Route: a client request routed through the service's Router by its
 * Call-ID (admission, pin, a new session, or stateless for an ACK/CANCEL/BYE of an unknown call), our
 * Via and Record-Route added (RFC 3261 §16.6, §16.11), a top Route naming us removed (§16.4); a
 * backend's request sent back to its session's client.
 */
import type { Socket } from 'node:net';
import { channels, type SessionRefuseEvent } from '../../core/diagnostics.js';
import type { Backend } from '../../core/backend.js';
import { NO_FLOW, type FlowHandle } from '../../sessions/flow-table.js';
import { NO_SESSION, type SessionHandle } from '../../sessions/session-table.js';
import {
  annotateTopVia,
  applyEdits,
  buildSipResponse,
  findHeader,
  formatSipHostPort,
  headerValues,
  nameAddrUri,
  parseSipUri,
  SIP_DEFAULT_PORT,
  type SipEdit,
  type SipMessage,
  type SipTransport,
} from '../../sessions/sip-message.js';
import {
  HOLDFAST_TO_TAG,
  DEFAULT_MAX_FORWARDS,
  INBOUND_BRANCHES_MAX,
  DIALOG_CREATING,
  opensLastingSession,
  type SipSession,
  type UdpUpstream,
  type Ingress,
  type ClientConn,
  type UpstreamConn,
  isWildcard,
  proxyBranch,
} from './sip-common.js';
import { SipSessions } from './sip-sessions.js';

export abstract class SipRouting extends SipSessions {
  protected abstract writeTo(socket: Socket, buf: Buffer): void;


  // ------------------------------------------------------------------ requests from clients

  /**
   * Routes a client's request to its session's backend. `original` and `attempt`: the bytes as
   * received and how many backends already failed them (TCP re-routes after a failed connect).
   */
  protected requestFromClient(m: SipMessage, host: string, port: number, ingress: Ingress, original: Buffer, attempt: number): void {
    const transport = ingress.transport;
    // The ACK of a 503/483 of ours (its To tag is ours): absorbed here, as the UAS that answered
    // (RFC 3261 §17.2.1); no backend knows the transaction.
    if (m.method === 'ACK' && m.toTag === HOLDFAST_TO_TAG) {
      this.stats.ownAcks++;
      return;
    }
    if (m.maxForwards === 0) {
      if (m.method === 'ACK') return this.drop('max-forwards', transport);
      if (this.answer(m, 483, 'Too Many Hops', host, port, ingress, [])) this.stats.tooManyHops++;
      return;
    }
    // Issue 8 (SA2C, SARA III.B): a request of an unknown Call-ID opens a session ('new'), even with
    // a To tag (a forged or stale one opens a session all the same); any request of an open session
    // is 'established'. Asked once per message
    // (attempt 0: a TCP re-route after a failed connect was admitted already), before the flow is
    // tracked, so that a refusal holds no flow. ACK, CANCEL and BYE are never refused: they complete
    // or end sessions, and losing them adds load — a lost ACK makes the UAS retransmit its 2xx for
    // 64 x T1 (§13.3.1.4), a lost BYE is retransmitted for 64 x T1 and keeps the call's media and
    // state alive, a lost CANCEL leaves the INVITE ringing until it times out. Of an unknown Call-ID
    // they open nothing (a BYE of an unknown Call-ID ends nothing here): forwarded statelessly
    // (§16.11) on the balancer's pick, without leaving a session behind.
    const stateless = m.method === 'ACK' || m.method === 'CANCEL' || m.method === 'BYE';
    let flow: FlowHandle = NO_FLOW;
    let known = false;
    let gated = false;
    const route = this.router.route(NO_FLOW, {
      via: 'key',
      key: m.callId,
      open: !stateless,
      admit: attempt === 0 && !stateless ? 'auto' : undefined,
      // The signalling flow, before any new session is opened: a full flow table refuses new ones.
      gate: (established) => {
        known = established;
        flow = this.trackFlow(host, port, ingress);
        if (flow !== NO_FLOW || established) return true;
        gated = true;
        if (channels.sessionRefuse.hasSubscribers) {
          channels.sessionRefuse.publish({ service: this.service, reason: 'flows-full' } satisfies SessionRefuseEvent);
        }
        this.refuse(m, host, port, ingress);
        return false;
      },
    });
    if (route.type !== 'forward') return this.notRouted(route, m, stateless && !known, gated, host, port, ingress);
    if (route.how === 'unpinned') return this.forwardRequest(m, route.backend, host, port, ingress, original, attempt);
    if (route.how === 'opened' && m.toTag !== null) this.stats.orphanInDialog++;

    const h = route.session;
    let rec = this.records.get(h);
    if (!rec) {
      rec = {
        handle: h,
        clientHost: host,
        clientPort: port,
        transport,
        dialog: opensLastingSession(m),
        confirmed: false,
        lingerSeq: 0,
        counted: null,
        inviteAt: -1,
      };
      this.records.set(h, rec);
    } else {
      rec.clientHost = host;
      rec.clientPort = port;
      rec.transport = transport;
    }
    // Replicated to the backups (issue 7): a backup that takes over rebuilds the record from it.
    this.router.setData(h, `${transport} ${port} ${host}`);
    this.account(rec, route.backend);
    if (flow !== NO_FLOW) {
      this.rt.flows.setSession(flow, h);
    }
    if (m.method === 'BYE') this.startLinger(rec);
    else if (m.toTag === null && m.method !== 'ACK' && m.method !== 'CANCEL' && rec.lingerSeq !== 0) {
      // A new initial request on an ended Call-ID (INVITE again with credentials after a 407).
      rec.lingerSeq = 0;
      this.media.reopen(h);
      if (DIALOG_CREATING.has(m.method)) rec.dialog = true;
    }
    const backend = route.backend;
    const session = rec;
    const initialInvite = m.method === 'INVITE' && m.toTag === null;
    this.media.handle(
      m,
      'client',
      transport,
      (out) => {
        if (initialInvite) this.inviteSent(session);
        this.forwardRequest(out, backend, host, port, ingress, original, attempt);
      },
      (status, reason, extra) => {
        if (!this.answer(m, status, reason, host, port, ingress, extra)) return;
        if (status === 503) this.stats.refused++;
        else this.stats.answered++;
      },
    );
  }

  /** Rewrites a client's request (Via, Max-Forwards, Record-Route, Route) and sends it to `backend`. */
  protected forwardRequest(
    m: SipMessage,
    backend: Backend,
    host: string,
    port: number,
    ingress: Ingress,
    original: Buffer,
    attempt: number,
  ): void {
    let via: string;
    let rr: string | null = null;
    const wantRr = this.rt.config.sip.recordRoute && m.toTag === null && DIALOG_CREATING.has(m.method);
    if (ingress.transport === 'udp') {
      const up = this.upstreams.get(backend);
      if (!up) {
        // Not open (failed at bind time): opened now, and this message sent once it is (attempt 1:
        // no second try). If it fails again the backend is down and the client's retransmission
        // goes to the session's new pin.
        if (attempt > 0) return this.drop('no-backend', 'udp');
        void this.upstreamFor(backend).then((opened) => {
          if (opened) this.forwardRequest(m, backend, host, port, ingress, original, 1);
          else this.drop('no-backend', 'udp');
        });
        return;
      }
      via = `SIP/2.0/UDP ${formatSipHostPort(up.localHost, up.localPort)};branch=${proxyBranch(m, 'u')}`;
      if (wantRr) rr = this.recordRoute(this.viaHost(this.udpAddress!.host, up), this.udpAddress!.port, 'udp');
      const out = applyEdits(m, this.requestEdits(m, host, port, via, rr));
      this.stats.forwarded++;
      this.sendUpstream(up, out);
      return;
    }
    const conn = ingress.conn;
    via = `SIP/2.0/TCP ${formatSipHostPort(conn.viaHost, conn.viaPort)};branch=${proxyBranch(m, 'u')}`;
    if (wantRr) rr = this.recordRoute(conn.viaHost, conn.viaPort, 'tcp');
    const out = applyEdits(m, this.requestEdits(m, host, port, via, rr));
    this.writeUpstream(conn, backend, out, original, attempt);
  }

  protected recordRoute(host: string, port: number, transport: SipTransport): string {
    return `<sip:${formatSipHostPort(host, port)};transport=${transport};lr>`;
  }

  /**
   * The edits that make a received request ours to forward: the top Via annotated for its source,
   * our Via above it, Max-Forwards decremented (or added), an optional Record-Route above any other,
   * and the top Route removed when it names us.
   */
  protected requestEdits(m: SipMessage, srcHost: string, srcPort: number, via: string, recordRoute: string | null): SipEdit[] {
    const edits: SipEdit[] = [];
    const firstVia = m.headers[m.vias[0]!.header]!;
    const annotated = annotateTopVia(m, srcHost, srcPort);
    if (annotated) edits.push(annotated);
    edits.push({ start: firstVia.start, end: firstVia.start, text: `Via: ${via}\r\n` });
    if (recordRoute) {
      const firstRr = findHeader(m, 'record-route');
      const at = firstRr && firstRr.start < firstVia.start ? firstRr.start : firstVia.start;
      edits.push({ start: at, end: at, text: `Record-Route: ${recordRoute}\r\n` });
    }
    const mf = findHeader(m, 'max-forwards');
    if (mf) edits.push({ start: mf.valueStart, end: mf.valueEnd, text: String(Math.max(0, (m.maxForwards ?? DEFAULT_MAX_FORWARDS) - 1)) });
    else edits.push({ start: firstVia.start, end: firstVia.start, text: `Max-Forwards: ${DEFAULT_MAX_FORWARDS}\r\n` });
    const route = this.topRouteIfOurs(m);
    if (route) edits.push(route);
    return edits;
  }

  /** The edit removing the top Route value when its URI names this service (loose routing, §16.4). */
  protected topRouteIfOurs(m: SipMessage): SipEdit | null {
    if (!findHeader(m, 'route')) return null;
    const routes = headerValues(m, 'route');
    const top = routes[0];
    if (!top) return null;
    const uri = parseSipUri(nameAddrUri(top.value));
    if (!uri || !this.isOurAddress(uri.host, uri.port ?? SIP_DEFAULT_PORT)) return null;
    const next = routes[1];
    if (next && next.header === top.header) return { start: top.start, end: next.start, text: '' };
    const line = m.headers[top.header]!;
    return { start: line.start, end: line.end, text: '' };
  }

  protected isOurAddress(host: string, port: number): boolean {
    const service = this.udpAddress ?? this.tcpAddress;
    if (!service || port !== service.port) return false;
    if (host === service.host) return true;
    if (host === 'localhost' && (service.host === '127.0.0.1' || service.host === '::1')) return true;
    if (isWildcard(service.host)) {
      for (const up of this.upstreams.values()) if (up.localHost === host) return true;
      for (const conn of this.conns) if (conn.viaHost === host) return true;
    }
    return false;
  }

  /** The host our Via/Record-Route name: the configured one, or a concrete local address on a wildcard. */
  protected viaHost(serviceHost: string, up: UdpUpstream | null): string {
    if (!isWildcard(serviceHost)) return serviceHost;
    return up?.localHost ?? serviceHost;
  }

  // ------------------------------------------------------------------ requests from backends

  /**
   * A request a backend sent (a BYE, re-INVITE, NOTIFY of the callee): to the session's client, with
   * our Via so that the client's response comes back through us. `upstream`: the TCP connection it
   * came on (null: UDP).
   */
  protected requestFromBackend(
    m: SipMessage,
    backend: Backend,
    host: string,
    port: number,
    upstream: UpstreamConn | null,
    inbound: ClientConn | null = null,
  ): void {
    const transport: SipTransport = upstream || inbound ? 'tcp' : 'udp';
    if (m.method === 'ACK' && m.toTag === HOLDFAST_TO_TAG) return; // the ACK of our own 483
    const h = this.router.find(m.callId);
    const rec = h === NO_SESSION ? undefined : (this.records.get(h) ?? this.replicatedRecord(h));
    if (!rec) return this.drop('no-session', transport);
    this.router.touch(h);
    if (m.maxForwards === 0) {
      if (m.method === 'ACK') return this.drop('max-forwards', transport);
      this.stats.tooManyHops++;
      const reply = buildSipResponse(m, 483, 'Too Many Hops', { srcHost: host, srcPort: port, toTag: HOLDFAST_TO_TAG });
      if (upstream) this.writeTo(upstream.socket, reply);
      else if (inbound) this.writeTo(inbound.socket, reply);
      else {
        const up = this.upstreams.get(backend);
        if (up) this.sendUpstream(up, reply);
      }
      return;
    }
    if (m.method === 'BYE') this.startLinger(rec);
    if (upstream) {
      const conn = upstream.owner;
      const via = `SIP/2.0/TCP ${formatSipHostPort(conn.viaHost, conn.viaPort)};branch=${proxyBranch(m, 'c')}`;
      this.media.handle(m, 'backend', 'tcp', (out) => this.writeToClient(conn, applyEdits(out, this.requestEdits(out, host, port, via, null))), null);
      return;
    }
    if (inbound) {
      // On a connection of the backend's own (to our Record-Route): to the client's connection.
      const conn = rec.transport === 'tcp' ? this.connByAddress.get(`${rec.clientHost}|${rec.clientPort}`) : undefined;
      if (!conn || conn.done || conn.fromBackend) return this.drop('unroutable', 'tcp');
      const branch = proxyBranch(m, 'c');
      if (m.method !== 'ACK') {
        this.inboundByBranch.delete(branch);
        if (this.inboundByBranch.size >= INBOUND_BRANCHES_MAX) this.inboundByBranch.delete(this.inboundByBranch.keys().next().value!);
        this.inboundByBranch.set(branch, inbound);
      }
      const via = `SIP/2.0/TCP ${formatSipHostPort(conn.viaHost, conn.viaPort)};branch=${branch}`;
      this.media.handle(m, 'backend', 'tcp', (out) => this.writeToClient(conn, applyEdits(out, this.requestEdits(out, host, port, via, null))), null);
      return;
    }
    if (rec.transport === 'tcp') {
      // The client is on TCP but the backend spoke UDP: not bridged.
      return this.drop('unroutable', 'udp');
    }
    const at = this.udpAddress;
    if (!at) return;
    const via = `SIP/2.0/UDP ${formatSipHostPort(this.viaHost(at.host, this.upstreams.get(backend) ?? null), at.port)};branch=${proxyBranch(m, 'c')}`;
    const client = rec;
    this.media.handle(m, 'backend', 'udp', (out) => this.sendUdp(applyEdits(out, this.requestEdits(out, host, port, via, null)), client.clientHost, client.clientPort), null);
  }

  /**
   * The side record of a session this dispatcher did not open: replicated from the master that ran
   * it (issue 7), whose record reached us as the session's data (`transport port host`). Its dialog
   * state did not: it is taken as a confirmed dialog, which ends by BYE or the idle timeout.
   */
  protected replicatedRecord(h: SessionHandle): SipSession | undefined {
    const data = this.router.data(h);
    const m = data === null ? null : /^(udp|tcp) (\d{1,5}) (\S+)$/.exec(data);
    if (!m) return undefined;
    const rec: SipSession = {
      handle: h,
      clientHost: m[3]!,
      clientPort: Number(m[2]),
      transport: m[1] as SipTransport,
      dialog: true,
      confirmed: true,
      lingerSeq: 0,
      counted: null,
      inviteAt: -1,
    };
    this.records.set(h, rec);
    return rec;
  }
}
