/**
 * @module The SIP forwarder (`protocol: sip`, issue 5): a stateless proxy in the sense of RFC 3261
 * §16.11 that routes by session. A session is a Call-ID: the first request of a call (an INVITE
 * without To tag, or any out-of-dialog request) opens it on the balancer's choice through
 * SessionRouter, every later request and response of the Call-ID follows the pin, and the pin moves
 * (counted) when its backend goes down. Responses and requests from backends come back through the
 * service address.
 *
 * Requests from clients (UDP and TCP):
 * - The ACK of a 503/483 of ours (To tag HOLDFAST_TO_TAG) is absorbed, never forwarded.
 * - Max-Forwards 0 → answered 483 Too Many Hops (an ACK is dropped, counted 'max-forwards');
 *   otherwise decremented, or added as 70 when absent (RFC 3261 §16.6 step 3).
 * - The client's top Via gets received= / a filled rport (RFC 3261 §18.2.1, RFC 3581 §4); our own Via
 *   goes on top: `SIP/2.0/UDP <upstream socket address>` (UDP) or `SIP/2.0/TCP <service address>`
 *   (TCP), with branch `z9hG4bKhf.` + a 64-bit FNV-1a hash of the client's top branch (or, for an
 *   RFC 2543 client without one, of its whole top Via, CSeq number, From tag and Request-URI), its
 *   sent-by and the Call-ID. A stateless proxy must give a retransmission the same branch (§16.11);
 *   since CANCEL and the ACK of a non-2xx carry the INVITE's branch, they get ours too.
 * - With sip.recordRoute, an initial INVITE/SUBSCRIBE/REFER gets `Record-Route: <sip:<service
 *   address>;transport=<udp|tcp>;lr>` above any other, so that in-dialog requests of standard user
 *   agents (both sides) come back through the service address; a top Route naming us is removed
 *   (loose routing, §16.4).
 * - No eligible backend, a full session table or a full flow table (for a new session) → answered
 *   503 Service Unavailable with Retry-After (§8.2.6, §21.5.4); an ACK is never answered.
 *
 * Responses are routed by Via, not by state: the top Via must be ours (else dropped, 'unknown-via');
 * it is removed and the response goes to the next Via's received/rport/sent-by (§18.2.2, RFC 3581)
 * from the service's client-facing socket (UDP), or back on the client connection (TCP).
 *
 * Requests from backends (a callee's BYE, a re-INVITE) arrive on an upstream socket (the address the
 * backend saw the call come from) or on the service socket from a backend's address (Record-Route
 * points there; over TCP, on a connection of the backend's own to the service address, recognised by
 * its source address and a Via naming the backend's port; the client's response goes back on that
 * connection). They follow the session's side record back to its client — the client's address and
 * transport (UDP), or its connection (TCP) — with our Via added so that the client's response comes
 * back through us and is sent on to the backend. A request from a backend for no open session is
 * dropped ('no-session').
 *
 * Session lifecycle: a final failure (≥ 300) to the initial INVITE, CANCEL's 487 included, a 481/408
 * in a confirmed dialog (§12.2.1.2), a final response to an out-of-dialog non-INVITE request that does
 * not create a dialog (OPTIONS, MESSAGE...; not REGISTER, whose refreshes reuse the Call-ID and stay
 * on their registrar, nor a session opened mid-dialog by a request with a To tag), or a BYE in either
 * direction ends the session;
 * retransmissions still route for DIALOG_LINGER_MS (Timer J = 64 x T1, §17.2.2), then the session
 * closes ('ended'). One FIFO and one timer serve every lingering session (all lingers last as long,
 * so the FIFO is in deadline order); a new initial request on a lingering Call-ID (an INVITE re-sent
 * with credentials after a 407) cancels the linger. Idle sessions are closed by the session table's
 * own sweep (sessions.sessionTimeoutMs).
 *
 * Flows (SARA III.A): every client datagram or TCP connection is a signalling flow <client ip:port,
 * service ip:port, proto> in the flow table, whose session is the Call-ID of its latest message (a TCP
 * connection's flow has a timeout of at least sip.tcpIdleTimeoutMs and every read marks it seen, and
 * the connection lets go of its handle as soon as the flow leaves the table). With
 * the flow table full a message that would open a new session is refused (sessionRefuse
 * 'flows-full', 503); messages of open sessions are still forwarded, untracked.
 *
 * Malformed messages (sessions/sip-message.ts) from clients: sip.malformed 'drop' drops them
 * (messageDrop 'malformed'); 'forward' forwards the bytes as they are to the backend pinned by the
 * client's flow (its latest session), or the balancer's pick — one way: their responses carry no Via
 * of ours and are dropped ('unknown-via'). Over sip.maxMessageBytes: 'too-large'. From backends,
 * malformed messages are always dropped.
 *
 * UDP upstream: one connected UDP socket per BACKEND (bounded by the number of backends), bound on
 * the listen host (any address when that is a wildcard) — on a concrete host at a port every dispatcher
 * of a group computes alike (stableUpstreamPort), so that a takeover keeps the address backends know.
 * Connected, so that the kernel hands it only
 * the backend's datagrams, and so that an ICMP port unreachable from a dead backend surfaces as
 * ECONNREFUSED: the backend is reported down at once (reportFailure 'refused') and SessionRouter
 * re-pins its sessions; the lost message is retransmitted by the client (Timer A/E) to the new pin.
 * A backend whose host died sends no ICMP: the health monitor's probes/heartbeats detect it. A sip
 * service's default probe is `udp` (`tcp` when it has no UDP transport; monitor/probe.ts): an empty
 * datagram that fails only on ICMP port unreachable, so a silent dead host still looks up to it;
 * `health.probe.type: sip` (an OPTIONS that must be answered) or agent heartbeats detect that too.
 * An upstream socket that could not be opened (the backend's name did not resolve at bind time) is
 * opened again when a message is next sent to that backend; the message goes once it is open.
 *
 * TCP: each client connection gets its own upstream TCP connection per backend, opened lazily; both
 * directions are framed (SipStreamFramer): CRLFCRLF pings are answered with a CRLF pong, a framing
 * error closes that connection (counted). Messages written while an upstream connects are held; when
 * the connect is refused, reset or times out the backend is reported (passive detection) and the held
 * messages are routed again, to the session's new pin. A writer over http.highWaterMarkBytes pauses
 * its reader until it drains; a client connection silent for sip.tcpIdleTimeoutMs is closed.
 * Mixed transports (a TCP client to a UDP-only backend) are not bridged.
 *
 * Record-Route and our Via name the service's configured host; when the service listens on a wildcard
 * address, the upstream socket's address (UDP) or the connection's local address (TCP) is used instead.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Socket } from 'node:net';
import { formatHostPort, type HostPort } from '../core/address.js';
import type { TimerHandle } from '../core/clock.js';
import { channels, type ConnectionEvent, type MessageDropEvent, type SessionRefuseEvent } from '../core/diagnostics.js';
import { ListenError, type BackendFailureKind } from '../core/errors.js';
import type { Backend } from '../monitor/backend.js';
import { addressKey, NO_FLOW, PROTO_TCP, PROTO_UDP, type FlowHandle } from '../sessions/flow-table.js';
import type { SessionRoute } from '../sessions/session-router.js';
import { NO_SESSION, type SessionHandle } from '../sessions/session-table.js';
import {
  annotateTopVia,
  applyEdits,
  BRANCH_MAGIC_COOKIE,
  buildSipResponse,
  findHeader,
  formatSipHostPort,
  headerValues,
  nameAddrUri,
  parseSipMessage,
  parseSipUri,
  removeTopVia,
  responseTarget,
  SIP_DEFAULT_PORT,
  SipStreamFramer,
  type SipEdit,
  type SipMessage,
  type SipTransport,
  type SipVia,
} from '../sessions/sip-message.js';
import type { Forwarder, ServiceRuntime } from './service-runtime.js';
import { SipMediaGateway } from './sip-media.js';
import { closeUpstream, openUpstream, type UpstreamLink } from './upstream-connect.js';

/** RFC 3261 §17.1.1.1: the round-trip estimate T1. */
export const SIP_T1_MS = 500;
/** Timer J (64 x T1, §17.2.2): how long an ended session keeps routing retransmissions. */
export const DIALOG_LINGER_MS = 64 * SIP_T1_MS;
/** Retry-After of the 503 answered when no backend can take a new session. */
export const RETRY_AFTER_S = 5;
/** Every branch holdfast writes starts with this: RFC 3261's magic cookie, then our mark. */
export const HOLDFAST_BRANCH_PREFIX = `${BRANCH_MAGIC_COOKIE}hf.`;
/** The To tag of the responses holdfast answers itself (503, 483). */
export const HOLDFAST_TO_TAG = 'hf0';
/** Max-Forwards added to a request that has none (RFC 3261 §16.6 step 3). */
export const DEFAULT_MAX_FORWARDS = 70;

/** Bound of the branches of backend-sent TCP requests awaiting the client's response (see inboundByBranch). */
export const INBOUND_BRANCHES_MAX = 4096;

/** Methods whose initial request creates a dialog (RFC 3261 §12, RFC 6665, RFC 3515). */
const DIALOG_CREATING = new Set(['INVITE', 'SUBSCRIBE', 'REFER']);

/**
 * Whether a session opened by `m` lasts beyond its first final response: a dialog-creating request;
 * any request with a To tag (in a dialog already: opened mid-dialog, after a restart or a takeover,
 * it must not end at its first 200); and REGISTER, whose refreshes reuse the Call-ID (RFC 3261
 * §10.2.4) and must reach the registrar that holds the binding (and the nonce of a 401 challenge).
 * Such a session ends by BYE, a final failure to its INVITE, or the idle timeout.
 */
function opensLastingSession(m: SipMessage): boolean {
  return DIALOG_CREATING.has(m.method) || m.method === 'REGISTER' || m.toTag !== null;
}

const noop = (): void => {};

type DropReason = 'malformed' | 'too-large' | 'unknown-via' | 'no-session' | 'no-backend' | 'max-forwards' | 'unroutable' | 'bad-sdp' | 'media-pending';

/** What the forwarder keeps per open session beside the session table (its "side record"). */
interface SipSession {
  readonly handle: SessionHandle;
  /** The client's address as its latest request came from. */
  clientHost: string;
  clientPort: number;
  /** The client's transport: a backend's request over UDP is not bridged to a TCP client. */
  transport: SipTransport;
  /** Opened by a dialog-creating request: ends by BYE/failure, not by its first final response. */
  dialog: boolean;
  /** A 2xx to an INVITE passed. */
  confirmed: boolean;
  /** Non-zero while lingering: the FIFO entry that may close it. */
  lingerSeq: number;
  /** The backend whose `active` count holds this session. */
  counted: Backend | null;
}

/** One per backend: the connected UDP socket holdfast talks to it through. */
interface UdpUpstream {
  readonly backend: Backend;
  readonly socket: dgram.Socket;
  /** Our address as the backend sees it (for Via, and Record-Route on a wildcard listener). */
  localHost: string;
  localPort: number;
  /** The backend's resolved address, to recognise its datagrams on the service socket. */
  remoteHost: string;
  ready: boolean;
}

/** Where a client request came in. */
type Ingress = { readonly transport: 'udp' } | { readonly transport: 'tcp'; readonly conn: ClientConn };

/** A SIP-over-TCP client connection and its upstream connections. */
interface ClientConn {
  readonly socket: Socket;
  readonly framer: SipStreamFramer;
  readonly upstreams: Map<Backend, UpstreamConn>;
  readonly remoteHost: string;
  readonly remotePort: number;
  /** The address our Via and Record-Route name on this connection. */
  readonly viaHost: string;
  readonly viaPort: number;
  flow: FlowHandle;
  /**
   * The backend this connection comes from (a UAS sending its BYE / re-INVITE to our Record-Route
   * on a connection of its own), null for a client; undefined until its first request tells.
   */
  fromBackend: Backend | null | undefined;
  lastActivity: number;
  idleTimer: TimerHandle | null;
  /** Paused because an upstream's buffer is over the high-water mark. */
  pausedForUpstream: boolean;
  done: boolean;
}

/** One upstream TCP connection of a client connection. */
interface UpstreamConn extends UpstreamLink {
  readonly owner: ClientConn;
  readonly framer: SipStreamFramer;
  /** Messages written before the connect completed: [what to send, the client's original bytes, attempt]. */
  pending: { out: Buffer; original: Buffer; attempt: number }[];
  pendingBytes: number;
}

/** Counters of what the forwarder did beside drops (which go to channels.messageDrop). */
export interface SipForwarderStats {
  /** In-dialog requests (To tag present) for a Call-ID with no open session: opened on the balancer's pick. */
  orphanInDialog: number;
  /** Malformed client messages forwarded unparsed (sip.malformed: forward). */
  forwardedUnparsed: number;
  /** 503 answered (no backend, table full). */
  refused: number;
  /** 483 answered (Max-Forwards reached 0). */
  tooManyHops: number;
  /** Sessions ended by the protocol (BYE, final failure) and closed after the linger. */
  ended: number;
  /**
   * Client UDP datagrams sent on to a backend (requests and responses). With the drops
   * (channels.messageDrop), forwardedUnparsed, refused, tooManyHops, keepAlives, ownAcks, answered
   * and admission's own drops, every client datagram lands in exactly one counter (issue 21).
   */
  forwarded: number;
  /** CRLF keep-alive datagrams (RFC 5626 §4.4.1) answered by nothing. */
  keepAlives: number;
  /** ACKs of the 503/483 answers of our own, absorbed (RFC 3261 §17.2.1). */
  ownAcks: number;
  /** Other answers of our own (400 to a request whose SDP cannot be relayed). */
  answered: number;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** Receive buffer asked for the client-facing UDP socket (the same as the UDP relay's service socket). */
export const SERVICE_RECV_BUFFER_BYTES = 4 * 1024 * 1024;

/** First port of the stable upstream block: above Linux's default ephemeral range (32768–60999). */
export const UPSTREAM_PORT_MIN = 61_000;
const UPSTREAM_PORTS = 65_536 - UPSTREAM_PORT_MIN;

/**
 * The local port of the UDP upstream socket toward backend `index` when the service listens on a
 * concrete address: the same on every dispatcher of a group (issue 7). A UAS answers a call's later
 * requests to where its INVITE came from (sipp does; RFC 3261 §18.2.2 leaves it to the Via), so after
 * a takeover the new master must send from the old master's VIP:port, or the 200 of a BYE is lost.
 */
export function stableUpstreamPort(listenHost: string, servicePort: number, index: number): number {
  return UPSTREAM_PORT_MIN + ((fnv1a(`${listenHost}|${servicePort}`, 0x811c9dc5) + index) % UPSTREAM_PORTS);
}

/** 32-bit FNV-1a of `s` from `seed`. */
function fnv1a(s: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** A 64-bit hash (two FNV-1a lanes) as 16 hex digits. */
function hash64(s: string): string {
  return fnv1a(s, 0x811c9dc5).toString(16).padStart(8, '0') + fnv1a(s, 0x050c5d1f).toString(16).padStart(8, '0');
}

/**
 * Our branch for a request forwarded on `leg` ('u' toward a backend, 'c' toward a client): stable
 * for retransmissions, the same for an INVITE and its CANCEL / non-2xx ACK (RFC 3261 §16.11).
 */
export function proxyBranch(m: SipMessage, leg: 'u' | 'c'): string {
  const top = m.vias[0]!;
  const id =
    top.branch !== null && top.branch.startsWith(BRANCH_MAGIC_COOKIE)
      ? top.branch
      : `${m.raw.toString('latin1', top.start, top.end)}|${m.cseq}|${m.fromTag ?? ''}|${m.uri}`;
  return HOLDFAST_BRANCH_PREFIX + hash64(`${leg}|${id}|${formatSipHostPort(top.host, top.port)}|${m.callId}`);
}

function isOurs(via: SipVia | undefined, host: string, port: number): boolean {
  return via !== undefined && via.branch !== null && via.branch.startsWith(HOLDFAST_BRANCH_PREFIX) && via.host === host && via.port === port;
}

/** An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as plain IPv4. */
function unmapIPv4(host: string): string {
  return host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
}

function onlyLineEnds(buf: Buffer): boolean {
  for (const c of buf) if (c !== 13 && c !== 10 && c !== 32 && c !== 9) return false;
  return true;
}

export class SipForwarder implements Forwarder {
  /** Counters beside the drop events (for tests, status and logs). */
  readonly stats: SipForwarderStats = { orphanInDialog: 0, forwardedUnparsed: 0, refused: 0, tooManyHops: 0, ended: 0, forwarded: 0, keepAlives: 0, ownAcks: 0, answered: 0 };
  private state: 'open' | 'closing' | 'destroyed' = 'open';
  private readonly service: string;
  private readonly maxMessageBytes: number;
  /** The UDP bound: the smaller of sip.maxMessageBytes and sip.maxDatagramBytes. */
  private readonly maxDatagramBytes: number;
  private readonly highWaterMark: number;
  /** The client-facing UDP socket and its bound address. */
  private udp: dgram.Socket | null = null;
  private udpAddress: HostPort | null = null;
  /** The service's TCP address (from the first connection), when there is no UDP socket. */
  private tcpAddress: HostPort | null = null;
  private readonly upstreams = new Map<Backend, UdpUpstream>();
  /** Upstreams being opened after bind (one attempt per backend at a time), and the host they bind on. */
  private readonly upstreamOpening = new Map<Backend, Promise<void>>();
  private listenHost = '';
  /** "ip:port" of each backend → its upstream (recognises backend datagrams on the service socket). */
  private readonly backendByAddress = new Map<string, UdpUpstream>();
  /** Side records, one per open session of this forwarder (bounded by the session table). */
  private readonly records = new Map<SessionHandle, SipSession>();
  private unsubscribeClose: (() => void) | null;
  /**
   * The TCP connection holding each signalling flow (bounded by the connections). A flow handle is a
   * reused slot: once its flow leaves the table (remove, removeSession, the sweep, replication) the
   * connection forgets it, else it would later act on the flow of another client in that slot.
   */
  private readonly connByFlow = new Map<FlowHandle, ClientConn>();
  private unsubscribeFlowRemove: (() => void) | null;
  /** Lingering sessions in deadline order; `lingerHead` is the first live index. */
  private lingerQueue: { h: SessionHandle; seq: number; at: number }[] = [];
  private lingerHead = 0;
  private lingerSeq = 0;
  private lingerTimer: TimerHandle | null = null;
  private readonly conns = new Set<ClientConn>();
  /** "host|port" of each TCP connection's peer → the connection: a session's TCP client by its record. */
  private readonly connByAddress = new Map<string, ClientConn>();
  /**
   * Our branch on a request a backend sent on a connection of its own → that connection, so that the
   * client's response goes back on it (RFC 3261 §18.2.2). Entries go with the final response; at most
   * INBOUND_BRANCHES_MAX, the oldest forgotten first (its response then goes on our upstream to the
   * backend, which a UAS also accepts).
   */
  private readonly inboundByBranch = new Map<string, ClientConn>();
  private closed: Promise<void> | null = null;
  private resolveClosed: (() => void) | null = null;
  /** Issue 6: SDP rewriting and the media relay (sip-media.ts). */
  readonly media: SipMediaGateway;

  constructor(private readonly rt: ServiceRuntime) {
    this.service = rt.config.name;
    this.maxMessageBytes = rt.config.sip.maxMessageBytes;
    this.maxDatagramBytes = Math.min(rt.config.sip.maxMessageBytes, rt.config.sip.maxDatagramBytes);
    this.highWaterMark = rt.config.http.highWaterMarkBytes;
    this.unsubscribeClose = rt.sessions.table.onClose((h) => this.sessionClosed(h));
    this.unsubscribeFlowRemove = rt.flows.onRemove((h) => this.flowRemoved(h));
    this.media = new SipMediaGateway(rt, (reason, transport) => this.drop(reason, transport));
  }

  // ------------------------------------------------------------------ lifecycle

  /**
   * Binds the client-facing UDP socket at `at` and one connected upstream socket per backend; resolves
   * with the bound service address once all are ready.
   */
  async bindDatagram(at: HostPort): Promise<HostPort> {
    const type = net.isIPv6(at.host) ? 'udp6' : 'udp4';
    // Every client's signalling lands on this one socket: the kernel's default 208 KiB receive buffer
    // overflowed at 3 200 calls/s in bench/sip (drops counted by `ss -uam`); the kernel caps the request.
    const socket = dgram.createSocket({ type, reuseAddr: false, recvBufferSize: SERVICE_RECV_BUFFER_BYTES });
    socket.on('error', noop);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ address: at.host, port: at.port, exclusive: true }, () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      socket.close();
      throw new ListenError(`udp ${formatHostPort(at)}`, { cause: err });
    }
    const bound = socket.address();
    this.udp = socket;
    this.udpAddress = { host: bound.address, port: bound.port };
    socket.on('message', (msg, rinfo) => this.onServiceDatagram(msg, rinfo.address, rinfo.port));
    this.listenHost = at.host;
    await Promise.all(this.rt.backends.map((b) => this.openUpstream(b, at.host)));
    return this.udpAddress;
  }

  handle(socket: Socket): void {
    if (this.state !== 'open' || socket.destroyed) {
      socket.on('error', noop);
      socket.destroy();
      return;
    }
    this.acceptConnection(socket);
  }

  /** Stops taking messages: UDP sockets close now, TCP connections are ended; resolves once all closed. */
  close(): Promise<void> {
    if (this.state === 'open') this.state = 'closing';
    if (!this.closed) {
      this.closed = new Promise<void>((resolve) => {
        this.resolveClosed = resolve;
      });
      this.closeDatagram();
      void this.media.close();
      for (const conn of this.conns) {
        for (const up of conn.upstreams.values()) up.socket.end();
        conn.socket.end();
      }
      this.maybeClosed();
    }
    return this.closed;
  }

  destroy(_err?: Error): void {
    this.state = 'destroyed';
    this.closeDatagram();
    void this.media.close();
    for (const conn of [...this.conns]) this.closeConn(conn);
    this.lingerTimer?.cancel();
    this.lingerTimer = null;
    this.unsubscribeClose?.();
    this.unsubscribeClose = null;
    this.unsubscribeFlowRemove?.();
    this.unsubscribeFlowRemove = null;
    this.maybeClosed();
  }

  /**
   * The health monitor took `backend` down (SessionRouter already re-pinned its sessions): TCP
   * connections to it are closed, their held messages routed to the new pins. UDP needs nothing.
   */
  backendDown(backend: Backend): void {
    const table = this.rt.sessions.table;
    for (const rec of this.records.values()) {
      const now = rec.counted === backend ? this.rt.backends[table.backend(rec.handle)] : undefined;
      if (now && now !== backend) this.account(rec, now);
    }
    for (const conn of this.conns) {
      const up = conn.upstreams.get(backend);
      if (up) this.upstreamFailed(up, null);
    }
  }

  /**
   * The VIP moved away (issue 7): the service and upstream UDP sockets close; sessions and TCP
   * connections stay, and the next bindDatagram serves the sessions again.
   */
  async unbindDatagram(): Promise<void> {
    this.closeDatagram();
  }

  private closeDatagram(): void {
    for (const up of this.upstreams.values()) {
      try {
        up.socket.close();
      } catch {
        // already closed
      }
    }
    this.upstreams.clear();
    this.backendByAddress.clear();
    if (this.udp) {
      try {
        this.udp.close();
      } catch {
        // already closed
      }
      this.udp = null;
    }
  }

  private maybeClosed(): void {
    if (this.conns.size > 0 || !this.resolveClosed) return;
    this.unsubscribeClose?.();
    this.unsubscribeClose = null;
    this.unsubscribeFlowRemove?.();
    this.unsubscribeFlowRemove = null;
    this.lingerTimer?.cancel();
    this.lingerTimer = null;
    this.resolveClosed();
    this.resolveClosed = null;
  }

  // ------------------------------------------------------------------ UDP

  /** The backend's upstream socket: on the listen host when it is a concrete address of the backend's family. */
  private async openUpstream(backend: Backend, listenHost: string): Promise<void> {
    const owner = this.udp;
    const v6 = net.isIPv6(backend.host);
    const bindHost = isWildcard(listenHost) || net.isIPv6(listenHost) !== v6 ? undefined : listenHost;
    // The stable port when free (see stableUpstreamPort), else any.
    const stable = bindHost && this.udpAddress ? stableUpstreamPort(bindHost, this.udpAddress.port, backend.index) : 0;
    let up = stable !== 0 ? await this.bindUpstream(backend, bindHost, stable) : 'unbound';
    if (up === 'unbound') up = await this.bindUpstream(backend, bindHost, 0);
    if (up === null || up === 'unbound') {
      // The backend's name does not resolve (or the address is unusable): it cannot be reached.
      this.rt.failures.reportFailure(backend, 'refused');
      return;
    }
    const socket = up.socket;
    if (this.udp !== owner || this.state === 'destroyed' || this.upstreams.has(backend)) {
      // The service socket closed (or was bound again) while this one opened: not ours to keep.
      socket.close();
      return;
    }
    const local = socket.address();
    const remote = socket.remoteAddress();
    up.localHost = local.address;
    up.localPort = local.port;
    up.remoteHost = remote.address;
    up.ready = true;
    this.upstreams.set(backend, up);
    this.backendByAddress.set(`${remote.address}:${remote.port}`, up);
  }

  /** A connected upstream socket toward `backend` bound at `bindHost`:`port`; 'unbound': the bind failed, null: the connect. */
  private async bindUpstream(backend: Backend, bindHost: string | undefined, port: number): Promise<UdpUpstream | 'unbound' | null> {
    let bound = false;
    const socket = dgram.createSocket(net.isIPv6(backend.host) ? 'udp6' : 'udp4');
    const up: UdpUpstream = { backend, socket, localHost: '', localPort: 0, remoteHost: backend.host, ready: false };
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // An ICMP port unreachable from the backend (connected socket): passive detection.
      if (err.code === 'ECONNREFUSED' && this.state === 'open') this.rt.failures.reportFailure(backend, 'refused');
    });
    socket.on('message', (msg) => this.onUpstreamDatagram(up, msg));
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ ...(bindHost ? { address: bindHost } : {}), port }, () => {
          bound = true;
          socket.connect(backend.port, backend.host, (err?: Error) => {
            socket.off('error', reject);
            if (err) reject(err);
            else resolve();
          });
        });
      });
      return up;
    } catch {
      try {
        socket.close();
      } catch {
        // not bound
      }
      return bound ? null : 'unbound';
    }
  }

  /**
   * The backend's upstream, opened now when it is missing (its open failed at bind time, e.g. a name
   * that did not resolve): else a backend the probes bring back would have every message dropped.
   * One attempt per backend at a time; a failed one reports the backend down again (openUpstream).
   */
  private upstreamFor(backend: Backend): Promise<UdpUpstream | undefined> {
    const up = this.upstreams.get(backend);
    if (up || !this.udp || this.state !== 'open') return Promise.resolve(up);
    let opening = this.upstreamOpening.get(backend);
    if (!opening) {
      opening = this.openUpstream(backend, this.listenHost).finally(() => this.upstreamOpening.delete(backend));
      this.upstreamOpening.set(backend, opening);
    }
    return opening.then(() => this.upstreams.get(backend));
  }

  /** A datagram on the service socket: from a client, or a request from a backend (Record-Route). */
  private onServiceDatagram(buf: Buffer, host: string, port: number): void {
    if (this.state !== 'open') return;
    if (buf.length > this.maxDatagramBytes) return this.drop('too-large', 'udp');
    if (onlyLineEnds(buf)) {
      this.stats.keepAlives++; // a CRLF keep-alive
      return;
    }
    const fromBackend = this.backendByAddress.get(`${host}:${port}`);
    const r = parseSipMessage(buf, { transport: 'udp' });
    if (!r.ok) {
      if (fromBackend) return this.drop(r.reason, 'udp');
      return this.malformed(buf, r.reason, host, port, { transport: 'udp' });
    }
    const m = r.message;
    if (m.kind === 'response') return this.responseFromClientUdp(m);
    if (fromBackend) return this.requestFromBackend(m, fromBackend.backend, host, port, null);
    this.requestFromClient(m, host, port, { transport: 'udp' }, buf, 0);
  }

  /** A datagram on a backend's upstream socket: a response, or a request of the backend's. */
  private onUpstreamDatagram(up: UdpUpstream, buf: Buffer): void {
    if (this.state !== 'open') return;
    if (buf.length > this.maxDatagramBytes) return this.drop('too-large', 'udp');
    if (onlyLineEnds(buf)) return;
    const r = parseSipMessage(buf, { transport: 'udp' });
    if (!r.ok) return this.drop(r.reason, 'udp');
    const m = r.message;
    if (up.backend.state !== 'up') this.rt.failures.reportSuccess(up.backend);
    if (m.kind === 'request') return this.requestFromBackend(m, up.backend, up.remoteHost, up.backend.port, null);
    if (!isOurs(m.vias[0], up.localHost, up.localPort)) return this.drop('unknown-via', 'udp');
    const next = m.vias[1];
    if (!next) return this.drop('unroutable', 'udp');
    this.responseLifecycle(m);
    if (next.transport !== 'UDP') return this.drop('unroutable', 'udp');
    const target = responseTarget(next);
    this.media.handle(m, 'backend', 'udp', (out) => this.sendUdp(applyEdits(out, [removeTopVia(out)]), target.host, target.port), null);
  }

  /** A response from a client on the service socket: to a request a backend sent through us. */
  private responseFromClientUdp(m: SipMessage): void {
    const top = m.vias[0]!;
    if (!isOurs(top, top.host, top.port ?? -1) || !this.isOurAddress(top.host, top.port ?? SIP_DEFAULT_PORT)) {
      return this.drop('unknown-via', 'udp');
    }
    const next = m.vias[1];
    if (!next) return this.drop('unroutable', 'udp');
    this.responseLifecycle(m);
    const target = responseTarget(next);
    let up = this.backendByAddress.get(`${target.host}:${target.port}`);
    if (!up) {
      const h = this.rt.sessions.table.find(m.callId);
      const b = h === NO_SESSION ? undefined : this.rt.backends[this.rt.sessions.table.backend(h)];
      up = b ? this.upstreams.get(b) : undefined;
    }
    if (!up) return this.drop('unroutable', 'udp');
    const to = up;
    this.media.handle(
      m,
      'client',
      'udp',
      (out) => {
        this.stats.forwarded++;
        this.sendUpstream(to, applyEdits(out, [removeTopVia(out)]));
      },
      null,
    );
  }

  private sendUdp(buf: Buffer, host: string, port: number): void {
    if (!this.udp || this.state === 'destroyed') return;
    try {
      this.udp.send(buf, port, host, noop);
    } catch {
      // the socket closed under us (close()): the message is lost like any UDP datagram
    }
  }

  private sendUpstream(up: UdpUpstream, buf: Buffer): void {
    if (!up.ready || this.state === 'destroyed') return;
    try {
      up.socket.send(buf, noop);
    } catch {
      // closed
    }
  }

  // ------------------------------------------------------------------ requests from clients

  /**
   * Routes a client's request to its session's backend. `original` and `attempt`: the bytes as
   * received and how many backends already failed them (TCP re-routes after a failed connect).
   */
  private requestFromClient(m: SipMessage, host: string, port: number, ingress: Ingress, original: Buffer, attempt: number): void {
    const transport = ingress.transport;
    // The ACK of a 503/483 of ours (its To tag is ours): absorbed here, as the UAS that answered
    // (RFC 3261 §17.2.1); no backend knows the transaction.
    if (m.method === 'ACK' && m.toTag === HOLDFAST_TO_TAG) {
      this.stats.ownAcks++;
      return;
    }
    if (m.maxForwards === 0) {
      if (m.method === 'ACK') return this.drop('max-forwards', transport);
      this.stats.tooManyHops++;
      return this.answer(m, 483, 'Too Many Hops', host, port, ingress, []);
    }
    const table = this.rt.sessions.table;
    const existing = table.find(m.callId);

    // Issue 8 (SA2C, SARA III.B): a request of an unknown Call-ID opens a session ('new'), even with
    // a To tag (a forged or stale one opens a session all the same); any request of an open session
    // is 'established'. Asked once per message
    // (attempt 0: a TCP re-route after a failed connect was admitted already), before the flow is
    // tracked, so that a refusal holds no flow. ACK, CANCEL and BYE are never refused: they complete
    // or end sessions, and losing them adds load — a lost ACK makes the UAS retransmit its 2xx for
    // 64 x T1 (§13.3.1.4), a lost BYE is retransmitted for 64 x T1 and keeps the call's media and
    // state alive, a lost CANCEL leaves the INVITE ringing until it times out.
    if (attempt === 0 && m.method !== 'ACK' && m.method !== 'CANCEL' && m.method !== 'BYE') {
      if (!this.admitted(m, existing === NO_SESSION ? 'new' : 'established', host, port, ingress)) return;
    }

    // The signalling flow, before any new session is opened: a full flow table refuses new ones.
    const flow = this.trackFlow(host, port, ingress);
    if (flow === NO_FLOW && existing === NO_SESSION) {
      if (channels.sessionRefuse.hasSubscribers) {
        channels.sessionRefuse.publish({ service: this.service, reason: 'flows-full' } satisfies SessionRefuseEvent);
      }
      return this.refuse(m, host, port, ingress);
    }

    let route: SessionRoute;
    if (existing !== NO_SESSION) {
      route = this.rt.sessions.follow(existing);
    } else if (m.method === 'ACK' || m.method === 'CANCEL' || m.method === 'BYE') {
      // Nothing to follow (a BYE of an unknown Call-ID ends nothing here): forwarded statelessly
      // (§16.11) without leaving a session behind.
      const pick = this.rt.balancer.pick();
      if (pick.type === 'none') {
        if (m.method === 'ACK') return this.drop('no-backend', transport);
        return this.refuse(m, host, port, ingress);
      }
      return this.forwardRequest(m, pick.backend, host, port, ingress, original, attempt);
    } else {
      route = this.rt.sessions.open(m.callId);
      if (route.type === 'opened' && m.toTag !== null) this.stats.orphanInDialog++;
    }
    if (route.type === 'refused') return this.refuse(m, host, port, ingress);

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
      };
      this.records.set(h, rec);
    } else {
      rec.clientHost = host;
      rec.clientPort = port;
      rec.transport = transport;
    }
    // Replicated to the backups (issue 7): a backup that takes over rebuilds the record from it.
    this.rt.sessions.table.setData(h, `${transport} ${port} ${host}`);
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
    this.media.handle(
      m,
      'client',
      transport,
      (out) => this.forwardRequest(out, backend, host, port, ingress, original, attempt),
      (status, reason, extra) => {
        if (status === 503) this.stats.refused++;
        else this.stats.answered++;
        this.answer(m, status, reason, host, port, ingress, extra);
      },
    );
  }

  /** Rewrites a client's request (Via, Max-Forwards, Record-Route, Route) and sends it to `backend`. */
  private forwardRequest(
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

  private recordRoute(host: string, port: number, transport: SipTransport): string {
    return `<sip:${formatSipHostPort(host, port)};transport=${transport};lr>`;
  }

  /**
   * The edits that make a received request ours to forward: the top Via annotated for its source,
   * our Via above it, Max-Forwards decremented (or added), an optional Record-Route above any other,
   * and the top Route removed when it names us.
   */
  private requestEdits(m: SipMessage, srcHost: string, srcPort: number, via: string, recordRoute: string | null): SipEdit[] {
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
  private topRouteIfOurs(m: SipMessage): SipEdit | null {
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

  private isOurAddress(host: string, port: number): boolean {
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
  private viaHost(serviceHost: string, up: UdpUpstream | null): string {
    if (!isWildcard(serviceHost)) return serviceHost;
    return up?.localHost ?? serviceHost;
  }

  /** Inserts (or finds) the client's signalling flow and marks it seen; NO_FLOW when the table is full. */
  private trackFlow(host: string, port: number, ingress: Ingress): FlowHandle {
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
  private connFlow(conn: ClientConn): FlowHandle {
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
  private flowRemoved(h: FlowHandle): void {
    const conn = this.connByFlow.get(h);
    if (!conn) return;
    this.connByFlow.delete(h);
    if (conn.flow === h) conn.flow = NO_FLOW;
  }

  // ------------------------------------------------------------------ requests from backends

  /**
   * A request a backend sent (a BYE, re-INVITE, NOTIFY of the callee): to the session's client, with
   * our Via so that the client's response comes back through us. `upstream`: the TCP connection it
   * came on (null: UDP).
   */
  private requestFromBackend(
    m: SipMessage,
    backend: Backend,
    host: string,
    port: number,
    upstream: UpstreamConn | null,
    inbound: ClientConn | null = null,
  ): void {
    const transport: SipTransport = upstream || inbound ? 'tcp' : 'udp';
    if (m.method === 'ACK' && m.toTag === HOLDFAST_TO_TAG) return; // the ACK of our own 483
    const h = this.rt.sessions.table.find(m.callId);
    const rec = h === NO_SESSION ? undefined : (this.records.get(h) ?? this.replicatedRecord(h));
    if (!rec) return this.drop('no-session', transport);
    this.rt.sessions.table.touch(h);
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
  private replicatedRecord(h: SessionHandle): SipSession | undefined {
    const data = this.rt.sessions.table.data(h);
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
    };
    this.records.set(h, rec);
    return rec;
  }

  // ------------------------------------------------------------------ session lifecycle

  /** What a response passing through says about its session (either direction). */
  private responseLifecycle(m: SipMessage): void {
    const table = this.rt.sessions.table;
    const h = table.find(m.callId);
    if (h === NO_SESSION) return;
    table.touch(h);
    const rec = this.records.get(h);
    if (!rec || m.status < 200) return;
    if (m.method === 'INVITE') {
      if (m.status < 300) rec.confirmed = true;
      else if (!rec.confirmed) this.startLinger(rec);
    }
    if (rec.confirmed && (m.status === 481 || m.status === 408)) this.startLinger(rec);
    else if (!rec.dialog && m.method !== 'CANCEL') this.startLinger(rec);
  }

  private account(rec: SipSession, backend: Backend): void {
    if (rec.counted === backend) return;
    if (rec.counted) rec.counted.active--;
    backend.active++;
    rec.counted = backend;
  }

  private sessionClosed(h: SessionHandle): void {
    const rec = this.records.get(h);
    if (!rec) return;
    this.records.delete(h);
    if (rec.counted) rec.counted.active--;
    rec.counted = null;
  }

  private startLinger(rec: SipSession): void {
    if (rec.lingerSeq !== 0) return;
    rec.lingerSeq = ++this.lingerSeq;
    this.media.end(rec.handle);
    this.lingerQueue.push({ h: rec.handle, seq: rec.lingerSeq, at: this.rt.clock.now() + DIALOG_LINGER_MS });
    if (!this.lingerTimer) this.lingerTimer = this.rt.clock.setTimeout(() => this.lingerDue(), DIALOG_LINGER_MS);
  }

  /** The one linger timer: closes every session whose linger is over, then re-arms for the next. */
  private lingerDue(): void {
    this.lingerTimer = null;
    const now = this.rt.clock.now();
    const q = this.lingerQueue;
    while (this.lingerHead < q.length && q[this.lingerHead]!.at <= now) {
      const e = q[this.lingerHead++]!;
      const rec = this.records.get(e.h);
      if (rec && rec.lingerSeq === e.seq) {
        this.stats.ended++;
        this.rt.sessions.close(e.h, 'ended');
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
  private refuse(m: SipMessage, host: string, port: number, ingress: Ingress, retryAfterS: number | null = RETRY_AFTER_S): void {
    if (m.method === 'ACK') return this.drop('no-session', ingress.transport); // an ACK is never answered
    this.stats.refused++;
    this.answer(m, 503, 'Service Unavailable', host, port, ingress, retryAfterS === null ? [] : [`Retry-After: ${retryAfterS}`]);
  }

  /**
   * Issue 8: SA2C's verdict on a client request. A refused new session is answered 503 with the
   * verdict's Retry-After (§21.5.4). A degraded request of an established session is dropped
   * silently over UDP (counted by the controller's admission event): the client's retransmission
   * (Timer A/E) retries it, by when the load may have eased. Over TCP nothing is retransmitted
   * (§17.1.1.2), so it is answered 503 without Retry-After instead of being left to time out.
   */
  private admitted(m: SipMessage, kind: 'new' | 'established', host: string, port: number, ingress: Ingress): boolean {
    const verdict = this.rt.admission.decide(kind);
    if (verdict.type === 'admit') return true;
    if (verdict.type === 'refuse') this.refuse(m, host, port, ingress, verdict.retryAfterS);
    else if (ingress.transport === 'tcp') this.refuse(m, host, port, ingress, null);
    return false;
  }

  /** A response of ours to a client's request, sent where the response would go (§18.2.2). */
  private answer(m: SipMessage, status: number, reason: string, host: string, port: number, ingress: Ingress, extra: string[]): void {
    const out = buildSipResponse(m, status, reason, { srcHost: host, srcPort: port, toTag: HOLDFAST_TO_TAG, extra });
    if (ingress.transport === 'tcp') {
      this.writeToClient(ingress.conn, out);
      return;
    }
    // received is the source host (added whenever sent-by differs); the port is rport's or sent-by's.
    const top = m.vias[0]!;
    const target = top.rport !== null ? port : (top.port ?? SIP_DEFAULT_PORT);
    this.sendUdp(out, host, target);
  }

  private drop(reason: DropReason, transport: SipTransport): void {
    if (channels.messageDrop.hasSubscribers) {
      channels.messageDrop.publish({ service: this.service, reason, transport } satisfies MessageDropEvent);
    }
  }

  /** A client message the inspector rejected: dropped, or (sip.malformed: forward) sent on its flow's pin. */
  private malformed(buf: Buffer, reason: 'malformed' | 'too-large', host: string, port: number, ingress: Ingress): void {
    if (reason === 'too-large' || this.rt.config.sip.malformed === 'drop') return this.drop(reason, ingress.transport);
    const flows = this.rt.flows;
    let flow: FlowHandle;
    if (ingress.transport === 'tcp') flow = this.connFlow(ingress.conn);
    else {
      const at = this.udpAddress!;
      flow = flows.lookup(addressKey(host), port, addressKey(at.host), at.port, PROTO_UDP);
    }
    const session = flow === NO_FLOW ? NO_SESSION : flows.session(flow);
    const table = this.rt.sessions.table;
    let backend = session !== NO_SESSION && table.isOpen(session) ? this.rt.backends[table.backend(session)] : undefined;
    if (!backend || backend.state === 'down') {
      const pick = this.rt.balancer.pick();
      backend = pick.type === 'pick' ? pick.backend : undefined;
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

  // ------------------------------------------------------------------ TCP

  private acceptConnection(socket: Socket): void {
    const local = { host: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    if (!this.tcpAddress) this.tcpAddress = local;
    const configured = this.udpAddress ?? this.tcpAddress;
    const conn: ClientConn = {
      socket,
      framer: new SipStreamFramer(this.maxMessageBytes),
      upstreams: new Map(),
      remoteHost: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      viaHost: isWildcard(configured.host) ? local.host : configured.host,
      viaPort: local.port,
      flow: NO_FLOW,
      fromBackend: undefined,
      lastActivity: this.rt.clock.now(),
      idleTimer: null,
      pausedForUpstream: false,
      done: false,
    };
    this.conns.add(conn);
    this.connByAddress.set(`${conn.remoteHost}|${conn.remotePort}`, conn);
    if (channels.connectionOpen.hasSubscribers) {
      channels.connectionOpen.publish({ service: this.service, protocol: 'sip' } satisfies ConnectionEvent);
    }
    socket.setNoDelay(true);
    socket.on('error', noop);
    socket.on('close', () => this.closeConn(conn));
    socket.on('end', () => socket.end());
    socket.on('drain', () => {
      for (const up of conn.upstreams.values()) up.socket.resume();
    });
    socket.on('data', (chunk: Buffer) => {
      conn.lastActivity = this.rt.clock.now();
      const flow = this.connFlow(conn);
      if (flow !== NO_FLOW) this.rt.flows.seen(flow); // pings and partial messages count too
      conn.framer.push(chunk);
      for (let f = conn.framer.next(); f && !conn.done; f = conn.framer.next()) {
        if (f.type === 'ping') this.writeTo(socket, Buffer.from('\r\n'));
        else if (f.type === 'error') {
          this.drop(f.reason, 'tcp');
          socket.destroy();
        } else this.onClientTcpMessage(conn, f.bytes);
      }
    });
    const idleMs = this.rt.config.sip.tcpIdleTimeoutMs;
    conn.idleTimer = this.rt.clock.setTimeout(() => this.checkIdle(conn, idleMs), idleMs);
  }

  /** The idle timer wakes once per period and re-arms for the remainder (no reset per message). */
  private checkIdle(conn: ClientConn, idleMs: number): void {
    conn.idleTimer = null;
    if (conn.done) return;
    const idleFor = this.rt.clock.now() - conn.lastActivity;
    if (idleFor >= idleMs) {
      conn.socket.destroy();
      return;
    }
    conn.idleTimer = this.rt.clock.setTimeout(() => this.checkIdle(conn, idleMs), idleMs - idleFor);
  }

  private closeConn(conn: ClientConn): void {
    if (conn.done) return;
    conn.done = true;
    conn.idleTimer?.cancel();
    conn.idleTimer = null;
    for (const up of conn.upstreams.values()) closeUpstream(up);
    conn.upstreams.clear();
    const flow = this.connFlow(conn);
    if (flow !== NO_FLOW) this.rt.flows.remove(flow);
    conn.flow = NO_FLOW;
    conn.socket.destroy();
    this.conns.delete(conn);
    const key = `${conn.remoteHost}|${conn.remotePort}`;
    if (this.connByAddress.get(key) === conn) this.connByAddress.delete(key);
    if (channels.connectionClose.hasSubscribers) {
      channels.connectionClose.publish({ service: this.service, protocol: 'sip' } satisfies ConnectionEvent);
    }
    this.maybeClosed();
  }

  private onClientTcpMessage(conn: ClientConn, bytes: Buffer, attempt = 0): void {
    if (this.state !== 'open') return;
    const r = parseSipMessage(bytes, { transport: 'tcp', maxMessageBytes: this.maxMessageBytes });
    if (!r.ok) {
      if (conn.fromBackend) return this.drop(r.reason, 'tcp'); // from backends: always dropped
      return this.malformed(bytes, r.reason, conn.remoteHost, conn.remotePort, { transport: 'tcp', conn });
    }
    const m = r.message;
    if (m.kind === 'request') {
      if (conn.fromBackend === undefined) conn.fromBackend = this.backendOfConnection(conn, m) ?? null;
      if (conn.fromBackend) return this.requestFromBackend(m, conn.fromBackend, conn.remoteHost, conn.remotePort, null, conn);
      return this.requestFromClient(m, conn.remoteHost, conn.remotePort, { transport: 'tcp', conn }, bytes, attempt);
    }
    // A response to a request a backend sent on one of this connection's upstreams, or on a
    // connection of its own (inboundByBranch).
    if (!isOurs(m.vias[0], conn.viaHost, conn.viaPort)) return this.drop('unknown-via', 'tcp');
    this.responseLifecycle(m);
    const branch = m.vias[0]!.branch!;
    const inbound = this.inboundByBranch.get(branch);
    if (inbound) {
      if (m.status >= 200) this.inboundByBranch.delete(branch);
      if (!inbound.done) {
        this.media.handle(m, 'client', 'tcp', (out) => this.writeToClient(inbound, applyEdits(out, [removeTopVia(out)])), null);
        return;
      }
    }
    const h = this.rt.sessions.table.find(m.callId);
    const b = h === NO_SESSION ? undefined : this.rt.backends[this.rt.sessions.table.backend(h)];
    const up = b ? conn.upstreams.get(b) : undefined;
    if (!up || up.closed) return this.drop('unroutable', 'tcp');
    this.media.handle(
      m,
      'client',
      'tcp',
      (out) => {
        this.writeTo(up.socket, applyEdits(out, [removeTopVia(out)]));
        this.checkUpstreamPressure(conn);
      },
      null,
    );
  }

  /**
   * The backend a TCP connection's first request says it comes from: its source address is the
   * backend's and its top Via names the backend's port (a connection's source port is ephemeral, but
   * a UAS's Via sent-by is its listening port, RFC 3261 §18.1.1, which no client on that host has).
   * A UAS sends its in-dialog requests to our Record-Route, the service address, on a new connection.
   */
  private backendOfConnection(conn: ClientConn, m: SipMessage): Backend | undefined {
    const viaPort = m.vias[0]!.port ?? SIP_DEFAULT_PORT;
    const src = unmapIPv4(conn.remoteHost);
    for (const b of this.rt.backends) {
      if (b.port !== viaPort) continue;
      const resolved = this.upstreams.get(b)?.remoteHost;
      if (unmapIPv4(b.host) === src || (resolved !== undefined && unmapIPv4(resolved) === src)) return b;
    }
    return undefined;
  }

  /** Sends a client's message to `backend` on this connection's upstream to it (connecting it first). */
  private writeUpstream(conn: ClientConn, backend: Backend, out: Buffer, original: Buffer | null, attempt: number): void {
    if (conn.done) return;
    let up = conn.upstreams.get(backend);
    if (!up || up.closed) up = this.connectUpstream(conn, backend);
    if (!up.connected) {
      if (original) {
        up.pending.push({ out, original, attempt });
        up.pendingBytes += out.length;
      } else {
        up.pending.push({ out, original: out, attempt: Number.MAX_SAFE_INTEGER });
        up.pendingBytes += out.length;
      }
    } else {
      this.writeTo(up.socket, out);
    }
    this.checkUpstreamPressure(conn);
  }

  private connectUpstream(conn: ClientConn, backend: Backend): UpstreamConn {
    const up = openUpstream(
      this.rt,
      backend,
      (socket): UpstreamConn => {
        const made: UpstreamConn = {
          owner: conn,
          backend,
          socket,
          framer: new SipStreamFramer(this.maxMessageBytes),
          connected: false,
          connectTimer: null,
          pending: [],
          pendingBytes: 0,
          closed: false,
        };
        conn.upstreams.set(backend, made);
        return made;
      },
      {
        failed: (kind) => this.upstreamFailed(up, kind),
        reset: () => {
          if (this.state === 'open') this.rt.failures.reportFailure(backend, 'reset');
        },
        connected: () => {
          for (const p of up.pending) up.socket.write(p.out);
          up.pending = [];
          up.pendingBytes = 0;
          this.checkUpstreamPressure(conn);
        },
        closed: () => {
          up.closed = true;
          if (conn.upstreams.get(backend) === up) conn.upstreams.delete(backend);
          this.checkUpstreamPressure(conn);
        },
      },
    );
    const socket = up.socket;
    socket.on('drain', () => this.checkUpstreamPressure(conn));
    socket.on('data', (chunk: Buffer) => {
      conn.lastActivity = this.rt.clock.now();
      const flow = this.connFlow(conn);
      if (flow !== NO_FLOW) this.rt.flows.touch(flow); // keeps the connection open: its flow too
      up.framer.push(chunk);
      for (let f = up.framer.next(); f && !up.closed; f = up.framer.next()) {
        if (f.type === 'ping') this.writeTo(socket, Buffer.from('\r\n'));
        else if (f.type === 'error') {
          this.drop(f.reason, 'tcp');
          up.closed = true;
          socket.destroy();
        } else this.onUpstreamTcpMessage(up, f.bytes);
      }
    });
    return up;
  }

  /**
   * An upstream that never connected (refused, reset, timeout; `kind` null: the monitor already took
   * the backend down) or that must go: report it, close it, route its held messages again.
   */
  private upstreamFailed(up: UpstreamConn, kind: BackendFailureKind | null): void {
    if (up.closed) return;
    closeUpstream(up);
    const conn = up.owner;
    if (conn.upstreams.get(up.backend) === up) conn.upstreams.delete(up.backend);
    const held = up.connected ? [] : up.pending;
    up.pending = [];
    up.pendingBytes = 0;
    // The monitor marks the backend down and SessionRouter re-pins before this returns.
    if (kind && this.state === 'open') this.rt.failures.reportFailure(up.backend, kind);
    for (const p of held) {
      // Bounded: every failure takes a backend down, so a message is tried on each at most once.
      if (p.attempt + 1 < this.rt.backends.length && !conn.done) this.onClientTcpMessage(conn, p.original, p.attempt + 1);
    }
    this.checkUpstreamPressure(conn);
  }

  private onUpstreamTcpMessage(up: UpstreamConn, bytes: Buffer): void {
    if (this.state === 'destroyed') return;
    const conn = up.owner;
    const r = parseSipMessage(bytes, { transport: 'tcp', maxMessageBytes: this.maxMessageBytes });
    if (!r.ok) return this.drop(r.reason, 'tcp');
    const m = r.message;
    if (m.kind === 'request') {
      return this.requestFromBackend(m, up.backend, up.socket.remoteAddress ?? up.backend.host, up.socket.remotePort ?? up.backend.port, up);
    }
    if (!isOurs(m.vias[0], conn.viaHost, conn.viaPort)) return this.drop('unknown-via', 'tcp');
    this.responseLifecycle(m);
    this.media.handle(m, 'backend', 'tcp', (out) => this.writeToClient(conn, applyEdits(out, [removeTopVia(out)])), null);
  }

  /** Writes to the client; over the high-water mark, every upstream of the connection pauses. */
  private writeToClient(conn: ClientConn, buf: Buffer): void {
    if (conn.done) return;
    this.writeTo(conn.socket, buf);
    if (conn.socket.writableLength > this.highWaterMark) {
      for (const up of conn.upstreams.values()) up.socket.pause();
    }
  }

  /** The client reads while no upstream holds more than the high-water mark. */
  private checkUpstreamPressure(conn: ClientConn): void {
    if (conn.done) return;
    let over = false;
    for (const up of conn.upstreams.values()) {
      if (up.pendingBytes + up.socket.writableLength > this.highWaterMark) over = true;
    }
    if (over && !conn.pausedForUpstream) {
      conn.pausedForUpstream = true;
      conn.socket.pause();
    } else if (!over && conn.pausedForUpstream) {
      conn.pausedForUpstream = false;
      conn.socket.resume();
    }
  }

  private writeTo(socket: Socket, buf: Buffer): void {
    if (socket.destroyed || !socket.writable) return;
    socket.write(buf);
  }
}
