/**
 * @module HTTP/2 to clients (issue 19, RFC 9113) on node:http2 (nghttp2), in front of the HTTP/1.1
 * forwarder. A TLS connection that negotiated ALPN `h2`, or a cleartext one that opens with the
 * HTTP/2 preface (prior-knowledge `h2c`), becomes an HTTP/2 session; any other goes to the HTTP/1.1
 * forwarder as before. Each stream of a session is handed to the HTTP/1.1 forwarder as a client
 * connection of its own (h2-stream-socket.ts), so that every failure guarantee of the HTTP/1.1 path
 * holds per stream and a failover of one stream never touches the others.
 *
 * Defences, each bounded by `http.http2` and counted (`stats.defences`, the `holdfast:http2:defence`
 * channel): rapid reset (CVE-2023-44487), settings and ping floods, oversized header blocks (HPACK
 * bombs, CONTINUATION floods), zero-window stalls. A session over a bound gets GOAWAY
 * ENHANCE_YOUR_CALM and is closed; other sessions are not affected.
 */
import http2, { type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type net from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Backend } from '../../core/backend.js';
import type { TimerHandle } from '../../core/clock.js';
import { channels, type Http2Defence } from '../../core/diagnostics.js';
import type { Http2Config } from '../../config/schema.js';
import type { Forwarder, ServiceRuntime } from '../../pipeline/index.js';
import { HttpForwarder } from '../http/http-forwarder.js';
import { translateRequest } from './h2-headers.js';
import { H2StreamSocket, type H2StreamOwner } from './h2-stream-socket.js';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants;
/** nghttp2's error for a CONTINUATION flood (nghttp2.h, 1.61: NGHTTP2_ERR_TOO_MANY_CONTINUATIONS). */
const NGHTTP2_ERR_TOO_MANY_CONTINUATIONS = -905;
/** How often sessions are checked for streams refused before they surfaced (header-block defence). */
const HEADER_BLOCK_CHECK_MS = 250;

/** The client connection preface (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** Rate windows of the flood defences. */
const RATE_WINDOW_MS = 1000;

export interface Http2Stats {
  sessions: number;
  streams: number;
  /** Streams whose reply the HTTP/1.1 path could not finish (RST_STREAM INTERNAL_ERROR). */
  streamsAborted: number;
  /** Sessions closed by a defence, by defence. */
  defences: Record<Http2Defence, number>;
}

/** A count over a fixed one-second window. */
class RateWindow {
  private start = 0;
  private n = 0;
  constructor(private readonly max: number) {}
  /** One more event at `now`: true when over the bound. */
  hit(now: number): boolean {
    if (now - this.start >= RATE_WINDOW_MS) {
      this.start = now;
      this.n = 0;
    }
    return ++this.n > this.max;
  }
}

/** One client connection speaking HTTP/2. */
class H2Conn implements H2StreamOwner {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly maxHeaderBytes: number;
  readonly stallTimeoutMs: number;
  private readonly resets: RateWindow;
  private readonly settings: RateWindow;
  private readonly pings: RateWindow;
  /** Streams that reached onStream. */
  private seen = 0;
  private readonly streams = new Set<H2StreamSocket>();
  private closing = false;
  /** A defence closed it (counted once). */
  private calmed = false;

  constructor(
    private readonly front: Http2Forwarder,
    readonly socket: net.Socket,
    readonly session: ServerHttp2Session,
  ) {
    const cfg = front.cfg;
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    this.maxHeaderBytes = front.rt.config.http.maxHeaderBytes;
    this.stallTimeoutMs = cfg.stallTimeoutMs;
    this.resets = new RateWindow(cfg.maxResetsPerSecond);
    this.settings = new RateWindow(cfg.maxSettingsPerSecond);
    this.pings = new RateWindow(cfg.maxPingsPerSecond);
    session.on('stream', (stream: ServerHttp2Stream, _h: unknown, flags: number, raw: string[]) => this.onStream(stream, flags, raw));
    session.on('remoteSettings', () => {
      if (this.settings.hit(front.rt.clock.now())) this.calm('settings-flood');
    });
    session.on('ping', () => {
      if (this.pings.hit(front.rt.clock.now())) this.calm('ping-flood');
    });
    session.on('error', (err: Error & { errno?: number }) => {
      // nghttp2 ends a session over its CONTINUATION bound (8 frames after a HEADERS) as fatal.
      if (err.errno === NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) front.defence('header-block', this.remoteAddress);
    });
    session.on('goaway', () => this.closeWhenIdle());
    session.setTimeout(front.rt.config.http.idleTimeoutMs, () => {
      if (this.streams.size === 0) this.session.close();
    });
    session.on('close', () => front.connGone(this));
  }

  private onStream(stream: ServerHttp2Stream, flags: number, raw: string[]): void {
    const front = this.front;
    front.stats.streams++;
    this.seen++;
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    const req = translateRequest(raw, endStream);
    if (req.type === 'refuse') {
      stream.on('error', () => {});
      stream.respond({ ':status': req.status, 'content-type': 'text/plain; charset=utf-8' });
      stream.end(`${req.status}: ${req.reason}\n`);
      return;
    }
    const s = new H2StreamSocket(stream, req.head, req.method, req.chunked, endStream, this);
    this.streams.add(s);
    front.rt.edge?.inherit(s, this.socket);
    front.http1.handle(s as unknown as net.Socket);
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.front.rt.clock.setTimeout(fn, ms);
  }

  clientReset(): void {
    if (this.resets.hit(this.front.rt.clock.now())) this.calm('rapid-reset');
  }

  stalled(): void {
    this.calm('zero-window');
  }

  replyAborted(): void {
    this.front.stats.streamsAborted++;
  }

  streamDone(s: H2StreamSocket): void {
    this.streams.delete(s);
    if (this.closing && this.streams.size === 0) this.session.close();
  }

  /**
   * Streams the client opened that never reached us: nghttp2 (or node) reset them before any stream
   * event — a header block over maxHeaderListSize or maxHeaderListPairs (an HPACK bomb), malformed
   * pseudo-header fields, a stream over maxConcurrentStreams. Client stream ids are odd and
   * increasing, so the streams processed are (lastProcStreamID + 1) / 2; a client that skips ids
   * counts the skipped ones too (no browser or library does).
   */
  checkHeaderBlocks(): void {
    if (this.session.destroyed) return;
    const last = this.session.state.lastProcStreamID ?? 0;
    const bad = (last + 1) / 2 - this.seen;
    if (bad >= this.front.cfg.maxBadHeaderBlocks) this.calm('header-block');
  }

  /** A defence tripped: GOAWAY ENHANCE_YOUR_CALM, then close (RFC 9113 §5.4.1). */
  calm(defence: Http2Defence): void {
    if (this.calmed || this.session.destroyed) return;
    this.calmed = true;
    this.front.defence(defence, this.remoteAddress);
    this.session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    // After the GOAWAY is flushed; the socket goes with the session.
    setImmediate(() => this.session.destroy());
  }

  /** GOAWAY NO_ERROR: finish the streams in flight, take no new one. */
  closeWhenIdle(): void {
    this.closing = true;
    if (!this.session.closed && !this.session.destroyed) {
      try {
        this.session.goaway(NGHTTP2_NO_ERROR);
      } catch {
        // already going away
      }
    }
    if (this.streams.size === 0) this.session.close();
  }

  destroy(): void {
    this.session.destroy();
    this.socket.destroy();
  }
}

/**
 * An HTTP service with `http.http2`: HTTP/2 sessions in front of the HTTP/1.1 forwarder, which
 * serves HTTP/1.1 clients on the same listener as before.
 */
export class Http2Forwarder implements Forwarder {
  readonly http1: HttpForwarder;
  readonly cfg: Http2Config;
  readonly stats: Http2Stats = {
    sessions: 0,
    streams: 0,
    streamsAborted: 0,
    defences: { 'rapid-reset': 0, 'settings-flood': 0, 'ping-flood': 0, 'header-block': 0, 'zero-window': 0 },
  };
  private readonly server: Http2Server;
  private readonly conns = new Set<H2Conn>();
  private pendingSocket: net.Socket | null = null;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private readonly checker: TimerHandle;

  constructor(readonly rt: ServiceRuntime) {
    this.http1 = new HttpForwarder(rt);
    this.cfg = rt.config.http.http2;
    const cfg = this.cfg;
    // Never listens: sockets are handed to it (after TLS and ALPN, or after the preface was seen).
    this.server = http2.createServer({
      settings: {
        maxConcurrentStreams: cfg.maxConcurrentStreams,
        initialWindowSize: cfg.initialWindowSize,
        maxFrameSize: cfg.maxFrameSize,
        maxHeaderListSize: cfg.maxHeaderListSize,
        enablePush: false,
      },
      maxHeaderListPairs: rt.config.http.maxHeaderCount + 8,
      maxSessionMemory: cfg.maxSessionMemoryMiB,
      maxSessionInvalidFrames: 100,
      maxSessionRejectedStreams: 100,
      maxSettings: 32,
      unknownProtocolTimeout: rt.config.http.headerTimeoutMs,
    });
    this.checker = rt.clock.setInterval(() => {
      for (const c of this.conns) c.checkHeaderBlocks();
    }, HEADER_BLOCK_CHECK_MS);
    this.server.on('session', (session: ServerHttp2Session) => {
      const socket = this.pendingSocket;
      this.pendingSocket = null;
      if (socket === null) {
        session.destroy();
        return;
      }
      this.stats.sessions++;
      this.conns.add(new H2Conn(this, socket, session));
    });
  }

  handle(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const alpn = (socket as TLSSocket).alpnProtocol;
    if (alpn !== undefined) {
      // TLS: ALPN decided (RFC 9113 §3.2); no preface sniffing.
      if (alpn === 'h2') this.startSession(socket);
      else this.http1.handle(socket);
      return;
    }
    this.sniff(socket);
  }

  /** Cleartext: the HTTP/2 preface means prior-knowledge h2c (RFC 9113 §3.3); anything else is HTTP/1.1. */
  private sniff(socket: net.Socket): void {
    let seen: Buffer | null = null;
    const done = (): void => {
      socket.off('data', onData);
      socket.off('error', noop);
      socket.off('close', done);
      socket.off('timeout', onTimeout);
    };
    const onData = (chunk: Buffer): void => {
      seen = seen === null ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isH2 = seen.compare(H2_PREFACE, 0, n, 0, n) === 0;
      if (isH2 && n < H2_PREFACE.length) return; // a prefix of the preface so far: wait
      done();
      socket.pause();
      socket.unshift(seen);
      if (isH2) {
        socket.setTimeout(0); // the session's own idle timeout governs
        this.startSession(socket);
      } else {
        this.http1.handle(socket); // sets its own timeouts
        socket.resume();
      }
    };
    // A connection that sends nothing (or half a preface) is not kept: the head timeout applies.
    const onTimeout = (): void => {
      done();
      socket.destroy();
    };
    socket.setTimeout(this.rt.config.http.headerTimeoutMs);
    socket.on('timeout', onTimeout);
    socket.on('data', onData);
    socket.on('error', noop);
    socket.on('close', done);
  }

  private startSession(socket: net.Socket): void {
    socket.setNoDelay(true);
    this.pendingSocket = socket;
    this.server.emit('connection', socket);
    if (this.pendingSocket === socket) {
      // No session came of it (node refused the socket): do not keep it.
      this.pendingSocket = null;
      socket.destroy();
    }
  }

  /** @internal */
  connGone(c: H2Conn): void {
    this.conns.delete(c);
    if (this.closing && this.conns.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** @internal A defence closed a session. */
  defence(defence: Http2Defence, address: string | undefined): void {
    this.stats.defences[defence]++;
    if (channels.http2Defence.hasSubscribers) channels.http2Defence.publish({ service: this.rt.config.name, defence, address: address ?? '' });
  }

  backendDown(backend: Backend): void {
    this.http1.backendDown(backend);
  }

  /** GOAWAY to every session; streams in flight finish; then the HTTP/1.1 side drains. */
  async close(): Promise<void> {
    this.closing = true;
    this.checker.cancel();
    for (const c of this.conns) c.closeWhenIdle();
    if (this.conns.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.http1.close();
  }

  destroy(): void {
    this.closing = true;
    this.checker.cancel();
    for (const c of [...this.conns]) c.destroy();
    this.http1.destroy();
  }
}

function noop(): void {}
