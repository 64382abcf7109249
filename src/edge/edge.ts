/**
 * @module The Internet edge of one listener: the gate every accepted connection passes before a
 * forwarder sees it. It counts connections per client address (refusing over `limits`, before any
 * TLS handshake is spent on them), caps the listener's connections, terminates TLS when the
 * service has a `tls` section, and remembers per connection what the forwarders need to know about
 * the client's side (encrypted or not, the verified client-certificate subject, its address's
 * request budget). A service without `tls` and with every limit off gets a plain net.Server.
 */
import net from 'node:net';
import type tls from 'node:tls';
import type { Clock } from '../core/clock.js';
import type { TlsCertificateError } from '../core/errors.js';
import { ClientLimiter, type ClientEntry, type LimitReason } from './client-limits.js';
import type { LimitsConfig, TlsServiceConfig } from './edge-schema.js';
import { TlsTerminator, type TlsEvents, type TlsStats } from './tls-terminator.js';

/** What a forwarder may ask about one of its client connections. */
export interface ClientSide {
  /** The connection is TLS (X-Forwarded-Proto: https). */
  readonly encrypted: boolean;
  /** The verified client certificate's subject (mTLS), or null. */
  readonly clientSubject: string | null;
  /** The field that carries clientSubject to the backend (a client's own is removed), or null. */
  readonly subjectHeader: string | null;
  /** Its address's entry in the limiter, for the request rate. */
  readonly entry: ClientEntry | null;
}

const PLAIN: ClientSide = { encrypted: false, clientSubject: null, subjectHeader: null, entry: null };

export interface EdgeStats {
  /** Connections refused at the gate, by reason (limiter reasons plus the listener-wide cap). */
  readonly refused: Record<LimitReason | 'max-connections', number>;
  readonly tls: TlsStats | null;
  readonly trackedAddresses: number;
}

export interface EdgeOptions {
  readonly tls?: TlsServiceConfig | undefined;
  readonly limits: LimitsConfig;
  readonly clock: Clock;
  readonly events?: TlsEvents & { onRefuse?(reason: LimitReason | 'max-connections', address: string): void };
}

export class Edge {
  readonly terminator: TlsTerminator | null;
  readonly limiter: ClientLimiter;
  private readonly sides = new WeakMap<net.Socket, ClientSide>();
  /** Tickets of raw connections, by "address port" (a TLS socket is a different object from its raw socket). */
  private readonly tickets = new Map<string, ClientEntry>();
  private maxConnectionDrops = 0;

  /** Throws TlsCertificateError when a certificate cannot be served. */
  constructor(private readonly opts: EdgeOptions) {
    this.terminator = opts.tls ? new TlsTerminator(opts.tls, opts.clock, opts.events) : null;
    this.limiter = new ClientLimiter(opts.limits, opts.clock);
  }

  /** A server whose admitted connections (handshaken, when TLS) go to `onSocket`. */
  createServer(netOptions: net.ServerOpts, onSocket: (socket: net.Socket) => void): net.Server {
    const gated = this.limiter.enabled;
    let server: net.Server;
    if (this.terminator) {
      const term = this.terminator;
      const cc = this.opts.tls?.clientCertificate;
      server = term.createServer(netOptions, (socket: tls.TLSSocket) => {
        const key = `${socket.remoteAddress} ${socket.remotePort}`;
        const entry = this.tickets.get(key) ?? null;
        const subject = term.clientSubject(socket);
        this.sides.set(socket, { encrypted: true, clientSubject: subject, subjectHeader: cc ? cc.subjectHeader : null, entry });
        onSocket(socket);
      });
      // 'connection' is the raw socket, before the handshake: refused here, no crypto spent on it.
      if (gated) server.on('connection', (raw: net.Socket) => this.gate(raw, true));
    } else {
      server = net.createServer(netOptions, (socket) => {
        if (gated && !this.gate(socket, false)) return;
        onSocket(socket);
      });
    }
    if (this.opts.limits.maxConnections > 0) {
      server.maxConnections = this.opts.limits.maxConnections;
      server.on('drop', (data?: { remoteAddress?: string }) => {
        this.maxConnectionDrops++;
        this.opts.events?.onRefuse?.('max-connections', data?.remoteAddress ?? '');
      });
    }
    return server;
  }

  /** What the forwarder knows of `socket`'s client side. */
  clientSide(socket: net.Socket): ClientSide {
    return this.sides.get(socket) ?? PLAIN;
  }

  /**
   * `child` carries requests of `parent`'s connection (an HTTP/2 stream): the same client side, so
   * the same X-Forwarded-Proto, client certificate and request budget.
   */
  inherit(child: object, parent: net.Socket): void {
    const side = this.sides.get(parent);
    if (side !== undefined) this.sides.set(child as net.Socket, side);
  }

  /** One more request on `side`'s connection: false when its address is over requestsPerSecond. */
  admitRequest(side: ClientSide): boolean {
    return this.limiter.request(side.entry);
  }

  retryAfterS(side: ClientSide): number {
    return this.limiter.retryAfterS(side.entry);
  }

  /** Reloads the certificates (null when fine or when there is no TLS). */
  reload(): TlsCertificateError | null {
    return this.terminator?.reload() ?? null;
  }

  stats(): EdgeStats {
    return {
      refused: { ...this.limiter.counts, 'max-connections': this.maxConnectionDrops },
      tls: this.terminator ? this.terminator.stats : null,
      trackedAddresses: this.limiter.trackedAddresses,
    };
  }

  close(): void {
    this.terminator?.close();
  }

  /** Admits or destroys a raw connection; an admitted one releases its ticket when it closes. */
  private gate(raw: net.Socket, viaTls: boolean): boolean {
    const address = raw.remoteAddress ?? '';
    const ticket = this.limiter.connect(address);
    if (ticket.verdict !== 'accept') {
      this.opts.events?.onRefuse?.(ticket.verdict, address);
      raw.destroy();
      return false;
    }
    const entry = ticket.entry;
    const key = `${address} ${raw.remotePort}`;
    if (entry) {
      if (viaTls) this.tickets.set(key, entry);
      else this.sides.set(raw, { ...PLAIN, entry });
    }
    raw.once('close', () => {
      this.limiter.release(entry);
      if (viaTls) this.tickets.delete(key);
    });
    return true;
  }
}
