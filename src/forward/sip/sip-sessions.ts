/**
 * @module The SIP forwarder's session layer: signalling flows in the flow table, the side record of
 * each session (its client, transport, dialog state) and its lifecycle (linger after the end, close),
 * and the forwarder's own answers (503, 483) and drops. The bottom of the forwarder's layers: routing
 * (sip-routing.ts), the UDP transport, the TCP transport and the forwarder itself build on it.
 */
import dgram from 'node:dgram';
import type { HostPort } from '../../core/address.js';
import type { TimerHandle } from '../../core/clock.js';
import { channels, type MessageDropEvent, type SipInviteEvent } from '../../core/diagnostics.js';
import type { Backend } from '../../core/backend.js';
import { addressKey, NO_FLOW, PROTO_TCP, PROTO_UDP, type FlowHandle } from '../../sessions/flow-table.js';
import { NO_SESSION, type SessionHandle } from '../../sessions/session-table.js';
import { buildSipResponse, SIP_DEFAULT_PORT, type SipMessage, type SipTransport } from '../../sessions/sip-message.js';
import { routerOf, type RouteDecision, type Router, type ServiceRuntime } from '../../pipeline/index.js';
import { SipMediaGateway } from './sip-media.js';
import {
  DIALOG_LINGER_MS,
  RETRY_AFTER_S,
  HOLDFAST_TO_TAG,
  INBOUND_BRANCHES_MAX,
  type DropReason,
  type SipSession,
  type UdpUpstream,
  type Ingress,
  type ClientConn,
  type SipForwarderStats,
} from './sip-common.js';

export abstract class SipSessions {
  protected abstract sendUdp(buf: Buffer, host: string, port: number): void;
  protected abstract sendUpstream(up: UdpUpstream, buf: Buffer): void;
  protected abstract upstreamFor(backend: Backend): Promise<UdpUpstream | undefined>;
  protected abstract writeToClient(conn: ClientConn, buf: Buffer): void;
  protected abstract writeUpstream(conn: ClientConn, backend: Backend, out: Buffer, original: Buffer | null, attempt: number): void;

  /** Counters beside the drop events (for tests, status and logs). */
  readonly stats: SipForwarderStats = { orphanInDialog: 0, forwardedUnparsed: 0, refused: 0, tooManyHops: 0, ended: 0, forwarded: 0, keepAlives: 0, ownAcks: 0, answered: 0 };
  protected state: 'open' | 'closing' | 'destroyed' = 'open';
  protected readonly service: string;
  protected readonly maxMessageBytes: number;
  /** The UDP bound: the smaller of sip.maxMessageBytes and sip.maxDatagramBytes. */
  protected readonly maxDatagramBytes: number;
  protected readonly highWaterMark: number;
  /**
   * The budget of our own answers over UDP (sip.udpAnswersPerSecond, burst: one second's worth):
   * tokens left and clock.now() of the last refill. A UDP source address is not verified, so an
   * unbounded answer to every refused request would let a spoofed flood reflect them at its victim.
   */
  protected answerTokens: number;
  protected answerRefillAt: number;
  /** The client-facing UDP socket and its bound address. */
  protected udp: dgram.Socket | null = null;
  protected udpAddress: HostPort | null = null;
  /** The service's TCP address (from the first connection), when there is no UDP socket. */
  protected tcpAddress: HostPort | null = null;
  protected readonly upstreams = new Map<Backend, UdpUpstream>();
  /** Upstreams being opened after bind (one attempt per backend at a time), and the host they bind on. */
  protected readonly upstreamOpening = new Map<Backend, Promise<void>>();
  protected listenHost = '';
  /** "ip:port" of each backend → its upstream (recognises backend datagrams on the service socket). */
  protected readonly backendByAddress = new Map<string, UdpUpstream>();
  /** Side records, one per open session of this forwarder (bounded by the session table). */
  protected readonly records = new Map<SessionHandle, SipSession>();
  protected unsubscribeClose: (() => void) | null;
  /**
   * The TCP connection holding each signalling flow (bounded by the connections). A flow handle is a
   * reused slot: once its flow leaves the table (remove, removeSession, the sweep, replication) the
   * connection forgets it, else it would later act on the flow of another client in that slot.
   */
  protected readonly connByFlow = new Map<FlowHandle, ClientConn>();
  protected unsubscribeFlowRemove: (() => void) | null;
  /** Lingering sessions in deadline order; `lingerHead` is the first live index. */
  protected lingerQueue: { h: SessionHandle; seq: number; at: number }[] = [];
  protected lingerHead = 0;
  protected lingerSeq = 0;
  protected lingerTimer: TimerHandle | null = null;
  protected readonly conns = new Set<ClientConn>();
  /** "host|port" of each TCP connection's peer → the connection: a session's TCP client by its record. */
  protected readonly connByAddress = new Map<string, ClientConn>();
  /**
   * Our branch on a request a backend sent on a connection of its own → that connection, so that the
   * client's response goes back on it (RFC 3261 §18.2.2). Entries go with the final response; at most
   * INBOUND_BRANCHES_MAX, the oldest forgotten first (its response then goes on our upstream to the
   * backend, which a UAS also accepts).
   */
  protected readonly inboundByBranch = new Map<string, ClientConn>();
  protected closed: Promise<void> | null = null;
  protected resolveClosed: (() => void) | null = null;
  /** Issue 6: SDP rewriting and the media relay (sip-media.ts). */
  readonly media: SipMediaGateway;

  protected readonly router: Router;

  constructor(protected readonly rt: ServiceRuntime) {
    this.router = routerOf(rt);
    this.service = rt.config.name;
    this.maxMessageBytes = rt.config.sip.maxMessageBytes;
    this.maxDatagramBytes = Math.min(rt.config.sip.maxMessageBytes, rt.config.sip.maxDatagramBytes);
    this.highWaterMark = rt.config.http.highWaterMarkBytes;
    this.answerTokens = rt.config.sip.udpAnswersPerSecond;
    this.answerRefillAt = rt.clock.now();
    this.unsubscribeClose = this.router.onClose((h) => this.sessionClosed(h));
    this.unsubscribeFlowRemove = rt.flows.onRemove((h) => this.flowRemoved(h));
    this.media = new SipMediaGateway(rt, (reason, transport) => this.drop(reason, transport));
  }


  /** Inserts (or finds) the client's signalling flow and marks it seen; NO_FLOW when the table is full. */
  protected trackFlow(host: string, port: number, ingress: Ingress): FlowHandle {
    const flows = this.rt.flows;
    if (ingress.transport === 'tcp') {
      const conn = ingress.conn;
      let flow = this.connFlow(conn);
      if (flow === NO_FLOW) {
        // It lives as long as the connection may (sip.tcpIdleTimeoutMs), and every read marks it seen.
        const timeoutMs = Math.max(this.rt.config.sessions.flowTimeoutMs, this.rt.config.sip.tcpIdleTimeoutMs);
        flow = flows.insert(addressKey(host), port, addressKey(conn.viaHost), conn.viaPort, PROTO_TCP, 'signalling', NO_SESSION, timeoutMs);
        if (flow !== NO_FLOW) {
          conn.flow = flow;
          this.connByFlow.set(flow, conn);
        }
      }
      if (flow !== NO_FLOW) flows.seen(flow);
      return flow;
    }
    const at = this.udpAddress!;
    const src = addressKey(host);
    const dst = addressKey(at.host);
    let flow = flows.lookup(src, port, dst, at.port, PROTO_UDP);
    if (flow === NO_FLOW) flow = flows.insert(src, port, dst, at.port, PROTO_UDP, 'signalling');
    if (flow !== NO_FLOW) flows.seen(flow);
    return flow;
  }

  /**
   * The connection's flow handle, checked: NO_FLOW once the flow left the table (flowRemoved) or when
   * the handle's slot no longer holds this connection's 5-tuple.
   */
  protected connFlow(conn: ClientConn): FlowHandle {
    const h = conn.flow;
    if (h === NO_FLOW) return NO_FLOW;
    const flows = this.rt.flows;
    if (this.connByFlow.get(h) === conn && flows.proto(h) === PROTO_TCP && flows.srcPort(h) === conn.remotePort && flows.dstPort(h) === conn.viaPort) {
      return h;
    }
    conn.flow = NO_FLOW;
    if (this.connByFlow.get(h) === conn) this.connByFlow.delete(h);
    return NO_FLOW;
  }

  /** A flow left the table: the TCP connection holding it lets go of the handle. */
  protected flowRemoved(h: FlowHandle): void {
    const conn = this.connByFlow.get(h);
    if (!conn) return;
    this.connByFlow.delete(h);
    if (conn.flow === h) conn.flow = NO_FLOW;
  }

  // ------------------------------------------------------------------ session lifecycle

  /**
   * What a response passing through says about its session (either direction). `fromBackend`: it
   * came from a backend, so a first answer above 100 to the session's initial INVITE ends its timing.
   */
  protected responseLifecycle(m: SipMessage, fromBackend = false): void {
    const h = this.router.find(m.callId);
    if (h === NO_SESSION) return;
    this.router.touch(h);
    const rec = this.records.get(h);
    if (!rec) return;
    if (fromBackend && rec.inviteAt >= 0 && m.status > 100 && m.method === 'INVITE') this.inviteDone(rec, 'answered', m.status);
    if (m.status < 200) return;
    if (m.method === 'INVITE') {
      if (m.status < 300) rec.confirmed = true;
      else if (!rec.confirmed) this.startLinger(rec);
    }
    if (rec.confirmed && (m.status === 481 || m.status === 408)) this.startLinger(rec);
    else if (!rec.dialog && m.method !== 'CANCEL') this.startLinger(rec);
  }

  // ------------------------------------------------------------------ INVITE timing (issue 17)

  /**
   * The initial INVITE of `rec` goes to its backend: timed from its first sending (a retransmission,
   * or a re-send to a new pin after a failure, keeps the first time: the caller waits from then).
   */
  protected inviteSent(rec: SipSession): void {
    if (rec.inviteAt >= 0 || rec.confirmed) return;
    rec.inviteAt = this.rt.clock.now();
    this.pendingInvites++;
    this.publishInvite(rec, 'sent', 0, 0);
  }

  /** The initial INVITE of `rec` was first answered (`status` > 100) or its session closed first. */
  protected inviteDone(rec: SipSession, kind: 'answered' | 'abandoned', status: number): void {
    const durationMs = kind === 'answered' ? this.rt.clock.now() - rec.inviteAt : 0;
    rec.inviteAt = -1;
    this.pendingInvites--;
    this.publishInvite(rec, kind, status, durationMs);
  }

  /** INVITEs forwarded and not yet answered above 100 (bounded by the session table). */
  protected pendingInvites = 0;
  /** The one event object of this forwarder's sipInvite channel: publishing allocates nothing. */
  private readonly inviteEvent: SipInviteEvent = { service: '', kind: 'sent', backend: null, status: 0, durationMs: 0, pending: 0 };

  private publishInvite(rec: SipSession, kind: SipInviteEvent['kind'], status: number, durationMs: number): void {
    if (!channels.sipInvite.hasSubscribers) return;
    const e = this.inviteEvent as { -readonly [K in keyof SipInviteEvent]: SipInviteEvent[K] };
    e.service = this.service;
    e.kind = kind;
    e.backend = rec.counted ? rec.counted.id : null;
    e.status = status;
    e.durationMs = durationMs;
    e.pending = this.pendingInvites;
    channels.sipInvite.publish(e);
  }

  protected account(rec: SipSession, backend: Backend): void {
    if (rec.counted === backend) return;
    if (rec.counted) rec.counted.active--;
    backend.active++;
    rec.counted = backend;
  }

  protected sessionClosed(h: SessionHandle): void {
    const rec = this.records.get(h);
    if (!rec) return;
    this.records.delete(h);
    if (rec.inviteAt >= 0) this.inviteDone(rec, 'abandoned', 0);
    if (rec.counted) rec.counted.active--;
    rec.counted = null;
  }

  protected startLinger(rec: SipSession): void {
    if (rec.lingerSeq !== 0) return;
    rec.lingerSeq = ++this.lingerSeq;
    this.media.end(rec.handle);
    this.lingerQueue.push({ h: rec.handle, seq: rec.lingerSeq, at: this.rt.clock.now() + DIALOG_LINGER_MS });
    if (!this.lingerTimer) this.lingerTimer = this.rt.clock.setTimeout(() => this.lingerDue(), DIALOG_LINGER_MS);
  }

  /** The one linger timer: closes every session whose linger is over, then re-arms for the next. */
  protected lingerDue(): void {
    this.lingerTimer = null;
    const now = this.rt.clock.now();
    const q = this.lingerQueue;
    while (this.lingerHead < q.length && q[this.lingerHead]!.at <= now) {
      const e = q[this.lingerHead++]!;
      const rec = this.records.get(e.h);
      if (rec && rec.lingerSeq === e.seq) {
        this.stats.ended++;
        this.router.close(e.h, 'ended');
      }
    }
    if (this.lingerHead > 1024 && this.lingerHead * 2 > q.length) {
      this.lingerQueue = q.slice(this.lingerHead);
      this.lingerHead = 0;
    }
    const next = this.lingerQueue[this.lingerHead];
    if (next && this.state !== 'destroyed') {
      this.lingerTimer = this.rt.clock.setTimeout(() => this.lingerDue(), Math.max(0, next.at - now));
    }
  }

  // ------------------------------------------------------------------ our own answers and drops

  /** 503 Service Unavailable with Retry-After (never to an ACK). */
  protected refuse(m: SipMessage, host: string, port: number, ingress: Ingress, retryAfterS: number | null = RETRY_AFTER_S): void {
    if (m.method === 'ACK') return this.drop('no-session', ingress.transport); // an ACK is never answered
    if (this.answer(m, 503, 'Service Unavailable', host, port, ingress, retryAfterS === null ? [] : [`Retry-After: ${retryAfterS}`])) this.stats.refused++;
  }

  /**
   * A client request the Router did not route. Issue 8: a new session refused by SA2C is answered
   * 503 with the verdict's Retry-After (§21.5.4). A degraded request of an established session is
   * dropped silently over UDP (counted by the controller's admission event): the client's
   * retransmission (Timer A/E) retries it, by when the load may have eased. Over TCP nothing is
   * retransmitted (§17.1.1.2), so it is answered 503 without Retry-After instead of being left to
   * time out. A full flow table (`gated`) was answered already. No backend: a stateless ACK is
   * dropped, anything else refused (503).
   */
  protected notRouted(route: RouteDecision, m: SipMessage, stateless: boolean, gated: boolean, host: string, port: number, ingress: Ingress): void {
    if (route.type === 'refuse' && route.reason === 'overload') return this.refuse(m, host, port, ingress, route.retryAfterS);
    if (route.type === 'degrade') {
      if (ingress.transport === 'tcp') this.refuse(m, host, port, ingress, null);
      return;
    }
    if (gated) return;
    if (stateless && m.method === 'ACK') return this.drop('no-backend', ingress.transport);
    return this.refuse(m, host, port, ingress);
  }

  /**
   * A response of ours to a client's request, sent where the response would go (§18.2.2). Over UDP
   * only within sip.udpAnswersPerSecond: past it the answer is dropped ('answer-throttled') and false
   * returned, so that the caller counts a drop instead of an answer. Over TCP the handshake verified
   * the address: always answered.
   */
  protected answer(m: SipMessage, status: number, reason: string, host: string, port: number, ingress: Ingress, extra: string[]): boolean {
    if (ingress.transport === 'tcp') {
      this.writeToClient(ingress.conn, buildSipResponse(m, status, reason, { srcHost: host, srcPort: port, toTag: HOLDFAST_TO_TAG, extra }));
      return true;
    }
    if (!this.takeAnswerToken()) {
      this.drop('answer-throttled', 'udp');
      return false;
    }
    const out = buildSipResponse(m, status, reason, { srcHost: host, srcPort: port, toTag: HOLDFAST_TO_TAG, extra });
    // received is the source host (added whenever sent-by differs); the port is rport's or sent-by's.
    const top = m.vias[0]!;
    const target = top.rport !== null ? port : (top.port ?? SIP_DEFAULT_PORT);
    this.sendUdp(out, host, target);
    return true;
  }

  /** One token of the UDP answer budget, refilled at sip.udpAnswersPerSecond up to one second's worth. */
  private takeAnswerToken(): boolean {
    const rate = this.rt.config.sip.udpAnswersPerSecond;
    const now = this.rt.clock.now();
    if (now > this.answerRefillAt) {
      this.answerTokens = Math.min(rate, this.answerTokens + ((now - this.answerRefillAt) / 1000) * rate);
      this.answerRefillAt = now;
    }
    if (this.answerTokens < 1) return false;
    this.answerTokens--;
    return true;
  }

  protected drop(reason: DropReason, transport: SipTransport): void {
    if (channels.messageDrop.hasSubscribers) {
      channels.messageDrop.publish({ service: this.service, reason, transport } satisfies MessageDropEvent);
    }
  }

  /** A client message the inspector rejected: dropped, or (sip.malformed: forward) sent on its flow's pin. */
  protected malformed(buf: Buffer, reason: 'malformed' | 'too-large', host: string, port: number, ingress: Ingress): void {
    if (reason === 'too-large' || this.rt.config.sip.malformed === 'drop') return this.drop(reason, ingress.transport);
    const flows = this.rt.flows;
    let flow: FlowHandle;
    if (ingress.transport === 'tcp') flow = this.connFlow(ingress.conn);
    else {
      const at = this.udpAddress!;
      flow = flows.lookup(addressKey(host), port, addressKey(at.host), at.port, PROTO_UDP);
    }
    const session = flow === NO_FLOW ? NO_SESSION : flows.session(flow);
    let backend = session !== NO_SESSION && this.router.isOpen(session) ? this.router.backendOf(session) : undefined;
    if (!backend || backend.state === 'down') {
      const pick = this.router.route(NO_FLOW, { via: 'balancer' });
      backend = pick.type === 'forward' ? pick.backend : undefined;
    }
    if (!backend) return this.drop('no-backend', ingress.transport);
    if (ingress.transport === 'udp') {
      const send = (up: UdpUpstream): void => {
        this.stats.forwardedUnparsed++;
        this.sendUpstream(up, buf);
      };
      const up = this.upstreams.get(backend);
      if (up) send(up);
      else void this.upstreamFor(backend).then((opened) => (opened ? send(opened) : this.drop('no-backend', 'udp')));
    } else {
      this.stats.forwardedUnparsed++;
      this.writeUpstream(ingress.conn, backend, buf, null, 0);
    }
  }
}
