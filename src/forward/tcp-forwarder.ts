/**
 * @module The plain TCP forwarder: for each accepted client it connects to a backend chosen by the
 * balancer, fails over to the next backend while the connect has not succeeded, then splices bytes
 * both ways with half-close and backpressure until both directions are done.
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import { channels } from '../core/diagnostics.js';
import type { ConnectionEvent, TcpSpliceEvent } from '../core/diagnostics.js';
import type { TimerHandle } from '../core/clock.js';
import type { BackendFailureKind } from '../core/errors.js';
import type { Backend } from '../core/backend.js';
import type { Forwarder, ServiceRuntime } from './service-runtime.js';
import { connectFailureKind } from './upstream-connect.js';

type SplicePhase = 'connecting' | 'spliced' | 'done';

const noop = (): void => {};

/**
 * Sends an RST instead of a FIN, so that a peer whose other side was reset sees an abort and never
 * mistakes a truncated stream for a complete one.
 */
function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** One client connection, from accept to the close of both sockets. */
class TcpSplice {
  private phase: SplicePhase = 'connecting';
  /** The backend being connected to, then the one spliced with. */
  private backend: Backend | null = null;
  /** The connect attempt in progress, then the spliced backend socket. */
  private upstream: Socket | null = null;
  private readonly tried = new Set<Backend>();
  private connectTimer: TimerHandle | null = null;
  private idleTimer: TimerHandle | null = null;
  private lastActivity = 0;
  /** An error was seen on either socket: the survivor is reset, not closed gracefully. */
  private failed = false;
  private clientClosed = false;
  private upstreamClosed = false;
  /** Client to backend. */
  private bytesIn = 0;
  /** Backend to client. */
  private bytesOut = 0;

  constructor(
    private readonly runtime: ServiceRuntime,
    private readonly client: Socket,
    private readonly onDone: (splice: TcpSplice) => void,
  ) {}

  start(): void {
    // Bytes the client sends before the backend answers stay in the socket (and then the kernel,
    // which pushes back on the client): nothing is read into the void.
    this.client.pause();
    this.client.on('error', () => {
      this.failed = true;
    });
    this.client.on('close', () => this.onClientClose());
    this.connectNext();
  }

  /** Close both sockets now (forwarder destroy, idle timeout). */
  abort(): void {
    if (this.phase === 'done') return;
    this.upstream?.destroy();
    this.client.destroy();
  }

  private connectNext(): void {
    if (this.phase !== 'connecting') return;
    // At most one attempt per backend. A failure sink that does not take a backend out at once
    // (a threshold detector) may let the balancer offer it again: skip it, within a bounded loop.
    for (let i = 0; i <= this.runtime.backends.length; i++) {
      const pick = this.runtime.balancer.pick();
      if (pick.type === 'none') break;
      if (this.tried.has(pick.backend)) continue;
      this.attempt(pick.backend);
      return;
    }
    this.client.destroy();
  }

  private attempt(backend: Backend): void {
    this.tried.add(backend);
    const socket = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
    this.backend = backend;
    this.upstream = socket;
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (socket !== this.upstream) return;
      if (this.phase === 'connecting') this.attemptFailed(socket, backend, connectFailureKind(err));
      else this.failed = true;
    });
    socket.once('connect', () => this.connected(socket, backend));
    socket.on('close', () => {
      if (socket === this.upstream && this.phase === 'spliced') this.onUpstreamClose();
    });
    this.connectTimer = this.runtime.clock.setTimeout(
      () => this.attemptFailed(socket, backend, 'timeout'),
      this.runtime.config.health.connectTimeoutMs,
    );
  }

  private attemptFailed(socket: Socket, backend: Backend, kind: BackendFailureKind): void {
    if (this.phase !== 'connecting' || socket !== this.upstream) return;
    this.connectTimer?.cancel();
    this.connectTimer = null;
    this.upstream = null;
    this.backend = null;
    socket.on('error', noop);
    socket.destroy();
    // The health monitor marks the backend down and the balancer snapshot is rebuilt before this
    // returns, so the next pick already excludes it.
    this.runtime.failures.reportFailure(backend, kind);
    this.connectNext();
  }

  private connected(socket: Socket, backend: Backend): void {
    if (this.phase !== 'connecting' || socket !== this.upstream) return;
    this.connectTimer?.cancel();
    this.connectTimer = null;
    this.phase = 'spliced';
    backend.active++;
    if (backend.state !== 'up') this.runtime.failures.reportSuccess(backend);
    // Chunks are forwarded as they are read, already batched by the kernel: Nagle would only add
    // a round trip of delay to request/response protocols (HAProxy sets TCP_NODELAY too).
    socket.setNoDelay(true);
    this.client.setNoDelay(true);

    const idleMs = this.runtime.config.tcp.idleTimeoutMs;
    if (idleMs > 0) {
      this.lastActivity = this.runtime.clock.now();
      this.idleTimer = this.runtime.clock.setTimeout(() => this.checkIdle(idleMs), idleMs);
    }

    this.relay(this.client, socket, (n) => (this.bytesIn += n));
    this.relay(socket, this.client, (n) => (this.bytesOut += n));
    this.client.resume();
  }

  /**
   * One direction of the splice. A write that returns false pauses the source until the
   * destination drains, so at most a socket's buffer is held per direction. The source's FIN
   * becomes the destination's FIN (half-close); the other direction keeps flowing.
   */
  private relay(src: Socket, dst: Socket, count: (n: number) => void): void {
    const idle = this.runtime.config.tcp.idleTimeoutMs > 0;
    src.on('data', (chunk: Buffer) => {
      count(chunk.length);
      if (idle) this.lastActivity = this.runtime.clock.now();
      if (dst.destroyed) return;
      if (!dst.write(chunk)) src.pause();
    });
    dst.on('drain', () => src.resume());
    src.on('end', () => {
      if (!dst.destroyed) dst.end();
    });
  }

  /**
   * Activity is recorded as a timestamp per chunk, not a timer reset per chunk: the timer wakes
   * once per period and re-arms for the remainder. A splice stalled by backpressure (the reader
   * does not read) for the whole period also counts as idle.
   */
  private checkIdle(idleMs: number): void {
    this.idleTimer = null;
    if (this.phase === 'done') return;
    const idleFor = this.runtime.clock.now() - this.lastActivity;
    if (idleFor >= idleMs) {
      this.abort();
      return;
    }
    this.idleTimer = this.runtime.clock.setTimeout(() => this.checkIdle(idleMs), idleMs - idleFor);
  }

  private onClientClose(): void {
    this.clientClosed = true;
    if (this.phase === 'connecting') {
      // The client left (or was refused) before a backend answered: drop the attempt.
      this.connectTimer?.cancel();
      this.connectTimer = null;
      if (this.upstream) {
        this.upstream.on('error', noop);
        this.upstream.destroy();
        this.upstream = null;
        this.backend = null;
      }
      this.finish();
      return;
    }
    if (this.upstream) this.afterClose(this.client, this.upstream);
    if (this.upstreamClosed) this.finish();
  }

  private onUpstreamClose(): void {
    this.upstreamClosed = true;
    this.afterClose(this.upstream!, this.client);
    if (this.clientClosed) this.finish();
  }

  /**
   * A socket that closed after both its directions completed leaves its peer to finish flushing.
   * One that closed any other way takes the peer down too: reset if an error (RST, EPIPE) was the
   * cause, closed otherwise.
   */
  private afterClose(closed: Socket, other: Socket): void {
    if (other.destroyed) return;
    const clean = !this.failed && closed.readableEnded && closed.writableFinished;
    if (clean) return;
    if (this.failed) resetSocket(other);
    else other.destroy();
  }

  private finish(): void {
    if (this.phase === 'done') return;
    const spliced = this.phase === 'spliced';
    this.phase = 'done';
    this.connectTimer?.cancel();
    this.connectTimer = null;
    this.idleTimer?.cancel();
    this.idleTimer = null;
    const service = this.runtime.config.name;
    if (spliced && this.backend) {
      this.backend.active--;
      if (channels.tcpSplice.hasSubscribers) {
        const event: TcpSpliceEvent = {
          service,
          backend: this.backend.id,
          bytesIn: this.bytesIn,
          bytesOut: this.bytesOut,
        };
        channels.tcpSplice.publish(event);
      }
    }
    if (channels.connectionClose.hasSubscribers) {
      const event: ConnectionEvent = { service, protocol: 'tcp' };
      channels.connectionClose.publish(event);
    }
    this.onDone(this);
  }
}

/**
 * Forwards one `protocol: tcp` service. The listener (created with `allowHalfOpen: true`, so that a
 * client's FIN does not close our write side) hands every accepted socket to `handle`.
 *
 * Passive detection: a refused, reset-before-connect or timed-out connect is reported to the
 * failure sink and the client is transparently carried to the next backend; once bytes flow, a
 * backend failure can only abort the client (a TCP stream has no replay point).
 */
export class TcpForwarder implements Forwarder {
  private readonly live = new Set<TcpSplice>();
  private state: 'open' | 'closing' | 'destroyed' = 'open';
  private closed: Promise<void> | null = null;
  private resolveClosed: (() => void) | null = null;

  constructor(private readonly runtime: ServiceRuntime) {}

  /** Number of client connections being connected or spliced. */
  get size(): number {
    return this.live.size;
  }

  handle(client: Socket): void {
    if (this.state !== 'open' || client.destroyed) {
      client.on('error', noop);
      client.destroy();
      return;
    }
    const splice = new TcpSplice(this.runtime, client, (s) => this.onDone(s));
    this.live.add(splice);
    if (channels.connectionOpen.hasSubscribers) {
      const event: ConnectionEvent = { service: this.runtime.config.name, protocol: 'tcp' };
      channels.connectionOpen.publish(event);
    }
    splice.start();
  }

  /** Takes no new clients; resolves once every live splice has closed on its own. */
  close(): Promise<void> {
    if (this.state === 'open') this.state = 'closing';
    if (!this.closed) {
      this.closed = new Promise<void>((resolve) => {
        this.resolveClosed = resolve;
      });
      this.maybeClosed();
    }
    return this.closed;
  }

  /** Destroys every client and backend socket now; a pending `close()` resolves once they closed. */
  destroy(_err?: Error): void {
    this.state = 'destroyed';
    for (const splice of [...this.live]) splice.abort();
  }

  private onDone(splice: TcpSplice): void {
    this.live.delete(splice);
    this.maybeClosed();
  }

  private maybeClosed(): void {
    if (this.live.size === 0 && this.resolveClosed) {
      this.resolveClosed();
      this.resolveClosed = null;
    }
  }
}
