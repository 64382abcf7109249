/**
 * @module Failover and resume of an HTTP exchange (issue 4, CoRAL): a backend that fails, times out
 * or is declared down mid-exchange is reported through the Router's failure entry and the logged
 * request moves to another backend — replayed before any reply byte went out, resumed by range or
 * by verified replay after. The leaf of the client-connection layers: `ClientConn`.
 */
import type { BackendFailureKind } from '../../core/errors.js';
import type { Backend } from '../../core/backend.js';
import { ChunkedScanner } from './http-chunked.js';
import type { ResponseHead } from './http-head.js';
import { BackendConn, type BackendConnOwner } from './http-backend-conn.js';
import { createHash } from 'node:crypto';
import { contentRange, rangeRequestHead, type Resume } from './http-failover.js';
import type { FailoverEvent } from '../../core/diagnostics.js';

import { HttpReplyRelay } from './http-reply-relay.js';

/** A client connection, whole: its exchanges recover from backend failures. */
export class ClientConn extends HttpReplyRelay implements BackendConnOwner {

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
      this.fwd.router.failed(conn.backend, failedKind);
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
  protected isResendable(): boolean {
    const req = this.req!;
    return !req.chunked && req.contentLength <= 0 && !req.upgrade;
  }

  /**
   * The backend failed this exchange (`kind` null: a timeout or the detector, nothing to report).
   * Failover first; failing that, before any reply byte went out the client gets `status`, after,
   * its connection is cut so that a truncated body can never look complete.
   */
  protected backendFailed(conn: BackendConn, kind: BackendFailureKind | null, status: number, why: string): void {
    // Let go of the connection before reporting: the report can come back as onBackendDown.
    conn.discard();
    this.releaseBackend();
    if (kind !== null && kind !== 'protocol') {
      this.fwd.router.failed(conn.backend, kind);
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
  protected failOver(failed: Backend): boolean {
    const fo = this.fwd.rt.config.http.failover;
    if (!fo.enabled || this.phase !== 'exchange') return false;
    const sent = this.resSent && this.record !== null ? this.record.sent : 0;
    if (this.failStrategy === null) this.failBytes = sent;
    if (this.log === null || this.log.overflow) {
      this.publishFailover(failed, null, 'none', this.log === null ? 'refused' : 'not-logged');
      return false;
    }
    // maxAttempts bounds the backends that fail one after the other without giving the client a
    // new reply byte (a request that kills its backends). A backend that took the reply further
    // before it failed resets the count: long replies may outlive any number of unrelated deaths.
    if (this.failStrategy !== null && sent > this.failBytes) this.fruitlessFailovers = 0;
    if (this.fruitlessFailovers + 1 >= fo.maxAttempts) {
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
    const d = this.route(failed, false);
    const b = d.type === 'forward' ? d.backend : null;
    if (b === null) {
      this.publishFailover(failed, null, strategy, 'failed');
      return false;
    }
    // One event per failover. The previous one recovered if its backend took over (sent a byte)
    // before failing in turn; that later failure is this new failover's, not its own.
    if (this.failStrategy !== null) {
      this.publishFailover(this.failedBackend, failed, this.failStrategy, this.recoveryMs >= 0 ? 'ok' : 'failed');
    }
    this.fruitlessFailovers++;
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
  protected planResume(): Resume | null {
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
  protected onResumeHead(conn: BackendConn, chunk: Buffer, headEnd: number, res: ResponseHead): number {
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
  protected onResumeBody(conn: BackendConn, buf: Buffer, start: number): number {
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
  protected readonly onResumeData = (buf: Uint8Array, start: number, end: number): void => {
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
  protected spliceOut(buf: Buffer, from: number, end: number): void {
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
  protected completeResume(): void {
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
  protected resumeFailed(conn: BackendConn): void {
    conn.discard();
    this.releaseBackend();
    this.abortClient();
  }

  protected abortClient(): void {
    this.releaseBackend();
    this.publishFailover(this.failedBackend, null, this.failStrategy ?? 'none', 'failed');
    this.failStrategy = null;
    this.endLog();
    this.publishExchange(null, 0);
    this.phase = 'closed';
    this.socket.destroy();
  }
}
