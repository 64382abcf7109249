/**
 * @module Starts an in-process dispatcher for one UDP service named 'udp' (on 127.0.0.1:0) in front of
 * the given backends (ids b0, b1, ... in order), admin off, logging silent, closed when the test ends;
 * and a UDP client that sends from one fixed source port and waits for replies. The config goes
 * through the real schema, so defaults are the product's defaults.
 */
import dgram from 'node:dgram';
import type { TestContext } from 'node:test';
import type { HealthConfig, SessionsConfig, UdpConfig } from '../../src/config/schema.js';
import type { HostPort } from '../../src/core/address.js';
import type { Clock } from '../../src/core/clock.js';
import { backendList, singleServiceConfig, startServiceDispatcher, type Dispatcher, type ServiceDispatcher } from './dispatcher.js';

export type { Dispatcher };

export interface UdpDispatcherOptions {
  backends: ReadonlyArray<HostPort>;
  sessions?: Partial<SessionsConfig>;
  udp?: Partial<UdpConfig>;
  health?: { probe?: Partial<HealthConfig['probe']> };
  balancer?: string;
  clock?: Clock;
}

/** The handle for the UDP service 'udp'. */
export type UdpDispatcher = ServiceDispatcher;

export function startUdpDispatcher(t: TestContext, opts: UdpDispatcherOptions): Promise<UdpDispatcher> {
  const config = singleServiceConfig({
    name: 'udp',
    protocol: 'udp',
    listen: '127.0.0.1:0',
    ...(opts.balancer ? { balancer: opts.balancer } : {}),
    backends: backendList(opts.backends),
    ...(opts.sessions ? { sessions: opts.sessions } : {}),
    ...(opts.udp ? { udp: opts.udp } : {}),
    ...(opts.health ? { health: opts.health } : {}),
  });
  return startServiceDispatcher(t, config, 'udp', { clock: opts.clock });
}

/** How long a client waits for one reply by default. */
export const REPLY_TIMEOUT_MS = 1_000;

/** A datagram a client received, and who sent it. */
export interface Received {
  readonly data: Buffer;
  readonly from: HostPort;
}

export interface UdpClient {
  /** The client's own address (its flow's source). */
  readonly address: HostPort;
  /** Sends one datagram to `to`. */
  send(to: HostPort, payload: Buffer | string): void;
  /** The next datagram received (in order), or null after `timeoutMs`. */
  next(timeoutMs?: number): Promise<Received | null>;
  /** send() then next(). */
  request(to: HostPort, payload: Buffer | string, timeoutMs?: number): Promise<Received | null>;
  /** Datagrams received and not read yet. */
  readonly queued: number;
  close(): void;
}

/** A UDP client on 127.0.0.1 with one fixed source port, closed when the test ends. */
export async function udpClient(t: TestContext): Promise<UdpClient> {
  const socket = dgram.createSocket('udp4');
  socket.on('error', () => {});
  const inbox: Received[] = [];
  let waiter: ((r: Received) => void) | null = null;
  socket.on('message', (data, rinfo) => {
    const r: Received = { data, from: { host: rinfo.address, port: rinfo.port } };
    if (waiter) {
      const w = waiter;
      waiter = null;
      w(r);
    } else inbox.push(r);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    socket.close();
  };
  t.after(close);
  const next = (timeoutMs = REPLY_TIMEOUT_MS): Promise<Received | null> => {
    const first = inbox.shift();
    if (first) return Promise.resolve(first);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        waiter = null;
        resolve(null);
      }, timeoutMs);
      waiter = (b) => {
        clearTimeout(timer);
        resolve(b);
      };
    });
  };
  const send = (to: HostPort, payload: Buffer | string): void => {
    socket.send(typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload, to.port, to.host);
  };
  return {
    address: { host: '127.0.0.1', port: socket.address().port },
    send,
    next,
    request(to, payload, timeoutMs) {
      send(to, payload);
      return next(timeoutMs);
    },
    get queued() {
      return inbox.length;
    },
    close,
  };
}
