/**
 * @module One HTTP exchange of a client connection, its request side: the request routed through the
 * service's Router (admission, session pin, balancer), a backend connection taken from the pool, the
 * request body relayed as its framing says, and the backend's bytes handed to the reply relay.
 */
import type { BackendFailureKind } from '../../core/errors.js';
import type { Backend } from '../../core/backend.js';
import { ChunkedScanner } from './http-chunked.js';
import { writeRequestHead, type RequestHead, type ResponseHead } from './http-head.js';
import type { BackendConn, BackendConnOwner } from './http-backend-conn.js';
import { isReplayable, RequestLog } from './http-failover.js';
import { NO_FLOW, type RouteDecision, type RouteHint, type Router } from '../../pipeline/index.js';
import { MAX_SESSION_KEY_BYTES, responseSetCookie } from './http-session-key.js';

import { HttpConnection } from './http-connection.js';

/** The hints of a request that names no session (no allocation per request). */
const PICK: RouteHint = Object.freeze({ via: 'balancer' });
const PICK_NEW: RouteHint = Object.freeze({ via: 'balancer', admit: 'new' });
const PICK_ESTABLISHED: RouteHint = Object.freeze({ via: 'balancer', admit: 'established' });

/** The request side of the exchange in progress. */
export abstract class HttpExchange extends HttpConnection implements BackendConnOwner {
  abstract onBackendEnd(conn: BackendConn): void;
  abstract onBackendClose(conn: BackendConn, kind: BackendFailureKind | null): void;
  abstract onBackendTimeout(conn: BackendConn): void;
  protected abstract onResponseBody(conn: BackendConn, buf: Buffer, bodyStart: number, writeFrom: number): number;
  protected abstract onResponseHead(conn: BackendConn, chunk: Buffer, start: number): number;
  protected abstract onResumeBody(conn: BackendConn, buf: Buffer, start: number): number;


  protected startExchange(req: RequestHead, headBytes: number): void {
    const rt = this.fwd.rt;
    this.phase = 'exchange';
    this.req = req;
    this.reqHead = writeRequestHead(req, this.client, this.owned);
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
    this.fruitlessFailovers = 0;
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
    if (!this.assignBackend(null, true)) return;
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
   * Pick a backend (through the Router) and take a connection to it, carrying over writes queued on a
   * connection that never came up. Returns false (after answering the client) when there is none.
   *
   * The first routing of a request (`first`) also asks SA2C (issue 8, SARA III.B). It is
   * 'established' when it names a session open in the session table (sessions.cookie /
   * sessions.header), or, with neither configured, when it is not the first request of its
   * connection; otherwise it opens a session: 'new'. A refused new session gets 503 with the
   * verdict's Retry-After (RFC 9110 §15.6.4, §10.2.3); a degraded request of an established session
   * is dropped — not forwarded, answered 503 — while its session stays pinned. Both close the
   * connection like every 503 of ours.
   */
  protected assignBackend(carry: BackendConn | null, first = false): boolean {
    const rt = this.fwd.rt;
    let b: Backend | null = null;
    if (++this.attempts <= rt.backends.length + 1) {
      // A request of a session moves off the backend it could not reach; one of no session takes the
      // balancer's plain pick (a backend reported down is out of its snapshot already).
      const d = this.route(carry === null || this.sessionKey === null ? null : carry.backend, first);
      if (d.type === 'forward') b = d.backend;
      else if (d.type === 'refuse' && d.reason === 'overload') {
        this.failExchange(503, 'overloaded: new session refused', `Retry-After: ${d.retryAfterS}\r\n`);
        return false;
      } else if (d.type === 'degrade') {
        this.failExchange(503, 'overloaded: request dropped');
        return false;
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
   * Routes this request, never to `avoid` (it just failed this request and may not be marked down: a
   * timeout, a draining backend). Issue 5 (SARA III.C): a request of session `sessionKey` follows its
   * pin (kept while the backend is draining), re-pinned when the pinned backend is down or is
   * `avoid` (a re-pin, counted). A key we do not know (the dispatcher restarted, the client made it
   * up): in cookie mode the balancer's plain pick, with no session opened — sessions open only from a
   * backend's Set-Cookie (learnSession), so invented values cannot fill the table (review finding
   * 12); in header mode the client names its session, which is pinned on the balancer's choice on
   * first sight. A full session table serves the request unpinned. `first`: ask admission control.
   */
  protected route(avoid: Backend | null, first: boolean): RouteDecision {
    const router = this.fwd.router;
    const key = this.sessionKey;
    if (key === null) {
      if (avoid !== null) return router.route(NO_FLOW, { via: 'balancer', avoid });
      if (!first) return router.route(NO_FLOW, PICK);
      // No cookie/header configured: the rule, "the first request of a connection is new", so any later one on a keep-alive connection is established.
      return router.route(NO_FLOW, this.fwd.sessionKeyOf === null && this.requests > 1 ? PICK_ESTABLISHED : PICK_NEW);
    }
    const open = this.fwd.sessionCookie === null;
    return router.route(NO_FLOW, { via: 'key', key, open, avoid, admit: first ? 'auto' : undefined, unpinnedWhenFull: true });
  }

  /**
   * Issue 5: a reply that sets the session cookie names the session its backend now holds (a first
   * visit, a rotated id, a key we had pinned elsewhere): pin it to `backend`. An expired one (RFC 6265
   * §5.3: the client deletes the cookie) ends the session the request named and the one it names.
   */
  protected learnSession(res: ResponseHead, backend: Backend): void {
    const set = responseSetCookie(res.fields, this.fwd.sessionCookie!, this.fwd.wallNow);
    if (set === null) return;
    const key = this.sessionKey;
    const value = set.value.length <= MAX_SESSION_KEY_BYTES ? set.value : '';
    if (set.expired) {
      for (const k of [key, value]) {
        if (k === null || k === '') continue;
        this.fwd.router.end(k);
      }
      return;
    }
    // The request's own value too: an unknown one the backend accepts opens its session here.
    if (value !== '') this.fwd.router.pin(value, backend);
  }

  /** Relay request body bytes, following the framing; leftover bytes are the next request. */
  protected forwardBody(chunk: Buffer): boolean {
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
    // Kept by the log and by a write that may stay queued: never a view of the shared read buffer.
    const body = n === 0 ? chunk : this.ownBytes(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (this.log !== null && n > 0 && !this.log.append(body)) this.publishLogOverflow();
    const ok = n === 0 || this.conn === null || this.conn.write(body, this.fwd.rt.config.http.highWaterMarkBytes);
    if (!ok) this.pauseClient();
    return ok;
  }

  // ---- backend side --------------------------------------------------------------------------

  onBackendConnect(conn: BackendConn): void {
    const b = conn.backend;
    if (b.state !== 'up') this.fwd.router.succeeded(b);
    if (this.paused && this.phase === 'exchange' && !this.reqDone) this.resumeClient();
  }

  onBackendDrain(): void {
    if (this.phase === 'exchange' && !this.reqDone) this.resumeClient();
    else if (this.phase === 'tunnel') this.resumeClient();
  }

  onBackendData(conn: BackendConn, chunk: Buffer): void {
    if (this.failedAt > 0 && this.recoveryMs < 0) this.recoveryMs = this.fwd.rt.clock.now() - this.failedAt;
    this.relayBackendData(conn, chunk);
    // `chunk` lives in the connection's read buffer: a write still queued keeps pointing into it,
    // so its next read must go elsewhere. (Held replies are copied out, not kept as views.)
    if (this.socket.writableLength > 0) conn.reads.retain();
  }

  protected relayBackendData(conn: BackendConn, chunk: Buffer): void {
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
}
