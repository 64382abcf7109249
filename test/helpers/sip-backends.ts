/**
 * @module SIP backends and clients for the forwarder's end-to-end tests: pools of sipp uas (through
 * test/helpers/sipp.ts) with, for UDP ones, a TCP listener on the same port number — the health
 * monitor's probe is TCP (or HTTP) only, and a UDP-only sipp would be probed down at start; real SIP
 * servers listen on both transports at 5060 — plus raw UDP peers (a scripted backend or client), the
 * Call-IDs a uas received, and a collector of diagnostics events.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Channel } from 'node:diagnostics_channel';
import type { TestContext } from 'node:test';
import { parseMessageLog, startUas, type SippTransport, type SippUas } from './sipp.js';

/** A listener that accepts and closes TCP connections at `port`: what the TCP probe sees of a UDP server. */
export interface TcpPresence {
  close(): Promise<void>;
}

export async function tcpPresence(t: TestContext, port: number, host = '127.0.0.1'): Promise<TcpPresence> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => resolve());
  });
  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
    return closed;
  };
  t.after(close);
  return { close };
}

/** A sipp uas as a backend (the dispatcher's default `udp` probe finds a UDP uas up). */
export interface UasBackend {
  readonly uas: SippUas;
  readonly port: number;
  /** Kills the uas (SIGKILL). */
  crash(): Promise<void>;
}

export async function startUasPool(
  t: TestContext,
  n: number,
  opts: { transport: SippTransport; scenario?: string; traceMessages?: boolean; extra?: readonly string[] },
): Promise<UasBackend[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const uas = await startUas({ t, transport: opts.transport, traceMessages: opts.traceMessages ?? false, ...(opts.scenario ? { scenario: opts.scenario } : {}), ...(opts.extra ? { extra: opts.extra } : {}) });
      return {
        uas,
        port: uas.port,
        async crash() {
          await uas.kill('SIGKILL');
        },
      };
    }),
  );
}

/** The distinct Call-IDs a uas received messages for. */
export function receivedCallIds(uas: SippUas): Set<string> {
  const ids = new Set<string>();
  for (const m of parseMessageLog(uas.messages())) if (m.direction === 'received' && m.callId) ids.add(m.callId);
  return ids;
}

/** Messages of `channel` for service `service`, collected until the test ends. */
export function collect<T extends { service: string }>(t: TestContext, channel: Channel, service = 'sip'): T[] {
  const seen: T[] = [];
  const fn = (m: unknown): void => {
    if ((m as T).service === service) seen.push(m as T);
  };
  channel.subscribe(fn);
  t.after(() => channel.unsubscribe(fn));
  return seen;
}

/** Polls `cond` every 10 ms until it holds; rejects with `what` after `timeoutMs`. */
export async function until(cond: () => boolean, what: () => string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A raw UDP peer on 127.0.0.1: sends exact bytes, keeps every datagram it receives. */
export interface RawUdpPeer {
  readonly port: number;
  readonly received: { data: Buffer; host: string; port: number }[];
  send(data: Buffer | string, port: number, host?: string): Promise<void>;
  /** Resolves with the next datagram received after `from` (an index into `received`). */
  next(from: number, timeoutMs?: number): Promise<{ data: Buffer; host: string; port: number }>;
  close(): void;
}

/**
 * A raw UDP peer whose port number is also held on TCP (tcpPresence), so that a tcp health probe of
 * that port finds it. The UDP port is picked by the kernel; when that number is busy on TCP (another
 * test's listener), a new pair is tried: the flake the first version of this test had (EADDRINUSE).
 */
export async function rawUdpPeerWithTcpPresence(t: TestContext, attempts = 20): Promise<RawUdpPeer> {
  for (let i = 1; ; i++) {
    const peer = await rawUdpPeer(t);
    try {
      await tcpPresence(t, peer.port);
      return peer;
    } catch (err) {
      peer.close();
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || i >= attempts) throw err;
    }
  }
}

export async function rawUdpPeer(t: TestContext, port = 0): Promise<RawUdpPeer> {
  const socket = dgram.createSocket('udp4');
  const received: { data: Buffer; host: string; port: number }[] = [];
  socket.on('message', (data, r) => received.push({ data, host: r.address, port: r.port }));
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.bind(port, '127.0.0.1', () => resolve()));
  let closed = false;
  const close = () => {
    if (!closed) socket.close();
    closed = true;
  };
  t.after(close);
  return {
    port: socket.address().port,
    received,
    send: (data, to, host = '127.0.0.1') =>
      new Promise<void>((resolve, reject) => socket.send(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, to, host, (err) => (err ? reject(err) : resolve()))),
    async next(from, timeoutMs = 2_000) {
      await until(() => received.length > from, () => `a datagram on :${socket.address().port}`, timeoutMs);
      return received[from]!;
    },
    close,
  };
}
