/**
 * @module A UDP endpoint's lifecycle, shared by the control-plane receivers (the health monitor's
 * agent receiver, the election transport): bind with a typed error, ignore per-datagram errors once
 * bound, start once, close idempotently (waiting for a start in progress).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { formatHostPort, type HostPort } from './address.js';
import { ClosedError, ListenError } from './errors.js';

/** Binds a UDP socket at `at` (port 0: any); rejects with ListenError. */
export function bindUdp(at: HostPort, reuseAddr = false): Promise<dgram.Socket> {
  return new Promise<dgram.Socket>((resolve, reject) => {
    const socket = dgram.createSocket({ type: net.isIPv6(at.host) ? 'udp6' : 'udp4', reuseAddr });
    const failed = (err: Error): void => {
      socket.close();
      reject(new ListenError(`udp ${formatHostPort(at)}`, { cause: err }));
    };
    socket.once('error', failed);
    socket.bind(at.port, at.host, () => {
      socket.off('error', failed);
      // After bind a UDP socket's errors are per datagram (ICMP feedback on some systems), never
      // fatal to receiving: ignoring them keeps one bad packet from killing the channel.
      socket.on('error', () => {});
      resolve(socket);
    });
  });
}

/** The bound address of a socket, as host and port. */
export function boundAddress(socket: dgram.Socket): HostPort {
  const bound = socket.address();
  return { host: bound.address, port: bound.port };
}

/**
 * Start-once, close-once. `bind` opens the endpoint's sockets (attaching their handlers) and
 * resolves with its address; close() waits for a start in progress, then closes every socket it
 * opened. After close(), start() rejects with ClosedError.
 */
export class UdpEndpoint {
  private sockets: dgram.Socket[] = [];
  private starting: Promise<HostPort> | null = null;
  private closing: Promise<void> | null = null;
  private closedFlag = false;

  constructor(
    /** What the endpoint is, for ClosedError ("agent receiver"). */
    private readonly what: string,
    private readonly bind: () => Promise<{ address: HostPort; sockets: dgram.Socket[] }>,
  ) {}

  /** True once close() was called: datagrams still queued are to be ignored. */
  get closed(): boolean {
    return this.closedFlag;
  }

  /** The first bound socket (the one to send from), or null when not bound. */
  get socket(): dgram.Socket | null {
    return this.sockets[0] ?? null;
  }

  start(): Promise<HostPort> {
    if (this.closedFlag) return Promise.reject(new ClosedError(this.what));
    this.starting ??= this.bind().then(({ address, sockets }) => {
      // A close() that ran meanwhile waits for this promise, then closes what is set here.
      this.sockets = sockets;
      return address;
    });
    return this.starting;
  }

  /** Stops receiving; idempotent. */
  close(): Promise<void> {
    this.closedFlag = true;
    this.closing ??= (async () => {
      if (this.starting) {
        try {
          await this.starting;
        } catch {
          return;
        }
      }
      const sockets = this.sockets;
      this.sockets = [];
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    })();
    return this.closing;
  }
}
