/**
 * @module PLACEHOLDER: the UDP relay (issue 5) is being written; this stub keeps the build green.
 */
import type net from 'node:net';
import type { HostPort } from '../core/address.js';
import type { Forwarder, ServiceRuntime } from './service-runtime.js';

export class UdpForwarder implements Forwarder {
  constructor(readonly rt: ServiceRuntime) {}
  handle(socket: net.Socket): void {
    socket.destroy();
  }
  async bindDatagram(_at: HostPort): Promise<HostPort> {
    throw new Error('udp forwarding is not implemented yet');
  }
  async close(): Promise<void> {}
  destroy(): void {}
}
