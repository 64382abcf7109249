/**
 * @module One HTTP/2 stream presented to the HTTP/1.1 forwarder as a client connection of its own.
 * The stream's request is written into it as an HTTP/1.1 request (h2-headers.ts) and the forwarder's
 * client-connection machinery runs on it unchanged — routing, SA2C, sessions, the request log,
 * replay, hold, range and verified resume, every refusal — while the HTTP/1.1 reply it writes back
 * is parsed and sent on the stream as HEADERS, DATA and trailers. A reply the forwarder cuts short
 * (it resets its client when a resume is impossible) becomes RST_STREAM on this stream alone; the
 * other streams of the connection never notice. Memory is bounded both ways: the forwarder sees a
 * socket that stops draining while the client gives no window, and the stream stops reading while
 * the forwarder's backend does not take the body.
 */
import { Duplex } from 'node:stream';
import http2, { type ServerHttp2Stream } from 'node:http2';
import type { TimerHandle } from '../../core/clock.js';
import { CRLFCRLF, parseResponseHead, type ResponseHead } from '../http/http-head.js';
import { ChunkedScanner } from '../http/http-chunked.js';
import { chunkedTrailer, responseHeaders, trailerHeaders } from './h2-headers.js';

const { NGHTTP2_NO_ERROR } = http2.constants;

/** What a stream needs of its connection. */
export interface H2StreamOwner {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly maxHeaderBytes: number;
  readonly stallTimeoutMs: number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** The client reset a stream whose reply was not complete (rapid reset accounting). */
  clientReset(): void;
  /** A reply could not move for stallTimeoutMs: the client gives no window. */
  stalled(): void;
  /** The forwarder cut the reply short: RST_STREAM sent. */
  replyAborted(): void;
  streamDone(s: H2StreamSocket): void;
}

type ReplyPhase = 'head' | 'body' | 'done';

/** The HTTP/1.1 client side of one HTTP/2 stream (the forwarder reads the request from it and writes the reply into it). */
export class H2StreamSocket extends Duplex {
  private phase: ReplyPhase = 'head';
  private headBuf: Buffer | null = null;
  private res: ResponseHead | null = null;
  private left = 0;
  private dechunk: ChunkedScanner | null = null;
  private trailers: Record<string, string | string[] | undefined> | null = null;
  private stall: TimerHandle | null = null;
  private wantDrain = false;
  /** The forwarder's reply is complete and the stream ended. */
  private finished = false;

  constructor(
    private readonly stream: ServerHttp2Stream,
    head: Buffer,
    private readonly method: string,
    private readonly chunked: boolean,
    endStream: boolean,
    private readonly owner: H2StreamOwner,
  ) {
    super({ allowHalfOpen: true, decodeStrings: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.push(head);
    if (!endStream) {
      stream.on('data', (chunk: Buffer) => this.onRequestData(chunk));
      stream.on('trailers', (t: Record<string, string | string[] | undefined>) => {
        this.trailers = t;
      });
      stream.on('end', () => {
        if (this.chunked) this.push(chunkedTrailer(this.trailers), 'latin1');
      });
    }
    stream.on('close', () => this.onStreamClose());
    stream.on('error', () => {});
  }

  // What the forwarder's client connection asks of a socket.
  get remoteAddress(): string | undefined {
    return this.owner.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.owner.remotePort;
  }
  setNoDelay(): this {
    return this;
  }
  /** Idle time is the HTTP/2 connection's to watch, not a stream's. */
  setTimeout(): this {
    return this;
  }

  /**
   * The forwarder writes views into its backend connection's read buffer, which that connection's
   * next read reuses unless the exchange saw the write queued. A write that is queued here (an earlier
   * one waits for the client's window, or the socket is corked) is copied first, so no queued view
   * depends on that check. A write taken at once is consumed (copied into DATA) before this returns.
   */
  override write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    const queued = this.writableLength > 0 || this.writableCorked > 0;
    const owned = queued && Buffer.isBuffer(chunk) ? Buffer.from(chunk) : chunk;
    return super.write(owned, encoding as BufferEncoding, cb as (err?: Error | null) => void);
  }

  // ---- request: stream → forwarder ----------------------------------------------------------

  private onRequestData(chunk: Buffer): void {
    if (chunk.length === 0) return;
    let ok: boolean;
    if (this.chunked) {
      this.push(`${chunk.length.toString(16)}\r\n`, 'latin1');
      this.push(chunk);
      ok = this.push('\r\n', 'latin1');
    } else {
      ok = this.push(chunk);
    }
    // The forwarder's backend does not take the body as fast: stop reading (the client's window closes).
    if (!ok) this.stream.pause();
  }

  override _read(): void {
    if (this.stream.isPaused()) this.stream.resume();
  }

  // ---- reply: forwarder → stream ------------------------------------------------------------

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.phase !== 'done' && !this.stream.closed && !this.stream.destroyed) this.onReply(chunk);
    if (this.wantDrain && !this.stream.closed && !this.stream.destroyed) {
      this.stall ??= this.owner.setTimeout(() => {
        this.stall = null;
        this.owner.stalled();
      }, this.owner.stallTimeoutMs);
      this.stream.once('drain', () => {
        this.wantDrain = false;
        this.stall?.cancel();
        this.stall = null;
        cb();
      });
      return;
    }
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    // The forwarder ended its side: the end of a close-delimited reply, or of an answer of its own.
    if (this.phase === 'body' && this.res !== null && this.res.closeDelimited) this.endReply();
    else if (this.phase !== 'done') this.abortStream();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.stall?.cancel();
    this.stall = null;
    // Destroyed before its reply was complete: the forwarder could not finish it (or the client left).
    if (!this.finished) this.abortStream();
    cb(err);
  }

  private onReply(buf: Buffer): void {
    let at = 0;
    while (at < buf.length && this.phase !== 'done') {
      if (this.phase === 'head') {
        at = this.onHead(buf, at);
        if (at < 0) return;
      } else {
        at = this.onBody(buf, at);
      }
    }
  }

  /** Reads (the rest of) a reply head; 1xx heads go out as interim HEADERS. Returns where it ended, or -1. */
  private onHead(chunk: Buffer, start: number): number {
    let buf = chunk;
    let from = start;
    if (this.headBuf !== null) {
      buf = Buffer.concat([this.headBuf, chunk.subarray(start)]);
      from = 0;
      this.headBuf = null;
    }
    const end = buf.indexOf(CRLFCRLF, from);
    if (end < 0) {
      if (buf.length - from > this.owner.maxHeaderBytes * 2) this.abortStream();
      else this.headBuf = Buffer.from(buf.subarray(from));
      return -1;
    }
    let res: ResponseHead;
    try {
      res = parseResponseHead(buf.toString('latin1', from, end), this.method);
    } catch {
      this.abortStream(); // the forwarder checked it already: cannot happen
      return -1;
    }
    const next = buf === chunk ? end + 4 : chunk.length - (buf.length - (end + 4));
    if (res.status < 200) {
      if (res.status !== 101) this.stream.additionalHeaders(responseHeaders(res));
      return next;
    }
    this.res = res;
    const noBody = !res.chunked && !res.closeDelimited && res.contentLength <= 0;
    try {
      this.stream.respond(responseHeaders(res), { endStream: noBody, waitForTrailers: res.chunked });
    } catch {
      this.abortStream(); // a field value HTTP/2 cannot carry
      return -1;
    }
    if (res.chunked) {
      this.dechunk = new ChunkedScanner(undefined, true);
      this.stream.once('wantTrailers', () => {
        const t = this.dechunk!.trailers!;
        this.stream.sendTrailers(t.length > 0 ? trailerHeaders(t) : {});
      });
    }
    this.left = res.closeDelimited ? Infinity : Math.max(0, res.contentLength);
    this.phase = 'body';
    if (noBody || this.method === 'HEAD') this.finishReply();
    return next;
  }

  private onBody(buf: Buffer, start: number): number {
    if (this.dechunk !== null) {
      const n = this.dechunk.scan(buf, start, buf.length, this.sendData);
      if (n < 0) {
        this.abortStream();
        return buf.length;
      }
      if (this.dechunk.done) this.endReply();
      return buf.length;
    }
    const n = Math.min(this.left, buf.length - start);
    if (n > 0) this.sendData(buf, start, start + n);
    this.left -= n;
    if (this.left === 0) this.endReply();
    return buf.length;
  }

  /** Body bytes out as DATA. Copied: the forwarder's reads land in a buffer it reuses. */
  private readonly sendData = (buf: Uint8Array, start: number, end: number): void => {
    if (end <= start || this.method === 'HEAD') return;
    if (!this.stream.write(Buffer.from(buf.subarray(start, end)))) this.wantDrain = true;
  };

  private endReply(): void {
    if (this.phase === 'done') return;
    this.stream.end();
    this.finishReply();
  }

  private finishReply(): void {
    this.phase = 'done';
    this.finished = true;
    // The exchange ends in the forwarder's current call; its client connection closes after.
    setImmediate(() => {
      // A reply complete before its request body (RFC 9113 §8.1): RST_STREAM NO_ERROR, after the
      // reply, asks the client to stop sending it.
      if (!this.stream.closed && !this.stream.destroyed && !this.stream.readableEnded) this.stream.close(NGHTTP2_NO_ERROR);
      this.destroy();
    });
  }

  /** The reply cannot be given whole: reset this stream only. */
  private abortStream(): void {
    if (this.phase === 'done' && this.finished) return;
    this.phase = 'done';
    if (!this.stream.closed && !this.stream.destroyed) {
      this.owner.replyAborted();
      // destroy(err), not close(INTERNAL_ERROR): node's close() first ends the writable side, so
      // END_STREAM would go out before the RST_STREAM and a truncated body would look complete.
      this.stream.destroy(new Error('reply cut short'));
    }
    if (!this.destroyed) setImmediate(() => this.destroy());
  }

  private onStreamClose(): void {
    this.stall?.cancel();
    this.stall = null;
    if (!this.finished && this.phase !== 'done' && this.stream.rstCode !== undefined && this.stream.rstCode !== NGHTTP2_NO_ERROR) {
      this.owner.clientReset();
    }
    this.owner.streamDone(this);
    if (!this.destroyed) {
      this.phase = 'done';
      this.destroy();
    }
  }
}
