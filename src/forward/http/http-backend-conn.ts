/**
 * @module One keep-alive connection to a backend, and the per-backend idle pool. Socket handlers
 * are bound once per connection and dispatch to whichever exchange owns the connection now, so a
 * request costs no listener churn. Writes made before the connection is up are queued here so a
 * refused connection can hand them, untouched, to the next backend.
 */
import net from 'node:net';
import type { BackendFailureKind } from '../../core/errors.js';
import type { TimerHandle } from '../../core/clock.js';
import type { Backend } from '../../core/backend.js';
import type { ServiceRuntime } from '../../pipeline/service-runtime.js';
import { connectBackend } from '../../edge/backend-tls.js';
import { IdleTimer } from '../lifecycle.js';

/** What a backend connection reports to the exchange that owns it. */
export interface BackendConnOwner {
  onBackendConnect(conn: BackendConn): void;
  /** Bytes read into the connection's ReadBuffer: valid only during this call unless retained. */
  onBackendData(conn: BackendConn, chunk: Buffer): void;
  onBackendDrain(conn: BackendConn): void;
  /** The backend ended its side cleanly (FIN). */
  onBackendEnd(conn: BackendConn): void;
  /** The connection is gone; `kind` says how, null after a clean end or our own destroy. */
  onBackendClose(conn: BackendConn, kind: BackendFailureKind | null): void;
  onBackendTimeout(conn: BackendConn): void;
}

export type Chunk = string | Buffer;

/** Size of the shared buffer backend replies are read into. */
export const READ_BUFFER_BYTES = 64 * 1024;

/**
 * The buffer one backend socket reads into (Node's `onread`), reused read after read instead of a
 * fresh 64 KiB allocation per read. A reply is relayed to its client within the read callback; when
 * that write could not be flushed at once, the pending write still points into the buffer, so the
 * exchange calls `retain()` and the socket's next read gets a new buffer. With clients that keep up,
 * replies cost no allocation and no garbage.
 *
 * One per socket, never shared: Node asks for a socket's next read target right after its read
 * callback, so every socket of a shared buffer would hold it as its target, and another socket's
 * next read would overwrite bytes still queued for a slow client (test/e2e/http-read-buffer.test.ts).
 * Memory: READ_BUFFER_BYTES per backend connection from its first read, so bounded by the backend
 * connections (exchanges in flight plus `http.maxIdlePerBackend` idle ones per backend).
 */
export class ReadBuffer {
  private buf: Buffer | null = null;
  private retained = false;

  /** For `onread.buffer`: called by Node at the socket's start and after every read callback. */
  readonly next = (): Buffer => {
    if (this.buf === null || this.retained) {
      this.buf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      this.retained = false;
    }
    return this.buf;
  };

  /** The last bytes read are still referenced (a queued write): do not read into them again. */
  retain(): void {
    this.retained = true;
  }
}

function failureKind(code: string | undefined): BackendFailureKind {
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    default:
      // A TLS backend whose certificate does not verify, or that speaks no TLS: not a dead host.
      return code !== undefined && TLS_FAILURE.test(code) ? 'protocol' : 'closed';
  }
}

const TLS_FAILURE = /^(?:ERR_TLS|ERR_SSL|ERR_OSSL|CERT_|UNABLE_TO|DEPTH_ZERO|SELF_SIGNED)/;

export class BackendConn {
  readonly socket: net.Socket;
  owner: BackendConnOwner | null = null;
  connected = false;
  /** Served at least one exchange before: a failure may be the keep-alive race, not a dead backend. */
  reused = false;
  /** Writes queued until the connection is up. */
  pending: Chunk[] = [];
  pendingBytes = 0;
  /** Clock time when it went idle into the pool. */
  idleSince = 0;
  /** Where this socket's reads land (see ReadBuffer). */
  readonly reads = new ReadBuffer();
  /** http.responseTimeoutMs without a byte either way: the owner's onBackendTimeout, or closed when idle. */
  private readonly idle: IdleTimer;
  private failure: BackendFailureKind | null = null;
  private connectTimer: TimerHandle | null = null;
  private ended = false;

  constructor(
    readonly backend: Backend,
    private readonly pool: BackendPool,
    rt: ServiceRuntime,
  ) {
    const onBytes = (buf: Buffer): void => {
      this.idle.touch();
      if (this.owner) this.owner.onBackendData(this, buf);
      else socket.destroy(); // bytes on an idle connection: the backend is confused, drop it
    };
    const { socket, readyEvent } = connectBackend(backend, {
      noDelay: true,
      onread: {
        buffer: this.reads.next,
        // Always true: backpressure pauses the socket explicitly (socket.pause()), as for 'data'.
        callback: (n: number, buf: Uint8Array) => {
          onBytes((buf as Buffer).subarray(0, n));
          return true;
        },
      },
    });
    // TLS to the backend (backends[].tls): decrypted bytes come as 'data', not through onread.
    if (readyEvent === 'secureConnect') socket.on('data', onBytes);
    this.socket = socket;
    // One inactivity timeout for the socket's whole life, touched per read and per write (a socket
    // timeout would re-insert its timer at every read and write). Idle connections are reaped by
    // the pool's sweep after backendIdleTimeoutMs, or by this timer if responseTimeoutMs is shorter.
    this.idle = new IdleTimer(rt.clock, rt.config.http.responseTimeoutMs, () => {
      if (this.owner) this.owner.onBackendTimeout(this);
      else socket.destroy();
    });
    this.connectTimer = rt.clock.setTimeout(() => {
      this.connectTimer = null;
      this.failure = 'timeout';
      socket.destroy();
    }, rt.config.health.connectTimeoutMs);
    socket.on(readyEvent, () => {
      this.connectTimer?.cancel();
      this.connectTimer = null;
      this.connected = true;
      if (this.pending.length > 0) {
        socket.cork();
        for (const c of this.pending) {
          if (typeof c === 'string') socket.write(c, 'latin1');
          else socket.write(c);
        }
        socket.uncork();
        this.pending = [];
        this.pendingBytes = 0;
      }
      this.owner?.onBackendConnect(this);
    });
    socket.on('drain', () => this.owner?.onBackendDrain(this));
    socket.on('end', () => {
      this.ended = true;
      if (this.owner) this.owner.onBackendEnd(this);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.failure ??= failureKind(err.code);
    });
    socket.on('close', () => {
      this.idle.cancel();
      this.connectTimer?.cancel();
      this.connectTimer = null;
      this.pool.forget(this);
      const owner = this.owner;
      this.owner = null;
      if (owner) owner.onBackendClose(this, this.failure ?? (this.ended ? 'closed' : null));
    });
  }

  /**
   * Write now, or queue until connected. Returns false when the caller should pause its source:
   * before the connection is up, past `highWaterMark` queued bytes; after, Node's own socket bound.
   * Heads are strings parsed as latin1 and go out as latin1 (bytes 0x80-0xFF unchanged).
   */
  write(chunk: Chunk, highWaterMark: number): boolean {
    this.idle.touch();
    if (this.connected) return typeof chunk === 'string' ? this.socket.write(chunk, 'latin1') : this.socket.write(chunk);
    this.pending.push(chunk);
    this.pendingBytes += typeof chunk === 'string' ? chunk.length : chunk.byteLength;
    return this.pendingBytes < highWaterMark;
  }

  /** No response timeout from now on (the connection became a tunnel). */
  stopTimeout(): void {
    this.idle.cancel();
  }

  /** Drop the connection without telling the owner (the owner is abandoning it). */
  discard(): void {
    this.owner = null;
    this.socket.destroy();
  }

  get usable(): boolean {
    return !this.socket.destroyed && !this.ended;
  }
}

/** How often idle pooled connections are checked against backendIdleTimeoutMs. */
export const POOL_SWEEP_INTERVAL_MS = 1000;

/** Idle keep-alive connections per backend, most recently used first (warm sockets, fewer idle). */
export class BackendPool {
  private idle: BackendConn[][];
  private readonly sweeper: TimerHandle;
  private closed = false;

  constructor(
    private readonly rt: ServiceRuntime,
    backendCount: number,
  ) {
    this.idle = Array.from({ length: backendCount }, () => []);
    this.sweeper = rt.clock.setInterval(() => this.sweep(), POOL_SWEEP_INTERVAL_MS);
  }

  /** The idle list of the backend at `index` (a backend added by a reload gets one on first use). */
  private listOf(index: number): BackendConn[] {
    return (this.idle[index] ??= []);
  }

  /** Close connections idle for longer than backendIdleTimeoutMs (oldest are at the list's front). */
  private sweep(): void {
    const oldest = this.rt.clock.now() - this.rt.config.http.backendIdleTimeoutMs;
    for (const list of this.idle) {
      let n = 0;
      while (n < list.length && list[n]!.idleSince <= oldest) n++;
      for (const c of list.splice(0, n)) c.socket.destroy();
    }
  }

  /** An idle connection to `backend`, or a new one. */
  acquire(backend: Backend, owner: BackendConnOwner): BackendConn {
    const list = this.listOf(backend.index);
    let conn: BackendConn | undefined;
    while ((conn = list.pop()) !== undefined) {
      if (conn.usable) break;
    }
    if (conn === undefined) conn = new BackendConn(backend, this, this.rt);
    conn.owner = owner;
    return conn;
  }

  /** Return a connection whose exchange ended cleanly. */
  release(conn: BackendConn): void {
    conn.owner = null;
    const list = this.listOf(conn.backend.index);
    if (this.closed || !conn.usable || list.length >= this.rt.config.http.maxIdlePerBackend || !conn.backend.eligible) {
      conn.socket.destroy();
      return;
    }
    conn.reused = true;
    conn.idleSince = this.rt.clock.now();
    // The exchange may have ended with the socket paused (its last bytes filled the client's
    // buffer); the reply is complete, so the next owner must find it reading.
    if (conn.socket.isPaused()) conn.socket.resume();
    list.push(conn);
  }

  forget(conn: BackendConn): void {
    const list = this.listOf(conn.backend.index);
    const i = list.indexOf(conn);
    if (i >= 0) list.splice(i, 1);
  }

  /** Close every idle connection to a backend (it failed: its idle sockets are suspect too). */
  flush(backend: Backend): void {
    const list = this.listOf(backend.index);
    this.idle[backend.index] = [];
    for (const c of list) c.socket.destroy();
  }

  /** Close every idle connection and stop sweeping. */
  destroyAll(): void {
    this.closed = true;
    this.sweeper.cancel();
    const lists = this.idle;
    this.idle = lists.map(() => []);
    for (const list of lists) for (const c of list) c.socket.destroy();
  }
}
