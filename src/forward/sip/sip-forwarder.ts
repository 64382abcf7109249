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
import { formatHostPort, type HostPort } from '../../core/address.js';
import { ListenError } from '../../core/errors.js';
import type { Backend } from '../../core/backend.js';
import type { Forwarder } from '../../pipeline/index.js';
import { noop, SERVICE_RECV_BUFFER_BYTES } from './sip-common.js';
import { SipTcpTransport } from './sip-transport-tcp.js';

export {
  SIP_T1_MS,
  DIALOG_LINGER_MS,
  RETRY_AFTER_S,
  HOLDFAST_BRANCH_PREFIX,
  HOLDFAST_TO_TAG,
  DEFAULT_MAX_FORWARDS,
  INBOUND_BRANCHES_MAX,
  SERVICE_RECV_BUFFER_BYTES,
  UPSTREAM_PORT_MIN,
  stableUpstreamPort,
  proxyBranch,
  type SipForwarderStats,
} from './sip-common.js';

export class SipForwarder extends SipTcpTransport implements Forwarder {
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
    for (const rec of this.records.values()) {
      const now = rec.counted === backend ? this.router.backendOf(rec.handle) : undefined;
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

  protected closeDatagram(): void {
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

  protected maybeClosed(): void {
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
}
