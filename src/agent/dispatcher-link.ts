/**
 * @module The agent's UDP channel to its dispatchers (SARA III.E, III.G: "UDP channels established
 * between the failure detector process and the health monitor process"). One socket per address
 * family in use, dispatcher names resolved once at start, every message to every dispatcher. The
 * send path does no lookup, no formatting and no per-message closure.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { parseHostPort } from '../core/address.js';
import { realClock } from '../core/clock.js';
import { ClosedError } from '../core/errors.js';

/** Where the agent's messages go; the senders need nothing more (a list in unit tests). */
export interface MessageSink {
  send(msg: Buffer): void;
}

interface Destination {
  readonly socket: dgram.Socket;
  readonly address: string;
  readonly port: number;
  /** As configured, for error reports. */
  readonly name: string;
  /** The send callback, made once per destination so that a send allocates no closure. */
  sent: (err: Error | null) => void;
}

export interface DispatcherLinkOptions {
  /** Called for every failed send (EHOSTUNREACH, ENOBUFS...): the caller counts or rate-limits. */
  onError?: (err: NodeJS.ErrnoException, dispatcher: string) => void;
}

export class DispatcherLink implements MessageSink {
  private closed = false;
  private pending = 0;
  private drained: (() => void) | null = null;
  private readonly sockets: dgram.Socket[];

  private constructor(
    private readonly destinations: readonly Destination[],
    private readonly opts: DispatcherLinkOptions,
  ) {
    this.sockets = [...new Set(destinations.map((d) => d.socket))];
    for (const d of destinations) d.sent = (err) => this.onSent(err, d.name);
  }

  /**
   * Resolves every `host:port` (names once, now: a dispatcher that moves needs an agent restart) and
   * binds one ephemeral UDP socket per address family needed.
   */
  static async open(dispatchers: readonly string[], opts: DispatcherLinkOptions = {}): Promise<DispatcherLink> {
    const resolved = await Promise.all(
      dispatchers.map(async (name) => {
        const hp = parseHostPort(name);
        if (!hp) throw new TypeError(`not host:port: ${name}`);
        let address = hp.host;
        if (isIP(hp.host) === 0) {
          try {
            address = (await lookup(hp.host)).address;
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code ?? String(err);
            throw Object.assign(new Error(`cannot resolve dispatcher ${name} (${code})`, { cause: err }), { code });
          }
        }
        return { name, address, port: hp.port, family: isIP(address) === 6 ? 6 : 4 };
      }),
    );
    const sockets = new Map<4 | 6, dgram.Socket>();
    for (const { family } of resolved) {
      const f = family as 4 | 6;
      if (sockets.has(f)) continue;
      const socket = dgram.createSocket(f === 6 ? 'udp6' : 'udp4');
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, f === 6 ? '::' : '0.0.0.0', () => {
          socket.off('error', reject);
          resolve();
        });
      });
      // Nothing is received on it; a late ICMP error must not crash the process.
      socket.on('error', () => {});
      sockets.set(f, socket);
    }
    const destinations = resolved.map(
      (r): Destination => ({ socket: sockets.get(r.family as 4 | 6)!, address: r.address, port: r.port, name: r.name, sent: () => {} }),
    );
    return new DispatcherLink(destinations, opts);
  }

  /** Sends `msg` to every dispatcher. The buffer must not change until the sends complete. */
  send(msg: Buffer): void {
    if (this.closed) throw new ClosedError('dispatcher link');
    for (const d of this.destinations) {
      this.pending++;
      d.socket.send(msg, d.port, d.address, d.sent);
    }
  }

  /** Resolves once every send issued so far has completed (or failed), at the latest after `timeoutMs`. */
  flush(timeoutMs: number): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        timer.cancel();
        if (this.drained === done) this.drained = null;
        resolve();
      };
      const timer = realClock.setTimeout(done, timeoutMs);
      this.drained = done;
    });
  }

  /** Flushes pending sends (at most `timeoutMs`), then closes the sockets. */
  async close(timeoutMs = 100): Promise<void> {
    if (this.closed) return;
    await this.flush(timeoutMs);
    this.closed = true;
    await Promise.all(this.sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  /** The dispatchers as resolved, `address:port`, in configuration order. */
  get resolved(): readonly string[] {
    return this.destinations.map((d) => (d.address.includes(':') ? `[${d.address}]:${d.port}` : `${d.address}:${d.port}`));
  }

  private onSent(err: Error | null, dispatcher: string): void {
    this.pending--;
    if (err) this.opts.onError?.(err as NodeJS.ErrnoException, dispatcher);
    if (this.pending === 0 && this.drained) this.drained();
  }
}
