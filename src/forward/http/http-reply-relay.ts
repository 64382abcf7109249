/**
 * @module The reply relay of an HTTP exchange: the response head checked and rewritten, the body
 * relayed (or held until complete, for a clean replay), Set-Cookie sessions learnt, 1xx and
 * upgrades (the tunnel) passed through, and the exchange completed.
 */
import type { BackendFailureKind } from '../../core/errors.js';
import { ChunkedScanner } from './http-chunked.js';
import { parseResponseHead, writeResponseHead, type ResponseHead } from './http-head.js';
import { BackendConn } from './http-backend-conn.js';
import { ReplyRecord } from './http-failover.js';

import { CRLFCRLF } from './http-head.js';
import { HttpExchange } from './http-exchange.js';

/** The reply side of the exchange in progress. */
export abstract class HttpReplyRelay extends HttpExchange {
  protected abstract backendFailed(conn: BackendConn, kind: BackendFailureKind | null, status: number, why: string): void;
  protected abstract completeResume(): void;
  protected abstract onResumeHead(conn: BackendConn, chunk: Buffer, headEnd: number, res: ResponseHead): number;


  /** Returns the offset after the head, or -1 when the chunk is used up or the exchange ended. */
  protected onResponseHead(conn: BackendConn, chunk: Buffer, start: number): number {
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
    if (b.state !== 'up') this.fwd.router.succeeded(b);

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
  protected emit(conn: BackendConn, piece: Buffer | string): void {
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
  protected readonly onDecoded = (buf: Uint8Array, start: number, end: number): void => {
    this.record?.add(buf, start, end);
  };

  /** Write out the held reply in one piece; the hold buffer goes back to the pool if it can. */
  protected flushHeld(conn: BackendConn | null): void {
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
  protected releaseHeld(conn: BackendConn): void {
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
  protected dropHeld(): void {
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
  protected onResponseBody(conn: BackendConn, buf: Buffer, bodyStart: number, writeFrom: number): number {
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
  protected completeResponse(): void {
    if (this.holding) this.flushHeld(this.conn);
    this.resPhase = 'done';
    if (this.reqDone) this.finishExchange();
    else this.finishEarly();
  }

  /** The reply completed before the request body did: nothing more of it will be read. */
  protected finishEarly(): void {
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

  protected startTunnel(conn: BackendConn, buf: Buffer, base: number, headEnd: number, res: ResponseHead): void {
    this.phase = 'tunnel';
    const head = res.needsRewrite ? writeResponseHead(res, 1, false) : buf.toString('latin1', base, headEnd);
    this.socket.write(head, 'latin1');
    if (headEnd < buf.length) this.socket.write(buf.subarray(headEnd));
    if (this.buf !== null) {
      conn.socket.write(this.buf);
      this.buf = null;
    }
    // A tunnel has no idle bound (as a TCP splice without tcp.idleTimeoutMs).
    if (this.idle !== null) this.idle.cancel();
    else this.socket.setTimeout(0);
    conn.stopTimeout();
  }
}
