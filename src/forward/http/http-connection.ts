/**
 * @module One HTTP client connection, its connection layer: the socket's events, request heads
 * parsed one at a time (pipelined ones wait, unparsed), the header and idle timers, lingering close,
 * and the end of each exchange (its events, the backend connection back to the pool, the next head).
 * The exchange, the reply relay and failover/resume are the layers above (http-exchange.ts,
 * http-reply-relay.ts, http-client-conn.ts), one class each over the same connection state.
 */
import net from 'node:net';
import { HttpRequestError } from '../../core/errors.js';
import { channels } from '../../core/diagnostics.js';
import type { TimerHandle } from '../../core/clock.js';
import type { Backend } from '../../core/backend.js';
import { ChunkedScanner } from './http-chunked.js';
import {
  errorResponse,
  forwardedFor,
  parseRequestHead,
  emptyLinesBefore,
  requestHeadEnd,
  type ForwardedFor,
  type OwnedField,
  type RequestHead,
  type ResponseHead,
} from './http-head.js';
import { BackendConn, BackendPool } from './http-backend-conn.js';
import { adoptReads } from './http-client-reads.js';
import { IdleTimer } from '../lifecycle.js';
import { HoldBufferPool, LogBudget, ReplyRecord, RequestLog, type Resume } from './http-failover.js';
import type { FailoverEvent } from '../../core/diagnostics.js';
import type { Router, ServiceRuntime } from '../../pipeline/index.js';
import type { SessionKeyOf } from './http-session-key.js';
import type { ClientSide } from '../../edge/edge.js';

/** A TCP or TLS socket (not an HTTP/2 stream standing in for one). */
function isKernelSocket(socket: net.Socket): boolean {
  return socket instanceof net.Socket;
}

/** After a refusal, how long the client may keep sending before we cut it (lingering close). */
export const LINGER_MS = 2000;

export type Phase = 'head' | 'exchange' | 'tunnel' | 'closed';
export type ResPhase = 'head' | 'body' | 'done';

/**
 * What a client connection needs of its forwarder (HttpForwarder implements it): the service's
 * runtime and Router, the backend connection pool, the failover budgets, the session key rules.
 */
export interface HttpService {
  readonly rt: ServiceRuntime;
  readonly router: Router;
  readonly pool: BackendPool;
  readonly logBudget: LogBudget;
  readonly holdPool: HoldBufferPool;
  readonly sessionKeyOf: SessionKeyOf | null;
  readonly sessionCookie: string | null;
  readonly wallNow: () => number;
  readonly isClosing: boolean;
  /** The buffer plain client sockets read into (http-client-reads.ts), or null: they read 'data'. */
  readonly clientReads: Buffer | null;
  clientGone(c: HttpConnection): void;
}

/**
 * The connection layer of a client connection; the layers above add the exchange, the reply relay
 * and failover (one object per connection, its state shared by the layers as protected fields).
 */
export abstract class HttpConnection {
  protected abstract dropHeld(): void;
  protected abstract forwardBody(chunk: Buffer): boolean;
  protected abstract startExchange(req: RequestHead, headBytes: number): void;

  protected phase: Phase = 'head';
  /** Received, not yet consumed bytes (a partial head, or pipelined requests). */
  protected buf: Buffer | null = null;
  protected readonly client: ForwardedFor | null;
  /** The client's side as the edge saw it (TLS, certificate, request budget); null without an edge. */
  protected readonly side: ClientSide | null;
  /** The verified client-certificate subject field, written into every request (mTLS). */
  protected readonly owned: OwnedField | null;
  protected headerTimer: TimerHandle | null = null;
  /** http.idleTimeoutMs without a byte from the client (see onIdleTimeout); null: the socket's own timeout. */
  protected readonly idle: IdleTimer | null;
  protected lingerTimer: TimerHandle | null = null;
  protected paused = false;
  /** Waiting for another process's answer before the parsed head can start its exchange (wait()). */
  protected waiting = false;
  /** The head about to be parsed again after a wait was admitted by the request rate already. */
  private rateAdmitted = false;
  /** The head about to be parsed again after a wait had its session key looked up already. */
  private lookedUp = false;
  /** The client half-closed: answer what it already sent, then close. */
  protected clientEnded = false;

  // The exchange in progress.
  protected req: RequestHead | null = null;
  protected reqHead = '';
  protected reqBodyLeft = 0;
  protected reqChunks: ChunkedScanner | null = null;
  protected reqDone = false;
  protected conn: BackendConn | null = null;
  protected backend: Backend | null = null;
  protected retriedStale = false;
  protected attempts = 0;
  protected resPhase: ResPhase = 'head';
  protected resHeadBuf: Buffer | null = null;
  protected res: ResponseHead | null = null;
  protected resLeft = 0;
  protected resChunks: ChunkedScanner | null = null;
  protected resSent = false;
  protected closeAfter = false;
  /** The current backend will close after its reply (never pool its connection). */
  protected backendCloses = false;
  // Virtual sessions (issue 5).
  /** The session the request names (always null without sessions configured). */
  protected sessionKey: string | null = null;
  /** The backend whose held reply may set the session cookie: learnt from when the reply is released. */
  protected learnFrom: Backend | null = null;
  // Failover (issue 4).
  protected log: RequestLog | null = null;
  /** Failovers since the client last got a new reply byte: what failover.maxAttempts bounds. */
  protected fruitlessFailovers = 0;
  protected failedAt = 0;
  protected failedBackend: Backend | null = null;
  protected failStrategy: FailoverEvent['strategy'] | null = null;
  /** Body bytes the client had when the failover in progress began. */
  protected failBytes = 0;
  protected recoveryMs = -1;
  /** The reply is held until complete (holdReplyBytes), copied into `held` from the pool. */
  protected holding = false;
  protected held: Buffer | null = null;
  protected heldLen = 0;
  /** Where the body starts in `held` (after the head). */
  protected heldHeadLen = 0;
  /** What the client has of a released reply, when it may have to be resumed. */
  protected record: ReplyRecord | null = null;
  /** A resume onto a new backend in progress. */
  protected resume: Resume | null = null;
  protected resumeChunks: ChunkedScanner | null = null;
  protected resumeBroken = false;
  protected t0 = 0;
  /** Requests started on this connection (issue 8: without a session cookie or header, the first is 'new'). */
  protected requests = 0;
  protected bytesIn = 0;
  protected bytesOut = 0;
  /** The shared buffer this socket reads into, or null when it reads 'data' (see ownBytes). */
  protected readonly readBuf: Buffer | null;

  constructor(
    protected readonly fwd: HttpService,
    readonly socket: net.Socket,
  ) {
    const rt = fwd.rt;
    const side = rt.edge ? rt.edge.clientSide(socket) : null;
    this.side = side;
    this.client = rt.config.http.forwardedHeaders ? forwardedFor(socket.remoteAddress, side?.encrypted ? 'https' : 'http') : null;
    this.owned = side?.subjectHeader ? { name: side.subjectHeader, value: side.clientSubject } : null;
    socket.setNoDelay(true);
    // A socket of the kernel's gets an IdleTimer (touched per read: no timer refresh per read and
    // per write, as a socket timeout costs); an HTTP/2 stream's socket keeps its own setTimeout.
    if (isKernelSocket(socket)) {
      this.idle = new IdleTimer(rt.clock, rt.config.http.idleTimeoutMs, () => this.onIdleTimeout());
      if (socket.timeout) socket.setTimeout(0); // a sniffer's (HTTP/2 preface) timeout ends here
    } else {
      this.idle = null;
      socket.setTimeout(rt.config.http.idleTimeoutMs);
      socket.on('timeout', () => this.onIdleTimeout());
    }
    const reads = fwd.clientReads;
    this.readBuf = reads !== null && adoptReads(socket, reads, this.onRead) ? reads : null;
    if (this.readBuf === null) socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      if (this.conn && this.conn.socket.isPaused()) this.conn.socket.resume();
    });
    socket.on('end', () => this.onClientEnd());
    socket.on('error', () => {});
    socket.on('close', () => this.onClientClose());
    if (channels.connectionOpen.hasSubscribers) {
      channels.connectionOpen.publish({ service: rt.config.name, protocol: 'http' });
    }
  }


  // ---- client side ---------------------------------------------------------------------------

  /** Bytes read into the shared buffer: handled now; what stays in `buf` is copied out of it. */
  private readonly onRead = (n: number, shared: Buffer): void => {
    this.onData(shared.subarray(0, n));
    const buf = this.buf;
    if (buf !== null && buf.buffer === shared.buffer) this.buf = Buffer.from(buf);
  };

  /**
   * `bytes`, or a copy when they are a view of the shared read buffer: for what outlives the read
   * callback (a write that may stay queued, the request log).
   */
  protected ownBytes(bytes: Buffer): Buffer {
    return this.readBuf !== null && bytes.buffer === this.readBuf.buffer ? Buffer.from(bytes) : bytes;
  }

  protected onData(chunk: Buffer): void {
    this.idle?.touch();
    switch (this.phase) {
      case 'head':
        this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
        this.parseNext();
        return;
      case 'exchange':
        if (!this.reqDone) {
          this.forwardBody(chunk);
        } else {
          // Pipelined: keep it for later, bounded.
          this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
          if (this.buf.length > this.fwd.rt.config.http.maxHeaderBytes + this.fwd.rt.config.http.highWaterMarkBytes) {
            this.pauseClient();
          }
        }
        return;
      case 'tunnel':
        if (this.conn && !this.conn.socket.write(this.ownBytes(chunk))) this.pauseClient();
        return;
      case 'closed':
        return; // lingering: discard
    }
  }

  protected pauseClient(): void {
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  protected resumeClient(): void {
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Parse the next request head in `buf` and start its exchange. */
  protected parseNext(): void {
    let buf = this.buf;
    if (buf === null || this.waiting) return;
    const http = this.fwd.rt.config.http;
    const skip = emptyLinesBefore(buf);
    if (skip > 0) {
      buf = skip === buf.length ? null : buf.subarray(skip);
      this.buf = buf;
      if (buf === null) return;
    }
    let end: number;
    try {
      end = requestHeadEnd(buf, http.maxHeaderBytes);
    } catch (err) {
      if (err instanceof HttpRequestError) return this.refuse(err.status, err.message);
      throw err;
    }
    if (end < 0) {
      this.headerTimer ??= this.fwd.rt.clock.setTimeout(() => {
        this.headerTimer = null;
        if (this.phase === 'head' && this.buf !== null) this.refuse(408, 'request head not received in time');
      }, http.headerTimeoutMs);
      return;
    }
    if (this.headerTimer) {
      this.headerTimer.cancel();
      this.headerTimer = null;
    }
    let req: RequestHead;
    try {
      req = parseRequestHead(buf.toString('latin1', 0, end), http.maxHeaderCount);
    } catch (err) {
      if (err instanceof HttpRequestError) return this.refuse(err.status, err.message);
      throw err;
    }
    // A dispatcher worker (issue 16) asks the primary about a session key its replica does not know.
    const lookup = this.fwd.rt.sessionLookup;
    if (this.lookedUp) {
      this.lookedUp = false;
    } else if (lookup && this.fwd.sessionKeyOf !== null) {
      const key = this.fwd.sessionKeyOf(req.fields);
      if (key !== null && !lookup.known(key)) {
        return this.wait(
          (done: (answer: true) => void) => lookup.lookup(key, this.fwd.sessionCookie === null, () => done(true)),
          () => {
            this.lookedUp = true;
            return true;
          },
        );
      }
    }
    // Per-address request rate (limits.requestsPerSecond), once the request head is read.
    const edge = this.fwd.rt.edge;
    const side = this.side;
    if (this.rateAdmitted) {
      this.rateAdmitted = false;
    } else if (edge && side) {
      const verdict = edge.requestVerdict(side);
      if (verdict === 'refuse') return this.refuseRate();
      if (verdict === 'ask') {
        // A dispatcher worker out of this address's tokens takes more from the primary (issue 16).
        return this.wait(
          (done) => edge.askRequests(side, done),
          (v) => {
            if (v === 'refuse') return false;
            this.rateAdmitted = true;
            return true;
          },
        );
      }
    }
    this.buf = end + 4 < buf.length ? buf.subarray(end + 4) : null;
    this.startExchange(req, end + 4);
  }

  private refuseRate(): void {
    const edge = this.fwd.rt.edge!;
    this.refuse(429, 'too many requests from this address', `Retry-After: ${edge.retryAfterS(this.side!)}\r\n`);
  }

  /**
   * The head in `buf` waits for another process (a dispatcher worker asks its primary): the client is
   * paused, and when `ask` is answered, `then` says whether to parse the head again (true) or refuse
   * it for the request rate (false). Nothing of the head is consumed meanwhile.
   */
  protected wait<T>(ask: (done: (answer: T) => void) => void, then: (answer: T) => boolean): void {
    this.waiting = true;
    this.pauseClient();
    ask((answer) => {
      this.waiting = false;
      if (this.phase !== 'head') return; // the client went away meanwhile
      this.resumeClient();
      if (!then(answer)) return this.refuseRate();
      this.parseNext();
    });
  }

  /** No byte from the client for idleTimeoutMs. Returns true to keep watching (an exchange is in progress). */
  protected onIdleTimeout(): boolean {
    if (this.phase === 'head') {
      if (this.buf === null) this.socket.destroy();
      else this.refuse(408, 'request head not received in time');
      return false;
    }
    if (this.phase === 'closed') {
      this.socket.destroy();
      return false;
    }
    // During an exchange the backend's response timeout governs.
    return true;
  }

  /**
   * The client will send no more (HTTP listeners are allowHalfOpen, so a client that half-closes
   * after its request still gets the reply). A request cut short is abandoned.
   */
  protected onClientEnd(): void {
    switch (this.phase) {
      case 'head':
        // A whole head waiting for an answer is served like one in exchange.
        if (this.waiting) this.clientEnded = true;
        else this.socket.end();
        return;
      case 'exchange':
        if (this.reqDone) this.clientEnded = true;
        else this.socket.destroy();
        return;
      case 'tunnel':
        this.conn?.socket.end();
        return;
      case 'closed':
        return;
    }
  }

  protected onClientClose(): void {
    this.cancelHeaderTimer();
    this.idle?.cancel();
    this.lingerTimer?.cancel();
    if (this.phase === 'exchange' || this.phase === 'tunnel') this.abandonBackend();
    this.endLog();
    this.dropHeld();
    this.phase = 'closed';
    this.buf = null;
    if (channels.connectionClose.hasSubscribers) {
      channels.connectionClose.publish({ service: this.fwd.rt.config.name, protocol: 'http' });
    }
    this.fwd.clientGone(this);
  }

  closeWhenIdle(): void {
    if (this.phase === 'head' && this.buf === null) this.socket.end();
    else this.closeAfter = true;
  }

  protected cancelHeaderTimer(): void {
    if (this.headerTimer) {
      this.headerTimer.cancel();
      this.headerTimer = null;
    }
  }

  /** Answer with an error of our own and close: the request is not forwarded. */
  protected refuse(status: number, reason: string, extraHeaders = ''): void {
    this.cancelHeaderTimer();
    if (channels.httpRefuse.hasSubscribers) {
      channels.httpRefuse.publish({ service: this.fwd.rt.config.name, status, reason });
    }
    this.buf = null;
    this.endWith(errorResponse(status, reason, extraHeaders));
  }

  protected endWith(response: string | null): void {
    this.phase = 'closed';
    this.resumeClient();
    if (response !== null) this.socket.end(response, 'latin1');
    else this.socket.end();
    // Keep reading (and discarding) briefly so that unread input does not turn our reply into a
    // reset; then cut.
    this.lingerTimer = this.fwd.rt.clock.setTimeout(() => this.socket.destroy(), LINGER_MS);
  }

  protected publishLogOverflow(): void {
    if (channels.requestLogOverflow.hasSubscribers) channels.requestLogOverflow.publish({ service: this.fwd.rt.config.name });
  }

  protected publishFailover(failed: Backend | null, to: Backend | null, strategy: FailoverEvent['strategy'], result: FailoverEvent['result']): void {
    if (!channels.failover.hasSubscribers) return;
    const event: FailoverEvent = {
      service: this.fwd.rt.config.name,
      backend: failed ? failed.id : null,
      to: to ? to.id : null,
      strategy,
      result,
      bytesSent: this.failBytes,
      recoveryMs: this.recoveryMs,
    };
    channels.failover.publish(event);
  }

  protected endLog(): void {
    if (this.log !== null) {
      this.log.release();
      this.log = null;
    }
  }

  protected publishError(b: Backend, kind: string): void {
    if (channels.backendError.hasSubscribers) {
      channels.backendError.publish({ service: this.fwd.rt.config.name, backend: b.id, kind });
    }
  }

  /** End the exchange with our own error reply, and close. */
  protected failExchange(status: number, why: string, extra = ''): void {
    if (this.conn) {
      this.conn.discard();
      this.releaseBackend();
    }
    this.endLog();
    this.publishExchange(null, status);
    if (this.resSent) {
      this.phase = 'closed';
      this.socket.destroy();
      return;
    }
    this.buf = null;
    if (channels.httpRefuse.hasSubscribers && status < 500) {
      channels.httpRefuse.publish({ service: this.fwd.rt.config.name, status, reason: why });
    }
    this.endWith(errorResponse(status, why, extra));
  }

  protected releaseBackend(): void {
    if (this.backend) {
      this.backend.active--;
      this.backend = null;
    }
    this.conn = null;
  }

  protected abandonBackend(): void {
    if (this.conn) this.conn.discard();
    this.releaseBackend();
  }

  protected publishExchange(backend: Backend | null, status: number): void {
    if (channels.httpExchange.hasSubscribers) {
      channels.httpExchange.publish({
        service: this.fwd.rt.config.name,
        backend: backend ? backend.id : null,
        status: status || (this.res ? this.res.status : 0),
        durationMs: this.fwd.rt.clock.now() - this.t0,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
      });
    }
  }

  protected finishExchange(): void {
    const conn = this.conn;
    const backend = this.backend;
    this.publishExchange(backend, this.res ? this.res.status : 0);
    if (this.failStrategy !== null) this.publishFailover(this.failedBackend, backend, this.failStrategy, 'ok');
    this.endLog();
    this.record = null;
    this.resume = null;
    if (conn) {
      if (this.res && !this.backendCloses && this.reqDone && conn.usable) this.fwd.pool.release(conn);
      else conn.discard();
    }
    this.releaseBackend();
    this.req = null;
    this.res = null;
    if (this.closeAfter) {
      this.endWith(null);
      return;
    }
    this.phase = 'head';
    this.idle?.touch(); // idle from the end of its last exchange
    this.resumeClient();
    if (this.buf !== null) this.parseNext();
    // A half-closed client gets replies to every request it sent, then the connection ends.
    if (this.clientEnded && this.phase === 'head' && !this.waiting) this.endWith(null);
  }
}
