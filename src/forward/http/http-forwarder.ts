/**
 * @module The HTTP/1.1 forwarder: a lean proxy on raw sockets. One `ClientConn` per client
 * connection runs one exchange at a time (pipelined requests wait, unparsed, in its buffer, so
 * replies leave in order); heads are parsed and rewritten as strings, bodies are relayed as the
 * Buffers the kernel gave us, with their framing followed (never decoded) to find where each
 * message ends. Memory per connection is bounded: a side that cannot write pauses the other.
 * Every request is routed once by the service's Router (session, admission, balancer), and again
 * through its failure entry when its backend fails; a request that names a virtual session (issue 5:
 * sessions.cookie or sessions.header) follows its pin, and a reply that sets the cookie pins it.
 */
import type net from 'node:net';
import type { Backend } from '../../core/backend.js';
import { BackendPool, READ_BUFFER_BYTES } from './http-backend-conn.js';
import { HoldBufferPool, LogBudget } from './http-failover.js';
import { routerOf, type Forwarder, type Router, type ServiceRuntime } from '../../pipeline/index.js';
import { sessionKeyOf, type SessionKeyOf } from './http-session-key.js';
import { ClientConn } from './http-client-conn.js';
import { CLIENT_READ_BUFFER_BYTES } from './http-client-reads.js';
import type { HttpService } from './http-connection.js';

export class HttpForwarder implements Forwarder, HttpService {
  readonly pool: BackendPool;
  /** Bytes held by request logs across the service (failover.maxTotalLogBytes). */
  readonly logBudget: LogBudget;
  /** Buffers replies are held in (failover.holdReplyBytes plus a head). */
  readonly holdPool: HoldBufferPool;
  /** Issue 5: what names a request's virtual session (sessions.cookie or sessions.header); null: no sessions. */
  readonly sessionKeyOf: SessionKeyOf | null;
  /** sessions.cookie: replies that set it are learnt from; null in header mode or without sessions. */
  readonly sessionCookie: string | null;
  /** The wall clock, for Set-Cookie Expires. */
  readonly wallNow = (): number => this.rt.clock.wallNow();
  /** The service's pipeline stage: every routing decision and failure report goes through it. */
  readonly router: Router;
  /** The buffer every plain client socket of this service reads into (http-client-reads.ts). */
  readonly clientReads = Buffer.allocUnsafe(CLIENT_READ_BUFFER_BYTES);
  private readonly clients = new Set<ClientConn>();
  private closing = false;
  private idleWaiters: (() => void)[] = [];

  constructor(readonly rt: ServiceRuntime) {
    this.router = routerOf(rt);
    this.pool = new BackendPool(rt, rt.backends.length);
    this.logBudget = new LogBudget(rt.config.http.failover.maxTotalLogBytes);
    // A held reply is at most its head, holdReplyBytes, and the one read that crosses the bound.
    this.holdPool = new HoldBufferPool(rt.config.http.failover.holdReplyBytes + rt.config.http.maxHeaderBytes + READ_BUFFER_BYTES);
    this.sessionKeyOf = sessionKeyOf(rt.config.sessions);
    this.sessionCookie = rt.config.sessions.cookie ?? null;
  }

  /**
   * The health monitor declared `backend` down (a detector, or passive detection elsewhere):
   * exchanges still waiting on it fail over now rather than at their timeout.
   */
  backendDown(backend: Backend): void {
    for (const c of this.clients) c.onBackendDown(backend);
  }

  handle(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.clients.add(new ClientConn(this, socket));
  }

  /** @internal */
  clientGone(c: ClientConn): void {
    this.clients.delete(c);
    if (this.closing && this.clients.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Stop taking requests; idle connections close now, busy ones after their exchange. */
  close(): Promise<void> {
    this.closing = true;
    for (const c of this.clients) c.closeWhenIdle();
    this.pool.destroyAll();
    if (this.clients.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  destroy(): void {
    this.closing = true;
    for (const c of [...this.clients]) c.socket.destroy();
    this.pool.destroyAll();
  }

  get isClosing(): boolean {
    return this.closing;
  }
}
