/**
 * @module The UDP relay (`protocol: udp`, issue 5): client datagrams go through the flow table
 * (SARA III.A) to the backend their session is pinned to, and the backend's replies come back to the
 * client from the service's own socket, so the client only ever sees the service address.
 *
 * A client flow is <client ip:port, service ip:port, udp>. Its first datagram opens an anonymous
 * session (the balancer picks, SessionRouter pins) and inserts the flow as a signalling flow; every
 * later datagram marks it seen (new/inactive → established) and follows the session's pin, which
 * moves when its backend is down (counted by SessionRouter). A flow idle for sessions.flowTimeoutMs
 * is inactive but still pinned: a datagram revives it on the same backend. The session layer's
 * sweep purges it after twice the timeout; the relay then closes its upstream socket and its session.
 *
 * Upstream design (measured by bench/udp-relay.ts, see `createFlowSocketUpstream`): one connected
 * UDP socket per client flow. The kernel attributes replies to their flow, a reply can only come
 * from the flow's backend (a connected socket drops other sources), and an ICMP port unreachable
 * from a dead backend surfaces as ECONNREFUSED on the flow's socket: passive failure detection
 * (`reportFailure(backend, 'refused')`) without a probe.
 *
 * Bounded: one upstream socket (one file descriptor) per flow, at most udp.maxUpstreamSockets of them:
 * at the cap a new client is refused (sessionRefuse 'sockets-full') and a detached flow's datagram is
 * dropped (messageDrop 'no-socket'), so a flood of new sources cannot take the descriptors other
 * services, probes and the admin server need. Past the process's descriptor limit the socket cannot
 * bind and the datagram is dropped (messageDrop 'no-socket'), the flow retries on its next datagram.
 * While a flow's socket connects (one event-loop turn) at most PENDING_DATAGRAMS_PER_FLOW datagrams
 * and PENDING_BYTES_MAX bytes over the whole service wait; a send queue (libuv's, when the kernel
 * says EAGAIN) of SEND_QUEUE_MAX datagrams or more drops further datagrams (messageDrop 'queue-full').
 * Full flow table: a new client is refused (sessionRefuse 'flows-full'), established flows go on.
 * Bad input never throws out of a socket handler: every socket has an 'error' listener.
 */
import { flowHash } from '../../core/key-hash.js';
import dgram from 'node:dgram';
import type net from 'node:net';
import type { HostPort } from '../../core/address.js';
import { channels, type MessageDropEvent, type SessionRefuseEvent } from '../../core/diagnostics.js';
import { ListenError } from '../../core/errors.js';
import { formatHostPort } from '../../core/address.js';
import type { Backend } from '../../core/backend.js';
import { addressKey, NO_FLOW, PROTO_UDP, type FlowHandle } from '../../sessions/flow-table.js';
import { NO_SESSION, type SessionHandle } from '../../sessions/session-table.js';
import { routerOf, type Forwarder, type RouteHint, type Router, type ServiceRuntime } from '../../pipeline/index.js';

/** Datagrams a flow may queue while its upstream socket binds and connects (one event-loop turn). */
export const PENDING_DATAGRAMS_PER_FLOW = 8;
/** Bytes queued for connecting upstream sockets over the whole service. */
export const PENDING_BYTES_MAX = 4 * 1024 * 1024;
/** A socket with this many datagrams in libuv's send queue (the kernel said EAGAIN) drops more. */
export const SEND_QUEUE_MAX = 1024;
/**
 * SO_RCVBUF of the service socket, which every client shares: bursts from many flows wait in the
 * kernel while the relay is busy instead of being dropped. Kernel memory, capped by
 * net.core.rmem_max (the kernel silently takes the smaller).
 */
export const SERVICE_RECV_BUFFER_BYTES = 4 * 1024 * 1024;

/** A client flow as the relay knows it, beside its flow-table entry. */
export interface RelayFlow {
  readonly handle: FlowHandle;
  session: SessionHandle;
  /** The backend its upstream is attached to; null: detached, the next datagram attaches it. */
  backend: Backend | null;
  /** The upstream's own state for this flow (its socket, its pool slot...). */
  link: unknown;
  readonly clientAddress: string;
  readonly clientPort: number;
}

/** What an upstream reports back to the relay. */
export interface UpstreamEvents {
  /** A datagram from `flow`'s backend. */
  reply(flow: RelayFlow, datagram: Buffer): void;
  /** `flow`'s upstream path failed: ECONNREFUSED (the backend's port is closed), EMFILE (no socket)... */
  failed(flow: RelayFlow, err: NodeJS.ErrnoException): void;
  /** A datagram could not be sent or queued (bounded queues are full). */
  dropped(flow: RelayFlow, reason: 'queue-full'): void;
}

/**
 * The backend side of the relay: how a flow's datagrams reach its backend and how replies find the
 * flow. Pluggable so that bench/udp-relay.ts can measure designs against each other through the
 * same relay.
 */
export interface Upstream {
  /** Starts `flow`'s path to `backend`; returns its link, or null when there is no capacity. */
  attach(flow: RelayFlow, backend: Backend): unknown;
  /** Sends one client datagram of `flow` (attached) to its backend. */
  send(flow: RelayFlow, datagram: Buffer): void;
  /** Releases what attach() took for `flow`. */
  detach(flow: RelayFlow): void;
  /** Upstream sockets open now. */
  readonly sockets: number;
  /** Closes every socket. */
  close(): void;
}

export type UpstreamFactory = (events: UpstreamEvents) => Upstream;

export interface UdpForwarderOptions {
  /** The upstream design; default: one connected socket per flow. */
  upstream?: UpstreamFactory;
}

function familyOf(host: string): 'udp4' | 'udp6' {
  return host.includes(':') ? 'udp6' : 'udp4';
}

/** Per-flow socket state of the connected-socket upstream. */
interface FlowSocket {
  readonly socket: dgram.Socket;
  /** Datagrams waiting for the connect to complete; null once connected. */
  pending: Buffer[] | null;
  pendingBytes: number;
}

/**
 * One connected UDP socket per client flow: the kept design. Measured (bench/udp-relay.ts, 160-byte
 * datagrams, one relay process, 5 rounds, medians; 2-core VM with other programs using about one core
 * throughout) against a pool of shared unconnected sockets with a (socket, backend) → flow map
 * through this same relay:
 *
 * | flows | relay CPU per request/reply pair | pps, closed loop (direct: echo alone) |
 * |---:|---|---|
 * | 1 | 17 µs (pool 18) | 20 435 (pool 20 636; direct 37 105) |
 * | 64 | 19 µs (pool 22) | 22 885 (pool 17 309; direct 48 983) |
 * | 1024 | 24 µs (pool 27) | 18 444 (pool 15 587; direct 41 430) |
 *
 * Added latency at 5 000 datagrams/s, p50: +195 / +261 / +239 µs (pool +179 / +285 / +652). In a CPU
 * profile of the relay at saturation, 86 % of its busy time is in dgram's send (the sendmsg() system
 * call and the loopback delivery it carries): the designs differ by what is around it. A
 * connected send() skips the address lookup an unconnected send pays per datagram, and a reply needs
 * no map lookup or source check (the kernel only delivers the connected peer's datagrams). The pool
 * is cheaper only for a new flow (first round trip p50 92-141 µs against 152-188 µs: no bind and
 * connect), needs as many sockets as flows when there is one backend, and never hears ICMP errors,
 * which here are the passive detection of a dead backend.
 */
export function createFlowSocketUpstream(events: UpstreamEvents): Upstream {
  let sockets = 0;
  let pendingBytes = 0;
  const live = new Set<FlowSocket>();

  const dropPending = (link: FlowSocket): void => {
    pendingBytes -= link.pendingBytes;
    link.pendingBytes = 0;
    link.pending = null;
  };
  const release = (link: FlowSocket): void => {
    if (!live.delete(link)) return;
    sockets--;
    if (link.pending !== null) dropPending(link);
    try {
      link.socket.close();
    } catch {
      // already closed (a failed bind closes nothing, but close() after close() throws)
    }
  };

  const upstream: Upstream = {
    attach(flow, backend) {
      const socket = dgram.createSocket(familyOf(backend.host));
      const link: FlowSocket = { socket, pending: [], pendingBytes: 0 };
      live.add(link);
      sockets++;
      socket.on('message', (datagram: Buffer) => events.reply(flow, datagram));
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (flow.link !== link) return;
        events.failed(flow, err);
      });
      try {
        socket.connect(backend.port, backend.host, () => {
          if (!live.has(link) || link.pending === null) return;
          const queued = link.pending;
          dropPending(link);
          for (const datagram of queued) upstream.send(flow, datagram);
        });
      } catch (err) {
        release(link);
        throw err;
      }
      return link;
    },
    send(flow, datagram) {
      const link = flow.link as FlowSocket;
      if (link.pending !== null) {
        if (link.pending.length >= PENDING_DATAGRAMS_PER_FLOW || pendingBytes + datagram.length > PENDING_BYTES_MAX) {
          events.dropped(flow, 'queue-full');
          return;
        }
        link.pending.push(datagram);
        link.pendingBytes += datagram.length;
        pendingBytes += datagram.length;
        return;
      }
      if (link.socket.getSendQueueCount() >= SEND_QUEUE_MAX) {
        events.dropped(flow, 'queue-full');
        return;
      }
      link.socket.send(datagram);
    },
    detach(flow) {
      release(flow.link as FlowSocket);
    },
    get sockets() {
      return sockets;
    },
    close() {
      for (const link of [...live]) release(link);
    },
  };
  return upstream;
}

export class UdpForwarder implements Forwarder {
  private socket: dgram.Socket | null = null;
  private readonly upstream: Upstream;
  /** By flow handle: the flows this relay opened (each one in the flow table too). */
  private readonly relays = new Map<FlowHandle, RelayFlow>();
  /** The bound service address: every flow's destination. */
  private serviceAddress = '';
  private servicePort = 0;
  private readonly maxDatagramBytes: number;
  private readonly maxUpstreamSockets: number;
  private readonly service: string;
  private readonly unsubscribePurge: () => void;
  private closed = false;
  private readonly router: Router;

  constructor(readonly rt: ServiceRuntime, options: UdpForwarderOptions = {}) {
    this.router = routerOf(rt);
    this.service = rt.config.name;
    this.maxDatagramBytes = rt.config.udp.maxDatagramBytes;
    this.maxUpstreamSockets = rt.config.udp.maxUpstreamSockets;
    this.upstream = (options.upstream ?? createFlowSocketUpstream)({
      reply: (flow, datagram) => this.onReply(flow, datagram),
      failed: (flow, err) => this.onUpstreamFailed(flow, err),
      dropped: (_flow, reason) => this.drop(reason),
    });
    this.unsubscribePurge = rt.flows.onPurge((h) => this.onPurge(h));
  }

  /** Client flows relayed now. */
  get flowCount(): number {
    return this.relays.size;
  }

  /** Upstream sockets open now (one per attached flow with the default design). */
  get upstreamSockets(): number {
    return this.upstream.sockets;
  }

  /** A stream client reached a udp service: there is nothing to relay it to. */
  handle(socket: net.Socket): void {
    socket.destroy();
  }

  bindDatagram(at: HostPort): Promise<HostPort> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket(familyOf(at.host));
      const onBindError = (err: Error): void => {
        socket.close();
        reject(new ListenError(`udp ${formatHostPort(at)}`, { cause: err }));
      };
      socket.once('error', onBindError);
      socket.bind(at.port, at.host, () => {
        socket.off('error', onBindError);
        // Send errors (EMSGSIZE, ENOBUFS, a client's ICMP unreachable) concern one datagram only.
        socket.on('error', () => {});
        try {
          socket.setRecvBufferSize(SERVICE_RECV_BUFFER_BYTES);
        } catch {
          // A kernel that refuses rather than caps (not Linux): its default stays.
        }
        const bound = socket.address();
        this.socket = socket;
        this.serviceAddress = bound.address;
        this.servicePort = bound.port;
        socket.on('message', (datagram: Buffer, rinfo: dgram.RemoteInfo) => this.onClientDatagram(datagram, rinfo));
        if (this.closed) {
          this.destroy();
          reject(new ListenError(`udp ${formatHostPort(at)}`));
          return;
        }
        resolve({ host: bound.address, port: bound.port });
      });
    });
  }

  /**
   * The VIP moved away (issue 7): the service socket closes, flows stay (their replies are dropped
   * while unbound) and are served again after the next bindDatagram.
   */
  async unbindDatagram(): Promise<void> {
    const socket = this.socket;
    this.socket = null;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  /** UDP has no exchange in flight to wait for: closing stops the relay at once. */
  async close(): Promise<void> {
    this.destroy();
  }

  destroy(): void {
    if (this.closed && this.socket === null) return;
    this.closed = true;
    this.unsubscribePurge();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      try {
        socket.close();
      } catch {
        // already closed
      }
    }
    for (const flow of this.relays.values()) this.detach(flow);
    this.relays.clear();
    this.upstream.close();
  }

  /**
   * The health monitor took `backend` down (SessionRouter has already re-pinned its sessions): the
   * flows attached to it let go of their sockets now; each re-attaches on its next datagram.
   */
  backendDown(backend: Backend): void {
    for (const flow of this.relays.values()) if (flow.backend === backend) this.detach(flow);
  }

  private onClientDatagram(datagram: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    if (datagram.length > this.maxDatagramBytes) {
      this.drop('too-large');
      return;
    }
    const { flows } = this.rt;
    // Keys are taken per datagram: an IPv6 address's interned key is only stable while a flow holds it.
    const srcIp = addressKey(rinfo.address);
    const dstIp = addressKey(this.serviceAddress);
    const h = flows.lookup(srcIp, rinfo.port, dstIp, this.servicePort, PROTO_UDP);
    // Issue 8 (SA2C): a datagram of no flow opens a session ('new': refused = dropped, no flow is
    // created); one of a tracked flow is 'established' (degraded = dropped, its flow still revived).
    // The controller publishes the refusal; ADMIT_ALL answers with a constant.
    const flow = h === NO_FLOW ? this.openFlow(srcIp, dstIp, rinfo) : this.follow(h, rinfo);
    if (flow === null) return;
    this.upstream.send(flow, datagram);
  }

  /** Checked after admission and before a session opens, so that a full table does not open and close a session per refused datagram. */
  private readonly canOpenFlow = (): boolean => {
    const { flows } = this.rt;
    if (flows.size >= flows.capacity) {
      this.refuseFlow('flows-full');
      return false;
    }
    if (this.upstream.sockets >= this.maxUpstreamSockets) {
      this.refuseFlow('sockets-full');
      return false;
    }
    return true;
  };

  private readonly newFlowHint: RouteHint = { via: 'key', key: null, open: true, admit: 'new', gate: this.canOpenFlow };

  /** A datagram of no tracked flow: a new signalling flow with its own anonymous session (SARA Fig. 3). */
  private openFlow(srcIp: number, dstIp: number, rinfo: dgram.RemoteInfo): RelayFlow | null {
    const { flows } = this.rt;
    // Maglev: a flow's client address and port pick the same backend on every dispatcher.
    const hint = this.router.hashesKeys ? { ...this.newFlowHint, hash: flowHash(rinfo.address, rinfo.port) } : this.newFlowHint;
    const route = this.router.route(NO_FLOW, hint);
    if (route.type !== 'forward') return null; // refused by admission, the gate, or counted by SessionRouter (sessionRefuse)
    const h = flows.insert(srcIp, rinfo.port, dstIp, this.servicePort, PROTO_UDP, 'signalling', route.session);
    if (h === NO_FLOW) {
      this.router.close(route.session, 'removed');
      this.refuseFlow('flows-full');
      return null;
    }
    const stale = this.relays.get(h);
    if (stale) this.detach(stale);
    const flow: RelayFlow = { handle: h, session: route.session, backend: null, link: null, clientAddress: rinfo.address, clientPort: rinfo.port };
    this.relays.set(h, flow);
    return this.attach(flow, route.backend) ? flow : null;
  }

  /** A datagram of a tracked flow: revive it and follow its session's pin (re-pinned if its backend is down). */
  private follow(h: FlowHandle, rinfo: dgram.RemoteInfo): RelayFlow | null {
    const { flows } = this.rt;
    let flow = this.relays.get(h);
    if (flow === undefined) {
      // Tracked by the table but not by this relay (not expected): adopt it.
      flow = { handle: h, session: flows.session(h), backend: null, link: null, clientAddress: rinfo.address, clientPort: rinfo.port };
      this.relays.set(h, flow);
    }
    flows.seen(h);
    // Its session's pin, then SA2C ('established': degraded = dropped, its flow still revived). The
    // session idled out (sessions.sessionTimeoutMs) while the flow lived: a new one, on the backend
    // the flow still talks to (its state lives there) unless that one is down or detached.
    const d = this.router.route(h, { via: 'session', session: flow.session, reopen: flow.backend, admit: 'established' });
    const route = d.type === 'forward' ? d : d.type === 'none' ? undefined : d.routed;
    if (route === undefined) return null;
    if (route.session !== flow.session) {
      flow.session = route.session;
      flows.setSession(h, route.session);
    }
    if (route.backend !== flow.backend && !this.attach(flow, route.backend)) return null;
    return d.type === 'forward' ? flow : null;
  }

  /** Points `flow`'s upstream at `backend` (detaching it from its old one). */
  private attach(flow: RelayFlow, backend: Backend): boolean {
    if (flow.backend !== null) this.detach(flow);
    if (this.upstream.sockets >= this.maxUpstreamSockets) {
      this.drop('no-socket');
      return false;
    }
    let link: unknown;
    try {
      link = this.upstream.attach(flow, backend);
    } catch {
      link = null;
    }
    if (link === null) {
      this.drop('no-socket');
      return false;
    }
    flow.link = link;
    flow.backend = backend;
    backend.active++;
    return true;
  }

  private detach(flow: RelayFlow): void {
    if (flow.backend === null) return;
    flow.backend.active--;
    flow.backend = null;
    this.upstream.detach(flow);
    flow.link = null;
  }

  private onReply(flow: RelayFlow, datagram: Buffer): void {
    const socket = this.socket;
    if (socket === null || flow.backend === null) return;
    this.rt.flows.seen(flow.handle);
    // A reply is traffic of the session too: a receive-only client keeps its pin (review finding 4).
    if (flow.session !== NO_SESSION) this.router.touch(flow.session);
    this.router.succeeded(flow.backend);
    if (socket.getSendQueueCount() >= SEND_QUEUE_MAX) {
      this.drop('queue-full');
      return;
    }
    socket.send(datagram, flow.clientPort, flow.clientAddress);
  }

  /**
   * An error on a flow's upstream socket. The backend cannot be reached (ECONNREFUSED: ICMP port
   * unreachable, its port is closed; an unreachable host; a name that does not resolve): reported as
   * a refusal, like the TCP forwarder does, so the monitor takes it down, SessionRouter re-pins its
   * sessions and backendDown() detaches their flows. This process has no socket to give (EMFILE at
   * bind...): the flow is detached and its next datagram tries again. Anything else (EMSGSIZE...)
   * concerns one datagram.
   */
  private onUpstreamFailed(flow: RelayFlow, err: NodeJS.ErrnoException): void {
    const backend = flow.backend;
    if (backend === null) return;
    switch (err.code) {
      case 'ECONNREFUSED':
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
      case 'EHOSTDOWN':
      case 'EADDRNOTAVAIL':
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        this.router.failed(backend, 'refused');
        return;
      case 'EMFILE':
      case 'ENFILE':
      case 'ENOBUFS':
      case 'ENOMEM':
        this.detach(flow);
        this.drop('no-socket');
        return;
      default:
        if (err.syscall === 'bind' || err.syscall === 'connect') {
          this.detach(flow);
          this.drop('no-socket');
        }
    }
  }

  /** The session layer's sweep purges `h` (idle for twice its timeout): its socket and session follow. */
  private onPurge(h: FlowHandle): void {
    const flow = this.relays.get(h);
    if (flow === undefined) return;
    this.relays.delete(h);
    this.detach(flow);
    if (flow.session !== NO_SESSION) this.router.close(flow.session, 'timeout');
  }

  private refuseFlow(reason: 'flows-full' | 'sockets-full'): void {
    if (channels.sessionRefuse.hasSubscribers) {
      channels.sessionRefuse.publish({ service: this.service, reason } satisfies SessionRefuseEvent);
    }
  }

  private drop(reason: 'too-large' | 'queue-full' | 'no-socket'): void {
    if (channels.messageDrop.hasSubscribers) {
      channels.messageDrop.publish({ service: this.service, reason, transport: 'udp' } satisfies MessageDropEvent);
    }
  }
}
