/**
 * @module The HTTP/1.1 forwarder: a lean proxy on raw sockets. One `ClientConn` per client
 * connection runs one exchange at a time (pipelined requests wait, unparsed, in its buffer, so
 * replies leave in order); heads are parsed and rewritten as strings, bodies are relayed as the
 * Buffers the kernel gave us, with their framing followed (never decoded) to find where each
 * message ends. Memory per connection is bounded: a side that cannot write pauses the other.
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
import { BackendConn, BackendPool, type BackendConnOwner } from './http-backend-conn.js';
import type { Forwarder, ServiceRuntime } from './service-runtime.js';

const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');
/** After a refusal, how long the client may keep sending before we cut it (lingering close). */
const LINGER_MS = 2000;

type Phase = 'head' | 'exchange' | 'tunnel' | 'closed';
type ResPhase = 'head' | 'body' | 'done';

export class HttpForwarder implements Forwarder {
  readonly pool: BackendPool;
  private readonly clients = new Set<ClientConn>();
  private closing = false;
  private idleWaiters: (() => void)[] = [];

  constructor(readonly rt: ServiceRuntime) {
    this.pool = new BackendPool(rt, rt.backends.length);
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
  private t0 = 0;
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
      req = parseRequestHead(buf.toString('latin1', 0, end));
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
    this.t0 = rt.clock.now();
    this.bytesIn = headBytes;
    this.bytesOut = 0;
    if (!this.assignBackend(null)) return;
    const conn = this.conn!;
    let ok = conn.write(this.reqHead, rt.config.http.highWaterMarkBytes);
    if (!this.reqDone && this.buf !== null) {
      const rest = this.buf;
      this.buf = null;
      ok = this.forwardBody(rest) && ok;
    }
    if (!ok) this.pauseClient();
  }

  /**
   * Pick a backend and take a connection to it, carrying over writes queued on a connection that
   * never came up. Returns false (after answering the client) when there is none.
   */
  private assignBackend(carry: BackendConn | null): boolean {
    const rt = this.fwd.rt;
    for (;;) {
      if (++this.attempts > rt.backends.length + 1) break;
      const pick = rt.balancer.pick();
      if (pick.type === 'none') break;
      const b = pick.backend;
      this.backend = b;
      b.active++;
      const conn = this.fwd.pool.acquire(b, this);
      this.conn = conn;
      if (carry) {
        for (const c of carry.pending) conn.write(c, Infinity);
      }
      return true;
    }
    this.backend = null;
    this.conn = null;
    this.failExchange(503, 'no backend available', 'Retry-After: 1\r\n');
    return false;
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
    const ok = n === 0 || this.conn === null || this.conn.write(n === chunk.length ? chunk : chunk.subarray(0, n), this.fwd.rt.config.http.highWaterMarkBytes);
    if (!ok) this.pauseClient();
    if (this.reqDone && this.resPhase === 'done') this.finishExchange();
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
        if (this.reqDone) this.closeAfter = true;
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
    this.relayBackendData(conn, chunk);
    // `chunk` lives in the pool's shared read buffer: a write still queued keeps pointing into it.
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
        start = this.onResponseBody(conn, chunk, start, start);
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
      this.socket.write(chunk.subarray(start, headEnd));
      this.bytesOut += headEnd - start;
      return headEnd;
    }
    this.res = res;
    this.resSent = true;
    if (res.status === 101) {
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
    if (!res.needsRewrite && !closeClient && req.minor === 1) {
      // Fast path: the head passes unchanged, in one write with the body bytes that came with it.
      return this.onResponseBody(conn, chunk, headEnd, start);
    }
    const head = writeResponseHead(res, req.minor, closeClient);
    this.socket.cork();
    this.socket.write(head, 'latin1');
    this.bytesOut += head.length;
    const next = this.onResponseBody(conn, chunk, headEnd, headEnd);
    this.socket.uncork();
    return next;
  }

  /**
   * Relays body bytes buf[bodyStart..] to the client, preceded by buf[writeFrom..bodyStart) (the
   * head, on the fast path). Returns the offset where this response ended, or buf.length.
   */
  private onResponseBody(conn: BackendConn, buf: Buffer, bodyStart: number, writeFrom: number): number {
    let n: number;
    let done: boolean;
    if (this.resChunks) {
      n = this.resChunks.scan(buf, bodyStart, buf.length);
      if (n < 0) {
        this.backendFailed(conn, 'protocol', 502, `invalid chunked response: ${this.resChunks.error}`);
        return buf.length;
      }
      done = this.resChunks.done;
    } else {
      n = Math.min(this.resLeft, buf.length - bodyStart);
      this.resLeft -= n;
      done = this.resLeft === 0;
    }
    const stop = bodyStart + n;
    if (stop > writeFrom) {
      const ok = this.socket.write(writeFrom === 0 && stop === buf.length ? buf : buf.subarray(writeFrom, stop));
      this.bytesOut += stop - writeFrom;
      if (!ok) conn.socket.pause();
    }
    if (!done) return stop;
    // Bytes after a complete response break framing: finish this one, never reuse the socket.
    if (stop < buf.length) conn.socket.destroy();
    this.resPhase = 'done';
    if (this.reqDone) this.finishExchange();
    else this.finishEarly();
    return buf.length;
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
    if (this.resPhase === 'body' && this.res?.closeDelimited) {
      // The end of a close-delimited body is the end of the response.
      this.resPhase = 'done';
      conn.owner = null;
      conn.socket.destroy();
      this.conn = null;
      this.finishExchange();
    }
  }

  onBackendTimeout(conn: BackendConn): void {
    if (this.resPhase === 'head') this.backendFailed(conn, null, 504, 'backend did not answer in time');
    else this.backendFailed(conn, null, 504, 'backend stalled');
  }

  onBackendClose(conn: BackendConn, kind: BackendFailureKind | null): void {
    if (conn !== this.conn) return;
    if (this.phase === 'tunnel') {
      this.socket.end();
      this.releaseBackend();
      return;
    }
    if (this.phase !== 'exchange' || this.resPhase === 'done') return;
    const rt = this.fwd.rt;
    const failedKind: BackendFailureKind = kind ?? 'closed';
    if (!conn.connected) {
      // Nothing reached this backend: it is down, and the request goes to another one.
      rt.failures.reportFailure(conn.backend, failedKind);
      this.fwd.pool.flush(conn.backend);
      this.releaseBackend();
      this.publishError(conn.backend, failedKind);
      this.assignBackend(conn);
      return;
    }
    if (this.resPhase === 'head' && this.resHeadBuf === null && conn.reused && !this.retriedStale && this.isResendable()) {
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
   * The backend failed this exchange. Before any reply byte went out the client gets `status`;
   * after, its connection is cut so that a truncated body can never look complete.
   */
  private backendFailed(conn: BackendConn, kind: BackendFailureKind | null, status: number, why: string): void {
    if (kind !== null && kind !== 'protocol') {
      this.fwd.rt.failures.reportFailure(conn.backend, kind);
      this.fwd.pool.flush(conn.backend);
    }
    if (kind !== null) this.publishError(conn.backend, kind);
    conn.discard();
    this.releaseBackend();
    if (this.resSent) {
      this.publishExchange(conn.backend, 0);
      this.phase = 'closed';
      this.socket.destroy();
    } else {
      this.failExchange(status, why);
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
    if (conn) {
      if (this.res && !this.res.closes && this.reqDone && conn.usable) this.fwd.pool.release(conn);
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
