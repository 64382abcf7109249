/**
 * @module The lifecycle pieces every connection-oriented forwarder shares: the idle timer that wakes
 * once per period instead of being reset per chunk, the set of live connections behind a
 * forwarder's `close()` (drain, then resolve) and `destroy()` (stop now), and the reset that aborts a
 * peer instead of closing it.
 */
import type { Socket } from 'node:net';
import type { Clock, TimerHandle } from '../core/clock.js';

export const noop = (): void => {};

/**
 * Sends an RST instead of a FIN, so that a peer whose other side was reset sees an abort and never
 * mistakes a truncated stream for a complete one.
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/**
 * One direction of a splice. A write that returns false pauses the source until the destination
 * drains, so at most a socket's buffer is held per direction. The source's FIN becomes the
 * destination's FIN (half-close); the other direction keeps flowing. `onChunk` sees every chunk's
 * length as it is read, and every chunk is activity for `idle`.
 */
export function relayOneWay(src: Socket, dst: Socket, idle: IdleTimer | null, onChunk: (bytes: number) => void): void {
  src.on('data', (chunk: Buffer) => {
    onChunk(chunk.length);
    idle?.touch();
    if (dst.destroyed) return;
    if (!dst.write(chunk)) src.pause();
  });
  dst.on('drain', () => src.resume());
  src.on('end', () => {
    if (!dst.destroyed) dst.end();
  });
}

/**
 * A spliced socket closed: if it closed after both its directions completed it leaves its peer to
 * finish flushing. One that closed any other way takes the peer down too: reset if an error (RST,
 * EPIPE) was seen on either socket (`failed`), closed otherwise.
 */
export function closePeer(closed: Socket, peer: Socket, failed: boolean): void {
  if (peer.destroyed) return;
  if (!failed && closed.readableEnded && closed.writableFinished) return;
  if (failed) resetSocket(peer);
  else peer.destroy();
}

/**
 * Activity is recorded as a timestamp (`touch()`, per chunk or message), not a timer reset per chunk:
 * the timer wakes once per period and re-arms for the remainder. `onIdle` runs once when a whole
 * period passed without activity; when it returns true (idle did not matter then: an HTTP exchange
 * in progress), the watch starts again for a whole period.
 */
export class IdleTimer {
  private timer: TimerHandle | null = null;
  private last: number;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly idleMs: number,
    private readonly onIdle: () => unknown,
  ) {
    this.last = clock.now();
    this.timer = clock.setTimeout(() => this.check(), idleMs);
  }

  touch(): void {
    this.last = this.clock.now();
  }

  cancel(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  private check(): void {
    this.timer = null;
    if (this.stopped) return;
    const idleFor = this.clock.now() - this.last;
    if (idleFor >= this.idleMs) {
      if (this.onIdle() !== true || this.stopped) return;
      this.last = this.clock.now();
      this.timer = this.clock.setTimeout(() => this.check(), this.idleMs);
      return;
    }
    this.timer = this.clock.setTimeout(() => this.check(), this.idleMs - idleFor);
  }
}

/**
 * A forwarder's live connections and its state (STYLE: `close()` drains, then stops; `destroy()`
 * stops now). `close()` resolves once the last connection left (and `whenDrained`, the forwarder's
 * own teardown, has finished); `destroy()` aborts each one, whose own close then leaves the set.
 */
export class LiveSet<T> {
  private readonly live = new Set<T>();
  private state: 'open' | 'closing' | 'destroyed' = 'open';
  private closed: Promise<void> | null = null;
  private resolveClosed: (() => void) | null = null;

  /** `whenDrained` runs each time the set is found empty after close() or destroy(). */
  constructor(private readonly whenDrained?: () => Promise<void>) {}

  get size(): number {
    return this.live.size;
  }

  /** False once close() or destroy() was called: new connections are turned away. */
  get open(): boolean {
    return this.state === 'open';
  }

  get destroyed(): boolean {
    return this.state === 'destroyed';
  }

  /** True when a new client may be taken; otherwise the client is destroyed (closing, or it already left). */
  accepts(client: Socket): boolean {
    if (this.state === 'open' && !client.destroyed) return true;
    client.on('error', noop);
    client.destroy();
    return false;
  }

  add(item: T): void {
    this.live.add(item);
  }

  has(item: T): boolean {
    return this.live.has(item);
  }

  /** The connection left; settle() when the caller is done with its own teardown. */
  delete(item: T): void {
    this.live.delete(item);
  }

  /** The connection left: a pending close() may resolve now. */
  release(item: T): void {
    this.live.delete(item);
    this.settle();
  }

  values(): IterableIterator<T> {
    return this.live.values();
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.live.values();
  }

  /** Takes no new connections; resolves once every live one has closed on its own. */
  close(): Promise<void> {
    if (this.state === 'open') this.state = 'closing';
    if (!this.closed) {
      this.closed = new Promise<void>((resolve) => {
        this.resolveClosed = resolve;
      });
      this.settle();
    }
    return this.closed;
  }

  /** Aborts every live connection now; a pending close() resolves once they have left. */
  destroy(abort: (item: T) => void): void {
    this.state = 'destroyed';
    for (const item of [...this.live]) abort(item);
    this.settle();
  }

  /** Once closing and empty: the forwarder's teardown, then a pending close() resolves. */
  settle(): void {
    if (this.state === 'open' || this.live.size > 0) return;
    const done = this.whenDrained?.();
    if (this.resolveClosed) {
      const resolve = this.resolveClosed;
      this.resolveClosed = null;
      if (done) void done.then(resolve);
      else resolve();
    }
  }
}
