/**
 * @module The upstream TCP connection of the message-aware stream forwarders (SIP over TCP, RTSP):
 * connecting to a backend within health.connectTimeoutMs, classifying a failed connect for passive
 * detection (`connectFailureKind`, shared with the plain TCP forwarder), reporting a success, and
 * closing an upstream on purpose. What is written, queued and answered stays with each forwarder.
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import type { TimerHandle } from '../core/clock.js';
import type { BackendFailureKind } from '../core/errors.js';
import type { Backend } from '../core/backend.js';
import { routerOf, type ServiceRuntime } from '../pipeline/index.js';

const noop = (): void => {};

/**
 * Maps a connect error to the passive-detection kind. Anything that is neither a reset nor a
 * timeout (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL, a failed name lookup...) means
 * "this backend cannot be reached now", which the health monitor treats as a refusal.
 */
export function connectFailureKind(err: NodeJS.ErrnoException): BackendFailureKind {
  switch (err.code) {
    case 'ECONNRESET':
      return 'reset';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return 'refused';
  }
}

/** The connection state every upstream record carries. */
export interface UpstreamLink {
  readonly backend: Backend;
  readonly socket: Socket;
  /** The connect completed. */
  connected: boolean;
  /** Closed, or given up on: its socket's later events are ignored. */
  closed: boolean;
  connectTimer: TimerHandle | null;
}

/** What a forwarder does at each step of its upstream's life; `up` is the record `make` built. */
export interface UpstreamEvents {
  /**
   * The connect did not complete: refused, reset or closed before connecting, or not done within
   * health.connectTimeoutMs ('timeout'). May be called again for the same upstream (a timeout, then
   * the socket's close): the handler ignores an upstream already `closed`.
   */
  readonly failed: (kind: BackendFailureKind) => void;
  /** The connect completed (not called for an upstream already closed): flush what was queued. */
  readonly connected: () => void;
  /** ECONNRESET after the connect. */
  readonly reset: () => void;
  /** The socket closed after it connected, or after the forwarder closed it. */
  readonly closed: () => void;
}

/**
 * Connects to `backend` and builds the forwarder's upstream record with `make(socket)` (which also
 * files it where the forwarder finds it). On connect: TCP_NODELAY (messages are written whole, Nagle
 * would only delay them) and a success reported for a backend not up. The forwarder adds its own
 * 'data' and 'drain' handlers to the returned record's socket.
 */
export function openUpstream<T extends UpstreamLink>(rt: ServiceRuntime, backend: Backend, make: (socket: Socket) => T, events: UpstreamEvents): T {
  const socket = net.connect({ host: backend.host, port: backend.port });
  const up = make(socket);
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (!up.connected) events.failed(connectFailureKind(err));
    else if (err.code === 'ECONNRESET') events.reset();
  });
  socket.once('connect', () => {
    up.connectTimer?.cancel();
    up.connectTimer = null;
    if (up.closed) return;
    up.connected = true;
    socket.setNoDelay(true);
    if (backend.state !== 'up') routerOf(rt).succeeded(backend);
    events.connected();
  });
  socket.on('close', () => {
    up.connectTimer?.cancel();
    up.connectTimer = null;
    if (!up.connected && !up.closed) return events.failed('closed');
    events.closed();
  });
  up.connectTimer = rt.clock.setTimeout(() => {
    up.connectTimer = null;
    if (!up.connected) events.failed('timeout');
  }, rt.config.health.connectTimeoutMs);
  return up;
}

/** Marks `up` closed and destroys its socket now (its late errors ignored). */
export function closeUpstream(up: UpstreamLink): void {
  up.closed = true;
  up.connectTimer?.cancel();
  up.connectTimer = null;
  up.socket.on('error', noop);
  up.socket.destroy();
}
