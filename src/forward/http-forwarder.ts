/**
 * @module The HTTP/1.1 forwarder: a lean proxy on raw sockets. One `ClientConn` per client
 * connection runs one exchange at a time (pipelined requests wait, unparsed, in its buffer, so
 * replies leave in order); heads are parsed and rewritten as strings, bodies are relayed as the
 * Buffers the kernel gave us, with their framing followed (never decoded) to find where each
 * message ends. Memory per connection is bounded: a side that cannot write pauses the other.
 * A request that names a virtual session (issue 5: sessions.cookie or sessions.header) is routed
 * through the service's session router instead of the balancer; a reply that sets the cookie pins it.
 */
import type net from 'node:net';
import { HttpRequestError, type BackendFailureKind } from '../core/errors.js';
import { channels } from '../core/diagnostics.js';
import type { TimerHandle } from '../core/clock.js';
import type { Backend } from '../monitor/backend.js';
import { ChunkedScanner } from './http-chunked.js';
import {
  errorResponse,
  forwardedFor,
  parseRequestHead,
  parseResponseHead,
  writeRequestHead,
  writeResponseHead,
  type ForwardedFor,
  type RequestHead,
  type ResponseHead,
} from './http-head.js';
import { BackendConn, BackendPool, READ_BUFFER_BYTES, type BackendConnOwner } from './http-backend-conn.js';
import { createHash } from 'node:crypto';
import {
  contentRange,
  isReplayable,
  HoldBufferPool,
  LogBudget,
  rangeRequestHead,
  ReplyRecord,
  RequestLog,
  type Resume,
} from './http-failover.js';
import type { FailoverEvent } from '../core/diagnostics.js';
import type { Forwarder, ServiceRuntime } from './service-runtime.js';
import { MAX_SESSION_KEY_BYTES, responseSetCookie, sessionKeyOf, type SessionKeyOf } from './http-session-key.js';
import { NO_SESSION } from '../sessions/session-table.js';
import { ADMIT_ALL } from '../admission/admission-controller.js';

const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');
/** After a refusal, how long the client may keep sending before we cut it (lingering close). */
const LINGER_MS = 2000;

type Phase = 'head' | 'exchange' | 'tunnel' | 'closed';
type ResPhase = 'head' | 'body' | 'done';

export class HttpForwarder implements Forwarder {
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
  private readonly clients = new Set<ClientConn>();
  private closing = false;
  private idleWaiters: (() => void)[] = [];

  constructor(readonly rt: ServiceRuntime) {
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

class ClientConn implements BackendConnOwner {
  private phase: Phase = 'head';
  /** Received, not yet consumed bytes (a partial head, or pipelined requests). */
  private buf: Buffer | null = null;
  private readonly client: ForwardedFor | null;
  private headerTimer: TimerHandle | null = null;
  private lingerTimer: TimerHandle | null = null;
  private paused = false;
  /** The client half-closed: answer what it already sent, then close. */
  private clientEnded = false;

  // The exchange in progress.
  private req: RequestHead | null = null;
  private reqHead = '';
  private reqBodyLeft = 0;
  private reqChunks: ChunkedScanner | null = null;
  private reqDone = false;
  private conn: BackendConn | null = null;
  private backend: Backend | null = null;
  private retriedStale = false;
  private attempts = 0;
  private resPhase: ResPhase = 'head';
  private resHeadBuf: Buffer | null = null;
  private res: ResponseHead | null = null;
  private resLeft = 0;
  private resChunks: ChunkedScanner | null = null;
  private resSent = false;
  private closeAfter = false;
  /** The current backend will close after its reply (never pool its connection). */
  private backendCloses = false;
  // Virtual sessions (issue 5).
  /** The session the request names (always null without sessions configured). */
  private sessionKey: string | null = null;
  /** The backend whose held reply may set the session cookie: learnt from when the reply is released. */
  private learnFrom: Backend | null = null;
  // Failover (issue 4).
  private log: RequestLog | null = null;
  private failovers = 0;
  private failedAt = 0;
  private failedBackend: Backend | null = null;
  private failStrategy: FailoverEvent['strategy'] | null = null;
  /** Body bytes the client had when the failover in progress began. */
  private failBytes = 0;
  private recoveryMs = -1;
  /** The reply is held until complete (holdReplyBytes), copied into `held` from the pool. */
  private holding = false;
  private held: Buffer | null = null;
  private heldLen = 0;
  /** Where the body starts in `held` (after the head). */
  private heldHeadLen = 0;
  /** What the client has of a released reply, when it may have to be resumed. */
  private record: ReplyRecord | null = null;
  /** A resume onto a new backend in progress. */
  private resume: Resume | null = null;
  private resumeChunks: ChunkedScanner | null = null;
  private resumeBroken = false;
  private t0 = 0;
  /** Requests started on this connection (issue 8: without a session cookie or header, the first is 'new'). */
  private requests = 0;
  private bytesIn = 0;
  private bytesOut = 0;

  constructor(
    private readonly fwd: HttpForwarder,
    readonly socket: net.Socket,
  ) {
    const rt = fwd.rt;
    this.client = rt.config.http.forwardedHeaders ? forwardedFor(socket.remoteAddress) : null;
    socket.setNoDelay(true);
    socket.setTimeout(rt.config.http.idleTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      if (this.conn && this.conn.socket.isPaused()) this.conn.socket.resume();
    });
    socket.on('timeout', () => this.onIdleTimeout());
    socket.on('end', () => this.onClientEnd());
    socket.on('error', () => {});
    socket.on('close', () => this.onClientClose());
    if (channels.connectionOpen.hasSubscribers) {
      channels.connectionOpen.publish({ service: rt.config.name, protocol: 'http' });
    }
  }

  // ---- client side ---------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
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
        if (this.conn && !this.conn.socket.write(chunk)) this.pauseClient();
        return;
      case 'closed':
        return; // lingering: discard
    }
  }

  private pauseClient(): void {
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private resumeClient(): void {
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Parse the next request head in `buf` and start its exchange. */
  private parseNext(): void {
    let buf = this.buf;
    if (buf === null) return;
    const http = this.fwd.rt.config.http;
    // RFC 9112 §2.2: ignore empty lines before a request line.
    let skip = 0;
    while (skip + 1 < buf.length && buf[skip] === 13 && buf[skip + 1] === 10) skip += 2;
    if (skip > 0) {
      buf = skip === buf.length ? null : buf.subarray(skip);
      this.buf = buf;
      if (buf === null) return;
    }
    const end = buf.indexOf(CRLFCRLF);
    if (end < 0 || end + 4 > http.maxHeaderBytes) {
      if (buf.length > http.maxHeaderBytes || end >= 0) return this.refuse(431, 'request head too large');
      if (buf.indexOf(LFLF) >= 0) return this.refuse(400, 'bare LF line ending');
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
    this.buf = end + 4 < buf.length ? buf.subarray(end + 4) : null;
    this.startExchange(req, end + 4);
  }

  private startExchange(req: RequestHead, headBytes: number): void {
    const rt = this.fwd.rt;
    this.phase = 'exchange';
    this.req = req;
    this.reqHead = writeRequestHead(req, this.client);
    this.reqBodyLeft = req.chunked ? 0 : Math.max(0, req.contentLength);
    this.reqChunks = req.chunked ? new ChunkedScanner() : null;
    this.reqDone = !req.chunked && this.reqBodyLeft === 0;
    this.resPhase = 'head';
    this.resHeadBuf = null;
    this.res = null;
    this.resSent = false;
    this.closeAfter = !req.keepAlive;
    this.retriedStale = false;
    this.attempts = 0;
    const keyOf = this.fwd.sessionKeyOf;
    if (keyOf !== null) {
      this.sessionKey = keyOf(req.fields);
      this.learnFrom = null;
    }
    const fo = rt.config.http.failover;
    this.log = fo.enabled && isReplayable(req, fo) ? new RequestLog(this.reqHead, fo.maxRequestLogBytes, this.fwd.logBudget) : null;
    if (this.log?.overflow) this.publishLogOverflow();
    this.failovers = 0;
    this.failBytes = 0;
    this.failedAt = 0;
    this.failedBackend = null;
    this.failStrategy = null;
    this.recoveryMs = -1;
    this.holding = false;
    this.record = null;
    this.resume = null;
    this.t0 = rt.clock.now();
    this.bytesIn = headBytes;
    this.bytesOut = 0;
    this.requests++;
    // Issue 8 (SA2C): one identity test when admission is off, nothing else on the hot path.
    if (rt.admission !== ADMIT_ALL && !this.admit()) return;
    if (!this.assignBackend(null)) return;
    const conn = this.conn!;
    let ok = conn.write(this.reqHead, rt.config.http.highWaterMarkBytes);
    if (!this.reqDone && this.buf !== null) {
      const rest = this.buf;
      this.buf = null;
      ok = this.forwardBody(rest) && ok;
    }
    if (!ok && this.phase === 'exchange') this.pauseClient();
  }

  /**
   * Issue 8, SARA III.B: asks SA2C about this request. It is 'established' when it names a session
   * open in the session table (sessions.cookie / sessions.header), or, with neither configured, when
   * it is not the first request of its connection; otherwise it opens a session: 'new'. A refused new
   * session gets 503 with the verdict's Retry-After (RFC 9110 §15.6.4, §10.2.3); a degraded request
   * of an established session is dropped — not forwarded, answered 503 — while its session stays
   * pinned. Both close the connection like every 503 of ours. Returns false when it answered.
   */
  private admit(): boolean {
    const key = this.sessionKey;
    // No cookie/header configured: the rule, "the first request of a connection is new", so any later one on a keep-alive connection is established.
    const established =
      this.fwd.sessionKeyOf === null ? this.requests > 1 : key !== null && this.fwd.rt.sessions.table.find(key) !== NO_SESSION;
    const verdict = this.fwd.rt.admission.decide(established ? 'established' : 'new');
    if (verdict.type === 'admit') return true;
    if (verdict.type === 'refuse') {
      this.failExchange(503, 'overloaded: new session refused', `Retry-After: ${verdict.retryAfterS}\r\n`);
    } else {
      this.failExchange(503, 'overloaded: request dropped');
    }
    return false;
  }

  /**
   * Pick a backend and take a connection to it, carrying over writes queued on a connection that
   * never came up. Returns false (after answering the client) when there is none.
   */
  private assignBackend(carry: BackendConn | null): boolean {
    const rt = this.fwd.rt;
    let b: Backend | null = null;
    if (++this.attempts <= rt.backends.length + 1) {
      if (this.sessionKey === null) {
        const pick = rt.balancer.pick();
        if (pick.type === 'pick') b = pick.backend;
      } else {
        b = this.sessionBackend(carry === null ? null : carry.backend);
      }
    }
    if (b !== null) {
      this.backend = b;
      b.active++;
      const conn = this.fwd.pool.acquire(b, this);
      this.conn = conn;
      if (carry) {
        for (const c of carry.pending) conn.write(c, Infinity);
        if (!this.reqDone) this.resumeClient(); // as in failOver: no event may come to do it
      }
      return true;
    }
    this.backend = null;
    this.conn = null;
    this.failExchange(503, 'no backend available', 'Retry-After: 1\r\n');
    return false;
  }

  /**
   * Issue 5 (SARA III.C): the backend for a request of session `sessionKey`, through the session
   * router: its pin (kept while the backend is draining), or a re-pin when the pinned backend is down.
   * A key we do not know (the dispatcher restarted, the client made it up): in cookie mode the
   * balancer's plain pick, with no session opened — sessions open only from a backend's Set-Cookie
   * (learnSession), so invented values cannot fill the table (review finding 12); in header mode the
   * client names its session, which is pinned on the balancer's choice on first sight. `avoid` just
   * failed this request and may not be marked down (a timeout, a draining backend): it is never
   * returned, and a known session moves to the backend that takes the request over (a re-pin,
   * counted). A full session table serves the request unpinned (the router counts the refusal).
   * null: no backend.
   */
  private sessionBackend(avoid: Backend | null): Backend | null {
    const sessions = this.fwd.rt.sessions;
    const key = this.sessionKey!;
    const h = sessions.table.find(key);
    const opens = h !== NO_SESSION || this.fwd.sessionCookie === null;
    if (h !== NO_SESSION || (opens && avoid === null)) {
      // One lookup: follow the session found, or open the one this key names.
      const r = h !== NO_SESSION ? sessions.follow(h) : sessions.open(key);
      if (r.type === 'refused') return r.reason === 'sessions-full' ? this.pickExcept(avoid) : null;
      if (r.backend !== avoid) return r.backend;
    }
    const b = this.pickExcept(avoid);
    if (b !== null && opens) sessions.pin(key, b);
    return b;
  }

  /** The balancer's pick, never `avoid` (a timeout does not mark a backend down, so it may be offered). */
  private pickExcept(avoid: Backend | null): Backend | null {
    const rt = this.fwd.rt;
    let pick = rt.balancer.pick();
    for (let tries = rt.backends.length; pick.type === 'pick' && pick.backend === avoid && tries > 0; tries--) {
      pick = rt.balancer.pick();
    }
    return pick.type === 'pick' && pick.backend !== avoid ? pick.backend : null;
  }

  /**
   * Issue 5: a reply that sets the session cookie names the session its backend now holds (a first
   * visit, a rotated id, a key we had pinned elsewhere): pin it to `backend`. An expired one (RFC 6265
   * §5.3: the client deletes the cookie) ends the session the request named and the one it names.
   */
  private learnSession(res: ResponseHead, backend: Backend): void {
    const rt = this.fwd.rt;
    const set = responseSetCookie(res.fields, this.fwd.sessionCookie!, this.fwd.wallNow);
    if (set === null) return;
    const key = this.sessionKey;
    const value = set.value.length <= MAX_SESSION_KEY_BYTES ? set.value : '';
    if (set.expired) {
      for (const k of [key, value]) {
        if (k === null || k === '') continue;
        const h = rt.sessions.table.find(k);
        if (h !== NO_SESSION) rt.sessions.close(h, 'ended');
      }
      return;
    }
    // The request's own value too: an unknown one the backend accepts opens its session here.
    if (value !== '') rt.sessions.pin(value, backend);
  }

  /** Relay request body bytes, following the framing; leftover bytes are the next request. */
  private forwardBody(chunk: Buffer): boolean {
    let n: number;
    if (this.reqChunks) {
      n = this.reqChunks.scan(chunk, 0, chunk.length);
      if (n < 0) {
        this.failExchange(400, this.reqChunks.error);
        return false;
      }
      if (this.reqChunks.done) this.reqDone = true;
    } else {
      n = Math.min(this.reqBodyLeft, chunk.length);
      this.reqBodyLeft -= n;
      if (this.reqBodyLeft === 0) this.reqDone = true;
    }
    if (n < chunk.length) this.buf = chunk.subarray(n);
    this.bytesIn += n;
    const body = n === chunk.length ? chunk : chunk.subarray(0, n);
    if (this.log !== null && n > 0 && !this.log.append(body)) this.publishLogOverflow();
    const ok = n === 0 || this.conn === null || this.conn.write(body, this.fwd.rt.config.http.highWaterMarkBytes);
    if (!ok) this.pauseClient();
    return ok;
  }

  private onIdleTimeout(): void {
    if (this.phase === 'head') {
      if (this.buf === null) this.socket.destroy();
      else this.refuse(408, 'request head not received in time');
    } else if (this.phase === 'closed') {
      this.socket.destroy();
    }
    // During an exchange the backend's response timeout governs.
  }

  /**
   * The client will send no more (HTTP listeners are allowHalfOpen, so a client that half-closes
   * after its request still gets the reply). A request cut short is abandoned.
   */
  private onClientEnd(): void {
    switch (this.phase) {
      case 'head':
        this.socket.end();
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

  private onClientClose(): void {
    this.cancelHeaderTimer();
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

  private cancelHeaderTimer(): void {
    if (this.headerTimer) {
      this.headerTimer.cancel();
      this.headerTimer = null;
    }
  }

  /** Answer with an error of our own and close: the request is not forwarded. */
  private refuse(status: number, reason: string): void {
    this.cancelHeaderTimer();
    if (channels.httpRefuse.hasSubscribers) {
      channels.httpRefuse.publish({ service: this.fwd.rt.config.name, status, reason });
    }
    this.buf = null;
    this.endWith(errorResponse(status, reason));
  }

  private endWith(response: string | null): void {
    this.phase = 'closed';
    this.resumeClient();
    if (response !== null) this.socket.end(response, 'latin1');
    else this.socket.end();
    // Keep reading (and discarding) briefly so that unread input does not turn our reply into a
    // reset; then cut.
    this.lingerTimer = this.fwd.rt.clock.setTimeout(() => this.socket.destroy(), LINGER_MS);
  }

  // ---- backend side --------------------------------------------------------------------------

  onBackendConnect(conn: BackendConn): void {
    const b = conn.backend;
    if (b.state !== 'up') this.fwd.rt.failures.reportSuccess(b);
    if (this.paused && this.phase === 'exchange' && !this.reqDone) this.resumeClient();
  }

  onBackendDrain(): void {
    if (this.phase === 'exchange' && !this.reqDone) this.resumeClient();
    else if (this.phase === 'tunnel') this.resumeClient();
  }

  onBackendData(conn: BackendConn, chunk: Buffer): void {
    if (this.failedAt > 0 && this.recoveryMs < 0) this.recoveryMs = this.fwd.rt.clock.now() - this.failedAt;
    this.relayBackendData(conn, chunk);
    // `chunk` lives in the pool's shared read buffer: a write still queued keeps pointing into it,
    // so the next read must go elsewhere. (Held replies are copied out, not kept as views.)
    if (this.socket.writableLength > 0) this.fwd.pool.reads.retain();
  }

  private relayBackendData(conn: BackendConn, chunk: Buffer): void {
    if (this.phase === 'tunnel') {
      if (!this.socket.write(chunk)) conn.socket.pause();
      return;
    }
    if (this.resHeadBuf !== null) {
      chunk = Buffer.concat([this.resHeadBuf, chunk]);
      this.resHeadBuf = null;
    }
    let start = 0;
    while (start < chunk.length && this.conn === conn) {
      if (this.resPhase === 'head') {
        start = this.onResponseHead(conn, chunk, start);
        if (start < 0) return;
      } else if (this.resPhase === 'body') {
        start = this.resume ? this.onResumeBody(conn, chunk, start) : this.onResponseBody(conn, chunk, start, start);
      } else {
        return;
      }
    }
  }

  /** Returns the offset after the head, or -1 when the chunk is used up or the exchange ended. */
  private onResponseHead(conn: BackendConn, chunk: Buffer, start: number): number {
    const http = this.fwd.rt.config.http;
    const end = chunk.indexOf(CRLFCRLF, start);
    if (end < 0) {
      if (chunk.length - start > http.maxHeaderBytes) {
        this.backendFailed(conn, 'protocol', 502, 'response head too large');
      } else {
        this.resHeadBuf = Buffer.from(chunk.subarray(start)); // a copy: chunk is the shared buffer
      }
      return -1;
    }
    if (end + 4 - start > http.maxHeaderBytes) {
      this.backendFailed(conn, 'protocol', 502, 'response head too large');
      return -1;
    }
    const req = this.req!;
    let res: ResponseHead;
    try {
      res = parseResponseHead(chunk.toString('latin1', start, end), req.method);
    } catch (err) {
      this.backendFailed(conn, 'protocol', 502, `invalid response: ${(err as Error).message}`);
      return -1;
    }
    const headEnd = end + 4;
    const b = conn.backend;
    if (b.state !== 'up') this.fwd.rt.failures.reportSuccess(b);

    if (res.status < 200 && !(res.status === 101 && req.upgrade)) {
      // Interim response (100 Continue, 103 Early Hints): relay it and wait for the final one.
      if (this.resume === null) {
        if (!this.socket.write(chunk.subarray(start, headEnd))) conn.socket.pause();
        this.bytesOut += headEnd - start;
      }
      return headEnd;
    }
    this.backendCloses = res.closes;
    if (this.resume) return this.onResumeHead(conn, chunk, headEnd, res);
    this.res = res;
    if (res.status === 101) {
      this.resSent = true;
      if (this.fwd.sessionCookie !== null) this.learnSession(res, b);
      this.startTunnel(conn, chunk, start, headEnd, res);
      return -1;
    }
    const closeClient = this.closeAfter || res.closeDelimited || !this.reqDone || this.fwd.isClosing;
    this.closeAfter = closeClient;
    if (res.chunked) {
      this.resChunks ??= new ChunkedScanner();
      this.resChunks.reset();
      this.resLeft = 0;
    } else {
      this.resChunks = null;
      this.resLeft = res.closeDelimited ? Infinity : res.contentLength;
    }
    this.resPhase = 'body';
    const fo = http.failover;
    if (this.log !== null && !this.log.overflow) {
      const completeHere = !res.chunked && !res.closeDelimited && res.contentLength <= chunk.length - headEnd;
      if (!completeHere) {
        // CoRAL logs the reply before sending it: a reply that fits is held until complete, so
        // that a failure on the way is a clean replay; a larger one is recorded as it goes out.
        // Hold buffers count against maxTotalLogBytes too: past it, replies are streamed (and recorded).
        const budget = this.fwd.logBudget;
        const holdable = res.chunked || res.closeDelimited || res.contentLength <= fo.holdReplyBytes;
        if (fo.holdReplyBytes > 0 && holdable && budget.used + this.fwd.holdPool.size <= budget.max) {
          budget.used += this.fwd.holdPool.size;
          this.holding = true;
          this.held = this.fwd.holdPool.take();
          this.heldLen = 0;
          this.heldHeadLen = 0;
        } else {
          this.record = new ReplyRecord(req, res, fo);
        }
      }
    }
    if (!this.holding) this.resSent = true;
    if (this.fwd.sessionCookie !== null) {
      // Learnt when the client gets the head: a held reply may still be dropped for a replay.
      if (this.holding) this.learnFrom = b;
      else this.learnSession(res, b);
    }
    if (!this.holding && this.record === null && !res.needsRewrite && !closeClient && req.minor === 1) {
      // Fast path: the head passes unchanged, in one write with the body bytes that came with it.
      return this.onResponseBody(conn, chunk, headEnd, start);
    }
    const head = res.needsRewrite || closeClient || req.minor !== 1 ? writeResponseHead(res, req.minor, closeClient) : chunk.subarray(start, headEnd);
    this.socket.cork();
    this.emit(conn, head);
    this.heldHeadLen = this.heldLen;
    const next = this.onResponseBody(conn, chunk, headEnd, headEnd);
    this.socket.uncork();
    return next;
  }

  /** Send reply bytes to the client, or copy them into the hold buffer while the reply is held. */
  private emit(conn: BackendConn, piece: Buffer | string): void {
    if (this.holding) {
      const held = this.held!;
      if (this.heldLen + piece.length <= held.length) {
        this.heldLen += typeof piece === 'string' ? held.write(piece, this.heldLen, 'latin1') : piece.copy(held, this.heldLen);
        return;
      }
      this.releaseHeld(conn); // cannot happen for replies within holdReplyBytes; be safe anyway
    }
    const ok = typeof piece === 'string' ? this.socket.write(piece, 'latin1') : this.socket.write(piece);
    this.bytesOut += piece.length;
    if (!ok) conn.socket.pause();
  }

  /** Decoded body bytes of a released reply (every byte for Content-Length, chunk data for chunked). */
  private readonly onDecoded = (buf: Uint8Array, start: number, end: number): void => {
    this.record?.add(buf, start, end);
  };

  /** Write out the held reply in one piece; the hold buffer goes back to the pool if it can. */
  private flushHeld(conn: BackendConn | null): void {
    const held = this.held!;
    this.holding = false;
    this.held = null;
    this.resSent = true;
    if (this.learnFrom !== null) {
      this.learnSession(this.res!, this.learnFrom);
      this.learnFrom = null;
    }
    this.fwd.logBudget.used -= held.length;
    // Uncorked first (the head went into the hold buffer, nothing else is queued): a corked write
    // never flushes at once, and the buffer could never return to the pool.
    while (this.socket.writableCorked > 0) this.socket.uncork();
    const ok = this.socket.write(held.subarray(0, this.heldLen));
    this.bytesOut += this.heldLen;
    if (this.socket.writableLength === 0) this.fwd.holdPool.give(held);
    else if (!ok) conn?.socket.pause();
  }

  /** The held reply grew past holdReplyBytes: release what is held and go on recording. */
  private releaseHeld(conn: BackendConn): void {
    const held = this.held!;
    const res = this.res!;
    const record = new ReplyRecord(this.req!, res, this.fwd.rt.config.http.failover);
    // What the client is about to have of the body, decoded, for range or verified resume.
    if (res.chunked) new ChunkedScanner().scan(held, this.heldHeadLen, this.heldLen, (b, s, e) => record.add(b, s, e));
    else record.add(held, this.heldHeadLen, this.heldLen);
    this.record = record;
    this.flushHeld(conn);
  }

  /** Drop a held reply that will not be sent (the exchange fails over or ends). */
  private dropHeld(): void {
    if (this.held !== null) {
      this.fwd.logBudget.used -= this.held.length;
      this.fwd.holdPool.give(this.held);
    }
    this.held = null;
    this.holding = false;
    this.learnFrom = null;
  }

  /**
   * Relays body bytes buf[bodyStart..] to the client, preceded by buf[writeFrom..bodyStart) (the
   * head, on the fast path). Returns the offset where this response ended, or buf.length.
   */
  private onResponseBody(conn: BackendConn, buf: Buffer, bodyStart: number, writeFrom: number): number {
    const tracking = this.record !== null;
    let n: number;
    let done: boolean;
    if (this.resChunks) {
      n = this.resChunks.scan(buf, bodyStart, buf.length, tracking ? this.onDecoded : undefined);
      if (n < 0) {
        this.backendFailed(conn, 'protocol', 502, `invalid chunked response: ${this.resChunks.error}`);
        return buf.length;
      }
      done = this.resChunks.done;
    } else {
      n = Math.min(this.resLeft, buf.length - bodyStart);
      this.resLeft -= n;
      done = this.resLeft === 0;
      if (tracking && n > 0) this.onDecoded(buf, bodyStart, bodyStart + n);
    }
    const stop = bodyStart + n;
    if (stop > writeFrom) {
      if (this.holding) {
        // Copied in first (the buffer has room for one more read past the bound), so that the
        // release below records every body byte the client gets.
        this.emit(conn, buf.subarray(writeFrom, stop));
        // Raw body bytes held (chunk framing included) past the bound: release and stream the rest.
        if (this.heldLen - this.heldHeadLen > this.fwd.rt.config.http.failover.holdReplyBytes && !done) this.releaseHeld(conn);
      } else {
        const ok = this.socket.write(writeFrom === 0 && stop === buf.length ? buf : buf.subarray(writeFrom, stop));
        this.bytesOut += stop - writeFrom;
        if (!ok) conn.socket.pause();
      }
    }
    if (!done) return stop;
    // Bytes after a complete response break framing: finish this one, never reuse the socket.
    if (stop < buf.length) conn.socket.destroy();
    this.completeResponse();
    return buf.length;
  }

  /** The reply is complete: release it if held, then end the exchange. */
  private completeResponse(): void {
    if (this.holding) this.flushHeld(this.conn);
    this.resPhase = 'done';
    if (this.reqDone) this.finishExchange();
    else this.finishEarly();
  }

  /** The reply completed before the request body did: nothing more of it will be read. */
  private finishEarly(): void {
    this.closeAfter = true;
    this.finishExchange();
  }

  onBackendEnd(conn: BackendConn): void {
    if (this.phase === 'tunnel') {
      this.socket.end();
      return;
    }
    if (this.resPhase !== 'body') return;
    const closeDelimited = this.resume ? this.resume.left === Infinity && this.resumeChunks === null : this.res?.closeDelimited;
    if (!closeDelimited) return;
    // The end of a close-delimited body is the end of the response.
    conn.owner = null;
    conn.socket.destroy();
    this.conn = null;
    if (this.resume) this.completeResume();
    else this.completeResponse();
  }

  onBackendTimeout(conn: BackendConn): void {
    if (this.resPhase === 'head') {
      this.backendFailed(conn, null, 504, 'backend did not answer in time');
    } else if (this.socket.writableLength > 0) {
      // We paused the backend because the client does not read: the client stalled, not it.
      this.abandonBackend();
      this.endLog();
      this.phase = 'closed';
      this.socket.destroy();
    } else {
      this.backendFailed(conn, null, 504, 'backend stalled');
    }
  }

  /**
   * The health monitor declared a backend down: fail over an exchange waiting on it when moving it
   * loses nothing — no reply yet, a reply still held, or a released one that range resume can
   * finish. A released reply that only verified replay could finish is left to complete: a dead
   * process's last bytes are still in the kernel's buffers and often arrive whole, while a
   * non-deterministic reply cannot be verified. Its own connection's end fails it over if not.
   */
  onBackendDown(backend: Backend): void {
    const conn = this.conn;
    if (conn === null || conn.backend !== backend || this.phase !== 'exchange' || this.resPhase === 'done') return;
    if (!conn.connected) {
      // Nothing was sent yet: move the queued bytes elsewhere, as for a refused connect.
      conn.discard();
      this.releaseBackend();
      this.assignBackend(conn);
      return;
    }
    if (this.log === null || this.log.overflow) return; // not recoverable: it may still complete
    if (this.resSent && (this.record === null || this.record.etag === null)) return;
    this.backendFailed(conn, null, 502, 'backend declared down');
  }

  onBackendClose(conn: BackendConn, kind: BackendFailureKind | null): void {
    if (conn !== this.conn) return;
    if (this.phase === 'tunnel') {
      this.releaseBackend();
      this.endWith(null); // resumes a client paused by the tunnel's backpressure, then lingers
      return;
    }
    if (this.phase !== 'exchange' || this.resPhase === 'done') return;
    const rt = this.fwd.rt;
    const failedKind: BackendFailureKind = kind ?? 'closed';
    if (!conn.connected) {
      // Nothing reached this backend: it is down, and the request goes to another one.
      this.releaseBackend();
      rt.failures.reportFailure(conn.backend, failedKind);
      this.fwd.pool.flush(conn.backend);
      this.publishError(conn.backend, failedKind);
      this.assignBackend(conn);
      return;
    }
    if (this.resPhase === 'head' && this.resHeadBuf === null && this.resume === null && conn.reused && !this.retriedStale && this.isResendable()) {
      // A pooled connection closed as we reused it (the keep-alive race): resend once, fresh.
      this.retriedStale = true;
      this.releaseBackend();
      const b = conn.backend;
      b.active++;
      this.backend = b;
      const fresh = new BackendConn(b, this.fwd.pool, rt);
      fresh.owner = this;
      this.conn = fresh;
      fresh.write(this.reqHead, Infinity);
      return;
    }
    this.backendFailed(conn, failedKind, 502, `backend ${failedKind}`);
  }

  /** Only bodiless requests whose head is all we sent can be resent by the foundation. */
  private isResendable(): boolean {
    const req = this.req!;
    return !req.chunked && req.contentLength <= 0 && !req.upgrade;
  }

  /**
   * The backend failed this exchange (`kind` null: a timeout or the detector, nothing to report).
   * Failover first; failing that, before any reply byte went out the client gets `status`, after,
   * its connection is cut so that a truncated body can never look complete.
   */
  private backendFailed(conn: BackendConn, kind: BackendFailureKind | null, status: number, why: string): void {
    // Let go of the connection before reporting: the report can come back as onBackendDown.
    conn.discard();
    this.releaseBackend();
    if (kind !== null && kind !== 'protocol') {
      this.fwd.rt.failures.reportFailure(conn.backend, kind);
      this.fwd.pool.flush(conn.backend);
    }
    if (kind !== null) this.publishError(conn.backend, kind);
    if (kind !== 'protocol' && this.failOver(conn.backend)) return;
    this.endLog();
    if (this.resSent) {
      this.publishExchange(conn.backend, 0);
      this.phase = 'closed';
      this.socket.destroy();
    } else {
      this.failExchange(status, why);
    }
  }

  /**
   * Issue 4: send the logged request to another backend. Before any reply byte reached the client
   * it is a plain replay (or the end of a hold); after, the reply is resumed by range or verified
   * replay. Returns false when the request cannot be recovered (the caller fails it as before).
   */
  private failOver(failed: Backend): boolean {
    const fo = this.fwd.rt.config.http.failover;
    if (!fo.enabled || this.phase !== 'exchange') return false;
    if (this.failStrategy === null) this.failBytes = this.resSent && this.record !== null ? this.record.sent : 0;
    if (this.log === null || this.log.overflow) {
      this.publishFailover(failed, null, 'none', this.log === null ? 'refused' : 'not-logged');
      return false;
    }
    if (this.failovers + 1 >= fo.maxAttempts) {
      this.publishFailover(failed, null, this.failStrategy ?? 'replay', 'failed');
      return false;
    }
    let head = this.reqHead;
    let strategy: FailoverEvent['strategy'];
    if (!this.resSent) {
      strategy = this.holding ? 'hold' : 'replay';
      this.dropHeld();
      this.res = null;
      this.resume = null;
      this.resChunks?.reset();
    } else {
      const resume = this.planResume();
      if (resume === null) {
        this.publishFailover(failed, null, 'none', 'failed');
        return false;
      }
      strategy = resume.strategy;
      if (strategy === 'range') head = rangeRequestHead(this.reqHead, resume.from, this.record!.etag!);
      this.resume = resume;
      this.resumeChunks = null;
    }
    // Never the failed backend; a session's request goes to its pin, which moves to the backend taking over.
    const b = this.sessionKey === null ? this.pickExcept(failed) : this.sessionBackend(failed);
    if (b === null) {
      this.publishFailover(failed, null, strategy, 'failed');
      return false;
    }
    // One event per failover. The previous one recovered if its backend took over (sent a byte)
    // before failing in turn; that later failure is this new failover's, not its own.
    if (this.failStrategy !== null) {
      this.publishFailover(this.failedBackend, failed, this.failStrategy, this.recoveryMs >= 0 ? 'ok' : 'failed');
    }
    this.failovers++;
    this.failStrategy = strategy;
    this.failBytes = this.resSent && this.record !== null ? this.record.sent : 0;
    this.failedBackend = failed;
    this.failedAt = this.fwd.rt.clock.now();
    this.recoveryMs = -1;
    this.resPhase = 'head';
    this.resHeadBuf = null;
    b.active++;
    this.backend = b;
    const conn = this.fwd.pool.acquire(b, this);
    this.conn = conn;
    conn.write(head, Infinity);
    for (const chunk of this.log.body) conn.write(chunk, Infinity);
    // The client may have been paused by the failed backend's backpressure; a pooled connection
    // brings no 'connect' and, if these writes fit, no 'drain' to resume it.
    if (!this.reqDone) this.resumeClient();
    return true;
  }

  /** How to finish a reply the client has partly received, or null when it cannot be. */
  private planResume(): Resume | null {
    const record = this.record;
    const res = this.res;
    if (record === null || res === null) return null;
    const prev = this.resume;
    let chunkOwed = 0;
    let framing = '';
    if (res.chunked) {
      if (prev !== null) {
        // Our own framing so far: only the owed bytes of the original chunk can be pending.
        chunkOwed = prev.chunkOwed;
        framing = prev.framingOwed;
      } else {
        switch (this.resChunks!.position) {
          case 'data':
            chunkOwed = this.resChunks!.chunkRemaining;
            break;
          case 'data-crlf':
            framing = '\r\n';
            break;
          case 'data-lf':
            framing = '\n';
            break;
          case 'boundary':
            break;
          default:
            return null; // inside a chunk-size line or the trailers: the client's parser is mid-token
        }
      }
    }
    const expected = record.digest();
    const from = record.sent;
    if (record.etag !== null && from > 0) {
      return { strategy: 'range', from, skip: 0, hash: null, expected, left: 0, chunkOwed, framingOwed: framing, reframe: res.chunked };
    }
    if (expected === null) return null;
    return { strategy: 'verified', from, skip: from, hash: createHash('sha256'), expected, left: 0, chunkOwed, framingOwed: framing, reframe: res.chunked };
  }

  /** The head of the new backend's reply during a resume: does it continue what the client has? */
  private onResumeHead(conn: BackendConn, chunk: Buffer, headEnd: number, res: ResponseHead): number {
    const r = this.resume!;
    const orig = this.res!;
    const fo = this.fwd.rt.config.http.failover;
    if (r.strategy === 'range') {
      const cr = contentRange(res);
      if (res.status === 206 && cr !== null && cr.first === r.from && cr.complete === orig.contentLength && !res.chunked) {
        r.skip = 0;
      } else if (res.status === 200 && fo.verifiedReplay && r.expected !== null) {
        // If-Range said the object changed (or ranges are not honoured): check it as a replay.
        r.strategy = 'verified';
        this.failStrategy = 'verified';
        r.skip = r.from;
        r.hash = createHash('sha256');
      } else {
        this.resumeFailed(conn);
        return -1;
      }
    }
    if (r.strategy === 'verified') {
      const sameLength = orig.chunked || orig.closeDelimited || res.chunked || res.closeDelimited || res.contentLength === orig.contentLength;
      if (res.status !== orig.status || !sameLength) {
        this.resumeFailed(conn);
        return -1;
      }
    }
    if (res.chunked) {
      this.resumeChunks = new ChunkedScanner();
      r.left = 0;
    } else {
      this.resumeChunks = null;
      r.left = res.closeDelimited ? Infinity : res.contentLength;
    }
    if (!orig.chunked && !orig.closeDelimited) {
      // Never more than the client's Content-Length still owes (a longer reply is cut, then fails).
      r.left = Math.min(r.left, r.skip + orig.contentLength - this.record!.sent);
    }
    this.resumeBroken = false;
    this.resPhase = 'body';
    return this.onResumeBody(conn, chunk, headEnd);
  }

  /** Body bytes of the new backend's reply during a resume; returns where its reply ended. */
  private onResumeBody(conn: BackendConn, buf: Buffer, start: number): number {
    const r = this.resume!;
    let n: number;
    let done: boolean;
    this.socket.cork();
    if (this.resumeChunks) {
      n = this.resumeChunks.scan(buf, start, buf.length, this.onResumeData);
      done = this.resumeChunks.done;
    } else {
      n = Math.min(r.left, buf.length - start);
      if (n > 0) this.onResumeData(buf, start, start + n);
      r.left -= n;
      done = r.left === 0;
    }
    this.socket.uncork();
    if (n < 0 || this.resumeBroken) {
      this.resumeFailed(conn);
      return buf.length;
    }
    const stop = start + n;
    if (!done) return stop;
    if (stop < buf.length) conn.socket.destroy();
    this.completeResume();
    return buf.length;
  }

  /** Decoded bytes of the new reply: hashed and dropped up to `skip`, then spliced to the client. */
  private readonly onResumeData = (buf: Uint8Array, start: number, end: number): void => {
    const r = this.resume!;
    if (this.resumeBroken) return;
    let from = start;
    if (r.skip > 0) {
      const take = Math.min(r.skip, end - start);
      r.hash!.update(buf.subarray(start, start + take));
      r.skip -= take;
      from += take;
      if (r.skip === 0 && !r.hash!.digest().equals(r.expected!)) {
        this.resumeBroken = true; // the replay is not the same reply: the client cannot be given it
        return;
      }
    }
    if (from < end) this.spliceOut(buf as Buffer, from, end);
  };

  /** Write resumed body bytes in the framing the client already has. */
  private spliceOut(buf: Buffer, from: number, end: number): void {
    const r = this.resume!;
    const conn = this.conn!;
    this.record!.add(buf, from, end);
    if (!r.reframe) {
      this.emit(conn, buf.subarray(from, end));
      return;
    }
    let p = from;
    if (r.chunkOwed > 0) {
      const take = Math.min(r.chunkOwed, end - p);
      this.emit(conn, buf.subarray(p, p + take));
      r.chunkOwed -= take;
      p += take;
      if (r.chunkOwed === 0) r.framingOwed = '\r\n';
    }
    if (r.framingOwed !== '' && r.chunkOwed === 0) {
      this.emit(conn, r.framingOwed);
      r.framingOwed = '';
    }
    if (p < end) {
      this.emit(conn, `${(end - p).toString(16)}\r\n`);
      this.emit(conn, buf.subarray(p, end));
      this.emit(conn, '\r\n');
    }
  }

  /** The new backend's reply ended: the client's reply is complete if it has every byte. */
  private completeResume(): void {
    const r = this.resume!;
    const orig = this.res!;
    const conn = this.conn;
    if (r.skip > 0 || r.chunkOwed > 0 || (!orig.chunked && !orig.closeDelimited && this.record!.sent !== orig.contentLength)) {
      if (conn) this.resumeFailed(conn);
      else this.abortClient();
      return;
    }
    if (r.reframe) {
      if (conn) this.emit(conn, `${r.framingOwed}0\r\n\r\n`);
      else this.socket.write(`${r.framingOwed}0\r\n\r\n`, 'latin1');
    }
    this.resume = null;
    this.resPhase = 'done';
    if (this.reqDone) this.finishExchange();
    else this.finishEarly();
  }

  /** A resume that cannot give the client the same reply: cut the client (the honest failure). */
  private resumeFailed(conn: BackendConn): void {
    conn.discard();
    this.releaseBackend();
    this.abortClient();
  }

  private abortClient(): void {
    this.releaseBackend();
    this.publishFailover(this.failedBackend, null, this.failStrategy ?? 'none', 'failed');
    this.failStrategy = null;
    this.endLog();
    this.publishExchange(null, 0);
    this.phase = 'closed';
    this.socket.destroy();
  }

  private publishLogOverflow(): void {
    if (channels.requestLogOverflow.hasSubscribers) channels.requestLogOverflow.publish({ service: this.fwd.rt.config.name });
  }

  private publishFailover(failed: Backend | null, to: Backend | null, strategy: FailoverEvent['strategy'], result: FailoverEvent['result']): void {
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

  private endLog(): void {
    if (this.log !== null) {
      this.log.release();
      this.log = null;
    }
  }

  private publishError(b: Backend, kind: string): void {
    if (channels.backendError.hasSubscribers) {
      channels.backendError.publish({ service: this.fwd.rt.config.name, backend: b.id, kind });
    }
  }

  /** End the exchange with our own error reply, and close. */
  private failExchange(status: number, why: string, extra = ''): void {
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

  private releaseBackend(): void {
    if (this.backend) {
      this.backend.active--;
      this.backend = null;
    }
    this.conn = null;
  }

  private abandonBackend(): void {
    if (this.conn) this.conn.discard();
    this.releaseBackend();
  }

  private publishExchange(backend: Backend | null, status: number): void {
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

  private finishExchange(): void {
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
    this.resumeClient();
    if (this.buf !== null) this.parseNext();
    // A half-closed client gets replies to every request it sent, then the connection ends.
    if (this.clientEnded && this.phase === 'head') this.endWith(null);
  }

  private startTunnel(conn: BackendConn, buf: Buffer, base: number, headEnd: number, res: ResponseHead): void {
    this.phase = 'tunnel';
    const head = res.needsRewrite ? writeResponseHead(res, 1, false) : buf.toString('latin1', base, headEnd);
    this.socket.write(head, 'latin1');
    if (headEnd < buf.length) this.socket.write(buf.subarray(headEnd));
    if (this.buf !== null) {
      conn.socket.write(this.buf);
      this.buf = null;
    }
    this.socket.setTimeout(0);
    conn.socket.setTimeout(0);
  }
}
