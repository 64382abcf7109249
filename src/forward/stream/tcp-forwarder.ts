/**
 * @module The plain TCP forwarder, transport only: for each accepted client it asks the service's
 * Router once for a backend, connects, asks the Router again (its failure entry) while the connect
 * has not succeeded, then splices bytes both ways with half-close and backpressure until both
 * directions are done.
 */
import { flowHash } from '../../core/key-hash.js';
import type { Socket } from 'node:net';
import { connectBackend } from '../../edge/backend-tls.js';
import { channels, type ConnectionEvent, type TcpSpliceEvent } from '../../core/diagnostics.js';
import type { TimerHandle } from '../../core/clock.js';
import type { BackendFailureKind } from '../../core/errors.js';
import type { Backend } from '../../core/backend.js';
import { NO_FLOW, routerOf, type Forwarder, type RouteDecision, type RouteHint, type Router, type ServiceRuntime } from '../../pipeline/index.js';
import { closePeer, IdleTimer, LiveSet, noop, relayOneWay } from '../lifecycle.js';
import { connectFailureKind } from '../upstream-connect.js';
import { backendsNotServing, readServerName } from '../../edge/client-hello.js';

/** One client connection, from accept to the close of both sockets. */
class TcpSplice {
  private phase: 'connecting' | 'spliced' | 'done' = 'connecting';
  /** The backend being connected to, then the one spliced with. */
  private backend: Backend | null = null;
  /** The connect attempt in progress, then the spliced backend socket. */
  private upstream: Socket | null = null;
  /** At most one attempt per backend: the Router never offers one of these again. */
  private readonly tried = new Set<Backend>();
  private hint: RouteHint = { via: 'balancer', tried: this.tried };
  private connectTimer: TimerHandle | null = null;
  private idle: IdleTimer | null = null;
  /** An error was seen on either socket: the survivor is reset, not closed gracefully. */
  private failed = false;
  private clientClosed = false;
  private upstreamClosed = false;
  /** Client to backend, and backend to client. */
  private bytesIn = 0;
  private bytesOut = 0;

  constructor(
    private readonly runtime: ServiceRuntime,
    private readonly router: Router,
    private readonly client: Socket,
    private readonly onDone: (splice: TcpSplice) => void,
  ) {}

  start(): void {
    // Bytes the client sends before the backend answers stay in the socket (and then the kernel,
    // which pushes back on the client): nothing is read into the void.
    this.client.pause();
    this.client.on('error', () => (this.failed = true));
    this.client.on('close', () => this.onClientClose());
    // Maglev: the client's address and port pick the same backend on every dispatcher.
    if (this.router.hashesKeys) this.hint = { via: 'balancer', tried: this.tried, hash: flowHash(this.client.remoteAddress ?? '', this.client.remotePort ?? 0) };
    const pass = this.runtime.config.tlsPassthrough;
    if (!pass) return this.connect(this.router.route(NO_FLOW, this.hint));
    // tlsPassthrough: the backends not serving the ClientHello's name count as tried, for every pick.
    readServerName(this.client, this.runtime.clock, pass.clientHelloTimeoutMs, (name) => {
      if (name === null || this.phase !== 'connecting') return void this.client.destroy();
      for (const i of backendsNotServing(this.runtime.config.backends, name)) this.tried.add(this.runtime.backends[i]!);
      this.connect(this.router.route(NO_FLOW, this.hint));
    });
  }

  /** Close both sockets now (forwarder destroy, idle timeout). */
  abort(): void {
    if (this.phase === 'done') return;
    this.upstream?.destroy();
    this.client.destroy();
  }

  private connect(decision: RouteDecision): void {
    if (this.phase !== 'connecting') return;
    if (decision.type !== 'forward') {
      this.client.destroy();
      return;
    }
    const backend = decision.backend;
    this.tried.add(backend);
    const { socket, readyEvent } = connectBackend(backend, { allowHalfOpen: true });
    this.backend = backend;
    this.upstream = socket;
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (socket !== this.upstream) return;
      if (this.phase === 'connecting') this.attemptFailed(socket, backend, connectFailureKind(err));
      else this.failed = true;
    });
    socket.once(readyEvent, () => this.connected(socket, backend));
    socket.on('close', () => {
      if (socket === this.upstream && this.phase === 'spliced') this.onUpstreamClose();
    });
    const { clock, config } = this.runtime;
    this.connectTimer = clock.setTimeout(() => this.attemptFailed(socket, backend, 'timeout'), config.health.connectTimeoutMs);
  }

  private attemptFailed(socket: Socket, backend: Backend, kind: BackendFailureKind): void {
    if (this.phase !== 'connecting' || socket !== this.upstream) return;
    this.dropAttempt();
    // The health monitor marks the backend down and the balancer snapshot is rebuilt before the
    // Router picks again, so the next pick already excludes it.
    this.connect(this.router.failed(backend, kind, this.hint));
  }

  /** Lets go of the connect attempt in progress (failed, or its client left). */
  private dropAttempt(): void {
    this.connectTimer?.cancel();
    this.connectTimer = null;
    this.upstream?.on('error', noop);
    this.upstream?.destroy();
    this.upstream = null;
    this.backend = null;
  }

  private connected(socket: Socket, backend: Backend): void {
    if (this.phase !== 'connecting' || socket !== this.upstream) return;
    this.connectTimer?.cancel();
    this.connectTimer = null;
    this.phase = 'spliced';
    backend.active++;
    if (backend.state !== 'up') this.router.succeeded(backend);
    // Chunks are forwarded as they are read, already batched by the kernel: Nagle would only add
    // a round trip of delay to request/response protocols (HAProxy sets TCP_NODELAY too).
    socket.setNoDelay(true);
    this.client.setNoDelay(true);
    const idleMs = this.runtime.config.tcp.idleTimeoutMs;
    // A splice stalled by backpressure (the reader does not read) for a whole period is idle too.
    if (idleMs > 0) this.idle = new IdleTimer(this.runtime.clock, idleMs, () => this.abort());
    relayOneWay(this.client, socket, this.idle, (n) => (this.bytesIn += n));
    relayOneWay(socket, this.client, this.idle, (n) => (this.bytesOut += n));
    this.client.resume();
  }

  private onClientClose(): void {
    this.clientClosed = true;
    if (this.phase === 'connecting') {
      // The client left (or was refused) before a backend answered: drop the attempt.
      this.dropAttempt();
      this.finish();
      return;
    }
    if (this.upstream) closePeer(this.client, this.upstream, this.failed);
    if (this.upstreamClosed) this.finish();
  }

  private onUpstreamClose(): void {
    this.upstreamClosed = true;
    closePeer(this.upstream!, this.client, this.failed);
    if (this.clientClosed) this.finish();
  }

  private finish(): void {
    if (this.phase === 'done') return;
    const spliced = this.phase === 'spliced';
    this.phase = 'done';
    this.connectTimer?.cancel();
    this.connectTimer = null;
    this.idle?.cancel();
    const service = this.runtime.config.name;
    if (spliced && this.backend) {
      this.backend.active--;
      if (channels.tcpSplice.hasSubscribers) {
        const { bytesIn, bytesOut } = this;
        channels.tcpSplice.publish({ service, backend: this.backend.id, bytesIn, bytesOut } satisfies TcpSpliceEvent);
      }
    }
    if (channels.connectionClose.hasSubscribers) channels.connectionClose.publish({ service, protocol: 'tcp' } satisfies ConnectionEvent);
    this.onDone(this);
  }
}

/**
 * Forwards one `protocol: tcp` service. The listener (created with `allowHalfOpen: true`, so that a
 * client's FIN does not close our write side) hands every accepted socket to `handle`.
 *
 * Passive detection: a refused, reset-before-connect or timed-out connect goes to the Router's
 * failure entry and the client is transparently carried to the backend it answers with; once bytes
 * flow, a backend failure can only abort the client (a TCP stream has no replay point).
 */
export class TcpForwarder implements Forwarder {
  private readonly live = new LiveSet<TcpSplice>();
  private readonly router: Router;

  constructor(private readonly runtime: ServiceRuntime) {
    this.router = routerOf(runtime);
  }

  /** Number of client connections being connected or spliced. */
  get size(): number {
    return this.live.size;
  }

  handle(client: Socket): void {
    if (!this.live.accepts(client)) return;
    const splice = new TcpSplice(this.runtime, this.router, client, (s) => this.live.release(s));
    this.live.add(splice);
    if (channels.connectionOpen.hasSubscribers) {
      channels.connectionOpen.publish({ service: this.runtime.config.name, protocol: 'tcp' } satisfies ConnectionEvent);
    }
    splice.start();
  }

  /** Takes no new clients; resolves once every live splice has closed on its own. */
  close(): Promise<void> {
    return this.live.close();
  }

  /** Destroys every client and backend socket now; a pending `close()` resolves once they closed. */
  destroy(_err?: Error): void {
    this.live.destroy((splice) => splice.abort());
  }
}
