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
import { requestTokenBatch, type SharedGate } from './shared-limits.js';
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
  /** With a shared gate: its address's request tokens taken from the authority (null: the limiter decides). */
  readonly pocket?: RequestPocket | null;
}

/** A worker's request tokens for one client address, taken from the authority (shared-limits.ts). */
export interface RequestPocket {
  readonly address: string;
  tokens: number;
  /** The authority's Retry-After for the last refusal. */
  retryAfterS: number;
  /** This worker's open connections from the address (the pocket is dropped at 0). */
  connections: number;
}

/** Whether a request may go on: now ('admit', 'refuse'), or once the authority answers ('ask'). */
export type RequestVerdict = 'admit' | 'refuse' | 'ask';

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
  /**
   * The authority for the per-address connection bounds (`maxConnectionsPerAddress`,
   * `connectionsPerSecond`) when this edge is one of several processes serving one listener (a
   * dispatcher worker): every connection is admitted by it (asynchronously, before any TLS handshake);
   * the local limiter keeps only the request rate.
   */
  readonly shared?: SharedGate;
}

export class Edge {
  readonly terminator: TlsTerminator | null;
  readonly limiter: ClientLimiter;
  /** The authority for the connection bounds (a worker's edge), or null: the local limiter decides. */
  private readonly shared: SharedGate | null;
  private readonly sides = new WeakMap<net.Socket, ClientSide>();
  /** Tickets of raw connections, by "address port" (a TLS socket is a different object from its raw socket). */
  private readonly tickets = new Map<string, ClientEntry>();
  private maxConnectionDrops = 0;

  /** Throws TlsCertificateError when a certificate cannot be served. */
  constructor(private readonly opts: EdgeOptions) {
    this.terminator = opts.tls ? new TlsTerminator(opts.tls, opts.clock, opts.events) : null;
    const l = opts.limits;
    this.shared = opts.shared !== undefined && (l.maxConnectionsPerAddress > 0 || l.connectionsPerSecond > 0 || l.requestsPerSecond > 0) ? opts.shared : null;
    // With a shared gate every per-address bound is the authority's: the local limiter is off.
    this.limiter = new ClientLimiter(this.shared ? { ...l, maxConnectionsPerAddress: 0, connectionsPerSecond: 0, requestsPerSecond: 0 } : l, opts.clock);
  }

  /** With a shared gate: request tokens per client address, for this process's connections. */
  private readonly pockets = new Map<string, RequestPocket>();

  /** A server whose admitted connections (handshaken, when TLS) go to `onSocket`. */
  createServer(netOptions: net.ServerOpts, onSocket: (socket: net.Socket) => void): net.Server {
    const server = this.shared ? this.createSharedServer(netOptions, onSocket, this.shared) : this.createLocalServer(netOptions, onSocket);
    if (this.opts.limits.maxConnections > 0) {
      server.maxConnections = this.opts.limits.maxConnections;
      server.on('drop', (data?: { remoteAddress?: string }) => {
        this.maxConnectionDrops++;
        this.opts.events?.onRefuse?.('max-connections', data?.remoteAddress ?? '');
      });
    }
    return server;
  }

  /**
   * With a shared gate: a plain server that accepts paused, asks the authority, and then hands the
   * socket on (to the TLS server, which never listens itself, or to `onSocket`) or destroys it.
   */
  private createSharedServer(netOptions: net.ServerOpts, onSocket: (socket: net.Socket) => void, shared: SharedGate): net.Server {
    const term = this.terminator;
    const cc = this.opts.tls?.clientCertificate;
    const l = this.opts.limits;
    const connectionBounds = l.maxConnectionsPerAddress > 0 || l.connectionsPerSecond > 0;
    const requestRate = l.requestsPerSecond > 0;
    const inner = term
      ? term.createServer(netOptions, (socket: tls.TLSSocket) => {
          const pocket = this.pocketsByPort.get(`${socket.remoteAddress} ${socket.remotePort}`) ?? null;
          this.sides.set(socket, { encrypted: true, clientSubject: term.clientSubject(socket), subjectHeader: cc ? cc.subjectHeader : null, entry: null, pocket });
          onSocket(socket);
        })
      : null;
    const admitted = (raw: net.Socket, address: string): void => {
      const key = `${address} ${raw.remotePort}`;
      let pocket: RequestPocket | null = null;
      if (requestRate) {
        pocket = this.pockets.get(address) ?? null;
        if (pocket === null) {
          pocket = { address, tokens: 0, retryAfterS: 0, connections: 0 };
          this.pockets.set(address, pocket);
        }
        pocket.connections++;
        if (inner) this.pocketsByPort.set(key, pocket);
        else this.sides.set(raw, { ...PLAIN, pocket });
      }
      raw.once('close', () => {
        if (connectionBounds) shared.release(address);
        if (pocket !== null && --pocket.connections === 0) this.pockets.delete(address);
        if (inner) this.pocketsByPort.delete(key);
      });
      if (inner) {
        inner.emit('connection', raw);
      } else {
        raw.resume();
        onSocket(raw);
      }
    };
    return net.createServer({ ...netOptions, pauseOnConnect: true }, (raw) => {
      const address = raw.remoteAddress ?? '';
      if (!connectionBounds) return admitted(raw, address);
      shared.acquire(address, (verdict) => {
        if (verdict !== 'accept') {
          this.opts.events?.onRefuse?.(verdict, address);
          raw.destroy();
          return;
        }
        if (raw.destroyed) {
          shared.release(address);
          return;
        }
        admitted(raw, address);
      });
    });
  }

  /** Pockets of raw TLS connections until their handshake, by "address port". */
  private readonly pocketsByPort = new Map<string, RequestPocket>();

  private createLocalServer(netOptions: net.ServerOpts, onSocket: (socket: net.Socket) => void): net.Server {
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

  /**
   * One more request on `side`'s connection: admitted or refused now, or 'ask': this process has no
   * token of the address left and must take some from the authority (askRequests) first.
   */
  requestVerdict(side: ClientSide): RequestVerdict {
    const pocket = side.pocket;
    if (pocket === undefined || pocket === null) return this.limiter.request(side.entry) ? 'admit' : 'refuse';
    if (pocket.tokens >= 1) {
      pocket.tokens--;
      return 'admit';
    }
    return 'ask';
  }

  /** Takes request tokens for `side`'s address from the authority; `done` says whether this request may go on. */
  askRequests(side: ClientSide, done: (verdict: 'admit' | 'refuse') => void): void {
    const pocket = side.pocket;
    if (pocket === undefined || pocket === null || this.shared === null) return done('admit');
    this.shared.takeRequests(pocket.address, requestTokenBatch(this.opts.limits.requestsPerSecond), (granted, retryAfterS) => {
      if (granted < 1) {
        pocket.retryAfterS = retryAfterS;
        return done('refuse');
      }
      pocket.tokens += granted - 1;
      done('admit');
    });
  }

  retryAfterS(side: ClientSide): number {
    const pocket = side.pocket;
    if (pocket !== undefined && pocket !== null) return Math.max(1, pocket.retryAfterS);
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
